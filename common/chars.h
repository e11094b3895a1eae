/* Digits and percent-encoding in text: pure functions, no allocation. */
#ifndef DAS_COMMON_CHARS_H
#define DAS_COMMON_CHARS_H

#include <stdbool.h>
#include <stddef.h>

/* The value of the hex digit c (either case), or -1. */
int das_hex_digit(int c);

/*
 * True when the n bytes at s are all decimal digits; *out is then their
 * value (the caller bounds n so that it fits an int).
 */
bool das_decimal(const char *s, size_t n, int *out);

/* Failures of das_percent_decode() (all negative). */
enum {
	DAS_PCT_BAD_ESCAPE = -1, /* a '%' not followed by two hex digits */
	DAS_PCT_NUL = -2,	 /* a NUL byte, encoded or raw */
	DAS_PCT_TOO_LONG = -3,	 /* the result does not fit out */
};

/*
 * Percent-decodes the len bytes at s into out (size bytes, NUL-terminated;
 * '+' stays '+'). Returns the decoded length, or a DAS_PCT_* failure
 * (checked in that order for each byte).
 */
long das_percent_decode(const char *s, size_t len, char *out, size_t size);

#endif
