#include "harness.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

#include "common/config.h"

extern char **environ;

/*
 * Every child we started, kept apart from the callers' harness_proc structs
 * (which may live on a test's stack) so that the exit and signal paths can
 * always find and kill them.
 */
#define MAX_CHILDREN 256

struct child {
	pid_t pid; /* 0 once reaped */
	char name[64];
	char log_path[PATH_MAX]; /* "" for harness_run children */
};

static struct child children[MAX_CHILDREN];
static size_t n_children;
/* harness_run programs whose stderr held a sanitizer report */
static int run_sanitizer_reports;
static char tmpdir[PATH_MAX];
static pid_t tmpdir_owner;
static unsigned run_seq;

static char secret_path[PATH_MAX];
static char secret[65];

static void die(const char *what)
{
	fprintf(stderr, "harness: %s\n", what);
	abort();
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int decode_wait_status(int ws)
{
	if (WIFEXITED(ws))
		return WEXITSTATUS(ws);
	if (WIFSIGNALED(ws))
		return HARNESS_STATUS_SIGNAL(WTERMSIG(ws));
	return HARNESS_STATUS_TIMEOUT;
}

static void forget_child(pid_t pid)
{
	for (size_t i = 0; i < n_children; i++)
		if (children[i].pid == pid)
			children[i].pid = 0;
}

/*
 * Waits up to timeout_ms (0 = just look) for pid. Returns 0 with *status,
 * -1 when it is still running or cannot be waited for.
 */
static int wait_child(pid_t pid, int timeout_ms, int *status)
{
	int64_t deadline = now_ms() + timeout_ms;

	for (;;) {
		int ws;
		pid_t r = waitpid(pid, &ws, WNOHANG);
		if (r == pid) {
			forget_child(pid);
			*status = decode_wait_status(ws);
			return 0;
		}
		if (r < 0 && errno != EINTR) {
			/* Not our child any more: nothing left to wait for. */
			forget_child(pid);
			*status = HARNESS_STATUS_TIMEOUT;
			return -1;
		}
		if (now_ms() >= deadline)
			return -1;
		sleep_ms(5);
	}
}

/* Kills and reaps every child still running (exit and signal paths). */
static void kill_all_children(void)
{
	for (size_t i = 0; i < n_children; i++) {
		pid_t pid = children[i].pid;
		if (pid <= 0)
			continue;
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		children[i].pid = 0;
	}
}

/* Removes everything below the directory open as dfd, then closes dfd. */
static void remove_tree_at(int dfd)
{
	DIR *d = fdopendir(dfd);
	struct dirent *e;

	if (!d) {
		close(dfd);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (unlinkat(dfd, e->d_name, 0) == 0)
			continue;
		int sub = openat(dfd, e->d_name,
				 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0) {
			remove_tree_at(sub);
			unlinkat(dfd, e->d_name, AT_REMOVEDIR);
		}
	}
	closedir(d);
}

static void remove_tmpdir(void)
{
	if (!tmpdir[0] || getpid() != tmpdir_owner)
		return;
	int dfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd >= 0)
		remove_tree_at(dfd);
	rmdir(tmpdir);
	tmpdir[0] = '\0';
}

static void cleanup(void)
{
	if (getpid() != tmpdir_owner)
		return;
	kill_all_children();
	remove_tmpdir();
}

/*
 * A test process dying of a signal still must not leave programs or files
 * behind. Not async-signal-safe in the strict sense (readdir), which is
 * acceptable for a process that is going down anyway.
 */
