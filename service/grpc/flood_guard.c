#include "flood_guard.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_received */
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stddef.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "common/chars.h"
#include "common/condwait.h"
#include "common/log.h"
#include "channelz.h"
#include "observe.h"

struct entry {
	struct flood_peer key;
	bool is_used;
	uint32_t open;   /* calls admitted, not yet released */
	/* Of which the server has not begun to answer, not yet overdue:
	 * their tickets, listed (struct flood_ticket). */
	uint32_t unanswered;
	struct flood_ticket *listed;
	uint32_t calls;  /* released lately (halved every window) */
	uint32_t resets; /* of which the client reset */
	int64_t last_ms; /* last admission, for forgetting the oldest */
	int64_t closed_until_ms; /* drop its calls until then */
	uint64_t credit; /* bytes of calls taken, not yet seen by the watcher */
	/* Requests streaming calls read past their first, on this peer's
	 * latest connection (flood_guard_more_requests). */
	uint64_t more_requests;
};

struct group {
	pthread_mutex_t mu;
	struct entry e[FLOOD_TABLE_SLOTS];
};

struct flood_guard {
	int port;
	unsigned max_open;
	uint64_t seed; /* the hash is keyed: peers cannot aim at one group */
	/* When the last connection was closed: calls are looked up for
	 * being dropped only within FLOOD_CLOSED_HOLD_MS of it. */
	_Atomic int64_t last_close_ms;
	_Atomic int64_t last_trim_ms;
	/* Calls admitted without an entry (table full) since the watcher's
	 * last look: their bytes were credited to no connection. */
	_Atomic uint64_t n_uncredited;
	/* The trimmer thread (see trim_main): asked to run by is_trim_due. */
	pthread_t trimmer;
	bool has_trimmer;
	pthread_mutex_t trim_mu;
	pthread_cond_t trim_cv;
	bool is_trim_due, is_stopping;
	/* The watcher thread (see watch_main), stopped by is_stopping. */
	pthread_t watcher;
	bool has_watcher;
	pthread_cond_t watch_cv; /* CLOCK_MONOTONIC */
	/* The watcher's trims of memory left free (trim_idle_heap). */
	int64_t next_idle_trim_ms, idle_trim_wait_ms;
	long idle_kib_at_trim;
	size_t n_groups; /* a power of two */
	struct group *groups;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *trim_main(void *arg);
static void *watch_main(void *arg);

/* Groups for n_conns connections: FLOOD_TABLE_ROOM entries each, a power
 * of two between FLOOD_TABLE_GROUPS and FLOOD_TABLE_MAX_GROUPS. */
static size_t groups_for(long n_conns)
{
	size_t n = FLOOD_TABLE_GROUPS;

	while (n < FLOOD_TABLE_MAX_GROUPS &&
	       (long)(n * FLOOD_TABLE_SLOTS) < FLOOD_TABLE_ROOM * n_conns)
		n *= 2;
	return n;
}

struct flood_guard *flood_guard_new(int port, unsigned max_open,
				    long n_conns)
{
	struct flood_guard *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	g->n_groups = groups_for(n_conns);
	g->groups = calloc(g->n_groups, sizeof(*g->groups));
	if (!g->groups) {
		free(g);
		return NULL;
	}
	g->port = port;
	g->max_open = max_open;
	if (getrandom(&g->seed, sizeof(g->seed), 0) != sizeof(g->seed))
		g->seed = (uint64_t)now_ms() * 0x9e3779b97f4a7c15ULL;
	atomic_init(&g->last_close_ms, INT64_MIN / 2);
	atomic_init(&g->last_trim_ms, INT64_MIN / 2);
	atomic_init(&g->n_uncredited, 0);
	for (size_t i = 0; i < g->n_groups; i++)
		pthread_mutex_init(&g->groups[i].mu, NULL);
	pthread_mutex_init(&g->trim_mu, NULL);
	pthread_cond_init(&g->trim_cv, NULL);
	das_cond_init_monotonic(&g->watch_cv);
	g->has_trimmer = pthread_create(&g->trimmer, NULL, trim_main, g) == 0;
	g->has_watcher = pthread_create(&g->watcher, NULL, watch_main, g) == 0;
	if (!g->has_trimmer || !g->has_watcher) {
		flood_guard_free(g);
		return NULL;
	}
	return g;
}

void flood_guard_free(struct flood_guard *g)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->trim_mu);
	g->is_stopping = true;
	pthread_cond_signal(&g->trim_cv);
	pthread_cond_signal(&g->watch_cv);
	pthread_mutex_unlock(&g->trim_mu);
	if (g->has_trimmer)
		pthread_join(g->trimmer, NULL);
	if (g->has_watcher)
		pthread_join(g->watcher, NULL);
	pthread_cond_destroy(&g->watch_cv);
	pthread_cond_destroy(&g->trim_cv);
	pthread_mutex_destroy(&g->trim_mu);
	for (size_t i = 0; i < g->n_groups; i++)
		pthread_mutex_destroy(&g->groups[i].mu);
	free(g->groups);
	free(g);
}

/* ---- peers -------------------------------------------------------------- */

/* "HOST:PORT" with HOST already unbracketed by the caller. */
static bool parse_port(const char *s, uint16_t *port)
{
	unsigned long v = 0;

	if (!*s)
		return false;
	for (int n = 0; *s; s++, n++) {
		if (*s < '0' || *s > '9' || n >= 5)
			return false;
		v = v * 10 + (unsigned long)(*s - '0');
	}
	if (v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

static void peer_from_v6(const uint8_t a[16], uint16_t port,
			 struct flood_peer *p)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0,
					   0, 0, 0, 0, 0xff, 0xff};

	memset(p, 0, sizeof(*p));
	p->is_known = true;
	p->port = port;
	if (memcmp(a, mapped, sizeof(mapped)) == 0) {
		p->family = 4;
		memcpy(p->addr, a + 12, 4);
	} else {
		p->family = 6;
		memcpy(p->addr, a, 16);
	}
}

