/*
 * The event loops.
 *
 * Each loop thread owns its clients outright: only it reads, writes,
 * times out or frees them, so no lock guards a connection. It owns its
 * upstream connections too (gateway/upstream/): a call is started, its
 * HTTP/2 stream written and its reply read on the loop that read the
 * request, and the answer is written in the same turn of the loop. The
 * eventfd only wakes a loop to stop.
 *
 * Each loop has its own listening socket on the same address
 * (SO_REUSEPORT), so the kernel spreads connections evenly over the loops.
 *
 * Sockets are edge-triggered: a loop reads until EAGAIN whenever the
 * protocol engine wants input, and writes until EAGAIN whenever it has
 * output, so a readiness change is never missed.
 *
 * Slow clients: every connection is swept every SWEEP_MS for its deadlines
 * (idle, whole head, whole body, lingering close). At the connection limit
 * the accepting loop closes its oldest unfinished request (else its oldest
 * idle keep-alive connection) so that a fresh client is served; when it
 * has neither, and when a per-address limit is hit, the newcomer gets 503
 * with Retry-After and the connection is closed.
 */
#define _GNU_SOURCE /* accept4 */
#include "server.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/hostport.h"
#include "common/log.h"
#include "gateway/http/transport.h"

#define SWEEP_MS	  100
#define LINGER_MS	  1000
#define MAX_EVENTS	  128
#define ACCEPT_BURST	  64
#define ADDR_BUCKETS	  4096

struct loop;

struct client {
	struct client *prev, *next; /* the loop's list, oldest first */
	struct client *grave_next;  /* closed, freed after this batch */
	struct loop *loop;
	struct gw_io io;
	uint64_t activity_ms;	/* last byte moved */
	uint64_t request_ms;	/* the current request's first byte, or 0 */
	uint64_t body_ms;	/* its body phase began, or 0 */
	uint64_t linger_ms;	/* lingering close began, or 0 */
	bool is_in_call;
	bool is_handshake_done;
	bool is_closed; /* socket closed while a call was in flight */
	/* Plain TCP: the last read took all the kernel held (short or
	 * EAGAIN), so the next read waits for an input event: after an
	 * answer the client's next request has not come yet, and reading
	 * for it would only answer EAGAIN (one recv per request). */
	bool is_read_dry;
	bool has_addr;
	struct sockaddr_storage addr;
	struct gw_conn conn;
};

struct loop {
	struct gw_http *h;
	pthread_t thread;
	int ep, wake_fd;
	int listen_fd; /* this loop's own (SO_REUSEPORT) */
	struct gw_upstream_loop *up; /* this loop's upstream connections */
	int up_fd;		     /* their epoll descriptor */
	struct client *head, *tail;
	unsigned n_clients;
	unsigned n_in_call; /* calls in flight, their clients included */
	bool has_listener;
	uint64_t paused_until_ms; /* out of descriptors: accept later */
	struct client *graves; /* events of this batch may still name them */
	uint64_t next_sweep_ms;
};

struct addr_count {
	struct addr_count *next;
	struct sockaddr_storage addr;
	unsigned n;
};

