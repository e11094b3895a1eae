#include "handlers.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deviceassignment/v1/device_assignment.pb-c.h"
#include "deviceassignment/v1/directory.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#include "common/ids.h"
#include "common/log.h"
#include "observe.h"
#include "service/grpc/health.h"
#include "service/ops/ops.h"

static struct ops_text text(const char *s)
{
	struct ops_text t = {s ? s : "", s ? strlen(s) : 0};
	return t;
}

/* The domain's view of a device request; strings stay owned by the message. */
static void fill_request(struct domain_request *r, enum domain_op op,
			 const char *customer, const char *account,
			 const char *user, const char *device)
{
	memset(r, 0, sizeof(*r));
	r->op = op;
	r->customer = customer;
	r->customer_len = strlen(customer);
	r->account = account;
	r->account_len = strlen(account);
	r->user = user;
	r->user_len = strlen(user);
	r->device = device;
	r->device_len = strlen(device);
}

void handlers_assign_request(const Deviceassignment__V1__AssignDeviceRequest *in,
			     struct domain_request *out)
{
	fill_request(out, DOMAIN_OP_ASSIGN, in->customer_tenant_id,
		     in->account_tenant_id, in->user_id, in->device_id);
	out->client_type = (int)in->client_type;
	out->is_charge_accepted = in->accept_charges;
}

/*
 * Packs msg into reply->body: the reply's own buffer when it fits (every
 * answer but a long ledger page), else the heap. On allocation failure
 * answers INTERNAL.
 */
static void reply_pack(struct handler_reply *reply,
		       const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);

	reply->body = len <= sizeof(reply->inline_body) ? reply->inline_body
							: malloc(len);
	if (!reply->body) {
		reply->status = DAS_INTERNAL;
		return;
	}
	reply->body_len = protobuf_c_message_pack(msg, reply->body);
}

static void set_timestamp(Google__Protobuf__Timestamp *ts, struct das_time t)
{
	ts->seconds = t.seconds;
	ts->nanos = t.nanos;
}

/* Seat metrics are labelled with the canonical customer GUID only. */
static void seat_metric(const char *customer, void (*count)(const char *))
{
	char guid[DAS_GUID_SIZE];

	if (das_guid_normalize(customer, strlen(customer), guid) == 0)
		count(guid);
}

/* The answer of a list from its result. */
static void list_reply(const struct ops_result *r, struct handler_reply *reply)
{
	Deviceassignment__V1__ListUserDevicesResponse out =
		DEVICEASSIGNMENT__V1__LIST_USER_DEVICES_RESPONSE__INIT;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	Deviceassignment__V1__UserDevice items[DAS_CLIENT_TYPE_COUNT];
	Deviceassignment__V1__UserDevice *ptrs[DAS_CLIENT_TYPE_COUNT];

	for (size_t i = 0; i < r->n_devices; i++) {
		deviceassignment__v1__user_device__init(&items[i]);
		items[i].device_id = (char *)r->devices[i].device;
		items[i].client_type =
			(Deviceassignment__V1__ClientType)r->devices[i].type;
		ptrs[i] = &items[i];
	}
	set_timestamp(&ts, r->at);
	out.timestamp = &ts;
	out.n_devices = r->n_devices;
	out.devices = ptrs;
	reply_pack(reply, &out.base);
}

/* The answer of an assign, unassign or list from its result. */
static void device_reply(enum das_rpc_method method, const char *customer,
			 const struct ops_result *r,
			 struct handler_reply *reply)
{
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;

	if (method == DAS_RPC_ASSIGN_DEVICE &&
	    r->status == DAS_CHARGES_NOT_ACCEPTED)
		seat_metric(customer, obs_seat_declined);
	if (r->status != DAS_OK)
		return;
	if (method == DAS_RPC_LIST_USER_DEVICES) {
		list_reply(r, reply);
		return;
	}
	set_timestamp(&ts, r->at);
	if (method == DAS_RPC_ASSIGN_DEVICE) {
		Deviceassignment__V1__AssignDeviceResponse out =
			DEVICEASSIGNMENT__V1__ASSIGN_DEVICE_RESPONSE__INIT;

		if (r->is_charged)
			seat_metric(customer, obs_seat_charged);
		out.timestamp = &ts;
		out.previous_client_type =
			(Deviceassignment__V1__ClientType)r->previous_type;
		out.charged = r->is_charged;
		reply_pack(reply, &out.base);
		return;
	}
	Deviceassignment__V1__UnassignDeviceResponse out =
		DEVICEASSIGNMENT__V1__UNASSIGN_DEVICE_RESPONSE__INIT;
	out.timestamp = &ts;
	out.previous_client_type =
		(Deviceassignment__V1__ClientType)r->previous_type;
	reply_pack(reply, &out.base);
}

