#include "utf8.h"

#include <stdint.h>
#include <string.h>

size_t das_utf8_seq(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	uint32_t cp;
	size_t len;

	if (n == 0)
		return 0;
	if (p[0] < 0x80)
		return 1;
	/* C0 and C1 could only start overlong forms of ASCII. */
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		len = 2;
		cp = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3;
		cp = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

char *das_utf8_sanitize(const char *in, size_t len, char *out, size_t size)
{
	static const char repl[] = "\xef\xbf\xbd";
	size_t o = 0;

	if (size == 0)
		return out;
	for (size_t i = 0; i < len;) {
		size_t n = das_utf8_seq(in + i, len - i);
		const char *src = in + i;
		size_t take = n;

		if (n == 0) {
			src = repl;
			take = 3;
			n = 1;
		} else if (in[i] == '\0') {
			i++;
			continue;
		}
		if (o + take + 1 > size)
			break;
		memcpy(out + o, src, take);
		o += take;
		i += n;
	}
	out[o] = '\0';
	return out;
}
