/*
 * Observability end to end: the real gateway in front of the real server,
 * both with --log-format json and the server with --metrics-listen.
 *
 * - A known sequence of REST calls moves every counter by exactly the
 *   expected amount (gateway: requests by route/status/reason, upstream
 *   calls; server: calls by method/code/reason, auth outcomes, seats
 *   declined and charged per customer, store transactions).
 * - Both expositions pass `promtool check metrics` (Debian's prometheus).
 * - The X-Request-Id the client saw (sent, generated, or replaced because
 *   the one sent was invalid) is on the gateway's JSON line and on the
 *   server's JSON line of the same call, with the token's sub; paths are
 *   logged whole. A burst of requests answered just before SIGTERM has
 *   every line in both logs (buffered lines are written at the stop).
 * - A real Prometheus server on a free loopback port scrapes both programs
 *   and answers a query with the counted values.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "harness.h"

#define CUST	   "5b6c7d8e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"
#define TIMEOUT_MS 10000
#define ASSIGN(user, device)                                                   \
	"/v1.0/customers/" CUST "/users/" user "/devices/pbx/" device "/assig" \
	"n"
#define LIST(user) "/v1.0/customers/" CUST "/users/" user "/devices/pbx"

static struct harness_proc server, gateway;
static char metrics_addr[128];
static char *token;
static pid_t prometheus_pid;

static const char directory_json[] =
	"{ \"customers\": [ { \"tenantId\": \"" CUST "\","
	"    \"name\": \"Obs\", \"includedSoftphoneSeats\": 2 } ],"
	"  \"users\": ["
	"    { \"tenantId\": \"" CUST "\", \"userId\": \"u1\", \"roles\": "
	"[\"customer_user_uc\", \"customer_user_uc_softphone\"] },"
	"    { \"tenantId\": \"" CUST "\", \"userId\": \"u2\", \"roles\": "
	"[\"customer_user_uc\", \"customer_user_uc_softphone\"] },"
	"    { \"tenantId\": \"" CUST "\", \"userId\": \"u3\", \"roles\": "
	"[\"customer_user_uc\", \"customer_user_uc_softphone\"] } ],"
	"  \"pbxDevices\": ["
	"    { \"tenantId\": \"" CUST "\", \"deviceId\": \"d1\", "
	"\"ownerUserId\": \"u1\" },"
	"    { \"tenantId\": \"" CUST "\", \"deviceId\": \"d2\", "
	"\"ownerUserId\": \"u2\" },"
	"    { \"tenantId\": \"" CUST "\", \"deviceId\": \"d3\", "
	"\"ownerUserId\": \"u3\" } ] }";

struct resp {
	long status;
	char body[1 << 20];
	size_t body_len;
	char headers[8192];
	size_t headers_len;
};

static struct resp R; /* big: one static buffer */

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

/* GET/PUT url with extra headers (NULL-terminated) and body (or NULL). */
static void http(const char *method, const char *url,
		 const char *const *headers, const char *body)
{
	CURL *c = curl_easy_init();
	struct curl_slist *hl = NULL;
	CURLcode rc;

	assert_non_null(c);
	memset(&R, 0, offsetof(struct resp, body) + 1);
	R.body_len = R.headers_len = 0;
	R.headers[0] = '\0';
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &R);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &R);
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
		fail_msg("%s %s: %s", method, url, curl_easy_strerror(rc));
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &R.status);
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
}

static void gw(const char *method, const char *path, const char *const *headers,
	       const char *body)
{
	char url[4096];

	snprintf(url, sizeof(url), "http://%s%s", gateway.addr, path);
	http(method, url, headers, body);
}

/* The X-Request-Id of the last response, copied into buf. */
static const char *answered_id(char *buf, size_t size)
{
	static const char name[] = "x-request-id:";

	for (const char *p = R.headers; *p;) {
		const char *eol = strstr(p, "\r\n");
		if (!eol)
			break;
		if (strncasecmp(p, name, sizeof(name) - 1) == 0) {
			const char *v = p + sizeof(name) - 1;
			while (*v == ' ')
				v++;
			snprintf(buf, size, "%.*s", (int)(eol - v), v);
			return buf;
		}
		p = eol + 2;
	}
	fail_msg("no X-Request-Id in the answer:\n%s", R.headers);
	return NULL;
}

/* ---- metrics text -------------------------------------------------------- */

