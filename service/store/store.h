/*
 * The store interface: one const ops table per backend (sqlite, postgresql),
 * called through the thin store_* wrappers below, which are the one place for
 * tracing and fault injection. SQL never leaves a backend's folder.
 *
 * Every write happens inside a transaction opened by store_begin() for one
 * customer: the backend serialises the writers that could conflict (SQLite:
 * BEGIN IMMEDIATE; PostgreSQL: locks taken by store_load() on the user and
 * the device of its key, and the customer's seat count row in
 * store_apply() when a change takes or ends a seat, where the seat rule is
 * checked again), so the seat check read by store_load() and the change
 * written by store_apply() are one atomic step. store_commit() returns
 * only once the change is durable.
 *
 * A read-only transaction (is_read_only) takes no lock and sees only
 * changes that are committed and durable, never a change that could still
 * be lost: the use cases answer an idempotent repeat or a refusal from
 * such a read alone (service/ops/device.c), so a 201 must not rest on another
 * request's change before its fsync. What makes it true:
 *   SQLite: readers use connections other than the writer's, so they see
 *   a group-commit batch only after its COMMIT; in WAL mode with
 *   synchronous=FULL, SQLite's walFrames() syncs the log before it writes
 *   the wal-index header that publishes the commit to other connections
 *   (a failed sync returns before publishing).
 *   PostgreSQL: the store forces synchronous_commit on for its sessions;
 *   a commit then flushes its WAL (and waits for a synchronous standby, if
 *   any) before ProcArrayEndTransaction() makes it visible to other
 *   snapshots (xact.c: "we have marked clog, but still show as running in
 *   the procarray"). Were synchronous_commit off, a commit would be
 *   visible before its flush and a read could not decide alone.
 *
 * store_commit() and store_rollback() both end the transaction (whatever
 * commit returns; a failed commit has rolled back). STORE_RETRY from any
 * call means: roll back and run the whole transaction again.
 *
 * Threads: a struct store is shared by all threads; a struct store_tx
 * belongs to the thread that began it until commit or rollback ends it.
 */
#ifndef DAS_STORE_H
#define DAS_STORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/log.h"
#include "common/timefmt.h"
#include "service/domain/domain.h"

enum store_result {
	STORE_OK = 0,
	STORE_RETRY = 1,       /* conflict (busy, serialization): redo the tx */
	/* The store cannot take the write (database unreachable, disk full,
	 * database file read-only, deleted or replaced): nothing was applied;
	 * answer UNAVAILABLE (STORE_UNAVAILABLE). */
	STORE_UNAVAILABLE = 2,
	STORE_ERROR = 3,       /* anything else: answer INTERNAL */
	/* A job or read whose deadline passed while it waited in a queue
	 * (store_ops.reap): it never ran; answer DEADLINE_EXCEEDED. */
	STORE_LATE = 4,
};

struct store_options {
	unsigned pool_size; /* connections; 0 = backend default */
	unsigned busy_timeout_ms; /* wait for a lock before STORE_RETRY */
	/* SQLite: other processes may open the file while it is open (every
	 * transaction then takes file locks); false = this process holds it
	 * alone from its first transaction to its close. */
	bool is_file_shared;
	/* Jobs and reads handed over (store_submit, store_read_submit) and
	 * not finished, at most; past it they are refused at once with
	 * STORE_UNAVAILABLE. 0 = no limit. */
	unsigned max_waiting;
};

struct store_customer {
	char tenant[DAS_GUID_SIZE];
	bool has_account;
	char account[DAS_GUID_SIZE];
	char name[257];
	bool is_seat_limited;
	uint32_t included_seats;
};

/* Who made a change and when: stamped on every ledger row. */
struct store_actor {
	const char *sub;
	struct das_time at;
	const char *request_id; /* the call's x-request-id; NULL or "" = none */
};

/* Request ids kept in a ledger row: 0-128 bytes. */
#define STORE_REQUEST_ID_SIZE 129

/* One ledger row, as read back. */
struct store_ledger_row {
	int64_t id; /* increasing */
	struct das_time at;
	char tenant[DAS_GUID_SIZE];
	char user[DAS_ID_SIZE];
	char device[DAS_ID_SIZE];
	int from_type;
	int to_type;
	bool is_charged;
	char actor[DOMAIN_SUB_SIZE];
	char request_id[STORE_REQUEST_ID_SIZE];
};

/*
 * One page of a customer's ledger, in sequence (id) order: rows with
 * id <= bound_id, strictly after after_id in the order asked (0: from the
 * start), matching every filter given. Indexes make a page cost the same
 * however long the ledger is: (tenant, id), (tenant, user, id),
 * (tenant, device, id) and the charged rows' (tenant, id).
 */
