#include "server.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include <zlib.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "common/log.h"
#include "core_tune.h"
#include "observe.h"
#include "service/grpc/accept_guard.h"
#include "service/grpc/flood_guard.h"
#include "service/grpc/health.h"
#include "service/grpc/streams.h"
#include "service/grpc/reflection.h"

/* Requested calls kept outstanding per method and worker thread. */
#define CALLS_PER_METHOD 4
/* A call's bytes on the wire beyond its headers and message: HTTP/2 frame
 * headers, pseudo-headers, the message's 5-byte prefix, TLS records. */
#define CALL_FRAMING_BYTES 512
/* Metadata we accept: room for an 8 KiB token plus the usual headers. */
#define MAX_METADATA_BYTES (16 * 1024)
#define HANDSHAKE_TIMEOUT_MS 10000
#define MEMORY_QUOTA_BYTES (256 * 1024 * 1024)
/*
 * Streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_
 * STREAMS; core 1.51 refuses a stream past it). gRPC's default is unlimited,
 * and each open stream holds a call: 50,000 open streams on one connection
 * took over 1 GB.
 */
#define MAX_STREAMS_PER_CONNECTION 100
/* Events a worker takes off its queue at most before it runs the next
 * call of a busy connection (see worker_main). */
#define EVENTS_PER_CALL 64
/* At shutdown, how long calls handed to the store may still take to end
 * once the store was cut (store_cut: a PostgreSQL thread that was
 * connecting meets the cut within its 5 s connect_timeout). */
#define HELD_CALLS_WAIT_MS 10000

struct worker {
	struct server *srv;
	grpc_completion_queue *cq; /* srv->cq, or srv->drain_cq for the last */
	pthread_t thread;
	bool is_started;
	/* Calls of busy connections taken, not yet handled (flood_guard.h). */
	struct call *waiting, *waiting_tail;
};

struct server {
	struct server_config cfg;
	grpc_server *server;
	void *methods[DAS_RPC__COUNT];
	struct worker *workers;
	unsigned n_workers;
	/*
	 * One completion queue for every worker thread. gRPC's epoll poller
	 * hands a call to a thread waiting on the call's queue: with a queue
	 * per worker, the thread that read the call off the socket was rarely
	 * the one whose queue it matched, so most calls cost a wake-up of
	 * another thread, and a call waited behind a busy worker while others
	 * idled. With one queue the thread that polled finds the call on its
	 * own queue and runs it, and any free worker takes the next one.
	 */
	grpc_completion_queue *cq;
	/*
	 * The queue of one more worker (the last of workers[]) that never
	 * polls, so a flood can never hold it. A thread waiting on srv->cq
	 * is also gRPC's poller: it reads a socket and parses what arrived
	 * before it returns, and while a client keeps sending it keeps
	 * reading that connection in the same turn (core reads again at
	 * once while the kernel says more is queued). A rapid-reset flood
	 * over as many connections as there are workers held every worker
	 * there at once: nobody took a call, the flood's calls piled up in
	 * core (3 GB), the guard saw none of them, and no socket of a
	 * normal client was read. The worker on this queue (GRPC_CQ_NON_
	 * POLLING: its wait is a condition variable, no I/O) takes calls
	 * core could not give to srv->cq's requests (core offers a new call
	 * to srv->cq first, so it sees calls only when those workers are
	 * behind); dropping a flooder's calls touches that connection's
	 * state, and core then hands the held worker's parsing on to its
	 * executor threads, which frees the worker.
	 */
	grpc_completion_queue *drain_cq;
	/*
	 * The queue every unary call is bound to: its reply batch completes
	 * by running reply_done() where the batch ends, usually in the thread
	 * that sent it, instead of as an event that wakes a sleeping worker
	 * only to free the call.
	 */
	grpc_completion_queue *reply_cq;
	grpc_completion_queue_functor reply_cq_down;
	/* Reply batches started, their reply_done() not yet returned: core
	 * may run it on its executor after the queue reported its shutdown. */
	atomic_int n_replying;
	pthread_mutex_t reply_mu;
	pthread_cond_t reply_cv;
	bool is_reply_cq_down;
	grpc_completion_queue *shutdown_cq;
	grpc_resource_quota *quota;
	struct reflection *reflection; /* its own queue and thread */
	atomic_int n_active; /* calls delivered to a worker, not yet freed */
	bool is_drained;     /* server_drain() has run */
	struct streams *streams; /* Health/Watch and other long-lived calls */
	struct health *health;
	struct flood_guard *guard; /* closes rapid-reset connections */
};

/*
 * One call's life: requested (waiting for a caller), then replying (the
 * reply batch in flight). The same struct is the tag of both steps.
 */
enum call_phase { CALL_REQUESTED, CALL_REPLYING, CALL_UNKNOWN_METHOD };

/*
 * The access line and count of a call that came without its request
 * message, kept until its answer's batch completes. Core hands such a
 * call over when the client half-closed without a message, and also when
 * the stream was reset before the message came (a client's RST_STREAM, or
 * a stream error that made core reset it); only the batch's `cancelled`
 * tells the two apart, so the line is written then (call_free): the
 * answer's own code, or CANCELLED when nobody received it.
 */
struct call_end {
	int grpc_code;
	const char *reason; /* static: the status row's */
	char sub[DOMAIN_SUB_SIZE];
};

