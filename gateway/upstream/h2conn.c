/*
 * One HTTP/2 client connection (libnghttp2 in memory mode).
 *
 * nghttp2 turns frames into bytes and back; this file moves the bytes
 * (edge-triggered: every event reads and writes until EAGAIN) and reads
 * each stream's reply into its upcall, with hard bounds: header bytes,
 * message size, one message. Reports go to upstream.c through upcall.h and
 * never call the caller's done() from here (upstream.c queues them).
 */
#include "h2conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <nghttp2/nghttp2.h>

#include "common/chars.h"
#include "common/log.h"
#include "common/status.h"
#include "gateway/upstream/grpc_wire.h"
#include "gateway/upstream/h2tls.h"
#include "proto/rpc_methods.h"

/* Stop asking nghttp2 for more frames once this much waits unwritten. */
#define OUT_HIGH_WATER (64 * 1024)
#define READ_CHUNK     (16 * 1024)
/* One x-request-id in this many goes out indexed (h2conn_submit). */
#define REQUEST_ID_INDEX_EVERY 64u
/* The largest DATA a reply may carry: one message and its prefix. */
#define MAX_BODY (GW_WIRE_PREFIX + DAS_RPC_MAX_MESSAGE)

static void calls_remove(struct h2conn *c, struct upcall *call)
{
	if (call->q_prev)
		call->q_prev->q_next = call->q_next;
	else
		c->calls = call->q_next;
	if (call->q_next)
		call->q_next->q_prev = call->q_prev;
	call->q_prev = call->q_next = NULL;
	call->conn = NULL;
	c->n_calls--;
}

static struct upcall *stream_call(struct h2conn *c, int32_t id)
{
	return nghttp2_session_get_stream_user_data(c->s, id);
}

/* Takes call off its stream for good: later frames of it are ignored. */
static void detach(struct h2conn *c, struct upcall *call)
{
	if (call->stream_id > 0)
		nghttp2_session_set_stream_user_data(c->s, call->stream_id,
						     NULL);
	calls_remove(c, call);
}

/* The reply is broken: reset the stream; it ends INTERNAL on close. */
static void broken(struct h2conn *c, struct upcall *call)
{
	if (call->is_broken)
		return;
	call->is_broken = true;
	nghttp2_submit_rst_stream(c->s, NGHTTP2_FLAG_NONE, call->stream_id,
				  NGHTTP2_CANCEL);
}

static bool name_is(const uint8_t *name, size_t len, const char *want)
{
	return len == strlen(want) && memcmp(name, want, len) == 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame,
		     const uint8_t *name, size_t namelen, const uint8_t *value,
		     size_t valuelen, uint8_t flags, void *user)
{
	struct h2conn *c = user;
	struct upcall *call = stream_call(c, frame->hd.stream_id);

	(void)s;
	(void)flags;
	if (!call || call->is_broken)
		return 0;
	call->has_headers = true;
	/* Counted as SETTINGS_MAX_HEADER_LIST_SIZE counts: 32 per field, so
	 * a flood of empty values is bounded too. */
	call->header_bytes += namelen + valuelen + 32;
	if (call->header_bytes > GW_WIRE_MAX_HEADERS) {
		broken(c, call);
		return 0;
	}
	if (name_is(name, namelen, ":status")) {
		int st;
		call->http_status =
			valuelen == 3 && das_decimal((const char *)value, 3, &st)
				? st
				: 999;
	} else if (name_is(name, namelen, "content-type")) {
		call->is_grpc_type = gw_wire_is_grpc_type(value, valuelen);
	} else if (name_is(name, namelen, "grpc-status")) {
		call->grpc_status = gw_wire_status(value, valuelen);
		if (call->grpc_status < 0)
			broken(c, call);
	} else if (name_is(name, namelen, "grpc-message")) {
		gw_wire_message(value, valuelen, call->message,
				sizeof(call->message));
	} else if (name_is(name, namelen, DAS_STATUS_DETAILS_KEY)) {
		gw_wire_details_reason(value, valuelen, call->reason,
				       sizeof(call->reason));
	}
	return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id,
		   const uint8_t *data, size_t len, void *user)
{
	struct h2conn *c = user;
	struct upcall *call = stream_call(c, id);

	(void)s;
	(void)flags;
	if (!call || call->is_broken)
		return 0;
	if (len > MAX_BODY - call->body_len) {
		broken(c, call);
		return 0;
	}
	if (call->body_len + len > call->body_cap) {
		size_t cap = call->body_cap ? call->body_cap * 2 : 256;
		uint8_t *p;
		while (cap < call->body_len + len)
			cap *= 2;
		if (cap > MAX_BODY)
			cap = MAX_BODY;
		p = realloc(call->body, cap);
		if (!p) {
			broken(c, call);
			return 0;
		}
		call->body = p;
		call->body_cap = cap;
	}
	memcpy(call->body + call->body_len, data, len);
	call->body_len += len;
	return 0;
}

