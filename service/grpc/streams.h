/*
 * Long-lived calls (server-streaming now, bidirectional later): they run on
 * a completion queue and thread of their own, so a client holding a stream
 * open for hours never takes a unary worker, and all of a stream's steps
 * run on one thread (no locks in the stream code).
 *
 * Every batch a stream starts carries a struct stream_tag as its tag; the
 * thread calls tag->on_done(tag, is_ok) when the batch completes. The thread
 * also calls tick(arg) every tick_ms (when the queue is quiet, or at least
 * that often), for streams that report changes (Health/Watch).
 *
 * Order: streams_new before grpc_server_start (it registers the queue);
 * streams_start after; streams_stop once the server's shutdown has
 * completed (every call finished or cancelled): it shuts the queue down,
 * lets the last tags complete on the thread and joins it; streams_free
 * after grpc_server_destroy.
 */
#ifndef DAS_GRPC_STREAMS_H
#define DAS_GRPC_STREAMS_H

#include <stdbool.h>

#include <grpc/grpc.h>

struct stream_tag {
	void (*on_done)(struct stream_tag *tag, bool is_ok);
};

struct streams;

/* NULL on allocation failure. Registers its queue with server. */
struct streams *streams_new(grpc_server *server);

/* The queue to request stream calls and start their batches on. */
grpc_completion_queue *streams_cq(struct streams *s);

/* Starts the thread. Returns 0 or -1. tick may be NULL. */
int streams_start(struct streams *s, void (*tick)(void *arg), void *arg,
		  unsigned tick_ms);

/* See above; NULL is a no-op for both. */
void streams_stop(struct streams *s);
void streams_free(struct streams *s);

#endif
