#include "ops.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/utf8.h"
#include "service/ops/ops_tx.h"

/* A transaction that keeps conflicting is answered UNAVAILABLE. */
#define OPS_MAX_ATTEMPTS 8


static void backoff(int attempt)
{
	/* 0.2, 0.4, 0.8 ... ms, plus jitter from the clock's nanoseconds. */
	struct timespec now, ts;

	clock_gettime(CLOCK_MONOTONIC, &now);
	long ns = (100000L << attempt) + now.tv_nsec % 100000L;
	ts.tv_sec = 0;
	ts.tv_nsec = ns > 50000000L ? 50000000L : ns;
	nanosleep(&ts, NULL);
}

enum das_status ops_run_tx(struct store *st, const char *customer,
			      bool is_read_only, tx_body_fn body, void *arg,
			      struct ops_result *result)
{
	int rc = STORE_ERROR;

	for (int attempt = 0; attempt < OPS_MAX_ATTEMPTS; attempt++) {
		struct store_tx *tx = NULL;

		result->status = DAS_OK;
		result->detail[0] = '\0';
		rc = store_begin(st, customer, is_read_only, &tx);
		if (rc == STORE_OK) {
			rc = body(tx, arg, result);
			if (rc == STORE_OK && result->status == DAS_OK)
				rc = store_commit(tx);
			else
				store_rollback(tx);
		}
		if (rc != STORE_RETRY)
			break;
		store_metric_retry(st->ops->name);
		backoff(attempt);
	}
	switch (rc) {
	case STORE_OK:
		return result->status;
	case STORE_RETRY:
		das_log(DAS_LOG_WARN, "store: still conflicting after %d attempts",
			OPS_MAX_ATTEMPTS);
		result->status = DAS_UNAVAILABLE;
		break;
	case STORE_UNAVAILABLE:
		result->status = DAS_STORE_UNAVAILABLE;
		break;
	default:
		result->status = DAS_INTERNAL;
		break;
	}
	result->detail[0] = '\0';
	return result->status;
}

static void result_init(struct ops_result *result)
{
	memset(result, 0, sizeof(*result));
	result->status = DAS_OK;
	result->at = das_time_now();
}

/* ---- assign, unassign, list ---- */

/*
 * Assign and unassign read first. The decision is made once in a read-only
 * transaction; a refusal or a decision without changes (an idempotent
 * repeat) is answered from it, so a repeat takes neither the write lock
 * nor a place in a group commit. Only a decision with changes runs the
 * write transaction, which loads and decides again under the lock (the
 * state may have moved since the read) and applies what it decides then.
 *
 * Why an answer from the read is durable: a read-only transaction sees
 * only changes that are committed and synced, so a 201 never rests on
 * another request's change that could still be lost (store.h states this
 * for every backend; what makes it true for each is written there).
 */
struct device_arg {
	const struct domain_principal *who;
	const struct domain_request *req;
	const struct domain_key *key;
	bool is_read_pass;    /* decide only; changes are for the write pass */
	bool is_write_needed; /* set by the read pass: the decision changes */
};

/*
 * Decides from snap; the read pass stops there (is_write_needed tells
 * whether the decision changes anything), the write pass applies.
 */
static int device_decide(struct store_tx *tx, struct device_arg *a,
			 const struct domain_snapshot *snap,
			 struct ops_result *result)
{
	struct domain_decision dec;

	domain_decide(a->who, a->req, a->key, snap, &dec);
	result->status = dec.status;
	memcpy(result->detail, dec.detail, sizeof(result->detail));
	result->previous_type = dec.previous_type;
	result->is_charged = dec.is_charged;
	result->at = das_time_now();
	if (dec.status != DAS_OK)
		return STORE_OK;

