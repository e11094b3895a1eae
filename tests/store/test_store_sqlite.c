/*
 * The store suite on the SQLite backend, plus what only SQLite has: the
 * file, WAL, the schema version and the spec's shape.
 *
 * Every database lives in one mkdtemp directory. The tests run in a child
 * process so the parent removes the directory whatever happens to them
 * (failed assertion, sanitizer abort, crash).
 */
#define _XOPEN_SOURCE 700 /* nftw */

#include <ftw.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "service/store/sqlite/sqlite_store.h"
#include "store_suite.h"

static char temp_dir[256];
static unsigned n_specs;

/* A new database file name in the temp dir, as a spec; the file is absent. */
static const char *fresh_spec(void)
{
	static char spec[STORE_SUITE_SPEC_SIZE];
	int n = snprintf(spec, sizeof(spec), "sqlite:%s/t%u.db", temp_dir,
			 ++n_specs);

	return n > 0 && (size_t)n < sizeof(spec) ? spec : NULL;
}

static const char *path_of(const char *spec)
{
	return spec + strlen("sqlite:");
}

static void sql_int(const char *path, const char *sql, int64_t *out)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE,
					 NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	*out = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
}

static void sql_text(const char *path, const char *sql, char *out,
		     size_t size)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE,
					 NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	snprintf(out, size, "%s", (const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
	sqlite3_close(db);
}

static void test_accepts(void **state)
{
	assert_true(store_sqlite_ops.accepts("sqlite:x.db"));
	assert_true(store_sqlite_ops.accepts("sqlite:/var/lib/das.db"));
	assert_false(store_sqlite_ops.accepts("sqlite"));
	assert_false(store_sqlite_ops.accepts("SQLITE:x.db"));
	assert_false(store_sqlite_ops.accepts("postgresql://h/db"));
	assert_false(store_sqlite_ops.accepts(""));
	assert_string_equal(store_sqlite_ops.name, "sqlite");
}

static void test_open_creates_file_wal_and_schema_version(void **state)
{
	const char *spec = fresh_spec();
	struct store *st = NULL;
	struct stat sb;
	char err[256], mode[16];
	int64_t version = 0, n_tables = 0;

	assert_int_not_equal(stat(path_of(spec), &sb), 0);
	assert_int_equal(store_open(spec, NULL, &st, err, sizeof(err)),
			 STORE_OK);
	assert_int_equal(stat(path_of(spec), &sb), 0);

	sql_int(path_of(spec), "PRAGMA user_version", &version);
	assert_int_equal(version, 3);
	sql_text(path_of(spec), "PRAGMA journal_mode", mode, sizeof(mode));
	assert_string_equal(mode, "wal");
	sql_int(path_of(spec),
		"SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND "
		"name IN ('customers', 'users', 'devices', 'assignments', "
		"'ledger')",
		&n_tables);
	assert_int_equal(n_tables, 5);
	store_close(st);

	/* A second open migrates nothing and keeps the version. */
	st = NULL;
	assert_int_equal(store_open(spec, NULL, &st, err, sizeof(err)),
			 STORE_OK);
	store_close(st);
	sql_int(path_of(spec), "PRAGMA user_version", &version);
	assert_int_equal(version, 3);
}

/*
 * A database written by the first release (schema version 1) is migrated
 * on open: its ledger rows stay, with no request id; every user's seat
 * starts uncharged; the page-token key is made once.
 */
static void test_open_migrates_version_1(void **state)
{
	static const char v1[] =
		"CREATE TABLE customers (tenant TEXT PRIMARY KEY NOT NULL,"
		" account TEXT, name TEXT NOT NULL, included_seats INTEGER)"
		" STRICT;"
		"CREATE TABLE users (tenant TEXT NOT NULL REFERENCES customers"
		" (tenant), user_id TEXT NOT NULL, roles TEXT NOT NULL,"
		" PRIMARY KEY (tenant, user_id)) STRICT, WITHOUT ROWID;"
		"CREATE TABLE devices (tenant TEXT NOT NULL, device_id TEXT NOT"
		" NULL, owner_user_id TEXT NOT NULL, PRIMARY KEY (tenant,"
		" device_id), UNIQUE (tenant, device_id, owner_user_id))"
		" STRICT, WITHOUT ROWID;"
		"CREATE TABLE assignments (tenant TEXT NOT NULL, device_id TEXT"
		" NOT NULL, user_id TEXT NOT NULL, client_type INTEGER NOT"
		" NULL, PRIMARY KEY (tenant, device_id),"
		" UNIQUE (tenant, user_id, client_type)) STRICT, WITHOUT ROWID;"
		"CREATE TABLE ledger (id INTEGER PRIMARY KEY AUTOINCREMENT,"
		" at_seconds INTEGER NOT NULL, at_nanos INTEGER NOT NULL,"
		" tenant TEXT NOT NULL, user_id TEXT NOT NULL, device_id TEXT"
		" NOT NULL, from_type INTEGER NOT NULL, to_type INTEGER NOT"
		" NULL, charged INTEGER NOT NULL, actor TEXT NOT NULL) STRICT;"
		"CREATE INDEX ledger_by_tenant ON ledger (tenant, id);"
		"INSERT INTO customers VALUES"
		" ('11111111-1111-4111-8111-111111111111', NULL, 'Old', 1);"
		"INSERT INTO users VALUES"
		" ('11111111-1111-4111-8111-111111111111', 'u1', '');"
		"INSERT INTO ledger (at_seconds, at_nanos, tenant, user_id,"
		" device_id, from_type, to_type, charged, actor) VALUES"
		" (1000, 0, '11111111-1111-4111-8111-111111111111', 'u1', 'd1',"
		" 0, 1, 1, 'old-actor');"
		"PRAGMA user_version = 1;";
	const char *spec = fresh_spec();
	struct store *st = NULL;
	struct store_ledger_row rows[4];
	unsigned char key1[STORE_LEDGER_KEY_SIZE], key2[STORE_LEDGER_KEY_SIZE];
	sqlite3 *db = NULL;
	char err[256];
	size_t n = 0;
	int64_t version = 0, n_charged = -1;

	(void)state;
	assert_int_equal(sqlite3_open(path_of(spec), &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, v1, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	assert_int_equal(store_open(spec, NULL, &st, err, sizeof(err)),
			 STORE_OK);
	sql_int(path_of(spec), "PRAGMA user_version", &version);
	assert_int_equal(version, 3);
	assert_int_equal(store_ledger_read(st,
					   "11111111-1111-4111-8111-111111111111",
					   0, rows, 4, &n),
			 STORE_OK);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].actor, "old-actor");
	assert_string_equal(rows[0].request_id, "");
	assert_true(rows[0].is_charged);
	sql_int(path_of(spec), "SELECT count(*) FROM users WHERE seat_charged",
		&n_charged);
	assert_int_equal(n_charged, 0);
	store_ledger_key(st, key1);
	store_close(st);
	st = NULL;
	assert_int_equal(store_open(spec, NULL, &st, err, sizeof(err)),
			 STORE_OK);
	store_ledger_key(st, key2);
	store_close(st);
	assert_memory_equal(key1, key2, sizeof(key1));
}

/* Seats in use of a customer as the store loads them. */
static int64_t loaded_seats(struct store *st, const char *tenant)
{
	struct domain_key key;
	struct domain_snapshot snap;
	struct store_tx *tx = NULL;

	memset(&key, 0, sizeof(key));
	snprintf(key.customer, sizeof(key.customer), "%s", tenant);
	assert_int_equal(store_begin(st, tenant, true, &tx), STORE_OK);
	assert_int_equal(store_load(tx, &key, &snap), STORE_OK);
	assert_int_equal(store_commit(tx), STORE_OK);
	return snap.seats_in_use;
}

/*
 * A version-2 database (seats counted on every request) is migrated on
 * open: each customer's stored seat count starts from the assignments it
 * holds (a user with two devices is one seat), and the count is kept from
 * then on.
 */
static void test_open_migrates_version_2_seat_counts(void **state)
{
	static const char rows[] =
		"INSERT INTO customers (tenant, name) VALUES"
		" ('11111111-1111-4111-8111-111111111111', 'A'),"
		" ('22222222-2222-4222-8222-222222222222', 'B');"
		"INSERT INTO users (tenant, user_id, roles) VALUES"
		" ('11111111-1111-4111-8111-111111111111', 'u1', ''),"
		" ('11111111-1111-4111-8111-111111111111', 'u2', ''),"
		" ('11111111-1111-4111-8111-111111111111', 'u3', ''),"
		" ('22222222-2222-4222-8222-222222222222', 'v1', '');"
		"INSERT INTO devices VALUES"
		" ('11111111-1111-4111-8111-111111111111', 'd1', 'u1'),"
		" ('11111111-1111-4111-8111-111111111111', 'd2', 'u1'),"
		" ('11111111-1111-4111-8111-111111111111', 'd3', 'u2'),"
		" ('11111111-1111-4111-8111-111111111111', 'd4', 'u3');"
		"INSERT INTO assignments VALUES"
		" ('11111111-1111-4111-8111-111111111111', 'd1', 'u1', 1),"
		" ('11111111-1111-4111-8111-111111111111', 'd2', 'u1', 2),"
		" ('11111111-1111-4111-8111-111111111111', 'd3', 'u2', 1);"
		/* Back to what version 2 was. */
		"DROP TRIGGER seat_taken; DROP TRIGGER seat_freed;"
		"DROP TRIGGER seat_owner_fixed;"
		"ALTER TABLE customers DROP COLUMN seats_in_use;"
		"PRAGMA user_version = 2;";
	const char *spec = fresh_spec();
	struct store *st = NULL;
	sqlite3 *db = NULL;
	char err[256];
	int64_t version = 0;

	(void)state;
	assert_int_equal(store_open(spec, NULL, &st, err, sizeof(err)),
			 STORE_OK);
	store_close(st);
	st = NULL;
	assert_int_equal(sqlite3_open(path_of(spec), &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, rows, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	sql_int(path_of(spec), "PRAGMA user_version", &version);
	assert_int_equal(version, 2);

	assert_int_equal(store_open(spec, NULL, &st, err, sizeof(err)),
			 STORE_OK);
	sql_int(path_of(spec), "PRAGMA user_version", &version);
	assert_int_equal(version, 3);
	assert_int_equal(
		loaded_seats(st, "11111111-1111-4111-8111-111111111111"), 2);
	assert_int_equal(
		loaded_seats(st, "22222222-2222-4222-8222-222222222222"), 0);
	store_close(st);
}

static void test_open_refuses_newer_schema(void **state)
{
	const char *spec = fresh_spec();
	struct store *st = NULL;
	sqlite3 *db = NULL;
	char err[256] = "";

	assert_int_equal(sqlite3_open(path_of(spec), &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL,
				      NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);

	assert_int_equal(store_open(spec, NULL, &st, err, sizeof(err)),
			 STORE_ERROR);
	assert_null(st);
	assert_non_null(strstr(err, "newer"));
}

static void test_open_refuses_bad_paths(void **state)
{
	struct store *st = NULL;
	char err[256] = "", spec[STORE_SUITE_SPEC_SIZE];

	assert_int_equal(store_open("sqlite:", NULL, &st, err, sizeof(err)),
			 STORE_ERROR);
	assert_non_null(strstr(err, "file path"));
	assert_int_equal(
		store_open("sqlite::memory:", NULL, &st, err, sizeof(err)),
		STORE_ERROR);

	/* Missing folders are created; a path through a file is refused. */
	char plain[300];
	snprintf(plain, sizeof(plain), "%s/plain", temp_dir);
	FILE *f = fopen(plain, "w");
	assert_non_null(f);
	fclose(f);
	snprintf(spec, sizeof(spec), "sqlite:%s/x.db", plain);
	err[0] = '\0';
	assert_int_equal(store_open(spec, NULL, &st, err, sizeof(err)),
			 STORE_ERROR);
	assert_null(st);
	assert_non_null(strstr(err, "plain"));
	unlink(plain);
}

static void test_open_creates_missing_folders(void **state)
{
	struct store *st = NULL;
	char err[256] = "", spec[STORE_SUITE_SPEC_SIZE];
	char dir[300];
	struct stat sb;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/var", temp_dir);
	snprintf(spec, sizeof(spec), "sqlite:%s/das.db", dir);
	assert_int_equal(store_open(spec, NULL, &st, err, sizeof(err)),
			 STORE_OK);
	store_close(st);
	assert_int_equal(stat(dir, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
}

static int run_all(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accepts),
		cmocka_unit_test(test_open_creates_file_wal_and_schema_version),
		cmocka_unit_test(test_open_refuses_newer_schema),
		cmocka_unit_test(test_open_migrates_version_1),
		cmocka_unit_test(test_open_migrates_version_2_seat_counts),
		cmocka_unit_test(test_open_refuses_bad_paths),
		cmocka_unit_test(test_open_creates_missing_folders),
	};
	int n_failed = cmocka_run_group_tests_name("store.sqlite.backend",
						   tests, NULL, NULL);

	n_failed += store_suite_run("store.sqlite", fresh_spec);
	return n_failed;
}

static int remove_entry(const char *path, const struct stat *sb, int type,
			struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if ((type == FTW_DP ? rmdir(path) : unlink(path)) != 0)
		perror(path);
	return 0;
}

/* Everything below the directory, folders a test created included. */
static void remove_temp_dir(void)
{
	nftw(temp_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");
	int status = 0;
	pid_t pid;

	snprintf(temp_dir, sizeof(temp_dir), "%s/das-store-sqlite.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(temp_dir)) {
		perror("mkdtemp");
		return 1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		remove_temp_dir();
		return 1;
	}
	/* exit(), not _exit(): LeakSanitizer reports at exit. */
	if (pid == 0)
		exit(run_all() == 0 ? 0 : 1);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno == EINTR)
			continue;
		perror("waitpid");
		status = 1 << 8;
		break;
	}
	remove_temp_dir();
	if (WIFSIGNALED(status)) {
		fprintf(stderr, "tests died of signal %d\n", WTERMSIG(status));
		return 1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
