/*
 * The store test suite: every test of the store interface (store.h),
 * written once and run against each backend, the way git runs its whole
 * test suite once per ref backend.
 *
 * A backend's test program (test_store_sqlite.c, test_store_postgres.c)
 * supplies one hook, fresh_spec, and calls store_suite_run from main:
 *
 *	static const char *fresh_spec(void)
 *	{
 *		... make a new empty database ...
 *		return spec; // e.g. "sqlite:/tmp/dir/t7.db",
 *			     // "postgresql://das@127.0.0.1:5433/t7"
 *	}
 *	...
 *	return store_suite_run("store.sqlite", fresh_spec) ? 1 : 0;
 *
 * The hook's contract:
 * - It is called once before each test, from the main thread, and returns
 *   a --store spec naming an empty database (no schema: the test checks
 *   that opening creates it) that no earlier call returned. NULL fails the
 *   test.
 * - The returned string stays valid until the next call (the suite copies
 *   it; at most STORE_SUITE_SPEC_SIZE - 1 bytes).
 * - During a test the suite may open that spec several times, one after
 *   the other or at the same time (reopen after close, a second handle with
 *   a smaller pool, a handle shared by 16 threads).
 * - Whatever fresh_spec creates is the backend program's to remove when it
 *   ends (a temp dir, a throw-away server); the suite closes every handle it
 *   opens, so nothing is held open when store_suite_run returns.
 *
 * What the suite expects of a backend beyond store.h (it is the executable
 * form of these rules):
 * - store_commit ends the transaction on every outcome; after a failed
 *   commit nothing of the transaction is written and the tx must not be
 *   used again. store_rollback undoes only its own transaction, also when
 *   concurrent writers share one commit (the SQLite group commit).
 * - store_begin waits, not fails, when more transactions are open than the
 *   pool has connections; STORE_RETRY is allowed and the tests retry it.
 * - A write that breaks an integrity rule fails with STORE_ERROR, either at
 *   the call or at store_commit (deferred foreign keys), and writes nothing
 *   once rolled back. The rules: a device has at most one assignment; a
 *   user at most one device per client type; an assignment's user exists
 *   and owns the device; so a user or device cannot be deleted, nor a
 *   device's owner changed, while its assignment exists.
 * - store_apply checks each change against the stored state: a change from
 *   NONE inserts (the device must have no assignment), a change from type F
 *   finds the device at F, else STORE_ERROR. A change with from == to or a
 *   type out of 0..4 is STORE_ERROR.
 * - Writes in a read-only transaction are STORE_ERROR.
 * - Ledger ids increase in the order the changes were applied; a
 *   customer_delete ledgers its dropped assignments (to_type NONE, not
 *   charged, the actor given) ordered by user, then client type.
 */
#ifndef DAS_TESTS_STORE_SUITE_H
#define DAS_TESTS_STORE_SUITE_H

#define STORE_SUITE_SPEC_SIZE 512

/*
 * Runs every test as the cmocka group suite_name. Returns the number of
 * failed tests (0 = all passed). Not reentrant: one run at a time.
 */
int store_suite_run(const char *suite_name, const char *(*fresh_spec)(void));

#endif
