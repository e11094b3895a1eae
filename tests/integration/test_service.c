/*
 * The real device-assignment-server on a loopback port, driven with the C
 * client: a success path, every error row of the catalog over gRPC (status
 * code + ErrorInfo reason), the directory, a concurrent seat race, SIGKILL
 * after an acknowledged assign, SIGTERM draining, and hostile messages.
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

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "deviceassignment/v1/device_assignment.pb-c.h"
#include "deviceassignment/v1/directory.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#include "client/das_client.h"
#include "harness.h"

#define CUST "0f8fad5b-d9cb-469f-a165-70867728950e"
#define CUST_UPPER "{0F8FAD5BD9CB469FA16570867728950E}"
#define ACCT "7c9e6679-7425-40de-944b-e07fc1f90ae7"
#define OTHER "16fd2706-8baf-433b-82eb-8c7fada847da"
#define RACE "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
#define TIMEOUT_MS 10000

static struct harness_proc server;
static char db_spec[512];
static struct das_client *client;
static char *admin_token, *assign_token;

static const char *const all_tenants[] = {"*"};

static void start_server(const char *listen)
{
	char db[400];
	const char *args[] = {"--listen", listen,
			      "--store", db_spec,
			      "--jwt-hs256-secret-file", harness_secret_file(),
			      "--log-level", "debug", NULL};

	if (!db_spec[0]) {
		harness_path("service.db", db, sizeof(db));
		snprintf(db_spec, sizeof(db_spec), "sqlite:%s", db);
	}
	args[3] = db_spec;
	assert_int_equal(harness_start(&server, DAS_SERVER_BIN, args, NULL), 0);
}

static void reconnect(void)
{
	das_client_free(client);
	client = das_client_new(server.addr);
	assert_non_null(client);
}

static int call(enum das_rpc_method m, const char *token,
		const ProtobufCMessage *req, ProtobufCMessage **resp,
		struct das_call_status *st)
{
	ProtobufCMessage *unused = NULL;
	int rc = das_client_call(client, m, token, req, resp ? resp : &unused,
				 TIMEOUT_MS, st);
	assert_int_equal(rc, 0);
	if (unused)
		protobuf_c_message_free_unpacked(unused, NULL);
	return st->code;
}

static void expect(int code, const char *reason,
		   const struct das_call_status *st)
{
	if (st->code != code || strcmp(st->reason, reason) != 0)
		fprintf(stderr, "got code %d reason '%s' message '%s'\n",
			st->code, st->reason, st->message);
	assert_int_equal(st->code, code);
	assert_string_equal(st->reason, reason);
}

static void upsert_customer(const char *tenant, const char *account,
			    int seats)
{
	Deviceassignment__V1__UpsertCustomerRequest r =
		DEVICEASSIGNMENT__V1__UPSERT_CUSTOMER_REQUEST__INIT;
	struct das_call_status st;

	r.tenant_id = (char *)tenant;
	r.account_tenant_id = (char *)(account ? account : "");
	r.name = (char *)"Acme";
	r.has_included_softphone_seats = seats >= 0;
	r.included_softphone_seats = seats >= 0 ? (uint32_t)seats : 0;
	assert_int_equal(call(DAS_RPC_UPSERT_CUSTOMER, admin_token, &r.base,
			      NULL, &st),
			 0);
}

static void upsert_user(const char *tenant, const char *user, int n_roles)
{
	static char *roles[] = {(char *)"customer_user_uc",
				(char *)"customer_user_uc_softphone"};
	Deviceassignment__V1__UpsertUserRequest r =
		DEVICEASSIGNMENT__V1__UPSERT_USER_REQUEST__INIT;
	struct das_call_status st;

	r.tenant_id = (char *)tenant;
	r.user_id = (char *)user;
	r.n_roles = (size_t)n_roles;
	r.roles = roles;
	assert_int_equal(
		call(DAS_RPC_UPSERT_USER, admin_token, &r.base, NULL, &st), 0);
}

static void upsert_device(const char *tenant, const char *device,
			  const char *owner)
{
	Deviceassignment__V1__UpsertPbxDeviceRequest r =
		DEVICEASSIGNMENT__V1__UPSERT_PBX_DEVICE_REQUEST__INIT;
	struct das_call_status st;

	r.tenant_id = (char *)tenant;
	r.device_id = (char *)device;
	r.owner_user_id = (char *)owner;
	assert_int_equal(call(DAS_RPC_UPSERT_PBX_DEVICE, admin_token, &r.base,
			      NULL, &st),
			 0);
}

static int assign_as(struct das_client *c, const char *token,
		     const char *tenant, const char *account, const char *user,
		     const char *device, int type, bool accept,
		     struct das_call_status *st,
		     Deviceassignment__V1__AssignDeviceResponse **out)
{
	Deviceassignment__V1__AssignDeviceRequest r =
		DEVICEASSIGNMENT__V1__ASSIGN_DEVICE_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;

	r.customer_tenant_id = (char *)tenant;
	r.account_tenant_id = (char *)(account ? account : "");
	r.user_id = (char *)user;
	r.device_id = (char *)device;
	r.client_type = (Deviceassignment__V1__ClientType)type;
	r.accept_charges = accept;
	assert_int_equal(das_client_call(c, DAS_RPC_ASSIGN_DEVICE, token,
					 &r.base, &resp, TIMEOUT_MS, st),
			 0);
	if (out)
		*out = (Deviceassignment__V1__AssignDeviceResponse *)resp;
	else if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return st->code;
}

static int assign(const char *tenant, const char *user, const char *device,
		  int type, bool accept, struct das_call_status *st)
{
	return assign_as(client, assign_token, tenant, NULL, user, device,
			 type, accept, st, NULL);
}

static int unassign(const char *tenant, const char *user, const char *device,
		    struct das_call_status *st,
		    Deviceassignment__V1__UnassignDeviceResponse **out)
{
	Deviceassignment__V1__UnassignDeviceRequest r =
		DEVICEASSIGNMENT__V1__UNASSIGN_DEVICE_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;

	r.customer_tenant_id = (char *)tenant;
	r.user_id = (char *)user;
	r.device_id = (char *)device;
	call(DAS_RPC_UNASSIGN_DEVICE, assign_token, &r.base, &resp, st);
	if (out)
		*out = (Deviceassignment__V1__UnassignDeviceResponse *)resp;
	else if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return st->code;
}

/* The user's assignments as "d1:1 d2:3" (device:type, by type). */
static void list_text(const char *tenant, const char *user, char *buf,
		      size_t size)
{
	Deviceassignment__V1__ListUserDevicesRequest r =
		DEVICEASSIGNMENT__V1__LIST_USER_DEVICES_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	struct das_call_status st;

	r.customer_tenant_id = (char *)tenant;
	r.user_id = (char *)user;
	assert_int_equal(call(DAS_RPC_LIST_USER_DEVICES, assign_token, &r.base,
			      &resp, &st),
			 0);
	Deviceassignment__V1__ListUserDevicesResponse *l = (void *)resp;
	harness_devices_text(l, buf, size);
	assert_non_null(l->timestamp);
	protobuf_c_message_free_unpacked(resp, NULL);
}

