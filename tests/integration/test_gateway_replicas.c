/*
 * One gateway in front of two server replicas (--upstream IP:PORT,IP:PORT,
 * round-robin by turn of the gateway's loop): calls one at a time and
 * calls in bursts reach both replicas, and when one is killed the other
 * keeps answering with no acknowledged change lost; a replica that hangs
 * is found out by a PING and skipped while the other serves; a call to
 * the only server, hung, is a 504 at its deadline; no server at all is a
 * fast 503 without wait-for-ready. The
 * replicas share one SQLite file here (--sqlite-exclusive false) so the
 * test needs no database server; the PostgreSQL form of the same setup is
 * in test_replicas.c.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "deviceassignment/v1/directory.pb-c.h"

#include "client/das_client.h"
#include "harness.h"

#define CUST "0f8fad5b-d9cb-469f-a165-70867728950e"
#define TIMEOUT_MS 10000
#define USERS 8

static struct harness_proc servers[2], gateway;
static char *token;

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

/* One HTTP request to the gateway; returns the status (0 on failure). */
static long http(const char *method, const char *path, const char *bearer,
		 const char *body)
{
	CURL *c = curl_easy_init();
	struct curl_slist *hl = NULL;
	char url[512], auth[2048];
	long status = 0;

	assert_non_null(c);
	snprintf(url, sizeof(url), "http://%s%s", gateway.addr, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	hl = curl_slist_append(hl, "Content-Type: application/json");
	if (bearer) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", bearer);
		hl = curl_slist_append(hl, auth);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	return status;
}

static void import_directory(const char *addr)
{
	static const char *const all[] = {"*"};
	static char *roles[] = {(char *)"customer_user_uc",
				(char *)"customer_user_uc_softphone"};
	char *admin = harness_mint("admin", all, 1, "directory:admin", 3600);
	struct das_client *c = das_client_new(addr);
	struct das_call_status st;
	ProtobufCMessage *resp = NULL;
	char user[16], device[16];

	assert_non_null(c);
	Deviceassignment__V1__UpsertCustomerRequest cr =
		DEVICEASSIGNMENT__V1__UPSERT_CUSTOMER_REQUEST__INIT;
	cr.tenant_id = (char *)CUST;
	assert_int_equal(das_client_call(c, DAS_RPC_UPSERT_CUSTOMER, admin,
					 &cr.base, &resp, TIMEOUT_MS, &st),
			 0);
	assert_int_equal(st.code, 0);
	protobuf_c_message_free_unpacked(resp, NULL);
	for (int i = 0; i < USERS; i++) {
		snprintf(user, sizeof(user), "u%d", i);
		snprintf(device, sizeof(device), "d%d", i);
		Deviceassignment__V1__UpsertUserRequest ur =
			DEVICEASSIGNMENT__V1__UPSERT_USER_REQUEST__INIT;
		ur.tenant_id = (char *)CUST;
		ur.user_id = user;
		ur.n_roles = 2;
		ur.roles = roles;
		das_client_call(c, DAS_RPC_UPSERT_USER, admin, &ur.base, &resp,
				TIMEOUT_MS, &st);
		assert_int_equal(st.code, 0);
		protobuf_c_message_free_unpacked(resp, NULL);
		Deviceassignment__V1__UpsertPbxDeviceRequest dr =
			DEVICEASSIGNMENT__V1__UPSERT_PBX_DEVICE_REQUEST__INIT;
		dr.tenant_id = (char *)CUST;
		dr.device_id = device;
		dr.owner_user_id = user;
		das_client_call(c, DAS_RPC_UPSERT_PBX_DEVICE, admin, &dr.base,
				&resp, TIMEOUT_MS, &st);
		assert_int_equal(st.code, 0);
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	das_client_free(c);
	free(admin);
}

/* Lines of a replica's log that record a refused (unauthenticated) call. */
static int refused_calls(const struct harness_proc *p)
{
	FILE *f = fopen(p->log_path, "r");
	char line[1024];
	int n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "unauthenticated"))
			n++;
	fclose(f);
	return n;
}