struct gw_http {
	struct gw_http_config cfg;
	struct gw_upstream *up;
	struct gw_conn_config conn_cfg;
	atomic_ullong id_counter;
	unsigned port;
	atomic_uint n_conns;
	atomic_bool is_draining;
	atomic_bool is_stopping; /* drain time is over: close everything */
	unsigned n_loops;
	struct loop *loops;
	pthread_mutex_t addr_lock;
	struct addr_count *addr_buckets[ADDR_BUCKETS];
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- per-address counts ------------------------------------------------- */

static size_t addr_key(const struct sockaddr_storage *ss, const void **p)
{
	if (ss->ss_family == AF_INET6) {
		*p = &((const struct sockaddr_in6 *)ss)->sin6_addr;
		return 16;
	}
	*p = &((const struct sockaddr_in *)ss)->sin_addr;
	return 4;
}

static bool addr_equal(const struct sockaddr_storage *a,
		       const struct sockaddr_storage *b)
{
	const void *pa, *pb;
	size_t la = addr_key(a, &pa), lb = addr_key(b, &pb);

	return a->ss_family == b->ss_family && la == lb &&
	       memcmp(pa, pb, la) == 0;
}

static unsigned addr_hash(const struct sockaddr_storage *ss)
{
	const unsigned char *p;
	size_t n = addr_key(ss, (const void **)&p);
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h % ADDR_BUCKETS;
}

/* Counts one more connection of ss; false when over the limit. */
static bool addr_acquire(struct gw_http *h, const struct sockaddr_storage *ss)
{
	unsigned b = addr_hash(ss);
	struct addr_count *a;
	bool is_ok = true;

	pthread_mutex_lock(&h->addr_lock);
	for (a = h->addr_buckets[b]; a && !addr_equal(&a->addr, ss);
	     a = a->next)
		;
	if (!a) {
		a = calloc(1, sizeof(*a));
		if (a) {
			a->addr = *ss;
			a->next = h->addr_buckets[b];
			h->addr_buckets[b] = a;
		}
	}
	if (!a || a->n >= h->cfg.per_ip_connection_limit)
		is_ok = false;
	else
		a->n++;
	pthread_mutex_unlock(&h->addr_lock);
	return is_ok;
}

static void addr_release(struct gw_http *h, const struct sockaddr_storage *ss)
{
	unsigned b = addr_hash(ss);
	struct addr_count **pp, *a;

	pthread_mutex_lock(&h->addr_lock);
	for (pp = &h->addr_buckets[b]; (a = *pp); pp = &a->next) {
		if (!addr_equal(&a->addr, ss))
			continue;
		if (--a->n == 0) {
			*pp = a->next;
			free(a);
		}
		break;
	}
	pthread_mutex_unlock(&h->addr_lock);
}

/* ---- clients ------------------------------------------------------------ */

static void list_remove(struct loop *l, struct client *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		l->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		l->tail = c->prev;
	c->prev = c->next = NULL;
	l->n_clients--;
}

/* The struct goes once the current batch of events is handled. */
static void client_free(struct client *c)
{
	struct loop *l = c->loop;

	c->grave_next = l->graves;
	l->graves = c;
}

static void bury(struct loop *l)
{
	while (l->graves) {
		struct client *c = l->graves;
		l->graves = c->grave_next;
		gw_conn_release(&c->conn);
		free(c);
	}
}

/* Closes the socket now; the struct lives on while its call is out. */
static void client_close(struct client *c)
{
	struct loop *l = c->loop;
	struct gw_http *h = l->h;

	if (c->io.fd < 0)
		return;
	list_remove(l, c);
	epoll_ctl(l->ep, EPOLL_CTL_DEL, c->io.fd, NULL);
	c->io.t->close(&c->io);
	c->io.fd = -1;
	if (c->has_addr)
		addr_release(h, &c->addr);
	atomic_fetch_sub(&h->n_conns, 1);
	if (c->is_in_call)
		c->is_closed = true;
	else
		client_free(c);
}

/*
 * The last answer is written. When the client may still be sending (a
 * refused body), stop writing and read what comes for a while, so that
 * our answer is not destroyed by a reset before it is read.
 */
static void client_finish(struct client *c)
{
	if (c->conn.is_eof || (c->conn.is_draining && c->conn.in_len == 0)) {
		client_close(c);
		return;
	}
	c->io.t->shutdown(&c->io);
	c->linger_ms = now_ms();
}

static void linger_read(struct client *c)
{
	char buf[4096];

	for (;;) {
		ssize_t n = c->io.t->read(&c->io, buf, sizeof(buf));
		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		client_close(c);
		return;
	}
}

/* Reads until EAGAIN. Returns 1 when input arrived (or EOF), 0 on EAGAIN,
 * -1 when the client is to be dropped. */
static int client_read(struct client *c)
{
	int got = 0;
	bool is_tcp = c->io.t == &gw_transport_tcp;

	if (c->is_read_dry)
		return 0;
	for (;;) {
		size_t avail;
		char *p = gw_conn_in_space(&c->conn, &avail);
		ssize_t n;
		if (!p)
			return got ? 1 : -1;
		n = c->io.t->read(&c->io, p, avail);
		if (n > 0) {
			gw_conn_in_commit(&c->conn, (size_t)n);
			got = 1;
			if ((size_t)n < avail) {
				c->is_read_dry = is_tcp;
				return 1;
			}
			continue;
		}
		if (n == 0) {
			gw_conn_in_eof(&c->conn);
			return 1;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			c->is_read_dry = is_tcp;
			return got;
		}
		return -1;
	}
}

/* Writes until done or EAGAIN. Returns 1 when all is written, 0 on EAGAIN,
 * -1 on error. */
static int client_write(struct client *c)
{
	for (;;) {
		size_t len;
		const char *p = gw_conn_output(&c->conn, &len);
		ssize_t n;
		if (len == 0)
			return 1;
		n = c->io.t->write(&c->io, p, len);
		if (n > 0) {
			gw_conn_output_done(&c->conn, (size_t)n);
			c->activity_ms = now_ms();
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return -1;
	}
}

static void call_done(void *arg);

static void start_call(struct client *c)
{
	struct loop *l = c->loop;

	c->is_in_call = true;
	l->n_in_call++;
	if (gw_upstream_start(l->up, &c->conn.call, &c->conn.outcome, call_done,
			      c) != 0) {
		c->is_in_call = false;
		l->n_in_call--;
		gw_conn_call_done(&c->conn, false);
	}
}

/* Keeps the request clocks in step with the protocol engine. */
static void track_request(struct client *c, uint64_t now)
{
	if (!gw_conn_is_mid_request(&c->conn)) {
		c->request_ms = c->body_ms = 0;
		return;
	}
	if (!c->request_ms)
		c->request_ms = now;
	if (c->conn.phase == GW_PHASE_BODY && !c->body_ms)
		c->body_ms = now;
}

/* Runs the connection until it must wait for the network or a call. */
static void client_drive(struct client *c)
{
	uint64_t now = now_ms();

	if (c->io.fd < 0)
		return;
	if (c->linger_ms) {
		linger_read(c);
		return;
	}
	if (!c->is_handshake_done) {
		int rc = c->io.t->handshake ? c->io.t->handshake(&c->io) : 0;
		if (rc < 0) {
			client_close(c);
			return;
		}
		if (rc > 0)
			return;
		c->is_handshake_done = true;
		c->activity_ms = now;
	}
	for (;;) {
		enum gw_conn_step step = gw_conn_advance(&c->conn);
		int rc;

		track_request(c, now);
		switch (step) {
		case GW_CONN_READ:
			rc = client_read(c);
			if (rc < 0) {
				client_close(c);
				return;
			}
			if (rc == 0)
				return;
			c->activity_ms = now = now_ms();
			continue;
		case GW_CONN_WRITE:
			rc = client_write(c);
			if (rc < 0) {
				client_close(c);
				return;
			}
			if (rc == 0)
				return;
			continue;
		case GW_CONN_CALL:
			start_call(c);
			continue;
		case GW_CONN_WAIT:
			return;
		case GW_CONN_CLOSE:
			client_finish(c);
			return;
		}
	}
}

/* On the loop, from gw_upstream_loop_run: the call's outcome is in. */
static void call_done(void *arg)
{
	struct client *c = arg;
	struct loop *l = c->loop;

	c->is_in_call = false;
	l->n_in_call--;
	if (c->is_closed) {
		client_free(c);
		return;
	}
	gw_conn_call_done(&c->conn, true);
	client_drive(c);
}

/* ---- accepting ------------------------------------------------------------ */

/*
 * Makes room for one more connection: the oldest unfinished request of
 * this loop goes first, then a lingering or idle connection. Returns
 * false when every connection here is busy with a call or an answer.
 */
static bool evict_one(struct loop *l)
{
	struct client *victim = NULL, *idle = NULL;

	for (struct client *c = l->head; c; c = c->next) {
		size_t pending;
		if (c->is_in_call)
			continue;
		if (c->linger_ms) {
			idle = idle ? idle : c;
			continue;
		}
		if (gw_conn_is_mid_request(&c->conn)) {
			if (!victim || c->request_ms < victim->request_ms)
				victim = c;
			continue;
		}
		gw_conn_output(&c->conn, &pending);
		if (!pending && !idle)
			idle = c;
	}
	if (!victim)
		victim = idle;
	if (!victim)
		return false;
	client_close(victim);
	return true;
}

static void accept_one(struct loop *l, int fd,
		       const struct sockaddr_storage *ss)
{
	struct gw_http *h = l->h;
	struct client *c = calloc(1, sizeof(*c));
	struct epoll_event ev;
	bool is_refused = false;
	int one = 1;

	if (!c || gw_conn_init(&c->conn, &h->conn_cfg) != 0) {
		if (c)
			gw_conn_release(&c->conn);
		free(c);
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->loop = l;
	c->io.fd = fd;
	c->io.t = h->cfg.transport ? h->cfg.transport : &gw_transport_tcp;
	if (c->io.t->open && c->io.t->open(&c->io, h->cfg.transport_ctx) != 0) {
		gw_conn_release(&c->conn);
		free(c);
		close(fd);
		return;
	}
	c->addr = *ss;
	c->activity_ms = now_ms();
	if (atomic_fetch_add(&h->n_conns, 1) >= h->cfg.connection_limit &&
	    !evict_one(l))
		is_refused = true;
	if (!is_refused && h->cfg.per_ip_connection_limit) {
		if (addr_acquire(h, ss))
			c->has_addr = true;
		else
			is_refused = true;
	}
	c->prev = l->tail;
	if (l->tail)
		l->tail->next = c;
	else
		l->head = c;
	l->tail = c;
	l->n_clients++;
	ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
	ev.data.ptr = c;
	if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
		client_close(c);
		return;
	}
	if (is_refused)
		gw_conn_refuse(&c->conn);
	client_drive(c);
}

static void accept_burst(struct loop *l)
{
	for (int i = 0; i < ACCEPT_BURST; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(l->listen_fd, (struct sockaddr *)&ss, &sl,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				/* The listener stays readable: stop watching
				 * it for a moment instead of spinning. */
				das_log(DAS_LOG_WARN, "accept: %s",
					strerror(errno));
				epoll_ctl(l->ep, EPOLL_CTL_DEL, l->listen_fd,
					  NULL);
				l->has_listener = false;
				l->paused_until_ms = now_ms() + SWEEP_MS;
				evict_one(l);
			}
			return;
		}
		accept_one(l, fd, &ss);
	}
}

/* ---- deadlines -------------------------------------------------------------- */

static bool is_expired(const struct gw_http_config *cfg,
		       const struct client *c, uint64_t now)
{
	size_t pending;

	if (c->linger_ms)
		return now - c->linger_ms >= LINGER_MS;
	if (c->is_in_call)
		return false;
	gw_conn_output(&c->conn, &pending);
	if (now - c->activity_ms >= cfg->idle_timeout_ms)
		return true;
	if (pending)
		return false;
	if (c->body_ms)
		return now - c->body_ms >= cfg->body_timeout_ms;
	if (c->request_ms && gw_conn_is_reading_head(&c->conn))
		return now - c->request_ms >= cfg->header_timeout_ms;
	return false;
}

static void sweep(struct loop *l, uint64_t now)
{
	struct client *c = l->head, *next;

	for (; c; c = next) {
		next = c->next;
		if (is_expired(&l->h->cfg, c, now))
			client_close(c);
	}
	l->next_sweep_ms = now + SWEEP_MS;
	if (l->paused_until_ms && now >= l->paused_until_ms &&
	    !atomic_load(&l->h->is_draining)) {
		struct epoll_event ev = {.events = EPOLLIN,
					 .data.ptr = &l->listen_fd};
		l->paused_until_ms = 0;
		if (epoll_ctl(l->ep, EPOLL_CTL_ADD, l->listen_fd, &ev) == 0)
			l->has_listener = true;
	}
}

static void start_drain(struct loop *l)
{
	struct client *c = l->head, *next;

	/* Closed, not only unwatched: newcomers are refused at once
	 * instead of waiting in a queue nobody reads. */
	if (l->has_listener)
		epoll_ctl(l->ep, EPOLL_CTL_DEL, l->listen_fd, NULL);
	l->has_listener = false;
	l->paused_until_ms = 0;
	if (l->listen_fd >= 0)
		close(l->listen_fd);
	l->listen_fd = -1;
	for (; c; c = next) {
		next = c->next;
		if (c->linger_ms) {
			client_close(c);
			continue;
		}
		gw_conn_drain(&c->conn);
		if (!c->is_in_call)
			client_drive(c);
	}
}

static void *loop_main(void *arg)
{
	struct loop *l = arg;
	struct gw_http *h = l->h;
	struct epoll_event evs[MAX_EVENTS];
	bool is_draining = false;
	uint64_t wakes;

	/* The loop's access lines are written by the log's flusher thread
	 * (common/log.h): a write(2) to a file can wait for the disk's
	 * writeback for milliseconds, and the loop then would not answer. */
	das_log_thread_buffer_background();
	for (;;) {
		uint64_t now = now_ms();
		int n, wait_ms, up_ms;

		if (!is_draining && atomic_load(&h->is_draining)) {
			is_draining = true;
			start_drain(l);
		}
		if (is_draining && atomic_load(&h->is_stopping)) {
			while (l->head)
				client_close(l->head);
		}
		if (is_draining && !l->head && l->n_in_call == 0)
			break;
		if (now >= l->next_sweep_ms)
			sweep(l, now);
		wait_ms = (int)(l->next_sweep_ms - now);
		if (wait_ms < 0 || wait_ms > SWEEP_MS)
			wait_ms = SWEEP_MS;
		up_ms = gw_upstream_loop_wait_ms(l->up);
		if (up_ms >= 0 && up_ms < wait_ms)
			wait_ms = up_ms;
		n = epoll_wait(l->ep, evs, MAX_EVENTS, wait_ms);
		/* Upstream news first (replies, a server gone), so that new
		 * calls below do not go to a connection already closed. */
		for (int i = 0; i < n; i++)
			if (evs[i].data.ptr == &l->up_fd)
				gw_upstream_loop_run(l->up, true);
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			if (p == &l->listen_fd) {
				if (!is_draining)
					accept_burst(l);
			} else if (p == &l->wake_fd) {
				(void)!read(l->wake_fd, &wakes, sizeof(wakes));
			} else if (p != &l->up_fd) {
				struct client *c = p;
				if (evs[i].events & (EPOLLIN | EPOLLRDHUP |
						     EPOLLHUP | EPOLLERR))
					c->is_read_dry = false;
				client_drive(c);
			}
		}
		/* The calls the clients started go out, one write per
		 * connection; timers and reconnects run. */
		gw_upstream_loop_run(l->up, false);
		bury(l);
	}
	bury(l);
	das_log_thread_flush();
	return NULL;
}

