/*
 * Why a watchdog process: a test that aborts (a failed assertion under
 * ASan, a ctest timeout's SIGKILL) never reaches its cleanup code, and a
 * forgotten postmaster keeps a port and a directory forever. The watchdog
 * holds the read end of a pipe whose only write end is ours (close-on-exec,
 * so servers we spawn later do not keep it open); EOF means we are gone.
 *
 * Why the settings go into postgresql.conf and not "pg_ctl -o": a restart
 * keeps them, and the port stays the same across pg_ctl restart.
 */
#include "tests/store/pg_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#define PG_DEFAULT_BINDIR "/usr/lib/postgresql/15/bin"
#define PG_TEST_ROLE "das"
#define PG_START_ATTEMPTS 3

static void set_err(char *err, size_t err_size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, err_size, fmt, ap);
	va_end(ap);
}

/* The last non-empty line of a file, for error messages. */
static void last_line(const char *path, char *out, size_t size)
{
	FILE *f = fopen(path, "r");
	char line[512];

	out[0] = '\0';
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		size_t n = strlen(line);

		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n > 0)
			snprintf(out, size, "%s", line);
	}
	fclose(f);
}

/*
 * Runs argv (argv[0] a full path) as the postgres user when we are root
 * (initdb and postgres refuse to run as root), output appended to
 * dir/cmd.log. Returns the exit status, or -1 when it could not run.
 */
