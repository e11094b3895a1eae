/*
 * device-assignment-server: flags and environment, wiring, signals.
 * Everything else lives in grpc/ (the wire), ops/ (the use cases),
 * domain/ (the rules), auth/ (tokens) and store/ (persistence).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/signals.h"
#include "service/auth/auth.h"
#include "service/auth/token_cache.h"
#include "service/grpc/server.h"
#include "service/ops/ops.h"
#include "service/store/store.h"

#define PROG "device-assignment-server"

static struct das_flag flags[] = {
	{.name = "listen", .metavar = "ADDR", .def = "127.0.0.1:50051",
	 .help = "gRPC listen address (HOST:PORT; port 0 picks a free one)"},
	{.name = "store", .metavar = "SPEC",
	 .def = "sqlite:./var/device-assignment.db",
	 .help = "sqlite:PATH or a postgresql:// URI"},
	{.name = "jwt-hs256-secret-file", .metavar = "FILE",
	 .help = "HS256 shared secret file (this or --jwt-rs256-public-key)"},
	{.name = "jwt-rs256-public-key", .metavar = "FILE",
	 .help = "RS256 public key, PEM"},
	{.name = "jwt-jwks-file", .metavar = "FILE",
	 .help = "JWKS document: RS256, ES256 and HS256 keys chosen by kid "
		 "(instead of the two above)"},
	{.name = "jwt-issuer", .metavar = "ISS",
	 .help = "required iss claim (unchecked when empty)"},
	{.name = "jwt-audience", .metavar = "AUD",
	 .help = "required aud claim (unchecked when empty)"},
	{.name = "token-cache", .metavar = "N", .def = "1024",
	 .help = "verified tokens remembered (exp/nbf re-checked); 0 = off"},
	{.name = "workers", .metavar = "N", .def = "0",
	 .help = "worker threads; 0 = 2 per CPU, at least 4 (PostgreSQL: "
		 "8 per CPU, at least 16); plus one that never polls"},
	{.name = "sqlite-exclusive", .metavar = "BOOL", .def = "true",
	 .help = "the SQLite file is this server's alone (no file locks per "
		 "transaction); false = other processes may open it"},
	{.name = "store-pool", .metavar = "N", .def = "0",
	 .help = "store connections; 0 = one per worker"},
	{.name = "store-max-waiting", .metavar = "N", .def = "4096",
	 .help = "calls waiting for the store at once; more are answered "
		 "UNAVAILABLE at once (a store that stops answering would "
		 "hold them all); 0 = no limit"},
	{.name = "shutdown-grace", .metavar = "MS", .def = "10000",
	 .help = "on SIGTERM, time for calls in flight before cancelling"},
	{.name = "idle-timeout", .metavar = "SECONDS", .def = "300",
	 .help = "close connections that carry no call this long; 0 = never"},
	{.name = "connection-limit", .metavar = "N", .def = "4096",
	 .help = "client connections held at once; more are closed as they "
		 "arrive (sets the open-files limit); 0 = as the limit allows"},
	{.name = "tls-cert", .metavar = "FILE",
	 .help = "TLS certificate chain, PEM (with --tls-key: gRPC over TLS; "
		 "SIGHUP reloads)"},
	{.name = "tls-key", .metavar = "FILE",
	 .help = "private key of --tls-cert, PEM"},
	{.name = "tls-client-ca", .metavar = "FILE",
	 .help = "CA certificates, PEM: clients must present a certificate "
		 "they signed (mTLS)"},
	{.name = "reflection", .metavar = "BOOL", .def = "true",
	 .help = "serve grpc.reflection v1 and v1alpha (no token asked); "
		 "false = UNIMPLEMENTED"},
	{.name = "log-level", .metavar = "LEVEL", .def = "info",
	 .help = "debug, info, warn or error"},
	{.name = "log-format", .metavar = "FORMAT", .def = "text",
	 .help = "text or json (one JSON object per line)"},
	{.name = "metrics", .metavar = "BOOL", .def = "true",
	 .help = "count metrics (false: nothing is counted)"},
	{.name = "metrics-listen", .metavar = "ADDR",
	 .help = "serve Prometheus metrics at http://ADDR/metrics (off when "
		 "empty)"},
	{.name = "ledger-retention-days", .metavar = "N", .def = "0",
	 .help = "prune ledger rows older than N days; 0 = keep forever"},
	{.name = "ledger-prune-interval", .metavar = "SECONDS", .def = "3600",
	 .help = "how often the retention prune runs (first at start)"},
};
#define N_FLAGS (sizeof(flags) / sizeof(flags[0]))

static const char *flag(const char *name)
{
	const char *v = das_flag_find(flags, N_FLAGS, name)->value;
	return v && *v ? v : NULL;
}

static int uint_flag(const char *name, unsigned long max, unsigned long *out)
{
	if (das_parse_uint(flag(name) ? flag(name) : "0", 0, max, out) != 0) {
		fprintf(stderr, PROG ": --%s: expected a number 0..%lu\n",
			name, max);
		return -1;
	}
	return 0;
}

static int set_log_level(const char *name)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};

	for (int i = 0; i < 4; i++)
		if (strcmp(name, names[i]) == 0) {
			das_log_set_level((enum das_log_level)i);
			return 0;
		}
	fprintf(stderr, PROG ": --log-level: want debug, info, warn or error\n");
	return -1;
}

static int set_log_format(const char *name)
{
	enum das_log_format f;

	if (das_log_parse_format(name, &f) != 0) {
		fprintf(stderr, PROG ": --log-format: want text or json\n");
		return -1;
	}
	das_log_set_format(f);
	das_log_set_program(PROG);
	das_log_set_buffered(true);
	return 0;
}

/*
 * True for addresses only this machine can reach: 127.0.0.0/8, ::1 and
 * localhost. Anything else (0.0.0.0, [::], a NIC's address, a name) is
 * reachable from a network.
 */
