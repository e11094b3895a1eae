/*
 * Parsing of the request headers the gateway itself must judge (CONTRACT.md
 * section 2): accept-charges, Content-Type, X-Request-Id, Host, and the
 * Authorization value it forwards. Pure functions, no allocation.
 */
#ifndef GW_HEADERS_H
#define GW_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_REQUEST_ID_MAX  128
#define GW_REQUEST_ID_SIZE (GW_REQUEST_ID_MAX + 1)
#define GW_HOST_MAX	   255
/* Longer Authorization values are not forwarded (the service's limit). */
#define GW_AUTHORIZATION_MAX 8192
#define GW_LOCATION_MAX	     (GW_HOST_MAX + 2048 + 512)

/*
 * accept-charges: absent (NULL) is false; "true"/"false" in any case, with
 * surrounding spaces/tabs allowed. Returns 0 and sets *out, -1 on any other
 * value.
 */
int gw_parse_accept_charges(const char *value, bool *out);

/*
 * True when value is the JSON media type: "application/json" in any case,
 * optionally followed by parameters (";charset=utf-8"). NULL is false.
 */
bool gw_content_type_is_json(const char *value);

/* True when value is 1..GW_REQUEST_ID_MAX visible ASCII characters. */
bool gw_request_id_is_valid(const char *value);

/*
 * Writes a fresh request id ("gw-" + 16 hex of prefix + "-" + 16 hex of
 * counter) into out. prefix is random per process, counter unique per
 * request; both are chosen by the caller.
 */
void gw_request_id_make(uint64_t prefix, uint64_t counter,
			char out[GW_REQUEST_ID_SIZE]);

/*
 * True when value is a safe Host header: a DNS name or IPv4 literal, or an
 * IPv6 literal in brackets, with an optional ":port"; at most GW_HOST_MAX
 * bytes. Anything else (CR, LF, spaces, '/', '@'...) is refused so it can
 * never reach a Location header.
 */
bool gw_host_is_valid(const char *value);

/*
 * The absolute URL of path: base_url (no trailing '/' needed) + path when
 * base_url is set, else "http://" + host + path. Returns 0, or -1 when
 * neither base_url nor a valid host is given or out is too small.
 */
int gw_location(const char *base_url, const char *host, const char *path,
		char *out, size_t size);

/* The same with scheme ("https" behind TLS) in place of "http". */
int gw_location_scheme(const char *scheme, const char *base_url,
		       const char *host, const char *path, char *out,
		       size_t size);

/*
 * True when an Authorization value may be forwarded as gRPC metadata:
 * non-empty, at most max_len bytes, visible ASCII and spaces only. Other
 * values are not forwarded, so the service answers 401.
 */
bool gw_authorization_is_forwardable(const char *value, size_t max_len);

#endif
