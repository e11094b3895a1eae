/*
 * device-assignment: global flags, dispatch to a subcommand, and the error
 * reporting every subcommand shares (exactly one line on stderr, so scripts
 * can show it as is).
 */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"

#define DEFAULT_SERVER "127.0.0.1:50051"
#define DEFAULT_TIMEOUT_MS "10000"
#define MAX_TIMEOUT_MS 3600000UL
#define MAX_SUB_FLAGS 16

static const char summary[] =
	"Calls the Device Assignment service; mints development tokens.\n"
	"\n"
	"Run as: " CLI_PROG " [flags] COMMAND [command flags] [args]\n"
	"\n"
	"commands:\n"
	"  token              print a signed HS256 development token\n"
	"  import FILE        upsert a directory JSON file (customers, users,\n"
	"                     pbxDevices) through the Directory RPCs\n"
	"  assign             make a PBX device a user's softphone\n"
	"  unassign           remove a device's softphone assignment\n"
	"  list               print a user's softphone devices\n"
	"  ledger             print the customer's ledger of changes\n"
	"  seats              print the customer's softphone seats\n"
	"  health             exit 0 when the server reports SERVING\n"
	"\n"
	"'" CLI_PROG " COMMAND --help' shows the flags of a command; the\n"
	"connection flags below are accepted there too.\n"
	"Exit status: 0 success, 1 the call failed, 2 bad usage or input.";

static const char *const status_names[] = {
	"OK",
	"CANCELLED",
	"UNKNOWN",
	"INVALID_ARGUMENT",
	"DEADLINE_EXCEEDED",
	"NOT_FOUND",
	"ALREADY_EXISTS",
	"PERMISSION_DENIED",
	"RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION",
	"ABORTED",
	"OUT_OF_RANGE",
	"UNIMPLEMENTED",
	"INTERNAL",
	"UNAVAILABLE",
	"DATA_LOSS",
	"UNAUTHENTICATED",
};

const char *cli_status_name(int code, char *buf, size_t size)
{
	if (code >= 0 &&
	    (size_t)code < sizeof(status_names) / sizeof(status_names[0]))
		return status_names[code];
	snprintf(buf, size, "CODE_%d", code);
	return buf;
}

/* Keeps a server-supplied text on one printable line. */
static void one_line(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
}

void cli_error(const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	one_line(line);
	fprintf(stderr, CLI_PROG ": %s\n", line);
}

int cli_call(struct cli_ctx *ctx, enum das_rpc_method method,
	     const ProtobufCMessage *request, ProtobufCMessage **response,
	     const char *what)
{
	struct das_call_status st;
	char name_buf[32];
	const char *sep = what ? ": " : "";

	what = what ? what : "";
	*response = NULL;
	if (!ctx->client) {
		char err[512];
		ctx->client = das_client_new_tls(
			ctx->server, ctx->is_tls ? &ctx->tls : NULL, err,
			sizeof(err));
		if (!ctx->client) {
			cli_error("%s%s%s: %s", what, sep, ctx->server, err);
			return -1;
		}
	}
	if (das_client_call(ctx->client, method, ctx->token, request, response,
			    ctx->timeout_ms, &st) != 0) {
		cli_error("%s%s%s", what, sep, st.message);
		return -1;
	}
	if (st.code == DAS_GRPC_OK)
		return 0;
	const char *name = cli_status_name(st.code, name_buf, sizeof(name_buf));
	if (st.reason[0])
		cli_error("%s%s%s (%s): %s", what, sep, name, st.reason,
			  st.message);
	else
		cli_error("%s%s%s: %s", what, sep, name, st.message);
	return -1;
}

/* The connection flags: the same names at top level and per subcommand. */
enum {
	CONN_SERVER,
	CONN_TOKEN,
	CONN_TIMEOUT,
	CONN_CA,
	CONN_CERT,
	CONN_KEY,
	CONN_SERVER_NAME,
	CONN__COUNT
};

/* The TLS flags carry the gateway's names, so one environment serves both. */
static const struct {
	const char *name, *metavar, *help;
} tls_flags[] = {
	{"upstream-ca", "FILE",
	 "CA certificates of the server, PEM: call over TLS"},
	{"upstream-cert", "FILE", "client certificate for mTLS, PEM"},
	{"upstream-key", "FILE", "private key of --upstream-cert, PEM"},
	{"upstream-server-name", "NAME",
	 "name expected in the server's certificate (and sent as SNI)"},
};

/* Top-level TLS settings, the defaults of every subcommand's. */
static const char *tls_defaults[4];

static void conn_flags_init(struct das_flag *f, const char *server_def,
			    const char *timeout_def)
{
	f[CONN_SERVER] = (struct das_flag){
		.name = "server",
		.metavar = "ADDR",
		.def = server_def,
		.help = "gRPC address of device-assignment-server",
	};
	f[CONN_TOKEN] = (struct das_flag){
		.name = "token",
		.metavar = "JWT",
		.help = "bearer token sent with every call (prefer the "
			"environment variable: argv is visible to others)",
	};
	f[CONN_TIMEOUT] = (struct das_flag){
		.name = "timeout-ms",
		.metavar = "N",
		.def = timeout_def,
		.help = "deadline of each call, in milliseconds",
	};
	for (int i = 0; i < 4; i++)
		f[CONN_CA + i] = (struct das_flag){
			.name = tls_flags[i].name,
			.metavar = tls_flags[i].metavar,
			.def = tls_defaults[i],
			.help = tls_flags[i].help,
		};
}

