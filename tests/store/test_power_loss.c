/*
 * Power loss, in SQLite's own manner (its crash-test VFS): the SQLite store
 * runs a sequence of assigns, moves, replaces and unassigns through the real
 * use cases (service/ops), on the crash VFS (crash_vfs.h), with a
 * checkpoint now and then as the store's own would do. For every crash
 * point N (every write and sync of the sequence, one after the other) a
 * child process runs the sequence until power is lost at event N: each
 * write that no sync covered is undone and the child ends on the spot. The
 * parent then reopens the database (recovery) and checks:
 *
 * - every change that was acknowledged (ops returned OK) is there, with its
 *   ledger row, and the ledger is exactly the reference run's ledger up to
 *   the last acknowledged change, or up to the one in flight (which may be
 *   durable without having been acknowledged);
 * - the assignments are exactly the reference state after that many
 *   changes: nothing half-applied.
 *
 * Then the same with four writers at once (their commits share the group
 * commit's batches), each on a user of its own, judged per user.
 *
 * Run with --expect-loss by the ctest case store.power_loss_unsynced, built
 * against a store compiled with synchronous=OFF: it then passes only when
 * the check above catches lost acknowledged changes in both runs — proof
 * that the test can fail.
 */
#define _XOPEN_SOURCE 700 /* nftw, mkdtemp */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/log.h"
#include "crash_vfs.h"
#include "store_seq.h"
#include "service/ops/ops.h"
#include "service/store/store.h"

#define CUST STORE_SEQ_CUST
#define CHECKPOINT_EVERY 5
#define LEDGER_MAX 256
#define STATE_SIZE 512

/* Assigns, moves (same device, new type), replaces (a type already held
 * by another device of the user) and unassigns, for two users. */
static const struct store_seq_step steps[] = {
	{"u1", "d1", 1}, {"u1", "d2", 2}, {"u2", "e1", 1}, {"u1", "d1", 3},
	{"u1", "d3", 1}, {"u2", "e2", 1}, {"u1", "d2", 0}, {"u1", "d4", 3},
	{"u2", "e1", 4}, {"u1", "d3", 2}, {"u2", "e3", 2}, {"u1", "d1", 4},
	{"u2", "e2", 0}, {"u1", "d4", 0}, {"u2", "e3", 3}, {"u1", "d2", 1},
	{"u1", "d3", 0}, {"u2", "e1", 0}, {"u1", "d1", 2}, {"u2", "e2", 4},
};
#define N_STEPS (sizeof(steps) / sizeof(steps[0]))

static char temp_dir[] = "/tmp/das-power-loss-XXXXXX";
static bool is_expect_loss;

/* The reference run: state and ledger length after i steps. */
static char ref_state[N_STEPS + 1][STATE_SIZE];
static size_t ref_ledger_len[N_STEPS + 1];
static struct store_ledger_row ref_ledger[LEDGER_MAX];

static void rm_temp_dir(void)
{
	store_seq_rm_tree(temp_dir);
}

static void who_init(struct domain_principal *who)
{
	store_seq_who(who, "power-loss");
}

static struct ops_text text(const char *s)
{
	return store_seq_text(s);
}