/* ---- start and stop --------------------------------------------------------- */

static in_port_t *port_of(struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET6
		       ? &((struct sockaddr_in6 *)ss)->sin6_port
		       : &((struct sockaddr_in *)ss)->sin_port;
}

/*
 * One listening socket per loop on the same address (SO_REUSEPORT): the
 * kernel spreads new connections evenly over the loops. With port 0 the
 * first socket picks the port and the others join it.
 */
static int open_listeners(struct gw_http *h, char *err, size_t err_size)
{
	struct addrinfo *res = NULL;
	struct sockaddr_storage ss;
	socklen_t sl;
	int one = 1;

	if (das_hostport_resolve(h->cfg.listen, "--listen ", &res, err,
				 err_size) != 0)
		return -1;
	memcpy(&ss, res->ai_addr, res->ai_addrlen);
	sl = res->ai_addrlen;
	freeaddrinfo(res);
	for (unsigned i = 0; i < h->n_loops; i++) {
		int fd = socket(ss.ss_family,
				SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		socklen_t got = sizeof(ss);

		if (fd >= 0)
			h->loops[i].listen_fd = fd;
		if (fd < 0 ||
		    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
			       sizeof(one)) != 0 ||
		    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one,
			       sizeof(one)) != 0 ||
		    bind(fd, (struct sockaddr *)&ss, sl) != 0 ||
		    listen(fd, 4096) != 0 ||
		    (i == 0 &&
		     getsockname(fd, (struct sockaddr *)&ss, &got) != 0)) {
			snprintf(err, err_size, "cannot listen on %s: %s",
				 h->cfg.listen, strerror(errno));
			return -1;
		}
	}
	h->port = ntohs(*port_of(&ss));
	return 0;
}