	if (a->req->op == DOMAIN_OP_LIST) {
		result->n_devices = 0;
		for (int t = DAS_CLIENT_DESKTOP; t < DAS_CLIENT_TYPE_COUNT;
		     t++) {
			if (!snap->user_devices[t][0])
				continue;
			memcpy(result->devices[result->n_devices].device,
			       snap->user_devices[t], DAS_ID_SIZE);
			result->devices[result->n_devices].type = t;
			result->n_devices++;
		}
		return STORE_OK;
	}
	if (dec.n_changes == 0)
		return STORE_OK;
	if (a->is_read_pass) {
		a->is_write_needed = true;
		return STORE_OK;
	}
	struct store_actor actor = {a->who->sub, result->at,
				     a->who->request_id};
	return store_apply(tx, a->key->customer, dec.changes, dec.n_changes,
			   &actor);
}

static int device_body(struct store_tx *tx, void *arg,
		       struct ops_result *result)
{
	struct device_arg *a = arg;
	struct domain_snapshot snap;
	int rc;

	a->is_write_needed = false; /* a retried read pass decides anew */
	rc = store_load(tx, a->key, &snap);
	if (rc != STORE_OK)
		return rc;
	return device_decide(tx, a, &snap, result);
}

/*
 * True when l's caller has given up (ops_later.deadline_ms): checked where
 * a call comes back from waiting for the store, before it decides and
 * before it writes, and then answered DEADLINE_EXCEEDED.
 */