bool flood_peer_parse(const char *s, struct flood_peer *peer)
{
	char buf[128];
	size_t n = 0;
	char *colon;

	memset(peer, 0, sizeof(*peer));
	if (strncmp(s, "ipv4:", 5) == 0) {
		struct in_addr a4;
		if (strlen(s + 5) >= sizeof(buf))
			return false;
		memcpy(buf, s + 5, strlen(s + 5) + 1);
		colon = strrchr(buf, ':');
		if (!colon)
			return false;
		*colon = '\0';
		if (inet_pton(AF_INET, buf, &a4) != 1 ||
		    !parse_port(colon + 1, &peer->port))
			return false;
		peer->is_known = true;
		peer->family = 4;
		memcpy(peer->addr, &a4, 4);
		return true;
	}
	if (strncmp(s, "ipv6:", 5) != 0)
		return false;
	/* Percent-decoded ("%5B::1%5D" in some core versions). */
	for (const char *c = s + 5; *c; c++) {
		char ch = *c;
		int hi = ch == '%' ? das_hex_digit(c[1]) : -1;
		int lo = hi >= 0 ? das_hex_digit(c[2]) : -1;

		if (lo >= 0) {
			ch = (char)(hi * 16 + lo);
			c += 2;
		}
		if (n + 1 >= sizeof(buf))
			return false;
		buf[n++] = ch;
	}
	buf[n] = '\0';
	char *close = strrchr(buf, ']');
	if (buf[0] != '[' || !close || close[1] != ':')
		return false;
	*close = '\0';
	uint16_t port;
	if (!parse_port(close + 2, &port))
		return false;
	char *zone = strchr(buf + 1, '%');
	if (zone)
		*zone = '\0';
	struct in6_addr a6;
	if (inet_pton(AF_INET6, buf + 1, &a6) != 1)
		return false;
	peer_from_v6(a6.s6_addr, port, peer);
	return true;
}

static bool peer_from_sockaddr(const struct sockaddr_storage *ss,
			       struct flood_peer *p)
{
	memset(p, 0, sizeof(*p));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
		p->is_known = true;
		p->family = 4;
		p->port = ntohs(a->sin_port);
		memcpy(p->addr, &a->sin_addr, 4);
		return true;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
		peer_from_v6(a->sin6_addr.s6_addr, ntohs(a->sin6_port), p);
		return true;
	}
	return false;
}

static bool peer_equal(const struct flood_peer *a, const struct flood_peer *b)
{
	return a->is_known && b->is_known && a->family == b->family &&
	       a->port == b->port &&
	       memcmp(a->addr, b->addr, a->family == 4 ? 4 : 16) == 0;
}

static void peer_text(const struct flood_peer *p, char *buf, size_t size)
{
	char a[INET6_ADDRSTRLEN];

	if (!inet_ntop(p->family == 4 ? AF_INET : AF_INET6, p->addr, a,
		       sizeof(a)))
		snprintf(a, sizeof(a), "?");
	snprintf(buf, size, p->family == 4 ? "ipv4:%s:%u" : "ipv6:[%s]:%u", a,
		 (unsigned)p->port);
}

static struct group *group_of(struct flood_guard *g,
			      const struct flood_peer *p)
{
	/* FNV-1a over the key, seeded. */
	uint64_t h = 0xcbf29ce484222325ULL ^ g->seed;
	uint8_t bytes[19];

	bytes[0] = p->family;
	bytes[1] = (uint8_t)(p->port >> 8);
	bytes[2] = (uint8_t)p->port;
	memcpy(bytes + 3, p->addr, 16);
	for (size_t i = 0; i < sizeof(bytes); i++) {
		h ^= bytes[i];
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 29;
	return &g->groups[h & (g->n_groups - 1)];
}

/* The entry of p in its group (locked), or NULL. */
static struct entry *find(struct group *gr, const struct flood_peer *p)
{
	for (int i = 0; i < FLOOD_TABLE_SLOTS; i++)
		if (gr->e[i].is_used && peer_equal(&gr->e[i].key, p))
			return &gr->e[i];
	return NULL;
}

/* The entry of p, made when missing (the group locked): a free slot, else
 * the least recently seen one without open calls that is not holding a
 * closed connection; NULL when there is none. */
static struct entry *find_or_add(struct group *gr, const struct flood_peer *p,
				 int64_t now)
{
	struct entry *e = find(gr, p), *victim = NULL;

	if (e)
		return e;
	for (int i = 0; i < FLOOD_TABLE_SLOTS; i++) {
		struct entry *c = &gr->e[i];
		if (!c->is_used) {
			victim = c;
			break;
		}
		if (c->open > 0 || c->listed || c->closed_until_ms > now)
			continue;
		if (!victim || c->last_ms < victim->last_ms)
			victim = c;
	}
	if (!victim)
		return NULL;
	memset(victim, 0, sizeof(*victim));
	victim->is_used = true;
	victim->key = *p;
	return victim;
}

/* ---- tickets of unanswered calls --------------------------------------- */

static void ticket_list(struct entry *e, struct flood_ticket *t)
{
	t->prev = NULL;
	t->next = e->listed;
	if (e->listed)
		e->listed->prev = t;
	e->listed = t;
	t->is_listed = true;
	e->unanswered++;
}

static void ticket_unlist(struct entry *e, struct flood_ticket *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		e->listed = t->next;
	if (t->next)
		t->next->prev = t->prev;
	t->prev = t->next = NULL;
	t->is_listed = false;
	if (e->unanswered > 0)
		e->unanswered--;
}

/* Takes e's calls overdue at now off its unanswered count. */
static void unlist_overdue(struct entry *e, int64_t now)
{
	struct flood_ticket *t = e->listed;

	while (t) {
		struct flood_ticket *next = t->next;

		if (t->may_lapse && t->overdue_ms <= now)
			ticket_unlist(e, t);
		t = next;
	}
}

/* Forgets e's tickets (their calls count on no entry any more). */
static void unlist_all(struct entry *e)
{
	while (e->listed)
		ticket_unlist(e, e->listed);
}

/* ---- closing a connection ----------------------------------------------- */

/* True when fd is a connected socket of ours on the listening port: its
 * peer in *peer. */
static bool connection_peer(int fd, int port, struct flood_peer *peer)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct flood_peer local;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
	    !peer_from_sockaddr(&ss, &local) || local.port != port)
		return false;
	len = sizeof(ss);
	return getpeername(fd, (struct sockaddr *)&ss, &len) == 0 &&
	       peer_from_sockaddr(&ss, peer);
}

