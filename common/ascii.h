/*
 * Scans of text eight bytes a step (SWAR: one 64-bit word holds eight
 * bytes), for the checks and escapes on every request's path: header
 * values, tokens, access-log strings. Each function answers exactly what
 * its byte-at-a-time definition would: a word that may hold a byte of
 * interest is looked at byte by byte.
 */
#ifndef DAS_COMMON_ASCII_H
#define DAS_COMMON_ASCII_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define DAS_ASCII_ONES	0x0101010101010101ULL
#define DAS_ASCII_HIGHS 0x8080808080808080ULL

static inline uint64_t das_ascii_word(const char *p)
{
	uint64_t w;

	memcpy(&w, p, sizeof(w));
	return w;
}

/* Nonzero when some byte of w is below n (n <= 128). */
static inline uint64_t das_ascii_has_less(uint64_t w, unsigned n)
{
	return (w - DAS_ASCII_ONES * n) & ~w & DAS_ASCII_HIGHS;
}

/* Nonzero when some byte of w is above n (n <= 127). */
static inline uint64_t das_ascii_has_more(uint64_t w, unsigned n)
{
	return ((w + DAS_ASCII_ONES * (127 - n)) | w) & DAS_ASCII_HIGHS;
}

/* Nonzero when some byte of w is b. */
static inline uint64_t das_ascii_has_byte(uint64_t w, unsigned char b)
{
	return das_ascii_has_less(w ^ (DAS_ASCII_ONES * b), 1);
}

/* Length of the longest prefix of s[0..n) of bytes 0x20..0x7e. */
static inline size_t das_ascii_visible_span(const char *s, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w = das_ascii_word(s + i);
		if (das_ascii_has_less(w, 0x20) | das_ascii_has_more(w, 0x7e))
			break;
	}
	while (i < n && (unsigned char)s[i] >= 0x20 &&
	       (unsigned char)s[i] <= 0x7e)
		i++;
	return i;
}

/*
 * Length of the longest prefix of s[0..n) that a JSON string holds as it
 * is and that stays ASCII: 0x20..0x7e but '"' and '\\'.
 */
static inline size_t das_ascii_json_span(const char *s, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w = das_ascii_word(s + i);
		if (das_ascii_has_less(w, 0x20) | das_ascii_has_more(w, 0x7e) |
		    das_ascii_has_byte(w, '"') | das_ascii_has_byte(w, '\\'))
			break;
	}
	for (; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
			break;
	}
	return i;
}

/* RFC 9110 section 5.6.2: tchar, as two 64-bit sets of ASCII. */
static inline bool das_ascii_is_tchar(unsigned char c)
{
	static const uint64_t low = 0x03ff6cfa00000000ULL; /* 0x00..0x3f */
	static const uint64_t high = 0x57ffffffc7fffffeULL; /* 0x40..0x7f */

	if (c < 64)
		return (low >> c) & 1;
	return c < 128 && ((high >> (c - 64)) & 1);
}

#endif