static int setup(void **state)
{
	(void)state;
	start_server("127.0.0.1:0");
	reconnect();
	admin_token = harness_mint("admin", all_tenants, 1, "directory:admin",
				   3600);
	assign_token = harness_mint("agent", all_tenants, 1, "devices:assign",
				    3600);
	upsert_customer(CUST, ACCT, 2);
	upsert_user(CUST, "u1", 2);
	upsert_user(CUST, "u2", 2);
	upsert_user(CUST, "u3", 2);
	upsert_user(CUST, "noroles", 1);
	upsert_device(CUST, "d1", "u1");
	upsert_device(CUST, "d2", "u1");
	upsert_device(CUST, "d3", "u2");
	upsert_device(CUST, "d4", "u3");
	upsert_device(CUST, "d5", "noroles");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	das_client_free(client);
	client = NULL;
	free(admin_token);
	free(assign_token);
	if (server.pid)
		harness_stop(&server, SIGTERM);
	return 0;
}

static void health(void **state)
{
	Grpc__Health__V1__HealthCheckRequest r =
		GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	struct das_call_status st;

	(void)state;
	/* no token needed */
	assert_int_equal(call(DAS_RPC_HEALTH_CHECK, NULL, &r.base, &resp, &st),
			 0);
	assert_int_equal(((Grpc__Health__V1__HealthCheckResponse *)resp)->status,
			 GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	protobuf_c_message_free_unpacked(resp, NULL);
	r.service = (char *)"no.such.Service";
	assert_int_equal(call(DAS_RPC_HEALTH_CHECK, NULL, &r.base, NULL, &st),
			 5);
	/* The status table's UNKNOWN_SERVICE row: its text, no ErrorInfo. */
	assert_string_equal(st.message, "unknown service");
	assert_string_equal(st.reason, "");
}

static void assign_move_replace_unassign(void **state)
{
	struct das_call_status st;
	Deviceassignment__V1__AssignDeviceResponse *a = NULL;
	Deviceassignment__V1__UnassignDeviceResponse *u = NULL;
	char text[256];

	(void)state;
	/* first assign, upper-case braced GUID accepted */
	assert_int_equal(assign_as(client, assign_token, CUST_UPPER, NULL, "u1",
				   "d1", 1, false, &st, &a),
			 0);
	assert_non_null(a->timestamp);
	assert_true(a->timestamp->seconds > 1700000000);
	assert_int_equal(a->previous_client_type, 0);
	assert_false(a->charged);
	protobuf_c_message_free_unpacked(&a->base, NULL);
	list_text(CUST, "u1", text, sizeof(text));
	assert_string_equal(text, "d1:1");

	/* idempotent repeat */
	assert_int_equal(assign_as(client, assign_token, CUST, NULL, "u1", "d1",
				   1, false, &st, &a),
			 0);
	assert_int_equal(a->previous_client_type, 1);
	protobuf_c_message_free_unpacked(&a->base, NULL);

	/* move d1 desktop -> mobile */
	assign(CUST, "u1", "d1", 2, false, &st);
	expect(0, "", &st);
	list_text(CUST, "u1", text, sizeof(text));
	assert_string_equal(text, "d1:2");

	/* replace: d2 to mobile releases d1 */
	assign(CUST, "u1", "d2", 2, false, &st);
	expect(0, "", &st);
	list_text(CUST, "u1", text, sizeof(text));
	assert_string_equal(text, "d2:2");

	/* two types at once */
	assign(CUST, "u1", "d1", 4, false, &st);
	list_text(CUST, "u1", text, sizeof(text));
	assert_string_equal(text, "d2:2 d1:4");

	/* unassign, then again (idempotent) */
	assert_int_equal(unassign(CUST, "u1", "d1", &st, &u), 0);
	assert_int_equal(u->previous_client_type, 4);
	protobuf_c_message_free_unpacked(&u->base, NULL);
	assert_int_equal(unassign(CUST, "u1", "d1", &st, &u), 0);
	assert_int_equal(u->previous_client_type, 0);
	protobuf_c_message_free_unpacked(&u->base, NULL);
	assert_int_equal(unassign(CUST, "u1", "d2", &st, NULL), 0);
	list_text(CUST, "u1", text, sizeof(text));
	assert_string_equal(text, "");
}

static void error_catalog(void **state)
{
	struct das_call_status st;
	char *expired, *other_tenant, *wrong_scope, *acct_token;
	struct auth_claims c;
	const char *tenants_other[] = {OTHER};
	const char *tenants_acct[] = {ACCT};

	(void)state;
	/* row 1 */
	assign_as(client, NULL, CUST, NULL, "u1", "d1", 1, false, &st, NULL);
	expect(16, "UNAUTHENTICATED", &st);
	assert_string_equal(st.message, "Unauthorized");
	assign_as(client, "garbage", CUST, NULL, "u1", "d1", 1, false, &st,
		  NULL);
	expect(16, "UNAUTHENTICATED", &st);
	memset(&c, 0, sizeof(c));
	c.sub = "x";
	c.tenants = all_tenants;
	c.n_tenants = 1;
	c.scope = "devices:assign";
	c.iat = 1000;
	c.exp = 2000;
	expired = harness_mint_claims(&c);
	assign_as(client, expired, CUST, NULL, "u1", "d1", 1, false, &st, NULL);
	expect(16, "UNAUTHENTICATED", &st);
	/* row 1 before row 2 */
	assign_as(client, NULL, "bad", NULL, "u1", "d1", 1, false, &st, NULL);
	expect(16, "UNAUTHENTICATED", &st);

	/* row 2 */
	assign(CUST "x", "u1", "d1", 1, false, &st);
	expect(3, "INVALID_TENANT_ID", &st);
	assert_string_equal(st.message, "The value '" CUST "x' is not valid.");
	assign_as(client, assign_token, CUST, "nope", "u1", "d1", 1, false,
		  &st, NULL);
	expect(3, "INVALID_TENANT_ID", &st);
	assert_string_equal(st.message, "The value 'nope' is not valid.");

	/* row 3 */
	assign(CUST, "u 1", "d1", 1, false, &st);
	expect(3, "INVALID_ID", &st);
	assert_string_equal(st.message, "The value 'u 1' is not valid.");
	assign(CUST, "u1", "", 1, false, &st);
	expect(3, "INVALID_ID", &st);

	/* row 4 */
	other_tenant = harness_mint("agent", tenants_other, 1,
				    "devices:assign", 3600);
	assign_as(client, other_tenant, CUST, NULL, "u1", "d1", 1, false, &st,
		  NULL);
	expect(7, "FORBIDDEN", &st);
	assert_string_equal(st.message, "Forbidden");
	wrong_scope = harness_mint("agent", all_tenants, 1, "directory:admin",
				   3600);
	assign_as(client, wrong_scope, CUST, NULL, "u1", "d1", 1, false, &st,
		  NULL);
	expect(7, "FORBIDDEN", &st);
	/* the account covers its customers */
	acct_token = harness_mint("reseller", tenants_acct, 1,
				  "devices:assign", 3600);
	assign_as(client, acct_token, CUST, ACCT, "u1", "d1", 3, false, &st,
		  NULL);
	expect(0, "", &st);
	assign_as(client, acct_token, CUST, NULL, "u1", "d1", 3, false, &st,
		  NULL);
	expect(0, "", &st);

	/* row 5 */
	assign(CUST, "u1", "d1", 0, false, &st);
	expect(3, "INVALID_CLIENT_TYPE", &st);
	assert_non_null(strstr(st.message, "desktop, mobile, webrtc, crm"));
	assign(CUST, "u1", "d1", 9, false, &st);
	expect(3, "INVALID_CLIENT_TYPE", &st);

	/* row 6, also via a wrong account */
	assign(OTHER, "u1", "d1", 1, false, &st);
	expect(5, "CUSTOMER_NOT_FOUND", &st);
	assert_string_equal(st.message, "Not Found");
	assign_as(client, assign_token, CUST, OTHER, "u1", "d1", 1, false, &st,
		  NULL);
	expect(5, "CUSTOMER_NOT_FOUND", &st);

	/* row 7 */
	assign(CUST, "ghost", "d1", 1, false, &st);
	expect(5, "USER_NOT_FOUND", &st);
	assert_string_equal(st.message, "User not found");

	/* row 8: unknown, and owned by someone else */
	assign(CUST, "u1", "d99", 1, false, &st);
	expect(5, "DEVICE_NOT_FOUND", &st);
	assert_string_equal(st.message, "Device not found");
	assign(CUST, "u1", "d3", 1, false, &st);
	expect(5, "DEVICE_NOT_FOUND", &st);

	/* row 9 */
	assign(CUST, "noroles", "d5", 1, false, &st);
	expect(9, "MISSING_ROLES", &st);
	assert_non_null(strstr(st.message, "customer_user_uc_softphone"));

	/* row 10: u1 holds one of the 2 seats; u2 takes the second; u3
	 * needs consent */
	assign(CUST, "u2", "d3", 1, false, &st);
	expect(0, "", &st);
	assign(CUST, "u3", "d4", 1, false, &st);
	expect(9, "CHARGES_NOT_ACCEPTED", &st);
	assert_string_equal(st.message, "additional charges apply");
	Deviceassignment__V1__AssignDeviceResponse *a = NULL;
	assign_as(client, assign_token, CUST, NULL, "u3", "d4", 1, true, &st,
		  &a);
	expect(0, "", &st);
	assert_true(a->charged);
	protobuf_c_message_free_unpacked(&a->base, NULL);
	/* moves of a seated user never need consent */
	assign(CUST, "u3", "d4", 2, false, &st);
	expect(0, "", &st);

	/* leave the seats free for the other tests */
	unassign(CUST, "u1", "d1", &st, NULL);
	unassign(CUST, "u2", "d3", &st, NULL);
	unassign(CUST, "u3", "d4", &st, NULL);

	free(expired);
	free(other_tenant);
	free(wrong_scope);
	free(acct_token);
}

static void owner_change_drops_assignment(void **state)
{
	struct das_call_status st;
	char text[256];

	(void)state;
	assign(CUST, "u1", "d2", 1, false, &st);
	expect(0, "", &st);
	upsert_device(CUST, "d2", "u2"); /* the PBX moved d2 to u2 */
	list_text(CUST, "u1", text, sizeof(text));
	assert_string_equal(text, "");
	assign(CUST, "u1", "d2", 1, false, &st);
	expect(5, "DEVICE_NOT_FOUND", &st);
	upsert_device(CUST, "d2", "u1");
}

static void directory_rules(void **state)
{
	Deviceassignment__V1__UpsertUserRequest u =
		DEVICEASSIGNMENT__V1__UPSERT_USER_REQUEST__INIT;
	Deviceassignment__V1__UpsertCustomerRequest c =
		DEVICEASSIGNMENT__V1__UPSERT_CUSTOMER_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	struct das_call_status st;
	char *roles[] = {(char *)"customer_user_uc", (char *)"bad role"};

	(void)state;
	/* the assign scope is not enough */
	c.tenant_id = (char *)CUST;
	c.account_tenant_id = (char *)ACCT;
	c.name = (char *)"Acme";
	c.has_included_softphone_seats = true;
	c.included_softphone_seats = 2;
	call(DAS_RPC_UPSERT_CUSTOMER, assign_token, &c.base, NULL, &st);
	expect(7, "FORBIDDEN", &st);
	/* repeating an upsert changes nothing */
	call(DAS_RPC_UPSERT_CUSTOMER, admin_token, &c.base, &resp, &st);
	expect(0, "", &st);
	assert_false(((Deviceassignment__V1__DirectoryResponse *)resp)->changed);
	protobuf_c_message_free_unpacked(resp, NULL);
	/* a name that is not UTF-8 text */
	c.name = (char *)"Acme \xff";
	call(DAS_RPC_UPSERT_CUSTOMER, admin_token, &c.base, NULL, &st);
	expect(3, "INVALID_ARGUMENT", &st);
	c.name = (char *)"Acme \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
	call(DAS_RPC_UPSERT_CUSTOMER, admin_token, &c.base, &resp, &st);
	expect(0, "", &st);
	protobuf_c_message_free_unpacked(resp, NULL);
	c.name = (char *)"Acme\n";
	call(DAS_RPC_UPSERT_CUSTOMER, admin_token, &c.base, NULL, &st);
	expect(3, "INVALID_ARGUMENT", &st);
	c.name = (char *)"Acme\x7f"; /* DEL is a control character too */
	call(DAS_RPC_UPSERT_CUSTOMER, admin_token, &c.base, NULL, &st);
	expect(3, "INVALID_ARGUMENT", &st);
	c.name = (char *)"\xc0\xaf"; /* an overlong '/' */
	call(DAS_RPC_UPSERT_CUSTOMER, admin_token, &c.base, NULL, &st);
	expect(3, "INVALID_ARGUMENT", &st);
	c.name = (char *)"\xed\xa0\x80"; /* a surrogate */
	call(DAS_RPC_UPSERT_CUSTOMER, admin_token, &c.base, NULL, &st);
	expect(3, "INVALID_ARGUMENT", &st);
	c.name = (char *)"\xe2\x82"; /* cut short */
	call(DAS_RPC_UPSERT_CUSTOMER, admin_token, &c.base, NULL, &st);
	expect(3, "INVALID_ARGUMENT", &st);
	c.name = (char *)"Acme";
	call(DAS_RPC_UPSERT_CUSTOMER, admin_token, &c.base, &resp, &st);
	protobuf_c_message_free_unpacked(resp, NULL);
	/* users of a missing customer */
	u.tenant_id = (char *)OTHER;
	u.user_id = (char *)"x";
	call(DAS_RPC_UPSERT_USER, admin_token, &u.base, NULL, &st);
	expect(5, "CUSTOMER_NOT_FOUND", &st);
	/* invalid roles */
	u.tenant_id = (char *)CUST;
	u.n_roles = 2;
	u.roles = roles;
	call(DAS_RPC_UPSERT_USER, admin_token, &u.base, NULL, &st);
	expect(3, "INVALID_ARGUMENT", &st);
	assert_non_null(strstr(st.message, "bad role"));
}

static void hostile_messages(void **state)
{
	struct das_call_status st;
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a,
				       0xff, 0x01};
	char auth[2048];
	const char *md[] = {"authorization", auth};
	uint8_t *big;

	(void)state;
	snprintf(auth, sizeof(auth), "Bearer %s", assign_token);
	/* malformed protobuf */
	assert_int_equal(das_client_call_raw(client,
					     das_rpc_method(DAS_RPC_ASSIGN_DEVICE)->path,
					     junk, sizeof(junk), md, 1,
					     TIMEOUT_MS, &st),
			 0);
	expect(3, "INVALID_ARGUMENT", &st);
	/* without a token the malformed message is still a 401 */
	assert_int_equal(das_client_call_raw(client,
					     das_rpc_method(DAS_RPC_ASSIGN_DEVICE)->path,
					     junk, sizeof(junk), NULL, 0,
					     TIMEOUT_MS, &st),
			 0);
	expect(16, "UNAUTHENTICATED", &st);
	/* unknown methods, with paths too long for an inline slice: the
	 * server must free what it was handed for each (the leak check at
	 * SIGTERM in harness_finish sees it otherwise) */
	for (int i = 0; i < 50; i++) {
		char path[96];
		snprintf(path, sizeof(path),
			 "/deviceassignment.v1.DeviceAssignment/NoSuchMethod%d",
			 i);
		assert_int_equal(das_client_call_raw(client, path, junk,
						     sizeof(junk), md, 1,
						     TIMEOUT_MS, &st),
				 0);
		assert_int_equal(st.code, 12);
	}
	/* a message over the limit */
	big = calloc(1, DAS_RPC_MAX_MESSAGE + 10);
	assert_non_null(big);
	assert_int_equal(das_client_call_raw(client,
					     das_rpc_method(DAS_RPC_ASSIGN_DEVICE)->path,
					     big, DAS_RPC_MAX_MESSAGE + 10, md,
					     1, TIMEOUT_MS, &st),
			 0);
	assert_int_equal(st.code, 8);
	free(big);
	/* an empty message is a valid (empty) request: row 2 */
	assert_int_equal(das_client_call_raw(client,
					     das_rpc_method(DAS_RPC_ASSIGN_DEVICE)->path,
					     "", 0, md, 1, TIMEOUT_MS, &st),
			 0);
	expect(3, "INVALID_TENANT_ID", &st);
	assert_true(harness_is_alive(&server));
}