static int loop_init(struct gw_http *h, struct loop *l, char *err,
		     size_t err_size)
{
	struct epoll_event ev;

	l->h = h;
	l->ep = epoll_create1(EPOLL_CLOEXEC);
	l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l->ep < 0 || l->wake_fd < 0)
		goto fail;
	l->up = gw_upstream_loop_new(h->up, err, err_size);
	if (!l->up)
		return -1;
	l->up_fd = gw_upstream_loop_fd(l->up);
	ev.events = EPOLLIN;
	ev.data.ptr = &l->up_fd;
	if (epoll_ctl(l->ep, EPOLL_CTL_ADD, l->up_fd, &ev) != 0)
		goto fail;
	ev.events = EPOLLIN;
	ev.data.ptr = &l->wake_fd;
	if (epoll_ctl(l->ep, EPOLL_CTL_ADD, l->wake_fd, &ev) != 0)
		goto fail;
	ev.events = EPOLLIN;
	ev.data.ptr = &l->listen_fd;
	if (epoll_ctl(l->ep, EPOLL_CTL_ADD, l->listen_fd, &ev) != 0)
		goto fail;
	l->has_listener = true;
	return 0;
fail:
	snprintf(err, err_size, "cannot start an event loop: %s",
		 strerror(errno));
	return -1;
}

