/*
 * The store suite against the PostgreSQL backend, one fresh schema per
 * test on a private server (pg_harness), then the tests only PostgreSQL
 * needs: two handles racing for seats the way two replicas do, lock
 * timeouts, a connection killed mid-transaction, a server restart, several
 * handles creating the schema at once, an unreachable database.
 *
 * Without PostgreSQL server binaries this program fails (it does not skip):
 * the backend is part of the product.
 */
#define _GNU_SOURCE /* unshare */
#include <errno.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "service/ops/ops.h"
#include "service/store/postgres/postgres_store.h"
#include "tests/store/pg_harness.h"
#include "tests/store/store_suite.h"

#define TENANT "6f1c2a8e-0d4b-4c1e-9a55-3b7f00c0ffee"

static struct pg_harness harness;
static char base_uri[PG_HARNESS_URI_SIZE]; /* the one test database */
static PGconn *suite_conn;                 /* connected to it */
static unsigned n_schemas;
static char spec[PG_HARNESS_URI_SIZE * 2];

/*
 * A fresh empty schema per test, selected through the URI's search_path:
 * far cheaper than a database per test (each CREATE DATABASE writes the
 * whole template to the WAL), and it checks that the backend keeps to the
 * schema it is given.
 */
static const char *fresh_spec(void)
{
	char sql[64];
	PGresult *res;

	snprintf(sql, sizeof(sql), "CREATE SCHEMA t%u", ++n_schemas);
	res = PQexec(suite_conn, sql);
	if (PQstatus(suite_conn) == CONNECTION_BAD) {
		/* A test restarted the server. */
		PQclear(res);
		PQreset(suite_conn);
		res = PQexec(suite_conn, sql);
	}
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		fprintf(stderr, "fresh schema: %s",
			PQerrorMessage(suite_conn));
		PQclear(res);
		return NULL;
	}
	PQclear(res);
	snprintf(spec, sizeof(spec), "%s?options=-csearch_path%%3Dt%u",
		 base_uri, n_schemas);
	return spec;
}

/* ---- helpers ---- */

static struct store *open_fresh(unsigned pool, unsigned busy_ms)
{
	struct store_options opt = {.pool_size = pool,
				    .busy_timeout_ms = busy_ms};
	struct store *st = NULL;
	char err[512];
	const char *uri = fresh_spec();

	assert_non_null(uri);
	if (store_open(uri, &opt, &st, err, sizeof(err)) != STORE_OK)
		fail_msg("open %s: %s", uri, err);
	return st;
}

static struct store *open_again(unsigned pool, unsigned busy_ms)
{
	struct store_options opt = {.pool_size = pool,
				    .busy_timeout_ms = busy_ms};
	struct store *st = NULL;
	char err[512];

	if (store_open(spec, &opt, &st, err, sizeof(err)) != STORE_OK)
		fail_msg("open %s: %s", spec, err);
	return st;
}

/* A customer with seats, n users u0..u(n-1), each owning device d<i>. */
static void seed(struct store *st, int seats, int n_users)
{
	struct store_customer c;
	struct store_tx *tx;
	bool is_changed;

	memset(&c, 0, sizeof(c));
	snprintf(c.tenant, sizeof(c.tenant), "%s", TENANT);
	snprintf(c.name, sizeof(c.name), "Race Inc");
	c.is_seat_limited = seats >= 0;
	c.included_seats = seats >= 0 ? (uint32_t)seats : 0;
	assert_int_equal(store_begin(st, TENANT, false, &tx), STORE_OK);
	assert_int_equal(store_customer_put(tx, &c, &is_changed), STORE_OK);
	for (int i = 0; i < n_users; i++) {
		char user[16], device[16];

		snprintf(user, sizeof(user), "u%d", i);
		snprintf(device, sizeof(device), "d%d", i);
		assert_int_equal(store_user_put(tx, TENANT, user,
						DOMAIN_ROLE_UC " "
						DOMAIN_ROLE_UC_SOFTPHONE,
						&is_changed),
				 STORE_OK);
		assert_int_equal(store_device_put(tx, TENANT, device, user,
						  &is_changed),
				 STORE_OK);
	}
	assert_int_equal(store_commit(tx), STORE_OK);
}

static struct domain_key key_of(const char *user, const char *device)
{
	struct domain_key k;

	memset(&k, 0, sizeof(k));
	snprintf(k.customer, sizeof(k.customer), "%s", TENANT);
	snprintf(k.user, sizeof(k.user), "%s", user);
	snprintf(k.device, sizeof(k.device), "%s", device);
	return k;
}

static long long query_count(const char *sql)
{
	PGconn *conn = PQconnectdb(spec);
	PGresult *res;
	long long n = -1;

	if (PQstatus(conn) == CONNECTION_OK) {
		res = PQexec(conn, sql);
		if (PQresultStatus(res) == PGRES_TUPLES_OK &&
		    PQntuples(res) == 1)
			sscanf(PQgetvalue(res, 0, 0), "%lld", &n);
		PQclear(res);
	}
	PQfinish(conn);
	return n;
}

/* ---- the seat race, two handles as two replicas ---- */

#define RACE_THREADS 16
#define RACE_SEATS 3

struct racer {
	struct store *st;
	int index;
	int outcome; /* 1 assigned, 0 refused (no seat), -1 store failure */
	int64_t first_seen; /* seats in use read by the first attempt */
	int n_retries;
};

/* Every racer has read the count before any of them writes. */
static pthread_barrier_t race_loaded;

/* One assign with the seat rule, retried on STORE_RETRY like ops.c. */
static void *race_main(void *arg)
{
	struct racer *r = arg;
	char user[16], device[16];
	struct domain_key k;

	snprintf(user, sizeof(user), "u%d", r->index);
	snprintf(device, sizeof(device), "d%d", r->index);
	k = key_of(user, device);
	r->outcome = -1;
	for (int attempt = 0; attempt < 20; attempt++) {
		struct domain_snapshot snap;
		struct store_tx *tx;
		struct domain_change ch;
		struct store_actor actor = {"racer", das_time_now(), NULL};
		int rc = store_begin(r->st, TENANT, false, &tx);

		if (rc == STORE_RETRY)
			continue;
		if (rc != STORE_OK)
			return NULL;
		rc = store_load(tx, &k, &snap);
		if (attempt == 0) {
			r->first_seen = rc == STORE_OK ? snap.seats_in_use : -1;
			pthread_barrier_wait(&race_loaded);
		}
		if (rc == STORE_OK &&
		    snap.seats_in_use >= snap.included_seats) {
			store_rollback(tx);
			r->outcome = 0;
			return NULL;
		}
		memset(&ch, 0, sizeof(ch));
		snprintf(ch.user, sizeof(ch.user), "%s", user);
		snprintf(ch.device, sizeof(ch.device), "%s", device);
		ch.from_type = DAS_CLIENT_NONE;
		ch.to_type = DAS_CLIENT_DESKTOP;
		if (rc == STORE_OK)
			rc = store_apply(tx, TENANT, &ch, 1, &actor);
		if (rc == STORE_OK)
			rc = store_commit(tx);
		else
			store_rollback(tx);
		if (rc == STORE_OK) {
			r->outcome = 1;
			return NULL;
		}
		if (rc != STORE_RETRY)
			return NULL;
		r->n_retries++;
	}
	return NULL;
}

static void test_seat_race_two_handles(void **state)
{
	/* A connection per racer: all hold a transaction at once. */
	struct store *a = open_fresh(RACE_THREADS / 2, 5000);
	struct store *b = open_again(RACE_THREADS / 2, 5000);
	struct racer racers[RACE_THREADS];
	pthread_t threads[RACE_THREADS];
	int assigned = 0, refused = 0, retried = 0;

	seed(a, RACE_SEATS, RACE_THREADS);
	assert_int_equal(pthread_barrier_init(&race_loaded, NULL,
					      RACE_THREADS),
			 0);
	for (int i = 0; i < RACE_THREADS; i++) {
		memset(&racers[i], 0, sizeof(racers[i]));
		racers[i].st = i % 2 ? b : a;
		racers[i].index = i;
		assert_int_equal(pthread_create(&threads[i], NULL, race_main,
						&racers[i]),
				 0);
	}
	for (int i = 0; i < RACE_THREADS; i++) {
		pthread_join(threads[i], NULL);
		assert_int_not_equal(racers[i].outcome, -1);
		assigned += racers[i].outcome == 1;
		refused += racers[i].outcome == 0;
		retried += racers[i].n_retries > 0;
		/* They overlapped: each decided on an empty customer,
		 * holding its own user's locks while the others did. */
		assert_int_equal(racers[i].first_seen, 0);
	}
	pthread_barrier_destroy(&race_loaded);
	/* All but the winners found the count moved under their decision
	 * and decided again. */
	assert_int_equal(retried, RACE_THREADS - RACE_SEATS);
	assert_int_equal(assigned, RACE_SEATS);
	assert_int_equal(refused, RACE_THREADS - RACE_SEATS);
	assert_int_equal(query_count("SELECT count(DISTINCT user_id) "
				     "FROM assignments"),
			 RACE_SEATS);
	assert_int_equal(query_count("SELECT count(*) FROM ledger"),
			 RACE_SEATS);
	store_close(a);
	store_close(b);
}

