/*
 * A private PostgreSQL server for tests: initdb + pg_ctl in a fresh temp
 * directory, listening only on 127.0.0.1 on a free port (plus a Unix socket
 * in the same directory), trust authentication for the test role.
 *
 * Cleanup does not depend on the test ending well: pg_harness_start forks a
 * small watchdog process that waits for the test process to go away (normal
 * exit, abort, SIGKILL) and then stops the server with "pg_ctl stop -m
 * immediate" and removes the directory. pg_harness_stop asks the watchdog to
 * do that now and waits for it.
 *
 * Needs the PostgreSQL server binaries (default /usr/lib/postgresql/15/bin,
 * or $DAS_TEST_PG_BINDIR). When they are missing, start fails with a message
 * that says so: the tests fail rather than skip.
 *
 * Call pg_harness_start before the test creates threads (it forks).
 */
#ifndef DAS_TESTS_PG_HARNESS_H
#define DAS_TESTS_PG_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

#define PG_HARNESS_URI_SIZE 256

struct pg_harness {
	char dir[64];      /* the temp dir: data/, log, socket */
	char bindir[200];  /* PostgreSQL server binaries */
	int port;          /* 127.0.0.1 TCP port */
	pid_t watchdog;    /* cleans up when we exit */
	int watchdog_fd;   /* write end: closing it triggers the cleanup */
	unsigned next_db;  /* counter for pg_harness_create_db names */
};

/*
 * Creates the cluster and starts the server. Returns 0, or -1 with a
 * one-line reason in err (nothing left behind).
 */
int pg_harness_start(struct pg_harness *h, char *err, size_t err_size);

/*
 * Creates a new empty database with a unique name and writes its URI
 * ("postgresql://das@127.0.0.1:PORT/NAME") to uri. Returns 0 or -1 (err).
 */
int pg_harness_create_db(struct pg_harness *h, char *uri, size_t uri_size,
			 char *err, size_t err_size);

/* The URI of the maintenance database "postgres". */
void pg_harness_admin_uri(const struct pg_harness *h, char *uri,
			  size_t uri_size);

/*
 * Restarts the server (pg_ctl restart -m fast) on the same port: every
 * client connection is cut. Returns 0 or -1 (err).
 */
int pg_harness_restart(struct pg_harness *h, char *err, size_t err_size);

/* Stops the server and removes the directory; safe to call twice. */
void pg_harness_stop(struct pg_harness *h);

#endif
