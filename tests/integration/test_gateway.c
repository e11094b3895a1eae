/*
 * The real device-assignment-gateway in front of the real server, driven
 * over HTTP with libcurl: every success path and every row of the error
 * catalog (CONTRACT.md section 2), in the suspend/resume mode and in the
 * gateway with one event loop; concurrent requests; the server killed and restarted on
 * the same port under the gateway; hostile raw bytes over a plain socket;
 * SIGTERM.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "deviceassignment/v1/directory.pb-c.h"

#include "client/das_client.h"
#include "harness.h"

#define CUST		  "0f8fad5b-d9cb-469f-a165-70867728950e"
#define CUST_UPPER_BRACED "{0F8FAD5B-D9CB-469F-A165-70867728950E}"
#define ACCT		  "7c9e6679-7425-40de-944b-e07fc1f90ae7"
#define OTHER		  "16fd2706-8baf-433b-82eb-8c7fada847da"
#define UNKNOWN		  "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
#define TIMEOUT_MS	  10000
#define P(tenant, user, device, op) \
	"/v1.0/customers/" tenant "/users/" user "/devices/pbx/" device "/" op

static struct harness_proc server, gateway;
static char db_spec[512], server_listen[64];
static char *admin_token, *assign_token, *auth_header;

static const char *const all_tenants[] = {"*"};

struct resp {
	long status;
	char body[16384];
	size_t body_len;
	char headers[8192];
	size_t headers_len;
};

/* ---- programs ---------------------------------------------------------- */

static void start_server(void)
{
	const char *args[] = {"--listen",
			      server_listen,
			      "--store",
			      db_spec,
			      "--jwt-hs256-secret-file",
			      harness_secret_file(),
			      NULL};

	assert_int_equal(harness_start(&server, DAS_SERVER_BIN, args, NULL), 0);
	/* Later restarts reuse the same port. */
	snprintf(server_listen, sizeof(server_listen), "%s", server.addr);
}

/* threads: the gateway's event loops, each with its own connection. */
static void start_gateway(const char *threads)
{
	const char *args[] = {"--upstream",
			      server_listen,
			      "--threads",
			      threads,
			      "--upstream-timeout-ms",
			      "3000",
			      "--connection-timeout",
			      "2",
			      NULL};

	assert_int_equal(harness_start(&gateway, DAS_GATEWAY_BIN, args, NULL),
			 0);
}

/* ---- HTTP -------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct resp *r = arg;

	return harness_append(r->body, sizeof(r->body), &r->body_len, p,
			      size * n);
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct resp *r = arg;

	return harness_append(r->headers, sizeof(r->headers), &r->headers_len, p,
			      size * n);
}

/*
 * One request to the gateway. headers: NULL-terminated "Name: value"
 * lines (curl's own defaults are removed with "Name:"); body NULL = none.
 */
static void http(const char *method, const char *path,
		 const char *const *headers, const char *body, struct resp *r)
{
	CURL *c = curl_easy_init();
	struct curl_slist *hl = NULL;
	char url[4096];
	CURLcode rc;

	assert_non_null(c);
	memset(r, 0, sizeof(*r));
	snprintf(url, sizeof(url), "http://%s%s", gateway.addr, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	hl = curl_slist_append(hl, "Expect:");
	for (size_t i = 0; headers && headers[i]; i++)
		hl = curl_slist_append(hl, headers[i]);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	rc = curl_easy_perform(c);
	if (rc != CURLE_OK)
		fail_msg("%s %s: %s", method, path, curl_easy_strerror(rc));
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
}

/* The value of a response header (case-insensitive name), or NULL. */
static const char *resp_header(const struct resp *r, const char *name,
			       char *buf, size_t size)
{
	size_t n = strlen(name);

	for (const char *p = r->headers; *p;) {
		const char *eol = strstr(p, "\r\n");
		if (!eol)
			break;
		if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
			const char *v = p + n + 1;
			while (*v == ' ')
				v++;
			snprintf(buf, size, "%.*s", (int)(eol - v), v);
			return buf;
		}
		p = eol + 2;
	}
	return NULL;
}

static bool is_timestamp(const char *s)
{
	/* 2019-11-29T16:03:23.9251680Z */
	static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddddddZ";

	if (!s || strlen(s) != sizeof(shape) - 1)
		return false;
	for (size_t i = 0; shape[i]; i++)
		if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9')
				    : s[i] != shape[i])
			return false;
	return true;
}

/* Checks status, content type and, for errors, the error body shape;
 * returns the parsed body (caller decrefs). */