static void on_fatal_signal(int sig)
{
	cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

#if defined(__SANITIZE_ADDRESS__)
/* Sanitizer reports end the process with _exit: atexit does not run. */
static void on_sanitizer_death(void)
{
	cleanup();
}
#endif

static void install_cleanup(void)
{
	static const int sigs[] = {SIGABRT, SIGSEGV, SIGTERM, SIGINT,
				   SIGHUP, SIGBUS};
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fatal_signal;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	atexit(cleanup);
#if defined(__SANITIZE_ADDRESS__)
	__sanitizer_set_death_callback(on_sanitizer_death);
#endif
}

const char *harness_tmpdir(void)
{
	if (tmpdir[0])
		return tmpdir;
	const char *base = getenv("TMPDIR");
	if (!base || !*base)
		base = "/tmp";
	int n = snprintf(tmpdir, sizeof(tmpdir), "%s/das-it-XXXXXX", base);
	if (n < 0 || (size_t)n >= sizeof(tmpdir) || !mkdtemp(tmpdir)) {
		tmpdir[0] = '\0';
		die("cannot create the temporary directory");
	}
	tmpdir_owner = getpid();
	install_cleanup();
	return tmpdir;
}

const char *harness_path(const char *name, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s/%s", harness_tmpdir(), name);

	if (n < 0 || (size_t)n >= size)
		die("path does not fit");
	return buf;
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int harness_write_file(const char *name, const void *data, size_t len,
		       char *path, size_t path_size)
{
	char full[PATH_MAX];
	int fd, result = -1;

	harness_path(name, full, sizeof(full));
	fd = open(full, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	if (write_all(fd, data, len) == 0)
		result = 0;
	if (close(fd) != 0)
		result = -1;
	if (result == 0 && path) {
		int n = snprintf(path, path_size, "%s", full);
		if (n < 0 || (size_t)n >= path_size)
			result = -1;
	}
	return result;
}

/* The environment without DAS_* plus extra; a malloc'd array of borrowed
 * pointers. */
static char **build_env(const char *const *extra)
{
	size_t n = 0, m = 0;
	char **env;

	for (char **e = environ; e && *e; e++)
		n++;
	for (const char *const *e = extra; e && *e; e++)
		n++;
	env = calloc(n + 1, sizeof(*env));
	if (!env)
		return NULL;
	for (char **e = environ; e && *e; e++)
		if (strncmp(*e, "DAS_", 4) != 0)
			env[m++] = *e;
	for (const char *const *e = extra; e && *e; e++)
		env[m++] = (char *)*e;
	env[m] = NULL;
	return env;
}

static char **build_argv(const char *bin, const char *const *args,
			 bool add_listen)
{
	size_t n = 0, m = 0;
	char **argv;

	for (const char *const *a = args; a && *a; a++) {
		if (strcmp(*a, "--listen") == 0 ||
		    strncmp(*a, "--listen=", 9) == 0)
			add_listen = false;
		n++;
	}
	argv = calloc(n + 4, sizeof(*argv));
	if (!argv)
		return NULL;
	argv[m++] = (char *)bin;
	if (add_listen) {
		argv[m++] = (char *)"--listen";
		argv[m++] = (char *)"127.0.0.1:0";
	}
	for (const char *const *a = args; a && *a; a++)
		argv[m++] = (char *)*a;
	argv[m] = NULL;
	return argv;
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

/*
 * A registry slot: a fresh one, or one of a reaped child without a log
 * (harness_run), so long runs of short programs do not exhaust the table.
 */
static struct child *free_slot(void)
{
	for (size_t i = 0; i < n_children; i++)
		if (children[i].pid == 0 && !children[i].log_path[0])
			return &children[i];
	if (n_children < MAX_CHILDREN)
		return &children[n_children++];
	return NULL;
}

/*
 * fork + execve with stdin from /dev/null and stdout/stderr to the given
 * files. Everything is prepared before fork: the test process may have
 * gRPC threads, so the child does nothing but dup2/prctl/execve.
 */
static pid_t spawn(const char *bin, char **argv, char **envp,
		   const char *out_path, const char *err_path, unsigned nofile)
{
	struct rlimit files = {.rlim_cur = nofile, .rlim_max = nofile};

	int in_fd = -1, out_fd = -1, err_fd = -1;
	pid_t parent = getpid(), pid = -1;
	struct child *slot = free_slot();

	if (!slot) {
		errno = EAGAIN;
		return -1;
	}
	in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	out_fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	err_fd = open(err_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
		      0600);
	if (in_fd < 0 || out_fd < 0 || err_fd < 0)
		goto done;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid == 0) {
		static const char failed[] = "harness: execve failed\n";
		if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 ||
		    dup2(err_fd, 2) < 0)
			_exit(127);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 ||
		    getppid() != parent)
			_exit(127);
		/* execve keeps ignored signals and the mask: start clean, so
		 * the program sees SIGTERM and SIGPIPE as in production. */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		if (nofile && setrlimit(RLIMIT_NOFILE, &files) != 0)
			_exit(127);
		execve(bin, argv, envp);
		(void)!write(2, failed, sizeof(failed) - 1);
		_exit(127);
	}
	if (pid > 0) {
		slot->pid = pid;
		snprintf(slot->name, sizeof(slot->name), "%s", base_name(bin));
		slot->log_path[0] = '\0';
	}
done:
	if (in_fd >= 0)
		close(in_fd);
	if (out_fd >= 0)
		close(out_fd);
	if (err_fd >= 0)
		close(err_fd);
	return pid;
}

static struct child *child_of(pid_t pid)
{
	for (size_t i = 0; i < n_children; i++)
		if (children[i].pid == pid)
			return &children[i];
	return NULL;
}

/* Reads up to size-1 bytes of a file into buf (NUL-terminated). */
static size_t read_file_into(const char *path, char *buf, size_t size)
{
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		while (len + 1 < size) {
			ssize_t r = read(fd, buf + len, size - 1 - len);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			len += (size_t)r;
		}
		close(fd);
	}
	buf[len] = '\0';
	return len;
}