struct call {
	grpc_completion_queue_functor done; /* the reply batch's tag */
	enum call_phase phase;
	enum das_rpc_method method;
	struct worker *w;
	grpc_call *call;
	gpr_timespec deadline;
	int64_t deadline_ms; /* CLOCK_MONOTONIC ms, 0 for none (call_take) */
	grpc_metadata_array md;
	grpc_byte_buffer *payload;
	grpc_call_details details; /* unregistered methods only */
	bool has_details;          /* details initialised, to be destroyed */
	/* reply resources, alive until the batch completes */
	grpc_byte_buffer *reply;
	grpc_slice status_text;
	grpc_metadata trailer;
	bool has_trailer;
	int is_cancelled;
	bool is_active; /* counted in srv->n_active */
	bool is_admitted; /* counted by the flood guard */
	bool is_answered; /* its answer started: no longer unanswered there */
	struct flood_peer peer; /* its connection */
	struct flood_ticket ticket; /* the guard's, while admitted */
	struct call *next_waiting;
	uint64_t t0; /* obs_call_begin */
	struct call_end *end; /* its access line, still to be written */
};

static void request_id_of(const struct call *c, const char **value,
			  size_t *len);

/* Writes the access line that waited for the batch (struct call_end). */
static void call_end_log(struct call *c)
{
	const char *rid;
	size_t rid_len;
	bool is_reset = c->is_cancelled && c->phase == CALL_REPLYING;

	request_id_of(c, &rid, &rid_len);
	obs_call_end(c->method, c->t0,
		     is_reset ? GRPC_STATUS_CANCELLED : c->end->grpc_code,
		     is_reset ? "" : c->end->reason, rid, rid_len,
		     c->end->sub);
	free(c->end);
	c->end = NULL;
}

static void call_free(struct call *c)
{
	if (!c)
		return;
	if (c->end)
		call_end_log(c);
	if (c->is_active)
		atomic_fetch_sub(&c->w->srv->n_active, 1);
	if (c->is_admitted)
		flood_guard_release(c->w->srv->guard, &c->peer, &c->ticket,
				    c->is_cancelled);
	grpc_metadata_array_destroy(&c->md);
	if (c->has_details)
		grpc_call_details_destroy(&c->details);
	if (c->payload)
		grpc_byte_buffer_destroy(c->payload);
	if (c->reply)
		grpc_byte_buffer_destroy(c->reply);
	if (c->phase != CALL_REQUESTED)
		grpc_slice_unref(c->status_text);
	if (c->has_trailer)
		grpc_slice_unref(c->trailer.value);
	if (c->call)
		grpc_call_unref(c->call);
	free(c);
}

static int request_registered(struct worker *w, enum das_rpc_method method)
{
	struct call *c = calloc(1, sizeof(*c));
	grpc_call_error err;

	if (!c)
		return -1;
	c->phase = CALL_REQUESTED;
	c->method = method;
	c->w = w;
	grpc_metadata_array_init(&c->md);
	err = grpc_server_request_registered_call(
		w->srv->server, w->srv->methods[method], &c->call, &c->deadline,
		&c->md, &c->payload, w->srv->reply_cq, w->cq, c);
	if (err != GRPC_CALL_OK) {
		call_free(c);
		return -1;
	}
	return 0;
}

/* Calls to methods we do not serve still need an answer: UNIMPLEMENTED. */
static int request_unknown(struct worker *w)
{
	struct call *c = calloc(1, sizeof(*c));
	grpc_call_error err;

	if (!c)
		return -1;
	c->phase = CALL_UNKNOWN_METHOD;
	c->w = w;
	grpc_metadata_array_init(&c->md);
	grpc_call_details_init(&c->details);
	c->has_details = true;
	err = grpc_server_request_call(w->srv->server, &c->call, &c->details,
				       &c->md, w->srv->reply_cq, w->cq, c);
	if (err != GRPC_CALL_OK) {
		call_free(c);
		return -1;
	}
	return 0;
}

/*
 * The bytes of an uncompressed payload, without a copy where it can: a
 * message that arrived in one slice (a small unary request does) is read
 * where it lies, in the byte buffer the call keeps until it is freed;
 * otherwise its slices are joined once into *joined (unref'd by the
 * caller). NULL when the reader cannot be made.
 */
static const uint8_t *payload_view(grpc_byte_buffer *bb, grpc_slice *joined,
				   size_t *len)
{
	grpc_slice_buffer *sb = &bb->data.raw.slice_buffer;
	grpc_byte_buffer_reader reader;

	*joined = grpc_empty_slice();
	if (sb->count == 1) {
		*len = GRPC_SLICE_LENGTH(sb->slices[0]);
		return GRPC_SLICE_START_PTR(sb->slices[0]);
	}
	if (!grpc_byte_buffer_reader_init(&reader, bb))
		return NULL;
	*joined = grpc_byte_buffer_reader_readall(&reader);
	grpc_byte_buffer_reader_destroy(&reader);
	*len = GRPC_SLICE_LENGTH(*joined);
	return GRPC_SLICE_START_PTR(*joined);
}

/* Copies an uncompressed payload out of its byte buffer. */
static uint8_t *payload_plain(grpc_byte_buffer *bb, size_t *len)
{
	grpc_byte_buffer_reader reader;
	grpc_slice all;
	uint8_t *out;

	if (!grpc_byte_buffer_reader_init(&reader, bb))
		return NULL;
	all = grpc_byte_buffer_reader_readall(&reader);
	grpc_byte_buffer_reader_destroy(&reader);
	*len = GRPC_SLICE_LENGTH(all);
	out = malloc(*len ? *len : 1);
	if (out && *len)
		memcpy(out, GRPC_SLICE_START_PTR(all), *len);
	grpc_slice_unref(all);
	return out;
}

