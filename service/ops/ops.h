/*
 * The use cases, one function per RPC: the check order around the store
 * transaction. Each validates (rows 2-3), opens a transaction for the
 * customer, loads a snapshot, asks the domain (rows 4-10), applies the
 * decided changes with their ledger rows and commits — retrying the whole
 * transaction on a store conflict. No wire types here: grpc/handlers.c
 * converts protobuf-c messages to these calls.
 */
#ifndef DAS_OPS_H
#define DAS_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/timefmt.h"
#include "service/domain/domain.h"
#include "service/store/store.h"

struct ops_result {
	enum das_status status;
	char detail[DOMAIN_DETAIL_SIZE]; /* fills the status row's "%s" */
	struct das_time at;              /* when the answer was decided */
	/* Assign / unassign: */
	int previous_type;
	bool is_charged;
	/* List: the user's devices, by client type. */
	size_t n_devices;
	struct {
		char device[DAS_ID_SIZE];
		int type;
	} devices[DAS_CLIENT_TYPE_COUNT];
	/* Directory: */
	bool is_changed;
	uint32_t n_dropped;
};

/* Assign, unassign or list, as req->op says. Returns result->status. */
enum das_status ops_device(struct store *st, const struct domain_principal *who,
			   const struct domain_request *req,
			   struct ops_result *result);

/* A string field off the wire: bytes and length. */
struct ops_text {
	const char *s;
	size_t len;
};

struct ops_customer_input {
	struct ops_text tenant;
	struct ops_text account; /* len 0: no account */
	struct ops_text name;
	bool is_seat_limited;
	uint32_t included_seats;
};

enum das_status ops_upsert_customer(struct store *st,
				    const struct domain_principal *who,
				    const struct ops_customer_input *in,
				    struct ops_result *result);
enum das_status ops_delete_customer(struct store *st,
				    const struct domain_principal *who,
				    struct ops_text tenant,
				    struct ops_result *result);
/* roles: n entries. */
enum das_status ops_upsert_user(struct store *st,
				const struct domain_principal *who,
				struct ops_text tenant, struct ops_text user,
				const struct ops_text *roles, size_t n_roles,
				struct ops_result *result);
enum das_status ops_delete_user(struct store *st,
				const struct domain_principal *who,
				struct ops_text tenant, struct ops_text user,
				struct ops_result *result);
enum das_status ops_upsert_device(struct store *st,
				  const struct domain_principal *who,
				  struct ops_text tenant, struct ops_text device,
				  struct ops_text owner,
				  struct ops_result *result);
enum das_status ops_delete_device(struct store *st,
				  const struct domain_principal *who,
				  struct ops_text tenant, struct ops_text device,
				  struct ops_result *result);

/* Longest customer name accepted. */
#define OPS_NAME_MAX 256

#endif