static void dump_file(const char *title, const char *path)
{
	char buf[8192];
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	fprintf(stderr, "----- %s (%s) -----\n", title, path);
	if (fd >= 0) {
		ssize_t r;
		fflush(stderr);
		while ((r = read(fd, buf, sizeof(buf))) > 0 ||
		       (r < 0 && errno == EINTR))
			if (r > 0 && write_all(2, buf, (size_t)r) != 0)
				break;
		close(fd);
	}
	fprintf(stderr, "----- end of %s -----\n", title);
}

void harness_dump_log(const struct harness_proc *p)
{
	char title[96];

	snprintf(title, sizeof(title), "stderr of %s", p->name);
	dump_file(title, p->log_path);
}

/*
 * Looks for the first complete line of text; when it is the listening line
 * of name, fills addr/port and returns 1; returns 0 when no complete line
 * is there yet, -1 when the line is not the expected one.
 */
static int parse_listening(const char *text, const char *name,
			   struct harness_proc *p)
{
	static const char marker[] = " listening on ";
	const char *nl = strchr(text, '\n');
	size_t name_len = strlen(name);

	if (!nl)
		return 0;
	size_t line_len = (size_t)(nl - text);
	if (line_len <= name_len + sizeof(marker) - 1 ||
	    strncmp(text, name, name_len) != 0 ||
	    strncmp(text + name_len, marker, sizeof(marker) - 1) != 0)
		return -1;
	const char *addr = text + name_len + sizeof(marker) - 1;
	size_t addr_len = (size_t)(nl - addr);
	if (addr_len >= sizeof(p->addr))
		return -1;
	memcpy(p->addr, addr, addr_len);
	p->addr[addr_len] = '\0';
	const char *colon = strrchr(p->addr, ':');
	unsigned long port;
	if (!colon || das_parse_uint(colon + 1, 1, 65535, &port) != 0)
		return -1;
	p->port = (int)port;
	return 1;
}

int harness_start(struct harness_proc *p, const char *bin,
		  const char *const *args, const char *const *env)
{
	return harness_start_nofile(p, bin, args, env, 0);
}

/* Starts bin as harness_start does, without waiting; 0 or -1. */
static int start_child(struct harness_proc *p, const char *bin,
		       const char *const *args, const char *const *env,
		       unsigned nofile)
{
	char **argv = NULL, **envp = NULL;
	int result = -1;
	const char *name = base_name(bin);
	unsigned seq = ++run_seq;

	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	{
		char file[128];
		snprintf(file, sizeof(file), "%s-%u.stderr", name, seq);
		harness_path(file, p->log_path, sizeof(p->log_path));
		snprintf(file, sizeof(file), "%s-%u.stdout", name, seq);
		harness_path(file, p->out_path, sizeof(p->out_path));
	}
	argv = build_argv(bin, args, true);
	envp = build_env(env);
	if (!argv || !envp) {
		fprintf(stderr, "harness: out of memory starting %s\n", name);
		goto done;
	}
	p->pid = spawn(bin, argv, envp, p->out_path, p->log_path, nofile);
	if (p->pid <= 0) {
		fprintf(stderr, "harness: cannot start %s: %s\n", bin,
			strerror(errno));
		p->pid = 0;
		goto done;
	}
	struct child *c = child_of(p->pid);
	if (c)
		snprintf(c->log_path, sizeof(c->log_path), "%s", p->log_path);
	result = 0;
done:
	free(argv);
	free(envp);
	return result;
}

