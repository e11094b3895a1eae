#include "target.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

enum family { FAMILY_NONE, FAMILY_V4, FAMILY_V6 };

/* One "HOST:PORT" entry split into its parts. */
struct hostport {
	char host[256];
	char port[8];
	bool is_bracketed;
};

static bool has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int show(size_t len)
{
	return (int)(len > 100 ? 100 : len);
}

/* Splits entry (len bytes): "[v6]:port" or "host:port", port 1..65535. */
static int split(const char *entry, size_t len, struct hostport *hp,
		 char *err, size_t err_size)
{
	const char *colon = NULL;
	size_t hl, pl;
	unsigned long port = 0;

	for (size_t i = len; i > 0; i--)
		if (entry[i - 1] == ':') {
			colon = entry + i - 1;
			break;
		}
	if (!colon)
		goto bad;
	hl = (size_t)(colon - entry);
	pl = len - hl - 1;
	if (pl == 0 || pl > 5)
		goto bad;
	for (size_t i = 0; i < pl; i++) {
		if (colon[1 + i] < '0' || colon[1 + i] > '9')
			goto bad;
		port = port * 10 + (unsigned long)(colon[1 + i] - '0');
	}
	if (port == 0 || port > 65535)
		goto bad;
	memcpy(hp->port, colon + 1, pl);
	hp->port[pl] = '\0';
	hp->is_bracketed = hl >= 2 && entry[0] == '[' && entry[hl - 1] == ']';
	if (hp->is_bracketed) {
		entry++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(hp->host))
		goto bad;
	memcpy(hp->host, entry, hl);
	hp->host[hl] = '\0';
	return 0;
bad:
	snprintf(err, err_size,
		 "--upstream: '%.*s' is not HOST:PORT (port 1..65535)",
		 show(len), entry);
	return -1;
}

static bool looks_numeric(const char *s)
{
	for (; *s; s++)
		if ((*s < '0' || *s > '9') && *s != '.')
			return false;
	return true;
}

/* The family of an IP literal (or "localhost" as IPv4); NONE otherwise,
 * with a reason when it looked like a literal but is not one. */
static enum family literal_family(const struct hostport *hp, char *err,
				  size_t err_size)
{
	unsigned char buf[16];

	if (hp->is_bracketed) {
		if (inet_pton(AF_INET6, hp->host, buf) == 1)
			return FAMILY_V6;
		snprintf(err, err_size,
			 "--upstream: '[%s]' is not an IPv6 address", hp->host);
		return FAMILY_NONE;
	}
	if (strcmp(hp->host, "localhost") == 0)
		return FAMILY_V4;
	if (inet_pton(AF_INET, hp->host, buf) == 1)
		return FAMILY_V4;
	if (looks_numeric(hp->host))
		snprintf(err, err_size,
			 "--upstream: '%s' is not an IPv4 address", hp->host);
	else
		snprintf(err, err_size,
			 "--upstream: '%s' is not an IP address (use "
			 "dns:///NAME:PORT for a name with several addresses)",
			 hp->host);
	return FAMILY_NONE;
}

static bool is_name(const char *s)
{
	if (!*s || *s == '-' || *s == '.')
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '.' ||
		      *s == '_'))
			return false;
	return true;
}

static int copy_out(const char *value, char *out, size_t out_size, char *err,
		    size_t err_size)
{
	int n = snprintf(out, out_size, "%s", value);

	if (n < 0 || (size_t)n >= out_size) {
		snprintf(err, err_size, "--upstream is too long");
		return -1;
	}
	return 0;
}

