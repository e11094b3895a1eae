/*
 * grpc.health.v1: the truth about the store. A service is SERVING only
 * while the store can take a write (store_probe: a database file that is
 * still ours and writable, a disk with room, a PostgreSQL that answers and
 * is not read-only); NOT_SERVING otherwise, and SERVING again once it can.
 *
 * Check (a unary call, answered by handlers.c) and Watch (a server stream,
 * run here on the streams thread) share one cached probe: a result younger
 * than HEALTH_FRESH_MS is reused, so a flood of Checks costs at most a few
 * probes a second, and while a probe runs the others get the last answer
 * rather than wait for it. While anyone watches, the streams thread asks
 * for a probe every HEALTH_TICK_MS and sends each watcher every change; a
 * Watch of a service we do not serve gets SERVICE_UNKNOWN, as the health
 * protocol asks. Transitions are logged with the reason. A Watch whose
 * client sent a deadline ends at it, within a tick, with DEADLINE_EXCEEDED
 * (core's own timer for each call is off: server.c, core_server_create).
 *
 * Probes run on a thread of their own: a store that does not answer (a
 * stopped or partitioned PostgreSQL keeps the connection open; a disk whose
 * fsync hangs) holds that thread only. The caller that asked for a probe
 * waits for it at most HEALTH_PROBE_LATE_MS; from then until the probe
 * ends, every Check and Watch says NOT_SERVING (it used to hang the caller
 * that probed, and to answer everybody else SERVING).
 */
#ifndef DAS_GRPC_HEALTH_H
#define DAS_GRPC_HEALTH_H

#include <stdbool.h>

#include <grpc/grpc.h>

#include "service/grpc/streams.h"
#include "service/store/store.h"

#define HEALTH_FRESH_MS 200
/* A probe still running after this long counts as NOT_SERVING. */
#define HEALTH_PROBE_LATE_MS 1000
#define HEALTH_TICK_MS 250
#define HEALTH_WATCH_PATH "/grpc.health.v1.Health/Watch"
/* Watch streams open at once, at most (more get RESOURCE_EXHAUSTED). */
#define HEALTH_WATCH_MAX 1024

struct health;

/* NULL on allocation failure. store is borrowed. */
struct health *health_new(struct store *store);
void health_free(struct health *h); /* NULL is a no-op */

/* True for "" and the services this server runs. */
bool health_is_known(const char *service);

/* SERVING now? Has the store probed when the cached answer is stale (and
 * no other probe runs), waiting at most HEALTH_PROBE_LATE_MS. Thread-safe. */
bool health_is_serving(struct health *h);

/* Registers Watch with server; before grpc_server_start. Returns 0/-1. */
int health_watch_register(struct health *h, grpc_server *server,
			  struct streams *streams);

/* After grpc_server_start: takes Watch calls on the streams queue. */
int health_watch_arm(struct health *h);

/* The streams thread's tick: probes and tells watchers of changes. */
void health_tick(void *h);

#endif
