/*
 * The store under a failing disk, with the real server (and gateway) on
 * loopback: a full disk, a read-only (immutable) database file, and the
 * database file deleted or replaced while the server runs. Each must answer
 * UNAVAILABLE with reason STORE_UNAVAILABLE (503 through the gateway),
 * apply nothing, turn grpc.health.v1 Check and Watch (and /readyz) to
 * NOT_SERVING, and, where the disk recovers, SERVING again.
 *
 * The disk is a small tmpfs mounted on /mnt inside a mount namespace of
 * this test process alone (unshare(CLONE_NEWNS) before any thread), so the
 * mount vanishes with the process however it ends: nothing leaks onto the
 * machine. The write-ahead log deleted counts as the database deleted.
 * Needs root (CAP_SYS_ADMIN); without it the test is skipped
 * (exit 77) and says why.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <linux/fs.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/compression.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "deviceassignment/v1/device_assignment.pb-c.h"
#include "deviceassignment/v1/directory.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#include "client/das_client.h"
#include "harness.h"

#define CUST "0f8fad5b-d9cb-469f-a165-70867728950e"
#define TIMEOUT_MS 10000
#define DISK "/mnt"
#define DISK_SIZE "4m"
/* How long a health change may take to show; the server promises 1 s. */
#define FOLLOW_MS 8000

#define SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define NOT_SERVING                                                            \
	GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING

static const char *const all_tenants[] = {"*"};
static char *admin_token, *assign_token;

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* ---- the server and its client ---- */

struct node {
	struct harness_proc proc;
	struct das_client *client;
	char db[256];
};

static void node_start(struct node *n, const char *db)
{
	char spec[300];
	const char *args[] = {"--store", spec, "--jwt-hs256-secret-file",
			      harness_secret_file(), "--log-level", "info",
			      NULL};

	snprintf(n->db, sizeof(n->db), "%s", db);
	snprintf(spec, sizeof(spec), "sqlite:%s", db);
	assert_int_equal(harness_start(&n->proc, DAS_SERVER_BIN, args, NULL), 0);
	n->client = das_client_new(n->proc.addr);
	assert_non_null(n->client);
}

static void node_stop(struct node *n)
{
	das_client_free(n->client);
	n->client = NULL;
	/* SIGTERM, so a sanitizer build reports leaks, and exit 0. */
	assert_int_equal(harness_stop(&n->proc, SIGTERM), 0);
}

static int call(struct node *n, enum das_rpc_method m, const char *token,
		const ProtobufCMessage *req, ProtobufCMessage **resp,
		struct das_call_status *st)
{
	ProtobufCMessage *unused = NULL;

	assert_int_equal(das_client_call(n->client, m, token, req,
					 resp ? resp : &unused, TIMEOUT_MS, st),
			 0);
	if (unused)
		protobuf_c_message_free_unpacked(unused, NULL);
	return st->code;
}

static void directory(struct node *n)
{
	Deviceassignment__V1__UpsertCustomerRequest c =
		DEVICEASSIGNMENT__V1__UPSERT_CUSTOMER_REQUEST__INIT;
	Deviceassignment__V1__UpsertUserRequest u =
		DEVICEASSIGNMENT__V1__UPSERT_USER_REQUEST__INIT;
	static char *roles[] = {(char *)"customer_user_uc",
				(char *)"customer_user_uc_softphone"};
	struct das_call_status st;

	c.tenant_id = (char *)CUST;
	c.account_tenant_id = (char *)"";
	c.name = (char *)"Acme";
	assert_int_equal(call(n, DAS_RPC_UPSERT_CUSTOMER, admin_token, &c.base,
			      NULL, &st),
			 0);
	u.tenant_id = (char *)CUST;
	u.user_id = (char *)"u1";
	u.n_roles = 2;
	u.roles = roles;
	assert_int_equal(
		call(n, DAS_RPC_UPSERT_USER, admin_token, &u.base, NULL, &st),
		0);
	for (int i = 1; i <= 4; i++) {
		Deviceassignment__V1__UpsertPbxDeviceRequest d =
			DEVICEASSIGNMENT__V1__UPSERT_PBX_DEVICE_REQUEST__INIT;
		char id[8];

		snprintf(id, sizeof(id), "d%d", i);
		d.tenant_id = (char *)CUST;
		d.device_id = id;
		d.owner_user_id = (char *)"u1";
		assert_int_equal(call(n, DAS_RPC_UPSERT_PBX_DEVICE, admin_token,
				      &d.base, NULL, &st),
				 0);
	}
}

