/* Header parsing of the gateway (gateway/http/headers.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/http/headers.h"

static void accept_charges_values(void **state)
{
	static const char *const yes[] = {"true", "TRUE", "True", " true ",
					  "\ttRuE"};
	static const char *const no[] = {"false", "FALSE", "False ", " false"};
	static const char *const bad[] = {
		"",	 " ",	"1",	      "0",	"yes",	    "no",
		"truee", "tru", "true,false", "true x", "\"true\"", "t rue"};
	bool v;

	v = true;
	assert_int_equal(gw_parse_accept_charges(NULL, &v), 0);
	assert_false(v);
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		v = false;
		assert_int_equal(gw_parse_accept_charges(yes[i], &v), 0);
		assert_true(v);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		v = true;
		assert_int_equal(gw_parse_accept_charges(no[i], &v), 0);
		assert_false(v);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (gw_parse_accept_charges(bad[i], &v) != -1)
			fail_msg("accepted '%s'", bad[i]);
}

static void content_type_values(void **state)
{
	static const char *const good[] = {"application/json",
					   "Application/JSON",
					   "application/json; charset=utf-8",
					   "application/json;charset=UTF-8",
					   " application/json ",
					   "application/json ; x=y"};
	static const char *const bad[] = {"",
					  "text/plain",
					  "application/jsonx",
					  "application/json-seq",
					  "application/x-www-form-urlencoded",
					  "application/*",
					  "multipart/form-data",
					  "json",
					  "application/ json",
					  "application/problem+json"};

	assert_false(gw_content_type_is_json(NULL));
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!gw_content_type_is_json(good[i]))
			fail_msg("refused '%s'", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (gw_content_type_is_json(bad[i]))
			fail_msg("accepted '%s'", bad[i]);
}

static void request_ids(void **state)
{
	char id[GW_REQUEST_ID_SIZE], lng[GW_REQUEST_ID_MAX + 2];

	assert_true(gw_request_id_is_valid("abc-123"));
	assert_true(gw_request_id_is_valid("{x}~!"));
	assert_false(gw_request_id_is_valid(NULL));
	assert_false(gw_request_id_is_valid(""));
	assert_false(gw_request_id_is_valid("a b"));
	assert_false(gw_request_id_is_valid("a\r\nX-Evil: 1"));
	assert_false(gw_request_id_is_valid("caf\xc3\xa9"));
	memset(lng, 'a', sizeof(lng) - 1);
	lng[GW_REQUEST_ID_MAX] = '\0';
	assert_true(gw_request_id_is_valid(lng));
	lng[GW_REQUEST_ID_MAX] = 'a';
	lng[GW_REQUEST_ID_MAX + 1] = '\0';
	assert_false(gw_request_id_is_valid(lng));

	gw_request_id_make(0x0123456789abcdefULL, 42, id);
	assert_string_equal(id, "gw-0123456789abcdef-000000000000002a");
	assert_true(gw_request_id_is_valid(id));
}

static void hosts(void **state)
{
	static const char *const good[] = {
		"example.com",	    "localhost:8080", "127.0.0.1:1",
		"[::1]:8080",	    "[::1]",	      "a-b.c_d",
		"EXAMPLE.COM:65535"};
	static const char *const bad[] = {"",
					  ":80",
					  "example.com:",
					  "example.com:123456",
					  "example.com:8x",
					  "exa mple.com",
					  "example.com\r\nX: y",
					  "example.com/evil",
					  "user@example.com",
					  "[::1",
					  "[]:80",
					  "[::g]",
					  "[::1]x",
					  "host:80:90",
					  "h\x80st"};
	char big[GW_HOST_MAX + 2];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!gw_host_is_valid(good[i]))
			fail_msg("refused '%s'", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (gw_host_is_valid(bad[i]))
			fail_msg("accepted '%s'", bad[i]);
	assert_false(gw_host_is_valid(NULL));
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_false(gw_host_is_valid(big));
}

static void locations(void **state)
{
	char out[GW_LOCATION_MAX];

	assert_int_equal(gw_location(NULL, "h:1", "/v1.0/x", out, sizeof(out)),
			 0);
	assert_string_equal(out, "http://h:1/v1.0/x");
	assert_int_equal(gw_location("", "h", "/p", out, sizeof(out)), 0);
	assert_string_equal(out, "http://h/p");
	assert_int_equal(gw_location("https://api.example.com/", "evil\r\n",
				     "/api/v1.0/x", out, sizeof(out)),
			 0);
	assert_string_equal(out, "https://api.example.com/api/v1.0/x");
	assert_int_equal(gw_location(NULL, "evil\r\nSet-Cookie: x", "/p", out,
				     sizeof(out)),
			 -1);
	assert_int_equal(gw_location(NULL, NULL, "/p", out, sizeof(out)), -1);
	assert_int_equal(gw_location(NULL, "host", "/path", out, 8), -1);
}

static void authorization_forwarding(void **state)
{
	assert_true(gw_authorization_is_forwardable("Bearer a.b.c", 100));
	assert_false(gw_authorization_is_forwardable(NULL, 100));
	assert_false(gw_authorization_is_forwardable("", 100));
	assert_false(gw_authorization_is_forwardable("Bearer a\x01", 100));
	assert_false(gw_authorization_is_forwardable("Bearer \xc3\xa9", 100));
	assert_false(gw_authorization_is_forwardable("Bearer abc", 5));
	assert_true(gw_authorization_is_forwardable("Bearer abc", 10));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(accept_charges_values),
		cmocka_unit_test(content_type_values),
		cmocka_unit_test(request_ids),
		cmocka_unit_test(hosts),
		cmocka_unit_test(locations),
		cmocka_unit_test(authorization_forwarding),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
