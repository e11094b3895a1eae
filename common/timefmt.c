#include "timefmt.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

struct das_time das_time_now(void)
{
	struct timespec ts;
	struct das_time t;

	clock_gettime(CLOCK_REALTIME, &ts);
	t.seconds = ts.tv_sec;
	t.nanos = (int32_t)ts.tv_nsec;
	return t;
}

/* Days from 1970-01-01 to y-m-d, proleptic Gregorian (Hinnant's method). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t yy = (int64_t)yoe + era * 400;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = yy + (*m <= 2);
}

int das_time_format(struct das_time t, char buf[DAS_TIMESTAMP_SIZE])
{
	/* 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z */
	const int64_t min_s = -62135596800LL, max_s = 253402300799LL;
	int64_t days, rem, y;
	unsigned m, d;

	buf[0] = '\0';
	if (t.seconds < min_s || t.seconds > max_s || t.nanos < 0 ||
	    t.nanos > 999999999)
		return -1;
	days = t.seconds / 86400;
	rem = t.seconds % 86400;
	if (rem < 0) {
		rem += 86400;
		days--;
	}
	civil_from_days(days, &y, &m, &d);
	/* The ranges above make the text exactly 28 characters; the wider
	 * scratch buffer only keeps the compiler's range analysis quiet. */
	char tmp[64];
	snprintf(tmp, sizeof(tmp), "%04d-%02u-%02uT%02d:%02d:%02d.%07dZ",
		 (int)y, m, d, (int)(rem / 3600), (int)(rem / 60 % 60),
		 (int)(rem % 60), (int)(t.nanos / 100));
	memcpy(buf, tmp, DAS_TIMESTAMP_SIZE - 1);
	buf[DAS_TIMESTAMP_SIZE - 1] = '\0';
	return 0;
}
