/*
 * The ledger and the seats, end to end on both faces: gRPC (ListLedger,
 * GetSeatUsage, x-request-id into the ledger row), REST through the real
 * gateway (the /api and accounts forms, paging by nextPageToken while
 * writes go on, the error catalog and the 400s that name the parameter),
 * the CLI (ledger, seats), and --ledger-retention-days pruning rows older
 * than the retention at start.
 */
#include <pthread.h>
#include <setjmp.h>
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
#include <jansson.h>

#include "deviceassignment/v1/device_assignment.pb-c.h"
#include "deviceassignment/v1/directory.pb-c.h"

#include "client/das_client.h"
#include "harness.h"
#include "service/store/store.h"

#define CUST "0f8fad5b-d9cb-469f-a165-70867728950e"
#define ACCT "7c9e6679-7425-40de-944b-e07fc1f90ae7"
#define OTHER "16fd2706-8baf-433b-82eb-8c7fada847da"
#define WIDE "3f2504e0-4f89-11d3-9a0c-0305e82c3301" /* longest rows */
#define WIDE_ROWS 600
#define TIMEOUT_MS 10000
#define OLD_DAYS 400

static struct harness_proc server, gateway;
static struct das_client *client;
static char *admin_token, *reader_token, *assign_token;
static const char *const all_tenants[] = {"*"};

struct resp {
	long status;
	char body[256 * 1024];
	size_t body_len;
};

/* ---- HTTP ---- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct resp *r = arg;

	return harness_append(r->body, sizeof(r->body), &r->body_len, p,
			      size * n);
}

static json_t *http(const char *method, const char *path, const char *token,
		    const char *request_id, long want_status)
{
	static struct resp r;
	CURL *c = curl_easy_init();
	struct curl_slist *hl = NULL;
	char url[4096], auth[4096], rid[256];
	json_t *body;

	assert_non_null(c);
	memset(&r, 0, sizeof(r));
	snprintf(url, sizeof(url), "http://%s%s", gateway.addr, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
	if (token) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		hl = curl_slist_append(hl, auth);
	}
	if (request_id) {
		snprintf(rid, sizeof(rid), "X-Request-Id: %s", request_id);
		hl = curl_slist_append(hl, rid);
	}
	if (strcmp(method, "PUT") == 0) {
		hl = curl_slist_append(hl, "Content-Type: application/json");
		hl = curl_slist_append(hl, "accept-charges: true");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS,
				 "{\"clientType\":\"desktop\"}");
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	if (r.status != want_status)
		fail_msg("%s %s: %ld, want %ld: %s", method, path, r.status,
			 want_status, r.body);
	body = json_loads(r.body, 0, NULL);
	assert_non_null(body);
	return body;
}

static bool is_timestamp(const char *s)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddddddZ";

	if (!s || strlen(s) != sizeof(shape) - 1)
		return false;
	for (size_t i = 0; shape[i]; i++)
		if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9')
				    : s[i] != shape[i])
			return false;
	return true;
}

/* A 4xx body: status and message containing want (NULL: any). */
static void expect_error(const char *path, const char *token, long status,
			 const char *want)
{
	json_t *b = http("GET", path, token, NULL, status);
	const char *msg = json_string_value(json_object_get(b, "message"));

	assert_int_equal(json_integer_value(json_object_get(b, "error")),
			 status);
	if (want && (!msg || !strstr(msg, want)))
		fail_msg("%s: message '%s' lacks '%s'", path, msg ? msg : "",
			 want);
	json_decref(b);
}

/* ---- gRPC ---- */

static void call_ok(enum das_rpc_method m, const char *token,
		    const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	struct das_call_status st;

	assert_int_equal(das_client_call(client, m, token, req, resp,
					 TIMEOUT_MS, &st),
			 0);
	if (st.code != 0)
		fail_msg("%s: %d %s %s", das_rpc_method(m)->path, st.code,
			 st.reason, st.message);
}