/* Top-level connection settings, the defaults of every subcommand's. */
static char global_timeout[24];
static const char *global_token;

static int apply_conn(struct cli_ctx *ctx, const struct das_flag *f)
{
	unsigned long ms;

	if (das_parse_uint(f[CONN_TIMEOUT].value, 1, MAX_TIMEOUT_MS, &ms) !=
	    0) {
		cli_error("--timeout-ms must be an integer in 1..%lu",
			  MAX_TIMEOUT_MS);
		return -1;
	}
	if (!f[CONN_SERVER].value || !*f[CONN_SERVER].value) {
		cli_error("--server must not be empty");
		return -1;
	}
	ctx->server = f[CONN_SERVER].value;
	ctx->timeout_ms = (int)ms;
	if (f[CONN_TOKEN].value && *f[CONN_TOKEN].value)
		ctx->token = f[CONN_TOKEN].value;
	else
		ctx->token = global_token;
	ctx->is_tls = false;
	for (int i = 0; i < 4; i++) {
		const char *v = f[CONN_CA + i].value;
		if (v && *v)
			ctx->is_tls = true;
		tls_defaults[i] = v && *v ? v : NULL;
	}
	ctx->tls.ca_file = tls_defaults[0];
	ctx->tls.cert_file = tls_defaults[1];
	ctx->tls.key_file = tls_defaults[2];
	ctx->tls.server_name = tls_defaults[3];
	return 0;
}

int cli_parse_flags(struct cli_ctx *ctx, const char *name, const char *sub_summary,
		    struct das_flag *flags, size_t n, bool is_rpc, int argc,
		    char **argv, int *argi, int *exit_code)
{
	struct das_flag all[MAX_SUB_FLAGS + CONN__COUNT];
	char prog[64], err[256];
	size_t total = n;

	if (n > MAX_SUB_FLAGS) {
		cli_error("internal: too many flags for %s", name);
		*exit_code = CLI_EXIT_FAILURE;
		return -1;
	}
	if (n)
		memcpy(all, flags, n * sizeof(*flags));
	if (is_rpc) {
		conn_flags_init(all + n, ctx->server, global_timeout);
		total += CONN__COUNT;
	}
	snprintf(prog, sizeof(prog), CLI_PROG " %s", name);
	*argi = 1;
	switch (das_flags_parse(all, total, argc, argv, argi, prog,
				sub_summary, err, sizeof(err))) {
	case DAS_FLAGS_OK:
		break;
	case DAS_FLAGS_EXIT:
		*exit_code = CLI_EXIT_OK;
		return -1;
	default:
		cli_error("%s: %s", name, err);
		*exit_code = CLI_EXIT_USAGE;
		return -1;
	}
	if (n)
		memcpy(flags, all, n * sizeof(*flags));
	if (is_rpc && apply_conn(ctx, all + n) != 0) {
		*exit_code = CLI_EXIT_USAGE;
		return -1;
	}
	return 0;
}

static const struct {
	const char *name;
	int (*run)(struct cli_ctx *ctx, int argc, char **argv);
} commands[] = {
	{"token", cli_cmd_token},       {"import", cli_cmd_import},
	{"assign", cli_cmd_assign},     {"unassign", cli_cmd_unassign},
	{"list", cli_cmd_list},         {"health", cli_cmd_health},
	{"ledger", cli_cmd_ledger},     {"seats", cli_cmd_seats},
};

int main(int argc, char **argv)
{
	struct das_flag conn[CONN__COUNT];
	struct cli_ctx ctx = {0};
	char err[256];
	int argi = 1, status;

	conn_flags_init(conn, DEFAULT_SERVER, DEFAULT_TIMEOUT_MS);
	switch (das_flags_parse(conn, CONN__COUNT, argc, argv, &argi, CLI_PROG,
				summary, err, sizeof(err))) {
	case DAS_FLAGS_OK:
		break;
	case DAS_FLAGS_EXIT:
		return CLI_EXIT_OK;
	default:
		cli_error("%s", err);
		return CLI_EXIT_USAGE;
	}
	global_token = conn[CONN_TOKEN].value;
	if (apply_conn(&ctx, conn) != 0)
		return CLI_EXIT_USAGE;
	snprintf(global_timeout, sizeof(global_timeout), "%d", ctx.timeout_ms);
	/*
	 * The environment has been read once, here. The subcommands accept the
	 * same flags with these values as defaults; were DAS_SERVER etc. still
	 * set, their parse would let the environment override a value given
	 * on the command line before the subcommand.
	 */
	unsetenv("DAS_SERVER");
	unsetenv("DAS_TOKEN");
	unsetenv("DAS_TIMEOUT_MS");
	unsetenv("DAS_UPSTREAM_CA");
	unsetenv("DAS_UPSTREAM_CERT");
	unsetenv("DAS_UPSTREAM_KEY");
	unsetenv("DAS_UPSTREAM_SERVER_NAME");

	if (argi >= argc) {
		cli_error("missing command (see --help)");
		return CLI_EXIT_USAGE;
	}
	const char *name = argv[argi];
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].name, name) != 0)
			continue;
		status = commands[i].run(&ctx, argc - argi, argv + argi);
		das_client_free(ctx.client);
		return status;
	}
	cli_error("unknown command '%s' (see --help)", name);
	return CLI_EXIT_USAGE;
}