/*
 * A client that connects and never speaks HTTP/2 is closed after the
 * handshake timeout (10 s); the server answers others meanwhile.
 */
static void silent_connection_is_closed(void **state)
{
	struct sockaddr_in sin;
	struct timespec t0, t1;
	char buf[256];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	(void)state;
	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)server.port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	health(state);
	for (;;) {
		struct pollfd pfd = {fd, POLLIN, 0};
		assert_int_equal(poll(&pfd, 1, 20000), 1);
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			break; /* closed by the server */
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	close(fd);
	long ms = (t1.tv_sec - t0.tv_sec) * 1000 +
		  (t1.tv_nsec - t0.tv_nsec) / 1000000;
	assert_true(ms >= 9000 && ms < 15000);
	assert_true(harness_is_alive(&server));
}

/* Many callers race for the last seats; exactly the included number win. */
#define RACERS 24
#define RACE_SEATS 5

struct racer {
	int index;
	int code;
	char reason[64];
};

/* Every racer connects first, then all call at once. */
static pthread_barrier_t race_start;

static void *race_one(void *arg)
{
	struct racer *r = arg;
	struct das_client *c = das_client_new(server.addr);
	struct das_call_status st;
	char user[16], device[16];

	/* A connected channel (a Health call) so that the barrier, not
	 * connection setup, decides when the assign goes out. */
	Grpc__Health__V1__HealthCheckRequest h =
		GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	ProtobufCMessage *hresp = NULL;
	if (c && das_client_call(c, DAS_RPC_HEALTH_CHECK, NULL, &h.base,
				 &hresp, TIMEOUT_MS, &st) == 0 && hresp)
		protobuf_c_message_free_unpacked(hresp, NULL);
	pthread_barrier_wait(&race_start);
	if (!c) {
		r->code = -1;
		return NULL;
	}
	snprintf(user, sizeof(user), "r%d", r->index);
	snprintf(device, sizeof(device), "rd%d", r->index);
	Deviceassignment__V1__AssignDeviceRequest q =
		DEVICEASSIGNMENT__V1__ASSIGN_DEVICE_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	q.customer_tenant_id = (char *)RACE;
	q.user_id = user;
	q.device_id = device;
	q.client_type = DEVICEASSIGNMENT__V1__CLIENT_TYPE__CLIENT_TYPE_DESKTOP;
	if (das_client_call(c, DAS_RPC_ASSIGN_DEVICE, assign_token, &q.base,
			    &resp, TIMEOUT_MS * 3, &st) != 0)
		st.code = -1;
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	r->code = st.code;
	snprintf(r->reason, sizeof(r->reason), "%s", st.reason);
	das_client_free(c);
	return NULL;
}