/* The last step of every answer: the status row and its message. */
static void reply_finish(const struct ops_result *r,
			 struct handler_reply *reply)
{
	if (reply->status == DAS_OK)
		reply->status = r->status;
	if (reply->status != DAS_OK) {
		handlers_reply_release(reply);
		das_status_format(reply->status, r->detail, reply->message,
				  sizeof(reply->message));
	}
}

/* The answer of a Directory RPC from its result. */
static void directory_reply(const struct ops_result *r,
			    struct handler_reply *reply)
{
	Deviceassignment__V1__DirectoryResponse out =
		DEVICEASSIGNMENT__V1__DIRECTORY_RESPONSE__INIT;

	if (r->status != DAS_OK)
		return;
	out.changed = r->is_changed;
	out.assignments_dropped = r->n_dropped;
	reply_pack(reply, &out.base);
}

static void ledger_time(const Google__Protobuf__Timestamp *ts, bool *has,
			struct das_time *out)
{
	*has = ts != NULL;
	if (ts) {
		out->seconds = ts->seconds;
		out->nanos = ts->nanos;
	}
}

/* The operation a ledger row records, read from its client types. */
static Deviceassignment__V1__LedgerOperation
ledger_operation(const struct store_ledger_row *row)
{
	if (row->from_type == DAS_CLIENT_NONE)
		return DEVICEASSIGNMENT__V1__LEDGER_OPERATION__LEDGER_OPERATION_ASSIGN;
	if (row->to_type == DAS_CLIENT_NONE)
		return DEVICEASSIGNMENT__V1__LEDGER_OPERATION__LEDGER_OPERATION_UNASSIGN;
	return DEVICEASSIGNMENT__V1__LEDGER_OPERATION__LEDGER_OPERATION_MOVE;
}

/* The answer of a ListLedger from its result and page. */
static void ledger_reply(const struct ops_result *r,
			 const struct ops_ledger_page *page,
			 struct handler_reply *reply)
{
	Deviceassignment__V1__ListLedgerResponse out =
		DEVICEASSIGNMENT__V1__LIST_LEDGER_RESPONSE__INIT;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	size_t n = page ? page->n : 0;
	Deviceassignment__V1__LedgerEntry *items = NULL;
	Deviceassignment__V1__LedgerEntry **ptrs = NULL;
	Google__Protobuf__Timestamp *times = NULL;

	if (r->status != DAS_OK)
		return;
	items = calloc(n ? n : 1, sizeof(*items));
	ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	times = calloc(n ? n : 1, sizeof(*times));
	if (!page || !items || !ptrs || !times) {
		reply->status = DAS_INTERNAL;
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		const struct store_ledger_row *row = &page->rows[i];
		Deviceassignment__V1__LedgerEntry *e = &items[i];

		deviceassignment__v1__ledger_entry__init(e);
		google__protobuf__timestamp__init(&times[i]);
		set_timestamp(&times[i], row->at);
		e->sequence = row->id;
		e->time = &times[i];
		e->actor = (char *)row->actor;
		e->request_id = (char *)row->request_id;
		e->operation = ledger_operation(row);
		e->user_id = (char *)row->user;
		e->device_id = (char *)row->device;
		e->previous_client_type =
			(Deviceassignment__V1__ClientType)row->from_type;
		e->new_client_type =
			(Deviceassignment__V1__ClientType)row->to_type;
		e->charged = row->is_charged;
		ptrs[i] = e;
	}
	set_timestamp(&ts, r->at);
	out.timestamp = &ts;
	out.n_entries = n;
	out.entries = ptrs;
	out.next_page_token = (char *)page->next_token;
	reply_pack(reply, &out.base);
done:
	free(times);
	free(ptrs);
	free(items);
}

