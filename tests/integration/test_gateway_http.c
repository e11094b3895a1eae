/*
 * The gateway's HTTP front (issue 9) with raw sockets: each request as an
 * attacker or an odd client would send it, and the exact answer expected.
 * The real server sits behind the gateway, so "nothing reached the
 * service" is checked by asking the service afterwards.
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
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "deviceassignment/v1/directory.pb-c.h"

#include "client/das_client.h"
#include "harness.h"

#define CUST "0f8fad5b-d9cb-469f-a165-70867728950e"
#define PATH(user, device, op) \
	"/v1.0/customers/" CUST "/users/" user "/devices/pbx/" device "/" op
#define LIST_PATH(user) "/v1.0/customers/" CUST "/users/" user "/devices/pbx"
#define BODY	    "{\"clientType\":\"desktop\"}"

static struct harness_proc server, gateway;
static char *admin_token, *auth_line;

/* ---- raw HTTP ------------------------------------------------------------ */

struct answer {
	char text[65536];
	size_t len;
	bool is_closed; /* the gateway closed (EOF or reset) */
	long ms;	/* until the first response was complete, or closed */
};

static long ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 +
	       (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

static int connect_from(const char *src, int port)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (src) {
		memset(&sa, 0, sizeof(sa));
		sa.sin_family = AF_INET;
		inet_pton(AF_INET, src, &sa.sin_addr);
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			close(fd);
			return -1;
		}
	}
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads until the gateway closes or timeout_ms pass. */
static void read_all(int fd, struct answer *a, int timeout_ms)
{
	struct timespec t0;
	struct pollfd pfd = {fd, POLLIN, 0};

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (ms_since(&t0) < timeout_ms &&
	       poll(&pfd, 1, timeout_ms - (int)ms_since(&t0)) == 1) {
		ssize_t n = recv(fd, a->text + a->len,
				 sizeof(a->text) - 1 - a->len, 0);
		if (n <= 0) {
			a->is_closed = true;
			break;
		}
		a->len += (size_t)n;
		a->text[a->len] = '\0';
	}
}

/* Sends data (optionally half-closing) and reads until close. */
static void exchange(const void *data, size_t len, bool is_half_close,
		     int timeout_ms, struct answer *a)
{
	int fd = connect_from(NULL, gateway.port);
	struct timespec t0;

	assert_true(fd >= 0);
	memset(a, 0, sizeof(*a));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (len)
		assert_int_equal(send(fd, data, len, MSG_NOSIGNAL),
				 (ssize_t)len);
	if (is_half_close)
		shutdown(fd, SHUT_WR);
	read_all(fd, a, timeout_ms);
	a->ms = ms_since(&t0);
	close(fd);
}

static void exchange_s(const char *req, struct answer *a)
{
	exchange(req, strlen(req), false, 10000, a);
}

static size_t count(const char *s, const char *what)
{
	size_t n = 0;

	for (const char *p = s; (p = strstr(p, what)); p += strlen(what))
		n++;
	return n;
}

/* The header value of name in the first response of a, or NULL. */
static const char *header(const struct answer *a, const char *name,
			  char *buf, size_t size)
{
	const char *end = strstr(a->text, "\r\n\r\n");
	size_t n = strlen(name);

	for (const char *p = strstr(a->text, "\r\n"); p && p < end;
	     p = strstr(p + 2, "\r\n")) {
		if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
			const char *v = p + 3 + n, *eol;
			while (*v == ' ')
				v++;
			eol = strstr(v, "\r\n");
			snprintf(buf, size, "%.*s", (int)(eol - v), v);
			return buf;
		}
	}
	return NULL;
}

/*
 * a holds exactly one response of status with the product's JSON error
 * body, Content-Type and X-Request-Id, and the connection was closed.
 */
