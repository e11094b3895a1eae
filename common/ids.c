#include "ids.h"

#include <string.h>
#include <strings.h>

/* Positions of the dashes in the 8-4-4-4-12 form. */
static bool is_dash_at(size_t i)
{
	return i == 8 || i == 13 || i == 18 || i == 23;
}

int das_guid_normalize(const char *in, size_t len, char out[DAS_GUID_SIZE])
{
	char guid[DAS_GUID_SIZE];
	bool has_dashes;
	size_t i = 0;

	if (!in)
		return -1;
	if (len >= 2 && in[0] == '{' && in[len - 1] == '}') {
		in++;
		len -= 2;
	}
	if (len != 32 && len != DAS_GUID_LEN)
		return -1;
	has_dashes = len == DAS_GUID_LEN;
	/* One pass: each output place takes a dash or the next digit, in
	 * lower case. */
	for (size_t o = 0; o < DAS_GUID_LEN; o++) {
		unsigned char c;

		if (is_dash_at(o)) {
			if (has_dashes && in[i++] != '-')
				return -1;
			guid[o] = '-';
			continue;
		}
		c = (unsigned char)in[i++];
		if (c >= 'A' && c <= 'F')
			c = (unsigned char)(c - 'A' + 'a');
		else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return -1;
		guid[o] = (char)c;
	}
	guid[DAS_GUID_LEN] = '\0';
	memcpy(out, guid, sizeof(guid));
	return 0;
}

bool das_id_is_valid(const char *s, size_t len)
{
	if (!s || len < 1 || len > DAS_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' ||
			  c == '-';
		if (!ok)
			return false;
	}
	return true;
}

static const char *const client_names[DAS_CLIENT_TYPE_COUNT] = {
	[DAS_CLIENT_NONE] = "",
	[DAS_CLIENT_DESKTOP] = "desktop",
	[DAS_CLIENT_MOBILE] = "mobile",
	[DAS_CLIENT_WEBRTC] = "webrtc",
	[DAS_CLIENT_CRM] = "crm",
};

const char *das_client_type_name(int type)
{
	if (type < 0 || type >= DAS_CLIENT_TYPE_COUNT)
		return "";
	return client_names[type];
}

enum das_client_type das_client_type_parse(const char *s, size_t len)
{
	if (!s)
		return DAS_CLIENT_NONE;
	for (int t = DAS_CLIENT_DESKTOP; t < DAS_CLIENT_TYPE_COUNT; t++)
		if (strlen(client_names[t]) == len &&
		    strncasecmp(client_names[t], s, len) == 0)
			return (enum das_client_type)t;
	return DAS_CLIENT_NONE;
}

bool das_client_type_is_valid(int type)
{
	return type >= DAS_CLIENT_DESKTOP && type <= DAS_CLIENT_CRM;
}