static bool is_loopback(const char *listen)
{
	const char *colon = strrchr(listen, ':');
	size_t n = colon ? (size_t)(colon - listen) : strlen(listen);

	if (strncmp(listen, "ipv4:", 5) == 0 || strncmp(listen, "ipv6:", 5) == 0) {
		listen += 5;
		n -= 5;
	}
	return (n >= 4 && strncmp(listen, "127.", 4) == 0) ||
	       (n == 5 && strncmp(listen, "[::1]", 5) == 0) ||
	       (n == 9 && strncmp(listen, "localhost", 9) == 0);
}

/*
 * Workers when --workers is 0. SQLite answers from memory or one fsync
 * shared by a batch: 2 per CPU keep the CPUs busy. On PostgreSQL every
 * RPC's transaction goes to the store's reader and writer threads and is
 * answered from there (docs/store.md); the store's pool is as large as
 * the workers (--store-pool 0), and its writer threads as many as its
 * connections: the larger default is what lets 16 transactions be under
 * way at once.
 */
static unsigned long default_workers(const char *store)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned long n = cpus > 0 ? (unsigned long)cpus : 1;
	bool is_postgresql = store && strncmp(store, "postgres", 8) == 0;

	if (is_postgresql)
		return n * 8 > 16 ? n * 8 : 16;
	return n * 2 > 4 ? n * 2 : 4;
}

/* SIGHUP: new certificates and JWT keys; on failure the old ones stay. */
static void reload(struct auth_config *auth, struct token_cache *tokens,
		   struct server_tls *tls)
{
	char err[512];

	if (auth_config_reload(auth, err, sizeof(err)) == 0) {
		token_cache_clear(tokens); /* nothing verified by old keys */
		das_log(DAS_LOG_INFO, "reload: JWT keys reloaded");
	} else
		das_log(DAS_LOG_ERROR,
			"reload: JWT keys kept, the new ones failed: %s", err);
	if (!tls)
		return;
	if (server_tls_reload(tls, err, sizeof(err)) == 0)
		das_log(DAS_LOG_INFO, "reload: TLS certificate reloaded, "
				      "used from the next connection on");
	else
		das_log(DAS_LOG_ERROR,
			"reload: TLS certificate kept, the new one failed: %s",
			err);
}

/* "127.0.0.1:0" with bound port 43210 -> "127.0.0.1:43210". */
static void bound_address(const char *listen, int port, char *buf,
			  size_t size)
{
	const char *colon = strrchr(listen, ':');
	int host_len = colon ? (int)(colon - listen) : (int)strlen(listen);

	snprintf(buf, size, "%.*s:%d", host_len, listen, port);
}