static void assign_grpc(const char *user, const char *device, int type,
			bool accept)
{
	Deviceassignment__V1__AssignDeviceRequest r =
		DEVICEASSIGNMENT__V1__ASSIGN_DEVICE_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;

	r.customer_tenant_id = CUST;
	r.user_id = (char *)user;
	r.device_id = (char *)device;
	r.client_type = (Deviceassignment__V1__ClientType)type;
	r.accept_charges = accept;
	call_ok(DAS_RPC_ASSIGN_DEVICE, assign_token, &r.base, &resp);
	protobuf_c_message_free_unpacked(resp, NULL);
}

static void unassign_grpc(const char *user, const char *device)
{
	Deviceassignment__V1__UnassignDeviceRequest r =
		DEVICEASSIGNMENT__V1__UNASSIGN_DEVICE_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;

	r.customer_tenant_id = CUST;
	r.user_id = (char *)user;
	r.device_id = (char *)device;
	call_ok(DAS_RPC_UNASSIGN_DEVICE, assign_token, &r.base, &resp);
	protobuf_c_message_free_unpacked(resp, NULL);
}

/* The whole ledger of CUST through gRPC, oldest first. */
static size_t grpc_ledger(int64_t *ids, size_t max, char rids[][64])
{
	Deviceassignment__V1__ListLedgerRequest r =
		DEVICEASSIGNMENT__V1__LIST_LEDGER_REQUEST__INIT;
	char token[128] = "";
	size_t n = 0;

	r.customer_tenant_id = CUST;
	r.page_size = 500;
	r.order = DEVICEASSIGNMENT__V1__LEDGER_ORDER__LEDGER_ORDER_OLDEST_FIRST;
	for (;;) {
		Deviceassignment__V1__ListLedgerResponse *resp = NULL;

		r.page_token = token;
		call_ok(DAS_RPC_LIST_LEDGER, reader_token, &r.base,
			(ProtobufCMessage **)&resp);
		for (size_t i = 0; i < resp->n_entries && n < max; i++) {
			if (rids)
				snprintf(rids[n], 64, "%s",
					 resp->entries[i]->request_id);
			ids[n++] = resp->entries[i]->sequence;
		}
		snprintf(token, sizeof(token), "%s", resp->next_page_token);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
		if (!token[0])
			return n;
	}
}

/* ---- fixture ---- */

/*
 * The directory, written straight into the database before the server
 * starts, with two ledger rows from OLD_DAYS ago that retention must drop.
 */
