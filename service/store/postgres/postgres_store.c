/*
 * The PostgreSQL backend. Why it is shaped this way:
 *
 * - Several server replicas share one database, so every rule must hold
 *   across processes, not just threads. Only what needs it serialises:
 *   a write's load() takes transaction-level advisory locks on the tenant
 *   (shared), on the user and on the device of its key (exclusive), in
 *   that order, in one statement, so writers of one user or one device
 *   (a move, the same device asked by two users) go one at a time and
 *   writers of different users of a customer do not wait for each other.
 *   A device change without a user (directory) also locks the device's
 *   owner, whose assignment it may drop: every change of an assignment
 *   holds its owner's lock. A change of the customer itself (upsert,
 *   delete) takes the tenant lock exclusive: it waits for the writers
 *   under way and keeps new ones out.
 * - Seats: each customer row keeps seats_in_use (schema version 3), changed
 *   in the transaction of every change that takes a user's first seat or
 *   ends their last (apply(); a customer delete takes the row with it).
 *   Only those changes update the row, so only they wait for each other:
 *   the update re-checks, under the row lock, that the seat rule still
 *   reads as the decision did (not full for a seat without charges); if
 *   another writer took the last seat in between, it changes nothing and
 *   the transaction is STORE_RETRY: the caller loads and decides again,
 *   and answers 402 where it must. Repeats, moves, replaces and lists
 *   never touch it.
 * - Write transactions run READ COMMITTED: load() reads in a statement
 *   after the locks, so it sees what every previous holder committed. The
 *   unique constraints and foreign keys of the assignments table back the
 *   rules up (one type per device, one device per type and user, the user
 *   exists and owns the device).
 * - Round trips: statements go out as one libpq pipeline per step. begin()
 *   sends nothing; a write's BEGIN, locks and read are one round trip, and
 *   apply() (the changes, their ledger rows, the seat count) goes out with
 *   COMMIT as one more, unless it takes a seat (whose check must come back
 *   before COMMIT: then it is a round trip of its own). A change whose row
 *   is not there fails its statement, so the COMMIT behind it never
 *   applies half of it. A read-only transaction takes no lock and runs
 *   in one REPEATABLE READ snapshot, opened with its first statements.
 * - Reads handed over (store_read_submit: the read pass of assign and
 *   unassign, one load each, one snapshot, nothing to commit) do not wait
 *   on their callers' threads: a thread per reader connection sends every
 *   load queued at the moment as one pipeline (one round trip and one
 *   wake-up of the database for many reads) and hands each caller its
 *   snapshot, on which the caller decides and answers from that thread
 *   (pg_reader_main). Jobs handed over (store_submit: the write pass of
 *   assign and unassign, directory changes, and ledger queries, which
 *   only read) run on writer threads, one transaction each
 *   (pg_writer_main).
 * - Connections come from a fixed pool (one per server worker by
 *   default) and a few readers that carry the batched loads; a
 *   transaction holds one pool connection from its first statement to
 *   commit()/rollback(). A connection found broken (status CONNECTION_BAD,
 *   or any failure that leaves it so, a pipeline cut short included) is
 *   reset on its next use, so a database restart costs the callers of that
 *   moment an UNAVAILABLE, not a server restart. The first statements of a
 *   transaction on a connection that went stale while idle are sent again
 *   once on a fresh connection (nothing of the transaction was lost).
 * - Statements are prepared per connection (again after each reset) and
 *   always run with parameters; SQL text is never built from input. Their
 *   texts and the schema's are in postgres_sql.c.
 * - Durability of reads: synchronous_commit is forced on for our sessions
 *   (whatever the server's or database's default), so COMMIT returns only
 *   once the change is durable, and a commit is visible to other sessions
 *   only after its WAL flush (PostgreSQL marks it committed in the
 *   procarray after XLogFlush in RecordTransactionCommit). A read that
 *   decides "nothing to do" therefore never rests on a change that could
 *   still be lost. (A session of another program with synchronous_commit
 *   off could make its own change visible before its flush: only this
 *   store writes these tables.)
 * - Error mapping: serialization failure, deadlock and lock timeout ->
 *   STORE_RETRY; a database that cannot take the write now (a lost
 *   connection, a server shutting down, a full disk, read-only:
 *   pg_is_unavailable) -> STORE_UNAVAILABLE; anything else STORE_ERROR.
 *   Each is logged with its SQLSTATE.
 */
#include "postgres_store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "common/condwait.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/utf8.h"
#include "service/store/postgres/postgres_sql.h"

#define PG_DEFAULT_CONNECT_TIMEOUT "5"
/* After a failed connection attempt, the wait before the next (one at a
 * time): at most 5 attempts a second while the database refuses them. */
#define PG_CONNECT_RETRY_MS 200
#define PG_DEFAULT_LOCK_TIMEOUT_MS 5000u
#define PG_MIN_POOL 4u
#define PG_MAX_POOL 256u

/* ---- the pool ---- */

struct pg_store;

/* What a transaction has sent so far. */
enum pg_frame {
	FRAME_NONE, /* nothing: BEGIN goes with the first statements */
	FRAME_OPEN, /* BEGIN sent */
};

struct pg_applied;

struct pg_tx {
	struct store_tx base;
	struct pg_slot *slot;
	int failed; /* first failure inside the tx; STORE_OK while fine */
	bool is_read_only;
	enum pg_frame frame;
	/* A read-only transaction stands alone (allocated by begin()) and
	 * takes a pool slot with its first statement. */
	bool is_detached;
	/* apply()'s statements not sent yet: they go out with the next
	 * statement or with COMMIT, in its round trip (pg_apply). */
	struct pg_applied *deferred;
	/* Write: the user whose lock load() took; is_seated_known when
	 * load() also read whether they hold a seat (is_seated). */
	bool has_locked_user;
	bool is_seated_known;
	bool is_seated;
	char locked_user[DAS_ID_SIZE];
};

struct pg_slot {
	PGconn *conn;      /* NULL until first used */
	/* A duplicate of conn's socket, for pg_cut (slot_watch); -1: none. */
	int cut_fd;
	bool is_in_use;    /* guarded by the store's mu */
	bool is_ready;     /* session set and statements prepared */
	bool is_reader;    /* carries batched loads only (pg_reader_main) */
	bool saw_disk_full; /* its last failed statement: SQLSTATE 53100 */
	struct pg_tx tx;   /* the one transaction this slot can carry */
};

/* The thread of one reader connection (pg_reader_main). */
struct pg_reader {
	struct pg_store *st;
	struct pg_slot *slot;
	pthread_t thread;
	bool is_started;
};

struct pg_store {
	struct store base;
	unsigned char ledger_key[STORE_LEDGER_KEY_SIZE];
	char *spec;
	char lock_timeout[16]; /* milliseconds, as text */
	pthread_mutex_t mu; /* the slots' is_in_use and cut_fd */
	pthread_cond_t cv;
	atomic_bool is_cut; /* pg_cut: no statement goes out any more */
	/* After a failed connection attempt: no new one before this
	 * (CLOCK_MONOTONIC ms; 0: none failed). See connect_gate_open. */
	atomic_llong connect_retry_at_ms;
	/* When a statement was last refused for a full disk (CLOCK_MONOTONIC
	 * ms; 0: a write committed since). See pg_probe. */
	atomic_llong disk_full_at_ms;
	size_t n_slots;
	struct pg_slot *slots;
	/* Batched reads: the queue of waiting loads and the connections
	 * that carry the batches (is_in_use: a batch in flight). */
	pthread_mutex_t read_mu;
	pthread_cond_t read_cv; /* a read queued, or closing */
	struct store_read *read_head, *read_tail;
	unsigned n_idle_readers; /* reader threads asleep on read_cv */
	bool is_closing;
	size_t n_readers;
	struct pg_slot *readers;
	struct pg_reader *reader_threads;
	/* Writes handed over (store_submit) and the threads running them,
	 * one transaction each. */
	pthread_mutex_t write_mu;
	pthread_cond_t write_cv; /* a job queued, or closing */
	struct store_job *write_head, *write_tail;
	unsigned n_idle_writers;
	bool is_write_closing;
	size_t n_writers, n_writers_started;
	pthread_t *writer_threads;
};

/* How long a write refused for a full disk keeps the probe NOT_SERVING. */
#define PG_DISK_FULL_MS 10000

static bool pg_accepts(const char *spec)
{
	return spec && (strncmp(spec, "postgresql://", 13) == 0 ||
			strncmp(spec, "postgres://", 11) == 0);
}

/* The first line of a libpq message, without its trailing newline. */
static void first_line(const char *msg, char *out, size_t size)
{
	size_t n = strcspn(msg ? msg : "", "\r\n");

	if (n >= size)
		n = size - 1;
	memcpy(out, msg ? msg : "", n);
	out[n] = '\0';
}

/*
 * SQLSTATEs that say the database cannot take the write now, whatever the
 * request (as a full disk or a read-only file does for SQLite): the
 * connection (class 08), insufficient resources (53: disk full, out of
 * memory, too many connections), an operator's intervention (57: shutdown,
 * a cancelled query, a dropped database), an I/O error (58030), and a
 * read-only transaction (25006: a hot standby, or a database set
 * default_transaction_read_only, as hosted services do when its storage
 * is nearly full).
 */
static bool pg_is_unavailable(const char *state)
{
	return strncmp(state, "08", 2) == 0 || strncmp(state, "53", 2) == 0 ||
	       strncmp(state, "57", 2) == 0 || strcmp(state, "58030") == 0 ||
	       strcmp(state, "25006") == 0;
}

/*
 * Maps a failed result (res may be NULL) on conn to a store result and
 * logs it once, with its SQLSTATE.
 */
static int pg_fail(PGconn *conn, const PGresult *res, const char *what)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
				: NULL;
	const char *primary =
		res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	char line[256];
	int rc = STORE_ERROR;

	if (primary)
		first_line(primary, line, sizeof(line));
	else
		first_line(PQerrorMessage(conn), line, sizeof(line));
	if (!state)
		state = "";
	if (PQstatus(conn) == CONNECTION_BAD || pg_is_unavailable(state))
		rc = STORE_UNAVAILABLE;
	else if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
		 strcmp(state, "55P03") == 0)
		rc = STORE_RETRY;

	if (rc != STORE_UNAVAILABLE) {
		das_log(rc == STORE_ERROR ? DAS_LOG_ERROR : DAS_LOG_DEBUG,
			"postgresql: %s failed: SQLSTATE %s: %s", what,
			state[0] ? state : "(none)", line);
		return rc;
	}
	/* Every call meets it while it lasts (a read-only database, a full
	 * disk): one line a second at most. */
	static struct das_log_limit unavailable_warn;
	unsigned n_held;

	if (das_log_limit_take(&unavailable_warn, 1000, &n_held))
		das_log(DAS_LOG_WARN,
			"postgresql: %s failed: SQLSTATE %s: %s (%u more such "
			"failures since the last line)",
			what, state[0] ? state : "(none)", line, n_held);
	return rc;
}

/* Remembers on slot whether res (may be NULL) failed for a full disk. */
static void slot_note(struct pg_slot *slot, const PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
				: NULL;

	slot->saw_disk_full = state && strcmp(state, "53100") == 0;
}

/* Runs a fixed command (no parameters, no input) and checks it. */
static int pg_command(PGconn *conn, const char *sql, const char *what)
{
	PGresult *res = PQexec(conn, sql);
	int rc = STORE_OK;

	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
	    PQresultStatus(res) != PGRES_TUPLES_OK)
		rc = pg_fail(conn, res, what);
	PQclear(res);
	return rc;
}

/* Server notices ("relation already exists, skipping") are not news. */
static void pg_notice(void *arg, const char *message)
{
	char line[256];

	first_line(message, line, sizeof(line));
	das_log(DAS_LOG_DEBUG, "postgresql: %s", line);
}

static PGconn *pg_connect(const char *spec)
{
	/*
	 * Our defaults come before dbname so that the URI may override them.
	 * Keepalives: a database host that vanishes without a reset must not
	 * hold a worker forever.
	 */
	const char *const keys[] = {"connect_timeout",     "application_name",
				    "keepalives",          "keepalives_idle",
				    "keepalives_interval", "keepalives_count",
				    "dbname",              NULL};
	const char *const values[] = {PG_DEFAULT_CONNECT_TIMEOUT,
				      "device-assignment-server",
				      "1",
				      "10",
				      "3",
				      "3",
				      spec,
				      NULL};

	PGconn *conn = PQconnectdbParams(keys, values, 1);

	if (conn)
		PQsetNoticeProcessor(conn, pg_notice, NULL);
	return conn;
}

