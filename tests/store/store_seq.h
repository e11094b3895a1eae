/*
 * What the store tests that run a sequence of device changes through the
 * use cases (test_power_loss.c, test_store_faults.c) share: the customer,
 * the principal, one assign/unassign and removing the temp dir.
 */
#ifndef DAS_TESTS_STORE_SEQ_H
#define DAS_TESTS_STORE_SEQ_H

#include "service/ops/ops.h"
#include "service/store/store.h"

#define STORE_SEQ_CUST "0f8fad5b-d9cb-469f-a165-70867728950e"

/* One change of a sequence. */
struct store_seq_step {
	const char *user;
	const char *device;
	int type; /* 1..4; 0 = unassign */
};

/* Removes dir and everything below it. */
void store_seq_rm_tree(const char *dir);

/* An all-tenants principal with the assign and directory scopes. */
void store_seq_who(struct domain_principal *who, const char *sub);

struct ops_text store_seq_text(const char *s);

/* The request that assigns device to user as type (1..4), or unassigns it
 * (type 0), in the customer STORE_SEQ_CUST. */
void store_seq_request(struct domain_request *req, const char *user,
		       const char *device, int type);

/* Assigns device to user as type (1..4), or unassigns it (type 0), in the
 * customer STORE_SEQ_CUST, as principal sub. */
enum das_status store_seq_device_op(struct store *st, const char *sub,
				    const char *user, const char *device,
				    int type);

#endif
