/* common/status.c: the one outcome table and its lookups. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/status.h"

/* The catalog of CONTRACT.md section 2, row by row. */
static void catalog_rows(void **state)
{
	static const struct {
		enum das_status st;
		int grpc, http;
		const char *reason;
	} rows[] = {
		{DAS_UNAUTHENTICATED, 16, 401, "UNAUTHENTICATED"},
		{DAS_INVALID_TENANT_ID, 3, 400, "INVALID_TENANT_ID"},
		{DAS_INVALID_ID, 3, 400, "INVALID_ID"},
		{DAS_FORBIDDEN, 7, 403, "FORBIDDEN"},
		{DAS_INVALID_CLIENT_TYPE, 3, 400, "INVALID_CLIENT_TYPE"},
		{DAS_CUSTOMER_NOT_FOUND, 5, 404, "CUSTOMER_NOT_FOUND"},
		{DAS_USER_NOT_FOUND, 5, 404, "USER_NOT_FOUND"},
		{DAS_DEVICE_NOT_FOUND, 5, 404, "DEVICE_NOT_FOUND"},
		{DAS_MISSING_ROLES, 9, 400, "MISSING_ROLES"},
		{DAS_CHARGES_NOT_ACCEPTED, 9, 402, "CHARGES_NOT_ACCEPTED"},
		{DAS_UNAVAILABLE, 14, 503, "UNAVAILABLE"},
		{DAS_STORE_UNAVAILABLE, 14, 503, "STORE_UNAVAILABLE"},
		{DAS_DEADLINE_EXCEEDED, 4, 504, "DEADLINE_EXCEEDED"},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct das_status_row *r = das_status_row(rows[i].st);
		assert_int_equal(r->grpc_code, rows[i].grpc);
		assert_int_equal(r->http_status, rows[i].http);
		assert_string_equal(r->reason, rows[i].reason);
		/* and back: what a gateway sees maps to the same row */
		assert_ptr_equal(das_status_from_grpc(rows[i].grpc,
						      rows[i].reason),
				 r);
	}
	assert_string_equal(das_status_row(DAS_CUSTOMER_NOT_FOUND)->message,
			    "Not Found");
	assert_string_equal(das_status_row(DAS_USER_NOT_FOUND)->message,
			    "User not found");
	assert_string_equal(das_status_row(DAS_DEVICE_NOT_FOUND)->message,
			    "Device not found");
	assert_string_equal(das_status_row(DAS_CHARGES_NOT_ACCEPTED)->message,
			    "additional charges apply");
	assert_string_equal(das_status_row(DAS_UNAUTHENTICATED)->message,
			    "Unauthorized");
	assert_string_equal(das_status_row(DAS_FORBIDDEN)->message,
			    "Forbidden");
}

/*
 * A row answered over gRPC only (http_status 0) is never what an upstream
 * answer maps to: the gateway cannot turn any code and reason into it.
 */
static void grpc_only_rows_never_mapped(void **state)
{
	(void)state;
	assert_int_equal(das_status_row(DAS_UNKNOWN_SERVICE)->http_status, 0);
	assert_int_equal(das_status_row(DAS_UNKNOWN_SERVICE)->grpc_code, 5);
	for (int code = 0; code <= 16; code++) {
		assert_int_not_equal(das_status_from_grpc(code, NULL)->http_status,
				     0);
		assert_int_not_equal(das_status_from_grpc(code, "")->http_status,
				     0);
		for (int s = 0; s < DAS_STATUS__COUNT; s++) {
			const char *reason =
				das_status_row((enum das_status)s)->reason;
			assert_int_not_equal(
				das_status_from_grpc(code, reason)->http_status,
				0);
		}
	}
}

static void lookup_without_reason(void **state)
{
	(void)state;
	assert_int_equal(das_status_from_grpc(0, NULL)->http_status, 201);
	assert_int_equal(das_status_from_grpc(16, NULL)->http_status, 401);
	assert_int_equal(das_status_from_grpc(7, "")->http_status, 403);
	assert_int_equal(das_status_from_grpc(14, NULL)->http_status, 503);
	assert_int_equal(das_status_from_grpc(4, NULL)->http_status, 504);
	assert_int_equal(das_status_from_grpc(3, NULL)->http_status, 400);
	assert_int_equal(das_status_from_grpc(5, "SOMETHING_ELSE")->http_status,
			 404);
	/* codes we never send, and a reason paired with the wrong code */
	assert_int_equal(das_status_from_grpc(2, NULL)->http_status, 500);
	assert_int_equal(das_status_from_grpc(13, NULL)->http_status, 500);
	assert_int_equal(das_status_from_grpc(12, "UNKNOWN")->http_status, 500);
	assert_int_equal(
		das_status_from_grpc(3, "CHARGES_NOT_ACCEPTED")->http_status,
		400);
	assert_int_equal(das_status_row((enum das_status)9999)->http_status,
			 500);
}

static void message_templates(void **state)
{
	char buf[64];

	(void)state;
	assert_string_equal(das_status_format(DAS_INVALID_TENANT_ID, "abc",
					      buf, sizeof(buf)),
			    "The value 'abc' is not valid.");
	assert_string_equal(
		das_status_format(DAS_FORBIDDEN, "ignored", buf, sizeof(buf)),
		"Forbidden");
	assert_string_equal(das_status_format(DAS_INVALID_ID, NULL, buf,
					      sizeof(buf)),
			    "The value '' is not valid.");
	/* truncation keeps a terminated string */
	das_status_format(DAS_INVALID_ID, "0123456789", buf, 12);
	assert_string_equal(buf, "The value '");
	/* a template never interprets the argument */
	assert_string_equal(das_status_format(DAS_INVALID_ID, "%s%n", buf,
					      sizeof(buf)),
			    "The value '%s%n' is not valid.");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(catalog_rows),
		cmocka_unit_test(lookup_without_reason),
		cmocka_unit_test(grpc_only_rows_never_mapped),
		cmocka_unit_test(message_templates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