/* The numbers and switches of the command line, checked. */
struct options {
	unsigned long workers, pool, grace, idle_timeout, connection_limit,
		cache_size, retention_days, prune_interval, max_waiting;
	bool is_metrics_on, is_reflection_on, is_sqlite_exclusive;
};

/* A BOOL flag: true or false; -1 with the reason on stderr. */
static int bool_flag(const char *name, bool *out)
{
	const char *v = flag(name);

	if (!v)
		v = das_flag_find(flags, N_FLAGS, name)->def;
	if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0) {
		fprintf(stderr, PROG ": --%s: want true or false\n", name);
		return -1;
	}
	*out = strcmp(v, "true") == 0;
	return 0;
}

/* 0, or 2 with the reason on stderr. */
static int options_from_flags(struct options *o)
{
	if (set_log_level(flag("log-level") ? flag("log-level") : "info") ||
	    set_log_format(flag("log-format") ? flag("log-format") : "text") ||
	    uint_flag("workers", 256, &o->workers) ||
	    uint_flag("store-pool", 1024, &o->pool) ||
	    uint_flag("store-max-waiting", 1000000, &o->max_waiting) ||
	    uint_flag("shutdown-grace", 3600000, &o->grace) ||
	    uint_flag("idle-timeout", 86400, &o->idle_timeout) ||
	    uint_flag("connection-limit", 1000000, &o->connection_limit) ||
	    uint_flag("token-cache", TOKEN_CACHE_MAX, &o->cache_size) ||
	    uint_flag("ledger-retention-days", 36500, &o->retention_days) ||
	    uint_flag("ledger-prune-interval", 86400 * 7, &o->prune_interval))
		return 2;
	if (bool_flag("metrics", &o->is_metrics_on) ||
	    bool_flag("reflection", &o->is_reflection_on) ||
	    bool_flag("sqlite-exclusive", &o->is_sqlite_exclusive))
		return 2;
	if (!o->is_metrics_on)
		das_metrics_set_enabled(false);
	/* gRPC core also takes unix:PATH (and unix-abstract:, vsock:), but
	 * unlinks a socket file in the way, another server's too, and says
	 * "listening" with port 1: HOST:PORT only. */
	if (flag("listen") && (strncmp(flag("listen"), "unix", 4) == 0 ||
			       strncmp(flag("listen"), "vsock:", 6) == 0)) {
		fprintf(stderr, PROG ": --listen: want HOST:PORT (no unix or "
				     "vsock sockets)\n");
		return 2;
	}
	if (o->prune_interval == 0) {
		fprintf(stderr, PROG ": --ledger-prune-interval must be at "
				     "least 1\n");
		return 2;
	}
	if (o->workers == 0)
		o->workers = default_workers(flag("store"));
	if (o->pool == 0)
		o->pool = o->workers;
	return 0;
}

/* --tls-*: *out stays NULL without them; 2 with the reason on stderr. */
static int tls_from_flags(struct server_tls **out)
{
	char err[512];
	struct server_tls_files files = {
		.cert_file = flag("tls-cert"),
		.key_file = flag("tls-key"),
		.client_ca_file = flag("tls-client-ca"),
	};

	*out = NULL;
	if (!files.cert_file && !files.key_file && !files.client_ca_file)
		return 0;
	*out = server_tls_new(&files, err, sizeof(err));
	if (!*out) {
		fprintf(stderr, PROG ": TLS: %s\n", err);
		return 2;
	}
	return 0;
}

/* --metrics-listen, when given: *out stays NULL without it. */
static int metrics_listen(struct das_metrics_http **out)
{
	char err[512], maddr[300];

	*out = NULL;
	if (!flag("metrics-listen"))
		return 0;
	*out = das_metrics_http_start(flag("metrics-listen"), err, sizeof(err));
	if (!*out) {
		fprintf(stderr, PROG ": --metrics-listen: %s\n", err);
		return -1;
	}
	bound_address(flag("metrics-listen"), (int)das_metrics_http_port(*out),
		      maddr, sizeof(maddr));
	printf(PROG " metrics on http://%s/metrics\n", maddr);
	das_log(DAS_LOG_INFO, "metrics on http://%s/metrics", maddr);
	return 0;
}

/* The JWT keys and claims to check (--jwt-*). 0, or 2 with the reason on
 * stderr. */
