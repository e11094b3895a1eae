#include "reply.h"

#include <stdlib.h>
#include <string.h>

#include "gateway/transcode/transcode.h"

static void fill_error(struct gw_reply *r, const struct das_status_row *row,
		       const char *message, const char *client_type_as_sent,
		       struct das_time now)
{
	char ts[DAS_TIMESTAMP_SIZE];

	das_time_format(now, ts);
	memset(r, 0, sizeof(*r));
	r->status = row->status;
	r->http_status = (unsigned)row->http_status;
	r->has_www_authenticate = row->status == DAS_UNAUTHENTICATED;
	r->body = gw_json_error(row->http_status, message, ts,
				row->status != DAS_CHARGES_NOT_ACCEPTED ? NULL
				: client_type_as_sent ? client_type_as_sent
						      : "");
}

void gw_reply_error(struct gw_reply *r, enum das_status status, const char *arg,
		    struct das_time now)
{
	char msg[GW_MESSAGE_MAX];

	das_status_format(status, arg, msg, sizeof(msg));
	fill_error(r, das_status_row(status), msg, NULL, now);
}

/* Rows whose text may not leak upstream internals. */
static bool uses_table_text(enum das_status s)
{
	return s == DAS_UNAVAILABLE || s == DAS_DEADLINE_EXCEEDED ||
	       s == DAS_INTERNAL;
}

void gw_reply_from_outcome(struct gw_reply *r, enum gw_route_rpc rpc,
			   const struct gw_call_outcome *o,
			   const char *client_type_as_sent, struct das_time now)
{
	const struct das_status_row *row =
		das_status_from_grpc(o->grpc_code, o->reason);
	char ts[DAS_TIMESTAMP_SIZE];

	if (row->status == DAS_OK) {
		struct das_time t = o->has_timestamp ? o->timestamp : now;
		if (das_time_format(t, ts) != 0)
			das_time_format(now, ts);
		memset(r, 0, sizeof(*r));
		r->status = rpc == GW_ROUTE_LIST || rpc == GW_ROUTE_LEDGER ||
					    rpc == GW_ROUTE_SEATS
				    ? DAS_OK_READ
				    : DAS_OK;
		r->http_status = (unsigned)das_status_row(r->status)->http_status;
		if (rpc == GW_ROUTE_LIST)
			r->body = gw_json_list(ts, o->devices, o->n_devices);
		else if (rpc == GW_ROUTE_LEDGER)
			r->body = gw_json_ledger(ts, o->entries, o->n_entries,
						 o->next_page_token);
		else if (rpc == GW_ROUTE_SEATS)
			r->body = gw_json_seats(ts, o->has_included,
						o->included, o->used,
						o->charged);
		else
			r->body = gw_json_success(ts);
		return;
	}
	if (uses_table_text(row->status) || o->message[0] == '\0') {
		char msg[GW_MESSAGE_MAX];
		das_status_format(row->status, "", msg, sizeof(msg));
		fill_error(r, row, msg, client_type_as_sent, now);
		return;
	}
	fill_error(r, row, o->message, client_type_as_sent, now);
}

void gw_call_outcome_release(struct gw_call_outcome *o)
{
	free(o->entries);
	o->entries = NULL;
	o->n_entries = 0;
}

void gw_reply_release(struct gw_reply *r)
{
	free(r->body);
	r->body = NULL;
}
