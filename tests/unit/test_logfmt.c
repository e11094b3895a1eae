/*
 * common/logfmt.c against byte-at-a-time definitions (the ones log.c used
 * before): the escapers on every byte value, on strings of every length
 * around the 16-byte steps at every alignment, with escapes anywhere;
 * decimals, milliseconds and timestamps against printf and
 * das_time_format. Both builds of the escapers are checked: the SSE2 one
 * (when the compiler targets it) and the portable one, compiled here a
 * second time under other names. Sources are exact-size heap copies, so
 * AddressSanitizer sees any read past a string; output past what a
 * function returns plus DAS_LOGFMT_SLACK is checked untouched.
 */
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/logfmt.h"
#include "common/timefmt.h"

/* The portable escapers, under other names. */
#define DAS_LOGFMT_PORTABLE
#define das_logfmt_json	     portable_json
#define das_logfmt_text	     portable_text
#define das_logfmt_uint	     portable_uint
#define das_logfmt_ms	     portable_ms
#define das_logfmt_timestamp portable_timestamp
#include "common/logfmt.c"
#undef das_logfmt_json
#undef das_logfmt_text
#undef das_logfmt_uint
#undef das_logfmt_ms
#undef das_logfmt_timestamp

/* ---- the definitions ---- */

static size_t ref_json(char *out, const unsigned char *s, size_t n)
{
	static const char hx[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20 || c > 0x7e) {
			out[o++] = '\\';
			out[o++] = 'u';
			out[o++] = '0';
			out[o++] = '0';
			out[o++] = hx[c >> 4];
			out[o++] = hx[c & 15];
		} else {
			out[o++] = (char)c;
		}
	}
	return o;
}

static size_t ref_text(char *out, const unsigned char *s, size_t n)
{
	static const char hx[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		if (c > 0x20 && c < 0x7f && c != '"' && c != '\\') {
			out[o++] = (char)c;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hx[c >> 4];
			out[o++] = hx[c & 15];
		}
	}
	return o;
}

/* The old put_ms: microseconds rounded, three decimals. */
static size_t ref_ms(char *out, double ms)
{
	uint64_t us = ms > 0 ? (uint64_t)(ms * 1000 + 0.5) : 0;

	return (size_t)snprintf(out, 32, "%" PRIu64 ".%03u", us / 1000,
				(unsigned)(us % 1000));
}

/* ---- helpers ---- */

typedef char *(*escaper)(char *, const char *, size_t);

#define CANARY	 0xa5
#define OUT_SIZE 4096

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next_random(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* One escaper on s[0..n) (an exact-size heap copy) against the reference. */
static void check_one(escaper f,
		      size_t (*ref)(char *, const unsigned char *, size_t),
		      const unsigned char *s, size_t n)
{
	static char want[OUT_SIZE], got[OUT_SIZE];
	char *copy = malloc(n ? n : 1), *end;
	size_t want_len = ref(want, s, n), got_len;

	assert_non_null(copy);
	memcpy(copy, s, n);
	memset(got, CANARY, sizeof(got));
	end = f(got, copy, n);
	got_len = (size_t)(end - got);
	if (got_len != want_len || memcmp(got, want, want_len) != 0) {
		fprintf(stderr, "mismatch at length %zu\n", n);
		fail();
	}
	for (size_t i = got_len + DAS_LOGFMT_SLACK; i < sizeof(got); i++)
		assert_int_equal((unsigned char)got[i], CANARY);
	free(copy);
}

static void check_all(const unsigned char *s, size_t n)
{
	check_one(das_logfmt_json, ref_json, s, n);
	check_one(das_logfmt_text, ref_text, s, n);
	check_one(portable_json, ref_json, s, n);
	check_one(portable_text, ref_text, s, n);
}

/* ---- tests ---- */

static void every_byte_alone_and_in_runs(void **state)
{
	unsigned char s[64] = {0};

	(void)state;
	check_all(s, 0);
	for (unsigned c = 0; c < 256; c++) {
		/* alone, first, last and in the middle of runs that cross
		 * the 16-byte steps */
		for (size_t n = 1; n <= 40; n++) {
			memset(s, 'a', n);
			s[0] = (unsigned char)c;
			check_all(s, n);
			memset(s, 'a', n);
			s[n - 1] = (unsigned char)c;
			check_all(s, n);
			memset(s, 'a', n);
			s[n / 2] = (unsigned char)c;
			check_all(s, n);
		}
		memset(s, (int)c, sizeof(s));
		check_all(s, sizeof(s));
	}
}

static void random_strings_of_every_length(void **state)
{
	/* Mostly plain, with the bytes that need an escape (and those just
	 * beside them) mixed in at different densities. */
	static const unsigned char edge[] = {0x00, 0x01, 0x1f, 0x20,
					     0x21, '"',	 '\\', 0x7e,
					     0x7f, 0x80, 0xc3, 0xff};
	unsigned char s[300];

	(void)state;
	for (int round = 0; round < 4000; round++) {
		size_t n = (size_t)(next_random() % sizeof(s));
		unsigned density = (unsigned)(next_random() % 5); /* 0: none */
		for (size_t i = 0; i < n; i++) {
			uint64_t r = next_random();
			if (density && r % (1u << (2 * density)) == 0)
				s[i] = edge[(r >> 8) % sizeof(edge)];
			else
				s[i] = (unsigned char)('0' + (r >> 8) % 75);
		}
		check_all(s, n);
	}
}

static void every_length_and_alignment(void **state)
{
	unsigned char s[80];

	(void)state;
	for (size_t n = 0; n <= 70; n++) {
		for (size_t k = 0; k < n; k++) {
			/* one escape at each place of each length */
			memset(s, 'x', n);
			s[k] = '"';
			check_all(s, n);
			/* two, the second in the last partial step */
			if (k + 1 < n) {
				s[n - 1] = 0x01;
				check_all(s, n);
			}
		}
	}
}

static void decimals_match_printf(void **state)
{
	char got[32], want[32];
	uint64_t v;

	(void)state;
	for (v = 0; v < 100000; v++) {
		char *end = das_logfmt_uint(got, v);
		size_t n = (size_t)snprintf(want, sizeof(want), "%" PRIu64, v);
		assert_int_equal((size_t)(end - got), n);
		assert_memory_equal(got, want, n);
	}
	for (int e = 0; e < 20; e++) {
		uint64_t p10 = 1;
		for (int i = 0; i < e; i++)
			p10 *= 10;
		for (int d = -1; d <= 1; d++) {
			v = p10 + (uint64_t)d;
			char *end = das_logfmt_uint(got, v);
			size_t n = (size_t)snprintf(want, sizeof(want),
						    "%" PRIu64, v);
			assert_int_equal((size_t)(end - got), n);
			assert_memory_equal(got, want, n);
		}
	}
	for (int i = 0; i < 100000; i++) {
		v = next_random() >> (next_random() % 64);
		char *end = das_logfmt_uint(got, v);
		size_t n = (size_t)snprintf(want, sizeof(want), "%" PRIu64, v);
		assert_int_equal((size_t)(end - got), n);
		assert_memory_equal(got, want, n);
	}
	v = UINT64_MAX;
	*das_logfmt_uint(got, v) = '\0';
	assert_string_equal(got, "18446744073709551615");
}

static void milliseconds_match_the_old_format(void **state)
{
	static const double fixed[] = {
		0,	   -1,	 -0.0,	   0.0004,   0.0005,   0.0015,
		0.25,	   1.5,	 999.9994, 999.9995, 999.9996, 1000,
		86400000., 1e12, 1e15,	   0.1234567};
	char got[32], want[32];

	(void)state;
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		char *end = das_logfmt_ms(got, fixed[i]);
		size_t n = ref_ms(want, fixed[i]);
		assert_int_equal((size_t)(end - got), n);
		assert_memory_equal(got, want, n);
	}
	for (int i = 0; i < 200000; i++) {
		/* up to ~10^6 ms, at every scale */
		static const double scale[] = {1,   10,	 100, 1e3, 1e4,
					       1e5, 1e6, 1e7, 1e8, 1e9};
		double ms = (double)(next_random() % 1000000000) /
			    scale[next_random() % 10];
		char *end = das_logfmt_ms(got, ms);
		size_t n = ref_ms(want, ms);
		assert_int_equal((size_t)(end - got), n);
		assert_memory_equal(got, want, n);
	}
	/* NaN and beyond 10^15 ms: no undefined conversion */
	*das_logfmt_ms(got, NAN) = '\0';
	assert_string_equal(got, "0.000");
	*das_logfmt_ms(got, 1e300) = '\0';
	assert_string_equal(got, "1000000000000000.000");
}