/* Customer, two users with both roles, their devices. 0 or -1. */
static int directory(struct store *st)
{
	struct domain_principal who;
	struct ops_result r;
	struct ops_customer_input c = {.tenant = text(CUST),
				       .account = text(""),
				       .name = text("Acme")};
	struct ops_text roles[] = {text("customer_user_uc"),
				   text("customer_user_uc_softphone")};
	static const char *const devices[][2] = {
		{"d1", "u1"}, {"d2", "u1"}, {"d3", "u1"}, {"d4", "u1"},
		{"e1", "u2"}, {"e2", "u2"}, {"e3", "u2"}, {"c0a", "c0"},
		{"c0b", "c0"}, {"c0c", "c0"}, {"c1a", "c1"}, {"c1b", "c1"},
		{"c1c", "c1"}, {"c2a", "c2"}, {"c2b", "c2"}, {"c2c", "c2"},
		{"c3a", "c3"}, {"c3b", "c3"}, {"c3c", "c3"}};
	static const char *const users[] = {"u1", "u2", "c0", "c1", "c2",
					    "c3"};

	who_init(&who);
	if (ops_upsert_customer(st, &who, &c, &r) != DAS_OK)
		return -1;
	for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++)
		if (ops_upsert_user(st, &who, text(CUST), text(users[i]), roles,
				    2, &r) != DAS_OK)
			return -1;
	for (size_t i = 0; i < sizeof(devices) / sizeof(devices[0]); i++)
		if (ops_upsert_device(st, &who, text(CUST),
				      text(devices[i][0]), text(devices[i][1]),
				      &r) != DAS_OK)
			return -1;
	return 0;
}

static enum das_status device_op(struct store *st,
				 const struct store_seq_step *s)
{
	return store_seq_device_op(st, "power-loss", s->user, s->device,
				   s->type);
}

static enum das_status run_step(struct store *st, size_t i)
{
	return device_op(st, &steps[i]);
}

/* A passive checkpoint from a connection of its own, as autocheckpoint. */
static void checkpoint(const char *path)
{
	sqlite3 *db = NULL;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) ==
	    SQLITE_OK)
		sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE,
					  NULL, NULL);
	sqlite3_close(db);
}

/* "u1:1=d1,3=d2,;u2:;" of the users, from the use case that lists; -1 on
 * failure. */
static int users_state(struct store *st, const char *const *users,
		       size_t n_users, char *out, size_t size)
{
	struct domain_principal who;
	size_t o = 0;

	who_init(&who);
	out[0] = '\0';
	for (size_t u = 0; u < n_users; u++) {
		struct domain_request req;
		struct ops_result r;

		memset(&req, 0, sizeof(req));
		req.op = DOMAIN_OP_LIST;
		req.customer = CUST;
		req.customer_len = strlen(CUST);
		req.account = "";
		req.user = users[u];
		req.user_len = strlen(users[u]);
		req.device = "";
		enum das_status rc = ops_device(st, &who, &req, &r);

		if (rc == DAS_INTERNAL || rc == DAS_STORE_UNAVAILABLE)
			return -1;
		/* A refusal (no such customer: all was lost) is a state. */
		o += (size_t)snprintf(out + o, size - o, "%s:", users[u]);
		if (rc != DAS_OK)
			o += (size_t)snprintf(out + o, size - o, "!%s",
					      das_status_row(rc)->name);
		for (size_t i = 0; i < r.n_devices && o < size; i++)
			o += (size_t)snprintf(out + o, size - o, "%d=%s,",
					      r.devices[i].type,
					      r.devices[i].device);
		if (o < size)
			o += (size_t)snprintf(out + o, size - o, ";");
	}
	return o < size ? 0 : -1;
}

static int state_of(struct store *st, char *out, size_t size)
{
	static const char *const users[] = {"u1", "u2"};

	return users_state(st, users, 2, out, size);
}

static bool same_row(const struct store_ledger_row *a,
		     const struct store_ledger_row *b)
{
	return strcmp(a->user, b->user) == 0 &&
	       strcmp(a->device, b->device) == 0 &&
	       a->from_type == b->from_type && a->to_type == b->to_type &&
	       strcmp(a->actor, b->actor) == 0;
}

static struct store *open_store(const char *path)
{
	static const struct store_options opt = {.pool_size = 1,
						 .busy_timeout_ms = 5000};
	char spec[600], err[512];
	struct store *st = NULL;

	snprintf(spec, sizeof(spec), "sqlite:%s", path);
	if (store_open(spec, &opt, &st, err, sizeof(err)) != STORE_OK) {
		fprintf(stderr, "cannot open %s: %s\n", path, err);
		return NULL;
	}
	return st;
}

static void db_path(char *out, size_t size, unsigned long n)
{
	snprintf(out, size, "%s/t%lu.db", temp_dir, n);
}

