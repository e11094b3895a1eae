#include "transport.h"

#include <sys/socket.h>
#include <unistd.h>

static ssize_t tcp_read(struct gw_io *io, void *buf, size_t len)
{
	return recv(io->fd, buf, len, 0);
}

static ssize_t tcp_write(struct gw_io *io, const void *buf, size_t len)
{
	return send(io->fd, buf, len, MSG_NOSIGNAL);
}

static void tcp_shutdown(struct gw_io *io)
{
	shutdown(io->fd, SHUT_WR);
}

static void tcp_close(struct gw_io *io)
{
	close(io->fd);
	io->fd = -1;
}

const struct gw_transport gw_transport_tcp = {
	.name = "tcp",
	.open = NULL,
	.read = tcp_read,
	.write = tcp_write,
	.handshake = NULL,
	.shutdown = tcp_shutdown,
	.close = tcp_close,
};
