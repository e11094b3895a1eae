/*
 * Faults at the store boundary, in SQLite's and curl's manner: fail each
 * call in turn and look at what is left.
 *
 * - every_call_fails_once: through a whole sequence of assigns, moves,
 *   replaces and unassigns, and directory changes that end assignments
 *   (an owner change, a user and a device deleted), run by the use cases
 *   (service/ops), call N of
 *   the store wrappers fails (store_fault_arm), for every N until the
 *   sequence has fewer calls, and for each failure kind. The step that met
 *   the fault must be told (STORE_UNAVAILABLE for "cannot write", INTERNAL
 *   for an error; a conflict is retried and must not show), must have
 *   applied nothing (state and ledger equal the reference after the steps
 *   before it), and must go through when the caller tries again; at the
 *   end the state and ledger equal the reference run's.
 *
 * - every_io_fails_once: the same with the disk failing: each write and
 *   sync of the sequence fails in turn (an I/O error from the crash VFS).
 *
 * - handed_writes_answer_later: writes handed to the group commit
 *   (ops_device_start) give their callers' threads back at once while
 *   the write turn is held, and are told their batch's outcome.
 *
 * - handed_writes_past_their_deadline_change_nothing: the same writes,
 *   whose callers' deadline passes while the turn is held: each is told
 *   DEADLINE_EXCEEDED and none of their changes is there.
 *
 * - sync_that_hangs_bounds_waiting_writes: a disk that stops answering
 *   (every sync waits): writes handed over meanwhile wait up to the
 *   store's bound and are refused past it; once the disk answers, the
 *   committing write lands and those whose deadline passed change nothing.
 *
 * - failed_job_of_a_turn_undoes_only_itself: one writer turn of handed
 *   jobs, some of which write and then fail or are refused: each is told
 *   its own outcome, only the others' changes stay.
 *
 * - failed_batch_tells_every_writer: the SQLite group commit. One writer
 *   holds the write turn while others queue behind it, so they share one
 *   batch; the batch's sync fails (crash_vfs_fail_sync). Every writer of
 *   the batch must be told STORE_UNAVAILABLE, none of their changes may be
 *   visible, and the store must take writes again afterwards.
 */
#define _XOPEN_SOURCE 700 /* nftw, mkdtemp */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "common/log.h"
#include "crash_vfs.h"
#include "store_seq.h"
#include "service/ops/ops.h"
#include "service/store/store.h"

#define CUST STORE_SEQ_CUST
#define LEDGER_MAX 256
#define STATE_SIZE 512
#define N_WRITERS 6

/* What a step of the sequence does. */
enum step_kind {
	STEP_DEVICE,      /* assign device to user as type (0: unassign) */
	STEP_OWNER,       /* UpsertPbxDevice: device now belongs to user */
	STEP_DELETE_USER, /* DeleteUser: ends the user's assignments */
	STEP_NEW_USER,    /* UpsertUser with the softphone roles */
	STEP_DELETE_DEVICE,
};

struct fault_step {
	enum step_kind kind;
	struct store_seq_step change;
};

static const struct fault_step steps[] = {
	{STEP_DEVICE, {"u1", "d1", 1}},   {STEP_DEVICE, {"u1", "d2", 2}},
	{STEP_DEVICE, {"u2", "e1", 1}},   {STEP_OWNER, {"u2", "d2", 0}},
	{STEP_DEVICE, {"u1", "d1", 3}},   {STEP_DEVICE, {"u1", "d3", 1}},
	{STEP_DEVICE, {"u2", "e2", 1}},   {STEP_DEVICE, {"u2", "d2", 2}},
	{STEP_DELETE_USER, {"u2", "", 0}}, {STEP_NEW_USER, {"u2", "", 0}},
	{STEP_DEVICE, {"u2", "e1", 4}},   {STEP_DEVICE, {"u1", "d4", 3}},
	{STEP_DELETE_DEVICE, {"", "d3", 0}}, {STEP_DEVICE, {"u2", "e1", 0}},
	{STEP_OWNER, {"u1", "e2", 0}},    {STEP_DEVICE, {"u1", "e2", 2}},
};
#define N_STEPS (sizeof(steps) / sizeof(steps[0]))

static char temp_dir[] = "/tmp/das-store-faults-XXXXXX";
static unsigned n_dbs;

static char ref_state[N_STEPS + 1][STATE_SIZE];
static size_t ref_ledger_len[N_STEPS + 1];
static struct store_ledger_row ref_ledger[LEDGER_MAX];

static void rm_temp_dir(void)
{
	store_seq_rm_tree(temp_dir);
}

static void who_init(struct domain_principal *who)
{
	store_seq_who(who, "faults");
}

static struct ops_text text(const char *s)
{
	return store_seq_text(s);
}

static struct store *open_path_opts(const char *path,
				    const struct store_options *opt)
{
	char spec[600], err[512];
	struct store *st = NULL;

	snprintf(spec, sizeof(spec), "sqlite:%s", path);
	assert_int_equal(store_open(spec, opt, &st, err, sizeof(err)),
			 STORE_OK);
	return st;
}

static struct store *open_path_with(const char *path, unsigned busy_ms)
{
	const struct store_options opt = {.pool_size = 2,
					  .busy_timeout_ms = busy_ms};

	return open_path_opts(path, &opt);
}

static struct store *open_path(const char *path)
{
	return open_path_with(path, 5000);
}

static void copy_file(const char *from, const char *to)
{
	char buf[65536];
	int in = open(from, O_RDONLY | O_CLOEXEC), out;
	ssize_t n;

	if (in < 0) {
		assert_int_equal(errno, ENOENT);
		return;
	}
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)n), n);
	assert_int_equal(n, 0);
	close(in);
	close(out);
}

