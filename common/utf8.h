/* UTF-8 as RFC 3629 defines it: pure functions, no allocation. */
#ifndef DAS_COMMON_UTF8_H
#define DAS_COMMON_UTF8_H

#include <stddef.h>

/*
 * The length (1 to 4) of the well-formed UTF-8 sequence that starts the n
 * bytes at s, or 0 when they do not start with one: n is 0, the first byte
 * is a continuation byte or C0, C1, F5-FF, a continuation byte is missing
 * (also when the n bytes end first), or the sequence is an overlong form,
 * a surrogate (U+D800-U+DFFF) or past U+10FFFF. Every ASCII byte, NUL and
 * controls included, is a sequence of 1: callers forbid what they must.
 */
size_t das_utf8_seq(const char *s, size_t n);

/*
 * Copies the len bytes at in to out (size bytes, NUL-terminated, cut on a
 * character boundary when it is full), replacing each byte that is not part
 * of a well-formed sequence with U+FFFD and dropping NUL bytes. Returns out.
 */
char *das_utf8_sanitize(const char *in, size_t len, char *out, size_t size);

#endif