static void seat_race(void **state)
{
	pthread_t threads[RACERS];
	struct racer racers[RACERS];
	int won = 0, refused = 0, seated = 0;
	char user[16], device[16], text[256];

	(void)state;
	upsert_customer(RACE, NULL, RACE_SEATS);
	for (int i = 0; i < RACERS; i++) {
		snprintf(user, sizeof(user), "r%d", i);
		snprintf(device, sizeof(device), "rd%d", i);
		upsert_user(RACE, user, 2);
		upsert_device(RACE, device, user);
	}
	assert_int_equal(pthread_barrier_init(&race_start, NULL, RACERS), 0);
	for (int i = 0; i < RACERS; i++) {
		racers[i].index = i;
		assert_int_equal(pthread_create(&threads[i], NULL, race_one,
						&racers[i]),
				 0);
	}
	for (int i = 0; i < RACERS; i++) {
		pthread_join(threads[i], NULL);
		if (racers[i].code == 0)
			won++;
		else if (racers[i].code == 9 &&
			 strcmp(racers[i].reason, "CHARGES_NOT_ACCEPTED") == 0)
			refused++;
		else
			fprintf(stderr, "racer %d: code %d %s\n", i,
				racers[i].code, racers[i].reason);
	}
	pthread_barrier_destroy(&race_start);
	assert_int_equal(won, RACE_SEATS);
	assert_int_equal(refused, RACERS - RACE_SEATS);
	for (int i = 0; i < RACERS; i++) {
		snprintf(user, sizeof(user), "r%d", i);
		list_text(RACE, user, text, sizeof(text));
		if (text[0])
			seated++;
	}
	assert_int_equal(seated, RACE_SEATS);
}