static void db_remove(const char *path)
{
	static const char *const tails[] = {"", "-wal", "-shm", "-journal"};
	char p[600];

	for (size_t i = 0; i < 4; i++) {
		snprintf(p, sizeof(p), "%s%s", path, tails[i]);
		remove(p);
	}
}

static int copy_file(const char *from, const char *to)
{
	char buf[65536];
	int in = open(from, O_RDONLY | O_CLOEXEC), out;
	ssize_t n;

	if (in < 0)
		return errno == ENOENT ? 0 : -1;
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out < 0) {
		close(in);
		return -1;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			n = -1;
	close(in);
	close(out);
	return n < 0 ? -1 : 0;
}

/*
 * The directory is written once, to a template, and each run starts from
 * a copy of it: a crash point costs the sequence's syncs, not the set-up's.
 */
static char template_path[512];

static void make_template(void)
{
	struct store *st;

	snprintf(template_path, sizeof(template_path), "%s/template.db",
		 temp_dir);
	st = open_store(template_path);
	if (!st || directory(st) != 0)
		exit(1);
	store_close(st); /* the last close checkpoints the log */
}

/* A copy of the template at path (database and any log). */
static int from_template(const char *path)
{
	char from[600], to[600];

	snprintf(from, sizeof(from), "%s-wal", template_path);
	snprintf(to, sizeof(to), "%s-wal", path);
	return copy_file(template_path, path) != 0 || copy_file(from, to) != 0
		       ? -1
		       : 0;
}

/* The reference run; returns the number of events of the sequence. */
static unsigned long reference(void)
{
	char path[512];
	struct store *st;
	size_t n = 0;
	unsigned long n_events;

	make_template();
	db_path(path, sizeof(path), 0);
	if (from_template(path) != 0)
		exit(1);
	st = open_store(path);
	if (!st)
		exit(1);
	crash_vfs_arm(0);
	for (size_t i = 0; i <= N_STEPS; i++) {
		if (i > 0) {
			if (run_step(st, i - 1) != DAS_OK) {
				fprintf(stderr, "reference: step %zu failed\n",
					i - 1);
				exit(1);
			}
			if (i % CHECKPOINT_EVERY == 0)
				checkpoint(path);
		}
		if (state_of(st, ref_state[i], STATE_SIZE) != 0 ||
		    store_ledger_read(st, CUST, 0, ref_ledger, LEDGER_MAX,
				      &n) != STORE_OK)
			exit(1);
		ref_ledger_len[i] = n;
	}
	n_events = crash_vfs_events();
	store_close(st);
	db_remove(path);
	return n_events;
}

/* The child: the sequence until power is lost. Never returns. */
static void crash_child(const char *path, unsigned long crash_at, int fd)
{
	struct store *st = open_store(path);

	if (!st)
		_exit(3);
	crash_vfs_arm(crash_at);
	for (size_t i = 0; i < N_STEPS; i++) {
		uint32_t acked;

		if (run_step(st, i) != DAS_OK)
			_exit(4); /* no failure is expected before the crash */
		acked = (uint32_t)(i + 1);
		if (write(fd, &acked, sizeof(acked)) != sizeof(acked))
			_exit(5);
		if ((i + 1) % CHECKPOINT_EVERY == 0)
			checkpoint(path);
	}
	_exit(2); /* the sequence ended before the crash point */
}

/*
 * One crash point. Returns 0 when the reopened database holds every
 * acknowledged change and nothing half-applied, 1 when it does not, -1 on
 * a test failure.
 */
