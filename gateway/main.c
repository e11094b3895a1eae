/* device-assignment-gateway: flags, wiring, signals. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include "common/config.h"
#include "common/log.h"
#include "common/metrics.h"
#include "gateway/observe.h"
#include "gateway/http/server.h"
#include "gateway/tls/tls.h"
#include "gateway/tls/transport_tls.h"
#include "gateway/upstream/target.h"
#include "gateway/upstream/upstream.h"

static const char summary[] =
	"REST/JSON gateway onto the deviceassignment.v1 gRPC service.";

static struct das_flag flags[] = {
	{.name = "listen",
	 .metavar = "ADDR",
	 .def = "127.0.0.1:8080",
	 .help = "HTTP listen address (HOST:PORT)"},
	{.name = "upstream",
	 .metavar = "ADDR",
	 .def = "127.0.0.1:50051",
	 .help = "gRPC service: HOST:PORT, a comma-separated list of IP:PORT, "
		 "dns:///NAME:PORT (round-robin over all) or unix:PATH"},
	{.name = "public-base-url",
	 .metavar = "URL",
	 .def = NULL,
	 .help = "base of Location URLs (default: http://{Host})"},
	{.name = "upstream-timeout-ms",
	 .metavar = "MS",
	 .def = "5000",
	 .help = "deadline of each upstream call"},
	{.name = "wait-for-ready",
	 .metavar = "BOOL",
	 .def = "true",
	 .help = "upstream calls wait for a (re)connection within their "
		 "deadline"},
	{.name = "threads",
	 .metavar = "N",
	 .def = "0",
	 .help = "HTTP event loop threads; 0 = one per CPU"},
	{.name = "connection-limit",
	 .metavar = "N",
	 .def = "1024",
	 .help = "concurrent HTTP connections"},
	{.name = "per-ip-connection-limit",
	 .metavar = "N",
	 .def = "0",
	 .help = "concurrent HTTP connections per client address; 0 = no "
		 "limit (behind a load balancer every client shares one "
		 "address); e.g. 64 when facing the internet directly"},
	{.name = "connection-timeout",
	 .metavar = "SECONDS",
	 .def = "30",
	 .help = "close connections on which no byte moved for this long"},
	{.name = "header-timeout",
	 .metavar = "SECONDS",
	 .def = "10",
	 .help = "the request line and headers must arrive within this "
		 "time, in total"},
	{.name = "body-timeout",
	 .metavar = "SECONDS",
	 .def = "10",
	 .help = "a request body must arrive within this time, in total"},
	{.name = "log-level",
	 .metavar = "LEVEL",
	 .def = "info",
	 .help = "debug, info, warn or error"},
	{.name = "log-format",
	 .metavar = "FORMAT",
	 .def = "text",
	 .help = "text or json (one JSON object per line)"},
	{.name = "metrics",
	 .metavar = "BOOL",
	 .def = "true",
	 .help = "count metrics (false: nothing is counted)"},
	{.name = "metrics-listen",
	 .metavar = "ADDR",
	 .def = NULL,
	 .help = "serve /metrics on this separate address instead of the "
		 "main listener (empty: on the main listener)"},
	{.name = "upstream-ca",
	 .metavar = "FILE",
	 .help = "CA certificates of the service, PEM: call it over TLS "
		 "(SIGHUP reloads the TLS files)"},
	{.name = "upstream-cert",
	 .metavar = "FILE",
	 .help = "client certificate for mTLS to the service, PEM"},
	{.name = "upstream-key",
	 .metavar = "FILE",
	 .help = "private key of --upstream-cert, PEM"},
	{.name = "upstream-server-name",
	 .metavar = "NAME",
	 .help = "name expected in the service's certificate (and sent as "
		 "SNI); default: the host of --upstream"},
	{.name = "tls-cert",
	 .metavar = "FILE",
	 .help = "certificate chain, PEM: with --tls-key the listener speaks "
		 "HTTPS (TLS 1.2+; SIGHUP reloads)"},
	{.name = "tls-key",
	 .metavar = "FILE",
	 .help = "private key of --tls-cert, PEM"},
};
#define N_FLAGS (sizeof(flags) / sizeof(flags[0]))

static const char *flag(const char *name)
{
	return das_flag_find(flags, N_FLAGS, name)->value;
}

static int flag_uint(const char *name, unsigned long min, unsigned long max,
		     unsigned long *out)
{
	if (das_parse_uint(flag(name), min, max, out) == 0)
		return 0;
	fprintf(stderr, "device-assignment-gateway: --%s must be %lu..%lu\n",
		name, min, max);
	return -1;
}

static int parse_level(const char *s, enum das_log_level *out)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};

	for (int i = 0; i < 4; i++)
		if (strcasecmp(s, names[i]) == 0) {
			*out = (enum das_log_level)i;
			return 0;
		}
	return -1;
}

/* A base URL goes into a response header: visible ASCII only. */
static bool base_url_is_valid(const char *s)
{
	if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
		return false;
	for (; *s; s++)
		if (*s <= 0x20 || *s >= 0x7f)
			return false;
	return true;
}

