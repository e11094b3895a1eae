/*
 * The device-assignment CLI against a real server on a temporary SQLite
 * file: every subcommand, the import's idempotence, and the error exits
 * (status and the single "device-assignment: <reason>" line).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define TENANT "8c1d2a7e-1f3b-4c5d-9e6f-0a1b2c3d4e5f"
#define TENANT_OTHER "00000000-0000-0000-0000-00000000abcd"
#define RUN_TIMEOUT_MS 30000

static struct harness_proc server;
static char admin_token[4096];
static struct harness_run_result *res;

/*
 * Runs the CLI with env (NULL-terminated, may be NULL) and the arguments
 * after it (NULL-terminated); the result is in res. Returns the exit status.
 */
static int cli_env(const char *const *env, ...)
{
	const char *args[64];
	size_t n = 0;
	va_list ap;

	va_start(ap, env);
	for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
		assert_true(n + 1 < sizeof(args) / sizeof(args[0]));
		args[n++] = a;
	}
	va_end(ap);
	args[n] = NULL;
	assert_int_equal(harness_run(DAS_CLI_BIN, args, env, RUN_TIMEOUT_MS,
				     res),
			 0);
	return res->status;
}

/* The usual environment: our server and the admin token. */
static const char *const *std_env(void)
{
	static char server_env[96], token_env[4200];
	static const char *env[3];

	snprintf(server_env, sizeof(server_env), "DAS_SERVER=%s", server.addr);
	snprintf(token_env, sizeof(token_env), "DAS_TOKEN=%s", admin_token);
	env[0] = server_env;
	env[1] = token_env;
	env[2] = NULL;
	return env;
}

#define cli(...) cli_env(std_env(), __VA_ARGS__, NULL)

/* stderr is exactly one line "device-assignment: ..." containing part. */
static void assert_one_error_line(const char *part)
{
	const char *prefix = "device-assignment: ";

	if (strncmp(res->err, prefix, strlen(prefix)) != 0 ||
	    strchr(res->err, '\n') != res->err + res->err_len - 1 ||
	    (part && !strstr(res->err, part))) {
		fprintf(stderr, "unexpected stderr (wanted \"%s\"): [%s]\n",
			part ? part : "", res->err);
		fail();
	}
}

static void assert_stdout(const char *expected)
{
	if (strcmp(res->out, expected) != 0) {
		fprintf(stderr, "stdout [%s]\nwanted [%s]\nstderr [%s]\n",
			res->out, expected, res->err);
		fail();
	}
}

static const char directory_json[] =
	"{ \"customers\": [ { \"tenantId\": \"" TENANT "\","
	"    \"name\": \"Acme\", \"includedSoftphoneSeats\": 1 } ],"
	"  \"users\": ["
	"    { \"tenantId\": \"" TENANT "\", \"userId\": \"u1\","
	"      \"roles\": [\"customer_user_uc\", \"customer_user_uc_softphone\"] },"
	"    { \"tenantId\": \"" TENANT "\", \"userId\": \"u2\","
	"      \"roles\": [\"customer_user_uc\", \"customer_user_uc_softphone\"] },"
	"    { \"tenantId\": \"" TENANT "\", \"userId\": \"u3\","
	"      \"roles\": [\"customer_user_uc\"] } ],"
	"  \"pbxDevices\": ["
	"    { \"tenantId\": \"" TENANT "\", \"deviceId\": \"d1\", \"ownerUserId\": \"u1\" },"
	"    { \"tenantId\": \"" TENANT "\", \"deviceId\": \"d2\", \"ownerUserId\": \"u1\" },"
	"    { \"tenantId\": \"" TENANT "\", \"deviceId\": \"d3\", \"ownerUserId\": \"u2\" },"
	"    { \"tenantId\": \"" TENANT "\", \"deviceId\": \"d4\", \"ownerUserId\": \"u3\" } ] }";

