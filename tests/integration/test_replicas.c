/*
 * Two device-assignment-server replicas on one private PostgreSQL database
 * (CONTRACT.md section 7: several replicas give the same answers as one):
 *
 * - a seat race spread over both replicas: exactly the included number of
 *   assigns win, every other one is CHARGES_NOT_ACCEPTED; the same race
 *   over HTTP through one gateway in front of both (201 / 402);
 * - a replica killed with SIGKILL under load: every acknowledged assign is
 *   found afterwards and the other replica keeps serving throughout;
 * - the database restarted under load (pg_ctl restart -m fast): both
 *   replicas answer again within seconds, without being restarted, and
 *   every failure in between is UNAVAILABLE;
 * - the database stalled (its sessions stopped): health says so, the
 *   calls waiting for it are bounded, those whose deadline passed while
 *   they waited change nothing, and the memory they held goes back.
 *
 * The numbers measured are printed on stderr ("replicas: ...").
 */
#include <dirent.h>
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

#include <cmocka.h>
#include <curl/curl.h>

#include "deviceassignment/v1/device_assignment.pb-c.h"
#include "deviceassignment/v1/directory.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#include "client/das_client.h"
#include "harness.h"

#ifndef DAS_WITH_POSTGRES
int main(void)
{
	fprintf(stderr, "replicas: built without the PostgreSQL backend "
			"(DAS_WITH_POSTGRES=OFF)\n");
	return 77;
}
#else

#include <libpq-fe.h>

#include "tests/store/pg_harness.h"

#define RACE "a1f0c6d2-5b3e-4f7a-8c9d-0e1f2a3b4c5d"
#define LOAD "b2e1d7c3-6c4f-4a8b-9d0e-1f2a3b4c5d6e"
#define FLIP "c3d2e8b4-7d5a-4b9c-8e1f-2a3b4c5d6e7f"
#define TIMEOUT_MS 10000
#define GRPC_OK 0
#define GRPC_DEADLINE_EXCEEDED 4
#define GRPC_FAILED_PRECONDITION 9
#define GRPC_UNAVAILABLE 14

static struct pg_harness pg;
static char db_spec[PG_HARNESS_URI_SIZE];
static struct harness_proc replica[2];
static struct das_client *client[2];
static char *admin_token, *assign_token, *ledger_token;

static const char *const all_tenants[] = {"*"};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static void start_replica(int i)
{
	const char *args[] = {"--store", db_spec, "--jwt-hs256-secret-file",
			      harness_secret_file(), NULL};

	assert_int_equal(harness_start(&replica[i], DAS_SERVER_BIN, args,
				       NULL),
			 0);
	das_client_free(client[i]);
	client[i] = das_client_new(replica[i].addr);
	assert_non_null(client[i]);
}

/* ---- calls ---- */

static int directory_call(enum das_rpc_method m, const ProtobufCMessage *req)
{
	ProtobufCMessage *resp = NULL;
	struct das_call_status st;

	assert_int_equal(das_client_call(client[0], m, admin_token, req, &resp,
					 TIMEOUT_MS, &st),
			 0);
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	if (st.code != GRPC_OK)
		fprintf(stderr, "directory call: %d %s %s\n", st.code,
			st.reason, st.message);
	return st.code;
}

/* A directory call on c by the admin; returns the gRPC code, -1 on a
 * local client failure. */
static int directory_call_on(struct das_client *c, enum das_rpc_method m,
			     const ProtobufCMessage *req, int timeout_ms,
			     struct das_call_status *st)
{
	ProtobufCMessage *resp = NULL;

	if (das_client_call(c, m, admin_token, req, &resp, timeout_ms, st) !=
	    0)
		return -1;
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return st->code;
}

static void upsert_customer(const char *tenant, int seats)
{
	Deviceassignment__V1__UpsertCustomerRequest r =
		DEVICEASSIGNMENT__V1__UPSERT_CUSTOMER_REQUEST__INIT;

	r.tenant_id = (char *)tenant;
	r.account_tenant_id = (char *)"";
	r.name = (char *)"Replica Test";
	r.has_included_softphone_seats = seats >= 0;
	r.included_softphone_seats = seats >= 0 ? (uint32_t)seats : 0;
	assert_int_equal(directory_call(DAS_RPC_UPSERT_CUSTOMER, &r.base),
			 GRPC_OK);
}

static char *user_roles[] = {(char *)"customer_user_uc",
			     (char *)"customer_user_uc_softphone"};

/* UpsertUser on c within timeout_ms; returns the gRPC code. */
static int upsert_user_on(struct das_client *c, const char *tenant,
			  const char *user, int timeout_ms,
			  struct das_call_status *st)
{
	Deviceassignment__V1__UpsertUserRequest r =
		DEVICEASSIGNMENT__V1__UPSERT_USER_REQUEST__INIT;

	r.tenant_id = (char *)tenant;
	r.user_id = (char *)user;
	r.n_roles = 2;
	r.roles = user_roles;
	return directory_call_on(c, DAS_RPC_UPSERT_USER, &r.base, timeout_ms,
				 st);
}

static void upsert_user(const char *tenant, const char *user)
{
	struct das_call_status st;

	if (upsert_user_on(client[0], tenant, user, TIMEOUT_MS, &st) !=
	    GRPC_OK)
		fail_msg("UpsertUser %s: %d %s %s", user, st.code, st.reason,
			 st.message);
}

/* DeletePbxDevice on c within timeout_ms; returns the gRPC code. */
static int delete_device_on(struct das_client *c, const char *tenant,
			    const char *device, int timeout_ms,
			    struct das_call_status *st)
{
	Deviceassignment__V1__DeletePbxDeviceRequest r =
		DEVICEASSIGNMENT__V1__DELETE_PBX_DEVICE_REQUEST__INIT;

	r.tenant_id = (char *)tenant;
	r.device_id = (char *)device;
	return directory_call_on(c, DAS_RPC_DELETE_PBX_DEVICE, &r.base,
				 timeout_ms, st);
}

static void upsert_device(const char *tenant, const char *device,
			  const char *owner)
{
	Deviceassignment__V1__UpsertPbxDeviceRequest r =
		DEVICEASSIGNMENT__V1__UPSERT_PBX_DEVICE_REQUEST__INIT;

	r.tenant_id = (char *)tenant;
	r.device_id = (char *)device;
	r.owner_user_id = (char *)owner;
	assert_int_equal(directory_call(DAS_RPC_UPSERT_PBX_DEVICE, &r.base),
			 GRPC_OK);
}

/* One assign; returns the gRPC code, -1 on a local client failure. */
static int assign(struct das_client *c, const char *tenant, const char *user,
		  const char *device, int type, int timeout_ms,
		  struct das_call_status *st)
{
	Deviceassignment__V1__AssignDeviceRequest r =
		DEVICEASSIGNMENT__V1__ASSIGN_DEVICE_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;

	r.customer_tenant_id = (char *)tenant;
	r.user_id = (char *)user;
	r.device_id = (char *)device;
	r.client_type = (Deviceassignment__V1__ClientType)type;
	if (das_client_call(c, DAS_RPC_ASSIGN_DEVICE, assign_token, &r.base,
			    &resp, timeout_ms, st) != 0)
		return -1;
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return st->code;
}

static int unassign(struct das_client *c, const char *tenant,
		    const char *user, const char *device, int timeout_ms,
		    struct das_call_status *st)
{
	Deviceassignment__V1__UnassignDeviceRequest r =
		DEVICEASSIGNMENT__V1__UNASSIGN_DEVICE_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;

	r.customer_tenant_id = (char *)tenant;
	r.user_id = (char *)user;
	r.device_id = (char *)device;
	if (das_client_call(c, DAS_RPC_UNASSIGN_DEVICE, assign_token, &r.base,
			    &resp, timeout_ms, st) != 0)
		return -1;
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return st->code;
}

/*
 * The type a user's device has according to replica c: 0 when it has
 * none, -1 when the call failed.
 */
static int listed_type(struct das_client *c, const char *tenant,
		       const char *user, const char *device)
{
	Deviceassignment__V1__ListUserDevicesRequest r =
		DEVICEASSIGNMENT__V1__LIST_USER_DEVICES_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	struct das_call_status st;
	int type = 0;

	r.customer_tenant_id = (char *)tenant;
	r.user_id = (char *)user;
	if (das_client_call(c, DAS_RPC_LIST_USER_DEVICES, assign_token,
			    &r.base, &resp, TIMEOUT_MS, &st) != 0 ||
	    st.code != GRPC_OK) {
		fprintf(stderr, "list %s: %d %s\n", user, st.code, st.message);
		return -1;
	}
	Deviceassignment__V1__ListUserDevicesResponse *l = (void *)resp;
	for (size_t i = 0; i < l->n_devices; i++)
		if (strcmp(l->devices[i]->device_id, device) == 0)
			type = (int)l->devices[i]->client_type;
	protobuf_c_message_free_unpacked(resp, NULL);
	return type;
}

/* ---- the seat race over both replicas ---- */

#define RACERS 32
#define RACE_SEATS 5
#define RACE_ROUNDS 3

struct racer {
	const char *tenant;
	int index;
	int code;
	char reason[64];
};

static pthread_barrier_t race_start;

