/* common/ids.c: tenant GUIDs, user/device ids, client types. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/ids.h"

#define CANON "0f8fad5b-d9cb-469f-a165-70867728950e"

static void assert_guid_ok(const char *in)
{
	char out[DAS_GUID_SIZE];

	memset(out, 'x', sizeof(out));
	assert_int_equal(das_guid_normalize(in, strlen(in), out), 0);
	assert_string_equal(out, CANON);
}

static void assert_guid_bad(const char *in, size_t len)
{
	char out[DAS_GUID_SIZE] = "untouched";

	assert_int_equal(das_guid_normalize(in, len, out), -1);
	assert_string_equal(out, "untouched");
}

static void guid_accepted_forms(void **state)
{
	(void)state;
	assert_guid_ok(CANON);
	assert_guid_ok("0F8FAD5B-D9CB-469F-A165-70867728950E");
	assert_guid_ok("0f8fad5bd9cb469fa16570867728950e");
	assert_guid_ok("0F8FAD5BD9CB469FA16570867728950E");
	assert_guid_ok("{0f8fad5b-d9cb-469f-a165-70867728950e}");
	assert_guid_ok("{0F8FAD5BD9CB469FA16570867728950E}");
	assert_guid_ok("0f8FaD5b-D9cb-469F-a165-70867728950E");
}

static void guid_rejections(void **state)
{
	(void)state;
	assert_guid_bad("", 0);
	assert_guid_bad(NULL, 0);
	assert_guid_bad("not-a-guid", 10);
	/* one digit short / long */
	assert_guid_bad("0f8fad5b-d9cb-469f-a165-70867728950", 35);
	assert_guid_bad("0f8fad5b-d9cb-469f-a165-70867728950e0", 37);
	assert_guid_bad("0f8fad5bd9cb469fa16570867728950", 31);
	assert_guid_bad("0f8fad5bd9cb469fa16570867728950e0", 33);
	/* non-hex digit */
	assert_guid_bad("0g8fad5b-d9cb-469f-a165-70867728950e", 36);
	assert_guid_bad("0f8fad5bd9cb469fa16570867728950z", 32);
	/* dashes misplaced or mixed forms */
	assert_guid_bad("0f8fad5bd-9cb-469f-a165-70867728950e", 36);
	assert_guid_bad("0f8fad5b-d9cb469f-a165-70867728950e-", 36);
	assert_guid_bad("0f8fad5b_d9cb_469f_a165_70867728950e", 36);
	/* unbalanced braces, braces only on one side, doubled */
	assert_guid_bad("{0f8fad5b-d9cb-469f-a165-70867728950e", 37);
	assert_guid_bad("0f8fad5b-d9cb-469f-a165-70867728950e}", 37);
	assert_guid_bad("{{0f8fad5b-d9cb-469f-a165-70867728950e}}", 40);
	assert_guid_bad("{}", 2);
	/* whitespace, embedded NUL counted by len */
	assert_guid_bad(" 0f8fad5b-d9cb-469f-a165-70867728950e", 37);
	assert_guid_bad("0f8fad5b-d9cb-469f-a165-70867728950e ", 37);
	assert_guid_bad("0f8fad5b-d9cb-469f-a165-7086772\0950e", 36);
	/* a valid GUID but len says less */
	assert_guid_bad(CANON, 20);
}

static void id_charset_and_length(void **state)
{
	char long_id[DAS_ID_MAX + 2];

	(void)state;
	assert_true(das_id_is_valid("u1", 2));
	assert_true(das_id_is_valid("A.b_c-9", 7));
	assert_true(das_id_is_valid("x", 1));
	memset(long_id, 'a', sizeof(long_id));
	assert_true(das_id_is_valid(long_id, DAS_ID_MAX));
	assert_false(das_id_is_valid(long_id, DAS_ID_MAX + 1));
	assert_false(das_id_is_valid("", 0));
	assert_false(das_id_is_valid(NULL, 0));
	assert_false(das_id_is_valid("a b", 3));
	assert_false(das_id_is_valid("a/b", 3));
	assert_false(das_id_is_valid("a%2Fb", 5));
	assert_false(das_id_is_valid("é", 2));
	assert_false(das_id_is_valid("a\0b", 3));
	assert_false(das_id_is_valid("a:b", 3));
	assert_false(das_id_is_valid("a\nb", 3));
}

static void client_types(void **state)
{
	(void)state;
	assert_int_equal(das_client_type_parse("desktop", 7),
			 DAS_CLIENT_DESKTOP);
	assert_int_equal(das_client_type_parse("DeskTop", 7),
			 DAS_CLIENT_DESKTOP);
	assert_int_equal(das_client_type_parse("MOBILE", 6), DAS_CLIENT_MOBILE);
	assert_int_equal(das_client_type_parse("WebRTC", 6), DAS_CLIENT_WEBRTC);
	assert_int_equal(das_client_type_parse("crm", 3), DAS_CLIENT_CRM);
	assert_int_equal(das_client_type_parse("desk", 4), DAS_CLIENT_NONE);
	assert_int_equal(das_client_type_parse("desktop ", 8), DAS_CLIENT_NONE);
	assert_int_equal(das_client_type_parse("", 0), DAS_CLIENT_NONE);
	assert_int_equal(das_client_type_parse(NULL, 0), DAS_CLIENT_NONE);
	assert_int_equal(das_client_type_parse("bureau", 6), DAS_CLIENT_NONE);
	assert_string_equal(das_client_type_name(DAS_CLIENT_WEBRTC), "webrtc");
	assert_string_equal(das_client_type_name(0), "");
	assert_string_equal(das_client_type_name(99), "");
	assert_string_equal(das_client_type_name(-1), "");
	assert_false(das_client_type_is_valid(0));
	assert_true(das_client_type_is_valid(4));
	assert_false(das_client_type_is_valid(5));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(guid_accepted_forms),
		cmocka_unit_test(guid_rejections),
		cmocka_unit_test(id_charset_and_length),
		cmocka_unit_test(client_types),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
