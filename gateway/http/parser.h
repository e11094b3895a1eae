/*
 * A strict HTTP/1.1 request parser (RFC 9112): the request line and header
 * section, and the chunked body decoder. Pure: no I/O, no allocation; it
 * works in the caller's buffer and NUL-terminates names and values in
 * place.
 *
 * What is refused, and with which status:
 *   400  malformed request line, bare CR or LF, a space before a colon,
 *        obs-fold, control characters in a value, no Host (HTTP/1.1) or more
 *        than one, a bad Content-Length (signs, lists, repeats), both
 *        Content-Length and Transfer-Encoding, Transfer-Encoding in
 *        HTTP/1.0, chunked applied twice, bad chunk framing, an over-long
 *        chunk extension or trailer section
 *   414  request line over HTTP_REQUEST_LINE_MAX
 *   431  header section over HTTP_HEAD_MAX or over HTTP_FIELDS_MAX fields
 *   501  a transfer coding other than chunked; an over-long method
 *   505  an HTTP major version other than 1
 */
#ifndef GW_HTTP_PARSER_H
#define GW_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_REQUEST_LINE_MAX 8192
#define HTTP_HEAD_MAX	      16384 /* request line + header section */
#define HTTP_FIELDS_MAX	      64
#define HTTP_METHOD_MAX	      16
#define HTTP_AUTHORITY_MAX    255
#define HTTP_CHUNK_EXT_MAX    256  /* per chunk */
#define HTTP_TRAILERS_MAX     4096 /* whole trailer section */

/* http_parse_head's "not yet": the head is not complete. */
#define HTTP_INCOMPLETE (-1)

struct http_field {
	const char *name;  /* NUL-terminated, as sent (case kept) */
	size_t name_len;
	const char *value; /* NUL-terminated, surrounding spaces removed */
};

enum http_framing {
	HTTP_BODY_NONE,
	HTTP_BODY_LENGTH,
	HTTP_BODY_CHUNKED,
};

struct http_request {
	const char *method; /* NUL-terminated token */
	/* The path and query: origin-form as sent, or the path part of an
	 * absolute-form target ("/" when it has none). NUL-terminated. */
	const char *target;
	size_t target_len;
	/* Absolute-form: the authority, which then stands for Host. */
	bool has_authority;
	char authority[HTTP_AUTHORITY_MAX + 1];
	int minor_version; /* HTTP/1.<minor> */
	size_t n_fields;
	struct http_field fields[HTTP_FIELDS_MAX];
	const char *host; /* the Host value, or NULL when absent */
	enum http_framing framing;
	uint64_t content_length; /* with HTTP_BODY_LENGTH */
	bool is_keep_alive;	 /* by version and Connection */
	bool is_expect_continue;
};

/*
 * Parses the head at the start of buf (len bytes so far). *scanned carries
 * how far earlier calls got (start at 0; the caller keeps it between calls
 * on the same request). Returns 0 with rq filled and *head_len = bytes of
 * the head including the blank line, HTTP_INCOMPLETE, or an HTTP status
 * (400, 414, 431, 501, 505) with *why set to a short public reason.
 * On 0 the head bytes of buf have been rewritten (NULs); rq points into buf.
 */
int http_parse_head(char *buf, size_t len, size_t *scanned,
		    struct http_request *rq, size_t *head_len,
		    const char **why);

/* The first field named name (any case), or NULL. */
const char *http_request_field(const struct http_request *rq,
			       const char *name);

/*
 * The field named name (any case) when it appears exactly once; NULL when
 * it is absent or repeated, and *is_repeated says which. For the fields
 * the gateway acts on, whose meaning two lines would leave open (RFC 9110
 * 5.3: a field that is not a list appears once).
 */
const char *http_request_field_once(const struct http_request *rq,
				    const char *name, bool *is_repeated);

/* The chunked body decoder: all fields private, zero-initialised. */
struct http_chunked {
	int state;
	uint64_t size; /* bytes left in the current chunk */
	unsigned digits;
	size_t ext_len;
	size_t trailer_len;
};

/*
 * Feeds in[0..len) to the decoder, appending chunk data to out (*out_len
 * bytes so far, at most out_max; out may be in itself at or before the
 * input, as data never grows). *consumed = input bytes used. Returns 0 when
 * more input is needed (all of it consumed), 1 when the body is complete
 * (the rest of the input belongs to the next request), 413 when the data
 * would exceed out_max, or 400 with *why set.
 */
int http_chunked_feed(struct http_chunked *c, const char *in, size_t len,
		      size_t *consumed, char *out, size_t *out_len,
		      size_t out_max, const char **why);

#endif