/* A descriptor's number from its /proc/self/fd entry; -1 for ".", ".."
 * and the directory's own descriptor. */
static int fd_of(const struct dirent *de, DIR *d)
{
	char *end;
	long fd = strtol(de->d_name, &end, 10);

	if (*end || end == de->d_name || fd < 0 || fd > INT_MAX ||
	    fd == dirfd(d))
		return -1;
	return (int)fd;
}

/* True when fd is a TCP socket of ours on the listening port whose peer is
 * p. */
static bool is_connection_of(int fd, int port, const struct flood_peer *p)
{
	struct flood_peer got;

	return connection_peer(fd, port, &got) && peer_equal(&got, p);
}

/*
 * Shuts down fd if it is the socket of our listening port connected to p;
 * true when it was. Never closes a descriptor gRPC owns: the check and the
 * shutdown run on a dup, so they see the same socket even if gRPC closes
 * and reuses the number meanwhile.
 */
static bool shut_fd(int fd, int port, const struct flood_peer *p)
{
	bool is_found = false;
	int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);

	if (dup_fd < 0)
		return false;
	if (is_connection_of(dup_fd, port, p)) {
		shutdown(dup_fd, SHUT_RDWR);
		is_found = true;
	}
	close(dup_fd);
	return is_found;
}

/* shut_fd on the descriptor connected to p, found among all of ours. */
static bool shut_connection(int port, const struct flood_peer *p)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	bool is_found = false;

	if (!d)
		return false;
	while (!is_found && (de = readdir(d)) != NULL) {
		int fd = fd_of(de, d);
		/* Cheap look first; most descriptors are not it. */
		if (fd >= 0 && is_connection_of(fd, port, p))
			is_found = shut_fd(fd, port, p);
	}
	closedir(d);
	return is_found;
}

/* ---- the rule ----------------------------------------------------------- */

static void close_connection(struct flood_guard *g,
			     const struct flood_peer *peer, int64_t now,
			     unsigned unanswered, unsigned open)
{
	char text[80];

	peer_text(peer, text, sizeof(text));
	atomic_store_explicit(&g->last_close_ms, now, memory_order_relaxed);
	bool is_found = shut_connection(g->port, peer);
	obs_flood_connection_closed();
	if (is_found)
		das_log(DAS_LOG_WARN,
			"grpc: closed the connection of %s: it reset streams "
			"faster than they were answered (%u calls unanswered, "
			"%u open; the stream cap is %u: HTTP/2 rapid reset)",
			text, unanswered, open, g->max_open / 2);
	else
		das_log(DAS_LOG_WARN,
			"grpc: %s reset streams faster than they were answered "
			"(%u calls unanswered, %u open; the stream cap is %u: "
			"HTTP/2 rapid reset); its socket is gone already, its "
			"calls are dropped for %d ms",
			text, unanswered, open, g->max_open / 2,
			FLOOD_CLOSED_HOLD_MS);
}

enum flood_verdict flood_guard_admit(struct flood_guard *g, grpc_call *call,
				     size_t call_bytes, int64_t deadline_ms,
				     struct flood_peer *peer,
				     struct flood_ticket *ticket)
{
	char *s = grpc_call_get_peer(call);
	enum flood_verdict verdict = FLOOD_QUIET;
	bool is_closing = false;
	unsigned n_unanswered = 0, n_open = 0; /* at a close, for its line */

	memset(ticket, 0, sizeof(*ticket));
	ticket->overdue_ms = deadline_ms ? deadline_ms - FLOOD_DEADLINE_SLACK_MS
					 : INT64_MAX;