/* A reply means durable: SIGKILL right after it loses nothing. */
static void kill_after_assign_keeps_it(void **state)
{
	struct das_call_status st;
	char text[256], listen[64];

	(void)state;
	/* The server of the tests so far ends with SIGTERM, so its leak check
	 * runs (a sanitizer report is exit status 1); a fresh one on the same
	 * database is the one killed. */
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", server.port);
	assert_int_equal(harness_stop(&server, SIGTERM), 0);
	start_server(listen);
	reconnect();
	assign(CUST, "u1", "d1", 3, false, &st);
	expect(0, "", &st);
	assert_int_equal(harness_stop(&server, SIGKILL),
			 HARNESS_STATUS_SIGNAL(SIGKILL));
	start_server(listen);
	reconnect();
	list_text(CUST, "u1", text, sizeof(text));
	assert_string_equal(text, "d1:3");
	unassign(CUST, "u1", "d1", &st, NULL);
}

/*
 * SIGTERM under load: calls in flight finish, the server exits 0 well within
 * its grace period although clients stay connected, and every acknowledged
 * change is there after a restart.
 */
#define WRITERS 8
#define UNL "9a1b2c3d-0000-4000-8000-00000000abcd"

struct writer {
	int index;
	int last_ok;      /* last client type acknowledged */
	int first_failed; /* type of the first call without an answer */
	int n_ok;
};