static int assign(struct node *n, const char *device, int type,
		  struct das_call_status *st)
{
	Deviceassignment__V1__AssignDeviceRequest r =
		DEVICEASSIGNMENT__V1__ASSIGN_DEVICE_REQUEST__INIT;

	r.customer_tenant_id = (char *)CUST;
	r.account_tenant_id = (char *)"";
	r.user_id = (char *)"u1";
	r.device_id = (char *)device;
	r.client_type = (Deviceassignment__V1__ClientType)type;
	r.accept_charges = true;
	return call(n, DAS_RPC_ASSIGN_DEVICE, assign_token, &r.base, NULL, st);
}

/* The user's assignments as "d1:1 d2:3". */
static void list_text(struct node *n, char *buf, size_t size)
{
	Deviceassignment__V1__ListUserDevicesRequest r =
		DEVICEASSIGNMENT__V1__LIST_USER_DEVICES_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	struct das_call_status st;

	r.customer_tenant_id = (char *)CUST;
	r.account_tenant_id = (char *)"";
	r.user_id = (char *)"u1";
	assert_int_equal(call(n, DAS_RPC_LIST_USER_DEVICES, assign_token,
			      &r.base, &resp, &st),
			 0);
	Deviceassignment__V1__ListUserDevicesResponse *l = (void *)resp;
	harness_devices_text(l, buf, size);
	protobuf_c_message_free_unpacked(resp, NULL);
}

static void expect_store_unavailable(const struct das_call_status *st)
{
	if (st->code != 14 || strcmp(st->reason, "STORE_UNAVAILABLE") != 0)
		fprintf(stderr, "got code %d reason '%s' message '%s'\n",
			st->code, st->reason, st->message);
	assert_int_equal(st->code, 14);
	assert_string_equal(st->reason, "STORE_UNAVAILABLE");
	assert_non_null(strstr(st->message, "store cannot"));
}

static int check(struct node *n)
{
	Grpc__Health__V1__HealthCheckRequest r =
		GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	struct das_call_status st;
	int status;

	assert_int_equal(call(n, DAS_RPC_HEALTH_CHECK, NULL, &r.base, &resp,
			      &st),
			 0);
	status = ((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
	protobuf_c_message_free_unpacked(resp, NULL);
	return status;
}

/* Polls Check until it says want; returns the milliseconds it took. */
static int64_t check_until(struct node *n, int want)
{
	int64_t start = now_ms();

	while (check(n) != want) {
		assert_true(now_ms() - start < FOLLOW_MS);
		pause_ms(20);
	}
	return now_ms() - start;
}

static bool log_has(const struct harness_proc *p, const char *text)
{
	char buf[HARNESS_OUTPUT_MAX * 4];
	FILE *f = fopen(p->log_path, "r");
	size_t len;

	if (!f)
		return false;
	len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	return strstr(buf, text) != NULL;
}

/* ---- a Watch stream, with the C core (the client library is unary) ---- */

struct watch {
	grpc_completion_queue *cq;
	grpc_call *call;
	grpc_metadata_array md;
	grpc_byte_buffer *msg;
};

static bool watch_batch(struct watch *w, const grpc_op *ops, size_t n,
			int timeout_ms)
{
	grpc_event ev;

	assert_int_equal(grpc_call_start_batch(w->call, ops, n, w, NULL),
			 GRPC_CALL_OK);
	ev = grpc_completion_queue_pluck(
		w->cq, w,
		gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
			     gpr_time_from_millis(timeout_ms, GPR_TIMESPAN)),
		NULL);
	assert_int_equal(ev.type, GRPC_OP_COMPLETE);
	return ev.success != 0;
}

/* Opens a Watch with the given request bytes (a HealthCheckRequest). */
static void watch_open_with(struct watch *w, grpc_channel *ch,
			    const void *request, size_t len)
{
	grpc_slice method = grpc_slice_from_static_string(
		"/grpc.health.v1.Health/Watch");
	grpc_slice body = grpc_slice_from_copied_buffer(request, len);
	grpc_byte_buffer *req = grpc_raw_byte_buffer_create(&body, 1);
	grpc_op ops[3];

	memset(w, 0, sizeof(*w));
	w->cq = grpc_completion_queue_create_for_pluck(NULL);
	w->call = grpc_channel_create_call(
		ch, NULL, 0, w->cq, method, NULL,
		gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
			     gpr_time_from_seconds(110, GPR_TIMESPAN)),
		NULL);
	grpc_metadata_array_init(&w->md);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = req;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	assert_true(watch_batch(w, ops, 3, TIMEOUT_MS));
	grpc_byte_buffer_destroy(req);
	grpc_slice_unref(body);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[0].data.recv_initial_metadata.recv_initial_metadata = &w->md;
	assert_true(watch_batch(w, ops, 1, TIMEOUT_MS));
}