/* One server: an IP literal, or a name that must resolve now. */
static int single(const char *value, char *out, size_t out_size, char *err,
		  size_t err_size)
{
	struct hostport hp;
	struct addrinfo hints, *res = NULL;
	char why[256];
	int rc;

	if (split(value, strlen(value), &hp, err, err_size) != 0)
		return -1;
	if (literal_family(&hp, why, sizeof(why)) != FAMILY_NONE)
		return copy_out(value, out, out_size, err, err_size);
	if (hp.is_bracketed || looks_numeric(hp.host)) {
		snprintf(err, err_size, "%s", why);
		return -1;
	}
	if (!is_name(hp.host)) {
		snprintf(err, err_size, "--upstream: '%s' is not a host name",
			 hp.host);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	rc = getaddrinfo(hp.host, hp.port, &hints, &res);
	if (rc != 0) {
		snprintf(err, err_size, "--upstream: cannot resolve '%s': %s",
			 hp.host, gai_strerror(rc));
		return -1;
	}
	freeaddrinfo(res);
	return copy_out(value, out, out_size, err, err_size);
}

/* "dns:///NAME:PORT" (or "dns:NAME:PORT"): gRPC resolves it, again and
 * again, so only its shape is checked here. */
static int dns_target(const char *value, char *out, size_t out_size,
		      char *err, size_t err_size)
{
	const char *rest = value + 4;
	struct hostport hp;
	char why[256];

	if (has_prefix(rest, "///"))
		rest += 3;
	else if (has_prefix(rest, "//")) {
		snprintf(err, err_size,
			 "--upstream: a DNS authority is not supported (use "
			 "dns:///NAME:PORT)");
		return -1;
	}
	if (split(rest, strlen(rest), &hp, err, err_size) != 0)
		return -1;
	if (!hp.is_bracketed && !looks_numeric(hp.host) && !is_name(hp.host)) {
		snprintf(err, err_size, "--upstream: '%s' is not a host name",
			 hp.host);
		return -1;
	}
	if ((hp.is_bracketed || looks_numeric(hp.host)) &&
	    literal_family(&hp, why, sizeof(why)) == FAMILY_NONE) {
		snprintf(err, err_size, "%s", why);
		return -1;
	}
	return copy_out(value, out, out_size, err, err_size);
}

/* "a,b,c" of IP literals; in is the list without any scheme. want is the
 * family a scheme asked for (NONE: any one family). */
static int ip_list(const char *in, enum family want, char *out,
		   size_t out_size, char *err, size_t err_size)
{
	enum family fam = want;
	size_t o = 5;

	if (out_size <= o) {
		snprintf(err, err_size, "--upstream is too long");
		return -1;
	}
	for (const char *p = in;;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		struct hostport hp;
		enum family f;
		char text[300];
		int m;

		if (len == 0) {
			snprintf(err, err_size, "--upstream: empty list entry");
			return -1;
		}
		if (split(p, len, &hp, err, err_size) != 0)
			return -1;
		f = literal_family(&hp, err, err_size);
		if (f == FAMILY_NONE)
			return -1;
		if (fam != FAMILY_NONE && f != fam) {
			snprintf(err, err_size,
				 "--upstream: a list cannot mix IPv4 and IPv6");
			return -1;
		}
		fam = f;
		m = snprintf(text, sizeof(text), hp.is_bracketed ? "[%s]:%s"
								 : "%s:%s",
			     strcmp(hp.host, "localhost") == 0 ? "127.0.0.1"
							       : hp.host,
			     hp.port);
		if (m < 0 || o + (size_t)m + 2 > out_size) {
			snprintf(err, err_size, "--upstream is too long");
			return -1;
		}
		if (o > 5)
			out[o++] = ',';
		memcpy(out + o, text, (size_t)m);
		o += (size_t)m;
		if (!end)
			break;
		p = end + 1;
	}
	memcpy(out, fam == FAMILY_V6 ? "ipv6:" : "ipv4:", 5);
	out[o] = '\0';
	return 0;
}

int gw_upstream_target(const char *value, char *out, size_t out_size,
		       char *err, size_t err_size)
{
	if (!value || !*value) {
		snprintf(err, err_size, "--upstream is empty");
		return -1;
	}
	if (has_prefix(value, "dns:"))
		return dns_target(value, out, out_size, err, err_size);
	if (has_prefix(value, "ipv4:"))
		return ip_list(value + 5, FAMILY_V4, out, out_size, err,
			       err_size);
	if (has_prefix(value, "ipv6:"))
		return ip_list(value + 5, FAMILY_V6, out, out_size, err,
			       err_size);
	if (has_prefix(value, "unix:")) {
		if (!value[5] || strcmp(value + 5, "//") == 0 ||
		    strcmp(value + 5, "///") == 0) {
			snprintf(err, err_size, "--upstream: empty unix path");
			return -1;
		}
		return copy_out(value, out, out_size, err, err_size);
	}
	if (strstr(value, "://")) {
		snprintf(err, err_size,
			 "--upstream: unknown scheme in '%.100s' (use HOST:PORT, "
			 "dns:///, ipv4:, ipv6: or unix:)",
			 value);
		return -1;
	}
	if (!strchr(value, ','))
		return single(value, out, out_size, err, err_size);
	return ip_list(value, FAMILY_NONE, out, out_size, err, err_size);
}