/* The gRPC code of a stream that closed with error_code. */
static int verdict(const struct upcall *call, uint32_t error_code,
		   bool *is_reply)
{
	*is_reply = false;
	if (call->is_broken)
		return DAS_GRPC_INTERNAL;
	if (call->http_status && call->http_status != 200)
		return gw_wire_code_from_http(call->http_status);
	if (call->grpc_status >= 0 && call->is_grpc_type) {
		*is_reply = true;
		return call->grpc_status;
	}
	if (error_code != NGHTTP2_NO_ERROR)
		return DAS_GRPC_UNAVAILABLE; /* reset mid-call */
	/* Not gRPC, or no trailers: not the service we speak to. */
	return DAS_GRPC_INTERNAL;
}

/*
 * A server going away may drop calls it took but never ran: gRPC core
 * answers CANCELLED to calls not yet handed to the application when it
 * shuts down (sometimes before its GOAWAY is on the wire), and closes the
 * connection once it thinks it is idle. Such a call is started again
 * elsewhere: every RPC of the contract may be repeated (a repeat answers
 * as the first did; the service itself never answers CANCELLED), so this
 * never applies a change twice, and the deadline and MAX_REFUSALS bound
 * it.
 */
static bool is_dropped_by_drain(const struct h2conn *c, int code,
				bool is_reply)
{
	if (is_reply && code == DAS_GRPC_CANCELLED)
		return true;
	return c->is_goaway && code == DAS_GRPC_UNAVAILABLE;
}

static int on_stream_close(nghttp2_session *s, int32_t id,
			   uint32_t error_code, void *user)
{
	struct h2conn *c = user;
	struct upcall *call = stream_call(c, id);
	bool is_reply;
	int code;

	(void)s;
	if (!call)
		return 0;
	detach(c, call);
	code = verdict(call, error_code, &is_reply);
	if ((error_code == NGHTTP2_REFUSED_STREAM && !call->has_headers) ||
	    is_dropped_by_drain(c, code, is_reply)) {
		upcall_refused(call);
	} else {
		if (code != DAS_GRPC_OK && das_log_is_enabled(DAS_LOG_DEBUG))
			das_log(DAS_LOG_DEBUG,
				"upstream %s: stream %d ended: :status %d, "
				"grpc-status %d, RST_STREAM %u%s -> code %d",
				c->authority, id, call->http_status,
				call->grpc_status, error_code,
				call->is_broken ? ", reply over a bound or "
						  "malformed"
						: "",
				code);
		upcall_end(call, code, is_reply);
	}
	upstream_conn_changed(c->ul, c);
	return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame,
			 void *user)
{
	struct h2conn *c = user;

	(void)s;
	if (frame->hd.type != NGHTTP2_PING)
		c->is_ping_answered = false;
	switch (frame->hd.type) {
	case NGHTTP2_PING:
		if (frame->hd.flags & NGHTTP2_FLAG_ACK) {
			c->ping_sent_ms = 0;
			c->is_ping_answered = true;
		}
		break;
	case NGHTTP2_SETTINGS:
		if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) &&
		    c->state == H2CONN_CONNECTING) {
			c->state = H2CONN_READY;
			c->was_ready = true;
		}
		upstream_conn_changed(c->ul, c);
		break;
	case NGHTTP2_GOAWAY:
		/* Streams above its last-stream-id are closed REFUSED_STREAM
		 * by nghttp2 (safe to start again elsewhere). */
		if (c->state != H2CONN_CLOSED)
			c->state = H2CONN_DRAINING;
		c->is_goaway = true;
		upstream_conn_changed(c->ul, c);
		break;
	default:
		break;
	}
	return 0;
}