static void *race_main(void *arg)
{
	struct racer *r = arg;
	struct das_call_status st;
	char user[16], device[16];

	snprintf(user, sizeof(user), "r%d", r->index);
	snprintf(device, sizeof(device), "rd%d", r->index);
	pthread_barrier_wait(&race_start);
	/* Half of the callers go to each replica. */
	r->code = assign(client[r->index % 2], r->tenant, user, device,
			 DAS_CLIENT_DESKTOP, TIMEOUT_MS * 3, &st);
	snprintf(r->reason, sizeof(r->reason), "%s", st.reason);
	return NULL;
}

/* One round on a fresh customer; adds the winners per replica to won. */
static void race_round(const char *tenant, int won[2])
{
	pthread_t threads[RACERS];
	struct racer racers[RACERS];
	int n_won = 0, refused = 0, seated[2] = {0, 0};
	char user[16], device[16];

	upsert_customer(tenant, RACE_SEATS);
	for (int i = 0; i < RACERS; i++) {
		snprintf(user, sizeof(user), "r%d", i);
		snprintf(device, sizeof(device), "rd%d", i);
		upsert_user(tenant, user);
		upsert_device(tenant, device, user);
	}
	/* Both channels connected before the start, so neither replica
	 * gets a head start from connection setup. */
	for (int c = 0; c < 2; c++)
		assert_int_equal(listed_type(client[c], tenant, "r0", "rd0"),
				 0);
	assert_int_equal(pthread_barrier_init(&race_start, NULL, RACERS), 0);
	for (int i = 0; i < RACERS; i++) {
		racers[i].tenant = tenant;
		racers[i].index = i;
		assert_int_equal(pthread_create(&threads[i], NULL, race_main,
						&racers[i]),
				 0);
	}
	for (int i = 0; i < RACERS; i++) {
		pthread_join(threads[i], NULL);
		if (racers[i].code == GRPC_OK) {
			won[i % 2]++;
			n_won++;
		} else if (racers[i].code == GRPC_FAILED_PRECONDITION &&
			   strcmp(racers[i].reason, "CHARGES_NOT_ACCEPTED") ==
				   0) {
			refused++;
		} else {
			fprintf(stderr, "racer %d: code %d %s\n", i,
				racers[i].code, racers[i].reason);
		}
	}
	pthread_barrier_destroy(&race_start);
	assert_int_equal(n_won, RACE_SEATS);
	assert_int_equal(refused, RACERS - RACE_SEATS);
	/* Both replicas see the same seated users: the winners. */
	for (int i = 0; i < RACERS; i++) {
		snprintf(user, sizeof(user), "r%d", i);
		snprintf(device, sizeof(device), "rd%d", i);
		for (int c = 0; c < 2; c++) {
			int type = listed_type(client[c], tenant, user, device);

			assert_int_not_equal(type, -1);
			seated[c] += type != 0;
			assert_int_equal(type != 0, racers[i].code == GRPC_OK);
		}
	}
	assert_int_equal(seated[0], RACE_SEATS);
	assert_int_equal(seated[1], RACE_SEATS);
}

static void seat_race_over_two_replicas(void **state)
{
	static const char *const tenants[RACE_ROUNDS] = {
		RACE, "a1f0c6d2-5b3e-4f7a-8c9d-0e1f2a3b4c5e",
		"a1f0c6d2-5b3e-4f7a-8c9d-0e1f2a3b4c5f"};
	int won[2] = {0, 0};
	double t0 = now_ms();

	for (int round = 0; round < RACE_ROUNDS; round++)
		race_round(tenants[round], won);
	fprintf(stderr,
		"replicas: seat race: %d rounds x %d callers (half per "
		"replica), %d seats each: exactly %d won per round (%d via A, "
		"%d via B in all), the other %d per round "
		"CHARGES_NOT_ACCEPTED; %.0f ms\n",
		RACE_ROUNDS, RACERS, RACE_SEATS, RACE_SEATS, won[0], won[1],
		RACERS - RACE_SEATS, now_ms() - t0);
}

/* ---- the same race over HTTP, one gateway in front of both ---- */

static struct harness_proc gateway;