static void expect_one_error(const struct answer *a, int status,
			     const char *message_part)
{
	char v[256], line[32];
	const char *body = strstr(a->text, "\r\n\r\n");
	json_t *root;

	snprintf(line, sizeof(line), "HTTP/1.1 %d ", status);
	if (strncmp(a->text, line, strlen(line)) != 0)
		fail_msg("expected %d, got: %.300s", status, a->text);
	assert_int_equal(count(a->text, "HTTP/1."), 1);
	assert_non_null(header(a, "Content-Type", v, sizeof(v)));
	assert_string_equal(v, "application/json; charset=utf-8");
	assert_non_null(header(a, "X-Request-Id", v, sizeof(v)));
	assert_non_null(header(a, "Connection", v, sizeof(v)));
	assert_string_equal(v, "close");
	assert_non_null(header(a, "Content-Length", v, sizeof(v)));
	assert_non_null(body);
	body += 4;
	assert_int_equal(strtoul(v, NULL, 10), strlen(body));
	root = json_loads(body, 0, NULL);
	if (!root)
		fail_msg("not JSON: %s", body);
	assert_int_equal(json_integer_value(json_object_get(root, "error")),
			 status);
	assert_string_equal(json_string_value(json_object_get(root, "status")),
			    "error");
	assert_non_null(json_string_value(json_object_get(root, "timestamp")));
	if (message_part)
		assert_non_null(strstr(
			json_string_value(json_object_get(root, "message")),
			message_part));
	json_decref(root);
	assert_true(a->is_closed);
}

static int status_of(const struct answer *a)
{
	if (strncmp(a->text, "HTTP/1.1 ", 9) != 0)
		return 0;
	return atoi(a->text + 9);
}

/* A PUT assign of user/device with a body, as a string (static storage). */
static const char *assign_request(const char *user, const char *device,
				  const char *extra)
{
	static char buf[16384];

	snprintf(buf, sizeof(buf),
		 "PUT " PATH("%s", "%s", "assign") " HTTP/1.1\r\n"
		 "Host: gw.example\r\n%s\r\n"
		 "Content-Type: application/json\r\n"
		 "%s"
		 "Content-Length: %zu\r\n\r\n" BODY,
		 user, device, auth_line, extra ? extra : "",
		 strlen(BODY));
	return buf;
}

/* The devices of user as the service sees them ("" when none). */
static void list_devices(const char *user, char *out, size_t size)
{
	char req[8192];
	struct answer a;
	json_t *root;
	size_t i, o = 0;
	json_t *item;

	snprintf(req, sizeof(req),
		 "GET " LIST_PATH("%s") " HTTP/1.1\r\nHost: x\r\n%s\r\n"
		 "Connection: close\r\n\r\n",
		 user, auth_line);
	exchange_s(req, &a);
	assert_int_equal(status_of(&a), 200);
	root = json_loads(strstr(a.text, "\r\n\r\n") + 4, 0, NULL);
	assert_non_null(root);
	out[0] = '\0';
	json_array_foreach(json_object_get(root, "data"), i, item)
	{
		o += (size_t)snprintf(
			out + o, size - o, "%s%s", i ? " " : "",
			json_string_value(json_object_get(item, "deviceId")));
	}
	json_decref(root);
}

static void unassign(const char *user, const char *device)
{
	char req[8192];
	struct answer a;

	snprintf(req, sizeof(req),
		 "PUT " PATH("%s", "%s", "unassign") " HTTP/1.1\r\nHost: x\r\n"
		 "%s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
		 user, device, auth_line);
	exchange_s(req, &a);
	assert_int_equal(status_of(&a), 201);
}

/* ---- programs -------------------------------------------------------------- */

static void directory_call(enum das_rpc_method m, const ProtobufCMessage *req)
{
	struct das_client *c = das_client_new(server.addr);
	struct das_call_status st;
	ProtobufCMessage *resp = NULL;

	assert_non_null(c);
	assert_int_equal(
		das_client_call(c, m, admin_token, req, &resp, 10000, &st), 0);
	assert_int_equal(st.code, 0);
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	das_client_free(c);
}

static void import_directory(void)
{
	static char *roles[] = {(char *)"customer_user_uc",
				(char *)"customer_user_uc_softphone"};
	Deviceassignment__V1__UpsertCustomerRequest cr =
		DEVICEASSIGNMENT__V1__UPSERT_CUSTOMER_REQUEST__INIT;
	Deviceassignment__V1__UpsertUserRequest ur =
		DEVICEASSIGNMENT__V1__UPSERT_USER_REQUEST__INIT;
	Deviceassignment__V1__UpsertPbxDeviceRequest dr =
		DEVICEASSIGNMENT__V1__UPSERT_PBX_DEVICE_REQUEST__INIT;

	cr.tenant_id = (char *)CUST;
	cr.name = (char *)"Acme";
	directory_call(DAS_RPC_UPSERT_CUSTOMER, &cr.base);
	ur.tenant_id = (char *)CUST;
	ur.user_id = (char *)"u1";
	ur.n_roles = 2;
	ur.roles = roles;
	directory_call(DAS_RPC_UPSERT_USER, &ur.base);
	dr.tenant_id = (char *)CUST;
	dr.owner_user_id = (char *)"u1";
	dr.device_id = (char *)"d1";
	directory_call(DAS_RPC_UPSERT_PBX_DEVICE, &dr.base);
	dr.device_id = (char *)"d2";
	directory_call(DAS_RPC_UPSERT_PBX_DEVICE, &dr.base);
}

