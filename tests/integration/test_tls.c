/*
 * gRPC over TLS and mTLS, end to end, with certificates made by
 * scripts/dev-ca.sh (openssl) in the test's temporary directory:
 *  - a client trusting the right CA succeeds; plaintext to the TLS port,
 *    a client trusting another CA, and a wrong server name all fail;
 *  - with --tls-client-ca, a client without a certificate or with one from
 *    another CA fails, one with a certificate of the CA succeeds (library
 *    and CLI flags);
 *  - the certificate is renewed and reloaded (SIGHUP) three times while
 *    four threads keep calling, opening new connections as they go: not
 *    one call fails, and new connections get the new certificate;
 *  - a reload with a key that does not match keeps the old certificate.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "grpc/health/v1/health.pb-c.h"

#include "client/das_client.h"
#include "harness.h"

#define SHORT_MS 3000 /* calls expected to fail: they fail at least this late */
#define CALL_MS 20000
#define LOAD_THREADS 4

static char ca_dir[512], other_dir[512];

static void dev_ca(const char *dir)
{
	char cmd[1200];

	snprintf(cmd, sizeof(cmd), "'%s' '%s' 2 >/dev/null", DAS_DEV_CA_SCRIPT,
		 dir);
	harness_sh(cmd);
}

static void start_server(struct harness_proc *p, const char *name,
			 bool is_mtls)
{
	char db[512], spec[600];

	harness_path(name, db, sizeof(db));
	snprintf(spec, sizeof(spec), "sqlite:%s", db);
	const char *args[] = {"--store", spec,
			      "--jwt-hs256-secret-file", harness_secret_file(),
			      "--tls-cert", harness_in(ca_dir, "server.pem"),
			      "--tls-key", harness_in(ca_dir, "server.key"),
			      is_mtls ? "--tls-client-ca" : NULL,
			      harness_in(ca_dir, "ca.pem"), NULL};
	assert_int_equal(harness_start(p, DAS_SERVER_BIN, args, NULL), 0);
}

/* Health/Check's status code through client c within ms. */
static int health(struct das_client *c, int ms)
{
	Grpc__Health__V1__HealthCheckRequest req =
		GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	struct das_call_status st;

	assert_int_equal(das_client_call(c, DAS_RPC_HEALTH_CHECK, NULL,
					 &req.base, &resp, ms, &st),
			 0);
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return st.code;
}

/* One call on a new client; -100 when the client cannot be made. */
static int health_with(const char *addr, const struct das_client_tls *tls,
		       int ms)
{
	char err[512];
	struct das_client *c = das_client_new_tls(addr, tls, err, sizeof(err));
	int code;

	if (!c) {
		fprintf(stderr, "client: %s\n", err);
		return -100;
	}
	code = health(c, ms);
	das_client_free(c);
	return code;
}

static int setup(void **state)
{
	(void)state;
	harness_path("ca", ca_dir, sizeof(ca_dir));
	harness_path("other-ca", other_dir, sizeof(other_dir));
	dev_ca(ca_dir);
	dev_ca(other_dir);
	return 0;
}

