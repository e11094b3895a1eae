/*
 * gRPC C-core client of the gateway.
 *
 * Why one channel and one completion thread: every HTTP thread can start a
 * call without blocking (grpc_call_start_batch only queues work), and one
 * thread draining a completion queue is enough to hand finished calls back
 * to the HTTP event loops. The blocking mode uses a private pluck queue per
 * call.
 *
 * Each call is one batch of six ops; the reply is decoded here into the
 * protobuf-free gw_call_outcome.
 */
#include "upstream.h"
#include "target.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "deviceassignment/v1/device_assignment.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "common/status.h"
#include "common/tls_grpc.h"
#include "gateway/observe.h"
#include "proto/rpc_methods.h"

/*
 * One channel and its registered methods. A TLS reload opens a new one;
 * each call holds a reference to the channel it started on, so the old
 * channel is destroyed only after its last call.
 */
struct upchan {
	grpc_channel *channel;
	void *handles[DAS_RPC__COUNT];
	unsigned refs; /* under gw_upstream.lock */
};

struct gw_upstream {
	pthread_mutex_t lock;
	struct upchan *chan; /* the current channel, under lock */
	char *target;
	bool is_tls;
	char *tls_files[4]; /* ca, cert, key, server name (copies) */
	grpc_completion_queue *cq;
	pthread_t thread;
	bool has_thread;
	/* Connectivity watch, re-armed on cq until stopping (under
	 * watch_lock); it follows the current channel across reloads. */
	grpc_connectivity_state state;
	pthread_mutex_t watch_lock;
	bool is_stopping;
	struct upchan *watched; /* holds a reference while a watch is armed */
	int watch_tag; /* its address is the watch's tag */
	int timeout_ms;
	bool is_wait_for_ready;
};

struct upcall {
	struct gw_upstream *up;
	struct upchan *chan;
	enum gw_route_rpc rpc;
	grpc_call *call;
	grpc_metadata md[2];
	size_t n_md;
	grpc_byte_buffer *send;
	grpc_byte_buffer *recv;
	grpc_metadata_array initial;
	grpc_metadata_array trailing;
	grpc_status_code status;
	grpc_slice details;
	const char *error_string;
	struct gw_call_outcome *out;
	gw_upstream_done_fn *done;
	void *arg;
};

static void outcome_fail(struct gw_call_outcome *out, int code)
{
	memset(out, 0, sizeof(*out));
	out->grpc_code = code;
}

static enum das_rpc_method rpc_method(enum gw_route_rpc rpc)
{
	switch (rpc) {
	case GW_ROUTE_ASSIGN:
		return DAS_RPC_ASSIGN_DEVICE;
	case GW_ROUTE_UNASSIGN:
		return DAS_RPC_UNASSIGN_DEVICE;
	case GW_ROUTE_LIST:
		return DAS_RPC_LIST_USER_DEVICES;
	case GW_ROUTE_LEDGER:
		return DAS_RPC_LIST_LEDGER;
	case GW_ROUTE_SEATS:
		return DAS_RPC_GET_SEAT_USAGE;
	default:
		return DAS_RPC_HEALTH_CHECK;
	}
}

/* protobuf-c wants char * for strings it will only read. */
static char *str(const char *s)
{
	return (char *)(s ? s : "");
}