/*
 * Inflates a gzip or deflate payload into a buffer of DAS_RPC_MAX_MESSAGE
 * bytes and never past it: per-message decompression is off in core (it
 * inflates a whole message before any size check), so a small compressed
 * "bomb" costs us 64 KiB, not its inflated size. Returns DAS_OK with
 * *out (malloc'd) and *len, DAS_PAYLOAD_TOO_LARGE when the message inflates
 * past the limit, DAS_INVALID_ARGUMENT (detail set) when it is corrupt or
 * uses another algorithm, DAS_INTERNAL when out of memory.
 */
static enum das_status payload_inflate(grpc_byte_buffer *bb, uint8_t **out,
				       size_t *len, char *detail,
				       size_t detail_size)
{
	grpc_slice_buffer *in = &bb->data.raw.slice_buffer;
	enum das_status result = DAS_INTERNAL;
	z_stream z;
	uint8_t *buf;
	int window;
	int zr = Z_OK;

	*out = NULL;
	*len = 0;
	switch (bb->data.raw.compression) {
	case GRPC_COMPRESS_GZIP:
		window = 15 + 16;
		break;
	case GRPC_COMPRESS_DEFLATE:
		window = 15;
		break;
	default:
		snprintf(detail, detail_size,
			 "unsupported message compression; use gzip, deflate "
			 "or none");
		return DAS_INVALID_ARGUMENT;
	}
	/* One byte more than allowed: filling it means "too large". */
	buf = malloc(DAS_RPC_MAX_MESSAGE + 1);
	if (!buf)
		return DAS_INTERNAL;
	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, window) != Z_OK) {
		free(buf);
		return DAS_INTERNAL;
	}
	z.next_out = buf;
	z.avail_out = DAS_RPC_MAX_MESSAGE + 1;
	for (size_t i = 0; i < in->count && zr != Z_STREAM_END; i++) {
		z.next_in = GRPC_SLICE_START_PTR(in->slices[i]);
		z.avail_in = (uInt)GRPC_SLICE_LENGTH(in->slices[i]);
		while (z.avail_in > 0 && z.avail_out > 0) {
			zr = inflate(&z, Z_NO_FLUSH);
			if (zr == Z_STREAM_END)
				break;
			if (zr != Z_OK) {
				result = zr == Z_MEM_ERROR
						 ? DAS_INTERNAL
						 : DAS_INVALID_ARGUMENT;
				snprintf(detail, detail_size,
					 "malformed compressed message");
				goto done;
			}
		}
		if (z.avail_out == 0)
			break;
	}
	if (z.avail_out == 0) {
		result = DAS_PAYLOAD_TOO_LARGE;
		goto done;
	}
	if (zr != Z_STREAM_END) {
		result = DAS_INVALID_ARGUMENT;
		snprintf(detail, detail_size, "malformed compressed message");
		goto done;
	}
	*len = z.total_out;
	*out = buf;
	buf = NULL;
	result = DAS_OK;
done:
	inflateEnd(&z);
	free(buf);
	return result;
}

enum das_status server_payload_bytes(grpc_byte_buffer *bb, uint8_t **out,
				     size_t *len, char *detail,
				     size_t detail_size)
{
	if (bb->data.raw.compression != GRPC_COMPRESS_NONE)
		return payload_inflate(bb, out, len, detail, detail_size);
	*out = payload_plain(bb, len);
	return *out ? DAS_OK : DAS_INTERNAL;
}

/* The first entry of key (value NULL when none); returns how many there are. */
static size_t find_meta(const grpc_metadata_array *md, const char *key,
			const char **value, size_t *len)
{
	size_t n = 0;

	*value = NULL;
	*len = 0;
	for (size_t i = 0; i < md->count; i++) {
		if (grpc_slice_str_cmp(md->metadata[i].key, key) != 0)
			continue;
		if (n++ == 0) {
			*value = (const char *)GRPC_SLICE_START_PTR(
				md->metadata[i].value);
			*len = GRPC_SLICE_LENGTH(md->metadata[i].value);
		}
	}
	return n;
}

/*
 * The request id of a call: x-request-id when it is sent once. Two are as
 * good as none (the gateway's rule for two X-Request-Id lines): neither
 * reaches the ledger or the logs.
 */
static void request_id_of(const struct call *c, const char **value,
			  size_t *len)
{
	if (find_meta(&c->md, "x-request-id", value, len) > 1) {
		*value = NULL;
		*len = 0;
	}
}

/* reply_cq is shut down and its last reply batch is over. */
static void reply_cq_down(grpc_completion_queue_functor *f, int ok)
{
	struct server *srv = (struct server *)((char *)f -
					       offsetof(struct server,
							reply_cq_down));
	(void)ok;
	pthread_mutex_lock(&srv->reply_mu);
	srv->is_reply_cq_down = true;
	pthread_cond_signal(&srv->reply_cv);
	pthread_mutex_unlock(&srv->reply_mu);
}

/* The reply batch is over (sent, or failed): so is the call. */
static void reply_done(grpc_completion_queue_functor *f, int ok)
{
	struct call *c = (struct call *)((char *)f - offsetof(struct call, done));
	struct server *srv = c->w->srv;

	(void)ok;
	call_free(c);
	atomic_fetch_sub(&srv->n_replying, 1); /* srv may go after this */
}