/* ---- a writer waits for the other; past busy_timeout it is RETRY ---- */

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A write transaction that has loaded key: it holds that key's locks. */
static struct store_tx *hold(struct store *st, const char *user,
			     const char *device)
{
	struct store_tx *tx;
	struct domain_snapshot snap;
	struct domain_key k = key_of(user, device);

	assert_int_equal(store_begin(st, TENANT, false, &tx), STORE_OK);
	assert_int_equal(store_load(tx, &k, &snap), STORE_OK);
	assert_true(snap.is_customer_found);
	return tx;
}

/* load() of key in a new write transaction: its outcome. */
static int try_load(struct store *st, const char *tenant, const char *user,
		    const char *device)
{
	struct store_tx *tx;
	struct domain_snapshot snap;
	struct domain_key k = key_of(user, device);
	int rc;

	snprintf(k.customer, sizeof(k.customer), "%s", tenant);
	assert_int_equal(store_begin(st, tenant, false, &tx), STORE_OK);
	rc = store_load(tx, &k, &snap);
	store_rollback(tx);
	return rc;
}

static void test_lock_timeout_is_retry(void **state)
{
	struct store *a = open_fresh(2, 5000);
	struct store *b = open_again(2, 200);
	struct store_tx *holder, *reader;
	struct domain_snapshot snap;
	struct domain_key k = key_of("u0", "d0");
	double t0;

	(void)state;
	seed(a, 1, 1);
	holder = hold(a, "u0", "d0");
	t0 = now_ms();
	assert_int_equal(try_load(b, TENANT, "u0", "d0"), STORE_RETRY);
	assert_true(now_ms() - t0 >= 150.0);
	/* Readers are not blocked by a writer. */
	assert_int_equal(store_begin(b, TENANT, true, &reader), STORE_OK);
	assert_int_equal(store_load(reader, &k, &snap), STORE_OK);
	assert_true(snap.is_customer_found);
	assert_int_equal(store_commit(reader), STORE_OK);
	/* Another tenant is not blocked either, even before it exists. */
	assert_int_equal(try_load(b, "00000000-0000-0000-0000-000000000002",
				  "u0", "d0"),
			 STORE_OK);
	store_rollback(holder);
	assert_int_equal(try_load(b, TENANT, "u0", "d0"), STORE_OK);
	store_close(a);
	store_close(b);
}

/*
 * What serialises, shown with two handles (two replicas) and no timing:
 * a transaction holding user u0 and device d0 blocks another writer of
 * u0 or of d0, and a change of the customer itself; it does not block
 * writers of other users of the same customer, even ones that take a
 * seat. One taking a seat (the customer's count row) blocks another
 * taking a seat, not a writer who keeps theirs.
 */
static void test_other_users_proceed(void **state)
{
	struct store *a = open_fresh(2, 5000);
	struct store *b = open_again(2, 200);
	struct store_actor actor = {"tester", das_time_now(), NULL};
	struct domain_change take0 = {"u0", "d0", DAS_CLIENT_NONE,
				      DAS_CLIENT_DESKTOP, false};
	struct domain_change take1 = {"u1", "d1", DAS_CLIENT_NONE,
				      DAS_CLIENT_DESKTOP, false};
	struct domain_change move1 = {"u1", "d1", DAS_CLIENT_DESKTOP,
				      DAS_CLIENT_MOBILE, false};
	struct domain_change take2 = {"u2", "d2", DAS_CLIENT_NONE,
				      DAS_CLIENT_DESKTOP, false};
	struct store_tx *holder, *tx;
	struct domain_snapshot snap;
	struct domain_key k2 = key_of("u2", "d2");

	(void)state;
	seed(a, -1, 4);
	holder = hold(a, "u0", "d0");

	/* Another user of the customer: loads, takes a seat, commits. */
	tx = hold(b, "u1", "d1");
	assert_int_equal(store_apply(tx, TENANT, &take1, 1, &actor), STORE_OK);
	assert_int_equal(store_commit(tx), STORE_OK);
	/* The same user, or the same device, waits (here: times out). */
	assert_int_equal(try_load(b, TENANT, "u0", "d3"), STORE_RETRY);
	assert_int_equal(try_load(b, TENANT, "u3", "d0"), STORE_RETRY);
	/* A change of the customer itself waits for every writer. */
	assert_int_equal(try_load(b, TENANT, "", ""), STORE_RETRY);

	/* The holder takes a seat: the count row is locked until it ends. */
	assert_int_equal(store_apply(holder, TENANT, &take0, 1, &actor),
			 STORE_OK);
	/* A move keeps u1's seat: it does not touch the count. */
	tx = hold(b, "u1", "d1");
	assert_int_equal(store_apply(tx, TENANT, &move1, 1, &actor), STORE_OK);
	assert_int_equal(store_commit(tx), STORE_OK);
	/* A new seat for u2 waits for the count (times out, nothing kept). */
	assert_int_equal(store_begin(b, TENANT, false, &tx), STORE_OK);
	assert_int_equal(store_load(tx, &k2, &snap), STORE_OK);
	assert_int_equal(store_apply(tx, TENANT, &take2, 1, &actor),
			 STORE_RETRY);
	store_rollback(tx);
	assert_int_equal(store_commit(holder), STORE_OK);
	tx = hold(b, "u2", "d2");
	assert_int_equal(store_apply(tx, TENANT, &take2, 1, &actor), STORE_OK);
	assert_int_equal(store_commit(tx), STORE_OK);
	assert_int_equal(query_count("SELECT seats_in_use FROM customers"), 3);
	store_close(a);
	store_close(b);
}

/* ---- the stored seat count equals the counted one ---- */

#define MIX_THREADS 6
#define MIX_USERS 6
#define MIX_DEVICES 12
#define MIX_STEPS 150

static const struct domain_principal mixer_who = {
	.sub = "mixer",
	.is_all_tenants = true,
	.scopes = DOMAIN_SCOPE_ASSIGN | DOMAIN_SCOPE_DIRECTORY,
};

static struct ops_text txt(const char *s)
{
	return (struct ops_text){s, strlen(s)};
}

struct mixer {
	struct store *st;
	uint32_t seed;
	int n_unexpected;
	int n_ok;
};

