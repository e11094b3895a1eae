/*
 * The HTTPS transport of the gateway's event loop: gateway/tls/tls.h behind
 * the gw_transport operations. io->state is the gw_tls_conn.
 */
#include "transport_tls.h"

#include <unistd.h>

#include "gateway/tls/tls.h"

static int tls_open(struct gw_io *io, void *ctx)
{
	io->state = gw_tls_conn_new(ctx, io->fd);
	return io->state ? 0 : -1;
}

static ssize_t tls_read(struct gw_io *io, void *buf, size_t len)
{
	return gw_tls_read(io->state, buf, len);
}

static ssize_t tls_write(struct gw_io *io, const void *buf, size_t len)
{
	return gw_tls_write(io->state, buf, len);
}

static int tls_handshake(struct gw_io *io)
{
	return gw_tls_handshake(io->state);
}

static void tls_shutdown(struct gw_io *io)
{
	gw_tls_shutdown(io->state);
}

static void tls_close(struct gw_io *io)
{
	gw_tls_conn_free(io->state);
	io->state = NULL;
	close(io->fd);
	io->fd = -1;
}

const struct gw_transport gw_transport_tls = {
	.name = "tls",
	.open = tls_open,
	.read = tls_read,
	.write = tls_write,
	.handshake = tls_handshake,
	.shutdown = tls_shutdown,
	.close = tls_close,
};
