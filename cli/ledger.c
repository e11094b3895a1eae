/*
 * ledger and seats: who changed what, which seats are charged. A page at a
 * time (--page-token from the last line of the previous one) or --all.
 */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/ids.h"
#include "common/timefmt.h"
#include "deviceassignment/v1/device_assignment.pb-c.h"

/* Pages --all follows at most (500 entries each: 50 M entries). */
#define MAX_PAGES 100000

static const char *type_or_dash(int type)
{
	const char *name = das_client_type_name(type);

	return *name ? name : "-";
}

static const char *operation_name(int op)
{
	switch (op) {
	case DEVICEASSIGNMENT__V1__LEDGER_OPERATION__LEDGER_OPERATION_ASSIGN:
		return "assign";
	case DEVICEASSIGNMENT__V1__LEDGER_OPERATION__LEDGER_OPERATION_MOVE:
		return "move";
	case DEVICEASSIGNMENT__V1__LEDGER_OPERATION__LEDGER_OPERATION_UNASSIGN:
		return "unassign";
	default:
		return "unknown";
	}
}

static void entry_time(const Deviceassignment__V1__LedgerEntry *e,
		       char ts[DAS_TIMESTAMP_SIZE])
{
	struct das_time t = {0, 0};

	if (e->time) {
		t.seconds = e->time->seconds;
		t.nanos = e->time->nanos;
	}
	if (das_time_format(t, ts) != 0)
		snprintf(ts, DAS_TIMESTAMP_SIZE, "-");
}

static json_t *type_json(int type)
{
	const char *name = das_client_type_name(type);

	return *name ? json_string(name) : json_null();
}

/* One JSON object per line (JSON Lines): the REST entry shape. */
static int print_entries_json(const Deviceassignment__V1__ListLedgerResponse *r)
{
	for (size_t i = 0; i < r->n_entries; i++) {
		const Deviceassignment__V1__LedgerEntry *e = r->entries[i];
		char ts[DAS_TIMESTAMP_SIZE];
		json_t *o;
		char *text;

		entry_time(e, ts);
		o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:o, "
			      "s:b}",
			      "sequence", (json_int_t)e->sequence, "time", ts,
			      "actor", e->actor, "requestId", e->request_id,
			      "operation", operation_name(e->operation),
			      "userId", e->user_id, "deviceId", e->device_id,
			      "previousClientType",
			      type_json(e->previous_client_type),
			      "newClientType", type_json(e->new_client_type),
			      "charged", e->charged);
		text = o ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
		if (!text)
			return -1;
		printf("%s\n", text);
		free(text);
	}
	return 0;
}

static void print_entries_table(const Deviceassignment__V1__ListLedgerResponse *r,
				bool is_header)
{
	if (is_header)
		printf("%-8s %-28s %-9s %-12s %-16s %-8s %-8s %-7s %-16s %s\n",
		       "SEQ", "TIME", "OPERATION", "USER", "DEVICE", "FROM",
		       "TO", "CHARGED", "ACTOR", "REQUEST-ID");
	for (size_t i = 0; i < r->n_entries; i++) {
		const Deviceassignment__V1__LedgerEntry *e = r->entries[i];
		char ts[DAS_TIMESTAMP_SIZE];

		entry_time(e, ts);
		printf("%-8" PRId64 " %-28s %-9s %-12s %-16s %-8s %-8s %-7s %-16s "
		       "%s\n",
		       e->sequence, ts, operation_name(e->operation),
		       e->user_id, e->device_id,
		       type_or_dash(e->previous_client_type),
		       type_or_dash(e->new_client_type),
		       e->charged ? "yes" : "no", e->actor,
		       e->request_id[0] ? e->request_id : "-");
	}
}

static int parse_time(const char *flag, const char *value,
		      Google__Protobuf__Timestamp *ts,
		      Google__Protobuf__Timestamp **slot)
{
	struct das_time t;

	if (!value || !*value)
		return 0;
	if (das_time_parse(value, strlen(value), &t) != 0) {
		cli_error("ledger: --%s '%s' is not an RFC 3339 timestamp "
			  "(as in 2026-12-01T10:00:00Z)",
			  flag, value);
		return -1;
	}
	ts->seconds = t.seconds;
	ts->nanos = t.nanos;
	*slot = ts;
	return 0;
}