static void start_gateway(struct harness_proc *p, const char *const *extra)
{
	const char *args[32] = {"--upstream", server.addr,
				"--connection-timeout", "5",
				"--header-timeout", "2",
				"--body-timeout", "2",
				"--threads", "2"};
	size_t n = 10;

	for (size_t i = 0; extra && extra[i]; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	assert_int_equal(harness_start(p, DAS_GATEWAY_BIN, args, NULL), 0);
}

static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int setup(void **state)
{
	const char *const *tenants = (const char *const[]){"*"};
	char db[400], spec[512], line[8192];
	char *token;
	const char *args[] = {"--listen", "127.0.0.1:0", "--store", spec,
			      "--jwt-hs256-secret-file", harness_secret_file(),
			      NULL};

	(void)state;
	raise_fd_limit();
	signal(SIGPIPE, SIG_IGN);
	harness_path("gateway-http.db", db, sizeof(db));
	snprintf(spec, sizeof(spec), "sqlite:%s", db);
	admin_token = harness_mint("admin", tenants, 1, "directory:admin", 3600);
	token = harness_mint("agent", tenants, 1, "devices:assign", 3600);
	snprintf(line, sizeof(line), "Authorization: Bearer %s", token);
	free(token);
	auth_line = strdup(line);
	assert_int_equal(harness_start(&server, DAS_SERVER_BIN, args, NULL), 0);
	import_directory();
	start_gateway(&gateway, NULL);
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
	free(auth_line);
	return 0;
}

/* ---- item 1: request smuggling ------------------------------------------- */

static void smuggling_shapes_are_400_and_close(void **state)
{
	char req[40000], hidden[16384], devices[256];
	struct answer a;

	(void)state;
	snprintf(hidden, sizeof(hidden), "%s", assign_request("u1", "d1", NULL));
	/* CL + TE, with an assign hidden behind a chunked terminator. */
	snprintf(req, sizeof(req),
		 "PUT " PATH("u1", "d2", "assign") " HTTP/1.1\r\nHost: x\r\n"
		 "%s\r\nContent-Type: application/json\r\n"
		 "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
		 "0\r\n\r\n%s",
		 auth_line, hidden);
	exchange_s(req, &a);
	expect_one_error(&a, 400, "both Content-Length and Transfer-Encoding");
	/* Two different Content-Length values. */
	snprintf(req, sizeof(req),
		 "PUT " PATH("u1", "d1", "assign") " HTTP/1.1\r\nHost: x\r\n"
		 "%s\r\nContent-Type: application/json\r\n"
		 "Content-Length: 24\r\nContent-Length: 5\r\n\r\n" BODY,
		 auth_line);
	exchange_s(req, &a);
	expect_one_error(&a, 400, "Content-Length");
	/* A bare CR inside a header value. */
	exchange_s(assign_request("u1", "d1", "X-Note: a\rb\r\n"), &a);
	expect_one_error(&a, 400, "bare CR");
	/* A space before the colon. */
	exchange_s(assign_request("u1", "d1", "accept-charges : true\r\n"), &a);
	expect_one_error(&a, 400, "malformed header field");
	/* Two Host fields. */
	exchange_s(assign_request("u1", "d1", "Host: evil.example\r\n"), &a);
	expect_one_error(&a, 400, "more than one Host");
	/* obs-fold. */
	exchange_s(assign_request("u1", "d1", "X-Fold: a\r\n b\r\n"), &a);
	expect_one_error(&a, 400, "folding");
	/* Nothing of it reached the service. */
	list_devices("u1", devices, sizeof(devices));
	assert_string_equal(devices, "");
}

/*
 * A field the gateway acts on that appears twice leaves its meaning open
 * (RFC 9110 5.3): which Content-Type or accept-charges was meant, whose
 * credentials. Answered as the gRPC face answers two authorization
 * entries (401), or 400 naming the field; nothing reaches the store.
 */
static void repeated_singleton_fields_are_refused(void **state)
{
	char req[16384], v[256], devices[256];
	struct answer a;

	(void)state;
	exchange_s(assign_request("u1", "d1", "Content-Type: text/plain\r\n"),
		   &a);
	expect_one_error(&a, 400, "more than one Content-Type header");
	exchange_s(assign_request("u1", "d1",
				  "accept-charges: true\r\n"
				  "accept-charges: false\r\n"),
		   &a);
	expect_one_error(&a, 400, "more than one accept-charges header");
	/* A valid token with an invalid one, in either order: neither is
	 * taken, where the first used to win. */
	for (int first = 0; first < 2; first++) {
		static const char bad[] =
			"Authorization: Bearer e30.e30.invalid";

		snprintf(req, sizeof(req),
			 "PUT " PATH("u1", "d1", "assign") " HTTP/1.1\r\n"
			 "Host: x\r\n%s\r\n%s\r\n"
			 "Content-Type: application/json\r\n"
			 "Connection: close\r\nContent-Length: %zu\r\n\r\n"
			 BODY,
			 first ? bad : auth_line, first ? auth_line : bad,
			 strlen(BODY));
		exchange_s(req, &a);
		if (status_of(&a) != 401)
			fail_msg("two Authorization lines: %.300s", a.text);
		assert_non_null(header(&a, "WWW-Authenticate", v, sizeof(v)));
		assert_string_equal(v, "Bearer");
	}
	list_devices("u1", devices, sizeof(devices));
	assert_string_equal(devices, "");
	/* Two request ids: the answer carries one of the gateway's own. */
	snprintf(req, sizeof(req),
		 "GET " LIST_PATH("u1") " HTTP/1.1\r\nHost: x\r\n%s\r\n"
		 "X-Request-Id: one\r\nX-Request-Id: two\r\n"
		 "Connection: close\r\n\r\n",
		 auth_line);
	exchange_s(req, &a);
	assert_int_equal(status_of(&a), 200);
	assert_non_null(header(&a, "X-Request-Id", v, sizeof(v)));
	assert_memory_equal(v, "gw-", 3);
}

/* ---- item 2: every answer in the product's shape ------------------------- */

static void protocol_errors_are_one_json_answer(void **state)
{
	static char big[300000];
	struct answer a;
	size_t n;

	(void)state;
	exchange_s("GET /healthz HTTP/1.1 extra\r\nHost: x\r\n\r\n", &a);
	expect_one_error(&a, 400, "HTTP version");
	exchange_s("GARBAGE\r\n\r\n", &a);
	expect_one_error(&a, 400, NULL);
	exchange_s("GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", &a);
	expect_one_error(&a, 505, "HTTP Version Not Supported");
	/* 414: a request target of 10 KB. */
	n = (size_t)snprintf(big, sizeof(big), "GET /");
	memset(big + n, 'a', 10000);
	n += 10000;
	n += (size_t)snprintf(big + n, sizeof(big) - n,
			      " HTTP/1.1\r\nHost: x\r\n\r\n");
	exchange(big, n, false, 10000, &a);
	expect_one_error(&a, 414, "URI Too Long");
	/* 431: 20 KB of headers. */
	n = (size_t)snprintf(big, sizeof(big),
			     "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
	memset(big + n, 'a', 20000);
	n += 20000;
	n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n\r\n");
	exchange(big, n, false, 10000, &a);
	expect_one_error(&a, 431, "Request Header Fields Too Large");
	/* A 100 KB chunk extension. */
	n = (size_t)snprintf(big, sizeof(big), "%s",
			     "PUT " PATH("u1", "d1", "assign") " HTTP/1.1\r\n"
			     "Host: x\r\nContent-Type: application/json\r\n"
			     "Transfer-Encoding: chunked\r\n\r\n18;ext=");
	memset(big + n, 'e', 100000);
	n += 100000;
	n += (size_t)snprintf(big + n, sizeof(big) - n,
			      "\r\n" BODY "\r\n0\r\n\r\n");
	exchange(big, n, false, 10000, &a);
	expect_one_error(&a, 400, "chunk extension");
	/* Content-Length: 24, 24 and a request without Host: one answer. */
	exchange_s("PUT " PATH("u1", "d1", "assign") " HTTP/1.1\r\nHost: x\r\n"
		   "Content-Type: application/json\r\n"
		   "Content-Length: 24, 24\r\n\r\n" BODY,
		   &a);
	expect_one_error(&a, 400, "Content-Length");
	exchange_s("GET /healthz HTTP/1.1\r\n\r\n", &a);
	expect_one_error(&a, 400, "missing Host");
	/* A 413 before the body is read, also as a JSON answer. */
	exchange_s("PUT " PATH("u1", "d1", "assign") " HTTP/1.1\r\nHost: x\r\n"
		   "Content-Type: application/json\r\n"
		   "Content-Length: 99999999\r\n\r\n",
		   &a);
	expect_one_error(&a, 413, "Payload Too Large");
	assert_true(harness_is_alive(&gateway));
}

/* ---- item 3: unknown transfer codings ----------------------------------- */

static void unknown_transfer_codings_are_501_at_once(void **state)
{
	static const char *const codings[] = {"gzip, chunked", "xchunked",
					      "chunked, gzip"};
	char req[8192];
	struct answer a;

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		snprintf(req, sizeof(req),
			 "PUT " PATH("u1", "d1", "assign") " HTTP/1.1\r\n"
			 "Host: x\r\nContent-Type: application/json\r\n"
			 "Transfer-Encoding: %s\r\n\r\n",
			 codings[i]);
		exchange(req, strlen(req), false, 10000, &a);
		expect_one_error(&a, 501, "transfer coding");
		fprintf(stderr, "Transfer-Encoding: %s -> 501 in %ld ms\n",
			codings[i], a.ms);
		/* Long before any timeout (the idle one is 5 s here). */
		assert_true(a.ms < 4000);
	}
}

/* ---- item 4: deadlines on the whole request ------------------------------ */

/* Sends line every interval_ms until the gateway closes; returns the time
 * the connection lived, in ms. */
static long dribble(const char *first, const char *line, int interval_ms,
		    int give_up_ms, struct answer *a)
{
	int fd = connect_from(NULL, gateway.port);
	struct timespec t0;
	struct pollfd pfd = {fd, POLLIN, 0};

	assert_true(fd >= 0);
	memset(a, 0, sizeof(*a));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	(void)!send(fd, first, strlen(first), MSG_NOSIGNAL);
	while (ms_since(&t0) < give_up_ms) {
		if (poll(&pfd, 1, interval_ms) == 1) {
			read_all(fd, a, 1000);
			break;
		}
		if (send(fd, line, strlen(line), MSG_NOSIGNAL) < 0) {
			a->is_closed = true;
			break;
		}
	}
	a->ms = ms_since(&t0);
	close(fd);
	return a->ms;
}

static void slow_requests_hit_total_deadlines(void **state)
{
	char head[8192], devices[256];
	struct answer a;
	long ms;

	(void)state;
	/* One header line every 400 ms: never idle for the 5 s idle
	 * timeout, but over the 2 s header deadline. */
	ms = dribble("PUT " PATH("u1", "d1", "assign") " HTTP/1.1\r\n",
		     "X-Slow: 1\r\n", 400, 15000, &a);
	fprintf(stderr, "dribbled head closed after %ld ms\n", ms);
	assert_true(a.is_closed);
	assert_true(ms >= 1500 && ms < 5000);
	/* A body at one byte every 300 ms: over the 2 s body deadline. */
	snprintf(head, sizeof(head),
		 "PUT " PATH("u1", "d1", "assign") " HTTP/1.1\r\nHost: x\r\n"
		 "%s\r\nContent-Type: application/json\r\n"
		 "Content-Length: 24\r\n\r\n",
		 auth_line);
	ms = dribble(head, " ", 300, 15000, &a);
	fprintf(stderr, "dribbled body closed after %ld ms\n", ms);
	assert_true(a.is_closed);
	assert_true(ms >= 1500 && ms < 5000);
	list_devices("u1", devices, sizeof(devices));
	assert_string_equal(devices, "");
}

/* The attack: N connections from 8 addresses, each sending a little of
 * an endless head now and then; closed ones reconnect. */
#define ATTACK_CONNS 1500

struct attack {
	int port;
	atomic_bool is_over;
	int fds[ATTACK_CONNS];
	atomic_int n_open;
	atomic_long n_reconnects;
};

static void attack_open(struct attack *at, int i)
{
	char src[32];
	static const char start[] =
		"PUT " PATH("u1", "d1", "assign") " HTTP/1.1\r\nHost: x\r\n";

	snprintf(src, sizeof(src), "127.0.0.%d", 2 + i % 8);
	at->fds[i] = connect_from(src, at->port);
	if (at->fds[i] >= 0)
		(void)!send(at->fds[i], start, sizeof(start) - 1,
			    MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void *attack_main(void *arg)
{
	struct attack *at = arg;
	char sink[512];

	for (int i = 0; i < ATTACK_CONNS; i++)
		attack_open(at, i);
	while (!atomic_load(&at->is_over)) {
		int n_open = 0;
		for (int i = 0; i < ATTACK_CONNS && !atomic_load(&at->is_over);
		     i++) {
			ssize_t r;
			if (at->fds[i] >= 0 &&
			    ((r = recv(at->fds[i], sink, sizeof(sink),
				       MSG_DONTWAIT)) == 0 ||
			     (r < 0 && errno != EAGAIN) ||
			     send(at->fds[i], "X: 1\r\n", 6,
				  MSG_NOSIGNAL | MSG_DONTWAIT) < 0)) {
				close(at->fds[i]);
				at->fds[i] = -1;
			}
			if (at->fds[i] < 0) {
				attack_open(at, i);
				atomic_fetch_add(&at->n_reconnects, 1);
			}
			if (at->fds[i] >= 0)
				n_open++;
		}
		atomic_store(&at->n_open, n_open);
		usleep(300 * 1000);
	}
	for (int i = 0; i < ATTACK_CONNS; i++)
		if (at->fds[i] >= 0)
			close(at->fds[i]);
	return NULL;
}

static void fresh_client_is_served_during_attack(void **state)
{
	static struct attack at;
	struct harness_proc gw;
	/* Defaults except the timeouts: connection limit 1024, no
	 * per-address limit. The header deadline is long so the attackers
	 * hold their slots; only eviction can make room. */
	const char *const extra[] = {"--header-timeout", "60",
				     "--connection-timeout", "60", NULL};
	pthread_t t;
	long worst = 0, lat[5];

	(void)state;
	start_gateway(&gw, extra);
	memset(&at, 0, sizeof(at));
	at.port = gw.port;
	assert_int_equal(pthread_create(&t, NULL, attack_main, &at), 0);
	sleep(3);
	fprintf(stderr, "attack: %d connections open, %ld reconnects\n",
		atomic_load(&at.n_open), atomic_load(&at.n_reconnects));
	for (int i = 0; i < 5; i++) {
		static const char req[] =
			"GET /healthz HTTP/1.1\r\nHost: x\r\n"
			"Connection: close\r\n\r\n";
		struct answer a;
		struct timespec t0;
		int fd;

		memset(&a, 0, sizeof(a));
		clock_gettime(CLOCK_MONOTONIC, &t0);
		fd = connect_from("127.0.0.1", gw.port);
		assert_true(fd >= 0);
		(void)!send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL);
		read_all(fd, &a, 10000);
		lat[i] = ms_since(&t0);
		close(fd);
		assert_int_equal(status_of(&a), 200);
		if (lat[i] > worst)
			worst = lat[i];
		usleep(500 * 1000);
	}
	fprintf(stderr,
		"fresh client during the attack: %ld %ld %ld %ld %ld ms "
		"(worst %ld); %ld attacker reconnects\n",
		lat[0], lat[1], lat[2], lat[3], lat[4], worst,
		atomic_load(&at.n_reconnects));
	atomic_store(&at.is_over, true);
	pthread_join(t, NULL);
	/* The attack did fill the house: attackers were evicted. */
	assert_true(atomic_load(&at.n_reconnects) > 0);
	assert_true(worst < 1000);
	assert_int_equal(harness_stop(&gw, SIGTERM), 0);
}

/* ---- item 5: half-closed clients ----------------------------------------- */

static void half_closed_client_gets_its_answer(void **state)
{
	char both[4096], devices[256];
	struct answer a;
	const char *req = assign_request("u1", "d1", NULL);

	(void)state;
	exchange(req, strlen(req), true, 10000, &a);
	if (status_of(&a) != 201)
		fail_msg("half-closed assign: %.300s", a.text);
	assert_non_null(strstr(a.text, "\"status\":\"success\""));
	assert_true(a.is_closed);
	list_devices("u1", devices, sizeof(devices));
	assert_string_equal(devices, "d1");
	unassign("u1", "d1");
	/* Two pipelined requests, then the half-close: two answers. */
	snprintf(both, sizeof(both),
		 "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
		 "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
	exchange(both, strlen(both), true, 10000, &a);
	assert_int_equal(count(a.text, "HTTP/1.1 200 OK\r\n"), 2);
	assert_int_equal(count(a.text, "{\"status\":\"ok\"}"), 1);
	assert_true(a.is_closed);
}

/* ---- item 6: absolute-form ---------------------------------------------- */

static void absolute_form_is_served(void **state)
{
	char req[8192], v[512];
	struct answer a;

	(void)state;
	snprintf(req, sizeof(req),
		 "PUT http://api.example:8080" PATH("u1", "d1", "assign")
		 " HTTP/1.1\r\nHost: ignored.example\r\n%s\r\n"
		 "Content-Type: application/json\r\nConnection: close\r\n"
		 "Content-Length: %zu\r\n\r\n" BODY,
		 auth_line, strlen(BODY));
	exchange_s(req, &a);
	if (status_of(&a) != 201)
		fail_msg("absolute-form: %.300s", a.text);
	assert_non_null(header(&a, "Location", v, sizeof(v)));
	assert_string_equal(v, "http://api.example:8080" PATH("u1", "d1",
								 "assign"));
	unassign("u1", "d1");
}

/* ---- item 7: /readyz when the service is down ----------------------------- */

static void readyz_answers_within_a_second_when_down(void **state)
{
	struct harness_proc gw;
	/* A port nothing listens on: the last server's, once stopped. */
	struct harness_proc gone;
	char db[400], spec[512];
	const char *args[] = {"--listen", "127.0.0.1:0", "--store", spec,
			      "--jwt-hs256-secret-file", harness_secret_file(),
			      NULL};
	const char *gw_args[] = {"--upstream", NULL, "--upstream-timeout-ms",
				 "5000", NULL};
	char addr[64];
	struct answer a;

	(void)state;
	harness_path("gone.db", db, sizeof(db));
	snprintf(spec, sizeof(spec), "sqlite:%s", db);
	assert_int_equal(harness_start(&gone, DAS_SERVER_BIN, args, NULL), 0);
	snprintf(addr, sizeof(addr), "%s", gone.addr);
	assert_int_equal(harness_stop(&gone, SIGTERM), 0);
	gw_args[1] = addr;
	assert_int_equal(harness_start(&gw, DAS_GATEWAY_BIN, gw_args, NULL), 0);
	for (int i = 0; i < 3; i++) {
		int fd = connect_from(NULL, gw.port);
		static const char req[] =
			"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n";
		struct timespec t0;

		assert_true(fd >= 0);
		memset(&a, 0, sizeof(a));
		clock_gettime(CLOCK_MONOTONIC, &t0);
		(void)!send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL);
		/* Until the whole answer is in (keep-alive: no close). */
		for (int tries = 0; tries < 100 && !strstr(a.text, "}"); tries++)
			read_all(fd, &a, 100);
		a.ms = ms_since(&t0);
		close(fd);
		fprintf(stderr, "/readyz with the service down: %d in %ld ms\n",
			status_of(&a), a.ms);
		assert_int_equal(status_of(&a), 503);
		assert_true(a.ms < 1000);
	}
	assert_int_equal(harness_stop(&gw, SIGTERM), 0);
}

/* ---- item 8: unusable --upstream ----------------------------------------- */

static void unusable_upstream_is_a_startup_error(void **state)
{
	static const char *const cases[][2] = {
		{"999.1.1.1:50051", "'999.1.1.1' is not an IPv4 address"},
		{"127.0.0.1:99999", "not HOST:PORT"},
		{"no-such-host.invalid:50051", "cannot resolve"},
		{"[::g]:50051", "not an IPv6 address"},
	};
	static struct harness_run_result r;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *args[] = {"--listen", "127.0.0.1:0", "--upstream",
				      cases[i][0], NULL};
		assert_int_equal(
			harness_run(DAS_GATEWAY_BIN, args, NULL, 10000, &r), 0);
		fprintf(stderr, "--upstream %s: exit %d: %s", cases[i][0],
			r.status, r.err);
		assert_int_equal(r.status, 2);
		assert_non_null(strstr(r.err, cases[i][1]));
		assert_int_equal(count(r.err, "\n"), 1);
		assert_int_equal(r.out_len, 0);
	}
}

/* ---- item 9: per-address limit ------------------------------------------- */

static void one_address_is_not_limited_by_default(void **state)
{
	enum { N = 600 };
	static int fds[N];
	static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
	int n_ok = 0;

	(void)state;
	/* Behind a load balancer every client has one address. */
	for (int i = 0; i < N; i++) {
		fds[i] = connect_from("127.0.0.1", gateway.port);
		assert_true(fds[i] >= 0);
	}
	for (int i = 0; i < N; i++)
		assert_int_equal(send(fds[i], req, sizeof(req) - 1,
				      MSG_NOSIGNAL),
				 (ssize_t)(sizeof(req) - 1));
	for (int i = 0; i < N; i++) {
		struct answer a;
		memset(&a, 0, sizeof(a));
		for (int tries = 0; tries < 100 && !strstr(a.text, "}"); tries++)
			read_all(fds[i], &a, 100);
		if (status_of(&a) == 200)
			n_ok++;
		close(fds[i]);
	}
	assert_int_equal(n_ok, N);
}

static void address_limit_answers_503_retry_after(void **state)
{
	struct harness_proc gw;
	const char *const extra[] = {"--per-ip-connection-limit", "2", NULL};
	int keep[2];
	struct answer a;
	char v[64];

	(void)state;
	start_gateway(&gw, extra);
	keep[0] = connect_from("127.0.0.3", gw.port);
	keep[1] = connect_from("127.0.0.3", gw.port);
	assert_true(keep[0] >= 0 && keep[1] >= 0);
	usleep(200 * 1000);
	{
		int fd = connect_from("127.0.0.3", gw.port);
		assert_true(fd >= 0);
		memset(&a, 0, sizeof(a));
		read_all(fd, &a, 5000);
		close(fd);
	}
	expect_one_error(&a, 503, "Service Unavailable");
	assert_non_null(header(&a, "Retry-After", v, sizeof(v)));
	assert_string_equal(v, "1");
	/* Another address is not affected. */
	{
		int fd = connect_from("127.0.0.4", gw.port);
		static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n"
					  "Connection: close\r\n\r\n";
		assert_true(fd >= 0);
		(void)!send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL);
		memset(&a, 0, sizeof(a));
		read_all(fd, &a, 5000);
		close(fd);
		assert_int_equal(status_of(&a), 200);
	}
	close(keep[0]);
	close(keep[1]);
	assert_int_equal(harness_stop(&gw, SIGTERM), 0);
}

