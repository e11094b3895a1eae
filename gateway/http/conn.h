/*
 * One HTTP/1.1 connection as a protocol engine, free of sockets and
 * threads: bytes in (gw_conn_in_space / gw_conn_in_commit / gw_conn_in_eof),
 * bytes out (gw_conn_output / gw_conn_output_done), and gw_conn_advance
 * saying what the event loop must do next. It parses each request
 * (gateway/http/parser.h), judges it against the route table and the
 * contract's header rules, answers locally or asks for an upstream call,
 * and writes every answer -- its own protocol errors included -- as one
 * response with the product's JSON body, Content-Type and X-Request-Id.
 *
 * Requests are handled one at a time in arrival order, so pipelined
 * requests are answered in order; a half-closed client still gets the
 * answers to the requests it sent. Memory per connection is bounded:
 * GW_CONN_IN_MAX for input (head + body + pipelined bytes), GW_CONN_OUT_MAX
 * for answers not yet written, plus at most one long body written from
 * where it is.
 */
#ifndef GW_HTTP_CONN_H
#define GW_HTTP_CONN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/call.h"
#include "gateway/http/parser.h"
#include "gateway/transcode/transcode.h"

/* Request bodies above this are answered 413 (CONTRACT.md section 2). */
#define GW_MAX_BODY	(16 * 1024)
#define GW_CONN_IN_MAX	(HTTP_HEAD_MAX + GW_MAX_BODY + 4096)
#define GW_CONN_OUT_MAX (64 * 1024)

struct gw_conn_config {
	const char *public_base_url; /* NULL or "" = use Host */
	bool is_https;		     /* Location from Host: https:// */
	uint64_t id_prefix;	     /* random per process */
	atomic_ullong *id_counter;   /* shared by all connections */
};

enum gw_conn_step {
	GW_CONN_READ,  /* wants input (nothing to write) */
	GW_CONN_WRITE, /* write gw_conn_output, then advance again */
	GW_CONN_CALL,  /* start c->call; report with gw_conn_call_done */
	GW_CONN_WAIT,  /* an upstream call is in flight */
	GW_CONN_CLOSE, /* all written: close the connection */
};

enum gw_conn_phase {
	GW_PHASE_HEAD, /* reading (or awaiting) a request head */
	GW_PHASE_BODY,
	GW_PHASE_CALL,
};

struct gw_conn {
	const struct gw_conn_config *cfg;
	enum gw_conn_phase phase;
	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_len, out_off, out_cap;
	/* A long body, written from where it is after out. */
	const char *ref;
	size_t ref_len, ref_off;
	char *ref_owned; /* == ref when it is ours to free */
	bool is_eof;	     /* the peer shut down its write side */
	bool is_closing;     /* close once the output is written */
	bool is_draining;    /* answer what is in progress, then close */
	bool is_call_failed; /* the loop could not start the call */
	/* The current request. */
	size_t scanned, head_len, body_len, body_raw;
	struct http_request req;
	struct http_chunked chunked;
	bool is_head_method;
	bool accept_charges;
	int client_type;
	enum gw_route_result route_rc;
	struct gw_route_match match;
	char request_id[GW_REQUEST_ID_SIZE];
	char client_type_as_sent[GW_CLIENT_TYPE_AS_SENT_SIZE];
	char location[GW_LOCATION_MAX];
	struct gw_ledger_params ledger; /* LEDGER: the parsed query */
	struct gw_call_request call;	/* valid after GW_CONN_CALL */
	struct gw_call_outcome outcome; /* filled by the upstream */
	/* For the log line and the metrics. */
	uint64_t t0_ns;
	bool is_obs_begun; /* counted in flight (gw_obs_begin) */
	unsigned last_status;
	unsigned n_requests;
};

/* Allocates the buffers. Returns 0 or -1. */
int gw_conn_init(struct gw_conn *c, const struct gw_conn_config *cfg);
void gw_conn_release(struct gw_conn *c);

/* Where to read into (NULL when the input limit is reached for now). */
char *gw_conn_in_space(struct gw_conn *c, size_t *avail);
void gw_conn_in_commit(struct gw_conn *c, size_t n);
void gw_conn_in_eof(struct gw_conn *c);

/* True while a request is partly received (for deadlines and eviction). */
bool gw_conn_is_mid_request(const struct gw_conn *c);
/* True while the head of the current request is still being read. */
bool gw_conn_is_reading_head(const struct gw_conn *c);

/* Runs the protocol as far as it can without I/O. */
enum gw_conn_step gw_conn_advance(struct gw_conn *c);

/* Bytes waiting to be written. */
const char *gw_conn_output(const struct gw_conn *c, size_t *len);
void gw_conn_output_done(struct gw_conn *c, size_t n);

/* The call of GW_CONN_CALL finished (c->outcome is filled), or could not be
 * started (is_started false). */
void gw_conn_call_done(struct gw_conn *c, bool is_started);

/*
 * Answers the current request (whole, body read) locally with a body that
 * is not the product's JSON (a page, metrics): status, content_type, more
 * header lines ("Name: value\r\n"..., or NULL), len bytes of body. With
 * is_owned the body is malloc'd and freed once written (or on failure);
 * otherwise it must outlive the connection (static storage). Long bodies
 * are written from where they are, not copied.
 */
void gw_conn_answer_raw(struct gw_conn *c, unsigned status,
			const char *content_type, const char *lines,
			const char *body, size_t len, bool is_owned);

/* Answer the request in progress (if any), then close. */
void gw_conn_drain(struct gw_conn *c);

/*
 * Queues a whole answer of status outside any request (a limit hit before
 * the first byte): a 503 with Retry-After, then close.
 */
void gw_conn_refuse(struct gw_conn *c);

#endif