/* Written once by the group setup: the directory (customer, users,
 * devices); every test store starts as a copy of it. */
static char template_path[512];

/* The path of a new database holding the directory (a template copy). */
static const char *fresh_path(void)
{
	static char path[512];
	char from[600], to[600];

	snprintf(path, sizeof(path), "%s/t%u.db", temp_dir, ++n_dbs);
	copy_file(template_path, path);
	snprintf(from, sizeof(from), "%s-wal", template_path);
	snprintf(to, sizeof(to), "%s-wal", path);
	copy_file(from, to);
	return path;
}

static struct store *fresh_store(void)
{
	return open_path(fresh_path());
}

static const struct ops_text user_roles[] = {
	{"customer_user_uc", 16}, {"customer_user_uc_softphone", 26}};

static void directory(struct store *st)
{
	struct domain_principal who;
	struct ops_result r;
	struct ops_customer_input c = {.tenant = text(CUST),
				       .account = text(""),
				       .name = text("Acme")};
	const struct ops_text *roles = user_roles;
	static const char *const devices[][2] = {
		{"d1", "u1"}, {"d2", "u1"}, {"d3", "u1"}, {"d4", "u1"},
		{"e1", "u2"}, {"e2", "u2"}};

	who_init(&who);
	assert_int_equal(ops_upsert_customer(st, &who, &c, &r), DAS_OK);
	assert_int_equal(ops_upsert_user(st, &who, text(CUST), text("u1"),
					 roles, 2, &r),
			 DAS_OK);
	assert_int_equal(ops_upsert_user(st, &who, text(CUST), text("u2"),
					 roles, 2, &r),
			 DAS_OK);
	for (size_t i = 0; i < sizeof(devices) / sizeof(devices[0]); i++)
		assert_int_equal(ops_upsert_device(st, &who, text(CUST),
						   text(devices[i][0]),
						   text(devices[i][1]), &r),
				 DAS_OK);
}

static enum das_status device_op(struct store *st, const char *user,
				 const char *device, int type)
{
	return store_seq_device_op(st, "faults", user, device, type);
}

static enum das_status run_step(struct store *st, size_t i)
{
	const struct store_seq_step *c = &steps[i].change;
	struct domain_principal who;
	struct ops_result r;

	who_init(&who);
	switch (steps[i].kind) {
	case STEP_DEVICE:
		return device_op(st, c->user, c->device, c->type);
	case STEP_OWNER:
		return ops_upsert_device(st, &who, text(CUST), text(c->device),
					 text(c->user), &r);
	case STEP_DELETE_USER:
		return ops_delete_user(st, &who, text(CUST), text(c->user), &r);
	case STEP_NEW_USER:
		return ops_upsert_user(st, &who, text(CUST), text(c->user),
				       user_roles, 2, &r);
	case STEP_DELETE_DEVICE:
		return ops_delete_device(st, &who, text(CUST), text(c->device),
					 &r);
	}
	return DAS_INTERNAL;
}

/* "u1:1=d1,;u2:;" through the use case that lists ("u2:-;": no such
 * user). */
static void state_of(struct store *st, const char *const *users,
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
		if (ops_device(st, &who, &req, &r) == DAS_USER_NOT_FOUND) {
			o += (size_t)snprintf(out + o, size - o, "%s:-;",
					      users[u]);
			continue;
		}
		assert_int_equal(r.status, DAS_OK);
		o += (size_t)snprintf(out + o, size - o, "%s:", users[u]);
		for (size_t i = 0; i < r.n_devices && o < size; i++)
			o += (size_t)snprintf(out + o, size - o, "%d=%s,",
					      r.devices[i].type,
					      r.devices[i].device);
		if (o < size)
			o += (size_t)snprintf(out + o, size - o, ";");
	}
	assert_true(o < size);
}

static const char *const seq_users[] = {"u1", "u2"};

/* State and ledger equal the reference after done steps. */
static void expect_reference(struct store *st, size_t done)
{
	char state[STATE_SIZE];
	struct store_ledger_row rows[LEDGER_MAX];
	size_t n = 0;

	state_of(st, seq_users, 2, state, sizeof(state));
	assert_string_equal(state, ref_state[done]);
	assert_int_equal(store_ledger_read(st, CUST, 0, rows, LEDGER_MAX, &n),
			 STORE_OK);
	assert_int_equal(n, ref_ledger_len[done]);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(rows[i].user, ref_ledger[i].user);
		assert_string_equal(rows[i].device, ref_ledger[i].device);
		assert_int_equal(rows[i].from_type, ref_ledger[i].from_type);
		assert_int_equal(rows[i].to_type, ref_ledger[i].to_type);
	}
}

static int reference(void **state)
{
	struct store *st;
	size_t n = 0;

	(void)state;
	snprintf(template_path, sizeof(template_path), "%s/template.db",
		 temp_dir);
	st = open_path(template_path);
	directory(st);
	store_close(st); /* the last close checkpoints the log */
	st = fresh_store();
	for (size_t i = 0; i <= N_STEPS; i++) {
		if (i > 0)
			assert_int_equal(run_step(st, i - 1), DAS_OK);
		state_of(st, seq_users, 2, ref_state[i], STATE_SIZE);
		assert_int_equal(store_ledger_read(st, CUST, 0, ref_ledger,
						   LEDGER_MAX, &n),
				 STORE_OK);
		ref_ledger_len[i] = n;
	}
	store_close(st);
	return 0;
}

/*
 * After step done - 1 went through: state and ledger equal the
 * reference's (a step told OK that left half of its change, or none,
 * shows here, before later steps can cover it up). The check's own store
 * calls do not count toward the fault armed at call at: *counted keeps
 * the calls of the sequence so far.
 */