static int auth_from_flags(struct auth_config *auth)
{
	char err[512];
	struct auth_sources sources = {
		.hs256_secret_file = flag("jwt-hs256-secret-file"),
		.rs256_public_key = flag("jwt-rs256-public-key"),
		.jwks_file = flag("jwt-jwks-file"),
		.issuer = flag("jwt-issuer"),
		.audience = flag("jwt-audience"),
	};

	if (auth_config_load_sources(auth, &sources, err, sizeof(err)) != 0) {
		fprintf(stderr, PROG ": %s\n", err);
		return 2;
	}
	return 0;
}

/* The store (--store, --store-pool, --sqlite-exclusive,
 * --store-max-waiting). NULL with the reason on stderr. */
static struct store *store_from_flags(const struct options *o)
{
	struct store_options opt = {
		.pool_size = (unsigned)o->pool,
		.busy_timeout_ms = 5000,
		.is_file_shared = !o->is_sqlite_exclusive,
		.max_waiting = (unsigned)o->max_waiting,
	};
	struct store *store = NULL;
	char err[512];

	if (store_open(flag("store") ? flag("store") : "", &opt, &store, err,
		       sizeof(err)) != 0) {
		fprintf(stderr, PROG ": store: %s\n", err);
		return NULL;
	}
	return store;
}

/* The address as bound on stdout (what scripts wait for), and in the log
 * with how it is served. */
static void say_listening(const struct server_config *cfg, int port,
			  const struct options *o, const struct store *store)
{
	char addr[300];

	bound_address(cfg->listen, port, addr, sizeof(addr));
	printf(PROG " listening on %s\n", addr);
	das_log(DAS_LOG_INFO, "listening on %s (%s), %lu workers, store %s",
		addr,
		cfg->tls ? (flag("tls-client-ca") ? "mTLS" : "TLS")
			 : "plaintext",
		o->workers, store->ops->name);
	if (!cfg->tls && !is_loopback(cfg->listen))
		das_log(DAS_LOG_WARN,
			"listening on %s without TLS: bearer tokens and data "
			"cross the network in clear; give --tls-cert and "
			"--tls-key",
			cfg->listen);
}

/* The server's settings from the checked flags (its handlers' store,
 * keys and TLS are set by the caller). */
static void config_from_options(struct server_config *cfg,
				const struct options *o)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->listen = flag("listen") ? flag("listen") : "127.0.0.1:50051";
	cfg->n_workers = (unsigned)o->workers;
	cfg->grace_ms = (unsigned)o->grace;
	cfg->idle_timeout_ms = (unsigned)o->idle_timeout * 1000u;
	cfg->connection_limit = (unsigned)o->connection_limit;
	cfg->is_reflection_off = !o->is_reflection_on;
}

/*
 * Watches for SIGTERM and SIGINT while the server starts. Opening the
 * store waits as long as the database makes it (another replica holding
 * the schema lock, a host that stopped answering), and until the server
 * listens nothing has been served: a stop then ends the process at once
 * (the open's transaction rolls back with its connection). A SIGHUP
 * meanwhile is kept for after the start.
 */
#define START_WATCH_TICK_MS 10

struct start_watch {
	pthread_t thread;
	const sigset_t *sigs;
	atomic_bool is_started;
	atomic_bool is_hup;
};

static void *start_watch_main(void *arg)
{
	struct start_watch *w = arg;
	const struct timespec tick = {0, START_WATCH_TICK_MS * 1000000L};

	while (!atomic_load(&w->is_started)) {
		int sig = sigtimedwait(w->sigs, NULL, &tick);
		if (sig == SIGHUP) {
			atomic_store(&w->is_hup, true);
		} else if (sig == SIGTERM || sig == SIGINT) {
			das_log(DAS_LOG_WARN,
				"signal %d while starting: stopped before "
				"listening",
				sig);
			das_log_flush();
			_exit(0);
		}
	}
	return NULL;
}

/* Started after the signals are blocked; false when no thread. */
static bool start_watch_begin(struct start_watch *w, const sigset_t *sigs)
{
	w->sigs = sigs;
	atomic_init(&w->is_started, false);
	atomic_init(&w->is_hup, false);
	return pthread_create(&w->thread, NULL, start_watch_main, w) == 0;
}