static void seed_database(const char *spec)
{
	struct store *st = NULL;
	struct store_options opt = {.pool_size = 1, .busy_timeout_ms = 5000};
	struct store_tx *tx = NULL;
	struct store_customer c;
	struct domain_change ch = {.user = "u9", .device = "d9",
				   .from_type = DAS_CLIENT_NONE,
				   .to_type = DAS_CLIENT_DESKTOP};
	struct store_actor old = {"old-actor",
				  {time(NULL) - OLD_DAYS * 86400LL, 0},
				  "old-request"};
	char err[256];
	bool is_changed;

	assert_int_equal(store_open(spec, &opt, &st, err, sizeof(err)),
			 STORE_OK);
	memset(&c, 0, sizeof(c));
	snprintf(c.tenant, sizeof(c.tenant), CUST);
	c.has_account = true;
	snprintf(c.account, sizeof(c.account), ACCT);
	c.is_seat_limited = true;
	c.included_seats = 1;
	assert_int_equal(store_begin(st, CUST, false, &tx), STORE_OK);
	assert_int_equal(store_customer_put(tx, &c, &is_changed), STORE_OK);
	for (int u = 1; u <= 3; u++) {
		char user[8], dev[8];

		snprintf(user, sizeof(user), "u%d", u);
		assert_int_equal(store_user_put(tx, CUST, user,
						"customer_user_uc "
						"customer_user_uc_softphone",
						&is_changed),
				 STORE_OK);
		for (int d = 1; d <= 2; d++) {
			snprintf(dev, sizeof(dev), "d%d%d", u, d);
			assert_int_equal(store_device_put(tx, CUST, dev, user,
							  &is_changed),
					 STORE_OK);
		}
	}
	assert_int_equal(store_user_put(tx, CUST, "u9", "customer_user_uc",
					&is_changed),
			 STORE_OK);
	assert_int_equal(store_device_put(tx, CUST, "d9", "u9", &is_changed),
			 STORE_OK);
	assert_int_equal(store_apply(tx, CUST, &ch, 1, &old), STORE_OK);
	ch.from_type = DAS_CLIENT_DESKTOP;
	ch.to_type = DAS_CLIENT_NONE;
	assert_int_equal(store_apply(tx, CUST, &ch, 1, &old), STORE_OK);
	assert_int_equal(store_commit(tx), STORE_OK);

	/* WIDE: 600 rows with a 128-byte actor and request id each. */
	{
		char sub[DOMAIN_SUB_SIZE], rid[STORE_REQUEST_ID_SIZE];
		struct store_actor wide = {sub, {time(NULL), 0}, rid};

		memset(sub, 'a', sizeof(sub) - 1);
		sub[sizeof(sub) - 1] = '\0';
		memset(rid, 'r', sizeof(rid) - 1);
		rid[sizeof(rid) - 1] = '\0';
		snprintf(c.tenant, sizeof(c.tenant), WIDE);
		c.is_seat_limited = false;
		assert_int_equal(store_begin(st, WIDE, false, &tx), STORE_OK);
		assert_int_equal(store_customer_put(tx, &c, &is_changed),
				 STORE_OK);
		assert_int_equal(store_user_put(tx, WIDE, "u1", "",
						&is_changed),
				 STORE_OK);
		assert_int_equal(store_device_put(tx, WIDE, "d1", "u1",
						  &is_changed),
				 STORE_OK);
		for (int i = 0; i < WIDE_ROWS; i++) {
			struct domain_change w = {
				.user = "u1",
				.device = "d1",
				.from_type = i % 2 ? DAS_CLIENT_DESKTOP
						   : DAS_CLIENT_NONE,
				.to_type = i % 2 ? DAS_CLIENT_NONE
						 : DAS_CLIENT_DESKTOP};
			assert_int_equal(store_apply(tx, WIDE, &w, 1, &wide),
					 STORE_OK);
		}
		assert_int_equal(store_commit(tx), STORE_OK);
	}
	store_close(st);
}

static int group_setup(void **state)
{
	char spec[600], path[512];
	const char *server_args[] = {"--store",
				     spec,
				     "--jwt-hs256-secret-file",
				     harness_secret_file(),
				     "--ledger-retention-days",
				     "30",
				     "--ledger-prune-interval",
				     "1",
				     NULL};

	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	snprintf(spec, sizeof(spec), "sqlite:%s",
		 harness_path("ledger.db", path, sizeof(path)));
	seed_database(spec);
	if (harness_start(&server, DAS_SERVER_BIN, server_args, NULL) != 0)
		return -1;
	const char *gw_args[] = {"--upstream", server.addr, NULL};
	if (harness_start(&gateway, DAS_GATEWAY_BIN, gw_args, NULL) != 0)
		return -1;
	client = das_client_new(server.addr);
	admin_token = harness_mint("admin", all_tenants, 1, "directory:admin",
				   3600);
	reader_token = harness_mint("auditor", (const char *const[]){ACCT}, 1,
				    "ledger:read", 3600);
	assign_token = harness_mint("assigner", all_tenants, 1,
				    "devices:assign", 3600);
	return client ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	das_client_free(client);
	free(admin_token);
	free(reader_token);
	free(assign_token);
	curl_global_cleanup();
	return 0;
}

/* ---- tests ---- */

