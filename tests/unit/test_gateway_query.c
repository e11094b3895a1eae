/* gateway/query.c: the ledger's query string, checked before any RPC. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/query.h"

static int parse(const char *q, struct gw_ledger_params *p, char *reason)
{
	return gw_query_parse_ledger(q, strlen(q), p, reason);
}

static void defaults(void **state)
{
	struct gw_ledger_params p;
	char reason[GW_QUERY_REASON_SIZE];
	(void)state;

	assert_int_equal(parse("", &p, reason), 0);
	assert_int_equal(p.page_size, 100);
	assert_int_equal(p.order, GW_LEDGER_NEWEST_FIRST);
	assert_false(p.has_since);
	assert_false(p.has_until);
	assert_false(p.is_only_charged);
	assert_string_equal(p.user, "");
	assert_string_equal(p.page_token, "");
	/* Empty pieces between '&' are ignored. */
	assert_int_equal(parse("&&pageSize=7&", &p, reason), 0);
	assert_int_equal(p.page_size, 7);
}

static void every_parameter(void **state)
{
	struct gw_ledger_params p;
	char reason[GW_QUERY_REASON_SIZE];
	(void)state;

	assert_int_equal(
		parse("userId=alice&deviceId=al%69ce-desk.01&since=2026-12-01T"
		      "10%3A00%3A00Z&until=2026-12-01T12:00:00.5%2B01:00&"
		      "onlyCharged=true&pageSize=500&pageToken=AbC-_9&"
		      "order=oldest",
		      &p, reason),
		0);
	assert_string_equal(p.user, "alice");
	assert_string_equal(p.device, "alice-desk.01");
	assert_true(p.has_since);
	assert_int_equal(p.since.seconds, 1796119200);
	assert_int_equal(p.since.nanos, 0);
	assert_true(p.has_until);
	assert_int_equal(p.until.seconds, 1796119200 + 3600);
	assert_int_equal(p.until.nanos, 500000000);
	assert_true(p.is_only_charged);
	assert_int_equal(p.page_size, 500);
	assert_string_equal(p.page_token, "AbC-_9");
	assert_int_equal(p.order, GW_LEDGER_OLDEST_FIRST);
	/* Form encoding made the offset's '+' a space: read back as '+'. */
	assert_int_equal(parse("since=2026-12-01T11:00:00 01:00", &p, reason),
			 0);
	assert_int_equal(p.since.seconds, 1796119200);
	assert_int_equal(parse("onlyCharged=false&order=newest&pageSize=1",
			       &p, reason),
			 0);
	assert_false(p.is_only_charged);
	assert_int_equal(p.page_size, 1);
	/* Percent-encoded digits decode like any value. */
	assert_int_equal(parse("pageSize=%31%30", &p, reason), 0);
	assert_int_equal(p.page_size, 10);
	assert_int_equal(parse("pageToken=&pageToken2", &p, reason), -1);
	assert_int_equal(parse("pageToken=", &p, reason), 0);
}

/* Each bad value is a 400 whose reason names its parameter. */
static void bad_values_name_the_parameter(void **state)
{
	static const struct {
		const char *query;
		const char *names;
	} cases[] = {
		{"pageSize=0", "pageSize"},
		{"pageSize=501", "pageSize"},
		{"pageSize=-1", "pageSize"},
		{"pageSize=1e2", "pageSize"},
		{"pageSize=", "pageSize"},
		{"pageSize", "pageSize"},
		{"pageSize=0100", "pageSize"}, /* at most three digits */
		{"onlyCharged=yes", "onlyCharged"},
		{"onlyCharged=TRUE", "onlyCharged"},
		{"order=asc", "order"},
		{"since=yesterday", "since"},
		{"since=2026-02-30T00:00:00Z", "since"},
		{"since=2026-12-01T24:00:00Z", "since"},
		{"since=2026-12-01T10:00:00", "since"},
		{"until=2026-12-01T10:00:00.1234567890Z", "until"},
		{"until=2026-12-01T10:00:00.Z", "until"},
		{"userId=", "userId"},
		{"userId=a%20b", "userId"},
		{"userId=%00x", "userId"},
		{"deviceId=%zz", "deviceId"},
		{"deviceId=%4", "deviceId"},
		{"userId=a&userId=b", "userId"},
		{"nope=1", "nope"},
		{"UserId=a", "UserId"},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct gw_ledger_params p;
		char reason[GW_QUERY_REASON_SIZE] = "";
		int rc = parse(cases[i].query, &p, reason);

		if (rc != -1 || !strstr(reason, cases[i].names))
			fail_msg("%s: rc %d reason '%s'", cases[i].query, rc,
				 reason);
	}
}

static void bounds(void **state)
{
	static char big[GW_QUERY_MAX + 64];
	struct gw_ledger_params p;
	char reason[GW_QUERY_REASON_SIZE];
	char id[80];
	(void)state;

	memset(big, 'a', sizeof(big) - 1);
	assert_int_equal(gw_query_parse_ledger(big, sizeof(big) - 1, &p,
					       reason),
			 -1);
	assert_non_null(strstr(reason, "too long"));
	memset(id, 'x', sizeof(id));
	memcpy(id, "userId=", 7);
	id[7 + 64] = '\0';
	assert_int_equal(parse(id, &p, reason), 0); /* 64 chars */
	id[7 + 64] = 'x';
	id[7 + 65] = '\0';
	assert_int_equal(parse(id, &p, reason), -1);
	/* A token over 128 bytes cannot be ours. */
	memset(big, 'A', 200);
	memcpy(big, "pageToken=", 10);
	big[200] = '\0';
	assert_int_equal(parse(big, &p, reason), -1);
	assert_non_null(strstr(reason, "pageToken"));
	/* Unknown names are shown printable and cut. */
	assert_int_equal(parse("%01%02xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx=1",
			       &p, reason),
			 -1);
	assert_null(strchr(reason, '\x01'));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(defaults),
		cmocka_unit_test(every_parameter),
		cmocka_unit_test(bad_values_name_the_parameter),
		cmocka_unit_test(bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
