#include "ids.h"

#include <string.h>
#include <strings.h>

#include "chars.h"

int das_guid_normalize(const char *in, size_t len, char out[DAS_GUID_SIZE])
{
	static const char hexdig[] = "0123456789abcdef";
	/* Positions of the dashes in the 8-4-4-4-12 form. */
	static const size_t dash_at[] = {8, 13, 18, 23};
	char digits[32];
	size_t n = 0;

	if (!in)
		return -1;
	if (len >= 2 && in[0] == '{' && in[len - 1] == '}') {
		in++;
		len -= 2;
	}
	if (len == 32) {
		for (size_t i = 0; i < 32; i++) {
			if (das_hex_digit(in[i]) < 0)
				return -1;
			digits[n++] = in[i];
		}
	} else if (len == 36) {
		size_t d = 0;
		for (size_t i = 0; i < 36; i++) {
			if (d < 4 && i == dash_at[d]) {
				if (in[i] != '-')
					return -1;
				d++;
				continue;
			}
			if (das_hex_digit(in[i]) < 0)
				return -1;
			digits[n++] = in[i];
		}
	} else {
		return -1;
	}

	size_t o = 0, d = 0;
	for (size_t i = 0; i < 32; i++) {
		if (d < 4 && o == dash_at[d]) {
			out[o++] = '-';
			d++;
		}
		out[o++] = hexdig[das_hex_digit(digits[i])];
	}
	out[o] = '\0';
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