	if (!s || !flood_peer_parse(s, peer))
		memset(peer, 0, sizeof(*peer));
	gpr_free(s);
	if (!peer->is_known)
		return FLOOD_QUIET;
	int64_t now = now_ms();
	ticket->may_lapse = ticket->overdue_ms > now;
	struct group *gr = group_of(g, peer);
	pthread_mutex_lock(&gr->mu);
	struct entry *e = find_or_add(gr, peer, now);
	if (!e) {
		/* Table full of open connections: this one goes unguarded. */
		peer->is_known = false;
		atomic_fetch_add_explicit(&g->n_uncredited, 1,
					  memory_order_relaxed);
	} else if (e->closed_until_ms > now) {
		verdict = FLOOD_DROP;
	} else {
		bool is_resetting = e->resets >= FLOOD_SUSPECT_RESETS &&
				    e->resets * 2 > e->calls;

		e->last_ms = now;
		e->credit += call_bytes;
		e->open++;
		ticket_list(e, ticket);
		if (e->open > g->max_open / 2 || is_resetting)
			verdict = FLOOD_BUSY;
		/* Past the cap, calls the client has given up on at their
		 * deadline are no flood: they leave the count first. */
		if (e->unanswered > g->max_open)
			unlist_overdue(e, now);
		/* Calls not yet answered never pass the stream cap unless the
		 * client resets their streams. Calls answered whose answer is
		 * still on its way out can, for a client that opens the next
		 * stream as each answer arrives (flood_guard_answered): those
		 * close a connection only past FLOOD_OPEN_FACTOR times more. */
		if (e->unanswered > g->max_open ||
		    e->open > FLOOD_OPEN_FACTOR * g->max_open) {
			is_closing = true;
			n_unanswered = e->unanswered;
			n_open = e->open;
			e->closed_until_ms = now + FLOOD_CLOSED_HOLD_MS;
			e->calls = e->resets = 0;
		}
	}
	pthread_mutex_unlock(&gr->mu);
	if (verdict == FLOOD_DROP)
		obs_flood_call_dropped();
	if (is_closing)
		close_connection(g, peer, now, n_unanswered, n_open);
	return verdict;
}

/* The trimmer runs malloc_trim once more (g->trim_mu not held). */
static void trim_ask(struct flood_guard *g)
{
	pthread_mutex_lock(&g->trim_mu);
	g->is_trim_due = true;
	pthread_cond_signal(&g->trim_cv);
	pthread_mutex_unlock(&g->trim_mu);
}

/*
 * While a flood is being dropped (and a little after), the freed memory is
 * handed back to the system at most once a second: glibc keeps the free
 * pages of its arenas, so the calls of a flood left the server's RSS at
 * its peak long after they were gone.
 *
 * malloc_trim runs on a thread of its own, never on a worker: with the
 * heap a flood leaves behind it took 20 ms to 2.5 s (p50 ~150 ms,
 * measured), and the worker that ran it answered nothing and polled no
 * socket meanwhile (a normal call that waited 4 s for a worker overlapped
 * three trims of 0.7-0.8 s). It still holds each arena's lock while it
 * trims that arena, so threads allocating there wait; that is the price
 * of handing the memory back.
 */
static void trim_after_flood(struct flood_guard *g)
{
	int64_t now = now_ms();
	int64_t last = atomic_load_explicit(&g->last_trim_ms,
					    memory_order_relaxed);

	if (now - atomic_load_explicit(&g->last_close_ms,
				       memory_order_relaxed) >
		    FLOOD_CLOSED_HOLD_MS + FLOOD_TRIM_MS ||
	    now - last < FLOOD_TRIM_MS ||
	    !atomic_compare_exchange_strong(&g->last_trim_ms, &last, now))
		return;
	trim_ask(g);
}

/* KiB of the RSS that hold nothing malloc handed out: the RSS less what
 * is in use on the heap and in its own mappings (so code, stacks and
 * other mappings count here too: ~15 MB on a fresh server). */
static long idle_kib(long rss)
{
	struct mallinfo2 mi = mallinfo2();

	return rss - (long)((mi.uordblks + mi.hblkhd) / 1024);
}

/*
 * Memory any burst left free goes back to the system, not only a flood's
 * (trim_after_flood): a store that stopped answering and then finished
 * 4,096 waiting calls at once left the server at 133 MB, all of it free
 * in malloc's arenas. Run by the watcher while the RSS is past
 * FLOOD_WIRE_HIGH_RSS_KIB. A trim that gave back less than half of what
 * was idle (the free memory is scattered among pages in use) makes the
 * next wait twice as long, so a fragmented heap is not trimmed over and
 * over.
 */
static void trim_idle_heap(struct flood_guard *g, long rss, int64_t t)
{
	if (t < g->next_idle_trim_ms)
		return;
	long idle = idle_kib(rss);

	if (g->idle_kib_at_trim) {
		/* the last trim's effect: idle then against idle now */
		bool is_worth = idle < g->idle_kib_at_trim / 2;

		g->idle_trim_wait_ms =
			is_worth ? FLOOD_IDLE_TRIM_MS
				 : g->idle_trim_wait_ms * 2 >
						   FLOOD_IDLE_TRIM_MAX_MS
					   ? FLOOD_IDLE_TRIM_MAX_MS
					   : g->idle_trim_wait_ms * 2;
		g->idle_kib_at_trim = 0;
	}
	if (idle < FLOOD_IDLE_HEAP_KIB) {
		g->next_idle_trim_ms = t + FLOOD_TRIM_MS;
		return;
	}
	if (!g->idle_trim_wait_ms)
		g->idle_trim_wait_ms = FLOOD_IDLE_TRIM_MS;
	g->idle_kib_at_trim = idle;
	g->next_idle_trim_ms = t + g->idle_trim_wait_ms;
	atomic_store(&g->last_trim_ms, t);
	trim_ask(g);
}

static void *trim_main(void *arg)
{
	struct flood_guard *g = arg;

	pthread_mutex_lock(&g->trim_mu);
	for (;;) {
		while (!g->is_trim_due && !g->is_stopping)
			pthread_cond_wait(&g->trim_cv, &g->trim_mu);
		if (g->is_stopping)
			break;
		g->is_trim_due = false;
		pthread_mutex_unlock(&g->trim_mu);
		malloc_trim(0);
		pthread_mutex_lock(&g->trim_mu);
	}
	pthread_mutex_unlock(&g->trim_mu);
	return NULL;
}

