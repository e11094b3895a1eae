/*
 * libmicrohttpd glue.
 *
 * Why suspend/resume: a gRPC call takes far longer than parsing the HTTP
 * request, so holding an MHD thread for it caps concurrency at the thread
 * count. Instead the handler starts the call, suspends the connection and
 * returns; the upstream completion thread resumes it and MHD calls the
 * handler once more to queue the reply. A per-request mutex orders
 * "suspended" before "resumed" so a fast reply can never resume a
 * connection that is not suspended yet.
 *
 * Why poll and not epoll: stack-facts.md saw epoll + suspend/resume stall
 * in 0.9.75; poll did not.
 *
 * The URL reaches us raw (identity unescape callback): routes.c splits it
 * before decoding so "%2F" cannot create a segment and "%00" is refused.
 */
#include "server.h"

#include <errno.h>
#include <stddef.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "common/config.h"
#include "common/log.h"
#include "gateway/http/headers.h"
#include "gateway/reply.h"
#include "gateway/transcode/transcode.h"

/* After a 413 we read and drop at most this much before closing. */
#define DISCARD_MAX (1024 * 1024)

struct gw_http {
	struct MHD_Daemon *daemon;
	struct gw_upstream *up;
	struct gw_http_config cfg;
	unsigned port;
	uint64_t id_prefix;
	atomic_ullong id_counter;
	atomic_int n_requests; /* between first handler call and completion */
	atomic_int n_calls;    /* upstream calls started and not finished */
};

enum stage { STAGE_BODY, STAGE_WAIT, STAGE_DONE };

struct request {
	struct gw_http *h;
	struct MHD_Connection *conn;
	enum stage stage;
	enum gw_route_result route_rc;
	struct gw_route_match match;
	bool is_too_large;
	bool accept_charges;
	char method[8];
	char path[96]; /* for the log: printable, truncated */
	size_t body_len;
	size_t discarded;
	char body[GW_MAX_BODY];
	char request_id[GW_REQUEST_ID_SIZE];
	char client_type_as_sent[GW_CLIENT_TYPE_AS_SENT_SIZE];
	char location[GW_LOCATION_MAX];
	struct gw_call_outcome outcome;
	unsigned http_status; /* what was answered, for the log */
	struct timespec t0;
	pthread_mutex_t lock;
	bool is_suspended;
	bool is_call_done;
};

static const char *header(struct MHD_Connection *c, const char *name)
{
	return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* Queues r (takes its body) with the contract's headers. */
static enum MHD_Result send_reply(struct request *rq, struct gw_reply *r)
{
	static const char oom[] = "{\"error\":500,\"status\":\"error\"}";
	struct MHD_Response *resp;
	enum MHD_Result rc;

	if (r->body)
		resp = MHD_create_response_from_buffer(strlen(r->body), r->body,
						       MHD_RESPMEM_MUST_FREE);
	else
		resp = MHD_create_response_from_buffer(
			sizeof(oom) - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
	if (!resp) {
		gw_reply_release(r);
		return MHD_NO;
	}
	r->body = NULL; /* owned by resp now */
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				"application/json; charset=utf-8");
	MHD_add_response_header(resp, "X-Request-Id", rq->request_id);
	if (r->has_www_authenticate)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					"Bearer");
	if (r->allow)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
	if (r->http_status == 201 && rq->location[0])
		MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION,
					rq->location);
	rq->http_status = r->http_status;
	rq->stage = STAGE_DONE;
	rc = MHD_queue_response(rq->conn, r->http_status, resp);
	MHD_destroy_response(resp);
	return rc;
}

static enum MHD_Result send_error(struct request *rq, enum das_status st,
				  const char *arg)
{
	struct gw_reply r;

	gw_reply_error(&r, st, arg, das_time_now());
	if (st == DAS_METHOD_NOT_ALLOWED)
		r.allow = rq->match.allow;
	return send_reply(rq, &r);
}

static enum MHD_Result send_outcome(struct request *rq)
{
	struct gw_reply r;