/* Serializes the request message of req into a new byte buffer. */
static grpc_byte_buffer *encode(const struct gw_call_request *req)
{
	Deviceassignment__V1__AssignDeviceRequest a =
		DEVICEASSIGNMENT__V1__ASSIGN_DEVICE_REQUEST__INIT;
	Deviceassignment__V1__UnassignDeviceRequest u =
		DEVICEASSIGNMENT__V1__UNASSIGN_DEVICE_REQUEST__INIT;
	Deviceassignment__V1__ListUserDevicesRequest l =
		DEVICEASSIGNMENT__V1__LIST_USER_DEVICES_REQUEST__INIT;
	Grpc__Health__V1__HealthCheckRequest h =
		GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	Deviceassignment__V1__ListLedgerRequest lg =
		DEVICEASSIGNMENT__V1__LIST_LEDGER_REQUEST__INIT;
	Deviceassignment__V1__GetSeatUsageRequest su =
		DEVICEASSIGNMENT__V1__GET_SEAT_USAGE_REQUEST__INIT;
	Google__Protobuf__Timestamp since = GOOGLE__PROTOBUF__TIMESTAMP__INIT,
				    until = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	const ProtobufCMessage *msg;
	grpc_byte_buffer *bb;
	grpc_slice slice;
	size_t len;

	switch (req->rpc) {
	case GW_ROUTE_ASSIGN:
		a.customer_tenant_id = str(req->tenant);
		a.user_id = str(req->user);
		a.device_id = str(req->device);
		a.account_tenant_id = str(req->account);
		a.client_type =
			(Deviceassignment__V1__ClientType)req->client_type;
		a.accept_charges = req->accept_charges;
		msg = &a.base;
		break;
	case GW_ROUTE_UNASSIGN:
		u.customer_tenant_id = str(req->tenant);
		u.user_id = str(req->user);
		u.device_id = str(req->device);
		u.account_tenant_id = str(req->account);
		msg = &u.base;
		break;
	case GW_ROUTE_LIST:
		l.customer_tenant_id = str(req->tenant);
		l.user_id = str(req->user);
		l.account_tenant_id = str(req->account);
		msg = &l.base;
		break;
	case GW_ROUTE_LEDGER: {
		const struct gw_ledger_params *p = req->ledger;

		if (!p)
			return NULL;
		lg.customer_tenant_id = str(req->tenant);
		lg.account_tenant_id = str(req->account);
		lg.user_id = str(p->user);
		lg.device_id = str(p->device);
		if (p->has_since) {
			since.seconds = p->since.seconds;
			since.nanos = p->since.nanos;
			lg.since = &since;
		}
		if (p->has_until) {
			until.seconds = p->until.seconds;
			until.nanos = p->until.nanos;
			lg.until = &until;
		}
		lg.only_charged = p->is_only_charged;
		lg.page_size = p->page_size;
		lg.page_token = str(p->page_token);
		lg.order = (Deviceassignment__V1__LedgerOrder)p->order;
		msg = &lg.base;
		break;
	}
	case GW_ROUTE_SEATS:
		su.customer_tenant_id = str(req->tenant);
		su.account_tenant_id = str(req->account);
		msg = &su.base;
		break;
	default:
		msg = &h.base;
		break;
	}
	len = protobuf_c_message_get_packed_size(msg);
	if (len > DAS_RPC_MAX_MESSAGE)
		return NULL;
	slice = grpc_slice_malloc(len);
	protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
	bb = grpc_raw_byte_buffer_create(&slice, 1);
	grpc_slice_unref(slice);
	return bb;
}

static void copy_timestamp(struct gw_call_outcome *out,
			   const Google__Protobuf__Timestamp *ts)
{
	if (!ts)
		return;
	out->has_timestamp = true;
	out->timestamp.seconds = ts->seconds;
	out->timestamp.nanos = ts->nanos;
}

