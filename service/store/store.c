#include "store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/condwait.h"
#include "common/log.h"
#include "common/metrics.h"

/*
 * Fault injection: the counter runs only while armed, so the programs pay
 * one relaxed atomic load per call.
 */
static atomic_ulong fault_at;
static atomic_ulong fault_calls;
static atomic_int fault_result;

void store_fault_arm(unsigned long fail_at, int result)
{
	atomic_store(&fault_calls, 0);
	atomic_store(&fault_result, result);
	atomic_store(&fault_at, fail_at);
}

unsigned long store_fault_calls(void)
{
	return atomic_load(&fault_calls);
}

/* True when this call is the one to fail (*result then says how). */
static bool fault_hit(int *result)
{
	unsigned long at = atomic_load_explicit(&fault_at, memory_order_relaxed);

	if (!at)
		return false;
	if (atomic_fetch_add(&fault_calls, 1) + 1 != at)
		return false;
	*result = atomic_load(&fault_result);
	return true;
}

static struct das_metric_family *m_tx, *m_retries, *m_batch, *m_fsync,
	*m_pool_waits, *m_pool_wait_seconds, *m_reconnects;

static const double batch_buckets[] = {1, 2, 4, 8, 16, 32, 64};

static void metrics_register_once(void)
{
	static const struct das_metric_def tx = {
		.name = "das_store_transactions_total",
		.help = "Store transactions by how they ended: commit, "
			"rollback, conflict (redone), unavailable, error.",
		.type = DAS_METRIC_COUNTER,
		.labels = {"backend", "outcome"},
		.max_series = 16};
	static const struct das_metric_def retries = {
		.name = "das_store_retries_total",
		.help = "Transactions run again after a conflict.",
		.type = DAS_METRIC_COUNTER,
		.labels = {"backend"},
		.max_series = 4};
	static const struct das_metric_def batch = {
		.name = "das_store_group_commit_batch_size",
		.help = "Writers made durable by one commit (group commit).",
		.type = DAS_METRIC_HISTOGRAM,
		.labels = {"backend"},
		.buckets = batch_buckets,
		.n_buckets = sizeof(batch_buckets) / sizeof(batch_buckets[0]),
		.scale = 1,
		.max_series = 4};
	static const struct das_metric_def fsync = {
		.name = "das_store_commit_fsync_seconds",
		.help = "Time of one durable commit (the fsync of a group "
			"commit batch).",
		.type = DAS_METRIC_HISTOGRAM,
		.labels = {"backend"},
		.buckets = das_metric_latency_buckets,
		.n_buckets = DAS_METRIC_LATENCY_BUCKETS,
		.scale = 1e9,
		.max_series = 4};
	static const struct das_metric_def pool_waits = {
		.name = "das_store_pool_waits_total",
		.help = "Times a caller waited for a free store connection.",
		.type = DAS_METRIC_COUNTER,
		.labels = {"backend"},
		.max_series = 4};
	static const struct das_metric_def pool_wait_seconds = {
		.name = "das_store_pool_wait_seconds",
		.help = "Time spent waiting for a free store connection.",
		.type = DAS_METRIC_HISTOGRAM,
		.labels = {"backend"},
		.buckets = das_metric_latency_buckets,
		.n_buckets = DAS_METRIC_LATENCY_BUCKETS,
		.scale = 1e9,
		.max_series = 4};
	static const struct das_metric_def reconnects = {
		.name = "das_store_reconnects_total",
		.help = "Broken database connections re-established "
			"(PostgreSQL).",
		.type = DAS_METRIC_COUNTER,
		.labels = {"backend"},
		.max_series = 4};

	m_tx = das_metric_register(&tx);
	m_retries = das_metric_register(&retries);
	m_batch = das_metric_register(&batch);
	m_fsync = das_metric_register(&fsync);
	m_pool_waits = das_metric_register(&pool_waits);
	m_pool_wait_seconds = das_metric_register(&pool_wait_seconds);
	m_reconnects = das_metric_register(&reconnects);
}

void store_metrics_register(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, metrics_register_once);
}

void store_metric_retry(const char *backend)
{
	das_metric_inc(das_metric_series1(m_retries, backend));
}

void store_metric_batch(const char *backend, unsigned writers,
			uint64_t commit_ns)
{
	das_metric_observe(das_metric_series1(m_batch, backend), writers);
	das_metric_observe(das_metric_series1(m_fsync, backend), commit_ns);
}

