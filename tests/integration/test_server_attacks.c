/*
 * The gRPC server under attack, driven over real sockets:
 * - NUL bytes inside string fields, for every RPC: refused with the usual
 *   rows and nothing changed (protobuf-c would hand "alice\0ZZZ" over as
 *   "alice");
 * - two authorization entries (401) and trailing OWS after the token (OK);
 * - a second server on a port in use exits non-zero, "Address already in
 *   use" (no SO_REUSEPORT); one on the SQLite file in use, "in use by
 *   another process"; a unix socket to listen on, or a switch that is
 *   neither true nor false, exits 2;
 * - HTTP/2 rapid reset (CVE-2023-44487): connections opening AssignDevice
 *   streams and cancelling each at once, in rounds, from a raw HTTP/2
 *   client (libnghttp2), while a normal client measures its latency: the
 *   server's peak RSS stays under 300 MiB, every normal call is answered
 *   in time, flooding connections are closed with a WARN line naming the
 *   peer (service/grpc/flood_guard.h); the same on the TLS listener
 *   (OpenSSL client, ALPN h2); and four flooders against two polling
 *   workers;
 * - legitimate heavy clients are never closed for it: h2load 4 x 8
 *   streams, and a client whose calls hit their deadline now and then;
 *   h2load 4 x 100 streams (every stream the server allows, none reset);
 * - the concurrent-stream cap the server advertises;
 * - gzip "bombs" (64 KiB inflating to 32 MiB each) refused at the 64 KiB
 *   limit without inflating them, while a normal client measures latency;
 * - a header block that never ends (HEADERS, then CONTINUATION frames
 *   without END_HEADERS, of literal headers or of one-byte references to
 *   the HPACK table): the connection closed for the bytes no call
 *   accounts for, the server's RSS bounded, normal calls answered;
 * - PING floods, from connections that never read the acknowledgements
 *   (memory bounded) and from one that reads them (closed);
 * - clients that do not read (300 x 30,000 PINGs): closed once the
 *   server's bytes wait 2 s past 64 MiB of RSS;
 * - streams opened and never given their request: connections holding
 *   more than 8 closed after 10 s, or after 300 ms past 64 MiB of RSS;
 * - a connection flood: connections past --connection-limit, or past what
 *   a low open-files limit allows, closed as they arrive, and the server
 *   still accepts once they are gone (gRPC core 1.51 stops accepting for
 *   good after one EMFILE; service/grpc/accept_guard.h).
 *
 * Figures (RSS, latencies) are printed. Counts are smaller than the attacks
 * of issue 10 and can be raised with DAS_FLOOD_STREAMS (streams per
 * connection and round), DAS_FLOOD_ROUNDS (DAS_FLOOD_STREAMS_2W and
 * DAS_FLOOD_ROUNDS_2W for the 2-worker flood) and DAS_HEAVY_CALLS (h2load's
 * calls); DAS_FLOOD_TIMEOUT (a grpc-timeout value, "100m") gives the
 * streams of rapid_reset_flood_bounded a deadline. The server runs with ASan's quarantine cut to 16 MiB: by default
 * ASan keeps up to 256 MiB of freed memory, which would measure ASan, not
 * the server. A sanitizer build floods less and bounds less (see
 * FLOOD_IS_SANITIZED).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <fcntl.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <zlib.h>

#include "deviceassignment/v1/device_assignment.pb-c.h"
#include "deviceassignment/v1/directory.pb-c.h"

#include "client/das_client.h"
#include "harness.h"

#define CUST "0f8fad5b-d9cb-469f-a165-70867728950e"
#define TIMEOUT_MS 10000

/* Bounds the attacks must stay within (see the figures printed). */
#define RSS_LIMIT_KIB (300 * 1024)
/* Normal calls during an attack: every one answered, none slower than
 * this. The issue asks for 100 ms (flood) and p99 50 ms (bomb) on an idle
 * machine; a sanitizer build on 2 shared, loaded cores gets this margin,
 * still far below the seconds the attacks cost before. */
#define SLOW_CALL_MS 1000
/*
 * The flood (release build): every normal call made during it answered,
 * none slower than FLOOD_MAX_CALL_MS. Before the flood guard the server's
 * RSS grew by ~13 KiB per reset stream, to GBs, and normal calls queued
 * behind the flood for up to their 10 s deadline. The issue asks for
 * 100 ms (FLOOD_ISSUE_MS): printed with the p50/p99/max, not asserted.
 * Measured on 2 cores shared at load 5-7, 14 runs of this test: p99 55 to
 * 594 ms, max up to 1,049 ms (at load ~20, one call in 10 runs took 8 s:
 * no bound holds there); the normal calls that wait do so inside
 * gRPC core (their connection's reads and writes queue behind the
 * flooders' in core's combiner and executor threads; service/grpc/
 * flood_guard.h), not in the server's queue, and core 1.51 has no knob
 * for it. An assertion at 100 ms would fail on such a machine without a
 * regression; this one still fails the way the server failed before.
 */
#define FLOOD_MAX_CALL_MS 2000
#define FLOOD_ISSUE_MS 100
/*
 * A sanitizer build runs the server several times slower while the
 * flooding client is not, and ASan pads every allocation: there the flood
 * is 1,000 streams per connection and round (release: 2,500), the bound
 * is on the RSS the flood adds (ASan's own start-up memory is ~100 MiB),
 * and the timings of normal calls are printed, not bounded (every one must
 * still be answered). The release build asserts the bounds as stated.
 */
#if defined(__SANITIZE_ADDRESS__)
#define FLOOD_IS_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FLOOD_IS_SANITIZED 1
#endif
#endif
#ifndef FLOOD_IS_SANITIZED
#define FLOOD_IS_SANITIZED 0
#endif
#define FLOOD_CLOSED_LINE "closed the connection of ipv4:127.0.0.1:"

static struct harness_proc server;
static char db_spec[512];
static struct das_client *client;
static char *admin_token, *assign_token;

static const char *const all_tenants[] = {"*"};

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* pid's VmRSS once it is back within 32 MiB of before (at most 5 s); at
 * once in a sanitizer build, whose allocator keeps what it freed. */
static long rss_settled(pid_t pid, long before)
{
	long rss = harness_proc_kib(pid, "VmRSS");

	for (int i = 0; !FLOOD_IS_SANITIZED && i < 50 &&
			rss - before > 32 * 1024;
	     i++) {
		usleep(100 * 1000);
		rss = harness_proc_kib(pid, "VmRSS");
	}
	return rss;
}

