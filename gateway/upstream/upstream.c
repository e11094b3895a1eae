/*
 * The gateway's gRPC client, one part per event loop.
 *
 * Why per loop: the gRPC C-core client completed each call on its own
 * thread and handed it back to the HTTP loop (a wake-up and ~0.9 context
 * switches per request, over half the gateway's CPU). Here the loop that
 * read the HTTP request writes its HTTP/2 stream and reads the reply: no
 * lock, no hand-off. Each loop keeps one connection to every server of the
 * target and spreads its calls over the ready ones, round-robin by
 * turn of the loop (pick()).
 *
 * What the C-core channel gave and where it lives now:
 *  - round-robin over every address, re-resolved names: backends[], rr,
 *    resolver.c;
 *  - reconnect with exponential backoff and jitter: backend_failed();
 *  - wait-for-ready and per-call deadlines: the waiting list and the two
 *    deadline lists (all calls of one kind share one timeout, so each list
 *    is in deadline order and only its head is ever checked);
 *  - GOAWAY and REFUSED_STREAM: the call goes back to the waiting list and
 *    starts again on another connection (h2conn.c reports it);
 *  - SETTINGS_MAX_CONCURRENT_STREAMS: a call waits while every connection
 *    is full;
 *  - keepalive PINGs, for a server that hangs with its connection open:
 *    h2conn_check_alive, from timers();
 *  - TLS and its reload: the shared SSL_CTX, swapped under a lock that
 *    only opening a connection takes.
 */
#include "upstream.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "common/log.h"
#include "common/status.h"
#include "gateway/observe.h"
#include "gateway/upstream/grpc_wire.h"
#include "gateway/upstream/h2conn.h"
#include "gateway/upstream/h2tls.h"
#include "gateway/upstream/resolver.h"
#include "gateway/upstream/upcall.h"

/* Reconnect backoff: first wait, growth, cap (jitter +-20 %). */
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS	 1000
/* A connection that was ready this long before it closed served: the next
 * one is opened at once (a shorter life counts as a failure). */
#define STABLE_MS 1000
/* A call refused unprocessed this often (GOAWAY races) gives up. */
#define MAX_REFUSALS 3
#define MAX_EVENTS   64

struct gw_upstream {
	char *target;
	int timeout_ms;
	bool is_wait_for_ready;
	struct resolver *resolver;
	bool is_tls;
	char *tls_files[4]; /* ca, cert, key, server name (copies) */
	pthread_mutex_t tls_lock;
	SSL_CTX *tls_ctx; /* under tls_lock; connections hold their own */
	atomic_uint tls_gen;
};

/* One server address as one loop sees it. */
struct backend {
	struct resolver_addr addr;
	struct h2conn *conn; /* connecting or ready; NULL: retry at retry_ms */
	uint64_t retry_ms;
	unsigned backoff_ms;
};

