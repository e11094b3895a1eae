/*
 * The log's VFS (service/store/sqlite/wal_append.h) over the crash VFS,
 * which counts writes and syncs:
 *
 * - one_write_per_commit: a commit of several pages reaches the log in one
 *   write and one sync (straight through the crash VFS: two writes per
 *   page), and another connection reads the commit at once.
 * - spilled_frames_read_back: a transaction larger than the page cache
 *   spills frames to the log before its commit and reads them back, and
 *   rewrites some; one such transaction commits and one rolls back. The
 *   database reopened without this VFS holds exactly the committed rows
 *   and passes integrity_check.
 * - padded_log_written_through: a log that SQLite pads to the sector
 *   size (no "powersafe overwrite") is written through, and each commit
 *   reads back at once.
 * - large_commit_in_pieces: a commit of about 600 KiB (more than one write
 *   takes) arrives whole.
 */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */

#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "crash_vfs.h"
#include "service/store/sqlite/wal_append.h"

static char temp_dir[] = "/tmp/das-wal-append-XXXXXX";
static unsigned n_dbs;

static int rm_entry(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void rm_temp_dir(void)
{
	nftw(temp_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *fresh_path(void)
{
	static char path[256];

	snprintf(path, sizeof(path), "%s/w%u.db", temp_dir, ++n_dbs);
	return path;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg ? msg : "?");
}

static int64_t query_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s = NULL;
	int64_t v;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) != SQLITE_ROW)
		fail_msg("%s: %s (%d)", sql, sqlite3_errmsg(db),
			 sqlite3_extended_errcode(db));
	v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

/* A database in WAL mode with synchronous=FULL, as the store opens it. */
static sqlite3 *open_db(const char *path, const char *vfs)
{
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open_v2(path, &db,
					 SQLITE_OPEN_READWRITE |
						 SQLITE_OPEN_CREATE,
					 vfs),
			 SQLITE_OK);
	exec_ok(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
		    "PRAGMA wal_autocheckpoint = 0");
	return db;
}

/* Writes and syncs of one commit of rows rows of 1000 bytes. */
static unsigned long commit_events(sqlite3 *db, int first, int rows)
{
	char sql[160];

	exec_ok(db, "BEGIN");
	for (int i = first; i < first + rows; i++) {
		snprintf(sql, sizeof(sql),
			 "INSERT INTO t VALUES (%d, randomblob(1000))", i);
		exec_ok(db, sql);
	}
	crash_vfs_arm(0); /* counts from here */
	exec_ok(db, "COMMIT");
	return crash_vfs_events();
}

static void one_write_per_commit(void **state)
{
	const char *path = fresh_path();
	sqlite3_vfs *vfs = NULL;
	sqlite3 *db, *plain, *reader;
	unsigned long gathered, direct;

	(void)state;
	assert_int_equal(wal_append_vfs_register(NULL, &vfs), SQLITE_OK);
	db = open_db(path, vfs->zName);
	exec_ok(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
	gathered = commit_events(db, 0, 12);
	sqlite3_close(db);

	plain = open_db(fresh_path(), NULL);
	exec_ok(plain, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
	direct = commit_events(plain, 0, 12);
	sqlite3_close(plain);
	printf("wal append: a commit of 12 rows of 1000 bytes made %lu writes "
	       "and syncs, %lu without it\n",
	       gathered, direct);
	assert_int_equal(gathered, 2); /* one write, one sync */
	assert_true(direct >= 9);

	/* Another connection sees each commit once it returned. */
	db = open_db(path, vfs->zName);
	reader = open_db(path, NULL);
	for (int i = 0; i < 5; i++) {
		commit_events(db, 100 + 3 * i, 3);
		assert_int_equal(query_int(reader, "SELECT count(*) FROM t"),
				 12 + 3 * (i + 1));
	}
	sqlite3_close(reader);
	sqlite3_close(db);
	wal_append_vfs_unregister(vfs);
}

static void spilled_frames_read_back(void **state)
{
	const char *path = fresh_path();
	sqlite3_vfs *vfs = NULL;
	sqlite3 *db;
	int64_t sum;

	(void)state;
	assert_int_equal(wal_append_vfs_register(NULL, &vfs), SQLITE_OK);
	db = open_db(path, vfs->zName);
	exec_ok(db, "PRAGMA cache_size = 10;" /* pages: spills at once */
		    "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, v BLOB);"
		    "CREATE INDEX t_n ON t (n)");
	for (int round = 0; round < 2; round++) {
		exec_ok(db, "BEGIN");
		exec_ok(db, "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL "
			    "SELECT i + 1 FROM k WHERE i < 400) "
			    "INSERT INTO t (n, v) SELECT i, randomblob(700) "
			    "FROM k");
		/* Pages spilled to the log are read back and written
		 * again, several times. */
		for (int pass = 0; pass < 3; pass++)
			exec_ok(db, "UPDATE t SET n = n + 1, v = randomblob(700)"
				    " WHERE id % 3 = 0");
		assert_int_equal(query_int(db, "SELECT count(*) FROM t"),
				 400 * (round + 1));
		exec_ok(db, round == 0 ? "COMMIT" : "ROLLBACK");
	}
	sum = query_int(db, "SELECT sum(n) FROM t");
	sqlite3_close(db);
	wal_append_vfs_unregister(vfs);

	/* Reopened without the gathering VFS: what was committed. */
	db = open_db(path, NULL);
	assert_int_equal(query_int(db, "SELECT count(*) FROM t"), 400);
	assert_int_equal(query_int(db, "SELECT sum(n) FROM t"), sum);
	assert_int_equal(sum, 400 * 401 / 2 + 3 * (400 / 3));
	assert_int_equal(query_int(db, "SELECT count(*) FROM t WHERE "
				       "length(v) = 700"),
			 400);
	{
		sqlite3_stmt *s = NULL;

		assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check",
						    -1, &s, NULL),
				 SQLITE_OK);
		assert_int_equal(sqlite3_step(s), SQLITE_ROW);
		assert_string_equal((const char *)sqlite3_column_text(s, 0),
				    "ok");
		sqlite3_finalize(s);
	}
	sqlite3_close(db);
}