static int run_as_postgres(const struct pg_harness *h, char *const argv[])
{
	char log_path[128];
	const char *full[24];
	size_t n = 0;
	pid_t pid;
	int status;
	int fd;

	if (geteuid() == 0) {
		full[n++] = "runuser";
		full[n++] = "-u";
		full[n++] = "postgres";
		full[n++] = "--";
	}
	for (size_t i = 0; argv[i] && n < 23; i++)
		full[n++] = argv[i];
	full[n] = NULL;

	snprintf(log_path, sizeof(log_path), "%s/cmd.log", h->dir);
	fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		close(fd);
		return -1;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);

		if (devnull >= 0)
			dup2(devnull, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		/* The server must not die with our process group. */
		setpgid(0, 0);
		execvp(full[0], (char *const *)full);
		_exit(127);
	}
	close(fd);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (!WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static void pg_ctl_stop(const struct pg_harness *h)
{
	char pg_ctl[256];
	char data[96];
	char *argv[] = {pg_ctl, "stop", "-m", "immediate", "-D", data, NULL};

	snprintf(pg_ctl, sizeof(pg_ctl), "%s/pg_ctl", h->bindir);
	snprintf(data, sizeof(data), "%s/data", h->dir);
	run_as_postgres(h, argv);
}

static void remove_dir(const char *dir)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return;
	if (pid == 0) {
		execlp("rm", "rm", "-rf", "--", dir, (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
}

/* The watchdog: wait for EOF on fd, then stop the server and clean up. */
static void watchdog_main(const struct pg_harness *h, int fd)
{
	char c;

	setpgid(0, 0);
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	for (;;) {
		ssize_t n = read(fd, &c, 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
	}
	pg_ctl_stop(h);
	remove_dir(h->dir);
	_exit(0);
}

static int free_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int port = -1;

	if (fd < 0)
		return -1;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* Appends our settings; later lines win, so a retry may append again. */
static int write_conf(const struct pg_harness *h)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/data/postgresql.conf", h->dir);
	f = fopen(path, "a");
	if (!f)
		return -1;
	fprintf(f,
		"\n# set by the test harness\n"
		"listen_addresses = '127.0.0.1'\n"
		"port = %d\n"
		"unix_socket_directories = '%s'\n"
		"fsync = on\n"
		"synchronous_commit = on\n"
		"max_connections = 100\n"
		"shared_buffers = 16MB\n"
		"log_min_messages = warning\n",
		h->port, h->dir);
	return fclose(f) == 0 ? 0 : -1;
}

/* verb: "start", or "restart" (fast shutdown first). */
static int pg_ctl_start(const struct pg_harness *h, const char *verb)
{
	char pg_ctl[256];
	char data[96];
	char log[96];
	char *start_argv[] = {pg_ctl, "start", "-w", "-t", "60", "-D", data,
			      "-l", log, NULL};
	char *restart_argv[] = {pg_ctl, "restart", "-w", "-t", "60", "-m",
				"fast", "-D", data, "-l", log, NULL};

	snprintf(pg_ctl, sizeof(pg_ctl), "%s/pg_ctl", h->bindir);
	snprintf(data, sizeof(data), "%s/data", h->dir);
	snprintf(log, sizeof(log), "%s/server.log", h->dir);
	return run_as_postgres(h, strcmp(verb, "restart") == 0 ? restart_argv
							       : start_argv);
}

static void describe_failure(const struct pg_harness *h, const char *what,
			     char *err, size_t err_size)
{
	char path[128];
	char line[400];

	snprintf(path, sizeof(path), "%s/server.log", h->dir);
	last_line(path, line, sizeof(line));
	if (line[0] == '\0') {
		snprintf(path, sizeof(path), "%s/cmd.log", h->dir);
		last_line(path, line, sizeof(line));
	}
	set_err(err, err_size, "%s failed: %s", what,
		line[0] ? line : "(no output)");
}

int pg_harness_start(struct pg_harness *h, char *err, size_t err_size)
{
	const char *env = getenv("DAS_TEST_PG_BINDIR");
	char initdb[256];
	char data[96];
	char *initdb_argv[] = {initdb, "-D", data, "-A", "trust", "-U",
			       PG_TEST_ROLE, "-E", "UTF8", "--locale=C",
			       "--no-sync", NULL};
	struct passwd *pw = NULL;
	int fds[2];
	int rc;

	memset(h, 0, sizeof(*h));
	h->watchdog_fd = -1;
	snprintf(h->bindir, sizeof(h->bindir), "%s",
		 env && env[0] ? env : PG_DEFAULT_BINDIR);
	snprintf(initdb, sizeof(initdb), "%s/initdb", h->bindir);
	if (access(initdb, X_OK) != 0) {
		set_err(err, err_size,
			"PostgreSQL server binaries not found (%s missing); "
			"install postgresql-15 (make deps) or set "
			"DAS_TEST_PG_BINDIR",
			initdb);
		return -1;
	}
	if (geteuid() == 0) {
		pw = getpwnam("postgres");
		if (!pw) {
			set_err(err, err_size,
				"running as root but there is no 'postgres' "
				"user to run the server as");
			return -1;
		}
	}

	snprintf(h->dir, sizeof(h->dir), "/tmp/das-pg-XXXXXX");
	if (!mkdtemp(h->dir)) {
		set_err(err, err_size, "mkdtemp: %s", strerror(errno));
		return -1;
	}
	if (pw && chown(h->dir, pw->pw_uid, pw->pw_gid) != 0) {
		set_err(err, err_size, "chown %s: %s", h->dir, strerror(errno));
		rmdir(h->dir);
		return -1;
	}
	/* cmd.log is written by us and by postgres-owned children. */
	{
		char log_path[128];
		int fd;

		snprintf(log_path, sizeof(log_path), "%s/cmd.log", h->dir);
		fd = open(log_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
		if (fd >= 0) {
			if (pw && fchown(fd, pw->pw_uid, pw->pw_gid) != 0)
				(void)0; /* root can still append to it */
			close(fd);
		}
	}

	if (pipe(fds) != 0 || fcntl(fds[1], F_SETFD, FD_CLOEXEC) != 0) {
		set_err(err, err_size, "pipe: %s", strerror(errno));
		remove_dir(h->dir);
		return -1;
	}
	h->watchdog = fork();
	if (h->watchdog < 0) {
		set_err(err, err_size, "fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		remove_dir(h->dir);
		return -1;
	}
	if (h->watchdog == 0) {
		close(fds[1]);
		watchdog_main(h, fds[0]);
	}
	close(fds[0]);
	h->watchdog_fd = fds[1];

	snprintf(data, sizeof(data), "%s/data", h->dir);
	rc = run_as_postgres(h, initdb_argv);
	if (rc != 0) {
		describe_failure(h, "initdb", err, err_size);
		goto fail;
	}
	for (int attempt = 0; attempt < PG_START_ATTEMPTS; attempt++) {
		h->port = free_port();
		if (h->port <= 0) {
			set_err(err, err_size, "no free port on 127.0.0.1");
			goto fail;
		}
		if (write_conf(h) != 0) {
			set_err(err, err_size, "cannot write postgresql.conf");
			goto fail;
		}
		rc = pg_ctl_start(h, "start");
		if (rc == 0)
			return 0;
	}
	describe_failure(h, "pg_ctl start", err, err_size);
fail:
	pg_harness_stop(h);
	return -1;
}

void pg_harness_admin_uri(const struct pg_harness *h, char *uri,
			  size_t uri_size)
{
	snprintf(uri, uri_size, "postgresql://%s@127.0.0.1:%d/postgres",
		 PG_TEST_ROLE, h->port);
}

int pg_harness_create_db(struct pg_harness *h, char *uri, size_t uri_size,
			 char *err, size_t err_size)
{
	char admin[PG_HARNESS_URI_SIZE];
	char sql[64];
	char name[32];
	PGconn *conn;
	PGresult *res;
	int rc = -1;

	pg_harness_admin_uri(h, admin, sizeof(admin));
	conn = PQconnectdb(admin);
	if (PQstatus(conn) != CONNECTION_OK) {
		set_err(err, err_size, "connect %s: %s", admin,
			PQerrorMessage(conn));
		goto out;
	}
	/* The name is ours (a counter), never input. */
	snprintf(name, sizeof(name), "das_test_%u", h->next_db++);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		set_err(err, err_size, "%s: %s", sql, PQerrorMessage(conn));
		PQclear(res);
		goto out;
	}
	PQclear(res);
	snprintf(uri, uri_size, "postgresql://%s@127.0.0.1:%d/%s",
		 PG_TEST_ROLE, h->port, name);
	rc = 0;
out:
	PQfinish(conn);
	return rc;
}

int pg_harness_restart(struct pg_harness *h, char *err, size_t err_size)
{
	if (pg_ctl_start(h, "restart") != 0) {
		describe_failure(h, "pg_ctl restart", err, err_size);
		return -1;
	}
	return 0;
}

void pg_harness_stop(struct pg_harness *h)
{
	int status;

	if (h->watchdog_fd >= 0) {
		close(h->watchdog_fd);
		h->watchdog_fd = -1;
	}
	if (h->watchdog > 0) {
		while (waitpid(h->watchdog, &status, 0) < 0 && errno == EINTR)
			;
		h->watchdog = 0;
	}
}