static void send_reply(struct call *c, grpc_status_code code,
		       const char *message, const char *reason,
		       const uint8_t *body, size_t body_len)
{
	grpc_op ops[4];
	size_t n = 0;

	memset(ops, 0, sizeof(ops));
	c->phase = CALL_REPLYING;
	/* Answered: the guard counts it unanswered no longer. */
	if (c->is_admitted && !c->is_answered) {
		flood_guard_answered(c->w->srv->guard, &c->peer, &c->ticket);
		c->is_answered = true;
	}
	c->status_text = grpc_slice_from_copied_string(message);

	ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[n].data.send_initial_metadata.count = 0;
	n++;
	if (code == GRPC_STATUS_OK && body) {
		grpc_slice s = grpc_slice_from_copied_buffer(
			(const char *)body, body_len);
		c->reply = grpc_raw_byte_buffer_create(&s, 1);
		grpc_slice_unref(s);
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n].data.send_message.send_message = c->reply;
		n++;
	}
	/* Rows without a reason (Health's NOT_FOUND) send no details. */
	if (code != GRPC_STATUS_OK && reason && *reason) {
		size_t len = 0;
		uint8_t *bin = das_status_details_pack((int)code, message,
						       reason, &len);
		if (bin) {
			c->trailer.key = grpc_slice_from_static_string(
				DAS_STATUS_DETAILS_KEY);
			c->trailer.value = grpc_slice_from_copied_buffer(
				(const char *)bin, len);
			c->has_trailer = true;
			free(bin);
		}
	}
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = code;
	ops[n].data.send_status_from_server.status_details = &c->status_text;
	ops[n].data.send_status_from_server.trailing_metadata_count =
		c->has_trailer ? 1 : 0;
	ops[n].data.send_status_from_server.trailing_metadata =
		c->has_trailer ? &c->trailer : NULL;
	n++;
	ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[n].data.recv_close_on_server.cancelled = &c->is_cancelled;
	n++;

	c->done.functor_run = reply_done;
	c->done.inlineable = 1;
	atomic_fetch_add(&c->w->srv->n_replying, 1);
	if (grpc_call_start_batch(c->call, ops, n, &c->done, NULL) !=
	    GRPC_CALL_OK) {
		struct server *srv = c->w->srv;

		das_log(DAS_LOG_ERROR, "grpc: could not start the reply batch");
		call_free(c);
		atomic_fetch_sub(&srv->n_replying, 1);
	}
}

/*
 * A WARN line for a call that failed on our side (INTERNAL, UNAVAILABLE),
 * at most one a second: while a database is down every call fails, and a
 * line for each (beside its access line) wrote thousands a second. The
 * access lines and the counters still have every call.
 */
static void warn_failed(const char *path, const char *status,
			const char *rid, size_t rid_len)
{
	static struct das_log_limit limit;
	unsigned n_held;

	if (!das_log_is_enabled(DAS_LOG_WARN) ||
	    !das_log_limit_take(&limit, 1000, &n_held))
		return;
	if (n_held)
		das_log(DAS_LOG_WARN,
			"%s request-id=%.*s: %s (and %u more failed calls "
			"since the last such line)",
			path, (int)(rid_len > 64 ? 64 : rid_len),
			rid ? rid : "", status, n_held);
	else
		das_log(DAS_LOG_WARN, "%s request-id=%.*s: %s", path,
			(int)(rid_len > 64 ? 64 : rid_len), rid ? rid : "",
			status);
}

/* Logs, counts and sends the answer of a handled call. */
static void call_answer(struct call *c, const struct handler_reply *reply,
			const char *rid, size_t rid_len)
{
	const struct das_rpc_method_info *info = das_rpc_method(c->method);
	const struct das_status_row *row = das_status_row(reply->status);

	if (reply->status == DAS_INTERNAL || reply->status == DAS_UNAVAILABLE ||
	    reply->status == DAS_STORE_UNAVAILABLE)
		warn_failed(info->path, row->name, rid, rid_len);
	/* Without a request message: logged once the batch says whether
	 * the client is still there (struct call_end). */
	if (!c->payload && (c->end = malloc(sizeof(*c->end))) != NULL) {
		c->end->grpc_code = row->grpc_code;
		c->end->reason = reply->status == DAS_OK ? "" : row->reason;
		snprintf(c->end->sub, sizeof(c->end->sub), "%s", reply->sub);
	}
	/* Before the reply: a failed batch frees c and its metadata. */
	if (!c->end)
		obs_call_end(c->method, c->t0, row->grpc_code,
			     reply->status == DAS_OK ? "" : row->reason, rid,
			     rid_len, reply->sub);
	send_reply(c, (grpc_status_code)row->grpc_code,
		   reply->status == DAS_OK ? "" : reply->message,
		   reply->status == DAS_OK ? NULL : row->reason, reply->body,
		   reply->body_len);
}

/* An answer that came after its handler returned (a durable write whose
 * group commit another worker ran): sent from that worker. */
static void call_answer_later(void *ctx, struct handler_reply *reply)
{
	struct call *c = ctx;
	const char *rid;
	size_t rid_len;

	request_id_of(c, &rid, &rid_len);
	call_answer(c, reply, rid, rid_len);
}

/* A call's deadline as handler_meta has it: CLOCK_MONOTONIC in ms, 0 for
 * none (core's clock may be another one: the time left is what counts). */
static int64_t deadline_ms_of(gpr_timespec deadline)
{
	struct timespec now;

	if (gpr_time_cmp(deadline, gpr_inf_future(deadline.clock_type)) == 0)
		return 0;
	int64_t left = gpr_time_to_millis(
		gpr_time_sub(deadline, gpr_now(deadline.clock_type)));
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 +
	       (left > 0 ? left : 0);
}