/* The ledger command's flags, by index. */
enum {
	L_TENANT, L_ACCOUNT, L_USER, L_DEVICE, L_SINCE, L_UNTIL, L_CHARGED,
	L_SIZE, L_TOKEN, L_ORDER, L_ALL, L_JSON, L__N
};

/* The request of the first page, from the checked flags (since and until
 * hold the times it points at). Returns 0, or CLI_EXIT_USAGE said. */
static int request_from_flags(const struct das_flag *flags,
			      Deviceassignment__V1__ListLedgerRequest *req,
			      Google__Protobuf__Timestamp *since,
			      Google__Protobuf__Timestamp *until)
{
	unsigned long size;

	if (das_parse_uint(flags[L_SIZE].value, 1, 500, &size) != 0) {
		cli_error("ledger: --page-size must be an integer in 1..500");
		return CLI_EXIT_USAGE;
	}
	if (strcmp(flags[L_ORDER].value, "newest") == 0)
		req->order = DEVICEASSIGNMENT__V1__LEDGER_ORDER__LEDGER_ORDER_NEWEST_FIRST;
	else if (strcmp(flags[L_ORDER].value, "oldest") == 0)
		req->order = DEVICEASSIGNMENT__V1__LEDGER_ORDER__LEDGER_ORDER_OLDEST_FIRST;
	else {
		cli_error("ledger: --order must be newest or oldest");
		return CLI_EXIT_USAGE;
	}
	if (parse_time("since", flags[L_SINCE].value, since, &req->since) ||
	    parse_time("until", flags[L_UNTIL].value, until, &req->until))
		return CLI_EXIT_USAGE;
	req->customer_tenant_id = (char *)flags[L_TENANT].value;
	req->account_tenant_id = cli_opt(&flags[L_ACCOUNT]);
	req->user_id = cli_opt(&flags[L_USER]);
	req->device_id = cli_opt(&flags[L_DEVICE]);
	req->only_charged = flags[L_CHARGED].value != NULL;
	req->page_size = (uint32_t)size;
	return 0;
}

/*
 * Prints the page at token and, with is_all, every page after it; without,
 * a line naming the next page's token (on stderr with JSON, so stdout
 * stays one entry per line). Returns an exit code.
 */
static int print_pages(struct cli_ctx *ctx,
		       Deviceassignment__V1__ListLedgerRequest *req,
		       char *token, size_t token_size, bool is_json,
		       bool is_all)
{
	for (int page = 0; page < MAX_PAGES; page++) {
		Deviceassignment__V1__ListLedgerResponse *resp = NULL;
		bool has_next;

		req->page_token = token;
		if (cli_call(ctx, DAS_RPC_LIST_LEDGER, &req->base,
			     (ProtobufCMessage **)&resp, "ledger") != 0)
			return CLI_EXIT_FAILURE;
		if (!is_json) {
			print_entries_table(resp, page == 0);
		} else if (print_entries_json(resp) != 0) {
			protobuf_c_message_free_unpacked(&resp->base, NULL);
			cli_error("ledger: out of memory");
			return CLI_EXIT_FAILURE;
		}
		has_next = resp->next_page_token && resp->next_page_token[0];
		snprintf(token, token_size, "%s",
			 has_next ? resp->next_page_token : "");
		protobuf_c_message_free_unpacked(&resp->base, NULL);
		if (!has_next)
			break;
		if (!is_all) {
			fprintf(is_json ? stderr : stdout,
				"next page: --page-token %s\n", token);
			break;
		}
	}
	fflush(stdout);
	return CLI_EXIT_OK;
}

