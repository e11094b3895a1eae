#include "headers.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/ascii.h"

static const char *skip_ows(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* Case-insensitive match of word at p followed only by optional spaces. */
static bool is_word(const char *p, const char *word)
{
	size_t n = strlen(word);

	p = skip_ows(p);
	if (strncasecmp(p, word, n) != 0)
		return false;
	return *skip_ows(p + n) == '\0';
}

int gw_parse_accept_charges(const char *value, bool *out)
{
	if (!value) {
		*out = false;
		return 0;
	}
	if (is_word(value, "true")) {
		*out = true;
		return 0;
	}
	if (is_word(value, "false")) {
		*out = false;
		return 0;
	}
	return -1;
}

bool gw_content_type_is_json(const char *value)
{
	static const char json[] = "application/json";
	const char *p;

	if (!value)
		return false;
	p = skip_ows(value);
	if (strncasecmp(p, json, sizeof(json) - 1) != 0)
		return false;
	p = skip_ows(p + sizeof(json) - 1);
	return *p == '\0' || *p == ';';
}

bool gw_request_id_is_valid(const char *value)
{
	size_t n = 0;

	if (!value)
		return false;
	for (; value[n]; n++) {
		unsigned char c = (unsigned char)value[n];
		if (n >= GW_REQUEST_ID_MAX || c < 0x21 || c > 0x7e)
			return false;
	}
	return n > 0;
}

/* The 16 lower-case hex digits of v at p. */
static void hex16(char *p, uint64_t v)
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 15; i >= 0; i--) {
		p[i] = hex[v & 15];
		v >>= 4;
	}
}

void gw_request_id_make(uint64_t prefix, uint64_t counter,
			char out[GW_REQUEST_ID_SIZE])
{
	/* "gw-%016llx-%016llx", without printf: made for most requests. */
	memcpy(out, "gw-", 3);
	hex16(out + 3, prefix);
	out[19] = '-';
	hex16(out + 20, counter);
	out[36] = '\0';
}

static bool is_name_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

static bool is_port(const char *p)
{
	size_t n = 0;

	for (; p[n]; n++)
		if (p[n] < '0' || p[n] > '9' || n >= 5)
			return false;
	return n > 0;
}

bool gw_host_is_valid(const char *value)
{
	const char *p = value;

	if (!value || !*value || strlen(value) > GW_HOST_MAX)
		return false;
	if (*p == '[') {
		p++;
		while (*p && *p != ']') {
			unsigned char c = (unsigned char)*p;
			if (!(c == ':' || c == '.' || (c >= '0' && c <= '9') ||
			      (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
				return false;
			p++;
		}
		if (*p != ']' || p == value + 1)
			return false;
		p++;
	} else {
		const char *start = p;
		while (*p && is_name_char((unsigned char)*p))
			p++;
		if (p == start)
			return false;
	}
	if (*p == '\0')
		return true;
	return *p == ':' && is_port(p + 1);
}

int gw_location(const char *base_url, const char *host, const char *path,
		char *out, size_t size)
{
	return gw_location_scheme("http", base_url, host, path, out, size);
}

int gw_location_scheme(const char *scheme, const char *base_url,
		       const char *host, const char *path, char *out,
		       size_t size)
{
	int n;

	if (base_url && *base_url) {
		size_t bl = strlen(base_url);
		while (bl > 0 && base_url[bl - 1] == '/')
			bl--;
		n = snprintf(out, size, "%.*s%s", (int)bl, base_url, path);
	} else if (gw_host_is_valid(host)) {
		/* "%s://%s%s" by hand: made for every assign and unassign. */
		size_t sl = strlen(scheme), hl = strlen(host),
		       pl = strlen(path);
		if (sl + 3 + hl + pl >= size)
			return -1;
		memcpy(out, scheme, sl);
		memcpy(out + sl, "://", 3);
		memcpy(out + sl + 3, host, hl);
		memcpy(out + sl + 3 + hl, path, pl + 1);
		return 0;
	} else {
		return -1;
	}
	if (n < 0 || (size_t)n >= size)
		return -1;
	return 0;
}

bool gw_authorization_is_forwardable(const char *value, size_t max_len)
{
	size_t n;

	if (!value)
		return false;
	n = strlen(value);
	return n > 0 && n <= max_len && das_ascii_visible_span(value, n) == n;
}