static void tls_right_ca_succeeds_others_fail(void **state)
{
	struct harness_proc srv;
	struct das_client_tls ok = {.ca_file = harness_in(ca_dir, "ca.pem")};
	struct das_client_tls named = {.ca_file = harness_in(ca_dir, "ca.pem"),
				       .server_name = "localhost"};
	struct das_client_tls wrong_ca = {
		.ca_file = harness_in(other_dir, "ca.pem")};
	struct das_client_tls wrong_name = {
		.ca_file = harness_in(ca_dir, "ca.pem"),
		.server_name = "evil.example"};

	(void)state;
	start_server(&srv, "tls.db", false);
	assert_int_equal(health_with(srv.addr, &ok, CALL_MS), 0);
	assert_int_equal(health_with(srv.addr, &named, CALL_MS), 0);
	/* Plaintext HTTP/2 to the TLS port never gets an answer. */
	assert_int_not_equal(health_with(srv.addr, NULL, SHORT_MS), 0);
	assert_int_not_equal(health_with(srv.addr, &wrong_ca, SHORT_MS), 0);
	assert_int_not_equal(health_with(srv.addr, &wrong_name, SHORT_MS), 0);
	/* A client certificate the server did not ask for changes nothing. */
	struct das_client_tls with_cert = ok;
	with_cert.cert_file = harness_in(ca_dir, "client.pem");
	with_cert.key_file = harness_in(ca_dir, "client.key");
	assert_int_equal(health_with(srv.addr, &with_cert, CALL_MS), 0);

	/* TLS 1.2 and 1.3 only (the client side allows 1.1 here, so the
	 * refusal is the server's); TLS 1.2 with an ECDHE AEAD suite. */
	char cmd[1500], out[300];
	snprintf(cmd, sizeof(cmd),
		 "openssl s_client -connect %s -tls1_1 "
		 "-cipher DEFAULT@SECLEVEL=0 -alpn h2 -CAfile '%s' "
		 "</dev/null >/dev/null 2>&1 && echo accepted || echo refused",
		 srv.addr, ok.ca_file);
	harness_sh_out(cmd, out, sizeof(out));
	assert_string_equal(out, "refused");
	snprintf(cmd, sizeof(cmd),
		 "openssl s_client -connect %s -tls1_2 -alpn h2 -CAfile '%s' "
		 "-verify_return_error </dev/null 2>/dev/null | "
		 "sed -n 's/^ *Cipher *: *//p' | head -n 1",
		 srv.addr, ok.ca_file);
	harness_sh_out(cmd, out, sizeof(out));
	fprintf(stderr, "TLS 1.2 cipher: %s\n", out);
	assert_non_null(strstr(out, "ECDHE-"));
	assert_non_null(strstr(out, "GCM"));
	assert_int_equal(harness_stop(&srv, SIGTERM), 0);
}

static void mtls_requires_a_client_certificate_of_the_ca(void **state)
{
	struct harness_proc srv;
	struct das_client_tls no_cert = {
		.ca_file = harness_in(ca_dir, "ca.pem")};
	struct das_client_tls other = {
		.ca_file = harness_in(ca_dir, "ca.pem"),
		.cert_file = harness_in(other_dir, "client.pem"),
		.key_file = harness_in(other_dir, "client.key"),
	};
	struct das_client_tls good = {
		.ca_file = harness_in(ca_dir, "ca.pem"),
		.cert_file = harness_in(ca_dir, "client.pem"),
		.key_file = harness_in(ca_dir, "client.key"),
	};
	struct das_client_tls gateway = {
		.ca_file = harness_in(ca_dir, "ca.pem"),
		.cert_file = harness_in(ca_dir, "gateway.pem"),
		.key_file = harness_in(ca_dir, "gateway.key"),
	};
	struct harness_run_result *r = calloc(1, sizeof(*r));

	(void)state;
	assert_non_null(r);
	start_server(&srv, "mtls.db", true);
	assert_int_not_equal(health_with(srv.addr, &no_cert, SHORT_MS), 0);
	assert_int_not_equal(health_with(srv.addr, &other, SHORT_MS), 0);
	assert_int_not_equal(health_with(srv.addr, NULL, SHORT_MS), 0);
	assert_int_equal(health_with(srv.addr, &good, CALL_MS), 0);
	assert_int_equal(health_with(srv.addr, &gateway, CALL_MS), 0);

	/* The CLI's flags: the same outcome. */
	const char *cli_ok[] = {"--server", srv.addr,
				"--upstream-ca", good.ca_file,
				"--upstream-cert", good.cert_file,
				"--upstream-key", good.key_file,
				"health", NULL};
	assert_int_equal(harness_run(DAS_CLI_BIN, cli_ok, NULL, 60000, r), 0);
	if (r->status != 0)
		fprintf(stderr, "cli: %s\n", r->err);
	assert_int_equal(r->status, 0);
	const char *cli_env[] = {"DAS_UPSTREAM_CA=", NULL, NULL};
	char ca_env[700];
	snprintf(ca_env, sizeof(ca_env), "DAS_UPSTREAM_CA=%s", good.ca_file);
	cli_env[0] = ca_env;
	const char *cli_no_cert[] = {"--server", srv.addr, "--timeout-ms",
				     "3000", "health", NULL};
	assert_int_equal(harness_run(DAS_CLI_BIN, cli_no_cert, cli_env, 60000,
				     r),
			 0);
	assert_int_equal(r->status, 1);
	/* A key that is not the certificate's is refused before any call. */
	const char *cli_bad_pair[] = {"--server", srv.addr,
				      "--upstream-ca", good.ca_file,
				      "--upstream-cert", good.cert_file,
				      "--upstream-key",
				      harness_in(ca_dir, "server.key"),
				      "health", NULL};
	assert_int_equal(harness_run(DAS_CLI_BIN, cli_bad_pair, NULL, 60000,
				     r),
			 0);
	assert_int_equal(r->status, 1);
	assert_non_null(strstr(r->err, "does not belong"));
	free(r);
	assert_int_equal(harness_stop(&srv, SIGTERM), 0);
}