static void handle_call(struct call *c)
{
	const struct handler_env *env = &c->w->srv->cfg.env;
	struct handler_meta meta;
	struct handler_reply reply;
	uint8_t *inflated = NULL;
	const uint8_t *req = NULL;
	size_t req_len = 0;
	grpc_slice joined = grpc_empty_slice();

	c->t0 = obs_call_begin(c->method);
	/* Two credentials are ambiguous, whichever would win: refused. */
	meta.has_duplicate_authorization =
		find_meta(&c->md, "authorization", &meta.authorization,
			  &meta.authorization_len) > 1;
	request_id_of(c, &meta.request_id, &meta.request_id_len);
	meta.deadline_ms = c->deadline_ms;
	meta.payload_status = DAS_OK;
	meta.payload_detail[0] = '\0';
	if (c->payload &&
	    c->payload->data.raw.compression != GRPC_COMPRESS_NONE) {
		meta.payload_status = payload_inflate(
			c->payload, &inflated, &req_len, meta.payload_detail,
			sizeof(meta.payload_detail));
		req = inflated;
	} else if (c->payload) {
		req = payload_view(c->payload, &joined, &req_len);
		if (!req)
			meta.payload_status = DAS_INTERNAL;
	}
	handlers_dispatch(env, c->method, &meta, req, req_len, &reply,
			  call_answer_later, c);
	free(inflated);
	grpc_slice_unref(joined);
	if (reply.is_later)
		return; /* c may be answered and gone already */
	call_answer(c, &reply, meta.request_id, meta.request_id_len);
	handlers_reply_release(&reply);
}

static void reply_unknown(struct call *c)
{
	const char *rid;
	size_t rid_len;

	request_id_of(c, &rid, &rid_len);
	obs_call_unknown(rid, rid_len);
	send_reply(c, GRPC_STATUS_UNIMPLEMENTED, "unknown method", NULL, NULL,
		   0);
}

/*
 * A call of a connection closed for rapid reset: dropped unanswered,
 * without running its handler (see flood_guard.h). grpc_call_unref
 * cancels it with a bare CANCELLED. Not grpc_call_cancel_with_status: its
 * error carries a message and a status, which core's HTTP/2 transport
 * converts to and from a protobuf for every stream it closes; a flood
 * drains as fast as these drops go, and with that cost 4 x 50,000 reset
 * streams outran the workers (3.7 GB, normal calls timing out) where the
 * bare cancel keeps up (130-280 MB, measured).
 */
static void call_drop(struct call *c)
{
	call_free(c);
}

static void run_call(struct call *c)
{
	if (c->phase == CALL_UNKNOWN_METHOD)
		reply_unknown(c);
	else
		handle_call(c);
}

/*
 * The most a call can have taken on the wire, for the guard's count of a
 * connection's bytes (flood_guard.h): its headers as decoded (HPACK only
 * makes them smaller), its method, its message as received, and the
 * framing and TLS records around them.
 */
static size_t call_wire_bytes(const struct call *c)
{
	size_t n = CALL_FRAMING_BYTES;

	for (size_t i = 0; i < c->md.count; i++)
		n += GRPC_SLICE_LENGTH(c->md.metadata[i].key) +
		     GRPC_SLICE_LENGTH(c->md.metadata[i].value) + 32;
	if (c->has_details)
		n += GRPC_SLICE_LENGTH(c->details.method) +
		     GRPC_SLICE_LENGTH(c->details.host);
	else
		n += strlen(das_rpc_method(c->method)->path);
	if (c->payload) {
		size_t len = grpc_byte_buffer_length(c->payload);
		n += len + len / 64;
	}
	return n;
}

/* A new call: counted against its connection; runs now, or waits when
 * its connection is busy. */
static void call_take(struct worker *w, struct call *c)
{
	c->deadline_ms = deadline_ms_of(c->deadline);
	enum flood_verdict v =
		flood_guard_admit(w->srv->guard, c->call, call_wire_bytes(c),
				  c->deadline_ms, &c->peer, &c->ticket);
	if (v == FLOOD_DROP) {
		call_drop(c);
		return;
	}
	c->is_admitted = true;
	if (v == FLOOD_QUIET) {
		run_call(c);
		return;
	}
	if (w->waiting_tail)
		w->waiting_tail->next_waiting = c;
	else
		w->waiting = c;
	w->waiting_tail = c;
}

static void run_waiting(struct worker *w)
{
	struct call *c = w->waiting;

	w->waiting = c->next_waiting;
	if (!w->waiting)
		w->waiting_tail = NULL;
	if (flood_guard_is_closed(w->srv->guard, &c->peer))
		call_drop(c);
	else
		run_call(c);
}

/*
 * A call of a quiet connection runs as soon as it is taken. The calls of
 * a busy one (flood_guard.h) wait until the worker has taken every event
 * that is ready (up to EVENTS_PER_CALL): a flood of reset streams then
 * piles up open calls and gets its connection closed as it arrives,
 * instead of once the workers have worked through a queue of calls
 * nobody waits for, and it delays only itself.
 */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned n_taken = 0;

	/* Access lines are buffered and written by the log's flusher
	 * thread: a deadline on the wait below would cost a timer per
	 * wait. */
	das_log_thread_buffer_background();
	for (;;) {
		if (w->waiting && n_taken >= EVENTS_PER_CALL) {
			run_waiting(w);
			n_taken = 0;
			continue;
		}
		grpc_event ev = grpc_completion_queue_next(
			w->cq,
			w->waiting ? gpr_inf_past(GPR_CLOCK_MONOTONIC)
				   : gpr_inf_future(GPR_CLOCK_REALTIME),
			NULL);
		if (ev.type == GRPC_QUEUE_TIMEOUT && !w->waiting)
			continue;
		if (ev.type == GRPC_QUEUE_TIMEOUT && w->waiting) {
			run_waiting(w);
			n_taken = 0;
			continue;
		}
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		n_taken++;
		struct call *c = ev.tag;
		if (ev.success) {
			c->is_active = true;
			atomic_fetch_add(&w->srv->n_active, 1);
		}
		if (!ev.success) {
			/* A request cancelled by shutdown, or a failed
			 * reply: either way this call is over. */
			call_free(c);
			continue;
		}
		switch (c->phase) {
		case CALL_REQUESTED:
			/* Keep the queue armed before doing the work. */
			request_registered(w, c->method);
			call_take(w, c);
			break;
		case CALL_UNKNOWN_METHOD:
			request_unknown(w);
			c->deadline = c->details.deadline;
			call_take(w, c);
			break;
		case CALL_REPLYING: /* on reply_cq, never here */
			break;
		}
	}
	/* Calls still waiting (none unless the grace ran out): their queue
	 * is shut down, so no reply can be sent any more. */
	while (w->waiting) {
		struct call *c = w->waiting;
		w->waiting = c->next_waiting;
		call_free(c);
	}
	das_log_thread_flush();
	return NULL;
}