bool ops_later_is_late(struct ops_later *l)
{
	struct timespec now;

	if (!l->deadline_ms)
		return false;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if ((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 <
	    l->deadline_ms)
		return false;
	l->result.status = DAS_DEADLINE_EXCEEDED;
	l->result.detail[0] = '\0';
	return true;
}

/*
 * The write pass of an assign or unassign, run as a job. Its load is
 * where the job waits for the store (PostgreSQL: the locks and the read,
 * one round trip): a call late by then changes nothing.
 */
static int device_write(struct store_tx *tx, struct ops_later *l)
{
	struct device_arg arg = {&l->who, &l->req, &l->key, false, false};
	struct domain_snapshot snap;
	int rc = store_load(tx, &l->key, &snap);

	if (rc != STORE_OK || ops_later_is_late(l))
		return rc;
	return device_decide(tx, &arg, &snap, &l->result);
}

/*
 * A job handed to the store (store_submit): it runs on the thread that
 * writes (SQLite: the committing thread, in a savepoint of the batch); a
 * refusal there (the state moved since the read, or the directory's
 * rules) is undone and answered after the commit, and so is a call whose
 * deadline passed while it waited (nothing written).
 */
static int later_body(struct store_tx *tx, struct store_job *job)
{
	struct ops_later *l =
		(struct ops_later *)((char *)job -
				     offsetof(struct ops_later, job));
	int rc;

	if (ops_later_is_late(l)) {
		job->is_undone = true;
		return STORE_OK;
	}
	l->result.status = DAS_OK;
	l->result.detail[0] = '\0';
	rc = l->body(tx, l);
	if (rc == STORE_OK && l->result.status != DAS_OK)
		job->is_undone = true;
	return rc;
}

/* The status of a transaction's end, as ops_run_tx maps it. */
static void later_end(struct ops_later *l, int rc)
{
	if (rc == STORE_OK)
		return;
	if (rc == STORE_RETRY)
		das_log(DAS_LOG_WARN, "store: still conflicting after %d attempts",
			OPS_MAX_ATTEMPTS);
	l->result.status = rc == STORE_RETRY         ? DAS_UNAVAILABLE
			   : rc == STORE_UNAVAILABLE ? DAS_STORE_UNAVAILABLE
						     : DAS_INTERNAL;
	l->result.detail[0] = '\0';
}

/*
 * Hands the job over again after a conflict (rc STORE_RETRY), a bounded
 * number of times; no backoff, as this may be the committing thread
 * (SQLite's busy timeout has waited inside the store already). Returns
 * STORE_OK once done will be called, else the last result.
 */
static int later_retry(struct ops_later *l, int rc)
{
	while (rc == STORE_RETRY && ++l->attempt < OPS_MAX_ATTEMPTS) {
		store_metric_retry(l->st->ops->name);
		rc = store_submit(l->st, &l->job);
	}
	return rc;
}

static void later_done(struct store_job *job, int rc)
{
	struct ops_later *l =
		(struct ops_later *)((char *)job -
				     offsetof(struct ops_later, job));

	if (rc == STORE_RETRY) {
		rc = later_retry(l, rc);
		if (rc == STORE_OK)
			return; /* handed over again: done comes later */
	}
	later_end(l, rc);
	l->done(l);
}

/*
 * The write pass of a decision with changes, handed to the group commit.
 * Returns true when l->result holds the answer now (the hand-over
 * failed), false when done will be called.
 */
static bool later_write(struct ops_later *l, bool is_read_only)
{
	l->attempt = 0;
	memset(&l->job, 0, sizeof(l->job));
	l->job.body = later_body;
	l->job.done = later_done;
	l->job.is_read_only = is_read_only;
	int rc = later_retry(l, store_submit(l->st, &l->job));
	if (rc == STORE_OK)
		return false;
	later_end(l, rc);
	return true;
}

/*
 * The read pass handed to the store (store_read_submit): decides on the
 * thread that ran the read. A decision with changes goes on to the write
 * pass: the group commit when the store has one, else a write
 * transaction run here.
 */
static void later_read_done(struct store_read *rd, int rc)
{
	struct ops_later *l =
		(struct ops_later *)((char *)rd -
				     offsetof(struct ops_later, read));
	struct device_arg arg = {&l->who, &l->req, &l->key, true, false};

	while (rc == STORE_RETRY && ++l->attempt < OPS_MAX_ATTEMPTS) {
		store_metric_retry(l->st->ops->name);
		rc = store_read_submit(l->st, &l->read);
		if (rc == STORE_OK)
			return; /* handed over again: done comes later */
	}
	if (rc != STORE_OK) {
		later_end(l, rc);
		l->done(l);
		return;
	}
	if (ops_later_is_late(l)) {
		l->done(l);
		return;
	}
	l->result.status = DAS_OK;
	l->result.detail[0] = '\0';
	device_decide(NULL, &arg, &l->read.snap, &l->result);
	if (l->result.status != DAS_OK || !arg.is_write_needed) {
		l->done(l);
		return;
	}
	if (store_can_submit(l->st)) {
		if (!later_write(l, false))
			return;
	} else {
		arg.is_read_pass = false;
		ops_run_tx(l->st, l->key.customer, false, device_body, &arg,
			   &l->result);
	}
	l->done(l);
}

/* Who asked, as far as deciding needs it: the tenants given. */
static void principal_copy(struct domain_principal *to,
			   const struct domain_principal *from)
{
	size_t n = from->n_tenants < DOMAIN_MAX_TENANTS ? from->n_tenants
						       : DOMAIN_MAX_TENANTS;

	memcpy(to->sub, from->sub, sizeof(to->sub));
	to->is_all_tenants = from->is_all_tenants;
	to->n_tenants = n;
	memcpy(to->tenants, from->tenants, n * sizeof(to->tenants[0]));
	to->scopes = from->scopes;
	memcpy(to->request_id, from->request_id, sizeof(to->request_id));
}

/*
 * The request outlives the caller's strings when it goes on on another
 * thread: l keeps copies (decide reads no string of the request; the key
 * holds the validated ids).
 */
static void later_keep(struct ops_later *l, struct store *st,
		       const struct domain_principal *who,
		       const struct domain_request *req)
{
	l->st = st;
	principal_copy(&l->who, who);
	l->req = *req;
	l->req.customer = l->key.customer;
	l->req.customer_len = strlen(l->key.customer);
	l->req.account = l->key.has_account ? l->key.account : NULL;
	l->req.account_len = l->key.has_account ? strlen(l->key.account) : 0;
	l->req.user = l->key.user;
	l->req.user_len = strlen(l->key.user);
	l->req.device = l->key.device;
	l->req.device_len = strlen(l->key.device);
	l->body = device_write;
	l->attempt = 0;
}

bool ops_device_start(struct store *st, const struct domain_principal *who,
		      const struct domain_request *req,
		      struct ops_later *l)
{
	struct device_arg arg = {who, req, &l->key, true, false};
	struct ops_result *result = &l->result;

	result_init(result);
	result->status = domain_validate(req, &l->key, result->detail);
	if (result->status != DAS_OK)
		return true;
	if (store_can_read_submit(st)) {
		/* The read goes out with other callers' reads; this thread
		 * goes on, the answer comes from the reader's. */
		later_keep(l, st, who, req);
		memset(&l->read, 0, sizeof(l->read));
		l->read.key = &l->key;
		l->read.done = later_read_done;
		int rc = store_read_submit(st, &l->read);
		if (rc == STORE_OK)
			return false;
		/* Not handed over (a busy store says STORE_RETRY): tried
		 * again, or answered, as a read that failed. */
		later_read_done(&l->read, rc);
		return false;
	}
	if (ops_run_tx(st, l->key.customer, true, device_body, &arg, result) !=
		    DAS_OK ||
	    !arg.is_write_needed)
		return true;
	if (!store_can_submit(st)) {
		arg.is_read_pass = false;
		ops_run_tx(st, l->key.customer, false, device_body, &arg,
			   result);
		return true;
	}
	/* The write runs on another thread, maybe after the caller's
	 * strings are gone. */
	later_keep(l, st, who, req);
	return later_write(l, false);
}

/* l->body in the form ops_run_tx runs (arg: l; result: l->result). */
static int later_tx_body(struct store_tx *tx, void *arg,
			 struct ops_result *result)
{
	struct ops_later *l = arg;

	(void)result;
	return l->body(tx, l);
}

bool ops_later_run(struct ops_later *l, struct store *st,
		   const struct domain_principal *who, bool is_read_only)
{
	/* The transaction may run on another thread, after the caller's
	 * strings are gone: l keeps copies. */
	l->st = st;
	principal_copy(&l->who, who);
	l->attempt = 0;
	if (!store_can_submit(st)) {
		ops_run_tx(st, l->key.customer, is_read_only, later_tx_body, l,
			   &l->result);
		return true;
	}
	return later_write(l, is_read_only);
}

/* The synchronous forms: start a call and wait for its answer. */
static void ops_wait_done(struct ops_later *later)
{
	struct ops_wait *w = (struct ops_wait *)later;

	pthread_mutex_lock(&w->lock);
	w->is_done = true;
	pthread_cond_signal(&w->is_done_cond);
	pthread_mutex_unlock(&w->lock);
}

struct ops_later *ops_wait_begin(struct ops_wait *w)
{
	w->later.done = ops_wait_done;
	w->later.deadline_ms = 0; /* none: this caller waits for the answer */
	w->later.page = NULL;
	w->later.usage = NULL;
	w->is_done = false;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->is_done_cond, NULL);
	return &w->later;
}