static long env_count(const char *name, long dflt)
{
	const char *v = getenv(name);
	long n = v ? strtol(v, NULL, 10) : 0;
	return n > 0 ? n : dflt;
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

static void call_on(struct das_client *c, enum das_rpc_method m,
		    const char *token, const ProtobufCMessage *req,
		    ProtobufCMessage **resp, struct das_call_status *st)
{
	ProtobufCMessage *unused = NULL;
	assert_int_equal(das_client_call(c, m, token, req,
					 resp ? resp : &unused, TIMEOUT_MS, st),
			 0);
	if (unused)
		protobuf_c_message_free_unpacked(unused, NULL);
}

static void call(enum das_rpc_method m, const char *token,
		 const ProtobufCMessage *req, ProtobufCMessage **resp,
		 struct das_call_status *st)
{
	call_on(client, m, token, req, resp, st);
}

/* The user's devices as "dev:type dev:type", or "" (code in *code). */
static void list_text(const char *user, char *buf, size_t size, int *code)
{
	Deviceassignment__V1__ListUserDevicesRequest r =
		DEVICEASSIGNMENT__V1__LIST_USER_DEVICES_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	struct das_call_status st;

	r.customer_tenant_id = (char *)CUST;
	r.user_id = (char *)user;
	call(DAS_RPC_LIST_USER_DEVICES, assign_token, &r.base, &resp, &st);
	*code = st.code;
	buf[0] = '\0';
	if (!resp)
		return;
	Deviceassignment__V1__ListUserDevicesResponse *l = (void *)resp;
	harness_devices_text(l, buf, size);
	protobuf_c_message_free_unpacked(resp, NULL);
}

/* The customer, alice and her device, through c. */
static void seed(struct das_client *c)
{
	struct das_call_status st;
	static char *roles[] = {(char *)"customer_user_uc",
				(char *)"customer_user_uc_softphone"};

	Deviceassignment__V1__UpsertCustomerRequest cu =
		DEVICEASSIGNMENT__V1__UPSERT_CUSTOMER_REQUEST__INIT;
	cu.tenant_id = (char *)CUST;
	cu.name = (char *)"Acme";
	call_on(c, DAS_RPC_UPSERT_CUSTOMER, admin_token, &cu.base, NULL, &st);
	expect(0, "", &st);
	Deviceassignment__V1__UpsertUserRequest u =
		DEVICEASSIGNMENT__V1__UPSERT_USER_REQUEST__INIT;
	u.tenant_id = (char *)CUST;
	u.user_id = (char *)"alice";
	u.n_roles = 2;
	u.roles = roles;
	call_on(c, DAS_RPC_UPSERT_USER, admin_token, &u.base, NULL, &st);
	expect(0, "", &st);
	Deviceassignment__V1__UpsertPbxDeviceRequest d =
		DEVICEASSIGNMENT__V1__UPSERT_PBX_DEVICE_REQUEST__INIT;
	d.tenant_id = (char *)CUST;
	d.device_id = (char *)"alice-mobile-01";
	d.owner_user_id = (char *)"alice";
	call_on(c, DAS_RPC_UPSERT_PBX_DEVICE, admin_token, &d.base, NULL, &st);
	expect(0, "", &st);
}

static int setup(void **state)
{
	char db[400];

	(void)state;
	/* See the top: the flood bounds the server's RSS. */
	const char *asan = getenv("ASAN_OPTIONS");
	char opts[1024];
	snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=16",
		 asan ? asan : "", asan && *asan ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
	harness_path("attacks.db", db, sizeof(db));
	snprintf(db_spec, sizeof(db_spec), "sqlite:%s", db);
	const char *args[] = {"--store", db_spec, "--jwt-hs256-secret-file",
			      harness_secret_file(), NULL};
	assert_int_equal(harness_start(&server, DAS_SERVER_BIN, args, NULL), 0);
	client = das_client_new(server.addr);
	assert_non_null(client);
	admin_token = harness_mint("admin", all_tenants, 1, "directory:admin",
				   3600);
	assign_token = harness_mint("agent", all_tenants, 1, "devices:assign",
				    3600);
	seed(client);
	return 0;
}

/* A server of its own on the database file name, with one more flag and
 * its value (flag NULL: none) and an open-files limit (0: inherited). */
static void own_server_start(struct harness_proc *srv, const char *name,
			     const char *flag, const char *value,
			     unsigned nofile)
{
	char db[512], spec[600];

	harness_path(name, db, sizeof(db));
	snprintf(spec, sizeof(spec), "sqlite:%s", db);
	const char *args[] = {"--store", spec, "--jwt-hs256-secret-file",
			      harness_secret_file(), flag, value, NULL};
	assert_int_equal(
		harness_start_nofile(srv, DAS_SERVER_BIN, args, NULL, nofile),
		0);
}

static int teardown(void **state)
{
	(void)state;
	das_client_free(client);
	client = NULL;
	free(admin_token);
	free(assign_token);
	return 0;
}

/* ---- NUL bytes in strings ----------------------------------------------- */

/* A protobuf message built by hand: strings may hold any bytes. */
struct wire {
	uint8_t b[1024];
	size_t n;
};

static void put_varint(struct wire *w, uint64_t v)
{
	do {
		assert_true(w->n < sizeof(w->b));
		w->b[w->n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
}

/* A string field: s is len bytes (may contain NUL). */
static void put_str(struct wire *w, unsigned field, const char *s, size_t len)
{
	put_varint(w, (uint64_t)field << 3 | 2);
	put_varint(w, len);
	assert_true(w->n + len <= sizeof(w->b));
	memcpy(w->b + w->n, s, len);
	w->n += len;
}

#define PUT(w, field, lit) put_str((w), (field), (lit), sizeof(lit) - 1)

static void put_int(struct wire *w, unsigned field, uint64_t v)
{
	put_varint(w, (uint64_t)field << 3);
	put_varint(w, v);
}

static void raw_call(enum das_rpc_method m, const char *token,
		     const struct wire *w, struct das_call_status *st)
{
	char auth[4096];
	const char *md[] = {"authorization", auth};

	snprintf(auth, sizeof(auth), "Bearer %s", token ? token : "");
	assert_int_equal(das_client_call_raw(client, das_rpc_method(m)->path,
					     w->b, w->n, md, token ? 1 : 0,
					     TIMEOUT_MS, st),
			 0);
}

/* Deletes a user (device == NULL) or a customer (user == NULL too);
 * returns the response's "changed". */
static bool delete_changed(const char *tenant, const char *user)
{
	ProtobufCMessage *resp = NULL;
	struct das_call_status st;
	bool is_changed;

	if (user) {
		Deviceassignment__V1__DeleteUserRequest r =
			DEVICEASSIGNMENT__V1__DELETE_USER_REQUEST__INIT;
		r.tenant_id = (char *)tenant;
		r.user_id = (char *)user;
		call(DAS_RPC_DELETE_USER, admin_token, &r.base, &resp, &st);
	} else {
		Deviceassignment__V1__DeleteCustomerRequest r =
			DEVICEASSIGNMENT__V1__DELETE_CUSTOMER_REQUEST__INIT;
		r.tenant_id = (char *)tenant;
		call(DAS_RPC_DELETE_CUSTOMER, admin_token, &r.base, &resp,
		     &st);
	}
	expect(0, "", &st);
	assert_non_null(resp);
	is_changed = ((Deviceassignment__V1__DirectoryResponse *)resp)->changed;
	protobuf_c_message_free_unpacked(resp, NULL);
	return is_changed;
}

static void nul_in_strings_refused(void **state)
{
	struct wire w;
	struct das_call_status st;
	char text[256];
	int code;

	(void)state;
	/* AssignDevice, each id (issue 10's three cases) */
	memset(&w, 0, sizeof(w));
	PUT(&w, 1, CUST "\0junk");
	PUT(&w, 2, "alice");
	PUT(&w, 3, "alice-mobile-01");
	put_int(&w, 4, 2);
	raw_call(DAS_RPC_ASSIGN_DEVICE, assign_token, &w, &st);
	expect(3, "INVALID_TENANT_ID", &st);
	assert_string_equal(st.message, "The value '" CUST "?junk' is not valid.");
	memset(&w, 0, sizeof(w));
	PUT(&w, 1, CUST);
	PUT(&w, 2, "alice\0ZZZ");
	PUT(&w, 3, "alice-mobile-01");
	put_int(&w, 4, 2);
	raw_call(DAS_RPC_ASSIGN_DEVICE, assign_token, &w, &st);
	expect(3, "INVALID_ID", &st);
	assert_string_equal(st.message, "The value 'alice?ZZZ' is not valid.");
	memset(&w, 0, sizeof(w));
	PUT(&w, 1, CUST);
	PUT(&w, 2, "alice");
	PUT(&w, 3, "alice-mobile-01\0evil");
	put_int(&w, 4, 2);
	raw_call(DAS_RPC_ASSIGN_DEVICE, assign_token, &w, &st);
	expect(3, "INVALID_ID", &st);
	/* the account id too, and a tenant id goes before another id */
	memset(&w, 0, sizeof(w));
	PUT(&w, 1, CUST);
	PUT(&w, 2, "alice\0x");
	PUT(&w, 3, "alice-mobile-01");
	put_int(&w, 4, 2);
	PUT(&w, 6, CUST "\0");
	raw_call(DAS_RPC_ASSIGN_DEVICE, assign_token, &w, &st);
	expect(3, "INVALID_TENANT_ID", &st);
	list_text("alice", text, sizeof(text), &code);
	assert_int_equal(code, 0);
	assert_string_equal(text, "");

	/* UnassignDevice, ListUserDevices */
	memset(&w, 0, sizeof(w));
	PUT(&w, 1, CUST);
	PUT(&w, 2, "alice");
	PUT(&w, 3, "alice-mobile-01\0");
	raw_call(DAS_RPC_UNASSIGN_DEVICE, assign_token, &w, &st);
	expect(3, "INVALID_ID", &st);
	memset(&w, 0, sizeof(w));
	PUT(&w, 1, CUST);
	PUT(&w, 2, "\0alice");
	raw_call(DAS_RPC_LIST_USER_DEVICES, assign_token, &w, &st);
	expect(3, "INVALID_ID", &st);

	/* UpsertCustomer: a new customer named "x\0y" is not created */
	memset(&w, 0, sizeof(w));
	PUT(&w, 1, "3f2504e0-4f89-11d3-9a0c-0305e82c3301");
	PUT(&w, 3, "x\0y");
	raw_call(DAS_RPC_UPSERT_CUSTOMER, admin_token, &w, &st);
	expect(3, "INVALID_ARGUMENT", &st);
	assert_non_null(strstr(st.message, "NUL"));
	memset(&w, 0, sizeof(w));
	PUT(&w, 1, "3f2504e0-4f89-11d3-9a0c-0305e82c3301");
	PUT(&w, 3, "x");
	PUT(&w, 2, "7c9e6679-7425-40de-944b-e07fc1f90ae7\0");
	raw_call(DAS_RPC_UPSERT_CUSTOMER, admin_token, &w, &st);
	expect(3, "INVALID_TENANT_ID", &st);
	/* ... nor is it there: deleting it changes nothing */
	assert_false(delete_changed("3f2504e0-4f89-11d3-9a0c-0305e82c3301",
				    NULL));
	/* DeleteCustomer */
	memset(&w, 0, sizeof(w));
	PUT(&w, 1, CUST "\0");
	raw_call(DAS_RPC_DELETE_CUSTOMER, admin_token, &w, &st);
	expect(3, "INVALID_TENANT_ID", &st);

	/* UpsertUser: user "zed\0evil", role "customer_user_uc\0x" */
	memset(&w, 0, sizeof(w));
	PUT(&w, 1, CUST);
	PUT(&w, 2, "zed\0evil");
	PUT(&w, 3, "customer_user_uc");
	raw_call(DAS_RPC_UPSERT_USER, admin_token, &w, &st);
	expect(3, "INVALID_ID", &st);
	memset(&w, 0, sizeof(w));
	PUT(&w, 1, CUST);
	PUT(&w, 2, "zed");
	PUT(&w, 3, "customer_user_uc_softphone");
	PUT(&w, 3, "customer_user_uc\0x");
	raw_call(DAS_RPC_UPSERT_USER, admin_token, &w, &st);
	expect(3, "INVALID_ARGUMENT", &st);
	assert_false(delete_changed(CUST, "zed")); /* zed was not created */
	/* DeleteUser */
	memset(&w, 0, sizeof(w));
	PUT(&w, 1, CUST);
	PUT(&w, 2, "alice\0");
	raw_call(DAS_RPC_DELETE_USER, admin_token, &w, &st);
	expect(3, "INVALID_ID", &st);

	/* UpsertPbxDevice: device id, owner id */
	memset(&w, 0, sizeof(w));
	PUT(&w, 1, CUST);
	PUT(&w, 2, "alice-mobile-01\0evil");
	PUT(&w, 3, "alice");
	raw_call(DAS_RPC_UPSERT_PBX_DEVICE, admin_token, &w, &st);
	expect(3, "INVALID_ID", &st);
	memset(&w, 0, sizeof(w));
	PUT(&w, 1, CUST);
	PUT(&w, 2, "alice-mobile-02");
	PUT(&w, 3, "alice\0evil");
	raw_call(DAS_RPC_UPSERT_PBX_DEVICE, admin_token, &w, &st);
	expect(3, "INVALID_ID", &st);
	/* DeletePbxDevice */
	memset(&w, 0, sizeof(w));
	PUT(&w, 1, CUST);
	PUT(&w, 2, "alice-mobile-01\0");
	raw_call(DAS_RPC_DELETE_PBX_DEVICE, admin_token, &w, &st);
	expect(3, "INVALID_ID", &st);

	/* Health/Check: service "\0" is not "" */
	memset(&w, 0, sizeof(w));
	PUT(&w, 1, "\0");
	raw_call(DAS_RPC_HEALTH_CHECK, NULL, &w, &st);
	expect(3, "INVALID_ARGUMENT", &st);

	/* Nothing changed: alice, her device and the customer are intact,
	 * and the same calls without the NUL tails work. */
	memset(&w, 0, sizeof(w));
	PUT(&w, 1, CUST);
	PUT(&w, 2, "alice");
	PUT(&w, 3, "alice-mobile-01");
	put_int(&w, 4, 2);
	raw_call(DAS_RPC_ASSIGN_DEVICE, assign_token, &w, &st);
	expect(0, "", &st);
	list_text("alice", text, sizeof(text), &code);
	assert_string_equal(text, "alice-mobile-01:2");
	memset(&w, 0, sizeof(w));
	PUT(&w, 1, CUST);
	PUT(&w, 2, "alice");
	PUT(&w, 3, "alice-mobile-01");
	raw_call(DAS_RPC_UNASSIGN_DEVICE, assign_token, &w, &st);
	expect(0, "", &st);
}

/* ---- authorization metadata --------------------------------------------- */

static void authorization_entries(void **state)
{
	struct wire w;
	struct das_call_status st;
	char auth[4096], spaced[4096];
	char *other = harness_mint("other", all_tenants, 1, "directory:admin",
				   3600);

	(void)state;
	memset(&w, 0, sizeof(w));
	PUT(&w, 1, CUST);
	PUT(&w, 2, "alice");
	snprintf(auth, sizeof(auth), "Bearer %s", assign_token);
	/* One valid entry: OK. Two, whichever order, even both valid: 401. */
	const char *one[] = {"authorization", auth};
	assert_int_equal(das_client_call_raw(
				 client,
				 das_rpc_method(DAS_RPC_LIST_USER_DEVICES)->path,
				 w.b, w.n, one, 1, TIMEOUT_MS, &st),
			 0);
	expect(0, "", &st);
	const char *two[] = {"authorization", auth, "authorization", auth};
	assert_int_equal(das_client_call_raw(
				 client,
				 das_rpc_method(DAS_RPC_LIST_USER_DEVICES)->path,
				 w.b, w.n, two, 2, TIMEOUT_MS, &st),
			 0);
	expect(16, "UNAUTHENTICATED", &st);
	snprintf(spaced, sizeof(spaced), "Bearer %s", other);
	const char *mixed[] = {"authorization", auth, "authorization", spaced};
	assert_int_equal(das_client_call_raw(
				 client,
				 das_rpc_method(DAS_RPC_LIST_USER_DEVICES)->path,
				 w.b, w.n, mixed, 2, TIMEOUT_MS, &st),
			 0);
	expect(16, "UNAUTHENTICATED", &st);
	/* Trailing OWS after the token is dropped, as HTTP does (gRPC
	 * metadata cannot carry a tab: spaces only here). */
	snprintf(spaced, sizeof(spaced), "Bearer %s   ", assign_token);
	const char *ows[] = {"authorization", spaced};
	assert_int_equal(das_client_call_raw(
				 client,
				 das_rpc_method(DAS_RPC_LIST_USER_DEVICES)->path,
				 w.b, w.n, ows, 1, TIMEOUT_MS, &st),
			 0);
	expect(0, "", &st);
	free(other);
}

/* ---- a port in use ------------------------------------------------------ */

static void port_in_use_refused(void **state)
{
	struct harness_run_result *r = malloc(sizeof(*r));
	char db[400], spec[512];

	(void)state;
	assert_non_null(r);
	harness_path("second.db", db, sizeof(db));
	snprintf(spec, sizeof(spec), "sqlite:%s", db);
	const char *args[] = {"--listen", server.addr, "--store", spec,
			      "--jwt-hs256-secret-file", harness_secret_file(),
			      NULL};
	assert_int_equal(harness_run(DAS_SERVER_BIN, args, NULL, 20000, r), 0);
	fprintf(stderr, "second server on %s: status %d, stderr: %s",
		server.addr, r->status, r->err);
	assert_true(r->status != 0 && r->status != HARNESS_STATUS_TIMEOUT);
	assert_null(strstr(r->out, "listening"));
	assert_non_null(strstr(r->err, "Address already in use"));
	free(r);
	assert_true(harness_is_alive(&server));
}

/* ---- a database in use --------------------------------------------------- */

/*
 * The server holds its SQLite file alone (--sqlite-exclusive, default
 * true): a second server on the same file, on a port of its own, exits
 * non-zero at once, naming the file, whichever way it is asked to lock;
 * the first keeps answering from it.
 */
static void sqlite_file_in_use_refused(void **state)
{
	struct harness_run_result *r = malloc(sizeof(*r));
	static const char *const modes[] = {"true", "false"};
	char devices[256];
	int code;

	(void)state;
	assert_non_null(r);
	for (int i = 0; i < 2; i++) {
		const char *args[] = {"--listen", "127.0.0.1:0", "--store",
				      db_spec, "--sqlite-exclusive", modes[i],
				      "--jwt-hs256-secret-file",
				      harness_secret_file(), NULL};
		assert_int_equal(
			harness_run(DAS_SERVER_BIN, args, NULL, 20000, r), 0);
		fprintf(stderr, "second server on %s (exclusive %s): status "
				"%d, stderr: %s",
			db_spec, modes[i], r->status, r->err);
		assert_true(r->status != 0 &&
			    r->status != HARNESS_STATUS_TIMEOUT);
		assert_null(strstr(r->out, "listening"));
		assert_non_null(strstr(r->err, "is in use by another process"));
	}
	free(r);
	assert_true(harness_is_alive(&server));
	list_text("alice", devices, sizeof(devices), &code);
	assert_int_equal(code, 0);
}

/*
 * Flags the server cannot honour exit 2 with the reason, before anything
 * starts: a unix socket to listen on (gRPC core would unlink another
 * server's socket file and report port 1), a switch that is not true or
 * false.
 */
static void unusable_flags_refused(void **state)
{
	struct harness_run_result *r = malloc(sizeof(*r));
	char sock[400];
	static const struct {
		const char *flag, *value, *reason;
	} cases[] = {
		{"--listen", NULL, "want HOST:PORT"},
		{"--listen", "unix-abstract:das", "want HOST:PORT"},
		{"--sqlite-exclusive", "yes", "want true or false"},
		{"--reflection", "1", "want true or false"},
	};

	(void)state;
	assert_non_null(r);
	harness_path("server.sock", sock, sizeof(sock));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char unix_listen[420];
		const char *value = cases[i].value;

		if (!value) {
			snprintf(unix_listen, sizeof(unix_listen), "unix:%s",
				 sock);
			value = unix_listen;
		}
		const char *args[] = {cases[i].flag, value, "--store", db_spec,
				      "--jwt-hs256-secret-file",
				      harness_secret_file(), NULL};
		assert_int_equal(
			harness_run(DAS_SERVER_BIN, args, NULL, 20000, r), 0);
		fprintf(stderr, "%s %s: status %d, %s", cases[i].flag, value,
			r->status, r->err);
		assert_int_equal(r->status, 2);
		assert_non_null(strstr(r->err, cases[i].reason));
		assert_null(strstr(r->out, "listening"));
	}
	assert_int_equal(access(sock, F_OK), -1);
	free(r);
}

/* ---- a raw HTTP/2 client ------------------------------------------------ */

struct h2 {
	int fd;
	SSL *ssl; /* NULL: plaintext (h2c) */
	nghttp2_session *s;
	bool is_closed;      /* the server closed the connection */
	int n_closed;        /* streams closed */
	int n_refused;       /* closed with REFUSED_STREAM */
	int grpc_status;     /* the last grpc-status seen, -1 = none */
	char grpc_message[256];
	const uint8_t *body; /* the request body every stream sends */
	size_t body_len;
	size_t body_offset; /* of the stream sending it now */
	/* Each request ends in an empty DATA frame with the PADDED flag
	 * instead of END_STREAM: gRPC core 1.51 answers such a frame with
	 * RST_STREAM, so the server resets the stream, not the client. */
	bool is_server_reset;
};

static ssize_t h2_send(nghttp2_session *s, const uint8_t *data, size_t len,
		       int flags, void *ud)
{
	struct h2 *h = ud;
	ssize_t n;

	(void)s;
	(void)flags;
	if (h->ssl) {
		int r = SSL_write(h->ssl, data, len > INT32_MAX ? INT32_MAX
							  : (int)len);
		if (r > 0)
			return r;
		int e = SSL_get_error(h->ssl, r);
		if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
			return NGHTTP2_ERR_WOULDBLOCK;
		h->is_closed = true;
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	n = send(h->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return NGHTTP2_ERR_WOULDBLOCK;
	if (n < 0) {
		h->is_closed = true;
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	return n;
}

static int h2_on_header(nghttp2_session *s, const nghttp2_frame *frame,
			const uint8_t *name, size_t namelen,
			const uint8_t *value, size_t valuelen, uint8_t flags,
			void *ud)
{
	struct h2 *h = ud;

	(void)s;
	(void)frame;
	(void)flags;
	if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
		h->grpc_status = atoi((const char *)value);
	if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0)
		snprintf(h->grpc_message, sizeof(h->grpc_message), "%.*s",
			 (int)valuelen, (const char *)value);
	return 0;
}

static int h2_on_close(nghttp2_session *s, int32_t id, uint32_t error_code,
		       void *ud)
{
	struct h2 *h = ud;

	(void)s;
	(void)id;
	h->n_closed++;
	if (error_code == NGHTTP2_REFUSED_STREAM)
		h->n_refused++;
	return 0;
}

static ssize_t h2_read_body(nghttp2_session *s, int32_t id, uint8_t *buf,
			    size_t length, uint32_t *flags,
			    nghttp2_data_source *src, void *ud)
{
	struct h2 *h = ud;
	size_t *off = src->ptr;
	size_t n = h->body_len - *off;

	if (h->is_server_reset) {
		/* The whole message in one frame, marked sent on the stream;
		 * the stream's next call ends it with the empty frame. */
		if (nghttp2_session_get_stream_user_data(s, id)) {
			*flags |= NGHTTP2_DATA_FLAG_EOF |
				  NGHTTP2_DATA_FLAG_NO_END_STREAM;
			return 0;
		}
		if (h->body_len > length ||
		    nghttp2_session_set_stream_user_data(s, id, h) != 0)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		memcpy(buf, h->body, h->body_len);
		return (ssize_t)h->body_len;
	}
	if (n > length)
		n = length;
	memcpy(buf, h->body + *off, n);
	*off += n;
	if (*off == h->body_len) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		*off = 0; /* the next stream sends it again */
	}
	return (ssize_t)n;
}

/* Pads only the empty DATA frame of is_server_reset (one byte: the pad
 * length), which sets the PADDED flag. */
static ssize_t h2_padding(nghttp2_session *s, const nghttp2_frame *frame,
			  size_t max_payloadlen, void *ud)
{
	struct h2 *h = ud;

	(void)s;
	(void)max_payloadlen;
	if (h->is_server_reset && frame->hd.type == NGHTTP2_DATA &&
	    frame->hd.length == 0)
		return 1;
	return (ssize_t)frame->hd.length;
}

/*
 * TLS 1.2+ with ALPN h2 over the connected h->fd, checking the server's
 * certificate against tls (its CA) for 127.0.0.1; the socket is made
 * non-blocking after the handshake. 0 or -1.
 */
static int h2_tls_handshake(struct h2 *h, SSL_CTX *tls)
{
	h->ssl = SSL_new(tls);
	if (!h->ssl || SSL_set_fd(h->ssl, h->fd) != 1 ||
	    SSL_set1_host(h->ssl, "127.0.0.1") != 1 ||
	    SSL_connect(h->ssl) != 1)
		return -1;
	const unsigned char *proto = NULL;
	unsigned proto_len = 0;
	SSL_get0_alpn_selected(h->ssl, &proto, &proto_len);
	if (proto_len != 2 || memcmp(proto, "h2", 2) != 0)
		return -1;
	int fl = fcntl(h->fd, F_GETFL);
	return fl >= 0 && fcntl(h->fd, F_SETFL, fl | O_NONBLOCK) == 0 ? 0 : -1;
}

/* A client context for the TLS listener: trusts ca_file, offers h2. */
static SSL_CTX *h2_tls_context(const char *ca_file)
{
	static const unsigned char alpn[] = "\x02h2";
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION), 1);
	assert_int_equal(SSL_CTX_load_verify_locations(ctx, ca_file, NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	/* nghttp2 offers the same bytes again after a short write. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	assert_int_equal(SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1),
			 0);
	return ctx;
}

/*
 * A socket bound to 127.0.0.1:local_port (0: a port the kernel picks),
 * with SO_REUSEADDR, or -1. A test that hands one port from a connection
 * to the next (port_pass) binds the next socket while the last one still
 * holds the port, so no other program can take it in between.
 */
static int socket_bound(int local_port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)local_port)};
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Connects fd to the server on 127.0.0.1:port; 0 or -1. */
static int connect_to(int fd, int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port)};

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return connect(fd, (struct sockaddr *)&a, sizeof(a));
}

