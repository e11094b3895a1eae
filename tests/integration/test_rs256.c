/*
 * The server configured with an RS256 public key (--jwt-rs256-public-key,
 * plus --jwt-issuer and --jwt-audience): a token signed with the private
 * key is accepted; the key-confusion attack (an HS256 token whose "secret"
 * is the public key PEM), alg "none", a wrong issuer or audience and a token
 * signed by another key are all 401 UNAUTHENTICATED, end to end over gRPC.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "grpc/health/v1/health.pb-c.h"
#include "deviceassignment/v1/device_assignment.pb-c.h"

#include "client/das_client.h"
#include "harness.h"

#define TIMEOUT_MS 10000
#define ISS "https://issuer.example"
#define AUD "device-assignment"

static struct harness_proc server;
static struct das_client *client;
static char priv_path[512], pub_path[512], other_path[512];

static void openssl(const char *const *args)
{
	struct harness_run_result *r = calloc(1, sizeof(*r));

	assert_non_null(r);
	assert_int_equal(harness_run("/usr/bin/openssl", args, NULL, 30000, r),
			 0);
	if (r->status != 0)
		fprintf(stderr, "openssl: %s\n", r->err);
	assert_int_equal(r->status, 0);
	free(r);
}

static unsigned char *slurp(const char *path, size_t *len)
{
	unsigned char *buf = NULL;
	char err[256];

	assert_int_equal(auth_read_key_file(path, false, &buf, len, err,
					    sizeof(err)),
			 0);
	return buf;
}

static char *mint(enum auth_alg alg, const char *key_path, const char *iss,
		  const char *aud)
{
	static const char *const all[] = {"*"};
	struct auth_claims c;
	size_t len;
	unsigned char *key = slurp(key_path, &len);
	char err[256];
	char *token;

	c = harness_claims("rs-agent", all, 1, "devices:assign", 600);
	c.issuer = iss;
	c.audience = aud;
	token = auth_mint(alg, key, len, &c, err, sizeof(err));
	if (!token)
		fprintf(stderr, "mint: %s\n", err);
	assert_non_null(token);
	free(key);
	return token;
}

/* The status code of a ListUserDevices call carrying token. */
static int list_code(const char *token, char *reason, size_t size)
{
	Deviceassignment__V1__ListUserDevicesRequest r =
		DEVICEASSIGNMENT__V1__LIST_USER_DEVICES_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	struct das_call_status st;

	r.customer_tenant_id = (char *)"0f8fad5b-d9cb-469f-a165-70867728950e";
	r.user_id = (char *)"u1";
	assert_int_equal(das_client_call(client, DAS_RPC_LIST_USER_DEVICES,
					 token, &r.base, &resp, TIMEOUT_MS,
					 &st),
			 0);
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	snprintf(reason, size, "%s", st.reason);
	return st.code;
}

static int setup(void **state)
{
	char db[512], spec[600];

	(void)state;
	harness_path("rs.key", priv_path, sizeof(priv_path));
	harness_path("rs.pub", pub_path, sizeof(pub_path));
	harness_path("other.key", other_path, sizeof(other_path));
	const char *gen1[] = {"genpkey", "-algorithm", "RSA", "-pkeyopt",
			      "rsa_keygen_bits:2048", "-out", priv_path, NULL};
	const char *pub[] = {"pkey", "-in", priv_path, "-pubout", "-out",
			     pub_path, NULL};
	const char *gen2[] = {"genpkey", "-algorithm", "RSA", "-pkeyopt",
			      "rsa_keygen_bits:2048", "-out", other_path, NULL};
	openssl(gen1);
	openssl(pub);
	openssl(gen2);
	harness_path("rs.db", db, sizeof(db));
	snprintf(spec, sizeof(spec), "sqlite:%s", db);
	const char *args[] = {"--store", spec, "--jwt-rs256-public-key",
			      pub_path, "--jwt-issuer", ISS, "--jwt-audience",
			      AUD, NULL};
	assert_int_equal(harness_start(&server, DAS_SERVER_BIN, args, NULL), 0);
	client = das_client_new(server.addr);
	assert_non_null(client);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	das_client_free(client);
	if (server.pid)
		assert_int_equal(harness_stop(&server, SIGTERM), 0);
	return 0;
}

static void rs256_accepted(void **state)
{
	char reason[64];
	char *token = mint(AUTH_RS256, priv_path, ISS, AUD);

	(void)state;
	/* Authenticated: the answer is the next row, no such customer. */
	assert_int_equal(list_code(token, reason, sizeof(reason)), 5);
	assert_string_equal(reason, "CUSTOMER_NOT_FOUND");
	free(token);
}

static void forgeries_refused(void **state)
{
	char reason[64];
	char *tokens[4];

	(void)state;
	/* the public key PEM used as an HMAC secret */
	tokens[0] = mint(AUTH_HS256, pub_path, ISS, AUD);
	/* another key pair */
	tokens[1] = mint(AUTH_RS256, other_path, ISS, AUD);
	/* right key, wrong issuer / audience */
	tokens[2] = mint(AUTH_RS256, priv_path, "https://evil.example", AUD);
	tokens[3] = mint(AUTH_RS256, priv_path, ISS, "someone-else");
	for (int i = 0; i < 4; i++) {
		assert_int_equal(list_code(tokens[i], reason, sizeof(reason)),
				 16);
		assert_string_equal(reason, "UNAUTHENTICATED");
		free(tokens[i]);
	}
	/* alg none: header {"alg":"none"}, claims, empty signature */
	assert_int_equal(
		list_code("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."
			  "eyJzdWIiOiJ4IiwiZXhwIjo0MTAyNDQ0ODAwLCJ0ZW5hbnRzIjpbIioiXSwic2NvcGUiOiJkZXZpY2VzOmFzc2lnbiJ9.",
			  reason, sizeof(reason)),
		16);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rs256_accepted),
		cmocka_unit_test(forgeries_refused),
	};
	return harness_finish(cmocka_run_group_tests(tests, setup, teardown));
}