enum das_status ops_wait_end(struct ops_wait *w, bool is_answered,
			     struct ops_result *result)
{
	if (!is_answered) {
		pthread_mutex_lock(&w->lock);
		while (!w->is_done)
			pthread_cond_wait(&w->is_done_cond, &w->lock);
		pthread_mutex_unlock(&w->lock);
	}
	pthread_cond_destroy(&w->is_done_cond);
	pthread_mutex_destroy(&w->lock);
	*result = w->later.result;
	return result->status;
}

enum das_status ops_device(struct store *st, const struct domain_principal *who,
			   const struct domain_request *req,
			   struct ops_result *result)
{
	struct ops_wait w;
	struct ops_later *l = ops_wait_begin(&w);

	return ops_wait_end(&w, ops_device_start(st, who, req, l), result);
}

/* ---- directory ---- */

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
	const char *account = snap->is_customer_found &&
					      snap->customer_has_account
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
	struct store_actor actor = {l->who.sub, result->at,
				    l->who.request_id};
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
				   l->directory.roles,
				   l->result.detail) != 0)
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
	result_init(&l->result);
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
				  struct ops_text tenant, struct ops_text device,
				  struct ops_text owner,
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
				  struct ops_text tenant, struct ops_text device,
				  struct ops_result *result)
{
	struct ops_directory_input in = {
		.op = OPS_DELETE_DEVICE, .tenant = tenant, .device = device};

	return ops_directory(st, who, &in, result);
}