struct gw_upstream_loop {
	struct gw_upstream *up;
	int ep; /* the connections' sockets */
	struct backend *backends[RESOLVER_MAX_ADDRS];
	size_t n_backends;
	unsigned rr;
	size_t turn_k; /* backend this turn's calls go to; SIZE_MAX: none yet */
	unsigned addrs_gen, tls_gen;
	struct h2conn *conns; /* all of them, draining ones included */
	/* Deadline order: [0] calls, [1] readiness probes. */
	struct upcall *dl_head[2], *dl_tail[2];
	struct upcall *wait_head, *wait_tail; /* for a connection or room */
	struct upcall *ended_head, *ended_tail; /* done() still to call */
	bool is_dirty; /* connections changed: reconcile before waiting */
	uint64_t rand;
	const char *state;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- lists -------------------------------------------------------------- */

static void dl_add(struct gw_upstream_loop *ul, struct upcall *c)
{
	int k = c->is_probe;

	c->next = NULL;
	c->prev = ul->dl_tail[k];
	if (ul->dl_tail[k])
		ul->dl_tail[k]->next = c;
	else
		ul->dl_head[k] = c;
	ul->dl_tail[k] = c;
}

static void dl_remove(struct gw_upstream_loop *ul, struct upcall *c)
{
	int k = c->is_probe;

	if (c->prev)
		c->prev->next = c->next;
	else
		ul->dl_head[k] = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		ul->dl_tail[k] = c->prev;
	c->prev = c->next = NULL;
}

static void wait_add(struct gw_upstream_loop *ul, struct upcall *c,
		     bool is_first)
{
	c->conn = NULL;
	if (is_first) {
		c->q_prev = NULL;
		c->q_next = ul->wait_head;
		if (ul->wait_head)
			ul->wait_head->q_prev = c;
		else
			ul->wait_tail = c;
		ul->wait_head = c;
		return;
	}
	c->q_next = NULL;
	c->q_prev = ul->wait_tail;
	if (ul->wait_tail)
		ul->wait_tail->q_next = c;
	else
		ul->wait_head = c;
	ul->wait_tail = c;
}

static void wait_remove(struct gw_upstream_loop *ul, struct upcall *c)
{
	if (c->q_prev)
		c->q_prev->q_next = c->q_next;
	else
		ul->wait_head = c->q_next;
	if (c->q_next)
		c->q_next->q_prev = c->q_prev;
	else
		ul->wait_tail = c->q_prev;
	c->q_prev = c->q_next = NULL;
}

/* ---- calls -------------------------------------------------------------- */

static void outcome_fail(struct gw_call_outcome *out, int code)
{
	memset(out, 0, sizeof(*out));
	out->grpc_code = code;
}

static void call_free(struct upcall *c)
{
	free(c->send);
	free(c->authorization);
	free(c->request_id);
	free(c->body);
	free(c);
}

/* Fills the caller's outcome from what the stream brought. */
static void fill_outcome(struct upcall *c, int code, bool is_reply)
{
	struct gw_call_outcome *out = c->out;

	outcome_fail(out, code);
	if (is_reply) {
		memcpy(out->message, c->message, sizeof(out->message));
		memcpy(out->reason, c->reason, sizeof(out->reason));
		if (code == DAS_GRPC_OK &&
		    gw_wire_decode(c->rpc, c->body, c->body_len, out) != 0) {
			gw_call_outcome_release(out);
			outcome_fail(out, DAS_GRPC_INTERNAL);
		}
	}
	gw_obs_upstream_call(c->ul->up->target, c->rpc, out->grpc_code);
}

void upcall_end(struct upcall *c, int code, bool is_reply)
{
	struct gw_upstream_loop *ul = c->ul;

	fill_outcome(c, code, is_reply);
	dl_remove(ul, c);
	c->conn = NULL;
	c->next = NULL;
	if (ul->ended_tail)
		ul->ended_tail->next = c;
	else
		ul->ended_head = c;
	ul->ended_tail = c;
}

void upcall_refused(struct upcall *c)
{
	if (++c->n_refused > MAX_REFUSALS) {
		upcall_end(c, DAS_GRPC_UNAVAILABLE, false);
		return;
	}
	c->stream_id = 0;
	c->http_status = 0;
	c->grpc_status = -1;
	c->is_grpc_type = c->has_headers = c->is_broken = false;
	c->header_bytes = c->body_len = 0;
	c->message[0] = c->reason[0] = '\0';
	wait_add(c->ul, c, true);
	c->ul->is_dirty = true;
}

void upstream_conn_changed(struct gw_upstream_loop *ul, struct h2conn *conn)
{
	(void)conn;
	ul->is_dirty = true;
}

/* Calls done() of every ended call, in order; done() may start more. */
static void deliver(struct gw_upstream_loop *ul)
{
	while (ul->ended_head) {
		struct upcall *c = ul->ended_head;
		gw_upstream_done_fn *done = c->done;
		void *arg = c->arg;

		ul->ended_head = c->next;
		if (!ul->ended_head)
			ul->ended_tail = NULL;
		call_free(c);
		done(arg);
	}
}

/* ---- connections -------------------------------------------------------- */

static unsigned jitter(struct gw_upstream_loop *ul, unsigned ms)
{
	/* xorshift64: spread reconnects of many loops and gateways. */
	ul->rand ^= ul->rand << 13;
	ul->rand ^= ul->rand >> 7;
	ul->rand ^= ul->rand << 17;
	return ms * 4 / 5 + (unsigned)(ul->rand % (ms * 2 / 5 + 1));
}

static bool is_alive(const struct h2conn *c)
{
	return c && (c->state == H2CONN_CONNECTING ||
		     c->state == H2CONN_READY);
}

/* A server is connected or being connected to. */
static bool any_alive(const struct gw_upstream_loop *ul)
{
	for (size_t i = 0; i < ul->n_backends; i++)
		if (is_alive(ul->backends[i]->conn))
			return true;
	return false;
}

static bool any_ready(const struct gw_upstream_loop *ul)
{
	for (size_t i = 0; i < ul->n_backends; i++)
		if (ul->backends[i]->conn &&
		    ul->backends[i]->conn->state == H2CONN_READY)
			return true;
	return false;
}

/*
 * The connection for a call: the one this turn of the loop already chose
 * while it has room, else the next ready one with room, round-robin over
 * the servers. Round-robin goes by turn, not by call: the calls a turn
 * started leave in one write on one connection and reach one server in
 * one read, instead of a write per server each turn and bursts cut in n
 * for every server (two replicas behind one gateway, wrk -c32: each
 * server's context switches per request 1.0-1.1 -> 0.7-0.9 and its read
 * batches 5.3 -> 7 callers). Calls that arrive one a turn still go to
 * every server in turn.
 */
static struct h2conn *pick(struct gw_upstream_loop *ul)
{
	size_t n = ul->n_backends;

