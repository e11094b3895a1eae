/*
 * gateway/http/parser.c: the strict HTTP/1.1 request head parser and the
 * chunked decoder (RFC 9112), case by case, whole and byte by byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/http/parser.h"

static char buf[HTTP_HEAD_MAX * 2];
static struct http_request rq;

/* Parses raw whole; returns the result. */
static int parse(const char *raw, size_t len)
{
	size_t scanned = 0, head_len = 0;
	const char *why = NULL;
	int rc;

	assert_true(len < sizeof(buf));
	memcpy(buf, raw, len);
	rc = http_parse_head(buf, len, &scanned, &rq, &head_len, &why);
	if (rc > 0)
		assert_non_null(why);
	return rc;
}

static int parse_s(const char *raw)
{
	return parse(raw, strlen(raw));
}

/* Feeds raw one byte more at a time: the same verdict, never earlier. */
static int parse_bytewise(const char *raw)
{
	size_t len = strlen(raw), scanned = 0, head_len = 0;
	const char *why = NULL;
	int rc = HTTP_INCOMPLETE;

	memcpy(buf, raw, len);
	for (size_t n = 1; n <= len && rc == HTTP_INCOMPLETE; n++)
		rc = http_parse_head(buf, n, &scanned, &rq, &head_len, &why);
	return rc;
}

/* A field once, twice (in any case) or not at all. */
static void fields_once(void **state)
{
	bool is_repeated = true;

	(void)state;
	assert_int_equal(parse_s("GET / HTTP/1.1\r\nHost: a\r\nX-A: v\r\n"
				 "X-B: 1\r\nx-b: 2\r\n\r\n"),
			 0);
	assert_string_equal(http_request_field_once(&rq, "x-a", &is_repeated),
			    "v");
	assert_false(is_repeated);
	assert_null(http_request_field_once(&rq, "x-c", &is_repeated));
	assert_false(is_repeated);
	assert_null(http_request_field_once(&rq, "X-B", &is_repeated));
	assert_true(is_repeated);
	assert_string_equal(http_request_field(&rq, "x-b"), "1");
}

