/*
 * What every use case shares (ops_tx.h): the transaction runner
 * (ops_run_tx: retries on a conflict, maps store results to statuses) and
 * the hand-over of a transaction to the store (struct ops_later: a job
 * for store_submit, its deadline, its retries, its answer through done),
 * with the synchronous wait the *_start functions' plain forms use. The
 * use cases: device.c, directory.c, ledger.c.
 */
#include "ops.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "service/ops/ops_tx.h"

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
		das_log(DAS_LOG_WARN,
			"store: still conflicting after %d attempts",
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

void ops_result_init(struct ops_result *result)
{
	memset(result, 0, sizeof(*result));
	result->status = DAS_OK;
	result->at = das_time_now();
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
	if ((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 < l->deadline_ms)
		return false;
	l->result.status = DAS_DEADLINE_EXCEEDED;
	l->result.detail[0] = '\0';
	return true;
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
void ops_later_end(struct ops_later *l, int rc)
{
	if (rc == STORE_OK)
		return;
	if (rc == STORE_RETRY)
		das_log(DAS_LOG_WARN,
			"store: still conflicting after %d attempts",
			OPS_MAX_ATTEMPTS);
	l->result.status = rc == STORE_RETRY	     ? DAS_UNAVAILABLE
			   : rc == STORE_UNAVAILABLE ? DAS_STORE_UNAVAILABLE
			   : rc == STORE_LATE	     ? DAS_DEADLINE_EXCEEDED
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
	ops_later_end(l, rc);
	l->done(l);
}

/*
 * The write pass of a decision with changes, handed to the group commit.
 * Returns true when l->result holds the answer now (the hand-over
 * failed), false when done will be called.
 */
bool ops_later_submit(struct ops_later *l, bool is_read_only)
{
	l->attempt = 0;
	memset(&l->job, 0, sizeof(l->job));
	l->job.body = later_body;
	l->job.done = later_done;
	l->job.is_read_only = is_read_only;
	l->job.deadline_ms = l->deadline_ms;
	int rc = later_retry(l, store_submit(l->st, &l->job));
	if (rc == STORE_OK)
		return false;
	ops_later_end(l, rc);
	return true;
}

/* Who asked, as far as deciding needs it: the tenants given. */
void ops_principal_copy(struct domain_principal *to,
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
	ops_principal_copy(&l->who, who);
	l->attempt = 0;
	if (!store_can_submit(st)) {
		ops_run_tx(st, l->key.customer, is_read_only, later_tx_body, l,
			   &l->result);
		return true;
	}
	return ops_later_submit(l, is_read_only);
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