/* fd's local port, or -1. */
static int local_port_of(int fd)
{
	struct sockaddr_in me;
	socklen_t len = sizeof(me);

	if (getsockname(fd, (struct sockaddr *)&me, &len) != 0)
		return -1;
	return ntohs(me.sin_port);
}

/*
 * Passes fd's local port on: a new socket bound to it (socket_bound; fd
 * was bound the same way), then fd closed with a reset, so the port goes
 * straight from one connection to the next and the next can connect at
 * once. Returns the new socket, bound and not connected, or -1 (fd is
 * closed either way).
 */
static int port_pass(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	int port = local_port_of(fd);
	int next = port > 0 ? socket_bound(port) : -1;

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
	return next;
}

/*
 * Connects (over TLS when tls is not NULL) and queues our SETTINGS, on fd
 * (a socket from socket_bound, taken over) or, with fd -1, on a new
 * socket. Returns 0, or -1 with nothing left open (no cmocka assertion:
 * flood threads call it too).
 */
static int h2_try_connect_on(struct h2 *h, int fd, int port, SSL_CTX *tls)
{
	nghttp2_session_callbacks *cb = NULL;
	nghttp2_settings_entry iv = {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
				     1 << 20};

	memset(h, 0, sizeof(*h));
	h->grpc_status = -1;
	h->fd = fd >= 0 ? fd : socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (h->fd < 0)
		return -1;
	if (connect_to(h->fd, port) != 0 ||
	    (tls && h2_tls_handshake(h, tls) != 0) ||
	    nghttp2_session_callbacks_new(&cb) != 0)
		goto fail;
	nghttp2_session_callbacks_set_send_callback(cb, h2_send);
	nghttp2_session_callbacks_set_on_header_callback(cb, h2_on_header);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb,
								h2_on_close);
	nghttp2_session_callbacks_set_select_padding_callback(cb, h2_padding);
	if (nghttp2_session_client_new(&h->s, cb, h) != 0)
		goto fail;
	nghttp2_session_callbacks_del(cb);
	cb = NULL;
	if (nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, &iv, 1) != 0)
		goto fail;
	return 0;
fail:
	if (cb)
		nghttp2_session_callbacks_del(cb);
	if (h->s)
		nghttp2_session_del(h->s);
	h->s = NULL;
	SSL_free(h->ssl);
	h->ssl = NULL;
	close(h->fd);
	h->fd = -1;
	return -1;
}

static int h2_try_connect_tls(struct h2 *h, int port, SSL_CTX *tls)
{
	return h2_try_connect_on(h, -1, port, tls);
}

static int h2_try_connect(struct h2 *h, int port)
{
	return h2_try_connect_tls(h, port, NULL);
}

static void h2_connect(struct h2 *h, int port)
{
	assert_int_equal(h2_try_connect(h, port), 0);
}

static void h2_close(struct h2 *h)
{
	nghttp2_session_del(h->s);
	SSL_free(h->ssl); /* no close_notify: a flooder just goes */
	h->ssl = NULL;
	close(h->fd);
	h->s = NULL;
	h->fd = -1;
}

/*
 * Sends what nghttp2 has queued and reads what the server sent, waiting up
 * to timeout_ms for the socket. Returns -1 once the connection is gone.
 */
static int h2_pump(struct h2 *h, int timeout_ms)
{
	struct pollfd p = {.fd = h->fd, .events = POLLIN};
	uint8_t buf[16384];

	if (h->is_closed || nghttp2_session_send(h->s) != 0)
		return -1;
	if (nghttp2_session_want_write(h->s))
		p.events |= POLLOUT;
	if (h->ssl && SSL_pending(h->ssl) == 0 &&
	    poll(&p, 1, timeout_ms) <= 0)
		return 0;
	if (h->ssl) {
		/* Everything decrypted so far (records may wait in SSL). */
		for (;;) {
			int n = SSL_read(h->ssl, buf, (int)sizeof(buf));
			if (n > 0) {
				if (nghttp2_session_mem_recv(h->s, buf,
							     (size_t)n) < 0)
					return -1;
				continue;
			}
			int e = SSL_get_error(h->ssl, n);
			if (e == SSL_ERROR_WANT_READ ||
			    e == SSL_ERROR_WANT_WRITE)
				break;
			h->is_closed = true;
			return -1;
		}
		return nghttp2_session_send(h->s) == 0 ? 0 : -1;
	}
	if (poll(&p, 1, timeout_ms) <= 0)
		return 0;
	if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
		ssize_t n = recv(h->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			h->is_closed = true;
			return -1;
		}
		if (n > 0 && nghttp2_session_mem_recv(h->s, buf, (size_t)n) < 0)
			return -1;
	}
	return nghttp2_session_send(h->s) == 0 ? 0 : -1;
}

#define NV(n, v)                                                               \
	{                                                                      \
		(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v),      \
			NGHTTP2_NV_FLAG_NONE                                   \
	}

/* The grpc-timeout of the calls h2_start_call makes ("100m"; NULL:
 * none, the default). */
static const char *call_timeout;

/* The request headers of a gRPC call (nv: room for 9); returns their
 * count. */
static size_t h2_call_headers(const struct h2 *h, nghttp2_nv *nv,
			      const char *path, const char *authority,
			      const char *auth, bool is_gzip)
{
	const nghttp2_nv common[] = {
		NV(":method", "POST"),
		NV(":scheme", h->ssl ? "https" : "http"),
		NV(":path", path),
		NV(":authority", authority),
		NV("content-type", "application/grpc"),
		NV("te", "trailers"),
		NV("authorization", auth),
	};
	size_t n = sizeof(common) / sizeof(common[0]);

	memcpy(nv, common, sizeof(common));
	if (is_gzip)
		nv[n++] = (nghttp2_nv)NV("grpc-encoding", "gzip");
	if (call_timeout)
		nv[n++] = (nghttp2_nv)NV("grpc-timeout", call_timeout);
	return n;
}

/* Starts one gRPC call on h with h->body; returns the stream id. */
static int32_t h2_start_call(struct h2 *h, const char *path,
			     const char *authority, const char *auth,
			     bool is_gzip)
{
	nghttp2_nv nv[9];
	size_t n = h2_call_headers(h, nv, path, authority, auth, is_gzip);
	/* Per connection: flood threads send at once on their own. */
	nghttp2_data_provider dp = {.source.ptr = &h->body_offset,
				    .read_callback = h2_read_body};

	return nghttp2_submit_request(h->s, NULL, nv, n, &dp, NULL);
}

/* Opens a call's stream and sends nothing more on it (no message, no
 * end of stream); returns the stream id. */
static int32_t h2_open_call(struct h2 *h, const char *path,
			    const char *authority)
{
	nghttp2_nv nv[9];
	size_t n = h2_call_headers(h, nv, path, authority, "Bearer none",
				   false);

	return nghttp2_submit_headers(h->s, NGHTTP2_FLAG_NONE, -1, NULL, nv,
				      n, NULL);
}

/* ---- a normal caller measuring its latency ------------------------------ */

struct prober {
	pthread_t thread;
	atomic_bool is_stopping;
	struct das_client *c;
	int64_t *lat_us; /* one per call */
	size_t n, cap;
	int n_failed;
	int first_failed_code;
	size_t n_fast; /* calls (failed or not) that took under SLOW_CALL_MS */
	double p50_ms;
};

static void *probe_main(void *arg)
{
	struct prober *p = arg;
	Deviceassignment__V1__ListUserDevicesRequest r =
		DEVICEASSIGNMENT__V1__LIST_USER_DEVICES_REQUEST__INIT;

	r.customer_tenant_id = (char *)CUST;
	r.user_id = (char *)"alice";
	while (!atomic_load(&p->is_stopping) && p->n < p->cap) {
		ProtobufCMessage *resp = NULL;
		struct das_call_status st;
		int64_t t0 = now_us();
		int rc = das_client_call(p->c, DAS_RPC_LIST_USER_DEVICES,
					 assign_token, &r.base, &resp,
					 TIMEOUT_MS, &st);
		p->lat_us[p->n++] = now_us() - t0;
		if (rc != 0 || st.code != 0) {
			if (!p->n_failed++)
				p->first_failed_code = rc != 0 ? -1 : st.code;
		}
		if (resp)
			protobuf_c_message_free_unpacked(resp, NULL);
		/* a caller at a human pace, not a second load */
		struct timespec pace = {0, 5 * 1000 * 1000};
		nanosleep(&pace, NULL);
	}
	return NULL;
}

/* Starts p calling through c (p frees it). */
static void prober_start_with(struct prober *p, struct das_client *c)
{
	memset(p, 0, sizeof(*p));
	p->cap = 200000;
	p->lat_us = calloc(p->cap, sizeof(*p->lat_us));
	assert_non_null(p->lat_us);
	p->c = c;
	assert_non_null(p->c);
	atomic_init(&p->is_stopping, false);
	assert_int_equal(pthread_create(&p->thread, NULL, probe_main, p), 0);
}