/* Session settings and prepared statements for a fresh connection. */
/*
 * A reader's session plans its one statement once (plan_cache_mode,
 * PostgreSQL 12 and later). Left to choose, PostgreSQL plans
 * ST_LOAD_BATCH afresh for every batch for as long as the average cost of
 * its custom plans so far stays below the generic plan's, and a custom
 * plan, knowing how many keys the arrays hold, looks cheaper while batches
 * are small: after a light start (or with two replicas halving each
 * other's batches) a reader stayed on custom plans under load. The two
 * plans are the same nested loop of index lookups. Measured: pgbench, one
 * connection, a batch of 7 keys, 287 -> 129 us a statement; two fresh
 * replicas behind one gateway after a 1 s warm-up at 4 connections,
 * PostgreSQL 43 -> 16-18 us of CPU a read and 17.6 k -> 27.5 k reads/s;
 * one fresh replica, its first seconds 17 -> 11 us. Other sessions keep
 * the default: their statements get generic plans by themselves (no
 * arrays), or must not have one (pg_ledger_last_id).
 */
static const char reader_settings[] =
	"SELECT set_config('plan_cache_mode', 'force_generic_plan', false) "
	"WHERE current_setting('server_version_num')::int >= 120000";

static int pg_session_setup(struct pg_store *st, PGconn *conn,
			    bool is_reader)
{
	const char *const params[] = {st->lock_timeout};
	PGresult *res;
	int rc = STORE_OK;

	res = PQexecParams(conn,
			   "SELECT set_config('synchronous_commit', 'on', "
			   "false), set_config('lock_timeout', $1, false)",
			   1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		rc = pg_fail(conn, res, "session settings");
	PQclear(res);
	if (rc == STORE_OK && is_reader) {
		res = PQexec(conn, reader_settings);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			rc = pg_fail(conn, res, "reader settings");
		PQclear(res);
	}
	for (int i = 0; rc == STORE_OK && i < ST__COUNT; i++) {
		res = PQprepare(conn, pg_stmts[i].name, pg_stmts[i].sql,
				pg_stmts[i].n_params, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			rc = pg_fail(conn, res, pg_stmts[i].name);
		PQclear(res);
	}
	return rc;
}

/*
 * pg_cut wakes a thread that waits in libpq for a database that stopped
 * answering by shutting down that connection's socket: libpq's next read
 * then ends at once, as if the server had closed it. It does so through
 * cut_fd, a duplicate of the socket's descriptor made with the connection
 * and closed before libpq replaces or closes the connection: the socket
 * stays ours to shut down whatever libpq did with its own descriptor
 * meanwhile, so another file that took that number is never touched.
 */
static void slot_watch(struct pg_store *st, struct pg_slot *slot)
{
	int fd = PQsocket(slot->conn);

	if (slot->cut_fd >= 0 || fd < 0)
		return;
	pthread_mutex_lock(&st->mu);
	slot->cut_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (slot->cut_fd >= 0 && atomic_load(&st->is_cut))
		shutdown(slot->cut_fd, SHUT_RDWR);
	pthread_mutex_unlock(&st->mu);
}

static void slot_unwatch(struct pg_store *st, struct pg_slot *slot)
{
	if (slot->cut_fd < 0)
		return;
	pthread_mutex_lock(&st->mu);
	close(slot->cut_fd);
	slot->cut_fd = -1;
	pthread_mutex_unlock(&st->mu);
}

static long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * May this thread try to connect now? While the database refuses
 * connections (down, restarting, at max_connections), every call would
 * otherwise try one of its own, and each logs why it failed: a server
 * under load made 1,500 attempts and 26,000 log lines a second, and each
 * attempt that reaches PostgreSQL costs it a process. So after a failed
 * attempt the next starts PG_CONNECT_RETRY_MS later, one thread at a time
 * (the others are answered STORE_UNAVAILABLE at once), until one succeeds.
 */
static bool connect_gate_open(struct pg_store *st)
{
	long long at = atomic_load(&st->connect_retry_at_ms);
	long long now;

	if (at == 0)
		return true;
	now = mono_ms();
	return now >= at &&
	       atomic_compare_exchange_strong(&st->connect_retry_at_ms, &at,
					      now + PG_CONNECT_RETRY_MS);
}

static void connect_gate_note(struct pg_store *st, bool is_connected)
{
	atomic_store(&st->connect_retry_at_ms,
		     is_connected ? 0 : mono_ms() + PG_CONNECT_RETRY_MS);
}

/* Does slot need a connection made (or made again) before its next use? */
static bool slot_needs_connect(struct pg_slot *slot, bool is_forced_reset)
{
	if (!slot->conn || is_forced_reset || !slot->is_ready ||
	    PQstatus(slot->conn) == CONNECTION_BAD)
		return true;
	/* A pipeline cut short by a lost connection is not worth mending. */
	return PQpipelineStatus(slot->conn) != PQ_PIPELINE_OFF;
}

static void slot_connect(struct pg_store *st, struct pg_slot *slot,
			 bool is_forced_reset)
{
	if (!slot->conn) {
		slot->conn = pg_connect(st->spec);
		slot->is_ready = false;
	} else if (is_forced_reset || !slot->is_ready ||
		   PQstatus(slot->conn) == CONNECTION_BAD) {
		slot_unwatch(st, slot);
		PQreset(slot->conn);
		slot->is_ready = false;
		if (PQstatus(slot->conn) == CONNECTION_OK)
			store_metric_reconnect("postgresql");
	}
	if (slot->conn && PQstatus(slot->conn) == CONNECTION_OK &&
	    PQpipelineStatus(slot->conn) != PQ_PIPELINE_OFF) {
		slot_unwatch(st, slot);
		PQfinish(slot->conn);
		slot->conn = pg_connect(st->spec);
		slot->is_ready = false;
	}
	connect_gate_note(st, slot->conn &&
				      PQstatus(slot->conn) == CONNECTION_OK);
}

/* Makes slot's connection usable: connect, or reset when broken;
 * STORE_UNAVAILABLE once the store is cut, or while connection attempts
 * wait after a failed one (connect_gate_open). */
static int pg_slot_ready(struct pg_store *st, struct pg_slot *slot,
			 bool is_forced_reset)
{
	int rc;

	if (atomic_load(&st->is_cut))
		return STORE_UNAVAILABLE;
	if (slot_needs_connect(slot, is_forced_reset)) {
		if (!connect_gate_open(st))
			return STORE_UNAVAILABLE;
		slot_connect(st, slot, is_forced_reset);
	}
	if (!slot->conn)
		return STORE_ERROR; /* out of memory */
	if (PQstatus(slot->conn) != CONNECTION_OK) {
		char line[256];

		first_line(PQerrorMessage(slot->conn), line, sizeof(line));
		das_log(DAS_LOG_WARN, "postgresql: cannot connect: %s", line);
		return STORE_UNAVAILABLE;
	}
	slot_watch(st, slot);
	if (atomic_load(&st->is_cut))
		return STORE_UNAVAILABLE; /* cut while it connected */
	if (slot->is_ready)
		return STORE_OK;
	rc = pg_session_setup(st, slot->conn, slot->is_reader);
	if (rc == STORE_OK)
		slot->is_ready = true;
	return rc;
}

/* Marks a reader's slot in use (a batch in flight) or not, for pg_cut. */
static void slot_use(struct pg_store *st, struct pg_slot *slot,
		     bool is_in_use)
{
	pthread_mutex_lock(&st->mu);
	slot->is_in_use = is_in_use;
	pthread_mutex_unlock(&st->mu);
}

/* Takes a free slot, waiting for one; prefers one already connected. */
static struct pg_slot *pg_acquire(struct pg_store *st)
{
	struct pg_slot *slot = NULL;
	uint64_t t0 = 0;

	pthread_mutex_lock(&st->mu);
	for (;;) {
		for (size_t i = 0; i < st->n_slots; i++) {
			struct pg_slot *s = &st->slots[i];

			if (s->is_in_use)
				continue;
			if (!slot || (!slot->is_ready && s->is_ready))
				slot = s;
			if (slot->is_ready)
				break;
		}
		if (slot)
			break;
		if (!t0)
			t0 = das_metric_now_ns();
		pthread_cond_wait(&st->cv, &st->mu);
	}
	slot->is_in_use = true;
	pthread_mutex_unlock(&st->mu);
	if (t0)
		store_metric_pool_wait("postgresql", das_metric_now_ns() - t0);
	return slot;
}

static void pg_release(struct pg_store *st, struct pg_slot *slot)
{
	/* A connection left inside a transaction is not reusable as is. */
	if (slot->conn && PQstatus(slot->conn) == CONNECTION_OK &&
	    (PQpipelineStatus(slot->conn) != PQ_PIPELINE_OFF ||
	     PQtransactionStatus(slot->conn) != PQTRANS_IDLE))
		slot->is_ready = false;
	pthread_mutex_lock(&st->mu);
	slot->is_in_use = false;
	pthread_cond_signal(&st->cv);
	pthread_mutex_unlock(&st->mu);
}

/* ---- schema ---- */

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Stores a fresh random key for page tokens (schema version 2). */
static int pg_insert_ledger_key(PGconn *conn)
{
	unsigned char key[STORE_LEDGER_KEY_SIZE];
	char hex[2 * STORE_LEDGER_KEY_SIZE + 1];
	const char *params[] = {hex};
	PGresult *res;
	int rc = STORE_OK;

	if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key))
		return STORE_ERROR;
	for (size_t i = 0; i < sizeof(key); i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	res = PQexecParams(conn,
			   "INSERT INTO ledger_key VALUES (1, decode($1, 'hex'))",
			   1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		rc = pg_fail(conn, res, "ledger key");
	PQclear(res);
	return rc;
}

/* Reads the page-token key that every replica shares. */
static int pg_read_ledger_key(PGconn *conn, unsigned char *key)
{
	PGresult *res = PQexec(conn, "SELECT encode(key, 'hex') "
				     "FROM ledger_key WHERE id = 1");
	int rc = STORE_OK;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		rc = pg_fail(conn, res, "ledger key");
	} else if (PQntuples(res) != 1 ||
		   strlen(PQgetvalue(res, 0, 0)) != 2 * STORE_LEDGER_KEY_SIZE) {
		rc = STORE_ERROR;
	} else {
		const char *hex = PQgetvalue(res, 0, 0);

		for (size_t i = 0; i < STORE_LEDGER_KEY_SIZE; i++) {
			int hi = hex_digit(hex[2 * i]),
			    lo = hex_digit(hex[2 * i + 1]);

			if (hi < 0 || lo < 0) {
				rc = STORE_ERROR;
				break;
			}
			key[i] = (unsigned char)(hi * 16 + lo);
		}
	}
	PQclear(res);
	return rc;
}

/*
 * The schema's versions, in order: the SQL that makes version i + 1 of
 * version i, and what else that step stores (NULL: nothing).
 */
static const struct pg_migration {
	const char *sql;
	int (*then)(PGconn *conn);
} pg_migrations[PG_SCHEMA_VERSION] = {
	{pg_schema_v1, NULL},
	{pg_schema_v2, pg_insert_ledger_key},
	{pg_schema_v3, NULL},
};

/* True when the schema_version table exists (-1: the query failed). */
static int pg_has_schema_version(PGconn *conn)
{
	PGresult *res = PQexec(conn, "SELECT to_regclass('schema_version') "
				     "IS NOT NULL");
	int has = -1;

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		has = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	else
		pg_fail(conn, res, "schema_version");
	PQclear(res);
	return has;
}

/* Takes the schema lock (to the end of the transaction) and reads the
 * database's version: 0 for a new database. A database of the current
 * schema is only read, so a server starts on one that is read-only (it
 * serves reads; its health says NOT_SERVING). */
static int pg_schema_version(PGconn *conn, long *version)
{
	PGresult *res;
	char *end;
	int has = 0;
	int rc = pg_command(conn,
			    "SELECT pg_advisory_xact_lock(x'" PG_SCHEMA_LOCK_KEY
			    "'::int8)",
			    "schema lock");

	if (rc == STORE_OK && (has = pg_has_schema_version(conn)) < 0)
		rc = STORE_ERROR;
	if (rc == STORE_OK && !has)
		rc = pg_command(conn,
				"CREATE TABLE IF NOT EXISTS schema_version ("
				"version integer PRIMARY KEY)",
				"schema_version");
	if (rc != STORE_OK)
		return rc;
	res = PQexec(conn, "SELECT coalesce(max(version), 0) "
			   "FROM schema_version");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		rc = pg_fail(conn, res, "schema version");
	} else {
		errno = 0;
		*version = strtol(PQgetvalue(res, 0, 0), &end, 10);
		if (errno || *end || *version < 0)
			rc = STORE_ERROR;
	}
	PQclear(res);
	return rc;
}