/* A request that never left (GOAWAY came first): the server never saw
 * it. */
static int on_not_send(nghttp2_session *s, const nghttp2_frame *frame,
		       int lib_error, void *user)
{
	struct h2conn *c = user;
	struct upcall *call;

	(void)s;
	(void)lib_error;
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	/* The stream was never opened: nghttp2 has no user data for it. */
	for (call = c->calls; call; call = call->q_next)
		if (call->stream_id == frame->hd.stream_id)
			break;
	if (!call)
		return 0;
	detach(c, call);
	upcall_refused(call);
	upstream_conn_changed(c->ul, c);
	return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf,
			 size_t len, uint32_t *flags,
			 nghttp2_data_source *src, void *user)
{
	struct h2conn *c = user;
	struct upcall *call = stream_call(c, id);
	size_t n;

	(void)s;
	(void)src;
	if (!call) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		return 0;
	}
	n = call->send_len - call->send_off;
	if (n > len)
		n = len;
	memcpy(buf, call->send + call->send_off, n);
	call->send_off += n;
	if (call->send_off == call->send_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static nghttp2_session_callbacks *callbacks(void)
{
	nghttp2_session_callbacks *cb;

	if (nghttp2_session_callbacks_new(&cb) != 0)
		return NULL;
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb,
							       on_stream_close);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_frame_not_send_callback(cb,
								 on_not_send);
	return cb;
}

/* ---- bytes -------------------------------------------------------------- */

static ssize_t sock_read(struct h2conn *c, void *buf, size_t len)
{
	if (c->ssl)
		return h2tls_read(c->ssl, buf, len);
	return recv(c->fd, buf, len, 0);
}

static ssize_t sock_write(struct h2conn *c, const void *buf, size_t len)
{
	if (c->ssl)
		return h2tls_write(c->ssl, buf, len);
	return send(c->fd, buf, len, MSG_NOSIGNAL);
}

/* Collects frames from nghttp2 into c->out. -1 on a session error. */
static int gather(struct h2conn *c)
{
	while (c->out_len - c->out_off < OUT_HIGH_WATER) {
		const uint8_t *p;
		ssize_t n = nghttp2_session_mem_send(c->s, &p);
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		if (c->out_off && c->out_off == c->out_len)
			c->out_off = c->out_len = 0;
		if (c->out_len + (size_t)n > c->out_cap) {
			size_t cap = c->out_cap ? c->out_cap : 4096;
			uint8_t *q;
			while (cap < c->out_len + (size_t)n)
				cap *= 2;
			q = realloc(c->out, cap);
			if (!q)
				return -1;
			c->out = q;
			c->out_cap = cap;
		}
		memcpy(c->out + c->out_len, p, (size_t)n);
		c->out_len += (size_t)n;
	}
	return 0;
}

/* Writes until done or EAGAIN; -1 when the connection is gone. */
static int write_out(struct h2conn *c)
{
	for (;;) {
		ssize_t n;
		if (gather(c) != 0)
			return -1;
		if (c->out_off == c->out_len)
			return 0;
		n = sock_write(c, c->out + c->out_off, c->out_len - c->out_off);
		if (n > 0) {
			c->out_off += (size_t)n;
			if (c->out_off == c->out_len)
				c->out_off = c->out_len = 0;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return -1;
	}
}

/*
 * Reads what the socket holds into nghttp2; -1 at the end or on an error.
 * A plain socket's read short of the buffer took all the kernel held, and
 * with edge-triggered events bytes that come later raise a new event: the
 * read that would only answer EAGAIN is skipped (under load most events
 * bring one read's worth), as is any read on an event without EPOLLIN.
 * Not when the event reported the peer's end (its EOF is read now), nor
 * under TLS, whose library may hold decrypted bytes: those read until
 * EAGAIN.
 */
static uint64_t clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int read_in(struct h2conn *c, uint32_t events)
{
	uint8_t buf[READ_CHUNK];
	bool can_stop_short =
		!c->ssl && !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR));

	if (can_stop_short && !(events & EPOLLIN))
		return 0;
	for (;;) {
		ssize_t n = sock_read(c, buf, sizeof(buf));
		if (n > 0) {
			c->quiet_from_ms = clock_ms();
			if (nghttp2_session_mem_recv(c->s, buf, (size_t)n) !=
			    n)
				return -1;
			if (c->state == H2CONN_CLOSED)
				return 0;
			if (can_stop_short && (size_t)n < sizeof(buf))
				return 0;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return -1;
	}
}

