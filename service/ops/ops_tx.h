/*
 * Inside the ops folder only: what every use case shares (ops.c): the
 * transaction runner, the hand-over of a transaction to the store
 * (struct ops_later) and the synchronous wait for its answer.
 */
#ifndef DAS_OPS_TX_H
#define DAS_OPS_TX_H

#include <pthread.h>
#include <stdbool.h>

#include "service/ops/ops.h"

/* A transaction that keeps conflicting is answered UNAVAILABLE. */
#define OPS_MAX_ATTEMPTS 8

/* A fresh result: OK, stamped now. */
void ops_result_init(struct ops_result *result);

/*
 * The body of a transaction: reads, asks the domain, writes. Returns a
 * store result; a domain refusal is a STORE_OK with result->status set,
 * and is rolled back.
 */
typedef int (*tx_body_fn)(struct store_tx *tx, void *arg,
			  struct ops_result *result);

/*
 * Runs body in a transaction for customer, again from the start on a
 * store conflict (a bounded number of times, with backoff), and commits
 * when it succeeded. Returns result->status (store failures mapped to
 * UNAVAILABLE / INTERNAL).
 */
enum das_status ops_run_tx(struct store *st, const char *customer,
			   bool is_read_only, tx_body_fn body, void *arg,
			   struct ops_result *result);

/*
 * Runs l->body: handed to the store as a job when it takes jobs
 * (store_submit; is_read_only: a job that only reads), else here in a
 * transaction (ops_run_tx). Keeps st and a copy of who in l first.
 * Returns true when l->result holds the answer now, false when l->done
 * will be called.
 */
bool ops_later_run(struct ops_later *l, struct store *st,
		   const struct domain_principal *who, bool is_read_only);

/*
 * Hands l->body to the store as a job (store_submit; is_read_only: one
 * that only reads), again after a conflict. Returns false once l->done
 * will be called, true when l->result holds the answer now (the hand-over
 * was refused).
 */
bool ops_later_submit(struct ops_later *l, bool is_read_only);

/* l->result for a transaction that ended with store result rc (as
 * ops_run_tx maps it; STORE_OK leaves it). */
void ops_later_end(struct ops_later *l, int rc);

/* Who asked, as far as deciding needs it (for a call answered later). */
void ops_principal_copy(struct domain_principal *to,
			const struct domain_principal *from);

/*
 * True when l's caller has given up (l->deadline_ms passed): l->result is
 * then DEADLINE_EXCEEDED. Checked where a call comes back from waiting
 * for the store.
 */
bool ops_later_is_late(struct ops_later *l);

/* The synchronous forms of the *_start use cases: start, then wait. */
struct ops_wait {
	struct ops_later later; /* first: done's argument is ours */
	pthread_mutex_t lock;
	pthread_cond_t is_done_cond;
	bool is_done;
};

/* w->later, ready to be started (no deadline); done wakes ops_wait_end. */
struct ops_later *ops_wait_begin(struct ops_wait *w);
/* Waits for done unless the start answered at once (is_answered);
 * copies the answer to result. */
enum das_status ops_wait_end(struct ops_wait *w, bool is_answered,
			     struct ops_result *result);

#endif
