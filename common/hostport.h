/* Listening addresses given as "host:port" or "[v6]:port". */
#ifndef DAS_COMMON_HOSTPORT_H
#define DAS_COMMON_HOSTPORT_H

#include <stddef.h>

struct addrinfo;

/*
 * Splits addr into host and port and resolves it numerically for a
 * passive stream socket. Returns 0 with *res to be freed with
 * freeaddrinfo(), or -1 with a one-line reason in err; label (e.g.
 * "--listen ", or "") starts the reason's mention of addr.
 */
int das_hostport_resolve(const char *addr, const char *label,
			 struct addrinfo **res, char *err, size_t err_size);

#endif