	if (rq->match.rpc == GW_ROUTE_READYZ) {
		if (rq->outcome.grpc_code == DAS_GRPC_OK &&
		    rq->outcome.is_serving) {
			memset(&r, 0, sizeof(r));
			r.http_status = 200;
			r.body = gw_json_ok();
			return send_reply(rq, &r);
		}
		return send_error(rq, DAS_UNAVAILABLE, NULL);
	}
	gw_reply_from_outcome(&r, rq->match.rpc, &rq->outcome,
			      rq->client_type_as_sent, das_time_now());
	return send_reply(rq, &r);
}

static void call_done(void *arg)
{
	struct request *rq = arg;
	struct gw_http *h = rq->h;
	struct MHD_Connection *conn = rq->conn;
	bool is_resume;

	pthread_mutex_lock(&rq->lock);
	rq->is_call_done = true;
	is_resume = rq->is_suspended;
	rq->is_suspended = false;
	pthread_mutex_unlock(&rq->lock);
	/* Once resumed, MHD may answer and free rq at any moment: touch
	 * nothing of it from here on. */
	if (is_resume)
		MHD_resume_connection(conn);
	atomic_fetch_sub(&h->n_calls, 1);
}

/* Everything the gateway judges before any RPC, at the first call. */
static enum MHD_Result check_head(struct request *rq, const char *url)
{
	struct MHD_Connection *c = rq->conn;
	const char *cl = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
	unsigned long n;

	switch (rq->route_rc) {
	case GW_ROUTE_OK:
		break;
	case GW_ROUTE_NOT_FOUND:
		return send_error(rq, DAS_ROUTE_NOT_FOUND, NULL);
	case GW_ROUTE_METHOD_NOT_ALLOWED:
		return send_error(rq, DAS_METHOD_NOT_ALLOWED, NULL);
	case GW_ROUTE_BAD_REQUEST:
		return send_error(rq, DAS_INVALID_ARGUMENT, rq->match.reason);
	}
	/* Refused before a single body byte is read. */
	if (cl && das_parse_uint(cl, 0, GW_MAX_BODY, &n) != 0)
		return send_error(rq, DAS_PAYLOAD_TOO_LARGE, NULL);
	if (rq->match.rpc == GW_ROUTE_ASSIGN) {
		if (!gw_content_type_is_json(
			    header(c, MHD_HTTP_HEADER_CONTENT_TYPE)))
			return send_error(rq, DAS_UNSUPPORTED_MEDIA_TYPE, NULL);
		if (gw_parse_accept_charges(header(c, "accept-charges"),
					    &rq->accept_charges) != 0)
			return send_error(
				rq, DAS_INVALID_ARGUMENT,
				"accept-charges must be true or false");
	}
	if ((rq->match.rpc == GW_ROUTE_ASSIGN ||
	     rq->match.rpc == GW_ROUTE_UNASSIGN) &&
	    gw_location(rq->h->cfg.public_base_url,
			header(c, MHD_HTTP_HEADER_HOST), url, rq->location,
			sizeof(rq->location)) != 0)
		return send_error(rq, DAS_INVALID_ARGUMENT,
				  "missing or invalid Host header");
	return MHD_YES;
}

static void fill_call(struct request *rq, struct gw_call_request *req)
{
	const char *auth = header(rq->conn, MHD_HTTP_HEADER_AUTHORIZATION);

	memset(req, 0, sizeof(*req));
	req->rpc = rq->match.rpc;
	req->account = rq->match.has_account ? rq->match.account : "";
	req->tenant = rq->match.tenant;
	req->user = rq->match.user;
	req->device = rq->match.device;
	req->accept_charges = rq->accept_charges;
	req->request_id = rq->request_id;
	/* Unforwardable values are dropped: the service then answers 401. */
	if (rq->match.rpc != GW_ROUTE_READYZ &&
	    gw_authorization_is_forwardable(auth, GW_AUTHORIZATION_MAX))
		req->authorization = auth;
}

/* The whole request is in: decide locally or call upstream. */
static enum MHD_Result on_complete(struct request *rq)
{
	struct gw_call_request req;
	enum MHD_Result rc;
	int client_type = DAS_CLIENT_NONE;

