/*
 * The listener when descriptors run short: connections past the server's
 * limit are closed as they are accepted, and the listener never stops.
 *
 * gRPC core 1.51 (tcp_server_posix.cc, on_read) stops accepting on a port
 * for good when accept4() fails with anything but EINTR, EAGAIN or
 * ECONNABORTED. After one EMFILE the port still listens and the kernel
 * still queues connections, but no new client is ever served again, also
 * once descriptors are free (measured: 1,100 idle connections against a
 * limit of 1,024, then closed: the next client waited until its deadline,
 * and so did every one after it). Each idle connection also costs the
 * server ~18 KiB (5,000 connections: +92 MB), so the descriptor limit is
 * the only bound on a connection flood.
 *
 * So the server defines accept4() itself. gRPC core's listener calls it
 * (the program's own definition comes before the C library's), and it
 * calls the kernel's:
 * - A connection that got one of the last ACCEPT_RESERVE_FDS descriptors
 *   below the open-files limit is closed at once (with a reset) and the
 *   next one is taken: those descriptors stay for the store, the logs, the
 *   metrics and the guard. accept_guard_start() sets the limit so that
 *   about connection_limit connections fit below the reserve.
 * - EMFILE or ENFILE all the same (descriptors taken by something else):
 *   the queue of waiting connections is emptied by accepting each with a
 *   spare descriptor kept for that and closing it, then core is told
 *   EAGAIN and waits for the next connection as usual. Emptying the queue
 *   matters: core waits for the listener to become readable again, which
 *   connections already queued never make it.
 * - The errors accept(2) says are a new connection's own network errors
 *   (ENETDOWN, EPROTO, EHOSTUNREACH and the like) are retried, as for
 *   EAGAIN, instead of ending the listener.
 * Each refused connection is counted (das_grpc_server_connections_closed_
 * total, reason "connection_limit") and logged (WARN, at most every 10 s).
 *
 * Descriptor numbers are handed out lowest first, so a connection's number
 * says how many descriptors are open below it: the check is one compare.
 */
#ifndef DAS_GRPC_ACCEPT_GUARD_H
#define DAS_GRPC_ACCEPT_GUARD_H

#include <stdbool.h>
#include <stddef.h>

#define ACCEPT_RESERVE_FDS 64

/*
 * From now on, a connection past connection_limit (0 = as many as the
 * present limit allows) is closed as it is accepted. Sets the soft limit of
 * open files to the lowest free descriptor + connection_limit + the reserve
 * (at most the hard limit; a WARN line when that leaves room for fewer),
 * and opens the spare descriptor. Call once, after the store and the
 * listener are open and before the server starts. Returns false with the
 * reason in err. (Descriptors are counted from the lowest free number: one
 * open above it, say inherited, takes a connection's place.)
 */
bool accept_guard_start(unsigned connection_limit, char *err, size_t err_size);

/* Connections the server could hold (after accept_guard_start). */
long accept_guard_room(void);

/*
 * From now on, fn(arg, addr, addr_len) is called with the peer address of
 * each connection handed to gRPC core, on the accepting thread (the flood
 * guard's flood_guard_accepted); fn NULL stops it. Call with fn before the
 * server starts and with NULL before arg goes away, while no connection is
 * being accepted.
 */
struct sockaddr;
void accept_guard_watch(void (*fn)(void *arg, const struct sockaddr *addr,
				   unsigned addr_len),
			void *arg);

#endif
