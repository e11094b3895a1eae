#include "resolver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>

#include "common/condwait.h"
#include "common/log.h"

struct resolver {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct resolver_addrs addrs; /* under lock */
	atomic_uint generation;
	/* A name to resolve (host, port) and its thread. */
	char host[256], port[8];
	bool has_thread, is_stopping, is_kicked;
	pthread_t thread;
};

static bool has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* "host:port" or "[v6]:port" of len bytes into host (brackets off). */
static int split(const char *s, size_t len, char *host, size_t host_size,
		 char *port, size_t port_size)
{
	const char *end = s + len, *colon = NULL;
	size_t hl, pl;

	for (const char *p = end; p > s; p--)
		if (p[-1] == ':') {
			colon = p - 1;
			break;
		}
	if (!colon)
		return -1;
	pl = (size_t)(end - colon - 1);
	hl = (size_t)(colon - s);
	if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
		s++;
		hl -= 2;
	}
	if (hl == 0 || hl >= host_size || pl == 0 || pl >= port_size)
		return -1;
	memcpy(host, s, hl);
	host[hl] = '\0';
	memcpy(port, colon + 1, pl);
	port[pl] = '\0';
	return 0;
}

/* An IP literal into a; 1 when it is one, 0 when it is a name. */
static int literal(const char *host, const char *port,
		   struct resolver_addr *a)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)&a->ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a->ss;
	const char *h = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
	unsigned long p = strtoul(port, NULL, 10);

	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, h, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)p);
		a->len = sizeof(*v4);
	} else if (inet_pton(AF_INET6, h, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)p);
		a->len = sizeof(*v6);
	} else {
		return 0;
	}
	snprintf(a->host, sizeof(a->host), "%s", host);
	snprintf(a->authority, sizeof(a->authority),
		 a->ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, port);
	return 1;
}

static int unix_path(const char *path, struct resolver_addr *a, char *err,
		     size_t err_size)
{
	struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;

	memset(a, 0, sizeof(*a));
	if (has_prefix(path, "//"))
		path += 2; /* unix:///abs/path */
	if (!*path || strlen(path) >= sizeof(un->sun_path)) {
		snprintf(err, err_size, "--upstream: bad unix path");
		return -1;
	}
	un->sun_family = AF_UNIX;
	memcpy(un->sun_path, path, strlen(path) + 1);
	a->len = (socklen_t)sizeof(*un);
	snprintf(a->authority, sizeof(a->authority), "localhost");
	snprintf(a->host, sizeof(a->host), "localhost");
	return 0;
}

/* Resolves host:port now; fills out (the authority keeps the name). */
static int resolve(const char *host, const char *port,
		   struct resolver_addrs *out)
{
	struct addrinfo hints, *res = NULL;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -1;
	out->n = 0;
	for (struct addrinfo *ai = res; ai && out->n < RESOLVER_MAX_ADDRS;
	     ai = ai->ai_next) {
		struct resolver_addr *a = &out->a[out->n];
		bool is_dup = false;

		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof(a->ss))
			continue;
		for (size_t i = 0; i < out->n; i++)
			if (out->a[i].len == ai->ai_addrlen &&
			    memcmp(&out->a[i].ss, ai->ai_addr,
				   ai->ai_addrlen) == 0)
				is_dup = true;
		if (is_dup)
			continue;
		memset(a, 0, sizeof(*a));
		memcpy(&a->ss, ai->ai_addr, ai->ai_addrlen);
		a->len = ai->ai_addrlen;
		snprintf(a->host, sizeof(a->host), "%s", host);
		snprintf(a->authority, sizeof(a->authority), "%s:%s", host,
			 port);
		out->n++;
	}
	freeaddrinfo(res);
	return out->n ? 0 : -1;
}