static void prober_start(struct prober *p)
{
	prober_start_with(p, das_client_new(server.addr));
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* Stops the prober and prints and returns its p99 and max (ms). */
static void prober_stop(struct prober *p, const char *what, double *p99,
			double *max, bool is_failure_allowed)
{
	atomic_store(&p->is_stopping, true);
	pthread_join(p->thread, NULL);
	das_client_free(p->c);
	assert_true(p->n > 0);
	qsort(p->lat_us, p->n, sizeof(*p->lat_us), cmp_i64);
	*p99 = (double)p->lat_us[(p->n * 99) / 100] / 1000.0;
	*max = (double)p->lat_us[p->n - 1] / 1000.0;
	p->p50_ms = (double)p->lat_us[p->n / 2] / 1000.0;
	p->n_fast = 0;
	while (p->n_fast < p->n &&
	       p->lat_us[p->n_fast] < (int64_t)SLOW_CALL_MS * 1000)
		p->n_fast++;
	fprintf(stderr,
		"%s: normal calls during the attack: %zu, failed %d, p50 %.1f "
		"ms, p99 %.1f ms, max %.1f ms\n",
		what, p->n, p->n_failed,
		(double)p->lat_us[p->n / 2] / 1000.0, *p99, *max);
	if (p->n_failed)
		fprintf(stderr, "%s: first failure: code %d\n", what,
			p->first_failed_code);
	free(p->lat_us);
	if (!is_failure_allowed)
		assert_int_equal(p->n_failed, 0);
}

/* ---- rapid reset -------------------------------------------------------- */

#define FLOOD_CONNECTIONS 4

struct flooder {
	pthread_t thread;
	long streams;
	long sent;
	int reconnects;
	bool has_failed; /* could not connect */
	int port;
	SSL_CTX *tls; /* NULL: plaintext */
	const uint8_t *body;
	size_t body_len;
	bool is_server_reset; /* see struct h2 */
};

static const char assign_path[] =
	"/deviceassignment.v1.DeviceAssignment/AssignDevice";

/* Opens streams on one connection and cancels each at once. */
static void *flood_main(void *arg)
{
	struct flooder *f = arg;
	struct h2 h;
	char authority[64], auth[4096];

	snprintf(authority, sizeof(authority), "127.0.0.1:%d", f->port);
	snprintf(auth, sizeof(auth), "Bearer %s", assign_token);
	if (h2_try_connect_tls(&h, f->port, f->tls) != 0) {
		f->has_failed = true;
		return NULL;
	}
	h.body = f->body;
	h.body_len = f->body_len;
	h.is_server_reset = f->is_server_reset;
	while (f->sent < f->streams) {
		int32_t id = h2_start_call(&h, assign_path, authority, auth,
					   false);
		if (id < 0 || h2_pump(&h, 0) != 0) {
			/* GOAWAY or closed: a new connection, as an
			 * attacker would. */
			h2_close(&h);
			f->reconnects++;
			if (h2_try_connect_tls(&h, f->port, f->tls) != 0) {
				f->has_failed = true;
				return NULL;
			}
			h.body = f->body;
			h.body_len = f->body_len;
			h.is_server_reset = f->is_server_reset;
			continue;
		}
		/* The HEADERS and DATA go out before the RST_STREAM. */
		while (nghttp2_session_get_outbound_queue_size(h.s) > 0 &&
		       h2_pump(&h, 100) == 0)
			;
		if (!f->is_server_reset)
			nghttp2_submit_rst_stream(h.s, NGHTTP2_FLAG_NONE, id,
						  NGHTTP2_CANCEL);
		f->sent++;
		if (f->sent % 16 == 0)
			h2_pump(&h, 0);
	}
	while (nghttp2_session_want_write(h.s) && h2_pump(&h, 100) == 0)
		;
	h2_close(&h);
	return NULL;
}

/* The AssignDevice request every flood and h2load stream sends, framed. */
static size_t assign_frame(uint8_t *body, size_t size)
{
	Deviceassignment__V1__AssignDeviceRequest a =
		DEVICEASSIGNMENT__V1__ASSIGN_DEVICE_REQUEST__INIT;
	size_t len;

	a.customer_tenant_id = (char *)CUST;
	a.user_id = (char *)"alice";
	a.device_id = (char *)"alice-mobile-01";
	a.client_type = 2;
	len = protobuf_c_message_get_packed_size(&a.base);
	assert_true(len + 5 <= size);
	body[0] = 0;
	body[1] = (uint8_t)(len >> 24);
	body[2] = (uint8_t)(len >> 16);
	body[3] = (uint8_t)(len >> 8);
	body[4] = (uint8_t)len;
	protobuf_c_message_pack(&a.base, body + 5);
	return len + 5;
}

/* What one flood did to a server. */
struct flood_result {
	bool is_server_reset; /* the kind of flood (struct h2) */
	long rss_before, hwm, rss_after; /* KiB */
	int closed, reconnects;
	size_t n_calls, n_fast;
	int n_failed;
	double p50, p99, max; /* ms, normal calls */
};

/*
 * rounds x FLOOD_CONNECTIONS connections opening `streams` AssignDevice
 * streams each and resetting them, against srv (over TLS when tls is
 * set), while a normal caller on probe_client (freed here) measures its
 * calls. Prints the figures under `what`.
 */
static void flood_run(struct harness_proc *srv, SSL_CTX *tls,
		      struct das_client *probe_client, const char *what,
		      long streams, long rounds, bool is_server_reset,
		      struct flood_result *r)
{
	uint8_t body[512];
	size_t len = assign_frame(body, sizeof(body));
	struct prober probe;
	int closed_before = harness_count_in_log(srv, FLOOD_CLOSED_LINE);

	memset(r, 0, sizeof(*r));
	r->is_server_reset = is_server_reset;
	r->rss_before = harness_proc_kib(srv->pid, "VmRSS");
	prober_start_with(&probe, probe_client);
	int64_t t0 = now_us();
	for (long round = 0; round < rounds; round++) {
		struct flooder f[FLOOD_CONNECTIONS];
		for (int i = 0; i < FLOOD_CONNECTIONS; i++) {
			memset(&f[i], 0, sizeof(f[i]));
			f[i].streams = streams;
			f[i].port = srv->port;
			f[i].tls = tls;
			f[i].body = body;
			f[i].body_len = len;
			f[i].is_server_reset = is_server_reset;
			assert_int_equal(pthread_create(&f[i].thread, NULL,
							flood_main, &f[i]),
					 0);
		}
		for (int i = 0; i < FLOOD_CONNECTIONS; i++) {
			pthread_join(f[i].thread, NULL);
			r->reconnects += f[i].reconnects;
		}
		for (int i = 0; i < FLOOD_CONNECTIONS; i++)
			assert_false(f[i].has_failed);
		fprintf(stderr,
			"%s round %ld: %d connections x %ld streams opened "
			"and reset; server RSS now %ld KiB, peak %ld KiB\n",
			what, round + 1, FLOOD_CONNECTIONS, streams,
			harness_proc_kib(srv->pid, "VmRSS"),
			harness_proc_kib(srv->pid, "VmHWM"));
	}
	double secs = (double)(now_us() - t0) / 1e6;
	prober_stop(&probe, what, &r->p99, &r->max, true);
	r->n_calls = probe.n;
	r->n_fast = probe.n_fast;
	r->n_failed = probe.n_failed;
	r->p50 = probe.p50_ms;
	r->hwm = harness_proc_kib(srv->pid, "VmHWM");
	r->rss_after = harness_proc_kib(srv->pid, "VmRSS");
	r->closed = harness_count_in_log(srv, FLOOD_CLOSED_LINE) -
		    closed_before;
	fprintf(stderr,
		"%s: %ld rounds in %.1f s; server RSS before %ld KiB, peak "
		"%ld KiB (limit %d KiB), after %ld KiB; %d flooding "
		"connections closed by the server (%d reconnects)\n",
		what, rounds, secs, r->rss_before, r->hwm, RSS_LIMIT_KIB,
		r->rss_after, r->closed, r->reconnects);
	fprintf(stderr,
		"%s: normal calls: %zu, %zu under %d ms, p50 %.1f ms, p99 "
		"%.1f ms, max %.1f ms (issue: %d ms; asserted: all answered%s)"
		"\n",
		what, r->n_calls, r->n_fast, SLOW_CALL_MS, r->p50, r->p99,
		r->max, FLOOD_ISSUE_MS,
		FLOOD_IS_SANITIZED ? "; sanitizer build: RSS added by the "
				     "flood bounded, timings printed"
				   : ", max below the bound of the test");
}

/*
 * The bounds every flood must keep (see FLOOD_MAX_CALL_MS). must_close:
 * the guard closed at least one flooding connection (a sanitizer build's
 * server is slow enough that a plaintext flooder may send all its streams
 * before the workers see 200 of them open: 2 runs in 10 closed none).
 */
static void flood_check(struct harness_proc *srv,
			const struct flood_result *r, bool must_close,
			double max_call_ms)
{
	assert_true(r->hwm > 0 && r->rss_before > 0);
	/* Every normal call made during the flood was answered. */
	assert_int_equal(r->n_failed, 0);
	if (FLOOD_IS_SANITIZED) {
		assert_true(r->hwm - r->rss_before < RSS_LIMIT_KIB);
	} else {
		fprintf(stderr, "bound of the test: max < %.0f ms\n",
			max_call_ms);
		assert_true(r->hwm < RSS_LIMIT_KIB);
		assert_true(r->max < max_call_ms);
	}
	if (r->is_server_reset) {
		/* The guard closes some; gRPC core closes the others: the
		 * streams it reset stay counted until their calls end, so a
		 * client that opens more past the cap has its connection
		 * closed (parsing.cc, "Max stream count exceeded"; no GOAWAY
		 * and no line of ours). */
		if (must_close)
			assert_true(r->closed + r->reconnects >= 1);
	} else {
		/* Every close the flooders saw was the guard's, logged. */
		if (must_close)
			assert_true(r->closed >= 1);
		assert_true(r->closed >= r->reconnects);
	}
	assert_true(harness_is_alive(srv));
}

static long flood_streams(void)
{
	return env_count("DAS_FLOOD_STREAMS", FLOOD_IS_SANITIZED ? 1000 : 2500);
}

/* The rapid-reset flood, its streams carrying grpc-timeout timeout (NULL:
 * none). */
static void rapid_reset_flood_with(const char *timeout)
{
	struct flood_result r;

	call_timeout = timeout;
	flood_run(&server, NULL, das_client_new(server.addr), "flood",
		  flood_streams(), env_count("DAS_FLOOD_ROUNDS", 4), false, &r);
	call_timeout = NULL;
	flood_check(&server, &r, !FLOOD_IS_SANITIZED, FLOOD_MAX_CALL_MS);
	/* The flood changed nothing it should not have: alice's device went
	 * nowhere else. */
	char text[128];
	int code = -1;
	list_text("alice", text, sizeof(text), &code);
	assert_int_equal(code, 0);
	assert_true(strcmp(text, "") == 0 ||
		    strcmp(text, "alice-mobile-01:2") == 0);
}

static void rapid_reset_flood_bounded(void **state)
{
	(void)state;
	rapid_reset_flood_with(getenv("DAS_FLOOD_TIMEOUT"));
}

/*
 * The same flood, every stream with a 1 ms deadline. While gRPC core
 * armed a timer for each call and cancelled it with a status when it
 * fired, the transport's work per stream grew, the calls waited in core
 * where the guard does not see them, and the full attack
 * (DAS_FLOOD_STREAMS=50000) peaked at 232-664 MiB (2 of 4 runs past 300
 * MiB), slowest normal call 0.76-2.3 s; with the timer off
 * (core_server_create), 154-191 MiB, 30-511 ms. At the default counts
 * both stay within the bounds.
 */
static void rapid_reset_short_deadline_flood_bounded(void **state)
{
	(void)state;
	rapid_reset_flood_with("1m");
}

/*
 * The flood of the "MadeYouReset" pattern (CVE-2025-8671): the client
 * never resets a stream, it makes the server do it. Each stream sends its
 * whole AssignDevice message, then an empty DATA frame with the PADDED
 * flag, which gRPC core 1.51 treats as a stream error: it answers
 * RST_STREAM while the call goes on, and the client, seeing the stream
 * closed, opens the next. Two things bound it: core keeps counting a
 * stream it reset until its call has ended, and closes a connection that
 * opens streams past the cap meanwhile (flood_check); and the guard
 * counts calls the server reset as it counts the client's resets. The
 * same bounds as for rapid reset hold: RSS, every normal call answered in
 * time, the server up.
 */
#define ASSIGN_LINE "method=/deviceassignment.v1.DeviceAssignment/AssignDevice"
static void server_made_reset_flood_bounded(void **state)
{
	struct flood_result r;
	int invalid = harness_count_in_log(&server, ASSIGN_LINE
					   " code=INVALID_ARGUMENT");
	int cancelled = harness_count_in_log(&server, ASSIGN_LINE
					     " code=CANCELLED");

	(void)state;
	flood_run(&server, NULL, das_client_new(server.addr),
		  "server-reset flood", flood_streams(),
		  env_count("DAS_FLOOD_ROUNDS", 4), true, &r);
	flood_check(&server, &r, !FLOOD_IS_SANITIZED, FLOOD_MAX_CALL_MS);
	/* A stream reset before core handed its message over reaches a
	 * worker as a call without one. Nobody gets its answer: its access
	 * line says CANCELLED, not the INVALID_ARGUMENT of a client that
	 * sent no message (before: about 6,000 of those in this flood). */
	cancelled = harness_count_in_log(&server, ASSIGN_LINE
					 " code=CANCELLED") -
		    cancelled;
	fprintf(stderr, "server-reset flood: %d calls reset before their "
			"message logged CANCELLED\n",
		cancelled);
	assert_int_equal(harness_count_in_log(&server, ASSIGN_LINE
					      " code=INVALID_ARGUMENT"),
			 invalid);
}

/*
 * The same flood against the TLS listener (--tls-cert/--tls-key): the
 * guard finds and shuts down the TCP socket under the TLS session the
 * same way, and the bounds hold. Its own server, so the RSS is its own.
 */
static void rapid_reset_flood_bounded_tls(void **state)
{
	struct harness_proc srv;
	char ca_dir[512], db[512], spec[600], cmd[1200], err[256];
	struct flood_result r;

	(void)state;
	harness_path("ca", ca_dir, sizeof(ca_dir));
	snprintf(cmd, sizeof(cmd), "'%s' '%s' 2 >/dev/null",
		 DAS_DEV_CA_SCRIPT, ca_dir);
	harness_sh(cmd);
	harness_path("attacks-tls.db", db, sizeof(db));
	snprintf(spec, sizeof(spec), "sqlite:%s", db);
	const char *args[] = {"--store", spec, "--jwt-hs256-secret-file",
			      harness_secret_file(), "--tls-cert",
			      harness_in(ca_dir, "server.pem"), "--tls-key",
			      harness_in(ca_dir, "server.key"), NULL};
	/*
	 * In a sanitizer build, now and then (1 run in 5) LeakSanitizer
	 * reports one or two 904-byte blocks from CRYPTO_zalloc at this
	 * server's exit: OpenSSL's per-thread error queue (crypto/err/err.c,
	 * ERR_STATE) of a gRPC executor thread that the flood made core start
	 * (traced by interposing CRYPTO_zalloc: every such block was
	 * allocated at err.c:692 on a "default-executor" thread). Not ours
	 * and not per call; suppressed for this server only. The stack LSan
	 * sees ends in CRYPTO_zalloc (libcrypto has no frame pointers), so
	 * the suppression cannot be narrower.
	 */
	char supp[600], lsan[700];
	static const char supp_text[] = "leak:CRYPTO_zalloc\n";
	assert_int_equal(harness_write_file("lsan-openssl-thread-state.supp",
					    supp_text, sizeof(supp_text) - 1,
					    supp, sizeof(supp)),
			 0);
	snprintf(lsan, sizeof(lsan), "LSAN_OPTIONS=suppressions=%s", supp);
	const char *env[] = {lsan, NULL};
	assert_int_equal(harness_start(&srv, DAS_SERVER_BIN, args, env), 0);
	struct das_client_tls ct = {.ca_file = harness_in(ca_dir, "ca.pem")};
	struct das_client *c = das_client_new_tls(srv.addr, &ct, err,
						  sizeof(err));
	assert_non_null(c);
	seed(c);
	das_client_free(c);
	SSL_CTX *tls = h2_tls_context(harness_in(ca_dir, "ca.pem"));
	/* A flooder on the TLS port really speaks TLS: the handshake and
	 * ALPN h2 succeed (h2_tls_handshake checks both). */
	struct h2 h;
	assert_int_equal(h2_try_connect_tls(&h, srv.port, tls), 0);
	h2_close(&h);
	flood_run(&srv, tls, das_client_new_tls(srv.addr, &ct, err,
						sizeof(err)),
		  "tls flood", flood_streams(),
		  env_count("DAS_FLOOD_ROUNDS", 4), false, &r);
	SSL_CTX_free(tls);
	flood_check(&srv, &r, true, FLOOD_MAX_CALL_MS);
	assert_int_equal(harness_stop(&srv, SIGTERM), 0);
}

/*
 * Twice as many flooding connections as the server has polling workers
 * (--workers 2). A thread waiting for calls is also gRPC core's poller,
 * and while a flooder keeps sending, core keeps reading and parsing that
 * connection on the same thread: once every worker was held that way no
 * call was taken, the flood's calls piled up in core (1.5-3.4 GB in one
 * round of 4 x 50,000), the guard never saw them and no normal client's
 * socket was read (calls at their 10 s deadline). The server's extra
 * worker never polls (server.c, drain_cq), so calls are taken and the
 * flooders closed whatever the polling workers are doing. Measured with
 * the counts below, 2 alternating pairs at load 11-15 on 2 cores: before,
 * peaks of 840 MB and 2.0 GB, slowest normal call 6.3 and 9.7 s; after,
 * 143 and 104 MB, 1.5 and 1.2 s. Two polling workers against four
 * flooders for ten times the streams of the other flood tests leave less
 * margin on a loaded machine, so the slowest call may take up to
 * FLOOD_2W_MAX_CALL_MS here; the RSS bound is what fails first without
 * the fix. Its own server, so the RSS is its own.
 */
#define FLOOD_2W_MAX_CALL_MS 5000
static void rapid_reset_more_flooders_than_workers(void **state)
{
	struct harness_proc srv;
	struct flood_result r;

	(void)state;
	own_server_start(&srv, "attacks-2w.db", "--workers", "2", 0);
	struct das_client *c = das_client_new(srv.addr);
	assert_non_null(c);
	seed(c);
	das_client_free(c);
	flood_run(&srv, NULL, das_client_new(srv.addr), "2-worker flood",
		  env_count("DAS_FLOOD_STREAMS_2W",
			    FLOOD_IS_SANITIZED ? 5000 : 25000),
		  env_count("DAS_FLOOD_ROUNDS_2W", 3), false, &r);
	flood_check(&srv, &r, true, FLOOD_2W_MAX_CALL_MS);
	assert_int_equal(harness_stop(&srv, SIGTERM), 0);
}

/* ---- legitimate heavy clients ------------------------------------------- */

/* A client whose every 4th call has a deadline it may well miss. */
struct deadline_client {
	pthread_t thread;
	atomic_bool is_stopping;
	int n_ok, n_deadline, n_other, other_code;
};

static void *deadline_main(void *arg)
{
	struct deadline_client *d = arg;
	struct das_client *c = das_client_new(server.addr);
	Deviceassignment__V1__ListUserDevicesRequest r =
		DEVICEASSIGNMENT__V1__LIST_USER_DEVICES_REQUEST__INIT;

	r.customer_tenant_id = (char *)CUST;
	r.user_id = (char *)"alice";
	for (int i = 0; c && !atomic_load(&d->is_stopping); i++) {
		ProtobufCMessage *resp = NULL;
		struct das_call_status st;
		int rc = das_client_call(c, DAS_RPC_LIST_USER_DEVICES,
					 assign_token, &r.base, &resp,
					 i % 4 == 3 ? 1 : TIMEOUT_MS, &st);
		if (rc == 0 && st.code == 0)
			d->n_ok++;
		else if (rc == 0 && st.code == 4) /* DEADLINE_EXCEEDED */
			d->n_deadline++;
		else if (!d->n_other++)
			d->other_code = rc != 0 ? -1 : st.code;
		if (resp)
			protobuf_c_message_free_unpacked(resp, NULL);
	}
	das_client_free(c);
	return NULL;
}

/* The first "PATH_DIR/name" that is executable, into buf; false if none. */
static bool find_in_path(const char *name, char *buf, size_t size)
{
	const char *path = getenv("PATH");

	while (path && *path) {
		const char *end = strchr(path, ':');
		size_t n = end ? (size_t)(end - path) : strlen(path);
		snprintf(buf, size, "%.*s/%s", (int)n, path, name);
		if (access(buf, X_OK) == 0)
			return true;
		path = end ? end + 1 : NULL;
	}
	return false;
}

/* The number after `label` in text (e.g. "done" in h2load's "requests:"
 * line: "N done"), or -1. */
static long h2load_count(const char *text, const char *line,
			 const char *label)
{
	const char *l = strstr(text, line);
	const char *eol = l ? strchr(l, '\n') : NULL;
	char want[32];

	if (!l)
		return -1;
	snprintf(want, sizeof(want), " %s", label);
	for (const char *p = l; *p && (!eol || p < eol); p++) {
		if (strncmp(p, want, strlen(want)) != 0)
			continue;
		const char *q = p;
		while (q > l && q[-1] == ' ')
			q--;
		while (q > l && q[-1] >= '0' && q[-1] <= '9')
			q--;
		return strtol(q, NULL, 10);
	}
	return -1;
}

/* h2load: calls AssignDevice calls over 4 connections of streams each;
 * asserts every one answered OK and returns how many connections the
 * flood guard closed meanwhile. */
static int h2load_assign(long calls, int streams, const char *what)
{
	char h2load[PATH_MAX], frame[PATH_MAX], n[32], m[16], url[128];
	char auth[4200];
	uint8_t body[512];
	size_t len = assign_frame(body, sizeof(body));
	int closed_before = harness_count_in_log(&server, FLOOD_CLOSED_LINE);

	if (!find_in_path("h2load", h2load, sizeof(h2load))) {
		fprintf(stderr, "h2load not found (Debian nghttp2-client)\n");
		skip();
	}
	assert_int_equal(harness_write_file("assign.frame", body, len, frame,
					    sizeof(frame)),
			 0);
	snprintf(n, sizeof(n), "%ld", calls);
	snprintf(m, sizeof(m), "%d", streams);
	snprintf(url, sizeof(url),
		 "http://%s/deviceassignment.v1.DeviceAssignment/AssignDevice",
		 server.addr);
	snprintf(auth, sizeof(auth), "authorization: Bearer %s", assign_token);
	const char *args[] = {"-n", n, "-c", "4", "-m", m, "-t", "1",
			      "--data", frame, "-H",
			      "content-type: application/grpc", "-H",
			      "te: trailers", "-H", auth, url, NULL};
	struct harness_run_result *r = calloc(1, sizeof(*r));
	assert_non_null(r);

	int64_t t0 = now_us();
	assert_int_equal(harness_run(h2load, args, NULL, 110000, r), 0);
	double secs = (double)(now_us() - t0) / 1e6;
	long done = h2load_count(r->out, "requests:", "done");
	long ok = h2load_count(r->out, "requests:", "succeeded");
	long s2xx = h2load_count(r->out, "status codes:", "2xx");
	int closed = harness_count_in_log(&server, FLOOD_CLOSED_LINE) -
		     closed_before;
	fprintf(stderr,
		"%s: h2load 4x%d: %ld of %ld calls done, %ld succeeded, %ld "
		"HTTP 2xx in %.1f s; connections closed: %d\n",
		what, streams, done, calls, ok, s2xx, secs, closed);
	if (done != calls)
		fprintf(stderr, "h2load: status %d\n%s\n", r->status, r->out);
	assert_int_equal(r->status, 0);
	assert_int_equal(done, calls);
	assert_int_equal(ok, calls);
	assert_int_equal(s2xx, calls);
	free(r);
	/* h2load counts HTTP 200s: one call with a real client says the
	 * calls were answered OK. */
	char text[128];
	int code = -1;
	list_text("alice", text, sizeof(text), &code);
	assert_int_equal(code, 0);
	assert_string_equal(text, "alice-mobile-01:2");
	return closed;
}

/*
 * h2load 4 connections x 8 streams of AssignDevice (the benchmark's load)
 * and, at the same time, a client whose calls hit their deadline now and
 * then: none is closed, every call is answered.
 */
static void heavy_clients_not_cut(void **state)
{
	struct deadline_client d;
	int closed;

	(void)state;
	memset(&d, 0, sizeof(d));
	atomic_init(&d.is_stopping, false);
	assert_int_equal(pthread_create(&d.thread, NULL, deadline_main, &d),
			 0);
	closed = h2load_assign(env_count("DAS_HEAVY_CALLS", 20000), 8,
			       "heavy");
	atomic_store(&d.is_stopping, true);
	pthread_join(d.thread, NULL);
	fprintf(stderr,
		"heavy: deadline client: %d OK, %d DEADLINE_EXCEEDED, %d "
		"other\n",
		d.n_ok, d.n_deadline, d.n_other);
	if (d.n_other)
		fprintf(stderr, "(other code %d)\n", d.other_code);
	assert_int_equal(d.n_other, 0);
	assert_true(d.n_ok > 0);
	assert_int_equal(closed, 0);
}

/*
 * Every connection keeps all the streams the server allows busy (h2load
 * -m 100, the advertised cap) and resets none: never closed. The guard
 * counted a call open until its answer's batch had completed on the
 * server, while the client could already open the next stream: under
 * such a load it saw 201 calls open on a connection and closed 3 of 4
 * in 4 s (and the gateway's own connections under 1,000 clients).
 */
static void clients_at_the_stream_cap_not_cut(void **state)
{
	(void)state;
	assert_int_equal(h2load_assign(env_count("DAS_HEAVY_CALLS", 20000),
				       100, "at the cap"),
			 0);
}

/* The server advertises a cap on concurrent streams per connection. */
static void stream_cap_advertised(void **state)
{
	struct h2 h;

	(void)state;
	h2_connect(&h, server.port);
	for (int i = 0; i < 50 &&
			nghttp2_session_get_remote_settings(
				h.s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS) >
				1000;
	     i++)
		assert_int_equal(h2_pump(&h, 100), 0);
	uint32_t cap = nghttp2_session_get_remote_settings(
		h.s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
	fprintf(stderr, "SETTINGS_MAX_CONCURRENT_STREAMS: %u\n", cap);
	assert_int_equal(cap, 100);
	h2_close(&h);
}

/* ---- idle connections --------------------------------------------------- */

static const char health_path[] = "/grpc.health.v1.Health/Check";
static const uint8_t empty_message[5]; /* a gRPC frame of an empty message */

/* A server on its own database with --idle-timeout seconds. */
static void idle_server_start(struct harness_proc *srv, const char *seconds)
{
	own_server_start(srv, "attacks-idle.db", "--idle-timeout", seconds, 0);
}

/*
 * For ms: idle (if not NULL) only reads, busy (if not NULL) makes a Health
 * call every 200 ms. Returns when idle is closed, with the ms it took; -1
 * when it was still open at the end. busy must stay open throughout.
 */
static int64_t idle_watch(struct h2 *idle, struct h2 *busy, int port,
			  int64_t ms)
{
	char authority[64];
	int64_t start = now_us(), next_call = start;

	snprintf(authority, sizeof(authority), "127.0.0.1:%d", port);
	while (now_us() - start < ms * 1000) {
		if (busy && now_us() >= next_call) {
			busy->body = empty_message;
			busy->body_len = sizeof(empty_message);
			busy->body_offset = 0;
			assert_true(h2_start_call(busy, health_path, authority,
						  "Bearer none", false) > 0);
			next_call += 200 * 1000;
		}
		if (busy)
			assert_int_equal(h2_pump(busy, idle ? 0 : 50), 0);
		if (idle && h2_pump(idle, 50) != 0)
			return (now_us() - start) / 1000;
	}
	return -1;
}

/*
 * --idle-timeout: a connection that carries no call for that long is
 * closed (core sends GOAWAY, then closes it), one that keeps calling is
 * not, and 0 closes none.
 */
static void idle_connections_closed(void **state)
{
	struct harness_proc srv;
	struct h2 idle, busy;
	int64_t took;

	(void)state;
	idle_server_start(&srv, "1");
	h2_connect(&idle, srv.port);
	h2_connect(&busy, srv.port);
	took = idle_watch(&idle, &busy, srv.port, 10000);
	fprintf(stderr, "--idle-timeout 1: the idle connection was closed "
			"after %lld ms; the one calling every 200 ms made %d "
			"calls and stays open\n",
		(long long)took, busy.n_closed);
	assert_true(took >= 500); /* about a second, not at once */
	assert_true(busy.n_closed >= 2);
	assert_int_equal(busy.grpc_status, 0);
	/* Still open a while on, as long as it keeps calling. */
	assert_int_equal(idle_watch(NULL, &busy, srv.port, 1500), -1);
	h2_close(&idle);
	h2_close(&busy);
	assert_int_equal(harness_stop(&srv, SIGTERM), 0);

	idle_server_start(&srv, "0");
	h2_connect(&idle, srv.port);
	assert_int_equal(idle_watch(&idle, NULL, srv.port, 2500), -1);
	h2_close(&idle);
	assert_int_equal(harness_stop(&srv, SIGTERM), 0);
}

/*
 * The server ends a call at the deadline its client sent (grpc-timeout),
 * also for a client that never cancels it: gRPC core's own timer for
 * each call is off (server.c, core_server_create), so the streams, the
 * calls that have no end of their own, are ended by the server with
 * DEADLINE_EXCEEDED: a Watch by the health tick, a reflection stream by
 * the reflection thread. A raw HTTP/2 client, as a gRPC library would
 * cancel the stream at the deadline itself.
 */
static void deadline_ends_streams(void **state)
{
	char authority[64];
	struct h2 h;

	(void)state;
	snprintf(authority, sizeof(authority), "127.0.0.1:%d", server.port);
	h2_connect(&h, server.port);
	h.body = empty_message;
	h.body_len = sizeof(empty_message);
	call_timeout = "300m";
	int64_t start = now_us();
	assert_true(h2_start_call(&h, "/grpc.health.v1.Health/Watch",
				  authority, "Bearer none", false) > 0);
	call_timeout = NULL;
	while (h.n_closed == 0 && now_us() - start < 5000000 &&
	       h2_pump(&h, 50) == 0)
		;
	int64_t took_ms = (now_us() - start) / 1000;
	fprintf(stderr, "Watch with a 300 ms deadline: ended after %lld ms, "
			"grpc-status %d (%s)\n",
		(long long)took_ms, h.grpc_status, h.grpc_message);
	assert_int_equal(h.n_closed, 1);
	assert_int_equal(h.grpc_status, 4); /* DEADLINE_EXCEEDED */
	assert_true(took_ms >= 250 && took_ms < 2000);

	/* A reflection stream (bidirectional) whose client sends nothing
	 * after its headers: the reflection thread ends it the same way. */
	h.grpc_status = -1;
	call_timeout = "300m";
	start = now_us();
	assert_true(h2_open_call(
			    &h,
			    "/grpc.reflection.v1.ServerReflection/"
			    "ServerReflectionInfo",
			    authority) > 0);
	call_timeout = NULL;
	while (h.n_closed == 1 && now_us() - start < 5000000 &&
	       h2_pump(&h, 50) == 0)
		;
	took_ms = (now_us() - start) / 1000;
	fprintf(stderr, "reflection stream with a 300 ms deadline: ended "
			"after %lld ms, grpc-status %d (%s)\n",
		(long long)took_ms, h.grpc_status, h.grpc_message);
	assert_int_equal(h.n_closed, 2);
	assert_int_equal(h.grpc_status, 4);
	assert_true(took_ms >= 250 && took_ms < 2000);
	h2_close(&h);
}

/* ---- connection floods -------------------------------------------------- */

#define CONN_FLOOD 200
/* The descriptors the server keeps from connections (accept_guard.h). */
#define ACCEPT_RESERVE 64

/*
 * A Health/Check over a new connection answered OK within timeout_ms. The
 * connection is made on fd (from socket_bound), or on a new socket when fd
 * is -1. With pass, its port is passed on at the end (port_pass): *pass is
 * the next socket, or -1.
 */
static bool health_answered_on(int fd, int port, int timeout_ms, int *pass)
{
	char authority[64];
	struct h2 h;
	int64_t end = now_us() + (int64_t)timeout_ms * 1000;

	if (pass)
		*pass = -1;
	snprintf(authority, sizeof(authority), "127.0.0.1:%d", port);
	if (h2_try_connect_on(&h, fd, port, NULL) != 0) {
		fprintf(stderr, "health: cannot connect: %s\n",
			strerror(errno));
		return false;
	}
	h.body = empty_message;
	h.body_len = sizeof(empty_message);
	bool is_started =
		h2_start_call(&h, health_path, authority, "Bearer none",
			      false) > 0;
	int pumped = 0;
	while (is_started && h.n_closed == 0 && now_us() < end &&
	       (pumped = h2_pump(&h, 50)) == 0)
		;
	bool is_ok = h.n_closed == 1 && h.grpc_status == 0;
	if (!is_ok)
		fprintf(stderr,
			"health: started %d, closed %d, grpc-status %d, "
			"last pump %d, %lld ms left of %d\n",
			is_started, h.n_closed, h.grpc_status, pumped,
			(long long)(end - now_us()) / 1000, timeout_ms);
	if (pass) {
		*pass = port_pass(h.fd);
		h.fd = -1;
	}
	h2_close(&h);
	return is_ok;
}

static bool health_answered(int port, int timeout_ms)
{
	return health_answered_on(-1, port, timeout_ms, NULL);
}

/*
 * n TCP connections that send the HTTP/2 preface and SETTINGS, then wait;
 * returns how many the server closed within a second (the others are left
 * open in fds).
 */
static int connections_open(int port, int *fds, int n)
{
	static const uint8_t hello[] =
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
		"\x00\x00\x00\x04\x00\x00\x00\x00\x00";
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port)};
	int closed = 0;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < n; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(fds[i] >= 0);
		if (connect(fds[i], (struct sockaddr *)&a, sizeof(a)) == 0)
			(void)send(fds[i], hello, sizeof(hello) - 1,
				   MSG_NOSIGNAL);
	}
	usleep(1000 * 1000);
	for (int i = 0; i < n; i++) {
		uint8_t buf[4096];
		ssize_t got;

		/* The server's SETTINGS and ACK, then nothing: open. */
		do
			got = recv(fds[i], buf, sizeof(buf), MSG_DONTWAIT);
		while (got > 0);
		if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
			close(fds[i]);
			fds[i] = -1;
			closed++;
		}
	}
	return closed;
}

