#include "logfmt.h"

#include <stdbool.h>
#include <string.h>

#if defined(__SSE2__) && !defined(DAS_LOGFMT_PORTABLE)
#include <emmintrin.h>
#else
#include "ascii.h"
#endif

/* The escapers are written once with is_json as a parameter and expanded
 * twice, each copy with its constant. */
#if defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

static const char hex[] = "0123456789abcdef";

/* "00" .. "99": two digits a step. */
static const char pairs[201] = "00010203040506070809"
			       "10111213141516171819"
			       "20212223242526272829"
			       "30313233343536373839"
			       "40414243444546474849"
			       "50515253545556575859"
			       "60616263646566676869"
			       "70717273747576777879"
			       "80818283848586878889"
			       "90919293949596979899";

static ALWAYS_INLINE char *escape_json_byte(char *p, unsigned char c)
{
	p[0] = '\\';
	if (c == '"' || c == '\\') {
		p[1] = (char)c;
		return p + 2;
	}
	p[1] = 'u';
	p[2] = '0';
	p[3] = '0';
	p[4] = hex[c >> 4];
	p[5] = hex[c & 15];
	return p + 6;
}

static ALWAYS_INLINE char *escape_text_byte(char *p, unsigned char c)
{
	p[0] = '\\';
	p[1] = 'x';
	p[2] = hex[c >> 4];
	p[3] = hex[c & 15];
	return p + 4;
}

#if defined(__SSE2__) && !defined(DAS_LOGFMT_PORTABLE)

/* Whether a byte is kept as it is, bit 0 in a JSON string (0x20..0x7e
 * but '"' and '\\'), bit 1 in a text word (the same without the space). */
/* clang-format off */
#define PLAIN_JSON 1
#define PLAIN_TEXT 2
#define P3 (PLAIN_JSON | PLAIN_TEXT)
#define R8(x) x, x, x, x, x, x, x, x
static const unsigned char plain[256] = {
	R8(0), R8(0), R8(0), R8(0),			/* 0x00 .. 0x1f */
	PLAIN_JSON /* space */, P3, 0 /* " */, P3, P3, P3, P3, P3, /* 0x20 */
	R8(P3),						/* 0x28 */
	R8(P3), R8(P3), R8(P3), R8(P3), R8(P3),		/* 0x30 .. 0x57 */
	P3, P3, P3, P3, 0 /* \\ */, P3, P3, P3,		/* 0x58 */
	R8(P3), R8(P3), R8(P3),				/* 0x60 .. 0x77 */
	P3, P3, P3, P3, P3, P3, P3, 0 /* DEL */,	/* 0x78 */
	R8(0), R8(0), R8(0), R8(0), R8(0), R8(0), R8(0), R8(0),
	R8(0), R8(0), R8(0), R8(0), R8(0), R8(0), R8(0), R8(0), /* >= 0x80 */
};
/* clang-format on */
#undef P3
#undef R8

/* Byte at a time: short strings, and the end of a long one after an
 * escape. */
static ALWAYS_INLINE char *escape_bytes(char *p, const char *s, size_t n,
					bool is_json)
{
	unsigned bit = is_json ? PLAIN_JSON : PLAIN_TEXT;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (plain[c] & bit)
			*p++ = (char)c;
		else
			p = is_json ? escape_json_byte(p, c)
				    : escape_text_byte(p, c);
	}
	return p;
}

/* Bytes a JSON string does not hold as they are: signed compare, so every
 * byte >= 0x80 is below 0x20 too. */
static inline unsigned json_mask(__m128i v)
{
	__m128i m = _mm_or_si128(_mm_cmplt_epi8(v, _mm_set1_epi8(0x20)),
				 _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f)));
	m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('"')));
	m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));
	return (unsigned)_mm_movemask_epi8(m);
}

/* Bytes a text word does not hold as they are (space included). */
static inline unsigned text_mask(__m128i v)
{
	__m128i m = _mm_or_si128(_mm_cmplt_epi8(v, _mm_set1_epi8(0x21)),
				 _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f)));
	m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('"')));
	m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));
	return (unsigned)_mm_movemask_epi8(m);
}

