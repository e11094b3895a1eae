/*
 * The gateway's HTTP/2 upstream client against what a service may do.
 *
 * A hostile upstream: a small HTTP/2 server in this process (libnghttp2,
 * server side; a test peer, not part of the product) answers the gateway's
 * ListUserDevices calls the way it is told: well, with a domain error in
 * grpc-status-details-bin, with headers over the bound, a compressed or
 * oversized message, the wrong content-type, no trailers, an HTTP error,
 * no answer at all, a reset connection, a GOAWAY; it announces
 * SETTINGS_MAX_CONCURRENT_STREAMS 1 and records how many streams were
 * ever open at once; it also listens on a unix socket (--upstream unix:). Each answer maps to the contract's status and the
 * gateway stays up.
 *
 * The real server: dns:///localhost:PORT and ipv6:[::1]:PORT reach it; a call with
 * wait-for-ready waits for a server that starts after it; a server
 * drained by SIGTERM (GOAWAY) under load loses no request.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <nghttp2/nghttp2.h>

#include "harness.h"
#include "proto/rpc_methods.h"

#define CUST "0f8fad5b-d9cb-469f-a165-70867728950e"
#define LIST "/v1.0/customers/" CUST "/users/u0/devices/pbx"
#define TIMEOUT_MS 10000

/* ---- the hostile upstream ---------------------------------------------- */

enum mode {
	M_OK,		/* an empty ListUserDevicesResponse, grpc-status 0 */
	M_DETAILS,	/* trailers-only NOT_FOUND + ErrorInfo USER_NOT_FOUND */
	M_BIG_HEADERS,	/* 24 KB of response headers */
	M_COMPRESSED,	/* the message's compressed flag set */
	M_HUGE,		/* a 70,000-byte message */
	M_TWO_MESSAGES, /* two messages in a unary reply */
	M_HTML,		/* :status 200, text/html */
	M_NO_TRAILERS,	/* a message, then END_STREAM without grpc-status */
	M_HTTP_503,	/* :status 503 */
	M_BAD_STATUS,	/* grpc-status: "abc" */
	M_SILENT,	/* never answers */
	M_RESET,	/* closes the connection */
	M_GOAWAY,	/* GOAWAY last-stream-id 0, then closes; OK after */
	M_SLOW_OK,	/* OK after 50 ms (concurrency) */
};

static struct {
	int listen_fd, unix_fd; /* TCP and unix: the same fake */
	unsigned port;
	char unix_path[108];
	pthread_t thread;
	atomic_bool is_stopping;
	atomic_int mode;
	atomic_int active, max_active, requests;
	atomic_int n_conns; /* connection threads still running */
} fake;

struct body {
	uint8_t *data;
	size_t len, off;
	nghttp2_nv trailers[3];
	size_t n_trailers;
};

struct stream {
	int32_t id;
	uint64_t reply_at; /* 0: not asked yet or answered */
	struct body *body;
};

struct fconn {
	int fd;
	nghttp2_session *s;
	bool is_closing;
	struct stream streams[64];
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

#define NV(k, v)                                                             \
	((nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v),    \
		      NGHTTP2_NV_FLAG_NONE})

static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf,
			 size_t len, uint32_t *flags, nghttp2_data_source *src,
			 void *user)
{
	struct body *b = src->ptr;
	size_t n = b->len - b->off;

	(void)user;
	if (n > len)
		n = len;
	memcpy(buf, b->data + b->off, n);
	b->off += n;
	if (b->off == b->len) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (b->n_trailers) {
			*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
			nghttp2_submit_trailer(s, id, b->trailers,
					       b->n_trailers);
		}
	}
	return (ssize_t)n;
}

static struct stream *stream_of(struct fconn *fc, int32_t id, bool is_new)
{
	for (int i = 0; i < 64; i++)
		if (fc->streams[i].id == id)
			return &fc->streams[i];
	if (!is_new)
		return NULL;
	for (int i = 0; i < 64; i++)
		if (fc->streams[i].id == 0) {
			fc->streams[i].id = id;
			return &fc->streams[i];
		}
	return NULL;
}

