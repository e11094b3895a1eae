/*
 * The gRPC wire format of the gateway's calls: request framing, reply
 * decoding and the gRPC header values. protobuf-c types stay here.
 */
#include "grpc_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deviceassignment/v1/device_assignment.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "common/chars.h"
#include "common/status.h"
#include "proto/rpc_methods.h"

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

/* The ListLedger request of req (req->ledger set), its times in since and
 * until. */
static void ledger_request(const struct gw_call_request *req,
			   Deviceassignment__V1__ListLedgerRequest *lg,
			   Google__Protobuf__Timestamp *since,
			   Google__Protobuf__Timestamp *until)
{
	const struct gw_ledger_params *p = req->ledger;

	lg->customer_tenant_id = str(req->tenant);
	lg->account_tenant_id = str(req->account);
	lg->user_id = str(p->user);
	lg->device_id = str(p->device);
	if (p->has_since) {
		since->seconds = p->since.seconds;
		since->nanos = p->since.nanos;
		lg->since = since;
	}
	if (p->has_until) {
		until->seconds = p->until.seconds;
		until->nanos = p->until.nanos;
		lg->until = until;
	}
	lg->only_charged = p->is_only_charged;
	lg->page_size = p->page_size;
	lg->page_token = str(p->page_token);
	lg->order = (Deviceassignment__V1__LedgerOrder)p->order;
}

/* msg as one gRPC message on the wire: not compressed, its length (4
 * bytes, big-endian), its bytes. NULL past the size limit or out of
 * memory. */
static uint8_t *frame(const ProtobufCMessage *msg, size_t *len_out)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf;

	if (len > DAS_RPC_MAX_MESSAGE)
		return NULL;
	buf = malloc(GW_WIRE_PREFIX + len);
	if (!buf)
		return NULL;
	buf[0] = 0;
	buf[1] = (uint8_t)(len >> 24);
	buf[2] = (uint8_t)(len >> 16);
	buf[3] = (uint8_t)(len >> 8);
	buf[4] = (uint8_t)len;
	protobuf_c_message_pack(msg, buf + GW_WIRE_PREFIX);
	*len_out = GW_WIRE_PREFIX + len;
	return buf;
}

uint8_t *gw_wire_encode(const struct gw_call_request *req, size_t *len_out)
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
	case GW_ROUTE_LEDGER:
		if (!req->ledger)
			return NULL;
		ledger_request(req, &lg, &since, &until);
		msg = &lg.base;
		break;
	case GW_ROUTE_SEATS:
		su.customer_tenant_id = str(req->tenant);
		su.account_tenant_id = str(req->account);
		msg = &su.base;
		break;
	default:
		msg = &h.base;
		break;
	}
	return frame(msg, len_out);
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

/* A list's devices into out; -1 when there are more than a list holds. */
static int decode_list(const Deviceassignment__V1__ListUserDevicesResponse *l,
		       struct gw_call_outcome *out)
{
	copy_timestamp(out, l->timestamp);
	if (l->n_devices > GW_LIST_MAX)
		return -1;
	for (size_t i = 0; i < l->n_devices; i++) {
		struct gw_device_entry *e = &out->devices[i];

		snprintf(e->device_id, sizeof(e->device_id), "%s",
			 l->devices[i]->device_id);
		e->client_type = (int)l->devices[i]->client_type;
	}
	out->n_devices = l->n_devices;
	return 0;
}

/* A ledger page's entries into out->entries (allocated) and its next-page
 * token; -1 when the page or the token is larger than a page may be. */
static int decode_ledger(const Deviceassignment__V1__ListLedgerResponse *l,
			 struct gw_call_outcome *out)
{
	copy_timestamp(out, l->timestamp);
	if (l->n_entries > GW_LEDGER_PAGE_MAX ||
	    strlen(l->next_page_token) >= sizeof(out->next_page_token))
		return -1;
	out->entries =
		calloc(l->n_entries ? l->n_entries : 1, sizeof(*out->entries));
	if (!out->entries)
		return -1;
	for (size_t i = 0; i < l->n_entries; i++) {
		const Deviceassignment__V1__LedgerEntry *in = l->entries[i];
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
		snprintf(e->user_id, sizeof(e->user_id), "%s", in->user_id);
		snprintf(e->device_id, sizeof(e->device_id), "%s",
			 in->device_id);
		e->previous_client_type = (int)in->previous_client_type;
		e->new_client_type = (int)in->new_client_type;
		e->is_charged = in->charged;
	}
	out->n_entries = l->n_entries;
	snprintf(out->next_page_token, sizeof(out->next_page_token), "%s",
		 l->next_page_token);
	return 0;
}

