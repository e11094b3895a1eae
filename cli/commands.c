/*
 * The subcommands that map to one call each (assign, unassign, list,
 * health) and the offline one (token). Arguments are checked only as far as
 * the tool needs to build a request; the rules (GUID form, id syntax,
 * permissions) are the server's, so its answer is what the user sees.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "common/ids.h"
#include "deviceassignment/v1/device_assignment.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "service/auth/auth.h"

#define MAX_TTL_SECONDS (10UL * 366 * 24 * 3600)

/* No positional arguments after the flags. */
int cli_no_more_args(const char *name, int argc, char **argv, int argi)
{
	if (argi < argc) {
		cli_error("%s: unexpected argument '%s' (see --help)", name,
			  argv[argi]);
		return -1;
	}
	return 0;
}

const char *cli_required(const char *name, const struct das_flag *f)
{
	if (!f->value || !*f->value) {
		cli_error("%s: --%s is required (see --help)", name, f->name);
		return NULL;
	}
	return f->value;
}

static const char *type_name_or_none(int type)
{
	const char *name = das_client_type_name(type);

	return *name ? name : "none";
}

/* The --tenant values (the environment's is one), each a GUID normalised
 * or "*". Returns how many, or 0 when one is missing or wrong (said). */
static size_t tenants_from_flag(struct das_flag *f,
				char buf[][DAS_GUID_SIZE],
				const char **tenants)
{
	if (f->n_values == 0 && f->value) {
		f->values[0] = f->value;
		f->n_values = 1;
	}
	if (f->n_values == 0) {
		cli_error("token: --tenant is required (a GUID, or * for all)");
		return 0;
	}
	for (size_t i = 0; i < f->n_values; i++) {
		const char *t = f->values[i];

		if (strcmp(t, "*") == 0) {
			snprintf(buf[i], DAS_GUID_SIZE, "*");
		} else if (das_guid_normalize(t, strlen(t), buf[i]) != 0) {
			cli_error("token: --tenant '%s' is not a GUID or *", t);
			return 0;
		}
		tenants[i] = buf[i];
	}
	return f->n_values;
}

/* Signs claims with the secret in secret_file and prints the token.
 * Returns an exit code. */
static int print_token(const char *secret_file,
		       const struct auth_claims *claims)
{
	unsigned char *key = NULL;
	size_t key_len = 0;
	char err[256];
	char *jwt = NULL;
	int code = CLI_EXIT_FAILURE;

	if (auth_read_key_file(secret_file, true, &key, &key_len, err,
			       sizeof(err)) != 0) {
		cli_error("token: %s", err);
		return CLI_EXIT_FAILURE;
	}
	jwt = auth_mint(AUTH_HS256, key, key_len, claims, err, sizeof(err));
	if (!jwt)
		cli_error("token: %s", err);
	else if (printf("%s\n", jwt) < 0 || fflush(stdout) != 0)
		cli_error("token: cannot write the token");
	else
		code = CLI_EXIT_OK;
	free(jwt);
	if (key)
		memset(key, 0, key_len);
	free(key);
	return code;
}