static int setup(void **state)
{
	char db[PATH_MAX + 16], path[PATH_MAX];
	const char *secret = harness_secret_file();

	res = malloc(sizeof(*res));
	if (!res)
		return -1;
	snprintf(db, sizeof(db), "sqlite:%s",
		 harness_path("cli.db", path, sizeof(path)));
	const char *args[] = {"--store", db, "--jwt-hs256-secret-file", secret,
			      NULL};
	if (harness_start(&server, DAS_SERVER_BIN, args, NULL) != 0)
		return -1;

	/* The admin token comes from the CLI itself: minting is under test. */
	const char *targs[] = {"token", "--secret-file", secret, "--tenant",
			       "*", "--sub", "cli-test", "--scope",
			       "directory:admin devices:assign", NULL};
	if (harness_run(DAS_CLI_BIN, targs, NULL, RUN_TIMEOUT_MS, res) != 0 ||
	    res->status != 0 || res->out_len < 2 ||
	    res->out_len >= sizeof(admin_token) ||
	    res->out[res->out_len - 1] != '\n') {
		fprintf(stderr, "token failed: %d [%s]\n", res->status,
			res->err);
		return -1;
	}
	memcpy(admin_token, res->out, res->out_len - 1);
	admin_token[res->out_len - 1] = '\0';

	char file[PATH_MAX];
	if (harness_write_file("directory.json", directory_json,
			       strlen(directory_json), file,
			       sizeof(file)) != 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	int status = harness_stop(&server, SIGTERM);

	free(res);
	res = NULL;
	if (status != 0) {
		fprintf(stderr, "server exit status %d\n", status);
		harness_dump_log(&server);
		return -1;
	}
	return 0;
}

static void test_token_shape(void **state)
{
	const char *secret = harness_secret_file();

	assert_int_equal(cli_env(NULL, "token", "--secret-file", secret,
				 "--tenant", TENANT, "--tenant",
				 "{" TENANT_OTHER "}", "--ttl", "60", NULL),
			 0);
	/* header.payload.signature and one newline */
	char *first = strchr(res->out, '.');
	assert_non_null(first);
	char *second = strchr(first + 1, '.');
	assert_non_null(second);
	assert_null(strchr(second + 1, '.'));
	assert_int_equal(strchr(res->out, '\n') - res->out,
			 (long)res->out_len - 1);
	assert_int_equal(res->err_len, 0);
}

static void test_token_errors(void **state)
{
	char missing[PATH_MAX];

	harness_path("no-such-secret", missing, sizeof(missing));
	assert_int_equal(cli_env(NULL, "token", "--secret-file", missing,
				 "--tenant", "*", NULL),
			 1);
	assert_one_error_line("no-such-secret");
	assert_int_equal(cli_env(NULL, "token", "--secret-file",
				 harness_secret_file(), NULL),
			 2);
	assert_one_error_line("--tenant");
	assert_int_equal(cli_env(NULL, "token", "--secret-file",
				 harness_secret_file(), "--tenant", "acme",
				 NULL),
			 2);
	assert_one_error_line("'acme'");
	assert_int_equal(cli_env(NULL, "token", "--secret-file",
				 harness_secret_file(), "--tenant", "*",
				 "--ttl", "-5", NULL),
			 2);
	assert_one_error_line("--ttl");
}

static void test_import_twice(void **state)
{
	char file[PATH_MAX];

	harness_path("directory.json", file, sizeof(file));
	assert_int_equal(cli("import", file), 0);
	assert_stdout("imported 1 customers, 3 users, 4 devices (8 changed)\n");
	assert_int_equal(cli("import", file), 0);
	assert_stdout("imported 1 customers, 3 users, 4 devices (0 changed)\n");
}

static void test_assign_list_unassign(void **state)
{
	assert_int_equal(cli("assign", "--tenant", TENANT, "--user", "u1",
			     "--device", "d1", "--client-type", "desktop"),
			 0);
	assert_stdout("assigned d1 as desktop (previous: none, charged: no)\n");
	/* A move, spelled in upper case. */
	assert_int_equal(cli("assign", "--tenant", TENANT, "--user", "u1",
			     "--device", "d1", "--client-type", "MOBILE"),
			 0);
	assert_stdout("assigned d1 as mobile (previous: desktop, charged: no)\n");
	assert_int_equal(cli("assign", "--tenant", TENANT, "--user", "u1",
			     "--device", "d2", "--client-type", "webrtc"),
			 0);
	assert_int_equal(cli("list", "--tenant", TENANT, "--user", "u1"), 0);
	assert_stdout("d1 mobile\nd2 webrtc\n");
	assert_int_equal(cli("list", "--tenant", TENANT, "--user", "u1",
			     "--json"),
			 0);
	assert_stdout("[{\"deviceId\":\"d1\",\"clientType\":\"mobile\"},"
		      "{\"deviceId\":\"d2\",\"clientType\":\"webrtc\"}]\n");

	assert_int_equal(cli("unassign", "--tenant", TENANT, "--user", "u1",
			     "--device", "d1"),
			 0);
	assert_stdout("unassigned d1 (previous: mobile)\n");
	assert_int_equal(cli("unassign", "--tenant", TENANT, "--user", "u1",
			     "--device", "d1"),
			 0);
	assert_stdout("unassigned d1 (previous: none)\n");
	assert_int_equal(cli("unassign", "--tenant", TENANT, "--user", "u1",
			     "--device", "d2"),
			 0);
	assert_int_equal(cli("list", "--tenant", TENANT, "--user", "u1"), 0);
	assert_stdout("");
}

static void test_charges(void **state)
{
	/* One included seat: u1 takes it, u2 needs consent. */
	assert_int_equal(cli("assign", "--tenant", TENANT, "--user", "u1",
			     "--device", "d1", "--client-type", "desktop"),
			 0);
	assert_int_equal(cli("assign", "--tenant", TENANT, "--user", "u2",
			     "--device", "d3", "--client-type", "crm"),
			 1);
	assert_one_error_line(
		"FAILED_PRECONDITION (CHARGES_NOT_ACCEPTED): additional "
		"charges apply");
	assert_stdout("");
	assert_int_equal(cli("assign", "--tenant", TENANT, "--user", "u2",
			     "--device", "d3", "--client-type", "crm",
			     "--accept-charges"),
			 0);
	assert_stdout("assigned d3 as crm (previous: none, charged: yes)\n");
	/* Another user's device, then a user without the softphone role. */
	assert_int_equal(cli("assign", "--tenant", TENANT, "--user", "u3",
			     "--device", "d3", "--client-type", "crm"),
			 1);
	assert_one_error_line("NOT_FOUND (DEVICE_NOT_FOUND)");
	assert_int_equal(cli("assign", "--tenant", TENANT, "--user", "u3",
			     "--device", "d4", "--client-type", "crm",
			     "--accept-charges"),
			 1);
	assert_one_error_line("FAILED_PRECONDITION (MISSING_ROLES)");
	/* Clean up for the other tests. */
	assert_int_equal(cli("unassign", "--tenant", TENANT, "--user", "u1",
			     "--device", "d1"),
			 0);
	assert_int_equal(cli("unassign", "--tenant", TENANT, "--user", "u2",
			     "--device", "d3"),
			 0);
}

static void test_health(void **state)
{
	assert_int_equal(cli("health"), 0);
	assert_stdout("SERVING\n");
	/* Flags after the subcommand win over the environment. */
	assert_int_equal(cli("health", "--server", "127.0.0.1:1",
			     "--timeout-ms", "300"),
			 1);
	assert_one_error_line(NULL);
	assert_true(strstr(res->err, "UNAVAILABLE") ||
		    strstr(res->err, "DEADLINE_EXCEEDED"));
}

static void test_rpc_errors(void **state)
{
	char bad_env[] = "DAS_TOKEN=not.a.token";
	char server_env[96];
	const char *env[] = {server_env, bad_env, NULL};

	snprintf(server_env, sizeof(server_env), "DAS_SERVER=%s", server.addr);
	assert_int_equal(cli_env(env, "list", "--tenant", TENANT, "--user",
				 "u1", NULL),
			 1);
	assert_one_error_line("UNAUTHENTICATED");

	/* The global --token flag beats DAS_TOKEN. */
	assert_int_equal(cli_env(env, "--token", admin_token, "list",
				 "--tenant", TENANT, "--user", "u1", NULL),
			 0);

	/* No token at all. */
	const char *no_token[] = {server_env, NULL};
	assert_int_equal(cli_env(no_token, "health", NULL), 0);
	assert_int_equal(cli_env(no_token, "list", "--tenant", TENANT,
				 "--user", "u1", NULL),
			 1);
	assert_one_error_line("UNAUTHENTICATED");

	/* A token for another tenant only. */
	char *other = harness_mint("t", (const char *const[]){TENANT_OTHER}, 1,
				   "devices:assign", 300);
	char other_env[4200];
	snprintf(other_env, sizeof(other_env), "DAS_TOKEN=%s", other);
	free(other);
	const char *other_envs[] = {server_env, other_env, NULL};
	assert_int_equal(cli_env(other_envs, "assign", "--tenant", TENANT,
				 "--user", "u1", "--device", "d1",
				 "--client-type", "desktop", NULL),
			 1);
	assert_one_error_line("PERMISSION_DENIED");

	assert_int_equal(cli("list", "--tenant", "not-a-guid", "--user", "u1"),
			 1);
	assert_one_error_line("INVALID_ARGUMENT (INVALID_TENANT_ID)");
	assert_int_equal(cli("list", "--tenant", TENANT_OTHER, "--user", "u1"),
			 1);
	assert_one_error_line("NOT_FOUND (CUSTOMER_NOT_FOUND): Not Found");
	assert_int_equal(cli("list", "--tenant", TENANT, "--user", "nobody"),
			 1);
	assert_one_error_line("NOT_FOUND (USER_NOT_FOUND): User not found");
}

static void test_usage_errors(void **state)
{
	assert_int_equal(cli("frobnicate"), 2);
	assert_one_error_line("unknown command 'frobnicate'");
	assert_int_equal(cli_env(NULL, NULL), 2);
	assert_one_error_line("missing command");
	assert_int_equal(cli("assign", "--tenant", TENANT, "--user", "u1"), 2);
	assert_one_error_line("--device is required");
	assert_int_equal(cli("assign", "--tenant", TENANT, "--user", "u1",
			     "--device", "d1", "--client-type", "fax"),
			 2);
	assert_one_error_line("'fax'");
	assert_int_equal(cli("list", "--tenant", TENANT, "--user", "u1",
			     "--colour"),
			 2);
	assert_one_error_line("--colour");
	assert_int_equal(cli("list", "--tenant", TENANT, "--user", "u1",
			     "extra"),
			 2);
	assert_one_error_line("'extra'");
	assert_int_equal(cli("import"), 2);
	assert_one_error_line("missing FILE");
	assert_int_equal(cli("--timeout-ms", "0", "health"), 2);
	assert_one_error_line("--timeout-ms");
	assert_stdout("");
}

static void test_help_and_version(void **state)
{
	static const char *const commands[] = {"token", "import", "assign",
					       "unassign", "list", "health"};

	assert_int_equal(cli("--help"), 0);
	assert_non_null(strstr(res->out, "[env DAS_SERVER]"));
	assert_non_null(strstr(res->out, "[env DAS_TOKEN]"));
	assert_int_equal(cli("--version"), 0);
	assert_non_null(strstr(res->out, "device-assignment"));
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		assert_int_equal(cli(commands[i], "--help"), 0);
		assert_non_null(strstr(res->out, commands[i]));
		assert_non_null(strstr(res->out, "--"));
		assert_int_equal(cli(commands[i], "--version"), 0);
	}
	assert_int_equal(cli("assign", "--help"), 0);
	assert_non_null(strstr(res->out, "[env DAS_CLIENT_TYPE]"));
	assert_non_null(strstr(res->out, "[env DAS_ACCEPT_CHARGES]"));
	assert_int_equal(cli("token", "--help"), 0);
	assert_non_null(strstr(res->out, "[env DAS_SECRET_FILE]"));
}