/* Brings the schema from version to PG_SCHEMA_VERSION, one step a
 * version, each recorded in schema_version. */
static int pg_migrate_from(PGconn *conn, long version)
{
	int rc = STORE_OK;

	for (long v = version; rc == STORE_OK && v < PG_SCHEMA_VERSION; v++) {
		const struct pg_migration *m = &pg_migrations[v];
		char sql[64];

		rc = pg_command(conn, m->sql, "schema");
		if (rc == STORE_OK && m->then)
			rc = m->then(conn);
		snprintf(sql, sizeof(sql),
			 "INSERT INTO schema_version VALUES (%ld)", v + 1);
		if (rc == STORE_OK)
			rc = pg_command(conn, sql, "schema version");
	}
	return rc;
}

/*
 * Creates the schema of an empty database, migrates an older one, refuses
 * a newer one; in one transaction under the schema lock, so replicas
 * starting together on a new database do not both create it.
 */
static int pg_migrate(PGconn *conn, char *err, size_t err_size)
{
	long version = -1;
	char line[256];
	int rc = pg_command(conn, "BEGIN", "schema begin");

	if (rc == STORE_OK)
		rc = pg_schema_version(conn, &version);
	if (rc == STORE_OK && version > PG_SCHEMA_VERSION) {
		snprintf(err, err_size,
			 "postgresql store: database schema version %ld is "
			 "newer than this program's (%d)",
			 version, PG_SCHEMA_VERSION);
		pg_command(conn, "ROLLBACK", "schema rollback");
		return STORE_ERROR;
	}
	if (rc == STORE_OK)
		rc = pg_migrate_from(conn, version);
	if (rc == STORE_OK && version < PG_SCHEMA_VERSION)
		das_log(DAS_LOG_INFO, "postgresql: %s schema version %d",
			version < 1 ? "created" : "migrated to",
			PG_SCHEMA_VERSION);
	if (rc == STORE_OK)
		rc = pg_command(conn, "COMMIT", "schema commit");
	if (rc == STORE_OK)
		return STORE_OK;
	first_line(PQerrorMessage(conn), line, sizeof(line));
	snprintf(err, err_size,
		 "postgresql store: cannot create the schema: %s",
		 line[0] ? line : "unexpected reply");
	pg_command(conn, "ROLLBACK", "schema rollback");
	return rc;
}

/* ---- open / close ---- */

/* Closes the slot's connection, its threads gone (pg_close). */
static void slot_finish(struct pg_slot *slot)
{
	if (slot->cut_fd >= 0)
		close(slot->cut_fd);
	if (slot->conn)
		PQfinish(slot->conn);
}

static void pg_close(struct store *base)
{
	struct pg_store *st = (struct pg_store *)base;

	if (!st)
		return;
	pthread_mutex_lock(&st->read_mu);
	st->is_closing = true;
	pthread_cond_broadcast(&st->read_cv);
	pthread_mutex_unlock(&st->read_mu);
	for (size_t i = 0; st->reader_threads && i < st->n_readers; i++)
		if (st->reader_threads[i].is_started)
			pthread_join(st->reader_threads[i].thread, NULL);
	free(st->reader_threads);
	pthread_mutex_lock(&st->write_mu);
	st->is_write_closing = true;
	pthread_cond_broadcast(&st->write_cv);
	pthread_mutex_unlock(&st->write_mu);
	for (size_t i = 0; i < st->n_writers_started; i++)
		pthread_join(st->writer_threads[i], NULL);
	free(st->writer_threads);
	pthread_cond_destroy(&st->write_cv);
	pthread_mutex_destroy(&st->write_mu);
	for (size_t i = 0; st->slots && i < st->n_slots; i++)
		slot_finish(&st->slots[i]);
	for (size_t i = 0; st->readers && i < st->n_readers; i++)
		slot_finish(&st->readers[i]);
	free(st->slots);
	free(st->readers);
	pthread_cond_destroy(&st->read_cv);
	pthread_mutex_destroy(&st->read_mu);
	free(st->spec);
	pthread_cond_destroy(&st->cv);
	pthread_mutex_destroy(&st->mu);
	free(st);
}

static unsigned pg_default_pool(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned size = n > 0 && n < (long)PG_MAX_POOL ? 2u * (unsigned)n
							: PG_MIN_POOL;

	return size < PG_MIN_POOL ? PG_MIN_POOL : size;
}

/*
 * Connections carrying batched reads: one per two CPUs, at least one.
 * Fewer readers make larger batches; on 2 CPUs one reader cost the
 * database 30 us per read against 40 us with two and 45 us with four
 * (and the server less too), and one batch of up to 16 loads at a time
 * is far from what a single connection can carry.
 */
static size_t pg_default_readers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 2 && n < (long)PG_MAX_POOL ? (size_t)n / 2 : 1;
}

static void *pg_reader_main(void *arg);
static void *pg_writer_main(void *arg);

/* The store's memory, locks and settings; its connections come later.
 * NULL when out of memory. */
static struct pg_store *pg_store_new(const char *spec, unsigned pool,
				     unsigned lock_ms)
{
	struct pg_store *st = calloc(1, sizeof(*st));

	if (!st)
		return NULL;
	st->base.ops = &store_postgres_ops;
	pthread_mutex_init(&st->mu, NULL);
	pthread_cond_init(&st->cv, NULL);
	pthread_mutex_init(&st->read_mu, NULL);
	das_cond_init_monotonic(&st->read_cv);
	pthread_mutex_init(&st->write_mu, NULL);
	das_cond_init_monotonic(&st->write_cv);
	st->spec = strdup(spec);
	st->slots = calloc(pool, sizeof(*st->slots));
	st->n_readers = pg_default_readers();
	st->readers = calloc(st->n_readers, sizeof(*st->readers));
	st->reader_threads =
		calloc(st->n_readers, sizeof(*st->reader_threads));
	st->n_writers = pool;
	st->writer_threads = calloc(pool, sizeof(*st->writer_threads));
	st->n_slots = pool;
	snprintf(st->lock_timeout, sizeof(st->lock_timeout), "%u", lock_ms);
	for (size_t i = 0; st->slots && i < pool; i++)
		st->slots[i].cut_fd = -1;
	for (size_t i = 0; st->readers && i < st->n_readers; i++)
		st->readers[i].cut_fd = -1;
	if (!st->spec || !st->slots || !st->readers || !st->reader_threads ||
	    !st->writer_threads) {
		pg_close(&st->base);
		return NULL;
	}
	return st;
}

/* The first connection proves the database is there, migrates it, reads
 * the page-token key and prepares its statements. */
static int pg_open_first(struct pg_store *st, const char *spec, char *err,
			 size_t err_size)
{
	PGconn *conn = pg_connect(spec);
	int rc;

	st->slots[0].conn = conn;
	if (!conn || PQstatus(conn) != CONNECTION_OK) {
		char line[256];

		first_line(conn ? PQerrorMessage(conn) : "out of memory", line,
			   sizeof(line));
		snprintf(err, err_size,
			 "postgresql store: cannot connect to the database: %s",
			 line);
		return STORE_UNAVAILABLE;
	}
	rc = pg_migrate(conn, err, err_size);
	if (rc != STORE_OK)
		return rc;
	rc = pg_read_ledger_key(conn, st->ledger_key);
	if (rc != STORE_OK) {
		snprintf(err, err_size,
			 "postgresql store: cannot read the page-token key");
		return rc;
	}
	rc = pg_session_setup(st, conn, false);
	if (rc != STORE_OK) {
		snprintf(err, err_size,
			 "postgresql store: cannot prepare statements: %s",
			 PQerrorMessage(conn));
		return rc;
	}
	st->slots[0].is_ready = true;
	return STORE_OK;
}

/* The reader threads (batched loads) and the writer threads (writes
 * handed over); each connects on its own. */
static int pg_threads_start(struct pg_store *st, char *err, size_t err_size)
{
	for (size_t i = 0; i < st->n_readers; i++) {
		struct pg_reader *r = &st->reader_threads[i];

		r->st = st;
		r->slot = &st->readers[i];
		r->slot->is_reader = true;
		if (pthread_create(&r->thread, NULL, pg_reader_main, r) != 0)
			goto fail;
		r->is_started = true;
	}
	for (; st->n_writers_started < st->n_writers;
	     st->n_writers_started++)
		if (pthread_create(&st->writer_threads[st->n_writers_started],
				   NULL, pg_writer_main, st) != 0)
			goto fail;
	return STORE_OK;
fail:
	snprintf(err, err_size, "postgresql store: cannot start threads");
	return STORE_ERROR;
}

static int pg_open(const char *spec, const struct store_options *opt,
		   struct store **out, char *err, size_t err_size)
{
	struct pg_store *st;
	unsigned pool = opt && opt->pool_size ? opt->pool_size
					      : pg_default_pool();
	unsigned lock_ms = opt && opt->busy_timeout_ms
				   ? opt->busy_timeout_ms
				   : PG_DEFAULT_LOCK_TIMEOUT_MS;
	int rc;

	*out = NULL;
	if (pool > PG_MAX_POOL)
		pool = PG_MAX_POOL;
	st = pg_store_new(spec, pool, lock_ms);
	if (!st) {
		snprintf(err, err_size, "postgresql store: out of memory");
		return STORE_ERROR;
	}
	rc = pg_open_first(st, spec, err, err_size);
	if (rc == STORE_OK)
		rc = pg_threads_start(st, err, err_size);
	if (rc != STORE_OK) {
		pg_close(&st->base);
		return rc;
	}
	das_log(DAS_LOG_INFO, "postgresql: store open, pool of %u connections",
		pool);
	*out = &st->base;
	return STORE_OK;
}

static int parse_i64(const char *s, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end)
		return -1;
	*out = v;
	return 0;
}

/* Copies a text column into a fixed buffer; -1 when it does not fit. */
static int copy_text(const char *s, char *out, size_t size)
{
	size_t n = strlen(s);

	if (n >= size)
		return -1;
	memcpy(out, s, n + 1);
	return 0;
}

static int pg_corrupt(struct pg_tx *tx, const char *what)
{
	das_log(DAS_LOG_ERROR, "postgresql: unexpected value in %s", what);
	if (tx)
		tx->failed = STORE_ERROR;
	return STORE_ERROR;
}

/* ---- transactions ---- */

/*
 * One statement of a pipeline: a prepared one (stmt), or SQL text with
 * typed parameters (stmt == ST__COUNT). res is the result on success,
 * for the caller to PQclear.
 */
struct pg_step {
	enum pg_stmt stmt;
	const char *sql;
	int n_params;
	const Oid *types;
	const char *const *params;
	PGresult *res;
};

#define PG_MAX_STEPS 24

static struct pg_step step_stmt(enum pg_stmt stmt, const char *const *params)
{
	struct pg_step st = {stmt, NULL, pg_stmts[stmt].n_params, NULL,
			     params, NULL};

	return st;
}

static struct pg_step step_sql(const char *sql)
{
	struct pg_step st = {ST__COUNT, sql, 0, NULL, NULL, NULL};

	return st;
}

static void steps_clear(struct pg_step *steps, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		PQclear(steps[i].res);
		steps[i].res = NULL;
	}
}

/*
 * Sends the steps as one pipeline ending in a Sync, then reads every
 * result: one round trip, however many statements. After a failure the
 * server skips the rest up to the Sync. Returns STORE_OK with every res
 * set, or the first failure; *failed_at is then the first step without
 * a result (n when the failure came after the last one), and the steps
 * before it keep theirs. A connection left in a state we cannot vouch
 * for is marked not ready (reset on next use).
 */
