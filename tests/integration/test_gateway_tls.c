/*
 * The gateway calling the server over mTLS (--upstream-ca, --upstream-cert,
 * --upstream-key, --upstream-server-name), certificates from
 * scripts/dev-ca.sh in the test's temporary directory:
 *  - an assign through the gateway answers 201 and /readyz 200;
 *  - a gateway without a client certificate, or trusting another CA, gets
 *    no answer from the server: 503;
 *  - the gateway's listener over HTTPS (--tls-cert/--tls-key): curl
 *    --cacert gets 201 with an https:// Location; plain HTTP to that port,
 *    a client trusting another CA and TLS 1.1 get nothing; the HTTPS
 *    certificate is renewed and reloaded under HTTPS load without a failed
 *    request, new connections seeing the new certificate; a client that
 *    never starts the handshake is closed by the idle timeout;
 *  - a gateway started with another CA's files answers 200 once the
 *    right files are in place and reloaded (SIGHUP), without a restart;
 *  - the server's and the gateway's certificates are renewed and both
 *    reloaded (SIGHUP) three times while HTTP requests keep coming: every
 *    request answers 200; a gateway reload with a broken key is refused
 *    and the gateway keeps working.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
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
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "client/das_client.h"
#include "harness.h"

#define T "6fa459ea-ee8a-4ca4-894e-db77e160355e"
#define LOAD_THREADS 3

static char ca_dir[512], other_dir[512];
static struct harness_proc server;
static char *token, auth_header[4096];

static void dev_ca(const char *dir)
{
	char cmd[1200];

	snprintf(cmd, sizeof(cmd), "'%s' '%s' 2 >/dev/null", DAS_DEV_CA_SCRIPT,
		 dir);
	harness_sh(cmd);
}

/* Calls that must succeed get a deadline a loaded machine still meets;
 * calls that must fail (no route to the server) a short one. */
static void start_gateway_ms(struct harness_proc *gw, const char *ca,
			     const char *cert, const char *key,
			     const char *timeout_ms)
{
	const char *args[] = {"--upstream", server.addr,
			      "--upstream-timeout-ms", timeout_ms,
			      "--upstream-server-name", "localhost",
			      "--upstream-ca", ca,
			      cert ? "--upstream-cert" : NULL, cert,
			      "--upstream-key", key, NULL};

	assert_int_equal(harness_start(gw, DAS_GATEWAY_BIN, args, NULL), 0);
}

