/*
 * The SQLite backend (--store sqlite:PATH).
 *
 * Why it is built this way:
 *
 * - Durability: WAL with synchronous=FULL syncs the log on every commit, so
 *   a commit that returned survives a crash or kill -9. That fsync (~1-3 ms
 *   on the disks we run on) is the whole cost of a write, so writers share
 *   it: group commit, below.
 *
 * - Writers go through one dedicated connection, one at a time (a mutex),
 *   so the seat count read by load() and the change written by apply() are
 *   one atomic step. The batch's outer transaction is "BEGIN IMMEDIATE",
 *   which also excludes writers in other processes on the same file.
 *   SQLite's own busy handler is not used to order our threads: it sleeps
 *   1..100 ms between tries, far longer than a write takes.
 *
 * - Group commit. Each write transaction is a SAVEPOINT inside the batch's
 *   outer transaction. When a writer ends while others are queued on the
 *   mutex, it leaves the outer transaction open, hands over, and waits; the
 *   last writer of the batch (nobody queued, or BATCH_MAX reached) commits
 *   once and wakes everybody with the result. So store_commit still returns
 *   only once its change is durable, a rolled-back writer undoes only its
 *   savepoint, and a failed commit fails every member of the batch. A
 *   writer that changed nothing (or was refused) does not wait for a
 *   commit that holds nothing of its own, unless its answer rests on the
 *   open batch (sq_commit).
 *
 * - Writes handed over (store_submit: assign and unassign) wait for
 *   nothing: one thread leads, running every queued job in its writer
 *   turn (no savepoint per job: jobs_run_plain) and answering each
 *   through its done once the batch is durable (sq_submit). A writer thread per move made batches no larger
 *   than the worker threads and cost each move two sleeps (the writer
 *   mutex, the commit).
 *
 * - Readers on other connections never see a change before it is durable:
 *   they see a batch only after its COMMIT, and in WAL mode with
 *   synchronous=FULL SQLite syncs the log before it publishes the commit
 *   in the wal-index header that other connections read their snapshot
 *   from (walFrames() in wal.c: sqlite3OsSync, then walIndexWriteHdr; a
 *   failed sync returns before publishing). This is what lets the use
 *   cases answer an idempotent repeat from a read alone, without the
 *   writer mutex or a place in a batch (store.h).
 *
 * - Readers use a pool of connections, each used by one transaction at a
 *   time; "BEGIN" (deferred) gives them a consistent snapshot. A
 *   transaction is embedded in its connection, so begin() allocates nothing.
 *
 * - Integrity lives in the schema, not only in the rules: a device has one
 *   assignment (primary key), a user one device per type (unique), an
 *   assignment belongs to the device's owner and an existing user (foreign
 *   keys). The foreign keys are immediate: a deferred one would be checked
 *   only at the batch's commit and fail the other members too. A rules bug
 *   thus ends in an error at the statement, never in a state the contract
 *   forbids.
 *
 * - apply() checks each change against the stored state (a change "from
 *   type 1" must find the device at type 1), so every ledger row tells what
 *   really happened. A mismatch means the snapshot was stale or the rules
 *   are wrong: STORE_ERROR, and the caller rolls back.
 *
 * - Statements are prepared once per connection at open, so a request does
 *   no SQL parsing and a typo in SQL fails at start, not at the first call.
 *   Their texts and the schema's are in sqlite_sql.c.
 *
 * - The store says when it cannot take a write (STORE_UNAVAILABLE): disk
 *   full, read-only file or file system, I/O errors. A database file
 *   deleted or replaced under the running server is the worst case: SQLite
 *   would keep writing into the unlinked inode and every acknowledged
 *   change would vanish at the next start (the same for its -wal file).
 *   So the store keeps its own descriptors of the files it opened and,
 *   before each batch and on each probe, compares them with what the
 *   paths name now (link count, device and inode); once they differ it
 *   refuses every write until a restart, and says why in the log.
 */
#include "sqlite_store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/metrics.h"
#include "service/store/sqlite/sqlite_sql.h"
#include "service/store/sqlite/wal_append.h"

#define SPEC_PREFIX "sqlite:"
#define POOL_MAX 256
#define ACTOR_MAX (DOMAIN_SUB_SIZE - 1)
#define BATCH_MAX 64 /* writers sharing one fsync, at most */
_Static_assert(BATCH_MAX <= 64, "a turn's jobs are bits of one uint64_t");

struct sqlite_conn;

struct sqlite_tx {
	struct store_tx base; /* first: handed out as struct store_tx */
	struct sqlite_conn *conn;
	bool is_read_only;
	/* A writer: the connection's row changes when its savepoint began,
	 * and whether it wrote something rows do not count (the probe). */
	int64_t changes_at_begin;
	bool is_write_forced;
	/* The writer's turn runs in its savepoint "writer"; false only for a
	 * leader's turn that opened its batch (begin_write). */
	bool has_savepoint;
};

struct sqlite_conn {
	struct sqlite_tx tx; /* the one transaction this connection runs */
	sqlite3 *db;
	sqlite3_stmt *stmts[STMT__COUNT];
};

/* A writer waiting for its batch's commit; lives on its own stack. */
struct batch_waiter {
	struct batch_waiter *next;
	enum store_result result;
	bool is_done;
	bool has_changes; /* counts as a writer of the batch */
};

/* Which file a descriptor holds: fixed for as long as it is open. */
struct file_id {
	dev_t dev;
	ino_t ino;
};

struct sqlite_store {
	struct store base; /* first: handed out as struct store */
	unsigned char ledger_key[STORE_LEDGER_KEY_SIZE];
	unsigned n_conns;
	struct sqlite_conn *conns; /* [0] the writer, then the readers */

	pthread_mutex_t lock; /* guards free_conns / n_free */
	pthread_cond_t has_free;
	struct sqlite_conn **free_conns; /* stack of n_free idle readers */
	unsigned n_free;

	/* The writer: the mutex is held from begin to end of a write tx. */
	pthread_mutex_t writer;
	atomic_uint n_queued; /* writers waiting for the mutex */
	bool is_batch_open;   /* the outer BEGIN IMMEDIATE is open */
	unsigned batch_len;   /* writers in the open batch */
	struct batch_waiter *waiters;
	pthread_mutex_t done_lock; /* guards waiters' is_done / result */
	pthread_cond_t is_batch_done;

	/* Writes handed over by store_submit, run by the leader (sq_submit). */
	pthread_mutex_t jobs_lock; /* guards the three below */
	struct store_job *jobs, *jobs_tail;
	bool is_leading; /* a thread is running the queued jobs */

	/* Gathers the log's appends into one write per sync (wal_append.h);
	 * NULL: the default VFS alone. */
	sqlite3_vfs *wal_vfs;

	/* The database file as opened, to notice it deleted or replaced. */
	char path[PATH_MAX];
	int file_fd; /* -1 when not open */
	struct file_id file_id;
	char wal_path[PATH_MAX + 8];
	int wal_fd; /* the write-ahead log as opened; -1: none */
	struct file_id wal_id;
	atomic_bool is_file_lost; /* latched: refuse writes until restart */
	_Atomic uint64_t file_seen_ns; /* when a reader last checked the file */
};

/* Readers look whether the file is still ours at most this often. */
#define READER_FILE_CHECK_NS 1000000u

static bool sq_accepts(const char *spec)
{
	return spec && strncmp(spec, SPEC_PREFIX, strlen(SPEC_PREFIX)) == 0;
}

/* Maps an SQLite result code to a store result, logging real errors. */
static enum store_result sq_fail(sqlite3 *db, int sqlite_rc, const char *what)
{
	int primary = sqlite_rc & 0xff;

	if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
		das_log(DAS_LOG_DEBUG, "sqlite: %s: %s (retry)", what,
			sqlite3_errmsg(db));
		return STORE_RETRY;
	}
	/* The disk, not the request: the store cannot take the write. */
	if (primary == SQLITE_FULL || primary == SQLITE_IOERR ||
	    primary == SQLITE_READONLY || primary == SQLITE_CANTOPEN) {
		das_log(DAS_LOG_ERROR,
			"sqlite: %s: %s (code %d): the store cannot write",
			what, sqlite3_errmsg(db), sqlite_rc);
		return STORE_UNAVAILABLE;
	}
	das_log(DAS_LOG_ERROR, "sqlite: %s: %s (code %d)", what,
		sqlite3_errmsg(db), sqlite_rc);
	return STORE_ERROR;
}

static sqlite3_stmt *stmt(struct sqlite_conn *c, enum stmt_id id)
{
	return c->stmts[id];
}

/*
 * Runs a bound statement that returns no rows, then resets it. Returns a
 * store result; *n_changed (may be NULL) gets the rows it changed.
 */
static enum store_result run(struct sqlite_conn *c, enum stmt_id id,
			     const char *what, int *n_changed)
{
	sqlite3_stmt *s = stmt(c, id);
	int sqlite_rc = sqlite3_step(s);
	enum store_result result = STORE_OK;

	if (sqlite_rc != SQLITE_DONE)
		result = sq_fail(c->db, sqlite_rc, what);
	else if (n_changed)
		*n_changed = sqlite3_changes(c->db);
	sqlite3_reset(s);
	return result;
}

/* Binds a C string, or NULL as SQL NULL; the string must outlive the step. */
static int bind_text(sqlite3_stmt *s, int idx, const char *text)
{
	if (!text)
		return sqlite3_bind_null(s, idx);
	return sqlite3_bind_text(s, idx, text, -1, SQLITE_STATIC);
}

/* Copies a text column into dst, truncated to fit; NULL gives "". */
static void column_copy(sqlite3_stmt *s, int col, char *dst, size_t size)
{
	const unsigned char *t = sqlite3_column_text(s, col);
	size_t n = t ? (size_t)sqlite3_column_bytes(s, col) : 0;

	if (n >= size)
		n = size - 1;
	if (n)
		memcpy(dst, t, n);
	dst[n] = '\0';
}

static enum store_result bind_fail(struct sqlite_conn *c, enum stmt_id id,
				   int sqlite_rc, const char *what)
{
	sqlite3_reset(stmt(c, id));
	return sq_fail(c->db, sqlite_rc, what);
}

/* ---- the pool ---- */