/* The value of series (name{labels} exactly as exposed), 0 when absent. */
static double value_of(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *p = text; p && *p;
	     p = strchr(p, '\n'), p = p ? p + 1 : p)
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return 0;
}

static char *scrape(const char *url)
{
	http("GET", url, NULL, NULL);
	assert_int_equal(R.status, 200);
	assert_non_null(strstr(R.headers, "text/plain; version=0.0.4"));
	return strdup(R.body);
}

static char *scrape_gateway(void)
{
	char url[256];

	snprintf(url, sizeof(url), "http://%s/metrics", gateway.addr);
	return scrape(url);
}

static char *scrape_server(void)
{
	return scrape(metrics_addr);
}

static void assert_delta(const char *before, const char *after,
			 const char *series, double expected)
{
	double d = value_of(after, series) - value_of(before, series);

	if (d != expected)
		fail_msg("%s moved by %g, expected %g", series, d, expected);
}

/* Runs promtool check metrics on text; prints what it says. */
static void promtool_check(const char *name, const char *text)
{
	char file[512], cmd[1200];
	static struct harness_run_result r;
	const char *args[] = {"-c", cmd, NULL};

	assert_int_equal(harness_write_file(name, text, strlen(text), file,
					    sizeof(file)),
			 0);
	snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s' 2>&1", file);
	assert_int_equal(harness_run("/bin/sh", args, NULL, 60000, &r), 0);
	fprintf(stderr, "promtool check metrics (%s): exit %d%s%s\n", name,
		r.status, r.out_len ? "\n" : "", r.out);
	assert_int_equal(r.status, 0);
}

/* ---- programs ------------------------------------------------------------ */

static int setup(void **state)
{
	static const char *const all[] = {"*"};
	char db[512], spec[600], file[512];
	static struct harness_run_result r;

	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	harness_path("obs.db", db, sizeof(db));
	snprintf(spec, sizeof(spec), "sqlite:%s", db);
	const char *sargs[] = {"--store",
			       spec,
			       "--jwt-hs256-secret-file",
			       harness_secret_file(),
			       "--metrics-listen",
			       "127.0.0.1:0",
			       "--log-format",
			       "json",
			       NULL};
	if (harness_start(&server, DAS_SERVER_BIN, sargs, NULL) != 0)
		return -1;
	/* The second line of stdout names the metrics address. */
	for (int i = 0; i < 100 && !metrics_addr[0]; i++) {
		char line[256];
		FILE *f = fopen(server.out_path, "r");
		while (f && fgets(line, sizeof(line), f)) {
			const char *p = strstr(line, " metrics on ");
			if (p)
				snprintf(metrics_addr, sizeof(metrics_addr),
					 "%.*s", (int)strcspn(p + 12, "\n"),
					 p + 12);
		}
		if (f)
			fclose(f);
		if (!metrics_addr[0])
			usleep(50 * 1000);
	}
	if (!metrics_addr[0])
		return -1;
	const char *gargs[] = {"--upstream", server.addr, "--log-format",
			       "json", NULL};
	if (harness_start(&gateway, DAS_GATEWAY_BIN, gargs, NULL) != 0)
		return -1;
	char *admin = harness_mint("it-admin", all, 1, "directory:admin", 600);
	char env_token[4096];
	snprintf(env_token, sizeof(env_token), "DAS_TOKEN=%s", admin);
	const char *env[] = {env_token, NULL};
	if (harness_write_file("directory.json", directory_json,
			       strlen(directory_json), file, sizeof(file)) != 0)
		return -1;
	const char *iargs[] = {"--server", server.addr, "import", file, NULL};
	if (harness_run(DAS_CLI_BIN, iargs, env, 30000, &r) != 0 ||
	    r.status != 0) {
		fprintf(stderr, "import failed: %s%s\n", r.out, r.err);
		return -1;
	}
	free(admin);
	token = harness_mint("it-sub", all, 1, "devices:assign", 600);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (prometheus_pid > 0) {
		kill(prometheus_pid, SIGKILL);
		waitpid(prometheus_pid, NULL, 0);
		prometheus_pid = 0;
	}
	free(token);
	curl_global_cleanup();
	return 0;
}

/* ---- the sequence -----------------------------------------------------------
 */

static char id_generated[160], id_replaced[160];