static char *b64(const uint8_t *p, size_t n)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc(n * 4 / 3 + 5), *o = out;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 |
			     (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
			     (i + 2 < n ? p[i + 2] : 0);
		*o++ = tab[v >> 18 & 63];
		*o++ = tab[v >> 12 & 63];
		*o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? tab[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

/* A framed message of len zero bytes (an empty message is a valid
 * ListUserDevicesResponse), with the compressed flag as given. */
static struct body *message(size_t len, bool is_compressed, int copies)
{
	struct body *b = calloc(1, sizeof(*b));

	b->len = (5 + len) * (size_t)copies;
	b->data = calloc(1, b->len);
	for (int c = 0; c < copies; c++) {
		uint8_t *p = b->data + (5 + len) * (size_t)c;
		p[0] = is_compressed;
		p[1] = (uint8_t)(len >> 24);
		p[2] = (uint8_t)(len >> 16);
		p[3] = (uint8_t)(len >> 8);
		p[4] = (uint8_t)len;
	}
	return b;
}

/* Made once before the fake starts: header values of some answers. */
static char junk[3][8001];
static char *details;

static void replies_init(void)
{
	size_t len;
	uint8_t *raw = das_status_details_pack(5, "user u0 not found",
					       "USER_NOT_FOUND", &len);

	details = b64(raw, len);
	free(raw);
	for (int i = 0; i < 3; i++)
		memset(junk[i], 'j', 8000);
}

static void reply(struct fconn *fc, struct stream *st)
{
	nghttp2_nv h[8];
	size_t n = 0;
	struct body *b = NULL;
	nghttp2_data_provider prd = {.read_callback = body_read};
	enum mode m = (enum mode)atomic_load(&fake.mode);

	h[n++] = NV(":status", m == M_HTTP_503 ? "503" : "200");
	if (m != M_HTML && m != M_HTTP_503)
		h[n++] = NV("content-type", "application/grpc");
	switch (m) {
	case M_DETAILS:
		h[n++] = NV("grpc-status", "5");
		h[n++] = NV("grpc-message", "user%20u0%20not%20found%");
		h[n++] = NV(DAS_STATUS_DETAILS_KEY, details);
		nghttp2_submit_response(fc->s, st->id, h, n, NULL);
		return;
	case M_HTTP_503:
		nghttp2_submit_response(fc->s, st->id, h, n, NULL);
		return;
	case M_BIG_HEADERS:
		for (int i = 0; i < 3; i++)
			h[n++] = NV(i == 0 ? "x-junk-a"
				    : i == 1 ? "x-junk-b"
					     : "x-junk-c",
				    junk[i]);
		b = message(0, false, 1);
		break;
	case M_COMPRESSED:
		b = message(0, true, 1);
		break;
	case M_HUGE:
		b = message(70000, false, 1);
		break;
	case M_TWO_MESSAGES:
		b = message(0, false, 2);
		break;
	case M_HTML:
		h[n++] = NV("content-type", "text/html");
		b = calloc(1, sizeof(*b));
		b->data = (uint8_t *)strdup("<html></html>");
		b->len = 13;
		break;
	default:
		b = message(0, false, 1);
		break;
	}
	if (m != M_NO_TRAILERS) {
		b->trailers[b->n_trailers++] =
			NV("grpc-status", m == M_BAD_STATUS ? "abc" : "0");
	}
	st->body = b;
	prd.source.ptr = b;
	nghttp2_submit_response(fc->s, st->id, h, n, &prd);
}

static int on_request(nghttp2_session *s, const nghttp2_frame *frame,
		      void *user)
{
	struct fconn *fc = user;
	struct stream *st;
	int active;

	(void)s;
	if ((frame->hd.type != NGHTTP2_HEADERS &&
	     frame->hd.type != NGHTTP2_DATA) ||
	    !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	st = stream_of(fc, frame->hd.stream_id, true);
	if (!st)
		return 0;
	atomic_fetch_add(&fake.requests, 1);
	active = atomic_fetch_add(&fake.active, 1) + 1;
	if (active > atomic_load(&fake.max_active))
		atomic_store(&fake.max_active, active);
	switch ((enum mode)atomic_load(&fake.mode)) {
	case M_SILENT:
		break;
	case M_RESET:
		fc->is_closing = true;
		break;
	case M_GOAWAY:
		nghttp2_submit_goaway(s, NGHTTP2_FLAG_NONE, 0,
				      NGHTTP2_NO_ERROR, NULL, 0);
		fc->is_closing = true;
		atomic_store(&fake.mode, M_OK);
		break;
	case M_SLOW_OK:
		st->reply_at = now_ms() + 50;
		break;
	default:
		reply(fc, st);
	}
	return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t code, void *user)
{
	struct fconn *fc = user;
	struct stream *st = stream_of(fc, id, false);

	(void)s;
	(void)code;
	if (!st)
		return 0;
	atomic_fetch_sub(&fake.active, 1);
	if (st->body) {
		free(st->body->data);
		free(st->body);
	}
	memset(st, 0, sizeof(*st));
	return 0;
}

static void serve(int fd)
{
	struct fconn *fc = calloc(1, sizeof(*fc));
	nghttp2_session_callbacks *cb;
	nghttp2_settings_entry iv = {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
				     1};

	fc->fd = fd;
	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_request);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
	nghttp2_session_server_new(&fc->s, cb, fc);
	nghttp2_session_callbacks_del(cb);
	nghttp2_submit_settings(fc->s, NGHTTP2_FLAG_NONE, &iv, 1);
	while (!atomic_load(&fake.is_stopping)) {
		const uint8_t *p;
		ssize_t n;
		uint8_t buf[16384];
		struct pollfd pfd = {fd, POLLIN, 0};

		for (int i = 0; i < 64; i++)
			if (fc->streams[i].reply_at &&
			    fc->streams[i].reply_at <= now_ms()) {
				fc->streams[i].reply_at = 0;
				reply(fc, &fc->streams[i]);
			}
		while ((n = nghttp2_session_mem_send(fc->s, &p)) > 0)
			if (write(fd, p, (size_t)n) != n)
				goto out;
		if (fc->is_closing)
			break;
		if (poll(&pfd, 1, 10) <= 0)
			continue;
		n = read(fd, buf, sizeof(buf));
		if (n <= 0 || nghttp2_session_mem_recv(fc->s, buf, (size_t)n) < 0)
			break;
	}
out:
	/* Streams left open count as closed. */
	for (int i = 0; i < 64; i++)
		if (fc->streams[i].id)
			on_close(fc->s, fc->streams[i].id, 0, fc);
	nghttp2_session_del(fc->s);
	close(fd);
	free(fc);
}

static void *conn_main(void *arg)
{
	serve((int)(intptr_t)arg);
	atomic_fetch_sub(&fake.n_conns, 1);
	return NULL;
}

/* Each connection on a thread of its own (a gateway keeps its own). */
static void *fake_main(void *arg)
{
	(void)arg;
	while (!atomic_load(&fake.is_stopping)) {
		struct pollfd pfd[2] = {{fake.listen_fd, POLLIN, 0},
					{fake.unix_fd, POLLIN, 0}};
		if (poll(pfd, 2, 50) <= 0)
			continue;
		for (int i = 0; i < 2; i++) {
			int fd;
			if (!(pfd[i].revents & POLLIN))
				continue;
			pthread_t t;
			fd = accept(pfd[i].fd, NULL, NULL);
			if (fd < 0)
				continue;
			atomic_fetch_add(&fake.n_conns, 1);
			if (pthread_create(&t, NULL, conn_main,
					   (void *)(intptr_t)fd) != 0) {
				atomic_fetch_sub(&fake.n_conns, 1);
				close(fd);
				continue;
			}
			pthread_detach(t);
		}
	}
	return NULL;
}

static void fake_start(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);

	replies_init();
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fake.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fake.listen_fd >= 0);
	assert_int_equal(bind(fake.listen_fd, (struct sockaddr *)&sa,
			      sizeof(sa)),
			 0);
	assert_int_equal(listen(fake.listen_fd, 16), 0);
	assert_int_equal(getsockname(fake.listen_fd, (struct sockaddr *)&sa,
				     &sl),
			 0);
	fake.port = ntohs(sa.sin_port);
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	harness_path("fake.sock", fake.unix_path, sizeof(fake.unix_path));
	snprintf(un.sun_path, sizeof(un.sun_path), "%s", fake.unix_path);
	fake.unix_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fake.unix_fd >= 0);
	assert_int_equal(bind(fake.unix_fd, (struct sockaddr *)&un,
			      sizeof(un)),
			 0);
	assert_int_equal(listen(fake.unix_fd, 16), 0);
	assert_int_equal(pthread_create(&fake.thread, NULL, fake_main, NULL),
			 0);
}