void store_metric_pool_wait(const char *backend, uint64_t wait_ns)
{
	das_metric_inc(das_metric_series1(m_pool_waits, backend));
	das_metric_observe(das_metric_series1(m_pool_wait_seconds, backend),
			   wait_ns);
}

void store_metric_reconnect(const char *backend)
{
	das_metric_inc(das_metric_series1(m_reconnects, backend));
}

/*
 * Transactions are counted on every call: their series are kept per
 * backend (ops tables are static, so their address names them) and
 * outcome once found. Two threads may find one at the same time; both get
 * the same series.
 */
#define TX_BACKENDS 4
#define TX_OUTCOMES 5
static const char *const tx_outcomes[TX_OUTCOMES] = {
	"commit", "conflict", "unavailable", "error", "rollback"};
static _Atomic(const struct store_ops *) tx_ops[TX_BACKENDS];
static _Atomic(struct das_metric_series *) tx_series[TX_BACKENDS]
						     [TX_OUTCOMES];

static void count_tx(const struct store *st, unsigned outcome)
{
	struct das_metric_series *s;

	for (unsigned b = 0; b < TX_BACKENDS; b++) {
		const struct store_ops *ops = NULL;
		if (atomic_compare_exchange_strong(&tx_ops[b], &ops, st->ops))
			ops = st->ops; /* this slot is ours now */
		if (ops != st->ops)
			continue;
		s = atomic_load(&tx_series[b][outcome]);
		if (!s) {
			s = das_metric_series2(m_tx, st->ops->name,
					       tx_outcomes[outcome]);
			atomic_store(&tx_series[b][outcome], s);
		}
		das_metric_inc(s);
		return;
	}
	das_metric_inc(das_metric_series2(m_tx, st->ops->name,
					  tx_outcomes[outcome]));
}

/* The index in tx_outcomes of a commit's result. */
static unsigned result_outcome(int rc)
{
	switch (rc) {
	case STORE_OK:
		return 0;
	case STORE_RETRY:
		return 1;
	case STORE_UNAVAILABLE:
		return 2;
	default:
		return 3;
	}
}

/* How often the reaper looks at the queues while calls wait. */
#define STORE_REAP_MS 50

static int64_t monotonic_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void *reap_main(void *arg)
{
	struct store *st = arg;

	pthread_mutex_lock(&st->reap_mu);
	while (!st->is_reaper_stopping) {
		das_cond_wait_ms(&st->reap_cv, &st->reap_mu, STORE_REAP_MS);
		if (st->is_reaper_stopping ||
		    atomic_load_explicit(&st->n_waiting,
					 memory_order_relaxed) == 0)
			continue;
		pthread_mutex_unlock(&st->reap_mu);
		st->ops->reap(st, monotonic_ms());
		das_log_thread_flush();
		pthread_mutex_lock(&st->reap_mu);
	}
	pthread_mutex_unlock(&st->reap_mu);
	return NULL;
}

static int reaper_start(struct store *st, char *err, size_t err_size)
{
	pthread_mutex_init(&st->reap_mu, NULL);
	das_cond_init_monotonic(&st->reap_cv);
	if (!st->ops->reap)
		return STORE_OK;
	if (pthread_create(&st->reaper, NULL, reap_main, st) != 0) {
		snprintf(err, err_size, "cannot start the store's reaper "
					"thread");
		return STORE_ERROR;
	}
	st->has_reaper = true;
	return STORE_OK;
}

static void reaper_stop(struct store *st)
{
	if (st->has_reaper) {
		pthread_mutex_lock(&st->reap_mu);
		st->is_reaper_stopping = true;
		pthread_cond_signal(&st->reap_cv);
		pthread_mutex_unlock(&st->reap_mu);
		pthread_join(st->reaper, NULL);
		st->has_reaper = false;
	}
	pthread_cond_destroy(&st->reap_cv);
	pthread_mutex_destroy(&st->reap_mu);
}

struct store_job *store_take_late_jobs(struct store_job **head,
				       struct store_job **tail, int64_t now_ms)
{
	struct store_job *late = NULL, **late_end = &late, **at = head;

	*tail = NULL;
	while (*at) {
		struct store_job *j = *at;

		if (j->deadline_ms && j->deadline_ms <= now_ms) {
			*at = j->next;
			j->next = NULL;
			*late_end = j;
			late_end = &j->next;
		} else {
			*tail = j;
			at = &j->next;
		}
	}
	return late;
}