/* The two rows stamped OLD_DAYS ago are pruned by the start-up run. */
static void retention_prunes_old_rows(void **state)
{
	int64_t ids[64];
	char rids[64][64];
	size_t n = 0;

	(void)state;
	for (int i = 0; i < 100; i++) {
		n = grpc_ledger(ids, 64, rids);
		bool has_old = false;
		for (size_t k = 0; k < n; k++)
			has_old |= strcmp(rids[k], "old-request") == 0;
		if (!has_old)
			break;
		struct timespec pause = {0, 100 * 1000 * 1000};
		nanosleep(&pause, NULL);
	}
	for (size_t k = 0; k < n; k++)
		assert_string_not_equal(rids[k], "old-request");
	/* New rows are kept. */
	assign_grpc("u3", "d31", DAS_CLIENT_CRM, true);
	n = grpc_ledger(ids, 64, NULL);
	assert_true(n >= 1);
}

static void rest_ledger_and_seats(void **state)
{
	json_t *b, *data, *e;
	char path[1024];

	(void)state;
	/* Two changes through REST, each with its X-Request-Id. */
	json_decref(http("PUT",
			 "/v1.0/customers/" CUST
			 "/users/u1/devices/pbx/d11/assign",
			 assign_token, "rest-req-1", 201));
	json_decref(http("PUT",
			 "/api/v1.0/accounts/" ACCT "/customers/" CUST
			 "/users/u1/devices/pbx/d12/assign",
			 assign_token, "rest-req-2", 201));

	/* Newest first, with the request id of each change. */
	b = http("GET", "/v1.0/customers/" CUST "/ledger?pageSize=2",
		 reader_token, NULL, 200);
	assert_string_equal(json_string_value(json_object_get(b, "status")),
			    "success");
	assert_true(is_timestamp(
		json_string_value(json_object_get(b, "timestamp"))));
	data = json_object_get(b, "data");
	assert_int_equal(json_array_size(data), 2);
	/* d12 replaced d11 as u1's desktop: two rows of one request. */
	e = json_array_get(data, 0);
	assert_string_equal(json_string_value(json_object_get(e, "requestId")),
			    "rest-req-2");
	assert_string_equal(json_string_value(json_object_get(e, "actor")),
			    "assigner");
	assert_string_equal(json_string_value(json_object_get(e, "operation")),
			    "assign");
	assert_string_equal(json_string_value(json_object_get(e, "deviceId")),
			    "d12");
	assert_true(json_is_null(json_object_get(e, "previousClientType")));
	assert_string_equal(
		json_string_value(json_object_get(e, "newClientType")),
		"desktop");
	assert_true(is_timestamp(
		json_string_value(json_object_get(e, "time"))));
	e = json_array_get(data, 1);
	assert_string_equal(json_string_value(json_object_get(e, "requestId")),
			    "rest-req-2");
	assert_string_equal(json_string_value(json_object_get(e, "operation")),
			    "unassign");
	assert_string_equal(json_string_value(json_object_get(e, "deviceId")),
			    "d11");
	assert_true(json_is_string(json_object_get(b, "nextPageToken")));
	json_decref(b);

	/* The same rows in every form of the path; filters. */
	const char *const forms[] = {
		"/api/v1.0/customers/" CUST "/ledger",
		"/v1.0/accounts/" ACCT "/customers/" CUST "/ledger",
		"/api/v1.0/accounts/" ACCT "/customers/" CUST "/ledger"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path),
			 "%s?userId=u1&deviceId=d11&order=oldest", forms[i]);
		b = http("GET", path, reader_token, NULL, 200);
		data = json_object_get(b, "data");
		assert_int_equal(json_array_size(data), 2);
		assert_true(json_is_null(json_object_get(b, "nextPageToken")));
		json_decref(b);
	}
	b = http("GET", "/v1.0/customers/" CUST "/ledger?onlyCharged=true",
		 reader_token, NULL, 200);
	data = json_object_get(b, "data");
	assert_true(json_array_size(data) >= 1);
	for (size_t i = 0; i < json_array_size(data); i++)
		assert_true(json_is_true(
			json_object_get(json_array_get(data, i), "charged")));
	json_decref(b);

	/* Seats: u1 and u3 hold one each, u3's with charges accepted. */
	b = http("GET", "/v1.0/customers/" CUST "/softphone-seats",
		 reader_token, NULL, 200);
	data = json_object_get(b, "data");
	assert_int_equal(json_integer_value(json_object_get(data, "included")),
			 1);
	assert_int_equal(json_integer_value(json_object_get(data, "used")), 2);
	assert_int_equal(json_integer_value(json_object_get(data, "charged")),
			 1);
	json_decref(b);
	b = http("GET",
		 "/api/v1.0/accounts/" ACCT "/customers/" CUST
		 "/softphone-seats",
		 reader_token, NULL, 200);
	json_decref(b);
}

