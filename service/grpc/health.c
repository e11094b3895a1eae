#include "health.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/support/time.h>

#include "grpc/health/v1/health.pb-c.h"

#include "common/condwait.h"
#include "common/log.h"
#include "common/status.h"
#include "proto/rpc_methods.h"
#include "service/grpc/handlers.h"
#include "service/grpc/server.h"

#define container_of(ptr, type, member)                                        \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* One Watch stream. Lives on the streams thread only. */
struct watch {
	struct health *h;
	struct stream_tag requested, sent, closed;
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array md;
	grpc_byte_buffer *payload;
	grpc_byte_buffer *out; /* the message in flight */
	grpc_slice status_text;
	bool has_status_text;
	int is_cancelled;
	bool is_known;      /* a service we serve */
	bool has_sent_md;   /* initial metadata went with the first message */
	int last_sent;      /* serving status last sent, -1 none */
	bool is_sending;    /* a send batch is in flight */
	bool is_finishing;  /* the status batch went out */
	bool is_closed;     /* RECV_CLOSE_ON_SERVER completed: call over */
	bool is_listed;
	struct watch *next;
};

struct health {
	struct store *store;
	pthread_mutex_t mu; /* guards the cached probe and the prober */
	pthread_cond_t cv;  /* a probe asked for, or one ended */
	pthread_t prober;   /* runs store_probe, one at a time */
	bool has_prober;
	bool is_stopping;
	bool has_probed;
	bool is_probing; /* a probe was asked for and has not ended */
	bool is_serving; /* the store opened: SERVING until a probe says not */
	bool is_late;	 /* the running probe passed HEALTH_PROBE_LATE_MS */
	gpr_timespec probe_started, probed_at;

	/* Watch: the streams thread only. */
	grpc_server *server;
	void *watch_method;
	struct streams *streams;
	struct watch *watchers;
	unsigned n_watchers;
};

static void *prober_main(void *arg);

struct health *health_new(struct store *store)
{
	struct health *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->store = store;
	h->is_serving = true;
	pthread_mutex_init(&h->mu, NULL);
	das_cond_init_monotonic(&h->cv);
	if (pthread_create(&h->prober, NULL, prober_main, h) != 0) {
		health_free(h);
		return NULL;
	}
	h->has_prober = true;
	return h;
}

void health_free(struct health *h)
{
	if (!h)
		return;
	if (h->has_prober) {
		pthread_mutex_lock(&h->mu);
		h->is_stopping = true;
		pthread_cond_broadcast(&h->cv);
		pthread_mutex_unlock(&h->mu);
		pthread_join(h->prober, NULL);
	}
	pthread_cond_destroy(&h->cv);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

bool health_is_known(const char *service)
{
	static const char *const known[] = {
		"", "deviceassignment.v1.DeviceAssignment",
		"deviceassignment.v1.Directory", "grpc.health.v1.Health"};

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(service, known[i]) == 0)
			return true;
	return false;
}

/*
 * The prober thread: runs each probe asked for and publishes its answer.
 * A store that does not answer (a stopped PostgreSQL, a disk whose fsync
 * hangs) holds this thread, never a worker or the streams thread.
 */