/* ---- life --------------------------------------------------------------- */

static void close_socket(struct h2conn *c)
{
	if (c->fd >= 0) {
		epoll_ctl(c->ep, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
		c->fd = -1;
	}
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	c->state = H2CONN_CLOSED;
}

void h2conn_fail(struct h2conn *c)
{
	if (c->state == H2CONN_CLOSED)
		return;
	if (das_log_is_enabled(DAS_LOG_DEBUG))
		das_log(DAS_LOG_DEBUG,
			"upstream %s: connection closed (%s), %u calls on it",
			c->authority,
			c->was_ready ? "after it served" : "while connecting",
			c->n_calls);
	close_socket(c);
	while (c->calls) {
		struct upcall *call = c->calls;
		detach(c, call);
		if (is_dropped_by_drain(c, DAS_GRPC_UNAVAILABLE, false))
			upcall_refused(call);
		else
			upcall_end(call, DAS_GRPC_UNAVAILABLE, false);
	}
	upstream_conn_changed(c->ul, c);
}

uint64_t h2conn_alive_due_ms(const struct h2conn *c)
{
	if ((c->state != H2CONN_READY && c->state != H2CONN_DRAINING) ||
	    c->n_calls == 0)
		return UINT64_MAX;
	if (c->ping_sent_ms)
		return c->ping_sent_ms + H2CONN_PING_TIMEOUT_MS;
	if (c->is_ping_answered)
		return UINT64_MAX;
	return c->quiet_from_ms + H2CONN_QUIET_MS;
}

void h2conn_check_alive(struct h2conn *c, uint64_t now)
{
	if (now < h2conn_alive_due_ms(c))
		return;
	if (c->ping_sent_ms) {
		das_log(DAS_LOG_WARN,
			"upstream %s: no answer to a PING within %d ms while "
			"%u calls waited: closing the connection",
			c->authority, H2CONN_PING_TIMEOUT_MS, c->n_calls);
		h2conn_fail(c);
		return;
	}
	if (nghttp2_submit_ping(c->s, NGHTTP2_FLAG_NONE, NULL) != 0) {
		h2conn_fail(c);
		return;
	}
	c->ping_sent_ms = now;
	h2conn_flush(c);
}

/* A drained connection with nothing left to do closes quietly. */
static void close_if_done(struct h2conn *c)
{
	if (c->state == H2CONN_CLOSED)
		return;
	if (c->state == H2CONN_DRAINING && c->n_calls == 0 &&
	    c->out_off == c->out_len) {
		close_socket(c);
		upstream_conn_changed(c->ul, c);
		return;
	}
	if (!nghttp2_session_want_read(c->s) &&
	    !nghttp2_session_want_write(c->s) && c->out_off == c->out_len)
		h2conn_fail(c);
}

void h2conn_flush(struct h2conn *c)
{
	if (c->state == H2CONN_CLOSED || !c->is_tcp_up ||
	    (c->ssl && !c->is_tls_done))
		return;
	if (write_out(c) != 0) {
		h2conn_fail(c);
		return;
	}
	close_if_done(c);
}

void h2conn_on_io(struct h2conn *c, uint32_t events)
{
	if (c->state == H2CONN_CLOSED)
		return;
	if (!c->is_tcp_up) {
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 ||
		    soerr != 0 || (events & EPOLLERR)) {
			h2conn_fail(c);
			return;
		}
		c->is_tcp_up = true;
	}
	if (c->ssl && !c->is_tls_done) {
		int rc = h2tls_handshake(c->ssl);
		if (rc < 0) {
			h2conn_fail(c);
			return;
		}
		if (rc > 0)
			return;
		c->is_tls_done = true;
	}
	if (read_in(c, events) != 0) {
		h2conn_fail(c);
		return;
	}
	if (c->state == H2CONN_CLOSED)
		return;
	h2conn_flush(c);
}