static struct sqlite_conn *pool_take(struct sqlite_store *st)
{
	struct sqlite_conn *c;

	uint64_t t0 = 0;

	pthread_mutex_lock(&st->lock);
	if (st->n_free == 0)
		t0 = das_metric_now_ns();
	while (st->n_free == 0)
		pthread_cond_wait(&st->has_free, &st->lock);
	c = st->free_conns[--st->n_free];
	pthread_mutex_unlock(&st->lock);
	if (t0)
		store_metric_pool_wait("sqlite", das_metric_now_ns() - t0);
	return c;
}

static void pool_give(struct sqlite_store *st, struct sqlite_conn *c)
{
	pthread_mutex_lock(&st->lock);
	st->free_conns[st->n_free++] = c;
	pthread_cond_signal(&st->has_free);
	pthread_mutex_unlock(&st->lock);
}

static struct sqlite_store *store_of(struct sqlite_tx *tx)
{
	return (struct sqlite_store *)tx->base.st;
}


/* ---- opening ---- */

/* Runs a statement that returns one row of one column, as text or int. */
static int query_one(sqlite3 *db, const char *sql, char *text,
		     size_t text_size, int64_t *number)
{
	sqlite3_stmt *s = NULL;
	int sqlite_rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);

	if (sqlite_rc == SQLITE_OK) {
		sqlite_rc = sqlite3_step(s);
		if (sqlite_rc == SQLITE_ROW) {
			if (text)
				column_copy(s, 0, text, text_size);
			if (number)
				*number = sqlite3_column_int64(s, 0);
			sqlite_rc = SQLITE_OK;
		} else if (sqlite_rc == SQLITE_DONE) {
			/* No row: the pragma is unknown. */
			sqlite_rc = SQLITE_EMPTY;
		}
	}
	sqlite3_finalize(s);
	return sqlite_rc;
}

/* Stores a fresh random key for page tokens (schema version 2). */
static int insert_ledger_key(sqlite3 *db)
{
	unsigned char key[STORE_LEDGER_KEY_SIZE];
	sqlite3_stmt *s = NULL;
	int sqlite_rc;

	if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key))
		return SQLITE_ERROR;
	sqlite_rc = sqlite3_prepare_v2(
		db, "INSERT INTO ledger_key VALUES (1, ?1)", -1, &s, NULL);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = sqlite3_bind_blob(s, 1, key, sizeof(key),
					      SQLITE_STATIC);
	if (sqlite_rc == SQLITE_OK) {
		sqlite_rc = sqlite3_step(s);
		if (sqlite_rc == SQLITE_DONE)
			sqlite_rc = SQLITE_OK;
	}
	sqlite3_finalize(s);
	return sqlite_rc;
}

/* Reads the page-token key written by insert_ledger_key. */
static int read_ledger_key(sqlite3 *db, unsigned char *key)
{
	sqlite3_stmt *s = NULL;
	int sqlite_rc = sqlite3_prepare_v2(
		db, "SELECT key FROM ledger_key WHERE id = 1", -1, &s, NULL);

	if (sqlite_rc == SQLITE_OK) {
		sqlite_rc = sqlite3_step(s);
		if (sqlite_rc == SQLITE_ROW &&
		    sqlite3_column_bytes(s, 0) == STORE_LEDGER_KEY_SIZE) {
			memcpy(key, sqlite3_column_blob(s, 0),
			       STORE_LEDGER_KEY_SIZE);
			sqlite_rc = SQLITE_OK;
		} else if (sqlite_rc == SQLITE_ROW ||
			   sqlite_rc == SQLITE_DONE) {
			sqlite_rc = SQLITE_CORRUPT;
		}
	}
	sqlite3_finalize(s);
	return sqlite_rc;
}

/*
 * Creates the schema of an empty database, or checks the version of an
 * existing one. Runs under BEGIN IMMEDIATE so two processes starting on the
 * same new file do not both create it.
 */
static enum store_result migrate(sqlite3 *db, const char *path, char *err,
				 size_t err_size)
{
	int64_t version = -1;
	int sqlite_rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);

	if (sqlite_rc != SQLITE_OK)
		goto fail;
	sqlite_rc = query_one(db, "PRAGMA user_version", NULL, 0, &version);
	if (sqlite_rc != SQLITE_OK)
		goto fail;
	if (version > SQLITE_SCHEMA_VERSION) {
		snprintf(err, err_size,
			 "sqlite: %s has schema version %lld, newer than this "
			 "program's %d",
			 path, (long long)version, SQLITE_SCHEMA_VERSION);
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return STORE_ERROR;
	}
	if (version < SQLITE_SCHEMA_VERSION) {
		char sql[64];

		if (version < 1)
			sqlite_rc = sqlite3_exec(db, sqlite_schema_v1, NULL,
						 NULL, NULL);
		if (sqlite_rc == SQLITE_OK && version < 2)
			sqlite_rc = sqlite3_exec(db, sqlite_schema_v2, NULL,
						 NULL, NULL);
		if (sqlite_rc == SQLITE_OK && version < 2)
			sqlite_rc = insert_ledger_key(db);
		if (sqlite_rc == SQLITE_OK && version < 3)
			sqlite_rc = sqlite3_exec(db, sqlite_schema_v3, NULL,
						 NULL, NULL);
		if (sqlite_rc != SQLITE_OK)
			goto fail;
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d",
			 SQLITE_SCHEMA_VERSION);
		sqlite_rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
		if (sqlite_rc != SQLITE_OK)
			goto fail;
		if (version == 0) {
			char full[PATH_MAX];

			/* An operator who expected data must see this at
			 * once. */
			das_log(DAS_LOG_WARN,
				"sqlite: created a new empty database (schema "
				"version %d) at %s",
				SQLITE_SCHEMA_VERSION,
				realpath(path, full) ? full : path);
		} else {
			das_log(DAS_LOG_INFO,
				"sqlite: migrated %s to schema version %d",
				path, SQLITE_SCHEMA_VERSION);
		}
	}
	sqlite_rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (sqlite_rc != SQLITE_OK)
		goto fail;
	return STORE_OK;

fail:
	snprintf(err, err_size, "sqlite: cannot set up the schema of %s: %s",
		 path, sqlite3_errmsg(db));
	if (!sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return STORE_ERROR;
}

/*
 * Creates the folders above path that do not exist yet (mode 0700: the
 * database holds the ledger), so the default ./var/device-assignment.db
 * works in a fresh checkout. Returns 0 or -1 with a reason in err.
 */
static int make_parent_dirs(const char *path, char *err, size_t err_size)
{
	char dir[4096];
	size_t len = strlen(path);

	if (len >= sizeof(dir)) {
		snprintf(err, err_size, "sqlite: path too long");
		return -1;
	}
	memcpy(dir, path, len + 1);
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
			snprintf(err, err_size, "sqlite: cannot create %s: %s",
				 dir, strerror(errno));
			return -1;
		}
		*p = '/';
	}
	return 0;
}

/*
 * Settings for speed; durability does not rest on either.
 *
 * temp_store = MEMORY keeps the statement journal (the pages a savepoint
 * would put back, written as each writer of a batch changes them) in
 * memory. By default it spills to a temporary file past 64 KiB, and a
 * group-commit batch passes that: every page a writer touched then cost
 * two pwrite calls to /var/tmp, as many as its write to the log. Nothing
 * durable lives there: it only serves ROLLBACK TO within the batch.
 *
 * wal_autocheckpoint = 10000 pages (40 MiB of log) instead of 1000: the
 * checkpoint copies the log's pages into the database file inside the
 * commit that crosses the mark, with the writer turn held, so every
 * writer waits for it. A move rewrites the same few index pages over and
 * over; copied ten times less often, each is written once for many moves,
 * and the commits between checkpoints are only the log's append and sync.
 * The log is synced on every commit as before; a restart after a crash
 * reads a longer log.
 */
static const char conn_tuning[] = "PRAGMA temp_store = MEMORY;"
				  "PRAGMA wal_autocheckpoint = 10000";

/*
 * The VFS under the store's files. SQLite's "unix" VFS takes and drops
 * POSIX file locks (fcntl) around every transaction, on the database file
 * and on the log's shared index: under REST reads, 1.7 system calls per
 * request and about a tenth of the read rate (docs/performance-history.md). Its
 * twin "unix-excl" locks the file once, exclusively, at the first
 * transaction, and keeps the log's index in this process's memory (no
 * -shm file): no other process can open the database while the store is
 * open. is_file_shared keeps "unix" for files that processes share. A
 * default VFS other than SQLite's own (a test's crash VFS) is kept as it
 * is.
 */
static sqlite3_vfs *base_vfs(bool is_file_shared)
{
	sqlite3_vfs *dflt = sqlite3_vfs_find(NULL);
	sqlite3_vfs *excl = sqlite3_vfs_find("unix-excl");

	if (!is_file_shared && dflt && excl && strcmp(dflt->zName, "unix") == 0)
		return excl;
	return dflt;
}

/*
 * Switches the file to WAL, the first connection's step. A busy timeout of
 * 0 finds at once another process that holds the file.
 */
static enum store_result conn_switch_to_wal(struct sqlite_conn *c,
					    const char *path,
					    const struct store_options *opt,
					    char *err, size_t err_size)
{
	char mode[16];
	int sqlite_rc = query_one(c->db, "PRAGMA journal_mode = WAL", mode,
				  sizeof(mode), NULL);

	if ((sqlite_rc & 0xff) == SQLITE_BUSY) {
		snprintf(err, err_size,
			 "sqlite: %s is in use by another process (a server "
			 "holds its SQLite file alone; processes that share "
			 "one all need --sqlite-exclusive false)",
			 path);
		return STORE_ERROR;
	}
	sqlite3_busy_timeout(c->db, (int)opt->busy_timeout_ms);
	if (sqlite_rc != SQLITE_OK || strcmp(mode, "wal") != 0) {
		snprintf(err, err_size, "sqlite: cannot switch %s to WAL: %s",
			 path,
			 sqlite_rc != SQLITE_OK ? sqlite3_errmsg(c->db) : mode);
		return STORE_ERROR;
	}
	return STORE_OK;
}

