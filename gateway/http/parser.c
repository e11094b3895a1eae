#include "parser.h"

#include <string.h>
#include <strings.h>

#include "common/ascii.h"
#include "common/chars.h"
#include "gateway/http/headers.h"

static bool is_tchar(unsigned char c)
{
	return das_ascii_is_tchar(c);
}

/* field-vchar / SP / HTAB (obs-text allowed); no other control. */
static bool is_value_char(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* True when every byte of s[0..n) is a value char, eight a step. */
static bool is_value(const char *s, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w = das_ascii_word(s + i);
		if (das_ascii_has_less(w, 0x20) | das_ascii_has_byte(w, 0x7f))
			break;
	}
	for (; i < n; i++)
		if (!is_value_char((unsigned char)s[i]))
			return false;
	return true;
}

static int fail(const char **why, const char *reason, int status)
{
	*why = reason;
	return status;
}

/*
 * Finds the end of the head: the first CRLF CRLF after the request line.
 * Refuses a bare CR or LF as soon as it is seen, and sizes at once.
 * The bytes between line ends are skipped in runs (memchr), not one by
 * one; the verdict is the one of a byte-by-byte walk (tests/unit
 * test_gateway_parser compares the two).
 */
static int find_end(const char *buf, size_t start, size_t len,
		    size_t *scanned, size_t *end, const char **why)
{
	size_t i = *scanned > start ? *scanned : start;
	const char *line_end = memchr(buf + start, '\n', len - start);
	/* A byte other than the final LF at or past this index: 431. */
	const size_t limit = start + HTTP_HEAD_MAX;

	if (!line_end && len - start > HTTP_REQUEST_LINE_MAX)
		return fail(why, "request line too long", 414);
	if (line_end && (size_t)(line_end - buf) - start > HTTP_REQUEST_LINE_MAX)
		return fail(why, "request line too long", 414);
	while (i < len) {
		/* The next CR or LF at or after i, or len. */
		const char *lf = memchr(buf + i, '\n', len - i);
		size_t stop = lf ? (size_t)(lf - buf) : len;
		const char *cr = memchr(buf + i, '\r', stop - i);
		size_t j = cr ? (size_t)(cr - buf) : stop;

		if (j > i) {
			/* A run of other bytes: only its first can follow a
			 * CR, and the size limit falls in it or not. */
			if (i > start && buf[i - 1] == '\r')
				return fail(why, "bare CR in the request head",
					    400);
			if (j - 1 >= limit)
				return fail(why,
					    "request header section too large",
					    431);
			i = j;
			if (i == len)
				break;
		}
		if (buf[i] == '\n') {
			if (i == start || buf[i - 1] != '\r')
				return fail(why, "bare LF in the request head",
					    400);
			if (i >= start + 3 && buf[i - 2] == '\n') {
				*end = i + 1;
				return 0;
			}
		} else if (i > start && buf[i - 1] == '\r') {
			return fail(why, "bare CR in the request head", 400);
		}
		if (i >= limit)
			return fail(why, "request header section too large",
				    431);
		i++;
	}
	/* Keep the last byte for the CR check of the next call. */
	*scanned = len;
	return HTTP_INCOMPLETE;
}

static int parse_version(const char *v, size_t n, int *minor,
			 const char **why)
{
	if (n != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' ||
	    v[6] != '.' || v[7] < '0' || v[7] > '9')
		return fail(why, "malformed HTTP version", 400);
	if (v[5] != '1')
		return fail(why, "HTTP version not supported", 505);
	*minor = v[7] - '0';
	return 0;
}

/* "http://authority/path?q" (scheme in any case) -> authority + path. */
static int parse_absolute(struct http_request *rq, char *t, size_t n,
			  const char **why)
{
	size_t skip = strncasecmp(t, "http://", 7) == 0	   ? 7
		      : strncasecmp(t, "https://", 8) == 0 ? 8
							   : 0;
	size_t a = skip;

	if (!skip)
		return fail(why, "malformed request target", 400);
	while (a < n && t[a] != '/' && t[a] != '?' && t[a] != '#')
		a++;
	if (a == skip || a - skip > HTTP_AUTHORITY_MAX)
		return fail(why, "malformed request target", 400);
	memcpy(rq->authority, t + skip, a - skip);
	rq->authority[a - skip] = '\0';
	if (strchr(rq->authority, '@') || !gw_host_is_valid(rq->authority))
		return fail(why, "malformed request target", 400);
	rq->has_authority = true;
	if (a < n && t[a] == '/') {
		rq->target = t + a;
		rq->target_len = n - a;
	} else {
		rq->target = "/";
		rq->target_len = 1;
	}
	return 0;
}