static void check_time(struct das_time t)
{
	char want[DAS_TIMESTAMP_SIZE], got[DAS_TIMESTAMP_SIZE + 8];
	char *end;

	memset(got, CANARY, sizeof(got));
	end = das_logfmt_timestamp(got, t);
	assert_int_equal(end - got, DAS_TIMESTAMP_SIZE - 1);
	assert_int_equal((unsigned char)got[DAS_TIMESTAMP_SIZE - 1], CANARY);
	if (das_time_format(t, want) != 0)
		memcpy(want, "0000-00-00T00:00:00.0000000Z", 28);
	assert_memory_equal(got, want, DAS_TIMESTAMP_SIZE - 1);
}

static void timestamps_match_das_time_format(void **state)
{
	const int64_t min_s = -62135596800LL, max_s = 253402300799LL;
	static const int32_t nanos[] = {
		0,	   99,	      100,	199,	   999999,
		1000000,   9999999,   10000000, 123456789, 500000000,
		999999899, 999999900, 999999999};

	(void)state;
	for (int i = 0; i < 100000; i++) {
		struct das_time t = {
			.seconds = min_s +
				   (int64_t)(next_random() %
					     (uint64_t)(max_s - min_s + 1)),
			.nanos = (int32_t)(next_random() % 1000000000),
		};
		check_time(t);
		/* the same second again (the cached part), other nanos */
		t.nanos = nanos[i % (sizeof(nanos) / sizeof(nanos[0]))];
		check_time(t);
	}
	/* a second ticking over, around the epoch and the ends */
	for (int64_t s = -3; s <= 3; s++)
		for (size_t k = 0; k < sizeof(nanos) / sizeof(nanos[0]); k++) {
			check_time((struct das_time){s, nanos[k]});
			check_time((struct das_time){min_s + s + 3, nanos[k]});
			check_time((struct das_time){max_s + s - 3, nanos[k]});
			check_time((struct das_time){1733443200 + s, nanos[k]});
		}
	/* refused: outside the years, nanos out of range (also within a
	 * second that was cached) */
	check_time((struct das_time){min_s - 1, 0});
	check_time((struct das_time){max_s + 1, 0});
	check_time((struct das_time){1733443200, 5});
	check_time((struct das_time){1733443200, -1});
	check_time((struct das_time){1733443200, 1000000000});
	check_time((struct das_time){1733443200, 7});
	check_time(das_time_now());
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_byte_alone_and_in_runs),
		cmocka_unit_test(random_strings_of_every_length),
		cmocka_unit_test(every_length_and_alignment),
		cmocka_unit_test(decimals_match_printf),
		cmocka_unit_test(milliseconds_match_the_old_format),
		cmocka_unit_test(timestamps_match_das_time_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
