/*
 * The gateway's HTTP side on libmicrohttpd: request state, body limits,
 * the route -> upstream call -> reply pipeline, drain on shutdown.
 */
#ifndef GW_HTTP_SERVER_H
#define GW_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway/upstream/upstream.h"

/* Request bodies above this are answered 413 (CONTRACT.md section 2). */
#define GW_MAX_BODY (16 * 1024)

struct gw_http_config {
	const char *listen; /* "127.0.0.1:8080", "[::1]:0", "localhost:0" */
	const char *public_base_url; /* NULL or "" = use Host */
	bool is_blocking;	     /* one upstream call per MHD thread */
	unsigned threads;	     /* MHD thread pool size */
	unsigned connection_limit;
	unsigned per_ip_connection_limit;
	unsigned connection_timeout_s;
	size_t connection_memory_limit; /* bounds request line + headers */
};

struct gw_http;

/*
 * Binds and starts serving; up is borrowed and must outlive the server.
 * Returns NULL with a one-line reason in err.
 */
struct gw_http *gw_http_start(const struct gw_http_config *cfg,
			      struct gw_upstream *up, char *err,
			      size_t err_size);

/* The bound TCP port. */
unsigned gw_http_port(const struct gw_http *h);

/*
 * Stops accepting, waits up to drain_ms for requests in progress to be
 * answered, then closes everything and frees h. NULL is a no-op.
 */
void gw_http_stop(struct gw_http *h, int drain_ms);

#endif