/* A sync at every commit and foreign keys, checked: every connection. */
static enum store_result conn_durable(struct sqlite_conn *c, const char *path,
				      char *err, size_t err_size)
{
	int64_t is_fk_on = 0;
	int sqlite_rc;

#ifdef DAS_SQLITE_TEST_UNSYNCED
	/* A deliberately broken build for the power-loss test's self-check
	 * (tests/store/test_power_loss.c); never used by the programs. */
	sqlite_rc = sqlite3_exec(
		c->db, "PRAGMA synchronous = OFF; PRAGMA foreign_keys = ON",
		NULL, NULL, NULL);
#else
	sqlite_rc = sqlite3_exec(
		c->db, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON",
		NULL, NULL, NULL);
#endif
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = query_one(c->db, "PRAGMA foreign_keys", NULL, 0,
				      &is_fk_on);
	if (sqlite_rc == SQLITE_OK && is_fk_on == 1)
		return STORE_OK;
	snprintf(err, err_size, "sqlite: cannot enable foreign keys on %s: %s",
		 path,
		 sqlite_rc != SQLITE_OK ? sqlite3_errmsg(c->db)
					: "not supported by this SQLite");
	return STORE_ERROR;
}

/* Every statement of sqlite_stmt_sql, prepared once for the connection's
 * life. */
static enum store_result conn_prepare(struct sqlite_conn *c, char *err,
				      size_t err_size)
{
	for (int i = 0; i < STMT__COUNT; i++) {
		int sqlite_rc = sqlite3_prepare_v3(
			c->db, sqlite_stmt_sql[i], -1,
			SQLITE_PREPARE_PERSISTENT, &c->stmts[i], NULL);
		if (sqlite_rc != SQLITE_OK) {
			snprintf(err, err_size,
				 "sqlite: cannot prepare statement %d: %s", i,
				 sqlite3_errmsg(c->db));
			return STORE_ERROR;
		}
	}
	return STORE_OK;
}

/*
 * Opens one connection with the settings every connection needs. The
 * first one (is_first) also switches the file to WAL and migrates; it
 * finds another process that holds the file, at once when this one is to
 * hold it alone.
 */
static enum store_result conn_open(struct sqlite_conn *c, const char *path,
				   const char *vfs,
				   const struct store_options *opt,
				   bool is_first, char *err, size_t err_size)
{
	int sqlite_rc;

	if (is_first && make_parent_dirs(path, err, err_size) != 0)
		return STORE_ERROR;
	sqlite_rc = sqlite3_open_v2(path, &c->db,
				    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
					    SQLITE_OPEN_NOMUTEX,
				    vfs);
	if (sqlite_rc != SQLITE_OK) {
		snprintf(err, err_size,
			 "sqlite: cannot open %s: %s (does its directory "
			 "exist and is it writable?)",
			 path, c->db ? sqlite3_errmsg(c->db) : "out of memory");
		return STORE_ERROR;
	}
	sqlite3_extended_result_codes(c->db, 1);
	sqlite3_busy_timeout(c->db, is_first && !opt->is_file_shared
					    ? 0
					    : (int)opt->busy_timeout_ms);
	if (is_first &&
	    conn_switch_to_wal(c, path, opt, err, err_size) != STORE_OK)
		return STORE_ERROR;
	if (conn_durable(c, path, err, err_size) != STORE_OK)
		return STORE_ERROR;
	if (is_first && migrate(c->db, path, err, err_size) != STORE_OK)
		return STORE_ERROR;
	sqlite_rc = sqlite3_exec(c->db, conn_tuning, NULL, NULL, NULL);
	if (sqlite_rc != SQLITE_OK) {
		snprintf(err, err_size, "sqlite: cannot tune %s: %s", path,
			 sqlite3_errmsg(c->db));
		return STORE_ERROR;
	}
	if (conn_prepare(c, err, err_size) != STORE_OK)
		return STORE_ERROR;
	c->tx.conn = c;
	return STORE_OK;
}

static void conn_close(struct sqlite_conn *c)
{
	for (int i = 0; i < STMT__COUNT; i++)
		sqlite3_finalize(c->stmts[i]);
	if (sqlite3_close(c->db) != SQLITE_OK)
		das_log(DAS_LOG_ERROR, "sqlite: close: %s",
			sqlite3_errmsg(c->db));
}

static unsigned default_pool_size(void)
{
	long n_cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned n = n_cpus > 0 && n_cpus < POOL_MAX / 2
			     ? (unsigned)n_cpus * 2
			     : POOL_MAX;

	return n < 4 ? 4 : n;
}

static void sq_close(struct store *base)
{
	struct sqlite_store *st = (struct sqlite_store *)base;

	if (!st)
		return;
	for (unsigned i = 0; i < st->n_conns; i++)
		conn_close(&st->conns[i]);
	if (st->file_fd >= 0)
		close(st->file_fd);
	if (st->wal_fd >= 0)
		close(st->wal_fd);
	pthread_cond_destroy(&st->has_free);
	pthread_mutex_destroy(&st->lock);
	pthread_mutex_destroy(&st->writer);
	pthread_cond_destroy(&st->is_batch_done);
	pthread_mutex_destroy(&st->done_lock);
	pthread_mutex_destroy(&st->jobs_lock);
	wal_append_vfs_unregister(st->wal_vfs);
	free(st->conns);
	free(st->free_conns);
	free(st);
}

/*
 * SQLite counts every allocation under one process-wide mutex unless told
 * not to (SQLITE_CONFIG_MEMSTATUS); we never read those counts, and with
 * several threads in SQLite at once that mutex is a hot one. It can only
 * be said before SQLite initialises; later (a test that registered a VFS
 * first) the call fails and the counts stay on, which is only slower.
 */
static void memstatus_off(void)
{
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* The store with its locks and empty pool of n readers; NULL: no memory. */
static struct sqlite_store *store_new(unsigned n)
{
	struct sqlite_store *st = calloc(1, sizeof(*st));

	if (!st)
		return NULL;
	st->base.ops = &store_sqlite_ops;
	st->file_fd = -1;
	st->wal_fd = -1;
	atomic_init(&st->is_file_lost, false);
	atomic_init(&st->file_seen_ns, 0);
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->has_free, NULL);
	pthread_mutex_init(&st->writer, NULL);
	pthread_mutex_init(&st->done_lock, NULL);
	pthread_cond_init(&st->is_batch_done, NULL);
	pthread_mutex_init(&st->jobs_lock, NULL);
	atomic_init(&st->n_queued, 0);
	/* n readers plus the writer, which opens first and migrates. */
	st->conns = calloc(n + 1, sizeof(*st->conns));
	st->free_conns = calloc(n, sizeof(*st->free_conns));
	if (!st->conns || !st->free_conns) {
		sq_close(&st->base);
		return NULL;
	}
	return st;
}

/* The writer (it migrates) and n readers, over the base VFS. */
static enum store_result open_conns(struct sqlite_store *st, unsigned n,
				    const char *path,
				    const struct store_options *opt, char *err,
				    size_t err_size)
{
	sqlite3_vfs *base = base_vfs(opt->is_file_shared);

#ifndef DAS_SQLITE_TEST_UNSYNCED
	/* Only with synchronous=FULL (wal_append.h); the unsynced test build
	 * keeps the base VFS alone. */
	if (base && wal_append_vfs_register(base, &st->wal_vfs) != SQLITE_OK)
		base = NULL;
#endif
	if (!base) {
		snprintf(err, err_size, "sqlite: cannot set up the log's VFS");
		return STORE_ERROR;
	}
	for (unsigned i = 0; i <= n; i++) {
		struct sqlite_conn *c = &st->conns[i];
		enum store_result result;

		st->n_conns = i + 1; /* close() cleans up a half-open one */
		c->tx.base.st = &st->base;
		c->tx.is_read_only = i > 0;
		result = conn_open(
			c, path, st->wal_vfs ? st->wal_vfs->zName : base->zName,
			opt, i == 0, err, err_size);
		if (result != STORE_OK)
			return result;
		if (i > 0)
			st->free_conns[st->n_free++] = c;
	}
	return STORE_OK;
}

/* path opened read-only, with its identity in id; -1 as open(2). */
static int open_identified(const char *path, struct file_id *id)
{
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd >= 0 && fstat(fd, &sb) != 0) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	if (fd >= 0) {
		id->dev = sb.st_dev;
		id->ino = sb.st_ino;
	}
	return fd;
}

/* The database file and its log as opened, for check_identity. */
static enum store_result open_identity(struct sqlite_store *st,
				       const char *path, char *err,
				       size_t err_size)
{
	if (strlen(path) >= sizeof(st->path)) {
		snprintf(err, err_size, "sqlite: path too long");
		return STORE_ERROR;
	}
	memcpy(st->path, path, strlen(path) + 1);
	st->file_fd = open_identified(path, &st->file_id);
	if (st->file_fd < 0) {
		snprintf(err, err_size, "sqlite: cannot open %s: %s", path,
			 strerror(errno));
		return STORE_ERROR;
	}
	/* The log holds every commit since the last checkpoint: losing it is
	 * as bad as losing the database. It exists once WAL is on. */
	snprintf(st->wal_path, sizeof(st->wal_path), "%s-wal", path);
	st->wal_fd = open_identified(st->wal_path, &st->wal_id);
	return STORE_OK;
}

static int sq_open(const char *spec, const struct store_options *opt,
		   struct store **out, char *err, size_t err_size)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, memstatus_off);

	unsigned n = opt->pool_size ? opt->pool_size : default_pool_size();
	struct sqlite_store *st;
	enum store_result result;
	const char *path;

	if (!sq_accepts(spec)) {
		snprintf(err, err_size, "sqlite: not an sqlite: spec");
		return STORE_ERROR;
	}
	path = spec + strlen(SPEC_PREFIX);
	/*
	 * An empty path or ":memory:" would give every connection a database
	 * of its own.
	 */
	if (!*path || strcmp(path, ":memory:") == 0) {
		snprintf(err, err_size, "sqlite: --store needs a file path, "
					"as in sqlite:./var/device-assignment.db");
		return STORE_ERROR;
	}
	if (sqlite3_libversion_number() < 3037000 || !sqlite3_threadsafe()) {
		snprintf(err, err_size,
			 "sqlite: library %s is too old or not thread-safe "
			 "(need 3.37+)",
			 sqlite3_libversion());
		return STORE_ERROR;
	}
	if (n > POOL_MAX)
		n = POOL_MAX;
	st = store_new(n);
	if (!st) {
		snprintf(err, err_size, "sqlite: out of memory");
		return STORE_ERROR;
	}
	result = open_conns(st, n, path, opt, err, err_size);
	if (result == STORE_OK)
		result = open_identity(st, path, err, err_size);
	if (result == STORE_OK &&
	    read_ledger_key(st->conns[0].db, st->ledger_key) != SQLITE_OK) {
		snprintf(err, err_size, "sqlite: %s has no page-token key: %s",
			 path, sqlite3_errmsg(st->conns[0].db));
		result = STORE_ERROR;
	}
	if (result != STORE_OK) {
		sq_close(&st->base);
		return result;
	}
	*out = &st->base;
	return STORE_OK;
}

