/*
 * Integration-test harness: runs the real programs on loopback, in a private
 * temporary directory, and leaves nothing behind.
 *
 * - One temporary directory per test process (harness_tmpdir), removed with
 *   everything in it at exit, and also when the process dies of SIGABRT,
 *   SIGSEGV, SIGTERM or SIGINT (or a sanitizer report): every child still
 *   running is killed first.
 * - Children get PR_SET_PDEATHSIG(SIGKILL), so none outlives the thread that
 *   started it (start programs from the main thread).
 * - Children inherit the environment minus every DAS_* variable (tests are
 *   hermetic), plus the extra entries a test gives.
 * - A server program prints exactly one line
 *   "<program-name> listening on <host>:<port>" on stdout once bound;
 *   harness_start waits for it (HARNESS_START_TIMEOUT_MS) and fills port
 *   and addr. stdout and stderr of a program go to files in the temporary
 *   directory; stderr is dumped to our stderr when a start fails and by
 *   harness_finish when a test failed, so CI logs show why.
 * - harness_finish ends every program still running with SIGTERM (as in
 *   production, so a sanitizer build runs its leak check at exit) and fails
 *   the test when the stderr of any program started or run holds a
 *   sanitizer report (leak, memory error, undefined behaviour).
 *
 * Paths of the programs come from compile definitions: DAS_SERVER_BIN,
 * DAS_GATEWAY_BIN (when the gateway is built), DAS_CLI_BIN.
 *
 * Not thread-safe: call from the test's main thread.
 */
#ifndef DAS_TESTS_HARNESS_H
#define DAS_TESTS_HARNESS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "deviceassignment/v1/device_assignment.pb-c.h"
#include "service/auth/auth.h"

#define HARNESS_START_TIMEOUT_MS 15000
#define HARNESS_STOP_TIMEOUT_MS 15000
#define HARNESS_OUTPUT_MAX (16 * 1024)

/* Exit statuses as harness functions report them. */
#define HARNESS_STATUS_SIGNAL(sig) (128 + (sig)) /* killed by sig */
#define HARNESS_STATUS_TIMEOUT (-1)              /* still running */

struct harness_proc {
	pid_t pid;            /* 0 once reaped */
	int port;             /* the bound port from the listening line */
	char addr[64];        /* "127.0.0.1:PORT" as printed by the program */
	char name[64];        /* basename of the program */
	char log_path[PATH_MAX]; /* its stderr */
	char out_path[PATH_MAX]; /* its stdout */
	int status;           /* exit status once reaped (see above) */
};

/*
 * The per-process temporary directory (created on first use, mode 0700).
 * Never NULL: aborts the test process when it cannot be created.
 */
const char *harness_tmpdir(void);

/*
 * Writes "<tmpdir>/<name>" into buf. Returns buf, or aborts when it does not
 * fit (a test bug).
 */
const char *harness_path(const char *name, char *buf, size_t size);

/*
 * Writes len bytes of data to "<tmpdir>/<name>" (mode 0600), replacing it;
 * the full path goes to path (may be NULL). Returns 0 or -1.
 */
int harness_write_file(const char *name, const void *data, size_t len,
		       char *path, size_t path_size);

/*
 * Starts bin with args (NULL-terminated, without argv[0]; NULL = none) and
 * the inherited environment without DAS_* plus env (NULL-terminated
 * "NAME=value" entries; NULL = none). When args contain no "--listen",
 * "--listen 127.0.0.1:0" is put first. Waits for the listening line.
 * Returns 0 with p filled, or -1 (the child is killed and reaped, its stderr
 * dumped to ours).
 */
int harness_start(struct harness_proc *p, const char *bin,
		  const char *const *args, const char *const *env);

/* Starts bin as harness_start does, without waiting for the listening
 * line (a program held before it listens); p->port stays 0. 0 or -1. */
int harness_spawn(struct harness_proc *p, const char *bin,
		  const char *const *args, const char *const *env);

/* The same with the child's open-files limit (soft and hard) at nofile,
 * as an operator's ulimit or a container's would set it. */
int harness_start_nofile(struct harness_proc *p, const char *bin,
			 const char *const *args, const char *const *env,
			 unsigned nofile);