int harness_spawn(struct harness_proc *p, const char *bin,
		  const char *const *args, const char *const *env)
{
	return start_child(p, bin, args, env, 0);
}

int harness_start_nofile(struct harness_proc *p, const char *bin,
			 const char *const *args, const char *const *env,
			 unsigned nofile)
{
	const char *name = base_name(bin);
	int result = -1;

	if (start_child(p, bin, args, env, nofile) != 0)
		return -1;
	int64_t deadline = now_ms() + HARNESS_START_TIMEOUT_MS;
	for (;;) {
		char out[1024];
		read_file_into(p->out_path, out, sizeof(out));
		int r = parse_listening(out, name, p);
		if (r > 0) {
			result = 0;
			break;
		}
		if (r < 0) {
			fprintf(stderr,
				"harness: %s printed \"%.*s\" instead of "
				"\"%s listening on HOST:PORT\"\n",
				name, (int)strcspn(out, "\n"), out, name);
			break;
		}
		int status;
		if (wait_child(p->pid, 0, &status) == 0) {
			p->status = status;
			p->pid = 0;
			fprintf(stderr,
				"harness: %s exited with status %d before "
				"listening\n",
				name, status);
			break;
		}
		if (now_ms() >= deadline) {
			fprintf(stderr,
				"harness: %s did not print its listening line "
				"within %d ms\n",
				name, HARNESS_START_TIMEOUT_MS);
			break;
		}
		sleep_ms(10);
	}
	if (result != 0) {
		if (p->pid > 0) {
			kill(p->pid, SIGKILL);
			wait_child(p->pid, HARNESS_STOP_TIMEOUT_MS, &p->status);
			p->pid = 0;
		}
		harness_dump_log(p);
	}
	return result;
}

int harness_wait_exit(struct harness_proc *p, int timeout_ms, int *status)
{
	if (p->pid <= 0) {
		*status = p->status;
		return 0;
	}
	if (wait_child(p->pid, timeout_ms, &p->status) != 0)
		return -1;
	p->pid = 0;
	*status = p->status;
	return 0;
}

bool harness_is_alive(struct harness_proc *p)
{
	int status;

	return harness_wait_exit(p, 0, &status) != 0;
}

int harness_stop(struct harness_proc *p, int sig)
{
	int status;

	if (p->pid <= 0)
		return p->status;
	kill(p->pid, sig);
	if (harness_wait_exit(p, HARNESS_STOP_TIMEOUT_MS, &status) == 0)
		return status;
	fprintf(stderr, "harness: %s did not exit within %d ms of signal %d\n",
		p->name, HARNESS_STOP_TIMEOUT_MS, sig);
	kill(p->pid, SIGKILL);
	wait_child(p->pid, HARNESS_STOP_TIMEOUT_MS, &status);
	p->pid = 0;
	p->status = HARNESS_STATUS_TIMEOUT;
	harness_dump_log(p);
	return HARNESS_STATUS_TIMEOUT;
}

/* Lines a sanitizer prints when it reports (leak, memory error, UB). */
static const char *const sanitizer_markers[] = {
	"ERROR: LeakSanitizer", "ERROR: AddressSanitizer", "runtime error:",
	"SUMMARY: UndefinedBehaviorSanitizer"};

static const char *sanitizer_report_in(const char *text)
{
	for (size_t i = 0;
	     i < sizeof(sanitizer_markers) / sizeof(sanitizer_markers[0]); i++)
		if (strstr(text, sanitizer_markers[i]))
			return sanitizer_markers[i];
	return NULL;
}

int harness_run(const char *bin, const char *const *args,
		const char *const *env, int timeout_ms,
		struct harness_run_result *r)
{
	char out_path[PATH_MAX], err_path[PATH_MAX], file[128];
	char **argv = build_argv(bin, args, false);
	char **envp = build_env(env);
	unsigned seq = ++run_seq;
	int result = -1;
	pid_t pid;