static int setup(void **state)
{
	static const char *const all[] = {"*"};
	char db[512], spec[600], upstream[128];

	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	harness_path("replicas.db", db, sizeof(db));
	snprintf(spec, sizeof(spec), "sqlite:%s", db);
	for (int i = 0; i < 2; i++) {
		const char *args[] = {"--store", spec, "--sqlite-exclusive",
				      "false", "--jwt-hs256-secret-file",
				      harness_secret_file(), "--log-level",
				      "debug", NULL};
		assert_int_equal(harness_start(&servers[i], DAS_SERVER_BIN,
					       args, NULL),
				 0);
	}
	import_directory(servers[0].addr);
	snprintf(upstream, sizeof(upstream), "%s,%s", servers[0].addr,
		 servers[1].addr);
	const char *gargs[] = {"--upstream", upstream, "--upstream-timeout-ms",
			       "5000", NULL};
	assert_int_equal(harness_start(&gateway, DAS_GATEWAY_BIN, gargs, NULL),
			 0);
	token = harness_mint("agent", all, 1, "devices:assign", 3600);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(token);
	curl_global_cleanup();
	return 0;
}

static void calls_reach_both_replicas(void **state)
{
	(void)state;
	for (int i = 0; i < 40; i++)
		assert_int_equal(http("GET",
				      "/v1.0/customers/" CUST
				      "/users/u0/devices/pbx",
				      NULL, NULL),
				 401);
	/* The servers buffer their logs (flushed every 100 ms). */
	int a = 0, b = 0;
	for (int i = 0; i < 50 && a + b < 40; i++) {
		struct timespec pause = {0, 50 * 1000 * 1000};
		if (i)
			nanosleep(&pause, NULL);
		a = refused_calls(&servers[0]);
		b = refused_calls(&servers[1]);
	}
	fprintf(stderr, "replica calls: %d and %d\n", a, b);
	assert_int_equal(a + b, 40);
	assert_true(a >= 5);
	assert_true(b >= 5);
}

/*
 * Concurrent calls: the gateway sends the calls one turn of its loop
 * started to one server and the next turn's to the next, so every loop
 * that serves calls in more than one turn reaches both replicas. Rounds
 * of 16 calls at once on kept-alive connections: each loop holding a
 * connection sees a turn every round.
 */
static void bursts_reach_both_replicas(void **state)
{
	enum { CONNS = 16, ROUNDS = 8 };
	CURL *easy[CONNS];
	CURLM *multi = curl_multi_init();
	char url[512];
	int a0, b0, a = 0, b = 0, running;

	(void)state;
	assert_non_null(multi);
	a0 = refused_calls(&servers[0]);
	b0 = refused_calls(&servers[1]);
	snprintf(url, sizeof(url),
		 "http://%s/v1.0/customers/" CUST "/users/u0/devices/pbx",
		 gateway.addr);
	for (int i = 0; i < CONNS; i++) {
		easy[i] = curl_easy_init();
		assert_non_null(easy[i]);
		curl_easy_setopt(easy[i], CURLOPT_URL, url);
		curl_easy_setopt(easy[i], CURLOPT_TIMEOUT_MS, (long)TIMEOUT_MS);
		curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, discard);
	}
	for (int r = 0; r < ROUNDS; r++) {
		for (int i = 0; i < CONNS; i++)
			curl_multi_add_handle(multi, easy[i]);
		do {
			assert_int_equal(curl_multi_perform(multi, &running),
					 CURLM_OK);
			if (running)
				curl_multi_poll(multi, NULL, 0, 100, NULL);
		} while (running);
		for (int i = 0; i < CONNS; i++) {
			long status = 0;

			curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE,
					  &status);
			assert_int_equal(status, 401);
			curl_multi_remove_handle(multi, easy[i]);
		}
	}
	for (int i = 0; i < CONNS; i++)
		curl_easy_cleanup(easy[i]);
	curl_multi_cleanup(multi);
	for (int i = 0; i < 50 && a + b < CONNS * ROUNDS; i++) {
		struct timespec pause = {0, 50 * 1000 * 1000};
		if (i)
			nanosleep(&pause, NULL);
		a = refused_calls(&servers[0]) - a0;
		b = refused_calls(&servers[1]) - b0;
	}
	fprintf(stderr, "replica calls in bursts: %d and %d\n", a, b);
	assert_int_equal(a + b, CONNS * ROUNDS);
	assert_true(a >= 1);
	assert_true(b >= 1);
}