struct store_ledger_query {
	char customer[DAS_GUID_SIZE];
	char user[DAS_ID_SIZE];   /* "" = any */
	char device[DAS_ID_SIZE]; /* "" = any */
	bool has_since;
	struct das_time since; /* rows at or after */
	bool has_until;
	struct das_time until; /* rows before */
	bool is_only_charged;
	bool is_oldest_first;
	int64_t after_id;
	int64_t bound_id;
};

/* Bytes of the key that signs ledger page tokens (shared via the store). */
#define STORE_LEDGER_KEY_SIZE 32

struct store;
struct store_tx;

/*
 * A write handed to the backend's group commit instead of run by its
 * caller (store_submit): the backend runs body inside a write transaction
 * of its own, on whichever thread is committing, and calls done once the
 * batch holding it is durable, or failed. The caller's thread does not
 * wait for the commit. The caller owns the job and fills body and done;
 * the job must live until done is called.
 *
 * body returns a store result: anything but STORE_OK undoes what it wrote
 * (the job's own savepoint), and so does is_undone (a refusal: nothing
 * kept, but no failure either). done gets STORE_OK only when the job's
 * body succeeded and its batch was made durable; a body that failed gets
 * its own result; every job of a batch whose commit failed gets that
 * failure. A job whose body wrote nothing still gets its answer only
 * after the batch it ran in is committed, since what it decided may rest
 * on the batch's other changes. done may run on any thread, before or
 * after store_submit returns, and may submit the job again (STORE_RETRY).
 */
struct store_job {
	int (*body)(struct store_tx *tx, struct store_job *job);
	void (*done)(struct store_job *job, int result);
	/* A job that only reads (set by the caller): its body runs in a
	 * read-only transaction of its own, one snapshot of committed and
	 * durable state as store_begin gives, never in a batch. SQLite runs
	 * it at once on the caller's thread (its readers never wait for the
	 * writer); PostgreSQL on its writer threads, as any job. */
	bool is_read_only;
	/* The caller's deadline, CLOCK_MONOTONIC ms (0: none): still
	 * queued then, the job ends STORE_LATE without running. */
	int64_t deadline_ms;
	/* The backend's: */
	struct store_job *next;
	bool is_undone;
	int result;
};

/*
 * A read handed to the backend (store_read_submit): the load of a
 * read-only transaction that runs no other statement, as the read pass of
 * assign and unassign is. The backend runs it as one statement, one
 * snapshot taken after the call began (committed and durable state, as
 * for any read-only transaction): PostgreSQL with the loads of other
 * callers on a reader thread of its own, so the caller's thread does not
 * wait; SQLite at once on the caller's thread. It calls done once snap
 * holds the snapshot of *key (result STORE_OK) or the load failed (snap
 * then undefined). The caller owns the struct and *key and
 * fills key and done; both must live until done is called. done may run
 * on any thread, before or after store_read_submit returns, and may
 * submit the read again or hand a write to store_submit.
 */
struct store_read {
	const struct domain_key *key;
	void (*done)(struct store_read *rd, int result);
	struct domain_snapshot snap;
	/* As store_job's: still queued then, the read ends STORE_LATE. */
	int64_t deadline_ms;
	/* The backend's: */
	struct store_read *next;
	int result;
};

struct store_ops {
	const char *name;
	/* True when this backend handles the --store value spec. */
	bool (*accepts)(const char *spec);
	int (*open)(const char *spec, const struct store_options *opt,
		    struct store **out, char *err, size_t err_size);
	void (*close)(struct store *st);

	int (*begin)(struct store *st, const char *customer, bool is_read_only,
		     struct store_tx **out);
	int (*commit)(struct store_tx *tx);
	void (*rollback)(struct store_tx *tx);

	/* Fills snap for key; key->user / key->device may be "" (not asked). */
	int (*load)(struct store_tx *tx, const struct domain_key *key,
		    struct domain_snapshot *snap);
	/* Applies the changes in order, one ledger row each. */
	int (*apply)(struct store_tx *tx, const char *customer,
		     const struct domain_change *changes, size_t n,
		     const struct store_actor *actor);

	int (*customer_put)(struct store_tx *tx, const struct store_customer *c,
			    bool *is_changed);
	/* Deletes the customer, its users, devices and assignments; each
	 * dropped assignment gets a ledger row. */
	int (*customer_delete)(struct store_tx *tx, const char *customer,
			       const struct store_actor *actor,
			       bool *is_changed, uint32_t *n_dropped);
	int (*user_put)(struct store_tx *tx, const char *customer,
			const char *user, const char *roles_text,
			bool *is_changed);
	int (*user_delete)(struct store_tx *tx, const char *customer,
			   const char *user, bool *is_changed);
	int (*device_put)(struct store_tx *tx, const char *customer,
			  const char *device, const char *owner,
			  bool *is_changed);
	int (*device_delete)(struct store_tx *tx, const char *customer,
			     const char *device, bool *is_changed);