/* The answer of a GetSeatUsage from its result. */
static void seats_reply(const struct ops_result *r,
			const struct ops_seat_usage *usage,
			struct handler_reply *reply)
{
	Deviceassignment__V1__GetSeatUsageResponse out =
		DEVICEASSIGNMENT__V1__GET_SEAT_USAGE_RESPONSE__INIT;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;

	if (r->status != DAS_OK)
		return;
	set_timestamp(&ts, r->at);
	out.timestamp = &ts;
	out.has_included = usage->is_seat_limited;
	out.included = usage->is_seat_limited ? usage->included : 0;
	out.used = usage->used;
	out.charged = usage->charged;
	reply_pack(reply, &out.base);
}

/* A call answered after its handler returned (ops_later). */
struct call_later {
	struct ops_later ops;
	enum das_rpc_method method;
	struct ops_seat_usage usage; /* GetSeatUsage's answer */
	handler_later_fn later;
	void *ctx;
};

/* The answer of cl's method from its use case's result. */
static void call_later_reply(const struct call_later *cl,
			     struct handler_reply *reply)
{
	const struct ops_result *r = &cl->ops.result;

	switch (cl->method) {
	case DAS_RPC_ASSIGN_DEVICE:
	case DAS_RPC_UNASSIGN_DEVICE:
	case DAS_RPC_LIST_USER_DEVICES:
		device_reply(cl->method, cl->ops.key.customer, r, reply);
		break;
	case DAS_RPC_LIST_LEDGER:
		ledger_reply(r, cl->ops.page, reply);
		break;
	case DAS_RPC_GET_SEAT_USAGE:
		seats_reply(r, &cl->usage, reply);
		break;
	default:
		directory_reply(r, reply);
		break;
	}
}

/* Frees cl and what its use case allocated (a ledger page). */
static void call_later_free(struct call_later *cl)
{
	free(cl->ops.page);
	free(cl);
}

static void call_later_done(struct ops_later *ol)
{
	struct call_later *cl =
		(struct call_later *)((char *)ol -
				      offsetof(struct call_later, ops));
	struct handler_reply reply;

	memset(&reply, 0, sizeof(reply));
	reply.status = DAS_OK;
	memcpy(reply.sub, cl->ops.who.sub, sizeof(reply.sub));
	call_later_reply(cl, &reply);
	reply_finish(&cl->ops.result, &reply);
	cl->later(cl->ctx, &reply);
	handlers_reply_release(&reply);
	call_later_free(cl);
}

/* A call_later for method when the caller takes later answers (else
 * NULL: the use case then runs in its synchronous form). */
static struct call_later *call_later_new(enum das_rpc_method method,
					 const struct handler_reply *reply)
{
	struct call_later *cl = reply->later ? malloc(sizeof(*cl)) : NULL;

	if (cl) {
		cl->ops.done = call_later_done;
		cl->ops.deadline_ms = reply->later_deadline_ms;
		cl->ops.page = NULL;
		cl->ops.usage = &cl->usage;
		cl->method = method;
		cl->later = reply->later;
		cl->ctx = reply->later_ctx;
	}
	return cl;
}

/*
 * After a use case's start: is_answered (its answer is in cl now) fills
 * the reply and frees cl; otherwise done has cl and answers later.
 */
static void call_later_started(struct call_later *cl, bool is_answered,
			       struct ops_result *r,
			       struct handler_reply *reply)
{
	if (!is_answered) {
		reply->is_later = true; /* cl is done's now */
		return;
	}
	*r = cl->ops.result;
	call_later_reply(cl, reply);
	call_later_free(cl);
}

/*
 * Assign, unassign and list: when the caller takes later answers, a read
 * handed to the store's readers or a write handed to its group commit
 * (ops_device_start) is answered from the thread that finishes it, and
 * this thread goes on; otherwise it waits here.
 */