static int parse_request_line(struct http_request *rq, char *p, char *eol,
			      const char **why)
{
	char *sp1, *sp2;
	size_t mlen, tlen;
	int rc;

	for (sp1 = p; sp1 < eol && is_tchar((unsigned char)*sp1); sp1++)
		;
	mlen = (size_t)(sp1 - p);
	if (mlen == 0 || sp1 == eol || *sp1 != ' ')
		return fail(why, "malformed request line", 400);
	if (mlen > HTTP_METHOD_MAX)
		return fail(why, "method not implemented", 501);
	for (sp2 = sp1 + 1;
	     sp2 < eol && (unsigned char)*sp2 > 0x20 && (unsigned char)*sp2 < 0x7f;
	     sp2++)
		;
	tlen = (size_t)(sp2 - sp1 - 1);
	if (tlen == 0 || sp2 == eol || *sp2 != ' ')
		return fail(why, "malformed request line", 400);
	rc = parse_version(sp2 + 1, (size_t)(eol - sp2 - 1), &rq->minor_version,
			   why);
	if (rc)
		return rc;
	*sp1 = '\0';
	*sp2 = '\0';
	rq->method = p;
	if (sp1[1] == '/') {
		rq->target = sp1 + 1;
		rq->target_len = tlen;
		return 0;
	}
	return parse_absolute(rq, sp1 + 1, tlen, why);
}

/* One "name: value" line between p and eol (eol points at its CR). */
static int parse_field(struct http_request *rq, char *p, char *eol,
		       const char **why)
{
	char *colon = p, *v, *e;

	if (*p == ' ' || *p == '\t')
		return fail(why, "obsolete line folding", 400);
	while (colon < eol && is_tchar((unsigned char)*colon))
		colon++;
	if (colon == p || colon == eol || *colon != ':')
		return fail(why, "malformed header field", 400);
	for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
		;
	for (e = eol; e > v && (e[-1] == ' ' || e[-1] == '\t'); e--)
		;
	if (!is_value(v, (size_t)(e - v)))
		return fail(why, "control character in a header value", 400);
	if (rq->n_fields >= HTTP_FIELDS_MAX)
		return fail(why, "too many header fields", 431);
	*colon = '\0';
	*e = '\0';
	rq->fields[rq->n_fields].name = p;
	rq->fields[rq->n_fields].name_len = (size_t)(colon - p);
	rq->fields[rq->n_fields].value = v;
	rq->n_fields++;
	return 0;
}

/* Calls fn on each comma-separated, space-trimmed token of value. */
typedef int token_fn(void *arg, const char *t, size_t n);

static int each_token(const char *value, token_fn *fn, void *arg)
{
	const char *p = value;

	for (;;) {
		const char *end = strchr(p, ',');
		const char *e = end ? end : p + strlen(p);
		const char *s = p;
		int rc;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		rc = fn(arg, s, (size_t)(e - s));
		if (rc)
			return rc;
		if (!end)
			return 0;
		p = end + 1;
	}
}

struct te_state {
	int n_chunked;
	bool is_last_chunked;
	bool has_empty;
	bool has_unknown;
};

static int te_token(void *arg, const char *t, size_t n)
{
	struct te_state *s = arg;

	s->is_last_chunked = false;
	if (n == 0)
		s->has_empty = true;
	else if (n == 7 && strncasecmp(t, "chunked", 7) == 0) {
		s->n_chunked++;
		s->is_last_chunked = true;
	} else
		s->has_unknown = true;
	return 0;
}

struct conn_state {
	bool has_close;
	bool has_keep_alive;
};

static int conn_token(void *arg, const char *t, size_t n)
{
	struct conn_state *s = arg;

	if (n == 5 && strncasecmp(t, "close", 5) == 0)
		s->has_close = true;
	if (n == 10 && strncasecmp(t, "keep-alive", 10) == 0)
		s->has_keep_alive = true;
	return 0;
}

static int parse_content_length(const char *v, uint64_t *out)
{
	uint64_t n = 0;
	size_t i = 0;

	for (; v[i]; i++) {
		if (v[i] < '0' || v[i] > '9' || i >= 18)
			return -1;
		n = n * 10 + (uint64_t)(v[i] - '0');
	}
	if (i == 0)
		return -1;
	*out = n;
	return 0;
}

