/*
 * The rules. Every function here is pure: the store reads the world into a
 * domain_snapshot and writes back the domain_change rows decided here, inside
 * one transaction, so this file never has to think about concurrency.
 */
#include "domain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest part of an offending value quoted back to the caller. */
#define DETAIL_QUOTE_MAX 128

/*
 * The text goes back in a gRPC status message and a JSON body, so it must be
 * plain, bounded ASCII whatever the caller sent.
 */
void domain_quote_value(const char *s, size_t len,
			char detail[DOMAIN_DETAIL_SIZE])
{
	size_t n = len < DETAIL_QUOTE_MAX ? len : DETAIL_QUOTE_MAX;
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		detail[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	if (len > n) {
		memcpy(detail + o, "...", 3);
		o += 3;
	}
	detail[o] = '\0';
}

static enum das_status invalid_tenant(const char *s, size_t len,
				      char detail[DOMAIN_DETAIL_SIZE])
{
	domain_quote_value(s ? s : "", s ? len : 0, detail);
	return DAS_INVALID_TENANT_ID;
}

static enum das_status check_id(const char *s, size_t len, char *out,
				char detail[DOMAIN_DETAIL_SIZE])
{
	if (!s || !das_id_is_valid(s, len)) {
		domain_quote_value(s ? s : "", s ? len : 0, detail);
		return DAS_INVALID_ID;
	}
	memcpy(out, s, len);
	out[len] = '\0';
	return DAS_OK;
}

enum das_status domain_validate(const struct domain_request *req,
				struct domain_key *key,
				char detail[DOMAIN_DETAIL_SIZE])
{
	enum das_status st;

	memset(key, 0, sizeof(*key));
	detail[0] = '\0';

	/* Row 2: tenant ids, in path order (account first). */
	if (req->account && req->account_len > 0) {
		if (das_guid_normalize(req->account, req->account_len,
				       key->account) != 0)
			return invalid_tenant(req->account, req->account_len,
					      detail);
		key->has_account = true;
	}
	if (!req->customer ||
	    das_guid_normalize(req->customer, req->customer_len,
			       key->customer) != 0)
		return invalid_tenant(req->customer, req->customer_len, detail);

	/* Row 3: user and device ids. */
	st = check_id(req->user, req->user_len, key->user, detail);
	if (st != DAS_OK)
		return st;
	if (req->op != DOMAIN_OP_LIST) {
		st = check_id(req->device, req->device_len, key->device,
			      detail);
		if (st != DAS_OK)
			return st;
	}
	return DAS_OK;
}

bool domain_covers(const struct domain_principal *who, const char *customer,
		   const char *account)
{
	if (who->is_all_tenants)
		return true;
	for (size_t i = 0; i < who->n_tenants; i++) {
		if (strcmp(who->tenants[i], customer) == 0)
			return true;
		if (account && *account &&
		    strcmp(who->tenants[i], account) == 0)
			return true;
	}
	return false;
}

static void decide_fail(struct domain_decision *out, enum das_status st)
{
	out->status = st;
	out->n_changes = 0;
	out->is_charged = false;
}

static size_t count_assignments(const struct domain_snapshot *snap)
{
	size_t n = 0;

	for (int t = DAS_CLIENT_DESKTOP; t < DAS_CLIENT_TYPE_COUNT; t++)
		if (snap->user_devices[t][0])
			n++;
	return n;
}

static void add_change(struct domain_decision *out, const char *user,
		       const char *device, int from, int to, bool is_charged)
{
	struct domain_change *c = &out->changes[out->n_changes++];

	snprintf(c->user, sizeof(c->user), "%s", user);
	snprintf(c->device, sizeof(c->device), "%s", device);
	c->from_type = from;
	c->to_type = to;
	c->is_charged = is_charged;
}

/* Row 9: both roles are preconditions of a softphone. */
static bool check_roles(const struct domain_snapshot *snap,
			struct domain_decision *out)
{
	const char *missing;

	if (snap->has_role_uc && snap->has_role_uc_softphone)
		return true;
	if (!snap->has_role_uc && !snap->has_role_uc_softphone)
		missing = DOMAIN_ROLE_UC ", " DOMAIN_ROLE_UC_SOFTPHONE;
	else if (!snap->has_role_uc)
		missing = DOMAIN_ROLE_UC;
	else
		missing = DOMAIN_ROLE_UC_SOFTPHONE;
	snprintf(out->detail, sizeof(out->detail), "%s", missing);
	decide_fail(out, DAS_MISSING_ROLES);
	return false;
}

/*
 * The assignment itself: idempotent repeat, move (the device leaves its old
 * type), replace (the type's old device is released first), and the seat
 * rule: only a user going from no softphone to one takes a new seat.
 */
static void decide_assign(const struct domain_request *req,
			  const struct domain_key *key,
			  const struct domain_snapshot *snap,
			  struct domain_decision *out)
{
	int to = req->client_type;
	int from = snap->device_type;
	const char *occupant = snap->user_devices[to];
	bool is_charged = false;

	out->previous_type = from;
	if (from == to)
		return; /* idempotent: nothing changes, nothing is charged */

	if (count_assignments(snap) == 0 && snap->is_seat_limited &&
	    snap->seats_in_use >= snap->included_seats) {
		if (!req->is_charge_accepted) {
			decide_fail(out, DAS_CHARGES_NOT_ACCEPTED);
			return;
		}
		is_charged = true;
	}
	if (occupant[0] && strcmp(occupant, key->device) != 0)
		add_change(out, key->user, occupant, to, DAS_CLIENT_NONE,
			   false);
	add_change(out, key->user, key->device, from, to, is_charged);
	out->is_charged = is_charged;
}

/*
 * Row 4. The account that counts is the one named in the path when given (a
 * customer outside it is then "not found", row 6, which keeps a reseller
 * from probing other accounts' customers), else the customer's own account.
 */
static enum das_status check_permission(const struct domain_principal *who,
					const struct domain_key *key,
					const struct domain_snapshot *snap)
{
	const char *account;

	if (key->has_account)
		account = key->account;
	else if (snap->is_customer_found && snap->customer_has_account)
		account = snap->customer_account;
	else
		account = NULL;
	if (!(who->scopes & DOMAIN_SCOPE_ASSIGN) ||
	    !domain_covers(who, key->customer, account))
		return DAS_FORBIDDEN;
	return DAS_OK;
}

/* Rows 6 and 7: the customer (in the path's account, if any) and user. */
static enum das_status check_customer_user(const struct domain_key *key,
					   const struct domain_snapshot *snap)
{
	if (!snap->is_customer_found ||
	    (key->has_account &&
	     (!snap->customer_has_account ||
	      strcmp(snap->customer_account, key->account) != 0)))
		return DAS_CUSTOMER_NOT_FOUND;
	if (!snap->is_user_found)
		return DAS_USER_NOT_FOUND;
	return DAS_OK;
}

/* Row 8: the PBX must already give this device to this user. */
static enum das_status check_device(const struct domain_key *key,
				    const struct domain_snapshot *snap)
{
	if (!snap->is_device_found ||
	    strcmp(snap->device_owner, key->user) != 0)
		return DAS_DEVICE_NOT_FOUND;
	return DAS_OK;
}

/* An unassign releases the device's type, if it has one; never charged. */
static void decide_unassign(const struct domain_key *key,
			    const struct domain_snapshot *snap,
			    struct domain_decision *out)
{
	out->previous_type = snap->device_type;
	if (snap->device_type != DAS_CLIENT_NONE)
		add_change(out, key->user, key->device, snap->device_type,
			   DAS_CLIENT_NONE, false);
}

void domain_decide(const struct domain_principal *who,
		   const struct domain_request *req,
		   const struct domain_key *key,
		   const struct domain_snapshot *snap,
		   struct domain_decision *out)
{
	enum das_status st;

	memset(out, 0, sizeof(*out));
	out->status = DAS_OK;

	st = check_permission(who, key, snap);
	if (st == DAS_OK && req->op == DOMAIN_OP_ASSIGN &&
	    !das_client_type_is_valid(req->client_type))
		st = DAS_INVALID_CLIENT_TYPE; /* row 5 */
	if (st == DAS_OK)
		st = check_customer_user(key, snap);
	if (st == DAS_OK && req->op != DOMAIN_OP_LIST)
		st = check_device(key, snap);
	if (st != DAS_OK) {
		decide_fail(out, st);
		return;
	}

	if (req->op == DOMAIN_OP_LIST)
		return;
	if (req->op == DOMAIN_OP_UNASSIGN) {
		decide_unassign(key, snap, out);
		return;
	}
	/* Rows 9 and 10, then the change. */
	if (check_roles(snap, out))
		decide_assign(req, key, snap, out);
}

enum das_status domain_check_directory(const struct domain_principal *who,
				       const char *customer,
				       const char *account_now)
{
	if (!(who->scopes & DOMAIN_SCOPE_DIRECTORY) ||
	    !domain_covers(who, customer, account_now))
		return DAS_FORBIDDEN;
	return DAS_OK;
}

size_t domain_device_changed(const struct domain_snapshot *snap,
			     const char *device, const char *new_owner,
			     struct domain_change *out)
{
	if (!snap->is_device_found || snap->device_type == DAS_CLIENT_NONE)
		return 0;
	if (new_owner && strcmp(new_owner, snap->device_owner) == 0)
		return 0;
	memset(out, 0, sizeof(*out));
	snprintf(out->user, sizeof(out->user), "%s", snap->device_owner);
	snprintf(out->device, sizeof(out->device), "%s", device);
	out->from_type = snap->device_type;
	out->to_type = DAS_CLIENT_NONE;
	out->is_charged = false;
	return 1;
}

static bool role_is_valid(const char *s, size_t len)
{
	if (len < 1 || len > DAS_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' ||
			  c == '-' || c == ':';
		if (!ok)
			return false;
	}
	return true;
}

struct role_ref {
	const char *s;
	size_t len;
};

static int role_cmp(const void *a, const void *b)
{
	const struct role_ref *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->s, y->s, n);

	if (c)
		return c;
	return (x->len > y->len) - (x->len < y->len);
}