static void expect_reference_armed(struct store *st, size_t done,
				   unsigned long at, int injected,
				   unsigned long *counted)
{
	*counted += store_fault_calls();
	store_fault_arm(0, 0);
	expect_reference(st, done);
	if (at > *counted)
		store_fault_arm(at - *counted, injected);
}

static void every_call_fails_once(void **state)
{
	static const struct {
		int injected;
		enum das_status told; /* DAS_OK: absorbed by a retry */
	} kinds[] = {
		{STORE_UNAVAILABLE, DAS_STORE_UNAVAILABLE},
		{STORE_ERROR, DAS_INTERNAL},
		{STORE_RETRY, DAS_OK},
	};

	(void)state;
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		unsigned long n_points = 0;

		for (unsigned long at = 1;; at++) {
			struct store *st = fresh_store();
			bool is_hit = false;
			unsigned long counted = 0;

			store_fault_arm(at, kinds[k].injected);
			for (size_t i = 0; i < N_STEPS;) {
				enum das_status s = run_step(st, i);

				if (s == DAS_OK) {
					i++;
					if (!is_hit)
						expect_reference_armed(
							st, i, at,
							kinds[k].injected,
							&counted);
					continue;
				}
				/* The caller is told, and nothing of the
				 * step is there; then it tries again. */
				if (s != kinds[k].told)
					fprintf(stderr,
						"fault %d at call %lu: step %zu "
						"told %s\n",
						kinds[k].injected, at, i,
						das_status_row(s)->name);
				assert_int_equal(s, kinds[k].told);
				assert_false(is_hit);
				is_hit = true;
				store_fault_arm(0, 0);
				expect_reference(st, i);
			}
			/* Past the sequence's last call: done. */
			if (!is_hit && counted + store_fault_calls() < at) {
				store_fault_arm(0, 0);
				store_close(st);
				break;
			}
			store_fault_arm(0, 0);
			expect_reference(st, N_STEPS);
			store_close(st);
			n_points++;
		}
		printf("store faults: result %d failed at each of %lu calls\n",
		       kinds[k].injected, n_points);
		assert_true(n_points >= N_STEPS * 3);
	}
}

/*
 * The same with the disk failing instead: each write or sync of the
 * sequence fails in turn (crash_vfs_fail_event). The step told
 * STORE_UNAVAILABLE applied nothing, the store recovers, and the step goes
 * through when tried again.
 */
static void every_io_fails_once(void **state)
{
	unsigned long n_points = 0, n_told = 0;

	(void)state;
	for (unsigned long at = 1;; at++) {
		struct store *st = fresh_store();
		unsigned long start = crash_vfs_all_events();
		bool is_hit = false;

		crash_vfs_fail_event(at);
		for (size_t i = 0; i < N_STEPS;) {
			enum das_status s = run_step(st, i);

			if (s == DAS_OK) {
				i++;
				/* reads only: no write or sync to count */
				expect_reference(st, i);
				continue;
			}
			if (s != DAS_STORE_UNAVAILABLE)
				fprintf(stderr, "I/O error at event %lu: step %zu "
						"told %s\n",
					at, i, das_status_row(s)->name);
			assert_int_equal(s, DAS_STORE_UNAVAILABLE);
			assert_false(is_hit);
			is_hit = true;
			crash_vfs_fail_event(0);
			expect_reference(st, i);
		}
		crash_vfs_fail_event(0);
		if (!is_hit && crash_vfs_all_events() - start < at) {
			store_close(st);
			break;
		}
		expect_reference(st, N_STEPS);
		store_close(st);
		n_points++;
		n_told += is_hit;
	}
	printf("store faults: an I/O error at each of %lu writes and syncs, "
	       "%lu of them told to the caller\n",
	       n_points, n_told);
	assert_true(n_told >= N_STEPS);
}

/* ---- the group commit ---- */

/* Users w<first>..w<last>, each with its device x<i>. */
static void seed_writers(struct store *st, int first, int last)
{
	struct domain_principal who;
	struct ops_result r;
	struct ops_text roles[] = {text("customer_user_uc"),
				   text("customer_user_uc_softphone")};

	who_init(&who);
	for (int i = first; i <= last; i++) {
		char user[8], device[8];

		snprintf(user, sizeof(user), "w%d", i);
		snprintf(device, sizeof(device), "x%d", i);
		assert_int_equal(ops_upsert_user(st, &who, text(CUST),
						 text(user), roles, 2, &r),
				 DAS_OK);
		assert_int_equal(ops_upsert_device(st, &who, text(CUST),
						   text(device), text(user),
						   &r),
				 DAS_OK);
	}
}

struct writer {
	struct store *st;
	char user[8], device[8];
	enum das_status told;
	pthread_t thread;
	atomic_int tid; /* set once the thread runs */
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	atomic_store(&w->tid, (int)syscall(SYS_gettid));
	w->told = device_op(w->st, w->user, w->device, 1);
	return NULL;
}

static void pause_ms(int ms)
{
	struct timespec ts = {0, (long)ms * 1000000L};

	nanosleep(&ts, NULL);
}

/* The scheduler state of one of our threads ('R', 'S', ...), or 0. */
static char thread_state(int tid)
{
	char path[64], buf[256];
	const char *paren;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	paren = strrchr(buf, ')');
	return paren && paren[1] == ' ' ? paren[2] : 0;
}

/*
 * Waits until the thread that stored its id in *tid sleeps: a writer
 * queued behind the write turn this test holds (the first thing it can
 * sleep on). Fails after 30 s rather than hang.
 */
static void wait_until_asleep(atomic_int *tid)
{
	for (int i = 0; i < 30000; i++) {
		int id = atomic_load(tid);

		if (id && thread_state(id) == 'S')
			return;
		pause_ms(1);
	}
	fail_msg("a writer thread never went to sleep on the write turn");
}