static void fake_stop(void)
{
	atomic_store(&fake.is_stopping, true);
	pthread_join(fake.thread, NULL);
	while (atomic_load(&fake.n_conns) > 0) {
		struct timespec pause = {0, 10 * 1000 * 1000};
		nanosleep(&pause, NULL);
	}
	close(fake.listen_fd);
	close(fake.unix_fd);
	unlink(fake.unix_path);
	free(details);
}

/* ---- HTTP --------------------------------------------------------------- */

struct resp {
	long status;
	char body[4096];
	size_t body_len;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct resp *r = arg;

	return harness_append(r->body, sizeof(r->body), &r->body_len, p,
			      size * n);
}

static long get(const struct harness_proc *gw, const char *path,
		struct resp *r)
{
	CURL *c = curl_easy_init();
	struct curl_slist *hl = NULL;
	struct resp local;
	char url[256];

	if (!r)
		r = &local;
	memset(r, 0, sizeof(*r));
	snprintf(url, sizeof(url), "http://%s%s", gw->addr, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	hl = curl_slist_append(hl, "Authorization: Bearer x");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	return r->status;
}

static struct harness_proc gw;

static void start_gateway_on(struct harness_proc *p, const char *upstream,
			     const char *timeout_ms, const char *wait)
{
	const char *args[] = {"--upstream", upstream, "--threads", "1",
			      "--upstream-timeout-ms", timeout_ms,
			      "--wait-for-ready", wait, "--log-level", "debug",
			      NULL};

	assert_int_equal(harness_start(p, DAS_GATEWAY_BIN, args, NULL), 0);
}

static int setup(void **state)
{
	char upstream[64];

	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	fake_start();
	snprintf(upstream, sizeof(upstream), "127.0.0.1:%u", fake.port);
	/* Short enough for the silent upstream's 504, long enough for a
	 * loaded machine's first connection. */
	start_gateway_on(&gw, upstream, "2000", "true");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(harness_stop(&gw, SIGTERM), 0);
	fake_stop();
	curl_global_cleanup();
	return 0;
}

/* ---- hostile replies ---------------------------------------------------- */

static long ask(enum mode m, struct resp *r)
{
	atomic_store(&fake.mode, m);
	return get(&gw, LIST, r);
}

static void good_reply_is_200(void **state)
{
	(void)state;
	assert_int_equal(ask(M_OK, NULL), 200);
}

static void details_reason_and_message_are_mapped(void **state)
{
	struct resp r;

	(void)state;
	/* USER_NOT_FOUND from grpc-status-details-bin; the message
	 * percent-decoded (a lone '%' kept as it is). */
	assert_int_equal(ask(M_DETAILS, &r), 404);
	fprintf(stderr, "details: %.*s\n", (int)r.body_len, r.body);
	assert_non_null(strstr(r.body, "user u0 not found%"));
}

static void broken_replies_are_500(void **state)
{
	static const enum mode broken[] = {
		M_BIG_HEADERS, M_COMPRESSED, M_HUGE,	   M_TWO_MESSAGES,
		M_HTML,	       M_NO_TRAILERS, M_BAD_STATUS,
	};

	(void)state;
	for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
		long st = ask(broken[i], NULL);
		fprintf(stderr, "mode %d: %ld\n", (int)broken[i], st);
		assert_int_equal(st, 500);
		/* The connection is still good for the next call. */
		assert_int_equal(ask(M_OK, NULL), 200);
	}
}

