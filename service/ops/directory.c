/*
 * The Directory RPCs: customers, users and PBX devices. Each is validated
 * on the caller's thread, then its transaction (directory_body) is handed
 * to the store (ops_later_run): load, the directory's authorization, the
 * change, and the ledger rows of the assignments it ends.
 */
#include "ops.h"

#include <stdio.h>
#include <string.h>

#include "common/utf8.h"
#include "service/ops/ops_tx.h"

static enum das_status validate_tenant(struct ops_text t,
				       char out[DAS_GUID_SIZE],
				       struct ops_result *result)
{
	if (!t.s || das_guid_normalize(t.s, t.len, out) != 0) {
		domain_quote_value(t.s ? t.s : "", t.s ? t.len : 0,
				   result->detail);
		result->status = DAS_INVALID_TENANT_ID;
		return result->status;
	}
	return DAS_OK;
}

static enum das_status validate_id(struct ops_text t, char out[DAS_ID_SIZE],
				   struct ops_result *result)
{
	if (!t.s || !das_id_is_valid(t.s, t.len)) {
		domain_quote_value(t.s ? t.s : "", t.s ? t.len : 0,
				   result->detail);
		result->status = DAS_INVALID_ID;
		return result->status;
	}
	memcpy(out, t.s, t.len);
	out[t.len] = '\0';
	return DAS_OK;
}

/* Authorization of a directory change to customer (snapshot loaded). */
static bool directory_allowed(const struct domain_principal *who,
			      const struct domain_key *key,
			      const struct domain_snapshot *snap,
			      struct ops_result *result)
{
	const char *account =
		snap->is_customer_found && snap->customer_has_account
			? snap->customer_account
			: NULL;

	result->status = domain_check_directory(who, key->customer, account);
	return result->status == DAS_OK;
}

/*
 * A display name: well-formed UTF-8 (common/utf8.h) without ASCII control
 * characters (NUL and DEL among them), so every store keeps it as sent.
 */
static bool is_text(const char *s, size_t len)
{
	for (size_t i = 0, n; i < len; i += n) {
		unsigned char c = (unsigned char)s[i];

		n = das_utf8_seq(s + i, len - i);
		if (n == 0 || (n == 1 && (c < 0x20 || c == 0x7f)))
			return false;
	}
	return true;
}

/* A change of the customer itself (snapshot loaded, allowed). */
static int customer_change(struct store_tx *tx, struct ops_later *l,
			   const struct domain_snapshot *snap,
			   struct ops_result *result)
{
	const struct store_customer *c = &l->directory.customer;

	if (l->directory.action == OPS_DELETE_CUSTOMER) {
		if (!snap->is_customer_found)
			return STORE_OK; /* already gone: idempotent */
		struct store_actor actor = {l->who.sub, result->at,
					    l->who.request_id};
		return store_customer_delete(tx, l->key.customer, &actor,
					     &result->is_changed,
					     &result->n_dropped);
	}
	/* Moving a customer to another account needs that account too. */
	result->status = domain_check_directory(
		&l->who, l->key.customer, c->has_account ? c->account : NULL);
	if (result->status != DAS_OK)
		return STORE_OK;
	return store_customer_put(tx, c, &result->is_changed);
}

/* Drops assignments that an owner change or a deletion ends. */
static int drop_assignments(struct store_tx *tx, const struct ops_later *l,
			    const struct domain_change *changes, size_t n,
			    struct ops_result *result)
{
	if (n == 0)
		return STORE_OK;
	struct store_actor actor = {l->who.sub, result->at, l->who.request_id};
	result->n_dropped = (uint32_t)n;
	return store_apply(tx, l->key.customer, changes, n, &actor);
}

/* A user's deletion ends every assignment the user holds. */
static int delete_user(struct store_tx *tx, const struct ops_later *l,
		       const struct domain_snapshot *snap,
		       struct ops_result *result)
{
	struct domain_change changes[DAS_CLIENT_TYPE_COUNT];
	size_t n = 0;
	int rc;

	if (!snap->is_user_found)
		return STORE_OK;
	for (int t = DAS_CLIENT_DESKTOP; t < DAS_CLIENT_TYPE_COUNT; t++) {
		if (!snap->user_devices[t][0])
			continue;
		struct domain_change *c = &changes[n++];
		memset(c, 0, sizeof(*c));
		memcpy(c->user, l->key.user, DAS_ID_SIZE);
		memcpy(c->device, snap->user_devices[t], DAS_ID_SIZE);
		c->from_type = t;
		c->to_type = DAS_CLIENT_NONE;
	}
	rc = drop_assignments(tx, l, changes, n, result);
	if (rc != STORE_OK)
		return rc;
	return store_user_delete(tx, l->key.customer, l->key.user,
				 &result->is_changed);
}