/* ---- renewal under load ------------------------------------------------ */

struct load {
	const char *addr;
	const struct das_client_tls *tls;
	atomic_bool is_stopping;
	atomic_int ok, failed;
};

/* Calls until told to stop, on a new connection every 5 calls. */
static void *load_worker(void *arg)
{
	struct load *l = arg;
	char err[512];

	while (!atomic_load(&l->is_stopping)) {
		struct das_client *c =
			das_client_new_tls(l->addr, l->tls, err, sizeof(err));
		if (!c) {
			atomic_fetch_add(&l->failed, 1);
			fprintf(stderr, "load: no client: %s\n", err);
			continue;
		}
		for (int i = 0; i < 5 && !atomic_load(&l->is_stopping); i++) {
			int code = health(c, CALL_MS);
			if (code == 0) {
				atomic_fetch_add(&l->ok, 1);
			} else {
				atomic_fetch_add(&l->failed, 1);
				fprintf(stderr, "load: call failed: %d\n",
					code);
			}
		}
		das_client_free(c);
	}
	return NULL;
}

/* SHA-256 fingerprint of the certificate a new connection is served. */
static void served_fingerprint(const struct harness_proc *p, char *out,
			       size_t size)
{
	char cmd[1500];

	snprintf(cmd, sizeof(cmd),
		 "openssl s_client -connect %s -servername localhost "
		 "-alpn h2 -CAfile '%s' </dev/null 2>/dev/null | "
		 "openssl x509 -noout -fingerprint -sha256",
		 p->addr, harness_in(ca_dir, "ca.pem"));
	harness_sh_out(cmd, out, size);
}

static void file_fingerprint(const char *path, char *out, size_t size)
{
	char cmd[1000];

	snprintf(cmd, sizeof(cmd),
		 "openssl x509 -in '%s' -noout -fingerprint -sha256", path);
	harness_sh_out(cmd, out, size);
}

