/* common/utf8.c: the one UTF-8 validator and the sanitizer built on it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/utf8.h"

#define SEQ(lit) das_utf8_seq(lit, sizeof(lit) - 1)

/* Encodes cp (up to 0x1fffff) the plain way, overlongs never. */
static size_t encode(uint32_t cp, char out[4])
{
	unsigned char *o = (unsigned char *)out;

	if (cp < 0x80) {
		o[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (unsigned char)(0xc0 | cp >> 6);
		o[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (unsigned char)(0xe0 | cp >> 12);
		o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		o[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (unsigned char)(0xf0 | cp >> 18);
	o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
	o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
	o[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/*
 * The well-formed sequences as the Unicode standard tabulates them (table
 * 3-7): the range of the second byte depends on the first, every other
 * continuation byte is 80..BF. Returns the length, or 0.
 */
static size_t table_3_7(const unsigned char *p, size_t n)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len;

	if (n == 0)
		return 0;
	if (p[0] <= 0x7f)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (p[0] == 0xe0)
		lo = 0xa0;
	else if (p[0] == 0xed)
		hi = 0x9f;
	else if (p[0] == 0xf0)
		lo = 0x90;
	else if (p[0] == 0xf4)
		hi = 0x8f;
	if (n < 2 || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (i >= n || p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return len;
}

static void ascii_is_one_byte_each(void **state)
{
	(void)state;
	for (int c = 0; c < 0x80; c++) {
		char b = (char)c;
		assert_int_equal(das_utf8_seq(&b, 1), 1);
	}
	/* NUL and controls too: forbidding them is the caller's rule. */
	assert_int_equal(das_utf8_seq("\0x", 2), 1);
	assert_int_equal(SEQ("\x7f"), 1);
	assert_int_equal(das_utf8_seq("a", 0), 0);
}

static void boundaries_of_each_length(void **state)
{
	(void)state;
	/* First and last of each length. */
	assert_int_equal(SEQ("\xc2\x80"), 2);         /* U+0080 */
	assert_int_equal(SEQ("\xdf\xbf"), 2);         /* U+07FF */
	assert_int_equal(SEQ("\xe0\xa0\x80"), 3);     /* U+0800 */
	assert_int_equal(SEQ("\xef\xbf\xbf"), 3);     /* U+FFFF */
	assert_int_equal(SEQ("\xf0\x90\x80\x80"), 4); /* U+10000 */
	assert_int_equal(SEQ("\xf4\x8f\xbf\xbf"), 4); /* U+10FFFF */
	/* Around the surrogates. */
	assert_int_equal(SEQ("\xed\x9f\xbf"), 3); /* U+D7FF */
	assert_int_equal(SEQ("\xed\xa0\x80"), 0); /* U+D800 */
	assert_int_equal(SEQ("\xed\xaf\xbf"), 0); /* U+DBFF */
	assert_int_equal(SEQ("\xed\xb0\x80"), 0); /* U+DC00 */
	assert_int_equal(SEQ("\xed\xbf\xbf"), 0); /* U+DFFF */
	assert_int_equal(SEQ("\xee\x80\x80"), 3); /* U+E000 */
	assert_int_equal(SEQ("\xef\xbf\xbd"), 3); /* U+FFFD */
	/* Past U+10FFFF, and leads that could only start such values. */
	assert_int_equal(SEQ("\xf4\x90\x80\x80"), 0); /* U+110000 */
	assert_int_equal(SEQ("\xf7\xbf\xbf\xbf"), 0); /* U+1FFFFF */
	assert_int_equal(SEQ("\xf5\x80\x80\x80"), 0);
	assert_int_equal(SEQ("\xf8\x88\x80\x80\x80"), 0);
	assert_int_equal(SEQ("\xfc\x84\x80\x80\x80\x80"), 0);
	assert_int_equal(SEQ("\xfe"), 0);
	assert_int_equal(SEQ("\xff"), 0);
	/* A sequence stops where it ends: the bytes after it do not count. */
	assert_int_equal(SEQ("\xc3\xa9\xff"), 2);
	assert_int_equal(SEQ("\xe2\x82\xac\x80"), 3);
	assert_int_equal(SEQ("\xf0\x9f\x98\x80z"), 4);
}

static void overlong_forms(void **state)
{
	(void)state;
	/* '/' and NUL in every longer form. */
	assert_int_equal(SEQ("\xc0\xaf"), 0);
	assert_int_equal(SEQ("\xe0\x80\xaf"), 0);
	assert_int_equal(SEQ("\xf0\x80\x80\xaf"), 0);
	assert_int_equal(SEQ("\xc0\x80"), 0);
	assert_int_equal(SEQ("\xe0\x80\x80"), 0);
	assert_int_equal(SEQ("\xf0\x80\x80\x80"), 0);
	/* The largest overlong of each length. */
	assert_int_equal(SEQ("\xc1\xbf"), 0);         /* U+007F */
	assert_int_equal(SEQ("\xe0\x9f\xbf"), 0);     /* U+07FF */
	assert_int_equal(SEQ("\xf0\x8f\xbf\xbf"), 0); /* U+FFFF */
}

static void broken_and_truncated_sequences(void **state)
{
	(void)state;
	/* A continuation byte cannot start a sequence. */
	for (int c = 0x80; c <= 0xbf; c++) {
		char b[2] = {(char)c, (char)0x80};
		assert_int_equal(das_utf8_seq(b, 2), 0);
	}
	/* Cut short by the end of the bytes, at every length. */
	assert_int_equal(SEQ("\xc3"), 0);
	assert_int_equal(SEQ("\xe2"), 0);
	assert_int_equal(SEQ("\xe2\x82"), 0);
	assert_int_equal(SEQ("\xf0"), 0);
	assert_int_equal(SEQ("\xf0\x9f"), 0);
	assert_int_equal(SEQ("\xf0\x9f\x98"), 0);
	assert_int_equal(das_utf8_seq("\xe2\x82\xac", 2), 0);
	/* Cut short by a byte that is not a continuation. */
	assert_int_equal(SEQ("\xc3("), 0);
	assert_int_equal(SEQ("\xc3\xc3\xa9"), 0);
	assert_int_equal(SEQ("\xe2(\xac"), 0);
	assert_int_equal(SEQ("\xe2\x82("), 0);
	assert_int_equal(SEQ("\xf0\x9f\x98("), 0);
	assert_int_equal(SEQ("\xf0\x9f\x98\xc0"), 0);
	assert_int_equal(SEQ("\xe2\x82\0"), 0);
}

/* Every code point, encoded plainly: all but the surrogates are valid. */
static void every_code_point(void **state)
{
	char b[4];

	(void)state;
	for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
		size_t n = encode(cp, b);
		bool is_surrogate = cp >= 0xd800 && cp <= 0xdfff;

		assert_int_equal(das_utf8_seq(b, n), is_surrogate ? 0 : n);
		if (n > 1)
			assert_int_equal(das_utf8_seq(b, n - 1), 0);
	}
	for (uint32_t cp = 0x110000; cp < 0x140000; cp += 0x3f)
		assert_int_equal(das_utf8_seq(b, encode(cp, b)), 0);
}

/* Every one, two and three byte string, and the four byte ones at every
 * first and second byte, agree with table 3-7. */
static void agrees_with_the_unicode_table(void **state)
{
	static const unsigned char tails[] = {0x00, 0x7f, 0x80, 0x8f, 0x90,
					      0x9f, 0xa0, 0xbf, 0xc0, 0xff};
	unsigned char b[4];

	(void)state;
	for (unsigned x = 0; x < 0x1000000; x++) {
		b[0] = (unsigned char)(x >> 16);
		b[1] = (unsigned char)(x >> 8);
		b[2] = (unsigned char)x;
		for (size_t n = 1; n <= 3; n++) {
			if (n < 3 && (x & ((1u << (8 * (3 - n))) - 1)) != 0)
				continue; /* shorter strings: once each */
			if (das_utf8_seq((const char *)b, n) != table_3_7(b, n))
				fail_msg("%02x %02x %02x (%zu bytes)", b[0],
					 b[1], b[2], n);
		}
	}
	for (unsigned x = 0xf000; x <= 0xffff; x++) {
		b[0] = (unsigned char)(x >> 8);
		b[1] = (unsigned char)x;
		for (size_t i = 0; i < sizeof(tails); i++)
			for (size_t j = 0; j < sizeof(tails); j++) {
				b[2] = tails[i];
				b[3] = tails[j];
				assert_int_equal(
					das_utf8_seq((const char *)b, 4),
					table_3_7(b, 4));
			}
	}
}

/* The sanitizer: U+FFFD for each byte outside a sequence, NUL dropped. */
static void sanitizing(void **state)
{
	char out[64];

	(void)state;
	assert_string_equal(das_utf8_sanitize("abc", 3, out, sizeof(out)),
			    "abc");
	assert_string_equal(das_utf8_sanitize("\xc3\xa9", 2, out, sizeof(out)),
			    "\xc3\xa9");
	assert_string_equal(das_utf8_sanitize("a\xff"
					      "b",
					      3, out, sizeof(out)),
			    "a\xef\xbf\xbd"
			    "b");
	/* Overlong, surrogate, past U+10FFFF, truncated sequence. */
	assert_string_equal(das_utf8_sanitize("\xc0\xaf", 2, out, sizeof(out)),
			    "\xef\xbf\xbd\xef\xbf\xbd");
	assert_string_equal(
		das_utf8_sanitize("\xed\xa0\x80", 3, out, sizeof(out)),
		"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	assert_string_equal(
		das_utf8_sanitize("\xf4\x90\x80\x80", 4, out, sizeof(out)),
		"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	assert_string_equal(das_utf8_sanitize("x\xe2\x82", 3, out, sizeof(out)),
			    "x\xef\xbf\xbd\xef\xbf\xbd");
	/* Controls pass; NUL is dropped, not replaced. */
	assert_string_equal(das_utf8_sanitize("a\0b\n\x7f", 5, out,
					      sizeof(out)),
			    "ab\n\x7f");
	/* Truncation never splits a character. */
	assert_string_equal(das_utf8_sanitize("ab\xc3\xa9", 4, out, 4), "ab");
	assert_string_equal(das_utf8_sanitize("ab\xff", 3, out, 5), "ab");
	assert_string_equal(das_utf8_sanitize("ab\xff", 3, out, 6),
			    "ab\xef\xbf\xbd");
	out[0] = 'x';
	assert_string_equal(das_utf8_sanitize("abc", 3, out, 1), "");
	assert_ptr_equal(das_utf8_sanitize("abc", 3, out, 0), out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ascii_is_one_byte_each),
		cmocka_unit_test(boundaries_of_each_length),
		cmocka_unit_test(overlong_forms),
		cmocka_unit_test(broken_and_truncated_sequences),
		cmocka_unit_test(every_code_point),
		cmocka_unit_test(agrees_with_the_unicode_table),
		cmocka_unit_test(sanitizing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