static void loop_release(struct loop *l)
{
	if (l->ep >= 0)
		close(l->ep);
	if (l->wake_fd >= 0)
		close(l->wake_fd);
	if (l->listen_fd >= 0)
		close(l->listen_fd);
	gw_upstream_loop_free(l->up);
}

static void free_server(struct gw_http *h)
{
	for (unsigned i = 0; i < h->n_loops; i++)
		loop_release(&h->loops[i]);
	for (unsigned b = 0; b < ADDR_BUCKETS; b++)
		while (h->addr_buckets[b]) {
			struct addr_count *a = h->addr_buckets[b];
			h->addr_buckets[b] = a->next;
			free(a);
		}
	pthread_mutex_destroy(&h->addr_lock);
	free(h->loops);
	free(h);
}

static void stop_loops(struct gw_http *h, unsigned n_started)
{
	uint64_t one = 1;

	atomic_store(&h->is_draining, true);
	atomic_store(&h->is_stopping, true);
	for (unsigned i = 0; i < n_started; i++) {
		(void)!write(h->loops[i].wake_fd, &one, sizeof(one));
		pthread_join(h->loops[i].thread, NULL);
	}
}

struct gw_http *gw_http_start(const struct gw_http_config *cfg,
			      struct gw_upstream *up, char *err,
			      size_t err_size)
{
	struct gw_http *h = calloc(1, sizeof(*h));
	unsigned n_started = 0;
	long cpus;

	if (!h) {
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	h->cfg = *cfg;
	h->up = up;
	pthread_mutex_init(&h->addr_lock, NULL);
	if (getrandom(&h->conn_cfg.id_prefix, sizeof(h->conn_cfg.id_prefix),
		      0) != (ssize_t)sizeof(h->conn_cfg.id_prefix))
		h->conn_cfg.id_prefix = (uint64_t)time(NULL) ^ (uint64_t)getpid();
	h->conn_cfg.public_base_url = cfg->public_base_url;
	h->conn_cfg.is_https = cfg->is_https;
	h->conn_cfg.id_counter = &h->id_counter;
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	h->n_loops = cfg->threads ? cfg->threads : cpus > 0 ? (unsigned)cpus : 1;
	h->loops = calloc(h->n_loops, sizeof(*h->loops));
	if (!h->loops) {
		h->n_loops = 0;
		snprintf(err, err_size, "out of memory");
		goto fail;
	}
	for (unsigned i = 0; i < h->n_loops; i++) {
		h->loops[i].ep = h->loops[i].wake_fd = h->loops[i].listen_fd =
			-1;
	}
	if (open_listeners(h, err, err_size) != 0)
		goto fail;
	for (unsigned i = 0; i < h->n_loops; i++) {
		if (loop_init(h, &h->loops[i], err, err_size) != 0)
			goto fail;
		if (pthread_create(&h->loops[i].thread, NULL, loop_main,
				   &h->loops[i]) != 0) {
			snprintf(err, err_size, "cannot start HTTP thread: %s",
				 strerror(errno));
			goto fail;
		}
		n_started++;
	}
	return h;
fail:
	stop_loops(h, n_started);
	free_server(h);
	return NULL;
}

unsigned gw_http_port(const struct gw_http *h)
{
	return h->port;
}

void gw_http_stop(struct gw_http *h, int drain_ms)
{
	struct timespec pause = {0, 10 * 1000 * 1000};
	uint64_t one = 1, until;

	if (!h)
		return;
	atomic_store(&h->is_draining, true);
	for (unsigned i = 0; i < h->n_loops; i++)
		(void)!write(h->loops[i].wake_fd, &one, sizeof(one));
	/* Requests already read get their answer within drain_ms; every
	 * upstream call is waited for (its deadline bounds it). */
	until = now_ms() + (uint64_t)(drain_ms > 0 ? drain_ms : 0);
	while (atomic_load(&h->n_conns) > 0 && now_ms() < until)
		nanosleep(&pause, NULL);
	stop_loops(h, h->n_loops);
	free_server(h);
}