static void rest_errors(void **state)
{
	(void)state;
	expect_error("/v1.0/customers/" CUST "/ledger", NULL, 401,
		     "Unauthorized");
	/* devices:assign alone does not read the ledger. */
	expect_error("/v1.0/customers/" CUST "/ledger", assign_token, 403,
		     "Forbidden");
	expect_error("/v1.0/customers/" CUST "/softphone-seats", assign_token,
		     403, "Forbidden");
	expect_error("/v1.0/customers/not-a-guid/ledger", reader_token, 400,
		     "not-a-guid");
	expect_error("/v1.0/customers/" CUST "/ledger?pageSize=0",
		     reader_token, 400, "pageSize");
	expect_error("/v1.0/customers/" CUST "/ledger?pageSize=501",
		     reader_token, 400, "pageSize");
	expect_error("/v1.0/customers/" CUST "/ledger?since=yesterday",
		     reader_token, 400, "since");
	expect_error("/v1.0/customers/" CUST "/ledger?onlyCharged=1",
		     reader_token, 400, "onlyCharged");
	expect_error("/v1.0/customers/" CUST "/ledger?order=up",
		     reader_token, 400, "order");
	expect_error("/v1.0/customers/" CUST "/ledger?userId=a%20b",
		     reader_token, 400, "userId");
	expect_error("/v1.0/customers/" CUST "/ledger?colour=red",
		     reader_token, 400, "colour");
	expect_error("/v1.0/customers/" CUST "/ledger?pageToken=forged",
		     reader_token, 400, "pageToken");
	expect_error("/v1.0/customers/" CUST
		     "/ledger?since=2026-01-02T00:00:00Z&"
		     "until=2026-01-01T00:00:00Z",
		     reader_token, 400, "until");
	/* Not covered by the token's account; unknown; wrong account. */
	expect_error("/v1.0/customers/" OTHER "/ledger", reader_token, 403,
		     "Forbidden");
	char *all = harness_mint("auditor", all_tenants, 1, "ledger:read",
				 3600);
	expect_error("/v1.0/customers/" OTHER "/ledger", all, 404,
		     "Not Found");
	expect_error("/v1.0/accounts/" OTHER "/customers/" CUST "/ledger",
		     all, 404, "Not Found");
	free(all);
	json_decref(http("POST", "/v1.0/customers/" CUST "/ledger",
			 reader_token, NULL, 405));
}