static void failed_batch_tells_every_writer(void **state)
{
	unsigned best_batch = 0;

	(void)state;
	/* The queue forms by timing; a few rounds make a batch of several
	 * writers certain in practice, and every round is checked. */
	for (int round = 0; round < 20 && best_batch < 3; round++) {
		struct store *st = fresh_store();
		struct writer w[N_WRITERS];
		const char *users[N_WRITERS + 1];
		struct store_tx *tx = NULL;
		struct domain_change ch;
		struct store_actor actor = {"faults", das_time_now(), NULL};
		int holder_rc;
		unsigned n_told_unavailable = 0;
		char seen[STATE_SIZE];

		seed_writers(st, 0, N_WRITERS);

		/* w0 (this thread) holds the write turn. */
		assert_int_equal(store_begin(st, CUST, false, &tx), STORE_OK);
		for (int i = 0; i < N_WRITERS; i++) {
			w[i].st = st;
			atomic_init(&w[i].tid, 0);
			snprintf(w[i].user, sizeof(w[i].user), "w%d", i + 1);
			snprintf(w[i].device, sizeof(w[i].device), "x%d",
				 i + 1);
			assert_int_equal(pthread_create(&w[i].thread, NULL,
							writer_main, &w[i]),
					 0);
		}
		/* Each has reached the writers' queue. */
		for (int i = 0; i < N_WRITERS; i++)
			wait_until_asleep(&w[i].tid);

		memset(&ch, 0, sizeof(ch));
		snprintf(ch.user, sizeof(ch.user), "w0");
		snprintf(ch.device, sizeof(ch.device), "x0");
		ch.from_type = 0;
		ch.to_type = 1;
		assert_int_equal(store_apply(tx, CUST, &ch, 1, &actor),
				 STORE_OK);
		crash_vfs_fail_sync(1); /* the batch's commit */
		holder_rc = store_commit(tx);
		for (int i = 0; i < N_WRITERS; i++)
			pthread_join(w[i].thread, NULL);
		crash_vfs_fail_sync(0);

		/* Told failure <=> not there; told OK <=> there. */
		users[0] = "w0";
		for (int i = 0; i < N_WRITERS; i++)
			users[i + 1] = w[i].user;
		assert_true(holder_rc == STORE_OK ||
			    holder_rc == STORE_UNAVAILABLE);
		n_told_unavailable += holder_rc == STORE_UNAVAILABLE;
		for (int i = 0; i < N_WRITERS; i++) {
			assert_true(w[i].told == DAS_OK ||
				    w[i].told == DAS_STORE_UNAVAILABLE);
			n_told_unavailable +=
				w[i].told == DAS_STORE_UNAVAILABLE;
		}
		for (int i = 0; i <= N_WRITERS; i++) {
			bool is_ok = i == 0 ? holder_rc == STORE_OK
					    : w[i - 1].told == DAS_OK;
			char want[32];

			state_of(st, &users[i], 1, seen, sizeof(seen));
			snprintf(want, sizeof(want), "w%d:%s", i,
				 is_ok ? "" : ";");
			if (is_ok)
				snprintf(want, sizeof(want), "w%d:1=x%d,;", i,
					 i);
			assert_string_equal(seen, want);
		}
		/* The ledger holds exactly the writers told OK. */
		{
			struct store_ledger_row rows[LEDGER_MAX];
			size_t n = 0, n_ok = 0;

			assert_int_equal(store_ledger_read(st, CUST, 0, rows,
							   LEDGER_MAX, &n),
					 STORE_OK);
			for (size_t i = 0; i < n; i++)
				n_ok += rows[i].user[0] == 'w';
			assert_int_equal(n_ok, N_WRITERS + 1 -
						       n_told_unavailable);
		}
		/* And the store takes writes again. */
		assert_int_equal(device_op(st, "w0", "x0", 2), DAS_OK);
		if (n_told_unavailable > best_batch)
			best_batch = n_told_unavailable;
		store_close(st);
	}
	printf("store faults: a failed batch commit told %u writers\n",
	       best_batch);
	assert_true(best_batch >= 2);
}

/* ---- read first ---- */

static enum das_status device_op_result(struct store *st, const char *user,
					const char *device, int type,
					struct ops_result *r)
{
	struct domain_principal who;
	struct domain_request req;

	who_init(&who);
	store_seq_request(&req, user, device, type);
	return ops_device(st, &who, &req, r);
}

/*
 * An idempotent repeat takes no write lock: while another connection holds
 * the database's write lock (BEGIN IMMEDIATE, as a second server on the
 * file would), repeats of an assign and of an unassign still answer, with
 * the answer a repeat always had (the type it had, nothing charged), while
 * a real change cannot get through until the lock is gone.
 */
static void repeat_answers_while_write_lock_held(void **state)
{
	const char *path = fresh_path();
	struct store *st = open_path_with(path, 20);
	struct ops_result r;
	sqlite3 *other = NULL;
	size_t n_before = 0, n_after = 0;
	struct store_ledger_row rows[LEDGER_MAX];

	(void)state;
	assert_int_equal(device_op(st, "u1", "d1", 1), DAS_OK);
	assert_int_equal(store_ledger_read(st, CUST, 0, rows, LEDGER_MAX,
					   &n_before),
			 STORE_OK);

	assert_int_equal(sqlite3_open_v2(path, &other, SQLITE_OPEN_READWRITE,
					 NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL,
				      NULL),
			 SQLITE_OK);

	assert_int_equal(device_op_result(st, "u1", "d1", 1, &r), DAS_OK);
	assert_int_equal(r.previous_type, 1);
	assert_false(r.is_charged);
	assert_int_equal(device_op_result(st, "u1", "d2", 0, &r), DAS_OK);
	assert_int_equal(r.previous_type, 0);
	/* A change needs the lock: refused after the busy timeout, whole. */
	assert_int_equal(device_op(st, "u1", "d1", 2), DAS_UNAVAILABLE);

	assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(other);
	assert_int_equal(store_ledger_read(st, CUST, 0, rows, LEDGER_MAX,
					   &n_after),
			 STORE_OK);
	assert_int_equal(n_after, n_before);
	assert_int_equal(device_op(st, "u1", "d1", 2), DAS_OK);
	store_close(st);
}