static void origin_form(void **state)
{
	(void)state;
	assert_int_equal(parse_s("GET /healthz?x=1 HTTP/1.1\r\nHost: a:80\r\n"
				 "X-A:  v v \r\n\r\nNEXT"),
			 0);
	assert_string_equal(rq.method, "GET");
	assert_string_equal(rq.target, "/healthz?x=1");
	assert_int_equal(rq.target_len, 12);
	assert_string_equal(rq.host, "a:80");
	assert_string_equal(http_request_field(&rq, "x-a"), "v v");
	assert_true(rq.is_keep_alive);
	assert_int_equal(rq.framing, HTTP_BODY_NONE);
	assert_int_equal(parse_bytewise("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
	/* Empty lines before the request line are ignored. */
	assert_int_equal(parse_s("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
			 0);
	/* HTTP/1.0: no Host needed, keep-alive only when asked. */
	assert_int_equal(parse_s("GET / HTTP/1.0\r\n\r\n"), 0);
	assert_false(rq.is_keep_alive);
	assert_int_equal(parse_s("GET / HTTP/1.0\r\nConnection: keep-alive\r\n"
				 "\r\n"),
			 0);
	assert_true(rq.is_keep_alive);
	assert_int_equal(parse_s("GET / HTTP/1.1\r\nHost: a\r\nConnection: "
				 "foo, close\r\n\r\n"),
			 0);
	assert_false(rq.is_keep_alive);
	assert_int_equal(parse_s("GET / HTTP/1.1\r\nHost: a\r\n"),
			 HTTP_INCOMPLETE);
}

/* Item 6: absolute-form is served like origin-form; its authority wins. */
static void absolute_form(void **state)
{
	(void)state;
	assert_int_equal(parse_s("PUT http://api.example:8080/v1.0/x?q HTTP/1.1"
				 "\r\nHost: other\r\n\r\n"),
			 0);
	assert_true(rq.has_authority);
	assert_string_equal(rq.authority, "api.example:8080");
	assert_string_equal(rq.target, "/v1.0/x?q");
	assert_int_equal(parse_s("GET HTTPS://h HTTP/1.1\r\nHost: h\r\n\r\n"),
			 0);
	assert_string_equal(rq.target, "/");
	assert_int_equal(parse_s("GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n"),
			 400);
	assert_int_equal(parse_s("GET http://u@h/x HTTP/1.1\r\nHost: h\r\n\r\n"),
			 400);
	assert_int_equal(parse_s("GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n"),
			 400);
	assert_int_equal(parse_s("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

/* Item 1: the smuggling shapes and field syntax. */
static void smuggling_shapes(void **state)
{
	(void)state;
	assert_int_equal(parse_s("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: "
				 "4\r\nTransfer-Encoding: chunked\r\n\r\n"),
			 400);
	assert_int_equal(parse_s("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: "
				 "4\r\nContent-Length: 5\r\n\r\n"),
			 400);
	assert_int_equal(parse_s("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: "
				 "4\r\nContent-Length: 4\r\n\r\n"),
			 400);
	assert_int_equal(parse_s("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: "
				 "24, 24\r\n\r\n"),
			 400);
	assert_int_equal(parse_s("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: "
				 "+4\r\n\r\n"),
			 400);
	assert_int_equal(parse_s("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: "
				 "\r\n\r\n"),
			 400);
	assert_int_equal(parse_s("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: "
				 "99999999999999999999\r\n\r\n"),
			 400);
	assert_int_equal(parse_s("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"),
			 400);
	assert_int_equal(parse_s("GET / HTTP/1.1\r\nHost: a\r\naccept-charges "
				 ": true\r\n\r\n"),
			 400);
	assert_int_equal(parse_s("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
			 400);
	assert_int_equal(parse_s("GET / HTTP/1.1\r\nX: 1\r\n\r\n"), 400);
	assert_int_equal(parse_s("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), 400);
	assert_int_equal(parse_s("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n"
				 " folded\r\n\r\n"),
			 400);
	assert_int_equal(parse_s("GET / HTTP/1.1\nHost: a\n\n"), 400);
	assert_int_equal(parse_s("GET / HTTP/1.1\r\nHost: a\r\nX: 1\n\r\n"),
			 400);
	assert_int_equal(parse_s("GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n"),
			 400);
	assert_int_equal(parse_s("GET / HTTP/1.1\r\nHost: a\r\nNo colon\r\n\r\n"),
			 400);
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n",
			       35),
			 400);
	assert_int_equal(parse_s("PUT / HTTP/1.0\r\nTransfer-Encoding: "
				 "chunked\r\n\r\n"),
			 400);
	assert_int_equal(parse_s("PUT / HTTP/1.1\r\nHost: a\r\nTransfer-"
				 "Encoding: chunked, chunked\r\n\r\n"),
			 400);
	assert_int_equal(parse_s("PUT / HTTP/1.1\r\nHost: a\r\nTransfer-"
				 "Encoding: chunked\r\nTransfer-Encoding: "
				 "chunked\r\n\r\n"),
			 400);
	/* The bare CR is refused as soon as it is seen. */
	assert_int_equal(parse_bytewise("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb"),
			 400);
}

/* Item 3: unknown transfer codings are 501. */
static void transfer_codings(void **state)
{
	(void)state;
	assert_int_equal(parse_s("PUT / HTTP/1.1\r\nHost: a\r\nTransfer-"
				 "Encoding: gzip, chunked\r\n\r\n"),
			 501);
	assert_int_equal(parse_s("PUT / HTTP/1.1\r\nHost: a\r\nTransfer-"
				 "Encoding: xchunked\r\n\r\n"),
			 501);
	assert_int_equal(parse_s("PUT / HTTP/1.1\r\nHost: a\r\nTransfer-"
				 "Encoding: identity\r\n\r\n"),
			 501);
	assert_int_equal(parse_s("PUT / HTTP/1.1\r\nHost: a\r\nTransfer-"
				 "Encoding: Chunked\r\n\r\n"),
			 0);
	assert_int_equal(rq.framing, HTTP_BODY_CHUNKED);
	assert_int_equal(parse_s("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: "
				 "17\r\nExpect: 100-continue\r\n\r\n"),
			 0);
	assert_int_equal(rq.framing, HTTP_BODY_LENGTH);
	assert_int_equal(rq.content_length, 17);
	assert_true(rq.is_expect_continue);
}

/* Item 2's sources: request line, versions, sizes. */
static void request_line_and_sizes(void **state)
{
	static char big[HTTP_HEAD_MAX * 2];
	size_t n;

	(void)state;
	assert_int_equal(parse_s("GARBAGE\r\n\r\n"), 400);
	assert_int_equal(parse_s("GET\r\n\r\n"), 400);
	assert_int_equal(parse_s("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
	assert_int_equal(parse_s("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400);
	assert_int_equal(parse_s("GET / http/1.1\r\nHost: a\r\n\r\n"), 400);
	assert_int_equal(parse_s("GET / HTTP/9.9\r\nHost: a\r\n\r\n"), 505);
	assert_int_equal(parse_s("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
	assert_int_equal(parse_s("GET / HTTP/1.9\r\nHost: a\r\n\r\n"), 0);
	assert_int_equal(parse_s("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
	assert_int_equal(parse_s("GETGETGETGETGETGETGET / HTTP/1.1\r\nHost: "
				 "a\r\n\r\n"),
			 501);
	assert_int_equal(parse_s("GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
	/* 414: a long target, even before its line ends. */
	n = (size_t)snprintf(big, sizeof(big), "GET /");
	memset(big + n, 'a', HTTP_REQUEST_LINE_MAX + 10);
	assert_int_equal(parse(big, n + HTTP_REQUEST_LINE_MAX + 10), 414);
	/* 431: a huge header section, and too many fields. */
	n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX: ");
	memset(big + n, 'a', HTTP_HEAD_MAX);
	assert_int_equal(parse(big, n + HTTP_HEAD_MAX), 431);
	n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\n");
	for (int i = 0; i < HTTP_FIELDS_MAX; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n, "X%d: 1\r\n", i);
	n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n");
	assert_int_equal(parse(big, n), 431);
}

static int dechunk(const char *raw, char *out, size_t *out_len,
		   size_t *consumed, size_t max)
{
	struct http_chunked c;
	const char *why = NULL;
	int rc;

	memset(&c, 0, sizeof(c));
	*out_len = 0;
	rc = http_chunked_feed(&c, raw, strlen(raw), consumed, out, out_len,
			       max, &why);
	if (rc != 0 && rc != 1)
		assert_non_null(why);
	return rc;
}

static void chunked_bodies(void **state)
{
	char out[64], big[1024];
	size_t len, used;
	struct http_chunked c;
	const char *why;
	const char *raw = "4;a=b\r\n{\"cl\r\n3\r\nie\"\r\n0\r\nT: 1\r\n\r\nNEXT";
	int rc = 0;

	(void)state;
	assert_int_equal(dechunk(raw, out, &len, &used, sizeof(out)), 1);
	assert_int_equal(len, 7);
	assert_memory_equal(out, "{\"clie\"", 7);
	assert_string_equal(raw + used, "NEXT");
	/* Byte by byte, decoding in place. */
	memset(&c, 0, sizeof(c));
	strcpy(big, raw);
	len = 0;
	for (size_t i = 0; rc == 0; i++) {
		rc = http_chunked_feed(&c, big + i, 1, &used, big, &len, 64,
				       &why);
		assert_int_equal(used, 1);
	}
	assert_int_equal(rc, 1);
	assert_memory_equal(big, "{\"clie\"", 7);
	/* Broken framing and limits. */
	assert_int_equal(dechunk("ZZZ\r\n", out, &len, &used, 64), 400);
	assert_int_equal(dechunk("4\r\nabcdX", out, &len, &used, 64), 400);
	assert_int_equal(dechunk("4\nabcd\r\n", out, &len, &used, 64), 400);
	assert_int_equal(dechunk("41\r\n", out, &len, &used, 64), 413);
	assert_int_equal(dechunk("fffffffff\r\n", out, &len, &used, 64), 413);
	assert_int_equal(dechunk("0\r\n folded\r\n\r\n", out, &len, &used, 64),
			 400);
	assert_int_equal(dechunk("1;\x01\r\n", out, &len, &used, 64), 400);
	/* Whitespace after the size only before a ';' (BWS of chunk-ext). */
	assert_int_equal(dechunk("1 \t;a\r\nx\r\n0\r\n\r\n", out, &len,
				 &used, 64),
			 1);
	assert_int_equal(dechunk("1 \r\nx\r\n0\r\n\r\n", out, &len, &used,
				 64),
			 400);
	assert_int_equal(dechunk("1 x\r\nx\r\n0\r\n\r\n", out, &len, &used,
				 64),
			 400);
	memset(big, ' ', sizeof(big));
	big[0] = '1';
	big[HTTP_CHUNK_EXT_MAX + 10] = '\0';
	assert_int_equal(dechunk(big, out, &len, &used, 64), 400);
	memset(big, 'x', sizeof(big));
	memcpy(big, "1;", 2);
	big[HTTP_CHUNK_EXT_MAX + 10] = '\0';
	assert_int_equal(dechunk(big, out, &len, &used, 64), 400);
	/* Incomplete is 0 with everything consumed. */
	assert_int_equal(dechunk("4\r\nab", out, &len, &used, 64), 0);
	assert_int_equal(used, 5);
	assert_int_equal(len, 2);
}

/*
 * The head's end and its CR/LF and size rules, byte by byte as RFC 9112
 * reads: the parser scans in runs, and must give the same verdict (status
 * and reason), or find the same end, for every input and every way of
 * cutting it into reads.
 */
static int ref_head_end(const char *b, size_t len, size_t *scanned,
			size_t *end, const char **why)
{
	size_t start = 0, i;
	const char *lf;

	while (start + 1 < len && b[start] == '\r' && b[start + 1] == '\n')
		start += 2;
	if (start >= HTTP_HEAD_MAX) {
		*why = "request header section too large";
		return 431;
	}
	if (start == len || (start + 1 == len && b[start] == '\r'))
		return HTTP_INCOMPLETE;
	lf = memchr(b + start, '\n', len - start);
	if ((!lf && len - start > HTTP_REQUEST_LINE_MAX) ||
	    (lf && (size_t)(lf - b) - start > HTTP_REQUEST_LINE_MAX)) {
		*why = "request line too long";
		return 414;
	}
	for (i = *scanned > start ? *scanned : start; i < len; i++) {
		if (b[i] == '\n') {
			if (i == start || b[i - 1] != '\r') {
				*why = "bare LF in the request head";
				return 400;
			}
			if (i >= start + 3 && b[i - 2] == '\n') {
				*end = i + 1;
				return 0;
			}
		} else if (i > start && b[i - 1] == '\r') {
			*why = "bare CR in the request head";
			return 400;
		}
		if (i - start >= HTTP_HEAD_MAX) {
			*why = "request header section too large";
			return 431;
		}
	}
	*scanned = len;
	return HTTP_INCOMPLETE;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static unsigned rnd(unsigned n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (unsigned)(rng_state % n);
}

/* The next read's end: random, often just around a limit. */
static size_t next_cut(size_t n, size_t len)
{
	static const size_t marks[] = {HTTP_HEAD_MAX, HTTP_REQUEST_LINE_MAX};
	size_t mark = marks[rnd(2)] + rnd(6);

	if (rnd(2) && n + 3 < mark && mark - 3 < len)
		return mark - 3 + rnd(6);
	n += 1 + (rnd(4) == 0 ? rnd(64) : rnd((unsigned)len));
	return n > len ? len : n;
}

/* Feeds raw[0..len) in random pieces to the parser and the reference. */
static void same_verdict(const char *raw, size_t len)
{
	static char a[HTTP_HEAD_MAX * 2 + 64];
	size_t n = 0, scanned = 0, ref_scanned = 0, head_len = 0, end = 0;
	const char *why = NULL, *ref_why = NULL;
	int rc = HTTP_INCOMPLETE, ref = HTTP_INCOMPLETE;

	memcpy(a, raw, len);
	while (n < len && rc == HTTP_INCOMPLETE) {
		n = next_cut(n, len);
		rc = http_parse_head(a, n, &scanned, &rq, &head_len, &why);
		ref = ref_head_end(raw, n, &ref_scanned, &end, &ref_why);
		if (ref == HTTP_INCOMPLETE) {
			assert_int_equal(rc, HTTP_INCOMPLETE);
		} else if (ref == 0) {
			assert_int_not_equal(rc, HTTP_INCOMPLETE);
			if (rc == 0)
				assert_int_equal(head_len, end);
		} else {
			assert_int_equal(rc, ref);
			assert_string_equal(why, ref_why);
		}
	}
}

static void head_end_as_byte_by_byte(void **state)
{
	static const char alphabet[] = "\r\n\r\n\r\na: \tH";
	static char raw[HTTP_HEAD_MAX + 256];
	static const char *const starts[] = {
		"", "\r\n", "GET / HTTP/1.1\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n", "\r\n\r\nGET / HTTP/1.0\r\n"};

	(void)state;
	for (int round = 0; round < 20000; round++) {
		const char *p = starts[rnd(5)];
		size_t len = strlen(p), want;
		bool is_clean = rnd(2);
		memcpy(raw, p, len);
		/* Mostly short heads; some around the request line and head
		 * limits. Clean ones are lines of plain bytes, perhaps with
		 * one stray byte near their end; the others are noise. */
		switch (rnd(6)) {
		case 0:
			want = HTTP_HEAD_MAX - 8 + rnd(24);
			break;
		case 1:
			want = HTTP_REQUEST_LINE_MAX - 8 + rnd(24);
			break;
		default:
			want = len + rnd(80);
			break;
		}
		while (len < want) {
			size_t run = 1 + rnd(want > 200 ? 4000 : 20);
			if (!is_clean && rnd(3)) {
				raw[len++] = alphabet[rnd(sizeof(alphabet) - 1)];
				continue;
			}
			if (run > want - len)
				run = want - len;
			memset(raw + len, 'x', run);
			len += run;
			if (is_clean && len + 2 <= want && rnd(4)) {
				raw[len++] = '\r';
				raw[len++] = '\n';
			}
		}
		if (is_clean && len > 0 && rnd(2))
			raw[len - 1 - rnd(len < 40 ? (unsigned)len : 40)] =
				alphabet[rnd(sizeof(alphabet) - 1)];
		if (rnd(2))
			for (int k = 0; k < 4; k++)
				raw[len++] = "\r\n\r\n"[k];
		same_verdict(raw, len);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(origin_form),
		cmocka_unit_test(fields_once),
		cmocka_unit_test(absolute_form),
		cmocka_unit_test(smuggling_shapes),
		cmocka_unit_test(transfer_codings),
		cmocka_unit_test(request_line_and_sizes),
		cmocka_unit_test(chunked_bodies),
		cmocka_unit_test(head_end_as_byte_by_byte),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