static json_t *check(const struct resp *r, long status, const char *message)
{
	char ct[128];
	json_error_t err;
	json_t *root;

	if (r->status != status)
		fprintf(stderr, "expected %ld, got %ld: %s\n", status,
			r->status, r->body);
	assert_int_equal(r->status, status);
	assert_non_null(resp_header(r, "Content-Type", ct, sizeof(ct)));
	assert_string_equal(ct, "application/json; charset=utf-8");
	assert_non_null(resp_header(r, "X-Request-Id", ct, sizeof(ct)));
	root = json_loads(r->body, 0, &err);
	if (!root)
		fail_msg("not JSON: %s", r->body);
	if (status >= 400) {
		assert_int_equal(
			json_integer_value(json_object_get(root, "error")),
			status);
		assert_string_equal(
			json_string_value(json_object_get(root, "status")),
			"error");
		assert_true(is_timestamp(
			json_string_value(json_object_get(root, "timestamp"))));
		if (message)
			assert_string_equal(json_string_value(json_object_get(
						    root, "message")),
					    message);
		assert_int_equal(json_object_size(root), status == 402 ? 5 : 4);
	}
	if (status == 401) {
		assert_non_null(
			resp_header(r, "WWW-Authenticate", ct, sizeof(ct)));
		assert_string_equal(ct, "Bearer");
	}
	return root;
}

static void expect_status(const struct resp *r, long status,
			  const char *message)
{
	json_decref(check(r, status, message));
}

static const char *const json_auth[] = {"Content-Type: application/json", NULL,
					NULL};

/* The Authorization + JSON headers, plus one optional extra. */
static const char *const *hdrs(const char *extra)
{
	static const char *h[4];

	h[0] = "Content-Type: application/json";
	h[1] = auth_header;
	h[2] = extra;
	h[3] = NULL;
	return h;
}

static void put_assign(const char *path, const char *type, const char *extra,
		       struct resp *r)
{
	char body[256];

	snprintf(body, sizeof(body), "{\"clientType\":\"%s\"}", type);
	http("PUT", path, hdrs(extra), body, r);
}

static void expect_success(const struct resp *r, const char *path)
{
	char loc[4096], want[4096];
	json_t *root = check(r, 201, NULL);

	assert_string_equal(json_string_value(json_object_get(root, "status")),
			    "success");
	assert_true(is_timestamp(
		json_string_value(json_object_get(root, "timestamp"))));
	assert_int_equal(json_object_size(root), 2);
	assert_non_null(resp_header(r, "Location", loc, sizeof(loc)));
	snprintf(want, sizeof(want), "http://%s%s", gateway.addr, path);
	assert_string_equal(loc, want);
	json_decref(root);
}

/* The list as "d1:desktop d2:crm". */
static void list_text(const char *user, char *buf, size_t size)
{
	char path[512];
	struct resp r;
	size_t o = 0, i;
	json_t *item;

	snprintf(path, sizeof(path),
		 "/v1.0/customers/" CUST "/users/%s/devices/pbx", user);
	http("GET", path, hdrs(NULL), NULL, &r);
	json_t *root = check(&r, 200, NULL);
	assert_string_equal(json_string_value(json_object_get(root, "status")),
			    "success");
	assert_true(is_timestamp(
		json_string_value(json_object_get(root, "timestamp"))));
	buf[0] = '\0';
	json_array_foreach(json_object_get(root, "data"), i, item)
	{
		o += (size_t)snprintf(
			buf + o, size - o, "%s%s:%s", i ? " " : "",
			json_string_value(json_object_get(item, "deviceId")),
			json_string_value(json_object_get(item, "clientType")));
	}
	json_decref(root);
}

/* ---- directory --------------------------------------------------------- */

static void directory_call(enum das_rpc_method m, const ProtobufCMessage *req)
{
	struct das_client *c = das_client_new(server.addr);
	struct das_call_status st;
	ProtobufCMessage *resp = NULL;

	assert_non_null(c);
	assert_int_equal(
		das_client_call(c, m, admin_token, req, &resp, TIMEOUT_MS, &st),
		0);
	if (st.code != 0)
		fail_msg("directory call: %d %s", st.code, st.message);
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	das_client_free(c);
}

static void import_directory(void)
{
	static char *roles[] = {(char *)"customer_user_uc",
				(char *)"customer_user_uc_softphone"};
	static const struct {
		const char *user;
		int n_roles;
	} users[] = {{"u1", 2}, {"u2", 2}, {"u3", 2}, {"noroles", 1}};
	static const struct {
		const char *device, *owner;
	} devices[] = {{"d1", "u1"},
		       {"d2", "u1"},
		       {"d3", "u2"},
		       {"d4", "u3"},
		       {"d5", "noroles"}};
	Deviceassignment__V1__UpsertCustomerRequest cr =
		DEVICEASSIGNMENT__V1__UPSERT_CUSTOMER_REQUEST__INIT;

	cr.tenant_id = (char *)CUST;
	cr.account_tenant_id = (char *)ACCT;
	cr.name = (char *)"Acme";
	cr.has_included_softphone_seats = 1;
	cr.included_softphone_seats = 1;
	directory_call(DAS_RPC_UPSERT_CUSTOMER, &cr.base);
	cr.tenant_id = (char *)OTHER;
	cr.account_tenant_id = (char *)"";
	cr.has_included_softphone_seats = 0;
	directory_call(DAS_RPC_UPSERT_CUSTOMER, &cr.base);
	for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
		Deviceassignment__V1__UpsertUserRequest ur =
			DEVICEASSIGNMENT__V1__UPSERT_USER_REQUEST__INIT;
		ur.tenant_id = (char *)CUST;
		ur.user_id = (char *)users[i].user;
		ur.n_roles = (size_t)users[i].n_roles;
		ur.roles = roles;
		directory_call(DAS_RPC_UPSERT_USER, &ur.base);
	}
	for (size_t i = 0; i < sizeof(devices) / sizeof(devices[0]); i++) {
		Deviceassignment__V1__UpsertPbxDeviceRequest dr =
			DEVICEASSIGNMENT__V1__UPSERT_PBX_DEVICE_REQUEST__INIT;
		dr.tenant_id = (char *)CUST;
		dr.device_id = (char *)devices[i].device;
		dr.owner_user_id = (char *)devices[i].owner;
		directory_call(DAS_RPC_UPSERT_PBX_DEVICE, &dr.base);
	}
}

