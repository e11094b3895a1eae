/*
 * The byte stream under one HTTP connection. The event loop reads, writes
 * and closes only through these operations, so a TLS transport (a
 * non-blocking handshake, then encrypted reads and writes) plugs in without
 * touching the loop or the protocol engine.
 */
#ifndef GW_HTTP_TRANSPORT_H
#define GW_HTTP_TRANSPORT_H

#include <stddef.h>
#include <sys/types.h>

struct gw_io;

struct gw_transport {
	const char *name;
	/* Optional (NULL: none): sets up io->state for a new connection on
	 * io->fd with the listener's ctx. Returns 0, or -1 to drop it. */
	int (*open)(struct gw_io *io, void *ctx);
	/* Returns > 0 bytes, 0 at end of stream, or -1 with errno (EAGAIN:
	 * call again once the socket is ready). */
	ssize_t (*read)(struct gw_io *io, void *buf, size_t len);
	ssize_t (*write)(struct gw_io *io, const void *buf, size_t len);
	/* Optional (NULL: none). Returns 0 when done, 1 to be called again
	 * once the socket is ready, -1 when the peer is to be dropped. */
	int (*handshake)(struct gw_io *io);
	/* No more writes (after the last answer). */
	void (*shutdown)(struct gw_io *io);
	/* Frees the transport's state and closes fd. */
	void (*close)(struct gw_io *io);
};

struct gw_io {
	int fd;
	void *state; /* the transport's (e.g. an SSL *); NULL for TCP */
	const struct gw_transport *t;
};

/* Plain TCP on a non-blocking socket. */
extern const struct gw_transport gw_transport_tcp;

#endif