void flood_guard_more_requests(struct flood_guard *g,
			       const struct flood_peer *peer)
{
	if (!g || !peer->is_known)
		return;
	struct group *gr = group_of(g, peer);
	pthread_mutex_lock(&gr->mu);
	struct entry *e = find_or_add(gr, peer, now_ms());
	if (e)
		e->more_requests++;
	pthread_mutex_unlock(&gr->mu);
}

bool flood_guard_is_closed(struct flood_guard *g,
			   const struct flood_peer *peer)
{
	bool is_closed = false;

	if (!peer->is_known)
		return false;
	int64_t now = now_ms();
	if (now - atomic_load_explicit(&g->last_close_ms,
				       memory_order_relaxed) >
	    FLOOD_CLOSED_HOLD_MS)
		return false;
	struct group *gr = group_of(g, peer);
	pthread_mutex_lock(&gr->mu);
	struct entry *e = find(gr, peer);
	is_closed = e && e->closed_until_ms > now;
	pthread_mutex_unlock(&gr->mu);
	if (is_closed)
		obs_flood_call_dropped();
	return is_closed;
}

void flood_guard_accepted(struct flood_guard *g, const struct sockaddr *addr,
			  unsigned addr_len)
{
	struct sockaddr_storage ss;
	struct flood_peer peer;
	bool is_lifted = false;

	if (!g || !addr || addr_len == 0 || addr_len > sizeof(ss))
		return;
	int64_t now = now_ms();
	memset(&ss, 0, sizeof(ss));
	memcpy(&ss, addr, addr_len);
	if (!peer_from_sockaddr(&ss, &peer))
		return;
	struct group *gr = group_of(g, &peer);
	pthread_mutex_lock(&gr->mu);
	struct entry *e = find(gr, &peer);
	/* A new connection's channelz counters start at 0: so do these. */
	if (e)
		e->more_requests = 0;
	if (e && e->closed_until_ms > now) {
		struct flood_peer key = e->key;

		unlist_all(e);
		memset(e, 0, sizeof(*e));
		e->key = key;
		e->is_used = true;
		e->last_ms = now;
		is_lifted = true;
	}
	pthread_mutex_unlock(&gr->mu);
	if (is_lifted && das_log_is_enabled(DAS_LOG_DEBUG)) {
		char text[80];

		peer_text(&peer, text, sizeof(text));
		das_log(DAS_LOG_DEBUG,
			"grpc: a new connection from %s, whose last connection "
			"was closed lately: its calls count afresh",
			text);
	}
}

/* Takes ticket off e's count, if it is still on it (g's group locked). */
static void ticket_end(struct entry *e, struct flood_ticket *ticket)
{
	if (ticket->is_listed) {
		if (e)
			ticket_unlist(e, ticket);
		else
			ticket->is_listed = false;
	}
}

void flood_guard_answered(struct flood_guard *g, const struct flood_peer *peer,
			  struct flood_ticket *ticket)
{
	if (!peer->is_known)
		return;
	struct group *gr = group_of(g, peer);
	pthread_mutex_lock(&gr->mu);
	ticket_end(find(gr, peer), ticket);
	pthread_mutex_unlock(&gr->mu);
}

void flood_guard_release(struct flood_guard *g, const struct flood_peer *peer,
			 struct flood_ticket *ticket, bool is_cancelled)
{
	/* A call the client gave up on at its deadline is cancelled too;
	 * that is no reset. */
	bool is_reset = is_cancelled && now_ms() < ticket->overdue_ms;

	if (is_reset)
		obs_flood_reset();
	if (!peer->is_known)
		return;
	struct group *gr = group_of(g, peer);
	pthread_mutex_lock(&gr->mu);
	struct entry *e = find(gr, peer);
	ticket_end(e, ticket);
	if (e && e->open > 0) {
		e->open--;
		e->calls++;
		e->resets += is_reset;
		if (e->calls >= FLOOD_WINDOW_CALLS) {
			e->calls /= 2;
			e->resets /= 2;
		}
	}
	pthread_mutex_unlock(&gr->mu);
	trim_after_flood(g);
}

/* ---- bytes no call accounts for ----------------------------------------- */

/* One connection as the watcher saw it last. */
struct wire {
	struct flood_peer peer;
	int fd;		   /* its descriptor at the look */
	uint64_t received; /* TCP_INFO bytes received */
	int64_t debt;	   /* bytes received that no call accounts for */
	uint64_t acked;	   /* TCP_INFO bytes the client acknowledged */
	bool is_sending;   /* bytes of ours wait to be sent or acknowledged */
	int64_t stuck_ms;  /* since when they have, acked unchanged; 0: not */
};

struct wire_list {
	struct wire *w;
	size_t n, cap;
};

static int wire_cmp(const void *a, const void *b)
{
	const struct flood_peer *x = &((const struct wire *)a)->peer,
				*y = &((const struct wire *)b)->peer;

	if (x->family != y->family)
		return x->family < y->family ? -1 : 1;
	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	return memcmp(x->addr, y->addr, sizeof(x->addr));
}

/* True when fd is a connection of ours on the listening port: w's peer,
 * the bytes the kernel has received on it, the bytes the client has
 * acknowledged and whether bytes of ours wait. */