struct repeater {
	struct store *st;
	enum das_status told;
	atomic_bool is_done;
	pthread_t thread;
};

static void *repeater_main(void *arg)
{
	struct repeater *w = arg;

	w->told = device_op(w->st, "u1", "d1", 1);
	atomic_store(&w->is_done, true);
	return NULL;
}

/*
 * A repeat never answers from a change that is not durable yet. A writer
 * assigns d1 and holds its write transaction (the change is in the open
 * batch, not on disk); "assign d1" sent meanwhile looks like a repeat of
 * it. It must not be answered before that change is committed, and when
 * the batch's commit fails (its sync fails: the change is lost), the
 * repeat is either told UNAVAILABLE or makes the change itself: told OK
 * means d1 is assigned, durable, with its ledger row.
 */
static void repeat_never_rests_on_a_lost_batch(void **state)
{
	unsigned n_unavailable = 0, n_own = 0;

	(void)state;
	for (int round = 0; round < 6; round++) {
		struct store *st = fresh_store();
		struct store_tx *tx = NULL;
		struct domain_change ch;
		struct store_actor actor = {"holder", das_time_now(), NULL};
		struct repeater w = {.st = st};
		struct store_ledger_row rows[LEDGER_MAX];
		char seen[STATE_SIZE];
		const char *u1 = "u1";
		size_t n = 0, n_d1 = 0;
		bool was_done_early;

		atomic_init(&w.is_done, false);
		assert_int_equal(store_begin(st, CUST, false, &tx), STORE_OK);
		memset(&ch, 0, sizeof(ch));
		snprintf(ch.user, sizeof(ch.user), "u1");
		snprintf(ch.device, sizeof(ch.device), "d1");
		ch.to_type = 1;
		assert_int_equal(store_apply(tx, CUST, &ch, 1, &actor),
				 STORE_OK);
		assert_int_equal(pthread_create(&w.thread, NULL, repeater_main,
						&w),
				 0);
		/* Give a wrong answer time to show; odd rounds commit at
		 * once, so the repeat also meets the batch from its queue. */
		for (int i = 0; i < (round % 2 ? 1 : 50) &&
				!atomic_load(&w.is_done);
		     i++)
			pause_ms(2);
		was_done_early = atomic_load(&w.is_done);
		crash_vfs_fail_sync(1); /* the batch's commit */
		assert_int_equal(store_commit(tx), STORE_UNAVAILABLE);
		pthread_join(w.thread, NULL);
		crash_vfs_fail_sync(0);

		assert_false(was_done_early);
		state_of(st, &u1, 1, seen, sizeof(seen));
		assert_int_equal(store_ledger_read(st, CUST, 0, rows,
						   LEDGER_MAX, &n),
				 STORE_OK);
		for (size_t i = 0; i < n; i++)
			n_d1 += strcmp(rows[i].device, "d1") == 0;
		if (w.told == DAS_OK) {
			assert_string_equal(seen, "u1:1=d1,;");
			assert_int_equal(n_d1, 1);
			n_own++;
		} else {
			assert_int_equal(w.told, DAS_STORE_UNAVAILABLE);
			assert_string_equal(seen, "u1:;");
			assert_int_equal(n_d1, 0);
			n_unavailable++;
		}
		store_close(st);
	}
	printf("store faults: a repeat behind a lost batch: told UNAVAILABLE "
	       "%u times, made the change itself %u times\n",
	       n_unavailable, n_own);
}

/* A write handed to the group commit (ops_device_start) and its answer. */
struct handed {
	struct ops_later later; /* first: done's argument */
	atomic_bool is_done;
};

static void handed_done(struct ops_later *later)
{
	atomic_store(&((struct handed *)later)->is_done, true);
}

struct leader {
	struct store *st;
	struct handed *h;
	bool is_now;
	pthread_t thread;
	atomic_int tid; /* set once the thread runs */
};

static bool hand_over_by(struct store *st, struct handed *h,
			 const char *user, const char *device, int type,
			 int64_t deadline_ms)
{
	struct domain_principal who;
	struct domain_request req;

	who_init(&who);
	store_seq_request(&req, user, device, type);
	h->later.done = handed_done;
	h->later.deadline_ms = deadline_ms;
	atomic_init(&h->is_done, false);
	return ops_device_start(st, &who, &req, &h->later);
}

static bool hand_over(struct store *st, struct handed *h, const char *user,
		      const char *device, int type)
{
	return hand_over_by(st, h, user, device, type, 0);
}

/* CLOCK_MONOTONIC in ms, as ops_later.deadline_ms counts. */
static int64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *leader_main(void *arg)
{
	struct leader *l = arg;

	atomic_store(&l->tid, (int)syscall(SYS_gettid));
	l->is_now = hand_over(l->st, l->h, "w1", "x1", 1);
	return NULL;
}

/*
 * Holds the write turn (*tx) and queues N_WRITERS writes to the group
 * commit behind it: h[0] by lead's thread, which waits for the turn, the
 * others from this thread, each given back at once. Each of the others
 * has a deadline ms_left from its hand-over (0: none).
 */