static void device_run(const struct handler_env *env,
		       const struct domain_principal *who,
		       enum das_rpc_method method,
		       const struct domain_request *req, const char *customer,
		       struct ops_result *r, struct handler_reply *reply)
{
	/* A list is answered later only when its read can be handed over. */
	struct call_later *cl =
		method != DAS_RPC_LIST_USER_DEVICES ||
				store_can_read_submit(env->store)
			? call_later_new(method, reply)
			: NULL;

	if (cl) {
		call_later_started(cl,
				   ops_device_start(env->store, who, req,
						    &cl->ops),
				   r, reply);
		return;
	}
	ops_device(env->store, who, req, r);
	device_reply(method, customer, r, reply);
}

static void handle_assign(const struct handler_env *env,
			  const struct domain_principal *who,
			  const ProtobufCMessage *msg, struct ops_result *r,
			  struct handler_reply *reply)
{
	const Deviceassignment__V1__AssignDeviceRequest *in =
		(const void *)msg;
	struct domain_request req;

	handlers_assign_request(in, &req);
	device_run(env, who, DAS_RPC_ASSIGN_DEVICE, &req,
		   in->customer_tenant_id, r, reply);
}

static void handle_unassign(const struct handler_env *env,
			    const struct domain_principal *who,
			    const ProtobufCMessage *msg, struct ops_result *r,
			    struct handler_reply *reply)
{
	const Deviceassignment__V1__UnassignDeviceRequest *in =
		(const void *)msg;
	struct domain_request req;

	fill_request(&req, DOMAIN_OP_UNASSIGN, in->customer_tenant_id,
		     in->account_tenant_id, in->user_id, in->device_id);
	device_run(env, who, DAS_RPC_UNASSIGN_DEVICE, &req,
		   in->customer_tenant_id, r, reply);
}

static void handle_list(const struct handler_env *env,
			const struct domain_principal *who,
			const ProtobufCMessage *msg, struct ops_result *r,
			struct handler_reply *reply)
{
	const Deviceassignment__V1__ListUserDevicesRequest *in =
		(const void *)msg;
	struct domain_request req;

	fill_request(&req, DOMAIN_OP_LIST, in->customer_tenant_id,
		     in->account_tenant_id, in->user_id, "");
	device_run(env, who, DAS_RPC_LIST_USER_DEVICES, &req,
		   in->customer_tenant_id, r, reply);
}

static void handle_ledger(const struct handler_env *env,
			  const struct domain_principal *who,
			  const ProtobufCMessage *msg, struct ops_result *r,
			  struct handler_reply *reply)
{
	const Deviceassignment__V1__ListLedgerRequest *in = (const void *)msg;
	struct call_later *cl = call_later_new(DAS_RPC_LIST_LEDGER, reply);
	struct ops_ledger_page *page;
	struct ops_ledger_query q;

	memset(&q, 0, sizeof(q));
	q.tenant = text(in->customer_tenant_id);
	q.account = text(in->account_tenant_id);
	q.user = text(in->user_id);
	q.device = text(in->device_id);
	ledger_time(in->since, &q.has_since, &q.since);
	ledger_time(in->until, &q.has_until, &q.until);
	q.is_only_charged = in->only_charged;
	q.order = (int)in->order;
	q.page_size = in->page_size;
	q.page_token = text(in->page_token);
	if (cl) {
		call_later_started(
			cl, ops_list_ledger_start(env->store, who, &q, &cl->ops),
			r, reply);
		return;
	}
	page = malloc(sizeof(*page));
	if (!page) {
		r->status = DAS_INTERNAL;
		return;
	}
	ops_list_ledger(env->store, who, &q, r, page);
	ledger_reply(r, page, reply);
	free(page);
}

static void handle_seats(const struct handler_env *env,
			 const struct domain_principal *who,
			 const ProtobufCMessage *msg, struct ops_result *r,
			 struct handler_reply *reply)
{
	const Deviceassignment__V1__GetSeatUsageRequest *in =
		(const void *)msg;
	struct call_later *cl = call_later_new(DAS_RPC_GET_SEAT_USAGE, reply);
	struct ops_seat_usage usage;

