/*
 * One HTTP/2 connection of an event loop to one server (libnghttp2 over a
 * non-blocking socket, TLS optional): connect, SETTINGS, streams for gRPC
 * calls, GOAWAY, the reply of each stream checked and bounded. Its owner
 * (upstream.c) is told through upcall.h; it frees a connection only once
 * it is CLOSED.
 */
#ifndef GW_UPSTREAM_H2CONN_H
#define GW_UPSTREAM_H2CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "gateway/upstream/resolver.h"
#include "gateway/upstream/upcall.h"

/* TCP connect + TLS handshake + the server's SETTINGS within this. */
#define H2CONN_CONNECT_TIMEOUT_MS 5000
/* A connection with calls on it that has heard nothing from its server
 * this long gets a PING; no answer within H2CONN_PING_TIMEOUT_MS closes
 * it (h2conn_check_alive). */
#define H2CONN_QUIET_MS 1000
#define H2CONN_PING_TIMEOUT_MS 1000
/* What we let the server send: one stream's window, the connection's. */
#define H2CONN_STREAM_WINDOW (1 << 20)
#define H2CONN_CONN_WINDOW (16 << 20)

enum h2conn_state {
	H2CONN_CONNECTING, /* TCP, TLS, waiting for the server's SETTINGS */
	H2CONN_READY,	   /* takes new streams (while it has room) */
	H2CONN_DRAINING,   /* GOAWAY or replaced: its streams finish */
	H2CONN_CLOSED,	   /* the socket is closed: free it */
};

struct h2conn {
	struct h2conn *next; /* the loop's list */
	void *owner;	     /* the loop's backend entry, NULL once replaced */
	struct gw_upstream_loop *ul;
	enum h2conn_state state;
	bool was_ready; /* reached READY once */
	bool is_goaway; /* the server said GOAWAY: it is going away */
	bool is_tcp_up, is_tls_done;
	unsigned request_ids_sent; /* x-request-id fields, for their indexing */
	int fd, ep;
	SSL *ssl;
	struct nghttp2_session *s;
	struct upcall *calls; /* streams in flight, q_prev/q_next */
	unsigned n_calls;
	uint8_t *out; /* frames nghttp2 made, not yet written */
	size_t out_len, out_off, out_cap;
	uint64_t connect_deadline_ms;
	uint64_t ready_ms; /* when its owner saw it READY, 0 before */
	/* Liveness (h2conn_check_alive): since when the server has been
	 * quiet (its last bytes, or the first call of a busy spell), the
	 * PING in flight (0: none), and whether one was answered since the
	 * server last sent any other frame. */
	uint64_t quiet_from_ms, ping_sent_ms;
	bool is_ping_answered;
	char authority[280];
};

/*
 * Starts connecting to a (TLS with tls when not NULL, checking
 * server_name; "" = the address's host) and registers the socket with
 * the epoll descriptor ep (data.ptr = the connection). Returns NULL with
 * a reason in err when the connection cannot even be attempted.
 */
struct h2conn *h2conn_open(struct gw_upstream_loop *ul, int ep,
			   const struct resolver_addr *a, SSL_CTX *tls,
			   const char *server_name, uint64_t now, char *err,
			   size_t err_size);

/* The socket had events: handshake, read, write as far as possible. */
void h2conn_on_io(struct h2conn *c, uint32_t events);

/* Writes what the streams started since want sent. */
void h2conn_flush(struct h2conn *c);

/* READY, below the server's SETTINGS_MAX_CONCURRENT_STREAMS. */
bool h2conn_has_room(const struct h2conn *c);

/* Opens a stream for call (deadline_ms sets grpc-timeout). Returns 0, or
 * -1 when this connection cannot take it now (call untouched). */
int h2conn_submit(struct h2conn *c, struct upcall *call, uint64_t now);

/* Resets call's stream (RST_STREAM CANCEL); call is off c, no report. */
void h2conn_cancel(struct h2conn *c, struct upcall *call);

/*
 * A server whose process hangs (stopped, swapped out, stuck) keeps its
 * socket: the kernel still takes our bytes, so nothing fails, and every
 * call round-robin sends there waits for its deadline. So a connection
 * with calls on it whose server has sent nothing for H2CONN_QUIET_MS gets
 * a PING, which gRPC core answers from its transport whatever the calls
 * wait for (a slow database included); no answer within
 * H2CONN_PING_TIMEOUT_MS fails the connection (its calls end UNAVAILABLE,
 * its server is retried with backoff and gets no calls until it sends its
 * SETTINGS again). One PING per quiet spell: a server that answered one
 * gets no other until it sends something else or a new busy spell starts
 * (the first call after none), so gRPC's limit on pings without data
 * (strikes for pings closer than 5 minutes with no data sent between) is
 * not reached by a server that answers its calls. h2conn_alive_due_ms: when the next look
 * is due (UINT64_MAX: none).
 */
uint64_t h2conn_alive_due_ms(const struct h2conn *c);
void h2conn_check_alive(struct h2conn *c, uint64_t now);

/* No new streams; the connection closes once its streams are done. */
void h2conn_drain(struct h2conn *c);

/* Closes now: every call on it ends UNAVAILABLE. */
void h2conn_fail(struct h2conn *c);

/* Frees a CLOSED connection. NULL is a no-op. */
void h2conn_free(struct h2conn *c);

#endif