static void connections_close(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static int fds_of(pid_t pid)
{
	char cmd[128], out[64];

	snprintf(cmd, sizeof(cmd), "ls /proc/%d/fd | wc -l", (int)pid);
	harness_sh_out(cmd, out, sizeof(out));
	return atoi(out);
}

/*
 * --connection-limit 32: of 200 connections, those past 32 are closed as
 * they arrive (WARN line, metric); once the flood is gone a new client is
 * served at once. The same under an open-files limit of 128 (hard, as set
 * by an operator or a container) with the default --connection-limit: a
 * WARN at start says how many fit, connections past them are closed, and
 * the server keeps accepting afterwards (before, core stopped accepting
 * at the first EMFILE and every later client waited to its deadline).
 */
static void connection_flood_bounded(void **state)
{
	int fds[CONN_FLOOD];
	struct harness_proc srv;

	(void)state;
	own_server_start(&srv, "attacks-conns.db", "--connection-limit", "32",
			 0);
	int closed = connections_open(srv.port, fds, CONN_FLOOD);
	int n_fds = fds_of(srv.pid);
	fprintf(stderr, "--connection-limit 32: the server closed %d of %d "
			"connections at once; it holds %d descriptors\n",
		closed, CONN_FLOOD, n_fds);
	assert_true(closed >= CONN_FLOOD - 32 - 2);
	assert_true(closed <= CONN_FLOOD - 32 + 2);
	assert_true(harness_count_in_log(
			    &srv, "closing new connections as they arrive") >= 1);
	assert_false(health_answered(srv.port, 1000));
	connections_close(fds, CONN_FLOOD);
	int64_t t0 = now_us();
	while (!health_answered(srv.port, 1000) && now_us() - t0 < 5000000)
		;
	assert_true(now_us() - t0 < 5000000);
	assert_int_equal(harness_stop(&srv, SIGTERM), 0);

	own_server_start(&srv, "attacks-conns.db", NULL, NULL, 128);
	assert_true(harness_count_in_log(&srv, "leaves room for") == 1);
	closed = connections_open(srv.port, fds, CONN_FLOOD);
	n_fds = fds_of(srv.pid);
	fprintf(stderr, "open-files limit 128: the server closed %d of %d "
			"connections at once; it holds %d descriptors\n",
		closed, CONN_FLOOD, n_fds);
	assert_true(closed >= CONN_FLOOD - 128);
	assert_true(n_fds <= 128 - ACCEPT_RESERVE + 8);
	connections_close(fds, CONN_FLOOD);
	t0 = now_us();
	while (!health_answered(srv.port, 1000) && now_us() - t0 < 5000000)
		;
	fprintf(stderr, "open-files limit 128: a new client served %lld ms "
			"after the flood ended\n",
		(long long)(now_us() - t0) / 1000);
	assert_true(now_us() - t0 < 5000000);
	assert_int_equal(harness_stop(&srv, SIGTERM), 0);
}

/* ---- compressed bombs --------------------------------------------------- */

#define BOMB_INFLATED (32 * 1024 * 1024)
#define BOMBS 16

/* A gRPC frame: flag 1 (compressed), length, gzip of zeros. */
static uint8_t *make_bomb(size_t *len)
{
	uint8_t *zeros = calloc(1, BOMB_INFLATED);
	size_t cap = 128 * 1024;
	uint8_t *out = malloc(cap);
	z_stream z;

	assert_non_null(zeros);
	assert_non_null(out);
	memset(&z, 0, sizeof(z));
	assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9,
				      Z_DEFAULT_STRATEGY),
			 Z_OK);
	z.next_in = zeros;
	z.avail_in = BOMB_INFLATED;
	z.next_out = out + 5;
	z.avail_out = (uInt)(cap - 5);
	assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
	size_t n = z.total_out;
	deflateEnd(&z);
	free(zeros);
	out[0] = 1;
	out[1] = (uint8_t)(n >> 24);
	out[2] = (uint8_t)(n >> 16);
	out[3] = (uint8_t)(n >> 8);
	out[4] = (uint8_t)n;
	*len = n + 5;
	return out;
}