/* Every connection is a descriptor: take what the system allows. */
static void raise_fd_limit(unsigned long conn_limit)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && conn_limit + 64 > rl.rlim_cur)
		das_log(DAS_LOG_WARN,
			"--connection-limit %lu is near the open-file limit "
			"%llu",
			conn_limit, (unsigned long long)rl.rlim_cur);
}

/* --log-level, --log-format, --metrics and --metrics-listen; 2 on a bad
 * value (said on stderr). */
static int observability_from_flags(const char *prog)
{
	enum das_log_level level;
	enum das_log_format format;

	if (parse_level(flag("log-level"), &level) != 0) {
		fprintf(stderr, "%s: bad --log-level\n", prog);
		return 2;
	}
	das_log_set_level(level);
	if (das_log_parse_format(flag("log-format"), &format) != 0) {
		fprintf(stderr, "%s: --log-format must be text or json\n",
			prog);
		return 2;
	}
	das_log_set_format(format);
	das_log_set_program(prog);
	das_log_set_buffered(true);
	das_metrics_set_program(prog, DAS_VERSION);
	if (strcasecmp(flag("metrics"), "true") != 0) {
		if (strcasecmp(flag("metrics"), "false") != 0) {
			fprintf(stderr, "%s: --metrics must be true or false\n",
				prog);
			return 2;
		}
		das_metrics_set_enabled(false);
	}
	gw_obs_register(!flag("metrics-listen") || !*flag("metrics-listen"));
	return 0;
}

/* SIGHUP: new upstream TLS files and HTTPS certificate; on failure the
 * old ones stay. */
static void reload(struct gw_upstream *up, struct gw_tls_ctx *https)
{
	char err[256];

	switch (gw_upstream_reload(up, err, sizeof(err))) {
	case 0:
		das_log(DAS_LOG_INFO, "reload: upstream TLS files reloaded");
		break;
	case 1:
		das_log(DAS_LOG_INFO, "reload: nothing to reload");
		break;
	default:
		das_log(DAS_LOG_ERROR,
			"reload: upstream TLS kept, the new files failed: %s",
			err);
	}
	if (!https)
		return;
	if (gw_tls_ctx_reload(https, err, sizeof(err)) == 0)
		das_log(DAS_LOG_INFO, "reload: HTTPS certificate reloaded");
	else
		das_log(DAS_LOG_ERROR,
			"reload: HTTPS certificate kept, the new one failed: "
			"%s",
			err);
}

