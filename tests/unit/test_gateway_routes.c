/* The gateway's route table and path decoding (gateway/routes.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/routes.h"

#define T "8f5b7c1e-0a3d-4c5e-9f00-112233445566"

static enum gw_route_result match(const char *method, const char *path,
				  struct gw_route_match *m)
{
	return gw_route_match(method, path, strlen(path), m);
}

static void expect_ok(const char *method, const char *path,
		      enum gw_route_rpc rpc, const char *account,
		      const char *tenant, const char *user, const char *device)
{
	struct gw_route_match m;

	assert_int_equal(match(method, path, &m), GW_ROUTE_OK);
	assert_int_equal(m.rpc, rpc);
	assert_int_equal(m.has_account, account != NULL);
	if (account)
		assert_string_equal(m.account, account);
	assert_string_equal(m.tenant, tenant);
	assert_string_equal(m.user, user);
	assert_string_equal(m.device, device);
}

static void every_form_matches(void **state)
{
	static const char *const prefixes[] = {"", "/api"};
	static const char *const methods[] = {"PUT", "POST"};
	char path[512];

	for (int p = 0; p < 2; p++) {
		for (int k = 0; k < 2; k++) {
			snprintf(path, sizeof(path),
				 "%s/v1.0/customers/" T
				 "/users/u1/devices/pbx/d1/assign",
				 prefixes[p]);
			expect_ok(methods[k], path, GW_ROUTE_ASSIGN, NULL, T,
				  "u1", "d1");
			snprintf(path, sizeof(path),
				 "%s/v1.0/customers/" T
				 "/users/u1/devices/pbx/d1/unassign",
				 prefixes[p]);
			expect_ok(methods[k], path, GW_ROUTE_UNASSIGN, NULL, T,
				  "u1", "d1");
			snprintf(path, sizeof(path),
				 "%s/v1.0/accounts/acc/customers/" T
				 "/users/u1/devices/pbx/d1/assign",
				 prefixes[p]);
			expect_ok(methods[k], path, GW_ROUTE_ASSIGN, "acc", T,
				  "u1", "d1");
			snprintf(path, sizeof(path),
				 "%s/v1.0/accounts/acc/customers/" T
				 "/users/u1/devices/pbx/d1/unassign",
				 prefixes[p]);
			expect_ok(methods[k], path, GW_ROUTE_UNASSIGN, "acc", T,
				  "u1", "d1");
		}
		snprintf(path, sizeof(path),
			 "%s/v1.0/customers/" T "/users/u1/devices/pbx",
			 prefixes[p]);
		expect_ok("GET", path, GW_ROUTE_LIST, NULL, T, "u1", "");
		snprintf(path, sizeof(path),
			 "%s/v1.0/accounts/a/customers/" T
			 "/users/u1/devices/pbx",
			 prefixes[p]);
		expect_ok("GET", path, GW_ROUTE_LIST, "a", T, "u1", "");
	}
	expect_ok("GET", "/healthz", GW_ROUTE_HEALTHZ, NULL, "", "", "");
	expect_ok("HEAD", "/healthz", GW_ROUTE_HEALTHZ, NULL, "", "", "");
	expect_ok("HEAD", "/v1.0/customers/" T "/users/u1/devices/pbx",
		  GW_ROUTE_LIST, NULL, T, "u1", "");
	expect_ok("GET", "/readyz", GW_ROUTE_READYZ, NULL, "", "", "");
}

static void discovery_routes_match(void **state)
{
	struct gw_route_match m;

	expect_ok("GET", "/openapi.json", GW_ROUTE_OPENAPI, NULL, "", "", "");
	expect_ok("HEAD", "/openapi.json", GW_ROUTE_OPENAPI, NULL, "", "", "");
	expect_ok("GET", "/docs", GW_ROUTE_DOCS, NULL, "", "", "");
	assert_int_equal(match("GET", "/docs/swagger-ui.css", &m), GW_ROUTE_OK);
	assert_int_equal(m.rpc, GW_ROUTE_DOCS_ASSET);
	assert_string_equal(m.file, "swagger-ui.css");
	/* One segment only: no way out of the docs folder. */
	assert_int_equal(match("GET", "/docs/a/b", &m), GW_ROUTE_NOT_FOUND);
	assert_int_equal(match("GET", "/docs/%2E%2E%2Fx", &m), GW_ROUTE_OK);
	assert_string_equal(m.file, "../x");
	assert_int_equal(match("GET", "/docs/..", &m), GW_ROUTE_BAD_REQUEST);
	assert_int_equal(match("GET", "/api/openapi.json", &m),
			 GW_ROUTE_NOT_FOUND);
	assert_int_equal(match("PUT", "/openapi.json", &m),
			 GW_ROUTE_METHOD_NOT_ALLOWED);
	assert_string_equal(m.allow, "GET, HEAD");
	assert_int_equal(match("POST", "/docs", &m),
			 GW_ROUTE_METHOD_NOT_ALLOWED);
}

