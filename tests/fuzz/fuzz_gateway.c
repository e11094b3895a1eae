/*
 * Fuzz target: the gateway's pure request handling. The first byte picks
 * the part, the rest is what a client would send:
 *   0-3  a request target for GET/PUT/POST/DELETE through the route table
 *   4    an assign body through the JSON decoder
 *   5    any bytes as an error message, through the UTF-8 sanitizer and the
 *        JSON error body, which must parse back
 *   6    header values: accept-charges, Content-Type, X-Request-Id, Host
 *        (and the Location built from it), Authorization
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/ids.h"
#include "common/utf8.h"
#include "gateway/http/headers.h"
#include "gateway/routes.h"
#include "gateway/transcode/transcode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_param(const char *p)
{
	if (strlen(p) > GW_PARAM_MAX)
		abort();
}

static void route(uint8_t which, const char *s, size_t len)
{
	static const char *const methods[] = {"GET", "PUT", "POST", "DELETE"};
	struct gw_route_match m;

	if (gw_route_match(methods[which], s, len, &m) == GW_ROUTE_OK) {
		check_param(m.tenant);
		check_param(m.user);
		check_param(m.device);
		check_param(m.account);
	}
}

static void body(const char *s, size_t len)
{
	char as_sent[GW_CLIENT_TYPE_AS_SENT_SIZE];
	const char *reason = NULL;
	int type = -1;

	if (gw_body_decode_assign(s, len, &type, as_sent, &reason) == 0) {
		if (type < DAS_CLIENT_NONE || type > DAS_CLIENT_CRM)
			abort();
		if (strlen(as_sent) >= GW_CLIENT_TYPE_AS_SENT_SIZE)
			abort();
	} else if (!reason) {
		abort();
	}
}

static void message(const char *s, size_t len)
{
	char clean[512];
	json_error_t jerr;

	das_utf8_sanitize(s, len, clean, sizeof(clean));
	char *out = gw_json_error(402, clean, "2019-11-29T16:03:23.9251680Z",
				  clean);
	if (!out)
		return;
	json_t *back = json_loads(out, 0, &jerr);
	if (!back || !json_is_object(back))
		abort();
	json_decref(back);
	free(out);
}

static void headers(const char *s)
{
	char loc[4096];
	bool yes;

	(void)gw_parse_accept_charges(s, &yes);
	(void)gw_content_type_is_json(s);
	(void)gw_request_id_is_valid(s);
	(void)gw_authorization_is_forwardable(s, 8192);
	if (gw_host_is_valid(s) &&
	    gw_location(NULL, s, "/v1.0/x", loc, sizeof(loc)) == 0) {
		/* a Location never carries a header break */
		if (strpbrk(loc, "\r\n"))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size < 1)
		return 0;
	/* A NUL-terminated copy: header values reach these as C strings. */
	s = malloc(size);
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	switch (data[0] % 7) {
	case 0:
	case 1:
	case 2:
	case 3:
		route(data[0] % 7, s, size - 1);
		break;
	case 4:
		body(s, size - 1);
		break;
	case 5:
		message(s, size - 1);
		break;
	default:
		headers(s);
		break;
	}
	free(s);
	return 0;
}