	if (cl) {
		call_later_started(cl,
				   ops_seat_usage_start(
					   env->store, who,
					   text(in->customer_tenant_id),
					   text(in->account_tenant_id),
					   &cl->ops),
				   r, reply);
		return;
	}
	ops_seat_usage(env->store, who, text(in->customer_tenant_id),
		       text(in->account_tenant_id), r, &usage);
	seats_reply(r, &usage, reply);
}

/*
 * The request id a ledger row keeps: 1-128 visible ASCII bytes, as the
 * gateway makes and checks them; anything else is not kept ("").
 */
static void take_request_id(const struct handler_meta *meta,
			    struct domain_principal *who)
{
	who->request_id[0] = '\0';
	if (!meta->request_id || meta->request_id_len == 0 ||
	    meta->request_id_len >= sizeof(who->request_id))
		return;
	for (size_t i = 0; i < meta->request_id_len; i++) {
		unsigned char c = (unsigned char)meta->request_id[i];
		if (c <= 0x20 || c >= 0x7f)
			return;
	}
	memcpy(who->request_id, meta->request_id, meta->request_id_len);
	who->request_id[meta->request_id_len] = '\0';
}

/*
 * The Directory RPCs: one small function each filling the use case's
 * input, all run by directory_run. The change is handed to the store
 * (ops_directory_start) and answered from the thread that finishes it,
 * when the caller takes later answers; otherwise this thread waits.
 */
static void directory_run(const struct handler_env *env,
			  const struct domain_principal *who,
			  enum das_rpc_method method,
			  const struct ops_directory_input *in,
			  struct ops_result *r, struct handler_reply *reply)
{
	struct call_later *cl = call_later_new(method, reply);

	if (cl) {
		call_later_started(
			cl, ops_directory_start(env->store, who, in, &cl->ops),
			r, reply);
		return;
	}
	ops_directory(env->store, who, in, r);
	directory_reply(r, reply);
}

static void handle_upsert_customer(const struct handler_env *env,
				   const struct domain_principal *who,
				   const ProtobufCMessage *msg,
				   struct ops_result *r,
				   struct handler_reply *reply)
{
	const Deviceassignment__V1__UpsertCustomerRequest *in =
		(const void *)msg;
	struct ops_directory_input d = {
		.op = OPS_UPSERT_CUSTOMER,
		.tenant = text(in->tenant_id),
		.account = text(in->account_tenant_id),
		.name = text(in->name),
		.is_seat_limited = in->has_included_softphone_seats,
		.included_seats = in->included_softphone_seats,
	};

	directory_run(env, who, DAS_RPC_UPSERT_CUSTOMER, &d, r, reply);
}

static void handle_delete_customer(const struct handler_env *env,
				   const struct domain_principal *who,
				   const ProtobufCMessage *msg,
				   struct ops_result *r,
				   struct handler_reply *reply)
{
	const Deviceassignment__V1__DeleteCustomerRequest *in =
		(const void *)msg;
	struct ops_directory_input d = {.op = OPS_DELETE_CUSTOMER,
					.tenant = text(in->tenant_id)};

	directory_run(env, who, DAS_RPC_DELETE_CUSTOMER, &d, r, reply);
}

static void handle_upsert_user(const struct handler_env *env,
			       const struct domain_principal *who,
			       const ProtobufCMessage *msg, struct ops_result *r,
			       struct handler_reply *reply)
{
	const Deviceassignment__V1__UpsertUserRequest *in = (const void *)msg;
	struct ops_text roles[DOMAIN_ROLES_MAX + 1];
	struct ops_directory_input d = {.op = OPS_UPSERT_USER,
					.tenant = text(in->tenant_id),
					.user = text(in->user_id),
					.roles = roles,
					.n_roles = in->n_roles};

	if (d.n_roles > DOMAIN_ROLES_MAX)
		d.n_roles = DOMAIN_ROLES_MAX + 1; /* refused as too many */
	for (size_t i = 0; i < d.n_roles && i < in->n_roles; i++)
		roles[i] = text(in->roles[i]);
	directory_run(env, who, DAS_RPC_UPSERT_USER, &d, r, reply);
}