static void compressed_bomb_refused(void **state)
{
	size_t bomb_len;
	uint8_t *bomb = make_bomb(&bomb_len);
	char authority[64], auth[4096];
	struct prober probe;
	double p99, max;
	long rss_before = harness_proc_kib(server.pid, "VmRSS");

	(void)state;
	fprintf(stderr, "bomb: %zu bytes on the wire, %d inflated\n",
		bomb_len, BOMB_INFLATED);
	assert_true(bomb_len - 5 < 64 * 1024);
	snprintf(authority, sizeof(authority), "127.0.0.1:%d", server.port);
	snprintf(auth, sizeof(auth), "Bearer %s", assign_token);
	prober_start(&probe);
	int64_t t0 = now_us();
	for (int i = 0; i < BOMBS; i++) {
		struct h2 h;
		h2_connect(&h, server.port);
		h.body = bomb;
		h.body_len = bomb_len;
		assert_true(h2_start_call(&h, assign_path, authority, auth,
					  true) > 0);
		int64_t until = now_us() + TIMEOUT_MS * 1000LL;
		while (h.n_closed == 0 && now_us() < until)
			assert_int_equal(h2_pump(&h, 100), 0);
		if (h.grpc_status != 8)
			fprintf(stderr, "bomb %d: grpc-status %d '%s'\n", i,
				h.grpc_status, h.grpc_message);
		assert_int_equal(h.grpc_status, 8); /* RESOURCE_EXHAUSTED */
		h2_close(&h);
	}
	double secs = (double)(now_us() - t0) / 1e6;
	prober_stop(&probe, "bomb", &p99, &max, false);
	long rss_after = harness_proc_kib(server.pid, "VmRSS");
	fprintf(stderr,
		"bomb: %d bombs (%d MiB inflated each) refused in %.2f s; "
		"server RSS before %ld KiB, after %ld KiB, peak %ld KiB\n",
		BOMBS, BOMB_INFLATED >> 20, secs, rss_before, rss_after,
		harness_proc_kib(server.pid, "VmHWM"));
	/* Inflating even one would have added 32 MiB. */
	assert_true(rss_after - rss_before < 24 * 1024);
	assert_true(max < SLOW_CALL_MS);

	/* A well-formed small compressed request is served. */
	Deviceassignment__V1__ListUserDevicesRequest r =
		DEVICEASSIGNMENT__V1__LIST_USER_DEVICES_REQUEST__INIT;
	uint8_t plain[256], packed[512];
	r.customer_tenant_id = (char *)CUST;
	r.user_id = (char *)"alice";
	size_t plen = protobuf_c_message_pack(&r.base, plain);
	z_stream z;
	memset(&z, 0, sizeof(z));
	assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8,
				      Z_DEFAULT_STRATEGY),
			 Z_OK);
	z.next_in = plain;
	z.avail_in = (uInt)plen;
	z.next_out = packed + 5;
	z.avail_out = sizeof(packed) - 5;
	assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
	packed[0] = 1;
	packed[1] = packed[2] = 0;
	packed[3] = (uint8_t)(z.total_out >> 8);
	packed[4] = (uint8_t)z.total_out;
	struct h2 h;
	h2_connect(&h, server.port);
	h.body = packed;
	h.body_len = z.total_out + 5;
	deflateEnd(&z);
	assert_true(h2_start_call(
			    &h,
			    "/deviceassignment.v1.DeviceAssignment/"
			    "ListUserDevices",
			    authority, auth, true) > 0);
	int64_t until = now_us() + TIMEOUT_MS * 1000LL;
	while (h.n_closed == 0 && now_us() < until)
		assert_int_equal(h2_pump(&h, 100), 0);
	assert_int_equal(h.grpc_status, 0);
	h2_close(&h);
	free(bomb);
}

/* ---- a header block that never ends ------------------------------------- */

#define HEADER_FLOOD_LINE "bytes more than its calls hold"
/* The guard closes at 16 MiB of debt, looked at every 100 ms: an attacker
 * that got this far was never stopped (before: 2.7 GB RSS for 960 MB). */
#define HEADER_FLOOD_MAX_BYTES (256L << 20)

/* An HTTP/2 frame header (RFC 9113 4.1). */
static void frame_head(uint8_t *out, size_t len, uint8_t type, uint8_t flags,
		       uint32_t stream)
{
	out[0] = (uint8_t)(len >> 16);
	out[1] = (uint8_t)(len >> 8);
	out[2] = (uint8_t)len;
	out[3] = type;
	out[4] = flags;
	out[5] = (uint8_t)(stream >> 24);
	out[6] = (uint8_t)(stream >> 16);
	out[7] = (uint8_t)(stream >> 8);
	out[8] = (uint8_t)stream;
}

/* A literal header field without indexing, new name (RFC 7541 6.2.2),
 * name and value under 127 bytes each. */
static size_t hpack_literal(uint8_t *out, const char *name, const char *value)
{
	size_t n = strlen(name), v = strlen(value);

	out[0] = 0;
	out[1] = (uint8_t)n;
	memcpy(out + 2, name, n);
	out[2 + n] = (uint8_t)v;
	memcpy(out + 3 + n, value, v);
	return 3 + n + v;
}

/* Sends all of buf (blocking, bounded by the socket's send timeout);
 * false once the server has closed or stalled the connection. */
static bool send_all(int fd, const uint8_t *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n <= 0)
			return false;
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

/*
 * HEADERS without END_HEADERS, then CONTINUATION frames that never end the
 * block (the "CONTINUATION flood"): gRPC core 1.51 checks its header
 * limit per frame and keeps every header of the block, so one connection
 * grew the server by GBs without ever making a call. The frames hold
 * fresh literal headers, or (is_indexed) one-byte references to a header
 * the block put in the HPACK table, which cost core ~52 bytes a byte.
 * The guard closes the connection for the bytes no call accounts for
 * (service/grpc/flood_guard.h): the WARN line names it, the attacker gets
 * no further than HEADER_FLOOD_MAX_BYTES, the server's RSS stays bounded
 * and goes back down, and normal calls are answered throughout.
 */
/*
 * The frames of that flood: in head (512 bytes) the preface, an empty
 * SETTINGS and the HEADERS of stream 1 without END_HEADERS; its length is
 * returned. In block (9 + 16384 bytes) one CONTINUATION frame of ~16 KiB
 * of headers x-junk-N: vvv..., or of references to the table's newest
 * entry (index 62); *block_len is its length.
 */
