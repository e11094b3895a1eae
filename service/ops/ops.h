/*
 * The use cases, one function per RPC: the check order around the store
 * transaction. Each validates (rows 2-3) on the caller's thread, then its
 * transaction loads a snapshot, asks the domain (rows 4-10), applies the
 * decided changes with their ledger rows and commits — run again from the
 * start on a store conflict. The transaction is handed to the store
 * (struct ops_later: a *_start function, answered through done), so the
 * caller's thread never waits for the store; each use case also has a
 * synchronous form that waits. Assign and unassign decide first in a
 * read-only pass and write only when the decision changes something
 * (device.c). No wire types here: grpc/handlers.c converts protobuf-c
 * messages to these calls.
 */
#ifndef DAS_OPS_H
#define DAS_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/timefmt.h"
#include "service/domain/domain.h"
#include "service/store/store.h"

/* A string field off the wire: bytes and length. */
struct ops_text {
	const char *s;
	size_t len;
};

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

/* ---- a call answered later (ops.c) ---- */

/* A directory change as validated, kept for its write (ops' own). */
struct ops_directory_change {
	int action; /* enum ops_directory_op */
	struct store_customer customer;
	char roles[DOMAIN_ROLES_SIZE];
	char owner[DAS_ID_SIZE];
};

/* Bytes of what a ledger page token is bound to (the query). */
#define OPS_LEDGER_BINDING_SIZE 512

/* A ListLedger or GetSeatUsage query as validated (ops' own). */
struct ops_ledger_call {
	struct store_ledger_query q;
	enum das_status row5; /* the request's own arguments */
	char row5_detail[DOMAIN_DETAIL_SIZE];
	bool has_cursor;
	size_t page_size;
	unsigned char token_key[STORE_LEDGER_KEY_SIZE];
	char binding[OPS_LEDGER_BINDING_SIZE];
	size_t binding_len;
};

struct ops_ledger_page;
struct ops_seat_usage;

/*
 * A call that may be answered after its start function returns
 * (ops_device_start, ops_directory_start, ops_list_ledger_start,
 * ops_seat_usage_start): when its read pass goes to the store's reader
 * threads (store_read_submit) or its transaction to the store as a job
 * (store_submit: SQLite's group commit, PostgreSQL's writer threads), the
 * calling thread does not wait for either. The caller fills done and
 * deadline_ms (and page or usage) and keeps the struct alive until done
 * is called; the rest is ops' own.
 */
struct ops_later {
	/* Called once, on any thread, when result holds the answer. */
	void (*done)(struct ops_later *later);
	/* The caller's deadline, CLOCK_MONOTONIC in ms (0: none). A call
	 * still waiting for the store when it passes is answered
	 * DEADLINE_EXCEEDED and changes nothing: its client has given up,
	 * and a write applied after that is one nobody is told about. */
	int64_t deadline_ms;
	struct ops_result result;
	/* ListLedger: the page the rows go to; NULL: one is allocated when
	 * the query runs (malloc), and the caller frees it after done.
	 * GetSeatUsage: the caller's. */
	struct ops_ledger_page *page;
	struct ops_seat_usage *usage;
	/* ops' own */
	struct store *st;
	struct store_read read; /* the read pass, when handed over */
	struct store_job job;
	/* the job's transaction: the device write pass, a directory
	 * change, a ledger query */
	int (*body)(struct store_tx *tx, struct ops_later *l);
	struct domain_principal who;
	struct domain_request req; /* strings point into key */
	struct domain_key key;
	union {
		struct ops_directory_change directory;
		struct ops_ledger_call ledger;
	};
	int attempt;
};

/* ---- assign, unassign, list (device.c) ---- */

/* Assign, unassign or list, as req->op says. Returns result->status. */
enum das_status ops_device(struct store *st, const struct domain_principal *who,
			   const struct domain_request *req,
			   struct ops_result *result);

/*
 * Starts req (assign, unassign or list). Returns true when later->result
 * already holds the answer (done is not called): a refusal, a repeat
 * decided by a read the caller ran, or a backend without a queue.
 * Returns false when later->done will be called once the answer is
 * known: the read pass decided without changes, or the write is durable,
 * or either failed.
 */
bool ops_device_start(struct store *st, const struct domain_principal *who,
		      const struct domain_request *req,
		      struct ops_later *later);

/* ---- the Directory RPCs (directory.c) ---- */

/* The Directory RPCs. */
enum ops_directory_op {
	OPS_UPSERT_CUSTOMER,
	OPS_DELETE_CUSTOMER,
	OPS_UPSERT_USER,
	OPS_DELETE_USER,
	OPS_UPSERT_DEVICE,
	OPS_DELETE_DEVICE,
};

/* A Directory request as it came off the wire; fields op does not use
 * are ignored. */
