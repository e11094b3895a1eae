/*
 * The device-assignment command-line tool: what the subcommands share.
 * main.c parses the global flags and dispatches; commands.c holds token,
 * assign, unassign, list and health; import.c the directory import.
 */
#ifndef DAS_CLI_H
#define DAS_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "client/das_client.h"
#include "common/config.h"

#define CLI_PROG "device-assignment"

/* Exit statuses. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAILURE 1 /* the server said no, or it could not be reached */
#define CLI_EXIT_USAGE 2   /* bad flags, arguments or input file */

/* Where and how to call; resolved from the global and subcommand flags. */
struct cli_ctx {
	const char *server;
	const char *token; /* NULL = no authorization metadata */
	int timeout_ms;
	bool is_tls;                /* any of the --upstream-* TLS flags */
	struct das_client_tls tls;  /* their values */
	struct das_client *client; /* opened on first call, owned */
};

/*
 * Parses the flags of subcommand name: its own flags (flags[0..n)) followed
 * by the connection flags (--server, --token, --timeout-ms and the TLS
 * flags --upstream-ca, --upstream-cert, --upstream-key,
 * --upstream-server-name) when is_rpc.
 * argv[0] is the subcommand; on return *argi is the first positional
 * argument. Returns -1 when the command is done already (--help, --version
 * or an error, *exit_code set), else 0 with ctx updated.
 */
int cli_parse_flags(struct cli_ctx *ctx, const char *name, const char *summary,
		    struct das_flag *flags, size_t n, bool is_rpc, int argc,
		    char **argv, int *argi, int *exit_code);

/* Prints "device-assignment: <reason>" as one line on stderr. */
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
void cli_error(const char *fmt, ...);

/*
 * One call through ctx's client. On success returns 0 with *response (free
 * with protobuf_c_message_free_unpacked). Otherwise prints one error line
 * prefixed by what (may be NULL): "<what>: <STATUS> (<REASON>): <message>"
 * and returns -1.
 */
int cli_call(struct cli_ctx *ctx, enum das_rpc_method method,
	     const ProtobufCMessage *request, ProtobufCMessage **response,
	     const char *what);

/*
 * Checks shared by the subcommands; each prints one error line naming the
 * subcommand. cli_no_more_args: -1 when argv[argi..argc) holds an argument.
 * cli_required: f's value, or NULL when it is unset or empty.
 */
int cli_no_more_args(const char *name, int argc, char **argv, int argi);
const char *cli_required(const char *name, const struct das_flag *f);

/* f's value or "" (protobuf-c wants char * for strings it only reads). */
char *cli_opt(const struct das_flag *f);

/* The name of a gRPC status code ("NOT_FOUND"), "CODE_<n>" when unknown. */
const char *cli_status_name(int code, char *buf, size_t size);

/* Subcommands: argv[0] is the subcommand name; return the exit status. */
int cli_cmd_token(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_assign(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_unassign(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_list(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_health(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_import(struct cli_ctx *ctx, int argc, char **argv);
int cli_cmd_ledger(struct cli_ctx *ctx, int argc, char **argv); /* ledger.c */
int cli_cmd_seats(struct cli_ctx *ctx, int argc, char **argv);

#endif