static void http_503_is_503(void **state)
{
	(void)state;
	assert_int_equal(ask(M_HTTP_503, NULL), 503);
	assert_int_equal(ask(M_OK, NULL), 200);
}

static void silent_upstream_is_504(void **state)
{
	(void)state;
	assert_int_equal(ask(M_SILENT, NULL), 504);
	/* The stream was reset at the deadline: its slot is free again
	 * (the server allows one stream at a time). */
	assert_int_equal(ask(M_OK, NULL), 200);
}

static void reset_mid_call_is_503_then_reconnects(void **state)
{
	(void)state;
	assert_int_equal(ask(M_RESET, NULL), 503);
	/* Reconnected (wait-for-ready) within the next call's deadline. */
	assert_int_equal(ask(M_OK, NULL), 200);
}

static void goaway_before_the_stream_is_retried(void **state)
{
	int before = atomic_load(&fake.requests);

	(void)state;
	/* The server refuses stream 1 by GOAWAY(last-stream-id 0) and
	 * closes: the call was never processed, so it goes to a new
	 * connection and succeeds. */
	assert_int_equal(ask(M_GOAWAY, NULL), 200);
	assert_int_equal(atomic_load(&fake.requests) - before, 2);
}

struct par {
	long status;
};

static void *par_get(void *arg)
{
	struct par *p = arg;

	p->status = get(&gw, LIST, NULL);
	return NULL;
}