static int pg_pipeline_keep(struct pg_slot *slot, struct pg_step *steps,
			    size_t n, size_t *failed_at)
{
	PGconn *conn = slot->conn;
	int rc = STORE_OK;
	size_t sent = 0;

	*failed_at = 0;
	slot->saw_disk_full = false;

	if (!PQenterPipelineMode(conn)) {
		slot->is_ready = false;
		return pg_fail(conn, NULL, "pipeline");
	}
	for (; sent < n; sent++) {
		const struct pg_step *st = &steps[sent];
		int ok = st->stmt == ST__COUNT
				 ? PQsendQueryParams(conn, st->sql, st->n_params,
						     st->types, st->params, NULL,
						     NULL, 0)
				 : PQsendQueryPrepared(conn,
						       pg_stmts[st->stmt].name,
						       st->n_params, st->params,
						       NULL, NULL, 0);
		if (!ok)
			break;
	}
	if (sent < n || !PQpipelineSync(conn)) {
		rc = pg_fail(conn, NULL, "send");
		slot->is_ready = false;
		/* Nothing more will come back: leave the pipeline as is,
		 * the slot is reset before it is used again. */
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		PGresult *res = PQgetResult(conn);
		ExecStatusType status = PQresultStatus(res);

		if (!res) {
			if (rc == STORE_OK)
				rc = pg_fail(conn, NULL, "pipeline read");
			slot->is_ready = false;
			break;
		}
		if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
			steps[i].res = res;
			if (rc == STORE_OK)
				*failed_at = i + 1;
		} else {
			if (status != PGRES_PIPELINE_ABORTED && rc == STORE_OK) {
				slot_note(slot, res);
				rc = pg_fail(conn, res,
					     steps[i].stmt == ST__COUNT
						     ? "statement"
						     : pg_stmts[steps[i].stmt]
							       .name);
			}
			PQclear(res);
		}
		/* The end of this statement's results. */
		res = PQgetResult(conn);
		if (res) {
			PQclear(res);
			if (*failed_at > i)
				*failed_at = i;
			slot->is_ready = false;
			if (rc == STORE_OK)
				rc = STORE_ERROR;
			break;
		}
	}
	if (slot->is_ready) {
		PGresult *sync = PQgetResult(conn);

		if (PQresultStatus(sync) != PGRES_PIPELINE_SYNC) {
			/* A server going away answers the Sync with its
			 * FATAL (57P01): UNAVAILABLE, not INTERNAL. */
			if (rc == STORE_OK && sync) {
				slot_note(slot, sync);
				rc = pg_fail(conn, sync, "pipeline end");
			}
			slot->is_ready = false;
		}
		PQclear(sync);
		if (slot->is_ready && !PQexitPipelineMode(conn))
			slot->is_ready = false;
	}
	if (rc == STORE_OK && !slot->is_ready)
		rc = pg_fail(conn, NULL, "pipeline end");
	if (rc != STORE_OK)
		steps_clear(steps + *failed_at, n - *failed_at);
	return rc;
}

/* Statements that only read (the locks included); every other one
 * writes. */
static bool stmt_reads_only(enum pg_stmt stmt)
{
	switch (stmt) {
	case ST_LOCK_KEYS:
	case ST_LOCK_TENANT:
	case ST_LOAD:
	case ST_LOAD_BATCH:
	case ST_DEVICE_OWNER:
	case ST_USER_SEATED:
	case ST_LEDGER_READ:
	case ST_LEDGER_LAST_ID:
	case ST_SEATS_CHARGED:
		return true;
	default:
		return false;
	}
}

/* pg_pipeline_keep(), all or nothing: on failure no step keeps a res. */
static int pg_pipeline(struct pg_slot *slot, struct pg_step *steps, size_t n)
{
	size_t failed_at;
	int rc = pg_pipeline_keep(slot, steps, n, &failed_at);

	if (rc != STORE_OK)
		steps_clear(steps, failed_at);
	return rc;
}

static int pg_load_parse(struct pg_tx *tx, const PGresult *res,
			 const struct domain_key *key,
			 struct domain_snapshot *snap);
static size_t applied_steps(struct pg_applied *a, struct pg_step **steps);
static int applied_check(struct pg_tx *tx, struct pg_applied *a);
static void applied_drop(struct pg_tx *tx);

/* A write in a read-only transaction is our mistake, not the database's:
 * never sent, so a refusal by the database (SQLSTATE 25006) always means
 * the database is read-only. (Unnamed steps are the ledger's page queries,
 * reads.) */
static int tx_refuse_writes_if_read_only(struct pg_tx *tx,
					 const struct pg_step *steps, size_t n)
{
	for (size_t i = 0; tx->is_read_only && i < n; i++)
		if (steps[i].stmt != ST__COUNT &&
		    !stmt_reads_only(steps[i].stmt))
			return pg_corrupt(tx, "write in a read-only "
					      "transaction");
	return STORE_OK;
}

/* The connection of tx, taken from the pool at its first statements. */
static int tx_take_slot(struct pg_tx *tx)
{
	struct pg_store *st = (struct pg_store *)tx->base.st;
	struct pg_slot *slot;
	int rc;

	if (tx->slot)
		return STORE_OK;
	slot = pg_acquire(st);
	rc = pg_slot_ready(st, slot, false);
	if (rc != STORE_OK) {
		pg_release(st, slot);
		return rc;
	}
	tx->slot = slot;
	return STORE_OK;
}

/*
 * After a failure of tx: a full disk is remembered for the health probe
 * (pg_probe), since the probe itself writes nothing.
 */
static void tx_note_failure(struct pg_tx *tx)
{
	struct pg_store *st = (struct pg_store *)tx->base.st;

	if (tx->slot && tx->slot->saw_disk_full)
		atomic_store(&st->disk_full_at_ms, mono_ms());
}

/*
 * Sends the n steps of all on tx's connection. The first statements of a
 * transaction on a connection that died while idle (a database restart)
 * lost nothing of ours: the connection is reset and they are sent once
 * more. On failure the transaction is dead.
 */
static int tx_pipeline(struct pg_tx *tx, struct pg_step *all, size_t n)
{
	int rc;

	for (int attempt = 0;; attempt++) {
		bool was_ready = tx->slot->is_ready;

		rc = pg_pipeline(tx->slot, all, n);
		if (rc == STORE_OK || attempt > 0 || tx->frame != FRAME_NONE ||
		    !was_ready || PQstatus(tx->slot->conn) != CONNECTION_BAD)
			break;
		rc = pg_slot_ready((struct pg_store *)tx->base.st, tx->slot,
				   true);
		if (rc != STORE_OK)
			break;
	}
	if (rc != STORE_OK) {
		PGconn *conn = tx->slot->conn;

		tx_note_failure(tx);
		/* A BEGIN that went through leaves a transaction (aborted)
		 * for rollback() to end, not a connection to reset. */
		if (PQstatus(conn) == CONNECTION_OK &&
		    PQpipelineStatus(conn) == PQ_PIPELINE_OFF &&
		    PQtransactionStatus(conn) != PQTRANS_IDLE)
			tx->frame = FRAME_OPEN;
		applied_drop(tx);
		tx->failed = rc;
		return rc;
	}
	tx->frame = FRAME_OPEN;
	return STORE_OK;
}

/*
 * Runs steps inside tx, opening the transaction in the same round trip
 * when nothing was sent yet, after the statements apply() deferred. After
 * the first failure the tx is dead (PostgreSQL aborts it anyway): later
 * calls return that failure.
 */
static int pg_exec_tx(struct pg_tx *tx, struct pg_step *steps, size_t n)
{
	struct pg_step all[2 * PG_MAX_STEPS + 2];
	struct pg_step *deferred = NULL;
	size_t head = 0, n_deferred = 0;
	int rc;

	if (tx->failed != STORE_OK)
		return tx->failed;
	if (tx->deferred)
		n_deferred = applied_steps(tx->deferred, &deferred);
	if (n + n_deferred + 2 > sizeof(all) / sizeof(*all))
		return pg_corrupt(tx, "too many statements");
	rc = tx_refuse_writes_if_read_only(tx, steps, n);
	if (rc != STORE_OK)
		return rc;
	rc = tx_take_slot(tx);
	if (rc != STORE_OK)
		return tx->failed = rc;
	if (tx->frame != FRAME_OPEN)
		all[head++] = step_sql(
			tx->is_read_only
				? "BEGIN ISOLATION LEVEL REPEATABLE READ "
				  "READ ONLY"
				/* Not READ WRITE: a database set read-only
				 * (default_transaction_read_only) refuses
				 * the write, as the health probe says. */
				: "BEGIN ISOLATION LEVEL READ COMMITTED");
	/* apply()'s statements go first, in this round trip. */
	if (n_deferred)
		memcpy(all + head, deferred, n_deferred * sizeof(*deferred));
	if (n)
		memcpy(all + head + n_deferred, steps, n * sizeof(*steps));
	rc = tx_pipeline(tx, all, head + n_deferred + n);
	if (rc != STORE_OK)
		return rc;
	steps_clear(all, head);
	if (n_deferred) {
		memcpy(deferred, all + head, n_deferred * sizeof(*deferred));
		rc = applied_check(tx, tx->deferred);
		applied_drop(tx);
	}
	if (n)
		memcpy(steps, all + head + n_deferred, n * sizeof(*steps));
	if (rc != STORE_OK)
		steps_clear(steps, n);
	return rc;
}

/* Runs one prepared statement inside tx. */
static PGresult *pg_run(struct pg_tx *tx, enum pg_stmt stmt,
			const char *const *params, int *rc)
{
	struct pg_step st = step_stmt(stmt, params);

	*rc = pg_exec_tx(tx, &st, 1);
	return *rc == STORE_OK ? st.res : NULL;
}

/* Whether a finished statement changed a row. */
static bool is_row_changed(const PGresult *res)
{
	return strcmp(PQcmdTuples((PGresult *)res), "0") != 0;
}

/* Runs stmt and reports whether it changed a row. */
static int pg_run_changed(struct pg_tx *tx, enum pg_stmt stmt,
			  const char *const *params, bool *is_changed)
{
	int rc;
	PGresult *res = pg_run(tx, stmt, params, &rc);

	if (!res)
		return rc;
	if (is_changed)
		*is_changed = is_row_changed(res);
	PQclear(res);
	return STORE_OK;
}

/* FNV-1a of the tenant and an id: the second key of an advisory lock.
 * Two keys that collide only share a lock: slower, never wrong. */
static int32_t pg_lock_hash(const char *tenant, const char *id)
{
	uint32_t h = 2166136261u;
	const unsigned char *p;

	for (p = (const unsigned char *)tenant; *p; p++) {
		h ^= *p;
		h *= 16777619u;
	}
	h ^= 0xffu; /* a separator no id contains */
	h *= 16777619u;
	for (p = (const unsigned char *)id; *p; p++) {
		h ^= *p;
		h *= 16777619u;
	}
	return (int32_t)h;
}

struct pg_lock_keys {
	char tenant[16], user[16], device[16];
	const char *params[4];
};

/* The lock keys of a tenant and, when given (non-empty), a user and a
 * device of it. */
static void lock_keys(struct pg_lock_keys *k, const char *tenant,
		      const char *user, const char *device)
{
	snprintf(k->tenant, sizeof(k->tenant), "%" PRId32,
		 pg_lock_hash(tenant, ""));
	snprintf(k->user, sizeof(k->user), "%" PRId32,
		 pg_lock_hash(tenant, user ? user : ""));
	snprintf(k->device, sizeof(k->device), "%" PRId32,
		 pg_lock_hash(tenant, device ? device : ""));
	k->params[0] = k->tenant;
	k->params[1] = user && user[0] ? k->user : NULL;
	k->params[2] = device && device[0] ? k->device : NULL;
}

/* Nothing is sent here: the transaction opens with its first statements,
 * in their round trip. */
static int pg_begin(struct store *base, const char *customer,
		    bool is_read_only, struct store_tx **out)
{
	struct pg_store *st = (struct pg_store *)base;
	struct pg_slot *slot;
	struct pg_tx *tx;
	int rc;

	(void)customer;
	*out = NULL;
	if (is_read_only) {
		/* No slot unless a statement comes (pg_exec_tx). */
		tx = calloc(1, sizeof(*tx));
		if (!tx)
			return STORE_ERROR;
		tx->base.st = base;
		tx->is_read_only = true;
		tx->is_detached = true;
		tx->frame = FRAME_NONE;
		*out = &tx->base;
		return STORE_OK;
	}
	slot = pg_acquire(st);
	tx = &slot->tx;
	rc = pg_slot_ready(st, slot, false);
	if (rc != STORE_OK) {
		pg_release(st, slot);
		return rc;
	}
	memset(tx, 0, sizeof(*tx));
	tx->base.st = base;
	tx->slot = slot;
	tx->is_read_only = is_read_only;
	tx->frame = FRAME_NONE;
	*out = &tx->base;
	return STORE_OK;
}

static void pg_end(struct pg_tx *tx)
{
	struct pg_store *st = (struct pg_store *)tx->base.st;

	applied_drop(tx);
	if (tx->slot)
		pg_release(st, tx->slot);
	if (tx->is_detached)
		free(tx);
}

static void pg_rollback(struct store_tx *base)
{
	struct pg_tx *tx = (struct pg_tx *)base;
	PGconn *conn = tx->slot ? tx->slot->conn : NULL;

	if (conn && tx->frame == FRAME_OPEN &&
	    PQstatus(conn) == CONNECTION_OK &&
	    PQpipelineStatus(conn) == PQ_PIPELINE_OFF &&
	    PQtransactionStatus(conn) != PQTRANS_IDLE) {
		PGresult *res = PQexec(conn, "ROLLBACK");

		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			pg_fail(conn, res, "rollback");
		PQclear(res);
	}
	pg_end(tx);
}