static void renewal_under_load_loses_no_call(void **state)
{
	struct harness_proc srv;
	/* The callers' own files stay put while the server's are renewed
	 * (the script renews the client pair too). */
	struct das_client_tls tls = {
		.ca_file = harness_in(ca_dir, "load-ca.pem"),
		.cert_file = harness_in(ca_dir, "load-client.pem"),
		.key_file = harness_in(ca_dir, "load-client.key"),
	};
	struct load l = {.tls = &tls};
	pthread_t threads[LOAD_THREADS];
	char served[200], file[200], before[200], cmd[1500];

	(void)state;
	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && cp ca.pem load-ca.pem && cp client.pem "
		 "load-client.pem && cp client.key load-client.key",
		 ca_dir);
	harness_sh(cmd);
	start_server(&srv, "renew.db", true);
	l.addr = srv.addr;
	served_fingerprint(&srv, before, sizeof(before));
	file_fingerprint(harness_in(ca_dir, "server.pem"), file,
			 sizeof(file));
	assert_string_equal(before, file);

	for (int i = 0; i < LOAD_THREADS; i++)
		assert_int_equal(pthread_create(&threads[i], NULL, load_worker,
						&l),
				 0);
	for (int round = 1; round <= 3; round++) {
		usleep(300 * 1000);
		dev_ca(ca_dir); /* same CA, new server/gateway/client certs */
		assert_int_equal(kill(srv.pid, SIGHUP), 0);
		harness_wait_in_log(&srv, "TLS certificate reloaded", round);
		usleep(200 * 1000);
		served_fingerprint(&srv, served, sizeof(served));
		file_fingerprint(harness_in(ca_dir, "server.pem"), file,
			 sizeof(file));
		assert_string_equal(served, file);
		assert_string_not_equal(served, before);
		snprintf(before, sizeof(before), "%s", served);
	}

	/* A renewal gone wrong: a key that is not the certificate's. */
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'",
		 harness_in(ca_dir, "client.key"),
		 harness_in(ca_dir, "server.key"));
	harness_sh(cmd);
	assert_int_equal(kill(srv.pid, SIGHUP), 0);
	harness_wait_in_log(&srv, "TLS certificate kept", 1);
	usleep(300 * 1000);
	served_fingerprint(&srv, served, sizeof(served));
	assert_string_equal(served, before);

	atomic_store(&l.is_stopping, true);
	for (int i = 0; i < LOAD_THREADS; i++)
		pthread_join(threads[i], NULL);
	fprintf(stderr,
		"renewal under load: %d calls ok, %d failed, 3 reloads + 1 "
		"refused\n",
		atomic_load(&l.ok), atomic_load(&l.failed));
	assert_int_equal(atomic_load(&l.failed), 0);
	assert_true(atomic_load(&l.ok) > 0);
	/* New connections still work with the kept certificate. */
	assert_int_equal(health_with(srv.addr, &tls, CALL_MS), 0);
	assert_int_equal(harness_stop(&srv, SIGTERM), 0);
	dev_ca(ca_dir); /* a matching pair again for later tests */
}

/* A server that is not on loopback and has no TLS says so at start. */
static void plaintext_off_loopback_warns(void **state)
{
	struct harness_proc srv;
	char db[512], spec[600];

	(void)state;
	harness_path("warn.db", db, sizeof(db));
	snprintf(spec, sizeof(spec), "sqlite:%s", db);
	/* 0.0.0.0 is what a container listens on; the test stops it at once. */
	const char *args[] = {"--listen", "0.0.0.0:0", "--store", spec,
			      "--jwt-hs256-secret-file", harness_secret_file(),
			      NULL};
	assert_int_equal(harness_start(&srv, DAS_SERVER_BIN, args, NULL), 0);
	assert_int_equal(harness_stop(&srv, SIGTERM), 0);
	assert_int_equal(harness_count_in_log(&srv, "without TLS"), 1);

	const char *lo[] = {"--store", spec, "--jwt-hs256-secret-file",
			    harness_secret_file(), NULL};
	assert_int_equal(harness_start(&srv, DAS_SERVER_BIN, lo, NULL), 0);
	assert_int_equal(harness_stop(&srv, SIGTERM), 0);
	assert_int_equal(harness_count_in_log(&srv, "without TLS"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tls_right_ca_succeeds_others_fail),
		cmocka_unit_test(mtls_requires_a_client_certificate_of_the_ca),
		cmocka_unit_test(renewal_under_load_loses_no_call),
		cmocka_unit_test(plaintext_off_loopback_warns),
	};

	return harness_finish(cmocka_run_group_tests(tests, setup, NULL));
}