static size_t discard_body(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

struct http_racer {
	const char *tenant;
	int index;
	long status;
};

/*
 * Sets c up for PUT .../assign of device to user as type through the
 * gateway at addr, with the assign token, within timeout_ms. Returns the
 * header list, to free once c is done.
 */
static struct curl_slist *rest_assign_setup(CURL *c, const char *addr,
					    const char *tenant,
					    const char *user,
					    const char *device,
					    const char *type, long timeout_ms)
{
	struct curl_slist *hl = NULL;
	char url[512], auth[2048], body[64];

	snprintf(url, sizeof(url),
		 "http://%s/v1.0/customers/%s/users/%s/devices/pbx/%s/assign",
		 addr, tenant, user, device);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", assign_token);
	snprintf(body, sizeof(body), "{\"clientType\":\"%s\"}", type);
	hl = curl_slist_append(hl, auth);
	hl = curl_slist_append(hl, "Content-Type: application/json");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_COPYPOSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
	return hl;
}

static void *http_race_main(void *arg)
{
	struct http_racer *r = arg;
	CURL *c = curl_easy_init();
	struct curl_slist *hl;
	char user[16], device[16];

	r->status = 0;
	if (!c)
		return NULL;
	snprintf(user, sizeof(user), "r%d", r->index);
	snprintf(device, sizeof(device), "rd%d", r->index);
	hl = rest_assign_setup(c, gateway.addr, r->tenant, user, device,
			       "desktop", (long)TIMEOUT_MS * 3);
	pthread_barrier_wait(&race_start);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	return NULL;
}

static void seat_race_through_gateway(void **state)
{
	static const char tenant[] = "d4e3f9c5-8e6b-4cad-9f20-3b4c5d6e7f80";
	pthread_t threads[RACERS];
	struct http_racer racers[RACERS];
	int created = 0, payment = 0, seated = 0;
	char upstream[160], user[16], device[16];

	(void)state;
	snprintf(upstream, sizeof(upstream), "%s,%s", replica[0].addr,
		 replica[1].addr);
	const char *args[] = {"--upstream", upstream, "--threads", "4",
			      "--log-level", "warn", NULL};
	assert_int_equal(harness_start(&gateway, DAS_GATEWAY_BIN, args, NULL),
			 0);
	upsert_customer(tenant, RACE_SEATS);
	for (int i = 0; i < RACERS; i++) {
		snprintf(user, sizeof(user), "r%d", i);
		snprintf(device, sizeof(device), "rd%d", i);
		upsert_user(tenant, user);
		upsert_device(tenant, device, user);
	}
	assert_int_equal(pthread_barrier_init(&race_start, NULL, RACERS), 0);
	for (int i = 0; i < RACERS; i++) {
		racers[i].tenant = tenant;
		racers[i].index = i;
		assert_int_equal(pthread_create(&threads[i], NULL,
						http_race_main, &racers[i]),
				 0);
	}
	for (int i = 0; i < RACERS; i++) {
		pthread_join(threads[i], NULL);
		if (racers[i].status == 201)
			created++;
		else if (racers[i].status == 402)
			payment++;
		else
			fprintf(stderr, "http racer %d: status %ld\n", i,
				racers[i].status);
	}
	pthread_barrier_destroy(&race_start);
	fprintf(stderr,
		"replicas: seat race through the gateway: %d callers, %d "
		"seats: %d answered 201, %d answered 402\n",
		RACERS, RACE_SEATS, created, payment);
	assert_int_equal(created, RACE_SEATS);
	assert_int_equal(payment, RACERS - RACE_SEATS);
	for (int i = 0; i < RACERS; i++) {
		snprintf(user, sizeof(user), "r%d", i);
		snprintf(device, sizeof(device), "rd%d", i);
		int type = listed_type(client[i % 2], tenant, user, device);
		assert_int_equal(type != 0, racers[i].status == 201);
		seated += type != 0;
	}
	assert_int_equal(seated, RACE_SEATS);
	assert_int_equal(harness_stop(&gateway, SIGTERM), 0);
}

/* ---- SIGKILL of one replica under load ---- */

#define LOADERS 8   /* even: half per replica */
#define LOAD_OPS 24 /* assigns per loader, each on its own device */

struct loader {
	int index;
	int replica;
	int n_ok;            /* acknowledged assigns */
	int n_ok_after_kill; /* of those, sent after the kill */
	int n_failed;
	int n_failed_before_kill; /* must stay 0 */
	int first_failure;   /* gRPC code of the first failure */
	bool is_acked[LOAD_OPS];
};

static atomic_int load_acked;
static atomic_bool is_killed;

static void load_names(int loader, int op, char *user, char *device,
		       size_t size)
{
	/* Four devices per user, one per client type: none is replaced. */
	snprintf(user, size, "k%d-%d", loader, op / 4);
	snprintf(device, size, "k%d-d%d", loader, op);
}

static void *load_main(void *arg)
{
	struct loader *l = arg;
	char user[32], device[32];

	for (int op = 0; op < LOAD_OPS; op++) {
		struct das_call_status st;
		bool was_killed = atomic_load(&is_killed);
		int code;

		load_names(l->index, op, user, device, sizeof(user));
		/* Calls wait for a ready channel: the killed replica's
		 * callers give up sooner. */
		code = assign(client[l->replica], LOAD, user, device,
			      op % 4 + 1, l->replica == 0 ? 3000 : TIMEOUT_MS,
			      &st);
		if (code == GRPC_OK) {
			l->is_acked[op] = true;
			l->n_ok++;
			l->n_ok_after_kill += was_killed;
			atomic_fetch_add(&load_acked, 1);
			continue;
		}
		if (l->n_failed++ == 0)
			l->first_failure = code;
		if (!atomic_load(&is_killed))
			l->n_failed_before_kill++;
		/* The killed replica answers no more: stop its callers. */
		if (l->replica == 0)
			break;
	}
	return NULL;
}

static void sigkill_one_replica_under_load(void **state)
{
	pthread_t threads[LOADERS];
	struct loader loaders[LOADERS];
	char user[32], device[32];
	int acked = 0, found = 0, after_kill_b = 0, failed_a = 0;
	double t0;

	upsert_customer(LOAD, -1);
	for (int t = 0; t < LOADERS; t++)
		for (int op = 0; op < LOAD_OPS; op++) {
			load_names(t, op, user, device, sizeof(user));
			if (op % 4 == 0)
				upsert_user(LOAD, user);
			upsert_device(LOAD, device, user);
		}
	atomic_store(&load_acked, 0);
	atomic_store(&is_killed, false);
	memset(loaders, 0, sizeof(loaders));
	for (int t = 0; t < LOADERS; t++) {
		loaders[t].index = t;
		loaders[t].replica = t % 2;
		assert_int_equal(pthread_create(&threads[t], NULL, load_main,
						&loaders[t]),
				 0);
	}
	/* Kill A once a quarter of the work is acknowledged. */
	t0 = now_ms();
	while (atomic_load(&load_acked) < LOADERS * LOAD_OPS / 4 &&
	       now_ms() - t0 < 20000)
		sleep_ms(2);
	atomic_store(&is_killed, true);
	assert_int_equal(harness_stop(&replica[0], SIGKILL),
			 HARNESS_STATUS_SIGNAL(SIGKILL));
	for (int t = 0; t < LOADERS; t++)
		pthread_join(threads[t], NULL);

	for (int t = 0; t < LOADERS; t++) {
		struct loader *l = &loaders[t];

		acked += l->n_ok;
		assert_int_equal(l->n_failed_before_kill, 0);
		if (l->replica == 1) {
			/* B keeps serving: every call of its callers OK. */
			if (l->n_failed)
				fprintf(stderr, "loader %d on B: %d failed, "
						"first code %d\n",
					t, l->n_failed, l->first_failure);
			assert_int_equal(l->n_failed, 0);
			assert_int_equal(l->n_ok, LOAD_OPS);
			after_kill_b += l->n_ok_after_kill;
		} else {
			failed_a += l->n_failed;
		}
		/* Every acknowledged assign is there, as B sees it. */
		for (int op = 0; op < LOAD_OPS; op++) {
			if (!l->is_acked[op])
				continue;
			load_names(t, op, user, device, sizeof(user));
			int type = listed_type(client[1], LOAD, user, device);
			if (type != op % 4 + 1)
				fprintf(stderr, "lost: %s %s type %d\n", user,
					device, type);
			found += type == op % 4 + 1;
		}
	}
	fprintf(stderr,
		"replicas: SIGKILL of A under load: %d assigns acknowledged "
		"(%d by B after the kill), %d found afterwards, %d callers of "
		"A stopped by the kill\n",
		acked, after_kill_b, found, failed_a);
	assert_int_equal(found, acked);
	assert_true(after_kill_b > 0);
	/* Bring A back (a fresh process on a new port) for what follows. */
	start_replica(0);
}

/* ---- the database restarted under load ---- */

#define FLIPPERS 6

struct flipper {
	int index;
	int replica;
	int n_ok, n_failed, n_other; /* other: a failure not UNAVAILABLE */
	int other_code;
	double last_failure_ms;  /* when the last failed call returned */
	double first_ok_after_ms; /* first OK after the restart was done */
	int last_acked_type;     /* state after the last OK, if it was last */
	bool is_last_acked;
};

static atomic_bool is_flipping;
static _Atomic double restart_done_ms;

static void *flip_main(void *arg)
{
	struct flipper *f = arg;
	char user[16], device[16];
	bool is_assigned = false;

	snprintf(user, sizeof(user), "f%d", f->index);
	snprintf(device, sizeof(device), "fd%d", f->index);
	while (atomic_load(&is_flipping)) {
		struct das_call_status st;
		int code;

		code = is_assigned
			       ? unassign(client[f->replica], FLIP, user,
					  device, 5000, &st)
			       : assign(client[f->replica], FLIP, user, device,
					DAS_CLIENT_MOBILE, 5000, &st);
		if (code == GRPC_OK) {
			double done = atomic_load(&restart_done_ms);

			is_assigned = !is_assigned;
			f->n_ok++;
			f->is_last_acked = true;
			f->last_acked_type =
				is_assigned ? DAS_CLIENT_MOBILE : 0;
			if (done > 0 && f->first_ok_after_ms == 0)
				f->first_ok_after_ms = now_ms();
			continue;
		}
		f->is_last_acked = false;
		f->n_failed++;
		f->last_failure_ms = now_ms();
		if (code != GRPC_UNAVAILABLE) {
			f->n_other++;
			f->other_code = code;
		}
		/* Outcome unknown: learn the state before going on. */
		sleep_ms(50);
		int type = listed_type(client[f->replica], FLIP, user, device);
		if (type >= 0)
			is_assigned = type != 0;
	}
	return NULL;
}

static void database_restart_under_load(void **state)
{
	pthread_t threads[FLIPPERS];
	struct flipper flippers[FLIPPERS];
	char user[16], device[16], err[512];
	double t0, restart_ms, recovered_ms[2] = {0, 0}, last_failure = 0;
	int failed = 0, ok = 0;

	upsert_customer(FLIP, -1);
	for (int i = 0; i < FLIPPERS; i++) {
		snprintf(user, sizeof(user), "f%d", i);
		snprintf(device, sizeof(device), "fd%d", i);
		upsert_user(FLIP, user);
		upsert_device(FLIP, device, user);
	}
	atomic_store(&is_flipping, true);
	atomic_store(&restart_done_ms, 0.0);
	memset(flippers, 0, sizeof(flippers));
	for (int i = 0; i < FLIPPERS; i++) {
		flippers[i].index = i;
		flippers[i].replica = i % 2;
		assert_int_equal(pthread_create(&threads[i], NULL, flip_main,
						&flippers[i]),
				 0);
	}
	sleep_ms(500);
	t0 = now_ms();
	if (pg_harness_restart(&pg, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	restart_ms = now_ms() - t0;
	atomic_store(&restart_done_ms, now_ms());
	/* Let the load run until every caller has succeeded again. */
	for (;;) {
		bool is_all = true;

		for (int i = 0; i < FLIPPERS; i++)
			is_all = is_all && flippers[i].first_ok_after_ms > 0;
		if (is_all || now_ms() - t0 > 30000)
			break;
		sleep_ms(10);
	}
	sleep_ms(300);
	atomic_store(&is_flipping, false);
	for (int i = 0; i < FLIPPERS; i++)
		pthread_join(threads[i], NULL);

	double done = atomic_load(&restart_done_ms);
	for (int i = 0; i < FLIPPERS; i++) {
		struct flipper *f = &flippers[i];
		double took = f->first_ok_after_ms - done;

		ok += f->n_ok;
		failed += f->n_failed;
		if (f->last_failure_ms > last_failure)
			last_failure = f->last_failure_ms;
		if (f->n_other)
			fprintf(stderr, "flipper %d: %d failures not "
					"UNAVAILABLE (code %d)\n",
				i, f->n_other, f->other_code);
		assert_int_equal(f->n_other, 0);
		assert_true(f->first_ok_after_ms > 0);
		if (took > recovered_ms[f->replica])
			recovered_ms[f->replica] = took;
		/* The last acknowledged state is the stored one. */
		if (f->is_last_acked) {
			snprintf(user, sizeof(user), "f%d", i);
			snprintf(device, sizeof(device), "fd%d", i);
			assert_int_equal(listed_type(client[1 - f->replica],
						     FLIP, user, device),
					 f->last_acked_type);
		}
	}
	fprintf(stderr,
		"replicas: database restart under load: pg_ctl restart took "
		"%.0f ms; calls OK again %.0f ms (A) / %.0f ms (B) after it; "
		"last failure %.0f ms after the restart began; "
		"%d calls OK, %d failed (all UNAVAILABLE)\n",
		restart_ms, recovered_ms[0], recovered_ms[1],
		last_failure > 0 ? last_failure - t0 : 0.0, ok, failed);
	assert_true(recovered_ms[0] < 5000.0);
	assert_true(recovered_ms[1] < 5000.0);
	/* Neither replica was restarted. */
	assert_true(harness_is_alive(&replica[0]));
	assert_true(harness_is_alive(&replica[1]));
}

/* ---- health follows the database ---- */

#define HEALTHY "d4e3f9c5-8e6b-4c0a-9f2a-3b4c5d6e7f80"
/* HEALTH_PROBE_LATE_MS of service/grpc/health.h */
#define HEALTH_LATE_MS 1000

static int health_of(struct das_client *c)
{
	Grpc__Health__V1__HealthCheckRequest r =
		GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	struct das_call_status st;
	int status;

	assert_int_equal(das_client_call(c, DAS_RPC_HEALTH_CHECK, NULL, &r.base,
					 &resp, TIMEOUT_MS, &st),
			 0);
	assert_int_equal(st.code, GRPC_OK);
	status = ((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
	protobuf_c_message_free_unpacked(resp, NULL);
	return status;
}

/* Both replicas say want within 10 s; returns the ms it took. */
static double health_until(int want)
{
	double t0 = now_ms();

	for (int i = 0; i < 2; i++)
		while (health_of(client[i]) != want) {
			assert_true(now_ms() - t0 < 10000.0);
			sleep_ms(20);
		}
	return now_ms() - t0;
}

/* Runs one statement as the superuser on the maintenance database; the
 * result is the caller's (PQclear). */
static PGresult *pg_admin_result(const char *sql)
{
	char uri[PG_HARNESS_URI_SIZE];
	PGconn *conn;
	PGresult *res;

	pg_harness_admin_uri(&pg, uri, sizeof(uri));
	conn = PQconnectdb(uri);
	assert_int_equal(PQstatus(conn), CONNECTION_OK);
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
	    PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(conn));
	PQfinish(conn);
	return res;
}

static void pg_admin(const char *sql)
{
	PQclear(pg_admin_result(sql));
}

/*
 * The database unreachable for the replicas (it refuses their
 * connections): Check says NOT_SERVING on both and writes are
 * STORE_UNAVAILABLE; reachable again: SERVING, and writes go through.
 */
static void health_follows_database(void **state)
{
	const char *db = strrchr(db_spec, '/') + 1;
	char sql[256];
	struct das_call_status st;
	double took;

	(void)state;
	upsert_customer(HEALTHY, -1);
	upsert_user(HEALTHY, "h1");
	upsert_device(HEALTHY, "hd1", "h1");
	health_until(GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);

	snprintf(sql, sizeof(sql),
		 "ALTER DATABASE \"%s\" ALLOW_CONNECTIONS false", db);
	pg_admin(sql);
	pg_admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
		 "WHERE application_name = 'device-assignment-server'");
	took = health_until(
		GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
	fprintf(stderr, "replicas: database unreachable: both NOT_SERVING "
			"after %.0f ms\n",
		took);
	assert_int_equal(assign(client[0], HEALTHY, "h1", "hd1", 1, TIMEOUT_MS,
				&st),
			 GRPC_UNAVAILABLE);
	assert_string_equal(st.reason, "STORE_UNAVAILABLE");

	snprintf(sql, sizeof(sql),
		 "ALTER DATABASE \"%s\" ALLOW_CONNECTIONS true", db);
	pg_admin(sql);
	took = health_until(
		GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	fprintf(stderr, "replicas: database back: both SERVING after %.0f ms\n",
		took);
	assert_int_equal(assign(client[1], HEALTHY, "h1", "hd1", 1, TIMEOUT_MS,
				&st),
			 GRPC_OK);
	assert_int_equal(listed_type(client[0], HEALTHY, "h1", "hd1"), 1);
}

/* The database's processes, stopped by stop_server_sessions. */
static pid_t stopped[256];
static size_t n_stopped;

static void resume_stopped(void)
{
	for (size_t i = 0; i < n_stopped; i++)
		kill(stopped[i], SIGCONT);
	n_stopped = 0;
}

/* The parent of pid (/proc/PID/stat), or -1. */
static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512];
	const char *p;
	FILE *f;
	size_t n;
	int ppid = -1;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* "pid (comm) state ppid ...": comm may hold spaces and parens */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1)
		return -1;
	return (pid_t)ppid;
}

/*
 * Stops the database as a host that hangs would: the postmaster first, so
 * no new session starts, then every process it started (the servers'
 * sessions, those still starting among them, and its own helpers), so
 * every statement and every new connection waits (stopped[]). A session
 * in its start-up when only the servers' listed sessions were stopped
 * went on serving: a server that opened a connection during one stall
 * could have it in the next.
 */
static void stop_server_sessions(void)
{
	PGresult *res = pg_admin_result(
		"SELECT pid FROM pg_stat_activity WHERE "
		"application_name = 'device-assignment-server'");
	pid_t postmaster = -1;
	DIR *proc;
	struct dirent *e;

	for (int i = 0; i < PQntuples(res) && postmaster < 0; i++)
		postmaster = parent_of((pid_t)atoi(PQgetvalue(res, i, 0)));
	assert_true(PQntuples(res) >= 2);
	PQclear(res);
	assert_true(postmaster > 1);
	assert_int_equal(kill(postmaster, SIGSTOP), 0);
	stopped[n_stopped++] = postmaster;
	proc = opendir("/proc");
	assert_non_null(proc);
	while ((e = readdir(proc)) && n_stopped < 255) {
		pid_t pid = (pid_t)atoi(e->d_name);

		if (pid > 1 && parent_of(pid) == postmaster &&
		    kill(pid, SIGSTOP) == 0)
			stopped[n_stopped++] = pid;
	}
	closedir(proc);
	assert_true(n_stopped >= 3);
}

/*
 * The database stalls (its sessions for the replicas and its postmaster
 * stopped, as a host that hangs or a partition that drops packets without
 * a reset would leave them: the connections stay open, a new one hangs,
 * and nothing answers): every
 * Check is still answered at once, and says NOT_SERVING once a probe has
 * gone unanswered for HEALTH_PROBE_LATE_MS; SERVING again when the
 * database answers. Before, the Check that probed hung with the probe and
 * every other Check said SERVING.
 */
static void health_says_when_database_stalls(void **state)
{
	struct das_call_status st;
	double t0 = now_ms(), took;
	int want = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;

	(void)state;
	health_until(GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	stop_server_sessions();

	for (int i = 0; i < 2; i++) {
		int status;

		do {
			Grpc__Health__V1__HealthCheckRequest r =
				GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
			ProtobufCMessage *resp = NULL;
			double t = now_ms();

			/* Each Check answered, within the probe's bound. */
			assert_int_equal(das_client_call(client[i],
							 DAS_RPC_HEALTH_CHECK,
							 NULL, &r.base, &resp,
							 2 * HEALTH_LATE_MS, &st),
					 0);
			assert_int_equal(st.code, GRPC_OK);
			assert_true(now_ms() - t < 2 * HEALTH_LATE_MS);
			status = ((Grpc__Health__V1__HealthCheckResponse *)
					  resp)->status;
			protobuf_c_message_free_unpacked(resp, NULL);
			assert_true(now_ms() - t0 < 10000.0);
			if (status != want)
				sleep_ms(20);
		} while (status != want);
	}
	took = now_ms() - t0;
	fprintf(stderr, "replicas: database stalled: both NOT_SERVING after "
			"%.0f ms\n",
		took);
	for (int i = 0; i < 2; i++)
		assert_true(harness_count_in_log(&replica[i],
						 "has not answered a probe") >=
			    1);

	resume_stopped();
	took = health_until(
		GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	fprintf(stderr, "replicas: database answers again: both SERVING "
			"after %.0f ms\n",
		took);
	assert_int_equal(assign(client[0], HEALTHY, "h1", "hd1", 2, TIMEOUT_MS,
				&st),
			 GRPC_OK);
	assert_int_equal(listed_type(client[1], HEALTHY, "h1", "hd1"), 2);
}

#define STALL_MAX_WAITING 8
#define STALL_CALLERS 24

/* What a stall_caller calls. */
enum stall_call {
	STALL_ASSIGN,      /* a move of h1's hd1 */
	STALL_UPSERT_USER, /* a new user s<index> */
	STALL_DELETE_DEVICE, /* sd<index>, which does not exist */
	STALL_LIST_LEDGER,
	STALL_SEAT_USAGE,
};

/* A ListLedger or GetSeatUsage of HEALTHY on c; returns the gRPC code. */
static int ledger_call_on(struct das_client *c, enum das_rpc_method m,
			  int timeout_ms, struct das_call_status *st)
{
	Deviceassignment__V1__ListLedgerRequest l =
		DEVICEASSIGNMENT__V1__LIST_LEDGER_REQUEST__INIT;
	Deviceassignment__V1__GetSeatUsageRequest u =
		DEVICEASSIGNMENT__V1__GET_SEAT_USAGE_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;

	l.customer_tenant_id = (char *)HEALTHY;
	u.customer_tenant_id = (char *)HEALTHY;
	if (das_client_call(c, m, ledger_token,
			    m == DAS_RPC_LIST_LEDGER ? &l.base : &u.base, &resp,
			    timeout_ms, st) != 0)
		return -1;
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return st->code;
}

struct stall_caller {
	pthread_t thread;
	const char *addr;
	int index;
	enum stall_call call;
	int timeout_ms;
	int code;
	char reason[64];
	double ms;
	atomic_bool is_done;
};

/* The deadline of the calls of a stall_round. */
#define STALL_CALL_MS 3000

/* One call to addr, on a connection of its own. */
static void *stall_caller_main(void *arg)
{
	struct stall_caller *c = arg;
	struct das_client *cl = das_client_new(c->addr);
	struct das_call_status st;
	int ms = c->timeout_ms;
	double t0 = now_ms();
	char id[16];

	switch (c->call) {
	case STALL_ASSIGN:
		c->code = assign(cl, HEALTHY, "h1", "hd1", 1, ms, &st);
		break;
	case STALL_UPSERT_USER:
		snprintf(id, sizeof(id), "s%d", c->index);
		c->code = upsert_user_on(cl, HEALTHY, id, ms, &st);
		break;
	case STALL_DELETE_DEVICE:
		snprintf(id, sizeof(id), "sd%d", c->index);
		c->code = delete_device_on(cl, HEALTHY, id, ms, &st);
		break;
	case STALL_LIST_LEDGER:
		c->code = ledger_call_on(cl, DAS_RPC_LIST_LEDGER, ms, &st);
		break;
	case STALL_SEAT_USAGE:
		c->code = ledger_call_on(cl, DAS_RPC_GET_SEAT_USAGE, ms, &st);
		break;
	}
	c->ms = now_ms() - t0;
	snprintf(c->reason, sizeof(c->reason), "%s",
		 c->code >= 0 ? st.reason : "");
	das_client_free(cl);
	atomic_store(&c->is_done, true);
	return NULL;
}

/* n callers to addr at once, calling in turn each of the first
 * n_kinds of enum stall_call, each with a deadline of timeout_ms. */
static void stall_callers_start(struct stall_caller *callers, int n,
				const char *addr, int n_kinds, int timeout_ms)
{
	for (int i = 0; i < n; i++) {
		callers[i].addr = addr;
		callers[i].index = i;
		callers[i].timeout_ms = timeout_ms;
		callers[i].call = (enum stall_call)(i % n_kinds);
		atomic_init(&callers[i].is_done, false);
		assert_int_equal(pthread_create(&callers[i].thread, NULL,
						stall_caller_main, &callers[i]),
				 0);
	}
}

/* Does user exist, as replica c sees it? */
static bool user_exists(struct das_client *c, const char *tenant,
			const char *user)
{
	Deviceassignment__V1__ListUserDevicesRequest r =
		DEVICEASSIGNMENT__V1__LIST_USER_DEVICES_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	struct das_call_status st;

	r.customer_tenant_id = (char *)tenant;
	r.user_id = (char *)user;
	assert_int_equal(das_client_call(c, DAS_RPC_LIST_USER_DEVICES,
					 assign_token, &r.base, &resp,
					 TIMEOUT_MS, &st),
			 0);
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	if (st.code != GRPC_OK)
		assert_string_equal(st.reason, "USER_NOT_FOUND");
	return st.code == GRPC_OK;
}

/* None of the users s0..s<n-1> the stalled callers asked for exists. */
static void assert_no_stall_users(struct das_client *c, int n)
{
	char id[16];

	for (int i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "s%d", i);
		assert_false(user_exists(c, HEALTHY, id));
	}
}

/*
 * STALL_CALLERS calls at once to the server at addr while its database
 * stalls, assigns and directory changes mixed; *late gets those that
 * waited (until their deadline). Each of the others must have been
 * refused at once with STORE_UNAVAILABLE.
 */
static void stall_round(const char *addr, int *late)
{
	struct stall_caller callers[STALL_CALLERS];

	*late = 0;
	stop_server_sessions();
	stall_callers_start(callers, STALL_CALLERS, addr, 5, STALL_CALL_MS);
	for (int i = 0; i < STALL_CALLERS; i++)
		pthread_join(callers[i].thread, NULL);
	/* Past every caller's deadline, so the waiting calls end without a
	 * write once the database answers (none is left for the next). */
	sleep_ms(500);
	resume_stopped();
	for (int i = 0; i < STALL_CALLERS; i++) {
		if (callers[i].code == GRPC_UNAVAILABLE &&
		    strcmp(callers[i].reason, "STORE_UNAVAILABLE") == 0)
			/* answered at once, not at the caller's deadline */
			assert_true(callers[i].ms < 1500.0);
		else
			(*late)++;
	}
}

/* Waits (10 s at most) until p has logged want calls answered
 * DEADLINE_EXCEEDED. */
static void deadline_lines_until(struct harness_proc *p, int want)
{
	double t0 = now_ms();

	while (harness_count_in_log(p, "code=DEADLINE_EXCEEDED") < want) {
		assert_true(now_ms() - t0 < 10000.0);
		sleep_ms(20);
	}
}

/* Calls p has answered with a failure: refused, or past the deadline. */
static int ended_lines(struct harness_proc *p)
{
	return harness_count_in_log(p, "code=UNAVAILABLE") +
	       harness_count_in_log(p, "code=DEADLINE_EXCEEDED");
}

/* Waits (10 s at most) until ended_lines(p) reaches want. */
static void ended_lines_until(struct harness_proc *p, int want)
{
	double t0 = now_ms();

	while (ended_lines(p) < want) {
		assert_true(now_ms() - t0 < 10000.0);
		sleep_ms(20);
	}
}

/* Calls the server at c until it answers an assign (10 s at most). */
static void assign_until_ok(struct das_client *c)
{
	struct das_call_status st;
	double t0 = now_ms();

	while (assign(c, HEALTHY, "h1", "hd1", 2, TIMEOUT_MS, &st) != GRPC_OK) {
		assert_true(now_ms() - t0 < 10000.0);
		sleep_ms(50);
	}
}

/*
 * While the database stalls, calls waiting for the store are bounded
 * (--store-max-waiting): past the bound each is answered UNAVAILABLE
 * (STORE_UNAVAILABLE) at once instead of joining the others, so a long
 * stall cannot collect every call made meanwhile (each holds its gRPC
 * call's memory; with a gateway in front, 60 s of stall took the server
 * from 32 to 146 MB, and the gateway's connections, holding more
 * cancelled calls than the stream cap, were closed as rapid-reset
 * floods). When the database answers again the waiting calls end, and
 * a second stall finds the whole bound free again.
 */
static void waiting_calls_bounded_when_database_stalls(void **state)
{
	char bound[16];
	const char *args[] = {"--store", db_spec, "--jwt-hs256-secret-file",
			      harness_secret_file(), "--store-max-waiting",
			      bound, NULL};
	struct harness_proc extra;
	struct das_client *c;
	int late;

	(void)state;
	snprintf(bound, sizeof(bound), "%d", STALL_MAX_WAITING);
	assert_int_equal(harness_start(&extra, DAS_SERVER_BIN, args, NULL), 0);
	c = das_client_new(extra.addr);
	assign_until_ok(c);
	for (int round = 1; round <= 2; round++) {
		int ended = ended_lines(&extra);

		stall_round(extra.addr, &late);
		fprintf(stderr, "replicas: database stalled (round %d): %d of "
				"%d calls refused at once, %d waited (bound "
				"%d)\n",
			round, STALL_CALLERS - late, STALL_CALLERS, late,
			STALL_MAX_WAITING);
		assert_int_equal(late, STALL_MAX_WAITING);
		/* Every call of the round has ended (a slot is free again
		 * once its call ends) before the next round counts them. */
		ended_lines_until(&extra, ended + STALL_CALLERS);
		assign_until_ok(c);
		assert_no_stall_users(c, STALL_CALLERS);
	}
	assert_true(harness_count_in_log(&extra, "calls wait for the store") >=
		    1);
	das_client_free(c);
	harness_stop(&extra, SIGTERM);
}

#define HOLD_CALLERS 40

/*
 * Calls waiting for a stalled database hold none of the server's workers:
 * while 40 calls wait (assigns, directory changes, ledger pages and seat
 * usage, each handed to the store), a Health Check made every 100 ms is
 * answered, each within the probe's bound. Before, a directory change or
 * a ledger query ran its transaction on the worker that took it: 40 of
 * them held all 16 workers of a replica, and a Check went unanswered
 * until its deadline. When the database answers (after the callers'
 * deadlines), none of the changes is made.
 */
static void calls_waiting_for_stalled_database_hold_no_worker(void **state)
{
	struct stall_caller callers[HOLD_CALLERS];
	int n_checks = 0, n_late = 0;
	double t0;

	(void)state;
	health_until(GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	stop_server_sessions();
	stall_callers_start(callers, HOLD_CALLERS, replica[0].addr, 5,
			    STALL_CALL_MS);
	/* Checks until the callers' deadlines are near (3 s). */
	for (t0 = now_ms(); now_ms() - t0 < 2000.0; n_checks++) {
		Grpc__Health__V1__HealthCheckRequest r =
			GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
		ProtobufCMessage *resp = NULL;
		struct das_call_status st;

		assert_int_equal(das_client_call(client[0],
						 DAS_RPC_HEALTH_CHECK, NULL,
						 &r.base, &resp,
						 2 * HEALTH_LATE_MS, &st),
				 0);
		if (resp)
			protobuf_c_message_free_unpacked(resp, NULL);
		if (st.code != GRPC_OK)
			fail_msg("Health Check %d while %d calls wait: %d %s",
				 n_checks, HOLD_CALLERS, st.code, st.message);
		sleep_ms(100);
	}
	for (int i = 0; i < HOLD_CALLERS; i++) {
		pthread_join(callers[i].thread, NULL);
		n_late += callers[i].code == GRPC_DEADLINE_EXCEEDED;
	}
	sleep_ms(500); /* past every caller's deadline, as stall_round */
	resume_stopped();
	fprintf(stderr, "replicas: database stalled: %d Health Checks "
			"answered while %d calls waited (assigns, directory "
			"changes, ledger queries; %d ended "
			"DEADLINE_EXCEEDED)\n",
		n_checks, HOLD_CALLERS, n_late);
	assert_int_equal(n_late, HOLD_CALLERS);
	health_until(GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	assert_no_stall_users(client[1], HOLD_CALLERS);
}

/* Deadline resets of calls waiting for a stalled database: streams at
 * once on one connection (the stream cap), their deadline, and how long
 * they go on. */
#define RESET_STREAMS 100
#define RESET_CALL_MS 300
#define RESET_RUN_MS 3000

struct deadline_caller {
	pthread_t thread;
	struct das_client *c;
	double until_ms;
	int n_calls, n_other; /* made; ended other than DEADLINE_EXCEEDED */
	int other_code;
	char other_message[512]; /* the last such call's grpc-message */
};

/* Assigns on the shared connection, each with a deadline of
 * RESET_CALL_MS, the next as soon as the last ends, until until_ms. */
static void *deadline_caller_main(void *arg)
{
	struct deadline_caller *d = arg;

	while (now_ms() < d->until_ms) {
		struct das_call_status st;
		int code = assign(d->c, HEALTHY, "h1", "hd1", 1, RESET_CALL_MS,
				  &st);

		d->n_calls++;
		if (code != GRPC_DEADLINE_EXCEEDED) {
			d->n_other++;
			d->other_code = code;
			memcpy(d->other_message, st.message,
			       sizeof(d->other_message));
		}
	}
	return NULL;
}

/*
 * A client whose calls reach their deadline while the database stalls
 * resets their streams (RST_STREAM: every gRPC client does at its
 * deadline, the gateway at --upstream-timeout-ms) and makes the next
 * calls at once, while the server's calls for the reset streams still
 * wait for the store. Those are no rapid reset: the connection stays
 * open, each call ends DEADLINE_EXCEEDED, and the flood guard closes
 * nothing. Here 100 streams (the cap) on one connection, 300 ms
 * deadlines, for 3 s: ~1,000 calls. Before, the guard counted every one
 * of them as unanswered until the store answered and closed the
 * connection as a rapid-reset flood once more than 200 waited (the third
 * round of deadlines); every call on it then failed at once. And each
 * call waiting in the store's queues is ended there at its deadline
 * (the store's reaper), while the database still stalls: before, they
 * all waited for it, each with its memory, and past 800 calls held
 * (the ninth round here) the guard closed the connection for that.
 */
static void deadline_resets_of_stalled_calls_are_no_flood(void **state)
{
	const char *args[] = {"--store", db_spec, "--jwt-hs256-secret-file",
			      harness_secret_file(), NULL};
	struct deadline_caller callers[RESET_STREAMS];
	struct harness_proc extra;
	struct das_client *c;
	int n_calls = 0, n_other = 0, other_code = 0;
	const char *other_message = "";

	(void)state;
	upsert_customer(HEALTHY, -1);
	upsert_user(HEALTHY, "h1");
	upsert_device(HEALTHY, "hd1", "h1");
	assert_int_equal(harness_start(&extra, DAS_SERVER_BIN, args, NULL), 0);
	c = das_client_new(extra.addr);
	assign_until_ok(c);
	stop_server_sessions();
	double until = now_ms() + RESET_RUN_MS;
	for (int i = 0; i < RESET_STREAMS; i++) {
		callers[i] = (struct deadline_caller){.c = c, .until_ms = until};
		assert_int_equal(pthread_create(&callers[i].thread, NULL,
						deadline_caller_main,
						&callers[i]),
				 0);
	}
	for (int i = 0; i < RESET_STREAMS; i++) {
		pthread_join(callers[i].thread, NULL);
		n_calls += callers[i].n_calls;
		n_other += callers[i].n_other;
		if (callers[i].n_other) {
			other_code = callers[i].other_code;
			other_message = callers[i].other_message;
		}
	}
	/* Any rule of the guard's: a rapid reset, bytes no call holds,
	 * streams held without a request. */
	int n_closed =
		harness_count_in_log(&extra, "grpc: closed the connection of") +
		harness_count_in_log(&extra, "its socket is gone already");
	/* The server has ended them, the database still stalled: all but
	 * those its connections took to the database before it stopped
	 * (a statement in flight is left to finish; at most one round). */
	int n_ended = 0;
	double t0 = now_ms();
	do {
		if (n_ended)
			sleep_ms(20);
		n_ended = harness_count_in_log(&extra,
					       "code=DEADLINE_EXCEEDED");
	} while (n_ended < n_calls - RESET_STREAMS &&
		 now_ms() - t0 < 2000.0);
	resume_stopped();
	fprintf(stderr, "replicas: database stalled: %d calls at %d ms "
			"deadlines on one connection of %d streams, %d ended "
			"other than DEADLINE_EXCEEDED (last %d), %d closes by "
			"the flood guard; the server ended %d of them "
			"DEADLINE_EXCEEDED while the database stalled\n",
		n_calls, RESET_CALL_MS, RESET_STREAMS, n_other, other_code,
		n_closed, n_ended);
	if (n_other) {
		/* Why, for a run that fails: the client's words and the
		 * server's log. */
		fprintf(stderr, "replicas: the last other call's message: %s\n",
			other_message);
		harness_dump_log(&extra);
	}
	assert_true(n_calls >= 2 * RESET_STREAMS * RESET_RUN_MS /
				       RESET_CALL_MS / 3);
	assert_int_equal(n_closed, 0);
	assert_int_equal(n_other, 0);
	assert_true(n_ended >= n_calls - RESET_STREAMS);
	assign_until_ok(c);
	das_client_free(c);
	harness_stop(&extra, SIGTERM);
}

/* The deadline of the calls made while the database stalls. */
#define LATE_CALL_MS 1000

/*
 * A call still waiting for the store when its deadline passes changes
 * nothing once the database answers again: its client was told
 * DEADLINE_EXCEEDED and has moved on, so a write applied now would be one
 * nobody learns of (a move undone behind the client's back, a seat taken
 * by a caller who gave up). Each such call is answered DEADLINE_EXCEEDED
 * (an access line) without deciding or writing. Before, the waiting
 * calls all ran their writes once the database answered.
 */
static void calls_past_their_deadline_change_nothing(void **state)
{
	struct das_call_status st;
	int before[2];

	(void)state;
	upsert_user(HEALTHY, "late1");
	upsert_device(HEALTHY, "lated1", "late1");
	upsert_device(HEALTHY, "lated2", "late1");
	assert_int_equal(assign(client[0], HEALTHY, "late1", "lated1", 2,
				TIMEOUT_MS, &st),
			 GRPC_OK);
	for (int i = 0; i < 2; i++)
		before[i] = harness_count_in_log(&replica[i],
						 "code=DEADLINE_EXCEEDED");
	stop_server_sessions();
	/* a move on one replica; a new assign and an unassign on the other */
	assert_int_equal(assign(client[0], HEALTHY, "late1", "lated1", 1,
				LATE_CALL_MS, &st),
			 GRPC_DEADLINE_EXCEEDED);
	assert_int_equal(assign(client[1], HEALTHY, "late1", "lated2", 3,
				LATE_CALL_MS, &st),
			 GRPC_DEADLINE_EXCEEDED);
	assert_int_equal(unassign(client[1], HEALTHY, "late1", "lated1",
				  LATE_CALL_MS, &st),
			 GRPC_DEADLINE_EXCEEDED);
	/* and two directory changes */
	assert_int_equal(upsert_user_on(client[0], HEALTHY, "late2",
					LATE_CALL_MS, &st),
			 GRPC_DEADLINE_EXCEEDED);
	assert_int_equal(delete_device_on(client[1], HEALTHY, "lated2",
					  LATE_CALL_MS, &st),
			 GRPC_DEADLINE_EXCEEDED);
	/* The stall outlasts the last deadline by a margin: a call whose
	 * turn comes just before its deadline is carried out, rightly. */
	sleep_ms(LATE_CALL_MS / 2);
	resume_stopped();
	deadline_lines_until(&replica[0], before[0] + 2);
	deadline_lines_until(&replica[1], before[1] + 3);
	assert_int_equal(listed_type(client[0], HEALTHY, "late1", "lated1"),
			 2);
	assert_int_equal(listed_type(client[1], HEALTHY, "late1", "lated2"),
			 0);
	assert_false(user_exists(client[0], HEALTHY, "late2"));
	/* lated2 is still there: it can be assigned */
	assert_int_equal(assign(client[1], HEALTHY, "late1", "lated2", 3,
				TIMEOUT_MS, &st),
			 GRPC_OK);
	fprintf(stderr, "replicas: 5 calls past their deadline while the "
			"database stalled: answered DEADLINE_EXCEEDED once it "
			"answered, nothing changed\n");
}

/* PUT .../assign of device to user as type through gw within
 * timeout_ms; returns the HTTP status (0: no answer). */
static long rest_assign(const struct harness_proc *gw, const char *tenant,
			const char *user, const char *device, const char *type,
			long timeout_ms)
{
	CURL *c = curl_easy_init();
	struct curl_slist *hl;
	long status = 0;

	assert_non_null(c);
	hl = rest_assign_setup(c, gw->addr, tenant, user, device, type,
			       timeout_ms);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	return status;
}

/*
 * The same through the gateway (the README's 504 row): a move asked over
 * REST while the database stalls is answered 504 once the gateway's
 * upstream deadline (--upstream-timeout-ms) passes, and when the
 * database answers the move is not made: the deadline went to the server
 * with the call (grpc-timeout), which drops the change.
 */
static void rest_change_past_its_deadline_is_dropped(void **state)
{
	const char *args[] = {"--upstream", replica[0].addr,
			      "--upstream-timeout-ms", "1000", "--threads", "1",
			      "--log-level", "warn", NULL};
	struct harness_proc gw;
	int before;

	(void)state;
	upsert_user(HEALTHY, "late3");
	upsert_device(HEALTHY, "lated3", "late3");
	assert_int_equal(harness_start(&gw, DAS_GATEWAY_BIN, args, NULL), 0);
	/* Its connection to the server ready, as a client would find it. */
	assert_int_equal(rest_assign(&gw, HEALTHY, "late3", "lated3", "mobile",
				     TIMEOUT_MS),
			 201);
	before = harness_count_in_log(&replica[0], "code=DEADLINE_EXCEEDED");
	stop_server_sessions();
	assert_int_equal(rest_assign(&gw, HEALTHY, "late3", "lated3",
				     "desktop", TIMEOUT_MS),
			 504);
	sleep_ms(LATE_CALL_MS / 2); /* past the deadline, as above */
	resume_stopped();
	deadline_lines_until(&replica[0], before + 1);
	assert_int_equal(listed_type(client[1], HEALTHY, "late3", "lated3"),
			 DAS_CLIENT_MOBILE);
	assert_int_equal(harness_stop(&gw, SIGTERM), 0);
	fprintf(stderr, "replicas: a move over REST while the database "
			"stalled: 504, and not made once it answered\n");
}

#if defined(__SANITIZE_ADDRESS__)
#define IS_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define IS_SANITIZED 1
#endif
#endif
#ifndef IS_SANITIZED
#define IS_SANITIZED 0
#endif

#define BURST_CLIENTS 40 /* connections, 100 streams each at most */
#define BURST_CALLS 4000
/* FLOOD_WIRE_HIGH_RSS_KIB of service/grpc/flood_guard.h */
#define HIGH_RSS_KIB (64L << 10)


struct burst_call {
	pthread_t thread;
	struct das_client *client;
};

static void *burst_call_main(void *arg)
{
	struct burst_call *b = arg;
	struct das_call_status st;

	(void)assign(b->client, HEALTHY, "h1", "hd1", 1, 4000, &st);
	return NULL;
}

/*
 * The memory a burst of waiting calls held goes back to the system once
 * they are over, not only a flood's: 4,000 calls wait on a stalled
 * database, which then answers. Before, the server stayed at its peak
 * (a 60 s stall behind a gateway: 134 MB for good); the guard's watcher
 * now trims when more than 32 MiB of a RSS past 64 MiB holds nothing
 * malloc handed out. Asserted in a build without sanitizers (theirs keep
 * what was freed), printed in every build.
 */
static void memory_returns_after_a_stall(void **state)
{
	const char *args[] = {"--store", db_spec, "--jwt-hs256-secret-file",
			      harness_secret_file(), NULL};
	struct harness_proc extra;
	struct das_client *clients[BURST_CLIENTS];
	static struct burst_call calls[BURST_CALLS];
	pthread_attr_t attr;
	long before, peak = 0, after = -1;
	double t0;

	(void)state;
	assert_int_equal(harness_start(&extra, DAS_SERVER_BIN, args, NULL), 0);
	for (int i = 0; i < BURST_CLIENTS; i++) {
		clients[i] = das_client_new(extra.addr);
		assert_non_null(clients[i]);
	}
	assign_until_ok(clients[0]);
	before = harness_proc_kib(extra.pid, "VmRSS");
	stop_server_sessions();
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (int i = 0; i < BURST_CALLS; i++) {
		calls[i].client = clients[i % BURST_CLIENTS];
		assert_int_equal(pthread_create(&calls[i].thread, &attr,
						burst_call_main, &calls[i]),
				 0);
	}
	pthread_attr_destroy(&attr);
	t0 = now_ms();
	while (now_ms() - t0 < 3000.0) {
		long rss = harness_proc_kib(extra.pid, "VmRSS");
		if (rss > peak)
			peak = rss;
		sleep_ms(100);
	}
	resume_stopped();
	for (int i = 0; i < BURST_CALLS; i++)
		pthread_join(calls[i].thread, NULL);
	t0 = now_ms();
	do {
		sleep_ms(200);
		after = harness_proc_kib(extra.pid, "VmRSS");
	} while (after > HIGH_RSS_KIB && now_ms() - t0 < 8000.0);
	fprintf(stderr,
		"replicas: %d calls waiting on a stalled database: server RSS "
		"before %ld KiB, peak %ld KiB, %.0f ms after the calls ended "
		"%ld KiB\n",
		BURST_CALLS, before, peak, now_ms() - t0, after);
	if (!IS_SANITIZED) {
		assert_true(peak > HIGH_RSS_KIB);
		assert_true(after <= HIGH_RSS_KIB);
	}
	for (int i = 0; i < BURST_CLIENTS; i++)
		das_client_free(clients[i]);
	harness_stop(&extra, SIGTERM);
}

/* The deadline of the calls waiting when the server is stopped: far past
 * its grace, so that only the shutdown can end them. */
#define STOP_CALL_MS 30000
/* How soon after SIGTERM the server must have exited: its grace (500 ms)
 * plus PostgreSQL's connect_timeout (5 s), which bounds a store thread
 * that was connecting to the stalled database, plus a margin. */
#define STOP_EXIT_MS 9000

/*
 * Starts a server with args on the database, which then stalls, and
 * STALL_CALLERS callers of five kinds with STOP_CALL_MS deadlines; returns
 * once those past --store-max-waiting (STALL_MAX_WAITING) were refused at
 * once, so that exactly the bound wait for the store.
 */
static void stalled_server_start(struct harness_proc *srv,
				 const char *const *args,
				 struct stall_caller *callers)
{
	struct das_client *c;
	int n_done;
	double t0;

	assert_int_equal(harness_start(srv, DAS_SERVER_BIN, args, NULL), 0);
	c = das_client_new(srv->addr);
	assign_until_ok(c);
	das_client_free(c);
	stop_server_sessions();
	stall_callers_start(callers, STALL_CALLERS, srv->addr, 5,
			    STOP_CALL_MS);
	t0 = now_ms();
	do {
		assert_true(now_ms() - t0 < 10000.0);
		sleep_ms(20);
		n_done = 0;
		for (int i = 0; i < STALL_CALLERS; i++)
			n_done += atomic_load(&callers[i].is_done);
	} while (n_done < STALL_CALLERS - STALL_MAX_WAITING);
}

/*
 * SIGTERM while the database stalls: the server drains for its grace,
 * then cuts what still waits on the store (store_cut): the queued calls
 * and the statements in flight end UNAVAILABLE, and the server exits 0
 * within seconds, the database still stalled. Before, such calls held
 * the process: it cancelled them after the grace and then waited in
 * pg_close for the store's threads, blocked in libpq for as long as the
 * stall lasted (an orchestrator's SIGKILL was the only way out); once the
 * database answered, those threads answered calls into the server freed
 * meanwhile (AddressSanitizer: heap-use-after-free in send_reply). None
 * of the changes the cut calls asked for is made.
 */
static void sigterm_while_database_stalls_exits(void **state)
{
	char bound[16];
	const char *args[] = {"--store", db_spec, "--jwt-hs256-secret-file",
			      harness_secret_file(), "--store-max-waiting",
			      bound, "--shutdown-grace", "500", NULL};
	struct stall_caller callers[STALL_CALLERS];
	struct harness_proc extra;
	int status;
	double t0;

	(void)state;
	snprintf(bound, sizeof(bound), "%d", STALL_MAX_WAITING);
	stalled_server_start(&extra, args, callers);
	t0 = now_ms();
	kill(extra.pid, SIGTERM);
	if (harness_wait_exit(&extra, STOP_EXIT_MS, &status) != 0) {
		resume_stopped();
		harness_stop(&extra, SIGKILL);
		fail_msg("the server did not exit within %d ms of SIGTERM "
			 "while the database stalled",
			 STOP_EXIT_MS);
	}
	fprintf(stderr, "replicas: SIGTERM with %d calls waiting on a "
			"stalled database: exit %d after %.0f ms\n",
		STALL_MAX_WAITING, status, now_ms() - t0);
	assert_int_equal(status, 0);
	for (int i = 0; i < STALL_CALLERS; i++) {
		pthread_join(callers[i].thread, NULL);
		assert_int_not_equal(callers[i].code, GRPC_OK);
		assert_true(callers[i].ms < STOP_CALL_MS / 2);
	}
	assert_true(harness_count_in_log(&extra, "postgresql: shutdown: cut") ==
		    1);
	resume_stopped();
	/* Nothing the cut calls asked for was made. */
	assert_int_equal(listed_type(client[1], HEALTHY, "h1", "hd1"), 2);
	assert_no_stall_users(client[1], STALL_CALLERS);
}

/*
 * The server's last resort at shutdown: calls the store still holds 10 s
 * after the cut (here store threads connecting to the stalled database
 * with a 30 s connect_timeout, which the URI may set) would be answered
 * into a server that is gone, so it is not freed: the server logs an
 * ERROR naming them and exits 1 at once, the database still stalled.
 */
static void sigterm_gives_up_on_calls_still_held(void **state)
{
	char bound[16], spec[PG_HARNESS_URI_SIZE + 32];
	const char *args[] = {"--store", spec, "--jwt-hs256-secret-file",
			      harness_secret_file(), "--store-max-waiting",
			      bound, "--shutdown-grace", "500", NULL};
	struct stall_caller callers[STALL_CALLERS];
	struct harness_proc extra;
	int status;
	double t0, ms;

	(void)state;
	snprintf(bound, sizeof(bound), "%d", STALL_MAX_WAITING);
	snprintf(spec, sizeof(spec), "%s%cconnect_timeout=30", db_spec,
		 strchr(db_spec, '?') ? '&' : '?');
	stalled_server_start(&extra, args, callers);
	t0 = now_ms();
	kill(extra.pid, SIGTERM);
	if (harness_wait_exit(&extra, 20000, &status) != 0) {
		resume_stopped();
		harness_stop(&extra, SIGKILL);
		fail_msg("the server did not give up on the calls it held");
	}
	ms = now_ms() - t0;
	fprintf(stderr, "replicas: SIGTERM with store threads connecting for "
			"30 s: exit %d after %.0f ms\n",
		status, ms);
	assert_int_equal(status, 1);
	assert_true(ms >= 10000.0); /* it waited for them first */
	assert_true(harness_count_in_log(&extra, "calls still wait for the "
						 "store after 10000 ms") == 1);
	for (int i = 0; i < STALL_CALLERS; i++) {
		pthread_join(callers[i].thread, NULL);
		assert_int_not_equal(callers[i].code, GRPC_OK);
	}
	resume_stopped();
	assert_int_equal(listed_type(client[1], HEALTHY, "h1", "hd1"), 2);
	assert_no_stall_users(client[1], STALL_CALLERS);
}

/* How long database_refusing_connections_bounded calls. */
#define REFUSED_MS 2000

/*
 * While the database refuses connections, a server answers each call
 * UNAVAILABLE at once, but tries a new connection at most every 200 ms
 * (one thread at a time) and writes its WARN line for failed calls at
 * most once a second; the access lines still count every call. Before,
 * each call tried a connection of its own and logged both failures:
 * under load 1,500 attempts and 26,000 log lines a second. Once the
 * database takes connections again, calls succeed within the interval.
 */
static void database_refusing_connections_bounded(void **state)
{
	const char *args[] = {"--store", db_spec, "--jwt-hs256-secret-file",
			      harness_secret_file(), NULL};
	const char *db = strrchr(db_spec, '/') + 1;
	struct harness_proc extra;
	struct das_call_status st;
	struct das_client *c;
	int n_calls = 0, n_attempts, n_warned;
	char sql[256];
	double t0;

	(void)state;
	assert_int_equal(harness_start(&extra, DAS_SERVER_BIN, args, NULL), 0);
	c = das_client_new(extra.addr);
	assign_until_ok(c);
	snprintf(sql, sizeof(sql),
		 "ALTER DATABASE \"%s\" ALLOW_CONNECTIONS false", db);
	pg_admin(sql);
	pg_admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
		 "WHERE application_name = 'device-assignment-server'");
	for (t0 = now_ms(); now_ms() - t0 < REFUSED_MS; n_calls++) {
		assert_int_equal(assign(c, HEALTHY, "h1", "hd1", 1, TIMEOUT_MS,
					&st),
				 GRPC_UNAVAILABLE);
		assert_string_equal(st.reason, "STORE_UNAVAILABLE");
	}
	n_attempts = harness_count_in_log(&extra, "cannot connect");
	n_warned = harness_count_in_log(&extra, "request-id=");
	fprintf(stderr, "replicas: database refusing connections for %d ms: "
			"%d calls, %d connection attempts failed, %d WARN "
			"lines for failed calls\n",
		REFUSED_MS, n_calls, n_attempts, n_warned);
	snprintf(sql, sizeof(sql),
		 "ALTER DATABASE \"%s\" ALLOW_CONNECTIONS true", db);
	pg_admin(sql);
	assert_true(n_calls >= 100);
	/* One attempt per 200 ms, and those that raced the first failure. */
	assert_true(n_attempts >= 1 && n_attempts <= REFUSED_MS / 200 + 20);
	assert_true(n_warned >= 1 && n_warned <= REFUSED_MS / 1000 + 2);
	t0 = now_ms();
	assign_until_ok(c);
	fprintf(stderr, "replicas: database back: an assign OK after %.0f ms\n",
		now_ms() - t0);
	das_client_free(c);
	assert_int_equal(harness_stop(&extra, SIGTERM), 0);
}

/* Advisory locks granted to nobody yet: sessions waiting for one. */
static int advisory_waiters(void)
{
	PGresult *res = pg_admin_result("SELECT count(*) FROM pg_locks WHERE "
					"locktype = 'advisory' AND NOT granted");
	int n = atoi(PQgetvalue(res, 0, 0));

	PQclear(res);
	return n;
}

/*
 * SIGTERM while a server is still starting: another session holds the
 * schema lock that every server takes to create or migrate the schema (as
 * a replica stuck in its migration would), so the new one waits in
 * store_open. It exits 0 at once, never listening, and says why. Before,
 * the signals it blocks for sigwait were looked at only once it listened,
 * so it waited for as long as the lock was held, SIGTERM or not.
 */
/* Holds the schema lock in a session of its own (returned) and starts a
 * server into srv, which waits for it. */
static PGconn *server_held_at_start(struct harness_proc *srv)
{
	const char *args[] = {"--store", db_spec, "--jwt-hs256-secret-file",
			      harness_secret_file(), NULL};
	PGconn *holder = PQconnectdb(db_spec);
	double t0;

	assert_int_equal(PQstatus(holder), CONNECTION_OK);
	PGresult *res = PQexec(
		holder, "SELECT pg_advisory_lock(x'7364617300000001'::int8)");
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	PQclear(res);
	assert_int_equal(harness_spawn(srv, DAS_SERVER_BIN, args, NULL), 0);
	t0 = now_ms();
	while (advisory_waiters() < 1) {
		if (now_ms() - t0 > 10000.0) {
			PQfinish(holder);
			harness_stop(srv, SIGKILL);
			fail_msg("the server never waited for the schema lock");
		}
		sleep_ms(20);
	}
	return holder;
}

static void sigterm_while_starting_exits(void **state)
{
	struct harness_proc srv;
	int status;
	double t0;

	(void)state;
	PGconn *holder = server_held_at_start(&srv);
	t0 = now_ms();
	kill(srv.pid, SIGTERM);
	int waited = harness_wait_exit(&srv, STOP_EXIT_MS, &status);
	double took = now_ms() - t0;
	PQfinish(holder); /* lets a server that did not exit go on */
	if (waited != 0) {
		harness_stop(&srv, SIGKILL);
		fail_msg("the server did not exit within %d ms of SIGTERM "
			 "while it waited for the schema lock",
			 STOP_EXIT_MS);
	}
	fprintf(stderr,
		"replicas: SIGTERM while starting: exit %d after %.0f ms\n",
		status, took);
	assert_int_equal(status, 0);
	assert_true(took < 2000.0);
	assert_int_equal(harness_count_in_log(&srv, "while starting: stopped "
						    "before listening"),
			 1);
	assert_int_equal(harness_count_in_log(&srv, "listening on"), 0);
}

/* A SIGHUP while the server starts is not lost: it reloads the keys once
 * the server listens. */
static void sighup_while_starting_reloads_after(void **state)
{
	struct harness_proc srv;

	(void)state;
	PGconn *holder = server_held_at_start(&srv);
	kill(srv.pid, SIGHUP);
	sleep_ms(100); /* taken by the watch, not yet acted on */
	assert_int_equal(harness_count_in_log(&srv, "reload:"), 0);
	PQfinish(holder);
	harness_wait_in_log(&srv, "listening on", 1);
	harness_wait_in_log(&srv, "reload: JWT keys reloaded", 1);
	assert_int_equal(harness_stop(&srv, SIGTERM), 0);
}

static int setup(void **state)
{
	char err[512];

	if (pg_harness_start(&pg, err, sizeof(err)) != 0) {
		fprintf(stderr, "replicas: cannot run a private PostgreSQL "
				"server: %s\n",
			err);
		return -1;
	}
	if (pg_harness_create_db(&pg, db_spec, sizeof(db_spec), err,
				 sizeof(err)) != 0) {
		fprintf(stderr, "replicas: %s\n", err);
		return -1;
	}
	/* Before any thread: curl's global setup is not thread-safe. */
	curl_global_init(CURL_GLOBAL_DEFAULT);
	admin_token = harness_mint("admin", all_tenants, 1, "directory:admin",
				   3600);
	assign_token = harness_mint("agent", all_tenants, 1, "devices:assign",
				    3600);
	ledger_token = harness_mint("auditor", all_tenants, 1, "ledger:read",
				    3600);
	start_replica(0);
	start_replica(1);
	return 0;
}

static int teardown(void **state)
{
	resume_stopped();
	for (int i = 0; i < 2; i++) {
		das_client_free(client[i]);
		client[i] = NULL;
		if (replica[i].pid)
			harness_stop(&replica[i], SIGTERM);
	}
	free(admin_token);
	free(ledger_token);
	free(assign_token);
	pg_harness_stop(&pg);
	curl_global_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(seat_race_over_two_replicas),
		cmocka_unit_test(seat_race_through_gateway),
		cmocka_unit_test(sigkill_one_replica_under_load),
		cmocka_unit_test(database_restart_under_load),
		cmocka_unit_test(health_follows_database),
		cmocka_unit_test(database_refusing_connections_bounded),
		cmocka_unit_test(sigterm_while_starting_exits),
		cmocka_unit_test(sighup_while_starting_reloads_after),
		cmocka_unit_test(health_says_when_database_stalls),
		cmocka_unit_test(waiting_calls_bounded_when_database_stalls),
		cmocka_unit_test(calls_past_their_deadline_change_nothing),
		cmocka_unit_test(deadline_resets_of_stalled_calls_are_no_flood),
		cmocka_unit_test(rest_change_past_its_deadline_is_dropped),
		cmocka_unit_test(
			calls_waiting_for_stalled_database_hold_no_worker),
		cmocka_unit_test(memory_returns_after_a_stall),
		cmocka_unit_test(sigterm_while_database_stalls_exits),
		cmocka_unit_test(sigterm_gives_up_on_calls_still_held),
	};

	/* DAS_TEST_FILTER=health_* runs the tests whose name matches. */
	if (getenv("DAS_TEST_FILTER"))
		cmocka_set_test_filter(getenv("DAS_TEST_FILTER"));
	return harness_finish(cmocka_run_group_tests(tests, setup, teardown));
}

#endif