/* A device that changes owner (or is deleted: new_owner NULL) ends its
 * assignment, if it has one. */
static int put_or_delete_device(struct store_tx *tx, const struct ops_later *l,
				const struct domain_snapshot *snap,
				const char *new_owner,
				struct ops_result *result)
{
	struct domain_change changes[DAS_CLIENT_TYPE_COUNT];
	size_t n;
	int rc;

	n = domain_device_changed(snap, l->key.device, new_owner, changes);
	rc = drop_assignments(tx, l, changes, n, result);
	if (rc != STORE_OK)
		return rc;
	if (new_owner)
		return store_device_put(tx, l->key.customer, l->key.device,
					new_owner, &result->is_changed);
	return store_device_delete(tx, l->key.customer, l->key.device,
				   &result->is_changed);
}

/*
 * The transaction of every directory change (arg: its ops_later): load,
 * the directory's authorization, then the change. A run after a conflict
 * starts from nothing changed.
 */
static int directory_body(struct store_tx *tx, struct ops_later *l)
{
	struct ops_result *result = &l->result;
	struct domain_snapshot snap;
	int rc;

	result->is_changed = false;
	result->n_dropped = 0;
	rc = store_load(tx, &l->key, &snap);
	/* Where the change waits for the store (locks and read): a call
	 * late by then changes nothing (a caller that waits has no
	 * deadline). */
	if (rc != STORE_OK || ops_later_is_late(l))
		return rc;
	if (!directory_allowed(&l->who, &l->key, &snap, result))
		return STORE_OK;
	switch (l->directory.action) {
	case OPS_UPSERT_CUSTOMER:
	case OPS_DELETE_CUSTOMER:
		return customer_change(tx, l, &snap, result);
	default:
		break;
	}
	if (!snap.is_customer_found) {
		result->status = DAS_CUSTOMER_NOT_FOUND;
		return STORE_OK;
	}
	switch (l->directory.action) {
	case OPS_UPSERT_USER:
		return store_user_put(tx, l->key.customer, l->key.user,
				      l->directory.roles, &result->is_changed);
	case OPS_DELETE_USER:
		return delete_user(tx, l, &snap, result);
	case OPS_UPSERT_DEVICE:
		return put_or_delete_device(tx, l, &snap, l->directory.owner,
					    result);
	case OPS_DELETE_DEVICE:
		if (!snap.is_device_found)
			return STORE_OK;
		return put_or_delete_device(tx, l, &snap, NULL, result);
	default:
		return STORE_ERROR;
	}
}

/* UpsertCustomer's fields (rows 2-3) into l->key and l->directory. */
static enum das_status customer_validate(const struct ops_directory_input *in,
					 struct ops_later *l)
{
	struct store_customer *c = &l->directory.customer;
	struct ops_result *result = &l->result;

	if (in->account.len > 0) {
		if (validate_tenant(in->account, c->account, result) != DAS_OK)
			return result->status;
		c->has_account = true;
	}
	if (validate_tenant(in->tenant, l->key.customer, result) != DAS_OK)
		return result->status;
	if (in->name.len > OPS_NAME_MAX ||
	    !is_text(in->name.s ? in->name.s : "", in->name.len)) {
		result->status = DAS_INVALID_ARGUMENT;
		snprintf(result->detail, sizeof(result->detail),
			 "name must be valid UTF-8 text of at most %d bytes",
			 OPS_NAME_MAX);
		return result->status;
	}
	memcpy(c->tenant, l->key.customer, DAS_GUID_SIZE);
	if (in->name.len)
		memcpy(c->name, in->name.s, in->name.len);
	c->name[in->name.len] = '\0';
	c->is_seat_limited = in->is_seat_limited;
	c->included_seats = in->included_seats;
	return DAS_OK;
}

/* UpsertUser's roles into l->directory.roles. */
static enum das_status roles_validate(const struct ops_directory_input *in,
				      struct ops_later *l)
{
	const char *role_s[DOMAIN_ROLES_MAX];
	size_t role_len[DOMAIN_ROLES_MAX];

	for (size_t i = 0; i < in->n_roles && i < DOMAIN_ROLES_MAX; i++) {
		role_s[i] = in->roles[i].s;
		role_len[i] = in->roles[i].len;
	}
	if (domain_roles_normalize(role_s, role_len, in->n_roles,
				   l->directory.roles, l->result.detail) != 0)
		return l->result.status = DAS_INVALID_ARGUMENT;
	return DAS_OK;
}

