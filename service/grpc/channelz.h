/*
 * What gRPC core's channelz registry says about the server's connections:
 * per connection, its peer, how many HTTP/2 streams the client started,
 * how many have ended, and how many messages it sent (core counts a
 * request once it has arrived whole and core's server has read it, which
 * for our methods is before any worker takes its call). Streams started
 * and not ended are held in core (a call each, ~12.5 KiB), whether or
 * not a worker ever gets them: a client that opens streams and never
 * sends their request holds them for as long as it likes (flood_guard.h,
 * "streams held without a request").
 *
 * Read from the flood guard's thread once a second (every 100 ms under
 * memory pressure); each connection costs
 * one JSON document from core (~1 KiB) and its parse.
 */
#ifndef DAS_GRPC_CHANNELZ_H
#define DAS_GRPC_CHANNELZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cz_conn {
	int64_t id;	   /* channelz's socket id: one connection's alone */
	char peer[96];	   /* as gRPC names it: "ipv4:127.0.0.1:41234" */
	uint64_t started;  /* streams the client started */
	uint64_t ended;	   /* of which ended (succeeded or failed) */
	uint64_t received; /* messages received: a unary call's request */
};

/*
 * Every connection of the process's gRPC server (there is one): *out
 * (malloc'd, caller frees) with *n entries. False when channelz is off or
 * out of memory (*out NULL).
 */
bool cz_server_connections(struct cz_conn **out, size_t *n);

#endif