static void max_concurrent_streams_is_respected(void **state)
{
	pthread_t t[4];
	struct par p[4];

	(void)state;
	atomic_store(&fake.max_active, 0);
	atomic_store(&fake.mode, M_SLOW_OK);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, par_get, &p[i]),
				 0);
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(p[i].status, 200);
	}
	fprintf(stderr, "streams open at once: %d (server allows 1)\n",
		atomic_load(&fake.max_active));
	assert_int_equal(atomic_load(&fake.max_active), 1);
	assert_true(harness_is_alive(&gw));
}

static void unix_socket_upstream(void **state)
{
	struct harness_proc g;
	char upstream[160];

	(void)state;
	atomic_store(&fake.mode, M_OK);
	snprintf(upstream, sizeof(upstream), "unix:%s", fake.unix_path);
	/* A deadline a loaded machine meets for the first connection. */
	start_gateway_on(&g, upstream, "5000", "true");
	assert_int_equal(get(&g, LIST, NULL), 200);
	assert_int_equal(harness_stop(&g, SIGTERM), 0);
}

/* ---- the real server ---------------------------------------------------- */

static void start_server(struct harness_proc *p, const char *listen)
{
	char db[512], spec[600];

	harness_path("upstream.db", db, sizeof(db));
	snprintf(spec, sizeof(spec), "sqlite:%s", db);
	/* Two servers share the file in drained_server_loses_no_request. */
	const char *args[] = {"--listen", listen, "--store", spec,
			      "--sqlite-exclusive", "false",
			      "--jwt-hs256-secret-file", harness_secret_file(),
			      NULL};
	assert_int_equal(harness_start(p, DAS_SERVER_BIN, args, NULL), 0);
}

static void dns_name_reaches_the_server(void **state)
{
	struct harness_proc server, g;
	char upstream[64];

	(void)state;
	start_server(&server, "127.0.0.1:0");
	/* localhost may resolve to ::1 too, where nothing listens: that
	 * address is skipped. */
	snprintf(upstream, sizeof(upstream), "dns:///localhost:%d",
		 server.port);
	start_gateway_on(&g, upstream, "3000", "true");
	for (int i = 0; i < 10; i++)
		assert_int_equal(get(&g, LIST, NULL), 401);
	assert_int_equal(harness_stop(&g, SIGTERM), 0);
	assert_int_equal(harness_stop(&server, SIGTERM), 0);
}

static void ipv6_list_reaches_the_server(void **state)
{
	struct harness_proc server, g;
	char upstream[64];

	(void)state;
	start_server(&server, "[::1]:0");
	snprintf(upstream, sizeof(upstream), "ipv6:[::1]:%d", server.port);
	start_gateway_on(&g, upstream, "3000", "true");
	for (int i = 0; i < 4; i++)
		assert_int_equal(get(&g, LIST, NULL), 401);
	assert_int_equal(harness_stop(&g, SIGTERM), 0);
	assert_int_equal(harness_stop(&server, SIGTERM), 0);
}