static atomic_bool stop_writers;
/* Writers with one acknowledged call: the load is on when all are. */
static pthread_mutex_t writers_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t writers_cv = PTHREAD_COND_INITIALIZER;
static int writers_running;

static void *write_loop(void *arg)
{
	struct writer *wr = arg;
	struct das_client *c = das_client_new(server.addr);
	char user[16], device[16];

	snprintf(user, sizeof(user), "w%d", wr->index);
	snprintf(device, sizeof(device), "wd%d", wr->index);
	for (int i = 0; c && !atomic_load(&stop_writers) && i < 100000; i++) {
		struct das_call_status st;
		int type = 1 + i % 4;
		assign_as(c, assign_token, UNL, NULL, user, device, type, false,
			  &st, NULL);
		if (st.code != 0) {
			wr->first_failed = type;
			break;
		}
		wr->last_ok = type;
		if (wr->n_ok++ == 0) {
			pthread_mutex_lock(&writers_mu);
			writers_running++;
			pthread_cond_broadcast(&writers_cv);
			pthread_mutex_unlock(&writers_mu);
		}
	}
	if (!wr->n_ok) {
		/* never got going: let the test see it rather than wait */
		pthread_mutex_lock(&writers_mu);
		writers_running++;
		pthread_cond_broadcast(&writers_cv);
		pthread_mutex_unlock(&writers_mu);
	}
	das_client_free(c);
	return NULL;
}

