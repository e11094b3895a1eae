/*
 * The gRPC C-core server: registered methods, one completion queue shared
 * by the worker threads, several requested calls outstanding per method and
 * worker. A worker runs a call to the end (store commit included) before
 * taking the next one, so the number of workers bounds concurrent store
 * transactions.
 */
#ifndef DAS_GRPC_SERVER_H
#define DAS_GRPC_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>

#include "service/grpc/handlers.h"
#include "service/grpc/tls.h"

struct server_config {
	const char *listen;     /* "127.0.0.1:50051"; port 0 = any free one */
	unsigned n_workers;     /* >= 1 */
	unsigned grace_ms;      /* drain time at shutdown before cancelling */
	unsigned idle_timeout_ms; /* close connections with no call this long;
				     0 = never */
	unsigned connection_limit; /* more are closed as they arrive; 0 = as
				     the open-files limit allows
				     (accept_guard.h) */
	bool is_reflection_off; /* no grpc.reflection service (reflection.h) */
	struct handler_env env; /* shared by every worker */
	struct server_tls *tls; /* NULL = plaintext; must outlive the server */
};

struct server;

/*
 * Binds, starts the workers and returns. On success *port is the bound port.
 * Returns 0, or -1 with a one-line reason in err. Calls grpc_init().
 */
int server_start(const struct server_config *cfg, struct server **out,
		 int *port, char *err, size_t err_size);

/*
 * Stops accepting calls and lets the calls in flight finish, cancelling
 * any still running after grace_ms. A call cancelled while it waits for
 * the store is still the store's to end (store_cut), and server_stop()
 * waits for that. Runs once; NULL is a no-op.
 */
void server_drain(struct server *srv);

/*
 * Drains (if server_drain() was not called), waits until every call taken
 * has ended, joins the workers and frees everything. Returns 0, or -1 when
 * calls were still held by the store 10 s after the drain: then nothing is
 * freed (a thread of the store would answer into it), and the process must
 * exit without freeing what they use. NULL is a no-op.
 */
int server_stop(struct server *srv);

/*
 * The bytes of a request message: copied out, or inflated (gzip, deflate)
 * into DAS_RPC_MAX_MESSAGE bytes and never past it. DAS_OK with *out
 * (malloc'd, caller frees) and *len; else the row to answer, detail set.
 * For calls run outside the unary loop (Health/Watch).
 */
enum das_status server_payload_bytes(grpc_byte_buffer *bb, uint8_t **out,
				     size_t *len, char *detail,
				     size_t detail_size);

#endif