int cli_cmd_ledger(struct cli_ctx *ctx, int argc, char **argv)
{
	struct das_flag flags[L__N] = {
		[L_TENANT] = {.name = "tenant", .metavar = "GUID",
			      .help = "the customer's tenant id"},
		[L_ACCOUNT] = {.name = "account", .metavar = "GUID",
			       .help = "the account (reseller) that owns the "
				       "customer"},
		[L_USER] = {.name = "user", .metavar = "ID",
			    .help = "only this user's entries"},
		[L_DEVICE] = {.name = "device", .metavar = "ID",
			      .help = "only this device's entries"},
		[L_SINCE] = {.name = "since", .metavar = "TIME",
			     .help = "entries at or after (RFC 3339)"},
		[L_UNTIL] = {.name = "until", .metavar = "TIME",
			     .help = "entries before (RFC 3339)"},
		[L_CHARGED] = {.name = "only-charged",
			       .help = "only the entries that were charged"},
		[L_SIZE] = {.name = "page-size", .metavar = "N", .def = "100",
			    .help = "entries per page, 1-500"},
		[L_TOKEN] = {.name = "page-token", .metavar = "TOKEN",
			     .help = "continue where a previous page ended"},
		[L_ORDER] = {.name = "order", .metavar = "ORDER",
			     .def = "newest",
			     .help = "newest or oldest first"},
		[L_ALL] = {.name = "all",
			   .help = "follow every page to the end"},
		[L_JSON] = {.name = "json",
			    .help = "one JSON object per entry and line"},
	};
	Deviceassignment__V1__ListLedgerRequest req =
		DEVICEASSIGNMENT__V1__LIST_LEDGER_REQUEST__INIT;
	Google__Protobuf__Timestamp since = GOOGLE__PROTOBUF__TIMESTAMP__INIT,
				    until = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	char token[256] = "";
	int argi, code = CLI_EXIT_USAGE;

	if (cli_parse_flags(ctx, "ledger",
			    "Prints the customer's ledger of softphone "
			    "changes: a table, newest first, then a line "
			    "with the next page's --page-token when there is "
			    "one.",
			    flags, L__N, true, argc, argv, &argi, &code) != 0)
		return code;
	if (cli_no_more_args("ledger", argc, argv, argi) != 0 ||
	    !cli_required("ledger", &flags[L_TENANT]))
		return CLI_EXIT_USAGE;
	if (request_from_flags(flags, &req, &since, &until) != 0)
		return CLI_EXIT_USAGE;
	if (flags[L_TOKEN].value)
		snprintf(token, sizeof(token), "%s", flags[L_TOKEN].value);
	return print_pages(ctx, &req, token, sizeof(token),
			   flags[L_JSON].value != NULL,
			   flags[L_ALL].value != NULL);
}

int cli_cmd_seats(struct cli_ctx *ctx, int argc, char **argv)
{
	enum { F_TENANT, F_ACCOUNT, F_JSON, F__N };
	struct das_flag flags[F__N] = {
		[F_TENANT] = {.name = "tenant", .metavar = "GUID",
			      .help = "the customer's tenant id"},
		[F_ACCOUNT] = {.name = "account", .metavar = "GUID",
			       .help = "the account (reseller) that owns the "
				       "customer"},
		[F_JSON] = {.name = "json",
			    .help = "print {\"included\",\"used\",\"charged\"}"},
	};
	Deviceassignment__V1__GetSeatUsageRequest req =
		DEVICEASSIGNMENT__V1__GET_SEAT_USAGE_REQUEST__INIT;
	Deviceassignment__V1__GetSeatUsageResponse *resp = NULL;
	int argi, code = CLI_EXIT_USAGE;

	if (cli_parse_flags(ctx, "seats",
			    "Prints the customer's softphone seats: included "
			    "(\"unlimited\" when not limited), used, charged.",
			    flags, F__N, true, argc, argv, &argi, &code) != 0)
		return code;
	if (cli_no_more_args("seats", argc, argv, argi) != 0 ||
	    !cli_required("seats", &flags[F_TENANT]))
		return CLI_EXIT_USAGE;
	req.customer_tenant_id = (char *)flags[F_TENANT].value;
	req.account_tenant_id = cli_opt(&flags[F_ACCOUNT]);
	if (cli_call(ctx, DAS_RPC_GET_SEAT_USAGE, &req.base,
		     (ProtobufCMessage **)&resp, "seats") != 0)
		return CLI_EXIT_FAILURE;
	if (flags[F_JSON].value) {
		if (resp->has_included)
			printf("{\"included\":%" PRIu32 ",\"used\":%" PRIu32
			       ",\"charged\":%" PRIu32 "}\n",
			       resp->included, resp->used, resp->charged);
		else
			printf("{\"included\":null,\"used\":%" PRIu32
			       ",\"charged\":%" PRIu32 "}\n",
			       resp->used, resp->charged);
	} else {
		if (resp->has_included)
			printf("included %" PRIu32 "\n", resp->included);
		else
			printf("included unlimited\n");
		printf("used     %" PRIu32 "\ncharged  %" PRIu32 "\n",
		       resp->used, resp->charged);
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return CLI_EXIT_OK;
}