/* Unassigns everything so each pass starts with no seat in use. */
static void reset_assignments(void)
{
	static const char *const paths[] = {P(CUST, "u1", "d1", "unassign"),
					    P(CUST, "u1", "d2", "unassign"),
					    P(CUST, "u2", "d3", "unassign"),
					    P(CUST, "u3", "d4", "unassign")};
	struct resp r;

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		http("PUT", paths[i], hdrs(NULL), NULL, &r);
		expect_success(&r, paths[i]);
	}
}

static int setup(void **state)
{
	char db[400], bearer[8192];

	(void)state;
	curl_global_init(CURL_GLOBAL_ALL);
	harness_path("gateway-it.db", db, sizeof(db));
	snprintf(db_spec, sizeof(db_spec), "sqlite:%s", db);
	snprintf(server_listen, sizeof(server_listen), "127.0.0.1:0");
	admin_token =
		harness_mint("admin", all_tenants, 1, "directory:admin", 3600);
	assign_token =
		harness_mint("agent", all_tenants, 1, "devices:assign", 3600);
	snprintf(bearer, sizeof(bearer), "Authorization: Bearer %s",
		 assign_token);
	auth_header = strdup(bearer);
	start_server();
	import_directory();
	start_gateway("2");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (gateway.pid)
		harness_stop(&gateway, SIGTERM);
	if (server.pid)
		harness_stop(&server, SIGTERM);
	free(admin_token);
	free(assign_token);
	free(auth_header);
	curl_global_cleanup();
	return 0;
}

/* ---- the contract over HTTP --------------------------------------------- */

static void success_paths(void)
{
	struct resp r;
	char text[512], rid[256];

	reset_assignments();
	/* assign, with the request id echoed */
	put_assign(P(CUST, "u1", "d1", "assign"), "desktop",
		   "X-Request-Id: it-req-1", &r);
	expect_success(&r, P(CUST, "u1", "d1", "assign"));
	assert_string_equal(resp_header(&r, "X-Request-Id", rid, sizeof(rid)),
			    "it-req-1");
	/* idempotent repeat, POST, case-insensitive clientType */
	put_assign(P(CUST, "u1", "d1", "assign"), "DESKTOP", NULL, &r);
	expect_success(&r, P(CUST, "u1", "d1", "assign"));
	http("POST", P(CUST, "u1", "d1", "assign"), hdrs(NULL),
	     "{\"clientType\":\"Desktop\",\"extra\":{\"a\":[1]}}", &r);
	expect_success(&r, P(CUST, "u1", "d1", "assign"));
	/* the /api prefix, the account form, both together */
	put_assign("/api" P(CUST, "u1", "d2", "assign"), "webrtc", NULL, &r);
	expect_success(&r, "/api" P(CUST, "u1", "d2", "assign"));
	put_assign("/v1.0/accounts/" ACCT "/customers/" CUST
		   "/users/u1/devices/pbx/d2/assign",
		   "crm", NULL, &r);
	expect_success(&r, "/v1.0/accounts/" ACCT "/customers/" CUST
			   "/users/u1/devices/pbx/d2/assign");
	http("POST",
	     "/api/v1.0/accounts/" ACCT "/customers/" CUST
	     "/users/u1/devices/pbx/d2/assign",
	     hdrs(NULL), "{\"clientType\":\"mobile\"}", &r);
	expect_success(&r, "/api/v1.0/accounts/" ACCT "/customers/" CUST
			   "/users/u1/devices/pbx/d2/assign");
	/* upper-case braced GUID names the same customer */
	put_assign(P(CUST_UPPER_BRACED, "u1", "d2", "assign"), "crm", NULL, &r);
	expect_success(&r, P(CUST_UPPER_BRACED, "u1", "d2", "assign"));
	list_text("u1", text, sizeof(text));
	assert_string_equal(text, "d1:desktop d2:crm");
	/* list under every prefix */
	http("GET",
	     "/api/v1.0/accounts/" ACCT "/customers/" CUST
	     "/users/u1/devices/pbx",
	     hdrs(NULL), NULL, &r);
	expect_status(&r, 200, NULL);
	/* unassign: twice, with a junk body and a foreign content type */
	http("PUT", P(CUST, "u1", "d2", "unassign"),
	     (const char *const[]){"Content-Type: text/plain", auth_header,
				   NULL},
	     "not json at all", &r);
	expect_success(&r, P(CUST, "u1", "d2", "unassign"));
	http("POST", "/api" P(CUST, "u1", "d2", "unassign"), hdrs(NULL), NULL,
	     &r);
	expect_success(&r, "/api" P(CUST, "u1", "d2", "unassign"));
	list_text("u1", text, sizeof(text));
	assert_string_equal(text, "d1:desktop");
	/* health */
	http("GET", "/healthz", NULL, NULL, &r);
	expect_status(&r, 200, NULL);
	assert_string_equal(r.body, "{\"status\":\"ok\"}");
	http("GET", "/readyz", NULL, NULL, &r);
	expect_status(&r, 200, NULL);
}