struct store_read *store_take_late_reads(struct store_read **head,
					 struct store_read **tail,
					 int64_t now_ms)
{
	struct store_read *late = NULL, **late_end = &late, **at = head;

	*tail = NULL;
	while (*at) {
		struct store_read *rd = *at;

		if (rd->deadline_ms && rd->deadline_ms <= now_ms) {
			*at = rd->next;
			rd->next = NULL;
			*late_end = rd;
			late_end = &rd->next;
		} else {
			*tail = rd;
			at = &rd->next;
		}
	}
	return late;
}

int store_open(const char *spec, const struct store_options *opt,
	       struct store **out, char *err, size_t err_size)
{
	static const struct store_options defaults = {.busy_timeout_ms = 5000};

	if (!opt)
		opt = &defaults;
	store_metrics_register();
	for (size_t i = 0; store_backends[i]; i++) {
		if (!store_backends[i]->accepts(spec))
			continue;
		int rc = store_backends[i]->open(spec, opt, out, err,
						 err_size);
		if (rc != STORE_OK)
			return rc;
		(*out)->max_waiting = opt->max_waiting;
		rc = reaper_start(*out, err, err_size);
		if (rc != STORE_OK) {
			store_close(*out);
			*out = NULL;
		}
		return rc;
	}
	snprintf(err, err_size,
		 "unsupported --store '%s' (want sqlite:PATH or postgresql://...)",
		 spec);
	return STORE_ERROR;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	reaper_stop(st);
	st->ops->close(st);
}

void store_cut(struct store *st)
{
	if (st && st->ops->cut)
		st->ops->cut(st);
}

int store_begin(struct store *st, const char *customer, bool is_read_only,
		struct store_tx **out)
{
	int injected;

	if (fault_hit(&injected))
		return injected;
	return st->ops->begin(st, customer, is_read_only, out);
}

int store_commit(struct store_tx *tx)
{
	struct store *st = tx->st;
	int rc;

	if (fault_hit(&rc))
		st->ops->rollback(tx); /* a failed commit ends the tx */
	else
		rc = st->ops->commit(tx);

	count_tx(st, result_outcome(rc));
	return rc;
}

void store_rollback(struct store_tx *tx)
{
	if (tx) {
		struct store *st = tx->st;
		st->ops->rollback(tx);
		count_tx(st, 4);
	}
}

bool store_can_submit(const struct store *st)
{
	return st->ops->submit != NULL;
}

#define FULL_WARN_EVERY_MS 10000

/*
 * Counts one more job or read waiting, unless max_waiting wait already:
 * then STORE_UNAVAILABLE (a WARN line at most every FULL_WARN_EVERY_MS).
 */
static int waiting_add(struct store *st)
{
	unsigned n = atomic_fetch_add(&st->n_waiting, 1);

	if (!st->max_waiting || n < st->max_waiting)
		return STORE_OK;
	atomic_fetch_sub(&st->n_waiting, 1);
	unsigned n_held;

	if (das_log_limit_take(&st->full_warn, FULL_WARN_EVERY_MS, &n_held))
		das_log(DAS_LOG_WARN,
			"store: %u calls wait for the store already "
			"(--store-max-waiting): new ones are answered "
			"UNAVAILABLE until it catches up",
			st->max_waiting);
	return STORE_UNAVAILABLE;
}

int store_submit(struct store *st, struct store_job *job)
{
	int injected, rc;

	if (fault_hit(&injected))
		return injected;
	rc = waiting_add(st);
	if (rc != STORE_OK)
		return rc;
	rc = st->ops->submit(st, job);
	if (rc != STORE_OK)
		atomic_fetch_sub(&st->n_waiting, 1);
	return rc;
}

bool store_can_read_submit(const struct store *st)
{
	return st->ops->read_submit != NULL;
}

int store_read_submit(struct store *st, struct store_read *rd)
{
	int injected, rc;

	if (fault_hit(&injected))
		return injected;
	rc = waiting_add(st);
	if (rc != STORE_OK)
		return rc;
	rc = st->ops->read_submit(st, rd);
	if (rc != STORE_OK)
		atomic_fetch_sub(&st->n_waiting, 1);
	return rc;
}

int store_job_run(struct store_tx *tx, struct store_job *job)
{
	int rc = job->body(tx, job);
	int injected;

	if (rc == STORE_OK && !job->is_undone && fault_hit(&injected)) {
		job->is_undone = true; /* a failed commit keeps nothing */
		rc = injected;
	}
	return rc;
}