/* xorshift32: the same sequence on every run. */
static uint32_t next_rand(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

/* Random use cases on one customer: assigns (with and without charges),
 * moves, unassigns, owner changes, device and user deletes. */
static void *mix_main(void *arg)
{
	struct mixer *m = arg;
	static const char *const roles[] = {DOMAIN_ROLE_UC,
					    DOMAIN_ROLE_UC_SOFTPHONE};

	for (int i = 0; i < MIX_STEPS; i++) {
		char user[16], device[16];
		struct ops_result r;
		enum das_status st;
		int what = (int)(next_rand(&m->seed) % 100);

		snprintf(user, sizeof(user), "u%d",
			 (int)(next_rand(&m->seed) % MIX_USERS));
		snprintf(device, sizeof(device), "d%d",
			 (int)(next_rand(&m->seed) % MIX_DEVICES));
		if (what < 65) {
			struct domain_request req = {
				.op = what < 55 ? DOMAIN_OP_ASSIGN
						: DOMAIN_OP_UNASSIGN,
				.customer = TENANT,
				.customer_len = strlen(TENANT),
				.user = user,
				.user_len = strlen(user),
				.device = device,
				.device_len = strlen(device),
				.client_type =
					1 + (int)(next_rand(&m->seed) % 4),
				.is_charge_accepted = what % 2 == 0,
			};
			st = ops_device(m->st, &mixer_who, &req, &r);
			if (st != DAS_OK && st != DAS_DEVICE_NOT_FOUND &&
			    st != DAS_USER_NOT_FOUND &&
			    st != DAS_CHARGES_NOT_ACCEPTED)
				m->n_unexpected++;
		} else if (what < 85) {
			st = ops_upsert_device(m->st, &mixer_who, txt(TENANT),
					       txt(device), txt(user), &r);
			if (st != DAS_OK)
				m->n_unexpected++;
		} else if (what < 89) {
			st = ops_delete_device(m->st, &mixer_who, txt(TENANT),
					       txt(device), &r);
			if (st != DAS_OK)
				m->n_unexpected++;
		} else if (what < 92) {
			st = ops_delete_user(m->st, &mixer_who, txt(TENANT),
					     txt(user), &r);
			if (st != DAS_OK)
				m->n_unexpected++;
		} else {
			struct ops_text rt[2] = {txt(roles[0]), txt(roles[1])};

			st = ops_upsert_user(m->st, &mixer_who, txt(TENANT),
					     txt(user), rt, 2, &r);
			if (st != DAS_OK)
				m->n_unexpected++;
		}
		if (st == DAS_OK)
			m->n_ok++;
		else if (m->n_unexpected && st != DAS_OK)
			fprintf(stderr, "mix: unexpected status %d\n", st);
	}
	return NULL;
}

static void test_stored_seat_count_matches(void **state)
{
	struct store *a = open_fresh(4, 5000);
	struct store *b = open_again(4, 5000);
	struct mixer mixers[MIX_THREADS];
	pthread_t threads[MIX_THREADS];
	int ok = 0;

	(void)state;
	seed(a, 3, MIX_USERS);
	for (int i = 0; i < MIX_THREADS; i++) {
		mixers[i] = (struct mixer){i % 2 ? b : a, 7u + (uint32_t)i, 0,
					   0};
		assert_int_equal(pthread_create(&threads[i], NULL, mix_main,
						&mixers[i]),
				 0);
	}
	for (int i = 0; i < MIX_THREADS; i++) {
		pthread_join(threads[i], NULL);
		assert_int_equal(mixers[i].n_unexpected, 0);
		ok += mixers[i].n_ok;
	}
	fprintf(stderr, "store.postgresql: %d of %d random use cases "
			"succeeded; seats used %lld\n",
		ok, MIX_THREADS * MIX_STEPS,
		query_count("SELECT seats_in_use FROM customers"));
	assert_true(ok > MIX_THREADS * MIX_STEPS / 4);
	assert_int_equal(query_count("SELECT seats_in_use FROM customers"),
			 query_count("SELECT count(DISTINCT user_id) "
				     "FROM assignments"));
	/* Charges were accepted along the way, so seats past the 3
	 * included may be in use, but never one without a charge. */
	assert_true(query_count("SELECT count(*) FROM (SELECT DISTINCT "
				"a.user_id FROM assignments a JOIN users u "
				"USING (tenant, user_id) "
				"WHERE NOT u.seat_charged) s") <= 3);
	store_close(a);
	store_close(b);
}

/* ---- connections cut: mid-transaction and by a restart ---- */

/* A session of the server's superuser (PQfinish it). */
static PGconn *admin_connect(void)
{
	char admin[PG_HARNESS_URI_SIZE];
	PGconn *conn;

	pg_harness_admin_uri(&harness, admin, sizeof(admin));
	conn = PQconnectdb(admin);
	assert_int_equal(PQstatus(conn), CONNECTION_OK);
	return conn;
}

static void terminate_backends(void)
{
	PGconn *conn = admin_connect();
	PGresult *res;

	res = PQexec(conn, "SELECT pg_terminate_backend(pid) "
			   "FROM pg_stat_activity "
			   "WHERE application_name = 'device-assignment-server'");
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	PQclear(res);
	PQfinish(conn);
}

/* ---- read-only loads batched across callers ---- */

#define READ_THREADS 16
#define READ_USERS 24
#define READ_STEPS 300

struct reader {
	struct store *st;
	unsigned seed;
	int n_wrong;
	int n_failed;
};

/* User i holds d<i> in client type 1 + i % 4; u<READ_USERS - 1> none. */
static int read_type_of(int i)
{
	return i == READ_USERS - 1 ? DAS_CLIENT_NONE : 1 + i % 4;
}

static unsigned next_random(unsigned *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return *seed >> 16;
}

/* A read handed over (store_read_submit), waited for. */
struct read_wait {
	struct store_read rd;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool is_done;
	int result;
};

static void read_wait_done(struct store_read *rd, int result)
{
	struct read_wait *w = (struct read_wait *)rd;

	pthread_mutex_lock(&w->mu);
	w->is_done = true;
	w->result = result;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static int read_handed(struct store *st, const struct domain_key *k,
		       struct domain_snapshot *snap)
{
	struct read_wait w;
	int rc;

	memset(&w, 0, sizeof(w));
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	w.rd.key = k;
	w.rd.done = read_wait_done;
	rc = store_read_submit(st, &w.rd);
	if (rc == STORE_OK) {
		pthread_mutex_lock(&w.mu);
		while (!w.is_done)
			pthread_cond_wait(&w.cv, &w.mu);
		pthread_mutex_unlock(&w.mu);
		rc = w.result;
		if (rc == STORE_OK)
			*snap = w.rd.snap;
	}
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
	return rc;
}

/* Loads random keys as the repeats of many callers do (reads handed
 * over), and checks every answer is the caller's own. */
static void *read_main(void *arg)
{
	struct reader *r = arg;

	for (int step = 0; step < READ_STEPS; step++) {
		int u = (int)(next_random(&r->seed) % READ_USERS);
		int d = (int)(next_random(&r->seed) % READ_USERS);
		char user[16], device[16];
		struct domain_key k;
		struct domain_snapshot snap;
		int rc;

		snprintf(user, sizeof(user), "u%d", u);
		snprintf(device, sizeof(device), "d%d", d);
		k = key_of(user, device);
		rc = read_handed(r->st, &k, &snap);
		if (rc != STORE_OK) {
			r->n_failed++;
			continue;
		}
		for (int t = DAS_CLIENT_DESKTOP; t < DAS_CLIENT_TYPE_COUNT;
		     t++) {
			char want[16] = "";

			if (t == read_type_of(u))
				snprintf(want, sizeof(want), "d%d", u);
			if (strcmp(snap.user_devices[t], want) != 0)
				r->n_wrong++;
		}
		snprintf(user, sizeof(user), "u%d", d); /* d<d>'s owner */
		if (!snap.is_customer_found || !snap.is_user_found ||
		    !snap.is_device_found ||
		    strcmp(snap.device_owner, user) != 0 ||
		    snap.device_type != read_type_of(d) ||
		    snap.seats_in_use != READ_USERS - 1)
			r->n_wrong++;
	}
	return NULL;
}

static void test_batched_reads_answer_their_callers(void **state)
{
	struct store *st = open_fresh(4, 5000);
	struct reader readers[READ_THREADS];
	pthread_t threads[READ_THREADS];
	struct store_tx *tx;
	struct domain_snapshot snap;
	struct domain_key k;

	(void)state;
	seed(st, -1, READ_USERS);
	for (int i = 0; i < READ_USERS - 1; i++) {
		char user[16], device[16];
		struct domain_change ch;
		struct store_actor actor = {"reader", das_time_now(), NULL};

		snprintf(user, sizeof(user), "u%d", i);
		snprintf(device, sizeof(device), "d%d", i);
		k = key_of(user, device);
		memset(&ch, 0, sizeof(ch));
		snprintf(ch.user, sizeof(ch.user), "%s", user);
		snprintf(ch.device, sizeof(ch.device), "%s", device);
		ch.from_type = DAS_CLIENT_NONE;
		ch.to_type = read_type_of(i);
		assert_int_equal(store_begin(st, TENANT, false, &tx), STORE_OK);
		assert_int_equal(store_load(tx, &k, &snap), STORE_OK);
		assert_int_equal(store_apply(tx, TENANT, &ch, 1, &actor),
				 STORE_OK);
		assert_int_equal(store_commit(tx), STORE_OK);
	}
	/* More callers than the pool has connections: the loads go out in
	 * batches, on the reader's connection. */
	for (int i = 0; i < READ_THREADS; i++) {
		readers[i] = (struct reader){st, 11u + (unsigned)i, 0, 0};
		assert_int_equal(pthread_create(&threads[i], NULL, read_main,
						&readers[i]),
				 0);
	}
	for (int i = 0; i < READ_THREADS; i++) {
		pthread_join(threads[i], NULL);
		assert_int_equal(readers[i].n_failed, 0);
		assert_int_equal(readers[i].n_wrong, 0);
	}
	/* The batches' connections cut while idle: the next read goes out
	 * again on a fresh one, and a missing customer reads as missing. */
	terminate_backends();
	k = key_of("u1", "d1");
	assert_int_equal(read_handed(st, &k, &snap), STORE_OK);
	assert_int_equal(snap.device_type, read_type_of(1));
	snprintf(k.customer, sizeof(k.customer),
		 "00000000-0000-4000-8000-000000000000");
	assert_int_equal(read_handed(st, &k, &snap), STORE_OK);
	assert_false(snap.is_customer_found);
	/* A read-only transaction reads in its own snapshot. */
	k = key_of("u1", "d1");
	assert_int_equal(store_begin(st, TENANT, true, &tx), STORE_OK);
	assert_int_equal(store_load(tx, &k, &snap), STORE_OK);
	assert_int_equal(store_commit(tx), STORE_OK);
	assert_int_equal(snap.device_type, read_type_of(1));
	store_close(st);
}

/* ---- reads handed over (store_read_submit) ---- */

#define HANDED_READS 20

struct handed {
	struct store_read rd;
	struct domain_key key;
	int n_told;
	int result;
};

static pthread_mutex_t handed_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t handed_cv = PTHREAD_COND_INITIALIZER;
static int n_handed_told;

static void handed_done(struct store_read *rd, int result)
{
	struct handed *h = (struct handed *)rd;

	pthread_mutex_lock(&handed_mu);
	h->n_told++;
	h->result = result;
	n_handed_told++;
	pthread_cond_broadcast(&handed_cv);
	pthread_mutex_unlock(&handed_mu);
}

static int handed_told(void)
{
	int n;

	pthread_mutex_lock(&handed_mu);
	n = n_handed_told;
	pthread_mutex_unlock(&handed_mu);
	return n;
}

static void handed_submit(struct store *st, struct handed *h, int i)
{
	char user[16], device[16];

	memset(h, 0, sizeof(*h));
	snprintf(user, sizeof(user), "u%d", i % READ_USERS);
	snprintf(device, sizeof(device), "d%d", i % READ_USERS);
	h->key = key_of(user, device);
	h->rd.key = &h->key;
	h->rd.done = handed_done;
	assert_int_equal(store_read_submit(st, &h->rd), STORE_OK);
}

/* Terminates our sessions waiting for a lock; how many it found. */
static long long terminate_lock_waiters(void)
{
	return query_count("SELECT count(pg_terminate_backend(pid)) "
			   "FROM pg_stat_activity "
			   "WHERE application_name = "
			   "'device-assignment-server' "
			   "AND wait_event_type = 'Lock'");
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/*
 * The reader connections are opened when the store opens, not by the
 * first read: a replica's first request must not wait for a name lookup
 * and a login. Its sessions are told apart by their application_name.
 */
static void test_readers_connect_at_open(void **state)
{
	struct store_options opt = {.pool_size = 2,
				    .busy_timeout_ms = 0};
	struct store *st = NULL;
	char uri[sizeof(spec) + 64], err[512];
	long long n = 0;

	(void)state;
	assert_non_null(fresh_spec());
	snprintf(uri, sizeof(uri), "%s&application_name=das_eager", spec);
	if (store_open(uri, &opt, &st, err, sizeof(err)) != STORE_OK)
		fail_msg("open %s: %s", uri, err);
	/* The first connection (migrations) and at least one reader. */
	for (int i = 0; i < 1000 && n < 2; i++) {
		n = query_count("SELECT count(*) FROM pg_stat_activity "
				"WHERE application_name = 'das_eager'");
		if (n < 2)
			sleep_ms(10);
	}
	store_close(st);
	assert_true(n >= 2);
}

/* Waits (60 s at most) until n of our sessions wait for a lock. */
static void lock_waiters_until(long long n)
{
	for (int rounds = 0;
	     query_count("SELECT count(*) FROM pg_stat_activity "
			 "WHERE application_name = "
			 "'device-assignment-server' "
			 "AND wait_event_type = 'Lock'") < n;
	     rounds++) {
		assert_true(rounds < 6000);
		sleep_ms(10);
	}
}

/* A session of its own holding the customers table, which every statement
 * of ours reads: ROLLBACK on it lets them go. */
static PGconn *lock_customers(void)
{
	PGconn *locker = PQconnectdb(spec);
	PGresult *res;

	assert_int_equal(PQstatus(locker), CONNECTION_OK);
	res = PQexec(locker, "BEGIN; LOCK TABLE customers IN ACCESS "
			     "EXCLUSIVE MODE");
	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	return locker;
}

/*
 * Reads handed over return their callers at once, while the database
 * holds their batch back (a lock on the customers table): every caller
 * is told later, exactly once. The batch's session killed while it waits
 * (PostgreSQL gone mid-batch, twice: the batch is sent once more on a
 * fresh connection): every caller of the batch is told UNAVAILABLE, none
 * twice, none forgotten. Then the readers recover and every read gets its
 * own snapshot.
 */
static void test_handed_reads_told_once(void **state)
{
	static struct handed reads[HANDED_READS + 1];
	struct store *st = open_fresh(4, 5000);
	PGconn *locker;
	PGresult *res;
	int rounds = 0;

	(void)state;
	seed(st, -1, READ_USERS);
	assert_true(store_can_read_submit(st));
	n_handed_told = 0;
	locker = lock_customers();

	/* The first read goes out alone and waits on the lock; the others
	 * queue behind it. Each submit returned: no caller waits. */
	handed_submit(st, &reads[0], 0);
	lock_waiters_until(1);
	for (int i = 1; i <= HANDED_READS; i++)
		handed_submit(st, &reads[i], i);
	assert_int_equal(handed_told(), 0);

	/* Gone mid-batch, as often as a batch waits. */
	rounds = 0;
	while (handed_told() < HANDED_READS + 1) {
		terminate_lock_waiters();
		assert_true(++rounds < 6000);
		sleep_ms(10);
	}
	for (int i = 0; i <= HANDED_READS; i++) {
		assert_int_equal(reads[i].n_told, 1);
		assert_int_equal(reads[i].result, STORE_UNAVAILABLE);
	}

	res = PQexec(locker, "ROLLBACK");
	PQclear(res);
	PQfinish(locker);
	n_handed_told = 0;
	for (int i = 0; i <= HANDED_READS; i++)
		handed_submit(st, &reads[i], i);
	pthread_mutex_lock(&handed_mu);
	while (n_handed_told < HANDED_READS + 1)
		pthread_cond_wait(&handed_cv, &handed_mu);
	pthread_mutex_unlock(&handed_mu);
	for (int i = 0; i <= HANDED_READS; i++) {
		char owner[16];

		snprintf(owner, sizeof(owner), "u%d", i % READ_USERS);
		assert_int_equal(reads[i].n_told, 1);
		assert_int_equal(reads[i].result, STORE_OK);
		assert_true(reads[i].rd.snap.is_user_found);
		assert_string_equal(reads[i].rd.snap.device_owner, owner);
	}
	store_close(st);
}

/* A write transaction's load on another thread: it waits on a lock. */
struct held_load {
	struct store *st;
	pthread_t thread;
	int begin_rc, load_rc;
};

static void *held_load_main(void *arg)
{
	struct held_load *h = arg;
	struct store_tx *tx;
	struct domain_snapshot snap;
	struct domain_key k = key_of("u0", "d0");

	h->begin_rc = store_begin(h->st, TENANT, false, &tx);
	if (h->begin_rc != STORE_OK)
		return NULL;
	h->load_rc = store_load(tx, &k, &snap);
	store_rollback(tx);
	return NULL;
}


/*
 * store_cut, as at shutdown, while the database does not answer (here a
 * session holds a lock every statement of ours needs; the lock timeout is
 * a minute): the load of a transaction on a pool connection and the
 * reader's connection (in its batch, or still preparing its statements
 * when the lock came first) wake at once with STORE_UNAVAILABLE, every
 * read still queued is told STORE_UNAVAILABLE exactly once, from then on
 * reads and transactions are refused without a statement sent, and
 * store_close returns, the lock still held.
 */
static void test_cut_ends_every_wait(void **state)
{
	static struct handed reads[HANDED_READS + 1];
	struct store *st = open_fresh(4, 60000);
	struct held_load load = {.st = st};
	struct domain_key key = key_of("u1", "d1");
	struct domain_snapshot snap;
	struct store_tx *tx;
	PGconn *locker;
	PGresult *res;
	double t0;

	(void)state;
	seed(st, -1, READ_USERS);
	n_handed_told = 0;
	locker = lock_customers();

	/* The reader's batch and a transaction's load wait on the lock; the
	 * other reads queue behind the batch. */
	handed_submit(st, &reads[0], 0);
	assert_int_equal(pthread_create(&load.thread, NULL, held_load_main,
					&load),
			 0);
	lock_waiters_until(2);
	for (int i = 1; i <= HANDED_READS; i++)
		handed_submit(st, &reads[i], i);

	t0 = now_ms();
	store_cut(st);
	pthread_join(load.thread, NULL);
	pthread_mutex_lock(&handed_mu);
	while (n_handed_told < HANDED_READS + 1)
		pthread_cond_wait(&handed_cv, &handed_mu);
	pthread_mutex_unlock(&handed_mu);
	assert_int_equal(load.begin_rc, STORE_OK);
	assert_int_equal(load.load_rc, STORE_UNAVAILABLE);
	for (int i = 0; i <= HANDED_READS; i++) {
		assert_int_equal(reads[i].n_told, 1);
		assert_int_equal(reads[i].result, STORE_UNAVAILABLE);
	}

	/* Refused from now on, without a statement sent. */
	reads[0].rd.done = handed_done;
	assert_int_equal(store_read_submit(st, &reads[0].rd),
			 STORE_UNAVAILABLE);
	assert_int_equal(store_begin(st, TENANT, false, &tx),
			 STORE_UNAVAILABLE);
	assert_int_equal(store_begin(st, TENANT, true, &tx), STORE_OK);
	assert_int_equal(store_load(tx, &key, &snap), STORE_UNAVAILABLE);
	store_rollback(tx);
	assert_int_equal(handed_told(), HANDED_READS + 1);
	/* Every thread of the store ends (pg_close joins them), while the
	 * lock is still held. */
	store_close(st);
	assert_true(now_ms() - t0 < 30000.0);

	res = PQexec(locker, "ROLLBACK");
	PQclear(res);
	PQfinish(locker);
}

static void test_connection_killed_mid_tx(void **state)
{
	struct store *st = open_fresh(2, 5000);
	struct store_tx *tx;
	struct domain_snapshot snap;
	struct domain_key k = key_of("u0", "d0");
	bool is_changed;

	seed(st, 1, 1);
	/* Under way: BEGIN, the locks and the read have been sent. */
	tx = hold(st, "u0", "d0");
	terminate_backends();
	assert_int_equal(store_user_put(tx, TENANT, "u9", "", &is_changed),
			 STORE_UNAVAILABLE);
	assert_int_equal(store_commit(tx), STORE_UNAVAILABLE);
	/* Nothing written; the next transactions work on fresh sessions. */
	for (int i = 0; i < 4; i++) {
		assert_int_equal(store_begin(st, TENANT, false, &tx), STORE_OK);
		assert_int_equal(store_load(tx, &k, &snap), STORE_OK);
		assert_true(snap.is_user_found);
		store_rollback(tx);
	}
	assert_int_equal(query_count("SELECT count(*) FROM users "
				     "WHERE user_id = 'u9'"),
			 0);
	store_close(st);
}

static void test_server_restart_recovers(void **state)
{
	struct store *st = open_fresh(4, 5000);
	struct store_tx *txs[4];
	struct store_ledger_row rows[4];
	struct domain_snapshot snap;
	struct domain_key k = key_of("u0", "d0");
	char err[512];
	bool is_changed;
	size_t n;
	double t0;

	seed(st, 1, 1);
	/* Open every pooled connection so that all of them go stale. */
	for (int i = 0; i < 4; i++)
		assert_int_equal(store_begin(st, TENANT, true, &txs[i]),
				 STORE_OK);
	for (int i = 0; i < 4; i++)
		store_rollback(txs[i]);
	t0 = now_ms();
	if (pg_harness_restart(&harness, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	fprintf(stderr, "store.postgresql: pg_ctl restart took %.0f ms\n",
		now_ms() - t0);
	t0 = now_ms();
	/* Stale idle connections are reset on use: no failure is seen.
	 * Four readers at once use every pooled connection. */
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 4; i++) {
			assert_int_equal(store_begin(st, TENANT, true, &txs[i]),
					 STORE_OK);
			assert_int_equal(store_load(txs[i], &k, &snap),
					 STORE_OK);
			assert_true(snap.is_customer_found);
		}
		for (int i = 0; i < 4; i++)
			assert_int_equal(store_commit(txs[i]), STORE_OK);
	}
	/* And writes go through. */
	assert_int_equal(store_begin(st, TENANT, false, &txs[0]), STORE_OK);
	assert_int_equal(store_user_put(txs[0], TENANT, "u7", "", &is_changed),
			 STORE_OK);
	assert_true(is_changed);
	assert_int_equal(store_commit(txs[0]), STORE_OK);
	assert_int_equal(store_ledger_read(st, TENANT, 0, rows, 4, &n),
			 STORE_OK);
	fprintf(stderr, "store.postgresql: 9 transactions after the restart "
			"took %.0f ms\n",
		now_ms() - t0);
	store_close(st);
}

/* ---- health: the probe follows the database ---- */

__attribute__((format(printf, 1, 2))) static void admin_exec(const char *fmt,
								...)
{
	va_list ap;
	char sql[256];
	PGconn *conn;
	PGresult *res;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	conn = admin_connect();
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
	    PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(conn));
	PQclear(res);
	PQfinish(conn);
}

static void test_probe_follows_database(void **state)
{
	struct store *st = open_fresh(2, 5000);
	const char *db = strrchr(base_uri, '/') + 1;
	char why[256];
	double t0;

	(void)state;
	assert_int_equal(store_probe(st, why, sizeof(why)), STORE_OK);

	/* Unreachable: no connection is allowed any more. */
	admin_exec("ALTER DATABASE \"%s\" ALLOW_CONNECTIONS false", db);
	terminate_backends();
	assert_int_equal(store_probe(st, why, sizeof(why)), STORE_UNAVAILABLE);
	assert_non_null(strstr(why, "unreachable"));
	admin_exec("ALTER DATABASE \"%s\" ALLOW_CONNECTIONS true", db);
	/* The next connection attempt comes at most PG_CONNECT_RETRY_MS
	 * (200 ms) after the failed one. */
	t0 = now_ms();
	while (store_probe(st, why, sizeof(why)) != STORE_OK) {
		assert_true(now_ms() - t0 < 5000.0);
		sleep_ms(10);
	}

	/* Read-only for new sessions. */
	admin_exec("ALTER DATABASE \"%s\" SET default_transaction_read_only "
		   "= on",
		   db);
	terminate_backends();
	assert_int_equal(store_probe(st, why, sizeof(why)), STORE_UNAVAILABLE);
	assert_non_null(strstr(why, "read-only"));
	admin_exec("ALTER DATABASE \"%s\" RESET default_transaction_read_only",
		   db);
	terminate_backends();
	assert_int_equal(store_probe(st, why, sizeof(why)), STORE_OK);
	store_close(st);
}

/*
 * A database set read-only (default_transaction_read_only, which hosted
 * services set when its storage is nearly full): a write ends
 * STORE_UNAVAILABLE and changes nothing, as the probe says; reads still
 * work, and a store still opens on it; writable again, writes go through.
 * Before, write transactions began READ WRITE, which overrides that
 * default: the probe said the database was read-only while every write
 * went through. And opening a store wrote (CREATE TABLE IF NOT EXISTS
 * schema_version) even on a current schema, so a server restarted then
 * exited 1.
 */
/* Writable again, even after a failed test: the tests after it share
 * the database. */
static int database_writable(void **state)
{
	(void)state;
	admin_exec("ALTER DATABASE \"%s\" RESET default_transaction_read_only",
		   strrchr(base_uri, '/') + 1);
	return 0;
}

static void test_read_only_database_refuses_writes(void **state)
{
	struct store *st = open_fresh(2, 5000);
	const char *db = strrchr(base_uri, '/') + 1;
	struct store_tx *tx;
	bool is_changed;
	char why[256];

	(void)state;
	seed(st, 1, 1);
	admin_exec("ALTER DATABASE \"%s\" SET default_transaction_read_only "
		   "= on",
		   db);
	terminate_backends();
	assert_int_equal(store_probe(st, why, sizeof(why)), STORE_UNAVAILABLE);
	/* The read of a write transaction works; its write is refused. */
	tx = hold(st, "u0", "d0");
	int put = store_user_put(tx, TENANT, "u9", "", &is_changed);
	assert_true(put == STORE_OK || put == STORE_UNAVAILABLE);
	assert_int_equal(store_commit(tx), STORE_UNAVAILABLE);
	assert_int_equal(query_count("SELECT count(*) FROM users "
				     "WHERE user_id = 'u9'"),
			 0);
	/* A store opens on it (its schema is current: nothing to write) and
	 * reads. */
	struct store *again = open_again(2, 5000);
	struct store_tx *rd;
	struct domain_snapshot snap;
	struct domain_key k = key_of("u0", "d0");
	assert_int_equal(store_begin(again, TENANT, true, &rd), STORE_OK);
	assert_int_equal(store_load(rd, &k, &snap), STORE_OK);
	assert_true(snap.is_user_found);
	store_rollback(rd);
	assert_int_equal(store_probe(again, why, sizeof(why)),
			 STORE_UNAVAILABLE);
	store_close(again);
	admin_exec("ALTER DATABASE \"%s\" RESET default_transaction_read_only",
		   db);
	terminate_backends();
	assert_int_equal(store_probe(st, why, sizeof(why)), STORE_OK);
	tx = hold(st, "u0", "d0");
	assert_int_equal(store_user_put(tx, TENANT, "u9", "", &is_changed),
			 STORE_OK);
	assert_int_equal(store_commit(tx), STORE_OK);
	assert_int_equal(query_count("SELECT count(*) FROM users "
				     "WHERE user_id = 'u9'"),
			 1);
	store_close(st);
}

/* ---- a full disk ---- */

#define SMALL_DISK "/mnt"
static bool has_small_disk; /* small_disk() made it */

/*
 * A private mount namespace with a 4 MiB tmpfs on SMALL_DISK holding an
 * empty directory "ts" of the user PostgreSQL runs as, for a tablespace
 * that fills up. Before any thread and before the PostgreSQL server
 * starts (it inherits the namespace, and the mount ends with it). False,
 * with the reason on stderr, where it cannot be had (not root).
 */
static bool small_disk(void)
{
	struct passwd *pw = getuid() == 0 ? getpwnam("postgres") : NULL;

	if (unshare(CLONE_NEWNS) != 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount("das-test", SMALL_DISK, "tmpfs", MS_NOSUID | MS_NODEV,
		  "size=4m,mode=0755") != 0 ||
	    mkdir(SMALL_DISK "/ts", 0700) != 0 ||
	    (pw && chown(SMALL_DISK "/ts", pw->pw_uid, pw->pw_gid) != 0)) {
		fprintf(stderr,
			"store.postgresql: no small disk, the full-disk test "
			"is skipped: %s\n",
			strerror(errno));
		return false;
	}
	return true;
}

/* Fills the small disk: inserts until PostgreSQL says it is full. */
static void fill_small_disk(void)
{
	PGconn *conn = admin_connect();
	PGresult *res;

	res = PQexec(conn, "CREATE TABLE filler (a bigint, b bigint) "
			   "TABLESPACE small");
	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	res = PQexec(conn, "INSERT INTO filler SELECT g, g "
			   "FROM generate_series(1, 10000000) g");
	assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
	assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE),
			    "53100");
	PQclear(res);
	PQfinish(conn);
}