static void counters_move_by_exact_amounts(void **state)
{
	char auth[4200], buf[160];
	const char *json = "Content-Type: application/json";
	char *g0, *s0, *g1, *s1;

	(void)state;
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	g0 = scrape_gateway();
	s0 = scrape_server();

	const char *h1[] = {auth, json, "X-Request-Id: it-req-0001", NULL};
	gw("PUT", ASSIGN("u1", "d1"), h1, "{\"clientType\":\"desktop\"}");
	assert_int_equal(R.status, 201);
	assert_string_equal(answered_id(buf, sizeof(buf)), "it-req-0001");

	const char *h2[] = {auth, json, NULL};
	gw("PUT", ASSIGN("u2", "d2"), h2, "{\"clientType\":\"mobile\"}");
	assert_int_equal(R.status, 201);
	answered_id(id_generated, sizeof(id_generated));
	assert_true(strlen(id_generated) > 0);

	const char *h3[] = {auth, json, "X-Request-Id: it-req-402", NULL};
	gw("PUT", ASSIGN("u3", "d3"), h3, "{\"clientType\":\"crm\"}");
	assert_int_equal(R.status, 402);
	assert_string_equal(answered_id(buf, sizeof(buf)), "it-req-402");

	const char *h4[] = {auth, json, "accept-charges: true",
			    "X-Request-Id: it-req-charged", NULL};
	gw("PUT", ASSIGN("u3", "d3"), h4, "{\"clientType\":\"crm\"}");
	assert_int_equal(R.status, 201);

	gw("GET", LIST("u1"), NULL, NULL); /* no token */
	assert_int_equal(R.status, 401);
	gw("GET", "/no/such/route", NULL, NULL);
	assert_int_equal(R.status, 404);

	/* An id with a space is not taken: the gateway makes its own. */
	const char *h5[] = {auth, "X-Request-Id: bad id", NULL};
	gw("GET", LIST("u1"), h5, NULL);
	assert_int_equal(R.status, 200);
	answered_id(id_replaced, sizeof(id_replaced));
	assert_string_not_equal(id_replaced, "bad id");

	g1 = scrape_gateway();
	s1 = scrape_server();
	promtool_check("gateway.prom", g1);
	promtool_check("server.prom", s1);

#define GWR(route, method, status, reason)                             \
	"das_http_requests_total{route=\"" route "\",method=\"" method \
	"\",status=\"" status "\",reason=\"" reason "\"}"
	assert_delta(g0, g1, GWR("assign", "PUT", "201", ""), 3);
	assert_delta(g0, g1,
		     GWR("assign", "PUT", "402", "CHARGES_NOT_ACCEPTED"), 1);
	assert_delta(g0, g1, GWR("list", "GET", "401", "UNAUTHENTICATED"), 1);
	assert_delta(g0, g1, GWR("list", "GET", "200", ""), 1);
	assert_delta(g0, g1, GWR("none", "GET", "404", "ROUTE_NOT_FOUND"), 1);
	assert_delta(
		g0, g1,
		"das_http_request_duration_seconds_count{route=\"assign\"}", 4);
	assert_delta(g0, g1, "das_http_requests_in_flight{route=\"assign\"}",
		     0);
	char up[256];
	snprintf(up, sizeof(up),
		 "das_upstream_calls_total{target=\"%s\",rpc=\"assign\","
		 "grpc_code=\"OK\"}",
		 server.addr);
	assert_delta(g0, g1, up, 3);
	snprintf(up, sizeof(up),
		 "das_upstream_calls_total{target=\"%s\",rpc=\"assign\","
		 "grpc_code=\"FAILED_PRECONDITION\"}",
		 server.addr);
	assert_delta(g0, g1, up, 1);
	assert_true(value_of(g1,
			     "das_build_info{program=\"device-assignment-"
			     "gateway\",version=\"" DAS_VERSION "\"}") == 1);

#define SRV(method, code, reason)                                           \
	"das_grpc_server_handled_total{grpc_service=\"deviceassignment.v1." \
	"DeviceAssignment\",grpc_method=\"" method "\",grpc_code=\"" code   \
	"\",reason=\"" reason "\"}"
	assert_delta(s0, s1, SRV("AssignDevice", "OK", ""), 3);
	assert_delta(s0, s1,
		     SRV("AssignDevice", "FAILED_PRECONDITION",
			 "CHARGES_NOT_ACCEPTED"),
		     1);
	assert_delta(
		s0, s1,
		SRV("ListUserDevices", "UNAUTHENTICATED", "UNAUTHENTICATED"),
		1);
	assert_delta(s0, s1, SRV("ListUserDevices", "OK", ""), 1);
	assert_delta(s0, s1,
		     "das_grpc_server_handling_seconds_count{grpc_service=\""
		     "deviceassignment.v1.DeviceAssignment\",grpc_method=\""
		     "AssignDevice\"}",
		     4);
	assert_delta(s0, s1, "das_auth_verifications_total{outcome=\"ok\"}", 5);
	assert_delta(s0, s1,
		     "das_auth_verifications_total{outcome=\"missing\"}", 1);
	assert_delta(s0, s1, "das_seats_charged_total{customer=\"" CUST "\"}",
		     1);
	assert_delta(s0, s1,
		     "das_seat_charges_declined_total{customer=\"" CUST "\"}",
		     1);
	/* 3 assigns commit twice (the read that decided, then the write);
	 * the 402 (refused by its read) and the list, once: a read is one
	 * statement, never rolled back. */
	assert_delta(s0, s1,
		     "das_store_transactions_total{backend=\"sqlite\","
		     "outcome=\"commit\"}",
		     8);
	assert_delta(s0, s1,
		     "das_store_transactions_total{backend=\"sqlite\","
		     "outcome=\"rollback\"}",
		     0);
	assert_delta(s0, s1,
		     "das_store_group_commit_batch_size_count{backend="
		     "\"sqlite\"}",
		     3);
	assert_true(value_of(s1, "das_build_info{program=\"device-assignment-"
				 "server\",version=\"" DAS_VERSION "\"}") == 1);
	assert_non_null(strstr(s1, "\nprocess_open_fds "));
	assert_non_null(strstr(s1, "\nprocess_resident_memory_bytes "));
	free(g0);
	free(s0);
	free(g1);
	free(s1);
}