static void error_catalog(void)
{
	struct resp r;
	char buf[512], *other_token, *scope_token, *expired;
	const char *tenants_other[] = {OTHER};
	struct auth_claims c;

	reset_assignments();
	/* row 1: missing, garbage, expired token; before every other row */
	http("PUT", P(CUST, "u1", "d1", "assign"), json_auth,
	     "{\"clientType\":\"desktop\"}", &r);
	expect_status(&r, 401, "Unauthorized");
	http("PUT", P(CUST, "u1", "d1", "assign"),
	     (const char *const[]){"Content-Type: application/json",
				   "Authorization: Bearer garbage", NULL},
	     "{\"clientType\":\"desktop\"}", &r);
	expect_status(&r, 401, "Unauthorized");
	memset(&c, 0, sizeof(c));
	c.sub = "x";
	c.tenants = all_tenants;
	c.n_tenants = 1;
	c.scope = "devices:assign";
	c.iat = 1000;
	c.exp = 2000;
	expired = harness_mint_claims(&c);
	snprintf(buf, sizeof(buf), "Authorization: Bearer %s", expired);
	http("PUT", P(CUST, "u1", "d1", "assign"),
	     (const char *const[]){"Content-Type: application/json", buf, NULL},
	     "{\"clientType\":\"desktop\"}", &r);
	expect_status(&r, 401, "Unauthorized");
	free(expired);
	http("PUT", P("bad", "u%20x", "d1", "assign"), json_auth, "{}", &r);
	expect_status(&r, 401, "Unauthorized");
	http("GET", "/v1.0/customers/" CUST "/users/u1/devices/pbx", NULL, NULL,
	     &r);
	expect_status(&r, 401, "Unauthorized");
	/* row 2: the id as sent, after percent-decoding */
	put_assign(P("not-a-guid", "u1", "d1", "assign"), "desktop", NULL, &r);
	expect_status(&r, 400, "The value 'not-a-guid' is not valid.");
	put_assign(P("%7Bx%7D", "u1", "d1", "assign"), "desktop", NULL, &r);
	expect_status(&r, 400, "The value '{x}' is not valid.");
	http("PUT", P("nope", "u1", "d1", "assign"), hdrs(NULL), "{}", &r);
	expect_status(&r, 400, "The value 'nope' is not valid.");
	/* row 3 */
	put_assign(P(CUST, "bad%20id%21", "d1", "assign"), "desktop", NULL, &r);
	expect_status(&r, 400, "The value 'bad id!' is not valid.");
	/* Non-ASCII ids: how the service renders them is its choice. */
	put_assign(P(CUST, "u1", "d%C3%A9", "assign"), "desktop", NULL, &r);
	json_t *bad = check(&r, 400, NULL);
	assert_int_equal(
		strncmp(json_string_value(json_object_get(bad, "message")),
			"The value 'd", 12),
		0);
	json_decref(bad);
	/* Invalid UTF-8 in the id as sent still gives a JSON body. */
	put_assign(P(CUST, "u1", "d%FF", "assign"), "desktop", NULL, &r);
	expect_status(&r, 400, NULL);
	/* row 4: other tenant, missing scope */
	other_token =
		harness_mint("o", tenants_other, 1, "devices:assign", 3600);
	snprintf(buf, sizeof(buf), "Authorization: Bearer %s", other_token);
	http("PUT", P(CUST, "u1", "d1", "assign"),
	     (const char *const[]){"Content-Type: application/json", buf, NULL},
	     "{}", &r);
	expect_status(&r, 403, "Forbidden");
	free(other_token);
	scope_token =
		harness_mint("s", all_tenants, 1, "directory:admin", 3600);
	snprintf(buf, sizeof(buf), "Authorization: Bearer %s", scope_token);
	http("PUT", P(CUST, "u1", "d1", "unassign"),
	     (const char *const[]){buf, NULL}, NULL, &r);
	expect_status(&r, 403, "Forbidden");
	free(scope_token);
	/* row 5: from the service (well-formed object) ... */
	static const char *const bad_types[] = {
		"{}", "{\"clientType\":\"laptop\"}", "{\"clientType\":7}",
		"{\"clientType\":null}"};
	for (size_t i = 0; i < 4; i++) {
		http("PUT", P(CUST, "u1", "d1", "assign"), hdrs(NULL),
		     bad_types[i], &r);
		json_t *root = check(&r, 400, NULL);
		const char *m =
			json_string_value(json_object_get(root, "message"));
		assert_non_null(strstr(m, "desktop, mobile, webrtc, crm"));
		json_decref(root);
	}
	/* ... and from the gateway (not an object, bad accept-charges) */
	static const char *const not_objects[] = {"",  "[]",   "\"desktop\"",
						  "{", "null", "{}}"};
	for (size_t i = 0; i < 6; i++) {
		http("PUT", P(CUST, "u1", "d1", "assign"), hdrs(NULL),
		     not_objects[i], &r);
		expect_status(&r, 400, NULL);
	}
	put_assign(P(CUST, "u1", "d1", "assign"), "desktop",
		   "accept-charges: maybe", &r);
	expect_status(&r, 400, "accept-charges must be true or false");
	/* row 6: unknown customer; customer outside the named account */
	put_assign(P(UNKNOWN, "u1", "d1", "assign"), "desktop", NULL, &r);
	expect_status(&r, 404, "Not Found");
	put_assign("/v1.0/accounts/" OTHER "/customers/" CUST
		   "/users/u1/devices/pbx/d1/assign",
		   "desktop", NULL, &r);
	expect_status(&r, 404, "Not Found");
	/* row 7, row 8 (unknown, and owned by someone else) */
	put_assign(P(CUST, "nobody", "d1", "assign"), "desktop", NULL, &r);
	expect_status(&r, 404, "User not found");
	put_assign(P(CUST, "u1", "nodev", "assign"), "desktop", NULL, &r);
	expect_status(&r, 404, "Device not found");
	put_assign(P(CUST, "u1", "d3", "assign"), "desktop", NULL, &r);
	expect_status(&r, 404, "Device not found");
	/* row 9 */
	put_assign(P(CUST, "noroles", "d5", "assign"), "desktop", NULL, &r);
	json_t *root = check(&r, 400, NULL);
	assert_non_null(
		strstr(json_string_value(json_object_get(root, "message")),
		       "customer_user_uc_softphone"));
	json_decref(root);
	/* row 10: one seat; u1 takes it, u2 needs consent */
	put_assign(P(CUST, "u1", "d1", "assign"), "desktop", NULL, &r);
	expect_success(&r, P(CUST, "u1", "d1", "assign"));
	put_assign(P(CUST, "u2", "d3", "assign"), "MoBiLe", NULL, &r);
	root = check(&r, 402, "additional charges apply");
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(root, "data"),
						  "clientType")),
		"MoBiLe");
	json_decref(root);
	put_assign(P(CUST, "u2", "d3", "assign"), "MoBiLe",
		   "accept-charges: false", &r);
	expect_status(&r, 402, "additional charges apply");
	put_assign(P(CUST, "u2", "d3", "assign"), "MoBiLe",
		   "Accept-Charges: TRUE", &r);
	expect_success(&r, P(CUST, "u2", "d3", "assign"));
	list_text("u2", buf, sizeof(buf));
	assert_string_equal(buf, "d3:mobile");
	/* the gateway's own rows */
	http("GET", "/v1.0/nothing", NULL, NULL, &r);
	expect_status(&r, 404, "Not Found");
	http("PUT", P(CUST, "u1", "d1", "assign") "/", hdrs(NULL), "{}", &r);
	expect_status(&r, 404, "Not Found");
	http("GET", P(CUST, "u1", "d1", "assign"), hdrs(NULL), NULL, &r);
	expect_status(&r, 405, "Method Not Allowed");
	assert_string_equal(resp_header(&r, "Allow", buf, sizeof(buf)),
			    "PUT, POST");
	http("DELETE", "/v1.0/customers/" CUST "/users/u1/devices/pbx",
	     hdrs(NULL), NULL, &r);
	expect_status(&r, 405, NULL);
	assert_string_equal(resp_header(&r, "Allow", buf, sizeof(buf)),
			    "GET, HEAD");
	http("PUT", P(CUST, "u1", "d1", "assign"),
	     (const char *const[]){"Content-Type: text/plain", auth_header,
				   NULL},
	     "{\"clientType\":\"desktop\"}", &r);
	expect_status(&r, 415, NULL);
	http("PUT", P(CUST, "u1", "d1", "assign"),
	     (const char *const[]){"Content-Type:", auth_header, NULL},
	     "{\"clientType\":\"desktop\"}", &r);
	expect_status(&r, 415, NULL);
	http("PUT", P(CUST, "u1", "d1", "assign"),
	     (const char *const[]){
		     "Content-Type: Application/JSON; charset=UTF-8",
		     auth_header, NULL},
	     "{\"clientType\":\"desktop\"}", &r);
	expect_success(&r, P(CUST, "u1", "d1", "assign"));
	http("PUT", P(CUST, "u%00", "d1", "assign"), hdrs(NULL), "{}", &r);
	expect_status(&r, 400, NULL);
	http("PUT", P(CUST, "u%zz", "d1", "assign"), hdrs(NULL), "{}", &r);
	expect_status(&r, 400, NULL);
	http("PUT",
	     "/v1.0/customers/" CUST "/users/u1/devices/pbx%2Fd1%2Fassign",
	     hdrs(NULL), "{}", &r);
	expect_status(&r, 404, NULL);
	/* A hostile Host never reaches Location. */
	put_assign(P(CUST, "u1", "d1", "assign"), "desktop",
		   "Host: evil.example/x?", &r);
	expect_status(&r, 400, NULL);
	assert_null(resp_header(&r, "Location", buf, sizeof(buf)));
}