static void table_is_listed(void **state)
{
	size_t n = gw_route_count(), n_upstream = 0;

	assert_true(n >= 11);
	for (size_t i = 0; i < n; i++) {
		struct gw_route_info r;
		gw_route_get(i, &r);
		assert_non_null(r.segments[0]);
		assert_non_null(r.allow);
		n_upstream += gw_route_rpc_is_upstream(r.rpc);
	}
	assert_true(n_upstream >= 6); /* 3 RPCs x 2 path forms, at least */
}

static void ids_are_passed_unvalidated(void **state)
{
	/* A bad GUID and odd ids are the service's to judge. */
	expect_ok("PUT",
		  "/v1.0/customers/not-a-guid/users/u%20x/devices/pbx/"
		  "%7Bd%7D/assign",
		  GW_ROUTE_ASSIGN, NULL, "not-a-guid", "u x", "{d}");
	expect_ok("PUT",
		  "/v1.0/customers/{" T "}/users/U.1_-/devices/pbx/d/assign",
		  GW_ROUTE_ASSIGN, NULL, "{" T "}", "U.1_-", "d");
	/* Bytes above ASCII arrive percent-encoded and go on as bytes. */
	expect_ok("PUT",
		  "/v1.0/customers/t/users/%C3%A9/devices/pbx/%FF/assign",
		  GW_ROUTE_ASSIGN, NULL, "t", "\xc3\xa9", "\xff");
	/* Encoded dots are data, not dot segments. */
	expect_ok("PUT", "/v1.0/customers/t/users/%2E%2E/devices/pbx/d/assign",
		  GW_ROUTE_ASSIGN, NULL, "t", "..", "d");
}

static void encoded_slash_stays_in_its_segment(void **state)
{
	struct gw_route_match m;

	expect_ok("PUT", "/v1.0/customers/t/users/a%2Fb/devices/pbx/d/assign",
		  GW_ROUTE_ASSIGN, NULL, "t", "a/b", "d");
	/* An encoded slash cannot turn a list path into an assign path. */
	assert_int_equal(
		match("PUT",
		      "/v1.0/customers/t/users/u/devices/pbx%2Fd%2Fassign", &m),
		GW_ROUTE_NOT_FOUND);
	assert_int_equal(
		match("GET", "/v1.0%2Fcustomers/t/users/u/devices/pbx", &m),
		GW_ROUTE_NOT_FOUND);
}

static void unknown_paths_are_404(void **state)
{
	static const char *const paths[] = {
		"/",
		"",
		"*",
		"http://example.com/healthz",
		"/v1.0",
		"/v1.0/customers/t/users/u/devices/pbx/d",
		"/v1.0/customers/t/users/u/devices/pbx/d/assign/x",
		"/v1.0/customers/t/users/u/devices/pbx/d/Assign",
		"/V1.0/customers/t/users/u/devices/pbx/d/assign",
		"/v2.0/customers/t/users/u/devices/pbx/d/assign",
		"/api/api/v1.0/customers/t/users/u/devices/pbx/d/assign",
		"/api/healthz",
		"/v1.0//customers/t/users/u/devices/pbx/d/assign",
		"/v1.0/customers//users/u/devices/pbx/d/assign",
		"//v1.0/customers/t/users/u/devices/pbx/d/assign",
		"/v1.0/customers/t/users/u/devices/pbx/d/assign/",
		"/v1.0/customers/t/users/u/devices/pbx/",
		"/healthz/",
		"/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t",
		"/v1.0/accounts/a/customers/t/users/u/devices/pbx/d",
	};
	struct gw_route_match m;

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		enum gw_route_result rc = match("PUT", paths[i], &m);
		if (rc != GW_ROUTE_NOT_FOUND)
			fail_msg("%s: got %d", paths[i], (int)rc);
	}
}