bool h2conn_has_room(const struct h2conn *c)
{
	uint32_t max;

	if (c->state != H2CONN_READY)
		return false;
	max = nghttp2_session_get_remote_settings(
		c->s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
	return c->n_calls < max &&
	       c->out_len - c->out_off < OUT_HIGH_WATER &&
	       nghttp2_session_check_request_allowed(c->s);
}

/* grpc-timeout's value for left_ms: "%llum" by hand, at most 8 digits
 * (gRPC's limit) and the unit. */
static void grpc_timeout_format(uint64_t left_ms, char out[16])
{
	char d[8];
	size_t k = sizeof(d), len;

	if (left_ms > 99999999)
		left_ms = 99999999;
	do {
		d[--k] = (char)('0' + left_ms % 10);
		left_ms /= 10;
	} while (left_ms);
	len = sizeof(d) - k;
	memcpy(out, d + k, len);
	out[len] = 'm';
	out[len + 1] = '\0';
}

/* Puts call at the head of c's calls. */
static void calls_push(struct h2conn *c, struct upcall *call)
{
	call->q_prev = NULL;
	call->q_next = c->calls;
	if (c->calls)
		c->calls->q_prev = call;
	c->calls = call;
	c->n_calls++;
}

int h2conn_submit(struct h2conn *c, struct upcall *call, uint64_t now)
{
	char timeout[16];
	const char *path = gw_wire_path(call->rpc);
	nghttp2_nv nv[10];
	size_t n = 0;
	nghttp2_data_provider body;
	int32_t id;

#define NV(k, v, vl)                                                         \
	nv[n++] = (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), sizeof(k) - 1,  \
			       (vl), NGHTTP2_NV_FLAG_NO_COPY_NAME}
	grpc_timeout_format(call->deadline_ms > now ? call->deadline_ms - now
						    : 1,
			    timeout);
	NV(":method", "POST", 4);
	NV(":scheme", c->ssl ? "https" : "http", c->ssl ? 5u : 4u);
	NV(":path", path, strlen(path));
	NV(":authority", c->authority, strlen(c->authority));
	NV("content-type", "application/grpc", 16);
	NV("te", "trailers", 8);
	NV("grpc-timeout", timeout, strlen(timeout));
	if (call->authorization)
		NV("authorization", call->authorization,
		   strlen(call->authorization));
	/* Each request's id is new: indexed, every one would be copied into
	 * both HPACK tables and push an older entry out (callgrind, one call
	 * at a time: 4.3 k instructions of the gateway's 45.6 k). One in
	 * REQUEST_ID_INDEX_EVERY is indexed, so that the name is in the
	 * tables (again soon, should other entries push it out) and the
	 * others, never indexed, refer to it instead of spelling it. */
	if (call->request_id) {
		NV("x-request-id", call->request_id, strlen(call->request_id));
		if (c->request_ids_sent++ % REQUEST_ID_INDEX_EVERY != 0)
			nv[n - 1].flags |= NGHTTP2_NV_FLAG_NO_INDEX;
	}
#undef NV
	body.source.ptr = call;
	body.read_callback = read_body;
	call->send_off = 0;
	id = nghttp2_submit_request(c->s, NULL, nv, n, &body, call);
	if (id < 0) {
		/* Stream ids used up (or the session is going): no more. */
		if (c->state == H2CONN_READY)
			c->state = H2CONN_DRAINING;
		upstream_conn_changed(c->ul, c);
		return -1;
	}
	call->stream_id = id;
	call->conn = c;
	if (c->n_calls == 0) {
		/* A busy spell starts: quiet from now, and a server that
		 * answered a PING before and then hung gets another. */
		c->quiet_from_ms = now;
		c->is_ping_answered = false;
	}
	calls_push(c, call);
	return 0;
}

