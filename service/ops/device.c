/*
 * AssignDevice, UnassignDevice and ListUserDevices: a read pass that
 * decides, then, for a decision with changes, a write pass handed to the
 * store (ops.c runs the hand-over).
 */
#include "ops.h"

#include <stdbool.h>
#include <string.h>

#include "service/ops/ops_tx.h"

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
 * The read pass handed to the store (store_read_submit): decides on the
 * thread that ran the read. A decision with changes goes on to the write
 * pass: the group commit when the store has one, else a write
 * transaction run here.
 */
static void device_read_done(struct store_read *rd, int rc)
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
		ops_later_end(l, rc);
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
		if (!ops_later_submit(l, false))
			return;
	} else {
		arg.is_read_pass = false;
		ops_run_tx(l->st, l->key.customer, false, device_body, &arg,
			   &l->result);
	}
	l->done(l);
}

/*
 * The request outlives the caller's strings when it goes on on another
 * thread: l keeps copies (decide reads no string of the request; the key
 * holds the validated ids).
 */
static void device_keep(struct ops_later *l, struct store *st,
			const struct domain_principal *who,
			const struct domain_request *req)
{
	l->st = st;
	ops_principal_copy(&l->who, who);
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
		      const struct domain_request *req, struct ops_later *l)
{
	struct device_arg arg = {who, req, &l->key, true, false};
	struct ops_result *result = &l->result;

	ops_result_init(result);
	result->status = domain_validate(req, &l->key, result->detail);
	if (result->status != DAS_OK)
		return true;
	if (store_can_read_submit(st)) {
		/* The read goes out with other callers' reads; this thread
		 * goes on, the answer comes from the reader's. */
		device_keep(l, st, who, req);
		memset(&l->read, 0, sizeof(l->read));
		l->read.key = &l->key;
		l->read.done = device_read_done;
		l->read.deadline_ms = l->deadline_ms;
		int rc = store_read_submit(st, &l->read);
		if (rc == STORE_OK)
			return false;
		/* Not handed over (a busy store says STORE_RETRY): tried
		 * again, or answered, as a read that failed. */
		device_read_done(&l->read, rc);
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
	device_keep(l, st, who, req);
	return ops_later_submit(l, false);
}

enum das_status ops_device(struct store *st, const struct domain_principal *who,
			   const struct domain_request *req,
			   struct ops_result *result)
{
	struct ops_wait w;
	struct ops_later *l = ops_wait_begin(&w);

	return ops_wait_end(&w, ops_device_start(st, who, req, l), result);
}
