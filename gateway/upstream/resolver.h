/*
 * The addresses behind the --upstream target (as gw_upstream_target wrote
 * it). IP literals, lists of them and unix: paths are fixed; a name
 * (HOST:PORT or dns:///NAME:PORT) is resolved on a thread of its own,
 * every RESOLVER_PERIOD_MS and soon after a connection to it failed, so
 * no event loop ever waits for getaddrinfo. Loops notice a new address set
 * by its generation number and copy it.
 */
#ifndef GW_UPSTREAM_RESOLVER_H
#define GW_UPSTREAM_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define RESOLVER_MAX_ADDRS 32
#define RESOLVER_PERIOD_MS 30000
/* A re-resolution asked for by a failed connection waits this long after
 * the last one (a name that keeps failing is not hammered). */
#define RESOLVER_MIN_GAP_MS 1000

struct resolver_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char authority[280]; /* :authority, "host:port" */
	char host[256];	     /* the name the TLS certificate must carry */
};

struct resolver_addrs {
	size_t n;
	struct resolver_addr a[RESOLVER_MAX_ADDRS];
};

struct resolver;

/*
 * Parses target; a name is resolved once now (a failure is not an error:
 * the thread tries again) and then on the thread. Returns NULL with a
 * one-line reason in err.
 */
struct resolver *resolver_new(const char *target, char *err, size_t err_size);

/* Stops the thread and frees r. NULL is a no-op. */
void resolver_free(struct resolver *r);

/* Changes whenever the address set changes (any thread). */
unsigned resolver_generation(struct resolver *r);

/* Copies the current set and returns its generation (any thread). */
unsigned resolver_get(struct resolver *r, struct resolver_addrs *out);

/* A connection failed: resolve again soon (names only; any thread). */
void resolver_kick(struct resolver *r);

#endif