static void too_large_bodies(void)
{
	char *big = malloc(20001);
	struct resp r;

	assert_non_null(big);
	memset(big, ' ', 20000);
	big[0] = '{';
	big[19999] = '}';
	big[20000] = '\0';
	/* Content-Length over the limit: refused up front. */
	http("PUT", P(CUST, "u1", "d1", "assign"), hdrs(NULL), big, &r);
	expect_status(&r, 413, "Payload Too Large");
	/* Chunked, no length: counted while streaming. */
	http("PUT", P(CUST, "u1", "d1", "assign"),
	     hdrs("Transfer-Encoding: chunked"), big, &r);
	expect_status(&r, 413, "Payload Too Large");
	/* Just under the limit is fine. */
	big[16383] = '}';
	big[16384] = '\0';
	memcpy(big, "{\"clientType\":\"desktop\"", 23);
	http("PUT", P(CUST, "u1", "d1", "assign"), hdrs(NULL), big, &r);
	expect_success(&r, P(CUST, "u1", "d1", "assign"));
	free(big);
}

static void contract_async(void **state)
{
	(void)state;
	success_paths();
	error_catalog();
	too_large_bodies();
}

/* Several clients at once: suspend/resume must answer every one. */
struct load_arg {
	int n;
	int ok;
	const char *path;
};