/* ---- Prometheus
 * --------------------------------------------------------------- */

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	getsockname(fd, (struct sockaddr *)&a, &len);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* The first number of a Prometheus query answer, or -1. */
static double query(int port, const char *expr)
{
	char url[512], *q;
	CURL *c = curl_easy_init();
	json_t *j, *res;
	double v = -1;

	q = curl_easy_escape(c, expr, 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/v1/query?query=%s",
		 port, q);
	curl_free(q);
	curl_easy_cleanup(c);
	CURL *h = curl_easy_init();
	memset(&R, 0, offsetof(struct resp, body) + 1);
	R.body_len = 0;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &R);
	if (curl_easy_perform(h) != CURLE_OK) {
		curl_easy_cleanup(h);
		return -1;
	}
	curl_easy_cleanup(h);
	j = json_loads(R.body, 0, NULL);
	res = json_object_get(json_object_get(j, "data"), "result");
	if (json_array_size(res) > 0) {
		json_t *val = json_object_get(json_array_get(res, 0), "value");
		const char *s = json_string_value(json_array_get(val, 1));
		if (s)
			v = strtod(s, NULL);
	}
	json_decref(j);
	return v;
}

static void prometheus_scrapes_both(void **state)
{
	char conf[1024], conf_path[512], data[512], log[512], listen[64];
	const char *gw_port = strrchr(gateway.addr, ':') + 1;
	const char *m_hostport = metrics_addr + strlen("http://");
	int port = free_port();
	struct timespec t0, t1;

	(void)state;
	snprintf(conf, sizeof(conf),
		 "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
		 "scrape_configs:\n"
		 "  - job_name: gateway\n"
		 "    static_configs: [{targets: ['127.0.0.1:%s']}]\n"
		 "  - job_name: server\n"
		 "    static_configs: [{targets: ['%.*s']}]\n",
		 gw_port, (int)strcspn(m_hostport, "/"), m_hostport);
	assert_int_equal(harness_write_file("prometheus.yml", conf,
					    strlen(conf), conf_path,
					    sizeof(conf_path)),
			 0);
	harness_path("prometheus-data", data, sizeof(data));
	harness_path("prometheus.log", log, sizeof(log));
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	prometheus_pid = fork();
	assert_true(prometheus_pid >= 0);
	if (prometheus_pid == 0) {
		char a1[600], a2[600], a3[100];
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		snprintf(a1, sizeof(a1), "--config.file=%s", conf_path);
		snprintf(a2, sizeof(a2), "--storage.tsdb.path=%s", data);
		snprintf(a3, sizeof(a3), "--web.listen-address=%s", listen);
		execlp("prometheus", "prometheus", a1, a2, a3, (char *)NULL);
		_exit(127);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* Both targets up, then the counted values as Prometheus saw them.
	 * Generous: Prometheus starts slowly on a loaded 2-core machine. */
	double up = -1, charged = -1, assigns = -1;
	for (int i = 0; i < 900; i++) {
		int st;
		if (waitpid(prometheus_pid, &st, WNOHANG) == prometheus_pid) {
			prometheus_pid = 0;
			fail_msg("prometheus exited; see %s", log);
		}
		up = query(port, "sum(up{job=~\"gateway|server\"})");
		charged = query(port, "sum(das_seats_charged_total)");
		assigns = query(port, "sum(das_http_requests_total{route="
				      "\"assign\",status=\"201\"})");
		if (up == 2 && charged == 1 && assigns == 3)
			break;
		usleep(100 * 1000);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr,
		"prometheus: up=%g charged=%g assigns=%g after %.1f s\n", up,
		charged, assigns,
		(double)(t1.tv_sec - t0.tv_sec) +
			(double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	assert_true(up == 2);
	assert_true(charged == 1);
	assert_true(assigns == 3);
	kill(prometheus_pid, SIGTERM);
	waitpid(prometheus_pid, NULL, 0);
	prometheus_pid = 0;
}

/* ---- the gateway's separate metrics listener ---------------------------------- */

static void gateway_metrics_listen_moves_metrics(void **state)
{
	static struct harness_proc gw2;
	const char *args[] = {"--upstream", server.addr, "--metrics-listen",
			      "127.0.0.1:0", NULL};
	char url[256], line[256], moved[160] = "";
	FILE *f;

	(void)state;
	assert_int_equal(harness_start(&gw2, DAS_GATEWAY_BIN, args, NULL), 0);
	for (int i = 0; i < 100 && !moved[0]; i++) {
		f = fopen(gw2.out_path, "r");
		while (f && fgets(line, sizeof(line), f)) {
			const char *p = strstr(line, " metrics on ");
			if (p)
				snprintf(moved, sizeof(moved), "%.*s",
					 (int)strcspn(p + 12, "\n"), p + 12);
		}
		if (f)
			fclose(f);
		if (!moved[0])
			usleep(50 * 1000);
	}
	assert_true(moved[0]);
	snprintf(url, sizeof(url), "http://%s/metrics", gw2.addr);
	http("GET", url, NULL, NULL);
	assert_int_equal(R.status, 404); /* not on the main listener */
	http("GET", moved, NULL, NULL);
	assert_int_equal(R.status, 200);
	assert_non_null(strstr(R.body, "\ndas_build_info{program=\"device-"
					"assignment-gateway\""));
	assert_int_equal(harness_stop(&gw2, SIGTERM), 0);
}

/* ---- logs -------------------------------------------------------------------
 */

/* The JSON line of log_path whose request_id is id and which has key,
 * or NULL (caller decrefs). Every line must parse. */
static json_t *line_with(const char *log_path, const char *id, const char *key)
{
	FILE *f = fopen(log_path, "r");
	static char line[65536];
	json_t *hit = NULL;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		json_error_t e;
		json_t *j = json_loads(line, 0, &e);
		if (!j)
			fail_msg("%s: not JSON: %s", log_path, line);
		const char *rid =
			json_string_value(json_object_get(j, "request_id"));
		if (!hit && rid && strcmp(rid, id) == 0 &&
		    json_object_get(j, key)) {
			hit = j;
			continue;
		}
		json_decref(j);
	}
	fclose(f);
	return hit;
}

static void check_pair(const char *id, const char *path, int status,
		       const char *code)
{
	json_t *g = line_with(gateway.log_path, id, "status");
	json_t *s = line_with(server.log_path, id, "code");

	if (!g || !s)
		fail_msg("request id %s: gateway line %s, server line %s", id,
			 g ? "found" : "missing", s ? "found" : "missing");
	assert_int_equal(json_integer_value(json_object_get(g, "status")),
			 status);
	assert_string_equal(json_string_value(json_object_get(g, "path")),
			    path);
	assert_string_equal(json_string_value(json_object_get(g, "program")),
			    "device-assignment-gateway");
	assert_string_equal(json_string_value(json_object_get(s, "code")),
			    code);
	assert_string_equal(json_string_value(json_object_get(s, "sub")),
			    "it-sub");
	assert_string_equal(json_string_value(json_object_get(s, "program")),
			    "device-assignment-server");
	assert_non_null(json_object_get(s, "duration_ms"));
	assert_non_null(json_object_get(g, "time"));
	json_decref(g);
	json_decref(s);
}

/*
 * BURST requests pipelined on one connection, each with its own
 * X-Request-Id "burst-N"; returns once every answer is read, so that the
 * programs are stopped while the last access lines may still sit in
 * their buffers.
 */
#define BURST 200

static void send_burst(void)
{
	static char req[BURST * 512], in[BURST * 1024];
	struct sockaddr_in sa = {.sin_family = AF_INET};
	const char *colon = strrchr(gateway.addr, ':');
	size_t len = 0, got = 0, sent = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0), answers = 0;

	assert_true(fd >= 0 && colon);
	sa.sin_port = htons((uint16_t)strtol(colon + 1, NULL, 10));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	for (int i = 0; i < BURST; i++)
		len += (size_t)snprintf(req + len, sizeof(req) - len,
					"GET " LIST("u1") " HTTP/1.1\r\n"
					"Host: x\r\nAuthorization: Bearer %s\r\n"
					"X-Request-Id: burst-%d\r\n\r\n",
					token, i);
	while (sent < len) {
		ssize_t n = write(fd, req + sent, len - sent);
		assert_true(n > 0);
		sent += (size_t)n;
	}
	while (answers < BURST) {
		ssize_t n = read(fd, in + got, sizeof(in) - 1 - got);
		assert_true(n > 0);
		got += (size_t)n;
		in[got] = '\0';
		answers = 0;
		for (const char *p = in; (p = strstr(p, "HTTP/1.1 200 "));
		     p++)
			answers++;
	}
	close(fd);
}

/* How many lines of log_path carry a request id starting "burst-" and
 * have key; every line must parse. */
static int burst_lines(const char *log_path, const char *key)
{
	FILE *f = fopen(log_path, "r");
	static char line[65536];
	int n = 0;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		json_error_t e;
		json_t *j = json_loads(line, 0, &e);
		if (!j)
			fail_msg("%s: not JSON: %s", log_path, line);
		const char *rid =
			json_string_value(json_object_get(j, "request_id"));
		if (rid && strncmp(rid, "burst-", 6) == 0 &&
		    json_object_get(j, key))
			n++;
		json_decref(j);
	}
	fclose(f);
	return n;
}