	if (ul->turn_k < n && ul->backends[ul->turn_k]->conn &&
	    h2conn_has_room(ul->backends[ul->turn_k]->conn))
		return ul->backends[ul->turn_k]->conn;
	for (size_t i = 0; i < n; i++) {
		size_t k = (ul->rr + i) % n;
		struct h2conn *c = ul->backends[k]->conn;
		if (c && h2conn_has_room(c)) {
			ul->rr = (unsigned)(k + 1);
			ul->turn_k = k;
			return c;
		}
	}
	return NULL;
}

static void backend_failed(struct gw_upstream_loop *ul, struct backend *b,
			   uint64_t now)
{
	b->conn = NULL;
	b->retry_ms = now + jitter(ul, b->backoff_ms);
	b->backoff_ms = b->backoff_ms * 8 / 5;
	if (b->backoff_ms > BACKOFF_MAX_MS)
		b->backoff_ms = BACKOFF_MAX_MS;
	resolver_kick(ul->up->resolver);
}

static void backend_connect(struct gw_upstream_loop *ul, struct backend *b,
			    uint64_t now)
{
	struct gw_upstream *up = ul->up;
	SSL_CTX *ctx = NULL;
	char err[128];

	if (up->is_tls) {
		pthread_mutex_lock(&up->tls_lock);
		ctx = up->tls_ctx;
		SSL_CTX_up_ref(ctx);
		pthread_mutex_unlock(&up->tls_lock);
	}
	b->conn = h2conn_open(ul, ul->ep, &b->addr, ctx, up->tls_files[3], now,
			      err, sizeof(err));
	SSL_CTX_free(ctx);
	if (!b->conn) {
		das_log(DAS_LOG_WARN, "upstream %s: %s", b->addr.authority,
			err);
		backend_failed(ul, b, now);
		return;
	}
	b->conn->owner = b;
	b->conn->next = ul->conns;
	ul->conns = b->conn;
	if (b->conn->state == H2CONN_CLOSED) /* refused at once */
		ul->is_dirty = true;
}

/* The connection of b stops taking calls; a new one is opened now. */
static void backend_replace(struct backend *b)
{
	if (b->conn) {
		b->conn->owner = NULL;
		h2conn_drain(b->conn);
	}
	b->conn = NULL;
	b->retry_ms = 0;
}

static const char *state_of(const struct gw_upstream_loop *ul)
{
	if (any_ready(ul))
		return "READY";
	if (any_alive(ul))
		return "CONNECTING";
	return "TRANSIENT_FAILURE";
}

/* Starts waiting calls on connections with room; without any server
 * connected or connecting, the calls that may not wait fail. */
static void dispatch(struct gw_upstream_loop *ul, uint64_t now)
{
	struct upcall *c, *next;
	struct h2conn *conn;

	while (ul->wait_head && (conn = pick(ul))) {
		c = ul->wait_head;
		wait_remove(ul, c);
		if (h2conn_submit(conn, c, now) != 0)
			wait_add(ul, c, true);
	}
	if (!ul->wait_head || any_alive(ul))
		return;
	for (c = ul->wait_head; c; c = next) {
		next = c->q_next;
		if (c->is_wait_for_ready)
			continue;
		wait_remove(ul, c);
		upcall_end(c, DAS_GRPC_UNAVAILABLE, false);
	}
}

/* Brings the connections in line with their states, then dispatches. */
static void reconcile(struct gw_upstream_loop *ul, uint64_t now)
{
	struct h2conn **pp = &ul->conns, *c;
	const char *state;

	ul->is_dirty = false;
	while ((c = *pp)) {
		struct backend *b = c->owner;
		if (c->state == H2CONN_CLOSED) {
			*pp = c->next;
			if (b && b->conn == c) {
				if (c->ready_ms &&
				    now - c->ready_ms >= STABLE_MS) {
					/* It served a while: reconnect at
					 * once, from the first backoff. */
					b->conn = NULL;
					b->retry_ms = now;
					b->backoff_ms = BACKOFF_FIRST_MS;
				} else {
					/* Failed, or a server that closes
					 * soon after SETTINGS: back off. */
					backend_failed(ul, b, now);
				}
			}
			h2conn_free(c);
			continue;
		}
		if (c->state == H2CONN_DRAINING && b) {
			/* GOAWAY: a fresh connection takes the new calls
			 * (at once, unless the server keeps sending them). */
			c->owner = NULL;
			if (c->ready_ms && now - c->ready_ms >= STABLE_MS) {
				b->conn = NULL;
				b->retry_ms = now;
			} else {
				backend_failed(ul, b, now);
			}
		}
		if (c->state == H2CONN_READY && !c->ready_ms)
			c->ready_ms = now;
		pp = &c->next;
	}
	for (size_t i = 0; i < ul->n_backends; i++) {
		struct backend *b = ul->backends[i];
		if (!b->conn && now >= b->retry_ms)
			backend_connect(ul, b, now);
	}
	state = state_of(ul);
	if (state != ul->state) {
		ul->state = state;
		gw_obs_channel_state(ul->up->target, state);
	}
	dispatch(ul, now);
}

static bool same_addr(const struct resolver_addr *a,
		      const struct resolver_addr *b)
{
	return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* The resolver has a new address set: keep the servers still in it. */
static void take_addresses(struct gw_upstream_loop *ul)
{
	struct resolver_addrs *set = malloc(sizeof(*set));
	struct backend *keep[RESOLVER_MAX_ADDRS];
	size_t n = 0;

	if (!set)
		return;
	ul->addrs_gen = resolver_get(ul->up->resolver, set);
	for (size_t i = 0; i < set->n; i++) {
		struct backend *b = NULL;
		for (size_t j = 0; j < ul->n_backends; j++)
			if (ul->backends[j] &&
			    same_addr(&ul->backends[j]->addr, &set->a[i])) {
				b = ul->backends[j];
				ul->backends[j] = NULL;
				break;
			}
		if (!b) {
			b = calloc(1, sizeof(*b));
			if (!b)
				continue;
			b->addr = set->a[i];
			b->backoff_ms = BACKOFF_FIRST_MS;
		}
		keep[n++] = b;
	}
	for (size_t j = 0; j < ul->n_backends; j++)
		if (ul->backends[j]) {
			backend_replace(ul->backends[j]);
			free(ul->backends[j]);
		}
	memcpy(ul->backends, keep, n * sizeof(keep[0]));
	ul->n_backends = n;
	ul->rr = 0;
	ul->turn_k = SIZE_MAX;
	ul->is_dirty = true;
	free(set);
}

/* ---- the loop's side -------------------------------------------------- */

static void expire(struct gw_upstream_loop *ul, struct upcall *c)
{
	int code = DAS_GRPC_DEADLINE_EXCEEDED;

	if (c->conn) {
		h2conn_cancel(c->conn, c);
	} else {
		wait_remove(ul, c);
		/* Out of time while no server was reachable: say so. */
		if (!any_ready(ul))
			code = DAS_GRPC_UNAVAILABLE;
	}
	upcall_end(c, code, false);
}

static void timers(struct gw_upstream_loop *ul, uint64_t now)
{
	for (int k = 0; k < 2; k++)
		while (ul->dl_head[k] && ul->dl_head[k]->deadline_ms <= now)
			expire(ul, ul->dl_head[k]);
	for (struct h2conn *c = ul->conns; c; c = c->next) {
		if (c->state == H2CONN_CONNECTING &&
		    now >= c->connect_deadline_ms)
			h2conn_fail(c);
		h2conn_check_alive(c, now);
	}
	for (size_t i = 0; i < ul->n_backends; i++)
		if (!ul->backends[i]->conn && now >= ul->backends[i]->retry_ms)
			ul->is_dirty = true;
}

int gw_upstream_loop_wait_ms(struct gw_upstream_loop *ul)
{
	uint64_t now = now_ms(), next = UINT64_MAX;

	if (ul->ended_head || ul->is_dirty ||
	    resolver_generation(ul->up->resolver) != ul->addrs_gen ||
	    atomic_load(&ul->up->tls_gen) != ul->tls_gen)
		return 0;
	for (int k = 0; k < 2; k++)
		if (ul->dl_head[k] && ul->dl_head[k]->deadline_ms < next)
			next = ul->dl_head[k]->deadline_ms;
	for (struct h2conn *c = ul->conns; c; c = c->next) {
		uint64_t due = h2conn_alive_due_ms(c);

		if (c->state == H2CONN_CONNECTING &&
		    c->connect_deadline_ms < next)
			next = c->connect_deadline_ms;
		if (due < next)
			next = due;
	}
	for (size_t i = 0; i < ul->n_backends; i++)
		if (!ul->backends[i]->conn && ul->backends[i]->retry_ms < next)
			next = ul->backends[i]->retry_ms;
	if (next == UINT64_MAX)
		return -1;
	return next <= now ? 0 : next - now > 60000 ? 60000
						    : (int)(next - now);
}

void gw_upstream_loop_run(struct gw_upstream_loop *ul, bool is_io)
{
	struct epoll_event evs[MAX_EVENTS];
	uint64_t now;
	int n;

	while (is_io) {
		n = epoll_wait(ul->ep, evs, MAX_EVENTS, 0);
		for (int i = 0; i < n; i++)
			h2conn_on_io(evs[i].data.ptr, evs[i].events);
		if (n < MAX_EVENTS)
			break;
	}
	now = now_ms();
	if (resolver_generation(ul->up->resolver) != ul->addrs_gen)
		take_addresses(ul);
	if (atomic_load(&ul->up->tls_gen) != ul->tls_gen) {
		ul->tls_gen = atomic_load(&ul->up->tls_gen);
		for (size_t i = 0; i < ul->n_backends; i++)
			backend_replace(ul->backends[i]);
		ul->is_dirty = true;
	}
	timers(ul, now);
	/* done() may start calls and close connections: go round until
	 * everything settled. */
	while (ul->is_dirty || ul->ended_head) {
		if (ul->is_dirty)
			reconcile(ul, now);
		deliver(ul);
	}
	for (struct h2conn *c = ul->conns; c; c = c->next)
		h2conn_flush(c);
	/* What was started so far is written: the next calls go to the
	 * next server. */
	ul->turn_k = SIZE_MAX;
}

int gw_upstream_start(struct gw_upstream_loop *ul,
		      const struct gw_call_request *req,
		      struct gw_call_outcome *out, gw_upstream_done_fn *done,
		      void *arg)
{
	struct gw_upstream *up = ul->up;
	struct upcall *c = calloc(1, sizeof(*c));
	uint64_t now = now_ms();
	int timeout_ms = up->timeout_ms;
	struct h2conn *conn;

	if (!c)
		goto fail;
	c->ul = ul;
	c->rpc = req->rpc;
	c->grpc_status = -1;
	c->out = out;
	c->done = done;
	c->arg = arg;
	/* A readiness probe must answer quickly: its own short deadline and
	 * no waiting for a connection. */
	c->is_probe = req->rpc == GW_ROUTE_READYZ;
	c->is_wait_for_ready = up->is_wait_for_ready && !c->is_probe;
	if (c->is_probe && timeout_ms > GW_READYZ_TIMEOUT_MS)
		timeout_ms = GW_READYZ_TIMEOUT_MS;
	c->deadline_ms = now + (uint64_t)timeout_ms;
	c->send = gw_wire_encode(req, &c->send_len);
	if (!c->send ||
	    (req->authorization &&
	     !(c->authorization = strdup(req->authorization))) ||
	    (req->request_id && !(c->request_id = strdup(req->request_id))))
		goto fail;
	dl_add(ul, c);
	conn = ul->wait_head ? NULL : pick(ul);
	if (conn && h2conn_submit(conn, c, now) == 0)
		return 0;
	if (c->is_wait_for_ready || any_alive(ul))
		wait_add(ul, c, false);
	else
		upcall_end(c, DAS_GRPC_UNAVAILABLE, false);
	return 0;
fail:
	if (c)
		call_free(c);
	outcome_fail(out, DAS_GRPC_INTERNAL);
	return -1;
}

/* ---- set up ------------------------------------------------------------- */

struct gw_upstream_loop *gw_upstream_loop_new(struct gw_upstream *up,
					      char *err, size_t err_size)
{
	struct gw_upstream_loop *ul = calloc(1, sizeof(*ul));

	if (!ul) {
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	ul->up = up;
	ul->turn_k = SIZE_MAX;
	ul->ep = epoll_create1(EPOLL_CLOEXEC);
	if (ul->ep < 0) {
		snprintf(err, err_size, "epoll: %s", strerror(errno));
		free(ul);
		return NULL;
	}
	if (getrandom(&ul->rand, sizeof(ul->rand), 0) !=
		    (ssize_t)sizeof(ul->rand) ||
	    !ul->rand)
		ul->rand = (uint64_t)now_ms() * 2654435761u + 1;
	ul->tls_gen = atomic_load(&up->tls_gen);
	take_addresses(ul);
	reconcile(ul, now_ms());
	return ul;
}

int gw_upstream_loop_fd(const struct gw_upstream_loop *ul)
{
	return ul->ep;
}

void gw_upstream_loop_free(struct gw_upstream_loop *ul)
{
	if (!ul)
		return;
	/* Calls still here belong to a loop that is gone: dropped, no done. */
	for (int k = 0; k < 2; k++)
		while (ul->dl_head[k]) {
			struct upcall *c = ul->dl_head[k];
			if (c->conn)
				h2conn_cancel(c->conn, c);
			else
				wait_remove(ul, c);
			dl_remove(ul, c);
			call_free(c);
		}
	while (ul->ended_head) {
		struct upcall *c = ul->ended_head;
		ul->ended_head = c->next;
		call_free(c);
	}
	while (ul->conns) {
		struct h2conn *c = ul->conns;
		ul->conns = c->next;
		h2conn_free(c);
	}
	for (size_t i = 0; i < ul->n_backends; i++)
		free(ul->backends[i]);
	close(ul->ep);
	free(ul);
}

static SSL_CTX *tls_open(const struct gw_upstream *up, char *err,
			 size_t err_size)
{
	return h2tls_ctx_new(up->tls_files[0], up->tls_files[1],
			     up->tls_files[2], err, err_size);
}

struct gw_upstream *gw_upstream_new(const char *target, int timeout_ms,
				    bool is_wait_for_ready,
				    const struct gw_upstream_tls *tls, char *err,
				    size_t err_size)
{
	struct gw_upstream *up = calloc(1, sizeof(*up));

	if (!up) {
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&up->tls_lock, NULL);
	up->timeout_ms = timeout_ms;
	up->is_wait_for_ready = is_wait_for_ready;
	up->target = strdup(target);
	bool is_oom = !up->target;
	if (tls) {
		const char *files[4] = {tls->ca_file, tls->cert_file,
					tls->key_file, tls->server_name};
		up->is_tls = true;
		for (int i = 0; i < 4; i++)
			if (files[i] && *files[i] &&
			    !(up->tls_files[i] = strdup(files[i])))
				is_oom = true;
	}
	if (is_oom) {
		snprintf(err, err_size, "out of memory");
		goto fail;
	}
	if (up->is_tls && !(up->tls_ctx = tls_open(up, err, err_size)))
		goto fail;
	up->resolver = resolver_new(target, err, err_size);
	if (!up->resolver)
		goto fail;
	return up;
fail:
	gw_upstream_free(up);
	return NULL;
}

int gw_upstream_reload(struct gw_upstream *up, char *err, size_t err_size)
{
	SSL_CTX *ctx, *old;

	if (!up->is_tls)
		return 1;
	ctx = tls_open(up, err, err_size);
	if (!ctx)
		return -1;
	pthread_mutex_lock(&up->tls_lock);
	old = up->tls_ctx;
	up->tls_ctx = ctx;
	pthread_mutex_unlock(&up->tls_lock);
	SSL_CTX_free(old);
	atomic_fetch_add(&up->tls_gen, 1);
	return 0;
}

void gw_upstream_free(struct gw_upstream *up)
{
	if (!up)
		return;
	resolver_free(up->resolver);
	SSL_CTX_free(up->tls_ctx);
	pthread_mutex_destroy(&up->tls_lock);
	free(up->target);
	for (int i = 0; i < 4; i++)
		free(up->tls_files[i]);
	free(up);
}