static void handle_delete_user(const struct handler_env *env,
			       const struct domain_principal *who,
			       const ProtobufCMessage *msg, struct ops_result *r,
			       struct handler_reply *reply)
{
	const Deviceassignment__V1__DeleteUserRequest *in = (const void *)msg;
	struct ops_directory_input d = {.op = OPS_DELETE_USER,
					.tenant = text(in->tenant_id),
					.user = text(in->user_id)};

	directory_run(env, who, DAS_RPC_DELETE_USER, &d, r, reply);
}

static void handle_upsert_device(const struct handler_env *env,
				 const struct domain_principal *who,
				 const ProtobufCMessage *msg,
				 struct ops_result *r,
				 struct handler_reply *reply)
{
	const Deviceassignment__V1__UpsertPbxDeviceRequest *in =
		(const void *)msg;
	struct ops_directory_input d = {.op = OPS_UPSERT_DEVICE,
					.tenant = text(in->tenant_id),
					.device = text(in->device_id),
					.owner = text(in->owner_user_id)};

	directory_run(env, who, DAS_RPC_UPSERT_PBX_DEVICE, &d, r, reply);
}

static void handle_delete_device(const struct handler_env *env,
				 const struct domain_principal *who,
				 const ProtobufCMessage *msg,
				 struct ops_result *r,
				 struct handler_reply *reply)
{
	const Deviceassignment__V1__DeletePbxDeviceRequest *in =
		(const void *)msg;
	struct ops_directory_input d = {.op = OPS_DELETE_DEVICE,
					.tenant = text(in->tenant_id),
					.device = text(in->device_id)};

	directory_run(env, who, DAS_RPC_DELETE_PBX_DEVICE, &d, r, reply);
}

/*
 * grpc.health.v1.Health/Check: "" and our services are SERVING while the
 * store can take a write, NOT_SERVING while it cannot (health.c); any other
 * name is NOT_FOUND, as the health protocol asks. It needs no token, so
 * orchestrators can probe it.
 */
static void handle_health(const struct handler_env *env,
			  const struct domain_principal *who,
			  const ProtobufCMessage *msg, struct ops_result *r,
			  struct handler_reply *reply)
{
	const Grpc__Health__V1__HealthCheckRequest *in = (const void *)msg;
	Grpc__Health__V1__HealthCheckResponse out =
		GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

	(void)who; /* no token asked */
	if (!health_is_known(in->service)) {
		r->status = DAS_UNKNOWN_SERVICE;
		return;
	}
	out.status =
		!env->health || health_is_serving(env->health)
			? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
			: GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
	reply_pack(reply, &out.base);
}

/*
 * protobuf-c hands strings over NUL-terminated, so "alice\0ZZZ" would read as
 * "alice": every string field is checked on the wire, where its length is,
 * before unpacking. The walk follows the message descriptor into nested
 * messages; what it cannot parse is left to protobuf_c_message_unpack.
 */
#define WIRE_MAX_DEPTH 16

struct nul_field {
	const ProtobufCFieldDescriptor *field; /* NULL: none found */
	const uint8_t *value;
	size_t len;
	int rank; /* lower is reported first */
};

static int wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
	}
	return -1;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/*
 * The order rows 2 and 3 are checked in: tenant ids, then other ids, then
 * any other text; by field number within each.
 */
static int nul_rank(const ProtobufCFieldDescriptor *f)
{
	int cls = ends_with(f->name, "tenant_id") ? 0
		  : ends_with(f->name, "_id")     ? 1
						  : 2;
	return cls * 1000000 + (int)f->id;
}

static int wire_find_nul(const ProtobufCMessageDescriptor *d,
			 const uint8_t *p, size_t len, int depth,
			 struct nul_field *found)
{
	const uint8_t *end = p + len;