/* Host, framing and connection rules over the parsed fields. */
static int judge_fields(struct http_request *rq, const char **why)
{
	struct te_state te = {0};
	struct conn_state cs = {false, false};
	int n_host = 0, n_cl = 0, n_te = 0;

	for (size_t i = 0; i < rq->n_fields; i++) {
		const char *name = rq->fields[i].name;
		const char *value = rq->fields[i].value;
		size_t n = rq->fields[i].name_len;
		/* The lengths of the names below: others are skipped. */
		if (n != 4 && n != 6 && n != 10 && n != 14 && n != 17)
			continue;
		if (strcasecmp(name, "host") == 0) {
			n_host++;
			rq->host = value;
		} else if (strcasecmp(name, "content-length") == 0) {
			n_cl++;
			if (parse_content_length(value, &rq->content_length))
				return fail(why, "invalid Content-Length", 400);
		} else if (strcasecmp(name, "transfer-encoding") == 0) {
			n_te++;
			each_token(value, te_token, &te);
		} else if (strcasecmp(name, "connection") == 0) {
			each_token(value, conn_token, &cs);
		} else if (strcasecmp(name, "expect") == 0) {
			rq->is_expect_continue =
				strcasecmp(value, "100-continue") == 0;
		}
	}
	if (n_host > 1)
		return fail(why, "more than one Host header", 400);
	if (n_host == 0 && rq->minor_version >= 1)
		return fail(why, "missing Host header", 400);
	if (rq->host && *rq->host && !gw_host_is_valid(rq->host))
		return fail(why, "invalid Host header", 400);
	if (n_cl > 1)
		return fail(why, "more than one Content-Length", 400);
	if (n_te) {
		if (rq->minor_version == 0)
			return fail(why, "Transfer-Encoding in HTTP/1.0", 400);
		if (n_cl)
			return fail(why,
				    "both Content-Length and Transfer-Encoding",
				    400);
		if (te.has_unknown)
			return fail(why, "transfer coding not implemented",
				    501);
		if (te.has_empty || te.n_chunked != 1 || !te.is_last_chunked)
			return fail(why, "invalid Transfer-Encoding", 400);
		rq->framing = HTTP_BODY_CHUNKED;
	} else if (n_cl && rq->content_length > 0) {
		rq->framing = HTTP_BODY_LENGTH;
	}
	rq->is_keep_alive = rq->minor_version >= 1 ? !cs.has_close
						   : cs.has_keep_alive &&
							     !cs.has_close;
	return 0;
}

int http_parse_head(char *buf, size_t len, size_t *scanned,
		    struct http_request *rq, size_t *head_len,
		    const char **why)
{
	size_t start = 0, end = 0;
	char *p, *eol;
	int rc;

	/* Empty lines before the request line are ignored (RFC 9112 2.2). */
	while (start + 1 < len && buf[start] == '\r' && buf[start + 1] == '\n')
		start += 2;
	if (start >= HTTP_HEAD_MAX)
		return fail(why, "request header section too large", 431);
	if (start == len || (start + 1 == len && buf[start] == '\r'))
		return HTTP_INCOMPLETE;
	rc = find_end(buf, start, len, scanned, &end, why);
	if (rc)
		return rc;
	memset(rq, 0, sizeof(*rq));
	p = buf + start;
	eol = memchr(p, '\r', (size_t)(buf + end - p));
	rc = parse_request_line(rq, p, eol, why);
	if (rc)
		return rc;
	for (p = eol + 2; p < buf + end - 2; p = eol + 2) {
		eol = memchr(p, '\r', (size_t)(buf + end - p));
		rc = parse_field(rq, p, eol, why);
		if (rc)
			return rc;
	}
	rc = judge_fields(rq, why);
	if (rc)
		return rc;
	*head_len = end;
	return 0;
}

const char *http_request_field(const struct http_request *rq,
			       const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < rq->n_fields; i++)
		if (rq->fields[i].name_len == n &&
		    strcasecmp(rq->fields[i].name, name) == 0)
			return rq->fields[i].value;
	return NULL;
}

const char *http_request_field_once(const struct http_request *rq,
				    const char *name, bool *is_repeated)
{
	size_t n = strlen(name);
	const char *found = NULL;

	*is_repeated = false;
	for (size_t i = 0; i < rq->n_fields; i++) {
		if (rq->fields[i].name_len != n ||
		    strcasecmp(rq->fields[i].name, name) != 0)
			continue;
		if (found) {
			*is_repeated = true;
			return NULL;
		}
		found = rq->fields[i].value;
	}
	return found;
}

/* ---- chunked ------------------------------------------------------------ */

