/*
 * The gateway's gRPC client: one long-lived channel to the service, unary
 * calls started from HTTP threads and completed on one completion-queue
 * thread (or, for the blocking mode, on the caller's thread). protobuf-c
 * and gRPC types stay inside upstream.c.
 */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway/call.h"

struct gw_upstream;

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
 * Opens the channel to target and starts the completion thread. tls NULL
 * = plaintext; otherwise the files are read and checked now (paths are
 * copied: gw_upstream_reload reads them again).
 * timeout_ms is the per-call deadline. With is_wait_for_ready, calls wait
 * for the channel to (re)connect within that deadline; a call that runs
 * out of time while the channel is not connected is reported UNAVAILABLE.
 * Returns NULL with a reason in err.
 */
struct gw_upstream *gw_upstream_new(const char *target, int timeout_ms,
				    bool is_wait_for_ready,
				    const struct gw_upstream_tls *tls, char *err,
				    size_t err_size);

/*
 * Reads the TLS files again and opens a new channel with them; new calls
 * use it, calls in flight finish on the old one, which closes after the
 * last. Returns 0, 1 when there is no TLS to reload, or -1 with the reason
 * in err (the current channel stays).
 */
int gw_upstream_reload(struct gw_upstream *up, char *err, size_t err_size);

/*
 * Stops the completion thread and closes the channel. Every started call
 * must have completed. NULL is a no-op.
 */
void gw_upstream_free(struct gw_upstream *up);

typedef void gw_upstream_done_fn(void *arg);

/*
 * Starts req. The strings of req are copied; out must stay valid until
 * done(arg) runs, on the completion thread, after out is filled. Returns 0,
 * or -1 when the call could not be started (out then holds INTERNAL and
 * done is never called).
 */
int gw_upstream_start(struct gw_upstream *up, const struct gw_call_request *req,
		      struct gw_call_outcome *out, gw_upstream_done_fn *done,
		      void *arg);

/* The same call, waiting on the caller's thread. Always fills out. */
void gw_upstream_call(struct gw_upstream *up, const struct gw_call_request *req,
		      struct gw_call_outcome *out);

#endif