/*
 * A full disk (SQLSTATE 53100, disk_full): a write ends STORE_UNAVAILABLE
 * (503) and changes nothing, as for SQLite's full disk; once there is room
 * again, writes go through. Before, any SQLSTATE but a lost connection or
 * a shutdown was STORE_ERROR: a 500, which the error catalog has no row
 * for. The store's tables are in a tablespace on the small disk (the
 * session's default_tablespace), empty, so the first write must extend a
 * file. The health probe, which writes nothing, says NOT_SERVING from the
 * refused write for 10 s (PG_DISK_FULL_MS), or until a write commits
 * (before, SERVING throughout).
 */
static void test_full_disk_refuses_writes(void **state)
{
	struct store_customer c;
	struct store_tx *tx;
	bool is_changed;
	char why[256] = "";
	int rc;

	(void)state;
	if (!has_small_disk)
		skip();
	admin_exec("CREATE TABLESPACE small LOCATION '" SMALL_DISK "/ts'");
	admin_exec("GRANT CREATE ON TABLESPACE small TO PUBLIC");
	assert_non_null(fresh_spec());
	size_t len = strlen(spec);
	snprintf(spec + len, sizeof(spec) - len,
		 "%%20-cdefault_tablespace%%3Dsmall");
	struct store *st = open_again(2, 5000);
	fill_small_disk();

	memset(&c, 0, sizeof(c));
	snprintf(c.tenant, sizeof(c.tenant), "%s", TENANT);
	snprintf(c.name, sizeof(c.name), "Full Inc");
	double refused_at = now_ms();
	for (int round = 0; round < 2; round++) {
		assert_int_equal(store_begin(st, TENANT, false, &tx), STORE_OK);
		int put = store_customer_put(tx, &c, &is_changed);
		assert_true(put == STORE_OK || put == STORE_UNAVAILABLE);
		assert_int_equal(store_commit(tx), STORE_UNAVAILABLE);
		assert_int_equal(query_count("SELECT count(*) FROM customers"),
				 0);
		/* Health knows it from the refused write. */
		assert_int_equal(store_probe(st, why, sizeof(why)),
				 STORE_UNAVAILABLE);
		fprintf(stderr, "probe on a full disk: %s\n", why);
		assert_non_null(strstr(why, "disk is full"));
		if (round)
			break;
		/* With no write since, the mark lapses after 10 s: the
		 * probe alone cannot tell that the disk is still full. */
		do {
			struct timespec ts = {0, 200 * 1000 * 1000};
			nanosleep(&ts, NULL);
			rc = store_probe(st, why, sizeof(why));
		} while (rc != STORE_OK && now_ms() - refused_at < 20000.0);
		assert_int_equal(rc, STORE_OK);
		fprintf(stderr, "probe %.0f ms after the refused write: ok\n",
			now_ms() - refused_at);
		assert_true(now_ms() - refused_at >= 10000.0);
	}

	admin_exec("DROP TABLE filler");
	seed(st, 1, 1);
	assert_int_equal(query_count("SELECT count(*) FROM customers"), 1);
	/* A write committed: the disk has room again. */
	assert_int_equal(store_probe(st, why, sizeof(why)), STORE_OK);
	store_close(st);
}