/*
 * Fewer than sixteen bytes: read as two words that overlap (the first and
 * the last 8, 4 or 2 bytes), looked at in one vector whose other lanes are
 * ignored; when all are plain the two words are stored as they came.
 * Else, and for one byte, a byte at a time.
 */
static ALWAYS_INLINE char *escape_short(char *p, const char *s, size_t n,
					bool is_json)
{
	if (n >= 8) {
		uint64_t a, b;
		memcpy(&a, s, 8);
		memcpy(&b, s + n - 8, 8);
		__m128i v = _mm_set_epi64x((long long)b, (long long)a);
		if ((is_json ? json_mask(v) : text_mask(v)) == 0) {
			memcpy(p, &a, 8);
			memcpy(p + n - 8, &b, 8);
			return p + n;
		}
	} else if (n >= 4) {
		uint32_t a, b;
		memcpy(&a, s, 4);
		memcpy(&b, s + n - 4, 4);
		__m128i v = _mm_set_epi32(0, 0, (int)b, (int)a);
		if (((is_json ? json_mask(v) : text_mask(v)) & 0xff) == 0) {
			memcpy(p, &a, 4);
			memcpy(p + n - 4, &b, 4);
			return p + n;
		}
	} else if (n >= 2) {
		uint16_t a, b;
		memcpy(&a, s, 2);
		memcpy(&b, s + n - 2, 2);
		__m128i v = _mm_cvtsi32_si128(
			(int)((uint32_t)a | (uint32_t)b << 16));
		if (((is_json ? json_mask(v) : text_mask(v)) & 0xf) == 0) {
			memcpy(p, &a, 2);
			memcpy(p + n - 2, &b, 2);
			return p + n;
		}
	}
	return escape_bytes(p, s, n, is_json);
}

/*
 * Sixteen bytes a step: each step copies sixteen bytes to p whatever they
 * are, and a mask says which of them need an escape; the plain ones before
 * the first such byte are kept, that byte is escaped over the copy, and
 * the next step starts after it. The last r < 16 bytes of a string of at
 * least 16 are read as the sixteen that end the string (nothing outside s
 * is read): when the output's last 16 - r bytes are the source's as they
 * are (no escape among them) and the r new ones are plain, that vector is
 * stored over them. Otherwise, and for strings shorter than 16, a byte at
 * a time.
 */
static ALWAYS_INLINE char *escape_run(char *p, const char *s, size_t n,
				      bool is_json)
{
	size_t as_is = 0; /* bytes before p copied as they are */

	if (n < 16)
		return escape_short(p, s, n, is_json);
	while (n >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)s);
		unsigned m = is_json ? json_mask(v) : text_mask(v);
		_mm_storeu_si128((__m128i *)(void *)p, v);
		if (m == 0) {
			p += 16;
			s += 16;
			n -= 16;
			as_is += 16;
			continue;
		}
		unsigned k = (unsigned)__builtin_ctz(m);
		unsigned char c = (unsigned char)s[k];
		p = is_json ? escape_json_byte(p + k, c)
			    : escape_text_byte(p + k, c);
		s += k + 1;
		n -= k + 1;
		as_is = 0;
	}
	if (n == 0)
		return p;
	if (as_is >= 16 - n) {
		__m128i v = _mm_loadu_si128(
			(const __m128i *)(const void *)(s + n - 16));
		unsigned m = is_json ? json_mask(v) : text_mask(v);
		if ((m >> (16 - n)) == 0) {
			_mm_storeu_si128((__m128i *)(void *)(p + n - 16), v);
			return p + n;
		}
	}
	return escape_bytes(p, s, n, is_json);
}

char *das_logfmt_json(char *p, const char *s, size_t n)
{
	return escape_run(p, s, n, true);
}

char *das_logfmt_text(char *p, const char *s, size_t n)
{
	return escape_run(p, s, n, false);
}

#else /* eight bytes a step (common/ascii.h) */