int gw_wire_decode(enum gw_route_rpc rpc, const uint8_t *body, size_t len,
		   struct gw_call_outcome *out)
{
	const struct das_rpc_method_info *info =
		das_rpc_method(rpc_method(rpc));
	ProtobufCMessage *msg;
	size_t n;
	int rc = -1;

	/* Exactly one message, not compressed (we never offer an encoding). */
	if (len < GW_WIRE_PREFIX || body[0] != 0)
		return -1;
	n = (size_t)body[1] << 24 | (size_t)body[2] << 16 |
	    (size_t)body[3] << 8 | (size_t)body[4];
	if (n > DAS_RPC_MAX_MESSAGE || n != len - GW_WIRE_PREFIX)
		return -1;
	msg = protobuf_c_message_unpack(info->response, NULL, n,
					body + GW_WIRE_PREFIX);
	if (!msg)
		return -1;
	switch (rpc) {
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
	case GW_ROUTE_LIST:
		if (decode_list(
			    (Deviceassignment__V1__ListUserDevicesResponse *)msg,
			    out) != 0)
			goto out;
		break;
	case GW_ROUTE_LEDGER:
		if (decode_ledger((Deviceassignment__V1__ListLedgerResponse *)msg,
				  out) != 0)
			goto out;
		break;
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

const char *gw_wire_path(enum gw_route_rpc rpc)
{
	return das_rpc_method(rpc_method(rpc))->path;
}

int gw_wire_status(const uint8_t *v, size_t len)
{
	int code;

	if (len == 0 || len > 2 || !das_decimal((const char *)v, len, &code))
		return -1;
	return code <= 16 ? code : -1;
}

/* gRPC percent-encodes bytes outside 0x20..0x7e and '%'; a '%' not
 * followed by two hex digits is kept as it is (as the spec asks). */
void gw_wire_message(const uint8_t *v, size_t len, char *out,
		     size_t out_size)
{
	size_t o = 0;

	if (out_size == 0)
		return;
	for (size_t i = 0; i < len && o + 1 < out_size; i++) {
		int hi, lo;

		if (v[i] == '%' && i + 2 < len &&
		    (hi = das_hex_digit(v[i + 1])) >= 0 &&
		    (lo = das_hex_digit(v[i + 2])) >= 0) {
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
			continue;
		}
		out[o++] = (char)v[i];
	}
	out[o] = '\0';
}

static int b64_value(uint8_t ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

/* Standard base64, padding optional; out holds at least len * 3 / 4.
 * Returns the decoded length or -1. */
static long b64_decode(const uint8_t *v, size_t len, uint8_t *out)
{
	uint32_t acc = 0;
	int bits = 0;
	long o = 0;

	while (len > 0 && v[len - 1] == '=')
		len--;
	if (len % 4 == 1)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int d = b64_value(v[i]);
		if (d < 0)
			return -1;
		acc = acc << 6 | (uint32_t)d;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	return o;
}

int gw_wire_details_reason(const uint8_t *v, size_t len, char *reason,
			   size_t reason_size)
{
	uint8_t *raw;
	long n;
	int rc = -1;

	if (reason_size)
		reason[0] = '\0';
	if (len == 0 || len > GW_WIRE_MAX_DETAILS)
		return -1;
	raw = malloc(len * 3 / 4 + 3);
	if (!raw)
		return -1;
	n = b64_decode(v, len, raw);
	if (n > 0 && das_status_details_reason(raw, (size_t)n, reason,
					       reason_size) == 0)
		rc = 0;
	else if (reason_size)
		reason[0] = '\0';
	free(raw);
	return rc;
}

int gw_wire_code_from_http(int http_status)
{
	switch (http_status) {
	case 429:
	case 502:
	case 503:
	case 504:
		return DAS_GRPC_UNAVAILABLE;
	default:
		return DAS_GRPC_INTERNAL;
	}
}

int gw_wire_is_grpc_type(const uint8_t *v, size_t len)
{
	static const char type[] = "application/grpc";
	size_t n = sizeof(type) - 1;

	if (len < n || memcmp(v, type, n) != 0)
		return 0;
	return len == n || v[n] == '+' || v[n] == ';';
}
