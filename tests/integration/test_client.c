/*
 * The client library against a real server: status, reason and message of
 * an error, deadlines, wait-for-ready across a server restart, calls from
 * several threads on one client, and local failures that must not reach
 * the wire.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pthread.h>

#include <cmocka.h>

#include "client/das_client.h"
#include "common/status.h"
#include "deviceassignment/v1/device_assignment.pb-c.h"
#include "deviceassignment/v1/directory.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "harness.h"

#define TENANT "3f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"

static char store_arg[PATH_MAX + 16];
static char *admin_token;

static void start_server(struct harness_proc *p, const char *listen)
{
	const char *args[] = {"--store", store_arg, "--jwt-hs256-secret-file",
			      harness_secret_file(), "--listen", listen, NULL};

	assert_int_equal(harness_start(p, DAS_SERVER_BIN, args, NULL), 0);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int health(struct das_client *c, int timeout_ms,
		  struct das_call_status *st)
{
	Grpc__Health__V1__HealthCheckRequest req =
		GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	int r = das_client_call(c, DAS_RPC_HEALTH_CHECK, NULL, &req.base,
				&resp, timeout_ms, st);

	if (r == 0 && st->code == 0) {
		assert_non_null(resp);
		assert_int_equal(
			((Grpc__Health__V1__HealthCheckResponse *)resp)->status,
			GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
		protobuf_c_message_free_unpacked(resp, NULL);
	} else {
		assert_null(resp);
	}
	return r;
}

static int setup(void **state)
{
	char db[PATH_MAX];

	snprintf(store_arg, sizeof(store_arg), "sqlite:%s",
		 harness_path("client.db", db, sizeof(db)));
	admin_token = harness_mint("client-test", (const char *const[]){"*"},
				   1, "directory:admin devices:assign", 600);
	return 0;
}

static int teardown(void **state)
{
	free(admin_token);
	return 0;
}

static void test_new_and_free(void **state)
{
	assert_null(das_client_new(NULL));
	assert_null(das_client_new(""));
	das_client_free(NULL);
	/* A channel is lazy: creating one to nowhere succeeds. */
	struct das_client *c = das_client_new("127.0.0.1:1");
	assert_non_null(c);
	das_client_free(c);
}

static void test_error_status_reason_message(void **state)
{
	struct harness_proc server;
	struct das_call_status st;
	ProtobufCMessage *resp = (ProtobufCMessage *)&st; /* must be reset */
	Deviceassignment__V1__ListUserDevicesRequest req =
		DEVICEASSIGNMENT__V1__LIST_USER_DEVICES_REQUEST__INIT;

	start_server(&server, "127.0.0.1:0");
	struct das_client *c = das_client_new(server.addr);
	assert_non_null(c);

	req.customer_tenant_id = (char *)TENANT;
	req.user_id = (char *)"u1";
	assert_int_equal(das_client_call(c, DAS_RPC_LIST_USER_DEVICES,
					 admin_token, &req.base, &resp, 10000,
					 &st),
			 0);
	assert_null(resp);
	assert_int_equal(st.code, DAS_GRPC_NOT_FOUND);
	assert_string_equal(st.reason, "CUSTOMER_NOT_FOUND");
	assert_string_equal(st.message, "Not Found");

	/* No token: UNAUTHENTICATED, whatever the request. */
	assert_int_equal(das_client_call(c, DAS_RPC_LIST_USER_DEVICES, NULL,
					 &req.base, &resp, 10000, &st),
			 0);
	assert_int_equal(st.code, DAS_GRPC_UNAUTHENTICATED);

	/* A successful directory call fills the reply. */
	Deviceassignment__V1__UpsertCustomerRequest creq =
		DEVICEASSIGNMENT__V1__UPSERT_CUSTOMER_REQUEST__INIT;
	creq.tenant_id = (char *)TENANT;
	creq.name = (char *)"Client test";
	assert_int_equal(das_client_call(c, DAS_RPC_UPSERT_CUSTOMER,
					 admin_token, &creq.base, &resp, 10000,
					 &st),
			 0);
	assert_int_equal(st.code, 0);
	assert_string_equal(st.reason, "");
	assert_non_null(resp);
	assert_ptr_equal(resp->descriptor,
			 &deviceassignment__v1__directory_response__descriptor);
	protobuf_c_message_free_unpacked(resp, NULL);

	/* Local failure: a request of another method's type never leaves. */
	assert_int_equal(das_client_call(c, DAS_RPC_ASSIGN_DEVICE, admin_token,
					 &req.base, &resp, 10000, &st),
			 -1);
	assert_null(resp);
	assert_true(st.message[0] != '\0');
	assert_int_equal(das_client_call(c, DAS_RPC__COUNT, admin_token,
					 &req.base, &resp, 10000, &st),
			 -1);

	/* An oversized token is refused locally. */
	size_t big = 20000;
	char *huge = malloc(big + 1);
	assert_non_null(huge);
	memset(huge, 'a', big);
	huge[big] = '\0';
	assert_int_equal(das_client_call(c, DAS_RPC_LIST_USER_DEVICES, huge,
					 &req.base, &resp, 10000, &st),
			 -1);
	free(huge);

	/* Raw: extra metadata is sent; an illegal key is a local error. */
	const char *md[] = {"authorization", "Bearer x", "x-test", "1"};
	assert_int_equal(das_client_call_raw(c,
					     "/grpc.health.v1.Health/Check",
					     "", 0, md, 2, 10000, &st),
			 0);
	assert_int_equal(st.code, 0);
	const char *bad_md[] = {"Bad Key", "v"};
	assert_int_equal(das_client_call_raw(c,
					     "/grpc.health.v1.Health/Check",
					     "", 0, bad_md, 1, 10000, &st),
			 -1);
	assert_int_equal(das_client_call_raw(c, "/no.Such/Method", "x", 1,
					     NULL, 0, 10000, &st),
			 0);
	assert_int_equal(st.code, DAS_GRPC_UNIMPLEMENTED);

	das_client_free(c);
	assert_int_equal(harness_stop(&server, SIGTERM), 0);
}