void store_read_finish(struct store *st, struct store_read *rd, int result)
{
	if (result != STORE_LATE) /* never ran: no transaction */
		count_tx(st, result_outcome(result));
	atomic_fetch_sub(&st->n_waiting, 1); /* before done: it may submit */
	rd->done(rd, result);
}

void store_finish_all(struct store *st, struct store_read *reads,
		      struct store_job *jobs, int result)
{
	while (reads) {
		struct store_read *rd = reads;

		reads = rd->next; /* done may free rd, or submit it again */
		store_read_finish(st, rd, result);
	}
	while (jobs) {
		struct store_job *job = jobs;

		jobs = job->next;
		job->is_undone = false;
		store_job_finish(st, job, result);
	}
}

void store_job_finish(struct store *st, struct store_job *job, int result)
{
	if (result != STORE_LATE) /* never ran: no transaction */
		count_tx(st, job->is_undone && result == STORE_OK
				     ? 4
				     : result_outcome(result));
	atomic_fetch_sub(&st->n_waiting, 1); /* before done: it may submit */
	job->done(job, result);
}

int store_load(struct store_tx *tx, const struct domain_key *key,
	       struct domain_snapshot *snap)
{
	int injected;

	if (fault_hit(&injected))
		return injected;
	return tx->st->ops->load(tx, key, snap);
}

int store_apply(struct store_tx *tx, const char *customer,
		const struct domain_change *changes, size_t n,
		const struct store_actor *actor)
{
	int injected;

	if (fault_hit(&injected))
		return injected;
	return tx->st->ops->apply(tx, customer, changes, n, actor);
}

int store_customer_put(struct store_tx *tx, const struct store_customer *c,
		       bool *is_changed)
{
	int injected;

	if (fault_hit(&injected))
		return injected;
	return tx->st->ops->customer_put(tx, c, is_changed);
}

int store_customer_delete(struct store_tx *tx, const char *customer,
			  const struct store_actor *actor, bool *is_changed,
			  uint32_t *n_dropped)
{
	int injected;

	if (fault_hit(&injected))
		return injected;
	return tx->st->ops->customer_delete(tx, customer, actor, is_changed,
					    n_dropped);
}

int store_user_put(struct store_tx *tx, const char *customer, const char *user,
		   const char *roles_text, bool *is_changed)
{
	int injected;

	if (fault_hit(&injected))
		return injected;
	return tx->st->ops->user_put(tx, customer, user, roles_text,
				     is_changed);
}

int store_user_delete(struct store_tx *tx, const char *customer,
		      const char *user, bool *is_changed)
{
	int injected;

	if (fault_hit(&injected))
		return injected;
	return tx->st->ops->user_delete(tx, customer, user, is_changed);
}

int store_device_put(struct store_tx *tx, const char *customer,
		     const char *device, const char *owner, bool *is_changed)
{
	int injected;

	if (fault_hit(&injected))
		return injected;
	return tx->st->ops->device_put(tx, customer, device, owner,
				       is_changed);
}

int store_device_delete(struct store_tx *tx, const char *customer,
			const char *device, bool *is_changed)
{
	int injected;

	if (fault_hit(&injected))
		return injected;
	return tx->st->ops->device_delete(tx, customer, device, is_changed);
}

int store_ledger_read(struct store *st, const char *customer, int64_t after_id,
		      struct store_ledger_row *rows, size_t max, size_t *n)
{
	int injected;

	if (fault_hit(&injected))
		return injected;
	return st->ops->ledger_read(st, customer, after_id, rows, max, n);
}

int store_probe(struct store *st, char *why, size_t why_size)
{
	return st->ops->probe(st, why, why_size);
}

int store_ledger_last_id(struct store_tx *tx, const char *customer,
			 int64_t *id)
{
	return tx->st->ops->ledger_last_id(tx, customer, id);
}

int store_ledger_page(struct store_tx *tx, const struct store_ledger_query *q,
		      struct store_ledger_row *rows, size_t max, size_t *n)
{
	return tx->st->ops->ledger_page(tx, q, rows, max, n);
}

int store_ledger_prune(struct store_tx *tx, int64_t before_seconds,
		       size_t max, size_t *n)
{
	return tx->st->ops->ledger_prune(tx, before_seconds, max, n);
}

int store_seats_charged(struct store_tx *tx, const char *customer,
			int64_t *n)
{
	return tx->st->ops->seats_charged(tx, customer, n);
}

void store_ledger_key(struct store *st,
		      unsigned char key[STORE_LEDGER_KEY_SIZE])
{
	st->ops->ledger_key(st, key);
}
