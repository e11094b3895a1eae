/*
 * The gRPC C-core server: registered methods, one completion queue per
 * worker thread, several requested calls outstanding per method and queue.
 * A worker runs a call to the end (store commit included) before taking the
 * next one, so the number of workers bounds concurrent store transactions.
 */
#ifndef DAS_GRPC_SERVER_H
#define DAS_GRPC_SERVER_H

#include <stddef.h>

#include "service/grpc/handlers.h"

struct server_config {
	const char *listen;     /* "127.0.0.1:50051"; port 0 = any free one */
	unsigned n_workers;     /* >= 1 */
	unsigned grace_ms;      /* drain time at shutdown before cancelling */
	struct handler_env env; /* shared by every worker */
};

struct server;

/*
 * Binds, starts the workers and returns. On success *port is the bound port.
 * Returns 0, or -1 with a one-line reason in err. Calls grpc_init().
 */
int server_start(const struct server_config *cfg, struct server **out,
		 int *port, char *err, size_t err_size);

/*
 * Stops accepting calls, lets the calls in flight finish (cancelling any
 * still running after grace_ms), joins the workers and frees everything.
 */
void server_stop(struct server *srv);

#endif