void h2conn_cancel(struct h2conn *c, struct upcall *call)
{
	bool is_pending;

	if (c->state == H2CONN_CLOSED) {
		calls_remove(c, call);
		return;
	}
	nghttp2_submit_rst_stream(c->s, NGHTTP2_FLAG_NONE, call->stream_id,
				  NGHTTP2_CANCEL);
	/* A stream whose HEADERS still wait in nghttp2 (output held back)
	 * keeps a pointer we cannot clear: give the connection up instead. */
	is_pending = nghttp2_session_set_stream_user_data(
			     c->s, call->stream_id, NULL) != 0;
	calls_remove(c, call);
	if (is_pending)
		h2conn_fail(c);
	upstream_conn_changed(c->ul, c);
}

void h2conn_drain(struct h2conn *c)
{
	if (c->state == H2CONN_CONNECTING || c->state == H2CONN_READY)
		c->state = H2CONN_DRAINING;
	if (c->n_calls == 0 && c->state == H2CONN_DRAINING) {
		close_socket(c);
		upstream_conn_changed(c->ul, c);
	}
}

struct h2conn *h2conn_open(struct gw_upstream_loop *ul, int ep,
			   const struct resolver_addr *a, SSL_CTX *tls,
			   const char *server_name, uint64_t now, char *err,
			   size_t err_size)
{
	struct h2conn *c = calloc(1, sizeof(*c));
	nghttp2_session_callbacks *cb = NULL;
	nghttp2_option *opt = NULL;
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2CONN_STREAM_WINDOW},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, GW_WIRE_MAX_HEADERS},
	};
	struct epoll_event ev;
	int one = 1;

	if (!c) {
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	c->ul = ul;
	c->ep = ep;
	c->fd = -1;
	c->connect_deadline_ms = now + H2CONN_CONNECT_TIMEOUT_MS;
	snprintf(c->authority, sizeof(c->authority), "%s", a->authority);
	cb = callbacks();
	if (!cb || nghttp2_option_new(&opt) != 0)
		goto oom;
	/* Until the server's SETTINGS arrive no stream is started anyway. */
	nghttp2_option_set_peer_max_concurrent_streams(opt, 100);
	if (nghttp2_session_client_new2(&c->s, cb, c, opt) != 0)
		goto oom;
	if (nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv,
				    sizeof(iv) / sizeof(iv[0])) != 0 ||
	    nghttp2_session_set_local_window_size(c->s, NGHTTP2_FLAG_NONE, 0,
						  H2CONN_CONN_WINDOW) != 0)
		goto oom;
	c->fd = socket(a->ss.ss_family,
		       SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		snprintf(err, err_size, "socket: %s", strerror(errno));
		goto fail;
	}
	if (a->ss.ss_family != AF_UNIX)
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (tls) {
		c->ssl = h2tls_new(tls, c->fd,
				   server_name && *server_name ? server_name
							       : a->host);
		if (!c->ssl) {
			snprintf(err, err_size, "cannot start TLS");
			goto fail;
		}
	}
	ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
	ev.data.ptr = c;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
		snprintf(err, err_size, "epoll: %s", strerror(errno));
		goto fail;
	}
	if (connect(c->fd, (const struct sockaddr *)&a->ss, a->len) == 0)
		c->is_tcp_up = true;
	else if (errno != EINPROGRESS && errno != EAGAIN) {
		/* Refused at once (a unix socket, a local port): a failed
		 * attempt like any other, reported on the next run. */
		close_socket(c);
	}
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	return c;
oom:
	snprintf(err, err_size, "out of memory");
fail:
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	close_socket(c);
	h2conn_free(c);
	return NULL;
}

void h2conn_free(struct h2conn *c)
{
	if (!c)
		return;
	close_socket(c);
	nghttp2_session_del(c->s);
	free(c->out);
	free(c);
}
