/*
 * The pieces of a log line, written straight into a buffer the caller has
 * sized (common/log.c sizes a line for its longest case, so these never
 * check for room): escaped strings, decimals, milliseconds, timestamps.
 * They are on the path of every request that writes an access line.
 *
 * Every function writes at p and returns the end of what it wrote. The
 * escapers may also write up to DAS_LOGFMT_SLACK bytes past that end
 * (they copy sixteen bytes a step and keep what is plain); the bytes there
 * are scratch, overwritten by whatever comes next.
 */
#ifndef DAS_COMMON_LOGFMT_H
#define DAS_COMMON_LOGFMT_H

#include <stddef.h>
#include <stdint.h>

#include "timefmt.h"

#define DAS_LOGFMT_SLACK 16

/*
 * The contents of a JSON string: '"' and '\\' as \" and \\, every other
 * byte outside 0x20..0x7e (controls, DEL, every non-ASCII byte) as
 * \u00XX, so the line is valid JSON and UTF-8 whatever s holds. At most
 * 6 * n bytes (+ slack).
 */
char *das_logfmt_json(char *p, const char *s, size_t n);

/*
 * One word of a text line: bytes 0x21..0x7e but '"' and '\\' as they are,
 * every other byte (space, quote, backslash, controls, non-ASCII) as
 * \xNN. At most 4 * n bytes (+ slack).
 */
char *das_logfmt_text(char *p, const char *s, size_t n);

/* The decimal digits of v (at most 20 bytes). */
char *das_logfmt_uint(char *p, uint64_t v);

/* ms with three decimals, rounded to the nearest microsecond ("0.250");
 * a negative or NaN value is 0.000, and values are capped at 10^15 ms. At
 * most 24 bytes. */
char *das_logfmt_ms(char *p, double ms);

/*
 * t as das_time_format writes it: exactly DAS_TIMESTAMP_SIZE - 1 bytes,
 * no NUL. The part up to the seconds is formatted once per second and
 * thread. A time das_time_format refuses (outside the years 0001..9999)
 * is written as "0000-00-00T00:00:00.0000000Z", which keeps the line's
 * shape.
 */
char *das_logfmt_timestamp(char *p, struct das_time t);

#endif
