/*
 * The gateway's gRPC client: HTTP/2 (libnghttp2) spoken by each event loop
 * itself. A gw_upstream holds what the loops share (the target's addresses,
 * the TLS context, the deadline); each loop owns a gw_upstream_loop: its
 * own connections to every server, its calls, their deadlines. A call is
 * started and completed on the loop that owns it, so the hot path takes no
 * lock and hands nothing to another thread. nghttp2, OpenSSL and protobuf-c
 * types stay inside gateway/upstream/.
 */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway/call.h"

struct gw_upstream;
struct gw_upstream_loop;

/* /readyz's Health check: this deadline (or the call deadline when
 * shorter), never waiting for a connection, so a probe answers in 1 s. */
#define GW_READYZ_TIMEOUT_MS 500

/* TLS to the service; NULL members are not used. */
struct gw_upstream_tls {
	const char *ca_file;     /* CAs of the service's certificate, PEM;
				    NULL = the system's roots */
	const char *cert_file;   /* the gateway's client certificate (mTLS) */
	const char *key_file;    /* its private key */
	const char *server_name; /* name checked in the service's
				    certificate and sent as SNI */
};

/*
 * Prepares calls to target (as gw_upstream_target wrote it: HOST:PORT,
 * ipv4:/ipv6: lists, dns:///NAME:PORT or unix:PATH). tls NULL = plaintext;
 * otherwise the files are read and checked now (paths are copied:
 * gw_upstream_reload reads them again). timeout_ms is the per-call
 * deadline. With is_wait_for_ready, a call waits for a connection within
 * that deadline; without, a call fails UNAVAILABLE at once when no server
 * is connected or connecting. Returns NULL with a reason in err.
 */
struct gw_upstream *gw_upstream_new(const char *target, int timeout_ms,
				    bool is_wait_for_ready,
				    const struct gw_upstream_tls *tls, char *err,
				    size_t err_size);

/*
 * Reads the TLS files again (any thread). Connections opened from now on
 * use them; each loop stops starting calls on its older connections,
 * whose calls finish there. Returns 0, 1 when there is no TLS to reload,
 * or -1 with the reason in err (the current files stay in use).
 */
int gw_upstream_reload(struct gw_upstream *up, char *err, size_t err_size);

/* Frees up; every loop must be freed first. NULL is a no-op. */
void gw_upstream_free(struct gw_upstream *up);

/*
 * The part of up one event loop owns; it starts connecting now. Returns
 * NULL with a reason in err. Everything below runs on that loop's thread.
 */
struct gw_upstream_loop *gw_upstream_loop_new(struct gw_upstream *up,
					      char *err, size_t err_size);

/*
 * Closes the loop's connections and frees ul. Calls still started are
 * dropped without their done() (the loop waits for its calls before it
 * ends). NULL is a no-op.
 */
void gw_upstream_loop_free(struct gw_upstream_loop *ul);

/* A descriptor the loop watches for EPOLLIN: the connections have I/O. */
int gw_upstream_loop_fd(const struct gw_upstream_loop *ul);

/* Milliseconds until gw_upstream_loop_run has timed work (0: now), or -1
 * when nothing is timed. */
int gw_upstream_loop_wait_ms(struct gw_upstream_loop *ul);

/*
 * Moves the connections on (is_io: the descriptor was ready), ends calls
 * whose deadline passed, reconnects, calls done() of every finished call,
 * and writes what the calls started since the last run want sent. Call it
 * once per turn of the event loop, after the loop's other events.
 */
void gw_upstream_loop_run(struct gw_upstream_loop *ul, bool is_io);

typedef void gw_upstream_done_fn(void *arg);

/*
 * Starts req on the loop. The strings of req are copied; out must stay
 * valid until done(arg) runs, which is always later, from
 * gw_upstream_loop_run (never from inside this call), after out is filled.
 * Returns 0, or -1 when the call could not be started (out then holds
 * INTERNAL and done is never called).
 */
int gw_upstream_start(struct gw_upstream_loop *ul,
		      const struct gw_call_request *req,
		      struct gw_call_outcome *out, gw_upstream_done_fn *done,
		      void *arg);

#endif