/*
 * Core reports only that it could not bind. Binding the address ourselves
 * (as core does, SO_REUSEADDR and no SO_REUSEPORT) tells why, e.g.
 * EADDRINUSE. Returns that errno, or 0 when it cannot tell.
 */
static int listen_errno(const char *listen)
{
	char host[256];
	const char *colon = strrchr(listen, ':');
	const char *h = listen;
	size_t hl;
	struct addrinfo hints, *res = NULL;
	int why = 0;

	if (!colon)
		return 0;
	hl = (size_t)(colon - listen);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(host))
		return 0;
	memcpy(host, h, hl);
	host[hl] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
	if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
		return 0;
	for (struct addrinfo *a = res; a && !why; a = a->ai_next) {
		int one = 1;
		int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC,
				a->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, a->ai_addr, a->ai_addrlen) != 0)
			why = errno;
		close(fd);
	}
	freeaddrinfo(res);
	return why;
}

static grpc_arg int_arg(const char *key, int value)
{
	grpc_arg a = {.type = GRPC_ARG_INTEGER, .key = (char *)key};

	a.value.integer = value;
	return a;
}

/*
 * The gRPC server and its methods, with the limits every connection gets.
 * The idle limit comes last: with none, core leaves out the filter that
 * keeps it, which otherwise runs for every call (~4 k instructions, 4 %
 * of an idempotent AssignDevice; docs/performance-history.md).
 */
static grpc_server *core_server_create(struct server *srv)
{
	grpc_arg args[] = {
		int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
			DAS_RPC_MAX_MESSAGE),
		int_arg(GRPC_ARG_MAX_METADATA_SIZE, MAX_METADATA_BYTES),
		int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, DAS_RPC_MAX_MESSAGE),
		/* A connection that has not finished the HTTP/2 handshake in
		 * time is closed: silent clients cannot pile up. */
		int_arg(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
			HANDSHAKE_TIMEOUT_MS),
		/* See MAX_STREAMS_PER_CONNECTION. */
		int_arg(GRPC_ARG_MAX_CONCURRENT_STREAMS,
			MAX_STREAMS_PER_CONNECTION),
		/* Core sets SO_REUSEPORT by default: a second server on our
		 * port would start and the kernel would split connections
		 * between them. */
		int_arg(GRPC_ARG_ALLOW_REUSEPORT, 0),
		/* No limit on PINGs here: core 1.51 adds an error to the
		 * connection's pending close for every PING past its limit,
		 * and keeps them while the write cannot finish (a client
		 * that never reads: ~25 MB a connection). Unlimited, core
		 * stops reading once 10,000 acknowledgements wait, and the
		 * flood guard closes a connection whose PINGs add up
		 * (bytes no call holds). */
		int_arg(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0),
		/* Core would inflate a whole compressed message before
		 * checking its size; payload_inflate does it here, bounded. */
		int_arg(GRPC_ARG_ENABLE_PER_MESSAGE_DECOMPRESSION, 0),
		/* No timer of core's for each call's deadline: when one
		 * fired, core cancelled its call with a status, transport
		 * work that a flood of streams with 1 ms deadlines piled up
		 * (docs/server.md, rapid reset). The client ends a call at
		 * its deadline itself; here the store ends calls waiting
		 * for it (store.c, the reaper), and the health tick and
		 * the reflection thread end their streams. */
		int_arg(GRPC_ARG_ENABLE_DEADLINE_CHECKS, 0),
		/* Memory for connections and calls is bounded as a whole. */
		{.type = GRPC_ARG_POINTER,
		 .key = (char *)GRPC_ARG_RESOURCE_QUOTA,
		 .value.pointer = {srv->quota,
				   grpc_resource_quota_arg_vtable()}},
		/* --idle-timeout: a connection with no call for that long is
		 * sent GOAWAY and closed, so idle clients cannot pile up
		 * either. Left out when 0 (chargs below). */
		int_arg(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
			srv->cfg.idle_timeout_ms > INT_MAX
				? INT_MAX
				: (int)srv->cfg.idle_timeout_ms),
	};
	size_t n_args = sizeof(args) / sizeof(args[0]);
	grpc_channel_args chargs = {
		srv->cfg.idle_timeout_ms ? n_args : n_args - 1, args};
	grpc_server *server = grpc_server_create(&chargs, NULL);

	for (int m = 0; m < DAS_RPC__COUNT; m++)
		srv->methods[m] = grpc_server_register_method(
			server, das_rpc_method(m)->path, NULL,
			GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
	return server;
}