int domain_roles_normalize(const char *const *roles, const size_t *lens,
			   size_t n, char out[DOMAIN_ROLES_SIZE],
			   char detail[DOMAIN_DETAIL_SIZE])
{
	struct role_ref refs[DOMAIN_ROLES_MAX];
	size_t o = 0;

	out[0] = '\0';
	detail[0] = '\0';
	if (n > DOMAIN_ROLES_MAX) {
		snprintf(detail, DOMAIN_DETAIL_SIZE,
			 "at most %d roles per user", DOMAIN_ROLES_MAX);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (!roles[i] || !role_is_valid(roles[i], lens[i])) {
			char quoted[DOMAIN_DETAIL_SIZE];
			domain_quote_value(roles[i] ? roles[i] : "",
				    roles[i] ? lens[i] : 0, quoted);
			snprintf(detail, DOMAIN_DETAIL_SIZE,
				 "invalid role '%.*s'", DETAIL_QUOTE_MAX + 3,
				 quoted);
			return -1;
		}
		refs[i].s = roles[i];
		refs[i].len = lens[i];
	}
	qsort(refs, n, sizeof(refs[0]), role_cmp);
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && role_cmp(&refs[i], &refs[i - 1]) == 0)
			continue;
		if (o > 0)
			out[o++] = ' ';
		memcpy(out + o, refs[i].s, refs[i].len);
		o += refs[i].len;
	}
	out[o] = '\0';
	return 0;
}

bool domain_roles_contain(const char *roles_text, const char *role)
{
	size_t len = strlen(role);
	const char *p = roles_text;

	if (!p || len == 0)
		return false;
	while (*p) {
		const char *end = strchr(p, ' ');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n == len && memcmp(p, role, len) == 0)
			return true;
		if (!end)
			break;
		p = end + 1;
	}
	return false;
}

enum das_status domain_check_ledger(const struct domain_principal *who,
				    const struct domain_key *key,
				    const struct domain_snapshot *snap,
				    enum das_status row5)
{
	const char *account;

	/* The same account rule as domain_decide's row 4. */
	if (key->has_account)
		account = key->account;
	else if (snap->is_customer_found && snap->customer_has_account)
		account = snap->customer_account;
	else
		account = NULL;
	if (!(who->scopes & DOMAIN_SCOPE_LEDGER) ||
	    !domain_covers(who, key->customer, account))
		return DAS_FORBIDDEN;
	if (row5 != DAS_OK)
		return row5;
	if (!snap->is_customer_found ||
	    (key->has_account &&
	     (!snap->customer_has_account ||
	      strcmp(snap->customer_account, key->account) != 0)))
		return DAS_CUSTOMER_NOT_FOUND;
	return DAS_OK;
}