/* A file with an error changes nothing, and the error names the entry. */
static void test_import_invalid(void **state)
{
	static const struct {
		const char *json;
		const char *error;
	} cases[] = {
		{"[]", "one JSON object"},
		{"{\"customers\": {}}", "\"customers\" must be an array"},
		{"{\"custumers\": []}", "unknown member \"custumers\""},
		{"{\"customers\": [{\"tenantId\": \"" TENANT_OTHER "\", "
		 "\"name\": \"B\"}], \"users\": [{\"tenantId\": \"" TENANT_OTHER
		 "\", \"userId\": \"bad id\", \"roles\": []}]}",
		 "users[0]: userId"},
		{"{\"customers\": [{\"tenantId\": \"" TENANT_OTHER "\", "
		 "\"name\": \"B\", \"includedSoftphoneSeats\": -1}]}",
		 "customers[0]: \"includedSoftphoneSeats\""},
		{"{\"customers\": [{\"tenantId\": \"" TENANT_OTHER "\", "
		 "\"name\": \"B\", \"includedSoftphoneSeats\": 1.5}]}",
		 "customers[0]: \"includedSoftphoneSeats\""},
		{"{\"customers\": [{\"tenantId\": \"nope\", \"name\": \"B\"}]}",
		 "customers[0]: tenantId \"nope\" is not a GUID"},
		{"{\"customers\": [{\"tenantId\": \"" TENANT_OTHER "\"}]}",
		 "customers[0]: \"name\" is missing"},
		{"{\"pbxDevices\": [{\"tenantId\": \"" TENANT_OTHER "\", "
		 "\"deviceId\": \"d1\"}]}",
		 "pbxDevices[0]: \"ownerUserId\" is missing"},
		{"{\"users\": [{\"tenantId\": \"" TENANT_OTHER "\", "
		 "\"userId\": \"u\", \"roles\": [1]}]}",
		 "users[0]: roles[0]"},
		{"{\"customers\": [], \"customers\": []}", "duplicate"},
		{"{\"customers\": [", "line 1"},
	};
	char file[PATH_MAX];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(harness_write_file("bad.json", cases[i].json,
						    strlen(cases[i].json), file,
						    sizeof(file)),
				 0);
		assert_int_equal(cli("import", file), 2);
		assert_one_error_line(cases[i].error);
		assert_stdout("");
	}
	/* The valid customer of the users[0] case was not created. */
	assert_int_equal(cli("list", "--tenant", TENANT_OTHER, "--user", "u"),
			 1);
	assert_one_error_line("CUSTOMER_NOT_FOUND");

	/* A file that is valid but names a missing customer: the server's
	 * answer, with the entry. */
	static const char orphan[] =
		"{\"users\": [{\"tenantId\": \"" TENANT_OTHER "\", "
		"\"userId\": \"u\", \"roles\": []}]}";
	assert_int_equal(harness_write_file("orphan.json", orphan,
					    strlen(orphan), file, sizeof(file)),
			 0);
	assert_int_equal(cli("import", file), 1);
	assert_one_error_line("import users[0]: NOT_FOUND");

	harness_path("missing.json", file, sizeof(file));
	assert_int_equal(cli("import", file), 2);
	assert_one_error_line("missing.json");
}

