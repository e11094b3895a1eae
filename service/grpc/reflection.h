/*
 * gRPC server reflection, grpc.reflection.v1 and v1alpha
 * (ServerReflectionInfo, a bidirectional stream), answered from the
 * descriptor set embedded at build time (deviceassignment.protoset):
 * list_services, file_by_filename, file_containing_symbol,
 * file_containing_extension and all_extension_numbers_of_type. A file is
 * always sent with every file it imports, directly or not.
 *
 * Streams run on their own completion queue and thread, apart from the
 * unary workers: a client holding a stream open takes no worker. No token
 * is asked for (like grpc.health.v1); the server does not register the
 * service at all when reflection is off. A stream whose client sent a
 * deadline is ended at it (DEADLINE_EXCEEDED, within DEADLINE_TICK_MS).
 */
#ifndef DAS_GRPC_REFLECTION_H
#define DAS_GRPC_REFLECTION_H

#include <stddef.h>

#include <grpc/grpc.h>

struct reflection;
struct flood_guard;

/*
 * Before grpc_server_start: indexes the descriptor set, registers both
 * methods and a completion queue on server. Returns 0, or -1 with a reason
 * in err.
 */
int reflection_register(grpc_server *server, struct reflection **out,
			char *err, size_t err_size);

/* After grpc_server_start: arms the calls and starts the thread. Each
 * request a stream reads past its first is told to guard (NULL: none). */
int reflection_start(struct reflection *r, struct flood_guard *guard, char *err,
		     size_t err_size);

/*
 * Once the server has shut down (every call over): stops the thread and
 * frees everything. NULL is a no-op.
 */
void reflection_stop(struct reflection *r);

/* The embedded descriptor set (for tests and tools). */
const unsigned char *reflection_protoset(size_t *len);

#endif