/*
 * Sends sig and waits up to HARNESS_STOP_TIMEOUT_MS for the exit; when it
 * does not come, kills with SIGKILL and returns HARNESS_STATUS_TIMEOUT.
 * Returns the exit code (0..255) or HARNESS_STATUS_SIGNAL(signal).
 * Returns p->status when the process was already reaped.
 */
int harness_stop(struct harness_proc *p, int sig);

/*
 * Waits up to timeout_ms for p to exit by itself. Returns 0 and sets
 * *status (as harness_stop), or -1 when it is still running.
 */
int harness_wait_exit(struct harness_proc *p, int timeout_ms, int *status);

/* True while the process has not exited (reaps it when it has). */
bool harness_is_alive(struct harness_proc *p);

/* Copies the process's stderr log to our stderr, with a header. */
void harness_dump_log(const struct harness_proc *p);

/* The result of harness_run. */
struct harness_run_result {
	int status;                   /* as harness_stop; TIMEOUT when killed */
	char out[HARNESS_OUTPUT_MAX]; /* stdout, NUL-terminated, truncated */
	char err[HARNESS_OUTPUT_MAX]; /* stderr, NUL-terminated, truncated */
	size_t out_len, err_len;
};

/*
 * Runs bin with args and env (as harness_start, but no --listen is added)
 * to completion, stdin from /dev/null, capturing stdout and stderr. After
 * timeout_ms the program is killed (status HARNESS_STATUS_TIMEOUT).
 * Returns 0 when the program ran, -1 when it could not be started.
 */
int harness_run(const char *bin, const char *const *args,
		const char *const *env, int timeout_ms,
		struct harness_run_result *r);

/*
 * The HS256 secret of this test process, written once to
 * "<tmpdir>/hs256.secret"; returns that path (static storage).
 */
const char *harness_secret_file(void);

/*
 * Claims for sub, tenants (n GUIDs or "*") and scope, issued now, valid
 * for ttl_seconds; the rest zero (no kid, iss, aud).
 */
struct auth_claims harness_claims(const char *sub,
				  const char *const *tenants, size_t n,
				  const char *scope, int64_t ttl_seconds);

/*
 * Mints an HS256 token with the secret of harness_secret_file(): sub,
 * tenants (n GUIDs or "*"), scope, valid from now for ttl_seconds.
 * Returns a malloc'd JWT (free it), or aborts on failure (a test bug).
 */
char *harness_mint(const char *sub, const char *const *tenants, size_t n,
		   const char *scope, int64_t ttl_seconds);

/* The same with full control over the claims (expired, nbf, iss, aud). */
char *harness_mint_claims(const struct auth_claims *claims);

/*
 * For the tests that make files with shell tools (certificates, keys).
 * "<dir>/<name>" in one of 256 rotating buffers: never reused within a
 * run of fewer than 256 calls, so structs may keep these pointers.
 */
const char *harness_in(const char *dir, const char *name);

/* Runs script with /bin/sh -c; fails the test unless it exits 0. */
void harness_sh(const char *script);

/* The first line of script's stdout, into out. */
void harness_sh_out(const char *script, char *out, size_t size);

/* How many lines of the process's stderr log contain needle. */
int harness_count_in_log(const struct harness_proc *p, const char *needle);

/* A "kB" field of /proc/PID/status (VmRSS, VmHWM...), or -1. */
long harness_proc_kib(pid_t pid, const char *field);

/* Waits up to 30 s until count lines of the log contain needle; fails the
 * test if they never do. */
void harness_wait_in_log(const struct harness_proc *p, const char *needle,
			 int count);

/* A ListUserDevices answer as "d1:1 d2:3" (device:type, in its order). */
void harness_devices_text(
	const Deviceassignment__V1__ListUserDevicesResponse *l, char *buf,
	size_t size);

/*
 * Appends n bytes of p to buf (capacity cap, *len used), keeping it
 * NUL-terminated; for curl's write and header callbacks. Returns n, or 0
 * (nothing appended) when it would not fit, which makes curl fail.
 */
size_t harness_append(char *buf, size_t cap, size_t *len, const char *p,
		      size_t n);

/*
 * To be wrapped around the cmocka result in main():
 *     return harness_finish(cmocka_run_group_tests(tests, NULL, NULL));
 * Stops the programs still running with SIGTERM and waits for them; adds
 * one failure per program whose stderr holds a sanitizer report. When
 * failures is then non-zero, dumps the stderr logs of every program started.
 * Returns failures.
 */
int harness_finish(int failures);

#endif