static int crash_point(unsigned long crash_at)
{
	char path[512], state[STATE_SIZE];
	struct store_ledger_row rows[LEDGER_MAX];
	uint32_t acked = 0, v;
	int fds[2], status, verdict = 1;
	size_t n = 0;
	pid_t pid;
	struct store *st;

	db_path(path, sizeof(path), crash_at);
	if (from_template(path) != 0 || pipe(fds) != 0)
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(fds[0]);
		crash_child(path, crash_at, fds[1]);
	}
	close(fds[1]);
	while (read(fds[0], &v, sizeof(v)) == (ssize_t)sizeof(v))
		acked = v;
	close(fds[0]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    (WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 2)) {
		fprintf(stderr, "crash point %lu: the child failed (status %d)\n",
			crash_at, status);
		return -1;
	}

	st = open_store(path);
	if (!st)
		return -1;
	if (state_of(st, state, sizeof(state)) != 0 ||
	    store_ledger_read(st, CUST, 0, rows, LEDGER_MAX, &n) != STORE_OK) {
		fprintf(stderr, "crash point %lu: cannot read the reopened "
				"database\n", crash_at);
		store_close(st);
		return -1;
	}
	store_close(st);
	db_remove(path);

	/* Durable: the acknowledged steps, or those and the one in flight. */
	for (size_t done = acked; done <= acked + 1 && done <= N_STEPS;
	     done++) {
		if (n != ref_ledger_len[done] ||
		    strcmp(state, ref_state[done]) != 0)
			continue;
		verdict = 0;
		for (size_t i = 0; i < n; i++)
			if (!same_row(&rows[i], &ref_ledger[i]))
				verdict = 1;
		if (verdict == 0)
			break;
	}
	if (verdict != 0 && !is_expect_loss)
		fprintf(stderr,
			"crash point %lu: %u step(s) acknowledged (ledger %zu "
			"rows, state %s) but the database reopened with %zu "
			"ledger rows and state %s\n",
			crash_at, acked, ref_ledger_len[acked], ref_state[acked],
			n, state);
	return verdict;
}

/* ---- concurrent writers: the group commit under power loss ---- */

/*
 * N_WRITERS threads, each on a user of its own (c0..c3), run the same
 * sequence (assign, assign, move, replace, unassign) at once, so their commits share batches. Users are independent,
 * so each user's outcome is judged against that user's sequential
 * reference: its ledger rows and state must be those after its
 * acknowledged steps, or after those and the one in flight.
 */
#define N_WRITERS 4
static const struct {
	char device; /* 'a'.. : device c<writer><device> */
	int type;
} wseq[] = {{'a', 1}, {'b', 2}, {'a', 3}, {'c', 2}, {'a', 0}};
#define N_WSTEPS (sizeof(wseq) / sizeof(wseq[0]))

static char wref_state[N_WRITERS][N_WSTEPS + 1][STATE_SIZE];
static size_t wref_len[N_WRITERS][N_WSTEPS + 1];
static struct store_ledger_row wref_rows[N_WRITERS][LEDGER_MAX];

struct writer {
	struct store *st;
	int index;
	int fd; /* -1: reference run, no reporting */
	pthread_t thread_id;
	char user[16];
	char device[N_WSTEPS][16];
};

static void writer_init(struct writer *w, struct store *st, int index, int fd)
{
	w->st = st;
	w->index = index;
	w->fd = fd;
	snprintf(w->user, sizeof(w->user), "c%d", index);
	for (size_t k = 0; k < N_WSTEPS; k++)
		snprintf(w->device[k], sizeof(w->device[k]), "c%d%c", index,
			 wseq[k].device);
}

static enum das_status writer_step(struct writer *w, size_t k)
{
	struct store_seq_step s = {w->user, w->device[k], wseq[k].type};

	return device_op(w->st, &s);
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	for (size_t k = 0; k < N_WSTEPS; k++) {
		uint32_t acked[2] = {(uint32_t)w->index, (uint32_t)(k + 1)};

		if (writer_step(w, k) != DAS_OK)
			_exit(4);
		/* 8 bytes: one atomic pipe write, whatever the others do. */
		if (w->fd >= 0 &&
		    write(w->fd, acked, sizeof(acked)) != sizeof(acked))
			_exit(5);
	}
	return NULL;
}

