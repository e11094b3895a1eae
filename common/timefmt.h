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

#endif