/* GET .../ledger and .../softphone-seats, short and account forms. */
static void ledger_and_seats_routes(void **state)
{
	static const char *const prefixes[] = {"", "/api"};
	struct gw_route_match m;
	char path[256];

	(void)state;
	for (int p = 0; p < 2; p++) {
		snprintf(path, sizeof(path), "%s/v1.0/customers/" T "/ledger",
			 prefixes[p]);
		expect_ok("GET", path, GW_ROUTE_LEDGER, NULL, T, "", "");
		expect_ok("HEAD", path, GW_ROUTE_LEDGER, NULL, T, "", "");
		assert_int_equal(match("POST", path, &m),
				 GW_ROUTE_METHOD_NOT_ALLOWED);
		assert_string_equal(m.allow, "GET, HEAD");
		snprintf(path, sizeof(path),
			 "%s/v1.0/accounts/acc/customers/" T
			 "/ledger?pageSize=5&userId=u",
			 prefixes[p]);
		expect_ok("GET", path, GW_ROUTE_LEDGER, "acc", T, "", "");
		snprintf(path, sizeof(path),
			 "%s/v1.0/customers/" T "/softphone-seats",
			 prefixes[p]);
		expect_ok("GET", path, GW_ROUTE_SEATS, NULL, T, "", "");
		snprintf(path, sizeof(path),
			 "%s/v1.0/accounts/acc/customers/" T
			 "/softphone-seats",
			 prefixes[p]);
		expect_ok("GET", path, GW_ROUTE_SEATS, "acc", T, "", "");
		assert_int_equal(match("PUT", path, &m),
				 GW_ROUTE_METHOD_NOT_ALLOWED);
	}
	assert_int_equal(match("GET", "/v1.0/customers/" T "/ledger/x", &m),
			 GW_ROUTE_NOT_FOUND);
	assert_int_equal(match("GET", "/v1.0/customers/" T "/seats", &m),
			 GW_ROUTE_NOT_FOUND);
	assert_string_equal(gw_route_rpc_name(GW_ROUTE_LEDGER), "ledger");
	assert_string_equal(gw_route_rpc_name(GW_ROUTE_SEATS), "seats");
}

static void wrong_method_is_405_with_allow(void **state)
{
	struct gw_route_match m;

	assert_int_equal(match("GET",
			       "/v1.0/customers/t/users/u/devices/pbx/d/assign",
			       &m),
			 GW_ROUTE_METHOD_NOT_ALLOWED);
	assert_string_equal(m.allow, "PUT, POST");
	assert_int_equal(
		match("DELETE",
		      "/api/v1.0/accounts/a/customers/t/users/u/devices/pbx/d/"
		      "unassign",
		      &m),
		GW_ROUTE_METHOD_NOT_ALLOWED);
	assert_string_equal(m.allow, "PUT, POST");
	assert_int_equal(
		match("PUT", "/v1.0/customers/t/users/u/devices/pbx", &m),
		GW_ROUTE_METHOD_NOT_ALLOWED);
	assert_string_equal(m.allow, "GET, HEAD");
	assert_int_equal(match("POST", "/healthz", &m),
			 GW_ROUTE_METHOD_NOT_ALLOWED);
	assert_string_equal(m.allow, "GET, HEAD");
	assert_int_equal(match("put", "/readyz", &m),
			 GW_ROUTE_METHOD_NOT_ALLOWED);
}

static void malformed_paths_are_400(void **state)
{
	static const char *const paths[] = {
		"/v1.0/customers/t%00/users/u/devices/pbx/d/assign",
		"/v1.0/customers/t/users/u%0/devices/pbx/d/assign",
		"/v1.0/customers/t/users/u%/devices/pbx/d/assign",
		"/v1.0/customers/t/users/u/devices/pbx/d%zz/assign",
		"/v1.0/customers/t/users/u/devices/pbx/d%G1/assign",
		"/v1.0/customers/./users/u/devices/pbx/d/assign",
		"/v1.0/customers/t/users/../devices/pbx/d/assign",
		"/v1.0/customers/t/users/u/devices/pbx/d/../assign",
		"/v1.0/customers/t/users/u\x01/devices/pbx/d/assign",
		"/v1.0/customers/t/users/u\x7f/devices/pbx/d/assign",
		"/v1.0/customers/t/users/u\xc3\xa9/devices/pbx/d/assign",
		"/v1.0/customers/t/users/u#x/devices/pbx/d/assign",
		"/v1.0/customers/t/users/u x/devices/pbx/d/assign",
		"/nope/%00",
	};
	struct gw_route_match m;

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		enum gw_route_result rc = match("PUT", paths[i], &m);
		if (rc != GW_ROUTE_BAD_REQUEST)
			fail_msg("%s: got %d", paths[i], (int)rc);
		assert_non_null(m.reason);
	}
}