static int pg_commit(struct store_tx *base)
{
	struct pg_tx *tx = (struct pg_tx *)base;
	PGconn *conn;
	PGresult *res;
	int rc;

	if (tx->failed != STORE_OK) {
		rc = tx->failed;
		pg_rollback(base);
		return rc;
	}
	if (tx->frame != FRAME_OPEN && !tx->deferred) {
		/* Nothing was sent. */
		pg_end(tx);
		return STORE_OK;
	}
	uint64_t t0 = das_metric_now_ns();
	if (tx->deferred) {
		/* apply()'s statements and COMMIT: one round trip. */
		struct pg_step commit = step_sql("COMMIT");

		rc = pg_exec_tx(tx, &commit, 1);
		if (rc != STORE_OK) {
			pg_rollback(base);
			return rc;
		}
		res = commit.res;
	} else {
		conn = tx->slot->conn;
		res = PQexec(conn, "COMMIT");
	}
	conn = tx->slot->conn;
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		slot_note(tx->slot, res);
		tx_note_failure(tx);
		rc = pg_fail(conn, res, "commit");
	} else if (strcmp(PQcmdStatus(res), "COMMIT") != 0)
		/* The server rolled back instead (an error we missed). */
		rc = STORE_ERROR;
	else
		rc = STORE_OK;
	/* Each writer commits alone here (the server groups the WAL
	 * flushes itself): a batch of one, timed to the durable COMMIT. */
	if (rc == STORE_OK && !tx->is_read_only) {
		struct pg_store *st = (struct pg_store *)base->st;

		store_metric_batch("postgresql", 1, das_metric_now_ns() - t0);
		if (atomic_load_explicit(&st->disk_full_at_ms,
					 memory_order_relaxed))
			atomic_store(&st->disk_full_at_ms, 0);
	}
	PQclear(res);
	pg_end(tx);
	return rc;
}

/* ---- reads ---- */

/* A text column into a fixed buffer ("" when NULL); -1 when too long. */
static int copy_column(const PGresult *res, int row, int col, char *out,
		       size_t size)
{
	if (PQgetisnull(res, row, col)) {
		out[0] = '\0';
		return 0;
	}
	return copy_text(PQgetvalue(res, row, col), out, size);
}

/* A client type column (smallint); -1 when NULL or out of range. */
static int client_type_column(const PGresult *res, int row, int col)
{
	int64_t v;

	if (PQgetisnull(res, row, col))
		return -1;
	if (parse_i64(PQgetvalue(res, row, col), &v) != 0 ||
	    !das_client_type_is_valid((int)v) || v == DAS_CLIENT_NONE)
		return -1;
	return (int)v;
}

/* Columns of ST_LOAD's rows (ST_LOAD_BATCH's after its first). */
#define PG_LOAD_COLUMNS 8

/*
 * Fills snap for key from rows rows[0..n) of res, whose columns from col0
 * on are ST_LOAD's (none: no such customer).
 */
static int pg_load_rows(struct pg_tx *tx, const PGresult *res,
			const int *rows, int n, int col0,
			const struct domain_key *key,
			struct domain_snapshot *snap)
{
	int r0 = n > 0 ? rows[0] : 0;

	memset(snap, 0, sizeof(*snap));
	snap->device_type = DAS_CLIENT_NONE;
	if (n == 0)
		return STORE_OK;
	if (n > DAS_CLIENT_TYPE_COUNT - 1 ||
	    PQnfields(res) != col0 + PG_LOAD_COLUMNS)
		return pg_corrupt(tx, "load");
	snap->is_customer_found = true;
	snap->customer_has_account = !PQgetisnull(res, r0, col0);
	if (copy_column(res, r0, col0, snap->customer_account,
			sizeof(snap->customer_account)) != 0)
		return pg_corrupt(tx, "customers.account");
	if (!PQgetisnull(res, r0, col0 + 1)) {
		snap->is_seat_limited = true;
		if (parse_i64(PQgetvalue(res, r0, col0 + 1),
			      &snap->included_seats) != 0)
			return pg_corrupt(tx, "customers.included_seats");
	}
	if (parse_i64(PQgetvalue(res, r0, col0 + 2), &snap->seats_in_use) != 0)
		return pg_corrupt(tx, "customers.seats_in_use");
	if (!PQgetisnull(res, r0, col0 + 3)) {
		const char *roles = PQgetvalue(res, r0, col0 + 3);

		snap->is_user_found = true;
		snap->has_role_uc = domain_roles_contain(roles, DOMAIN_ROLE_UC);
		snap->has_role_uc_softphone =
			domain_roles_contain(roles, DOMAIN_ROLE_UC_SOFTPHONE);
	}
	if (!PQgetisnull(res, r0, col0 + 4)) {
		snap->is_device_found = true;
		if (copy_column(res, r0, col0 + 4, snap->device_owner,
				sizeof(snap->device_owner)) != 0)
			return pg_corrupt(tx, "devices.owner");
	}
	if (!PQgetisnull(res, r0, col0 + 5) &&
	    (snap->device_type = client_type_column(res, r0, col0 + 5)) < 0)
		return pg_corrupt(tx, "assignments.client_type");
	/* The user's assignments: none (one row of NULLs) or one a row. */
	for (int k = 0; k < n; k++) {
		int t, row = rows[k];
		const char *device;

		if (PQgetisnull(res, row, col0 + 6) && n == 1)
			break;
		t = client_type_column(res, row, col0 + 6);
		if (t < 0 || PQgetisnull(res, row, col0 + 7) ||
		    snap->user_devices[t][0])
			return pg_corrupt(tx, "assignments");
		device = PQgetvalue(res, row, col0 + 7);
		if (!device[0] || copy_text(device, snap->user_devices[t],
					    DAS_ID_SIZE) != 0)
			return pg_corrupt(tx, "assignments.device_id");
		/* The device asked is the user's: its type is here. */
		if (strcmp(device, key->device) == 0)
			snap->device_type = t;
	}
	return STORE_OK;
}

/* Fills snap from the rows of ST_LOAD for key (none: no such
 * customer). */
static int pg_load_parse(struct pg_tx *tx, const PGresult *res,
			 const struct domain_key *key,
			 struct domain_snapshot *snap)
{
	int rows[DAS_CLIENT_TYPE_COUNT];
	int n = PQntuples(res);

	if (n > DAS_CLIENT_TYPE_COUNT - 1)
		return pg_corrupt(tx, "load");
	for (int i = 0; i < n; i++)
		rows[i] = i;
	return pg_load_rows(tx, res, rows, n, 0, key, snap);
}

static bool has_seat(const struct domain_snapshot *snap)
{
	for (int t = DAS_CLIENT_DESKTOP; t < DAS_CLIENT_TYPE_COUNT; t++)
		if (snap->user_devices[t][0])
			return true;
	return false;
}

/* ---- batched reads ---- */

/* Sleeps on cv (under mu) until signalled, or until the thread's buffered
 * log lines are due, which it then writes. */
static void pg_thread_idle(pthread_cond_t *cv, pthread_mutex_t *mu)
{
	int due = das_log_thread_due_ms();

	if (due == 0) {
		das_log_thread_flush();
		due = das_log_thread_due_ms();
	}
	if (due > 0)
		das_cond_wait_ms(cv, mu, (uint64_t)due);
	else
		pthread_cond_wait(cv, mu);
}


/* Loads one batch carries at most. */
#define PG_READ_BATCH_MAX 64

/* A text[] literal of the batch's keys, one field each. */
static void array_literal(char *out, size_t size, struct store_read **batch,
			  size_t n, size_t field)
{
	size_t at = 0;

	out[at++] = '{';
	for (size_t j = 0; j < n; j++) {
		const struct domain_key *k = batch[j]->key;
		const char *v = field == 0   ? k->customer
				: field == 1 ? k->user
					     : k->device;

		if (j)
			out[at++] = ',';
		out[at++] = '"';
		for (; *v && at + 4 < size; v++) {
			if (*v == '"' || *v == '\\')
				out[at++] = '\\';
			out[at++] = *v;
		}
		out[at++] = '"';
	}
	out[at++] = '}';
	out[at] = '\0';
}

/* Room for one array: each key's field escaped, quoted, and a comma. */
#define PG_READ_ARRAY_SIZE (PG_READ_BATCH_MAX * (2 * DAS_ID_SIZE + 3) + 3)

/*
 * Runs one batch of loads on reader: one statement (ST_LOAD_BATCH), one
 * round trip, one snapshot for the batch, taken after every caller of
 * the batch was queued: committed (and, synchronous_commit on, durable)
 * state as of a moment after each call began. Each read gets its result
 * and, on success, its snapshot; a failure of the statement is every
 * caller's. A connection that died while idle is reset and the batch
 * sent once more, as a transaction's first statements are (pg_exec_tx).
 */
static void pg_read_run(struct pg_store *st, struct pg_slot *reader,
			struct store_read **batch, size_t n)
{
	char arrays[3][PG_READ_ARRAY_SIZE]; /* ~26 KiB of the reader's stack */
	const char *params[3] = {arrays[0], arrays[1], arrays[2]};
	int rows[PG_READ_BATCH_MAX][DAS_CLIENT_TYPE_COUNT];
	int n_rows[PG_READ_BATCH_MAX];
	struct pg_step step;
	int rc = STORE_OK;

	for (size_t f = 0; f < 3; f++)
		array_literal(arrays[f], sizeof(arrays[f]), batch, n, f);
	for (int attempt = 0;; attempt++) {
		step = step_stmt(ST_LOAD_BATCH, params);
		rc = pg_slot_ready(st, reader, false);
		if (rc == STORE_OK)
			rc = pg_pipeline(reader, &step, 1);
		if (rc == STORE_OK || attempt > 0 || !reader->conn ||
		    PQstatus(reader->conn) != CONNECTION_BAD)
			break;
		reader->is_ready = false;
	}
	memset(n_rows, 0, sizeof(n_rows));
	for (int row = 0; rc == STORE_OK && row < PQntuples(step.res); row++) {
		int64_t i;

		if (parse_i64(PQgetvalue(step.res, row, 0), &i) != 0 || i < 1 ||
		    (size_t)i > n || n_rows[i - 1] >= DAS_CLIENT_TYPE_COUNT - 1)
			rc = pg_corrupt(NULL, "load batch");
		else
			rows[i - 1][n_rows[i - 1]++] = row;
	}
	for (size_t j = 0; j < n; j++)
		batch[j]->result =
			rc != STORE_OK ? rc
				       : pg_load_rows(NULL, step.res, rows[j],
						      n_rows[j], 1,
						      batch[j]->key,
						      &batch[j]->snap);
	PQclear(step.res);
}

/*
 * The thread of one reader connection: takes every queued read (up to a
 * batch), runs them as one pipeline and hands each its result, again and
 * again while reads are queued; sleeps when none are. So the database
 * reads and answers many statements per wake-up, a caller alone still
 * goes out at once, and no caller's thread waits for the round trip
 * (store_read_submit). Reads still queued at close are run before the
 * thread ends.
 */
static void *pg_reader_main(void *arg)
{
	struct pg_reader *r = arg;
	struct pg_store *st = r->st;
	struct store_read *batch[PG_READ_BATCH_MAX];

	das_log_thread_buffer();
	/* Connected now, not by the first read: a replica's first request
	 * must not wait on a name lookup (a container engine's DNS server
	 * that drops a query costs glibc's 5 s retry) or a login. A failure
	 * here is logged and tried again by the first batch. In use
	 * meanwhile: preparing its statements may wait on the database too. */
	slot_use(st, r->slot, true);
	(void)pg_slot_ready(st, r->slot, false);
	slot_use(st, r->slot, false);
	pthread_mutex_lock(&st->read_mu);
	for (;;) {
		size_t n = 0;

		while (!st->read_head && !st->is_closing) {
			st->n_idle_readers++;
			pg_thread_idle(&st->read_cv, &st->read_mu);
			st->n_idle_readers--;
		}
		if (!st->read_head)
			break; /* closing, nothing left */
		while (st->read_head && n < PG_READ_BATCH_MAX) {
			batch[n++] = st->read_head;
			st->read_head = st->read_head->next;
		}
		if (!st->read_head)
			st->read_tail = NULL;
		pthread_mutex_unlock(&st->read_mu);

		slot_use(st, r->slot, true);
		pg_read_run(st, r->slot, batch, n);
		slot_use(st, r->slot, false);
		for (size_t i = 0; i < n; i++) {
			struct store_read *rd = batch[i];

			store_read_finish(&st->base, rd, rd->result);
		}
		if (das_log_thread_due_ms() == 0)
			das_log_thread_flush();
		pthread_mutex_lock(&st->read_mu);
	}
	pthread_mutex_unlock(&st->read_mu);
	das_log_thread_flush();
	return NULL;
}