/* Decodes an OK reply into out; returns -1 when it is not what rpc sends. */
static int decode_reply(struct upcall *c, struct gw_call_outcome *out)
{
	const struct das_rpc_method_info *info =
		das_rpc_method(rpc_method(c->rpc));
	grpc_byte_buffer_reader reader;
	ProtobufCMessage *msg;
	grpc_slice all;
	int rc = -1;

	if (!c->recv || !grpc_byte_buffer_reader_init(&reader, c->recv))
		return -1;
	all = grpc_byte_buffer_reader_readall(&reader);
	grpc_byte_buffer_reader_destroy(&reader);
	if (GRPC_SLICE_LENGTH(all) > DAS_RPC_MAX_MESSAGE) {
		grpc_slice_unref(all);
		return -1;
	}
	msg = protobuf_c_message_unpack(info->response, NULL,
					GRPC_SLICE_LENGTH(all),
					GRPC_SLICE_START_PTR(all));
	grpc_slice_unref(all);
	if (!msg)
		return -1;
	switch (c->rpc) {
	case GW_ROUTE_ASSIGN:
		copy_timestamp(
			out, ((Deviceassignment__V1__AssignDeviceResponse *)msg)
				     ->timestamp);
		break;
	case GW_ROUTE_UNASSIGN:
		copy_timestamp(
			out,
			((Deviceassignment__V1__UnassignDeviceResponse *)msg)
				->timestamp);
		break;
	case GW_ROUTE_LIST: {
		Deviceassignment__V1__ListUserDevicesResponse *l =
			(Deviceassignment__V1__ListUserDevicesResponse *)msg;
		copy_timestamp(out, l->timestamp);
		if (l->n_devices > GW_LIST_MAX)
			goto out;
		for (size_t i = 0; i < l->n_devices; i++) {
			struct gw_device_entry *e = &out->devices[i];
			snprintf(e->device_id, sizeof(e->device_id), "%s",
				 l->devices[i]->device_id);
			e->client_type = (int)l->devices[i]->client_type;
		}
		out->n_devices = l->n_devices;
		break;
	}
	case GW_ROUTE_LEDGER: {
		Deviceassignment__V1__ListLedgerResponse *l =
			(Deviceassignment__V1__ListLedgerResponse *)msg;
		copy_timestamp(out, l->timestamp);
		if (l->n_entries > GW_LEDGER_PAGE_MAX ||
		    strlen(l->next_page_token) >= sizeof(out->next_page_token))
			goto out;
		out->entries = calloc(l->n_entries ? l->n_entries : 1,
				      sizeof(*out->entries));
		if (!out->entries)
			goto out;
		for (size_t i = 0; i < l->n_entries; i++) {
			const Deviceassignment__V1__LedgerEntry *in =
				l->entries[i];
			struct gw_ledger_entry *e = &out->entries[i];

			e->sequence = (long long)in->sequence;
			if (in->time) {
				e->time.seconds = in->time->seconds;
				e->time.nanos = in->time->nanos;
			}
			snprintf(e->actor, sizeof(e->actor), "%s", in->actor);
			snprintf(e->request_id, sizeof(e->request_id), "%s",
				 in->request_id);
			e->operation = (int)in->operation;
			snprintf(e->user_id, sizeof(e->user_id), "%s",
				 in->user_id);
			snprintf(e->device_id, sizeof(e->device_id), "%s",
				 in->device_id);
			e->previous_client_type =
				(int)in->previous_client_type;
			e->new_client_type = (int)in->new_client_type;
			e->is_charged = in->charged;
		}
		out->n_entries = l->n_entries;
		snprintf(out->next_page_token, sizeof(out->next_page_token),
			 "%s", l->next_page_token);
		break;
	}
	case GW_ROUTE_SEATS: {
		Deviceassignment__V1__GetSeatUsageResponse *u =
			(Deviceassignment__V1__GetSeatUsageResponse *)msg;
		copy_timestamp(out, u->timestamp);
		out->has_included = u->has_included;
		out->included = u->included;
		out->used = u->used;
		out->charged = u->charged;
		break;
	}
	default:
		out->is_serving =
			((Grpc__Health__V1__HealthCheckResponse *)msg)
				->status ==
			GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
		break;
	}
	rc = 0;
out:
	protobuf_c_message_free_unpacked(msg, NULL);
	return rc;
}

static void chan_free(struct upchan *ch)
{
	if (!ch)
		return;
	if (ch->channel)
		grpc_channel_destroy(ch->channel);
	free(ch);
}

static void chan_unref(struct gw_upstream *up, struct upchan *ch)
{
	bool is_last;

	pthread_mutex_lock(&up->lock);
	is_last = --ch->refs == 0;
	pthread_mutex_unlock(&up->lock);
	if (is_last)
		chan_free(ch);
}

static struct upchan *chan_get(struct gw_upstream *up)
{
	struct upchan *ch;

	pthread_mutex_lock(&up->lock);
	ch = up->chan;
	ch->refs++;
	pthread_mutex_unlock(&up->lock);
	return ch;
}

static const char *state_name(grpc_connectivity_state s)
{
	switch (s) {
	case GRPC_CHANNEL_IDLE:
		return "IDLE";
	case GRPC_CHANNEL_CONNECTING:
		return "CONNECTING";
	case GRPC_CHANNEL_READY:
		return "READY";
	case GRPC_CHANNEL_TRANSIENT_FAILURE:
		return "TRANSIENT_FAILURE";
	default:
		return "SHUTDOWN";
	}
}