static bool wire_look(int fd, int port, struct wire *w)
{
	struct tcp_info ti;
	socklen_t ti_len = sizeof(ti);

	if (!connection_peer(fd, port, &w->peer))
		return false;
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &ti_len) != 0 ||
	    ti_len < offsetof(struct tcp_info, tcpi_notsent_bytes) +
			     sizeof(ti.tcpi_notsent_bytes))
		return false;
	w->received = ti.tcpi_bytes_received;
	w->acked = ti.tcpi_bytes_acked;
	w->is_sending = ti.tcpi_notsent_bytes > 0 || ti.tcpi_unacked > 0;
	return true;
}

/* The connections of the listening port now, sorted by peer; false when
 * out of memory. */
static bool wire_list_now(int port, struct wire_list *now)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	bool is_ok = d != NULL;

	now->n = 0;
	while (is_ok && (de = readdir(d)) != NULL) {
		int fd = fd_of(de, d);
		struct wire w = {0};

		if (fd < 0 || !wire_look(fd, port, &w))
			continue;
		w.fd = fd;
		if (now->n == now->cap) {
			size_t cap = now->cap ? 2 * now->cap : 64;
			struct wire *grown =
				realloc(now->w, cap * sizeof(*grown));
			if (!grown) {
				is_ok = false;
				break;
			}
			now->w = grown;
			now->cap = cap;
		}
		now->w[now->n++] = w;
	}
	if (d)
		closedir(d);
	if (now->n > 1)
		qsort(now->w, now->n, sizeof(*now->w), wire_cmp);
	return is_ok;
}

/* This process's resident memory in KiB (0 when unknown). */
static long rss_kib(void)
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return 0;
	if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
		resident = 0;
	fclose(f);
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* The credit of peer's calls taken since the last look, taken. */
static uint64_t credit_take(struct flood_guard *g, const struct flood_peer *p)
{
	struct group *gr = group_of(g, p);
	uint64_t credit = 0;

	pthread_mutex_lock(&gr->mu);
	struct entry *e = find(gr, p);
	if (e) {
		credit = e->credit;
		e->credit = 0;
	}
	pthread_mutex_unlock(&gr->mu);
	return credit;
}

/* The watcher is about to shut p's connection: for FLOOD_CLOSED_HOLD_MS
 * its calls still queued are dropped unanswered (core hands over the
 * streams of a shut connection as calls). */
static void mark_closed(struct flood_guard *g, const struct flood_peer *p,
			int64_t now)
{
	struct group *gr = group_of(g, p);

	pthread_mutex_lock(&gr->mu);
	struct entry *e = find_or_add(gr, p, now);
	if (e)
		e->closed_until_ms = now + FLOOD_CLOSED_HOLD_MS;
	pthread_mutex_unlock(&gr->mu);
	atomic_store_explicit(&g->last_close_ms, now, memory_order_relaxed);
}

/*
 * Shuts w's connection (its descriptor at the watcher's look, checked
 * again) for one of the watcher's rules: its queued calls dropped
 * (mark_closed), count() and a WARN line giving the reason (a printf
 * format and its arguments) when the socket was still there.
 */
__attribute__((format(printf, 5, 6))) static void
watcher_close(struct flood_guard *g, const struct wire *w, int64_t now,
	      void (*count)(void), const char *fmt, ...)
{
	const struct flood_peer *p = &w->peer;
	char text[80], why[192];
	va_list ap;

	mark_closed(g, p, now);
	if (!shut_fd(w->fd, g->port, p))
		return;
	count();
	peer_text(p, text, sizeof(text));
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	das_log(DAS_LOG_WARN, "grpc: closed the connection of %s: %s", text,
		why);
}

static void wire_close(struct flood_guard *g, const struct wire *w, int64_t now)
{
	watcher_close(g, w, now, obs_wire_connection_closed,
		      "it sent %lld bytes more than its calls hold (an HTTP/2 "
		      "header block that does not end, or frames of no call)",
		      (long long)w->debt);
}

/* w's stuck_ms from its last look (was, NULL when new): bytes of ours
 * have waited since then with nothing acknowledged. */
static void stuck_update(struct wire *w, const struct wire *was, int64_t now)
{
	if (!w->is_sending)
		w->stuck_ms = 0;
	else if (was && was->stuck_ms && was->acked == w->acked)
		w->stuck_ms = was->stuck_ms;
	else
		w->stuck_ms = now;
}

static void stuck_close(struct flood_guard *g, const struct wire *w,
			int64_t now)
{
	watcher_close(g, w, now, obs_stuck_connection_closed,
		      "it took none of the server's bytes for %lld ms (a "
		      "client that does not read)",
		      (long long)(now - w->stuck_ms));
}

/*
 * One look at every connection: its debt grows by the bytes received
 * since the last look, less the credit of the calls taken from it and
 * what a second forgives (pro rata); past FLOOD_WIRE_MAX_DEBT it is
 * closed; while the server's memory is past FLOOD_WIRE_HIGH_RSS_KIB
 * (is_pressed), so is the largest debt past FLOOD_WIRE_HIGH_DEBT, and
 * every connection whose bytes of ours have waited FLOOD_STUCK_MS with
 * none acknowledged. A call taken while the table was full credited no
 * connection: that look adds nothing received. prev (sorted) holds the
 * last look and becomes this one.
 */
