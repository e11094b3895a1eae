/*
 * One upstream call as the gateway sees it, free of protobuf-c and jansson
 * types: the HTTP side fills a gw_call_request, the upstream glue
 * (gateway/upstream/) fills a gw_call_outcome, the reply builder
 * (gateway/reply.h) turns the outcome into an HTTP answer.
 */
#ifndef GW_CALL_H
#define GW_CALL_H

#include <stdbool.h>
#include <stddef.h>

#include "common/ids.h"
#include "common/timefmt.h"
#include "gateway/http/headers.h"
#include "gateway/query.h"
#include "gateway/routes.h"

/* At most one device per client type; extra entries are a server fault. */
#define GW_LIST_MAX    16
#define GW_MESSAGE_MAX 512
#define GW_REASON_MAX  64

struct gw_call_request {
	enum gw_route_rpc rpc; /* ASSIGN, UNASSIGN, LIST or READYZ */
	/* Borrowed, NUL-terminated; account may be "" (not given). */
	const char *account;
	const char *tenant;
	const char *user;
	const char *device;
	int client_type; /* enum das_client_type; NONE = UNSPECIFIED */
	bool accept_charges;
	const char *authorization; /* NULL = send no authorization metadata */
	const char *request_id;
	const struct gw_ledger_params *ledger; /* LEDGER: the query */
};

/* Sizes of a ledger entry's text as the gateway keeps it (bounded). */
#define GW_ACTOR_SIZE 129
#define GW_LEDGER_RID_SIZE 129
#define GW_LEDGER_TOKEN_SIZE (GW_PAGE_TOKEN_MAX + 1)

struct gw_ledger_entry {
	long long sequence;
	struct das_time time;
	char actor[GW_ACTOR_SIZE];
	char request_id[GW_LEDGER_RID_SIZE];
	int operation; /* 1 assign, 2 move, 3 unassign */
	char user_id[GW_PARAM_SIZE];
	char device_id[GW_PARAM_SIZE];
	int previous_client_type; /* enum das_client_type; NONE = none */
	int new_client_type;
	bool is_charged;
};

struct gw_device_entry {
	char device_id[GW_PARAM_SIZE];
	int client_type;
};

struct gw_call_outcome {
	int grpc_code;
	char reason[GW_REASON_MAX];   /* ErrorInfo reason of our domain or "" */
	char message[GW_MESSAGE_MAX]; /* grpc-message, truncated */
	bool has_timestamp;
	struct das_time timestamp; /* from the response message */
	size_t n_devices;	   /* LIST */
	struct gw_device_entry devices[GW_LIST_MAX];
	bool is_serving; /* READYZ */
	/* LEDGER: entries is malloc'd (n_entries, at most 500); release the
	 * outcome with gw_call_outcome_release. */
	struct gw_ledger_entry *entries;
	size_t n_entries;
	char next_page_token[GW_LEDGER_TOKEN_SIZE]; /* "" = last page */
	/* SEATS: */
	bool has_included; /* false: unlimited */
	unsigned long included, used, charged;
};

/* Frees what an outcome owns (entries); the struct can be reused. */
void gw_call_outcome_release(struct gw_call_outcome *o);

#endif
