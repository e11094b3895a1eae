#include "conn.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/metrics.h"
#include "gateway/observe.h"
#include "common/status.h"
#include "gateway/docs.h"
#include "gateway/reply.h"
#include "gateway/transcode/transcode.h"

#define IN_INITIAL  4096
#define OUT_INITIAL 2048
/* Pipelined answers queue up to this much before we wait for the client. */
#define OUT_BATCH (16 * 1024)

/* Bodies longer than this are written from where they are, not copied. */
#define BODY_COPY_MAX (8 * 1024)

/* What one answer carries besides its status. */
struct extra {
	const char *content_type; /* NULL = the product's JSON */
	const char *lines;	  /* more header lines ("N: v\r\n"...) or NULL */
	const char *allow;
	const char *location;
	bool has_www_authenticate;
	bool has_retry_after;
	size_t body_len;
	bool is_body_owned; /* malloc'd: ours to free once written */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void ref_release(struct gw_conn *c)
{
	free(c->ref_owned);
	c->ref_owned = NULL;
	c->ref = NULL;
	c->ref_len = c->ref_off = 0;
}

int gw_conn_init(struct gw_conn *c, const struct gw_conn_config *cfg)
{
	memset(c, 0, sizeof(*c));
	c->cfg = cfg;
	c->in = malloc(IN_INITIAL);
	c->out = malloc(OUT_INITIAL);
	if (!c->in || !c->out) {
		gw_conn_release(c);
		return -1;
	}
	c->in_cap = IN_INITIAL;
	c->out_cap = OUT_INITIAL;
	return 0;
}

void gw_conn_release(struct gw_conn *c)
{
	ref_release(c);
	gw_call_outcome_release(&c->outcome);
	free(c->in);
	free(c->out);
	c->in = NULL;
	c->out = NULL;
}

char *gw_conn_in_space(struct gw_conn *c, size_t *avail)
{
	if (c->in_len == c->in_cap) {
		size_t cap = c->in_cap * 2;
		char *p;
		if (c->in_cap >= GW_CONN_IN_MAX) {
			*avail = 0;
			return NULL;
		}
		if (cap > GW_CONN_IN_MAX)
			cap = GW_CONN_IN_MAX;
		p = realloc(c->in, cap);
		if (!p) {
			*avail = 0;
			return NULL;
		}
		c->in = p;
		c->in_cap = cap;
	}
	*avail = c->in_cap - c->in_len;
	return c->in + c->in_len;
}

void gw_conn_in_commit(struct gw_conn *c, size_t n)
{
	c->in_len += n;
}

void gw_conn_in_eof(struct gw_conn *c)
{
	c->is_eof = true;
}

bool gw_conn_is_mid_request(const struct gw_conn *c)
{
	return c->phase == GW_PHASE_BODY ||
	       (c->phase == GW_PHASE_HEAD && c->in_len > 0);
}

bool gw_conn_is_reading_head(const struct gw_conn *c)
{
	return c->phase == GW_PHASE_HEAD && c->in_len > 0;
}

/* The output is the buffer, then the body written from where it is. */
const char *gw_conn_output(const struct gw_conn *c, size_t *len)
{
	if (c->out_len > c->out_off || !c->ref) {
		*len = c->out_len - c->out_off;
		return c->out + c->out_off;
	}
	*len = c->ref_len - c->ref_off;
	return c->ref + c->ref_off;
}

void gw_conn_output_done(struct gw_conn *c, size_t n)
{
	if (c->out_len > c->out_off) {
		c->out_off += n;
		if (c->out_off == c->out_len)
			c->out_off = c->out_len = 0;
		return;
	}
	c->ref_off += n;
	if (c->ref_off == c->ref_len)
		ref_release(c);
}

static size_t out_pending(const struct gw_conn *c)
{
	return c->out_len - c->out_off + (c->ref ? c->ref_len - c->ref_off : 0);
}

/* Room for n more output bytes; -1 when over GW_CONN_OUT_MAX. */
static int out_reserve(struct gw_conn *c, size_t n)
{
	size_t cap;
	char *p;

	if (c->out_len + n <= c->out_cap)
		return 0;
	if (c->out_off) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
		if (c->out_len + n <= c->out_cap)
			return 0;
	}
	if (c->out_len + n > GW_CONN_OUT_MAX)
		return -1;
	for (cap = c->out_cap; cap < c->out_len + n; cap *= 2)
		;
	if (cap > GW_CONN_OUT_MAX)
		cap = GW_CONN_OUT_MAX;
	p = realloc(c->out, cap);
	if (!p)
		return -1;
	c->out = p;
	c->out_cap = cap;
	return 0;
}