static void *prober_main(void *arg)
{
	struct health *h = arg;
	char why[512];

	pthread_mutex_lock(&h->mu);
	for (;;) {
		while (!h->is_stopping && !h->is_probing)
			pthread_cond_wait(&h->cv, &h->mu);
		if (h->is_stopping)
			break;
		bool was_serving = h->is_serving;
		bool had_probed = h->has_probed;

		pthread_mutex_unlock(&h->mu);
		why[0] = '\0';
		bool is_serving =
			store_probe(h->store, why, sizeof(why)) == STORE_OK;
		pthread_mutex_lock(&h->mu);
		/* A late probe was reported NOT_SERVING already (is_late). */
		if (!is_serving && (was_serving || h->is_late))
			das_log(DAS_LOG_ERROR, "health: NOT_SERVING: %s", why);
		else if (is_serving &&
			 ((had_probed && !was_serving) || h->is_late))
			das_log(DAS_LOG_WARN,
				"health: SERVING again: the store takes writes");
		h->is_serving = is_serving;
		h->is_late = false;
		h->probed_at = gpr_now(GPR_CLOCK_MONOTONIC);
		h->has_probed = true;
		h->is_probing = false;
		pthread_cond_broadcast(&h->cv);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

static bool is_older(gpr_timespec t, gpr_timespec now, int ms)
{
	return gpr_time_cmp(gpr_time_sub(now, t),
			    gpr_time_from_millis(ms, GPR_TIMESPAN)) >= 0;
}

/*
 * A probe that has run HEALTH_PROBE_LATE_MS is a store that cannot take a
 * write now: NOT_SERVING until it answers (logged once). Called with
 * h->mu held.
 */
static bool is_late(struct health *h, gpr_timespec now)
{
	if (!h->is_late && is_older(h->probe_started, now,
				    HEALTH_PROBE_LATE_MS)) {
		h->is_late = true;
		if (h->is_serving)
			das_log(DAS_LOG_ERROR,
				"health: NOT_SERVING: the store has not "
				"answered a probe for %d ms",
				HEALTH_PROBE_LATE_MS);
	}
	return h->is_late;
}

/*
 * A fresh answer reused; else the caller asks the prober for a probe and
 * waits for it, at most until it is late. While a probe runs, other
 * callers get the last answer rather than wait, so Checks never pile up
 * on workers.
 */
bool health_is_serving(struct health *h)
{
	gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
	bool is_serving;

	pthread_mutex_lock(&h->mu);
	if (h->is_probing) {
		is_serving = h->is_serving && !is_late(h, now);
		pthread_mutex_unlock(&h->mu);
		return is_serving;
	}
	if (h->has_probed && !is_older(h->probed_at, now, HEALTH_FRESH_MS)) {
		is_serving = h->is_serving;
		pthread_mutex_unlock(&h->mu);
		return is_serving;
	}
	h->is_probing = true;
	h->probe_started = now;
	pthread_cond_broadcast(&h->cv);
	struct timespec until = das_monotonic_after_ms(HEALTH_PROBE_LATE_MS);

	while (h->is_probing && !h->is_stopping &&
	       pthread_cond_timedwait(&h->cv, &h->mu, &until) != ETIMEDOUT)
		;
	now = gpr_now(GPR_CLOCK_MONOTONIC);
	is_serving = h->is_serving && !(h->is_probing && is_late(h, now));
	pthread_mutex_unlock(&h->mu);
	return is_serving;
}

/* ---- Watch ---- */

static void watch_requested(struct stream_tag *tag, bool is_ok);
static void watch_sent(struct stream_tag *tag, bool is_ok);
static void watch_closed(struct stream_tag *tag, bool is_ok);

static struct watch *watch_new(struct health *h)
{
	struct watch *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->h = h;
	w->requested.on_done = watch_requested;
	w->sent.on_done = watch_sent;
	w->closed.on_done = watch_closed;
	w->last_sent = -1;
	grpc_metadata_array_init(&w->md);
	return w;
}

static void watch_free(struct watch *w)
{
	grpc_metadata_array_destroy(&w->md);
	if (w->payload)
		grpc_byte_buffer_destroy(w->payload);
	if (w->out)
		grpc_byte_buffer_destroy(w->out);
	if (w->has_status_text)
		grpc_slice_unref(w->status_text);
	if (w->call)
		grpc_call_unref(w->call);
	free(w);
}

static void unlist(struct watch *w)
{
	struct health *h = w->h;

	if (!w->is_listed)
		return;
	for (struct watch **p = &h->watchers; *p; p = &(*p)->next) {
		if (*p == w) {
			*p = w->next;
			break;
		}
	}
	w->is_listed = false;
	h->n_watchers--;
}

/* Frees the stream once nothing of it is in flight any more. */
static void watch_maybe_free(struct watch *w)
{
	if (w->is_closed && !w->is_sending) {
		unlist(w);
		watch_free(w);
	}
}

int health_watch_arm(struct health *h)
{
	struct watch *w = watch_new(h);
	grpc_completion_queue *cq = streams_cq(h->streams);

	if (!w)
		return -1;
	if (grpc_server_request_registered_call(
		    h->server, h->watch_method, &w->call, &w->deadline, &w->md,
		    &w->payload, cq, cq, &w->requested) != GRPC_CALL_OK) {
		watch_free(w);
		return -1;
	}
	return 0;
}

int health_watch_register(struct health *h, grpc_server *server,
			  struct streams *streams)
{
	h->server = server;
	h->streams = streams;
	h->watch_method = grpc_server_register_method(
		server, HEALTH_WATCH_PATH, NULL,
		GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
	return h->watch_method ? 0 : -1;
}

/* Sends one HealthCheckResponse (the first also carries the metadata). */
static void watch_send(struct watch *w, int status)
{
	Grpc__Health__V1__HealthCheckResponse msg =
		GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	uint8_t buf[16];
	size_t len;
	grpc_slice s;
	grpc_op ops[2];
	size_t n = 0;

	msg.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
	len = protobuf_c_message_pack(&msg.base, buf);
	s = grpc_slice_from_copied_buffer((const char *)buf, len);
	if (w->out)
		grpc_byte_buffer_destroy(w->out);
	w->out = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);

	memset(ops, 0, sizeof(ops));
	if (!w->has_sent_md) {
		ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
		n++;
		w->has_sent_md = true;
	}
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n].data.send_message.send_message = w->out;
	n++;
	w->is_sending = true;
	w->last_sent = status;
	if (grpc_call_start_batch(w->call, ops, n, &w->sent, NULL) !=
	    GRPC_CALL_OK) {
		w->is_sending = false;
		grpc_call_cancel(w->call, NULL); /* closed completes it */
	}
}

/* Ends the stream with a status (no message). */
static void watch_finish(struct watch *w, grpc_status_code code,
			 const char *text)
{
	grpc_op ops[2];
	size_t n = 0;

	memset(ops, 0, sizeof(ops));
	if (!w->has_sent_md) {
		ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
		n++;
		w->has_sent_md = true;
	}
	w->status_text = grpc_slice_from_copied_string(text);
	w->has_status_text = true;
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = code;
	ops[n].data.send_status_from_server.status_details = &w->status_text;
	n++;
	w->is_sending = true;
	w->is_finishing = true;
	if (grpc_call_start_batch(w->call, ops, n, &w->sent, NULL) !=
	    GRPC_CALL_OK) {
		w->is_sending = false;
		grpc_call_cancel(w->call, NULL);
	}
}

/* Ends the stream with a row of the status table: its code, and text or
 * else the row's message. */
static void watch_end(struct watch *w, enum das_status status,
		      const char *text)
{
	char row_text[128];

	if (!text)
		text = das_status_format(status, NULL, row_text,
					 sizeof(row_text));
	watch_finish(w, (grpc_status_code)das_status_row(status)->grpc_code,
		     text);
}

static int current_status(struct watch *w)
{
	if (!w->is_known)
		return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
	return health_is_serving(w->h)
		       ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
		       : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

/*
 * Reads the service name of the request. Returns DAS_OK, or the row to
 * answer (message in text), as a unary call would get it.
 */
static enum das_status watch_parse(struct watch *w, char *text,
				   size_t text_size)
{
	Grpc__Health__V1__HealthCheckRequest *req = NULL;
	char detail[DOMAIN_DETAIL_SIZE] = "malformed request message";
	enum das_status status = DAS_INVALID_ARGUMENT;
	uint8_t *bytes = NULL;
	size_t len = 0;

	/* Compressed requests are inflated as for unary calls: bounded. */
	if (w->payload)
		status = server_payload_bytes(w->payload, &bytes, &len, detail,
					      sizeof(detail));
	if (status == DAS_OK)
		status = handlers_check_strings(
			&grpc__health__v1__health_check_request__descriptor,
			bytes, len, detail);
	if (status == DAS_OK) {
		req = grpc__health__v1__health_check_request__unpack(NULL, len,
								     bytes);
		if (!req)
			status = DAS_INVALID_ARGUMENT;
	}
	free(bytes);
	if (req) {
		w->is_known = health_is_known(req->service);
		protobuf_c_message_free_unpacked(&req->base, NULL);
		return DAS_OK;
	}
	das_status_format(status, detail, text, text_size);
	return status;
}

static void watch_requested(struct stream_tag *tag, bool is_ok)
{
	struct watch *w = container_of(tag, struct watch, requested);
	struct health *h = w->h;
	enum das_status status;
	char text[512];
	grpc_op op;

	if (!is_ok) { /* the server is shutting down */
		watch_free(w);
		return;
	}
	if (health_watch_arm(h) != 0)
		das_log(DAS_LOG_ERROR, "health: cannot take more Watch calls");

	/* Learn when the call ends, whoever ends it. */
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op.data.recv_close_on_server.cancelled = &w->is_cancelled;
	if (grpc_call_start_batch(w->call, &op, 1, &w->closed, NULL) !=
	    GRPC_CALL_OK) {
		grpc_call_cancel(w->call, NULL);
		watch_free(w);
		return;
	}
	status = watch_parse(w, text, sizeof(text));
	if (status != DAS_OK) {
		watch_end(w, status, text);
		return;
	}
	if (h->n_watchers >= HEALTH_WATCH_MAX) {
		watch_finish(w, GRPC_STATUS_RESOURCE_EXHAUSTED,
			     "too many Watch streams");
		return;
	}
	w->next = h->watchers;
	h->watchers = w;
	w->is_listed = true;
	h->n_watchers++;
	watch_send(w, current_status(w));
}

static void watch_sent(struct stream_tag *tag, bool is_ok)
{
	struct watch *w = container_of(tag, struct watch, sent);

	w->is_sending = false;
	if (!is_ok || w->is_finishing) {
		unlist(w); /* nothing more to send; closed frees it */
		watch_maybe_free(w);
		return;
	}
	if (w->is_closed) {
		watch_maybe_free(w);
		return;
	}
	/* A change that came while this one was in flight. */
	int status = current_status(w);
	if (status != w->last_sent)
		watch_send(w, status);
}

static void watch_closed(struct stream_tag *tag, bool is_ok)
{
	struct watch *w = container_of(tag, struct watch, closed);

	(void)is_ok;
	w->is_closed = true;
	unlist(w);
	watch_maybe_free(w);
}

/* The client's deadline has passed (core does not end calls at their
 * deadline here: server.c, core_server_create). */
static bool is_past_deadline(const struct watch *w, gpr_timespec now)
{
	return gpr_time_cmp(gpr_convert_clock_type(w->deadline,
						   GPR_CLOCK_MONOTONIC),
			    now) <= 0;
}

void health_tick(void *arg)
{
	struct health *h = arg;

	if (!h->watchers)
		return; /* nobody to tell: no probe */
	gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
	for (struct watch *w = h->watchers; w; w = w->next) {
		int status;

		if (w->is_sending || w->is_closed)
			continue; /* watch_sent looks again */
		if (is_past_deadline(w, now)) {
			watch_end(w, DAS_DEADLINE_EXCEEDED, NULL);
			continue;
		}
		status = current_status(w);
		if (status != w->last_sent)
			watch_send(w, status);
	}
}
