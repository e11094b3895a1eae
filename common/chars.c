#include "chars.h"

int das_hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool das_decimal(const char *s, size_t n, int *out)
{
	int v = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

long das_percent_decode(const char *s, size_t len, char *out, size_t size)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (c == '%') {
			int hi, lo;

			if (i + 2 >= len)
				return DAS_PCT_BAD_ESCAPE;
			hi = das_hex_digit(s[i + 1]);
			lo = das_hex_digit(s[i + 2]);
			if (hi < 0 || lo < 0)
				return DAS_PCT_BAD_ESCAPE;
			c = (char)(hi * 16 + lo);
			i += 2;
		}
		if (c == '\0')
			return DAS_PCT_NUL;
		if (o + 1 >= size)
			return DAS_PCT_TOO_LONG;
		out[o++] = c;
	}
	out[o] = '\0';
	return (long)o;
}
