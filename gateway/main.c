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
#include "common/signals.h"
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

#define PROG "device-assignment-gateway"

/* The numbers and switches of the command line, checked. */
struct options {
	unsigned long timeout_ms, threads, conn_limit, ip_limit, conn_timeout,
		header_timeout, body_timeout;
	bool is_wait_for_ready;
};

/* 0, or 2 with the reason on stderr. */
static int options_from_flags(struct options *o)
{
	if (flag_uint("upstream-timeout-ms", 1, 600000, &o->timeout_ms) ||
	    flag_uint("threads", 0, 256, &o->threads) ||
	    flag_uint("connection-limit", 1, 1000000, &o->conn_limit) ||
	    flag_uint("per-ip-connection-limit", 0, 1000000, &o->ip_limit) ||
	    flag_uint("connection-timeout", 1, 86400, &o->conn_timeout) ||
	    flag_uint("header-timeout", 1, 3600, &o->header_timeout) ||
	    flag_uint("body-timeout", 1, 3600, &o->body_timeout))
		return 2;
	if (strcasecmp(flag("wait-for-ready"), "true") == 0) {
		o->is_wait_for_ready = true;
	} else if (strcasecmp(flag("wait-for-ready"), "false") == 0) {
		o->is_wait_for_ready = false;
	} else {
		fprintf(stderr, PROG ": --wait-for-ready must be true or false\n");
		return 2;
	}
	if (observability_from_flags(PROG) != 0)
		return 2;
	if (flag("public-base-url") && *flag("public-base-url") &&
	    !base_url_is_valid(flag("public-base-url"))) {
		fprintf(stderr, PROG ": --public-base-url must be an http(s) URL\n");
		return 2;
	}
	return 0;
}

static bool is_set(const char *v)
{
	return v && *v;
}

/* The channel to the service (--upstream*); NULL with the reason on
 * stderr and the exit code in *code. */
static struct gw_upstream *upstream_from_flags(const struct options *o,
					       int *code)
{
	char err[256], target[1024];
	struct gw_upstream *up;
	struct gw_upstream_tls tls = {
		.ca_file = flag("upstream-ca"),
		.cert_file = flag("upstream-cert"),
		.key_file = flag("upstream-key"),
		.server_name = flag("upstream-server-name"),
	};
	bool is_tls = is_set(tls.ca_file) || is_set(tls.cert_file) ||
		      is_set(tls.key_file) || is_set(tls.server_name);

	if (gw_upstream_target(flag("upstream"), target, sizeof(target), err,
			       sizeof(err)) != 0) {
		fprintf(stderr, PROG ": %s\n", err);
		*code = 2;
		return NULL;
	}
	up = gw_upstream_new(target, (int)o->timeout_ms, o->is_wait_for_ready,
			     is_tls ? &tls : NULL, err, sizeof(err));
	if (!up) {
		fprintf(stderr, PROG ": %s\n", err);
		*code = 1;
		return NULL;
	}
	das_log(DAS_LOG_INFO,
		"upstream %s (HTTP/2, %s), %lu threads (0: one per CPU)",
		flag("upstream"),
		is_tls ? (is_set(tls.cert_file) ? "mTLS" : "TLS") : "plaintext",
		o->threads);
	return up;
}

/* The HTTP listener's settings; HTTPS (--tls-*) in *https. 0, or 2 with
 * the reason on stderr. */
static int http_config_from_flags(const struct options *o,
				  struct gw_http_config *cfg,
				  struct gw_tls_ctx **https)
{
	char err[256];

	memset(cfg, 0, sizeof(*cfg));
	cfg->listen = flag("listen");
	cfg->public_base_url = flag("public-base-url");
	cfg->threads = (unsigned)o->threads;
	cfg->connection_limit = (unsigned)o->conn_limit;
	cfg->per_ip_connection_limit = (unsigned)o->ip_limit;
	cfg->idle_timeout_ms = (unsigned)o->conn_timeout * 1000u;
	cfg->header_timeout_ms = (unsigned)o->header_timeout * 1000u;
	cfg->body_timeout_ms = (unsigned)o->body_timeout * 1000u;
	*https = NULL;
	if (!is_set(flag("tls-cert")) && !is_set(flag("tls-key")))
		return 0;
	*https = gw_tls_ctx_new(flag("tls-cert"), flag("tls-key"), err,
				sizeof(err));
	if (!*https) {
		fprintf(stderr, PROG ": HTTPS: %s\n", err);
		return 2;
	}
	cfg->transport = &gw_transport_tls;
	cfg->transport_ctx = *https;
	cfg->is_https = true;
	return 0;
}

/* --metrics-listen: *out stays NULL without it. 0, or 1 with the reason
 * on stderr. */
static int metrics_listen(struct das_metrics_http **out)
{
	const char *ml = flag("metrics-listen");
	char err[256];

	*out = NULL;
	if (!is_set(ml))
		return 0;
	*out = das_metrics_http_start(ml, err, sizeof(err));
	if (!*out) {
		fprintf(stderr, PROG ": --metrics-listen: %s\n", err);
		return 1;
	}
	printf(PROG " metrics on http://%.*s:%u/metrics\n",
	       (int)(strrchr(ml, ':') - ml), ml, das_metrics_http_port(*out));
	return 0;
}

int main(int argc, char **argv)
{
	char err[256];
	int argi = 1, sig = 0, rc = 2;
	struct options o;
	struct das_metrics_http *metrics = NULL;
	struct gw_upstream *up = NULL;
	struct gw_http *http = NULL;
	struct gw_tls_ctx *https = NULL;
	struct gw_http_config cfg;
	sigset_t set;

	switch (das_flags_parse(flags, N_FLAGS, argc, argv, &argi, PROG,
				summary, err, sizeof(err))) {
	case DAS_FLAGS_OK:
		break;
	case DAS_FLAGS_EXIT:
		return 0;
	default:
		fprintf(stderr, PROG ": %s\n", err);
		return 2;
	}
	if (argi < argc) {
		fprintf(stderr, PROG ": unexpected argument %s\n", argv[argi]);
		return 2;
	}
	if (options_from_flags(&o) != 0)
		return 2;

	/* Threads started below inherit this mask; main waits for signals. */
	das_signals_block(&set);

	up = upstream_from_flags(&o, &rc);
	if (!up)
		goto out;
	raise_fd_limit(o.conn_limit);
	rc = 2;
	if (http_config_from_flags(&o, &cfg, &https) != 0)
		goto out;
	rc = 1;
	http = gw_http_start(&cfg, up, err, sizeof(err));
	if (!http) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	das_log(DAS_LOG_INFO, "listener speaks %s", https ? "HTTPS" : "HTTP");
	/* The host as configured, the port as bound (--listen HOST:0). */
	printf(PROG " listening on %.*s:%u\n",
	       (int)(strrchr(cfg.listen, ':') - cfg.listen), cfg.listen,
	       gw_http_port(http));
	if (metrics_listen(&metrics) != 0)
		goto out;
	fflush(stdout);

	for (;;) {
		sigwait(&set, &sig);
		if (sig != SIGHUP)
			break;
		reload(up, https);
	}
	das_log(DAS_LOG_INFO, "signal %d: draining", sig);
	rc = 0;
out:
	if (http)
		gw_http_stop(http, rc == 0 ? (int)o.timeout_ms + 1000 : 0);
	das_metrics_http_stop(metrics);
	gw_tls_ctx_free(https);
	gw_upstream_free(up);
	if (rc == 0) {
		das_log(DAS_LOG_INFO, "stopped");
		das_log_flush();
	}
	return rc;
}