int cli_cmd_token(struct cli_ctx *ctx, int argc, char **argv)
{
	enum { F_SECRET, F_SUB, F_TENANT, F_SCOPE, F_TTL, F_ISS, F_AUD, F__N };
	struct das_flag flags[F__N] = {
		[F_SECRET] = {.name = "secret-file", .metavar = "FILE",
			      .help = "HS256 shared secret (the server's "
				      "--jwt-hs256-secret-file)"},
		[F_SUB] = {.name = "sub", .metavar = "NAME", .def = "dev",
			   .help = "the actor recorded in the ledger"},
		[F_TENANT] = {.name = "tenant", .metavar = "GUID",
			      .is_repeatable = true,
			      .help = "customer or account GUID the token "
				      "covers, or * for all"},
		[F_SCOPE] = {.name = "scope", .metavar = "SCOPES",
			     .def = "devices:assign",
			     .help = "space-separated scopes (devices:assign, "
				     "directory:admin, ledger:read)"},
		[F_TTL] = {.name = "ttl", .metavar = "SECONDS", .def = "3600",
			   .help = "lifetime of the token"},
		[F_ISS] = {.name = "issuer", .metavar = "ISS",
			   .help = "iss claim (when the server checks one)"},
		[F_AUD] = {.name = "audience", .metavar = "AUD",
			   .help = "aud claim (when the server checks one)"},
	};
	char tenants_buf[DAS_FLAG_MAX_VALUES][DAS_GUID_SIZE];
	const char *tenants[DAS_FLAG_MAX_VALUES];
	size_t n_tenants;
	unsigned long ttl;
	int argi, code = CLI_EXIT_USAGE;

	if (cli_parse_flags(ctx, "token", "Prints a signed HS256 JWT for "
				 "development and tests.",
			    flags, F__N, false, argc, argv, &argi, &code) != 0)
		return code;
	if (cli_no_more_args("token", argc, argv, argi) != 0)
		return CLI_EXIT_USAGE;
	const char *secret = cli_required("token", &flags[F_SECRET]);
	const char *sub = cli_required("token", &flags[F_SUB]);
	const char *scope = cli_required("token", &flags[F_SCOPE]);
	if (!secret || !sub || !scope)
		return CLI_EXIT_USAGE;
	n_tenants = tenants_from_flag(&flags[F_TENANT], tenants_buf, tenants);
	if (n_tenants == 0)
		return CLI_EXIT_USAGE;
	if (das_parse_uint(flags[F_TTL].value, 1, MAX_TTL_SECONDS, &ttl) != 0) {
		cli_error("token: --ttl must be an integer in 1..%lu",
			  MAX_TTL_SECONDS);
		return CLI_EXIT_USAGE;
	}
	int64_t now = (int64_t)time(NULL);
	const char *iss = flags[F_ISS].value, *aud = flags[F_AUD].value;
	struct auth_claims claims = {
		.sub = sub,
		.tenants = tenants,
		.n_tenants = n_tenants,
		.scope = scope,
		.iat = now,
		.exp = now + (int64_t)ttl,
		.issuer = iss && *iss ? iss : NULL,
		.audience = aud && *aud ? aud : NULL,
	};
	return print_token(secret, &claims);
}

/* The flags naming a user (and, for assign/unassign, a device). */
enum { U_TENANT, U_ACCOUNT, U_USER, U_DEVICE, U__N };

static void user_flags_init(struct das_flag *f)
{
	f[U_TENANT] = (struct das_flag){
		.name = "tenant", .metavar = "GUID",
		.help = "the customer's tenant id"};
	f[U_ACCOUNT] = (struct das_flag){
		.name = "account", .metavar = "GUID",
		.help = "the account (reseller) that owns the customer"};
	f[U_USER] = (struct das_flag){
		.name = "user", .metavar = "ID", .help = "the user id"};
	f[U_DEVICE] = (struct das_flag){
		.name = "device", .metavar = "ID", .help = "the PBX device id"};
}

char *cli_opt(const struct das_flag *f)
{
	return (char *)(f->value ? f->value : "");
}

