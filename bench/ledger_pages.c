/*
 * The cost of a ledger page at 10 rows and at N (default 1 000 000): on
 * each store, fills a customer's ledger with N rows, then times ListLedger
 * pages through the use case (ops_list_ledger: token check, snapshot, the
 * store's keyset query): the first page, the last page (reached by paging
 * through every page, each timed), and the first and last pages with a
 * user filter and with onlyCharged; then what one retention batch (100
 * rows deleted in one transaction) costs. Not a test: it asserts nothing
 * about time and prints the figures.
 *
 *   bench_ledger_pages [--rows N] [--store sqlite|postgresql|both]
 *
 * The bulk rows are written with one INSERT ... SELECT per store (a
 * million store_apply calls would measure the fill, not the page). Rows:
 * 1000 users, 2000 devices, 1 in 100 charged, one second apart. The
 * PostgreSQL store runs on a private server (tests/store/pg_harness.c);
 * its planner statistics are refreshed (ANALYZE) after the fill, as
 * autovacuum would.
 */
#include <inttypes.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "service/ops/ops.h"
#include "service/store/store.h"
#include "tests/store/pg_harness.h"

#define BIG "11111111-1111-4111-8111-111111111111"
#define SMALL "22222222-2222-4222-8222-222222222222"
#define REPEAT 7

