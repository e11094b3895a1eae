/*
 * The rules of the product (CONTRACT.md section 3 and the check order of
 * section 2), as pure functions: no I/O, no allocation, no clock.
 *
 * A call flows:  auth (row 1) -> domain_validate (rows 2-3) -> the store
 * loads a domain_snapshot inside a transaction -> domain_decide (rows 4-10,
 * move/replace/seats) -> the store applies decision.changes and their
 * ledger rows in the same transaction -> commit -> reply.
 */
#ifndef DAS_DOMAIN_H
#define DAS_DOMAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ids.h"
#include "common/status.h"

#define DOMAIN_ROLE_UC "customer_user_uc"
#define DOMAIN_ROLE_UC_SOFTPHONE "customer_user_uc_softphone"

/* Scopes a token can grant. */
#define DOMAIN_SCOPE_ASSIGN 0x1u    /* "devices:assign" */
#define DOMAIN_SCOPE_DIRECTORY 0x2u /* "directory:admin" */
#define DOMAIN_SCOPE_LEDGER 0x4u    /* "ledger:read" */

#define DOMAIN_MAX_TENANTS 64 /* entries of the tenants claim we accept */
#define DOMAIN_SUB_SIZE 129   /* sub claim: 1-128 bytes (longer tokens are refused) */
#define DOMAIN_DETAIL_SIZE 256
#define DOMAIN_REQUEST_ID_SIZE 129 /* x-request-id kept: 0-128 bytes */

/* The verified caller (filled by auth/). */
struct domain_principal {
	char sub[DOMAIN_SUB_SIZE];
	bool is_all_tenants; /* tenants contains "*" */
	size_t n_tenants;
	char tenants[DOMAIN_MAX_TENANTS][DAS_GUID_SIZE]; /* canonical */
	unsigned scopes; /* DOMAIN_SCOPE_* */
	/* The call's x-request-id, stamped on its ledger rows; "" = none.
	 * Set by the transport after auth, not from the token. */
	char request_id[DOMAIN_REQUEST_ID_SIZE];
};

enum domain_op {
	DOMAIN_OP_ASSIGN,
	DOMAIN_OP_UNASSIGN,
	DOMAIN_OP_LIST,
};

/* A request as it came off the wire: nothing validated yet. */
struct domain_request {
	enum domain_op op;
	const char *customer;
	size_t customer_len;
	const char *account; /* NULL or empty: not given */
	size_t account_len;
	const char *user;
	size_t user_len;
	const char *device; /* unused by LIST */
	size_t device_len;
	int client_type; /* ASSIGN: deviceassignment.v1.ClientType value */
	bool is_charge_accepted;
};

/* The validated, canonical identifiers of a request. */
struct domain_key {
	char customer[DAS_GUID_SIZE];
	bool has_account;
	char account[DAS_GUID_SIZE];
	char user[DAS_ID_SIZE];
	char device[DAS_ID_SIZE]; /* "" for LIST */
};

/*
 * Rows 2 and 3 of the check order. Returns DAS_OK and fills key, or
 * DAS_INVALID_TENANT_ID / DAS_INVALID_ID with detail set to the offending
 * value as sent (made printable and bounded) for the message template.
 */
enum das_status domain_validate(const struct domain_request *req,
				struct domain_key *key,
				char detail[DOMAIN_DETAIL_SIZE]);

/* What the store read, inside the transaction, for one key. */
struct domain_snapshot {
	bool is_customer_found;
	bool customer_has_account;
	char customer_account[DAS_GUID_SIZE];
	bool is_seat_limited; /* false: includedSoftphoneSeats absent */
	int64_t included_seats;
	int64_t seats_in_use; /* users of the customer with >= 1 assignment */

	bool is_user_found;
	bool has_role_uc;
	bool has_role_uc_softphone;
	/* The user's device per client type; "" = none. Index NONE unused. */
	char user_devices[DAS_CLIENT_TYPE_COUNT][DAS_ID_SIZE];