static int pg_read_submit(struct store *base, struct store_read *rd)
{
	struct pg_store *st = (struct pg_store *)base;

	rd->next = NULL;
	rd->result = STORE_ERROR;
	pthread_mutex_lock(&st->read_mu);
	if (atomic_load(&st->is_cut)) {
		pthread_mutex_unlock(&st->read_mu);
		return STORE_UNAVAILABLE;
	}
	if (st->read_tail)
		st->read_tail->next = rd;
	else
		st->read_head = rd;
	st->read_tail = rd;
	if (st->n_idle_readers)
		pthread_cond_signal(&st->read_cv);
	pthread_mutex_unlock(&st->read_mu);
	return STORE_OK;
}

/* ---- writes handed over ---- */

/*
 * A job (store_submit) in a write transaction of its own (a read-only
 * one for a job that only reads): its body, then COMMIT, or ROLLBACK
 * when the body failed or was undone. The commit is durable when it
 * returns (synchronous_commit on).
 */
static void pg_job_run(struct pg_store *st, struct store_job *job)
{
	struct store_tx *tx = NULL;
	int rc;

	job->is_undone = false;
	rc = pg_begin(&st->base, NULL, job->is_read_only, &tx);
	if (rc == STORE_OK) {
		rc = store_job_run(tx, job);
		if (rc == STORE_OK && !job->is_undone)
			rc = pg_commit(tx);
		else
			pg_rollback(tx);
	}
	store_job_finish(&st->base, job, rc);
}

/*
 * The writer threads, as many as the pool has connections: each takes
 * the oldest job handed over and runs it to its durable end, so writes
 * go to the database as concurrently as the callers' own threads would
 * send them, and a reader thread that decided a write needs none of its
 * time for it. Jobs still queued at close are run before the threads end.
 */
static void *pg_writer_main(void *arg)
{
	struct pg_store *st = arg;

	das_log_thread_buffer();
	pthread_mutex_lock(&st->write_mu);
	for (;;) {
		struct store_job *job;

		while (!st->write_head && !st->is_write_closing) {
			st->n_idle_writers++;
			pg_thread_idle(&st->write_cv, &st->write_mu);
			st->n_idle_writers--;
		}
		job = st->write_head;
		if (!job)
			break; /* closing, nothing left */
		st->write_head = job->next;
		if (!st->write_head)
			st->write_tail = NULL;
		pthread_mutex_unlock(&st->write_mu);
		pg_job_run(st, job);
		if (das_log_thread_due_ms() == 0)
			das_log_thread_flush();
		pthread_mutex_lock(&st->write_mu);
	}
	pthread_mutex_unlock(&st->write_mu);
	das_log_thread_flush();
	return NULL;
}

static int pg_submit(struct store *base, struct store_job *job)
{
	struct pg_store *st = (struct pg_store *)base;

	job->next = NULL;
	pthread_mutex_lock(&st->write_mu);
	if (atomic_load(&st->is_cut)) {
		pthread_mutex_unlock(&st->write_mu);
		return STORE_UNAVAILABLE;
	}
	if (st->write_tail)
		st->write_tail->next = job;
	else
		st->write_head = job;
	st->write_tail = job;
	if (st->n_idle_writers)
		pthread_cond_signal(&st->write_cv);
	pthread_mutex_unlock(&st->write_mu);
	return STORE_OK;
}

/* store_ops.reap: the loads and jobs still queued past their deadline
 * end STORE_LATE (a statement in flight is left to finish). */
static void pg_reap(struct store *base, int64_t now_ms)
{
	struct pg_store *st = (struct pg_store *)base;
	struct store_read *reads;
	struct store_job *jobs;

	pthread_mutex_lock(&st->read_mu);
	reads = store_take_late_reads(&st->read_head, &st->read_tail, now_ms);
	pthread_mutex_unlock(&st->read_mu);
	pthread_mutex_lock(&st->write_mu);
	jobs = store_take_late_jobs(&st->write_head, &st->write_tail, now_ms);
	pthread_mutex_unlock(&st->write_mu);
	store_finish_all(base, reads, jobs, STORE_LATE);
}

/* Cuts the statements in flight on the connections in use (slot_watch);
 * returns how many connections it cut. */
static size_t cut_in_flight(struct pg_store *st)
{
	size_t n = 0;

	pthread_mutex_lock(&st->mu);
	atomic_store(&st->is_cut, true);
	for (size_t i = 0; i < st->n_slots + st->n_readers; i++) {
		struct pg_slot *slot = i < st->n_slots
					       ? &st->slots[i]
					       : &st->readers[i - st->n_slots];

		if (slot->is_in_use && slot->cut_fd >= 0 &&
		    shutdown(slot->cut_fd, SHUT_RDWR) == 0)
			n++;
	}
	pthread_mutex_unlock(&st->mu);
	return n;
}

/*
 * store_cut: from now on no statement goes out (pg_slot_ready refuses,
 * and so do the queues); a thread waiting on a statement wakes with its
 * connection shut down; what is still queued ends here. A thread that is
 * connecting meets the cut when it has connected, within connect_timeout.
 * Idle connections are left alone: pg_close ends them cleanly.
 */
static void pg_cut(struct store *base)
{
	struct pg_store *st = (struct pg_store *)base;
	struct store_read *reads;
	struct store_job *jobs;
	size_t n_cut = cut_in_flight(st), n_queued = 0;

	pthread_mutex_lock(&st->read_mu);
	reads = st->read_head;
	st->read_head = st->read_tail = NULL;
	pthread_mutex_unlock(&st->read_mu);
	pthread_mutex_lock(&st->write_mu);
	jobs = st->write_head;
	st->write_head = st->write_tail = NULL;
	pthread_mutex_unlock(&st->write_mu);
	for (struct store_read *rd = reads; rd; rd = rd->next)
		n_queued++;
	for (struct store_job *job = jobs; job; job = job->next)
		n_queued++;
	if (n_cut || n_queued)
		das_log(DAS_LOG_WARN,
			"postgresql: shutdown: cut %zu connections waiting on "
			"the database; %zu calls still queued end UNAVAILABLE",
			n_cut, n_queued);
	store_finish_all(base, reads, jobs, STORE_UNAVAILABLE);
}

/*
 * A write's locks: the tenant shared, the user and the device. A device
 * without a user in the key (a directory change of the device) also locks
 * its owner, whose assignment the change may drop: the owner is read
 * first, locked in the usual order, and must still be the owner once
 * locked (else STORE_RETRY). A key of the customer alone (a change of the
 * customer) locks the whole tenant.
 */
static int pg_lock_for(struct pg_tx *tx, const struct domain_key *key,
		       struct pg_step *steps, struct pg_lock_keys *k,
		       char owner[DAS_ID_SIZE])
{
	const char *user = key->user;
	int rc;

	owner[0] = '\0';
	if (!key->user[0] && !key->device[0]) {
		lock_keys(k, key->customer, NULL, NULL);
		steps[0] = step_stmt(ST_LOCK_TENANT, k->params);
		return STORE_OK;
	}
	if (!key->user[0]) {
		const char *params[] = {key->customer, key->device};
		PGresult *res = pg_run(tx, ST_DEVICE_OWNER, params, &rc);

		if (!res)
			return rc;
		if (PQntuples(res) == 1 &&
		    copy_text(PQgetvalue(res, 0, 0), owner, DAS_ID_SIZE) != 0)
			rc = pg_corrupt(tx, "devices.owner");
		PQclear(res);
		if (rc != STORE_OK)
			return rc;
		user = owner;
	}
	lock_keys(k, key->customer, user, key->device);
	steps[0] = step_stmt(ST_LOCK_KEYS, k->params);
	if (user[0]) {
		tx->has_locked_user = true;
		snprintf(tx->locked_user, sizeof(tx->locked_user), "%s", user);
	}
	return STORE_OK;
}

/*
 * Read-only: no lock; BEGIN and the read in one round trip (a read that
 * needs no other statement goes through store_read_submit instead).
 * Write: BEGIN, the locks and the read in one round trip; READ COMMITTED,
 * so the read (a statement after the locks) sees what every previous
 * holder committed.
 */
static int pg_load(struct store_tx *base, const struct domain_key *key,
		   struct domain_snapshot *snap)
{
	struct pg_tx *tx = (struct pg_tx *)base;
	const char *params[] = {key->customer, key->user, key->device};
	struct pg_step steps[2];
	struct pg_lock_keys k;
	char owner[DAS_ID_SIZE];
	size_t n = 0;
	int rc;

	memset(snap, 0, sizeof(*snap));
	snap->device_type = DAS_CLIENT_NONE;
	if (tx->failed != STORE_OK)
		return tx->failed;
	if (!tx->is_read_only) {
		rc = pg_lock_for(tx, key, steps, &k, owner);
		if (rc != STORE_OK)
			return rc;
		n++;
	}
	steps[n++] = step_stmt(ST_LOAD, params);
	rc = pg_exec_tx(tx, steps, n);
	if (rc != STORE_OK)
		return rc;
	rc = pg_load_parse(tx, steps[n - 1].res, key, snap);
	steps_clear(steps, n);
	if (rc != STORE_OK)
		return rc;
	if (!tx->is_read_only && !key->user[0] && key->device[0] &&
	    strcmp(snap->device_owner, owner) != 0) {
		das_log(DAS_LOG_DEBUG, "postgresql: the device's owner "
				       "changed; locking again");
		return tx->failed = STORE_RETRY;
	}
	if (!tx->is_read_only && key->user[0]) {
		tx->is_seated_known = true;
		tx->is_seated = has_seat(snap);
	}
	return STORE_OK;
}

/* ---- writes ---- */

/* The actor's request id, cut to what a ledger row keeps. */
static const char *request_id(const struct store_actor *actor,
			      char out[STORE_REQUEST_ID_SIZE])
{
	snprintf(out, STORE_REQUEST_ID_SIZE, "%s",
		 actor->request_id ? actor->request_id : "");
	return out;
}

/* The text parameters of one change: its rows and its ledger row. */
struct pg_change_params {
	char user[DAS_ID_SIZE], device[DAS_ID_SIZE];
	char from[8], to[8], sec[24], nsec[16];
	const char *row[5]; /* delete (4) or move (5) */
	const char *ins[4];
	const char *ledger[10];
};

/* A user whose seat a batch of changes may take or end. */
struct pg_seat_user {
	const char *user;
	bool had;    /* held a seat before the changes */
	bool is_had_known;
	bool is_read; /* had is what load() read (the decision's input) */
	bool gains;  /* gets an assignment */
	bool is_charged;
	const char *params[4];
};

/*
 * What one apply() sends, owning every parameter: its statements may go
 * out later than apply() returns, with the transaction's next statement
 * or its COMMIT.
 */
struct pg_applied {
	char customer[DAS_GUID_SIZE];
	char rid[STORE_REQUEST_ID_SIZE];
	char sub[DOMAIN_SUB_SIZE];
	struct pg_seat_user users[PG_MAX_STEPS];
	struct pg_step steps[PG_MAX_STEPS];
	size_t n_steps;
	struct pg_change_params cp[]; /* one per change */
};

static size_t applied_steps(struct pg_applied *a, struct pg_step **steps)
{
	*steps = a->steps;
	return a->n_steps;
}

/* The results of a's statements (all present), checked and cleared. */
static int applied_check(struct pg_tx *tx, struct pg_applied *a)
{
	int rc = STORE_OK;

	for (size_t i = 0; i < a->n_steps && rc == STORE_OK; i++) {
		const struct pg_step *step = &a->steps[i];

		if ((step->stmt == ST_ASSIGN_DELETE ||
		     step->stmt == ST_ASSIGN_MOVE) &&
		    (PQntuples(step->res) != 1 ||
		     strcmp(PQgetvalue(step->res, 0, 0), "1") != 0))
			/* The domain decided from what load() read under the
			 * same locks: a missing row means they disagree (the
			 * statement fails then; this is the backstop). */
			rc = pg_corrupt(tx, "apply: no assignment to release");
		else if (step->stmt == ST_SEAT_TAKE &&
			 strcmp(PQgetvalue(step->res, 0, 0), "1") != 0) {
			/* Another writer took or freed the last seat since
			 * load(): decide again on the new count. */
			das_log(DAS_LOG_DEBUG, "postgresql: the seat count "
					       "moved; deciding again");
			rc = tx->failed = STORE_RETRY;
		}
	}
	steps_clear(a->steps, a->n_steps);
	return rc;
}

