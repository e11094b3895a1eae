/*
 * Inside the ops folder only: the transaction runner every use case shares.
 */
#ifndef DAS_OPS_TX_H
#define DAS_OPS_TX_H

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

#endif