/* Milliseconds since t0. */
static long ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 +
	       (t.tv_nsec - t0->tv_nsec) / 1000000;
}

#define HUNG_MS 5000

/*
 * One replica hangs (SIGSTOP: its socket stays, the kernel takes the
 * gateway's bytes, nothing answers). The gateway's connection to it has
 * calls waiting and hears nothing for 1 s, sends a PING, and with no
 * answer 1 s later closes it: those calls end 503, and round-robin skips
 * that server (a new connection to it gets no call until the server's
 * SETTINGS come). So for HUNG_MS of calls one after the other, all but
 * the first one or two (one per gateway loop) are 200. Before, every
 * other call went to the hung replica and waited for its 5 s deadline:
 * about one call answered in those 5 s. Once the replica continues, calls
 * reach it again.
 */
static void hung_replica_skipped(void **state)
{
	const char *path = "/v1.0/customers/" CUST "/users/u0/devices/pbx";
	struct timespec t0;
	int n_ok = 0, n_failed = 0, ws, before;

	(void)state;
	for (int i = 0; i < 10; i++)
		assert_int_equal(http("GET", path, token, NULL), 200);
	assert_int_equal(kill(servers[1].pid, SIGSTOP), 0);
	assert_int_equal(waitpid(servers[1].pid, &ws, WUNTRACED),
			 servers[1].pid);
	assert_true(WIFSTOPPED(ws));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (ms_since(&t0) < HUNG_MS) {
		long status = http("GET", path, token, NULL);

		if (status == 200)
			n_ok++;
		else
			n_failed++;
	}
	assert_int_equal(kill(servers[1].pid, SIGCONT), 0);
	fprintf(stderr, "replica hung for %d ms: %d calls answered 200, %d "
			"not\n",
		HUNG_MS, n_ok, n_failed);
	assert_true(n_failed <= 4);
	assert_true(n_ok >= 20);
	assert_true(harness_count_in_log(&gateway, "no answer to a PING") >=
		    1);
	/* The replica serves again once it continues. */
	before = refused_calls(&servers[1]);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (refused_calls(&servers[1]) == before) {
		assert_true(ms_since(&t0) < 15000);
		assert_int_equal(http("GET", path, NULL, NULL), 401);
		struct timespec pause = {0, 50 * 1000 * 1000};
		nanosleep(&pause, NULL);
	}
}

/*
 * A replica killed with SIGKILL: every assign acknowledged before is
 * there, read through the survivor, and the calls after the kill go to
 * the survivor. A call can meet the kill's race: a gateway loop that
 * takes the next request before it has read the end of the dead server's
 * connection sends it there and sees the connection reset: 503, as any
 * gRPC client sees UNAVAILABLE for a call sent as its server died (one
 * such 503 in many runs on a loaded machine). Such a call is made again,
 * as a client would, once per gateway loop at most (a loop learns of the
 * end with that call), and counted.
 */
static void one_replica_killed(void **state)
{
	char path[256];
	int n_raced = 0;
	long loops = sysconf(_SC_NPROCESSORS_ONLN); /* --threads 0 */

	(void)state;
	/* half the users before, half after the kill */
	for (int i = 0; i < USERS / 2; i++) {
		snprintf(path, sizeof(path),
			 "/v1.0/customers/" CUST
			 "/users/u%d/devices/pbx/d%d/assign",
			 i, i);
		assert_int_equal(http("PUT", path, token,
				      "{\"clientType\":\"desktop\"}"),
				 201);
	}
	assert_int_equal(harness_stop(&servers[0], SIGKILL),
			 HARNESS_STATUS_SIGNAL(SIGKILL));
	for (int i = USERS / 2; i < USERS; i++) {
		long status;

		snprintf(path, sizeof(path),
			 "/v1.0/customers/" CUST
			 "/users/u%d/devices/pbx/d%d/assign",
			 i, i);
		while ((status = http("PUT", path, token,
				      "{\"clientType\":\"mobile\"}")) == 503 &&
		       n_raced < loops)
			n_raced++;
		assert_int_equal(status, 201);
	}
	fprintf(stderr,
		"replica killed: %d of %d calls after it met the "
		"kill's race (503, made again)\n",
		n_raced, USERS - USERS / 2);
	/* every acknowledged assign is there, read through the survivor */
	for (int i = 0; i < USERS; i++) {
		snprintf(path, sizeof(path),
			 "/v1.0/customers/" CUST "/users/u%d/devices/pbx", i);
		assert_int_equal(http("GET", path, token, NULL), 200);
		/* assigning the same again is an idempotent 201 */
		snprintf(path, sizeof(path),
			 "/v1.0/customers/" CUST
			 "/users/u%d/devices/pbx/d%d/assign",
			 i, i);
		assert_int_equal(http("PUT", path, token,
				      i < USERS / 2
					      ? "{\"clientType\":\"desktop\"}"
					      : "{\"clientType\":\"mobile\"}"),
				 201);
	}
	assert_true(harness_is_alive(&servers[1]));
	assert_true(harness_is_alive(&gateway));
}