static void wire_scan(struct flood_guard *g, struct wire_list *prev,
		      struct wire_list *now, int64_t elapsed_ms,
		      bool is_pressed)
{
	int64_t forgive = FLOOD_WIRE_FORGIVE * elapsed_ms / 1000;
	int64_t now_time = now_ms();
	/* Calls went uncredited (a full table): this look adds no debt. */
	bool is_blind = atomic_exchange_explicit(&g->n_uncredited, 0,
						 memory_order_relaxed) > 0;
	struct wire *top = NULL; /* the largest debt */
	size_t j = 0;

	if (!wire_list_now(g->port, now))
		return;
	for (size_t i = 0; i < now->n; i++) {
		struct wire *w = &now->w[i];
		uint64_t seen = 0;
		const struct wire *was = NULL;

		while (j < prev->n && wire_cmp(&prev->w[j], w) < 0)
			j++;
		if (j < prev->n && wire_cmp(&prev->w[j], w) == 0 &&
		    prev->w[j].received <= w->received) {
			was = &prev->w[j];
			seen = was->received;
			w->debt = was->debt;
		}
		stuck_update(w, was, now_time);
		if (is_pressed && w->stuck_ms &&
		    now_time - w->stuck_ms >= FLOOD_STUCK_MS) {
			stuck_close(g, w, now_time);
			w->stuck_ms = 0;
		}
		int64_t got = is_blind ? 0 : (int64_t)(w->received - seen);
		w->debt += got - (int64_t)credit_take(g, &w->peer) - forgive;
		if (w->debt < -(int64_t)FLOOD_WIRE_BANK)
			w->debt = -(int64_t)FLOOD_WIRE_BANK;
		if (w->debt > FLOOD_WIRE_MAX_DEBT) {
			wire_close(g, w, now_time);
			w->debt = 0;
		}
		if (!top || w->debt > top->debt)
			top = w;
	}
	if (top && top->debt > FLOOD_WIRE_HIGH_DEBT &&
	    rss_kib() > FLOOD_WIRE_HIGH_RSS_KIB) {
		wire_close(g, top, now_time);
		top->debt = 0;
	}
	/* A closed connection's memory is freed as core lets it go: handed
	 * back over the next seconds, as after a rapid reset. */
	trim_after_flood(g);
	struct wire_list t = *prev;
	*prev = *now;
	*now = t;
}

/* ---- streams held without a request -------------------------------------- */

/* Looks kept per connection: the latest few, one at each scan (every
 * FLOOD_WIRE_SCAN_MS under memory pressure), for the short rule; and,
 * for the long one, looks at least STALL_COARSE_MS apart reaching back
 * past FLOOD_STALL_MS. */
#define STALL_FINE	4
#define STALL_COARSE_MS (FLOOD_STALL_SCAN_MS - FLOOD_WIRE_SCAN_MS)
#define STALL_COARSE	(FLOOD_STALL_MS / STALL_COARSE_MS + 2)

/* The streams a connection had started at one look, and when. */
struct mark {
	int64_t at_ms;
	uint64_t started;
};

struct stall {
	int64_t id; /* channelz's socket id */
	struct flood_peer peer;
	/* the oldest first */
	struct mark fine[STALL_FINE], coarse[STALL_COARSE];
	unsigned n_fine, n_coarse;
	bool is_shut; /* by this rule: core may list it a while longer */
};

struct stall_list {
	struct stall *s;
	size_t n, cap;
};