static void start_gateway(struct harness_proc *gw, const char *ca,
			  const char *cert, const char *key)
{
	start_gateway_ms(gw, ca, cert, key, "15000");
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

/* The HTTP status of one request (0 when none came). */
static long http(CURL *curl, const char *method, const char *url,
		 const char *body)
{
	struct curl_slist *h = NULL;
	long status = 0;

	h = curl_slist_append(h, auth_header);
	h = curl_slist_append(h, "Content-Type: application/json");
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	if (!body)
		curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 20000L);
	if (curl_easy_perform(curl) == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	return status;
}

static long http_once(const struct harness_proc *gw, const char *method,
		      const char *path, const char *body)
{
	CURL *curl = curl_easy_init();
	char url[512];
	long status;

	assert_non_null(curl);
	snprintf(url, sizeof(url), "http://%s%s", gw->addr, path);
	status = http(curl, method, url, body);
	curl_easy_cleanup(curl);
	return status;
}

static int setup(void **state)
{
	static const char *const all[] = {"*"};
	struct harness_run_result *r = calloc(1, sizeof(*r));
	char db[512], spec[600], tok_env[4200];

	(void)state;
	assert_non_null(r);
	curl_global_init(CURL_GLOBAL_ALL);
	harness_path("ca", ca_dir, sizeof(ca_dir));
	harness_path("other-ca", other_dir, sizeof(other_dir));
	dev_ca(ca_dir);
	dev_ca(other_dir);
	token = harness_mint("tls-agent", all, 1,
			     "devices:assign directory:admin", 3600);
	snprintf(auth_header, sizeof(auth_header), "Authorization: Bearer %s",
		 token);

	harness_path("gw-tls.db", db, sizeof(db));
	snprintf(spec, sizeof(spec), "sqlite:%s", db);
	const char *args[] = {"--store", spec,
			      "--jwt-hs256-secret-file", harness_secret_file(),
			      "--tls-cert", harness_in(ca_dir, "server.pem"),
			      "--tls-key", harness_in(ca_dir, "server.key"),
			      "--tls-client-ca",
			      harness_in(ca_dir, "ca.pem"), NULL};
	assert_int_equal(harness_start(&server, DAS_SERVER_BIN, args, NULL), 0);

	/* The demo directory, imported with the CLI over mTLS. */
	snprintf(tok_env, sizeof(tok_env), "DAS_TOKEN=%s", token);
	const char *env[] = {tok_env, NULL};
	const char *imp[] = {"--server", server.addr,
			     "--upstream-ca", harness_in(ca_dir, "ca.pem"),
			     "--upstream-cert",
			     harness_in(ca_dir, "client.pem"),
			     "--upstream-key", harness_in(ca_dir, "client.key"),
			     "--upstream-server-name", "localhost",
			     "import", DAS_SOURCE_DIR "/examples/directory.json",
			     NULL};
	assert_int_equal(harness_run(DAS_CLI_BIN, imp, env, 60000, r), 0);
	if (r->status != 0)
		fprintf(stderr, "import: %s\n", r->err);
	assert_int_equal(r->status, 0);
	free(r);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (server.pid)
		harness_stop(&server, SIGTERM);
	free(token);
	curl_global_cleanup();
	return 0;
}

static void gateway_over_mtls_answers_201(void **state)
{
	struct harness_proc gw;

	(void)state;
	start_gateway(&gw, harness_in(ca_dir, "ca.pem"),
		      harness_in(ca_dir, "gateway.pem"),
		      harness_in(ca_dir, "gateway.key"));
	assert_int_equal(http_once(&gw, "PUT",
				   "/v1.0/customers/" T
				   "/users/alice/devices/pbx/alice-desk-01/assign",
				   "{\"clientType\":\"desktop\"}"),
			 201);
	assert_int_equal(http_once(&gw, "GET",
				   "/v1.0/customers/" T
				   "/users/alice/devices/pbx",
				   NULL),
			 200);
	assert_int_equal(http_once(&gw, "GET", "/readyz", NULL), 200);
	assert_int_equal(harness_stop(&gw, SIGTERM), 0);
}

static void gateway_without_the_right_credentials_gets_503(void **state)
{
	struct harness_proc gw;
	const char *list = "/v1.0/customers/" T "/users/alice/devices/pbx";

	(void)state;
	/* No client certificate: the server refuses the handshake. */
	start_gateway_ms(&gw, harness_in(ca_dir, "ca.pem"), NULL, NULL, "3000");
	assert_int_equal(http_once(&gw, "GET", list, NULL), 503);
	assert_int_equal(harness_stop(&gw, SIGTERM), 0);
	/* Another CA: the gateway refuses the server's certificate. */
	start_gateway_ms(&gw, harness_in(other_dir, "ca.pem"),
			 harness_in(other_dir, "gateway.pem"),
			 harness_in(other_dir, "gateway.key"), "3000");
	assert_int_equal(http_once(&gw, "GET", list, NULL), 503);
	assert_int_equal(harness_stop(&gw, SIGTERM), 0);
}

/*
 * SIGHUP makes new upstream connections use the files as they are now: a
 * gateway started with another CA's files answers 503; once the right files
 * are in place and reloaded, it answers 200 without a restart.
 */
static void reload_reaches_new_connections(void **state)
{
	struct harness_proc gw;
	const char *list = "/v1.0/customers/" T "/users/alice/devices/pbx";
	char dir[512], cmd[4096];

	(void)state;
	harness_path("swap", dir, sizeof(dir));
	snprintf(cmd, sizeof(cmd),
		 "mkdir -p '%s' && cp '%s/ca.pem' '%s/gateway.pem' "
		 "'%s/gateway.key' '%s/'",
		 dir, other_dir, other_dir, other_dir, dir);
	harness_sh(cmd);
	start_gateway_ms(&gw, harness_in(dir, "ca.pem"),
			 harness_in(dir, "gateway.pem"),
			 harness_in(dir, "gateway.key"), "3000");
	assert_int_equal(http_once(&gw, "GET", list, NULL), 503);
	snprintf(cmd, sizeof(cmd),
		 "cp '%s/ca.pem' '%s/gateway.pem' '%s/gateway.key' '%s/'",
		 ca_dir, ca_dir, ca_dir, dir);
	harness_sh(cmd);
	assert_int_equal(kill(gw.pid, SIGHUP), 0);
	harness_wait_in_log(&gw, "upstream TLS files reloaded", 1);
	assert_int_equal(http_once(&gw, "GET", list, NULL), 200);
	assert_int_equal(harness_stop(&gw, SIGTERM), 0);
}

struct load {
	const char *url;
	atomic_bool is_stopping;
	atomic_int ok, failed;
};

static void *load_worker(void *arg)
{
	struct load *l = arg;
	CURL *curl = curl_easy_init();
	int n = 0;

	assert_non_null(curl);
	while (!atomic_load(&l->is_stopping)) {
		long status = http(curl, "GET", l->url, NULL);
		if (status == 200) {
			atomic_fetch_add(&l->ok, 1);
		} else {
			atomic_fetch_add(&l->failed, 1);
			fprintf(stderr, "load: HTTP %ld\n", status);
		}
		/* A new HTTP connection now and then as well. */
		if (++n % 20 == 0)
			curl_easy_setopt(curl, CURLOPT_FRESH_CONNECT, 1L);
		else
			curl_easy_setopt(curl, CURLOPT_FRESH_CONNECT, 0L);
	}
	curl_easy_cleanup(curl);
	return NULL;
}

static void renewal_of_both_under_load(void **state)
{
	struct harness_proc gw;
	struct load l;
	pthread_t th[LOAD_THREADS];
	char url[512], cmd[1500];

	(void)state;
	start_gateway(&gw, harness_in(ca_dir, "ca.pem"),
		      harness_in(ca_dir, "gateway.pem"),
		      harness_in(ca_dir, "gateway.key"));
	snprintf(url, sizeof(url),
		 "http://%s/v1.0/customers/" T "/users/alice/devices/pbx",
		 gw.addr);
	memset(&l, 0, sizeof(l));
	l.url = url;
	for (int i = 0; i < LOAD_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, load_worker, &l),
				 0);
	for (int round = 1; round <= 3; round++) {
		usleep(300 * 1000);
		dev_ca(ca_dir);
		assert_int_equal(kill(server.pid, SIGHUP), 0);
		assert_int_equal(kill(gw.pid, SIGHUP), 0);
		harness_wait_in_log(&server, "TLS certificate reloaded", round);
		harness_wait_in_log(&gw, "upstream TLS files reloaded", round);
	}
	usleep(300 * 1000);
	/* A broken key on the gateway: refused, the old channel stays. */
	snprintf(cmd, sizeof(cmd), "echo junk > '%s'",
		 harness_in(ca_dir, "gateway.key"));
	harness_sh(cmd);
	assert_int_equal(kill(gw.pid, SIGHUP), 0);
	harness_wait_in_log(&gw, "upstream TLS kept", 1);
	usleep(300 * 1000);

	atomic_store(&l.is_stopping, true);
	for (int i = 0; i < LOAD_THREADS; i++)
		pthread_join(th[i], NULL);
	fprintf(stderr,
		"gateway renewal under load: %d requests 200, %d other\n",
		atomic_load(&l.ok), atomic_load(&l.failed));
	assert_int_equal(atomic_load(&l.failed), 0);
	assert_true(atomic_load(&l.ok) > 0);
	assert_int_equal(http_once(&gw, "GET", "/readyz", NULL), 200);
	assert_int_equal(harness_stop(&gw, SIGTERM), 0);
	dev_ca(ca_dir);
}