	memset(r, 0, sizeof(*r));
	r->status = HARNESS_STATUS_TIMEOUT;
	snprintf(file, sizeof(file), "run-%u.stdout", seq);
	harness_path(file, out_path, sizeof(out_path));
	snprintf(file, sizeof(file), "run-%u.stderr", seq);
	harness_path(file, err_path, sizeof(err_path));
	if (!argv || !envp)
		goto done;
	pid = spawn(bin, argv, envp, out_path, err_path, 0);
	if (pid <= 0)
		goto done;
	if (wait_child(pid, timeout_ms, &r->status) != 0) {
		fprintf(stderr, "harness: %s did not finish within %d ms\n",
			base_name(bin), timeout_ms);
		kill(pid, SIGKILL);
		int ignored;
		wait_child(pid, HARNESS_STOP_TIMEOUT_MS, &ignored);
		r->status = HARNESS_STATUS_TIMEOUT;
	}
	r->out_len = read_file_into(out_path, r->out, sizeof(r->out));
	r->err_len = read_file_into(err_path, r->err, sizeof(r->err));
	if (sanitizer_report_in(r->err)) {
		fprintf(stderr, "harness: %s printed a sanitizer report:\n%s\n",
			base_name(bin), r->err);
		run_sanitizer_reports++;
	}
	result = 0;
done:
	unlink(out_path);
	unlink(err_path);
	free(argv);
	free(envp);
	return result;
}

const char *harness_secret_file(void)
{
	static const char hexdig[] = "0123456789abcdef";
	unsigned char raw[32];

	if (secret_path[0])
		return secret_path;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, raw, sizeof(raw)) != (ssize_t)sizeof(raw))
		die("cannot read /dev/urandom");
	close(fd);
	for (size_t i = 0; i < sizeof(raw); i++) {
		secret[2 * i] = hexdig[raw[i] >> 4];
		secret[2 * i + 1] = hexdig[raw[i] & 15];
	}
	secret[2 * sizeof(raw)] = '\0';
	if (harness_write_file("hs256.secret", secret, strlen(secret),
			       secret_path, sizeof(secret_path)) != 0) {
		secret_path[0] = '\0';
		die("cannot write the HS256 secret file");
	}
	return secret_path;
}

char *harness_mint_claims(const struct auth_claims *claims)
{
	char err[256];
	char *token;

	harness_secret_file();
	token = auth_mint(AUTH_HS256, (const unsigned char *)secret,
			  strlen(secret), claims, err, sizeof(err));
	if (!token) {
		fprintf(stderr, "harness: auth_mint: %s\n", err);
		abort();
	}
	return token;
}

struct auth_claims harness_claims(const char *sub,
				  const char *const *tenants, size_t n,
				  const char *scope, int64_t ttl_seconds)
{
	int64_t now = (int64_t)time(NULL);
	struct auth_claims claims = {
		.sub = sub,
		.tenants = tenants,
		.n_tenants = n,
		.scope = scope,
		.iat = now,
		.exp = now + ttl_seconds,
	};

	return claims;
}

char *harness_mint(const char *sub, const char *const *tenants, size_t n,
		   const char *scope, int64_t ttl_seconds)
{
	struct auth_claims claims =
		harness_claims(sub, tenants, n, scope, ttl_seconds);

	return harness_mint_claims(&claims);
}

/*
 * Scans the stderr log of every program started for a sanitizer report.
 * Returns how many logs hold one (each is dumped). A log longer than what
 * is read is scanned from its end, where the report of a leak at exit is.
 */