/*
 * NULL while fd (the file id names) is still the file path names, else
 * what became of it. One stat call while all is well: a path that names
 * the descriptor's file is a link to it, so the file is not deleted.
 */
static const char *file_fate(int fd, const struct file_id *id,
			     const char *path)
{
	struct stat mine, now;

	if (stat(path, &now) == 0)
		return now.st_dev == id->dev && now.st_ino == id->ino
			       ? NULL
			       : "was replaced by another file";
	if (fstat(fd, &mine) != 0)
		return "cannot be checked";
	return mine.st_nlink == 0 ? "was deleted" : "is gone from its path";
}

/*
 * Is the file we write still the one the path names, and writable? Once it
 * is not ours, the answer stays STORE_UNAVAILABLE (a file put back later is
 * another file); the first look that notices says why in the log. A file
 * made read-only (a mode, an immutable flag, a read-only mount) refuses
 * writes only while it is so: the descriptor SQLite holds might still
 * write, but the operator said no, and the next start could not open it.
 */
static enum store_result check_identity(struct sqlite_store *st, char *why,
					size_t why_size)
{
	const char *what = "database file", *path = st->path;
	const char *fate;

	if (atomic_load(&st->is_file_lost)) {
		snprintf(why, why_size,
			 "the database file %s or its write-ahead log was "
			 "deleted or replaced while in use",
			 st->path);
		return STORE_UNAVAILABLE;
	}
	fate = file_fate(st->file_fd, &st->file_id, st->path);
	if (!fate && st->wal_fd >= 0) {
		what = "write-ahead log";
		path = st->wal_path;
		fate = file_fate(st->wal_fd, &st->wal_id, st->wal_path);
	}
	if (!fate)
		return STORE_OK;
	if (!atomic_exchange(&st->is_file_lost, true))
		das_log(DAS_LOG_ERROR,
			"sqlite: the %s %s %s while in use: refusing every write "
			"from now on (they would be lost at the next start); "
			"restore the file and restart the server",
			what, path, fate);
	snprintf(why, why_size, "the %s %s %s", what, path, fate);
	return STORE_UNAVAILABLE;
}

static enum store_result check_file(struct sqlite_store *st, char *why,
				    size_t why_size)
{
	enum store_result result = check_identity(st, why, why_size);

	if (result != STORE_OK || access(st->path, W_OK) == 0)
		return result;
	/* Not lost, and writable again once the operator says so. */
	snprintf(why, why_size, "the database file %s is not writable: %s",
		 st->path, strerror(errno));
	return STORE_UNAVAILABLE;
}

/*
 * A reader answers from what the file holds, so a file deleted or replaced
 * under the server is refused to readers too: its content is gone at the
 * next start, and a repeat answered from it would be acknowledged on state
 * that is not durable. The check costs two stat calls, so readers make it
 * at most once a millisecond (the loss stays latched once seen); a file
 * deleted within that millisecond is like one deleted just after the
 * answer, which no check can catch. A read-only file is no reason to
 * refuse a read.
 */
static enum store_result check_file_for_read(struct sqlite_store *st)
{
	char why[PATH_MAX + 160];
	uint64_t now, seen;

	if (atomic_load_explicit(&st->is_file_lost, memory_order_relaxed))
		return STORE_UNAVAILABLE;
	now = das_metric_now_ns();
	seen = atomic_load_explicit(&st->file_seen_ns, memory_order_relaxed);
	if (seen && now - seen < READER_FILE_CHECK_NS)
		return STORE_OK;
	atomic_store_explicit(&st->file_seen_ns, now, memory_order_relaxed);
	return check_identity(st, why, sizeof(why));
}

/* ---- transactions ---- */

static struct sqlite_conn *writer_conn(struct sqlite_store *st)
{
	return &st->conns[0];
}

/* Rolls back whatever is open on the connection; SQLite may have already. */
static void conn_rollback(struct sqlite_conn *c)
{
	if (sqlite3_get_autocommit(c->db))
		return;
	if (run(c, STMT_ROLLBACK, "rollback", NULL) != STORE_OK &&
	    !sqlite3_get_autocommit(c->db))
		das_log(DAS_LOG_ERROR, "sqlite: a transaction stays open after "
				       "a failed rollback");
}

/* Closes the batch: every waiter learns the result. Writer mutex held. */
static void batch_finish(struct sqlite_store *st, enum store_result result)
{
	st->is_batch_open = false;
	st->batch_len = 0;
	pthread_mutex_lock(&st->done_lock);
	for (struct batch_waiter *w = st->waiters; w; w = w->next) {
		w->result = result;
		w->is_done = true;
	}
	st->waiters = NULL;
	pthread_cond_broadcast(&st->is_batch_done);
	pthread_mutex_unlock(&st->done_lock);
}

/*
 * Ends one writer's turn (writer mutex held; released here). me joins the
 * batch (NULL: the writer rolled back and has nothing to make durable).
 * If more writers are queued the batch stays open for them; otherwise it
 * is committed now. Returns me's result once its batch is done.
 */
static enum store_result writer_end(struct sqlite_store *st,
				    struct batch_waiter *me)
{
	struct sqlite_conn *c = writer_conn(st);

	if (me) {
		me->next = st->waiters;
		st->waiters = me;
		if (me->has_changes)
			st->batch_len++;
	}
	if (sqlite3_get_autocommit(c->db)) {
		/* An I/O error made SQLite roll the whole batch back. */
		das_log(DAS_LOG_ERROR, "sqlite: a batch of %u write(s) was "
				       "rolled back by an error",
			st->batch_len);
		batch_finish(st, STORE_UNAVAILABLE);
	} else if (atomic_load(&st->n_queued) == 0 ||
		   st->batch_len >= BATCH_MAX) {
		char why[PATH_MAX + 160];
		enum store_result result = STORE_OK;

		if (st->batch_len > 0 &&
		    check_file(st, why, sizeof(why)) != STORE_OK) {
			conn_rollback(c); /* not into a lost file */
			result = STORE_UNAVAILABLE;
		} else if (st->batch_len == 0) {
			conn_rollback(c); /* nothing to keep */
		} else {
			uint64_t t0 = das_metric_now_ns();
			result = run(c, STMT_COMMIT, "commit", NULL);
			if (result != STORE_OK)
				conn_rollback(c);
			else
				store_metric_batch("sqlite", st->batch_len,
						   das_metric_now_ns() - t0);
		}
		batch_finish(st, result);
	}
	pthread_mutex_unlock(&st->writer);

	if (!me)
		return STORE_OK;
	pthread_mutex_lock(&st->done_lock);
	while (!me->is_done)
		pthread_cond_wait(&st->is_batch_done, &st->done_lock);
	pthread_mutex_unlock(&st->done_lock);
	return me->result;
}

/*
 * Takes the writer turn and opens the writer's savepoint "writer" in the
 * batch (opening the batch first when none is). A turn that may go
 * without the savepoint (may_skip_savepoint: the leader's, jobs_run) and
 * opens the batch itself runs without one: the batch holds nothing else
 * yet, so undoing the turn is undoing the batch (jobs_run_again), and
 * SQLite keeps no copy of the pages the turn changes (the savepoint made
 * it copy each one to the statement journal once a batch).
 */
static enum store_result begin_write(struct sqlite_store *st,
				     bool may_skip_savepoint,
				     struct store_tx **out)
{
	struct sqlite_conn *c = writer_conn(st);
	enum store_result result;
	bool is_opening = false;

	atomic_fetch_add(&st->n_queued, 1);
	pthread_mutex_lock(&st->writer);
	atomic_fetch_sub(&st->n_queued, 1);

	if (st->is_batch_open && sqlite3_get_autocommit(c->db))
		batch_finish(st, STORE_UNAVAILABLE); /* writer_end says why */
	if (!st->is_batch_open) {
		/* The file is looked at before the batch commits (writer_end);
		 * here only a loss already seen stops the work. */
		if (atomic_load(&st->is_file_lost)) {
			pthread_mutex_unlock(&st->writer);
			return STORE_UNAVAILABLE;
		}
		result = run(c, STMT_BEGIN_WRITE, "begin", NULL);
		if (result != STORE_OK) {
			pthread_mutex_unlock(&st->writer);
			return result;
		}
		st->is_batch_open = true;
		is_opening = true;
	}
	c->tx.has_savepoint = !(is_opening && may_skip_savepoint);
	if (c->tx.has_savepoint) {
		result = run(c, STMT_SAVEPOINT, "begin", NULL);
		if (result != STORE_OK) {
			writer_end(st, NULL);
			return result;
		}
	}
	c->tx.changes_at_begin = sqlite3_total_changes64(c->db);
	c->tx.is_write_forced = false;
	*out = &c->tx.base;
	return STORE_OK;
}

static int sq_begin(struct store *base, const char *customer,
		    bool is_read_only, struct store_tx **out)
{
	struct sqlite_store *st = (struct sqlite_store *)base;
	struct sqlite_conn *c;
	enum store_result result;

	if (!is_read_only)
		return begin_write(st, false, out);
	result = check_file_for_read(st);
	if (result != STORE_OK)
		return result;
	c = pool_take(st);
	result = run(c, STMT_BEGIN_READ, "begin", NULL);
	if (result != STORE_OK) {
		pool_give(st, c);
		return result;
	}
	*out = &c->tx.base;
	return STORE_OK;
}