/* ---- durable before visible: synchronous_commit on, always ---- */

/* WAL fsyncs so far (pg_stat_wal), once every store backend has gone and
 * so flushed its counters. */
static long long wal_syncs_after_exit(void)
{
	for (int i = 0; i < 100; i++) {
		if (query_count("SELECT count(*) FROM pg_stat_activity WHERE "
				"application_name IN "
				"('device-assignment-server', 'das-async')") ==
		    0)
			break;
		struct timespec ts = {0, 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return query_count("SELECT wal_sync FROM pg_stat_wal");
}

#define SYNC_COMMITS 30

/*
 * A read that decides "nothing to do" must see only durable state. A
 * PostgreSQL commit becomes visible to other sessions after its WAL flush
 * when the committing session runs synchronous_commit on (before it, when
 * off): the store sets it on for its sessions even where the database's
 * default is off. Shown by the WAL fsyncs: SYNC_COMMITS store writes, one
 * after the other, flush the WAL at least that often; the same commits
 * from a session left at the database's default (off) flush it far less
 * (the WAL writer flushes every 10 s here), which shows the count can
 * tell the two apart.
 */
static void test_commits_flush_before_visible(void **state)
{
	const char *db = strrchr(base_uri, '/') + 1;
	struct store *st;
	long long before, store_syncs, async_syncs;
	char uri[sizeof(spec) + 32];
	PGconn *conn;

	(void)state;
	admin_exec("ALTER DATABASE \"%s\" SET synchronous_commit = off", db);
	admin_exec("ALTER SYSTEM SET wal_writer_delay = '10s'");
	admin_exec("SELECT pg_reload_conf()");
	st = open_fresh(1, 5000);
	seed(st, -1, 1);
	before = wal_syncs_after_exit();
	for (int i = 0; i < SYNC_COMMITS; i++) {
		struct store_tx *tx;
		char user[16];
		bool is_changed;

		snprintf(user, sizeof(user), "s%d", i);
		assert_int_equal(store_begin(st, TENANT, false, &tx), STORE_OK);
		assert_int_equal(store_user_put(tx, TENANT, user, "",
						&is_changed),
				 STORE_OK);
		assert_int_equal(store_commit(tx), STORE_OK);
	}
	store_close(st);
	store_syncs = wal_syncs_after_exit() - before;

	snprintf(uri, sizeof(uri), "%s&application_name=das-async", spec);
	conn = PQconnectdb(uri);
	assert_int_equal(PQstatus(conn), CONNECTION_OK);
	before = wal_syncs_after_exit();
	for (int i = 0; i < SYNC_COMMITS; i++) {
		char sql[128];
		PGresult *res;

		snprintf(sql, sizeof(sql),
			 "INSERT INTO users (tenant, user_id) "
			 "VALUES ('%s', 'a%d')",
			 TENANT, i);
		res = PQexec(conn, sql);
		assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
		PQclear(res);
	}
	PQfinish(conn);
	async_syncs = wal_syncs_after_exit() - before;

	admin_exec("ALTER DATABASE \"%s\" RESET synchronous_commit", db);
	admin_exec("ALTER SYSTEM RESET wal_writer_delay");
	admin_exec("SELECT pg_reload_conf()");
	fprintf(stderr, "store.postgresql: %d commits with the database's "
			"default off: %lld WAL fsyncs through the store, "
			"%lld from a session left at the default\n",
		SYNC_COMMITS, store_syncs, async_syncs);
	assert_true(store_syncs >= SYNC_COMMITS);
	assert_true(async_syncs < SYNC_COMMITS / 2);
}

/* ---- schema creation by several replicas at once ---- */

#define OPENERS 6

static void *open_main(void *arg)
{
	struct store **out = arg;
	struct store_options opt = {.pool_size = 1,
				    .busy_timeout_ms = 5000};
	char err[512];

	if (store_open(spec, &opt, out, err, sizeof(err)) != STORE_OK) {
		fprintf(stderr, "concurrent open: %s\n", err);
		*out = NULL;
	}
	return NULL;
}

static void test_concurrent_schema_creation(void **state)
{
	pthread_t threads[OPENERS];
	struct store *handles[OPENERS];

	assert_non_null(fresh_spec());
	for (int i = 0; i < OPENERS; i++)
		assert_int_equal(pthread_create(&threads[i], NULL, open_main,
						&handles[i]),
				 0);
	for (int i = 0; i < OPENERS; i++)
		pthread_join(threads[i], NULL);
	for (int i = 0; i < OPENERS; i++) {
		assert_non_null(handles[i]);
		store_close(handles[i]);
	}
	/* One row per version applied (1 to 3), none twice. */
	assert_int_equal(query_count("SELECT count(*) FROM schema_version"),
			 3);
	assert_int_equal(query_count("SELECT count(*) FROM ledger_key"), 1);
}

/* ---- names that are not UTF-8 are stored, not refused ---- */

static void test_customer_name_not_utf8(void **state)
{
	static const char *const names[] = {"Caf\xc3\xa9 \xe2\x82\xac",
					    "Bad \xff\xc3(\xed\xa0\x80\xf0"};
	static const char *const stored[] = {
		"Caf\xc3\xa9 \xe2\x82\xac",
		"Bad \xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd"
		"\xef\xbf\xbd\xef\xbf\xbd"};
	struct store *st = open_fresh(2, 5000);
	struct store_customer c;
	struct store_tx *tx;
	bool is_changed;

	for (int i = 0; i < 2; i++) {
		char sql[256];

		memset(&c, 0, sizeof(c));
		snprintf(c.tenant, sizeof(c.tenant), "%s", TENANT);
		snprintf(c.name, sizeof(c.name), "%s", names[i]);
		for (int round = 0; round < 2; round++) {
			assert_int_equal(store_begin(st, TENANT, false, &tx),
					 STORE_OK);
			assert_int_equal(store_customer_put(tx, &c,
							    &is_changed),
					 STORE_OK);
			assert_int_equal(store_commit(tx), STORE_OK);
			assert_true(is_changed == (round == 0));
		}
		snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM customers WHERE name = '%s'",
			 stored[i]);
		assert_int_equal(query_count(sql), 1);
	}
	store_close(st);
}

/* ---- open fails fast and clearly when nothing listens ---- */

/*
 * A database written by the first release (schema version 1) is migrated
 * on open: its ledger rows stay, with no request id; seats start
 * uncharged; one page-token key is made and every handle reads it.
 */
static void test_open_migrates_version_1(void **state)
{
	static const char v1[] =
		"CREATE TABLE schema_version (version integer PRIMARY KEY);"
		"INSERT INTO schema_version VALUES (1);"
		"CREATE TABLE customers (tenant text PRIMARY KEY, account text,"
		" name text NOT NULL DEFAULT '', included_seats bigint);"
		"CREATE TABLE users (tenant text NOT NULL REFERENCES customers"
		" (tenant) ON DELETE CASCADE, user_id text NOT NULL, roles text"
		" NOT NULL DEFAULT '', PRIMARY KEY (tenant, user_id));"
		"CREATE TABLE devices (tenant text NOT NULL REFERENCES customers"
		" (tenant) ON DELETE CASCADE, device_id text NOT NULL, owner"
		" text NOT NULL, PRIMARY KEY (tenant, device_id), UNIQUE"
		" (tenant, device_id, owner));"
		"CREATE TABLE assignments (tenant text NOT NULL, device_id text"
		" NOT NULL, user_id text NOT NULL, client_type smallint NOT"
		" NULL, PRIMARY KEY (tenant, device_id));"
		"CREATE TABLE ledger (id bigint GENERATED ALWAYS AS IDENTITY"
		" PRIMARY KEY, at_seconds bigint NOT NULL, at_nanos integer NOT"
		" NULL, tenant text NOT NULL, user_id text NOT NULL, device_id"
		" text NOT NULL, from_type smallint NOT NULL, to_type smallint"
		" NOT NULL, is_charged boolean NOT NULL, actor text NOT NULL);"
		"CREATE INDEX ledger_tenant_id ON ledger (tenant, id);"
		"INSERT INTO customers VALUES ('" TENANT "', NULL, 'Old', 1);"
		"INSERT INTO users VALUES ('" TENANT "', 'u1', '');"
		"INSERT INTO ledger (at_seconds, at_nanos, tenant, user_id,"
		" device_id, from_type, to_type, is_charged, actor) VALUES"
		" (1000, 0, '" TENANT "', 'u1', 'd1', 0, 1, true, 'old-actor');";
	const char *uri = fresh_spec();
	struct store_options opt = {.pool_size = 2,
				    .busy_timeout_ms = 5000};
	struct store *st = NULL, *st2;
	struct store_ledger_row rows[4];
	unsigned char key1[STORE_LEDGER_KEY_SIZE], key2[STORE_LEDGER_KEY_SIZE];
	char err[512], sql[sizeof(v1) + 64];
	size_t n = 0;
	PGresult *res;

	(void)state;
	assert_non_null(uri);
	snprintf(sql, sizeof(sql), "SET search_path = t%u; %s", n_schemas, v1);
	res = PQexec(suite_conn, sql);
	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	PQclear(PQexec(suite_conn, "RESET search_path"));

	if (store_open(uri, &opt, &st, err, sizeof(err)) != STORE_OK)
		fail_msg("open %s: %s", uri, err);
	assert_int_equal(store_ledger_read(st, TENANT, 0, rows, 4, &n),
			 STORE_OK);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].actor, "old-actor");
	assert_string_equal(rows[0].request_id, "");
	assert_true(rows[0].is_charged);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM t%u.users WHERE NOT seat_charged",
		 n_schemas);
	assert_int_equal(query_count(sql), 1);
	snprintf(sql, sizeof(sql), "SELECT max(version) FROM t%u.schema_version",
		 n_schemas);
	assert_int_equal(query_count(sql), 3);
	st2 = open_again(2, 5000);
	store_ledger_key(st, key1);
	store_ledger_key(st2, key2);
	assert_memory_equal(key1, key2, sizeof(key1));
	store_close(st2);
	store_close(st);
}