	/* Ledger rows of a customer with id > after_id, oldest first. */
	int (*ledger_read)(struct store *st, const char *customer,
			   int64_t after_id, struct store_ledger_row *rows,
			   size_t max, size_t *n);

	/* Can the store take a write now? STORE_OK, or STORE_UNAVAILABLE
	 * with a one-line reason in why. May make one small durable write. */
	int (*probe)(struct store *st, char *why, size_t why_size);

	/* The highest ledger id of customer (0: none), in tx's snapshot. */
	int (*ledger_last_id)(struct store_tx *tx, const char *customer,
			      int64_t *id);
	/* Up to max rows of q's page (see struct store_ledger_query). */
	int (*ledger_page)(struct store_tx *tx,
			   const struct store_ledger_query *q,
			   struct store_ledger_row *rows, size_t max,
			   size_t *n);
	/* Deletes up to max ledger rows (any customer) stamped before
	 * before_seconds; *n gets how many. A write transaction. */
	int (*ledger_prune)(struct store_tx *tx, int64_t before_seconds,
			    size_t max, size_t *n);
	/* Users of customer holding a seat that was taken with charges
	 * accepted (the flag lives until the user's last assignment goes). */
	int (*seats_charged)(struct store_tx *tx, const char *customer,
			     int64_t *n);
	/* The key signing ledger page tokens: made once per database and
	 * shared by every server on it, read at open. */
	void (*ledger_key)(struct store *st,
			   unsigned char key[STORE_LEDGER_KEY_SIZE]);
	/* Takes a write for the group commit (struct store_job); NULL when
	 * the backend has none. STORE_OK: done will be called; anything
	 * else: it will not, nothing was written. */
	int (*submit)(struct store *st, struct store_job *job);
	/* Takes a read (struct store_read); NULL when the backend has no
	 * one-statement load (reads then run as read-only transactions).
	 * STORE_OK: done will be called (maybe before this returns);
	 * anything else: it will not. */
	int (*read_submit)(struct store *st, struct store_read *rd);
	/* Shutdown, once the server takes no more calls: see store_cut().
	 * NULL when the backend has no threads of its own that wait on the
	 * database (its work then ends with the threads of its callers). */
	void (*cut)(struct store *st);
	/* Takes the jobs and reads still queued whose deadline_ms is at or
	 * before now_ms off its queues and ends each with STORE_LATE
	 * (store_take_late_jobs and _reads do the taking). NULL when the
	 * backend queues nothing. */
	void (*reap)(struct store *st, int64_t now_ms);
};

/* Every backend's handle starts with this. */
struct store {
	const struct store_ops *ops;
	/* Handed over and not finished (store.c; backends leave them). A
	 * store that stops answering (a database host that hangs, a disk
	 * whose fsync hangs) would otherwise collect every call made
	 * meanwhile, each holding its gRPC call's memory. */
	atomic_uint n_waiting;
	unsigned max_waiting; /* 0 = no limit */
	struct das_log_limit full_warn; /* the WARN at max_waiting */
	/* The reaper (store.c): every STORE_REAP_MS while calls wait, it
	 * ends those whose deadline passed (ops->reap). A stalled database
	 * otherwise held each call its client had given up on, and its
	 * slot of max_waiting, until the database answered; the client
	 * meanwhile made new calls in their place. */
	pthread_t reaper;
	bool has_reaper, is_reaper_stopping;
	pthread_mutex_t reap_mu;
	pthread_cond_t reap_cv;
};

/* Every backend's transaction starts with this. */
struct store_tx {
	struct store *st;
};

/* The backends compiled in, NULL-terminated. */
extern const struct store_ops *const store_backends[];

/*
 * Opens the backend that accepts spec ("sqlite:PATH" or "postgresql://...").
 * Creates or migrates the schema. On failure returns non-zero and writes a
 * one-line reason to err.
 */
int store_open(const char *spec, const struct store_options *opt,
	       struct store **out, char *err, size_t err_size);
void store_close(struct store *st); /* NULL is a no-op */

/*
 * For shutdown, after the server has stopped taking calls and cancelled
 * those past its grace: ends every wait on the store, so that a database
 * that stopped answering cannot hold the process. Every job and read still
 * queued is finished now with STORE_UNAVAILABLE; a statement in flight
 * (a job's, a read's, a probe's, the ledger prune's) is cut short and
 * fails the same way; later submits and transactions are refused with
 * STORE_UNAVAILABLE. store_close() must still be called. NULL is a no-op.
 */
void store_cut(struct store *st);

int store_begin(struct store *st, const char *customer, bool is_read_only,
		struct store_tx **out);
int store_commit(struct store_tx *tx);
void store_rollback(struct store_tx *tx);
int store_load(struct store_tx *tx, const struct domain_key *key,
	       struct domain_snapshot *snap);