	if (rq->is_too_large)
		return send_error(rq, DAS_PAYLOAD_TOO_LARGE, NULL);
	if (rq->match.rpc == GW_ROUTE_HEALTHZ) {
		struct gw_reply r = {.http_status = 200, .body = gw_json_ok()};
		return send_reply(rq, &r);
	}
	if (rq->match.rpc == GW_ROUTE_ASSIGN) {
		const char *why = NULL;
		if (gw_body_decode_assign(rq->body, rq->body_len, &client_type,
					  rq->client_type_as_sent, &why) != 0)
			return send_error(rq, DAS_INVALID_ARGUMENT, why);
	}
	fill_call(rq, &req);
	req.client_type = client_type;
	if (rq->h->cfg.is_blocking) {
		gw_upstream_call(rq->h->up, &req, &rq->outcome);
		return send_outcome(rq);
	}
	pthread_mutex_lock(&rq->lock);
	atomic_fetch_add(&rq->h->n_calls, 1);
	if (gw_upstream_start(rq->h->up, &req, &rq->outcome, call_done, rq) !=
	    0) {
		atomic_fetch_sub(&rq->h->n_calls, 1);
		pthread_mutex_unlock(&rq->lock);
		return send_error(rq, DAS_INTERNAL, NULL);
	}
	rq->stage = STAGE_WAIT;
	if (!rq->is_call_done) {
		MHD_suspend_connection(rq->conn);
		rq->is_suspended = true;
	}
	rc = MHD_YES;
	pthread_mutex_unlock(&rq->lock);
	return rc;
}

static void take_body(struct request *rq, const char *data, size_t len)
{
	if (rq->is_too_large || rq->body_len + len > GW_MAX_BODY) {
		rq->is_too_large = true;
		rq->discarded += len;
		return;
	}
	/* Only assign reads its body; the others ignore theirs. */
	if (rq->match.rpc == GW_ROUTE_ASSIGN)
		memcpy(rq->body + rq->body_len, data, len);
	rq->body_len += len;
}

static char printable(char c)
{
	return c > 0x20 && c < 0x7f ? c : '?';
}