/* The rows of user among rows[0..n), in order, into out (max LEDGER_MAX). */
static size_t rows_of(const char *user, const struct store_ledger_row *rows,
		      size_t n, struct store_ledger_row *out)
{
	size_t m = 0;

	for (size_t i = 0; i < n; i++)
		if (strcmp(rows[i].user, user) == 0)
			out[m++] = rows[i];
	return m;
}

/* Sequential reference per writer; returns the events of one concurrent
 * run (a run's count varies with the batching; it is the crash range). */
static unsigned long writers_reference(void)
{
	static struct store_ledger_row all[LEDGER_MAX], mine[LEDGER_MAX];
	struct writer w[N_WRITERS];
	char path[512];
	struct store *st;
	unsigned long n_events;
	size_t n;

	db_path(path, sizeof(path), 100000);
	if (from_template(path) != 0 || !(st = open_store(path)))
		exit(1);
	for (int t = 0; t < N_WRITERS; t++) {
		const char *users[] = {w[t].user};

		writer_init(&w[t], st, t, -1);
		users[0] = w[t].user;
		for (size_t k = 0; k <= N_WSTEPS; k++) {
			if (k > 0 && writer_step(&w[t], k - 1) != DAS_OK)
				exit(1);
			if (users_state(st, users, 1, wref_state[t][k],
					STATE_SIZE) != 0 ||
			    store_ledger_read(st, CUST, 0, all, LEDGER_MAX,
					      &n) != STORE_OK)
				exit(1);
			wref_len[t][k] = rows_of(w[t].user, all, n, mine);
		}
		memcpy(wref_rows[t], mine, sizeof(mine));
	}
	store_close(st);
	db_remove(path);

	/* One concurrent run, to learn how many events it has. */
	if (from_template(path) != 0 || !(st = open_store(path)))
		exit(1);
	crash_vfs_arm(0);
	for (int t = 0; t < N_WRITERS; t++) {
		writer_init(&w[t], st, t, -1);
		if (pthread_create(&w[t].thread_id, NULL, writer_main, &w[t]))
			exit(1);
	}
	for (int t = 0; t < N_WRITERS; t++)
		pthread_join(w[t].thread_id, NULL);
	n_events = crash_vfs_events();
	store_close(st);
	db_remove(path);
	return n_events;
}

static int writers_crash_point(unsigned long crash_at)
{
	static struct store_ledger_row all[LEDGER_MAX], mine[LEDGER_MAX];
	uint32_t acked[N_WRITERS] = {0}, v[2];
	char path[512], state[STATE_SIZE];
	int fds[2], status, verdict = 0;
	struct store *st;
	size_t n = 0;
	pid_t pid;

	db_path(path, sizeof(path), 100000 + crash_at);
	if (from_template(path) != 0 || pipe(fds) != 0)
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		struct writer w[N_WRITERS];

		close(fds[0]);
		st = open_store(path);
		if (!st)
			_exit(3);
		crash_vfs_arm(crash_at);
		for (int t = 0; t < N_WRITERS; t++) {
			writer_init(&w[t], st, t, fds[1]);
			if (pthread_create(&w[t].thread_id, NULL, writer_main,
					   &w[t]))
				_exit(3);
		}
		for (int t = 0; t < N_WRITERS; t++)
			pthread_join(w[t].thread_id, NULL);
		_exit(2);
	}
	close(fds[1]);
	while (read(fds[0], v, sizeof(v)) == (ssize_t)sizeof(v))
		if (v[0] < N_WRITERS && v[1] > acked[v[0]])
			acked[v[0]] = v[1];
	close(fds[0]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    (WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 2)) {
		fprintf(stderr, "writers crash point %lu: the child failed "
				"(status %d)\n",
			crash_at, status);
		return -1;
	}
	st = open_store(path);
	if (!st ||
	    store_ledger_read(st, CUST, 0, all, LEDGER_MAX, &n) != STORE_OK) {
		store_close(st);
		return -1;
	}
	for (int t = 0; t < N_WRITERS; t++) {
		char user[16];
		const char *users[] = {user};
		size_t m, done;
		bool is_ok = false;

		snprintf(user, sizeof(user), "c%d", t);
		if (users_state(st, users, 1, state, sizeof(state)) != 0) {
			store_close(st);
			return -1;
		}
		m = rows_of(user, all, n, mine);
		for (done = acked[t]; done <= acked[t] + 1 && done <= N_WSTEPS;
		     done++) {
			if (m != wref_len[t][done] ||
			    strcmp(state, wref_state[t][done]) != 0)
				continue;
			is_ok = true;
			for (size_t i = 0; i < m; i++)
				if (!same_row(&mine[i], &wref_rows[t][i]))
					is_ok = false;
			if (is_ok)
				break;
		}
		if (!is_ok) {
			verdict = 1;
			if (!is_expect_loss)
				fprintf(stderr,
					"writers crash point %lu: %s had %u "
					"step(s) acknowledged but reopened "
					"with %zu ledger rows and state %s\n",
					crash_at, user, acked[t], m, state);
		}
	}
	store_close(st);
	db_remove(path);
	return verdict;
}