static size_t header_flood_frames(bool is_indexed, uint8_t *head,
				  uint8_t *block, size_t *block_len)
{
	static const char path[] =
		"/deviceassignment.v1.DeviceAssignment/ListUserDevices";
	size_t n = 0, body = 0;

	if (is_indexed) {
		body = 16000;
		memset(block + 9, 0x80 | 62, body);
	}
	while (!is_indexed && body + 160 < 16384) {
		char name[32], value[101];
		snprintf(name, sizeof(name), "x-junk-%zu", n++);
		memset(value, 'v', 100);
		value[100] = '\0';
		body += hpack_literal(block + 9 + body, name, value);
	}
	frame_head(block, body, 9 /* CONTINUATION */, 0, 1);
	*block_len = 9 + body;

	size_t h = 0;
	memcpy(head, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
	h = 24;
	frame_head(head + h, 0, 4 /* SETTINGS */, 0, 0);
	h += 9;
	size_t hb = h + 9, hl = 0;
	head[hb + hl++] = 0x83; /* :method POST */
	head[hb + hl++] = 0x86; /* :scheme http */
	hl += hpack_literal(head + hb + hl, ":path", path);
	hl += hpack_literal(head + hb + hl, "content-type", "application/grpc");
	hl += hpack_literal(head + hb + hl, "te", "trailers");
	if (is_indexed) { /* x-a: v...v into the table (incremental indexing) */
		char value[101];
		memset(value, 'v', 100);
		value[100] = '\0';
		size_t at = hb + hl;
		hl += hpack_literal(head + at, "x-a", value);
		head[at] = 0x40;
	}
	frame_head(head + h, hl, 1 /* HEADERS */, 0, 1);
	return hb + hl;
}

static void header_flood(bool is_indexed)
{
	static uint8_t block[9 + 16384];
	uint8_t head[512];
	struct sockaddr_in a = {.sin_family = AF_INET};
	struct timeval tv = {.tv_sec = 0, .tv_usec = 200 * 1000};
	struct prober probe;
	double p99, max;
	int closed_before = harness_count_in_log(&server, HEADER_FLOOD_LINE);
	long rss_before = harness_proc_kib(server.pid, "VmRSS");
	long sent = 0;
	size_t block_len;
	size_t h = header_flood_frames(is_indexed, head, block, &block_len);

	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	a.sin_port = htons((uint16_t)server.port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	prober_start(&probe);
	assert_true(send_all(fd, head, h));
	int64_t t0 = now_us(), until = t0 + 30 * 1000000LL;
	int closed = 0;
	while (sent < HEADER_FLOOD_MAX_BYTES && now_us() < until) {
		if (!send_all(fd, block, block_len)) {
			/* Stalled (the server reads no more) or closed. */
			closed = harness_count_in_log(&server,
						      HEADER_FLOOD_LINE) -
				 closed_before;
			if (closed > 0)
				break;
			continue;
		}
		sent += (long)block_len;
		if (sent % (64 * (long)block_len) == 0 &&
		    (closed = harness_count_in_log(&server,
						   HEADER_FLOOD_LINE) -
			      closed_before) > 0)
			break;
	}
	double secs = (double)(now_us() - t0) / 1e6;
	/* The server shut the socket: the client sees its end. */
	char sink[4096];
	int64_t eof_until = now_us() + 5 * 1000000LL;
	bool is_ended = false;
	tv.tv_usec = 100 * 1000;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (!is_ended && now_us() < eof_until) {
		ssize_t got = recv(fd, sink, sizeof(sink), 0);
		is_ended = got == 0 || (got < 0 && errno != EAGAIN &&
					errno != EWOULDBLOCK && errno != EINTR);
	}
	close(fd);
	prober_stop(&probe, "header block", &p99, &max, false);
	long hwm = harness_proc_kib(server.pid, "VmHWM");
	/* The memory core held for the block is handed back. */
	long rss_after = rss_settled(server.pid, rss_before);
	fprintf(stderr,
		"header block%s: %ld KiB sent in %.2f s before the server "
		"closed the connection (%d WARN lines); server RSS before %ld "
		"KiB, peak %ld KiB, after %ld KiB\n",
		is_indexed ? " (indexed)" : "", sent >> 10, secs, closed,
		rss_before, hwm, rss_after);
	assert_true(closed >= 1);
	assert_true(sent < HEADER_FLOOD_MAX_BYTES);
	assert_true(is_ended);
	if (FLOOD_IS_SANITIZED)
		assert_true(hwm - rss_before < RSS_LIMIT_KIB);
	else
		assert_true(hwm < RSS_LIMIT_KIB);
	/* ASan's allocator keeps what it freed (no malloc_trim there). */
	assert_true(rss_after - rss_before < 32 * 1024 || FLOOD_IS_SANITIZED);
	assert_true(max < SLOW_CALL_MS || FLOOD_IS_SANITIZED);
	assert_true(harness_is_alive(&server));
}

static void header_block_flood_bounded(void **state)
{
	(void)state;
	header_flood(false);
}

static void header_block_indexed_flood_bounded(void **state)
{
	(void)state;
	header_flood(true);
}

/*
 * Sends a header block flood to srv on fd (connected, from socket_bound)
 * until the guard closes the connection (its WARN line), the bytes sent in
 * *sent. Returns the next socket on fd's port (port_pass).
 */
static int header_flood_until_closed(struct harness_proc *srv, int fd,
				     long *sent)
{
	static uint8_t block[9 + 16384];
	uint8_t head[512];
	struct timeval tv = {.tv_sec = 0, .tv_usec = 200 * 1000};
	size_t block_len;
	size_t h = header_flood_frames(false, head, block, &block_len);
	int before = harness_count_in_log(srv, HEADER_FLOOD_LINE), closed = 0;
	int64_t until = now_us() + 30 * 1000000LL;

	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	assert_true(send_all(fd, head, h));
	*sent = 0;
	for (long n = 0; !closed && *sent < HEADER_FLOOD_MAX_BYTES &&
			 now_us() < until;
	     n++) {
		bool is_sent = send_all(fd, block, block_len);
		if (is_sent)
			*sent += (long)block_len;
		if (!is_sent || n % 64 == 0)
			closed = harness_count_in_log(srv, HEADER_FLOOD_LINE) -
				 before;
	}
	assert_int_equal(closed, 1);
	return port_pass(fd);
}

/*
 * A client port the guard closed, taken again by a new connection. The
 * guard remembers a closed connection by its peer (address and port) for
 * FLOOD_CLOSED_HOLD_MS (5 s) and drops the calls still queued from it
 * unanswered. The kernel hands a client port out again as soon as it is
 * free, so a new client can come from that address and port within those
 * seconds, and its calls were dropped too (its client saw CANCELLED at
 * once). A new connection is another client: its calls are answered, and
 * it is guarded afresh, as from any other port (a second flood from the
 * same port is closed again). Here the client passes the closed port to
 * its next connection itself, after a header block flood got it closed.
 */
static void closed_port_taken_again_served(void **state)
{
	struct harness_proc srv;
	long sent, sent_again;

	(void)state;
	own_server_start(&srv, "attacks-port-again.db", NULL, NULL, 0);
	int fd = socket_bound(0);
	assert_true(fd >= 0);
	assert_int_equal(connect_to(fd, srv.port), 0);
	int port = local_port_of(fd);
	int next = header_flood_until_closed(&srv, fd, &sent);
	assert_true(next >= 0);
	int64_t t0 = now_us();
	bool is_answered = health_answered_on(next, srv.port, 3000, &next);
	fprintf(stderr,
		"closed port taken again: %ld KiB sent before the close; a "
		"new connection from port %d %s in %lld ms\n",
		sent >> 10, port, is_answered ? "answered" : "NOT answered",
		(long long)(now_us() - t0) / 1000);
	assert_true(is_answered);
	assert_true(next >= 0);
	assert_int_equal(connect_to(next, srv.port), 0);
	assert_int_equal(local_port_of(next), port);
	next = header_flood_until_closed(&srv, next, &sent_again);
	fprintf(stderr, "closed port taken again: a second flood from it "
			"closed after %ld KiB\n",
		sent_again >> 10);
	assert_true(next >= 0);
	assert_true(health_answered_on(next, srv.port, 3000, NULL));
	assert_int_equal(harness_count_in_log(&srv, HEADER_FLOOD_LINE), 2);
	assert_int_equal(harness_stop(&srv, SIGTERM), 0);
}

/* ---- PING floods --------------------------------------------------------- */

#define PING_FLOOD_CONNS 16
#define PINGS_PER_SEND 4096

/* A connection of ours: the preface and empty SETTINGS sent; a receive
 * buffer of rcvbuf bytes (0: the kernel's). */
static int preface_connect(int port, int rcvbuf)
{
	uint8_t hello[24 + 9];
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	if (rcvbuf)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	memcpy(hello, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
	frame_head(hello + 24, 0, 4 /* SETTINGS */, 0, 0);
	assert_int_equal(send(fd, hello, sizeof(hello), MSG_NOSIGNAL),
			 (ssize_t)sizeof(hello));
	return fd;
}

/* PINGS_PER_SEND PING frames, each of 8 bytes of opaque data. */
static uint8_t *ping_block(size_t *len)
{
	uint8_t *b = malloc(PINGS_PER_SEND * 17);

	assert_non_null(b);
	for (int i = 0; i < PINGS_PER_SEND; i++) {
		frame_head(b + i * 17, 8, 6 /* PING */, 0, 0);
		memcpy(b + i * 17 + 9, "12345678", 8);
	}
	*len = PINGS_PER_SEND * 17;
	return b;
}

/*
 * PING floods: 16 connections that send PINGs as fast as the server reads
 * them and never read the acknowledgements, then one that reads them.
 * gRPC core's ping policy took the first kind to ~25 MB of server memory
 * per connection (a "too many pings" error added to the connection's
 * pending close for every further PING, kept while its write cannot
 * finish; 16 such connections: 300+ MB, never handed back). The server
 * leaves that policy off (GRPC_ARG_HTTP2_MAX_PING_STRIKES 0): core then
 * stops reading a connection once 10,000 acknowledgements wait to be
 * written, and the flood guard closes a connection that keeps sending
 * PINGs while it reads the acknowledgements (16 MiB of bytes no call
 * holds). Normal calls are answered meanwhile.
 */
static void ping_flood_bounded(void **state)
{
	struct harness_proc srv;
	int fds[PING_FLOOD_CONNS];
	size_t len, at[PING_FLOOD_CONNS] = {0}; /* into pings: whole frames */
	uint8_t *pings = ping_block(&len);
	long sent = 0;

	(void)state;
	own_server_start(&srv, "attacks-ping.db", NULL, NULL, 0);
	long rss_before = harness_proc_kib(srv.pid, "VmRSS");
	for (int i = 0; i < PING_FLOOD_CONNS; i++)
		fds[i] = preface_connect(srv.port, 4096);
	/* Until the server stops reading all of them (half a second with
	 * no byte taken), at most 5 s. */
	int64_t start = now_us(), last_progress = start;
	while (now_us() - start < 5000000 &&
	       now_us() - last_progress < 500000) {
		for (int i = 0; i < PING_FLOOD_CONNS; i++) {
			ssize_t n = send(fds[i], pings + at[i], len - at[i],
					 MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n > 0) {
				sent += n;
				at[i] = (at[i] + (size_t)n) % len;
				last_progress = now_us();
			}
		}
		usleep(1000);
	}
	long hwm = harness_proc_kib(srv.pid, "VmHWM");
	bool is_served = health_answered(srv.port, 5000);
	fprintf(stderr,
		"PING flood, %d connections not reading: %ld KiB sent "
		"(%ld PINGs) in %.2f s; server RSS before %ld KiB, peak %ld "
		"KiB; a new client %s\n",
		PING_FLOOD_CONNS, sent >> 10, sent / 17,
		(double)(now_us() - start) / 1e6, rss_before, hwm,
		is_served ? "served" : "NOT served");
	connections_close(fds, PING_FLOOD_CONNS);
	assert_true(is_served);
	assert_true(hwm - rss_before < 128 * 1024);

	/* A flooder that reads every acknowledgement. */
	int closed_before = harness_count_in_log(&srv, HEADER_FLOOD_LINE);
	int fd = preface_connect(srv.port, 0);
	bool is_ended = false;
	long sent2 = 0;
	size_t at2 = 0;
	start = now_us();
	while (!is_ended && now_us() - start < 20000000 &&
	       sent2 < HEADER_FLOOD_MAX_BYTES) {
		uint8_t sink[65536];
		ssize_t n = send(fd, pings + at2, len - at2,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			sent2 += n;
			at2 = (at2 + (size_t)n) % len;
		} else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			is_ended = true;
		}
		ssize_t got;
		while ((got = recv(fd, sink, sizeof(sink), MSG_DONTWAIT)) > 0)
			;
		if (got == 0 || (got < 0 && errno != EAGAIN &&
				 errno != EWOULDBLOCK && errno != EINTR))
			is_ended = true;
	}
	close(fd);
	fprintf(stderr,
		"PING flood, reading: closed by the server after %ld KiB "
		"(%ld PINGs), %.2f s\n",
		sent2 >> 10, sent2 / 17, (double)(now_us() - start) / 1e6);
	assert_true(is_ended);
	assert_true(sent2 < HEADER_FLOOD_MAX_BYTES);
	/* The guard logs once the socket is shut. */
	harness_wait_in_log(&srv, HEADER_FLOOD_LINE, closed_before + 1);
	assert_true(health_answered(srv.port, 5000));
	free(pings);
	assert_int_equal(harness_stop(&srv, SIGTERM), 0);
}

/* ---- streams held without a request -------------------------------------- */

#define HELD_LINE "without sending their requests"

/* The header block of a gRPC call to path (under 100 bytes) into block
 * (256 bytes); returns its length. */
static size_t call_header_block(uint8_t *block, const char *path)
{
	size_t bl = 0;

	block[bl++] = 0x83; /* :method POST */
	block[bl++] = 0x86; /* :scheme http */
	bl += hpack_literal(block + bl, ":path", path);
	bl += hpack_literal(block + bl, ":authority", "x");
	bl += hpack_literal(block + bl, "content-type", "application/grpc");
	bl += hpack_literal(block + bl, "te", "trailers");
	return bl;
}

/* On fd (preface sent): n streams from first_id, each HEADERS of a
 * ListUserDevices call, END_HEADERS without END_STREAM, and no message. */
static void streams_open(int fd, uint32_t first_id, int n)
{
	uint8_t block[256], *buf = malloc((size_t)n * (9 + sizeof(block)));
	size_t len = 0;

	assert_non_null(buf);
	size_t bl = call_header_block(
		block, "/deviceassignment.v1.DeviceAssignment/ListUserDevices");
	for (int i = 0; i < n; i++) {
		frame_head(buf + len, bl, 1 /* HEADERS */, 4 /* END_HEADERS */,
			   first_id + 2 * (uint32_t)i);
		memcpy(buf + len + 9, block, bl);
		len += 9 + bl;
	}
	assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
	free(buf);
}

/* n new connections to port into fds, each holding 100 such streams. */
static void held_connections_open(int *fds, int n, int port)
{
	for (int i = 0; i < n; i++) {
		fds[i] = preface_connect(port, 0);
		streams_open(fds[i], 1, 100);
	}
}

/* The server closed fd (EOF or reset) within timeout_ms. */
static bool is_closed_within(int fd, int timeout_ms)
{
	int64_t end = now_us() + (int64_t)timeout_ms * 1000;
	uint8_t sink[4096];

	while (now_us() < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 100) != 1)
			continue;
		ssize_t got = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
		if (got == 0 || (got < 0 && errno != EAGAIN &&
				 errno != EWOULDBLOCK && errno != EINTR))
			return true;
	}
	return false;
}