/*
 * A file without "powersafe overwrite" (psow=0) makes SQLite pad each
 * commit to the sector size and write the padding's rest after its sync:
 * such a log is written through, and every commit reads back at once.
 */
static void padded_log_written_through(void **state)
{
	const char *path = fresh_path();
	char uri[300];
	sqlite3_vfs *vfs = NULL;
	sqlite3 *db = NULL, *reader;
	unsigned long events = 0;

	(void)state;
	assert_int_equal(wal_append_vfs_register(NULL, &vfs), SQLITE_OK);
	snprintf(uri, sizeof(uri), "file:%s?psow=0", path);
	assert_int_equal(sqlite3_open_v2(uri, &db,
					 SQLITE_OPEN_READWRITE |
						 SQLITE_OPEN_CREATE |
						 SQLITE_OPEN_URI,
					 vfs->zName),
			 SQLITE_OK);
	exec_ok(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
		    "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
	reader = open_db(path, NULL);
	for (int i = 0; i < 5; i++) {
		events += commit_events(db, 3 * i, 3);
		assert_int_equal(query_int(reader, "SELECT count(*) FROM t"),
				 3 * (i + 1));
	}
	assert_true(events > 5 * 2);
	sqlite3_close(reader);
	sqlite3_close(db);
	wal_append_vfs_unregister(vfs);
}

static void large_commit_in_pieces(void **state)
{
	const char *path = fresh_path();
	sqlite3_vfs *vfs = NULL;
	sqlite3 *db, *reader;
	unsigned long events;

	(void)state;
	assert_int_equal(wal_append_vfs_register(NULL, &vfs), SQLITE_OK);
	db = open_db(path, vfs->zName);
	reader = open_db(path, NULL);
	exec_ok(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
	events = commit_events(db, 0, 600);
	printf("wal append: a commit of 600 rows of 1000 bytes made %lu "
	       "writes and syncs\n",
	       events);
	assert_true(events >= 3 && events <= 12);
	assert_int_equal(query_int(reader, "SELECT count(*) FROM t"), 600);
	assert_int_equal(query_int(reader, "SELECT sum(length(v)) FROM t"),
			 600 * 1000);
	sqlite3_close(reader);
	sqlite3_close(db);
	wal_append_vfs_unregister(vfs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(one_write_per_commit),
		cmocka_unit_test(spilled_frames_read_back),
		cmocka_unit_test(padded_log_written_through),
		cmocka_unit_test(large_commit_in_pieces),
	};

	if (!mkdtemp(temp_dir)) {
		perror("mkdtemp");
		return 1;
	}
	atexit(rm_temp_dir);
	if (crash_vfs_register() != SQLITE_OK)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