/* Asks core to tell the cq thread when the current channel's state leaves
 * up->state, or after a while (so a stop never waits long, and a channel
 * replaced by a reload is let go soon). */
#define WATCH_PERIOD_MS 500

static void watch_arm(struct gw_upstream *up)
{
	pthread_mutex_lock(&up->watch_lock);
	if (!up->is_stopping) {
		up->watched = chan_get(up);
		grpc_channel_watch_connectivity_state(
			up->watched->channel, up->state,
			gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
				     gpr_time_from_millis(WATCH_PERIOD_MS,
							  GPR_TIMESPAN)),
			up->cq, &up->watch_tag);
	}
	pthread_mutex_unlock(&up->watch_lock);
}

static void watch_fired(struct gw_upstream *up)
{
	struct upchan *ch;
	grpc_connectivity_state now;

	pthread_mutex_lock(&up->watch_lock);
	ch = up->watched;
	up->watched = NULL;
	pthread_mutex_unlock(&up->watch_lock);
	if (ch) {
		now = grpc_channel_check_connectivity_state(ch->channel, 0);
		if (now != up->state) {
			up->state = now;
			gw_obs_channel_state(up->target, state_name(now));
		}
		chan_unref(up, ch);
	}
	watch_arm(up);
}

/* Counts a finished call by the channel's target. (Not by peer: asking
 * core for the peer costs a formatted string per call, ~3 % of the
 * gateway's instructions; each server counts its own calls anyway.) */
static void count_call(struct upcall *c, const struct gw_call_outcome *out)
{
	gw_obs_upstream_call(c->up->target, c->rpc, out->grpc_code);
}

static void finish(struct upcall *c, bool is_success)
{
	struct gw_call_outcome *out = c->out;

	outcome_fail(out, DAS_GRPC_INTERNAL);
	if (is_success) {
		size_t n = GRPC_SLICE_LENGTH(c->details);
		if (n >= sizeof(out->message))
			n = sizeof(out->message) - 1;
		memcpy(out->message, GRPC_SLICE_START_PTR(c->details), n);
		out->message[n] = '\0';
		out->grpc_code = (int)c->status;
		for (size_t i = 0; i < c->trailing.count; i++) {
			const grpc_metadata *m = &c->trailing.metadata[i];
			if (grpc_slice_str_cmp(m->key, DAS_STATUS_DETAILS_KEY))
				continue;
			if (das_status_details_reason(
				    GRPC_SLICE_START_PTR(m->value),
				    GRPC_SLICE_LENGTH(m->value), out->reason,
				    sizeof(out->reason)) != 0)
				out->reason[0] = '\0';
		}
		if (c->status == GRPC_STATUS_OK && decode_reply(c, out) != 0)
			outcome_fail(out, DAS_GRPC_INTERNAL);
		/* Out of time while the service was unreachable: say so. */
		if (c->status == GRPC_STATUS_DEADLINE_EXCEEDED &&
		    grpc_channel_check_connectivity_state(c->chan->channel, 0) !=
			    GRPC_CHANNEL_READY)
			outcome_fail(out, DAS_GRPC_UNAVAILABLE);
	}
	count_call(c, out);
	if (c->error_string)
		gpr_free((void *)c->error_string);
	grpc_slice_unref(c->details);
	grpc_metadata_array_destroy(&c->initial);
	grpc_metadata_array_destroy(&c->trailing);
	if (c->recv)
		grpc_byte_buffer_destroy(c->recv);
	if (c->send)
		grpc_byte_buffer_destroy(c->send);
	for (size_t i = 0; i < c->n_md; i++)
		grpc_slice_unref(c->md[i].value);
	if (c->call)
		grpc_call_unref(c->call);
	if (c->chan)
		chan_unref(c->up, c->chan);
	c->chan = NULL;
}