/* Rows 2-3 of a directory request, in the contract's order, into l. */
static enum das_status directory_validate(const struct ops_directory_input *in,
					  struct ops_later *l)
{
	struct ops_result *result = &l->result;

	l->directory.action = in->op;
	switch (in->op) {
	case OPS_UPSERT_CUSTOMER:
		return customer_validate(in, l);
	case OPS_DELETE_CUSTOMER:
		return validate_tenant(in->tenant, l->key.customer, result);
	case OPS_UPSERT_USER:
		if (validate_tenant(in->tenant, l->key.customer, result) !=
			    DAS_OK ||
		    validate_id(in->user, l->key.user, result) != DAS_OK)
			return result->status;
		return roles_validate(in, l);
	case OPS_DELETE_USER:
		if (validate_tenant(in->tenant, l->key.customer, result) !=
		    DAS_OK)
			return result->status;
		return validate_id(in->user, l->key.user, result);
	case OPS_UPSERT_DEVICE:
		if (validate_tenant(in->tenant, l->key.customer, result) !=
			    DAS_OK ||
		    validate_id(in->device, l->key.device, result) != DAS_OK)
			return result->status;
		return validate_id(in->owner, l->directory.owner, result);
	case OPS_DELETE_DEVICE:
		if (validate_tenant(in->tenant, l->key.customer, result) !=
		    DAS_OK)
			return result->status;
		return validate_id(in->device, l->key.device, result);
	}
	result->status = DAS_INTERNAL;
	return result->status;
}

bool ops_directory_start(struct store *st, const struct domain_principal *who,
			 const struct ops_directory_input *in,
			 struct ops_later *l)
{
	ops_result_init(&l->result);
	memset(&l->key, 0, sizeof(l->key));
	memset(&l->directory, 0, sizeof(l->directory));
	if (directory_validate(in, l) != DAS_OK)
		return true;
	l->body = directory_body;
	return ops_later_run(l, st, who, false);
}

enum das_status ops_directory(struct store *st,
			      const struct domain_principal *who,
			      const struct ops_directory_input *in,
			      struct ops_result *result)
{
	struct ops_wait w;
	struct ops_later *l = ops_wait_begin(&w);

	return ops_wait_end(&w, ops_directory_start(st, who, in, l), result);
}

enum das_status ops_upsert_customer(struct store *st,
				    const struct domain_principal *who,
				    const struct ops_customer_input *c,
				    struct ops_result *result)
{
	struct ops_directory_input in = {
		.op = OPS_UPSERT_CUSTOMER,
		.tenant = c->tenant,
		.account = c->account,
		.name = c->name,
		.is_seat_limited = c->is_seat_limited,
		.included_seats = c->included_seats,
	};

	return ops_directory(st, who, &in, result);
}

enum das_status ops_delete_customer(struct store *st,
				    const struct domain_principal *who,
				    struct ops_text tenant,
				    struct ops_result *result)
{
	struct ops_directory_input in = {.op = OPS_DELETE_CUSTOMER,
					 .tenant = tenant};

	return ops_directory(st, who, &in, result);
}

enum das_status ops_upsert_user(struct store *st,
				const struct domain_principal *who,
				struct ops_text tenant, struct ops_text user,
				const struct ops_text *roles, size_t n_roles,
				struct ops_result *result)
{
	struct ops_directory_input in = {.op = OPS_UPSERT_USER,
					 .tenant = tenant,
					 .user = user,
					 .roles = roles,
					 .n_roles = n_roles};

	return ops_directory(st, who, &in, result);
}

enum das_status ops_delete_user(struct store *st,
				const struct domain_principal *who,
				struct ops_text tenant, struct ops_text user,
				struct ops_result *result)
{
	struct ops_directory_input in = {
		.op = OPS_DELETE_USER, .tenant = tenant, .user = user};

	return ops_directory(st, who, &in, result);
}

enum das_status ops_upsert_device(struct store *st,
				  const struct domain_principal *who,
				  struct ops_text tenant,
				  struct ops_text device, struct ops_text owner,
				  struct ops_result *result)
{
	struct ops_directory_input in = {.op = OPS_UPSERT_DEVICE,
					 .tenant = tenant,
					 .device = device,
					 .owner = owner};

	return ops_directory(st, who, &in, result);
}

enum das_status ops_delete_device(struct store *st,
				  const struct domain_principal *who,
				  struct ops_text tenant,
				  struct ops_text device,
				  struct ops_result *result)
{
	struct ops_directory_input in = {
		.op = OPS_DELETE_DEVICE, .tenant = tenant, .device = device};

	return ops_directory(st, who, &in, result);
}