static void test_deadline_without_server(void **state)
{
	struct harness_proc server;
	struct das_call_status st;

	/* A port that was just free: start and stop a server to learn one. */
	start_server(&server, "127.0.0.1:0");
	char addr[64];
	snprintf(addr, sizeof(addr), "%s", server.addr);
	assert_int_equal(harness_stop(&server, SIGTERM), 0);

	struct das_client *c = das_client_new(addr);
	assert_non_null(c);
	int64_t t0 = now_ms();
	assert_int_equal(health(c, 300, &st), 0);
	int64_t took = now_ms() - t0;
	assert_int_equal(st.code, DAS_GRPC_DEADLINE_EXCEEDED);
	assert_true(took >= 250);
	assert_true(took < 5000);
	das_client_free(c);
}

struct waiter {
	struct das_client *c;
	struct das_call_status st;
	int result;
	atomic_bool is_done;
};

static void *wait_call(void *arg)
{
	struct waiter *w = arg;

	w->result = health(w->c, 30000, &w->st);
	atomic_store(&w->is_done, true);
	return NULL;
}

/* A call started while the server is down completes once it is back. */
static void test_wait_for_ready_across_restart(void **state)
{
	struct harness_proc server;
	struct das_call_status st;
	struct waiter w = {0};
	pthread_t thread;

	start_server(&server, "127.0.0.1:0");
	char addr[64];
	snprintf(addr, sizeof(addr), "%s", server.addr);
	w.c = das_client_new(addr);
	assert_non_null(w.c);
	assert_int_equal(health(w.c, 10000, &st), 0);
	assert_int_equal(st.code, 0);
	assert_int_equal(harness_stop(&server, SIGTERM), 0);

	atomic_init(&w.is_done, false);
	assert_int_equal(pthread_create(&thread, NULL, wait_call, &w), 0);
	struct timespec pause = {0, 500 * 1000000L};
	nanosleep(&pause, NULL);
	assert_false(atomic_load(&w.is_done));

	start_server(&server, addr);
	assert_int_equal(pthread_join(thread, NULL), 0);
	assert_int_equal(w.result, 0);
	if (w.st.code != 0)
		fprintf(stderr, "after restart: %d %s\n", w.st.code,
			w.st.message);
	assert_int_equal(w.st.code, 0);
	das_client_free(w.c);
	assert_int_equal(harness_stop(&server, SIGTERM), 0);
}

#define THREADS 4
#define CALLS_PER_THREAD 50

struct worker {
	struct das_client *c;
	int failures;
};

static void *hammer(void *arg)
{
	struct worker *wk = arg;

	for (int i = 0; i < CALLS_PER_THREAD; i++) {
		struct das_call_status st;
		Deviceassignment__V1__ListUserDevicesRequest req =
			DEVICEASSIGNMENT__V1__LIST_USER_DEVICES_REQUEST__INIT;
		ProtobufCMessage *resp = NULL;
		req.customer_tenant_id = (char *)TENANT;
		req.user_id = (char *)"nobody";
		if (das_client_call(wk->c, DAS_RPC_LIST_USER_DEVICES,
				    admin_token, &req.base, &resp, 10000,
				    &st) != 0 ||
		    st.code != DAS_GRPC_NOT_FOUND ||
		    strcmp(st.reason, "USER_NOT_FOUND") != 0 || resp)
			wk->failures++;
	}
	return NULL;
}

static void test_threads_share_a_client(void **state)
{
	struct harness_proc server;
	struct worker workers[THREADS];
	pthread_t threads[THREADS];

	start_server(&server, "127.0.0.1:0");
	struct das_client *c = das_client_new(server.addr);
	assert_non_null(c);
	/* The customer exists (upserted by an earlier test or here). */
	Deviceassignment__V1__UpsertCustomerRequest creq =
		DEVICEASSIGNMENT__V1__UPSERT_CUSTOMER_REQUEST__INIT;
	struct das_call_status st;
	ProtobufCMessage *resp = NULL;
	creq.tenant_id = (char *)TENANT;
	creq.name = (char *)"Client test";
	assert_int_equal(das_client_call(c, DAS_RPC_UPSERT_CUSTOMER,
					 admin_token, &creq.base, &resp, 10000,
					 &st),
			 0);
	assert_int_equal(st.code, 0);
	protobuf_c_message_free_unpacked(resp, NULL);

	for (int i = 0; i < THREADS; i++) {
		workers[i].c = c;
		workers[i].failures = 0;
		assert_int_equal(
			pthread_create(&threads[i], NULL, hammer, &workers[i]),
			0);
	}
	int failures = 0;
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(threads[i], NULL), 0);
		failures += workers[i].failures;
	}
	assert_int_equal(failures, 0);
	das_client_free(c);
	assert_int_equal(harness_stop(&server, SIGTERM), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_and_free),
		cmocka_unit_test(test_error_status_reason_message),
		cmocka_unit_test(test_deadline_without_server),
		cmocka_unit_test(test_wait_for_ready_across_restart),
		cmocka_unit_test(test_threads_share_a_client),
	};

	return harness_finish(cmocka_run_group_tests(tests, setup, teardown));
}