static void queue_behind_turn(struct store *st, struct handed *h,
			      struct leader *lead, struct store_tx **tx,
			      int ms_left)
{
	seed_writers(st, 1, N_WRITERS);
	assert_int_equal(store_begin(st, CUST, false, tx), STORE_OK);
	lead->st = st;
	lead->h = &h[0];
	atomic_init(&lead->tid, 0);
	assert_int_equal(pthread_create(&lead->thread, NULL, leader_main, lead),
			 0);
	/* The leader queued and waits for the turn: until then a caller
	 * below could become the leader and wait on this thread's own
	 * turn. */
	wait_until_asleep(&lead->tid);
	for (int i = 1; i < N_WRITERS; i++) {
		char user[8], device[8];

		snprintf(user, sizeof(user), "w%d", i + 1);
		snprintf(device, sizeof(device), "x%d", i + 1);
		/* Returns at once although the turn is held. */
		assert_false(hand_over_by(st, &h[i], user, device, 1,
					  ms_left ? monotonic_ms() + ms_left
						  : 0));
		assert_false(atomic_load(&h[i].is_done));
	}
}

/* Gives the turn back and waits for every queued write's answer. */
static void release_turn(struct store_tx *tx, struct handed *h,
			 struct leader *lead)
{
	store_rollback(tx);
	pthread_join(lead->thread, NULL);
	assert_false(lead->is_now);
	for (int i = 0; i < N_WRITERS; i++)
		while (!atomic_load(&h[i].is_done))
			pause_ms(1);
}

/* The ledger rows of the queued writers' users (w1, w2, ...). */
static size_t writer_rows(struct store *st)
{
	struct store_ledger_row rows[LEDGER_MAX];
	size_t n = 0, n_ours = 0;

	assert_int_equal(store_ledger_read(st, CUST, 0, rows, LEDGER_MAX, &n),
			 STORE_OK);
	for (size_t i = 0; i < n; i++)
		n_ours += rows[i].user[0] == 'w';
	return n_ours;
}

/*
 * Writes handed to the group commit do not hold their callers' threads:
 * while another writer holds the write turn, the first caller leads the
 * queue (it waits for the turn), and every later caller gets its thread
 * back at once, answered later. When the batch's sync fails, each of them
 * is told STORE_UNAVAILABLE and none of their changes is there; after a
 * good commit each is told OK and its change and ledger row are there.
 */
static void handed_writes_answer_later(void **state)
{
	(void)state;
	for (int round = 0; round < 2; round++) {
		bool is_failing = round == 0;
		struct store *st = fresh_store();
		struct handed h[N_WRITERS];
		struct leader lead;
		struct store_tx *tx = NULL;

		queue_behind_turn(st, h, &lead, &tx, 0);
		if (is_failing)
			crash_vfs_fail_sync(1); /* the batch's commit */
		release_turn(tx, h, &lead);
		for (int i = 0; i < N_WRITERS; i++)
			assert_int_equal(h[i].later.result.status,
					 is_failing ? DAS_STORE_UNAVAILABLE
						    : DAS_OK);
		crash_vfs_fail_sync(0);
		assert_int_equal(writer_rows(st), is_failing ? 0 : N_WRITERS);
		/* And the store takes writes again. */
		assert_int_equal(device_op(st, "w1", "x1", 2), DAS_OK);
		store_close(st);
	}
}

/* Does the store know user of CUST? */
static bool user_found(struct store *st, const char *user)
{
	struct domain_key key;
	struct domain_snapshot snap;
	struct store_tx *tx = NULL;

	memset(&key, 0, sizeof(key));
	snprintf(key.customer, sizeof(key.customer), "%s", CUST);
	snprintf(key.user, sizeof(key.user), "%s", user);
	assert_int_equal(store_begin(st, CUST, true, &tx), STORE_OK);
	assert_int_equal(store_load(tx, &key, &snap), STORE_OK);
	store_rollback(tx);
	return snap.is_user_found;
}

/*
 * Writes handed to the group commit whose callers' deadline passes while
 * they wait for the write turn change nothing: each is told
 * DEADLINE_EXCEEDED when its turn comes, and no change or ledger row of
 * theirs is there. The leader's write, with no deadline, is carried out.
 * A directory change queued with them (UpsertUser, handed over as they
 * are) gives its caller's thread back at once and, late too, creates no
 * user.
 */
static void handed_writes_past_their_deadline_change_nothing(void **state)
{
	static const struct ops_text roles[] = {{"customer_user_uc", 16}};
	struct store *st = fresh_store();
	struct handed h[N_WRITERS], dir;
	struct leader lead;
	struct store_tx *tx = NULL;
	struct domain_principal who;
	struct ops_directory_input in = {.op = OPS_UPSERT_USER,
					 .tenant = text(CUST),
					 .user = text("late"),
					 .roles = roles,
					 .n_roles = 1};

	(void)state;
	who_init(&who);
	queue_behind_turn(st, h, &lead, &tx, 50);
	dir.later.done = handed_done;
	dir.later.deadline_ms = monotonic_ms() + 50;
	atomic_init(&dir.is_done, false);
	assert_false(ops_directory_start(st, &who, &in, &dir.later));
	assert_false(atomic_load(&dir.is_done));
	/* The turn is held past their deadline. */
	pause_ms(200);
	release_turn(tx, h, &lead);
	for (int i = 0; i < N_WRITERS; i++)
		assert_int_equal(h[i].later.result.status,
				 i == 0 ? DAS_OK : DAS_DEADLINE_EXCEEDED);
	while (!atomic_load(&dir.is_done))
		pause_ms(1);
	assert_int_equal(dir.later.result.status, DAS_DEADLINE_EXCEEDED);
	assert_int_equal(writer_rows(st), 1);
	assert_false(user_found(st, "late"));
	store_close(st);
}

