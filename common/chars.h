/* Digits in text: pure functions, no allocation. */
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

#endif