/*
 * The queues: the polling workers' (srv->cq), the drain worker's, which
 * never polls (srv->drain_cq, see worker_main), the replies' callbacks
 * and shutdown's. The last worker takes the drain queue.
 */
static int queues_create(struct server *srv)
{
	grpc_completion_queue_attributes drain_attr = {
		.version = 1,
		.cq_completion_type = GRPC_CQ_NEXT,
		.cq_polling_type = GRPC_CQ_NON_POLLING,
	};

	srv->reply_cq_down.functor_run = reply_cq_down;
	srv->reply_cq = grpc_completion_queue_create_for_callback(
		&srv->reply_cq_down, NULL);
	if (!srv->reply_cq)
		return -1;
	srv->cq = grpc_completion_queue_create_for_next(NULL);
	grpc_server_register_completion_queue(srv->server, srv->cq, NULL);
	/* Registered after srv->cq: core offers a call to the queues in
	 * the order they were registered, from its connection's own. */
	srv->drain_cq = grpc_completion_queue_create(
		grpc_completion_queue_factory_lookup(&drain_attr), &drain_attr,
		NULL);
	if (!srv->drain_cq)
		return -1;
	grpc_server_register_completion_queue(srv->server, srv->drain_cq,
					      NULL);
	for (unsigned i = 0; i < srv->n_workers; i++) {
		srv->workers[i].srv = srv;
		srv->workers[i].cq =
			i + 1 < srv->n_workers ? srv->cq : srv->drain_cq;
	}
	srv->shutdown_cq = grpc_completion_queue_create_for_pluck(NULL);
	return 0;
}

/* The listening port (plaintext or TLS) and its rapid-reset guard. */
static int listen_port(struct server *srv, const struct server_config *cfg,
		       int *port, char *err, size_t err_size)
{
	grpc_server_credentials *creds =
		cfg->tls ? server_tls_credentials(cfg->tls)
			 : grpc_insecure_server_credentials_create();
	int why;

	if (!creds) {
		snprintf(err, err_size, "cannot set up TLS credentials");
		return -1;
	}
	*port = grpc_server_add_http2_port(srv->server, cfg->listen, creds);
	grpc_server_credentials_release(creds);
	if (*port == 0) {
		why = listen_errno(cfg->listen);
		if (why)
			snprintf(err, err_size, "cannot listen on %s: %s",
				 cfg->listen, strerror(why));
		else
			snprintf(err, err_size, "cannot listen on %s",
				 cfg->listen);
		return -1;
	}
	return 0;
}

/* Each worker asks core for calls of every method, then runs. */
static int workers_start(struct server *srv)
{
	for (unsigned i = 0; i < srv->n_workers; i++) {
		struct worker *w = &srv->workers[i];

		for (int m = 0; m < DAS_RPC__COUNT; m++)
			for (int k = 0; k < CALLS_PER_METHOD; k++)
				request_registered(w, (enum das_rpc_method)m);
		request_unknown(w);
		if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
			return -1;
		w->is_started = true;
	}
	return 0;
}

/* accept_guard's watch: each new connection is shown to the flood guard. */
static void on_accept(void *guard, const struct sockaddr *addr,
		      unsigned addr_len)
{
	flood_guard_accepted(guard, addr, addr_len);
}

int server_start(const struct server_config *cfg, struct server **out,
		 int *port, char *err, size_t err_size)
{
	struct server *srv = calloc(1, sizeof(*srv));

	if (!srv) {
		snprintf(err, err_size, "out of memory");
		return -1;
	}
	*out = srv;
	if (!core_tune_deadlock_detection_off())
		das_log(DAS_LOG_DEBUG, "abseil's deadlock detection stays as "
				       "built (its switch was not found)");
	grpc_init();
	obs_register();
	srv->cfg = *cfg;
	/* cfg->n_workers polling workers and the one on drain_cq. */
	srv->n_workers = (cfg->n_workers ? cfg->n_workers : 1) + 1;
	srv->quota = grpc_resource_quota_create("device-assignment-server");
	grpc_resource_quota_resize(srv->quota, MEMORY_QUOTA_BYTES);
	srv->server = core_server_create(srv);
	pthread_mutex_init(&srv->reply_mu, NULL);
	pthread_cond_init(&srv->reply_cv, NULL);

	srv->health = health_new(cfg->env.store);
	srv->streams = streams_new(srv->server);
	srv->workers = calloc(srv->n_workers, sizeof(*srv->workers));
	if (!srv->health || !srv->streams || !srv->workers ||
	    health_watch_register(srv->health, srv->server, srv->streams) != 0 ||
	    queues_create(srv) != 0) {
		snprintf(err, err_size, "out of memory");
		goto fail;
	}
	srv->cfg.env.health = srv->health;
	if (!cfg->is_reflection_off &&
	    reflection_register(srv->server, &srv->reflection, err,
				err_size) != 0)
		goto fail;
	if (listen_port(srv, cfg, port, err, err_size) != 0 ||
	    !accept_guard_start(cfg->connection_limit, err, err_size))
		goto fail;
	srv->guard = flood_guard_new(*port, 2 * MAX_STREAMS_PER_CONNECTION,
				     accept_guard_room());
	if (!srv->guard) {
		snprintf(err, err_size, "out of memory");
		goto fail;
	}
	accept_guard_watch(on_accept, srv->guard);

	grpc_server_start(srv->server);
	if (health_watch_arm(srv->health) != 0 ||
	    streams_start(srv->streams, health_tick, srv->health,
			  HEALTH_TICK_MS) != 0) {
		snprintf(err, err_size, "cannot start the health service");
		goto fail;
	}
	if (srv->reflection &&
	    reflection_start(srv->reflection, srv->guard, err, err_size) != 0)
		goto fail;
	if (workers_start(srv) != 0) {
		snprintf(err, err_size, "cannot start worker threads");
		goto fail;
	}
	return 0;

fail:
	(void)server_stop(srv); /* no call was taken yet */
	return -1;
}