/* A port nothing listens on (bound, then closed). */
static int free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

struct later {
	struct harness_proc *g;
	long status;
};

static void *later_get(void *arg)
{
	struct later *l = arg;

	l->status = get(l->g, LIST, NULL);
	return NULL;
}

static void wait_for_ready_waits_for_a_late_server(void **state)
{
	struct harness_proc server, g;
	struct later l = {&g, 0};
	struct timespec pause = {0, 700 * 1000 * 1000};
	char addr[64];
	pthread_t t;

	(void)state;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", free_port());
	start_gateway_on(&g, addr, "8000", "true");
	assert_int_equal(pthread_create(&t, NULL, later_get, &l), 0);
	nanosleep(&pause, NULL);
	start_server(&server, addr);
	pthread_join(t, NULL);
	/* The server answered (no token: 401), not the gateway's 503. */
	assert_int_equal(l.status, 401);
	assert_int_equal(harness_stop(&g, SIGTERM), 0);
	assert_int_equal(harness_stop(&server, SIGTERM), 0);
}

struct load {
	struct harness_proc *g;
	atomic_bool *is_stopping;
	int n, bad;
	long last_bad;
};

static void *load_worker(void *arg)
{
	struct load *l = arg;

	while (!atomic_load(l->is_stopping)) {
		long st = get(l->g, LIST, NULL);
		l->n++;
		if (st != 401) {
			l->bad++;
			l->last_bad = st;
		}
	}
	return NULL;
}

static void drained_server_loses_no_request(void **state)
{
	struct harness_proc a, b, g;
	struct load l[4];
	pthread_t t[4];
	atomic_bool is_stopping = false;
	struct timespec pause = {0, 400 * 1000 * 1000};
	char upstream[128];
	int n = 0, bad = 0;

	(void)state;
	start_server(&a, "127.0.0.1:0");
	start_server(&b, "127.0.0.1:0");
	snprintf(upstream, sizeof(upstream), "%s,%s", a.addr, b.addr);
	start_gateway_on(&g, upstream, "5000", "true");
	for (int i = 0; i < 4; i++) {
		l[i] = (struct load){&g, &is_stopping, 0, 0, 0};
		assert_int_equal(pthread_create(&t[i], NULL, load_worker,
						&l[i]),
				 0);
	}
	nanosleep(&pause, NULL);
	/* SIGTERM: the server sends GOAWAY, finishes what it took, exits. */
	assert_int_equal(harness_stop(&a, SIGTERM), 0);
	nanosleep(&pause, NULL);
	atomic_store(&is_stopping, true);
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		n += l[i].n;
		bad += l[i].bad;
		if (l[i].bad)
			fprintf(stderr, "worker %d: %d bad, last %ld\n", i,
				l[i].bad, l[i].last_bad);
	}
	fprintf(stderr, "drain under load: %d requests, %d not answered by "
			"a server\n",
		n, bad);
	assert_true(n > 20);
	assert_int_equal(bad, 0);
	assert_int_equal(harness_stop(&g, SIGTERM), 0);
	assert_int_equal(harness_stop(&b, SIGTERM), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(good_reply_is_200),
		cmocka_unit_test(details_reason_and_message_are_mapped),
		cmocka_unit_test(broken_replies_are_500),
		cmocka_unit_test(http_503_is_503),
		cmocka_unit_test(silent_upstream_is_504),
		cmocka_unit_test(reset_mid_call_is_503_then_reconnects),
		cmocka_unit_test(goaway_before_the_stream_is_retried),
		cmocka_unit_test(max_concurrent_streams_is_respected),
		cmocka_unit_test(unix_socket_upstream),
		cmocka_unit_test(dns_name_reaches_the_server),
		cmocka_unit_test(ipv6_list_reaches_the_server),
		cmocka_unit_test(wait_for_ready_waits_for_a_late_server),
		cmocka_unit_test(drained_server_loses_no_request),
	};
	signal(SIGPIPE, SIG_IGN);
	return harness_finish(cmocka_run_group_tests(tests, setup, teardown));
}