static int count_sanitizer_reports(void)
{
	static char text[256 * 1024];
	int reports = 0;

	for (size_t i = 0; i < n_children; i++) {
		const char *marker;
		struct stat st;
		off_t from = 0;
		size_t len = 0;
		int fd;

		if (!children[i].log_path[0])
			continue;
		fd = open(children[i].log_path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (fstat(fd, &st) == 0 && st.st_size > (off_t)sizeof(text) - 1)
			from = st.st_size - (off_t)(sizeof(text) - 1);
		while (len + 1 < sizeof(text)) {
			ssize_t r = pread(fd, text + len,
					  sizeof(text) - 1 - len,
					  from + (off_t)len);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			len += (size_t)r;
		}
		close(fd);
		text[len] = '\0';
		marker = sanitizer_report_in(text);
		if (marker) {
			char title[96];
			fprintf(stderr, "harness: %s reported \"%s\"\n",
				children[i].name, marker);
			snprintf(title, sizeof(title), "stderr of %s",
				 children[i].name);
			dump_file(title, children[i].log_path);
			reports++;
		}
	}
	return reports;
}

/*
 * Programs still running end as in production, with SIGTERM, so a
 * sanitizer build gets to run its leak check at exit.
 */
static void stop_all_children(void)
{
	for (size_t i = 0; i < n_children; i++) {
		int status;
		if (children[i].pid <= 0)
			continue;
		kill(children[i].pid, SIGTERM);
		if (wait_child(children[i].pid, HARNESS_STOP_TIMEOUT_MS,
			       &status) != 0)
			fprintf(stderr,
				"harness: %s did not exit within %d ms of "
				"SIGTERM\n",
				children[i].name, HARNESS_STOP_TIMEOUT_MS);
	}
}

int harness_finish(int failures)
{
	stop_all_children();
	if (run_sanitizer_reports > 0) {
		fprintf(stderr,
			"harness: %d program run(s) printed a sanitizer "
			"report\n",
			run_sanitizer_reports);
		failures += run_sanitizer_reports;
	}
	failures += count_sanitizer_reports();
	if (failures != 0) {
		for (size_t i = 0; i < n_children; i++) {
			char title[96];
			if (!children[i].log_path[0])
				continue;
			snprintf(title, sizeof(title), "stderr of %s",
				 children[i].name);
			dump_file(title, children[i].log_path);
		}
	}
	kill_all_children();
	return failures;
}

const char *harness_in(const char *dir, const char *name)
{
	static char bufs[256][600];
	static int next;
	char *b = bufs[next++ % 256];

	snprintf(b, sizeof(bufs[0]), "%s/%s", dir, name);
	return b;
}

void harness_sh(const char *script)
{
	struct harness_run_result *r = calloc(1, sizeof(*r));
	const char *args[] = {"-c", script, NULL};

	assert_non_null(r);
	assert_int_equal(harness_run("/bin/sh", args, NULL, 60000, r), 0);
	if (r->status != 0)
		fprintf(stderr, "sh -c '%s': %s\n", script, r->err);
	assert_int_equal(r->status, 0);
	free(r);
}

void harness_sh_out(const char *script, char *out, size_t size)
{
	struct harness_run_result *r = calloc(1, sizeof(*r));
	const char *args[] = {"-c", script, NULL};

	assert_non_null(r);
	assert_int_equal(harness_run("/bin/sh", args, NULL, 60000, r), 0);
	size_t n = strcspn(r->out, "\n");
	if (n >= size)
		n = size - 1;
	memcpy(out, r->out, n);
	out[n] = '\0';
	free(r);
}

long harness_proc_kib(pid_t pid, const char *field)
{
	char path[64], line[256];
	size_t flen = strlen(field);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, flen) == 0 && line[flen] == ':')
			v = strtol(line + flen + 1, NULL, 10);
	fclose(f);
	return v;
}

int harness_count_in_log(const struct harness_proc *p, const char *needle)
{
	FILE *f = fopen(p->log_path, "r");
	char line[2048];
	int n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle))
			n++;
	fclose(f);
	return n;
}

void harness_wait_in_log(const struct harness_proc *p, const char *needle,
			 int count)
{
	for (int i = 0; i < 3000 && harness_count_in_log(p, needle) < count;
	     i++)
		usleep(10 * 1000);
	assert_true(harness_count_in_log(p, needle) >= count);
}

void harness_devices_text(
	const Deviceassignment__V1__ListUserDevicesResponse *l, char *buf,
	size_t size)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < l->n_devices; i++)
		o += (size_t)snprintf(buf + o, size - o, "%s%s:%d",
				      i ? " " : "", l->devices[i]->device_id,
				      l->devices[i]->client_type);
}

size_t harness_append(char *buf, size_t cap, size_t *len, const char *p,
		      size_t n)
{
	if (*len + n >= cap)
		return 0;
	memcpy(buf + *len, p, n);
	*len += n;
	buf[*len] = '\0';
	return n;
}