static bool same_set(const struct resolver_addrs *a,
		     const struct resolver_addrs *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (a->a[i].len != b->a[i].len ||
		    memcmp(&a->a[i].ss, &b->a[i].ss, a->a[i].len) != 0)
			return false;
	return true;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Publishes a new set when it differs; an empty result keeps the old one
 * (a name that stops resolving for a moment does not drop its servers). */
static void publish(struct resolver *r, const struct resolver_addrs *got)
{
	pthread_mutex_lock(&r->lock);
	if (!same_set(&r->addrs, got)) {
		r->addrs = *got;
		atomic_fetch_add(&r->generation, 1);
	}
	pthread_mutex_unlock(&r->lock);
}

static void *resolve_thread(void *arg)
{
	struct resolver *r = arg;
	struct resolver_addrs *got = malloc(sizeof(*got));
	uint64_t last = now_ms();

	pthread_mutex_lock(&r->lock);
	while (!r->is_stopping) {
		uint64_t now = now_ms();
		uint64_t due = r->is_kicked ? last + RESOLVER_MIN_GAP_MS
					    : last + RESOLVER_PERIOD_MS;
		if (now < due) {
			das_cond_wait_ms(&r->cond, &r->lock, due - now);
			continue;
		}
		r->is_kicked = false;
		pthread_mutex_unlock(&r->lock);
		if (got && resolve(r->host, r->port, got) == 0)
			publish(r, got);
		else
			das_log(DAS_LOG_WARN, "upstream: cannot resolve %s",
				r->host);
		last = now_ms();
		pthread_mutex_lock(&r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	free(got);
	return NULL;
}

/* "a:p,b:p" of IP literals. */
static int literal_list(struct resolver *r, const char *list, char *err,
			size_t err_size)
{
	for (const char *p = list; *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		char host[256], port[8];

		if (r->addrs.n == RESOLVER_MAX_ADDRS ||
		    split(p, len, host, sizeof(host), port, sizeof(port)) !=
			    0 ||
		    literal(host, port, &r->addrs.a[r->addrs.n]) != 1) {
			snprintf(err, err_size,
				 "--upstream: bad address list entry");
			return -1;
		}
		r->addrs.n++;
		if (!end)
			break;
		p = end + 1;
	}
	return 0;
}

static int parse(struct resolver *r, const char *target, char *err,
		 size_t err_size)
{
	const char *hp = target;
	struct resolver_addr one;

	if (has_prefix(target, "unix:")) {
		r->addrs.n = 1;
		return unix_path(target + 5, &r->addrs.a[0], err, err_size);
	}
	if (has_prefix(target, "ipv4:") || has_prefix(target, "ipv6:"))
		return literal_list(r, target + 5, err, err_size);
	if (has_prefix(target, "dns:///"))
		hp = target + 7;
	else if (has_prefix(target, "dns:"))
		hp = target + 4;
	if (strchr(hp, ','))
		return literal_list(r, hp, err, err_size);
	if (split(hp, strlen(hp), r->host, sizeof(r->host), r->port,
		  sizeof(r->port)) != 0) {
		snprintf(err, err_size, "--upstream: '%s' is not HOST:PORT",
			 hp);
		return -1;
	}
	if (literal(r->host, r->port, &one) == 1) {
		r->addrs.a[0] = one;
		r->addrs.n = 1;
		r->host[0] = '\0';
		return 0;
	}
	return 1; /* a name */
}

struct resolver *resolver_new(const char *target, char *err, size_t err_size)
{
	struct resolver *r = calloc(1, sizeof(*r));
	int rc;

	if (!r) {
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&r->lock, NULL);
	das_cond_init_monotonic(&r->cond);
	rc = parse(r, target, err, err_size);
	if (rc < 0)
		goto fail;
	if (rc == 1) {
		struct resolver_addrs *got = malloc(sizeof(*got));
		if (got && resolve(r->host, r->port, got) == 0)
			r->addrs = *got;
		free(got);
		if (pthread_create(&r->thread, NULL, resolve_thread, r) != 0) {
			snprintf(err, err_size,
				 "cannot start the resolver thread");
			goto fail;
		}
		r->has_thread = true;
	}
	atomic_store(&r->generation, 1);
	return r;
fail:
	resolver_free(r);
	return NULL;
}

void resolver_free(struct resolver *r)
{
	if (!r)
		return;
	if (r->has_thread) {
		pthread_mutex_lock(&r->lock);
		r->is_stopping = true;
		pthread_cond_signal(&r->cond);
		pthread_mutex_unlock(&r->lock);
		pthread_join(r->thread, NULL);
	}
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

unsigned resolver_generation(struct resolver *r)
{
	return atomic_load_explicit(&r->generation, memory_order_acquire);
}

unsigned resolver_get(struct resolver *r, struct resolver_addrs *out)
{
	unsigned gen;

	pthread_mutex_lock(&r->lock);
	*out = r->addrs;
	gen = atomic_load(&r->generation);
	pthread_mutex_unlock(&r->lock);
	return gen;
}

void resolver_kick(struct resolver *r)
{
	if (!r->has_thread)
		return;
	pthread_mutex_lock(&r->lock);
	if (!r->is_kicked) {
		r->is_kicked = true;
		pthread_cond_signal(&r->cond);
	}
	pthread_mutex_unlock(&r->lock);
}