int cli_cmd_assign(struct cli_ctx *ctx, int argc, char **argv)
{
	enum { F_TYPE = U__N, F_CHARGES, F__N };
	struct das_flag flags[F__N];
	Deviceassignment__V1__AssignDeviceRequest req =
		DEVICEASSIGNMENT__V1__ASSIGN_DEVICE_REQUEST__INIT;
	Deviceassignment__V1__AssignDeviceResponse *resp = NULL;
	int argi, code = CLI_EXIT_USAGE;

	user_flags_init(flags);
	flags[F_TYPE] = (struct das_flag){
		.name = "client-type", .metavar = "TYPE",
		.help = "desktop, mobile, webrtc or crm"};
	flags[F_CHARGES] = (struct das_flag){
		.name = "accept-charges",
		.help = "consent to a new paid softphone seat"};
	if (cli_parse_flags(ctx, "assign",
			    "Makes a PBX device the user's softphone for a "
			    "client type.",
			    flags, F__N, true, argc, argv, &argi, &code) != 0)
		return code;
	if (cli_no_more_args("assign", argc, argv, argi) != 0)
		return CLI_EXIT_USAGE;
	const char *tenant = cli_required("assign", &flags[U_TENANT]);
	const char *user =
		tenant ? cli_required("assign", &flags[U_USER]) : NULL;
	const char *device =
		user ? cli_required("assign", &flags[U_DEVICE]) : NULL;
	const char *type =
		device ? cli_required("assign", &flags[F_TYPE]) : NULL;
	if (!type)
		return CLI_EXIT_USAGE;
	enum das_client_type ct = das_client_type_parse(type, strlen(type));
	if (!das_client_type_is_valid(ct)) {
		cli_error("assign: --client-type '%s' is not one of desktop, "
			  "mobile, webrtc, crm",
			  type);
		return CLI_EXIT_USAGE;
	}
	const char *charges = flags[F_CHARGES].value;
	req.customer_tenant_id = (char *)tenant;
	req.account_tenant_id = cli_opt(&flags[U_ACCOUNT]);
	req.user_id = (char *)user;
	req.device_id = (char *)device;
	req.client_type = (Deviceassignment__V1__ClientType)ct;
	/* A switch reads "1"; DAS_ACCEPT_CHARGES may also say true. */
	req.accept_charges = charges && (strcmp(charges, "1") == 0 ||
					 strcmp(charges, "true") == 0);
	if (cli_call(ctx, DAS_RPC_ASSIGN_DEVICE, &req.base,
		     (ProtobufCMessage **)&resp, "assign") != 0)
		return CLI_EXIT_FAILURE;
	printf("assigned %s as %s (previous: %s, charged: %s)\n", device,
	       das_client_type_name(ct),
	       type_name_or_none(resp->previous_client_type),
	       resp->charged ? "yes" : "no");
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return CLI_EXIT_OK;
}

int cli_cmd_unassign(struct cli_ctx *ctx, int argc, char **argv)
{
	struct das_flag flags[U__N];
	Deviceassignment__V1__UnassignDeviceRequest req =
		DEVICEASSIGNMENT__V1__UNASSIGN_DEVICE_REQUEST__INIT;
	Deviceassignment__V1__UnassignDeviceResponse *resp = NULL;
	int argi, code = CLI_EXIT_USAGE;

	user_flags_init(flags);
	if (cli_parse_flags(ctx, "unassign",
			    "Removes a PBX device's softphone assignment (a "
			    "no-op when it has none).",
			    flags, U__N, true, argc, argv, &argi, &code) != 0)
		return code;
	if (cli_no_more_args("unassign", argc, argv, argi) != 0)
		return CLI_EXIT_USAGE;
	const char *tenant = cli_required("unassign", &flags[U_TENANT]);
	const char *user =
		tenant ? cli_required("unassign", &flags[U_USER]) : NULL;
	const char *device =
		user ? cli_required("unassign", &flags[U_DEVICE]) : NULL;
	if (!device)
		return CLI_EXIT_USAGE;
	req.customer_tenant_id = (char *)tenant;
	req.account_tenant_id = cli_opt(&flags[U_ACCOUNT]);
	req.user_id = (char *)user;
	req.device_id = (char *)device;
	if (cli_call(ctx, DAS_RPC_UNASSIGN_DEVICE, &req.base,
		     (ProtobufCMessage **)&resp, "unassign") != 0)
		return CLI_EXIT_FAILURE;
	printf("unassigned %s (previous: %s)\n", device,
	       type_name_or_none(resp->previous_client_type));
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return CLI_EXIT_OK;
}

/* The REST shape of the list: [{"deviceId": ..., "clientType": ...}]. */
static int print_list_json(const Deviceassignment__V1__ListUserDevicesResponse *resp)
{
	json_t *arr = json_array();
	int result = -1;

	if (!arr)
		return -1;
	for (size_t i = 0; i < resp->n_devices; i++) {
		const Deviceassignment__V1__UserDevice *d = resp->devices[i];
		json_t *o = json_pack("{s:s, s:s}", "deviceId",
				      d->device_id ? d->device_id : "",
				      "clientType",
				      das_client_type_name(d->client_type));
		if (!o || json_array_append_new(arr, o) != 0)
			goto done;
	}
	char *text = json_dumps(arr, JSON_COMPACT);
	if (!text)
		goto done;
	printf("%s\n", text);
	free(text);
	result = 0;
done:
	json_decref(arr);
	return result;
}

