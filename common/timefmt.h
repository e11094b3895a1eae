/* Timestamps of the contract: UTC ISO 8601 with exactly 7 fractional digits. */
#ifndef DAS_COMMON_TIMEFMT_H
#define DAS_COMMON_TIMEFMT_H

#include <stddef.h>
#include <stdint.h>

/* "2019-11-29T16:03:23.9251680Z" plus NUL. */
#define DAS_TIMESTAMP_SIZE 29

struct das_time {
	int64_t seconds; /* since the Unix epoch */
	int32_t nanos;   /* 0..999999999 */
};

/* The current wall-clock time. */
struct das_time das_time_now(void);

/*
 * Writes t as "YYYY-MM-DDTHH:MM:SS.fffffffZ" (100 ns precision, truncated).
 * Returns 0, or -1 when t is out of the years 0001..9999 or nanos out of
 * range (buf then holds "").
 */
int das_time_format(struct das_time t, char buf[DAS_TIMESTAMP_SIZE]);

/*
 * Parses an RFC 3339 timestamp of len bytes ("2026-12-01T10:00:00Z",
 * "...T10:00:00.1234567+01:00"; up to 9 fractional digits; years
 * 0001-9999; 'T' and 'Z' in either case; a ' ' where the offset sign
 * should be is read as '+', which form encoding turns into a space).
 * Returns 0 and fills t, or -1 (t untouched).
 */
int das_time_parse(const char *s, size_t len, struct das_time *t);

#endif