/* Undoes one writer's savepoint; the rest of the batch stays. */
static void writer_undo(struct sqlite_conn *c)
{
	if (sqlite3_get_autocommit(c->db))
		return; /* the batch is gone already; writer_end reports it */
	if (!c->tx.has_savepoint) {
		conn_rollback(c); /* the turn was the batch */
		return;
	}
	if (run(c, STMT_ROLLBACK_TO, "rollback", NULL) == STORE_OK)
		run(c, STMT_RELEASE, "rollback", NULL);
}

/*
 * Ends the transaction on every outcome: on failure nothing was written.
 *
 * A writer that changed nothing has nothing to make durable, so it does
 * not join the batch's commit. What it decided may still rest on changes
 * of writers before it in the open batch (the writer connection sees
 * them before they are durable): then, and only then, it waits for that
 * batch's commit and answers with its result, so that a success never
 * rests on a change that could still be lost. With an empty batch it
 * returns at once.
 */
static int sq_commit(struct store_tx *base)
{
	struct sqlite_tx *tx = (struct sqlite_tx *)base;
	struct sqlite_store *st = store_of(tx);
	struct batch_waiter me = {0};
	enum store_result result;

	if (tx->is_read_only) {
		result = run(tx->conn, STMT_COMMIT, "commit", NULL);
		if (result != STORE_OK)
			conn_rollback(tx->conn);
		pool_give(st, tx->conn);
		return result;
	}
	if (sqlite3_get_autocommit(tx->conn->db)) {
		writer_end(st, NULL); /* logs the lost batch */
		return STORE_UNAVAILABLE;
	}
	me.has_changes =
		tx->is_write_forced ||
		sqlite3_total_changes64(tx->conn->db) != tx->changes_at_begin;
	result = tx->has_savepoint ? run(tx->conn, STMT_RELEASE, "commit", NULL)
				   : STORE_OK;
	if (result != STORE_OK) {
		writer_undo(tx->conn);
		writer_end(st, NULL);
		return result;
	}
	if (!me.has_changes && st->batch_len == 0)
		return writer_end(st, NULL);
	return writer_end(st, &me);
}

/* ---- writes handed over (store_submit) ---- */

/*
 * Runs one job in the leader's write transaction, in a savepoint of its
 * own: a failed or refused job undoes only itself. The first job of the
 * turn uses the turn's own savepoint (begin_write's "writer", which holds
 * nothing else yet), which saves two statements when a job is alone.
 * Returns whether it changed a row that stays. (The turn's second pass,
 * after jobs_run_plain met a job to undo.)
 */
static bool job_run(struct sqlite_tx *tx, struct store_job *job,
		    bool is_first)
{
	struct sqlite_conn *c = tx->conn;
	int64_t before;

	job->is_undone = false;
	if (sqlite3_get_autocommit(c->db)) {
		/* An I/O error rolled the batch back: a SAVEPOINT now would
		 * start a transaction of its own. sq_commit reports it. */
		job->result = STORE_UNAVAILABLE;
		return false;
	}
	if (!is_first) {
		job->result = run(c, STMT_JOB_SAVEPOINT, "begin", NULL);
		if (job->result != STORE_OK)
			return false;
	}
	before = sqlite3_total_changes64(c->db);
	job->result = store_job_run(&tx->base, job);
	if (job->result == STORE_OK && !job->is_undone) {
		if (!is_first)
			job->result = run(c, STMT_JOB_RELEASE, "commit", NULL);
		if (job->result == STORE_OK)
			return sqlite3_total_changes64(c->db) != before;
	}
	if (sqlite3_get_autocommit(c->db))
		return false;
	if (is_first) /* "writer" stays open for the next jobs */
		run(c, STMT_ROLLBACK_TO, "rollback", NULL);
	else if (run(c, STMT_JOB_ROLLBACK_TO, "rollback", NULL) == STORE_OK)
		run(c, STMT_JOB_RELEASE, "rollback", NULL);
	return false;
}

/*
 * The turn's first pass: every job in the turn's own savepoint ("writer";
 * none when the turn opened its batch), none in a savepoint of its own. A savepoint per job made SQLite copy
 * every page a job touched into the statement journal, once per job
 * (each job touches the same few pages again), and cost two statements
 * more per job: about a fifth of the SQLite work of a move.
 *
 * A job that ends refused (is_undone) or failed without having changed a
 * row leaves nothing to undo. One that changed rows and then failed or
 * was refused does: then this returns false with that job's bit set in
 * *undo, and jobs_run undoes the whole turn and runs the others again,
 * each in its own savepoint, as if this pass had not happened (their
 * first run is rolled back with the turn). *n_changed counts the jobs
 * whose changes stay.
 */
static bool jobs_run_plain(struct sqlite_tx *tx, struct store_job *jobs,
			   uint64_t *undo, unsigned *n_changed)
{
	struct sqlite_conn *c = tx->conn;
	uint64_t bit = 1;

	*undo = 0;
	*n_changed = 0;
	for (struct store_job *j = jobs; j; j = j->next, bit <<= 1) {
		int64_t before;
		bool is_changed;

		j->is_undone = false;
		if (sqlite3_get_autocommit(c->db)) {
			/* An I/O error rolled the batch back (sq_commit
			 * reports it); a statement now would run outside. */
			j->result = STORE_UNAVAILABLE;
			continue;
		}
		before = sqlite3_total_changes64(c->db);
		j->result = store_job_run(&tx->base, j);
		is_changed = sqlite3_total_changes64(c->db) != before;
		if (j->result == STORE_OK && !j->is_undone)
			*n_changed += is_changed;
		else if (is_changed || j->result != STORE_OK)
			*undo |= bit;
	}
	return *undo == 0;
}

/*
 * After jobs_run_plain met a job to undo: the turn is rolled back to its
 * start and every job but those run again, each in its own savepoint.
 * The jobs to undo keep their result: what they decided and met is what
 * they would have met in a savepoint of their own, since the jobs before
 * them stood as they will stand again. Returns the jobs whose changes
 * stay.
 */
static unsigned jobs_run_again(struct sqlite_tx *tx, struct store_job *jobs,
			       uint64_t undo)
{
	struct sqlite_conn *c = tx->conn;
	unsigned n_changed = 0;
	bool is_first = true;
	uint64_t bit = 1;

	if (sqlite3_get_autocommit(c->db))
		return 0; /* the batch is gone: sq_commit says so */
	if (!tx->has_savepoint) {
		/* The turn opened the batch: undoing it is undoing the batch,
		 * which opens again, now with the turn's savepoint. Should it
		 * not (another process took the lock), sq_commit tells every
		 * job the batch is gone. */
		conn_rollback(c);
		if (run(c, STMT_BEGIN_WRITE, "begin", NULL) != STORE_OK ||
		    run(c, STMT_SAVEPOINT, "begin", NULL) != STORE_OK) {
			conn_rollback(c);
			return 0;
		}
		tx->has_savepoint = true;
	} else if (run(c, STMT_ROLLBACK_TO, "rollback", NULL) != STORE_OK) {
		/* Nothing of the turn may stay: the whole batch goes, and
		 * sq_commit tells every writer of it. */
		conn_rollback(c);
		return 0;
	}
	for (struct store_job *j = jobs; j; j = j->next, bit <<= 1) {
		if (undo & bit)
			continue;
		n_changed += job_run(tx, j, is_first);
		is_first = false;
	}
	return n_changed;
}

/* Takes up to BATCH_MAX queued jobs off the queue (jobs_lock held). */
static struct store_job *jobs_take(struct sqlite_store *st)
{
	struct store_job *jobs = st->jobs, *last = jobs;
	unsigned n = 1;

	if (!jobs)
		return NULL;
	while (last->next && n < BATCH_MAX) {
		last = last->next;
		n++;
	}
	st->jobs = last->next;
	if (!st->jobs)
		st->jobs_tail = NULL;
	last->next = NULL;
	return jobs;
}

/*
 * One writer turn of the leader: once it holds the writer mutex, every job
 * queued by then (jobs_run_plain, or jobs_run_again after a job to undo),
 * then the commit the group commit decides (sq_commit: now, or with the writers queued behind). Every job
 * learns its result after that commit.
 */
static void jobs_run(struct sqlite_store *st)
{
	struct store_tx *base = NULL;
	enum store_result result = begin_write(st, true, &base);
	struct store_job *jobs, *next;

	pthread_mutex_lock(&st->jobs_lock);
	jobs = jobs_take(st);
	pthread_mutex_unlock(&st->jobs_lock);
	if (result == STORE_OK) {
		struct sqlite_tx *tx = (struct sqlite_tx *)base;
		unsigned n_changed = 0;
		uint64_t undo = 0;

		if (!jobs_run_plain(tx, jobs, &undo, &n_changed))
			n_changed = jobs_run_again(tx, jobs, undo);
		/* The batch counts every job with changes as a writer (the
		 * leader is one of them already once it commits). */
		if (n_changed > 1)
			st->batch_len += n_changed - 1;
		result = sq_commit(base);
	}
	for (struct store_job *j = jobs; j; j = next) {
		next = j->next; /* done may hand j in again */
		store_job_finish(&st->base, j,
				 result == STORE_OK ? j->result : (int)result);
	}
}

static int sq_begin(struct store *base, const char *customer,
		    bool is_read_only, struct store_tx **out);
static int sq_commit(struct store_tx *base);
static void sq_rollback(struct store_tx *base);

/*
 * A job that only reads (store_job.is_read_only) runs at once, on the
 * caller's thread, in a read transaction of its own: a reader connection
 * never waits for the writer, so handing it on would gain nothing. done
 * is called before this returns.
 */
static int read_job_run(struct sqlite_store *st, struct store_job *job)
{
	struct store_tx *tx = NULL;
	int rc = sq_begin(&st->base, NULL, true, &tx);

	job->is_undone = false;
	if (rc == STORE_OK) {
		rc = store_job_run(tx, job);
		if (rc == STORE_OK)
			rc = sq_commit(tx);
		else
			sq_rollback(tx);
	}
	store_job_finish(&st->base, job, rc);
	return STORE_OK;
}

/*
 * Group commit without waiting threads: the first caller to find nobody
 * leading runs the queue (up to BATCH_MAX jobs a turn) until it is empty,
 * answering each job through its done. Every other caller queues its job
 * and returns at once: it neither waits for the writer mutex nor for the
 * fsync, so a batch holds every write that arrived during the one before,
 * not one write per thread. Writers through store_begin (the ledger's
 * prune, the health probe) still share batches with the leader through
 * the writer mutex.
 */