static const struct domain_principal reader = {
	.sub = "bench",
	.is_all_tenants = true,
	.scopes = DOMAIN_SCOPE_LEDGER,
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void die(const char *what)
{
	fprintf(stderr, "bench_ledger_pages: %s\n", what);
	exit(1);
}

static struct ops_text txt(const char *s)
{
	return (struct ops_text){s, strlen(s)};
}

/* One page; returns its time in ms. */
static double one_page(struct store *st, struct ops_ledger_query *q,
		       struct ops_ledger_page *pg)
{
	struct ops_result r;
	double t0 = now_ms();

	if (ops_list_ledger(st, &reader, q, &r, pg) != DAS_OK)
		die("ListLedger failed");
	return now_ms() - t0;
}

/* Median of REPEAT runs of the same page (same token). */
static double median_page(struct store *st, struct ops_ledger_query *q,
			  struct ops_ledger_page *pg)
{
	double t[REPEAT];

	for (int i = 0; i < REPEAT; i++)
		t[i] = one_page(st, q, pg);
	qsort(t, REPEAT, sizeof(t[0]), cmp_double);
	return t[REPEAT / 2];
}

/*
 * Pages through q from the start. Prints the median first-page time, the
 * median last-page time (that page again, by its token), the page count
 * and the spread of every page's single time.
 */
static void run_query(struct store *st, const char *label,
		      struct ops_ledger_query q)
{
	struct ops_ledger_page *pg = malloc(sizeof(*pg));
	char token[OPS_PAGE_TOKEN_SIZE] = "", last[OPS_PAGE_TOKEN_SIZE] = "";
	double *all = NULL, first, final;
	size_t n_pages = 0, cap = 0, n_rows = 0;

	if (!pg)
		die("out of memory");
	q.page_token = txt("");
	first = median_page(st, &q, pg);
	for (;;) {
		double t;

		snprintf(last, sizeof(last), "%s", token);
		q.page_token = txt(last);
		t = one_page(st, &q, pg);
		if (n_pages == cap) {
			cap = cap ? cap * 2 : 1024;
			all = realloc(all, cap * sizeof(*all));
			if (!all)
				die("out of memory");
		}
		all[n_pages++] = t;
		n_rows += pg->n;
		if (!pg->next_token[0])
			break;
		snprintf(token, sizeof(token), "%s", pg->next_token);
	}
	q.page_token = txt(last);
	final = median_page(st, &q, pg);
	qsort(all, n_pages, sizeof(*all), cmp_double);
	printf("  %-34s rows %8zu pages %6zu | first %7.3f ms | last %7.3f "
	       "ms | all pages p50 %6.3f p99 %6.3f max %7.3f ms\n",
	       label, n_rows, n_pages, first, final, all[n_pages / 2],
	       all[(n_pages * 99) / 100], all[n_pages - 1]);
	free(all);
	free(pg);
}

static void measure(struct store *st, const char *name, unsigned long rows)
{
	struct ops_ledger_query q;

	printf("%s, %lu ledger rows, page size 100:\n", name, rows);
	memset(&q, 0, sizeof(q));
	q.page_size = 100;
	q.tenant = txt(SMALL);
	run_query(st, "10-row customer, newest first", q);
	q.tenant = txt(BIG);
	run_query(st, "big customer, newest first", q);
	q.order = OPS_LEDGER_OLDEST_FIRST;
	run_query(st, "big customer, oldest first", q);
	q.order = 0;
	q.user = txt("u7");
	run_query(st, "big customer, userId=u7", q);
	q.user = txt("");
	q.device = txt("d1234");
	run_query(st, "big customer, deviceId=d1234", q);
	q.device = txt("");
	q.is_only_charged = true;
	run_query(st, "big customer, onlyCharged", q);
}

/*
 * Retention's unit of work: one transaction deleting 100 old rows, which
 * is the longest a writer can wait for it. Times 20 of them.
 */
static void measure_prune(struct store *st)
{
	double t[20];
	size_t n = 0, total = 0;

	for (int i = 0; i < 20; i++) {
		double t0 = now_ms();

		if (ops_ledger_prune(st, 1, das_time_now(), 100, 1, &n) < 0)
			die("prune");
		t[i] = now_ms() - t0;
		total += n;
	}
	qsort(t, 20, sizeof(t[0]), cmp_double);
	printf("  %-34s rows %8zu batches 20 | one batch of 100: p50 %.3f "
	       "ms, max %.3f ms\n",
	       "retention prune", total, t[10], t[19]);
}

/* The customers, and the 10-row ledger through the store. */
static void seed(struct store *st)
{
	const char *tenants[] = {BIG, SMALL};
	struct store_tx *tx = NULL;
	bool changed;

	for (int t = 0; t < 2; t++) {
		struct store_customer c;

		memset(&c, 0, sizeof(c));
		snprintf(c.tenant, sizeof(c.tenant), "%s", tenants[t]);
		if (store_begin(st, tenants[t], false, &tx) != STORE_OK ||
		    store_customer_put(tx, &c, &changed) != STORE_OK ||
		    store_user_put(tx, tenants[t], "u1", "", &changed) !=
			    STORE_OK ||
		    store_device_put(tx, tenants[t], "d1", "u1", &changed) !=
			    STORE_OK ||
		    store_commit(tx) != STORE_OK)
			die("seed");
	}
	for (int i = 0; i < 10; i++) {
		struct domain_change ch = {.user = "u1", .device = "d1"};
		struct store_actor a = {"bench", das_time_now(), "seed"};

		ch.from_type = i % 2 ? DAS_CLIENT_DESKTOP : DAS_CLIENT_NONE;
		ch.to_type = i % 2 ? DAS_CLIENT_NONE : DAS_CLIENT_DESKTOP;
		if (store_begin(st, SMALL, false, &tx) != STORE_OK ||
		    store_apply(tx, SMALL, &ch, 1, &a) != STORE_OK ||
		    store_commit(tx) != STORE_OK)
			die("seed ledger");
	}
}

static struct store *open_store(const char *spec)
{
	struct store_options opt = {.pool_size = 4, .busy_timeout_ms = 60000};
	struct store *st = NULL;
	char err[256];

	if (store_open(spec, &opt, &st, err, sizeof(err)) != STORE_OK) {
		fprintf(stderr, "%s\n", err);
		die("store_open");
	}
	return st;
}

static void bench_sqlite(unsigned long rows)
{
	char dir[] = "/tmp/das-ledger-bench-XXXXXX", path[128], spec[160],
	     sql[1024];
	struct store *st;
	sqlite3 *db;
	double t0;

	if (!mkdtemp(dir))
		die("mkdtemp");
	snprintf(path, sizeof(path), "%s/bench.db", dir);
	snprintf(spec, sizeof(spec), "sqlite:%s", path);
	st = open_store(spec);
	seed(st);
	store_close(st);
	t0 = now_ms();
	if (sqlite3_open(path, &db) != SQLITE_OK)
		die("sqlite3_open");
	snprintf(sql, sizeof(sql),
		 "BEGIN; WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + "
		 "1 FROM s WHERE i < %lu) INSERT INTO ledger (at_seconds, "
		 "at_nanos, tenant, user_id, device_id, from_type, to_type, "
		 "charged, actor, request_id) SELECT 1700000000 + i, 0, '" BIG
		 "', 'u' || (i %% 1000), 'd' || (i %% 2000), i %% 2, "
		 "1 - i %% 2, i %% 100 = 0, 'bench', 'bench-' || i FROM s; "
		 "COMMIT;",
		 rows);
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
		fprintf(stderr, "%s\n", sqlite3_errmsg(db));
		die("fill");
	}
	sqlite3_close(db);
	fprintf(stderr, "sqlite: filled %lu rows in %.1f s\n", rows,
		(now_ms() - t0) / 1e3);
	st = open_store(spec);
	measure(st, "sqlite", rows);
	measure_prune(st);
	store_close(st);
	snprintf(sql, sizeof(sql), "rm -rf '%s'", dir);
	if (system(sql) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

static void bench_postgres(unsigned long rows)
{
	struct pg_harness h;
	char uri[PG_HARNESS_URI_SIZE], err[256], sql[1024];
	struct store *st;
	PGconn *conn;
	PGresult *res;
	double t0;

	memset(&h, 0, sizeof(h));
	if (pg_harness_start(&h, err, sizeof(err)) != 0 ||
	    pg_harness_create_db(&h, uri, sizeof(uri), err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		die("postgresql");
	}
	st = open_store(uri);
	seed(st);
	t0 = now_ms();
	conn = PQconnectdb(uri);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO ledger (at_seconds, at_nanos, tenant, user_id, "
		 "device_id, from_type, to_type, is_charged, actor, "
		 "request_id) SELECT 1700000000 + i, 0, '" BIG "', 'u' || "
		 "(i %% 1000), 'd' || (i %% 2000), i %% 2, 1 - i %% 2, i %% 100 "
		 "= 0, 'bench', 'bench-' || i FROM generate_series(1, %lu) "
		 "AS i",
		 rows);
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		fprintf(stderr, "%s\n", PQerrorMessage(conn));
		die("fill");
	}
	PQclear(res);
	PQclear(PQexec(conn, "ANALYZE ledger"));
	PQfinish(conn);
	fprintf(stderr, "postgresql: filled %lu rows in %.1f s\n", rows,
		(now_ms() - t0) / 1e3);
	measure(st, "postgresql", rows);
	measure_prune(st);
	store_close(st);
	pg_harness_stop(&h);
}

int main(int argc, char **argv)
{
	unsigned long rows = 1000000;
	const char *which = "both";

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--rows") == 0 && i + 1 < argc)
			rows = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--store") == 0 && i + 1 < argc)
			which = argv[++i];
		else {
			fprintf(stderr, "usage: %s [--rows N] [--store "
					"sqlite|postgresql|both]\n",
				argv[0]);
			return 2;
		}
	}
	if (rows == 0)
		die("--rows must be at least 1");
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(which, "postgresql") != 0)
		bench_sqlite(rows);
	if (strcmp(which, "sqlite") != 0)
		bench_postgres(rows);
	return 0;
}