static int stall_cmp(const void *a, const void *b)
{
	const struct stall *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

/* Calls of peer the workers hold (taken, not yet released); *more its
 * streaming calls' requests past their first; *is_closing when the guard
 * shut its connection lately (core may list it a while). */
static uint32_t held_by_workers(struct flood_guard *g,
				const struct flood_peer *p, int64_t now,
				uint64_t *more, bool *is_closing)
{
	struct group *gr = group_of(g, p);
	uint32_t open = 0;

	*more = 0;
	pthread_mutex_lock(&gr->mu);
	struct entry *e = find(gr, p);
	if (e) {
		open = e->open;
		*more = e->more_requests;
	}
	*is_closing = e && e->closed_until_ms > now;
	pthread_mutex_unlock(&gr->mu);
	return open;
}

/* p's connection in the wire look (sorted by peer), or NULL. */
static const struct wire *wire_of(const struct wire_list *wires,
				  const struct flood_peer *p)
{
	struct wire key = {.peer = *p};

	return wires->n ? bsearch(&key, wires->w, wires->n, sizeof(key),
				  wire_cmp)
			: NULL;
}

static void stall_close(struct flood_guard *g, const struct wire *w,
			uint64_t held, int64_t age_ms)
{
	watcher_close(g, w, now_ms(), obs_stall_connection_closed,
		      "it held %llu streams for over %lld ms without sending "
		      "their requests",
		      (unsigned long long)held, (long long)age_ms);
}

/* The newest of n marks (the oldest first) at least age_ms old, or NULL. */
static const struct mark *mark_before(const struct mark *marks, unsigned n,
				      int64_t now, int64_t age_ms)
{
	for (unsigned i = n; i-- > 0;)
		if (now - marks[i].at_ms >= age_ms)
			return &marks[i];
	return NULL;
}

/* Appends m to marks (n of cap), the oldest dropped when full. */
static void mark_push(struct mark *marks, unsigned *n, unsigned cap,
		      struct mark m)
{
	if (*n == cap) {
		memmove(marks, marks + 1, (cap - 1) * sizeof(*marks));
		(*n)--;
	}
	marks[(*n)++] = m;
}

/* st gets its record of the last look, if any, and this look's mark m. */
static void stall_carry(struct stall *st, const struct stall_list *prev,
			struct mark m)
{
	const struct stall *old = prev->n ? bsearch(st, prev->s, prev->n,
						    sizeof(*prev->s), stall_cmp)
					  : NULL;

	if (old) {
		memcpy(st->fine, old->fine, sizeof(st->fine));
		memcpy(st->coarse, old->coarse, sizeof(st->coarse));
		st->n_fine = old->n_fine;
		st->n_coarse = old->n_coarse;
		st->is_shut = old->is_shut;
	}
	mark_push(st->fine, &st->n_fine, STALL_FINE, m);
	/* Scans come FLOOD_STALL_SCAN_MS apart, give or take a tick of the
	 * watcher; under pressure at every tick. */
	if (!st->n_coarse ||
	    m.at_ms - st->coarse[st->n_coarse - 1].at_ms >= STALL_COARSE_MS)
		mark_push(st->coarse, &st->n_coarse, STALL_COARSE, m);
}

uint64_t flood_stall_held(uint64_t started_then,
			  const struct flood_stall_look *now, uint64_t taken,
			  uint64_t more_requests, bool without_request_only)
{
	uint64_t gone = now->ended + taken;
	uint64_t held = started_then > gone ? started_then - gone : 0;

	if (without_request_only) {
		/* Streams that sent a request: at most one each. */
		uint64_t firsts = now->received > more_requests
					  ? now->received - more_requests
					  : 0;
		uint64_t no_request =
			started_then > firsts ? started_then - firsts : 0;
		if (no_request < held)
			held = no_request;
	}
	return held;
}

/*
 * One look at channelz: each connection's record (prev, sorted by id)
 * gets this look. The long rule: streams started FLOOD_STALL_MS ago that
 * have neither ended nor been taken by a worker. Under memory pressure
 * the short rule as well: those started FLOOD_STALL_PRESSED_MS ago, of
 * which only the streams whose request has not arrived count
 * (flood_guard.h). More than FLOOD_STALL_STREAMS close the connection,
 * through its descriptor in wires (the wire scan's latest look). prev
 * becomes this look.
 */
static void stall_scan(struct flood_guard *g, const struct wire_list *wires,
		       struct stall_list *prev, bool is_pressed)
{
	struct cz_conn *conns;
	size_t n;
	struct stall_list now = {0};
	int64_t t = now_ms();

	if (!cz_server_connections(&conns, &n))
		return;
	now.s = calloc(n ? n : 1, sizeof(*now.s));
	if (!now.s) {
		free(conns);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct stall *st = &now.s[now.n];
		const struct flood_stall_look l = {
			.started = conns[i].started,
			.ended = conns[i].ended,
			.received = conns[i].received,
		};

		if (!flood_peer_parse(conns[i].peer, &st->peer) ||
		    !st->peer.is_known)
			continue;
		st->id = conns[i].id;
		stall_carry(st, prev,
			    (struct mark){.at_ms = t, .started = l.started});
		now.n++;
		const struct mark *slow = mark_before(st->coarse, st->n_coarse,
						      t, FLOOD_STALL_MS);
		const struct mark *fast =
			is_pressed ? mark_before(st->fine, st->n_fine, t,
						 FLOOD_STALL_PRESSED_MS)
				   : NULL;
		if ((!slow && !fast) || st->is_shut)
			continue;
		bool is_closing;
		uint64_t more;
		uint64_t taken =
			held_by_workers(g, &st->peer, t, &more, &is_closing);
		uint64_t held_slow = slow ? flood_stall_held(slow->started, &l,
							     taken, more, false)
					  : 0;
		uint64_t held_fast = fast ? flood_stall_held(fast->started, &l,
							     taken, more, true)
					  : 0;
		bool is_slow = held_slow > FLOOD_STALL_STREAMS;
		const struct wire *w;
		if (!is_closing &&
		    (is_slow || held_fast > FLOOD_STALL_STREAMS) &&
		    (w = wire_of(wires, &st->peer)) != NULL) {
			stall_close(g, w, is_slow ? held_slow : held_fast,
				    is_slow ? FLOOD_STALL_MS
					    : FLOOD_STALL_PRESSED_MS);
			st->is_shut = true;
		}
	}
	free(conns);
	if (now.n > 1)
		qsort(now.s, now.n, sizeof(*now.s), stall_cmp);
	free(prev->s);
	*prev = now;
}

static void *watch_main(void *arg)
{
	struct flood_guard *g = arg;
	struct wire_list prev = {0}, now = {0};
	struct stall_list stalls = {0};
	struct timespec at;
	int64_t last = now_ms(), last_stall = last;

	clock_gettime(CLOCK_MONOTONIC, &at);
	pthread_mutex_lock(&g->trim_mu);
	while (!g->is_stopping) {
		at.tv_nsec += FLOOD_WIRE_SCAN_MS * 1000000L;
		if (at.tv_nsec >= 1000000000L) {
			at.tv_sec++;
			at.tv_nsec -= 1000000000L;
		}
		while (!g->is_stopping &&
		       pthread_cond_timedwait(&g->watch_cv, &g->trim_mu,
					      &at) != ETIMEDOUT)
			;
		if (g->is_stopping)
			break;
		pthread_mutex_unlock(&g->trim_mu);
		int64_t t = now_ms();
		/* Under memory pressure the rules below act sooner. */
		long rss = rss_kib();
		bool is_pressed = rss > FLOOD_WIRE_HIGH_RSS_KIB;
		wire_scan(g, &prev, &now, t - last, is_pressed);
		last = t;
		if (is_pressed || t - last_stall >= FLOOD_STALL_SCAN_MS) {
			stall_scan(g, &prev, &stalls, is_pressed);
			last_stall = t;
		}
		if (is_pressed)
			trim_idle_heap(g, rss, t);
		clock_gettime(CLOCK_MONOTONIC, &at);
		pthread_mutex_lock(&g->trim_mu);
	}
	pthread_mutex_unlock(&g->trim_mu);
	free(prev.w);
	free(now.w);
	free(stalls.s);
	return NULL;
}