/* A devices:assign token may not change the directory. */
static void test_import_needs_admin(void **state)
{
	char file[PATH_MAX], server_env[96], token_env[4200];
	char *tok = harness_mint("t", (const char *const[]){"*"}, 1,
				 "devices:assign", 300);

	snprintf(server_env, sizeof(server_env), "DAS_SERVER=%s", server.addr);
	snprintf(token_env, sizeof(token_env), "DAS_TOKEN=%s", tok);
	free(tok);
	const char *env[] = {server_env, token_env, NULL};
	harness_path("directory.json", file, sizeof(file));
	assert_int_equal(cli_env(env, "import", file, NULL), 1);
	assert_one_error_line("import customers[0]: PERMISSION_DENIED");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token_shape),
		cmocka_unit_test(test_token_errors),
		cmocka_unit_test(test_import_twice),
		cmocka_unit_test(test_assign_list_unassign),
		cmocka_unit_test(test_charges),
		cmocka_unit_test(test_health),
		cmocka_unit_test(test_rpc_errors),
		cmocka_unit_test(test_usage_errors),
		cmocka_unit_test(test_help_and_version),
		cmocka_unit_test(test_import_invalid),
		cmocka_unit_test(test_import_needs_admin),
	};

	return harness_finish(cmocka_run_group_tests(tests, setup, teardown));
}