int store_apply(struct store_tx *tx, const char *customer,
		const struct domain_change *changes, size_t n,
		const struct store_actor *actor);
int store_customer_put(struct store_tx *tx, const struct store_customer *c,
		       bool *is_changed);
int store_customer_delete(struct store_tx *tx, const char *customer,
			  const struct store_actor *actor, bool *is_changed,
			  uint32_t *n_dropped);
int store_user_put(struct store_tx *tx, const char *customer, const char *user,
		   const char *roles_text, bool *is_changed);
int store_user_delete(struct store_tx *tx, const char *customer,
		      const char *user, bool *is_changed);
int store_device_put(struct store_tx *tx, const char *customer,
		     const char *device, const char *owner, bool *is_changed);
int store_device_delete(struct store_tx *tx, const char *customer,
			const char *device, bool *is_changed);
int store_ledger_read(struct store *st, const char *customer, int64_t after_id,
		      struct store_ledger_row *rows, size_t max, size_t *n);
/* Health: can the store take a write now (see store_ops.probe)? */
int store_probe(struct store *st, char *why, size_t why_size);

/* Does the backend take writes through store_submit? */
bool store_can_submit(const struct store *st);
/*
 * Hands job to the backend's group commit (struct store_job). STORE_OK:
 * job->done will be called once; else it will not and nothing was
 * written. A counted call for fault injection, as is the end of a job's
 * body (the job's "commit": a fault there undoes the job, as a failed
 * store_commit rolls back).
 */
int store_submit(struct store *st, struct store_job *job);
/* Does the backend take reads through store_read_submit? */
bool store_can_read_submit(const struct store *st);
/*
 * Hands rd to the backend (struct store_read). STORE_OK: rd->done will be
 * called once; else it will not. A counted call for fault injection, as
 * store_load is.
 */
int store_read_submit(struct store *st, struct store_read *rd);
/* For backends: runs job's body in tx through the fault-injection point,
 * and hands a job its result (counted as a transaction's end). */
int store_job_run(struct store_tx *tx, struct store_job *job);
void store_job_finish(struct store *st, struct store_job *job, int result);
/* For backends: hands a read its result (counted as a transaction). */
void store_read_finish(struct store *st, struct store_read *rd, int result);
/* For a backend's reap: takes the jobs (reads) whose deadline_ms is at or
 * before now_ms out of the queue *head .. *tail, in order; returns them
 * linked by next, to end with store_finish_all once the queue's lock is
 * let go. */
struct store_job *store_take_late_jobs(struct store_job **head,
				       struct store_job **tail, int64_t now_ms);
struct store_read *store_take_late_reads(struct store_read **head,
					 struct store_read **tail,
					 int64_t now_ms);
/* Ends every read and job of the lists (linked by next, off every queue)
 * with result, none of them run (store_read_finish, store_job_finish). */
void store_finish_all(struct store *st, struct store_read *reads,
		      struct store_job *jobs, int result);

/*
 * Fault injection for tests (SQLite's and curl's manner): once armed, the
 * fail_at-th call (counting from 1) of the wrappers above from store_begin
 * on fails with result, as if the backend had returned it: a failing
 * store_commit ends its transaction first (it rolls back), as a real failed
 * commit does. fail_at 0 disarms. store_fault_calls() is the number of
 * wrapper calls counted since the last store_fault_arm. Process-wide; not
 * for production use (nothing in the programs arms it).
 */
void store_fault_arm(unsigned long fail_at, int result);
unsigned long store_fault_calls(void);

int store_ledger_last_id(struct store_tx *tx, const char *customer,
			 int64_t *id);
int store_ledger_page(struct store_tx *tx, const struct store_ledger_query *q,
		      struct store_ledger_row *rows, size_t max, size_t *n);
int store_ledger_prune(struct store_tx *tx, int64_t before_seconds,
		       size_t max, size_t *n);
int store_seats_charged(struct store_tx *tx, const char *customer,
			int64_t *n);
void store_ledger_key(struct store *st,
		      unsigned char key[STORE_LEDGER_KEY_SIZE]);

/*
 * Store metrics (Prometheus, common/metrics.h). The wrappers above count
 * transactions by outcome; backends report what only they see. backend is
 * the ops name ("sqlite", "postgresql"). Registered by store_open.
 */
void store_metrics_register(void);
/* A transaction ran again after a conflict (STORE_RETRY). */
void store_metric_retry(const char *backend);
/* One group commit: writers in the batch, and the commit's (fsync) time. */
void store_metric_batch(const char *backend, unsigned writers,
			uint64_t commit_ns);
/* A caller waited for a free connection of the pool. */
void store_metric_pool_wait(const char *backend, uint64_t wait_ns);
/* A broken database connection was re-established. */
void store_metric_reconnect(const char *backend);

#endif
