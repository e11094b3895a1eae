#include "timefmt.h"

#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "chars.h"

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

/* The n low decimal digits of v, zero-padded, at p. */
static void digits(char *p, int n, uint32_t v)
{
	while (n-- > 0) {
		p[n] = (char)('0' + v % 10);
		v /= 10;
	}
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
	/* The ranges above make the text exactly 28 characters. Written
	 * digit by digit: this is on every answer's path. */
	digits(buf, 4, (uint32_t)y);
	buf[4] = '-';
	digits(buf + 5, 2, m);
	buf[7] = '-';
	digits(buf + 8, 2, d);
	buf[10] = 'T';
	digits(buf + 11, 2, (uint32_t)(rem / 3600));
	buf[13] = ':';
	digits(buf + 14, 2, (uint32_t)(rem / 60 % 60));
	buf[16] = ':';
	digits(buf + 17, 2, (uint32_t)(rem % 60));
	buf[19] = '.';
	digits(buf + 20, 7, (uint32_t)(t.nanos / 100));
	buf[27] = 'Z';
	buf[DAS_TIMESTAMP_SIZE - 1] = '\0';
	return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static long long days_from_civil(int y, int m, int d)
{
	long long era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static bool is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int das_time_parse(const char *s, size_t len, struct das_time *t)
{
	static const int mdays[] = {31, 28, 31, 30, 31, 30,
				    31, 31, 30, 31, 30, 31};
	int y, mo, d, h, mi, sec, nanos = 0, off = 0;
	size_t i = 19;

	/* YYYY-MM-DDTHH:MM:SS */
	if (len < 20 || !das_decimal(s, 4, &y) || s[4] != '-' ||
	    !das_decimal(s + 5, 2, &mo) || s[7] != '-' ||
	    !das_decimal(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
	    !das_decimal(s + 11, 2, &h) || s[13] != ':' ||
	    !das_decimal(s + 14, 2, &mi) || s[16] != ':' ||
	    !das_decimal(s + 17, 2, &sec))
		return -1;
	if (y < 1 || mo < 1 || mo > 12 || d < 1 ||
	    d > mdays[mo - 1] + (mo == 2 && is_leap(y)) || h > 23 || mi > 59 ||
	    sec > 59)
		return -1;
	if (s[i] == '.') {
		size_t n = 0;

		i++;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			if (++n > 9)
				return -1;
			nanos = nanos * 10 + (s[i] - '0');
			i++;
		}
		if (n == 0)
			return -1;
		for (; n < 9; n++)
			nanos *= 10;
	}
	if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
		i++;
	} else if (i < len && (s[i] == '+' || s[i] == '-' || s[i] == ' ')) {
		int oh, om;

		if (len - i != 6 || !das_decimal(s + i + 1, 2, &oh) ||
		    s[i + 3] != ':' || !das_decimal(s + i + 4, 2, &om) ||
		    oh > 23 || om > 59)
			return -1;
		off = (oh * 60 + om) * 60;
		if (s[i] == '-')
			off = -off;
		i += 6;
	} else {
		return -1;
	}
	if (i != len)
		return -1;
	t->seconds = days_from_civil(y, mo, d) * 86400LL + h * 3600LL +
		     mi * 60LL + sec - off;
	t->nanos = nanos;
	return 0;
}