/*
 * A server that is connected but does not answer (stopped with SIGSTOP):
 * the gateway answers 504 when its deadline runs out, and serves again once
 * the server continues.
 */
static void frozen_upstream_is_504(void **state)
{
	struct harness_proc both = gateway;
	/* One loop, so the call below goes out on the connection the first
	 * GET made ready: each loop opens its own, and another loop's may not
	 * have the server's SETTINGS yet when the server stops; a deadline
	 * that passes while no server is ready is 503 by design
	 * (docs/gateway.md). */
	const char *gargs[] = {"--upstream", servers[1].addr,
			       "--upstream-timeout-ms", "700", "--threads",
			       "1", NULL};
	char path[256];

	(void)state;
	assert_int_equal(harness_start(&gateway, DAS_GATEWAY_BIN, gargs, NULL),
			 0);
	snprintf(path, sizeof(path),
		 "/v1.0/customers/" CUST "/users/u0/devices/pbx");
	assert_int_equal(http("GET", path, token, NULL), 200);
	assert_int_equal(kill(servers[1].pid, SIGSTOP), 0);
	/* kill() returns before every thread has stopped: wait for it. */
	int ws;
	assert_int_equal(waitpid(servers[1].pid, &ws, WUNTRACED),
			 servers[1].pid);
	assert_true(WIFSTOPPED(ws));
	long status = http("GET", path, token, NULL);
	assert_int_equal(kill(servers[1].pid, SIGCONT), 0);
	assert_int_equal(status, 504);
	assert_int_equal(http("GET", path, token, NULL), 200);
	assert_int_equal(harness_stop(&gateway, SIGTERM), 0);
	gateway = both;
}

/*
 * No server at all: with --wait-for-ready false the gateway answers 503 at
 * once instead of waiting out its deadline.
 */
static void no_upstream_fails_fast(void **state)
{
	struct harness_proc saved = gateway;
	char dead[64];
	struct timespec t0, t1;

	(void)state;
	/* servers[0] was killed above: nothing listens on its port. */
	snprintf(dead, sizeof(dead), "127.0.0.1:%d", servers[0].port);
	const char *gargs[] = {"--upstream", dead, "--wait-for-ready", "false",
			       "--upstream-timeout-ms", "5000", NULL};
	assert_int_equal(harness_start(&gateway, DAS_GATEWAY_BIN, gargs, NULL),
			 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	long status = http("GET", "/v1.0/customers/" CUST "/users/u0/devices/pbx",
			   token, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long ms = (t1.tv_sec - t0.tv_sec) * 1000 +
		  (t1.tv_nsec - t0.tv_nsec) / 1000000;
	assert_int_equal(status, 503);
	assert_true(ms < 2500);
	assert_int_equal(http("GET", "/readyz", NULL, NULL), 503);
	assert_int_equal(http("GET", "/healthz", NULL, NULL), 200);
	assert_int_equal(harness_stop(&gateway, SIGTERM), 0);
	gateway = saved;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(calls_reach_both_replicas),
		cmocka_unit_test(bursts_reach_both_replicas),
		cmocka_unit_test(hung_replica_skipped),
		cmocka_unit_test(one_replica_killed),
		cmocka_unit_test(frozen_upstream_is_504),
		cmocka_unit_test(no_upstream_fails_fast),
	};
	return harness_finish(cmocka_run_group_tests(tests, setup, teardown));
}
