/*
 * The backend-agnostic store tests (see store_suite.h for the hook and the
 * rules they check). Every test starts from the empty database fresh_spec
 * names and drives the store only through store.h, so a backend passes
 * exactly when it behaves like the others.
 *
 * Helpers assert on the outcome of each step; a write expected to fail goes
 * through expect_rejected(), which accepts the failure at the call or at
 * commit (foreign keys may be checked either way) and then proves nothing
 * was written by comparing a snapshot and the ledger with the ones before.
 */
#include "store_suite.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "service/domain/domain.h"
#include "service/ops/ops.h"
#include "service/store/store.h"

#define T1 "11111111-1111-4111-8111-111111111111"
#define T2 "22222222-2222-4222-8222-222222222222"
#define ACCOUNT_A "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
#define ACCOUNT_B "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
#define BOTH_ROLES DOMAIN_ROLE_UC " " DOMAIN_ROLE_UC_SOFTPHONE
#define UNLIMITED (-1)
#define LEDGER_MAX 64

#define RACE_THREADS 16
#define RACE_SEATS 5
#define RACE_MAX_ATTEMPTS 1000

static const char *(*suite_fresh_spec)(void);

struct suite_state {
	char spec[STORE_SUITE_SPEC_SIZE];
	struct store *st;
};

static const struct store_actor actor_tester = {
	.sub = "tester",
	.at = {.seconds = 1764547200, .nanos = 123456700},
};

static const struct store_actor actor_admin = {
	.sub = "admin",
	.at = {.seconds = 1764547300, .nanos = 0},
};

/* ---- fixtures ---- */

static struct store *open_spec(const char *spec, unsigned pool_size)
{
	struct store_options opt = {.pool_size = pool_size,
				    .busy_timeout_ms = 10000};
	struct store *st = NULL;
	char err[256] = "";
	int rc = store_open(spec, &opt, &st, err, sizeof(err));

	if (rc != STORE_OK)
		print_error("store_open(%s): %s\n", spec, err);
	assert_int_equal(rc, STORE_OK);
	assert_non_null(st);
	return st;
}

static int setup(void **state)
{
	static struct suite_state s;
	const char *spec = suite_fresh_spec();

	if (!spec || strlen(spec) >= sizeof(s.spec)) {
		print_error("fresh_spec gave no usable spec\n");
		return -1;
	}
	memset(&s, 0, sizeof(s));
	snprintf(s.spec, sizeof(s.spec), "%s", spec);
	s.st = open_spec(s.spec, 0);
	*state = &s;
	return 0;
}

static int teardown(void **state)
{
	struct suite_state *s = *state;

	store_close(s->st);
	s->st = NULL;
	return 0;
}

/* ---- helpers: each asserts its step succeeded ---- */

static struct store_tx *begin_write(struct store *st, const char *customer)
{
	struct store_tx *tx = NULL;

	assert_int_equal(store_begin(st, customer, false, &tx), STORE_OK);
	assert_non_null(tx);
	return tx;
}

static void commit_ok(struct store_tx *tx)
{
	assert_int_equal(store_commit(tx), STORE_OK);
}

/* Puts a customer; seats UNLIMITED for none; returns is_changed. */
static bool put_customer(struct store *st, const char *tenant,
			 const char *account, const char *name, int64_t seats)
{
	struct store_customer c;
	struct store_tx *tx = begin_write(st, tenant);
	bool is_changed = false;

	memset(&c, 0, sizeof(c));
	snprintf(c.tenant, sizeof(c.tenant), "%s", tenant);
	if (account) {
		c.has_account = true;
		snprintf(c.account, sizeof(c.account), "%s", account);
	}
	snprintf(c.name, sizeof(c.name), "%s", name);
	if (seats != UNLIMITED) {
		c.is_seat_limited = true;
		c.included_seats = (uint32_t)seats;
	}
	assert_int_equal(store_customer_put(tx, &c, &is_changed), STORE_OK);
	commit_ok(tx);
	return is_changed;
}

static bool put_user(struct store *st, const char *tenant, const char *user,
		     const char *roles)
{
	struct store_tx *tx = begin_write(st, tenant);
	bool is_changed = false;

	assert_int_equal(store_user_put(tx, tenant, user, roles, &is_changed),
			 STORE_OK);
	commit_ok(tx);
	return is_changed;
}

static bool put_device(struct store *st, const char *tenant,
		       const char *device, const char *owner)
{
	struct store_tx *tx = begin_write(st, tenant);
	bool is_changed = false;

	assert_int_equal(
		store_device_put(tx, tenant, device, owner, &is_changed),
		STORE_OK);
	commit_ok(tx);
	return is_changed;
}

static bool delete_user(struct store *st, const char *tenant,
			const char *user)
{
	struct store_tx *tx = begin_write(st, tenant);
	bool is_changed = true;

	assert_int_equal(store_user_delete(tx, tenant, user, &is_changed),
			 STORE_OK);
	commit_ok(tx);
	return is_changed;
}

static bool delete_device(struct store *st, const char *tenant,
			  const char *device)
{
	struct store_tx *tx = begin_write(st, tenant);
	bool is_changed = true;

	assert_int_equal(store_device_delete(tx, tenant, device, &is_changed),
			 STORE_OK);
	commit_ok(tx);
	return is_changed;
}

static struct domain_change change(const char *user, const char *device,
				   int from, int to, bool is_charged)
{
	struct domain_change c;

	memset(&c, 0, sizeof(c));
	snprintf(c.user, sizeof(c.user), "%s", user);
	snprintf(c.device, sizeof(c.device), "%s", device);
	c.from_type = from;
	c.to_type = to;
	c.is_charged = is_charged;
	return c;
}

static void apply_ok(struct store *st, const char *tenant,
		     const struct domain_change *changes, size_t n)
{
	struct store_tx *tx = begin_write(st, tenant);

	assert_int_equal(
		store_apply(tx, tenant, changes, n, &actor_tester), STORE_OK);
	commit_ok(tx);
}

static void assign(struct store *st, const char *tenant, const char *user,
		   const char *device, int from, int to)
{
	struct domain_change c = change(user, device, from, to, false);

	apply_ok(st, tenant, &c, 1);
}

static void load(struct store *st, const char *tenant, const char *user,
		 const char *device, struct domain_snapshot *snap)
{
	struct domain_key key;
	struct store_tx *tx = NULL;

	memset(&key, 0, sizeof(key));
	snprintf(key.customer, sizeof(key.customer), "%s", tenant);
	snprintf(key.user, sizeof(key.user), "%s", user);
	snprintf(key.device, sizeof(key.device), "%s", device);
	assert_int_equal(store_begin(st, tenant, true, &tx), STORE_OK);
	assert_int_equal(store_load(tx, &key, snap), STORE_OK);
	commit_ok(tx);
}

static size_t ledger(struct store *st, const char *tenant,
		     struct store_ledger_row rows[LEDGER_MAX])
{
	size_t n = 0;

	assert_int_equal(store_ledger_read(st, tenant, 0, rows, LEDGER_MAX, &n),
			 STORE_OK);
	return n;
}

static size_t ledger_count(struct store *st, const char *tenant)
{
	struct store_ledger_row rows[LEDGER_MAX];

	return ledger(st, tenant, rows);
}

static void assert_ledger_row(const struct store_ledger_row *r,
			      const char *tenant, const char *user,
			      const char *device, int from, int to,
			      bool is_charged, const struct store_actor *who)
{
	assert_string_equal(r->tenant, tenant);
	assert_string_equal(r->user, user);
	assert_string_equal(r->device, device);
	assert_int_equal(r->from_type, from);
	assert_int_equal(r->to_type, to);
	assert_int_equal(r->is_charged, is_charged);
	assert_string_equal(r->actor, who->sub);
	assert_int_equal(r->at.seconds, who->at.seconds);
	assert_int_equal(r->at.nanos, who->at.nanos);
}

/*
 * Customer T1 (account A, seats as given): u1 and u2 with both roles, u3
 * with one; d1, d2, d3 owned by u1, d4 by u2, d5 by u3.
 */
static void seed(struct store *st, const char *tenant, int64_t seats)
{
	put_customer(st, tenant, ACCOUNT_A, "Acme", seats);
	put_user(st, tenant, "u1", BOTH_ROLES);
	put_user(st, tenant, "u2", BOTH_ROLES);
	put_user(st, tenant, "u3", DOMAIN_ROLE_UC);
	put_device(st, tenant, "d1", "u1");
	put_device(st, tenant, "d2", "u1");
	put_device(st, tenant, "d3", "u1");
	put_device(st, tenant, "d4", "u2");
	put_device(st, tenant, "d5", "u3");
}

static void assert_same_snapshot(const struct domain_snapshot *a,
				 const struct domain_snapshot *b)
{
	assert_int_equal(a->is_customer_found, b->is_customer_found);
	assert_int_equal(a->customer_has_account, b->customer_has_account);
	if (a->customer_has_account)
		assert_string_equal(a->customer_account, b->customer_account);
	assert_int_equal(a->is_seat_limited, b->is_seat_limited);
	assert_int_equal(a->included_seats, b->included_seats);
	assert_int_equal(a->seats_in_use, b->seats_in_use);
	assert_int_equal(a->is_user_found, b->is_user_found);
	assert_int_equal(a->has_role_uc, b->has_role_uc);
	assert_int_equal(a->has_role_uc_softphone, b->has_role_uc_softphone);
	for (int t = DAS_CLIENT_DESKTOP; t < DAS_CLIENT_TYPE_COUNT; t++)
		assert_string_equal(a->user_devices[t], b->user_devices[t]);
	assert_int_equal(a->is_device_found, b->is_device_found);
	if (a->is_device_found)
		assert_string_equal(a->device_owner, b->device_owner);
	assert_int_equal(a->device_type, b->device_type);
}

/*
 * The failing-write protocol: op runs inside a write tx and must fail with
 * STORE_ERROR there or at commit (store_commit ends the tx either way);
 * afterwards the snapshot of (user, device) and the ledger must be what
 * they were before.
 */
static void expect_rejected(struct store *st, const char *tenant,
			    const char *user, const char *device,
			    int (*op)(struct store_tx *tx, const void *arg),
			    const void *arg)
{
	struct domain_snapshot before, after;
	size_t n_ledger = ledger_count(st, tenant);
	struct store_tx *tx;
	int rc;

	load(st, tenant, user, device, &before);
	tx = begin_write(st, tenant);
	rc = op(tx, arg);
	if (rc == STORE_OK)
		rc = store_commit(tx);
	else
		store_rollback(tx);
	assert_int_equal(rc, STORE_ERROR);

	load(st, tenant, user, device, &after);
	assert_same_snapshot(&before, &after);
	assert_int_equal(ledger_count(st, tenant), n_ledger);
}

struct apply_arg {
	const char *tenant;
	const struct domain_change *changes;
	size_t n;
};

static int op_apply(struct store_tx *tx, const void *arg)
{
	const struct apply_arg *a = arg;

	return store_apply(tx, a->tenant, a->changes, a->n, &actor_tester);
}

static void expect_apply_rejected(struct store *st, const char *tenant,
				  const struct domain_change *changes,
				  size_t n)
{
	struct apply_arg a = {tenant, changes, n};

	expect_rejected(st, tenant, changes[0].user, changes[0].device,
			op_apply, &a);
}

static void assert_user_devices(const struct domain_snapshot *s,
				const char *desktop, const char *mobile,
				const char *webrtc, const char *crm)
{
	assert_string_equal(s->user_devices[DAS_CLIENT_DESKTOP], desktop);
	assert_string_equal(s->user_devices[DAS_CLIENT_MOBILE], mobile);
	assert_string_equal(s->user_devices[DAS_CLIENT_WEBRTC], webrtc);
	assert_string_equal(s->user_devices[DAS_CLIENT_CRM], crm);
}