	if (depth > WIRE_MAX_DEPTH)
		return -1;
	while (p < end) {
		uint64_t key, n;
		const ProtobufCFieldDescriptor *f;

		if (wire_varint(&p, end, &key) != 0)
			return -1;
		switch (key & 7) {
		case 0:
			if (wire_varint(&p, end, &n) != 0)
				return -1;
			break;
		case 1:
			if ((size_t)(end - p) < 8)
				return -1;
			p += 8;
			break;
		case 5:
			if ((size_t)(end - p) < 4)
				return -1;
			p += 4;
			break;
		case 2:
			if (wire_varint(&p, end, &n) != 0 ||
			    n > (uint64_t)(end - p))
				return -1;
			f = key >> 3 <= UINT32_MAX
				    ? protobuf_c_message_descriptor_get_field(
					      d, (unsigned)(key >> 3))
				    : NULL;
			if (f && f->type == PROTOBUF_C_TYPE_STRING &&
			    memchr(p, 0, (size_t)n) &&
			    (!found->field || nul_rank(f) < found->rank)) {
				found->field = f;
				found->value = p;
				found->len = (size_t)n;
				found->rank = nul_rank(f);
			}
			if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
			    wire_find_nul(f->descriptor, p, (size_t)n,
					  depth + 1, found) != 0)
				return -1;
			p += n;
			break;
		default: /* groups: protobuf-c refuses them too */
			return -1;
		}
	}
	return 0;
}

/*
 * DAS_OK when no string field of the message holds a NUL byte; else the
 * row to answer (ids: the usual "not valid" rows) with detail filled.
 */
static enum das_status check_no_nul(const ProtobufCMessageDescriptor *d,
				    const uint8_t *request, size_t len,
				    char detail[DOMAIN_DETAIL_SIZE])
{
	struct nul_field found = {0};

	if (wire_find_nul(d, request, len, 0, &found) != 0 || !found.field)
		return DAS_OK; /* malformed: protobuf-c says so next */
	if (found.rank < 2000000) {
		domain_quote_value((const char *)found.value, found.len,
				   detail);
		return found.rank < 1000000 ? DAS_INVALID_TENANT_ID
					    : DAS_INVALID_ID;
	}
	snprintf(detail, DOMAIN_DETAIL_SIZE,
		 "%s must not contain a NUL byte", found.field->name);
	return DAS_INVALID_ARGUMENT;
}

enum das_status handlers_check_strings(const ProtobufCMessageDescriptor *d,
				       const uint8_t *request, size_t len,
				       char detail[DOMAIN_DETAIL_SIZE])
{
	return check_no_nul(d, request, len, detail);
}

/*
 * The RPCs, as redis keeps its commands: what each needs before it runs and
 * the function that runs it. Adding an RPC is a row here and one in
 * proto/rpc_methods.h.
 */
struct rpc_handler {
	bool needs_auth; /* row 1 first: a verified bearer token */
	bool is_write;   /* may change the store: the ledger rows it writes
			    keep the call's x-request-id */
	void (*run)(const struct handler_env *env,
		    const struct domain_principal *who,
		    const ProtobufCMessage *msg, struct ops_result *r,
		    struct handler_reply *reply);
};

static const struct rpc_handler rpc_handlers[DAS_RPC__COUNT] = {
	[DAS_RPC_ASSIGN_DEVICE] = {true, true, handle_assign},
	[DAS_RPC_UNASSIGN_DEVICE] = {true, true, handle_unassign},
	[DAS_RPC_LIST_USER_DEVICES] = {true, false, handle_list},
	[DAS_RPC_LIST_LEDGER] = {true, false, handle_ledger},
	[DAS_RPC_GET_SEAT_USAGE] = {true, false, handle_seats},
	[DAS_RPC_UPSERT_CUSTOMER] = {true, true, handle_upsert_customer},
	[DAS_RPC_DELETE_CUSTOMER] = {true, true, handle_delete_customer},
	[DAS_RPC_UPSERT_USER] = {true, true, handle_upsert_user},
	[DAS_RPC_DELETE_USER] = {true, true, handle_delete_user},
	[DAS_RPC_UPSERT_PBX_DEVICE] = {true, true, handle_upsert_device},
	[DAS_RPC_DELETE_PBX_DEVICE] = {true, true, handle_delete_device},
	/* No token: orchestrators probe it. */
	[DAS_RPC_HEALTH_CHECK] = {false, false, handle_health},
};

static const struct rpc_handler *rpc_handler(enum das_rpc_method method)
{
	if ((int)method < 0 || method >= DAS_RPC__COUNT ||
	    !rpc_handlers[method].run)
		return NULL;
	return &rpc_handlers[method];
}