struct ops_directory_input {
	enum ops_directory_op op;
	struct ops_text tenant;
	/* UpsertCustomer */
	struct ops_text account; /* len 0: no account */
	struct ops_text name;
	bool is_seat_limited;
	uint32_t included_seats;
	/* UpsertUser, DeleteUser */
	struct ops_text user;
	const struct ops_text *roles;
	size_t n_roles;
	/* UpsertPbxDevice, DeletePbxDevice */
	struct ops_text device;
	struct ops_text owner;
};

/*
 * Starts a directory change: validates it, then hands its transaction to
 * the store (store_submit), so the calling thread does not wait while the
 * store is slow, --store-max-waiting counts it, and a change still
 * waiting when later->deadline_ms passes is answered DEADLINE_EXCEEDED
 * and writes nothing. Returns true when later->result already holds the
 * answer (a refusal by validation, a hand-over refused, or a backend
 * without store_submit, whose transaction ran here); false when
 * later->done will be called.
 */
bool ops_directory_start(struct store *st, const struct domain_principal *who,
			 const struct ops_directory_input *in,
			 struct ops_later *later);

/* The synchronous forms: start the change and wait for its answer. */
enum das_status ops_directory(struct store *st,
			      const struct domain_principal *who,
			      const struct ops_directory_input *in,
			      struct ops_result *result);

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

/* ---- the ledger and the seats (ledger.c) ---- */

#define OPS_LEDGER_PAGE_MAX 500
#define OPS_LEDGER_PAGE_DEFAULT 100
/* A page stops early rather than outgrow one gRPC message. */
#define OPS_LEDGER_PAGE_BYTES 60000
#define OPS_PAGE_TOKEN_SIZE 45 /* PAGE_TOKEN_SIZE */

enum ops_ledger_order {
	OPS_LEDGER_DEFAULT_ORDER = 0, /* newest first */
	OPS_LEDGER_NEWEST_FIRST = 1,
	OPS_LEDGER_OLDEST_FIRST = 2,
};

/* A ListLedger request as it came off the wire; len 0 = not given. */
struct ops_ledger_query {
	struct ops_text tenant;
	struct ops_text account;
	struct ops_text user;
	struct ops_text device;
	bool has_since;
	struct das_time since; /* entries at or after */
	bool has_until;
	struct das_time until; /* entries before */
	bool is_only_charged;
	int order;          /* enum ops_ledger_order; others are refused */
	uint32_t page_size; /* 0 = OPS_LEDGER_PAGE_DEFAULT */
	struct ops_text page_token;
};

struct ops_ledger_page {
	size_t n;
	struct store_ledger_row rows[OPS_LEDGER_PAGE_MAX + 1];
	char next_token[OPS_PAGE_TOKEN_SIZE]; /* "" on the last page */
};

/*
 * One page of the customer's ledger. Check order: rows 2-3 (tenant,
 * account, user and device filters), 4 (scope ledger:read, tenants), 5
 * (page size, order, since/until, page token: INVALID_ARGUMENT naming the
 * REST parameter), 6 (customer, in the account when named). The first page
 * fixes the snapshot: later pages return what existed then, each entry
 * once. Validated here, read by the store as a read-only job (as
 * ops_directory_start hands a change over): true when later->result
 * holds the answer now, false when later->done will be called.
 */
bool ops_list_ledger_start(struct store *st, const struct domain_principal *who,
			   const struct ops_ledger_query *q,
			   struct ops_later *later);

/* The synchronous form. page is large (~300 KiB): allocate it. */
enum das_status ops_list_ledger(struct store *st,
				const struct domain_principal *who,
				const struct ops_ledger_query *q,
				struct ops_result *result,
				struct ops_ledger_page *page);

struct ops_seat_usage {
	bool is_seat_limited; /* false: included is meaningless */
	uint32_t included;
	uint32_t used;    /* users with >= 1 softphone assignment */
	uint32_t charged; /* of those, seats taken with charges accepted */
};

/* GetSeatUsage: rows 2, 4, 6 as for ops_list_ledger, run as it is. */
bool ops_seat_usage_start(struct store *st, const struct domain_principal *who,
			  struct ops_text tenant, struct ops_text account,
			  struct ops_later *later);
enum das_status ops_seat_usage(struct store *st,
			       const struct domain_principal *who,
			       struct ops_text tenant, struct ops_text account,
			       struct ops_result *result,
			       struct ops_seat_usage *usage);

/*
 * Retention: deletes the ledger rows stamped more than days days before
 * now, in at most max_batches transactions of at most batch rows, pausing
 * between them so a writer never waits for more than one batch.
 * *n_deleted gets the total. Returns 0 when nothing old is left, 1 when
 * max_batches ran out first, -1 when the store failed (what was pruned
 * stays pruned). days 0 prunes nothing.
 */
int ops_ledger_prune(struct store *st, unsigned days, struct das_time now,
		     size_t batch, size_t max_batches, size_t *n_deleted);

/* The periodic prune: a thread running ops_ledger_prune every interval_s
 * seconds (first at start). */
struct ops_retention;
struct ops_retention *ops_retention_start(struct store *st, unsigned days,
					  unsigned interval_s);
void ops_retention_stop(struct ops_retention *r); /* NULL is a no-op */

#endif