/* ---- tests ---- */

static void test_schema_created_and_data_survives_reopen(void **state)
{
	struct suite_state *s = *state;
	struct domain_snapshot snap;
	struct store_ledger_row rows[LEDGER_MAX];
	struct store *second;

	seed(s->st, T1, 5);
	assign(s->st, T1, "u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP);
	store_close(s->st);
	s->st = NULL;

	/* Opening an existing database neither recreates nor loses it. */
	s->st = open_spec(s->spec, 0);
	load(s->st, T1, "u1", "d1", &snap);
	assert_true(snap.is_customer_found);
	assert_true(snap.is_user_found);
	assert_true(snap.is_device_found);
	assert_int_equal(snap.device_type, DAS_CLIENT_DESKTOP);
	assert_int_equal(snap.seats_in_use, 1);
	assert_int_equal(ledger(s->st, T1, rows), 1);
	assert_true(rows[0].id > 0);
	assert_ledger_row(&rows[0], T1, "u1", "d1", DAS_CLIENT_NONE,
			  DAS_CLIENT_DESKTOP, false, &actor_tester);

	/* A second handle on the same database sees the same data. */
	second = open_spec(s->spec, 1);
	assign(second, T1, "u1", "d2", DAS_CLIENT_NONE, DAS_CLIENT_MOBILE);
	load(s->st, T1, "u1", "d2", &snap);
	assert_int_equal(snap.device_type, DAS_CLIENT_MOBILE);
	store_close(second);
}

static void test_customer_put_is_changed(void **state)
{
	struct suite_state *s = *state;
	struct domain_snapshot snap;

	load(s->st, T1, "", "", &snap);
	assert_false(snap.is_customer_found);

	assert_true(put_customer(s->st, T1, NULL, "Acme", UNLIMITED));
	assert_false(put_customer(s->st, T1, NULL, "Acme", UNLIMITED));
	load(s->st, T1, "", "", &snap);
	assert_true(snap.is_customer_found);
	assert_false(snap.customer_has_account);
	assert_false(snap.is_seat_limited);
	assert_int_equal(snap.seats_in_use, 0);

	assert_true(put_customer(s->st, T1, NULL, "Acme Inc", UNLIMITED));
	assert_false(put_customer(s->st, T1, NULL, "Acme Inc", UNLIMITED));

	assert_true(put_customer(s->st, T1, ACCOUNT_A, "Acme Inc", UNLIMITED));
	assert_false(put_customer(s->st, T1, ACCOUNT_A, "Acme Inc", UNLIMITED));
	load(s->st, T1, "", "", &snap);
	assert_true(snap.customer_has_account);
	assert_string_equal(snap.customer_account, ACCOUNT_A);
	assert_true(put_customer(s->st, T1, ACCOUNT_B, "Acme Inc", UNLIMITED));
	load(s->st, T1, "", "", &snap);
	assert_string_equal(snap.customer_account, ACCOUNT_B);

	assert_true(put_customer(s->st, T1, ACCOUNT_B, "Acme Inc", 5));
	assert_false(put_customer(s->st, T1, ACCOUNT_B, "Acme Inc", 5));
	load(s->st, T1, "", "", &snap);
	assert_true(snap.is_seat_limited);
	assert_int_equal(snap.included_seats, 5);

	/* Zero seats is a limit, not "unlimited". */
	assert_true(put_customer(s->st, T1, ACCOUNT_B, "Acme Inc", 0));
	load(s->st, T1, "", "", &snap);
	assert_true(snap.is_seat_limited);
	assert_int_equal(snap.included_seats, 0);

	assert_true(put_customer(s->st, T1, NULL, "Acme Inc", UNLIMITED));
	load(s->st, T1, "", "", &snap);
	assert_false(snap.customer_has_account);
	assert_false(snap.is_seat_limited);

	/* Another tenant is another customer. */
	load(s->st, T2, "", "", &snap);
	assert_false(snap.is_customer_found);
}

static void test_user_put_is_changed_and_roles(void **state)
{
	struct suite_state *s = *state;
	struct domain_snapshot snap;

	put_customer(s->st, T1, NULL, "Acme", UNLIMITED);
	put_customer(s->st, T2, NULL, "Other", UNLIMITED);

	load(s->st, T1, "u1", "", &snap);
	assert_false(snap.is_user_found);

	assert_true(put_user(s->st, T1, "u1", DOMAIN_ROLE_UC));
	assert_false(put_user(s->st, T1, "u1", DOMAIN_ROLE_UC));
	load(s->st, T1, "u1", "", &snap);
	assert_true(snap.is_user_found);
	assert_true(snap.has_role_uc);
	assert_false(snap.has_role_uc_softphone);

	assert_true(put_user(s->st, T1, "u1", BOTH_ROLES));
	load(s->st, T1, "u1", "", &snap);
	assert_true(snap.has_role_uc);
	assert_true(snap.has_role_uc_softphone);

	assert_true(put_user(s->st, T1, "u1", DOMAIN_ROLE_UC_SOFTPHONE));
	load(s->st, T1, "u1", "", &snap);
	assert_false(snap.has_role_uc);
	assert_true(snap.has_role_uc_softphone);

	assert_true(put_user(s->st, T1, "u1", ""));
	assert_false(put_user(s->st, T1, "u1", ""));
	load(s->st, T1, "u1", "", &snap);
	assert_true(snap.is_user_found);
	assert_false(snap.has_role_uc);
	assert_false(snap.has_role_uc_softphone);

	/* Users are per customer; ids are case-sensitive. */
	load(s->st, T2, "u1", "", &snap);
	assert_false(snap.is_user_found);
	load(s->st, T1, "U1", "", &snap);
	assert_false(snap.is_user_found);
	assert_true(put_user(s->st, T2, "u1", BOTH_ROLES));
	load(s->st, T1, "u1", "", &snap);
	assert_false(snap.has_role_uc);
}

static void test_device_put_is_changed(void **state)
{
	struct suite_state *s = *state;
	struct domain_snapshot snap;

	put_customer(s->st, T1, NULL, "Acme", UNLIMITED);
	put_user(s->st, T1, "u1", BOTH_ROLES);

	load(s->st, T1, "u1", "d1", &snap);
	assert_false(snap.is_device_found);

	assert_true(put_device(s->st, T1, "d1", "u1"));
	assert_false(put_device(s->st, T1, "d1", "u1"));
	load(s->st, T1, "u1", "d1", &snap);
	assert_true(snap.is_device_found);
	assert_string_equal(snap.device_owner, "u1");
	assert_int_equal(snap.device_type, DAS_CLIENT_NONE);

	/* The owner need not be a known user: the PBX is the authority. */
	assert_true(put_device(s->st, T1, "d1", "someone-else"));
	assert_false(put_device(s->st, T1, "d1", "someone-else"));
	load(s->st, T1, "", "d1", &snap);
	assert_true(snap.is_device_found);
	assert_string_equal(snap.device_owner, "someone-else");
	assert_false(snap.is_user_found);

	load(s->st, T1, "u1", "", &snap);
	assert_false(snap.is_device_found);
	load(s->st, T1, "u1", "d2", &snap);
	assert_false(snap.is_device_found);
}

static void test_deletes_is_changed(void **state)
{
	struct suite_state *s = *state;
	struct domain_snapshot snap;
	struct store_tx *tx;
	bool is_changed = true;
	uint32_t n_dropped = 99;

	seed(s->st, T1, UNLIMITED);

	assert_true(delete_user(s->st, T1, "u2"));
	assert_false(delete_user(s->st, T1, "u2"));
	load(s->st, T1, "u2", "", &snap);
	assert_false(snap.is_user_found);

	assert_true(delete_device(s->st, T1, "d4"));
	assert_false(delete_device(s->st, T1, "d4"));
	load(s->st, T1, "", "d4", &snap);
	assert_false(snap.is_device_found);

	/* The others stay. */
	load(s->st, T1, "u1", "d1", &snap);
	assert_true(snap.is_user_found);
	assert_true(snap.is_device_found);

	tx = begin_write(s->st, T2);
	assert_int_equal(store_customer_delete(tx, T2, &actor_admin,
					       &is_changed, &n_dropped),
			 STORE_OK);
	commit_ok(tx);
	assert_false(is_changed);
	assert_int_equal(n_dropped, 0);
	assert_int_equal(ledger_count(s->st, T2), 0);
}

static void test_load_snapshot_fields(void **state)
{
	struct suite_state *s = *state;
	struct domain_snapshot snap;

	seed(s->st, T1, 3);
	assign(s->st, T1, "u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP);
	assign(s->st, T1, "u1", "d2", DAS_CLIENT_NONE, DAS_CLIENT_MOBILE);
	assign(s->st, T1, "u2", "d4", DAS_CLIENT_NONE, DAS_CLIENT_WEBRTC);

	load(s->st, T1, "u1", "d2", &snap);
	assert_true(snap.is_customer_found);
	assert_true(snap.customer_has_account);
	assert_string_equal(snap.customer_account, ACCOUNT_A);
	assert_true(snap.is_seat_limited);
	assert_int_equal(snap.included_seats, 3);
	assert_int_equal(snap.seats_in_use, 2); /* u1 counts once */
	assert_true(snap.is_user_found);
	assert_true(snap.has_role_uc);
	assert_true(snap.has_role_uc_softphone);
	assert_user_devices(&snap, "d1", "d2", "", "");
	assert_string_equal(snap.user_devices[DAS_CLIENT_NONE], "");
	assert_true(snap.is_device_found);
	assert_string_equal(snap.device_owner, "u1");
	assert_int_equal(snap.device_type, DAS_CLIENT_MOBILE);

	load(s->st, T1, "u2", "d3", &snap);
	assert_user_devices(&snap, "", "", "d4", "");
	assert_string_equal(snap.device_owner, "u1");
	assert_int_equal(snap.device_type, DAS_CLIENT_NONE);

	load(s->st, T1, "u3", "d5", &snap);
	assert_true(snap.is_user_found);
	assert_true(snap.has_role_uc);
	assert_false(snap.has_role_uc_softphone);
	assert_user_devices(&snap, "", "", "", "");

	/* Empty user and device: not asked, not found. */
	load(s->st, T1, "", "", &snap);
	assert_true(snap.is_customer_found);
	assert_int_equal(snap.seats_in_use, 2);
	assert_false(snap.is_user_found);
	assert_false(snap.is_device_found);
	assert_user_devices(&snap, "", "", "", "");

	/* An unknown customer: nothing found, no seats. */
	load(s->st, T2, "u1", "d1", &snap);
	assert_false(snap.is_customer_found);
	assert_false(snap.is_user_found);
	assert_false(snap.is_device_found);
	assert_int_equal(snap.seats_in_use, 0);
}

static void test_apply_move(void **state)
{
	struct suite_state *s = *state;
	struct domain_snapshot snap;
	struct store_ledger_row rows[LEDGER_MAX];

	seed(s->st, T1, 5);
	assign(s->st, T1, "u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP);
	assign(s->st, T1, "u1", "d1", DAS_CLIENT_DESKTOP, DAS_CLIENT_MOBILE);

	load(s->st, T1, "u1", "d1", &snap);
	assert_user_devices(&snap, "", "d1", "", "");
	assert_int_equal(snap.device_type, DAS_CLIENT_MOBILE);
	assert_int_equal(snap.seats_in_use, 1);

	assert_int_equal(ledger(s->st, T1, rows), 2);
	assert_true(rows[0].id < rows[1].id);
	assert_ledger_row(&rows[0], T1, "u1", "d1", DAS_CLIENT_NONE,
			  DAS_CLIENT_DESKTOP, false, &actor_tester);
	assert_ledger_row(&rows[1], T1, "u1", "d1", DAS_CLIENT_DESKTOP,
			  DAS_CLIENT_MOBILE, false, &actor_tester);
}

static void test_apply_replace(void **state)
{
	struct suite_state *s = *state;
	struct domain_snapshot snap;
	struct store_ledger_row rows[LEDGER_MAX];
	struct domain_change replace[2], move_replace[2];

	seed(s->st, T1, 5);
	assign(s->st, T1, "u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP);
	assign(s->st, T1, "u1", "d3", DAS_CLIENT_NONE, DAS_CLIENT_CRM);

	/* d2 takes desktop: d1 is released first, in the same apply. */
	replace[0] = change("u1", "d1", DAS_CLIENT_DESKTOP, DAS_CLIENT_NONE,
			    false);
	replace[1] = change("u1", "d2", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP,
			    false);
	apply_ok(s->st, T1, replace, 2);
	load(s->st, T1, "u1", "d1", &snap);
	assert_user_devices(&snap, "d2", "", "", "d3");
	assert_int_equal(snap.device_type, DAS_CLIENT_NONE);

	/* d3 moves from crm onto desktop, releasing d2. */
	move_replace[0] = change("u1", "d2", DAS_CLIENT_DESKTOP,
				 DAS_CLIENT_NONE, false);
	move_replace[1] = change("u1", "d3", DAS_CLIENT_CRM,
				 DAS_CLIENT_DESKTOP, false);
	apply_ok(s->st, T1, move_replace, 2);
	load(s->st, T1, "u1", "d3", &snap);
	assert_user_devices(&snap, "d3", "", "", "");
	assert_int_equal(snap.device_type, DAS_CLIENT_DESKTOP);
	assert_int_equal(snap.seats_in_use, 1);

	assert_int_equal(ledger(s->st, T1, rows), 6);
	for (size_t i = 1; i < 6; i++)
		assert_true(rows[i - 1].id < rows[i].id);
	assert_ledger_row(&rows[2], T1, "u1", "d1", DAS_CLIENT_DESKTOP,
			  DAS_CLIENT_NONE, false, &actor_tester);
	assert_ledger_row(&rows[3], T1, "u1", "d2", DAS_CLIENT_NONE,
			  DAS_CLIENT_DESKTOP, false, &actor_tester);
	assert_ledger_row(&rows[4], T1, "u1", "d2", DAS_CLIENT_DESKTOP,
			  DAS_CLIENT_NONE, false, &actor_tester);
	assert_ledger_row(&rows[5], T1, "u1", "d3", DAS_CLIENT_CRM,
			  DAS_CLIENT_DESKTOP, false, &actor_tester);
}

static void test_apply_unassign_and_charged(void **state)
{
	struct suite_state *s = *state;
	struct domain_snapshot snap;
	struct store_ledger_row rows[LEDGER_MAX];
	struct domain_change charged =
		change("u2", "d4", DAS_CLIENT_NONE, DAS_CLIENT_WEBRTC, true);
	struct store_tx *tx;

	seed(s->st, T1, 1);
	assign(s->st, T1, "u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP);
	apply_ok(s->st, T1, &charged, 1);
	load(s->st, T1, "u2", "d4", &snap);
	assert_int_equal(snap.seats_in_use, 2);

	assign(s->st, T1, "u1", "d1", DAS_CLIENT_DESKTOP, DAS_CLIENT_NONE);
	load(s->st, T1, "u1", "d1", &snap);
	assert_user_devices(&snap, "", "", "", "");
	assert_int_equal(snap.device_type, DAS_CLIENT_NONE);
	assert_int_equal(snap.seats_in_use, 1);

	/* An empty apply writes nothing. */
	tx = begin_write(s->st, T1);
	assert_int_equal(store_apply(tx, T1, NULL, 0, &actor_tester),
			 STORE_OK);
	commit_ok(tx);

	assert_int_equal(ledger(s->st, T1, rows), 3);
	assert_ledger_row(&rows[1], T1, "u2", "d4", DAS_CLIENT_NONE,
			  DAS_CLIENT_WEBRTC, true, &actor_tester);
	assert_ledger_row(&rows[2], T1, "u1", "d1", DAS_CLIENT_DESKTOP,
			  DAS_CLIENT_NONE, false, &actor_tester);
}

static void test_device_in_two_types_rejected(void **state)
{
	struct suite_state *s = *state;
	struct domain_snapshot snap;
	struct domain_change second =
		change("u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_MOBILE, false);

	seed(s->st, T1, UNLIMITED);
	assign(s->st, T1, "u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP);

	/* A "new" assignment of a device that already has a type. */
	expect_apply_rejected(s->st, T1, &second, 1);
	load(s->st, T1, "u1", "d1", &snap);
	assert_user_devices(&snap, "d1", "", "", "");
	assert_int_equal(snap.device_type, DAS_CLIENT_DESKTOP);
}

static void test_type_with_two_devices_rejected(void **state)
{
	struct suite_state *s = *state;
	struct domain_snapshot snap;
	struct domain_change two[2];

	seed(s->st, T1, UNLIMITED);
	assign(s->st, T1, "u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP);

	/* d2 onto desktop without releasing d1; a valid change first must
	 * not survive either. */
	two[0] = change("u1", "d3", DAS_CLIENT_NONE, DAS_CLIENT_CRM, false);
	two[1] = change("u1", "d2", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP, false);
	expect_apply_rejected(s->st, T1, two, 2);
	expect_apply_rejected(s->st, T1, &two[1], 1);

	load(s->st, T1, "u1", "d2", &snap);
	assert_user_devices(&snap, "d1", "", "", "");
	assert_int_equal(snap.device_type, DAS_CLIENT_NONE);
	assert_int_equal(ledger_count(s->st, T1), 1);
}

static void test_stale_and_invalid_changes_rejected(void **state)
{
	struct suite_state *s = *state;
	struct domain_snapshot snap;
	struct domain_change bad[] = {
		/* d2 has no type, so it cannot move or be released */
		change("u1", "d2", DAS_CLIENT_DESKTOP, DAS_CLIENT_MOBILE, false),
		change("u1", "d2", DAS_CLIENT_MOBILE, DAS_CLIENT_NONE, false),
		/* d1 is at desktop, not mobile */
		change("u1", "d1", DAS_CLIENT_MOBILE, DAS_CLIENT_CRM, false),
		change("u1", "d1", DAS_CLIENT_MOBILE, DAS_CLIENT_NONE, false),
		/* not changes at all */
		change("u1", "d1", DAS_CLIENT_DESKTOP, DAS_CLIENT_DESKTOP,
		       false),
		change("u1", "d2", DAS_CLIENT_NONE, DAS_CLIENT_NONE, false),
		change("u1", "d2", DAS_CLIENT_NONE, 5, false),
		change("u1", "d2", -1, DAS_CLIENT_DESKTOP, false),
	};

	seed(s->st, T1, UNLIMITED);
	assign(s->st, T1, "u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_apply_rejected(s->st, T1, &bad[i], 1);

	load(s->st, T1, "u1", "d1", &snap);
	assert_user_devices(&snap, "d1", "", "", "");
	assert_int_equal(ledger_count(s->st, T1), 1);
}

static void test_assignment_must_match_owner(void **state)
{
	struct suite_state *s = *state;
	struct domain_snapshot snap;
	/* d4 is u2's; "ghost" owns d9 but is no user of the customer. */
	struct domain_change not_owner =
		change("u1", "d4", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP, false);
	struct domain_change no_user =
		change("ghost", "d9", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP, false);
	struct domain_change no_device =
		change("u1", "d-none", DAS_CLIENT_NONE, DAS_CLIENT_CRM, false);

	seed(s->st, T1, UNLIMITED);
	put_device(s->st, T1, "d9", "ghost");

	expect_apply_rejected(s->st, T1, &not_owner, 1);
	expect_apply_rejected(s->st, T1, &no_user, 1);
	expect_apply_rejected(s->st, T1, &no_device, 1);
	load(s->st, T1, "u1", "d4", &snap);
	assert_user_devices(&snap, "", "", "", "");
	assert_int_equal(snap.device_type, DAS_CLIENT_NONE);
	assert_int_equal(snap.seats_in_use, 0);
}

struct keyed_arg {
	const char *tenant;
	const char *id;
	const char *owner;
};

static int op_user_delete(struct store_tx *tx, const void *arg)
{
	const struct keyed_arg *a = arg;
	bool is_changed;

	return store_user_delete(tx, a->tenant, a->id, &is_changed);
}

static int op_device_delete(struct store_tx *tx, const void *arg)
{
	const struct keyed_arg *a = arg;
	bool is_changed;

	return store_device_delete(tx, a->tenant, a->id, &is_changed);
}

static int op_device_put(struct store_tx *tx, const void *arg)
{
	const struct keyed_arg *a = arg;
	bool is_changed;

	return store_device_put(tx, a->tenant, a->id, a->owner, &is_changed);
}

static void test_directory_keeps_assignments_consistent(void **state)
{
	struct suite_state *s = *state;
	struct domain_snapshot snap;
	struct store_ledger_row rows[LEDGER_MAX];
	struct keyed_arg user_u1 = {T1, "u1", NULL};
	struct keyed_arg device_d1 = {T1, "d1", NULL};
	struct keyed_arg owner_d1 = {T1, "d1", "u2"};
	struct domain_change drop =
		change("u1", "d1", DAS_CLIENT_DESKTOP, DAS_CLIENT_NONE, false);
	struct store_tx *tx;
	bool is_changed = false;

	seed(s->st, T1, UNLIMITED);
	assign(s->st, T1, "u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP);

	/* The caller must drop the assignment first. */
	expect_rejected(s->st, T1, "u1", "d1", op_user_delete, &user_u1);
	expect_rejected(s->st, T1, "u1", "d1", op_device_delete, &device_d1);
	expect_rejected(s->st, T1, "u1", "d1", op_device_put, &owner_d1);
	load(s->st, T1, "u1", "d1", &snap);
	assert_true(snap.is_user_found);
	assert_string_equal(snap.device_owner, "u1");
	assert_int_equal(snap.device_type, DAS_CLIENT_DESKTOP);

	/* Owner change done right: drop, then put, in one transaction. */
	tx = begin_write(s->st, T1);
	assert_int_equal(store_apply(tx, T1, &drop, 1, &actor_admin),
			 STORE_OK);
	assert_int_equal(store_device_put(tx, T1, "d1", "u2", &is_changed),
			 STORE_OK);
	assert_true(is_changed);
	commit_ok(tx);
	load(s->st, T1, "u2", "d1", &snap);
	assert_string_equal(snap.device_owner, "u2");
	assert_int_equal(snap.device_type, DAS_CLIENT_NONE);
	assert_int_equal(snap.seats_in_use, 0);
	assert_int_equal(ledger(s->st, T1, rows), 2);
	assert_ledger_row(&rows[1], T1, "u1", "d1", DAS_CLIENT_DESKTOP,
			  DAS_CLIENT_NONE, false, &actor_admin);

	/* And now the user can go. */
	assert_true(delete_user(s->st, T1, "u1"));
}

static void test_rollback_leaves_nothing(void **state)
{
	struct suite_state *s = *state;
	struct domain_snapshot snap;
	struct store_customer c;
	struct domain_change a =
		change("u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP, false);
	struct store_tx *tx;
	bool is_changed;

	memset(&c, 0, sizeof(c));
	snprintf(c.tenant, sizeof(c.tenant), "%s", T1);
	snprintf(c.name, sizeof(c.name), "Acme");

	tx = begin_write(s->st, T1);
	assert_int_equal(store_customer_put(tx, &c, &is_changed), STORE_OK);
	assert_int_equal(store_user_put(tx, T1, "u1", BOTH_ROLES, &is_changed),
			 STORE_OK);
	assert_int_equal(store_device_put(tx, T1, "d1", "u1", &is_changed),
			 STORE_OK);
	assert_int_equal(store_apply(tx, T1, &a, 1, &actor_tester), STORE_OK);
	store_rollback(tx);

	load(s->st, T1, "u1", "d1", &snap);
	assert_false(snap.is_customer_found);
	assert_false(snap.is_user_found);
	assert_false(snap.is_device_found);
	assert_int_equal(ledger_count(s->st, T1), 0);

	/* On existing data too. */
	seed(s->st, T1, 2);
	assign(s->st, T1, "u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP);
	tx = begin_write(s->st, T1);
	a = change("u1", "d1", DAS_CLIENT_DESKTOP, DAS_CLIENT_NONE, false);
	assert_int_equal(store_apply(tx, T1, &a, 1, &actor_tester), STORE_OK);
	assert_int_equal(store_user_delete(tx, T1, "u2", &is_changed),
			 STORE_OK);
	c.is_seat_limited = true;
	c.included_seats = 9;
	assert_int_equal(store_customer_put(tx, &c, &is_changed), STORE_OK);
	store_rollback(tx);

	load(s->st, T1, "u1", "d1", &snap);
	assert_int_equal(snap.device_type, DAS_CLIENT_DESKTOP);
	assert_int_equal(snap.included_seats, 2);
	load(s->st, T1, "u2", "", &snap);
	assert_true(snap.is_user_found);
	assert_int_equal(ledger_count(s->st, T1), 1);
}

static void test_customer_delete_cascades(void **state)
{
	struct suite_state *s = *state;
	struct domain_snapshot snap;
	struct store_ledger_row rows[LEDGER_MAX];
	struct store_tx *tx;
	bool is_changed = false;
	uint32_t n_dropped = 0;

	seed(s->st, T1, 5);
	seed(s->st, T2, 5);
	assign(s->st, T1, "u2", "d4", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP);
	assign(s->st, T1, "u1", "d2", DAS_CLIENT_NONE, DAS_CLIENT_MOBILE);
	assign(s->st, T1, "u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP);
	assign(s->st, T2, "u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP);

	tx = begin_write(s->st, T1);
	assert_int_equal(store_customer_delete(tx, T1, &actor_admin,
					       &is_changed, &n_dropped),
			 STORE_OK);
	commit_ok(tx);
	assert_true(is_changed);
	assert_int_equal(n_dropped, 3);

	load(s->st, T1, "u1", "d1", &snap);
	assert_false(snap.is_customer_found);
	assert_false(snap.is_user_found);
	assert_false(snap.is_device_found);
	assert_int_equal(snap.seats_in_use, 0);
	assert_user_devices(&snap, "", "", "", "");

	/* Ledgered by user, then type; the ledger outlives the customer. */
	assert_int_equal(ledger(s->st, T1, rows), 6);
	assert_ledger_row(&rows[3], T1, "u1", "d1", DAS_CLIENT_DESKTOP,
			  DAS_CLIENT_NONE, false, &actor_admin);
	assert_ledger_row(&rows[4], T1, "u1", "d2", DAS_CLIENT_MOBILE,
			  DAS_CLIENT_NONE, false, &actor_admin);
	assert_ledger_row(&rows[5], T1, "u2", "d4", DAS_CLIENT_DESKTOP,
			  DAS_CLIENT_NONE, false, &actor_admin);

	/* The other customer, with the same ids, is untouched. */
	load(s->st, T2, "u1", "d1", &snap);
	assert_true(snap.is_customer_found);
	assert_int_equal(snap.device_type, DAS_CLIENT_DESKTOP);
	assert_int_equal(snap.seats_in_use, 1);
	assert_int_equal(ledger_count(s->st, T2), 1);

	/* Gone means gone: deleting again changes nothing... */
	tx = begin_write(s->st, T1);
	assert_int_equal(store_customer_delete(tx, T1, &actor_admin,
					       &is_changed, &n_dropped),
			 STORE_OK);
	commit_ok(tx);
	assert_false(is_changed);
	assert_int_equal(n_dropped, 0);

	/* ...and the customer can come back without leftovers. */
	seed(s->st, T1, 5);
	load(s->st, T1, "u1", "d1", &snap);
	assert_int_equal(snap.seats_in_use, 0);
	assert_int_equal(snap.device_type, DAS_CLIENT_NONE);
	assign(s->st, T1, "u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP);
}

static void test_ledger_read_pages(void **state)
{
	struct suite_state *s = *state;
	struct store_ledger_row rows[LEDGER_MAX];
	size_t n = 99;
	int64_t after = 0;
	size_t total = 0;
	const char *devices[] = {"d1", "d1", "d2", "d2", "d1"};

	seed(s->st, T1, UNLIMITED);
	seed(s->st, T2, UNLIMITED);
	assign(s->st, T1, "u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP);
	assign(s->st, T2, "u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP);
	assign(s->st, T1, "u1", "d1", DAS_CLIENT_DESKTOP, DAS_CLIENT_MOBILE);
	assign(s->st, T1, "u1", "d2", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP);
	assign(s->st, T1, "u1", "d2", DAS_CLIENT_DESKTOP, DAS_CLIENT_NONE);
	assign(s->st, T1, "u1", "d1", DAS_CLIENT_MOBILE, DAS_CLIENT_CRM);

	assert_int_equal(store_ledger_read(s->st, T1, 0, rows, 0, &n),
			 STORE_OK);
	assert_int_equal(n, 0);

	/* Pages of two: 2, 2, 1, then nothing. */
	for (int page = 0; page < 4; page++) {
		assert_int_equal(
			store_ledger_read(s->st, T1, after, rows, 2, &n),
			STORE_OK);
		assert_int_equal(n, page < 2 ? 2 : page == 2 ? 1 : 0);
		for (size_t i = 0; i < n; i++) {
			assert_true(rows[i].id > after);
			assert_string_equal(rows[i].tenant, T1);
			assert_string_equal(rows[i].device, devices[total]);
			after = rows[i].id;
			total++;
		}
	}
	assert_int_equal(total, 5);
	assert_int_equal(ledger_count(s->st, T2), 1);
	assert_int_equal(ledger_count(s->st, ACCOUNT_A), 0);
}

static void test_read_only_tx_refuses_writes(void **state)
{
	struct suite_state *s = *state;
	struct domain_snapshot snap;
	struct domain_change a =
		change("u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP, false);
	struct store_tx *tx = NULL;
	bool is_changed;

	seed(s->st, T1, UNLIMITED);

	assert_int_equal(store_begin(s->st, T1, true, &tx), STORE_OK);
	assert_int_equal(store_apply(tx, T1, &a, 1, &actor_tester),
			 STORE_ERROR);
	store_rollback(tx);

	assert_int_equal(store_begin(s->st, T1, true, &tx), STORE_OK);
	assert_int_equal(store_user_put(tx, T1, "u9", BOTH_ROLES, &is_changed),
			 STORE_ERROR);
	store_rollback(tx);

	load(s->st, T1, "u9", "d1", &snap);
	assert_false(snap.is_user_found);
	assert_int_equal(snap.device_type, DAS_CLIENT_NONE);
	assert_int_equal(ledger_count(s->st, T1), 0);
}

/*
 * The health probe: a healthy store can take a write; probing changes no
 * data and leaves every connection free (a pool of one still serves).
 */
static void test_probe_healthy_store(void **state)
{
	struct suite_state *s = *state;
	struct store *one = open_spec(s->spec, 1);
	struct domain_snapshot snap;
	struct domain_change a =
		change("u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP, false);
	struct store_tx *tx;
	char why[256] = "";

	seed(one, T1, UNLIMITED);
	for (int i = 0; i < 3; i++)
		assert_int_equal(store_probe(one, why, sizeof(why)), STORE_OK);
	tx = begin_write(one, T1);
	assert_int_equal(store_apply(tx, T1, &a, 1, &actor_tester), STORE_OK);
	assert_int_equal(store_commit(tx), STORE_OK);
	assert_int_equal(store_probe(one, why, sizeof(why)), STORE_OK);
	load(one, T1, "u1", "d1", &snap);
	assert_int_equal(snap.device_type, DAS_CLIENT_DESKTOP);
	assert_int_equal(ledger_count(one, T1), 1);
	store_close(one);
}

/*
 * With one connection, every path that ends a transaction (commit, failed
 * commit, rollback after a failed call) must give the connection back, or
 * the next begin waits forever.
 */
static void test_every_end_releases_the_connection(void **state)
{
	struct suite_state *s = *state;
	struct store *one = open_spec(s->spec, 1);
	struct domain_change not_owner =
		change("u1", "d4", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP, false);
	struct domain_change stale =
		change("u1", "d1", DAS_CLIENT_MOBILE, DAS_CLIENT_NONE, false);
	struct domain_snapshot snap;

	seed(one, T1, UNLIMITED);
	for (int i = 0; i < 3; i++) {
		expect_apply_rejected(one, T1, &not_owner, 1);
		expect_apply_rejected(one, T1, &stale, 1);
		assign(one, T1, "u1", "d1", DAS_CLIENT_NONE,
		       DAS_CLIENT_DESKTOP);
		assign(one, T1, "u1", "d1", DAS_CLIENT_DESKTOP,
		       DAS_CLIENT_NONE);
	}
	load(one, T1, "u1", "d1", &snap);
	assert_int_equal(snap.device_type, DAS_CLIENT_NONE);
	assert_int_equal(ledger_count(one, T1), 6);
	store_close(one);
}

/*
 * The seat race: RACE_THREADS users, each with a device, all assign at the
 * same moment to a customer with RACE_SEATS included seats and without
 * accepting charges. The rules (domain_decide) see the seat count the store
 * loaded inside the transaction, so exactly RACE_SEATS may win.
 */
struct racer {
	struct store *st;
	pthread_barrier_t *start;
	int index;
	bool is_charge_accepted;
	int store_rc;            /* last store result */
	enum das_status outcome; /* the rules' answer */
	int attempts;
};

static void *race_one(void *arg)
{
	struct racer *r = arg;
	struct domain_principal who;
	struct domain_request req;
	struct domain_key key;
	struct domain_snapshot snap;
	struct domain_decision d;
	struct store_actor act = actor_tester;

	memset(&who, 0, sizeof(who));
	snprintf(who.sub, sizeof(who.sub), "racer");
	who.is_all_tenants = true;
	who.scopes = DOMAIN_SCOPE_ASSIGN;
	memset(&key, 0, sizeof(key));
	snprintf(key.customer, sizeof(key.customer), "%s", T1);
	snprintf(key.user, sizeof(key.user), "r%d", r->index);
	snprintf(key.device, sizeof(key.device), "rd%d", r->index);
	memset(&req, 0, sizeof(req));
	req.op = DOMAIN_OP_ASSIGN;
	req.customer = key.customer;
	req.customer_len = strlen(key.customer);
	req.user = key.user;
	req.user_len = strlen(key.user);
	req.device = key.device;
	req.device_len = strlen(key.device);
	req.client_type = DAS_CLIENT_DESKTOP;
	req.is_charge_accepted = r->is_charge_accepted;

	pthread_barrier_wait(r->start);
	for (r->attempts = 1; r->attempts <= RACE_MAX_ATTEMPTS; r->attempts++) {
		struct store_tx *tx = NULL;

		r->store_rc = store_begin(r->st, T1, false, &tx);
		if (r->store_rc == STORE_RETRY)
			continue;
		if (r->store_rc != STORE_OK)
			break;
		r->store_rc = store_load(tx, &key, &snap);
		if (r->store_rc == STORE_OK) {
			domain_decide(&who, &req, &key, &snap, &d);
			r->outcome = d.status;
			if (d.n_changes > 0)
				r->store_rc = store_apply(tx, T1, d.changes,
							  d.n_changes, &act);
		}
		if (r->store_rc == STORE_OK) {
			r->store_rc = store_commit(tx);
		} else {
			store_rollback(tx);
		}
		if (r->store_rc != STORE_RETRY)
			break;
	}
	return NULL;
}

/* Runs one racer per index at once; racers[i] gets index[i]'s outcome. */
static void race(struct store *st, const int *indexes, int n,
		 bool is_charge_accepted, struct racer *racers)
{
	pthread_t threads[RACE_THREADS];
	pthread_barrier_t start;

	assert_true(n > 0 && n <= RACE_THREADS);
	assert_int_equal(pthread_barrier_init(&start, NULL, (unsigned)n), 0);
	for (int i = 0; i < n; i++) {
		racers[i] = (struct racer){.st = st,
					   .start = &start,
					   .index = indexes[i],
					   .is_charge_accepted =
						   is_charge_accepted,
					   .outcome = DAS_INTERNAL};
		assert_int_equal(pthread_create(&threads[i], NULL, race_one,
						&racers[i]),
				 0);
	}
	for (int i = 0; i < n; i++)
		pthread_join(threads[i], NULL);
	pthread_barrier_destroy(&start);
	for (int i = 0; i < n; i++) {
		if (racers[i].store_rc != STORE_OK)
			print_error("racer %d: store result %d after %d "
				    "attempts\n",
				    racers[i].index, racers[i].store_rc,
				    racers[i].attempts);
		assert_int_equal(racers[i].store_rc, STORE_OK);
	}
}

static void test_concurrent_seat_race(void **state)
{
	struct suite_state *s = *state;
	/* Fewer connections than threads: begin must wait, not fail. */
	struct store *shared = open_spec(s->spec, 4);
	struct racer racers[RACE_THREADS];
	struct store_ledger_row rows[LEDGER_MAX];
	struct domain_snapshot snap;
	int indexes[RACE_THREADS], losers[RACE_THREADS];
	int n_won = 0, n_losers = 0;
	size_t n_rows, n_charged = 0;

	put_customer(shared, T1, NULL, "Race", RACE_SEATS);
	for (int i = 0; i < RACE_THREADS; i++) {
		char user[16], device[16];

		snprintf(user, sizeof(user), "r%d", i);
		snprintf(device, sizeof(device), "rd%d", i);
		put_user(shared, T1, user, BOTH_ROLES);
		put_device(shared, T1, device, user);
		indexes[i] = i;
	}

	race(shared, indexes, RACE_THREADS, false, racers);
	for (int i = 0; i < RACE_THREADS; i++) {
		if (racers[i].outcome == DAS_OK) {
			n_won++;
		} else {
			assert_int_equal(racers[i].outcome,
					 DAS_CHARGES_NOT_ACCEPTED);
			losers[n_losers++] = racers[i].index;
		}
	}
	assert_int_equal(n_won, RACE_SEATS);
	load(shared, T1, "", "", &snap);
	assert_int_equal(snap.seats_in_use, RACE_SEATS);
	assert_int_equal(ledger_count(shared, T1), RACE_SEATS);

	/* The losers accept charges now: each gets a seat, charged. */
	race(shared, losers, n_losers, true, racers);
	for (int i = 0; i < n_losers; i++)
		assert_int_equal(racers[i].outcome, DAS_OK);
	load(shared, T1, "", "", &snap);
	assert_int_equal(snap.seats_in_use, RACE_THREADS);
	n_rows = ledger(shared, T1, rows);
	assert_int_equal(n_rows, RACE_THREADS);
	for (size_t i = 0; i < n_rows; i++)
		if (rows[i].is_charged)
			n_charged++;
	assert_int_equal(n_charged, RACE_THREADS - RACE_SEATS);
	store_close(shared);
}

/*
 * Many writers at once, some rolling back: a rollback must undo only its
 * own transaction (a backend that shares a commit among writers must not
 * lose or keep the wrong ones), every commit must stay.
 */
#define MIX_ITERATIONS 24

struct mixer {
	struct store *st;
	pthread_barrier_t *start;
	int index;
	int n_committed;
	int final_type;
	int failure; /* 0, or the store result that stopped the thread */
};

static void *mix_one(void *arg)
{
	struct mixer *m = arg;
	struct domain_key key;
	struct domain_snapshot snap;
	struct domain_change c;

	memset(&key, 0, sizeof(key));
	snprintf(key.customer, sizeof(key.customer), "%s", T1);
	snprintf(key.user, sizeof(key.user), "r%d", m->index);
	snprintf(key.device, sizeof(key.device), "rd%d", m->index);
	pthread_barrier_wait(m->start);
	for (int k = 0; k < MIX_ITERATIONS && !m->failure; k++) {
		bool is_kept = (k + m->index) % 3 != 2;
		int rc = STORE_RETRY;

		for (int attempt = 0;
		     rc == STORE_RETRY && attempt < RACE_MAX_ATTEMPTS;
		     attempt++) {
			struct store_tx *tx = NULL;

			rc = store_begin(m->st, T1, false, &tx);
			if (rc != STORE_OK)
				continue;
			rc = store_load(tx, &key, &snap);
			if (rc == STORE_OK) {
				c = change(key.user, key.device,
					   snap.device_type,
					   snap.device_type ? DAS_CLIENT_NONE
							    : DAS_CLIENT_CRM,
					   false);
				rc = store_apply(tx, T1, &c, 1, &actor_tester);
			}
			if (rc == STORE_OK && is_kept) {
				rc = store_commit(tx);
			} else {
				store_rollback(tx);
			}
		}
		if (rc != STORE_OK) {
			m->failure = rc;
		} else if (is_kept) {
			m->n_committed++;
			m->final_type = c.to_type;
		}
	}
	return NULL;
}

static void test_concurrent_commits_and_rollbacks(void **state)
{
	struct suite_state *s = *state;
	struct store *shared = open_spec(s->spec, 4);
	struct mixer mixers[RACE_THREADS];
	pthread_t threads[RACE_THREADS];
	pthread_barrier_t start;
	struct store_ledger_row page[LEDGER_MAX];
	int per_user[RACE_THREADS] = {0};
	int64_t after = 0;
	size_t n = 0;

	put_customer(shared, T1, NULL, "Mix", UNLIMITED);
	for (int i = 0; i < RACE_THREADS; i++) {
		char user[16], device[16];

		snprintf(user, sizeof(user), "r%d", i);
		snprintf(device, sizeof(device), "rd%d", i);
		put_user(shared, T1, user, BOTH_ROLES);
		put_device(shared, T1, device, user);
	}

	assert_int_equal(pthread_barrier_init(&start, NULL, RACE_THREADS), 0);
	for (int i = 0; i < RACE_THREADS; i++) {
		mixers[i] = (struct mixer){
			.st = shared, .start = &start, .index = i};
		assert_int_equal(pthread_create(&threads[i], NULL, mix_one,
						&mixers[i]),
				 0);
	}
	for (int i = 0; i < RACE_THREADS; i++)
		pthread_join(threads[i], NULL);
	pthread_barrier_destroy(&start);

	do {
		assert_int_equal(store_ledger_read(shared, T1, after, page,
						   LEDGER_MAX, &n),
				 STORE_OK);
		for (size_t i = 0; i < n; i++) {
			int index = -1;

			assert_int_equal(sscanf(page[i].user, "r%d", &index),
					 1);
			assert_true(index >= 0 && index < RACE_THREADS);
			per_user[index]++;
			after = page[i].id;
		}
	} while (n > 0);

	for (int i = 0; i < RACE_THREADS; i++) {
		struct domain_snapshot snap;
		char user[16], device[16];

		assert_int_equal(mixers[i].failure, 0);
		assert_int_equal(per_user[i], mixers[i].n_committed);
		snprintf(user, sizeof(user), "r%d", i);
		snprintf(device, sizeof(device), "rd%d", i);
		load(shared, T1, user, device, &snap);
		assert_int_equal(snap.device_type, mixers[i].final_type);
	}
	store_close(shared);
}

/* ---- the ledger read by pages, the seats, retention ---- */

static void apply_as(struct store *st, const char *tenant, const char *user,
		     const char *device, int from, int to, bool is_charged,
		     int64_t at, const char *request_id)
{
	struct domain_change c = change(user, device, from, to, is_charged);
	struct store_actor actor = {"auditor", {at, 500}, request_id};
	struct store_tx *tx = begin_write(st, tenant);

	assert_int_equal(store_apply(tx, tenant, &c, 1, &actor), STORE_OK);
	commit_ok(tx);
}

/* One page through a read transaction; returns the row count. */
static size_t page(struct store *st, const struct store_ledger_query *q,
		   struct store_ledger_row *rows, size_t max)
{
	struct store_tx *tx = NULL;
	size_t n = 99;

	assert_int_equal(store_begin(st, q->customer, true, &tx), STORE_OK);
	assert_int_equal(store_ledger_page(tx, q, rows, max, &n), STORE_OK);
	commit_ok(tx);
	return n;
}

static int64_t last_id(struct store *st, const char *tenant)
{
	struct store_tx *tx = NULL;
	int64_t id = -1;

	assert_int_equal(store_begin(st, tenant, true, &tx), STORE_OK);
	assert_int_equal(store_ledger_last_id(tx, tenant, &id), STORE_OK);
	commit_ok(tx);
	return id;
}

static struct store_ledger_query query_all(const char *tenant, int64_t bound)
{
	struct store_ledger_query q;

	memset(&q, 0, sizeof(q));
	snprintf(q.customer, sizeof(q.customer), "%s", tenant);
	q.bound_id = bound;
	return q;
}

static void assert_devices(const struct store_ledger_row *rows, size_t n,
			   const char *const *devices, size_t want)
{
	assert_int_equal(n, want);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(rows[i].device, devices[i]);
}

static void test_ledger_page_filters_and_order(void **state)
{
	struct suite_state *s = *state;
	struct store_ledger_row rows[LEDGER_MAX];
	struct store_ledger_query q;
	int64_t bound;
	size_t n;

	seed(s->st, T1, UNLIMITED);
	seed(s->st, T2, UNLIMITED);
	assert_int_equal(last_id(s->st, T1), 0);
	/* T1: d1 (u1) charged at 1000, d4 (u2) 1010, d1 moves 1020, d2 (u1)
	 * assigned 1030 and unassigned 1040; T2's one row in between. */
	apply_as(s->st, T1, "u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP,
		 true, 1000, "req-1");
	apply_as(s->st, T1, "u2", "d4", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP,
		 false, 1010, "req-2");
	apply_as(s->st, T2, "u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP,
		 false, 1015, NULL);
	apply_as(s->st, T1, "u1", "d1", DAS_CLIENT_DESKTOP, DAS_CLIENT_MOBILE,
		 false, 1020, "");
	apply_as(s->st, T1, "u1", "d2", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP,
		 false, 1030, "req-5");
	apply_as(s->st, T1, "u1", "d2", DAS_CLIENT_DESKTOP, DAS_CLIENT_NONE,
		 false, 1040, "req-6");
	bound = last_id(s->st, T1);
	assert_true(bound > 0);

	/* Newest first by default; every field read back. */
	q = query_all(T1, bound);
	n = page(s->st, &q, rows, LEDGER_MAX);
	assert_devices(rows, n,
		       (const char *const[]){"d2", "d2", "d1", "d4", "d1"}, 5);
	for (size_t i = 1; i < n; i++)
		assert_true(rows[i].id < rows[i - 1].id);
	assert_int_equal(rows[0].at.seconds, 1040);
	assert_int_equal(rows[0].at.nanos, 500);
	assert_string_equal(rows[0].request_id, "req-6");
	assert_string_equal(rows[2].request_id, "");
	assert_string_equal(rows[4].request_id, "req-1");
	assert_string_equal(rows[4].actor, "auditor");
	assert_true(rows[4].is_charged);
	assert_int_equal(rows[2].from_type, DAS_CLIENT_DESKTOP);
	assert_int_equal(rows[2].to_type, DAS_CLIENT_MOBILE);

	/* Oldest first; the keyset continues strictly after after_id. */
	q.is_oldest_first = true;
	n = page(s->st, &q, rows, 2);
	assert_devices(rows, n, (const char *const[]){"d1", "d4"}, 2);
	q.after_id = rows[1].id;
	n = page(s->st, &q, rows, LEDGER_MAX);
	assert_devices(rows, n, (const char *const[]){"d1", "d2", "d2"}, 3);
	q.is_oldest_first = false;
	q.after_id = rows[1].id; /* newest first: strictly older than d2@1030 */
	n = page(s->st, &q, rows, LEDGER_MAX);
	assert_devices(rows, n, (const char *const[]){"d1", "d4", "d1"}, 3);

	/* Filters, one at a time and together. */
	q = query_all(T1, bound);
	snprintf(q.user, sizeof(q.user), "u2");
	n = page(s->st, &q, rows, LEDGER_MAX);
	assert_devices(rows, n, (const char *const[]){"d4"}, 1);
	q = query_all(T1, bound);
	snprintf(q.device, sizeof(q.device), "d2");
	n = page(s->st, &q, rows, LEDGER_MAX);
	assert_devices(rows, n, (const char *const[]){"d2", "d2"}, 2);
	q = query_all(T1, bound);
	q.is_only_charged = true;
	n = page(s->st, &q, rows, LEDGER_MAX);
	assert_devices(rows, n, (const char *const[]){"d1"}, 1);
	assert_int_equal(rows[0].at.seconds, 1000);
	q = query_all(T1, bound);
	q.has_since = true;
	q.since = (struct das_time){1020, 500}; /* at or after: inclusive */
	n = page(s->st, &q, rows, LEDGER_MAX);
	assert_devices(rows, n, (const char *const[]){"d2", "d2", "d1"}, 3);
	q.since = (struct das_time){1020, 501};
	n = page(s->st, &q, rows, LEDGER_MAX);
	assert_int_equal(n, 2);
	q = query_all(T1, bound);
	q.has_until = true;
	q.until = (struct das_time){1020, 500}; /* before: exclusive */
	n = page(s->st, &q, rows, LEDGER_MAX);
	assert_devices(rows, n, (const char *const[]){"d4", "d1"}, 2);
	q.has_since = true;
	q.since = (struct das_time){1010, 0};
	snprintf(q.user, sizeof(q.user), "u2");
	n = page(s->st, &q, rows, LEDGER_MAX);
	assert_devices(rows, n, (const char *const[]){"d4"}, 1);

	/* The bound hides what came later; another tenant sees its own. */
	apply_as(s->st, T1, "u1", "d3", DAS_CLIENT_NONE, DAS_CLIENT_CRM, false,
		 1050, NULL);
	q = query_all(T1, bound);
	assert_int_equal(page(s->st, &q, rows, LEDGER_MAX), 5);
	q = query_all(T1, last_id(s->st, T1));
	assert_int_equal(page(s->st, &q, rows, LEDGER_MAX), 6);
	q = query_all(T2, last_id(s->st, T2));
	n = page(s->st, &q, rows, LEDGER_MAX);
	assert_devices(rows, n, (const char *const[]){"d1"}, 1);
	assert_string_equal(rows[0].request_id, "");
	q = query_all(ACCOUNT_A, INT64_MAX);
	assert_int_equal(page(s->st, &q, rows, LEDGER_MAX), 0);
	assert_int_equal(page(s->st, &q, rows, 0), 0);
}

/* A request id is kept up to 128 bytes; customer deletes stamp theirs. */
static void test_ledger_request_id_kept(void **state)
{
	struct suite_state *s = *state;
	struct store_ledger_row rows[LEDGER_MAX];
	char long_id[300];
	struct store_actor actor = {"admin", {2000, 0}, "req-delete"};
	struct store_tx *tx;
	bool is_changed = false;
	uint32_t dropped = 0;

	memset(long_id, 'x', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	seed(s->st, T1, UNLIMITED);
	apply_as(s->st, T1, "u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP,
		 false, 1000, long_id);
	tx = begin_write(s->st, T1);
	assert_int_equal(store_customer_delete(tx, T1, &actor, &is_changed,
					       &dropped),
			 STORE_OK);
	commit_ok(tx);
	assert_int_equal(dropped, 1);
	assert_int_equal(ledger(s->st, T1, rows), 2);
	assert_int_equal(strlen(rows[0].request_id), 128);
	assert_string_equal(rows[1].request_id, "req-delete");
}

static int64_t seats_charged(struct store *st, const char *tenant)
{
	struct store_tx *tx = NULL;
	int64_t n = -1;

	assert_int_equal(store_begin(st, tenant, true, &tx), STORE_OK);
	assert_int_equal(store_seats_charged(tx, tenant, &n), STORE_OK);
	commit_ok(tx);
	return n;
}

/* A seat taken with charges stays charged until the user's last
 * assignment goes; moves and second devices change nothing. */
static void test_seats_charged(void **state)
{
	struct suite_state *s = *state;

	seed(s->st, T1, 1);
	seed(s->st, T2, 1);
	assert_int_equal(seats_charged(s->st, T1), 0);
	apply_as(s->st, T1, "u2", "d4", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP,
		 false, 1000, NULL);
	apply_as(s->st, T1, "u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP,
		 true, 1001, NULL);
	apply_as(s->st, T2, "u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP,
		 true, 1001, NULL);
	assert_int_equal(seats_charged(s->st, T1), 1);
	apply_as(s->st, T1, "u1", "d2", DAS_CLIENT_NONE, DAS_CLIENT_MOBILE,
		 false, 1002, NULL);
	apply_as(s->st, T1, "u1", "d1", DAS_CLIENT_DESKTOP, DAS_CLIENT_CRM,
		 false, 1003, NULL);
	apply_as(s->st, T1, "u1", "d1", DAS_CLIENT_CRM, DAS_CLIENT_NONE, false,
		 1004, NULL);
	assert_int_equal(seats_charged(s->st, T1), 1); /* d2 still held */
	apply_as(s->st, T1, "u1", "d2", DAS_CLIENT_MOBILE, DAS_CLIENT_NONE,
		 false, 1005, NULL);
	assert_int_equal(seats_charged(s->st, T1), 0);
	apply_as(s->st, T1, "u1", "d2", DAS_CLIENT_NONE, DAS_CLIENT_MOBILE,
		 false, 1006, NULL);
	assert_int_equal(seats_charged(s->st, T1), 0); /* a free seat now */
	assert_int_equal(seats_charged(s->st, T2), 1);

	/* A replace (release then assign in one apply) keeps the charge. */
	{
		struct domain_change replace[2] = {
			change("u1", "d1", DAS_CLIENT_DESKTOP, DAS_CLIENT_NONE,
			       false),
			change("u1", "d3", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP,
			       false),
		};

		apply_ok(s->st, T2, replace, 2);
	}
	assert_int_equal(seats_charged(s->st, T2), 1);
}

static void test_ledger_prune_in_batches(void **state)
{
	struct suite_state *s = *state;
	struct store_ledger_row rows[LEDGER_MAX];
	struct store_tx *tx;
	size_t n = 99, total = 0;

	seed(s->st, T1, UNLIMITED);
	for (int i = 0; i < 5; i++) {
		apply_as(s->st, T1, "u1", "d1", DAS_CLIENT_NONE,
			 DAS_CLIENT_DESKTOP, false, 1000 + i, NULL);
		apply_as(s->st, T1, "u1", "d1", DAS_CLIENT_DESKTOP,
			 DAS_CLIENT_NONE, false, 3000 + i, NULL);
	}
	/* Read-only transactions do not prune. */
	assert_int_equal(store_begin(s->st, T1, true, &tx), STORE_OK);
	assert_int_not_equal(store_ledger_prune(tx, 2000, 10, &n), STORE_OK);
	store_rollback(tx);
	for (int round = 0; round < 10; round++) {
		tx = begin_write(s->st, "");
		assert_int_equal(store_ledger_prune(tx, 2000, 2, &n), STORE_OK);
		commit_ok(tx);
		assert_true(n <= 2);
		total += n;
		if (n < 2)
			break;
	}
	assert_int_equal(total, 5);
	assert_int_equal(ledger(s->st, T1, rows), 5);
	for (size_t i = 0; i < 5; i++)
		assert_true(rows[i].at.seconds >= 3000);
	/* The use case: everything older than 1 day before 86400 + 3003. */
	/* The use case: everything older than 1 day before 86400 + 3003,
	 * two rows a batch; one batch allowed says more is left. */
	assert_int_equal(ops_ledger_prune(s->st, 1,
					  (struct das_time){86400 + 3003, 0},
					  2, 1, &total),
			 1);
	assert_int_equal(total, 2);
	assert_int_equal(ops_ledger_prune(s->st, 1,
					  (struct das_time){86400 + 3003, 0},
					  2, 10, &total),
			 0);
	assert_int_equal(total, 1);
	assert_int_equal(ledger(s->st, T1, rows), 2);
	assert_int_equal(ops_ledger_prune(s->st, 0,
					  (struct das_time){1 << 30, 0}, 2, 10,
					  &total),
			 0); /* 0 days: keep forever */
	assert_int_equal(total, 0);
	assert_int_equal(ledger(s->st, T1, rows), 2);
}

/* ---- the use case: signed pages under concurrent writes ---- */

static const struct domain_principal reader = {
	.sub = "reader",
	.is_all_tenants = true,
	.scopes = DOMAIN_SCOPE_LEDGER,
};

static struct ops_text txt(const char *s)
{
	return (struct ops_text){s, strlen(s)};
}

struct churn {
	struct store *st;
	pthread_t thread;
	atomic_int n_written;
	atomic_bool is_stopping;
	bool is_on; /* u2's d4 is assigned */
};

/* Toggles u2's d4 on and off: one ledger row per round. */
static void *churn_main(void *arg)
{
	struct churn *c = arg;

	while (!atomic_load(&c->is_stopping)) {
		struct domain_change ch =
			change("u2", "d4",
			       c->is_on ? DAS_CLIENT_DESKTOP : DAS_CLIENT_NONE,
			       c->is_on ? DAS_CLIENT_NONE : DAS_CLIENT_DESKTOP,
			       false);
		struct store_tx *tx = NULL;
		int rc = store_begin(c->st, T1, false, &tx);

		if (rc == STORE_OK) {
			rc = store_apply(tx, T1, &ch, 1, &actor_tester);
			if (rc == STORE_OK)
				rc = store_commit(tx);
			else
				store_rollback(tx);
		}
		if (rc == STORE_OK) {
			c->is_on = !c->is_on;
			atomic_fetch_add(&c->n_written, 1);
		}
	}
	return NULL;
}

static void churn_start(struct churn *c)
{
	atomic_store(&c->is_stopping, false);
	assert_int_equal(pthread_create(&c->thread, NULL, churn_main, c), 0);
}

static void churn_stop(struct churn *c)
{
	atomic_store(&c->is_stopping, true);
	pthread_join(c->thread, NULL);
}

static void wait_for_writes(struct churn *c, int after)
{
	struct timespec pause = {0, 1000 * 1000};

	for (int i = 0; i < 20000 && atomic_load(&c->n_written) < after; i++)
		nanosleep(&pause, NULL);
	assert_true(atomic_load(&c->n_written) >= after);
}

/*
 * Pages through T1 three entries at a time. The writer is stopped when
 * this starts (so want[] is exactly the ledger of the first page's
 * moment); it runs from the first page on, and every next page waits for
 * at least two more committed writes.
 */
static void page_through(struct store *st, struct churn *c, int order,
			 const int64_t *want, size_t n_want)
{
	struct ops_ledger_page *pg = malloc(sizeof(*pg));
	struct ops_ledger_query q;
	struct ops_result r;
	char token[OPS_PAGE_TOKEN_SIZE] = "";
	size_t got = 0;
	int n_pages = 0;
	int64_t *seen = calloc(n_want + 1, sizeof(*seen));

	assert_non_null(pg);
	assert_non_null(seen);
	memset(&q, 0, sizeof(q));
	q.tenant = txt(T1);
	q.page_size = 3;
	q.order = order;
	for (int i = 0; i < 1000; i++) {
		q.page_token = txt(token);
		assert_int_equal(ops_list_ledger(st, &reader, &q, &r, pg),
				 DAS_OK);
		n_pages++;
		if (i == 0)
			churn_start(c);
		assert_true(pg->n <= 3);
		for (size_t k = 0; k < pg->n; k++) {
			assert_true(got < n_want);
			seen[got++] = pg->rows[k].id;
		}
		if (!pg->next_token[0])
			break;
		snprintf(token, sizeof(token), "%s", pg->next_token);
		wait_for_writes(c, atomic_load(&c->n_written) + 2);
	}
	churn_stop(c);
	/* Exactly the entries of the first page's moment, once each, in
	 * order, while writes went on between every two pages. */
	assert_int_equal(got, n_want);
	assert_true(n_pages >= 4);
	for (size_t k = 0; k < n_want; k++)
		assert_int_equal(seen[k], order == OPS_LEDGER_OLDEST_FIRST
						  ? want[k]
						  : want[n_want - 1 - k]);
	free(seen);
	free(pg);
}

/* Rows the ledger may reach here: the writer runs as fast as it can while
 * the pages go, and a page on a connection opened for it (its session
 * set up, its statements prepared) lets many writes through. */
#define PAGES_LEDGER_MAX 1024

static void test_ops_pages_under_concurrent_writes(void **state)
{
	struct suite_state *s = *state;
	static struct store_ledger_row rows[PAGES_LEDGER_MAX];
	static int64_t want[PAGES_LEDGER_MAX];
	struct churn c = {.st = s->st};
	size_t n_want;

	seed(s->st, T1, UNLIMITED);
	for (int i = 0; i < 10; i++)
		apply_as(s->st, T1, "u1", "d1",
			 i % 2 ? DAS_CLIENT_DESKTOP : DAS_CLIENT_NONE,
			 i % 2 ? DAS_CLIENT_NONE : DAS_CLIENT_DESKTOP, false,
			 1000 + i, NULL);
	atomic_init(&c.n_written, 0);
	atomic_init(&c.is_stopping, false);
	for (int order = OPS_LEDGER_NEWEST_FIRST;
	     order <= OPS_LEDGER_OLDEST_FIRST; order++) {
		assert_int_equal(store_ledger_read(s->st, T1, 0, rows,
						   PAGES_LEDGER_MAX, &n_want),
				 STORE_OK);
		assert_true(n_want < PAGES_LEDGER_MAX);
		for (size_t i = 0; i < n_want; i++)
			want[i] = rows[i].id;
		page_through(s->st, &c, order, want, n_want);
	}
	/* The writes really happened between the pages. */
	assert_true(atomic_load(&c.n_written) >= 6);
}

/* Tokens: refused when altered, made for another query, or signed with
 * another database's key; accepted by every handle on the same one. */
static void test_ops_page_tokens(void **state)
{
	struct suite_state *s = *state;
	struct ops_ledger_page *pg = malloc(sizeof(*pg));
	struct ops_ledger_query q;
	struct ops_result r;
	char token[OPS_PAGE_TOKEN_SIZE];
	struct store *other = open_spec(s->spec, 2);
	struct domain_principal assigner = reader;

	assert_non_null(pg);
	seed(s->st, T1, UNLIMITED);
	for (int i = 0; i < 4; i++)
		apply_as(s->st, T1, "u1", "d1",
			 i % 2 ? DAS_CLIENT_DESKTOP : DAS_CLIENT_NONE,
			 i % 2 ? DAS_CLIENT_NONE : DAS_CLIENT_DESKTOP, false,
			 1000 + i, NULL);
	memset(&q, 0, sizeof(q));
	q.tenant = txt(T1);
	q.page_size = 2;
	assert_int_equal(ops_list_ledger(s->st, &reader, &q, &r, pg), DAS_OK);
	assert_int_equal(pg->n, 2);
	assert_int_equal(strlen(pg->next_token), OPS_PAGE_TOKEN_SIZE - 1);
	snprintf(token, sizeof(token), "%s", pg->next_token);

	/* Another handle on the same database takes it. */
	q.page_token = txt(token);
	assert_int_equal(ops_list_ledger(other, &reader, &q, &r, pg), DAS_OK);
	assert_int_equal(pg->n, 2);
	assert_string_equal(pg->next_token, "");
	store_close(other);

	/* Each character changed: refused, naming the parameter. */
	for (size_t i = 0; i < strlen(token); i++) {
		char bad[OPS_PAGE_TOKEN_SIZE];

		snprintf(bad, sizeof(bad), "%s", token);
		bad[i] = bad[i] == 'A' ? 'B' : 'A';
		q.page_token = txt(bad);
		assert_int_equal(ops_list_ledger(s->st, &reader, &q, &r, pg),
				 DAS_INVALID_ARGUMENT);
		assert_non_null(strstr(r.detail, "pageToken"));
	}
	/* Another query, another order. */
	q.page_token = txt(token);
	q.user = txt("u1");
	assert_int_equal(ops_list_ledger(s->st, &reader, &q, &r, pg),
			 DAS_INVALID_ARGUMENT);
	q.user = txt("");
	q.order = OPS_LEDGER_OLDEST_FIRST;
	assert_int_equal(ops_list_ledger(s->st, &reader, &q, &r, pg),
			 DAS_INVALID_ARGUMENT);
	q.order = OPS_LEDGER_DEFAULT_ORDER;
	/* Page size and order bounds; the check order (403 before 400). */
	q.page_token = txt("");
	q.page_size = 501;
	assert_int_equal(ops_list_ledger(s->st, &reader, &q, &r, pg),
			 DAS_INVALID_ARGUMENT);
	assert_non_null(strstr(r.detail, "pageSize"));
	assigner.scopes = DOMAIN_SCOPE_ASSIGN | DOMAIN_SCOPE_DIRECTORY;
	assert_int_equal(ops_list_ledger(s->st, &assigner, &q, &r, pg),
			 DAS_FORBIDDEN);
	q.page_size = 0;
	q.order = 3;
	assert_int_equal(ops_list_ledger(s->st, &reader, &q, &r, pg),
			 DAS_INVALID_ARGUMENT);
	q.order = 0;
	q.tenant = txt(T2); /* no such customer: row 6 */
	assert_int_equal(ops_list_ledger(s->st, &reader, &q, &r, pg),
			 DAS_CUSTOMER_NOT_FOUND);
	q.tenant = txt(T1);
	q.account = txt(ACCOUNT_B); /* not its account */
	assert_int_equal(ops_list_ledger(s->st, &reader, &q, &r, pg),
			 DAS_CUSTOMER_NOT_FOUND);
	q.account = txt(ACCOUNT_A);
	assert_int_equal(ops_list_ledger(s->st, &reader, &q, &r, pg), DAS_OK);
	assert_int_equal(pg->n, 4);
	free(pg);
}

/* Rows with the longest actor and request id: a page of 500 stops early
 * (under one 64 KiB message) and the next page carries on exactly. */
static void test_ops_page_stops_before_message_limit(void **state)
{
	struct suite_state *s = *state;
	struct ops_ledger_page *pg = malloc(sizeof(*pg));
	struct ops_ledger_query q;
	struct ops_result r;
	char sub[DOMAIN_SUB_SIZE], rid[STORE_REQUEST_ID_SIZE];
	char token[OPS_PAGE_TOKEN_SIZE];
	struct store_actor actor = {sub, {1000, 0}, rid};
	struct store_tx *tx;
	size_t first, total = 0, bytes = 0;
	int64_t last = INT64_MAX;

	assert_non_null(pg);
	memset(sub, 's', sizeof(sub) - 1);
	sub[sizeof(sub) - 1] = '\0';
	memset(rid, 'r', sizeof(rid) - 1);
	rid[sizeof(rid) - 1] = '\0';
	seed(s->st, T1, UNLIMITED);
	tx = begin_write(s->st, T1);
	for (int i = 0; i < 300; i++) {
		struct domain_change c =
			change("u1", "d1",
			       i % 2 ? DAS_CLIENT_DESKTOP : DAS_CLIENT_NONE,
			       i % 2 ? DAS_CLIENT_NONE : DAS_CLIENT_DESKTOP,
			       false);
		assert_int_equal(store_apply(tx, T1, &c, 1, &actor), STORE_OK);
	}
	commit_ok(tx);
	memset(&q, 0, sizeof(q));
	q.tenant = txt(T1);
	q.page_size = 500;
	assert_int_equal(ops_list_ledger(s->st, &reader, &q, &r, pg), DAS_OK);
	first = pg->n;
	assert_true(first > 0 && first < 300);
	assert_true(pg->next_token[0]);
	for (size_t i = 0; i < pg->n; i++)
		bytes += 64 + strlen(pg->rows[i].actor) +
			 strlen(pg->rows[i].request_id) +
			 strlen(pg->rows[i].user) + strlen(pg->rows[i].device);
	assert_true(bytes <= OPS_LEDGER_PAGE_BYTES);
	assert_int_equal(strlen(pg->rows[0].actor), DOMAIN_SUB_SIZE - 1);
	for (int page = 0; page < 10; page++) {
		for (size_t i = 0; i < pg->n; i++) {
			assert_true(pg->rows[i].id < last);
			last = pg->rows[i].id;
		}
		total += pg->n;
		if (!pg->next_token[0])
			break;
		snprintf(token, sizeof(token), "%s", pg->next_token);
		q.page_token = txt(token);
		assert_int_equal(ops_list_ledger(s->st, &reader, &q, &r, pg),
				 DAS_OK);
	}
	assert_int_equal(total, 300);
	free(pg);
}

/* GetSeatUsage's use case on the store: included, used, charged. */
static void test_seat_usage_use_case(void **state)
{
	struct suite_state *s = *state;
	struct ops_seat_usage u;
	struct ops_result r;

	seed(s->st, T1, 2);
	apply_as(s->st, T1, "u1", "d1", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP,
		 false, 1000, NULL);
	apply_as(s->st, T1, "u2", "d4", DAS_CLIENT_NONE, DAS_CLIENT_DESKTOP,
		 true, 1001, NULL);
	assert_int_equal(ops_seat_usage(s->st, &reader, txt(T1), txt(""), &r,
					&u),
			 DAS_OK);
	assert_true(u.is_seat_limited);
	assert_int_equal(u.included, 2);
	assert_int_equal(u.used, 2);
	assert_int_equal(u.charged, 1);
	put_customer(s->st, T2, NULL, "Free", UNLIMITED);
	assert_int_equal(ops_seat_usage(s->st, &reader, txt(T2), txt(""), &r,
					&u),
			 DAS_OK);
	assert_false(u.is_seat_limited);
	assert_int_equal(u.used, 0);
	assert_int_equal(ops_seat_usage(s->st, &reader, txt("nope"), txt(""),
					&r, &u),
			 DAS_INVALID_TENANT_ID);
}

/* ---- the stored seat count, through the use cases ---- */

#define SEQ_USERS 6
#define SEQ_DEVICES 10
#define SEQ_STEPS 400

static const struct domain_principal admin_who = {
	.sub = "admin_who",
	.is_all_tenants = true,
	.scopes = DOMAIN_SCOPE_ASSIGN | DOMAIN_SCOPE_DIRECTORY,
};

/* A small deterministic generator (xorshift), so a failure can be rerun. */
static uint32_t seq_next(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

static enum das_status seq_device_op(struct store *st, enum domain_op op,
				     const char *user, const char *device,
				     int type, bool is_charge_accepted,
				     struct ops_result *r)
{
	struct domain_request req;

	memset(&req, 0, sizeof(req));
	req.op = op;
	req.customer = T1;
	req.customer_len = strlen(T1);
	req.account = "";
	req.user = user;
	req.user_len = strlen(user);
	req.device = device;
	req.device_len = strlen(device);
	req.client_type = type;
	req.is_charge_accepted = is_charge_accepted;
	return ops_device(st, &admin_who, &req, r);
}

/* Users of T1 holding at least one assignment, counted by listing each. */
static int64_t seats_counted(struct store *st)
{
	int64_t n = 0;

	for (int u = 0; u < SEQ_USERS; u++) {
		struct ops_result r;
		char user[8];

		snprintf(user, sizeof(user), "s%d", u);
		enum das_status status = seq_device_op(st, DOMAIN_OP_LIST, user,
						       "", 0, false, &r);
		if (status == DAS_OK)
			n += r.n_devices > 0;
		else /* user or customer gone: no seat */
			assert_true(status == DAS_USER_NOT_FOUND ||
				    status == DAS_CUSTOMER_NOT_FOUND);
	}
	return n;
}

static void seq_directory(struct store *st)
{
	struct ops_customer_input c = {.tenant = txt(T1),
				       .account = txt(""),
				       .name = txt("Seats"),
				       .is_seat_limited = true,
				       .included_seats = 3};
	struct ops_text roles[] = {txt(DOMAIN_ROLE_UC),
				   txt(DOMAIN_ROLE_UC_SOFTPHONE)};
	struct ops_result r;

	assert_int_equal(ops_upsert_customer(st, &admin_who, &c, &r), DAS_OK);
	for (int u = 0; u < SEQ_USERS; u++) {
		char user[8];

		snprintf(user, sizeof(user), "s%d", u);
		assert_int_equal(ops_upsert_user(st, &admin_who, txt(T1),
						 txt(user), roles, 2, &r),
				 DAS_OK);
	}
	for (int d = 0; d < SEQ_DEVICES; d++) {
		char user[8], device[8];

		snprintf(user, sizeof(user), "s%d", d % SEQ_USERS);
		snprintf(device, sizeof(device), "sd%d", d);
		assert_int_equal(ops_upsert_device(st, &admin_who, txt(T1),
						   txt(device), txt(user), &r),
				 DAS_OK);
	}
}

/*
 * Random sequences of every operation that can take or free a seat
 * (assign, move, replace, unassign, with and without charges; a user, a
 * device or the whole customer deleted and put back; a device given to
 * another owner): after each step the seats in use the store loads equal
 * the users counted with at least one assignment.
 */
static void test_stored_seats_follow_every_change(void **state)
{
	struct suite_state *s = *state;
	uint32_t seed = 0x5eed1234u;
	unsigned n_kinds[8] = {0};

	for (int run = 0; run < 3; run++) {
		uint32_t x = seed + (uint32_t)run * 7919u;

		seq_directory(s->st);
		for (int step = 0; step < SEQ_STEPS; step++) {
			struct domain_snapshot snap;
			struct ops_result r;
			char user[8], device[8], owner[8];
			unsigned kind = seq_next(&x) % 100;
			int u = (int)(seq_next(&x) % SEQ_USERS);
			int d = (int)(seq_next(&x) % SEQ_DEVICES);
			int type = 1 + (int)(seq_next(&x) % 4);

			snprintf(user, sizeof(user), "s%d", u);
			snprintf(device, sizeof(device), "sd%d", d);
			snprintf(owner, sizeof(owner), "s%d",
				 (int)(seq_next(&x) % SEQ_USERS));
			/* Assign: new, move, replace or repeat. */
			if (kind < 55) {
				seq_device_op(s->st, DOMAIN_OP_ASSIGN, owner,
					      device, type, kind % 2, &r);
				n_kinds[0]++;
			} else if (kind < 80) {
				seq_device_op(s->st, DOMAIN_OP_UNASSIGN, owner,
					      device, 0, false, &r);
				n_kinds[1]++;
			} else if (kind < 86) { /* another owner */
				ops_upsert_device(s->st, &admin_who, txt(T1),
						  txt(device), txt(owner), &r);
				n_kinds[2]++;
			} else if (kind < 91) {
				ops_delete_device(s->st, &admin_who, txt(T1),
						  txt(device), &r);
				n_kinds[3]++;
			} else if (kind < 96) {
				ops_delete_user(s->st, &admin_who, txt(T1),
						txt(user), &r);
				n_kinds[4]++;
			} else if (kind < 98) {
				seq_directory(s->st); /* users, devices back */
				n_kinds[5]++;
			} else {
				assert_int_equal(ops_delete_customer(
							 s->st, &admin_who,
							 txt(T1), &r),
						 DAS_OK);
				seq_directory(s->st);
				n_kinds[6]++;
			}
			load(s->st, T1, "", "", &snap);
			if (snap.seats_in_use != seats_counted(s->st))
				print_error("run %d step %d (kind %u): stored "
					    "%lld\n",
					    run, step, kind,
					    (long long)snap.seats_in_use);
			assert_int_equal(snap.seats_in_use,
					 seats_counted(s->st));
		}
	}
	printf("stored seats: %u assigns, %u unassigns, %u owner changes, "
	       "%u device and %u user deletes, %u directory puts, %u "
	       "customer deletes\n",
	       n_kinds[0], n_kinds[1], n_kinds[2], n_kinds[3], n_kinds[4],
	       n_kinds[5], n_kinds[6]);
	for (int k = 0; k < 7; k++)
		assert_true(n_kinds[k] > 0);
}

/*
 * The seat race again, through the use case that reads first: every racer
 * decides in a read-only transaction (all see free seats), then decides
 * again under the write lock; exactly RACE_SEATS may win, the others are
 * told CHARGES_NOT_ACCEPTED, and a repeat of a winner is still a success
 * that changes nothing.
 */
struct ops_racer {
	struct store *st;
	pthread_barrier_t *start;
	int index;
	enum das_status outcome;
};

static void *ops_race_one(void *arg)
{
	struct ops_racer *r = arg;
	struct ops_result res;
	char user[16], device[16];

	snprintf(user, sizeof(user), "r%d", r->index);
	snprintf(device, sizeof(device), "rd%d", r->index);
	pthread_barrier_wait(r->start);
	r->outcome = seq_device_op(r->st, DOMAIN_OP_ASSIGN, user, device,
				   DAS_CLIENT_DESKTOP, false, &res);
	return NULL;
}

static void test_read_first_seat_race(void **state)
{
	struct suite_state *s = *state;
	struct store *shared = open_spec(s->spec, 4);
	struct ops_racer racers[RACE_THREADS];
	pthread_t threads[RACE_THREADS];
	pthread_barrier_t start;
	struct domain_snapshot snap;
	struct ops_result r;
	int n_won = 0, winner = -1;

	put_customer(shared, T1, NULL, "Race", RACE_SEATS);
	for (int i = 0; i < RACE_THREADS; i++) {
		char user[16], device[16];

		snprintf(user, sizeof(user), "r%d", i);
		snprintf(device, sizeof(device), "rd%d", i);
		put_user(shared, T1, user, BOTH_ROLES);
		put_device(shared, T1, device, user);
	}
	assert_int_equal(pthread_barrier_init(&start, NULL, RACE_THREADS), 0);
	for (int i = 0; i < RACE_THREADS; i++) {
		racers[i] = (struct ops_racer){shared, &start, i, DAS_INTERNAL};
		assert_int_equal(pthread_create(&threads[i], NULL, ops_race_one,
						&racers[i]),
				 0);
	}
	for (int i = 0; i < RACE_THREADS; i++)
		pthread_join(threads[i], NULL);
	pthread_barrier_destroy(&start);
	for (int i = 0; i < RACE_THREADS; i++) {
		if (racers[i].outcome == DAS_OK) {
			n_won++;
			winner = i;
		} else {
			assert_int_equal(racers[i].outcome,
					 DAS_CHARGES_NOT_ACCEPTED);
		}
	}
	assert_int_equal(n_won, RACE_SEATS);
	load(shared, T1, "", "", &snap);
	assert_int_equal(snap.seats_in_use, RACE_SEATS);
	assert_int_equal(ledger_count(shared, T1), RACE_SEATS);

	/* A winner's repeat: success, nothing charged, nothing written. */
	char user[16], device[16];
	snprintf(user, sizeof(user), "r%d", winner);
	snprintf(device, sizeof(device), "rd%d", winner);
	assert_int_equal(seq_device_op(shared, DOMAIN_OP_ASSIGN, user, device,
				       DAS_CLIENT_DESKTOP, false, &r),
			 DAS_OK);
	assert_int_equal(r.previous_type, DAS_CLIENT_DESKTOP);
	assert_false(r.is_charged);
	assert_int_equal(ledger_count(shared, T1), RACE_SEATS);
	store_close(shared);
}

int store_suite_run(const char *suite_name, const char *(*fresh_spec)(void))
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_schema_created_and_data_survives_reopen),
		T(test_customer_put_is_changed),
		T(test_user_put_is_changed_and_roles),
		T(test_device_put_is_changed),
		T(test_deletes_is_changed),
		T(test_load_snapshot_fields),
		T(test_apply_move),
		T(test_apply_replace),
		T(test_apply_unassign_and_charged),
		T(test_device_in_two_types_rejected),
		T(test_type_with_two_devices_rejected),
		T(test_stale_and_invalid_changes_rejected),
		T(test_assignment_must_match_owner),
		T(test_directory_keeps_assignments_consistent),
		T(test_rollback_leaves_nothing),
		T(test_customer_delete_cascades),
		T(test_ledger_read_pages),
		T(test_read_only_tx_refuses_writes),
		T(test_every_end_releases_the_connection),
		T(test_probe_healthy_store),
		T(test_concurrent_seat_race),
		T(test_concurrent_commits_and_rollbacks),
		T(test_ledger_page_filters_and_order),
		T(test_ledger_request_id_kept),
		T(test_seats_charged),
		T(test_ledger_prune_in_batches),
		T(test_ops_pages_under_concurrent_writes),
		T(test_ops_page_tokens),
		T(test_seat_usage_use_case),
		T(test_ops_page_stops_before_message_limit),
		T(test_stored_seats_follow_every_change),
		T(test_read_first_seat_race),
#undef T
	};

	suite_fresh_spec = fresh_spec;
	return _cmocka_run_group_tests(suite_name, tests,
				       sizeof(tests) / sizeof(tests[0]), NULL,
				       NULL);
}