	bool is_device_found;
	char device_owner[DAS_ID_SIZE];
	int device_type; /* the device's current client type, or NONE */
};

/*
 * One assignment change and its ledger row: device of user goes from
 * from_type to to_type (NONE = unassigned). The store applies changes in
 * order: a displaced device is always released before the new one lands.
 */
struct domain_change {
	char user[DAS_ID_SIZE];
	char device[DAS_ID_SIZE];
	int from_type;
	int to_type;
	bool is_charged;
};

#define DOMAIN_MAX_CHANGES 2

struct domain_decision {
	enum das_status status;
	char detail[DOMAIN_DETAIL_SIZE]; /* fills the row's "%s", if any */
	int previous_type;                /* the device's type before */
	bool is_charged;
	size_t n_changes; /* 0: nothing to write (error or idempotent) */
	struct domain_change changes[DOMAIN_MAX_CHANGES];
};

/*
 * Rows 4-10 and the assignment rules for a validated request, given what
 * the store read. Writes out completely; out->status is DAS_OK on success.
 */
void domain_decide(const struct domain_principal *who,
		   const struct domain_request *req,
		   const struct domain_key *key,
		   const struct domain_snapshot *snap,
		   struct domain_decision *out);

/*
 * True when the principal's tenants claim covers the customer or the
 * account (account may be NULL or "").
 */
bool domain_covers(const struct domain_principal *who, const char *customer,
		   const char *account);

/*
 * Directory administration. Each returns DAS_OK or the status to answer.
 * domain_check_directory: scope directory:admin and tenant coverage of
 * customer (canonical) or of its account (account_now: the stored account,
 * NULL if none or no such customer).
 */
enum das_status domain_check_directory(const struct domain_principal *who,
				       const char *customer,
				       const char *account_now);

/*
 * A PBX device's owner changed (new_owner != NULL) or the device was
 * deleted (new_owner == NULL): the change dropping its assignment, if it
 * has one and must lose it. Returns the number of changes written (0/1).
 */
size_t domain_device_changed(const struct domain_snapshot *snap,
			     const char *device, const char *new_owner,
			     struct domain_change *out);

/*
 * The roles list of a user, normalised for storage: each role 1-64 chars of
 * [A-Za-z0-9._:-], at most 32 roles, joined by single spaces, sorted,
 * without duplicates. Returns 0, or -1 when a role is invalid (detail names
 * it) or the list is too long.
 */
#define DOMAIN_ROLES_MAX 32
#define DOMAIN_ROLES_SIZE (DOMAIN_ROLES_MAX * (DAS_ID_MAX + 1) + 1)
int domain_roles_normalize(const char *const *roles, const size_t *lens,
			   size_t n, char out[DOMAIN_ROLES_SIZE],
			   char detail[DOMAIN_DETAIL_SIZE]);

/*
 * Copies a value as sent (len bytes, any content) into detail for a message
 * such as "The value '%s' is not valid.": printable ASCII kept, other bytes
 * shown as '?', cut after 128 bytes with "...".
 */
void domain_quote_value(const char *s, size_t len,
			char detail[DOMAIN_DETAIL_SIZE]);

/*
 * Rows 4 to 6 of a ledger or seat read (ListLedger, GetSeatUsage), given
 * what the store read for key (customer only): scope ledger:read and the
 * tenants claim as for assign (row 4, FORBIDDEN), then row5 (the caller's
 * verdict on the request's own arguments, DAS_OK when fine), then the
 * customer, inside the account named when one is (row 6, NOT_FOUND).
 */
enum das_status domain_check_ledger(const struct domain_principal *who,
				    const struct domain_key *key,
				    const struct domain_snapshot *snap,
				    enum das_status row5);

/* True when the space-separated roles text contains role exactly. */
bool domain_roles_contain(const char *roles_text, const char *role);

#endif
