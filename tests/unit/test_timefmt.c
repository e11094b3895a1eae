/* common/timefmt.c: UTC ISO 8601 with exactly 7 fractional digits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/timefmt.h"

static void check(int64_t s, int32_t ns, const char *want)
{
	char buf[DAS_TIMESTAMP_SIZE];
	struct das_time t = {s, ns};

	assert_int_equal(das_time_format(t, buf), 0);
	assert_string_equal(buf, want);
	assert_int_equal(strlen(buf), DAS_TIMESTAMP_SIZE - 1);
}

static void known_instants(void **state)
{
	(void)state;
	check(0, 0, "1970-01-01T00:00:00.0000000Z");
	/* the vendor page's example */
	check(1575043403, 925168000, "2019-11-29T16:03:23.9251680Z");
	check(1580993127, 590346500, "2020-02-06T12:45:27.5903465Z");
	/* 100 ns precision, truncated not rounded */
	check(0, 99, "1970-01-01T00:00:00.0000000Z");
	check(0, 999999999, "1970-01-01T00:00:00.9999999Z");
	/* leap day, end of year, far ends */
	check(951782400, 0, "2000-02-29T00:00:00.0000000Z");
	check(1704067199, 0, "2023-12-31T23:59:59.0000000Z");
	check(-1, 0, "1969-12-31T23:59:59.0000000Z");
	check(-62135596800LL, 0, "0001-01-01T00:00:00.0000000Z");
	check(253402300799LL, 0, "9999-12-31T23:59:59.0000000Z");
}

static int64_t parsed(const char *s, int32_t *nanos)
{
	struct das_time t = {-1, -1};

	assert_int_equal(das_time_parse(s, strlen(s), &t), 0);
	if (nanos)
		*nanos = t.nanos;
	return t.seconds;
}

static void rfc3339_parse(void **state)
{
	static const char *const bad[] = {
		"",
		"2026-12-01",
		"2026-12-01T10:00:00",
		"2026-12-01T10:00:00ZZ",
		"2026-13-01T10:00:00Z",
		"2026-02-29T10:00:00Z",
		"2026-12-01T10:60:00Z",
		"2026-12-01T10:00:60Z",
		"2026-12-01T10:00:00.Z",
		"2026-12-01T10:00:00.1234567891Z",
		"2026-12-01T10:00:00+1:00",
		"2026-12-01T10:00:00+24:00",
		"0000-12-01T10:00:00Z",
		"2026-12-01 10:00:00Z",
		"+026-12-01T10:00:00Z",
	};
	struct das_time t = {7, 7};
	int32_t ns = 0;

	(void)state;
	assert_int_equal(parsed("1970-01-01T00:00:00Z", NULL), 0);
	assert_int_equal(parsed("2019-11-29T16:03:23.9251680Z", &ns),
			 1575043403);
	assert_int_equal(ns, 925168000);
	assert_int_equal(parsed("2019-11-29t17:03:23.1z", &ns) ,
			 1575043403 + 3600);
	assert_int_equal(ns, 100000000);
	assert_int_equal(parsed("2019-11-29T17:03:23+01:00", NULL),
			 1575043403);
	assert_int_equal(parsed("2019-11-29T15:33:23-00:30", NULL),
			 1575043403);
	assert_int_equal(parsed("2019-11-29T17:03:23 01:00", NULL),
			 1575043403);
	assert_int_equal(parsed("2024-02-29T00:00:00.000000001Z", &ns),
			 1709164800);
	assert_int_equal(ns, 1);
	assert_int_equal(parsed("0001-01-01T00:00:00Z", NULL), -62135596800LL);
	assert_int_equal(parsed("9999-12-31T23:59:59Z", NULL), 253402300799LL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (das_time_parse(bad[i], strlen(bad[i]), &t) != -1)
			fail_msg("accepted '%s'", bad[i]);
	}
	assert_int_equal(t.seconds, 7); /* untouched */
}

static void out_of_range(void **state)
{
	char buf[DAS_TIMESTAMP_SIZE];
	struct das_time t;

	(void)state;
	t = (struct das_time){253402300800LL, 0};
	assert_int_equal(das_time_format(t, buf), -1);
	assert_string_equal(buf, "");
	t = (struct das_time){-62135596801LL, 0};
	assert_int_equal(das_time_format(t, buf), -1);
	t = (struct das_time){0, -1};
	assert_int_equal(das_time_format(t, buf), -1);
	t = (struct das_time){0, 1000000000};
	assert_int_equal(das_time_format(t, buf), -1);
}

static void now_formats(void **state)
{
	char buf[DAS_TIMESTAMP_SIZE];

	(void)state;
	assert_int_equal(das_time_format(das_time_now(), buf), 0);
	assert_int_equal(buf[4], '-');
	assert_int_equal(buf[10], 'T');
	assert_int_equal(buf[19], '.');
	assert_int_equal(buf[27], 'Z');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(known_instants),
		cmocka_unit_test(rfc3339_parse),
		cmocka_unit_test(out_of_range),
		cmocka_unit_test(now_formats),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