/* Prepares c and starts its batch on cq with tag c. */
static int start(struct upcall *c, grpc_completion_queue *cq,
		 const struct gw_call_request *req)
{
	struct gw_upstream *up = c->up;
	grpc_op ops[6];
	/* A readiness probe must answer quickly: its own short deadline and
	 * no waiting for a connection. */
	bool is_probe = req->rpc == GW_ROUTE_READYZ;
	int timeout_ms = is_probe && up->timeout_ms > GW_READYZ_TIMEOUT_MS
				 ? GW_READYZ_TIMEOUT_MS
				 : up->timeout_ms;
	gpr_timespec deadline =
		gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
			     gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));

	grpc_metadata_array_init(&c->initial);
	grpc_metadata_array_init(&c->trailing);
	c->details = grpc_empty_slice();
	c->send = encode(req);
	if (!c->send)
		return -1;
	if (req->authorization) {
		c->md[c->n_md].key =
			grpc_slice_from_static_string("authorization");
		c->md[c->n_md].value =
			grpc_slice_from_copied_string(req->authorization);
		c->n_md++;
	}
	if (req->request_id) {
		c->md[c->n_md].key =
			grpc_slice_from_static_string("x-request-id");
		c->md[c->n_md].value =
			grpc_slice_from_copied_string(req->request_id);
		c->n_md++;
	}
	c->chan = chan_get(up);
	c->call = grpc_channel_create_registered_call(
		c->chan->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
		c->chan->handles[rpc_method(req->rpc)], deadline, NULL);
	if (!c->call)
		return -1;
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = c->n_md;
	ops[0].data.send_initial_metadata.metadata = c->md;
	if (up->is_wait_for_ready && !is_probe)
		ops[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = c->send;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->initial;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &c->recv;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &c->trailing;
	ops[5].data.recv_status_on_client.status = &c->status;
	ops[5].data.recv_status_on_client.status_details = &c->details;
	ops[5].data.recv_status_on_client.error_string = &c->error_string;
	if (grpc_call_start_batch(c->call, ops, 6, c, NULL) != GRPC_CALL_OK)
		return -1;
	return 0;
}

