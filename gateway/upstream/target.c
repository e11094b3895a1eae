#include "target.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

enum family { FAMILY_NONE, FAMILY_V4, FAMILY_V6 };

static bool has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* "1.2.3.4:80" -> V4, "[::1]:80" -> V6, "localhost:80" -> V4 (as
 * 127.0.0.1), anything else NONE. entry is len bytes. */
static enum family entry_family(const char *entry, size_t len,
				bool *is_localhost)
{
	const char *colon = NULL;
	size_t host_len;

	*is_localhost = false;
	for (size_t i = len; i > 0; i--)
		if (entry[i - 1] == ':') {
			colon = entry + i - 1;
			break;
		}
	if (!colon || colon + 1 == entry + len)
		return FAMILY_NONE;
	for (const char *p = colon + 1; p < entry + len; p++)
		if (*p < '0' || *p > '9')
			return FAMILY_NONE;
	host_len = (size_t)(colon - entry);
	if (host_len >= 2 && entry[0] == '[' && entry[host_len - 1] == ']') {
		for (size_t i = 1; i + 1 < host_len; i++) {
			char c = entry[i];
			bool ok = (c >= '0' && c <= '9') ||
				  (c >= 'a' && c <= 'f') ||
				  (c >= 'A' && c <= 'F') || c == ':' ||
				  c == '.';
			if (!ok)
				return FAMILY_NONE;
		}
		return FAMILY_V6;
	}
	if (host_len == 9 && memcmp(entry, "localhost", 9) == 0) {
		*is_localhost = true;
		return FAMILY_V4;
	}
	int dots = 0;
	for (size_t i = 0; i < host_len; i++) {
		if (entry[i] == '.')
			dots++;
		else if (entry[i] < '0' || entry[i] > '9')
			return FAMILY_NONE;
	}
	return dots == 3 ? FAMILY_V4 : FAMILY_NONE;
}

int gw_upstream_target(const char *value, char *out, size_t out_size,
		       char *err, size_t err_size)
{
	enum family fam = FAMILY_NONE;
	size_t o;
	int n;

	if (!value || !*value) {
		snprintf(err, err_size, "--upstream is empty");
		return -1;
	}
	/* gRPC's own target syntax: scheme-qualified or a URI. */
	if (strstr(value, ":///") || has_prefix(value, "dns:") ||
	    has_prefix(value, "ipv4:") || has_prefix(value, "ipv6:") ||
	    has_prefix(value, "unix:") || !strchr(value, ',')) {
		n = snprintf(out, out_size, "%s", value);
		if (n < 0 || (size_t)n >= out_size) {
			snprintf(err, err_size, "--upstream is too long");
			return -1;
		}
		return 0;
	}

	/* A list: "ipv4:" or "ipv6:" followed by the entries. */
	o = 5;
	if (out_size <= o) {
		snprintf(err, err_size, "--upstream is too long");
		return -1;
	}
	for (const char *p = value;;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		bool is_localhost;
		enum family f = entry_family(p, len, &is_localhost);

		if (len == 0) {
			snprintf(err, err_size, "--upstream: empty list entry");
			return -1;
		}
		if (f == FAMILY_NONE) {
			snprintf(err, err_size,
				 "--upstream: '%.*s' is not IP:PORT (use "
				 "dns:///NAME:PORT for a name with several "
				 "addresses)",
				 (int)(len > 100 ? 100 : len), p);
			return -1;
		}
		if (fam != FAMILY_NONE && f != fam) {
			snprintf(err, err_size,
				 "--upstream: a list cannot mix IPv4 and IPv6");
			return -1;
		}
		fam = f;
		const char *text = p;
		size_t text_len = len;
		char local[32];
		if (is_localhost) {
			int m = snprintf(local, sizeof(local), "127.0.0.1%.*s",
					 (int)(len - 9), p + 9);
			if (m < 0 || (size_t)m >= sizeof(local)) {
				snprintf(err, err_size,
					 "--upstream: bad port in '%.*s'",
					 (int)(len > 100 ? 100 : len), p);
				return -1;
			}
			text = local;
			text_len = (size_t)m;
		}
		if (o + text_len + 2 > out_size) {
			snprintf(err, err_size, "--upstream is too long");
			return -1;
		}
		if (o > 5)
			out[o++] = ',';
		memcpy(out + o, text, text_len);
		o += text_len;
		if (!end)
			break;
		p = end + 1;
	}
	memcpy(out, fam == FAMILY_V6 ? "ipv6:" : "ipv4:", 5);
	out[o] = '\0';
	return 0;
}