static int sq_submit(struct store *base, struct store_job *job)
{
	struct sqlite_store *st = (struct sqlite_store *)base;

	if (job->is_read_only)
		return read_job_run(st, job);
	job->next = NULL;
	pthread_mutex_lock(&st->jobs_lock);
	if (st->jobs_tail)
		st->jobs_tail->next = job;
	else
		st->jobs = job;
	st->jobs_tail = job;
	if (st->is_leading) {
		pthread_mutex_unlock(&st->jobs_lock);
		return STORE_OK;
	}
	st->is_leading = true;
	while (st->jobs) {
		pthread_mutex_unlock(&st->jobs_lock);
		jobs_run(st);
		pthread_mutex_lock(&st->jobs_lock);
	}
	st->is_leading = false;
	pthread_mutex_unlock(&st->jobs_lock);
	return STORE_OK;
}

/* store_ops.reap: the jobs still queued past their deadline end
 * STORE_LATE (those of a batch being written are left to it). */
static void sq_reap(struct store *base, int64_t now_ms)
{
	struct sqlite_store *st = (struct sqlite_store *)base;
	struct store_job *jobs;

	pthread_mutex_lock(&st->jobs_lock);
	jobs = store_take_late_jobs(&st->jobs, &st->jobs_tail, now_ms);
	pthread_mutex_unlock(&st->jobs_lock);
	store_finish_all(base, NULL, jobs, STORE_LATE);
}

static void sq_rollback(struct store_tx *base)
{
	struct sqlite_tx *tx = (struct sqlite_tx *)base;
	struct sqlite_store *st = store_of(tx);

	if (tx->is_read_only) {
		conn_rollback(tx->conn);
		pool_give(st, tx->conn);
		return;
	}
	writer_undo(tx->conn);
	writer_end(st, NULL);
}

/*
 * Writes need a write transaction whose batch is still open (after an I/O
 * error SQLite may have rolled it back, and a statement would then run
 * outside any transaction).
 */
static enum store_result refuse_read_only(struct sqlite_tx *tx,
					  const char *what)
{
	if (tx->is_read_only) {
		das_log(DAS_LOG_ERROR, "sqlite: %s in a read-only transaction",
			what);
		return STORE_ERROR;
	}
	if (sqlite3_get_autocommit(tx->conn->db)) {
		das_log(DAS_LOG_ERROR, "sqlite: %s after the batch was lost",
			what);
		return STORE_UNAVAILABLE;
	}
	return STORE_OK;
}

/* ---- reads ---- */

/* The columns of STMT_LOAD. */
enum {
	LOAD_ACCOUNT,
	LOAD_INCLUDED_SEATS,
	LOAD_SEATS_IN_USE,
	LOAD_ROLES,
	LOAD_DEVICE_OWNER,
	LOAD_OTHER_OWNERS_TYPE,
	LOAD_TYPE,
	LOAD_DEVICE,
};

/* The customer, user and device columns, the same in every row. */
static void load_first_row(sqlite3_stmt *s, struct domain_snapshot *snap)
{
	snap->is_customer_found = true;
	if (sqlite3_column_type(s, LOAD_ACCOUNT) != SQLITE_NULL) {
		snap->customer_has_account = true;
		column_copy(s, LOAD_ACCOUNT, snap->customer_account,
			    sizeof(snap->customer_account));
	}
	if (sqlite3_column_type(s, LOAD_INCLUDED_SEATS) != SQLITE_NULL) {
		snap->is_seat_limited = true;
		snap->included_seats =
			sqlite3_column_int64(s, LOAD_INCLUDED_SEATS);
	}
	snap->seats_in_use = sqlite3_column_int64(s, LOAD_SEATS_IN_USE);
	if (sqlite3_column_type(s, LOAD_ROLES) != SQLITE_NULL) {
		const char *roles =
			(const char *)sqlite3_column_text(s, LOAD_ROLES);

		snap->is_user_found = true;
		snap->has_role_uc =
			roles && domain_roles_contain(roles, DOMAIN_ROLE_UC);
		snap->has_role_uc_softphone =
			roles &&
			domain_roles_contain(roles, DOMAIN_ROLE_UC_SOFTPHONE);
	}
	if (sqlite3_column_type(s, LOAD_DEVICE_OWNER) != SQLITE_NULL) {
		snap->is_device_found = true;
		column_copy(s, LOAD_DEVICE_OWNER, snap->device_owner,
			    sizeof(snap->device_owner));
	}
	if (sqlite3_column_type(s, LOAD_OTHER_OWNERS_TYPE) != SQLITE_NULL)
		snap->device_type =
			sqlite3_column_int(s, LOAD_OTHER_OWNERS_TYPE);
}

/*
 * Fills snap for key with STMT_LOAD. Outside a transaction the statement
 * is a read transaction of its own.
 */
static enum store_result load_snapshot(struct sqlite_conn *c,
				       const struct domain_key *key,
				       struct domain_snapshot *snap)
{
	sqlite3_stmt *s = stmt(c, STMT_LOAD);
	int sqlite_rc = bind_text(s, 1, key->customer);
	bool is_first = true;

	memset(snap, 0, sizeof(*snap));
	snap->device_type = DAS_CLIENT_NONE;
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = bind_text(s, 2, key->user);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = bind_text(s, 3, key->device);
	if (sqlite_rc != SQLITE_OK)
		return bind_fail(c, STMT_LOAD, sqlite_rc, "load");
	while ((sqlite_rc = sqlite3_step(s)) == SQLITE_ROW) {
		int64_t type;

		if (is_first)
			load_first_row(s, snap);
		is_first = false;
		if (sqlite3_column_type(s, LOAD_TYPE) == SQLITE_NULL)
			continue; /* the user has no assignment */
		/* The schema's CHECK keeps type in 1..4. */
		type = sqlite3_column_int64(s, LOAD_TYPE);
		if (type < DAS_CLIENT_DESKTOP || type >= DAS_CLIENT_TYPE_COUNT)
			continue;
		column_copy(s, LOAD_DEVICE, snap->user_devices[type],
			    sizeof(snap->user_devices[type]));
		/* The device asked is the user's: its type is here. */
		if (strcmp(snap->user_devices[type], key->device) == 0)
			snap->device_type = (int)type;
	}
	sqlite3_reset(s);
	if (sqlite_rc != SQLITE_DONE)
		return sq_fail(c->db, sqlite_rc, "load");
	return STORE_OK;
}

static int sq_load(struct store_tx *base, const struct domain_key *key,
		   struct domain_snapshot *snap)
{
	struct sqlite_tx *tx = (struct sqlite_tx *)base;

	if (!tx->is_read_only) {
		enum store_result result = refuse_read_only(tx, "load");

		if (result != STORE_OK)
			return result;
	}
	return load_snapshot(tx->conn, key, snap);
}

/*
 * The read pass of assign, unassign and list (store_read_submit): its one
 * statement runs here, on the caller's thread, outside a transaction, so
 * it is a read transaction of its own (one snapshot of committed, synced
 * state, as any reader connection sees) without a BEGIN and a COMMIT to
 * run. done is called before this returns.
 */
static int sq_read_submit(struct store *base, struct store_read *rd)
{
	struct sqlite_store *st = (struct sqlite_store *)base;
	enum store_result result = check_file_for_read(st);
	struct sqlite_conn *c;

	if (result != STORE_OK)
		return result;
	c = pool_take(st);
	result = load_snapshot(c, rd->key, &rd->snap);
	pool_give(st, c);
	store_read_finish(&st->base, rd, result);
	return STORE_OK;
}

/* ---- writes ---- */

/* Binds the actor's sub, cut to the size a ledger row reads back. */
static int bind_actor(sqlite3_stmt *s, int idx, const char *sub)
{
	const char *text = sub ? sub : "";

	return sqlite3_bind_text(s, idx, text, (int)strnlen(text, ACTOR_MAX),
				 SQLITE_STATIC);
}

/* Binds the request id, cut to what a ledger row keeps. */
static int bind_request_id(sqlite3_stmt *s, int idx, const char *id)
{
	const char *text = id ? id : "";

	return sqlite3_bind_text(s, idx, text,
				 (int)strnlen(text, STORE_REQUEST_ID_SIZE - 1),
				 SQLITE_STATIC);
}

static enum store_result ledger_insert(struct sqlite_conn *c,
				       const char *customer,
				       const struct domain_change *ch,
				       const struct store_actor *actor)
{
	sqlite3_stmt *s = stmt(c, STMT_LEDGER_INSERT);
	int sqlite_rc = sqlite3_bind_int64(s, 1, actor->at.seconds);

	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = sqlite3_bind_int(s, 2, actor->at.nanos);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = bind_text(s, 3, customer);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = bind_text(s, 4, ch->user);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = bind_text(s, 5, ch->device);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = sqlite3_bind_int(s, 6, ch->from_type);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = sqlite3_bind_int(s, 7, ch->to_type);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = sqlite3_bind_int(s, 8, ch->is_charged ? 1 : 0);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = bind_actor(s, 9, actor->sub);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = bind_request_id(s, 10, actor->request_id);
	if (sqlite_rc != SQLITE_OK)
		return bind_fail(c, STMT_LEDGER_INSERT, sqlite_rc, "ledger");
	return run(c, STMT_LEDGER_INSERT, "ledger", NULL);
}

/*
 * One change: a new assignment (from NONE) is an insert, so a device that
 * already has a type breaks the primary key; a move updates the row only
 * where it still has from_type; an unassign deletes only that row.
 */