/* gRPC: request ids from x-request-id, paging tokens, the checks. */
static void grpc_ledger_and_seats(void **state)
{
	Deviceassignment__V1__AssignDeviceRequest a =
		DEVICEASSIGNMENT__V1__ASSIGN_DEVICE_REQUEST__INIT;
	Deviceassignment__V1__ListLedgerRequest l =
		DEVICEASSIGNMENT__V1__LIST_LEDGER_REQUEST__INIT;
	Deviceassignment__V1__GetSeatUsageRequest s =
		DEVICEASSIGNMENT__V1__GET_SEAT_USAGE_REQUEST__INIT;
	Deviceassignment__V1__ListLedgerResponse *lr = NULL;
	Deviceassignment__V1__GetSeatUsageResponse *sr = NULL;
	struct das_call_status st;
	char auth[4096];
	const char *md[] = {"authorization", auth, "x-request-id",
			    "grpc-req-77"};
	uint8_t buf[512];
	size_t len;
	int64_t ids[64];
	char rids[64][64];
	size_t n;

	(void)state;
	a.customer_tenant_id = CUST;
	a.user_id = "u2";
	a.device_id = "d21";
	a.client_type = DEVICEASSIGNMENT__V1__CLIENT_TYPE__CLIENT_TYPE_WEBRTC;
	a.accept_charges = true;
	len = deviceassignment__v1__assign_device_request__pack(&a, buf);
	snprintf(auth, sizeof(auth), "Bearer %s", assign_token);
	assert_int_equal(das_client_call_raw(
				 client,
				 das_rpc_method(DAS_RPC_ASSIGN_DEVICE)->path,
				 buf, len, md, 2, TIMEOUT_MS, &st),
			 0);
	assert_int_equal(st.code, 0);
	n = grpc_ledger(ids, 64, rids);
	assert_true(n >= 1);
	assert_string_equal(rids[n - 1], "grpc-req-77");

	/* Pages of one, newest first, then the last page has no token. */
	l.customer_tenant_id = CUST;
	l.page_size = 1;
	call_ok(DAS_RPC_LIST_LEDGER, reader_token, &l.base,
		(ProtobufCMessage **)&lr);
	assert_int_equal(lr->n_entries, 1);
	assert_int_equal(lr->entries[0]->sequence, ids[n - 1]);
	assert_int_equal(lr->entries[0]->operation,
			 DEVICEASSIGNMENT__V1__LEDGER_OPERATION__LEDGER_OPERATION_ASSIGN);
	assert_true(lr->entries[0]->charged);
	assert_true(lr->next_page_token[0]);
	protobuf_c_message_free_unpacked(&lr->base, NULL);

	/* The checks. */
	l.page_size = 501;
	assert_int_equal(das_client_call(client, DAS_RPC_LIST_LEDGER,
					 reader_token, &l.base,
					 (ProtobufCMessage **)&lr, TIMEOUT_MS,
					 &st),
			 0);
	if (st.code != 3 || !strstr(st.message, "pageSize"))
		fail_msg("page_size 501: %d %s %s", st.code, st.reason,
			 st.message);
	l.page_size = 0;
	assert_int_equal(das_client_call(client, DAS_RPC_LIST_LEDGER,
					 assign_token, &l.base,
					 (ProtobufCMessage **)&lr, TIMEOUT_MS,
					 &st),
			 0);
	assert_int_equal(st.code, 7);
	assert_int_equal(das_client_call(client, DAS_RPC_LIST_LEDGER, NULL,
					 &l.base, (ProtobufCMessage **)&lr,
					 TIMEOUT_MS, &st),
			 0);
	assert_int_equal(st.code, 16);

	s.customer_tenant_id = CUST;
	call_ok(DAS_RPC_GET_SEAT_USAGE, reader_token, &s.base,
		(ProtobufCMessage **)&sr);
	assert_true(sr->has_included);
	assert_int_equal(sr->included, 1);
	assert_int_equal(sr->used, 3);
	assert_int_equal(sr->charged, 2);
	assert_non_null(sr->timestamp);
	protobuf_c_message_free_unpacked(&sr->base, NULL);

	/* Two x-request-id entries are as good as none: a move with them
	 * keeps no request id (the gateway's rule for two lines). */
	{
		const char *md2[] = {"authorization", auth, "x-request-id",
				     "grpc-req-78", "x-request-id",
				     "grpc-req-79"};

		a.client_type =
			DEVICEASSIGNMENT__V1__CLIENT_TYPE__CLIENT_TYPE_MOBILE;
		len = deviceassignment__v1__assign_device_request__pack(&a,
									buf);
		assert_int_equal(
			das_client_call_raw(
				client,
				das_rpc_method(DAS_RPC_ASSIGN_DEVICE)->path,
				buf, len, md2, 3, TIMEOUT_MS, &st),
			0);
		assert_int_equal(st.code, 0);
		n = grpc_ledger(ids, 64, rids);
		assert_string_equal(rids[n - 1], "");
		assign_grpc("u2", "d21",
			    DEVICEASSIGNMENT__V1__CLIENT_TYPE__CLIENT_TYPE_WEBRTC,
			    true);
	}
}