#define HANG_MAX_WAITING 4

/*
 * A disk that stops answering: every sync waits (crash_vfs_hold_syncs)
 * while a batch commits. Writes handed over meanwhile give their callers'
 * threads back at once, up to the store's bound of waiting calls
 * (--store-max-waiting; the committing one counts); past it each is
 * refused at once, STORE_UNAVAILABLE, instead of joining the queue.
 * Those queued behind the commit are told DEADLINE_EXCEEDED at their
 * deadline, the disk still hanging (the store's reaper), and their places
 * in the bound are free again: a new write is taken, not refused. When
 * the disk answers again the committing write lands, and none of the
 * late ones changes anything.
 */
static void sync_that_hangs_bounds_waiting_writes(void **state)
{
	const struct store_options opt = {.pool_size = 2,
					  .busy_timeout_ms = 5000,
					  .max_waiting = HANG_MAX_WAITING};
	struct store *st = open_path_opts(fresh_path(), &opt);
	struct handed h[N_WRITERS];
	struct leader lead = {.st = st, .h = &h[0]};

	(void)state;
	seed_writers(st, 1, N_WRITERS);
	crash_vfs_hold_syncs(true);
	atomic_init(&lead.tid, 0);
	assert_int_equal(pthread_create(&lead.thread, NULL, leader_main, &lead),
			 0);
	while (crash_vfs_held_syncs() == 0)
		pause_ms(1); /* the leader's batch is committing */
	for (int i = 1; i < N_WRITERS; i++) {
		char user[8], device[8];

		snprintf(user, sizeof(user), "w%d", i + 1);
		snprintf(device, sizeof(device), "x%d", i + 1);
		assert_false(hand_over_by(st, &h[i], user, device, 1,
					  monotonic_ms() + 50));
		if (i < HANG_MAX_WAITING) {
			assert_false(atomic_load(&h[i].is_done));
		} else {
			assert_true(atomic_load(&h[i].is_done));
			assert_int_equal(h[i].later.result.status,
					 DAS_STORE_UNAVAILABLE);
		}
	}
	pause_ms(200); /* past their deadline */
	/* Seen with the disk still hanging, asserted once it answers (a
	 * failed assertion must not leave the leader waiting). */
	int n_late = 0, n_again = -1;
	for (int i = 1; i < HANG_MAX_WAITING; i++)
		n_late += atomic_load(&h[i].is_done) &&
			  h[i].later.result.status == DAS_DEADLINE_EXCEEDED;
	bool is_again_taken = !hand_over_by(st, &h[HANG_MAX_WAITING], "w5",
					    "x5", 1, monotonic_ms() + 50);
	if (is_again_taken && !atomic_load(&h[HANG_MAX_WAITING].is_done)) {
		pause_ms(200);
		n_again = atomic_load(&h[HANG_MAX_WAITING].is_done) &&
			  h[HANG_MAX_WAITING].later.result.status ==
				  DAS_DEADLINE_EXCEEDED;
	}
	bool is_hanging = crash_vfs_held_syncs() > 0;
	crash_vfs_hold_syncs(false);
	pthread_join(lead.thread, NULL);
	assert_false(lead.is_now);
	while (!atomic_load(&h[0].is_done))
		pause_ms(1);
	assert_true(is_hanging);
	assert_int_equal(n_late, HANG_MAX_WAITING - 1);
	assert_true(is_again_taken);
	assert_int_equal(n_again, 1);
	assert_int_equal(h[0].later.result.status, DAS_OK);
	assert_int_equal(writer_rows(st), 1);
	store_close(st);
}

/* A job handed straight to the store whose body writes a new assignment
 * and then fails (STORE_ERROR) or is refused (is_undone). */
struct undone_job {
	struct store_job job; /* first: the store hands this back */
	char user[8], device[8];
	bool is_refused; /* else it fails */
	int result;
	atomic_bool is_done;
	struct store *st;
	pthread_t thread;
	atomic_int tid; /* set once the leader's thread runs */
};

static int undone_body(struct store_tx *tx, struct store_job *job)
{
	struct undone_job *u = (struct undone_job *)job;
	struct store_actor actor = {"faults", das_time_now(), NULL};
	struct domain_change ch;
	int rc;

	memset(&ch, 0, sizeof(ch));
	memcpy(ch.user, u->user, sizeof(u->user));
	memcpy(ch.device, u->device, sizeof(u->device));
	ch.to_type = 1;
	rc = store_apply(tx, CUST, &ch, 1, &actor);
	if (rc != STORE_OK)
		return rc;
	if (u->is_refused) {
		job->is_undone = true;
		return STORE_OK;
	}
	return STORE_ERROR;
}

static void undone_done(struct store_job *job, int result)
{
	struct undone_job *u = (struct undone_job *)job;

	u->result = result;
	atomic_store(&u->is_done, true);
}

static void undone_init(struct undone_job *u, struct store *st, int i,
			bool is_refused)
{
	memset(u, 0, sizeof(*u));
	u->st = st;
	snprintf(u->user, sizeof(u->user), "w%d", i);
	snprintf(u->device, sizeof(u->device), "x%d", i);
	u->is_refused = is_refused;
	u->job.body = undone_body;
	u->job.done = undone_done;
	atomic_init(&u->is_done, false);
	atomic_init(&u->tid, 0);
}

static void *undone_leader_main(void *arg)
{
	struct undone_job *u = arg;

	atomic_store(&u->tid, (int)syscall(SYS_gettid));
	assert_int_equal(store_submit(u->st, &u->job), STORE_OK);
	return NULL;
}

/* A job that holds its writer turn until released (writes nothing). */
struct blocker {
	struct store_job job; /* first */
	struct store *st;
	atomic_bool is_running, is_released;
	pthread_t thread;
};