static const char *reason_phrase(unsigned status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 402: return "Payment Required";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	}
	return "Unknown";
}

/* The Date header value, formatted once per second per thread. */
static const char *http_date(void)
{
	static _Thread_local char buf[40];
	static _Thread_local time_t last;
	time_t t = time(NULL);
	struct tm tm;

	if (t != last || !buf[0]) {
		gmtime_r(&t, &tm);
		strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		last = t;
	}
	return buf;
}

/* Appends n bytes of s at p; returns the end. */
static char *put(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)

static char *put_str(char *p, const char *s)
{
	return put(p, s, strlen(s));
}

/* The decimal digits of v. */
static char *put_dec(char *p, size_t v)
{
	char d[24];
	size_t i = sizeof(d);

	do {
		d[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return put(p, d + i, sizeof(d) - i);
}

/*
 * The status line and header section of an answer, written at p without
 * printf (this is on every request's path). Returns the end.
 */
static char *put_head(char *p, const struct gw_conn *c, unsigned status,
		      const struct extra *x, size_t body_len)
{
	p = PUT_LIT(p, "HTTP/1.1 ");
	p = put_dec(p, status);
	*p++ = ' ';
	p = put_str(p, reason_phrase(status));
	p = PUT_LIT(p, "\r\nDate: ");
	p = put_str(p, http_date());
	p = PUT_LIT(p, "\r\nContent-Type: ");
	if (x->content_type)
		p = put_str(p, x->content_type);
	else
		p = PUT_LIT(p, "application/json; charset=utf-8");
	p = PUT_LIT(p, "\r\nContent-Length: ");
	p = put_dec(p, body_len);
	p = PUT_LIT(p, "\r\nX-Request-Id: ");
	p = put_str(p, c->request_id);
	p = PUT_LIT(p, "\r\n");
	if (x->has_www_authenticate)
		p = PUT_LIT(p, "WWW-Authenticate: Bearer\r\n");
	if (x->allow) {
		p = PUT_LIT(p, "Allow: ");
		p = put_str(p, x->allow);
		p = PUT_LIT(p, "\r\n");
	}
	if (x->location) {
		p = PUT_LIT(p, "Location: ");
		p = put_str(p, x->location);
		p = PUT_LIT(p, "\r\n");
	}
	if (x->has_retry_after)
		p = PUT_LIT(p, "Retry-After: 1\r\n");
	if (x->lines)
		p = put_str(p, x->lines);
	if (c->is_closing)
		p = PUT_LIT(p, "Connection: close\r\n");
	else if (c->req.minor_version == 0)
		p = PUT_LIT(p, "Connection: keep-alive\r\n");
	return PUT_LIT(p, "\r\n");
}

/* Counts the answered request and writes its access line. */
static void log_request(struct gw_conn *c, unsigned status,
			enum das_status answered)
{
	bool has_head = c->head_len > 0;

	gw_obs_end(&(struct gw_obs_request){
		.method = has_head ? c->req.method : "-",
		.path = has_head ? c->req.target : "-",
		.path_len = has_head ? c->req.target_len : 1,
		.route_rc = c->is_obs_begun ? c->route_rc : GW_ROUTE_NOT_FOUND,
		.rpc = c->match.rpc,
		.is_begun = c->is_obs_begun,
		.http_status = status,
		.status = answered,
		.request_id = c->request_id,
		.duration_ms =
			c->t0_ns ? (double)(now_ns() - c->t0_ns) / 1e6 : 0.0,
	});
	c->is_obs_begun = false;
}

/*
 * Appends one whole response. The body (x->body_len bytes) is copied when
 * short; a longer one is written from where it is after the head (taken
 * over and freed when x->is_body_owned, else it must be static).
 */
static void out_response(struct gw_conn *c, unsigned status,
			 const char *body, const struct extra *x)
{
	size_t body_len = body ? x->body_len : 0;
	bool is_sent = body_len && !c->is_head_method;
	bool is_copied = is_sent && body_len <= BODY_COPY_MAX;
	size_t room = 512 + strlen(c->request_id) + (is_copied ? body_len : 0) +
		      (x->location ? strlen(x->location) : 0) +
		      (x->allow ? strlen(x->allow) : 0) +
		      (x->lines ? strlen(x->lines) : 0) +
		      (x->content_type ? strlen(x->content_type) : 0);
	bool is_keep_alive = c->head_len && c->req.is_keep_alive;
	char *p;
	size_t n;

	if (!is_keep_alive || c->is_draining)
		c->is_closing = true;
	if (out_reserve(c, room) != 0)
		goto fail;
	p = c->out + c->out_len;
	n = (size_t)(put_head(p, c, status, x, body_len) - p);
	if (n > room)
		abort(); /* room above counts every byte put_head writes */
	c->out_len += (size_t)n;
	if (is_copied) {
		memcpy(c->out + c->out_len, body, body_len);
		c->out_len += body_len;
	} else if (is_sent) {
		c->ref = body;
		c->ref_len = body_len;
		c->ref_off = 0;
		if (x->is_body_owned)
			c->ref_owned = (char *)body;
		return;
	}
	if (x->is_body_owned)
		free((char *)body);
	return;
fail:
	c->is_closing = true;
	if (x->is_body_owned)
		free((char *)body);
}

/* Bytes of the current request in the input buffer. */
static size_t request_size(const struct gw_conn *c)
{
	switch (c->req.framing) {
	case HTTP_BODY_LENGTH:
		return c->head_len + (size_t)c->req.content_length;
	case HTTP_BODY_CHUNKED:
		return c->head_len + c->body_raw;
	case HTTP_BODY_NONE:
		break;
	}
	return c->head_len;
}

/* The request is answered: drop its bytes, get ready for the next one. */
static void request_end(struct gw_conn *c)
{
	if (!c->is_closing && c->head_len) {
		size_t used = request_size(c);
		memmove(c->in, c->in + used, c->in_len - used);
		c->in_len -= used;
	}
	c->phase = GW_PHASE_HEAD;
	c->scanned = c->head_len = c->body_len = c->body_raw = 0;
	memset(&c->chunked, 0, sizeof(c->chunked));
	c->is_head_method = false;
	c->location[0] = '\0';
	c->t0_ns = 0;
	c->n_requests++;
}

/* Sends r (takes its body) and ends the request. */
static void answer(struct gw_conn *c, struct gw_reply *r, bool is_closing,
		   bool has_retry_after)
{
	static const char oom[] =
		"{\"error\":500,\"message\":\"Internal Server Error\","
		"\"status\":\"error\"}";
	struct extra x = {
		.body_len = strlen(r->body ? r->body : oom),
		.is_body_owned = r->body != NULL,
		.allow = r->allow,
		.location = r->http_status == 201 && c->location[0]
				    ? c->location
				    : NULL,
		.has_www_authenticate = r->has_www_authenticate,
		.has_retry_after = has_retry_after,
	};

	if (is_closing)
		c->is_closing = true;
	out_response(c, r->http_status, r->body ? r->body : oom, &x);
	r->body = NULL; /* out_response took it */
	c->last_status = r->http_status;
	log_request(c, r->http_status, r->status);
	request_end(c);
}

void gw_conn_answer_raw(struct gw_conn *c, unsigned status,
			const char *content_type, const char *lines,
			const char *body, size_t len, bool is_owned)
{
	struct extra x = {
		.content_type = content_type,
		.lines = lines,
		.body_len = len,
		.is_body_owned = is_owned,
	};

	out_response(c, status, body, &x);
	c->last_status = status;
	log_request(c, status, DAS_OK);
	request_end(c);
}

static void answer_error(struct gw_conn *c, enum das_status st,
			 const char *arg, bool is_closing)
{
	struct gw_reply r;

	gw_reply_error(&r, st, arg, das_time_now());
	if (st == DAS_METHOD_NOT_ALLOWED)
		r.allow = c->match.allow;
	answer(c, &r, is_closing, false);
}

static void new_request_id(struct gw_conn *c)
{
	gw_request_id_make(c->cfg->id_prefix,
			   atomic_fetch_add(c->cfg->id_counter, 1),
			   c->request_id);
}

void gw_conn_refuse(struct gw_conn *c)
{
	struct gw_reply r;

	new_request_id(c);
	gw_reply_error(&r, DAS_UNAVAILABLE, NULL, das_time_now());
	answer(c, &r, true, true);
}

void gw_conn_drain(struct gw_conn *c)
{
	c->is_draining = true;
	if (c->phase == GW_PHASE_HEAD)
		c->is_closing = true;
}

static void answer_parse_error(struct gw_conn *c, int status,
			       const char *why)
{
	enum das_status st;

	c->head_len = 0; /* nothing of it may be used */
	new_request_id(c);
	switch (status) {
	case 413:
		st = DAS_PAYLOAD_TOO_LARGE;
		why = NULL;
		break;
	case 414:
		st = DAS_URI_TOO_LONG;
		break;
	case 431:
		st = DAS_HEADERS_TOO_LARGE;
		break;
	case 501:
		st = DAS_NOT_IMPLEMENTED;
		break;
	case 505:
		st = DAS_HTTP_VERSION_NOT_SUPPORTED;
		break;
	default:
		st = DAS_INVALID_ARGUMENT;
		break;
	}
	answer_error(c, st, why, true);
}

/* The path without its query, for Location. */
static void path_of(const struct gw_conn *c, char *out, size_t size)
{
	size_t n = 0;

	while (n < c->req.target_len && c->req.target[n] != '?' &&
	       n + 1 < size) {
		out[n] = c->req.target[n];
		n++;
	}
	out[n] = '\0';
}

/* The request's id: its X-Request-Id when valid and sent once (two are
 * as good as none), else a fresh one. */
static void take_request_id(struct gw_conn *c)
{
	bool is_repeated;
	const char *rid =
		http_request_field_once(&c->req, "X-Request-Id", &is_repeated);

	if (gw_request_id_is_valid(rid))
		memcpy(c->request_id, rid, strlen(rid) + 1); /* <= MAX */
	else
		new_request_id(c);
}

/* The route of the request; an unknown or refused one is answered. */
static int judge_route(struct gw_conn *c, bool has_body)
{
	const struct http_request *q = &c->req;

	c->route_rc =
		gw_route_match(q->method, q->target, q->target_len, &c->match);
	gw_obs_begin(c->route_rc, c->match.rpc);
	c->is_obs_begun = true;
	switch (c->route_rc) {
	case GW_ROUTE_OK:
		return 0;
	case GW_ROUTE_NOT_FOUND:
		answer_error(c, DAS_ROUTE_NOT_FOUND, NULL, has_body);
		return -1;
	case GW_ROUTE_METHOD_NOT_ALLOWED:
		answer_error(c, DAS_METHOD_NOT_ALLOWED, NULL, has_body);
		return -1;
	case GW_ROUTE_BAD_REQUEST:
	default:
		answer_error(c, DAS_INVALID_ARGUMENT, c->match.reason,
			     has_body);
		return -1;
	}
}

/* An assign's Content-Type and accept-charges, each sent at most once. */
static int judge_assign_fields(struct gw_conn *c, bool has_body)
{
	const struct http_request *q = &c->req;
	bool is_repeated;
	const char *type, *charges;

	type = http_request_field_once(q, "Content-Type", &is_repeated);
	if (is_repeated) {
		answer_error(c, DAS_INVALID_ARGUMENT,
			     "more than one Content-Type header", has_body);
		return -1;
	}
	if (!gw_content_type_is_json(type)) {
		answer_error(c, DAS_UNSUPPORTED_MEDIA_TYPE, NULL, has_body);
		return -1;
	}
	charges = http_request_field_once(q, "accept-charges", &is_repeated);
	if (is_repeated) {
		answer_error(c, DAS_INVALID_ARGUMENT,
			     "more than one accept-charges header", has_body);
		return -1;
	}
	if (gw_parse_accept_charges(charges, &c->accept_charges) != 0) {
		answer_error(c, DAS_INVALID_ARGUMENT,
			     "accept-charges must be true or false", has_body);
		return -1;
	}
	return 0;
}

/* The ledger's query string, parsed into c->ledger. */
static int judge_ledger_query(struct gw_conn *c, bool has_body)
{
	const struct http_request *q = &c->req;
	const char *query = memchr(q->target, '?', q->target_len);
	size_t len = query ? q->target_len - (size_t)(query - q->target) - 1
			   : 0;
	char reason[GW_QUERY_REASON_SIZE];

	if (gw_query_parse_ledger(query ? query + 1 : "", len, &c->ledger,
				  reason) != 0) {
		answer_error(c, DAS_INVALID_ARGUMENT, reason, has_body);
		return -1;
	}
	return 0;
}

/* Everything judged before a body byte is read. Returns 0 to go on. An
 * answer before the body is read ends the connection. */
static int judge_head(struct gw_conn *c)
{
	const struct http_request *q = &c->req;
	bool has_body = q->framing != HTTP_BODY_NONE;
	const char *host = q->has_authority ? q->authority : q->host;
	char path[GW_PATH_MAX + 1];

	take_request_id(c);
	c->is_head_method = strcmp(q->method, "HEAD") == 0;
	if (judge_route(c, has_body) != 0)
		return -1;
	if (q->framing == HTTP_BODY_LENGTH && q->content_length > GW_MAX_BODY) {
		answer_error(c, DAS_PAYLOAD_TOO_LARGE, NULL, true);
		return -1;
	}
	if (c->match.rpc == GW_ROUTE_ASSIGN &&
	    judge_assign_fields(c, has_body) != 0)
		return -1;
	if (c->match.rpc == GW_ROUTE_LEDGER &&
	    judge_ledger_query(c, has_body) != 0)
		return -1;
	path_of(c, path, sizeof(path));
	if ((c->match.rpc == GW_ROUTE_ASSIGN ||
	     c->match.rpc == GW_ROUTE_UNASSIGN) &&
	    gw_location_scheme(c->cfg->is_https ? "https" : "http",
			       c->cfg->public_base_url, host, path,
			       c->location, sizeof(c->location)) != 0) {
		answer_error(c, DAS_INVALID_ARGUMENT,
			     "missing or invalid Host header", has_body);
		return -1;
	}
	return 0;
}

static void fill_call(struct gw_conn *c)
{
	struct gw_call_request *req = &c->call;
	bool is_repeated;
	/* Two Authorization lines are ambiguous credentials, as two
	 * authorization entries are on the gRPC face: neither is forwarded,
	 * so the service answers 401. */
	const char *auth =
		http_request_field_once(&c->req, "Authorization", &is_repeated);

	memset(req, 0, sizeof(*req));
	req->rpc = c->match.rpc;
	req->account = c->match.has_account ? c->match.account : "";
	req->tenant = c->match.tenant;
	req->user = c->match.user;
	req->device = c->match.device;
	req->accept_charges = c->accept_charges;
	req->client_type = c->client_type;
	req->request_id = c->request_id;
	req->ledger = &c->ledger;
	/* Unforwardable values are dropped: the service then answers 401. */
	if (c->match.rpc != GW_ROUTE_READYZ &&
	    gw_authorization_is_forwardable(auth, GW_AUTHORIZATION_MAX))
		req->authorization = auth;
}

/* /openapi.json, /docs and its files: static bytes from docs.c. */
static void answer_static(struct gw_conn *c)
{
	struct gw_static st;
	int is_oom;

	if (gw_static_lookup(c->match.rpc, c->match.file, &st, &is_oom) != 0) {
		answer_error(c, is_oom ? DAS_INTERNAL : DAS_ROUTE_NOT_FOUND,
			     NULL, false);
		return;
	}
	gw_conn_answer_raw(c, 200, st.content_type,
			   "Content-Security-Policy: " GW_DOCS_CSP "\r\n"
			   "X-Content-Type-Options: nosniff\r\n",
			   st.body, st.len, false);
}

/* The whole request is in: answer locally (false) or call upstream. */
static bool request_complete(struct gw_conn *c)
{
	const char *body = c->in + c->head_len;

	if (c->match.rpc == GW_ROUTE_OPENAPI || c->match.rpc == GW_ROUTE_DOCS ||
	    c->match.rpc == GW_ROUTE_DOCS_ASSET) {
		answer_static(c);
		return false;
	}

	if (c->match.rpc == GW_ROUTE_HEALTHZ) {
		struct gw_reply r = {.http_status = 200, .body = gw_json_ok()};
		answer(c, &r, false, false);
		return false;
	}
	if (c->match.rpc == GW_ROUTE_METRICS) {
		size_t len = 0;
		char *text = NULL;
		enum das_status st = gw_obs_metrics_body(&text, &len);
		if (text)
			gw_conn_answer_raw(c, 200, DAS_METRICS_CONTENT_TYPE,
					   NULL, text, len, true);
		else
			answer_error(c, st, NULL, false);
		return false;
	}
	c->client_type = 0;
	if (c->match.rpc == GW_ROUTE_ASSIGN) {
		const char *why = NULL;
		if (gw_body_decode_assign(body, c->body_len, &c->client_type,
					  c->client_type_as_sent, &why) != 0) {
			answer_error(c, DAS_INVALID_ARGUMENT, why, false);
			return false;
		}
	}
	fill_call(c);
	c->phase = GW_PHASE_CALL;
	return true;
}

void gw_conn_call_done(struct gw_conn *c, bool is_started)
{
	struct gw_reply r;

	if (!is_started) {
		answer_error(c, DAS_INTERNAL, NULL, false);
		return;
	}
	if (c->match.rpc == GW_ROUTE_READYZ) {
		if (c->outcome.grpc_code == DAS_GRPC_OK &&
		    c->outcome.is_serving) {
			memset(&r, 0, sizeof(r));
			r.http_status = 200;
			r.body = gw_json_ok();
			answer(c, &r, false, false);
			return;
		}
		answer_error(c, DAS_UNAVAILABLE, NULL, false);
		return;
	}
	gw_reply_from_outcome(&r, c->match.rpc, &c->outcome,
			      c->client_type_as_sent, das_time_now());
	gw_call_outcome_release(&c->outcome);
	answer(c, &r, false, false);
}

/* Reads the body so far. Returns 1 when complete, 0 for more, -1 when
 * answered (an error). */
static int read_body(struct gw_conn *c)
{
	size_t have = c->in_len - c->head_len, used = 0, rest;
	const char *why = "malformed chunked body";
	int rc;

	switch (c->req.framing) {
	case HTTP_BODY_NONE:
		return 1;
	case HTTP_BODY_LENGTH:
		if (have < c->req.content_length)
			return 0;
		c->body_len = (size_t)c->req.content_length;
		return 1;
	case HTTP_BODY_CHUNKED:
		break;
	}
	rc = http_chunked_feed(&c->chunked, c->in + c->head_len + c->body_raw,
			       have - c->body_raw, &used, c->in + c->head_len,
			       &c->body_len, GW_MAX_BODY, &why);
	c->body_raw += used;
	if (rc == 0) {
		/* Reclaim the framing bytes already decoded. */
		rest = have - c->body_raw;
		memmove(c->in + c->head_len + c->body_len,
			c->in + c->head_len + c->body_raw, rest);
		c->in_len = c->head_len + c->body_len + rest;
		c->body_raw = c->body_len;
		return 0;
	}
	if (rc == 1)
		return 1;
	answer_parse_error(c, rc, why);
	return -1;
}

static enum gw_conn_step wants_input(struct gw_conn *c)
{
	if (c->is_eof) {
		/* The peer sent all it will: an unfinished request is gone. */
		c->is_closing = true;
		return out_pending(c) ? GW_CONN_WRITE : GW_CONN_CLOSE;
	}
	return out_pending(c) ? GW_CONN_WRITE : GW_CONN_READ;
}

static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";

enum gw_conn_step gw_conn_advance(struct gw_conn *c)
{
	const char *why = NULL;
	int rc;

	for (;;) {
		if (c->is_closing)
			return out_pending(c) ? GW_CONN_WRITE : GW_CONN_CLOSE;
		switch (c->phase) {
		case GW_PHASE_CALL:
			return out_pending(c) ? GW_CONN_WRITE : GW_CONN_WAIT;
		case GW_PHASE_HEAD:
			if (out_pending(c) >= OUT_BATCH || c->ref)
				return GW_CONN_WRITE;
			if (c->in_len == 0)
				return wants_input(c);
			rc = http_parse_head(c->in, c->in_len, &c->scanned,
					     &c->req, &c->head_len, &why);
			if (rc == HTTP_INCOMPLETE)
				return wants_input(c);
			if (rc != 0) {
				answer_parse_error(c, rc, why);
				continue;
			}
			c->t0_ns = now_ns();
			if (judge_head(c) != 0)
				continue;
			c->phase = GW_PHASE_BODY;
			if (c->req.is_expect_continue &&
			    c->req.framing != HTTP_BODY_NONE &&
			    c->in_len == c->head_len &&
			    out_reserve(c, sizeof(continue_line)) == 0) {
				memcpy(c->out + c->out_len, continue_line,
				       sizeof(continue_line) - 1);
				c->out_len += sizeof(continue_line) - 1;
			}
			continue;
		case GW_PHASE_BODY:
			rc = read_body(c);
			if (rc < 0)
				continue;
			if (rc == 0)
				return wants_input(c);
			if (request_complete(c))
				return GW_CONN_CALL;
			continue;
		}
	}
}