/* The server listens: signals are wait_for_stop's from now on. True when
 * a SIGHUP came during the start. */
static bool start_watch_end(struct start_watch *w)
{
	atomic_store(&w->is_started, true);
	pthread_join(w->thread, NULL);
	return atomic_load(&w->is_hup);
}

/* Serves until SIGTERM or SIGINT, reloading keys and certificates on each
 * SIGHUP. Returns the signal that stopped it. */
static int wait_for_stop(const sigset_t *sigs, struct auth_config *auth,
			 struct token_cache *tokens, struct server_tls *tls)
{
	int sig = 0;

	for (;;) {
		sigwait(sigs, &sig);
		if (sig != SIGHUP)
			return sig;
		reload(auth, tokens, tls);
	}
}

int main(int argc, char **argv)
{
	struct auth_config auth;
	struct options o;
	struct store *store = NULL;
	struct server *srv = NULL;
	struct das_metrics_http *metrics = NULL;
	struct server_tls *tls = NULL;
	struct server_config cfg;
	char err[512];
	struct token_cache *tokens = NULL;
	struct ops_retention *retention = NULL;
	int argi = 1, port = 0, sig = 0, rc = 1;
	sigset_t sigs;
	struct start_watch watch;
	bool is_watching = false;

	switch (das_flags_parse(flags, N_FLAGS, argc, argv, &argi, PROG,
				"The Device Assignment gRPC service.", err,
				sizeof(err))) {
	case DAS_FLAGS_EXIT:
		return 0;
	case DAS_FLAGS_ERROR:
		fprintf(stderr, PROG ": %s\n", err);
		return 2;
	case DAS_FLAGS_OK:
		break;
	}
	das_metrics_set_program(PROG, DAS_VERSION);
	if (argi < argc) {
		fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[argi]);
		return 2;
	}
	memset(&o, 0, sizeof(o));
	if (options_from_flags(&o) != 0 || auth_from_flags(&auth) != 0)
		return 2;
	if (tls_from_flags(&tls) != 0) {
		rc = 2;
		goto out;
	}

	/* Taken by sigwait (wait_for_stop), never by a handler. */
	das_signals_block(&sigs);
	if (!start_watch_begin(&watch, &sigs)) {
		fprintf(stderr, PROG ": cannot start a thread\n");
		goto out;
	}
	is_watching = true;

	store = store_from_flags(&o);
	if (!store)
		goto out;
	if (o.cache_size > 0 && !(tokens = token_cache_new(o.cache_size))) {
		fprintf(stderr, PROG ": out of memory for the token cache\n");
		goto out;
	}

	config_from_options(&cfg, &o);
	cfg.env.store = store;
	cfg.env.auth = &auth;
	cfg.env.tokens = tokens;
	cfg.tls = tls;
	if (server_start(&cfg, &srv, &port, err, sizeof(err)) != 0) {
		srv = NULL; /* server_start stopped it */
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	is_watching = false;
	if (start_watch_end(&watch))
		reload(&auth, tokens, tls);
	say_listening(&cfg, port, &o, store);
	if (metrics_listen(&metrics) != 0)
		goto out;
	fflush(stdout);
	retention = ops_retention_start(store, (unsigned)o.retention_days,
					(unsigned)o.prune_interval);
	if (o.retention_days > 0 && !retention)
		das_log(DAS_LOG_ERROR, "ledger retention: cannot start");

	sig = wait_for_stop(&sigs, &auth, tokens, tls);
	das_log(DAS_LOG_INFO, "signal %d: draining", sig);
	rc = 0;
out:
	if (is_watching)
		start_watch_end(&watch);
	/* Calls in flight end first; then the store ends whatever still
	 * waits on it (a database that stopped answering must not hold the
	 * process), which frees the ledger prune and the calls it held. */
	server_drain(srv);
	store_cut(store);
	ops_retention_stop(retention);
	if (server_stop(srv) != 0) {
		das_log_flush();
		_exit(1); /* the store's threads still use what a return frees */
	}
	das_metrics_http_stop(metrics);
	token_cache_free(tokens);
	store_close(store);
	server_tls_free(tls);
	auth_config_release(&auth);
	if (rc == 0) {
		das_log(DAS_LOG_INFO, "stopped");
		das_log_flush();
	}
	return rc;
}