static enum store_result apply_one(struct sqlite_conn *c, const char *customer,
				   const struct domain_change *ch)
{
	enum stmt_id id;
	sqlite3_stmt *s;
	int sqlite_rc, n_changed = 0;
	enum store_result result;

	if (!das_client_type_is_valid(ch->to_type) &&
	    ch->to_type != DAS_CLIENT_NONE)
		goto invalid;
	if (!das_client_type_is_valid(ch->from_type) &&
	    ch->from_type != DAS_CLIENT_NONE)
		goto invalid;
	if (ch->from_type == ch->to_type)
		goto invalid;

	if (ch->to_type == DAS_CLIENT_NONE) {
		id = STMT_ASSIGN_DELETE;
		s = stmt(c, id);
		sqlite_rc = bind_text(s, 1, customer);
		if (sqlite_rc == SQLITE_OK)
			sqlite_rc = bind_text(s, 2, ch->device);
		if (sqlite_rc == SQLITE_OK)
			sqlite_rc = sqlite3_bind_int(s, 3, ch->from_type);
	} else {
		id = ch->from_type == DAS_CLIENT_NONE ? STMT_ASSIGN_INSERT
						      : STMT_ASSIGN_MOVE;
		s = stmt(c, id);
		sqlite_rc = bind_text(s, 1, customer);
		if (sqlite_rc == SQLITE_OK)
			sqlite_rc = bind_text(s, 2, ch->device);
		if (sqlite_rc == SQLITE_OK)
			sqlite_rc = bind_text(s, 3, ch->user);
		if (sqlite_rc == SQLITE_OK)
			sqlite_rc = sqlite3_bind_int(s, 4, ch->to_type);
		if (sqlite_rc == SQLITE_OK && id == STMT_ASSIGN_MOVE)
			sqlite_rc = sqlite3_bind_int(s, 5, ch->from_type);
	}
	if (sqlite_rc != SQLITE_OK)
		return bind_fail(c, id, sqlite_rc, "apply");
	result = run(c, id, "apply", &n_changed);
	if (result != STORE_OK)
		return result;
	if (n_changed != 1) {
		das_log(DAS_LOG_ERROR,
			"sqlite: apply: device %s of user %s is not at type %d "
			"in %s (stale snapshot or rules bug)",
			ch->device, ch->user, ch->from_type, customer);
		return STORE_ERROR;
	}
	return STORE_OK;

invalid:
	das_log(DAS_LOG_ERROR, "sqlite: apply: invalid change of %s: %d -> %d",
		ch->device, ch->from_type, ch->to_type);
	return STORE_ERROR;
}

static enum store_result run_keyed(struct sqlite_tx *tx, enum stmt_id id,
				   const char *customer, const char *key,
				   const char *value, const char *what,
				   bool *is_changed);

static int sq_apply(struct store_tx *base, const char *customer,
		    const struct domain_change *changes, size_t n,
		    const struct store_actor *actor)
{
	struct sqlite_tx *tx = (struct sqlite_tx *)base;
	enum store_result result = refuse_read_only(tx, "apply");

	for (size_t i = 0; result == STORE_OK && i < n; i++) {
		result = apply_one(tx->conn, customer, &changes[i]);
		if (result == STORE_OK)
			result = ledger_insert(tx->conn, customer, &changes[i],
					       actor);
		if (result == STORE_OK && changes[i].is_charged)
			result = run_keyed(tx, STMT_SEAT_CHARGE, customer,
					   changes[i].user, NULL, "seat", NULL);
	}
	/* After all of them: a replace frees the user's type for a moment
	 * only, and the seat (charged or not) stays. */
	for (size_t i = 0; result == STORE_OK && i < n; i++)
		if (changes[i].to_type == DAS_CLIENT_NONE)
			result = run_keyed(tx, STMT_SEAT_RELEASE, customer,
					   changes[i].user, NULL, "seat", NULL);
	return result;
}

static int sq_customer_put(struct store_tx *base,
			   const struct store_customer *cu, bool *is_changed)
{
	struct sqlite_tx *tx = (struct sqlite_tx *)base;
	struct sqlite_conn *c = tx->conn;
	sqlite3_stmt *s = stmt(c, STMT_CUSTOMER_UPSERT);
	enum store_result result = refuse_read_only(tx, "customer put");
	int n_changed = 0, sqlite_rc;

	if (result != STORE_OK)
		return result;
	sqlite_rc = bind_text(s, 1, cu->tenant);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc =
			bind_text(s, 2, cu->has_account ? cu->account : NULL);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = bind_text(s, 3, cu->name);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc =
			cu->is_seat_limited
				? sqlite3_bind_int64(s, 4, cu->included_seats)
				: sqlite3_bind_null(s, 4);
	if (sqlite_rc != SQLITE_OK)
		return bind_fail(c, STMT_CUSTOMER_UPSERT, sqlite_rc,
				 "customer put");
	result = run(c, STMT_CUSTOMER_UPSERT, "customer put", &n_changed);
	if (result == STORE_OK)
		*is_changed = n_changed > 0;
	return result;
}

/* Runs one of the statements whose only parameter is the tenant. */
static enum store_result run_for_tenant(struct sqlite_conn *c, enum stmt_id id,
					const char *customer, const char *what,
					int *n_changed)
{
	int sqlite_rc = bind_text(stmt(c, id), 1, customer);

	if (sqlite_rc != SQLITE_OK)
		return bind_fail(c, id, sqlite_rc, what);
	return run(c, id, what, n_changed);
}

static int sq_customer_delete(struct store_tx *base, const char *customer,
			      const struct store_actor *actor,
			      bool *is_changed, uint32_t *n_dropped)
{
	struct sqlite_tx *tx = (struct sqlite_tx *)base;
	struct sqlite_conn *c = tx->conn;
	sqlite3_stmt *s = stmt(c, STMT_CUSTOMER_LEDGER_DROPS);
	int n_ledgered = 0, n_deleted = 0;
	enum store_result result = refuse_read_only(tx, "customer delete");
	int sqlite_rc;

	if (result != STORE_OK)
		return result;
	/* One ledger row per dropped assignment, written before the drop. */
	sqlite_rc = sqlite3_bind_int64(s, 1, actor->at.seconds);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = sqlite3_bind_int(s, 2, actor->at.nanos);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = bind_actor(s, 3, actor->sub);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = bind_text(s, 4, customer);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = bind_request_id(s, 5, actor->request_id);
	if (sqlite_rc != SQLITE_OK)
		return bind_fail(c, STMT_CUSTOMER_LEDGER_DROPS, sqlite_rc,
				 "customer delete");
	result = run(c, STMT_CUSTOMER_LEDGER_DROPS, "customer delete",
		     &n_ledgered);
	if (result == STORE_OK)
		result = run_for_tenant(c, STMT_CUSTOMER_DROP_ASSIGNMENTS,
					customer, "customer delete", NULL);
	if (result == STORE_OK)
		result = run_for_tenant(c, STMT_CUSTOMER_DROP_DEVICES, customer,
					"customer delete", NULL);
	if (result == STORE_OK)
		result = run_for_tenant(c, STMT_CUSTOMER_DROP_USERS, customer,
					"customer delete", NULL);
	if (result == STORE_OK)
		result = run_for_tenant(c, STMT_CUSTOMER_DELETE, customer,
					"customer delete", &n_deleted);
	if (result != STORE_OK)
		return result;
	*is_changed = n_deleted > 0;
	*n_dropped = (uint32_t)n_ledgered;
	return STORE_OK;
}

/* Runs an upsert or delete keyed by (tenant, id) with an optional text. */
static enum store_result run_keyed(struct sqlite_tx *tx, enum stmt_id id,
				   const char *customer, const char *key,
				   const char *value, const char *what,
				   bool *is_changed)
{
	struct sqlite_conn *c = tx->conn;
	sqlite3_stmt *s = stmt(c, id);
	enum store_result result = refuse_read_only(tx, what);
	int n_changed = 0, sqlite_rc;

	if (result != STORE_OK)
		return result;
	sqlite_rc = bind_text(s, 1, customer);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = bind_text(s, 2, key);
	if (sqlite_rc == SQLITE_OK && value)
		sqlite_rc = bind_text(s, 3, value);
	if (sqlite_rc != SQLITE_OK)
		return bind_fail(c, id, sqlite_rc, what);
	result = run(c, id, what, &n_changed);
	if (result == STORE_OK && is_changed)
		*is_changed = n_changed > 0;
	return result;
}

static int sq_user_put(struct store_tx *tx, const char *customer,
		       const char *user, const char *roles_text,
		       bool *is_changed)
{
	return run_keyed((struct sqlite_tx *)tx, STMT_USER_UPSERT, customer,
			 user, roles_text ? roles_text : "", "user put",
			 is_changed);
}

static int sq_user_delete(struct store_tx *tx, const char *customer,
			  const char *user, bool *is_changed)
{
	return run_keyed((struct sqlite_tx *)tx, STMT_USER_DELETE, customer,
			 user, NULL, "user delete", is_changed);
}

static int sq_device_put(struct store_tx *tx, const char *customer,
			 const char *device, const char *owner,
			 bool *is_changed)
{
	if (!owner || !*owner) {
		das_log(DAS_LOG_ERROR, "sqlite: device put: %s has no owner",
			device);
		return STORE_ERROR;
	}
	return run_keyed((struct sqlite_tx *)tx, STMT_DEVICE_UPSERT, customer,
			 device, owner, "device put", is_changed);
}

static int sq_device_delete(struct store_tx *tx, const char *customer,
			    const char *device, bool *is_changed)
{
	return run_keyed((struct sqlite_tx *)tx, STMT_DEVICE_DELETE, customer,
			 device, NULL, "device delete", is_changed);
}

/* The ledger row at the statement's cursor (columns as the ledger SELECTs). */
static void ledger_row_of(sqlite3_stmt *s, struct store_ledger_row *r)
{
	memset(r, 0, sizeof(*r));
	r->id = sqlite3_column_int64(s, 0);
	r->at.seconds = sqlite3_column_int64(s, 1);
	r->at.nanos = sqlite3_column_int(s, 2);
	column_copy(s, 3, r->tenant, sizeof(r->tenant));
	column_copy(s, 4, r->user, sizeof(r->user));
	column_copy(s, 5, r->device, sizeof(r->device));
	r->from_type = sqlite3_column_int(s, 6);
	r->to_type = sqlite3_column_int(s, 7);
	r->is_charged = sqlite3_column_int(s, 8) != 0;
	column_copy(s, 9, r->actor, sizeof(r->actor));
	column_copy(s, 10, r->request_id, sizeof(r->request_id));
}