struct writer {
	atomic_bool is_stopping;
	atomic_int n_done;
};

/* Toggles u2's d22 through gRPC until told to stop. */
static void *writer_main(void *arg)
{
	struct writer *w = arg;
	bool is_on = false;

	while (!atomic_load(&w->is_stopping)) {
		if (is_on)
			unassign_grpc("u2", "d22");
		else
			assign_grpc("u2", "d22", DAS_CLIENT_MOBILE, true);
		is_on = !is_on;
		atomic_fetch_add(&w->n_done, 1);
	}
	return NULL;
}

/* REST pages of 2 while another client keeps writing between them. */
static void rest_paging_under_concurrent_writes(void **state)
{
	int64_t want[256], got[256];
	size_t n_want, n_got = 0;
	struct writer w;
	pthread_t thread;
	char token[256] = "", path[1024];

	(void)state;
	atomic_init(&w.is_stopping, false);
	atomic_init(&w.n_done, 0);
	n_want = grpc_ledger(want, 256, NULL);
	assert_true(n_want >= 4);
	for (int page = 0; page < 200; page++) {
		json_t *b, *data;

		snprintf(path, sizeof(path),
			 "/v1.0/customers/" CUST "/ledger?pageSize=2%s%s",
			 token[0] ? "&pageToken=" : "", token);
		b = http("GET", path, reader_token, NULL, 200);
		if (page == 0)
			assert_int_equal(
				pthread_create(&thread, NULL, writer_main, &w),
				0);
		data = json_object_get(b, "data");
		for (size_t i = 0; i < json_array_size(data); i++) {
			assert_true(n_got < 256);
			got[n_got++] = json_integer_value(json_object_get(
				json_array_get(data, i), "sequence"));
		}
		json_t *next = json_object_get(b, "nextPageToken");
		snprintf(token, sizeof(token), "%s",
			 json_is_string(next) ? json_string_value(next) : "");
		json_decref(b);
		if (!token[0])
			break;
		/* Let at least one write land before the next page. */
		int before = atomic_load(&w.n_done);
		for (int i = 0; i < 5000 && atomic_load(&w.n_done) == before;
		     i++) {
			struct timespec pause = {0, 1000 * 1000};
			nanosleep(&pause, NULL);
		}
	}
	atomic_store(&w.is_stopping, true);
	pthread_join(thread, NULL);
	assert_true(atomic_load(&w.n_done) >= 2);
	/* Newest first: exactly the entries of the moment paging began. */
	assert_int_equal(n_got, n_want);
	for (size_t i = 0; i < n_want; i++)
		assert_int_equal(got[i], want[n_want - 1 - i]);
}

/*
 * pageSize 500 of the widest rows: the service cuts the page below one
 * gRPC message, the gateway relays it, and the pages still cover every
 * entry once.
 */
