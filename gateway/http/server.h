/*
 * The gateway's HTTP server: one epoll event loop per thread, each owning
 * the connections it accepted from its own listening socket on the shared
 * address (SO_REUSEPORT). The protocol of each connection is gateway/http/conn.h;
 * this module does the I/O, the deadlines and the connection limits, and
 * runs each loop's part of the upstream client (gateway/upstream/): calls
 * start and complete on the loop that owns the connection.
 */
#ifndef GW_HTTP_SERVER_H
#define GW_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway/http/conn.h"
#include "gateway/http/transport.h"
#include "gateway/upstream/upstream.h"

struct gw_http_config {
	const char *listen;	     /* "127.0.0.1:8080", "[::1]:0", "localhost:0" */
	const char *public_base_url; /* NULL or "" = use Host */
	unsigned threads;	     /* event loops; 0 = one per CPU */
	unsigned connection_limit;   /* all connections */
	unsigned per_ip_connection_limit; /* per client address; 0 = none */
	unsigned idle_timeout_ms;   /* no byte moved for this long */
	unsigned header_timeout_ms; /* request line + headers, in total */
	unsigned body_timeout_ms;   /* the body, in total */
	/* The byte stream of each connection; NULL = plain TCP. */
	const struct gw_transport *transport;
	void *transport_ctx; /* passed to transport->open */
	bool is_https;	     /* Location from Host: https:// */
};

struct gw_http;

/*
 * Binds and starts serving, each loop with its own connections to up
 * (borrowed; it must outlive the server).
 * Returns NULL with a one-line reason in err.
 */
struct gw_http *gw_http_start(const struct gw_http_config *cfg,
			      struct gw_upstream *up, char *err,
			      size_t err_size);

/* The bound TCP port. */
unsigned gw_http_port(const struct gw_http *h);

/*
 * Stops accepting, lets requests in progress be answered for up to
 * drain_ms (every upstream call is waited for: their deadline bounds it),
 * then closes everything and frees h. NULL is a no-op.
 */
void gw_http_stop(struct gw_http *h, int drain_ms);

#endif