static void long_paths_are_bounded(void **state)
{
	char path[GW_PATH_MAX + 200], seg[GW_PARAM_MAX + 2];
	struct gw_route_match m;

	/* A parameter of exactly the bound passes... */
	memset(seg, 'a', GW_PARAM_MAX);
	seg[GW_PARAM_MAX] = '\0';
	snprintf(path, sizeof(path),
		 "/v1.0/customers/t/users/%s/devices/pbx/d/assign", seg);
	assert_int_equal(match("PUT", path, &m), GW_ROUTE_OK);
	assert_int_equal(strlen(m.user), GW_PARAM_MAX);
	/* ...one more byte does not. */
	seg[GW_PARAM_MAX] = 'a';
	seg[GW_PARAM_MAX + 1] = '\0';
	snprintf(path, sizeof(path),
		 "/v1.0/customers/t/users/%s/devices/pbx/d/assign", seg);
	assert_int_equal(match("PUT", path, &m), GW_ROUTE_BAD_REQUEST);
	/* Encoded bytes count after decoding: 200 x "%41" is 200 bytes. */
	size_t o = 0;
	for (int i = 0; i < 200; i++) {
		memcpy(path + o, "%41", 3);
		o += 3;
	}
	path[o] = '\0';
	char full[GW_PATH_MAX + 200];
	/* The length is checked (at -O0 gcc warns about a possible truncation
	 * when the result is unused). */
	int n = snprintf(full, sizeof(full),
			 "/v1.0/customers/t/users/u/devices/pbx/%s/assign",
			 path);
	assert_true(n > 0 && (size_t)n < sizeof(full));
	assert_int_equal(match("PUT", full, &m), GW_ROUTE_OK);
	assert_int_equal(strlen(m.device), 200);
	/* A whole path over GW_PATH_MAX is refused before anything else. */
	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	assert_int_equal(match("GET", path, &m), GW_ROUTE_BAD_REQUEST);
}

static void query_string_is_ignored(void **state)
{
	expect_ok("PUT",
		  "/v1.0/customers/t/users/u/devices/pbx/d/assign?x=%00&y",
		  GW_ROUTE_ASSIGN, NULL, "t", "u", "d");
	expect_ok("GET", "/healthz?", GW_ROUTE_HEALTHZ, NULL, "", "", "");
	struct gw_route_match m;
	assert_int_equal(match("GET",
			       "/v1.0/customers/t/users/u/devices/pbx/"
			       "?q",
			       &m),
			 GW_ROUTE_NOT_FOUND);
}

static void target_need_not_be_terminated(void **state)
{
	static const char buf[] =
		"/v1.0/customers/t/users/u/devices/pbx/d/assignXYZ";
	struct gw_route_match m;

	assert_int_equal(gw_route_match("PUT", buf, sizeof(buf) - 4, &m),
			 GW_ROUTE_OK);
	assert_int_equal(m.rpc, GW_ROUTE_ASSIGN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_form_matches),
		cmocka_unit_test(discovery_routes_match),
		cmocka_unit_test(table_is_listed),
		cmocka_unit_test(ids_are_passed_unvalidated),
		cmocka_unit_test(encoded_slash_stays_in_its_segment),
		cmocka_unit_test(unknown_paths_are_404),
		cmocka_unit_test(wrong_method_is_405_with_allow),
		cmocka_unit_test(ledger_and_seats_routes),
		cmocka_unit_test(malformed_paths_are_400),
		cmocka_unit_test(long_paths_are_bounded),
		cmocka_unit_test(query_string_is_ignored),
		cmocka_unit_test(target_need_not_be_terminated),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
