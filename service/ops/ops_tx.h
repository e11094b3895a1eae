/*
 * Inside the ops folder only: the transaction runner every use case shares.
 */
#ifndef DAS_OPS_TX_H
#define DAS_OPS_TX_H

#include <pthread.h>
#include <stdbool.h>

#include "service/ops/ops.h"

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