/*
 * Waits for the shutdown tag. Core completes it only once every connection
 * is closed, and an idle client may take seconds to close its side (or never
 * do so): once no call is in flight for two looks in a row, the remaining
 * connections are idle and are dropped; calls still running when grace_ms
 * is over are cancelled.
 */
static void drain(struct server *srv)
{
	gpr_timespec grace_end = gpr_time_add(
		gpr_now(GPR_CLOCK_MONOTONIC),
		gpr_time_from_millis(srv->cfg.grace_ms, GPR_TIMESPAN));
	int idle_looks = 0;

	for (;;) {
		gpr_timespec step = gpr_time_add(
			gpr_now(GPR_CLOCK_MONOTONIC),
			gpr_time_from_millis(20, GPR_TIMESPAN));
		grpc_event ev = grpc_completion_queue_pluck(
			srv->shutdown_cq, srv, step, NULL);
		if (ev.type == GRPC_OP_COMPLETE)
			return;
		idle_looks = atomic_load(&srv->n_active) == 0 ? idle_looks + 1
							      : 0;
		if (idle_looks >= 2)
			break;
		if (gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), grace_end) >= 0) {
			das_log(DAS_LOG_WARN,
				"shutdown: cancelling calls still running after %u ms",
				srv->cfg.grace_ms);
			break;
		}
	}
	grpc_server_cancel_all_calls(srv->server);
	grpc_completion_queue_pluck(srv->shutdown_cq, srv,
				    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
}

/* Frees the calls left on a shut-down worker queue (NULL: none). */
static void queue_free_rest(grpc_completion_queue *cq)
{
	for (; cq;) {
		grpc_event ev = grpc_completion_queue_next(
			cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type == GRPC_OP_COMPLETE)
			call_free(ev.tag);
	}
}

void server_drain(struct server *srv)
{
	if (!srv || srv->is_drained)
		return;
	srv->is_drained = true;
	if (srv->server) {
		grpc_server_shutdown_and_notify(srv->server, srv->shutdown_cq,
						srv);
		drain(srv);
	}
}

/*
 * Waits until every call delivered to a worker has been freed: a call
 * handed to the store is answered (and freed) by the store's thread, which
 * must not find the server gone. False when some are still held after
 * HELD_CALLS_WAIT_MS.
 */
static bool held_calls_end(struct server *srv)
{
	gpr_timespec end = gpr_time_add(
		gpr_now(GPR_CLOCK_MONOTONIC),
		gpr_time_from_millis(HELD_CALLS_WAIT_MS, GPR_TIMESPAN));

	while (atomic_load(&srv->n_active) > 0) {
		if (gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), end) >= 0) {
			das_log(DAS_LOG_ERROR,
				"shutdown: %d calls still wait for the store "
				"after %d ms; exiting without them",
				atomic_load(&srv->n_active),
				HELD_CALLS_WAIT_MS);
			return false;
		}
		nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	}
	return true;
}

int server_stop(struct server *srv)
{
	if (!srv)
		return 0;
	server_drain(srv);
	if (!held_calls_end(srv))
		return -1;
	das_log(DAS_LOG_DEBUG, "shutdown: calls finished, stopping workers");
	if (srv->cq) {
		/* Every worker's next() answers SHUTDOWN once the queue is
		 * drained; what no worker took is freed here. */
		grpc_completion_queue_shutdown(srv->cq);
		if (srv->drain_cq)
			grpc_completion_queue_shutdown(srv->drain_cq);
		for (unsigned i = 0; srv->workers && i < srv->n_workers; i++)
			if (srv->workers[i].is_started)
				pthread_join(srv->workers[i].thread, NULL);
		queue_free_rest(srv->cq);
		queue_free_rest(srv->drain_cq);
	}
	if (srv->reply_cq) {
		/* Its shutdown is reported once every reply batch is over. */
		grpc_completion_queue_shutdown(srv->reply_cq);
		pthread_mutex_lock(&srv->reply_mu);
		while (!srv->is_reply_cq_down)
			pthread_cond_wait(&srv->reply_cv, &srv->reply_mu);
		pthread_mutex_unlock(&srv->reply_mu);
		while (atomic_load(&srv->n_replying) > 0)
			nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
		grpc_completion_queue_destroy(srv->reply_cq);
	}
	streams_stop(srv->streams);
	reflection_stop(srv->reflection);
	if (srv->server)
		grpc_server_destroy(srv->server);
	streams_free(srv->streams);
	health_free(srv->health);
	accept_guard_watch(NULL, NULL);
	flood_guard_free(srv->guard);
	if (srv->cq)
		grpc_completion_queue_destroy(srv->cq);
	if (srv->drain_cq)
		grpc_completion_queue_destroy(srv->drain_cq);
	if (srv->shutdown_cq) {
		grpc_completion_queue_shutdown(srv->shutdown_cq);
		grpc_completion_queue_destroy(srv->shutdown_cq);
	}
	if (srv->quota)
		grpc_resource_quota_unref(srv->quota);
	free(srv->workers);
	free(srv);
	das_log(DAS_LOG_DEBUG, "shutdown: server destroyed");
	grpc_shutdown();
	return 0;
}