static bool is_text_plain(unsigned char c)
{
	return c > 0x20 && c <= 0x7e && c != '"' && c != '\\';
}

static size_t text_span(const char *s, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w = das_ascii_word(s + i);
		if (das_ascii_has_less(w, 0x21) | das_ascii_has_more(w, 0x7e) |
		    das_ascii_has_byte(w, '"') | das_ascii_has_byte(w, '\\'))
			break;
	}
	while (i < n && is_text_plain((unsigned char)s[i]))
		i++;
	return i;
}

char *das_logfmt_json(char *p, const char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t run = das_ascii_json_span(s + i, n - i);
		memcpy(p, s + i, run);
		p += run;
		i += run;
		if (i == n)
			break;
		p = escape_json_byte(p, (unsigned char)s[i++]);
	}
	return p;
}

char *das_logfmt_text(char *p, const char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t run = text_span(s + i, n - i);
		memcpy(p, s + i, run);
		p += run;
		i += run;
		if (i == n)
			break;
		p = escape_text_byte(p, (unsigned char)s[i++]);
	}
	return p;
}

#endif

/* Number of decimal digits of v. */
static unsigned digit_count(uint64_t v)
{
	unsigned n = 1;

	while (v >= 100) {
		v /= 100;
		n += 2;
	}
	return n + (v >= 10);
}

char *das_logfmt_uint(char *p, uint64_t v)
{
	unsigned n;
	char *q;

	/* Statuses and most durations: no loop. */
	if (v < 10) {
		p[0] = (char)('0' + v);
		return p + 1;
	}
	if (v < 100) {
		memcpy(p, pairs + 2 * v, 2);
		return p + 2;
	}
	if (v < 1000) {
		p[0] = (char)('0' + v / 100);
		memcpy(p + 1, pairs + 2 * (v % 100), 2);
		return p + 3;
	}
	n = digit_count(v);
	q = p + n;
	while (v >= 100) {
		unsigned r = (unsigned)(v % 100);
		v /= 100;
		q -= 2;
		memcpy(q, pairs + 2 * r, 2);
	}
	if (v >= 10)
		memcpy(q - 2, pairs + 2 * v, 2);
	else
		q[-1] = (char)('0' + v);
	return p + n;
}

char *das_logfmt_ms(char *p, double ms)
{
	uint64_t us = 0;
	unsigned frac;

	if (ms > 1e15)
		ms = 1e15;
	if (ms > 0)
		us = (uint64_t)(ms * 1000 + 0.5);
	frac = (unsigned)(us % 1000);
	p = das_logfmt_uint(p, us / 1000);
	p[0] = '.';
	p[1] = (char)('0' + frac / 100);
	memcpy(p + 2, pairs + 2 * (frac % 100), 2);
	return p + 4;
}

char *das_logfmt_timestamp(char *p, struct das_time t)
{
	static _Thread_local int64_t cached_second = INT64_MIN;
	static _Thread_local char cached[DAS_TIMESTAMP_SIZE];
	static const char refused[] = "0000-00-00T00:00:00.0000000Z";
	unsigned frac;

	if (t.seconds != cached_second || t.nanos < 0 || t.nanos > 999999999) {
		if (das_time_format(t, cached) != 0) {
			cached_second = INT64_MIN;
			memcpy(p, refused, DAS_TIMESTAMP_SIZE - 1);
			return p + DAS_TIMESTAMP_SIZE - 1;
		}
		cached_second = t.seconds;
	}
	/* "YYYY-MM-DDTHH:MM:SS." then seven digits of 100 ns and 'Z'. */
	memcpy(p, cached, 20);
	frac = (unsigned)t.nanos / 100; /* 0 .. 9999999 */
	p[20] = (char)('0' + frac / 1000000);
	frac %= 1000000;
	memcpy(p + 21, pairs + 2 * (frac / 10000), 2);
	memcpy(p + 23, pairs + 2 * (frac / 100 % 100), 2);
	memcpy(p + 25, pairs + 2 * (frac % 100), 2);
	p[27] = 'Z';
	return p + DAS_TIMESTAMP_SIZE - 1;
}