static void json_lines_carry_the_request_id(void **state)
{
	(void)state;
	/* Stopped right after a burst: no access line may be lost. */
	send_burst();
	/* SIGTERM flushes the buffered logs; both exit 0. */
	assert_int_equal(harness_stop(&gateway, SIGTERM), 0);
	assert_int_equal(harness_stop(&server, SIGTERM), 0);
	assert_int_equal(burst_lines(gateway.log_path, "status"), BURST);
	assert_int_equal(burst_lines(server.log_path, "code"), BURST);
	check_pair("it-req-0001", ASSIGN("u1", "d1"), 201, "OK");
	check_pair(id_generated, ASSIGN("u2", "d2"), 201, "OK");
	check_pair("it-req-402", ASSIGN("u3", "d3"), 402,
		   "FAILED_PRECONDITION");
	check_pair("it-req-charged", ASSIGN("u3", "d3"), 201, "OK");
	check_pair(id_replaced, LIST("u1"), 200, "OK");
	json_t *bad = line_with(gateway.log_path, "bad id", "status");
	assert_null(bad);
	/* The 402 line names its reason on both sides. */
	json_t *g = line_with(gateway.log_path, "it-req-402", "status");
	assert_string_equal(json_string_value(json_object_get(g, "reason")),
			    "CHARGES_NOT_ACCEPTED");
	json_decref(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(counters_move_by_exact_amounts),
		cmocka_unit_test(prometheus_scrapes_both),
		cmocka_unit_test(gateway_metrics_listen_moves_metrics),
		cmocka_unit_test(json_lines_carry_the_request_id),
	};

	return harness_finish(cmocka_run_group_tests(tests, setup, teardown));
}