static void widest_rows_page(void **state)
{
	char path[512], token[256] = "";
	size_t total = 0, first = 0;

	(void)state;
	for (int page = 0; page < 20; page++) {
		json_t *b, *next;

		snprintf(path, sizeof(path),
			 "/api/v1.0/customers/" WIDE
			 "/ledger?pageSize=500&order=oldest%s%s",
			 token[0] ? "&pageToken=" : "", token);
		b = http("GET", path, reader_token, NULL, 200);
		if (page == 0) {
			json_t *e = json_array_get(json_object_get(b, "data"),
						   0);
			first = json_array_size(json_object_get(b, "data"));
			assert_int_equal(strlen(json_string_value(
						 json_object_get(e, "actor"))),
					 128);
			assert_int_equal(strlen(json_string_value(
						 json_object_get(e,
								 "requestId"))),
					 128);
		}
		total += json_array_size(json_object_get(b, "data"));
		next = json_object_get(b, "nextPageToken");
		snprintf(token, sizeof(token), "%s",
			 json_is_string(next) ? json_string_value(next) : "");
		json_decref(b);
		if (!token[0])
			break;
	}
	assert_true(first > 0 && first < 500);
	assert_int_equal(total, WIDE_ROWS);
}

static void cli_ledger_and_seats(void **state)
{
	static struct harness_run_result r;
	const char *env[] = {NULL, NULL};
	char tok_env[4096];

	(void)state;
	snprintf(tok_env, sizeof(tok_env), "DAS_TOKEN=%s", reader_token);
	env[0] = tok_env;
	const char *json_args[] = {"--server", server.addr, "ledger",
				   "--tenant", CUST, "--json",
				   "--user", "u1", NULL};
	assert_int_equal(harness_run(DAS_CLI_BIN, json_args, env, TIMEOUT_MS,
				     &r),
			 0);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "\"requestId\":\"rest-req-2\""));
	assert_non_null(strstr(r.out, "\"deviceId\":\"d12\""));

	const char *page_args[] = {"--server", server.addr, "ledger",
				   "--tenant", CUST, "--page-size", "1",
				   NULL};
	assert_int_equal(harness_run(DAS_CLI_BIN, page_args, env, TIMEOUT_MS,
				     &r),
			 0);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "SEQ"));
	assert_non_null(strstr(r.out, "next page: --page-token "));

	const char *all_args[] = {"--server", server.addr, "ledger",
				  "--tenant", CUST, "--page-size", "1",
				  "--all", "--order", "oldest", NULL};
	assert_int_equal(harness_run(DAS_CLI_BIN, all_args, env, TIMEOUT_MS,
				     &r),
			 0);
	assert_int_equal(r.status, 0);
	assert_null(strstr(r.out, "next page"));
	assert_non_null(strstr(r.out, "rest-req-1"));

	const char *seat_args[] = {"--server", server.addr, "seats",
				   "--tenant", CUST, "--json", NULL};
	assert_int_equal(harness_run(DAS_CLI_BIN, seat_args, env, TIMEOUT_MS,
				     &r),
			 0);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "{\"included\":1,\"used\":"));

	const char *bad_args[] = {"--server", server.addr, "ledger",
				  "--tenant", CUST, "--page-size", "0", NULL};
	assert_int_equal(harness_run(DAS_CLI_BIN, bad_args, env, TIMEOUT_MS,
				     &r),
			 0);
	assert_int_equal(r.status, 2);
	snprintf(tok_env, sizeof(tok_env), "DAS_TOKEN=%s", assign_token);
	const char *denied[] = {"--server", server.addr, "seats", "--tenant",
				CUST, NULL};
	assert_int_equal(harness_run(DAS_CLI_BIN, denied, env, TIMEOUT_MS, &r),
			 0);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "PERMISSION_DENIED"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(retention_prunes_old_rows),
		cmocka_unit_test(rest_ledger_and_seats),
		cmocka_unit_test(rest_errors),
		cmocka_unit_test(grpc_ledger_and_seats),
		cmocka_unit_test(rest_paging_under_concurrent_writes),
		cmocka_unit_test(widest_rows_page),
		cmocka_unit_test(cli_ledger_and_seats),
	};
	return harness_finish(cmocka_run_group_tests(tests, group_setup,
						     group_teardown));
}