/* Forgets what apply() had not sent (a failed or ended transaction). */
static void applied_drop(struct pg_tx *tx)
{
	if (!tx->deferred)
		return;
	steps_clear(tx->deferred->steps, tx->deferred->n_steps);
	free(tx->deferred);
	tx->deferred = NULL;
}

/*
 * Whether each user held a seat before: a change that releases one of
 * their assignments says so; else load() read it for the locked user;
 * else (apply without load) the user is locked and asked here.
 */
static int seats_before(struct pg_tx *tx, const char *customer,
			struct pg_seat_user *users, size_t n_users)
{
	for (size_t i = 0; i < n_users; i++) {
		struct pg_seat_user *u = &users[i];
		struct pg_lock_keys k;
		const char *params[] = {customer, u->user};
		struct pg_step steps[2];
		int rc;

		if (u->is_had_known)
			continue;
		if (tx->has_locked_user && tx->is_seated_known &&
		    strcmp(tx->locked_user, u->user) == 0) {
			u->had = tx->is_seated;
			u->is_read = true;
			continue;
		}
		lock_keys(&k, customer, u->user, NULL);
		steps[0] = step_stmt(ST_LOCK_KEYS, k.params);
		steps[1] = step_stmt(ST_USER_SEATED, params);
		rc = pg_exec_tx(tx, steps, 2);
		if (rc != STORE_OK)
			return rc;
		u->had = PQntuples(steps[1].res) == 1 &&
			 strcmp(PQgetvalue(steps[1].res, 0, 0), "t") == 0;
		steps_clear(steps, 2);
	}
	return STORE_OK;
}

/*
 * All the changes, their ledger rows and the seat count in one round
 * trip. Only a change that takes or ends a user's seat touches the
 * customer's row (and so waits for another writer doing the same).
 */
/*
 * The changes, their ledger rows and the seat counts, as one pipeline.
 * Without a seat to take, nothing here can need a decision again (a
 * missing row fails its statement, and the transaction with it), so the
 * statements wait and go out with the transaction's next round trip:
 * for a use case, its COMMIT (BEGIN + locks + read, then changes +
 * COMMIT: two round trips a write). A seat taken is checked here, before
 * the caller goes on.
 */
/*
 * Checks each change and gathers the users they touch (users[], *n_users):
 * whether each had an assignment, gains one, and is charged. -1 on a
 * change that is none.
 */
static int applied_users(struct pg_applied *a,
			 const struct domain_change *changes, size_t n,
			 size_t *n_users)
{
	struct pg_seat_user *users = a->users;

	*n_users = 0;
	for (size_t i = 0; i < n; i++) {
		const struct domain_change *c = &changes[i];
		struct pg_change_params *p = &a->cp[i];
		size_t u;

		if (c->from_type == c->to_type ||
		    (c->from_type != DAS_CLIENT_NONE &&
		     !das_client_type_is_valid(c->from_type)) ||
		    (c->to_type != DAS_CLIENT_NONE &&
		     !das_client_type_is_valid(c->to_type)) ||
		    copy_text(c->user, p->user, sizeof(p->user)) != 0 ||
		    copy_text(c->device, p->device, sizeof(p->device)) != 0)
			return -1;
		for (u = 0; u < *n_users; u++)
			if (strcmp(users[u].user, p->user) == 0)
				break;
		if (u == *n_users)
			users[(*n_users)++].user = p->user;
		if (c->from_type != DAS_CLIENT_NONE) {
			users[u].had = true;
			users[u].is_had_known = true;
		}
		if (c->to_type != DAS_CLIENT_NONE)
			users[u].gains = true;
		if (c->is_charged)
			users[u].is_charged = true;
	}
	return 0;
}

/* The change's statements: its assignment row (move, delete or insert)
 * and its ledger row. */
static void applied_change_steps(struct pg_applied *a,
				 const struct domain_change *c,
				 struct pg_change_params *p,
				 const struct store_actor *actor)
{
	snprintf(p->from, sizeof(p->from), "%d", c->from_type);
	snprintf(p->to, sizeof(p->to), "%d", c->to_type);
	snprintf(p->sec, sizeof(p->sec), "%" PRId64, actor->at.seconds);
	snprintf(p->nsec, sizeof(p->nsec), "%" PRId32, actor->at.nanos);
	p->row[0] = a->customer;
	p->row[1] = p->device;
	p->row[2] = p->from;
	p->row[3] = p->user;
	p->row[4] = p->to;
	if (c->from_type != DAS_CLIENT_NONE && c->to_type != DAS_CLIENT_NONE) {
		a->steps[a->n_steps++] = step_stmt(ST_ASSIGN_MOVE, p->row);
	} else if (c->from_type != DAS_CLIENT_NONE) {
		a->steps[a->n_steps++] = step_stmt(ST_ASSIGN_DELETE, p->row);
	} else {
		p->ins[0] = a->customer;
		p->ins[1] = p->device;
		p->ins[2] = p->user;
		p->ins[3] = p->to;
		a->steps[a->n_steps++] = step_stmt(ST_ASSIGN_INSERT, p->ins);
	}
	p->ledger[0] = p->sec;
	p->ledger[1] = p->nsec;
	p->ledger[2] = a->customer;
	p->ledger[3] = p->user;
	p->ledger[4] = p->device;
	p->ledger[5] = p->from;
	p->ledger[6] = p->to;
	p->ledger[7] = c->is_charged ? "true" : "false";
	p->ledger[8] = a->sub;
	p->ledger[9] = a->rid;
	a->steps[a->n_steps++] = step_stmt(ST_LEDGER_INSERT, p->ledger);
}

/*
 * After all the changes, each user's seat: taken by a user who had no
 * assignment and gains one, released by one who had and keeps none (a
 * replace frees the user's type for a moment only, and the seat, charged
 * or not, stays). True when a seat is taken.
 */
static bool applied_seat_steps(struct pg_applied *a, size_t n_users)
{
	bool is_seat_taken = false;

	for (size_t u = 0; u < n_users; u++) {
		struct pg_seat_user *su = &a->users[u];

		su->params[0] = a->customer;
		su->params[1] = su->user;
		su->params[2] = su->is_charged ? "true" : "false";
		su->params[3] = su->is_read ? "true" : "false";
		if (!su->had && su->gains) {
			a->steps[a->n_steps++] =
				step_stmt(ST_SEAT_TAKE, su->params);
			is_seat_taken = true;
		} else if (su->had && !su->gains) {
			a->steps[a->n_steps++] =
				step_stmt(ST_SEAT_RELEASE, su->params);
		}
	}
	return is_seat_taken;
}

static int pg_apply(struct store_tx *base, const char *customer,
		    const struct domain_change *changes, size_t n,
		    const struct store_actor *actor)
{
	struct pg_tx *tx = (struct pg_tx *)base;
	struct pg_applied *a;
	size_t n_users = 0;
	int rc = STORE_OK;

	if (tx->failed != STORE_OK)
		return tx->failed;
	if (tx->is_read_only)
		return pg_corrupt(tx, "apply: read-only transaction");
	if (n == 0)
		return STORE_OK;
	/* Three statements a change and one a user must fit a pipeline. */
	if (n > (PG_MAX_STEPS - 2) / 4)
		return pg_corrupt(tx, "apply: too many changes");
	a = calloc(1, sizeof(*a) + n * sizeof(a->cp[0]));
	if (!a)
		return pg_corrupt(tx, "apply: out of memory");
	snprintf(a->customer, sizeof(a->customer), "%s", customer);
	request_id(actor, a->rid);
	snprintf(a->sub, sizeof(a->sub), "%s", actor->sub ? actor->sub : "");
	if (applied_users(a, changes, n, &n_users) != 0) {
		rc = pg_corrupt(tx, "apply: not a change");
		goto done;
	}
	rc = seats_before(tx, a->customer, a->users, n_users);
	if (rc != STORE_OK)
		goto done;
	for (size_t i = 0; i < n; i++)
		applied_change_steps(a, &changes[i], &a->cp[i], actor);
	if (!applied_seat_steps(a, n_users)) {
		/* No seat taken: the statements wait to go out with the next
		 * round trip (a later apply's or the commit's). An earlier
		 * apply() still waiting goes out first. */
		if (tx->deferred)
			rc = pg_exec_tx(tx, NULL, 0);
		if (rc == STORE_OK) {
			tx->deferred = a;
			a = NULL;
		}
		goto done;
	}
	rc = pg_exec_tx(tx, a->steps, a->n_steps);
	if (rc == STORE_OK)
		rc = applied_check(tx, a);
done:
	free(a);
	return rc;
}

static int pg_customer_put(struct store_tx *base,
			   const struct store_customer *c, bool *is_changed)
{
	struct pg_tx *tx = (struct pg_tx *)base;
	char seats[16];
	/*
	 * PostgreSQL refuses text that is not UTF-8 (SQLite stores any
	 * bytes), and a customer name arrives as sent. Rather than failing
	 * the write, each invalid byte becomes U+FFFD, the same way every
	 * time, so a repeated upsert still reports no change; 3 bytes per
	 * byte of the name plus one never cut it short.
	 */
	char name[3 * sizeof(c->name) + 1];
	const char *params[] = {c->tenant, c->has_account ? c->account : NULL,
				das_utf8_sanitize(c->name, strlen(c->name),
						  name, sizeof(name)),
				c->is_seat_limited ? seats : NULL};

	snprintf(seats, sizeof(seats), "%" PRIu32, c->included_seats);
	return pg_run_changed(tx, ST_CUSTOMER_PUT, params, is_changed);
}

static int pg_customer_delete(struct store_tx *base, const char *customer,
			      const struct store_actor *actor,
			      bool *is_changed, uint32_t *n_dropped)
{
	struct pg_tx *tx = (struct pg_tx *)base;
	char sec[24], nsec[16], rid[STORE_REQUEST_ID_SIZE];
	const char *ledger_params[] = {customer, sec, nsec,
				       actor->sub ? actor->sub : "",
				       request_id(actor, rid)};
	const char *params[] = {customer};
	PGresult *res;
	int64_t dropped = 0;
	int rc;

	struct pg_lock_keys k;

	/* Every writer of the tenant holds its lock shared: this waits for
	 * them, and keeps new ones out until the customer is gone. */
	lock_keys(&k, customer, NULL, NULL);
	snprintf(sec, sizeof(sec), "%" PRId64, actor->at.seconds);
	snprintf(nsec, sizeof(nsec), "%" PRId32, actor->at.nanos);
	rc = pg_run_changed(tx, ST_LOCK_TENANT, k.params, NULL);
	if (rc != STORE_OK)
		return rc;
	res = pg_run(tx, ST_LEDGER_DROP_ALL, ledger_params, &rc);
	if (!res)
		return rc;
	if (parse_i64(PQcmdTuples(res), &dropped) != 0 || dropped < 0 ||
	    dropped > UINT32_MAX)
		rc = pg_corrupt(tx, "customer delete");
	PQclear(res);
	if (rc == STORE_OK)
		rc = pg_run_changed(tx, ST_ASSIGN_DELETE_TENANT, params, NULL);
	if (rc == STORE_OK)
		rc = pg_run_changed(tx, ST_CUSTOMER_DELETE, params,
				    is_changed);
	if (rc == STORE_OK && n_dropped)
		*n_dropped = (uint32_t)dropped;
	return rc;
}

static int pg_user_put(struct store_tx *base, const char *customer,
		       const char *user, const char *roles_text,
		       bool *is_changed)
{
	const char *params[] = {customer, user, roles_text ? roles_text : ""};

	return pg_run_changed((struct pg_tx *)base, ST_USER_PUT, params,
			      is_changed);
}

static int pg_user_delete(struct store_tx *base, const char *customer,
			  const char *user, bool *is_changed)
{
	const char *params[] = {customer, user};

	return pg_run_changed((struct pg_tx *)base, ST_USER_DELETE, params,
			      is_changed);
}

static int pg_device_put(struct store_tx *base, const char *customer,
			 const char *device, const char *owner,
			 bool *is_changed)
{
	const char *params[] = {customer, device, owner};

	return pg_run_changed((struct pg_tx *)base, ST_DEVICE_PUT, params,
			      is_changed);
}

static int pg_device_delete(struct store_tx *base, const char *customer,
			    const char *device, bool *is_changed)
{
	const char *params[] = {customer, device};

	return pg_run_changed((struct pg_tx *)base, ST_DEVICE_DELETE, params,
			      is_changed);
}

/* ---- ledger ---- */