static struct request *request_new(struct gw_http *h,
				   struct MHD_Connection *conn, const char *url,
				   const char *method)
{
	struct request *rq = malloc(sizeof(*rq));
	const char *rid;

	if (!rq)
		return NULL;
	/* The body buffer is written before it is read: skip clearing it. */
	memset(rq, 0, offsetof(struct request, body));
	memset(&rq->request_id, 0,
	       sizeof(*rq) - offsetof(struct request, request_id));
	rq->h = h;
	rq->conn = conn;
	clock_gettime(CLOCK_MONOTONIC, &rq->t0);
	pthread_mutex_init(&rq->lock, NULL);
	for (size_t i = 0; i < sizeof(rq->method) - 1 && method[i]; i++)
		rq->method[i] = printable(method[i]);
	for (size_t i = 0; i < sizeof(rq->path) - 1 && url[i]; i++)
		rq->path[i] = printable(url[i]);
	rid = header(conn, "X-Request-Id");
	if (gw_request_id_is_valid(rid))
		snprintf(rq->request_id, sizeof(rq->request_id), "%s", rid);
	else
		gw_request_id_make(h->id_prefix,
				   atomic_fetch_add(&h->id_counter, 1),
				   rq->request_id);
	rq->route_rc = gw_route_match(method, url, strlen(url), &rq->match);
	atomic_fetch_add(&h->n_requests, 1);
	return rq;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct gw_http *h = cls;
	struct request *rq = *con_cls;

	if (!rq) {
		rq = request_new(h, conn, url, method);
		if (!rq)
			return MHD_NO;
		*con_cls = rq;
		return check_head(rq, url);
	}
	if (rq->stage == STAGE_DONE) {
		/* Answered early (413, 415...): drop what still arrives. */
		rq->discarded += *upload_data_size;
		*upload_data_size = 0;
		return rq->discarded > DISCARD_MAX ? MHD_NO : MHD_YES;
	}
	if (*upload_data_size > 0) {
		take_body(rq, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return rq->discarded > DISCARD_MAX ? MHD_NO : MHD_YES;
	}
	if (rq->stage == STAGE_WAIT)
		return send_outcome(rq);
	return on_complete(rq);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct gw_http *h = cls;
	struct request *rq = *con_cls;
	struct timespec t1;

	if (!rq)
		return;
	*con_cls = NULL;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	das_log(DAS_LOG_INFO, "http %s %s %u rid=%s %.3fms%s", rq->method,
		rq->path, rq->http_status, rq->request_id,
		(double)(t1.tv_sec - rq->t0.tv_sec) * 1e3 +
			(double)(t1.tv_nsec - rq->t0.tv_nsec) / 1e6,
		toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (aborted)");
	pthread_mutex_destroy(&rq->lock);
	free(rq);
	atomic_fetch_sub(&h->n_requests, 1);
}

/* Leaves the URL exactly as sent: routes.c decodes it segment by segment. */
static size_t keep_url_raw(void *cls, struct MHD_Connection *c, char *s)
{
	return strlen(s);
}

/* Splits "host:port" / "[v6]:port" and resolves it numerically. */
static int parse_listen(const char *addr, struct sockaddr_storage *ss,
			socklen_t *len, char *err, size_t err_size)
{
	char host[256];
	const char *colon, *port, *hs = addr;
	size_t hl;
	struct addrinfo hints, *res = NULL;
	int rc;

	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');
		if (!close || close[1] != ':')
			goto bad;
		hs = addr + 1;
		hl = (size_t)(close - hs);
		port = close + 2;
	} else {
		colon = strrchr(addr, ':');
		if (!colon)
			goto bad;
		hl = (size_t)(colon - addr);
		port = colon + 1;
	}
	if (hl == 0 || hl >= sizeof(host) || !*port)
		goto bad;
	memcpy(host, hs, hl);
	host[hl] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0 || !res) {
		snprintf(err, err_size, "cannot resolve --listen %s: %s", addr,
			 gai_strerror(rc));
		return -1;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
bad:
	snprintf(err, err_size, "--listen %s: expected HOST:PORT", addr);
	return -1;
}

struct gw_http *gw_http_start(const struct gw_http_config *cfg,
			      struct gw_upstream *up, char *err,
			      size_t err_size)
{
	struct gw_http *h = calloc(1, sizeof(*h));
	struct sockaddr_storage ss;
	socklen_t sl;
	unsigned flags =
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC;
	const union MHD_DaemonInfo *info;

	if (!h) {
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	h->cfg = *cfg;
	h->up = up;
	if (getrandom(&h->id_prefix, sizeof(h->id_prefix), 0) !=
	    (ssize_t)sizeof(h->id_prefix))
		h->id_prefix = (uint64_t)time(NULL) ^ (uint64_t)getpid();
	if (parse_listen(cfg->listen, &ss, &sl, err, err_size) != 0)
		goto fail;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (!cfg->is_blocking)
		flags |= MHD_ALLOW_SUSPEND_RESUME;
	h->daemon = MHD_start_daemon(
		flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR,
		(struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE,
		cfg->threads, MHD_OPTION_CONNECTION_LIMIT,
		cfg->connection_limit, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
		cfg->per_ip_connection_limit, MHD_OPTION_CONNECTION_TIMEOUT,
		cfg->connection_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		cfg->connection_memory_limit, MHD_OPTION_NOTIFY_COMPLETED,
		on_completed, h, MHD_OPTION_STRICT_FOR_CLIENT, 1,
		MHD_OPTION_UNESCAPE_CALLBACK, keep_url_raw, NULL,
		MHD_OPTION_END);
	if (!h->daemon) {
		snprintf(err, err_size, "cannot listen on %s: %s", cfg->listen,
			 strerror(errno));
		goto fail;
	}
	info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
	h->port = info ? info->port : 0;
	return h;
fail:
	free(h);
	return NULL;
}

unsigned gw_http_port(const struct gw_http *h)
{
	return h->port;
}

void gw_http_stop(struct gw_http *h, int drain_ms)
{
	struct timespec pause = {0, 10 * 1000 * 1000};
	int waited = 0;

	if (!h)
		return;
	MHD_quiesce_daemon(h->daemon);
	/* Requests already read get their answer; the upstream deadline
	 * bounds every call, so this ends. */
	while ((atomic_load(&h->n_calls) > 0 ||
		atomic_load(&h->n_requests) > 0) &&
	       waited < drain_ms) {
		nanosleep(&pause, NULL);
		waited += 10;
	}
	/* A suspended connection must not reach MHD_stop_daemon. */
	while (atomic_load(&h->n_calls) > 0)
		nanosleep(&pause, NULL);
	MHD_stop_daemon(h->daemon);
	free(h);
}