static void *load_worker(void *arg)
{
	struct load_arg *a = arg;
	struct resp *r = malloc(sizeof(*r));

	for (int i = 0; r && i < a->n; i++) {
		CURL *c = curl_easy_init();
		struct curl_slist *hl = NULL;
		char url[512];
		long status = 0;
		if (!c)
			break;
		memset(r, 0, sizeof(*r));
		snprintf(url, sizeof(url), "http://%s%s", gateway.addr,
			 a->path);
		hl = curl_slist_append(hl, "Content-Type: application/json");
		hl = curl_slist_append(hl, auth_header);
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS,
				 "{\"clientType\":\"desktop\"}");
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)TIMEOUT_MS);
		if (curl_easy_perform(c) == CURLE_OK)
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		if (status == 201)
			a->ok++;
		curl_slist_free_all(hl);
		curl_easy_cleanup(c);
	}
	free(r);
	return NULL;
}

static void concurrent_requests(void **state)
{
	pthread_t t[8];
	struct load_arg a[8];

	(void)state;
	for (int i = 0; i < 8; i++) {
		a[i].n = 40;
		a[i].ok = 0;
		a[i].path = P(CUST, "u1", "d1", "assign");
		assert_int_equal(
			pthread_create(&t[i], NULL, load_worker, &a[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(a[i].ok, 40);
	}
}

/* Every call of every client on one loop and its one connection. */
static void contract_one_loop(void **state)
{
	(void)state;
	assert_int_equal(harness_stop(&gateway, SIGTERM), 0);
	start_gateway("1");
	success_paths();
	error_catalog();
	too_large_bodies();
	concurrent_requests(state);
	assert_int_equal(harness_stop(&gateway, SIGTERM), 0);
	start_gateway("2");
}

/* ---- the server restarting under the gateway ----------------------------- */

static void server_restart(void **state)
{
	struct resp r;
	char text[256];
	struct timespec t0, t1;

	(void)state;
	put_assign(P(CUST, "u1", "d1", "assign"), "desktop", NULL, &r);
	expect_success(&r, P(CUST, "u1", "d1", "assign"));
	assert_int_equal(harness_stop(&server, SIGKILL),
			 HARNESS_STATUS_SIGNAL(SIGKILL));
	/* Down: 503 within the deadline, never a hang. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	put_assign(P(CUST, "u1", "d1", "assign"), "desktop", NULL, &r);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	expect_status(&r, 503, "Service Unavailable");
	assert_true(t1.tv_sec - t0.tv_sec < 6);
	http("GET", "/readyz", NULL, NULL, &r);
	expect_status(&r, 503, NULL);
	http("GET", "/healthz", NULL, NULL, &r);
	expect_status(&r, 200, NULL);
	/* Back on the same port with the same database. */
	start_server();
	put_assign(P(CUST, "u1", "d1", "assign"), "desktop", NULL, &r);
	expect_success(&r, P(CUST, "u1", "d1", "assign"));
	list_text("u1", text, sizeof(text));
	assert_string_equal(text, "d1:desktop");
	/* Each event loop has its own upstream connection and reconnects
	 * after its own backoff (at most 1 s + 20 %): a probe that lands on
	 * a loop still waiting answers 503 without waiting (readyz fails
	 * fast). Ready again once every loop is back, within seconds. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 50; i++) {
		http("GET", "/readyz", NULL, NULL, &r);
		if (r.status == 200)
			break;
		usleep(100 * 1000);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr, "readyz 200 again %ld ms after the first call\n",
		(long)((t1.tv_sec - t0.tv_sec) * 1000 +
		       (t1.tv_nsec - t0.tv_nsec) / 1000000));
	expect_status(&r, 200, NULL);
	assert_true(harness_is_alive(&gateway));
}

/* ---- hostile bytes ----------------------------------------------------- */

static int connect_gateway(void)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)gateway.port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/*
 * Sends raw bytes, then reads until the gateway closes or timeout_ms pass.
 * Returns the HTTP status of the first response line, 0 when the gateway
 * closed without one, -1 when it neither answered nor closed in time.
 */
static int raw_exchange(const void *data, size_t len, bool is_half_close,
			int timeout_ms)
{
	char buf[4096];
	size_t got = 0;
	int fd = connect_gateway(), status = -1;
	struct pollfd pfd = {fd, POLLIN, 0};

	if (len)
		(void)!send(fd, data, len, MSG_NOSIGNAL);
	if (is_half_close)
		shutdown(fd, SHUT_WR);
	while (poll(&pfd, 1, timeout_ms) == 1) {
		ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
		if (n <= 0) {
			status = 0;
			break;
		}
		got += (size_t)n;
		buf[got] = '\0';
		if (got >= 12 && strncmp(buf, "HTTP/1.", 7) == 0) {
			status = (int)strtol(buf + 9, NULL, 10);
			break;
		}
		if (got == sizeof(buf) - 1)
			break;
	}
	close(fd);
	return status;
}

static void hostile_raw_requests(void **state)
{
	static const char *const cases[] = {
		"GARBAGE\r\n\r\n",
		"GET\r\n\r\n",
		"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
		"GET /healthz HTTP/1.1\r\n\r\n", /* no Host */
		"PUT /v1.0/customers/x/users/u/devices/pbx/d/assign "
		"HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
		"Transfer-Encoding: chunked\r\n\r\nZZZ\r\nxx\r\n0\r\n\r\n",
		"PUT /v1.0/customers/x/users/u/devices/pbx/d/assign "
		"HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
		"PUT /v1.0/customers/x/users/u/devices/pbx/d/assign "
		"HTTP/1.1\r\nHost: x\r\nContent-Length: "
		"99999999999999999999\r\n"
		"\r\n",
		"PUT /v1.0/customers/x/users/u/devices/pbx/d/assign "
		"HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: "
		"6\r\n\r\n{}",
		"GET /%00 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
		"\r\n\r\n\r\n",
	};
	char *huge;
	unsigned char garbage[4096];
	struct resp r;
	int fd;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int st = raw_exchange(cases[i], strlen(cases[i]), true, 5000);
		if (st != 0 && (st < 400 || st > 599))
			fail_msg("case %zu: status %d", i, st);
	}
	/* Headers far over the memory limit. */
	huge = malloc(200000);
	assert_non_null(huge);
	size_t o = (size_t)snprintf(
		huge, 200000, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
	memset(huge + o, 'a', 150000);
	o += 150000;
	memcpy(huge + o, "\r\n\r\n", 4);
	o += 4;
	int st = raw_exchange(huge, o, false, 5000);
	assert_true(st == 0 || (st >= 400 && st <= 599));
	free(huge);
	/* Binary garbage. */
	srand(7);
	for (size_t i = 0; i < sizeof(garbage); i++)
		garbage[i] = (unsigned char)(rand() & 0xff);
	st = raw_exchange(garbage, sizeof(garbage), true, 5000);
	assert_true(st == 0 || (st >= 400 && st <= 599));
	/* Slowloris: a partial request is cut off by the connection timeout
	 * (2 s) while other clients are served. */
	fd = connect_gateway();
	static const char partial[] =
		"PUT /v1.0/customers/x/users/u/devices/pbx/d/assign "
		"HTTP/1.1\r\n"
		"Host: x\r\n";
	(void)!send(fd, partial, sizeof(partial) - 1, MSG_NOSIGNAL);
	http("GET", "/healthz", NULL, NULL, &r);
	expect_status(&r, 200, NULL);
	struct pollfd pfd = {fd, POLLIN, 0};
	assert_int_equal(poll(&pfd, 1, 6000), 1);
	char b[256];
	assert_true(recv(fd, b, sizeof(b), 0) <= 0);
	close(fd);
	/* Both programs still alive and answering. */
	assert_true(harness_is_alive(&gateway));
	assert_true(harness_is_alive(&server));
	put_assign(P(CUST, "u1", "d1", "assign"), "desktop", NULL, &r);
	expect_success(&r, P(CUST, "u1", "d1", "assign"));
}

/* Idle clients beyond the per-address limit are turned away; the ones
 * below it are not starved. */
static void connection_limits(void **state)
{
	struct harness_proc limited = gateway;
	const char *args[] = {"--upstream",
			      server_listen,
			      "--per-ip-connection-limit",
			      "3",
			      "--connection-timeout",
			      "30",
			      NULL};
	int fds[3];
	struct resp r;

	(void)state;
	assert_int_equal(harness_start(&gateway, DAS_GATEWAY_BIN, args, NULL),
			 0);
	/*
	 * Four idle connections: one of them (whichever the gateway accepts
	 * last, not necessarily the last connected) is answered 503 with
	 * Retry-After and closed; the other three stay open.
	 */
	int all[4];
	struct pollfd pfd[4];
	for (int i = 0; i < 4; i++) {
		all[i] = connect_gateway();
		pfd[i] = (struct pollfd){all[i], POLLIN, 0};
	}
	assert_int_equal(poll(pfd, 4, 5000), 1);
	int n_open = 0;
	for (int i = 0; i < 4; i++) {
		if (pfd[i].revents) {
			char answer[1024];
			size_t got = 0;
			ssize_t n;
			while ((n = recv(all[i], answer + got,
					 sizeof(answer) - 1 - got, 0)) > 0)
				got += (size_t)n;
			answer[got] = '\0';
			assert_true(strncmp(answer, "HTTP/1.1 503 ", 13) == 0);
			assert_non_null(strstr(answer, "\r\nRetry-After: 1\r\n"));
			assert_non_null(strstr(answer, "\r\nConnection: close\r\n"));
			assert_non_null(strstr(answer, "\"error\":503"));
			close(all[i]);
		} else {
			fds[n_open++] = all[i];
		}
	}
	assert_int_equal(n_open, 3);
	/* One idle connection goes away: a real client gets in. */
	close(fds[0]);
	for (int tries = 0; tries < 50; tries++) {
		CURL *c = curl_easy_init();
		long status = 0;
		char url[128];
		snprintf(url, sizeof(url), "http://%s/healthz", gateway.addr);
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
		memset(&r, 0, sizeof(r));
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
		if (curl_easy_perform(c) == CURLE_OK)
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_cleanup(c);
		if (status == 200)
			break;
		assert_true(tries < 49);
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	close(fds[1]);
	close(fds[2]);
	assert_int_equal(harness_stop(&gateway, SIGTERM), 0);
	gateway = limited;
}

struct inflight {
	struct resp r;
	long ms;
};

static void *inflight_request(void *arg)
{
	struct inflight *f = arg;
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	put_assign(P(CUST, "u1", "d1", "assign"), "desktop", NULL, &f->r);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	f->ms = (t1.tv_sec - t0.tv_sec) * 1000 +
		(t1.tv_nsec - t0.tv_nsec) / 1000000;
	return NULL;
}

/*
 * Bytes the server has not read on its connections (rx_queue of its
 * established sockets in /proc/net/tcp and tcp6: core listens dual-stack),
 * or -1.
 */
static long server_unread_bytes(void)
{
	static const char *const files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
	long total = -1;

	for (size_t i = 0; i < 2; i++) {
		FILE *f = fopen(files[i], "r");
		char line[512];
		if (!f)
			continue;
		if (total < 0)
			total = 0;
		while (fgets(line, sizeof(line), f)) {
			unsigned local_port, state;
			unsigned long rx;
			if (sscanf(line,
				   " %*u: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x "
				   "%x %*x:%lx",
				   &local_port, &state, &rx) == 3 &&
			    (int)local_port == server.port && state == 1)
				total += (long)rx;
		}
		fclose(f);
	}
	return total;
}

/*
 * SIGTERM while a call is in flight: the call gets its real answer, then
 * the gateway exits 0. The server is held with SIGSTOP so the call is
 * provably in flight (its bytes wait, unread, on the server's socket) when
 * SIGTERM arrives, and continued afterwards: a 201 can only come from
 * draining.
 */
static void sigterm_drains_and_exits_zero(void **state)
{
	static struct inflight f;
	pthread_t t;
	int ws, status;
	long unread = 0;

	(void)state;
	assert_int_equal(kill(server.pid, SIGSTOP), 0);
	assert_int_equal(waitpid(server.pid, &ws, WUNTRACED), server.pid);
	assert_true(WIFSTOPPED(ws));
	assert_int_equal(server_unread_bytes(), 0);
	assert_int_equal(pthread_create(&t, NULL, inflight_request, &f), 0);
	/* Wait (bounded) until the gateway has forwarded the call. */
	for (int i = 0; i < 200 && unread <= 0; i++) {
		struct timespec step = {0, 10 * 1000 * 1000};
		nanosleep(&step, NULL);
		unread = server_unread_bytes();
	}
	if (unread <= 0)
		kill(server.pid, SIGCONT);
	assert_true(unread > 0);
	assert_int_equal(kill(gateway.pid, SIGTERM), 0);
	/* Draining: the gateway waits for the call, it does not exit. */
	assert_int_equal(harness_wait_exit(&gateway, 300, &status), -1);
	assert_int_equal(kill(server.pid, SIGCONT), 0);
	assert_int_equal(harness_wait_exit(&gateway, HARNESS_STOP_TIMEOUT_MS,
					   &status),
			 0);
	pthread_join(t, NULL);
	assert_int_equal(status, 0);
	expect_success(&f.r, P(CUST, "u1", "d1", "assign"));
	fprintf(stderr,
		"sigterm: %ld request bytes were waiting at the server; the "
		"call was answered after %ld ms, then the gateway exited 0\n",
		unread, f.ms);
	assert_true(harness_is_alive(&server));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(contract_async),
		cmocka_unit_test(concurrent_requests),
		cmocka_unit_test(contract_one_loop),
		cmocka_unit_test(server_restart),
		cmocka_unit_test(hostile_raw_requests),
		cmocka_unit_test(connection_limits),
		cmocka_unit_test(sigterm_drains_and_exits_zero),
	};
	return harness_finish(cmocka_run_group_tests(tests, setup, teardown));
}