static int ledger_row(PGresult *res, int i, struct store_ledger_row *row)
{
	int64_t v[5];

	memset(row, 0, sizeof(*row));
	if (parse_i64(PQgetvalue(res, i, 0), &row->id) != 0 ||
	    parse_i64(PQgetvalue(res, i, 1), &row->at.seconds) != 0 ||
	    parse_i64(PQgetvalue(res, i, 2), &v[0]) != 0 ||
	    parse_i64(PQgetvalue(res, i, 6), &v[1]) != 0 ||
	    parse_i64(PQgetvalue(res, i, 7), &v[2]) != 0)
		return -1;
	if (v[0] < 0 || v[0] > 999999999 || v[1] < 0 ||
	    v[1] >= DAS_CLIENT_TYPE_COUNT || v[2] < 0 ||
	    v[2] >= DAS_CLIENT_TYPE_COUNT)
		return -1;
	row->at.nanos = (int32_t)v[0];
	row->from_type = (int)v[1];
	row->to_type = (int)v[2];
	row->is_charged = strcmp(PQgetvalue(res, i, 8), "t") == 0;
	if (copy_text(PQgetvalue(res, i, 3), row->tenant,
		      sizeof(row->tenant)) != 0 ||
	    copy_text(PQgetvalue(res, i, 4), row->user, sizeof(row->user)) !=
		    0 ||
	    copy_text(PQgetvalue(res, i, 5), row->device,
		      sizeof(row->device)) != 0)
		return -1;
	/* The actor is stamped from a token's sub: keep what fits. */
	snprintf(row->actor, sizeof(row->actor), "%s", PQgetvalue(res, i, 9));
	snprintf(row->request_id, sizeof(row->request_id), "%s",
		 PQgetvalue(res, i, 10));
	return 0;
}

static int pg_ledger_read(struct store *base, const char *customer,
			  int64_t after_id, struct store_ledger_row *rows,
			  size_t max, size_t *n)
{
	struct pg_store *st = (struct pg_store *)base;
	struct pg_slot *slot;
	char after[24], limit[24];
	const char *params[] = {customer, after, limit};
	PGresult *res = NULL;
	int rc;

	*n = 0;
	if (max == 0)
		return STORE_OK;
	snprintf(after, sizeof(after), "%" PRId64, after_id);
	snprintf(limit, sizeof(limit), "%zu", max);
	slot = pg_acquire(st);
	for (int attempt = 0; attempt < 2; attempt++) {
		rc = pg_slot_ready(st, slot, attempt > 0);
		if (rc != STORE_OK)
			break;
		res = PQexecPrepared(slot->conn, pg_stmts[ST_LEDGER_READ].name,
				     3, params, NULL, NULL, 0);
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
			break;
		rc = pg_fail(slot->conn, res, "ledger read");
		PQclear(res);
		res = NULL;
		if (PQstatus(slot->conn) != CONNECTION_BAD)
			break;
	}
	if (res) {
		size_t count = (size_t)PQntuples(res);

		rc = STORE_OK;
		for (size_t i = 0; i < count && i < max; i++) {
			if (ledger_row(res, (int)i, &rows[i]) != 0) {
				rc = pg_corrupt(NULL, "ledger");
				break;
			}
		}
		if (rc == STORE_OK)
			*n = count < max ? count : max;
		PQclear(res);
	}
	pg_release(st, slot);
	return rc;
}

/*
 * Health: the database answers and would take a write (not a hot standby,
 * not read-only by default, no write refused for a full disk lately). A
 * stale connection is reset and tried once more, as begin() does.
 *
 * The probe writes nothing (on PostgreSQL a write that fits in a page
 * already there goes through on a full disk, so one probe write would
 * prove little), so a full disk is known from the writes: one refused
 * with SQLSTATE 53100 makes the probe say so for PG_DISK_FULL_MS, or
 * until a write commits. Without writes it is SERVING again after that,
 * until the next write meets the full disk.
 */
static int disk_full_check(struct pg_store *st, char *why, size_t why_size)
{
	long long at = atomic_load(&st->disk_full_at_ms);
	long long ago = mono_ms() - at;

	if (!at || ago >= PG_DISK_FULL_MS)
		return STORE_OK;
	snprintf(why, why_size,
		 "the database refused a write %lld ms ago: its disk is full "
		 "(SQLSTATE 53100)",
		 ago);
	return STORE_UNAVAILABLE;
}

static int pg_probe(struct store *base, char *why, size_t why_size)
{
	struct pg_store *st = (struct pg_store *)base;
	struct pg_slot *slot = pg_acquire(st);
	int rc = STORE_UNAVAILABLE;

	snprintf(why, why_size, "the database is unreachable");
	for (int attempt = 0; attempt < 2; attempt++) {
		PGresult *res;

		if (pg_slot_ready(st, slot, attempt > 0) != STORE_OK)
			continue;
		res = PQexec(slot->conn,
			     "SELECT pg_is_in_recovery(),"
			     " current_setting('default_transaction_read_only')");
		if (PQresultStatus(res) == PGRES_TUPLES_OK &&
		    PQntuples(res) == 1) {
			if (strcmp(PQgetvalue(res, 0, 0), "f") != 0)
				snprintf(why, why_size,
					 "the database is a read-only standby");
			else if (strcmp(PQgetvalue(res, 0, 1), "off") != 0)
				snprintf(why, why_size,
					 "the database is read-only");
			else
				rc = disk_full_check(st, why, why_size);
			PQclear(res);
			break;
		}
		pg_fail(slot->conn, res, "probe");
		PQclear(res);
	}
	pg_release(st, slot);
	return rc;
}

/* Runs a one-row, one-integer statement inside tx. */
static int pg_query_int(struct pg_tx *tx, enum pg_stmt stmt,
			const char *const *params, int64_t *out)
{
	int rc;
	PGresult *res = pg_run(tx, stmt, params, &rc);

	if (!res)
		return rc;
	if (PQntuples(res) != 1 || parse_i64(PQgetvalue(res, 0, 0), out) != 0)
		rc = pg_corrupt(tx, pg_stmts[stmt].name);
	PQclear(res);
	return rc;
}

/*
 * Not a prepared statement: after five runs PostgreSQL may switch a
 * prepared one to a generic plan, and the generic plan of max(id) for "some
 * tenant" walks the primary key backwards, which for a customer with few
 * rows among millions reads them all. Planned with the tenant at hand it
 * is one step down (tenant, id).
 */
static int pg_ledger_last_id(struct store_tx *base, const char *customer,
			     int64_t *id)
{
	struct pg_tx *tx = (struct pg_tx *)base;
	const char *params[] = {customer};
	PGresult *res;
	int rc = STORE_OK;

	struct pg_step st = step_sql(pg_stmts[ST_LEDGER_LAST_ID].sql);

	st.n_params = 1;
	st.params = params;
	rc = pg_exec_tx(tx, &st, 1);
	if (rc != STORE_OK)
		return rc;
	res = st.res;
	if (PQntuples(res) != 1 || parse_i64(PQgetvalue(res, 0, 0), id) != 0)
		rc = pg_corrupt(tx, "ledger last id");
	PQclear(res);
	return rc;
}

static int pg_seats_charged(struct store_tx *base, const char *customer,
			    int64_t *n)
{
	const char *params[] = {customer};

	return pg_query_int((struct pg_tx *)base, ST_SEATS_CHARGED, params, n);
}

/*
 * The page query is put together from fixed pieces, one per filter given,
 * so each shape has a plain WHERE the planner matches to its index. No
 * input reaches the SQL text: values are parameters (typed, so the ones a
 * shape leaves out need no inference).
 */
static int pg_page_sql(const struct store_ledger_query *q, char *sql,
		       size_t size)
{
	int n = snprintf(
		sql, size,
		"SELECT id, at_seconds, at_nanos, tenant, user_id, device_id,"
		" from_type, to_type, is_charged, actor, request_id FROM ledger"
		" WHERE tenant = $1 AND id <= $2%s%s%s%s%s%s"
		" ORDER BY id %s LIMIT $10",
		q->is_oldest_first ? " AND id > $3" : "",
		q->user[0] ? " AND user_id = $4" : "",
		q->device[0] ? " AND device_id = $5" : "",
		q->is_only_charged ? " AND is_charged" : "",
		q->has_since ? " AND (at_seconds > $6 OR (at_seconds = $6"
			       " AND at_nanos >= $7))"
			     : "",
		q->has_until ? " AND (at_seconds < $8 OR (at_seconds = $8"
			       " AND at_nanos < $9))"
			     : "",
		q->is_oldest_first ? "ASC" : "DESC");

	return n > 0 && (size_t)n < size ? 0 : -1;
}

static int pg_ledger_page(struct store_tx *base,
			  const struct store_ledger_query *q,
			  struct store_ledger_row *rows, size_t max, size_t *n)
{
	/* text, int8, int8, text, text, int8, int4, int8, int4, int8 */
	static const Oid types[10] = {25, 20, 20, 25, 25, 20, 23, 20, 23, 20};
	struct pg_tx *tx = (struct pg_tx *)base;
	char bound[24], after[24], ss[24], sn[16], us[24], un[16], limit[24];
	const char *params[10] = {q->customer, bound, after, q->user,
				  q->device,   ss,    sn,    us,
				  un,          limit};
	char sql[768];
	struct pg_step step;
	PGresult *res;
	int rc = STORE_OK;

	*n = 0;
	if (tx->failed != STORE_OK)
		return tx->failed;
	if (max == 0)
		return STORE_OK;
	if (pg_page_sql(q, sql, sizeof(sql)) != 0)
		return STORE_ERROR;
	/* Newest first, the keyset step is one more upper bound: pass the
	 * smaller, so the index range ends where the page starts. */
	snprintf(bound, sizeof(bound), "%" PRId64,
		 !q->is_oldest_first && q->after_id > 0 &&
				 q->after_id - 1 < q->bound_id
			 ? q->after_id - 1
			 : q->bound_id);
	snprintf(after, sizeof(after), "%" PRId64, q->after_id);
	snprintf(ss, sizeof(ss), "%" PRId64, q->since.seconds);
	snprintf(sn, sizeof(sn), "%" PRId32, q->since.nanos);
	snprintf(us, sizeof(us), "%" PRId64, q->until.seconds);
	snprintf(un, sizeof(un), "%" PRId32, q->until.nanos);
	snprintf(limit, sizeof(limit), "%zu", max);
	step = step_sql(sql);
	step.n_params = 10;
	step.types = types;
	step.params = params;
	rc = pg_exec_tx(tx, &step, 1);
	if (rc != STORE_OK)
		return rc;
	res = step.res;
	for (int i = 0; i < PQntuples(res) && (size_t)i < max; i++) {
		if (ledger_row(res, i, &rows[i]) != 0) {
			rc = pg_corrupt(tx, "ledger");
			break;
		}
		(*n)++;
	}
	PQclear(res);
	if (rc != STORE_OK)
		*n = 0;
	return rc;
}

static int pg_ledger_prune(struct store_tx *base, int64_t before_seconds,
			   size_t max, size_t *n)
{
	struct pg_tx *tx = (struct pg_tx *)base;
	char before[24], limit[24];
	const char *params[] = {before, limit};
	PGresult *res;
	int64_t deleted = 0;
	int rc;

	*n = 0;
	if (tx->is_read_only)
		return pg_corrupt(tx, "ledger prune: read-only transaction");
	snprintf(before, sizeof(before), "%" PRId64, before_seconds);
	snprintf(limit, sizeof(limit), "%zu", max);
	res = pg_run(tx, ST_LEDGER_PRUNE, params, &rc);
	if (!res)
		return rc;
	if (parse_i64(PQcmdTuples(res), &deleted) != 0 || deleted < 0)
		rc = pg_corrupt(tx, "ledger prune");
	else
		*n = (size_t)deleted;
	PQclear(res);
	return rc;
}

static void pg_ledger_key(struct store *base,
			  unsigned char key[STORE_LEDGER_KEY_SIZE])
{
	memcpy(key, ((struct pg_store *)base)->ledger_key,
	       STORE_LEDGER_KEY_SIZE);
}

const struct store_ops store_postgres_ops = {
	.name = "postgresql",
	.accepts = pg_accepts,
	.open = pg_open,
	.close = pg_close,
	.begin = pg_begin,
	.commit = pg_commit,
	.rollback = pg_rollback,
	.load = pg_load,
	.apply = pg_apply,
	.customer_put = pg_customer_put,
	.customer_delete = pg_customer_delete,
	.user_put = pg_user_put,
	.user_delete = pg_user_delete,
	.device_put = pg_device_put,
	.device_delete = pg_device_delete,
	.ledger_read = pg_ledger_read,
	.probe = pg_probe,
	.ledger_last_id = pg_ledger_last_id,
	.ledger_page = pg_ledger_page,
	.ledger_prune = pg_ledger_prune,
	.seats_charged = pg_seats_charged,
	.ledger_key = pg_ledger_key,
	.submit = pg_submit,
	.read_submit = pg_read_submit,
	.cut = pg_cut,
	.reap = pg_reap,
};