/* Keep-alive and pipelining: many requests on one connection, in order. */
static void pipelined_requests_are_answered_in_order(void **state)
{
	char req[65536];
	size_t n = 0;
	struct answer a;
	const char *p;

	(void)state;
	for (int i = 0; i < 50; i++)
		n += (size_t)snprintf(req + n, sizeof(req) - n,
				      "GET /healthz HTTP/1.1\r\nHost: x\r\n"
				      "X-Request-Id: req-%02d\r\n\r\n",
				      i);
	n += (size_t)snprintf(req + n, sizeof(req) - n,
			      "GET /healthz HTTP/1.1\r\nHost: x\r\n"
			      "Connection: close\r\n\r\n");
	exchange(req, n, false, 10000, &a);
	assert_int_equal(count(a.text, "HTTP/1.1 200 OK"), 51);
	p = a.text;
	for (int i = 0; i < 50; i++) {
		char id[32];
		snprintf(id, sizeof(id), "X-Request-Id: req-%02d\r\n", i);
		p = strstr(p, id);
		assert_non_null(p);
	}
	assert_true(a.is_closed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(smuggling_shapes_are_400_and_close),
		cmocka_unit_test(repeated_singleton_fields_are_refused),
		cmocka_unit_test(protocol_errors_are_one_json_answer),
		cmocka_unit_test(unknown_transfer_codings_are_501_at_once),
		cmocka_unit_test(slow_requests_hit_total_deadlines),
		cmocka_unit_test(fresh_client_is_served_during_attack),
		cmocka_unit_test(half_closed_client_gets_its_answer),
		cmocka_unit_test(absolute_form_is_served),
		cmocka_unit_test(readyz_answers_within_a_second_when_down),
		cmocka_unit_test(unusable_upstream_is_a_startup_error),
		cmocka_unit_test(one_address_is_not_limited_by_default),
		cmocka_unit_test(address_limit_answers_503_retry_after),
		cmocka_unit_test(pipelined_requests_are_answered_in_order),
	};
	return harness_finish(cmocka_run_group_tests(tests, setup, teardown));
}