enum {
	CH_SIZE_FIRST,
	CH_SIZE,
	CH_SIZE_BWS,
	CH_EXT,
	CH_SIZE_LF,
	CH_DATA,
	CH_DATA_CR,
	CH_DATA_LF,
	CH_TRAILER_START,
	CH_TRAILER_LINE,
	CH_TRAILER_LF,
	CH_END_LF,
};

/* One framing byte (everything but chunk data). */
static int chunk_byte(struct http_chunked *c, unsigned char b, size_t out_len,
		      size_t out_max, const char **why)
{
	int d;

	switch (c->state) {
	case CH_SIZE_FIRST:
	case CH_SIZE:
		d = das_hex_digit(b);
		if (d >= 0) {
			if (++c->digits > 8)
				return fail(why, "chunk size too large", 413);
			c->size = c->size * 16 + (uint64_t)d;
			c->state = CH_SIZE;
			return 0;
		}
		if (c->state == CH_SIZE_FIRST)
			return fail(why, "malformed chunk size", 400);
		if (c->size > out_max - out_len)
			return fail(why, "body too large", 413);
		if (b == '\r') {
			c->state = CH_SIZE_LF;
			return 0;
		}
		if (b != ';' && b != ' ' && b != '\t')
			return fail(why, "malformed chunk size", 400);
		c->state = b == ';' ? CH_EXT : CH_SIZE_BWS;
		c->ext_len = 0;
		return 0;
	case CH_SIZE_BWS:
		/* chunk-ext = *( BWS ";" ...): whitespace after the size
		 * only comes before a ';' ("18 x" or "18 " then CRLF is
		 * not a chunk size, whatever another parser makes of it). */
		if (++c->ext_len > HTTP_CHUNK_EXT_MAX)
			return fail(why, "chunk extension too long", 400);
		if (b == ';') {
			c->state = CH_EXT;
			return 0;
		}
		if (b != ' ' && b != '\t')
			return fail(why, "malformed chunk extension", 400);
		return 0;
	case CH_EXT:
		if (b == '\r') {
			c->state = CH_SIZE_LF;
			return 0;
		}
		if (++c->ext_len > HTTP_CHUNK_EXT_MAX)
			return fail(why, "chunk extension too long", 400);
		if (!is_value_char(b))
			return fail(why, "malformed chunk extension", 400);
		return 0;
	case CH_SIZE_LF:
		if (b != '\n')
			return fail(why, "malformed chunk framing", 400);
		c->state = c->size ? CH_DATA : CH_TRAILER_START;
		c->digits = 0;
		return 0;
	case CH_DATA_CR:
		if (b != '\r')
			return fail(why, "malformed chunk framing", 400);
		c->state = CH_DATA_LF;
		return 0;
	case CH_DATA_LF:
		if (b != '\n')
			return fail(why, "malformed chunk framing", 400);
		c->state = CH_SIZE_FIRST;
		c->size = 0;
		return 0;
	case CH_TRAILER_START:
	case CH_TRAILER_LINE:
		if (++c->trailer_len > HTTP_TRAILERS_MAX)
			return fail(why, "trailer section too large", 400);
		if (b == '\r') {
			c->state = c->state == CH_TRAILER_START ? CH_END_LF
								: CH_TRAILER_LF;
			return 0;
		}
		if (!is_value_char(b) ||
		    (c->state == CH_TRAILER_START && (b == ' ' || b == '\t')))
			return fail(why, "malformed trailer field", 400);
		c->state = CH_TRAILER_LINE;
		return 0;
	case CH_TRAILER_LF:
		if (b != '\n')
			return fail(why, "malformed trailer field", 400);
		c->state = CH_TRAILER_START;
		return 0;
	case CH_END_LF:
		if (b != '\n')
			return fail(why, "malformed chunk framing", 400);
		return 1;
	}
	return fail(why, "malformed chunk framing", 400);
}

int http_chunked_feed(struct http_chunked *c, const char *in, size_t len,
		      size_t *consumed, char *out, size_t *out_len,
		      size_t out_max, const char **why)
{
	size_t i = 0;

	while (i < len) {
		if (c->state == CH_DATA) {
			size_t n = len - i;
			if (n > c->size)
				n = (size_t)c->size;
			memmove(out + *out_len, in + i, n);
			*out_len += n;
			c->size -= n;
			i += n;
			if (c->size == 0)
				c->state = CH_DATA_CR;
			continue;
		}
		int rc = chunk_byte(c, (unsigned char)in[i], *out_len, out_max,
				    why);
		i++;
		if (rc) {
			*consumed = i;
			return rc;
		}
	}
	*consumed = i;
	return 0;
}