static void sigterm_drains_under_load(void **state)
{
	pthread_t threads[WRITERS];
	struct writer writers[WRITERS];
	struct timespec t0, t1;
	char user[16], device[16], text[256], listen[64];
	int total = 0;

	(void)state;
	upsert_customer(UNL, NULL, -1);
	for (int i = 0; i < WRITERS; i++) {
		snprintf(user, sizeof(user), "w%d", i);
		snprintf(device, sizeof(device), "wd%d", i);
		upsert_user(UNL, user, 2);
		upsert_device(UNL, device, user);
	}
	atomic_store(&stop_writers, false);
	writers_running = 0;
	for (int i = 0; i < WRITERS; i++) {
		memset(&writers[i], 0, sizeof(writers[i]));
		writers[i].index = i;
		assert_int_equal(pthread_create(&threads[i], NULL, write_loop,
						&writers[i]),
				 0);
	}
	/* SIGTERM once every writer has had a call acknowledged, i.e. with
	 * all of them in their loop of back-to-back calls. */
	pthread_mutex_lock(&writers_mu);
	while (writers_running < WRITERS)
		pthread_cond_wait(&writers_cv, &writers_mu);
	pthread_mutex_unlock(&writers_mu);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(harness_stop(&server, SIGTERM), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	atomic_store(&stop_writers, true);
	for (int i = 0; i < WRITERS; i++) {
		pthread_join(threads[i], NULL);
		total += writers[i].n_ok;
	}
	long ms = (t1.tv_sec - t0.tv_sec) * 1000 +
		  (t1.tv_nsec - t0.tv_nsec) / 1000000;
	fprintf(stderr, "sigterm under load: %d calls acknowledged, exit after %ld ms\n",
		total, ms);
	assert_true(total > 0);
	assert_true(ms < 5000); /* the grace period is 10 s */

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", server.port);
	start_server(listen);
	reconnect();
	for (int i = 0; i < WRITERS; i++) {
		char want_ok[32], want_failed[32];
		snprintf(user, sizeof(user), "w%d", i);
		list_text(UNL, user, text, sizeof(text));
		snprintf(want_ok, sizeof(want_ok), "wd%d:%d", i,
			 writers[i].last_ok);
		snprintf(want_failed, sizeof(want_failed), "wd%d:%d", i,
			 writers[i].first_failed);
		/* The last acknowledged change is there, or the one whose
		 * answer was lost in the shutdown. */
		if (writers[i].last_ok == 0)
			assert_true(text[0] == '\0' ||
				    strcmp(text, want_failed) == 0);
		else
			assert_true(strcmp(text, want_ok) == 0 ||
				    strcmp(text, want_failed) == 0);
	}
	assert_int_equal(harness_stop(&server, SIGTERM), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(health),
		cmocka_unit_test(assign_move_replace_unassign),
		cmocka_unit_test(error_catalog),
		cmocka_unit_test(owner_change_drops_assignment),
		cmocka_unit_test(directory_rules),
		cmocka_unit_test(hostile_messages),
		cmocka_unit_test(silent_connection_is_closed),
		cmocka_unit_test(seat_race),
		cmocka_unit_test(kill_after_assign_keeps_it),
		cmocka_unit_test(sigterm_drains_under_load),
	};
	return harness_finish(
		cmocka_run_group_tests(tests, setup, teardown));
}