int main(int argc, char **argv)
{
	unsigned long n_events, n_lost = 0, n_points = 0;

	is_expect_loss = argc > 1 && strcmp(argv[1], "--expect-loss") == 0;
	das_log_set_level(DAS_LOG_ERROR);
	if (!mkdtemp(temp_dir)) {
		perror("mkdtemp");
		return 1;
	}
	atexit(rm_temp_dir);
	if (crash_vfs_register() != SQLITE_OK) {
		fprintf(stderr, "cannot register the crash VFS\n");
		return 1;
	}
	n_events = reference();
	printf("power loss: %zu steps, %lu writes and syncs: a crash at each\n",
	       N_STEPS, n_events);
	for (unsigned long i = 1; i <= n_events; i++) {
		/* Expecting a loss, the latest crash points first, and one
		 * loss is the proof. */
		unsigned long at = is_expect_loss ? n_events + 1 - i : i;
		int rc = crash_point(at);

		if (rc < 0)
			return 1;
		n_points++;
		n_lost += (unsigned long)rc;
		if (is_expect_loss && rc > 0) {
			printf("power loss: crash point %lu lost acknowledged "
			       "changes, as an unsynced store must\n",
			       at);
			break;
		}
	}
	printf("power loss: %lu crash points, %lu lost acknowledged changes "
	       "or left them half-applied\n",
	       n_points, n_lost);
	{
		unsigned long n_wpoints = 0, n_wlost = 0;

		n_events = writers_reference();
		printf("power loss: %d concurrent writers, %zu steps each, "
		       "about %lu writes and syncs: a crash at each\n",
		       N_WRITERS, N_WSTEPS, n_events);
		for (unsigned long i = 1; i <= n_events; i++) {
			unsigned long at = is_expect_loss ? n_events + 1 - i : i;
			int rc = writers_crash_point(at);

			if (rc < 0)
				return 1;
			n_wpoints++;
			n_wlost += (unsigned long)rc;
			if (is_expect_loss && rc > 0) {
				printf("power loss: writers crash point %lu "
				       "lost acknowledged changes, as an "
				       "unsynced store must\n",
				       at);
				break;
			}
		}
		printf("power loss: %lu crash points with concurrent writers, "
		       "%lu lost acknowledged changes or left them "
		       "half-applied\n",
		       n_wpoints, n_wlost);
		if (is_expect_loss && (n_lost == 0 || n_wlost == 0)) {
			fprintf(stderr, "an unsynced store lost nothing in one "
					"of the two runs: the power-loss test "
					"cannot fail there\n");
			return 1;
		}
		n_lost += n_wlost;
	}
	if (is_expect_loss) {
		if (n_lost == 0) {
			fprintf(stderr, "an unsynced store lost nothing: the "
					"power-loss test cannot fail\n");
			return 1;
		}
		return 0;
	}
	return n_lost == 0 && n_points > 0 ? 0 : 1;
}