/* ---- HTTPS on the gateway's listener ---------------------------------- */

static void start_https_gateway(struct harness_proc *gw)
{
	const char *args[] = {"--upstream", server.addr,
			      "--upstream-timeout-ms", "15000",
			      "--upstream-server-name", "localhost",
			      "--upstream-ca", harness_in(ca_dir, "ca.pem"),
			      "--upstream-cert",
			      harness_in(ca_dir, "gateway.pem"),
			      "--upstream-key",
			      harness_in(ca_dir, "gateway.key"),
			      "--tls-cert", harness_in(ca_dir, "gateway.pem"),
			      "--tls-key",
			      harness_in(ca_dir, "gateway.key"), NULL};

	assert_int_equal(harness_start(gw, DAS_GATEWAY_BIN, args, NULL), 0);
}

/* A client that connects and never starts the handshake is closed by the
 * idle timeout like any silent connection. */
static void https_silent_handshake_is_closed(void **state)
{
	struct harness_proc gw;
	struct sockaddr_in sa = {.sin_family = AF_INET};
	struct timeval tv = {.tv_sec = 20};
	char byte;
	int fd;

	(void)state;
	const char *args[] = {"--upstream", server.addr,
			      "--connection-timeout", "1",
			      "--tls-cert", harness_in(ca_dir, "gateway.pem"),
			      "--tls-key",
			      harness_in(ca_dir, "gateway.key"), NULL};
	assert_int_equal(harness_start(&gw, DAS_GATEWAY_BIN, args, NULL), 0);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	sa.sin_port = htons((uint16_t)gw.port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	/* 0 = closed by the gateway; -1 would be our 20 s margin running out. */
	assert_int_equal(recv(fd, &byte, 1, 0), 0);
	close(fd);
	assert_int_equal(harness_stop(&gw, SIGTERM), 0);
}

/* Runs curl with args; its stdout (first line) into out. */
static int curl_cli(const char *const *args, char *out, size_t size)
{
	struct harness_run_result *r = calloc(1, sizeof(*r));
	int status;

	assert_non_null(r);
	assert_int_equal(harness_run("/usr/bin/curl", args, NULL, 60000, r), 0);
	size_t n = strcspn(r->out, "\n");
	if (n >= size)
		n = size - 1;
	memcpy(out, r->out, n);
	out[n] = '\0';
	status = r->status;
	free(r);
	return status;
}

static void gateway_over_https_answers_201(void **state)
{
	struct harness_proc gw;
	char url[512], http_url[512], out[600];

	(void)state;
	start_https_gateway(&gw);
	snprintf(url, sizeof(url),
		 "https://localhost:%d/v1.0/customers/" T
		 "/users/bob/devices/pbx/bob-desk-01/assign",
		 gw.port);
	const char *put[] = {"-sS", "-o", "/dev/null",
			     "-w", "%{http_code} %{redirect_url}",
			     "--cacert", harness_in(ca_dir, "ca.pem"),
			     "-X", "PUT", "-H", auth_header,
			     "-H", "Content-Type: application/json",
			     "-d", "{\"clientType\":\"mobile\"}", url, NULL};
	assert_int_equal(curl_cli(put, out, sizeof(out)), 0);
	fprintf(stderr, "curl --cacert: %s\n", out);
	assert_int_equal(strncmp(out, "201 ", 4), 0);
	const char *loc[] = {"-sS", "-o", "/dev/null", "-D", "-",
			     "--cacert", harness_in(ca_dir, "ca.pem"),
			     "-X", "PUT", "-H", auth_header,
			     "-H", "Content-Type: application/json",
			     "-d", "{\"clientType\":\"mobile\"}", url, NULL};
	struct harness_run_result *r = calloc(1, sizeof(*r));
	assert_non_null(r);
	assert_int_equal(harness_run("/usr/bin/curl", loc, NULL, 60000, r), 0);
	assert_non_null(strstr(r->out, "\nLocation: https://localhost:"));
	free(r);

	/* Plain HTTP to the HTTPS port: no HTTP answer. */
	snprintf(http_url, sizeof(http_url), "http://localhost:%d/healthz",
		 gw.port);
	const char *plain[] = {"-sS", "-o", "/dev/null", "-w", "%{http_code}",
			       "--max-time", "5", http_url, NULL};
	assert_int_not_equal(curl_cli(plain, out, sizeof(out)), 0);
	/* Another CA, and TLS 1.1: refused. */
	const char *wrong_ca[] = {"-sS", "-o", "/dev/null", "--cacert",
				  harness_in(other_dir, "ca.pem"), url, NULL};
	assert_int_not_equal(curl_cli(wrong_ca, out, sizeof(out)), 0);
	snprintf(http_url, sizeof(http_url), "https://localhost:%d/healthz",
		 gw.port);
	const char *old_tls[] = {"-sS", "-o", "/dev/null", "--cacert",
				 harness_in(ca_dir, "ca.pem"), "--tlsv1.1",
				 "--tls-max", "1.1", "--ciphers",
				 "DEFAULT@SECLEVEL=0", http_url, NULL};
	assert_int_not_equal(curl_cli(old_tls, out, sizeof(out)), 0);
	const char *tls12[] = {"-sS", "-o", "/dev/null", "-w", "%{http_code}",
			       "--cacert",
			       harness_in(ca_dir, "ca.pem"), "--tlsv1.2",
			       "--tls-max", "1.2", http_url, NULL};
	assert_int_equal(curl_cli(tls12, out, sizeof(out)), 0);
	assert_string_equal(out, "200");
	assert_int_equal(harness_stop(&gw, SIGTERM), 0);
}

/* SHA-256 fingerprint of the certificate a new connection is served. */
static void served_fingerprint(const struct harness_proc *p, char *out,
			       size_t size)
{
	char script[1500];

	snprintf(script, sizeof(script),
		 "openssl s_client -connect 127.0.0.1:%d -servername localhost "
		 "-CAfile '%s' </dev/null 2>/dev/null | "
		 "openssl x509 -noout -fingerprint -sha256",
		 p->port, harness_in(ca_dir, "ca.pem"));
	harness_sh_out(script, out, size);
}

struct https_load {
	const char *url, *ca;
	atomic_bool is_stopping;
	atomic_int ok, failed;
};

static void *https_worker(void *arg)
{
	struct https_load *l = arg;
	CURL *curl = curl_easy_init();
	int n = 0;

	assert_non_null(curl);
	curl_easy_setopt(curl, CURLOPT_CAINFO, l->ca);
	while (!atomic_load(&l->is_stopping)) {
		long status = http(curl, "GET", l->url, NULL);
		if (status == 200) {
			atomic_fetch_add(&l->ok, 1);
		} else {
			atomic_fetch_add(&l->failed, 1);
			fprintf(stderr, "https load: HTTP %ld\n", status);
		}
		/* New TLS connections (handshakes) across the reloads. */
		curl_easy_setopt(curl, CURLOPT_FRESH_CONNECT,
				 ++n % 10 == 0 ? 1L : 0L);
	}
	curl_easy_cleanup(curl);
	return NULL;
}

static void https_renewal_under_load(void **state)
{
	struct harness_proc gw;
	struct https_load l;
	pthread_t th[LOAD_THREADS];
	char url[512], cmd[1500], before[200], served[200];

	(void)state;
	/* The load's own copy of the CA: the files below get renewed. */
	snprintf(cmd, sizeof(cmd), "cp '%s/ca.pem' '%s/https-load-ca.pem'",
		 ca_dir, ca_dir);
	harness_sh(cmd);
	start_https_gateway(&gw);
	served_fingerprint(&gw, before, sizeof(before));
	assert_true(strlen(before) > 10);
	snprintf(url, sizeof(url),
		 "https://localhost:%d/v1.0/customers/" T
		 "/users/alice/devices/pbx",
		 gw.port);
	memset(&l, 0, sizeof(l));
	l.url = url;
	l.ca = harness_in(ca_dir, "https-load-ca.pem");
	for (int i = 0; i < LOAD_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, https_worker, &l),
				 0);
	for (int round = 1; round <= 3; round++) {
		usleep(300 * 1000);
		dev_ca(ca_dir);
		assert_int_equal(kill(gw.pid, SIGHUP), 0);
		harness_wait_in_log(&gw, "HTTPS certificate reloaded", round);
		served_fingerprint(&gw, served, sizeof(served));
		assert_string_not_equal(served, before);
		snprintf(before, sizeof(before), "%s", served);
	}
	/* A broken key: refused, the current certificate stays. */
	snprintf(cmd, sizeof(cmd), "echo junk > '%s'",
		 harness_in(ca_dir, "gateway.key"));
	harness_sh(cmd);
	assert_int_equal(kill(gw.pid, SIGHUP), 0);
	harness_wait_in_log(&gw, "HTTPS certificate kept", 1);
	served_fingerprint(&gw, served, sizeof(served));
	assert_string_equal(served, before);
	usleep(300 * 1000);

	atomic_store(&l.is_stopping, true);
	for (int i = 0; i < LOAD_THREADS; i++)
		pthread_join(th[i], NULL);
	fprintf(stderr,
		"HTTPS renewal under load: %d requests 200, %d other\n",
		atomic_load(&l.ok), atomic_load(&l.failed));
	assert_int_equal(atomic_load(&l.failed), 0);
	assert_true(atomic_load(&l.ok) > 0);
	assert_int_equal(harness_stop(&gw, SIGTERM), 0);
	dev_ca(ca_dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(gateway_over_mtls_answers_201),
		cmocka_unit_test(gateway_without_the_right_credentials_gets_503),
		cmocka_unit_test(reload_reaches_new_connections),
		cmocka_unit_test(renewal_of_both_under_load),
		cmocka_unit_test(gateway_over_https_answers_201),
		cmocka_unit_test(https_renewal_under_load),
		cmocka_unit_test(https_silent_handshake_is_closed),
	};

	return harness_finish(cmocka_run_group_tests(tests, setup, teardown));
}