int cli_cmd_list(struct cli_ctx *ctx, int argc, char **argv)
{
	/* No device for list: its slot holds the output switch. */
	enum { F_JSON = U_DEVICE };
	struct das_flag flags[U__N];
	Deviceassignment__V1__ListUserDevicesRequest req =
		DEVICEASSIGNMENT__V1__LIST_USER_DEVICES_REQUEST__INIT;
	Deviceassignment__V1__ListUserDevicesResponse *resp = NULL;
	int argi, code = CLI_EXIT_USAGE;

	user_flags_init(flags);
	flags[F_JSON] = (struct das_flag){
		.name = "json",
		.help = "print a JSON array instead of lines"};
	if (cli_parse_flags(ctx, "list",
			    "Prints the user's softphone devices, one "
			    "\"deviceId clientType\" per line.",
			    flags, U__N, true, argc, argv, &argi, &code) != 0)
		return code;
	if (cli_no_more_args("list", argc, argv, argi) != 0)
		return CLI_EXIT_USAGE;
	const char *tenant = cli_required("list", &flags[U_TENANT]);
	const char *user = tenant ? cli_required("list", &flags[U_USER]) : NULL;
	if (!user)
		return CLI_EXIT_USAGE;
	req.customer_tenant_id = (char *)tenant;
	req.account_tenant_id = cli_opt(&flags[U_ACCOUNT]);
	req.user_id = (char *)user;
	if (cli_call(ctx, DAS_RPC_LIST_USER_DEVICES, &req.base,
		     (ProtobufCMessage **)&resp, "list") != 0)
		return CLI_EXIT_FAILURE;
	code = CLI_EXIT_OK;
	if (flags[F_JSON].value) {
		if (print_list_json(resp) != 0) {
			cli_error("list: out of memory");
			code = CLI_EXIT_FAILURE;
		}
	} else {
		for (size_t i = 0; i < resp->n_devices; i++)
			printf("%s %s\n",
			       resp->devices[i]->device_id
				       ? resp->devices[i]->device_id
				       : "",
			       das_client_type_name(
				       resp->devices[i]->client_type));
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return code;
}

static const char *serving_name(int status)
{
	switch (status) {
	case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING:
		return "SERVING";
	case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING:
		return "NOT_SERVING";
	case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN:
		return "SERVICE_UNKNOWN";
	default:
		return "UNKNOWN";
	}
}

int cli_cmd_health(struct cli_ctx *ctx, int argc, char **argv)
{
	enum { F_SERVICE, F__N };
	struct das_flag flags[F__N] = {
		[F_SERVICE] = {.name = "service", .metavar = "NAME",
			       .def = "",
			       .help = "service to ask about (\"\" = the "
				       "server as a whole)"},
	};
	Grpc__Health__V1__HealthCheckRequest req =
		GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	Grpc__Health__V1__HealthCheckResponse *resp = NULL;
	int argi, code = CLI_EXIT_USAGE;

	if (cli_parse_flags(ctx, "health",
			    "grpc.health.v1 Check: prints the serving status; "
			    "exit 0 when SERVING.",
			    flags, F__N, true, argc, argv, &argi, &code) != 0)
		return code;
	if (cli_no_more_args("health", argc, argv, argi) != 0)
		return CLI_EXIT_USAGE;
	req.service = cli_opt(&flags[F_SERVICE]);
	if (cli_call(ctx, DAS_RPC_HEALTH_CHECK, &req.base,
		     (ProtobufCMessage **)&resp, "health") != 0)
		return CLI_EXIT_FAILURE;
	const char *name = serving_name(resp->status);
	bool is_serving =
		resp->status ==
		GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	printf("%s\n", name);
	if (!is_serving) {
		cli_error("health: the server reports %s", name);
		return CLI_EXIT_FAILURE;
	}
	return CLI_EXIT_OK;
}