static void *cq_thread(void *arg)
{
	struct gw_upstream *up = arg;

	for (;;) {
		grpc_event ev = grpc_completion_queue_next(
			up->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		if (ev.tag == &up->watch_tag) {
			watch_fired(up);
			continue;
		}
		struct upcall *c = ev.tag;
		gw_upstream_done_fn *done = c->done;
		void *done_arg = c->arg;
		finish(c, ev.success != 0);
		free(c);
		done(done_arg);
	}
	return NULL;
}

int gw_upstream_start(struct gw_upstream *up, const struct gw_call_request *req,
		      struct gw_call_outcome *out, gw_upstream_done_fn *done,
		      void *arg)
{
	struct upcall *c = calloc(1, sizeof(*c));

	if (!c) {
		outcome_fail(out, DAS_GRPC_INTERNAL);
		return -1;
	}
	c->up = up;
	c->rpc = req->rpc;
	c->out = out;
	c->done = done;
	c->arg = arg;
	if (start(c, up->cq, req) != 0) {
		finish(c, false);
		free(c);
		return -1;
	}
	return 0;
}

void gw_upstream_call(struct gw_upstream *up, const struct gw_call_request *req,
		      struct gw_call_outcome *out)
{
	grpc_completion_queue *cq =
		grpc_completion_queue_create_for_pluck(NULL);
	struct upcall c;
	bool is_success = false;

	memset(&c, 0, sizeof(c));
	c.up = up;
	c.rpc = req->rpc;
	c.out = out;
	if (start(&c, cq, req) == 0) {
		grpc_event ev = grpc_completion_queue_pluck(
			cq, &c, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		is_success = ev.type == GRPC_OP_COMPLETE && ev.success;
	}
	finish(&c, is_success);
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_pluck(
		       cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
		       .type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
}

/* A new channel (refs 1) with the current files, or NULL and err. */
static struct upchan *chan_open(const struct gw_upstream *up, char *err,
				size_t err_size)
{
	struct upchan *ch = calloc(1, sizeof(*ch));
	grpc_arg args[6];
	grpc_channel_args chargs = {5, args};
	grpc_channel_credentials *creds;

	if (!ch) {
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	/* Reconnect quickly after a service restart (default backoff grows
	 * to two minutes). */
	args[0].type = GRPC_ARG_INTEGER;
	args[0].key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
	args[0].value.integer = 1000;
	args[1].type = GRPC_ARG_INTEGER;
	args[1].key = (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
	args[1].value.integer = 100;
	args[2].type = GRPC_ARG_INTEGER;
	args[2].key = (char *)GRPC_ARG_MIN_RECONNECT_BACKOFF_MS;
	args[2].value.integer = 100;
	args[3].type = GRPC_ARG_INTEGER;
	args[3].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	args[3].value.integer = DAS_RPC_MAX_MESSAGE;
	/* Several servers (a list or a name with several addresses) share
	 * the calls; a server that is down is skipped until it is back. */
	args[4].type = GRPC_ARG_STRING;
	args[4].key = (char *)GRPC_ARG_SERVICE_CONFIG;
	args[4].value.string = (char *)GW_UPSTREAM_SERVICE_CONFIG;
	if (up->is_tls && up->tls_files[3]) {
		args[5].type = GRPC_ARG_STRING;
		args[5].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
		args[5].value.string = up->tls_files[3];
		chargs.num_args = 6;
	}
	if (up->is_tls) {
		creds = das_tls_channel_credentials(
			up->tls_files[1], up->tls_files[2], up->tls_files[0],
			err, err_size);
		if (!creds) {
			free(ch);
			return NULL;
		}
	} else {
		creds = grpc_insecure_credentials_create();
	}
	ch->channel = grpc_channel_create(up->target, creds, &chargs);
	grpc_channel_credentials_release(creds);
	if (!ch->channel) {
		snprintf(err, err_size, "cannot create a channel to %s",
			 up->target);
		free(ch);
		return NULL;
	}
	for (int m = 0; m < DAS_RPC__COUNT; m++)
		ch->handles[m] = grpc_channel_register_call(
			ch->channel,
			das_rpc_method((enum das_rpc_method)m)->path, NULL,
			NULL);
	ch->refs = 1;
	return ch;
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
	grpc_init();
	pthread_mutex_init(&up->lock, NULL);
	pthread_mutex_init(&up->watch_lock, NULL);
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
	up->chan = chan_open(up, err, err_size);
	if (!up->chan)
		goto fail;
	up->cq = grpc_completion_queue_create_for_next(NULL);
	if (pthread_create(&up->thread, NULL, cq_thread, up) != 0) {
		snprintf(err, err_size, "cannot start the upstream thread");
		goto fail;
	}
	up->has_thread = true;
	up->state = grpc_channel_check_connectivity_state(up->chan->channel, 0);
	gw_obs_channel_state(up->target, state_name(up->state));
	watch_arm(up);
	return up;
fail:
	gw_upstream_free(up);
	return NULL;
}

int gw_upstream_reload(struct gw_upstream *up, char *err, size_t err_size)
{
	struct upchan *ch, *old;

	if (!up->is_tls)
		return 1;
	ch = chan_open(up, err, err_size);
	if (!ch)
		return -1;
	pthread_mutex_lock(&up->lock);
	old = up->chan;
	up->chan = ch;
	pthread_mutex_unlock(&up->lock);
	chan_unref(up, old);
	return 0;
}

void gw_upstream_free(struct gw_upstream *up)
{
	if (!up)
		return;
	if (up->cq) {
		/* No watch is armed after this; the last one ends within
		 * WATCH_PERIOD_MS, and then the queue drains. */
		pthread_mutex_lock(&up->watch_lock);
		up->is_stopping = true;
		grpc_completion_queue_shutdown(up->cq);
		pthread_mutex_unlock(&up->watch_lock);
		if (up->has_thread)
			pthread_join(up->thread, NULL);
		grpc_completion_queue_destroy(up->cq);
	}
	if (up->watched) /* the thread never ran to take the watch back */
		chan_unref(up, up->watched);
	if (up->chan)
		chan_unref(up, up->chan);
	pthread_mutex_destroy(&up->watch_lock);
	pthread_mutex_destroy(&up->lock);
	free(up->target);
	for (int i = 0; i < 4; i++)
		free(up->tls_files[i]);
	free(up);
	grpc_shutdown();
}