/*
 * A database of schema version 2 (the previous release) is migrated on
 * open: each customer's seat count is counted from its assignments once,
 * and kept from then on. The v2 tables are made here as that release
 * made them (without its own migration code, which is gone).
 */
static void test_open_migrates_version_2(void **state)
{
	static const char v2[] =
		"CREATE TABLE schema_version (version integer PRIMARY KEY);"
		"INSERT INTO schema_version VALUES (1), (2);"
		"CREATE TABLE customers (tenant text PRIMARY KEY, account text,"
		" name text NOT NULL DEFAULT '', included_seats bigint"
		" CHECK (included_seats >= 0));"
		"CREATE TABLE users (tenant text NOT NULL REFERENCES customers"
		" (tenant) ON DELETE CASCADE, user_id text NOT NULL, roles text"
		" NOT NULL DEFAULT '', seat_charged boolean NOT NULL DEFAULT"
		" false, PRIMARY KEY (tenant, user_id));"
		"CREATE TABLE devices (tenant text NOT NULL REFERENCES customers"
		" (tenant) ON DELETE CASCADE, device_id text NOT NULL, owner"
		" text NOT NULL, PRIMARY KEY (tenant, device_id), UNIQUE"
		" (tenant, device_id, owner));"
		"CREATE TABLE assignments (tenant text NOT NULL, device_id text"
		" NOT NULL, user_id text NOT NULL, client_type smallint NOT NULL"
		" CHECK (client_type BETWEEN 1 AND 4), PRIMARY KEY (tenant,"
		" device_id), UNIQUE (tenant, user_id, client_type), FOREIGN KEY"
		" (tenant, device_id, user_id) REFERENCES devices (tenant,"
		" device_id, owner), FOREIGN KEY (tenant, user_id) REFERENCES"
		" users (tenant, user_id));"
		"CREATE TABLE ledger (id bigint GENERATED ALWAYS AS IDENTITY"
		" PRIMARY KEY, at_seconds bigint NOT NULL, at_nanos integer NOT"
		" NULL, tenant text NOT NULL, user_id text NOT NULL, device_id"
		" text NOT NULL, from_type smallint NOT NULL, to_type smallint"
		" NOT NULL, is_charged boolean NOT NULL, actor text NOT NULL,"
		" request_id text NOT NULL DEFAULT '');"
		"CREATE TABLE ledger_key (id integer PRIMARY KEY CHECK (id = 1),"
		" key bytea NOT NULL CHECK (length(key) = 32));"
		"INSERT INTO ledger_key VALUES (1, decode(repeat('ab', 32),"
		" 'hex'));"
		"INSERT INTO customers VALUES ('" TENANT "', NULL, 'Two', 2),"
		" ('00000000-0000-0000-0000-000000000002', NULL, 'Empty', 1);"
		"INSERT INTO users VALUES ('" TENANT "', 'u0', ''),"
		" ('" TENANT "', 'u1', ''), ('" TENANT "', 'u2', '');"
		"INSERT INTO devices VALUES ('" TENANT "', 'd0', 'u0'),"
		" ('" TENANT "', 'd1', 'u0'), ('" TENANT "', 'd2', 'u1'),"
		" ('" TENANT "', 'd3', 'u2');"
		"INSERT INTO assignments VALUES ('" TENANT "', 'd0', 'u0', 1),"
		" ('" TENANT "', 'd1', 'u0', 2), ('" TENANT "', 'd2', 'u1', 1);";
	const char *uri = fresh_spec();
	struct store_options opt = {.pool_size = 2,
				    .busy_timeout_ms = 5000};
	struct store *st = NULL;
	struct store_tx *tx;
	struct domain_snapshot snap;
	struct domain_key k = key_of("u2", "d3");
	struct domain_change take = {"u2", "d3", DAS_CLIENT_NONE,
				     DAS_CLIENT_DESKTOP, true};
	struct store_actor actor = {"tester", das_time_now(), NULL};
	char err[512], sql[sizeof(v2) + 64];
	PGresult *res;

	(void)state;
	assert_non_null(uri);
	snprintf(sql, sizeof(sql), "SET search_path = t%u; %s", n_schemas, v2);
	res = PQexec(suite_conn, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		fail_msg("v2: %s", PQerrorMessage(suite_conn));
	PQclear(res);
	PQclear(PQexec(suite_conn, "RESET search_path"));

	if (store_open(uri, &opt, &st, err, sizeof(err)) != STORE_OK)
		fail_msg("open %s: %s", uri, err);
	assert_int_equal(query_count("SELECT max(version) FROM "
				     "schema_version"),
			 3);
	assert_int_equal(query_count("SELECT seats_in_use FROM customers "
				     "WHERE name = 'Two'"),
			 2);
	assert_int_equal(query_count("SELECT seats_in_use FROM customers "
				     "WHERE name = 'Empty'"),
			 0);
	/* The count read is the migrated one, and it is kept. */
	assert_int_equal(store_begin(st, TENANT, false, &tx), STORE_OK);
	assert_int_equal(store_load(tx, &k, &snap), STORE_OK);
	assert_int_equal(snap.seats_in_use, 2);
	assert_int_equal(store_apply(tx, TENANT, &take, 1, &actor), STORE_OK);
	assert_int_equal(store_commit(tx), STORE_OK);
	assert_int_equal(query_count("SELECT seats_in_use FROM customers "
				     "WHERE name = 'Two'"),
			 3);
	store_close(st);
}

static void test_open_unreachable(void **state)
{
	struct store_options opt = {.pool_size = 0,
				    .busy_timeout_ms = 0};
	struct store *st = (struct store *)&opt;
	char uri[128];
	char err[512];
	double t0 = now_ms();

	/* Port 1 on loopback: nothing listens, connection refused. */
	snprintf(uri, sizeof(uri), "postgresql://das@127.0.0.1:1/nowhere");
	assert_int_equal(store_open(uri, &opt, &st, err, sizeof(err)),
			 STORE_UNAVAILABLE);
	assert_null(st);
	assert_non_null(strstr(err, "cannot connect"));
	assert_null(strchr(err, '\n'));
	assert_true(now_ms() - t0 < 5000.0);
	/* Both URI schemes select this backend; others do not. */
	assert_true(store_postgres_ops.accepts("postgres://x@127.0.0.1/db"));
	assert_true(store_postgres_ops.accepts("postgresql://127.0.0.1/db"));
	assert_false(store_postgres_ops.accepts("sqlite:./x.db"));
	assert_false(store_postgres_ops.accepts("postgresqlx://h/db"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_unreachable),
		cmocka_unit_test(test_concurrent_schema_creation),
		cmocka_unit_test(test_seat_race_two_handles),
		cmocka_unit_test(test_lock_timeout_is_retry),
		cmocka_unit_test(test_other_users_proceed),
		cmocka_unit_test(test_stored_seat_count_matches),
		cmocka_unit_test(test_batched_reads_answer_their_callers),
		cmocka_unit_test(test_handed_reads_told_once),
		cmocka_unit_test(test_cut_ends_every_wait),
		cmocka_unit_test(test_readers_connect_at_open),
		cmocka_unit_test(test_commits_flush_before_visible),
		cmocka_unit_test(test_connection_killed_mid_tx),
		cmocka_unit_test(test_server_restart_recovers),
		cmocka_unit_test(test_customer_name_not_utf8),
		cmocka_unit_test(test_probe_follows_database),
		cmocka_unit_test_teardown(
			test_read_only_database_refuses_writes,
			database_writable),
		cmocka_unit_test(test_full_disk_refuses_writes),
		cmocka_unit_test(test_open_migrates_version_1),
		cmocka_unit_test(test_open_migrates_version_2),
	};
	char err[512];
	int failed;

	has_small_disk = small_disk();
	if (pg_harness_start(&harness, err, sizeof(err)) != 0) {
		fprintf(stderr, "store.postgresql: cannot run a private "
				"PostgreSQL server: %s\n",
			err);
		return 1;
	}
	if (pg_harness_create_db(&harness, base_uri, sizeof(base_uri), err,
				 sizeof(err)) != 0) {
		fprintf(stderr, "store.postgresql: %s\n", err);
		pg_harness_stop(&harness);
		return 1;
	}
	suite_conn = PQconnectdb(base_uri);
	if (PQstatus(suite_conn) != CONNECTION_OK) {
		fprintf(stderr, "store.postgresql: %s",
			PQerrorMessage(suite_conn));
		PQfinish(suite_conn);
		pg_harness_stop(&harness);
		return 1;
	}
	failed = store_suite_run("store.postgresql", fresh_spec);
	failed += cmocka_run_group_tests_name("store.postgresql.backend",
					      tests, NULL, NULL);
	PQfinish(suite_conn);
	pg_harness_stop(&harness);
	return failed ? 1 : 0;
}