static void watch_open(struct watch *w, grpc_channel *ch)
{
	watch_open_with(w, ch, "", 0); /* service "": the whole server */
}

/* The next status the stream sends (waits up to FOLLOW_MS). */
static int watch_next(struct watch *w)
{
	grpc_op op;
	grpc_byte_buffer_reader reader;
	grpc_slice all;
	Grpc__Health__V1__HealthCheckResponse *resp;
	int status;

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &w->msg;
	assert_true(watch_batch(w, &op, 1, FOLLOW_MS));
	assert_non_null(w->msg);
	assert_true(grpc_byte_buffer_reader_init(&reader, w->msg));
	all = grpc_byte_buffer_reader_readall(&reader);
	grpc_byte_buffer_reader_destroy(&reader);
	resp = grpc__health__v1__health_check_response__unpack(
		NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
	grpc_slice_unref(all);
	grpc_byte_buffer_destroy(w->msg);
	w->msg = NULL;
	assert_non_null(resp);
	status = resp->status;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return status;
}

/* Ends the stream (cancelling it unless is_ended); returns its status. */
static grpc_status_code watch_end(struct watch *w, bool is_ended)
{
	grpc_op op;
	grpc_metadata_array trailers;
	grpc_status_code code;
	grpc_slice details;

	if (!is_ended)
		grpc_call_cancel(w->call, NULL);
	grpc_metadata_array_init(&trailers);
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	op.data.recv_status_on_client.trailing_metadata = &trailers;
	op.data.recv_status_on_client.status = &code;
	op.data.recv_status_on_client.status_details = &details;
	watch_batch(w, &op, 1, TIMEOUT_MS);
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&trailers);
	grpc_metadata_array_destroy(&w->md);
	grpc_call_unref(w->call);
	grpc_completion_queue_shutdown(w->cq);
	while (grpc_completion_queue_pluck(w->cq, NULL,
					   gpr_inf_future(GPR_CLOCK_REALTIME),
					   NULL)
		       .type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(w->cq);
	return code;
}

static void watch_close(struct watch *w)
{
	watch_end(w, false);
}

/* ---- HTTP to the gateway (tiny: one request per connection) ---- */

#ifdef DAS_GATEWAY_BIN
static int http_status(int port, const char *method, const char *path,
		       const char *body, char *reply, size_t reply_size)
{
	struct sockaddr_in sa;
	char req[1024];
	size_t got = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int code = -1;
	int len;

	assert_true(fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	len = snprintf(req, sizeof(req),
		       "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		       "Authorization: Bearer %s\r\n"
		       "Content-Type: application/json\r\n"
		       "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
		       method, path, assign_token, body ? strlen(body) : 0,
		       body ? body : "");
	assert_true(len > 0 && (size_t)len < sizeof(req));
	assert_int_equal(write(fd, req, (size_t)len), len);
	for (;;) {
		ssize_t n = read(fd, reply + got, reply_size - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == reply_size - 1)
			break;
	}
	reply[got] = '\0';
	close(fd);
	sscanf(reply, "HTTP/1.1 %d", &code);
	return code;
}

static int64_t readyz_until(int port, int want)
{
	int64_t start = now_ms();
	char reply[4096];

	while (http_status(port, "GET", "/readyz", NULL, reply,
			   sizeof(reply)) != want) {
		assert_true(now_ms() - start < FOLLOW_MS);
		pause_ms(20);
	}
	return now_ms() - start;
}
#endif

/* ---- the disk ---- */

/* Fills the tmpfs to the last byte; returns the filler's path. */
static const char *fill_disk(void)
{
	static const char path[] = DISK "/filler";
	static char chunk[64 * 1024];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	memset(chunk, 'x', sizeof(chunk));
	for (size_t size = sizeof(chunk); size > 0;) {
		ssize_t n = write(fd, chunk, size);
		if (n < 0) {
			assert_int_equal(errno, ENOSPC);
			size /= 2; /* the last pages, down to one byte */
		}
	}
	close(fd);
	return path;
}

static void set_immutable(const char *path, bool is_on)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int flags = 0;

	assert_true(fd >= 0);
	assert_int_equal(ioctl(fd, FS_IOC_GETFLAGS, &flags), 0);
	if (is_on)
		flags |= FS_IMMUTABLE_FL;
	else
		flags &= ~FS_IMMUTABLE_FL;
	assert_int_equal(ioctl(fd, FS_IOC_SETFLAGS, &flags), 0);
	close(fd);
}

/* ---- tests ---- */

/*
 * Disk full: 503 STORE_UNAVAILABLE, nothing applied, Check / Watch /
 * /readyz NOT_SERVING; room again: SERVING, and the write goes through.
 */
static void disk_full(void **state)
{
	struct node n;
	struct das_call_status st;
	struct watch w;
	grpc_channel *ch;
	grpc_channel_credentials *creds;
	char text[256];
	int64_t took;

	(void)state;
	node_start(&n, DISK "/full/service.db");
	directory(&n);
	assert_int_equal(assign(&n, "d1", 1, &st), 0);
	assert_int_equal(check(&n), SERVING);

	creds = grpc_insecure_credentials_create();
	ch = grpc_channel_create(n.proc.addr, creds, NULL);
	grpc_channel_credentials_release(creds);
	watch_open(&w, ch);
	assert_int_equal(watch_next(&w), SERVING);

#ifdef DAS_GATEWAY_BIN
	struct harness_proc gw;
	const char *gw_args[] = {"--upstream", n.proc.addr, NULL};
	char reply[4096];

	assert_int_equal(harness_start(&gw, DAS_GATEWAY_BIN, gw_args, NULL), 0);
	readyz_until(gw.port, 200);
#endif

	const char *filler = fill_disk();

	/* Every write is refused, whole; reads still answer. */
	assign(&n, "d2", 2, &st);
	expect_store_unavailable(&st);
	assign(&n, "d1", 3, &st); /* a move */
	expect_store_unavailable(&st);
	list_text(&n, text, sizeof(text));
	assert_string_equal(text, "d1:1");

	took = check_until(&n, NOT_SERVING);
	fprintf(stderr, "disk full: Check NOT_SERVING after %lld ms\n",
		(long long)took);
	assert_int_equal(watch_next(&w), NOT_SERVING);
#ifdef DAS_GATEWAY_BIN
	took = readyz_until(gw.port, 503);
	fprintf(stderr, "disk full: /readyz 503 after %lld ms\n",
		(long long)took);
	assert_int_equal(
		http_status(gw.port, "PUT",
			    "/v1.0/customers/" CUST
			    "/users/u1/devices/pbx/d2/assign",
			    "{\"clientType\":\"mobile\"}", reply,
			    sizeof(reply)),
		503);
	assert_non_null(strstr(reply, "store cannot"));
#endif
	assert_true(log_has(&n.proc, "health: NOT_SERVING"));

	/* Room again. */
	assert_int_equal(unlink(filler), 0);
	took = check_until(&n, SERVING);
	fprintf(stderr, "disk freed: Check SERVING after %lld ms\n",
		(long long)took);
	assert_int_equal(watch_next(&w), SERVING);
#ifdef DAS_GATEWAY_BIN
	took = readyz_until(gw.port, 200);
	fprintf(stderr, "disk freed: /readyz 200 after %lld ms\n",
		(long long)took);
	assert_int_equal(harness_stop(&gw, SIGTERM), 0);
#endif
	assert_int_equal(assign(&n, "d2", 2, &st), 0);
	list_text(&n, text, sizeof(text));
	assert_string_equal(text, "d1:1 d2:2");

	watch_close(&w);
	grpc_channel_destroy(ch);
	node_stop(&n);
}

/* A read-only (immutable: root ignores modes) database file and log. */
static void read_only_file(void **state)
{
	struct node n;
	struct das_call_status st;
	char wal[300], text[256];

	(void)state;
	node_start(&n, DISK "/ro/service.db");
	directory(&n);
	assert_int_equal(assign(&n, "d1", 1, &st), 0);
	snprintf(wal, sizeof(wal), "%s-wal", n.db);

	set_immutable(n.db, true);
	set_immutable(wal, true);
	assign(&n, "d2", 2, &st);
	expect_store_unavailable(&st);
	check_until(&n, NOT_SERVING);
	list_text(&n, text, sizeof(text));
	assert_string_equal(text, "d1:1");

	set_immutable(n.db, false);
	set_immutable(wal, false);
	check_until(&n, SERVING);
	assert_int_equal(assign(&n, "d2", 2, &st), 0);
	list_text(&n, text, sizeof(text));
	assert_string_equal(text, "d1:1 d2:2");
	node_stop(&n);
}

/*
 * The database file deleted under the running server: no more
 * acknowledgements (they would land in, or be read from, the unlinked
 * file), NOT_SERVING for good, a log line that says why; the next start
 * on the empty path warns that it created a new database, with its full
 * path.
 */
static void deleted_file(void **state)
{
	struct node n;
	struct das_call_status st;

	struct watch w;
	grpc_channel *ch;
	grpc_channel_credentials *creds;

	(void)state;
	node_start(&n, DISK "/del/service.db");
	directory(&n);
	assert_int_equal(assign(&n, "d1", 1, &st), 0);
	creds = grpc_insecure_credentials_create();
	ch = grpc_channel_create(n.proc.addr, creds, NULL);
	grpc_channel_credentials_release(creds);
	watch_open(&w, ch);
	assert_int_equal(watch_next(&w), SERVING);

	assert_int_equal(unlink(n.db), 0);
	assign(&n, "d2", 2, &st);
	expect_store_unavailable(&st);
	/* Nor a repeat: what the deleted file says is gone at the next
	 * start, so it cannot back a success. */
	assign(&n, "d1", 1, &st);
	expect_store_unavailable(&st);
	check_until(&n, NOT_SERVING); /* a probe result lives 200 ms */
	assert_int_equal(watch_next(&w), NOT_SERVING);
	assert_true(log_has(&n.proc, "service.db was deleted while in use"));
	/* Put back, it is another file: still refused. */
	assert_int_equal(close(open(n.db, O_CREAT | O_WRONLY | O_CLOEXEC,
				    0600)),
			 0);
	assign(&n, "d3", 2, &st);
	expect_store_unavailable(&st);
	assert_int_equal(check(&n), NOT_SERVING);
	/* SIGTERM with the stream still open: it ends, the server exits 0. */
	node_stop(&n);
	watch_close(&w);
	grpc_channel_destroy(ch);

	assert_int_equal(unlink(n.db), 0);
	node_start(&n, DISK "/del/service.db");
	assert_true(log_has(&n.proc, "warn sqlite: created a new empty "
				     "database (schema version 3) at "
				     DISK "/del/service.db"));
	node_stop(&n);
}

/* Replaced by another file (a restore copied over it, say): the same. */
static void replaced_file(void **state)
{
	struct node n;
	struct das_call_status st;
	char other[300];

	(void)state;
	node_start(&n, DISK "/rep/service.db");
	directory(&n);
	snprintf(other, sizeof(other), "%s.new", n.db);
	assert_int_equal(close(open(other, O_CREAT | O_WRONLY | O_CLOEXEC,
				    0600)),
			 0);
	assert_int_equal(rename(other, n.db), 0);
	assign(&n, "d1", 1, &st);
	expect_store_unavailable(&st);
	assert_int_equal(check(&n), NOT_SERVING);
	assert_true(log_has(&n.proc, "was replaced by another file"));
	node_stop(&n);
}

/* The write-ahead log deleted: every commit since the last checkpoint
 * would go with it at the next start. */
static void deleted_wal(void **state)
{
	struct node n;
	struct das_call_status st;
	char wal[300];

	(void)state;
	node_start(&n, DISK "/wal/service.db");
	directory(&n);
	snprintf(wal, sizeof(wal), "%s-wal", n.db);
	assert_int_equal(unlink(wal), 0);
	assign(&n, "d1", 1, &st);
	expect_store_unavailable(&st);
	check_until(&n, NOT_SERVING);
	assert_true(log_has(&n.proc, "service.db-wal was deleted while in use"));
	node_stop(&n);
}

/*
 * Watch as the health protocol has it: a service we do not serve is
 * SERVICE_UNKNOWN (and the stream stays); a NUL byte in the name is
 * INVALID_ARGUMENT, as in any other RPC's strings; a compressed request is
 * read, a compressed bomb refused.
 */
static void watch_protocol(void **state)
{
	static const char unknown[] = "\x0a\x0fno.such.Service";
	static const char with_nul[] = "\x0a\x05\x00junk";
	struct node n;
	struct watch w;
	grpc_channel *ch;
	grpc_channel_credentials *creds;

	(void)state;
	node_start(&n, DISK "/proto/service.db");
	creds = grpc_insecure_credentials_create();
	ch = grpc_channel_create(n.proc.addr, creds, NULL);
	grpc_channel_credentials_release(creds);

	watch_open_with(&w, ch, unknown, sizeof(unknown) - 1);
	assert_int_equal(
		watch_next(&w),
		GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN);
	assert_int_equal(watch_end(&w, false), GRPC_STATUS_CANCELLED);

	watch_open_with(&w, ch, with_nul, sizeof(with_nul) - 1);
	assert_int_equal(watch_end(&w, true), GRPC_STATUS_INVALID_ARGUMENT);
	grpc_channel_destroy(ch);

	/* Compressed (gzip) requests: inflated as for unary calls, bounded
	 * to 64 KiB, so a 1 MiB name that compresses to 1 KiB is refused. */
	{
		grpc_arg arg = {.type = GRPC_ARG_INTEGER,
				.key = (char *)
					GRPC_COMPRESSION_CHANNEL_DEFAULT_ALGORITHM,
				.value.integer = GRPC_COMPRESS_GZIP};
		grpc_channel_args args = {1, &arg};
		size_t big_len = 1u << 20;
		char *bomb = malloc(big_len + 8);

		assert_non_null(bomb);
		bomb[0] = 0x0a; /* field 1, length-delimited, 2^20 bytes */
		bomb[1] = (char)0x80;
		bomb[2] = (char)0x80;
		bomb[3] = 0x40;
		memset(bomb + 4, 'a', big_len);
		creds = grpc_insecure_credentials_create();
		ch = grpc_channel_create(n.proc.addr, creds, &args);
		grpc_channel_credentials_release(creds);
		watch_open(&w, ch);
		assert_int_equal(watch_next(&w), SERVING);
		watch_close(&w);
		watch_open_with(&w, ch, bomb, big_len + 4);
		assert_int_equal(watch_end(&w, true),
				 GRPC_STATUS_RESOURCE_EXHAUSTED);
		free(bomb);
		grpc_channel_destroy(ch);
	}

	node_stop(&n);
}

/*
 * A private mount namespace with a small tmpfs on /mnt; must run before
 * any thread starts. Returns 0, or -1 with a reason on stderr.
 */
static int private_disk(void)
{
	struct stat sb;

	if (stat(DISK, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		fprintf(stderr, "skip: no %s directory to mount on\n", DISK);
		return -1;
	}
	if (unshare(CLONE_NEWNS) != 0) {
		fprintf(stderr, "skip: unshare(CLONE_NEWNS): %s (needs root)\n",
			strerror(errno));
		return -1;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount("das-test", DISK, "tmpfs", MS_NOSUID | MS_NODEV,
		  "size=" DISK_SIZE ",mode=0700") != 0) {
		fprintf(stderr, "skip: cannot mount a tmpfs on %s: %s\n", DISK,
			strerror(errno));
		return -1;
	}
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(disk_full),
		cmocka_unit_test(read_only_file),
		cmocka_unit_test(deleted_file),
		cmocka_unit_test(replaced_file),
		cmocka_unit_test(deleted_wal),
		cmocka_unit_test(watch_protocol),
	};
	int failures;

	if (private_disk() != 0)
		return 77;
	grpc_init();
	admin_token = harness_mint("admin", all_tenants, 1, "directory:admin",
				   3600);
	assign_token = harness_mint("agent", all_tenants, 1, "devices:assign",
				    3600);
	failures = cmocka_run_group_tests(tests, NULL, NULL);
	free(admin_token);
	free(assign_token);
	failures = harness_finish(failures);
	grpc_shutdown();
	return failures;
}