static int sq_ledger_read(struct store *base, const char *customer,
			  int64_t after_id, struct store_ledger_row *rows,
			  size_t max, size_t *n)
{
	struct sqlite_store *st = (struct sqlite_store *)base;
	struct sqlite_conn *c;
	sqlite3_stmt *s;
	size_t got = 0;
	int sqlite_rc;
	enum store_result result;

	*n = 0;
	if (max == 0)
		return STORE_OK;
	c = pool_take(st);
	s = stmt(c, STMT_LEDGER_READ);
	sqlite_rc = bind_text(s, 1, customer);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = sqlite3_bind_int64(s, 2, after_id);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = sqlite3_bind_int64(
			s, 3, max > INT64_MAX ? INT64_MAX : (int64_t)max);
	if (sqlite_rc != SQLITE_OK) {
		result = bind_fail(c, STMT_LEDGER_READ, sqlite_rc,
				   "ledger read");
		pool_give(st, c);
		return result;
	}
	while (got < max && (sqlite_rc = sqlite3_step(s)) == SQLITE_ROW)
		ledger_row_of(s, &rows[got++]);
	if (got == max && sqlite_rc == SQLITE_ROW)
		sqlite_rc = SQLITE_DONE; /* LIMIT makes it unreachable */
	if (sqlite_rc != SQLITE_DONE) {
		result = sq_fail(c->db, sqlite_rc, "ledger read");
		sqlite3_reset(s);
		pool_give(st, c);
		return result;
	}
	sqlite3_reset(s);
	pool_give(st, c);
	*n = got;
	return STORE_OK;
}

/*
 * Health: the file is still ours, the path is writable, and one small
 * write commits (through the writers' queue, so it also proves a batch can
 * reach the disk: full, read-only, immutable or failing ones do not).
 * A lock held by another process is no failure.
 */
static int sq_probe(struct store *base, char *why, size_t why_size)
{
	struct sqlite_store *st = (struct sqlite_store *)base;
	struct store_tx *tx = NULL;
	enum store_result result = check_file(st, why, why_size);

	if (result != STORE_OK)
		return result;
	result = begin_write(st, false, &tx);
	if (result == STORE_OK) {
		struct sqlite_tx *wtx = (struct sqlite_tx *)tx;

		wtx->is_write_forced = true; /* rows do not count it */
		result = run(wtx->conn, STMT_PROBE, "probe", NULL);
		if (result == STORE_OK)
			result = sq_commit(tx);
		else
			sq_rollback(tx);
	}
	if (result == STORE_OK || result == STORE_RETRY)
		return STORE_OK;
	snprintf(why, why_size,
		 "a test write to %s failed (disk full, read-only or I/O "
		 "error; see the log)",
		 st->path);
	return STORE_UNAVAILABLE;
}

/* ---- the ledger, read and pruned ---- */

/* Runs a bound one-row, one-integer query and resets it. */
static enum store_result query_int(struct sqlite_conn *c, enum stmt_id id,
				   const char *what, int64_t *out)
{
	sqlite3_stmt *s = stmt(c, id);
	int sqlite_rc = sqlite3_step(s);
	enum store_result result = STORE_OK;

	if (sqlite_rc == SQLITE_ROW)
		*out = sqlite3_column_int64(s, 0);
	else
		result = sq_fail(c->db,
				 sqlite_rc == SQLITE_DONE ? SQLITE_CORRUPT
							  : sqlite_rc,
				 what);
	sqlite3_reset(s);
	return result;
}

static int sq_ledger_last_id(struct store_tx *base, const char *customer,
			     int64_t *id)
{
	struct sqlite_conn *c = ((struct sqlite_tx *)base)->conn;
	int sqlite_rc = bind_text(stmt(c, STMT_LEDGER_LAST_ID), 1, customer);

	if (sqlite_rc != SQLITE_OK)
		return bind_fail(c, STMT_LEDGER_LAST_ID, sqlite_rc,
				 "ledger last id");
	return query_int(c, STMT_LEDGER_LAST_ID, "ledger last id", id);
}

static int sq_seats_charged(struct store_tx *base, const char *customer,
			    int64_t *n)
{
	struct sqlite_conn *c = ((struct sqlite_tx *)base)->conn;
	int sqlite_rc = bind_text(stmt(c, STMT_SEATS_CHARGED), 1, customer);

	if (sqlite_rc != SQLITE_OK)
		return bind_fail(c, STMT_SEATS_CHARGED, sqlite_rc,
				 "seats charged");
	return query_int(c, STMT_SEATS_CHARGED, "seats charged", n);
}

/*
 * The page query is put together from fixed pieces, one per filter given,
 * so that each shape has a plain WHERE the planner matches to its index
 * ("(?4 = '' OR user_id = ?4)" would defeat them all). No input ever
 * reaches the SQL text: values are bound.
 */
static int page_sql(const struct store_ledger_query *q, char *sql,
		    size_t size)
{
	int n = snprintf(
		sql, size,
		"SELECT id, at_seconds, at_nanos, tenant, user_id, device_id,"
		" from_type, to_type, charged, actor, request_id FROM ledger"
		" WHERE tenant = ?1 AND id <= ?2%s%s%s%s%s%s"
		" ORDER BY id %s LIMIT ?10",
		q->is_oldest_first ? " AND id > ?3" : "",
		q->user[0] ? " AND user_id = ?4" : "",
		q->device[0] ? " AND device_id = ?5" : "",
		q->is_only_charged ? " AND charged = 1" : "",
		q->has_since ? " AND (at_seconds > ?6 OR (at_seconds = ?6"
			       " AND at_nanos >= ?7))"
			     : "",
		q->has_until ? " AND (at_seconds < ?8 OR (at_seconds = ?8"
			       " AND at_nanos < ?9))"
			     : "",
		q->is_oldest_first ? "ASC" : "DESC");

	return n > 0 && (size_t)n < size ? 0 : -1;
}

static int sq_ledger_page(struct store_tx *base,
			  const struct store_ledger_query *q,
			  struct store_ledger_row *rows, size_t max, size_t *n)
{
	struct sqlite_conn *c = ((struct sqlite_tx *)base)->conn;
	int64_t after = q->after_id;
	sqlite3_stmt *s = NULL;
	char sql[768];
	size_t got = 0;
	int sqlite_rc;

	*n = 0;
	if (max == 0)
		return STORE_OK;
	/*
	 * Newest first, the keyset step is an upper bound like the snapshot's:
	 * one bound, min of both, so the index range ends where the page
	 * starts (with two, SQLite ranges on one and filters by the other,
	 * and a deep page would cost its depth).
	 */
	int64_t upper = q->bound_id;
	if (!q->is_oldest_first && after > 0 && after - 1 < upper)
		upper = after - 1;
	if (page_sql(q, sql, sizeof(sql)) != 0)
		return STORE_ERROR;
	sqlite_rc = sqlite3_prepare_v2(c->db, sql, -1, &s, NULL);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = bind_text(s, 1, q->customer);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = sqlite3_bind_int64(s, 2, upper);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = sqlite3_bind_int64(s, 3, after);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = bind_text(s, 4, q->user);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = bind_text(s, 5, q->device);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = sqlite3_bind_int64(s, 6, q->since.seconds);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = sqlite3_bind_int(s, 7, q->since.nanos);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = sqlite3_bind_int64(s, 8, q->until.seconds);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = sqlite3_bind_int(s, 9, q->until.nanos);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = sqlite3_bind_int64(
			s, 10, max > INT64_MAX ? INT64_MAX : (int64_t)max);
	while (sqlite_rc == SQLITE_OK && got < max &&
	       (sqlite_rc = sqlite3_step(s)) == SQLITE_ROW) {
		ledger_row_of(s, &rows[got++]);
		sqlite_rc = SQLITE_OK;
	}
	if (sqlite_rc == SQLITE_ROW || sqlite_rc == SQLITE_DONE)
		sqlite_rc = SQLITE_OK;
	if (sqlite_rc != SQLITE_OK) {
		enum store_result result =
			sq_fail(c->db, sqlite_rc, "ledger page");

		sqlite3_finalize(s);
		return result;
	}
	sqlite3_finalize(s);
	*n = got;
	return STORE_OK;
}

static int sq_ledger_prune(struct store_tx *base, int64_t before_seconds,
			   size_t max, size_t *n)
{
	struct sqlite_tx *tx = (struct sqlite_tx *)base;
	struct sqlite_conn *c = tx->conn;
	sqlite3_stmt *s = stmt(c, STMT_LEDGER_PRUNE);
	enum store_result result = refuse_read_only(tx, "ledger prune");
	int n_deleted = 0, sqlite_rc;

	*n = 0;
	if (result != STORE_OK)
		return result;
	sqlite_rc = sqlite3_bind_int64(s, 1, before_seconds);
	if (sqlite_rc == SQLITE_OK)
		sqlite_rc = sqlite3_bind_int64(
			s, 2, max > INT64_MAX ? INT64_MAX : (int64_t)max);
	if (sqlite_rc != SQLITE_OK)
		return bind_fail(c, STMT_LEDGER_PRUNE, sqlite_rc,
				 "ledger prune");
	result = run(c, STMT_LEDGER_PRUNE, "ledger prune", &n_deleted);
	if (result == STORE_OK)
		*n = (size_t)n_deleted;
	return result;
}

static void sq_ledger_key(struct store *base,
			  unsigned char key[STORE_LEDGER_KEY_SIZE])
{
	memcpy(key, ((struct sqlite_store *)base)->ledger_key,
	       STORE_LEDGER_KEY_SIZE);
}

const struct store_ops store_sqlite_ops = {
	.name = "sqlite",
	.accepts = sq_accepts,
	.open = sq_open,
	.close = sq_close,
	.begin = sq_begin,
	.commit = sq_commit,
	.rollback = sq_rollback,
	.load = sq_load,
	.apply = sq_apply,
	.customer_put = sq_customer_put,
	.customer_delete = sq_customer_delete,
	.user_put = sq_user_put,
	.user_delete = sq_user_delete,
	.device_put = sq_device_put,
	.device_delete = sq_device_delete,
	.ledger_read = sq_ledger_read,
	.probe = sq_probe,
	.ledger_last_id = sq_ledger_last_id,
	.ledger_page = sq_ledger_page,
	.ledger_prune = sq_ledger_prune,
	.seats_charged = sq_seats_charged,
	.ledger_key = sq_ledger_key,
	.submit = sq_submit,
	.read_submit = sq_read_submit,
	.reap = sq_reap,
};