/*
 * Streams opened and never given their request message: a connection
 * holding more than 8 of them is closed once they are 10 s old (2 x 100
 * here), one holding 8 stays; while the server's RSS is past 64 MiB
 * (120 x 100 streams here), after 300 ms. Before, such streams stayed for
 * as long as the client liked (400 x 100: 508 MB, kept).
 */
static void held_streams_closed(void **state)
{
	struct harness_proc srv;
	enum { MANY = 120 };
	int few[2], eight, many[MANY];

	(void)state;
	own_server_start(&srv, "attacks-held.db", NULL, NULL, 0);
	for (int i = 0; i < 2; i++) {
		few[i] = preface_connect(srv.port, 0);
		streams_open(few[i], 1, 100);
	}
	eight = preface_connect(srv.port, 0);
	streams_open(eight, 1, 8);
	int64_t t0 = now_us();
	assert_true(is_closed_within(few[0], 14000));
	int64_t took = (now_us() - t0) / 1000;
	assert_true(is_closed_within(few[1], 2000));
	assert_false(is_closed_within(eight, 100));
	fprintf(stderr, "held streams: 2 connections x 100 closed after %lld "
			"ms; the one with 8 is open\n",
		(long long)took);
	assert_true(took >= 9000);
	assert_true(health_answered(srv.port, 5000));

	long rss_before = harness_proc_kib(srv.pid, "VmRSS");
	t0 = now_us();
	held_connections_open(many, MANY, srv.port);
	int n_closed = 0;
	for (int i = 0; i < MANY; i++)
		n_closed += is_closed_within(many[i], 5000);
	took = (now_us() - t0) / 1000;
	long hwm = harness_proc_kib(srv.pid, "VmHWM");
	long rss_after = rss_settled(srv.pid, rss_before);
	fprintf(stderr,
		"held streams: %d x 100 -> %d connections closed within %lld "
		"ms; server RSS before %ld KiB, peak %ld KiB, after %ld KiB\n",
		MANY, n_closed, (long long)took, rss_before, hwm, rss_after);
	assert_int_equal(n_closed, MANY);
	assert_true(rss_after - rss_before < 32 * 1024 || FLOOD_IS_SANITIZED);
	assert_false(is_closed_within(eight, 100));
	assert_true(health_answered(srv.port, 5000));
	connections_close(many, MANY);
	connections_close(few, 2);
	close(eight);
	/* One line per connection: a connection core still lists after its
	 * shutdown is not closed again. */
	assert_int_equal(harness_count_in_log(&srv, HELD_LINE), 2 + MANY);
	assert_int_equal(harness_stop(&srv, SIGTERM), 0);
}

/* A reflection stream (id 1) on fd (preface sent) and n list_services
 * requests on it, sent at once. */
static void reflection_requests_send(int fd, int n)
{
	static const char path[] =
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
	/* ServerReflectionRequest{list_services: ""} after its 5-byte
	 * gRPC prefix */
	static const uint8_t msg[] = {0, 0, 0, 0, 2, 0x3a, 0};
	size_t body = (size_t)n * sizeof(msg);
	uint8_t *buf = malloc(9 + 256 + 9 + body);

	assert_non_null(buf);
	size_t bl = call_header_block(buf + 9, path);
	frame_head(buf, bl, 1 /* HEADERS */, 4 /* END_HEADERS */, 1);
	frame_head(buf + 9 + bl, body, 0 /* DATA */, 0, 1);
	for (int i = 0; i < n; i++)
		memcpy(buf + 9 + bl + 9 + (size_t)i * sizeof(msg), msg,
		       sizeof(msg));
	assert_true(send_all(fd, buf, 9 + bl + 9 + body));
	free(buf);
}

/* Reads fd until stream 1 has brought n gRPC messages (its DATA frames'
 * 5-byte prefixes; other frames skipped), or timeout_ms passed; returns
 * how many it brought. */
static int stream1_messages(int fd, int n, int timeout_ms)
{
	static uint8_t buf[1 << 16];
	uint8_t prefix[5];
	size_t have = 0, prefix_got = 0;
	uint32_t body_left = 0;
	int got = 0;
	int64_t end = now_us() + (int64_t)timeout_ms * 1000;

	while (got < n && now_us() < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 100) != 1)
			continue;
		ssize_t r =
			recv(fd, buf + have, sizeof(buf) - have, MSG_DONTWAIT);
		if (r <= 0)
			break;
		have += (size_t)r;
		while (have >= 9) {
			size_t len = (size_t)buf[0] << 16 |
				     (size_t)buf[1] << 8 | buf[2];
			uint32_t sid = ((uint32_t)buf[5] & 0x7f) << 24 |
				       (uint32_t)buf[6] << 16 |
				       (uint32_t)buf[7] << 8 | buf[8];
			if (have < 9 + len)
				break;
			for (size_t i = 0; buf[3] == 0 && sid == 1 && i < len;
			     i++) {
				if (body_left) {
					body_left--;
					continue;
				}
				prefix[prefix_got++] = buf[9 + i];
				if (prefix_got == 5) {
					body_left = (uint32_t)prefix[1] << 24 |
						    (uint32_t)prefix[2] << 16 |
						    (uint32_t)prefix[3] << 8 |
						    prefix[4];
					prefix_got = 0;
					got++;
				}
			}
			memmove(buf, buf + 9 + len, have - 9 - len);
			have -= 9 + len;
		}
		assert_true(have < sizeof(buf));
	}
	return got;
}

/*
 * Requests read on one stream do not stand for other streams' missing
 * ones. 32 connections each send 120 list_services requests on a
 * reflection stream and have all 120 answered, then open 99 streams with
 * no request; 90 more connections x 100 such streams put the server's RSS
 * past 64 MiB. All 32 are closed by the 300 ms rule, within 5 s. Without
 * flood_guard_more_requests, core's count of requests received (121 on
 * each of the 32) made their 99 streams look as if each had sent one,
 * and they stayed until the 10 s rule.
 */
static void held_streams_behind_reflection_requests_closed(void **state)
{
	struct harness_proc srv;
	enum { MASKED = 32, REQUESTS = 120, FILL = 90 };
	int masked[MASKED], fill[FILL];

	(void)state;
	own_server_start(&srv, "attacks-held-refl.db", NULL, NULL, 0);
	for (int i = 0; i < MASKED; i++) {
		masked[i] = preface_connect(srv.port, 0);
		reflection_requests_send(masked[i], REQUESTS);
		assert_int_equal(stream1_messages(masked[i], REQUESTS, 10000),
				 REQUESTS);
	}
	int64_t t0 = now_us();
	for (int i = 0; i < MASKED; i++)
		streams_open(masked[i], 3, 99);
	held_connections_open(fill, FILL, srv.port);
	int n_closed = 0;
	for (int i = 0; i < MASKED; i++)
		n_closed += is_closed_within(masked[i], 5000);
	int64_t took = (now_us() - t0) / 1000;
	long hwm = harness_proc_kib(srv.pid, "VmHWM");
	fprintf(stderr,
		"held streams behind %d reflection requests: %d of %d "
		"connections closed within %lld ms; server peak %ld KiB\n",
		REQUESTS, n_closed, MASKED, (long long)took, hwm);
	assert_true(hwm > 64 * 1024); /* the 300 ms rule's condition */
	assert_int_equal(n_closed, MASKED);
	connections_close(masked, MASKED);
	connections_close(fill, FILL);
	assert_true(health_answered(srv.port, 5000));
	assert_int_equal(harness_stop(&srv, SIGTERM), 0);
}

/*
 * More connections closed at once than the guard's table once held (1,024
 * entries, 16 to a group of the hash): 1,200 connections with 10 held
 * streams each. Every one is closed once, and none of their calls, which
 * core hands to the workers when a connection is shut, runs its handler
 * (each would be answered UNAUTHENTICATED, a debug line): with the old
 * table, the closes that found their group full of closed connections
 * were not remembered, and 48,700 of 150,000 such calls ran.
 */
static void held_streams_many_closed_dropped(void **state)
{
	enum { CONNS = 1200, STREAMS = 10 };
	struct harness_proc srv;
	struct rlimit rl;
	static int fds[CONNS];

	(void)state;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < CONNS + 64) {
		fprintf(stderr, "open-files hard limit %lu: skipped\n",
			(unsigned long)rl.rlim_max);
		skip();
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < CONNS + 64) {
		rl.rlim_cur = CONNS + 64;
		assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
	}
	own_server_start(&srv, "attacks-held-many.db", "--log-level", "debug",
			 0);
	for (int i = 0; i < CONNS; i++) {
		fds[i] = preface_connect(srv.port, 0);
		streams_open(fds[i], 1, STREAMS);
	}
	int n_closed = 0;
	for (int i = 0; i < CONNS; i++)
		n_closed += is_closed_within(fds[i], 15000);
	connections_close(fds, CONNS);
	assert_true(health_answered(srv.port, 5000));
	int n_lines = harness_count_in_log(&srv, HELD_LINE);
	int n_answered = harness_count_in_log(&srv, "unauthenticated");
	fprintf(stderr,
		"held streams: %d x %d -> %d closed, %d close lines, %d of "
		"their calls answered\n",
		CONNS, STREAMS, n_closed, n_lines, n_answered);
	assert_int_equal(n_closed, CONNS);
	assert_int_equal(n_lines, CONNS);
	assert_int_equal(n_answered, 0);
	assert_int_equal(harness_stop(&srv, SIGTERM), 0);
}

/*
 * Clients that do not read: 300 connections send 30,000 PINGs each and
 * read nothing. Core queues an answer for each (it stops reading a
 * connection once 10,000 wait) and keeps them while the client's window
 * is shut: 128 MB held until the kernel gives up on the connections (20
 * s, core's TCP_USER_TIMEOUT). While the server's RSS is past 64 MiB,
 * bytes of ours that wait 2 s with none acknowledged close a connection:
 * here they are closed until the server is back under it.
 */
static void not_reading_closed(void **state)
{
	enum { CONNS = 300, PINGS = 30000 };
	struct harness_proc srv;
	int fds[CONNS];
	size_t len, at[CONNS] = {0}, left[CONNS];
	uint8_t *pings = ping_block(&len);

	(void)state;
	own_server_start(&srv, "attacks-stuck.db", NULL, NULL, 0);
	long rss_before = harness_proc_kib(srv.pid, "VmRSS");
	for (int i = 0; i < CONNS; i++) {
		fds[i] = preface_connect(srv.port, 4096);
		left[i] = (size_t)PINGS * 17;
	}
	/* Until every PING is sent or the server stops reading. */
	int64_t start = now_us(), last_progress = start;
	while (now_us() - last_progress < 500000 &&
	       now_us() - start < 10000000) {
		for (int i = 0; i < CONNS; i++) {
			size_t want = len - at[i] < left[i] ? len - at[i]
							    : left[i];
			if (!want)
				continue;
			ssize_t n = send(fds[i], pings + at[i], want,
					 MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n > 0) {
				at[i] = (at[i] + (size_t)n) % len;
				left[i] -= (size_t)n;
				last_progress = now_us();
			}
		}
		usleep(1000);
	}
	long held = harness_proc_kib(srv.pid, "VmRSS");
	int n_closed = 0;
	for (int i = 0; i < CONNS; i++)
		n_closed += is_closed_within(fds[i], i == 0 ? 6000 : 10);
	long rss_after = rss_settled(srv.pid, rss_before);
	fprintf(stderr,
		"not reading: %d connections x %d PINGs; server RSS before "
		"%ld KiB, with them %ld KiB, after %ld KiB; %d closed by the "
		"server\n",
		CONNS, PINGS, rss_before, held, rss_after, n_closed);
	assert_true(n_closed >= 1);
	assert_true(rss_after < (64L << 10) || FLOOD_IS_SANITIZED);
	harness_wait_in_log(&srv, "a client that does not read", 1);
	assert_true(health_answered(srv.port, 5000));
	connections_close(fds, CONNS);
	free(pings);
	assert_int_equal(harness_stop(&srv, SIGTERM), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(nul_in_strings_refused),
		cmocka_unit_test(authorization_entries),
		cmocka_unit_test(port_in_use_refused),
		cmocka_unit_test(sqlite_file_in_use_refused),
		cmocka_unit_test(unusable_flags_refused),
		cmocka_unit_test(stream_cap_advertised),
		cmocka_unit_test(idle_connections_closed),
		cmocka_unit_test(deadline_ends_streams),
		cmocka_unit_test(connection_flood_bounded),
		cmocka_unit_test(compressed_bomb_refused),
		cmocka_unit_test(header_block_flood_bounded),
		cmocka_unit_test(header_block_indexed_flood_bounded),
		cmocka_unit_test(ping_flood_bounded),
		cmocka_unit_test(not_reading_closed),
		cmocka_unit_test(held_streams_closed),
		cmocka_unit_test(
			held_streams_behind_reflection_requests_closed),
		cmocka_unit_test(held_streams_many_closed_dropped),
		cmocka_unit_test(closed_port_taken_again_served),
		cmocka_unit_test(heavy_clients_not_cut),
		cmocka_unit_test(clients_at_the_stream_cap_not_cut),
		cmocka_unit_test(rapid_reset_flood_bounded),
		cmocka_unit_test(rapid_reset_short_deadline_flood_bounded),
		cmocka_unit_test(server_made_reset_flood_bounded),
		cmocka_unit_test(rapid_reset_flood_bounded_tls),
		cmocka_unit_test(rapid_reset_more_flooders_than_workers),
	};
	signal(SIGPIPE, SIG_IGN);
	/* DAS_TEST_FILTER=rapid_reset* runs the tests whose name matches. */
	if (getenv("DAS_TEST_FILTER"))
		cmocka_set_test_filter(getenv("DAS_TEST_FILTER"));
	return harness_finish(cmocka_run_group_tests(tests, setup, teardown));
}