/* Row 1: DAS_OK with *who filled, or DAS_UNAUTHENTICATED. */
static enum das_status authenticate(const struct handler_env *env,
				    const struct das_rpc_method_info *info,
				    const struct handler_meta *meta,
				    struct domain_principal *who)
{
	char why[128];

	if (!meta->authorization || meta->has_duplicate_authorization ||
	    token_cache_verify(env->tokens, env->auth, meta->authorization,
			       meta->authorization_len,
			       das_time_now().seconds, who, why,
			       sizeof(why)) != 0) {
		if (das_log_is_enabled(DAS_LOG_DEBUG))
			das_log(DAS_LOG_DEBUG, "%s: unauthenticated: %s",
				info->path,
				!meta->authorization ? "no token"
				: meta->has_duplicate_authorization
					? "more than one authorization entry"
					: why);
		obs_auth(meta->authorization ? "invalid" : "missing");
		return DAS_UNAUTHENTICATED;
	}
	obs_auth("ok");
	return DAS_OK;
}

/*
 * The request message, unpacked (*msg, freed by the caller), or the row
 * that refuses it with r->detail filled.
 */
static enum das_status unpack_request(const struct das_rpc_method_info *info,
				      const struct handler_meta *meta,
				      const uint8_t *request,
				      size_t request_len,
				      ProtobufCMessage **msg,
				      struct ops_result *r)
{
	enum das_status st;

	*msg = NULL;
	if (meta->payload_status != DAS_OK) {
		snprintf(r->detail, sizeof(r->detail), "%s",
			 meta->payload_detail);
		return meta->payload_status;
	}
	if (!request) {
		snprintf(r->detail, sizeof(r->detail),
			 "missing request message");
		return DAS_INVALID_ARGUMENT;
	}
	st = check_no_nul(info->request, request, request_len, r->detail);
	if (st != DAS_OK)
		return st;
	*msg = protobuf_c_message_unpack(info->request, NULL, request_len,
					 request);
	if (!*msg) {
		snprintf(r->detail, sizeof(r->detail),
			 "malformed request message");
		return DAS_INVALID_ARGUMENT;
	}
	return DAS_OK;
}

void handlers_dispatch(const struct handler_env *env,
		       enum das_rpc_method method,
		       const struct handler_meta *meta, const uint8_t *request,
		       size_t request_len, struct handler_reply *reply,
		       handler_later_fn later, void *ctx)
{
	const struct das_rpc_method_info *info = das_rpc_method(method);
	const struct rpc_handler *h = rpc_handler(method);
	struct domain_principal who;
	struct ops_result r;
	ProtobufCMessage *msg = NULL;

	reply->status = DAS_OK;
	reply->message[0] = '\0';
	reply->body = NULL;
	reply->body_len = 0;
	reply->sub[0] = '\0';
	reply->is_later = false;
	reply->later = later;
	reply->later_ctx = ctx;
	reply->later_deadline_ms = meta->deadline_ms;
	memset(&r, 0, sizeof(r));
	r.status = DAS_OK;

	if (!h) {
		r.status = DAS_INTERNAL;
		goto done;
	}
	/* Row 1 comes before anything else, even a malformed message. */
	if (h->needs_auth) {
		r.status = authenticate(env, info, meta, &who);
		if (r.status != DAS_OK)
			goto done;
		memcpy(reply->sub, who.sub, sizeof(reply->sub));
		if (h->is_write)
			take_request_id(meta, &who);
		else
			who.request_id[0] = '\0';
	} else {
		memset(&who, 0, sizeof(who));
	}
	r.status = unpack_request(info, meta, request, request_len, &msg, &r);
	if (r.status != DAS_OK)
		goto done;
	h->run(env, &who, msg, &r, reply);
done:
	if (msg)
		protobuf_c_message_free_unpacked(msg, NULL);
	if (!reply->is_later)
		reply_finish(&r, reply);
}

void handlers_reply_release(struct handler_reply *reply)
{
	if (reply->body != reply->inline_body)
		free(reply->body);
	reply->body = NULL;
	reply->body_len = 0;
}
