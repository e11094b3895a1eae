/*
 * The --upstream value as a gRPC target. Accepted forms:
 *
 *   127.0.0.1:50051                  one server
 *   127.0.0.1:50051,127.0.0.1:50052  several servers (IP literals or
 *                                    localhost), spread round-robin
 *   [::1]:50051,[::1]:50052          the same over IPv6
 *   dns:///server:50051              every address the name resolves to,
 *                                    round-robin, re-resolved by gRPC
 *   ipv4:..., ipv6:..., unix:...     gRPC target syntax, passed through
 *
 * IP literals are checked with inet_pton; a bare HOST:PORT name must
 * resolve (getaddrinfo) at start-up; dns:/// names are only checked for
 * shape, since gRPC resolves them again and again.
 */
#ifndef GW_UPSTREAM_TARGET_H
#define GW_UPSTREAM_TARGET_H

#include <stddef.h>

/* The load-balancing policy every upstream channel is given. */
#define GW_UPSTREAM_SERVICE_CONFIG                                             \
	"{\"loadBalancingConfig\":[{\"round_robin\":{}}]}"

/*
 * Writes the gRPC target for value into out. Returns 0, or -1 with a
 * one-line reason in err (not HOST:PORT, a port outside 1..65535, an
 * invalid IP literal such as 999.1.1.1, a name that does not resolve,
 * empty entries, a list mixing IPv4 and IPv6, a host name inside a list,
 * an unknown scheme, too long).
 */
int gw_upstream_target(const char *value, char *out, size_t out_size,
		       char *err, size_t err_size);

#endif