static int blocker_body(struct store_tx *tx, struct store_job *job)
{
	struct blocker *b = (struct blocker *)job;

	(void)tx;
	atomic_store(&b->is_running, true);
	while (!atomic_load(&b->is_released))
		pause_ms(1);
	return STORE_OK;
}

static void blocker_done(struct store_job *job, int result)
{
	(void)job;
	assert_int_equal(result, STORE_OK);
}

static void *blocker_main(void *arg)
{
	struct blocker *b = arg;

	assert_int_equal(store_submit(b->st, &b->job), STORE_OK);
	return NULL;
}

/*
 * The jobs of one writer turn run without a savepoint each; a job that
 * wrote and then failed or was refused is undone by running the turn
 * again without it. One turn's queue forms: w1 (writes, then fails), w2
 * (a move through the use case), w3 (writes, then refused), w4 (use
 * case), w5 (writes, then fails), w6 (use case). Each is told its own
 * outcome; only the use cases' changes and ledger rows are there. Round
 * 0: this thread holds the write turn meanwhile, so the jobs' turn joins
 * the open batch (and has its savepoint); round 1: a job of the leader
 * holds its turn, so the jobs' turn opens the next batch (without a
 * savepoint: undoing it is undoing the batch).
 */
static void failed_job_of_a_turn_undoes_only_itself(void **state)
{
	static const char *const users[] = {"w1", "w2", "w3",
					     "w4", "w5", "w6"};
	static const char *const want[] = {"w1:;",      "w2:1=x2,;",
					   "w3:;",      "w4:1=x4,;",
					   "w5:;",      "w6:1=x6,;"};

	(void)state;
	for (int round = 0; round < 2; round++) {
		struct store *st = fresh_store();
		struct undone_job u[3];
		struct handed h[3];
		struct blocker b = {.st = st};
		struct store_tx *tx = NULL;
		struct store_ledger_row rows[LEDGER_MAX];
		char seen[STATE_SIZE];
		size_t n = 0;

		seed_writers(st, 1, 6);
		undone_init(&u[0], st, 1, false);
		undone_init(&u[1], st, 3, true);
		undone_init(&u[2], st, 5, false);
		if (round == 0) {
			assert_int_equal(store_begin(st, CUST, false, &tx),
					 STORE_OK);
			assert_int_equal(pthread_create(&u[0].thread, NULL,
							undone_leader_main,
							&u[0]),
					 0);
			/* It leads and waits for the turn. */
			wait_until_asleep(&u[0].tid);
		} else {
			b.job.body = blocker_body;
			b.job.done = blocker_done;
			atomic_init(&b.is_running, false);
			atomic_init(&b.is_released, false);
			assert_int_equal(pthread_create(&b.thread, NULL,
							blocker_main, &b),
					 0);
			while (!atomic_load(&b.is_running))
				pause_ms(1);
			assert_int_equal(store_submit(st, &u[0].job),
					 STORE_OK);
		}
		for (int i = 0; i < 3; i++) {
			char user[8], device[8];

			snprintf(user, sizeof(user), "w%d", 2 * i + 2);
			snprintf(device, sizeof(device), "x%d", 2 * i + 2);
			assert_false(hand_over(st, &h[i], user, device, 1));
			if (i < 2)
				assert_int_equal(store_submit(st,
							      &u[i + 1].job),
						 STORE_OK);
		}
		if (round == 0) {
			store_rollback(tx);
			pthread_join(u[0].thread, NULL);
		} else {
			atomic_store(&b.is_released, true);
			pthread_join(b.thread, NULL);
		}
		for (int i = 0; i < 3; i++) {
			while (!atomic_load(&h[i].is_done) ||
			       !atomic_load(&u[i].is_done))
				pause_ms(1);
			assert_int_equal(h[i].later.result.status, DAS_OK);
		}
		assert_int_equal(u[0].result, STORE_ERROR);
		assert_int_equal(u[1].result, STORE_OK);
		assert_true(u[1].job.is_undone);
		assert_int_equal(u[2].result, STORE_ERROR);
		for (int i = 0; i < 6; i++) {
			state_of(st, &users[i], 1, seen, sizeof(seen));
			assert_string_equal(seen, want[i]);
		}
		assert_int_equal(store_ledger_read(st, CUST, 0, rows,
						   LEDGER_MAX, &n),
				 STORE_OK);
		assert_int_equal(n, 3);
		for (size_t i = 0; i < n; i++) {
			char user[24];

			snprintf(user, sizeof(user), "w%zu", 2 * i + 2);
			assert_string_equal(rows[i].user, user);
		}
		/* And the store takes writes again. */
		assert_int_equal(device_op(st, "w1", "x1", 2), DAS_OK);
		store_close(st);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_call_fails_once),
		cmocka_unit_test(every_io_fails_once),
		cmocka_unit_test(failed_batch_tells_every_writer),
		cmocka_unit_test(repeat_answers_while_write_lock_held),
		cmocka_unit_test(repeat_never_rests_on_a_lost_batch),
		cmocka_unit_test(handed_writes_answer_later),
		cmocka_unit_test(handed_writes_past_their_deadline_change_nothing),
		cmocka_unit_test(sync_that_hangs_bounds_waiting_writes),
		cmocka_unit_test(failed_job_of_a_turn_undoes_only_itself),
	};

	das_log_set_level(DAS_LOG_ERROR);
	if (!mkdtemp(temp_dir)) {
		perror("mkdtemp");
		return 1;
	}
	atexit(rm_temp_dir);
	if (crash_vfs_register() != SQLITE_OK)
		return 1;
	return cmocka_run_group_tests(tests, reference, NULL);
}