int main(int argc, char **argv)
{
	const char *prog = "device-assignment-gateway";
	char err[256], target[1024];
	int argi = 1, sig = 0;
	unsigned long timeout_ms, threads, conn_limit, ip_limit, conn_timeout,
		header_timeout, body_timeout;
	bool is_wait_for_ready;
	struct das_metrics_http *metrics = NULL;
	struct gw_upstream *up;
	struct gw_http *http;
	struct gw_tls_ctx *https = NULL;
	struct gw_http_config cfg;
	sigset_t set;

	switch (das_flags_parse(flags, N_FLAGS, argc, argv, &argi, prog,
				summary, err, sizeof(err))) {
	case DAS_FLAGS_OK:
		break;
	case DAS_FLAGS_EXIT:
		return 0;
	default:
		fprintf(stderr, "%s: %s\n", prog, err);
		return 2;
	}
	if (argi < argc) {
		fprintf(stderr, "%s: unexpected argument %s\n", prog,
			argv[argi]);
		return 2;
	}
	if (flag_uint("upstream-timeout-ms", 1, 600000, &timeout_ms) ||
	    flag_uint("threads", 0, 256, &threads) ||
	    flag_uint("connection-limit", 1, 1000000, &conn_limit) ||
	    flag_uint("per-ip-connection-limit", 0, 1000000, &ip_limit) ||
	    flag_uint("connection-timeout", 1, 86400, &conn_timeout) ||
	    flag_uint("header-timeout", 1, 3600, &header_timeout) ||
	    flag_uint("body-timeout", 1, 3600, &body_timeout))
		return 2;
	if (strcasecmp(flag("wait-for-ready"), "true") == 0) {
		is_wait_for_ready = true;
	} else if (strcasecmp(flag("wait-for-ready"), "false") == 0) {
		is_wait_for_ready = false;
	} else {
		fprintf(stderr, "%s: --wait-for-ready must be true or false\n",
			prog);
		return 2;
	}
	if (observability_from_flags(prog) != 0)
		return 2;
	if (flag("public-base-url") && *flag("public-base-url") &&
	    !base_url_is_valid(flag("public-base-url"))) {
		fprintf(stderr,
			"%s: --public-base-url must be an http(s) URL\n", prog);
		return 2;
	}

	/* Threads started below inherit this mask; main waits for signals. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (gw_upstream_target(flag("upstream"), target, sizeof(target), err,
			       sizeof(err)) != 0) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return 2;
	}
	struct gw_upstream_tls tls = {
		.ca_file = flag("upstream-ca"),
		.cert_file = flag("upstream-cert"),
		.key_file = flag("upstream-key"),
		.server_name = flag("upstream-server-name"),
	};
	bool is_tls = (tls.ca_file && *tls.ca_file) ||
		      (tls.cert_file && *tls.cert_file) ||
		      (tls.key_file && *tls.key_file) ||
		      (tls.server_name && *tls.server_name);
	up = gw_upstream_new(target, (int)timeout_ms, is_wait_for_ready,
			     is_tls ? &tls : NULL, err, sizeof(err));
	if (!up) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return 1;
	}
	raise_fd_limit(conn_limit);
	memset(&cfg, 0, sizeof(cfg));
	cfg.listen = flag("listen");
	cfg.public_base_url = flag("public-base-url");
	cfg.threads = (unsigned)threads;
	cfg.connection_limit = (unsigned)conn_limit;
	cfg.per_ip_connection_limit = (unsigned)ip_limit;
	cfg.idle_timeout_ms = (unsigned)conn_timeout * 1000u;
	cfg.header_timeout_ms = (unsigned)header_timeout * 1000u;
	cfg.body_timeout_ms = (unsigned)body_timeout * 1000u;
	if ((flag("tls-cert") && *flag("tls-cert")) ||
	    (flag("tls-key") && *flag("tls-key"))) {
		https = gw_tls_ctx_new(flag("tls-cert"), flag("tls-key"), err,
				       sizeof(err));
		if (!https) {
			fprintf(stderr, "%s: HTTPS: %s\n", prog, err);
			gw_upstream_free(up);
			return 2;
		}
	}
	if (https) {
		cfg.transport = &gw_transport_tls;
		cfg.transport_ctx = https;
		cfg.is_https = true;
	}
	http = gw_http_start(&cfg, up, err, sizeof(err));
	if (!http) {
		fprintf(stderr, "%s: %s\n", prog, err);
		gw_tls_ctx_free(https);
		gw_upstream_free(up);
		return 1;
	}
	das_log(DAS_LOG_INFO,
		"upstream %s (HTTP/2, %s), %lu threads (0: one per CPU)",
		flag("upstream"),
		is_tls ? (tls.cert_file && *tls.cert_file ? "mTLS" : "TLS")
		       : "plaintext",
		threads);
	das_log(DAS_LOG_INFO, "listener speaks %s", https ? "HTTPS" : "HTTP");
	/* The host as configured, the port as bound (--listen HOST:0). */
	printf("device-assignment-gateway listening on %.*s:%u\n",
	       (int)(strrchr(cfg.listen, ':') - cfg.listen), cfg.listen,
	       gw_http_port(http));
	if (flag("metrics-listen") && *flag("metrics-listen")) {
		const char *ml = flag("metrics-listen");
		metrics = das_metrics_http_start(ml, err, sizeof(err));
		if (!metrics) {
			fprintf(stderr, "%s: --metrics-listen: %s\n", prog,
				err);
			gw_http_stop(http, 0);
			gw_tls_ctx_free(https);
			gw_upstream_free(up);
			return 1;
		}
		printf("device-assignment-gateway metrics on "
		       "http://%.*s:%u/metrics\n",
		       (int)(strrchr(ml, ':') - ml), ml,
		       das_metrics_http_port(metrics));
	}
	fflush(stdout);

	for (;;) {
		sigwait(&set, &sig);
		if (sig != SIGHUP)
			break;
		reload(up, https);
	}
	das_log(DAS_LOG_INFO, "signal %d: draining", sig);
	gw_http_stop(http, (int)timeout_ms + 1000);
	das_metrics_http_stop(metrics);
	gw_tls_ctx_free(https);
	gw_upstream_free(up);
	das_log(DAS_LOG_INFO, "stopped");
	das_log_flush();
	return 0;
}
