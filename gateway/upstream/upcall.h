/*
 * One upstream call, and what an HTTP/2 connection (h2conn.c) reports
 * about it to the loop that owns both (upstream.c). Private to
 * gateway/upstream/.
 */
#ifndef GW_UPSTREAM_UPCALL_H
#define GW_UPSTREAM_UPCALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/upstream/upstream.h"

struct h2conn;

struct upcall {
	struct upcall *prev, *next;	/* the loop's deadline list */
	struct upcall *q_prev, *q_next; /* waiting list, or its conn's */
	struct gw_upstream_loop *ul;
	struct h2conn *conn; /* NULL while waiting for a connection */
	int32_t stream_id;
	enum gw_route_rpc rpc;
	bool is_probe;		/* /readyz: never waits for a connection */
	bool is_wait_for_ready; /* may wait while no server is connected */
	uint64_t deadline_ms;
	unsigned n_refused; /* times a server refused it unprocessed */
	/* The request: framed message and metadata (copies). */
	uint8_t *send;
	size_t send_len, send_off;
	char *authorization, *request_id;
	/* The reply as it arrives. */
	int http_status;    /* :status, 0 until seen */
	int grpc_status;    /* -1 until seen */
	bool is_grpc_type;  /* content-type application/grpc */
	bool has_headers;   /* the server started answering */
	bool is_broken;	    /* over a bound or malformed: INTERNAL */
	size_t header_bytes;
	char message[GW_MESSAGE_MAX];
	char reason[GW_REASON_MAX];
	uint8_t *body;
	size_t body_len, body_cap;
	/* The caller's. */
	struct gw_call_outcome *out;
	gw_upstream_done_fn *done;
	void *arg;
};

/*
 * The stream of c ended (c is off its connection): code is the gRPC code
 * to act on (DAS_GRPC_*); is_reply: the server sent it (grpc-status, with
 * message, reason and body in c), else the transport decided.
 */
void upcall_end(struct upcall *c, int code, bool is_reply);

/* The server did not process c (REFUSED_STREAM, above GOAWAY's last
 * stream, never sent, or dropped by a server going away): it may be
 * started again elsewhere. */
void upcall_refused(struct upcall *c);

/* conn became ready, got a GOAWAY, freed room for a stream, or closed. */
void upstream_conn_changed(struct gw_upstream_loop *ul, struct h2conn *conn);

#endif
