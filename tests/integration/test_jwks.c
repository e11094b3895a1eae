/*
 * Signing-key rotation against the real server (--jwt-jwks-file, SIGHUP):
 * keys A (RS256) -> A + B (ES256) + C (HS256) -> B + C, while four threads
 * call with every token valid at that moment. No call with a valid token
 * is ever UNAUTHENTICATED: A's tokens are used until A is retired, B's and
 * C's from the moment their publication is reloaded. After the last reload
 * A's tokens are refused; a broken JWKS on SIGHUP keeps the keys.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "deviceassignment/v1/device_assignment.pb-c.h"

#include "client/das_client.h"
#include "harness.h"
#include "tests/support/jwk_keys.h"

#define CALL_MS 20000
#define THREADS 4
#define UNAUTHENTICATED 16

static struct harness_proc server;
static struct test_key key_a, key_b, key_c;
static char *tok_a, *tok_b, *tok_c;
static char jwks_path[512];

static void publish(const char *a, const char *b, const char *c)
{
	char doc[8192], tmp[600];
	FILE *f;

	snprintf(doc, sizeof(doc), "{\"keys\":[%s%s%s%s%s]}", a ? a : "",
		 a && (b || c) ? "," : "", b ? b : "", b && c ? "," : "",
		 c ? c : "");
	snprintf(tmp, sizeof(tmp), "%s.new", jwks_path);
	f = fopen(tmp, "w");
	assert_non_null(f);
	assert_true(fputs(doc, f) >= 0);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, jwks_path), 0);
}

static char *mint(enum auth_alg alg, const struct test_key *k,
		  const char *kid)
{
	static const char *const all[] = {"*"};
	struct auth_claims c;
	char err[256];
	char *t;

	c = harness_claims("rotation", all, 1, "devices:assign", 3600);
	c.kid = kid;
	t = auth_mint(alg, (const unsigned char *)k->priv, k->priv_len, &c,
		      err, sizeof(err));
	if (!t)
		fail_msg("mint: %s", err);
	return t;
}

static int list_code(struct das_client *c, const char *token)
{
	Deviceassignment__V1__ListUserDevicesRequest r =
		DEVICEASSIGNMENT__V1__LIST_USER_DEVICES_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	struct das_call_status st;

	r.customer_tenant_id = (char *)"0f8fad5b-d9cb-469f-a165-70867728950e";
	r.user_id = (char *)"u1";
	if (das_client_call(c, DAS_RPC_LIST_USER_DEVICES, token, &r.base,
			    &resp, CALL_MS, &st) != 0)
		return -1;
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return st.code;
}

/* Which tokens are valid now: set by the main thread. */
static const char *const *_Atomic valid_now;
static atomic_bool is_stopping;
static atomic_int n_ok, n_refused;
/* The set each caller took its current token from. */
static const char *const *_Atomic in_flight[THREADS];

static void *caller(void *arg)
{
	struct das_client *c = das_client_new(server.addr);
	unsigned i = (unsigned)(uintptr_t)arg;
	const unsigned me = i;

	assert_non_null(c);
	while (!atomic_load(&is_stopping)) {
		const char *const *set = atomic_load(&valid_now);
		size_t n = 0;
		atomic_store(&in_flight[me], set);
		while (set[n])
			n++;
		const char *token = set[i++ % n];
		int code = list_code(c, token);
		if (code == UNAUTHENTICATED || code < 0) {
			atomic_fetch_add(&n_refused, 1);
			fprintf(stderr, "refused: %s token, code %d\n",
				token == tok_a	 ? "A"
				: token == tok_b ? "B"
						 : "C",
				code);
		} else {
			atomic_fetch_add(&n_ok, 1);
		}
	}
	das_client_free(c);
	return NULL;
}

static void reload_and_wait(const char *needle, int count)
{
	assert_int_equal(kill(server.pid, SIGHUP), 0);
	for (int i = 0;
	     i < 3000 && harness_count_in_log(&server, needle) < count; i++)
		usleep(10 * 1000);
	assert_int_equal(harness_count_in_log(&server, needle), count);
}

static void rotation_without_a_401(void **state)
{
	static const char *only_a[2], *abc[4], *bc[3];
	struct das_client *c;
	pthread_t th[THREADS];
	char db[512], spec[600];

	(void)state;
	test_key_rsa(&key_a, "2026-11-rsa", ",\"use\":\"sig\",\"alg\":\"RS256\"");
	test_key_ec(&key_b, "2026-12-ec", ",\"use\":\"sig\",\"alg\":\"ES256\"");
	test_key_oct(&key_c, "2026-12-hmac",
		     "rotation-secret-rotation-secret-rotation", "");
	tok_a = mint(AUTH_RS256, &key_a, "2026-11-rsa");
	tok_b = mint(AUTH_ES256, &key_b, "2026-12-ec");
	tok_c = mint(AUTH_HS256, &key_c, "2026-12-hmac");
	only_a[0] = tok_a;
	abc[0] = tok_a, abc[1] = tok_b, abc[2] = tok_c;
	bc[0] = tok_b, bc[1] = tok_c;

	harness_path("jwks.json", jwks_path, sizeof(jwks_path));
	publish(key_a.jwk, NULL, NULL);
	harness_path("jwks.db", db, sizeof(db));
	snprintf(spec, sizeof(spec), "sqlite:%s", db);
	const char *args[] = {"--store", spec, "--jwt-jwks-file", jwks_path,
			      NULL};
	assert_int_equal(harness_start(&server, DAS_SERVER_BIN, args, NULL), 0);

	c = das_client_new(server.addr);
	assert_non_null(c);
	assert_int_not_equal(list_code(c, tok_a), UNAUTHENTICATED);
	assert_int_equal(list_code(c, tok_b), UNAUTHENTICATED);

	atomic_store(&valid_now, only_a);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, caller,
						(void *)(uintptr_t)i),
				 0);
	usleep(300 * 1000);

	/* 1. Publish B and C next to A; they count once reloaded. */
	publish(key_a.jwk, key_b.jwk, key_c.jwk);
	reload_and_wait("reload: JWT keys reloaded", 1);
	atomic_store(&valid_now, abc);
	usleep(500 * 1000);

	/* A broken document on SIGHUP: the keys stay. */
	publish("{\"kty\":", NULL, NULL);
	reload_and_wait("reload: JWT keys kept", 1);
	usleep(300 * 1000);

	/* 2. Retire A: from now on only B and C are used; A is removed once
	 * no call that took A is still on its way. */
	atomic_store(&valid_now, bc);
	for (int w = 0; w < THREADS; w++)
		while (atomic_load(&in_flight[w]) != bc)
			usleep(1000);
	publish(key_b.jwk, key_c.jwk, NULL);
	reload_and_wait("reload: JWT keys reloaded", 2);
	usleep(500 * 1000);

	atomic_store(&is_stopping, true);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	fprintf(stderr, "rotation: %d calls with valid tokens, %d refused\n",
		atomic_load(&n_ok), atomic_load(&n_refused));
	assert_int_equal(atomic_load(&n_refused), 0);
	assert_true(atomic_load(&n_ok) > 0);

	/* A is gone; B and C stay good. */
	assert_int_equal(list_code(c, tok_a), UNAUTHENTICATED);
	assert_int_not_equal(list_code(c, tok_b), UNAUTHENTICATED);
	assert_int_not_equal(list_code(c, tok_c), UNAUTHENTICATED);
	das_client_free(c);
	assert_int_equal(harness_stop(&server, SIGTERM), 0);
	free(tok_a);
	free(tok_b);
	free(tok_c);
	test_key_free(&key_a);
	test_key_free(&key_b);
	test_key_free(&key_c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rotation_without_a_401),
	};

	return harness_finish(cmocka_run_group_tests(tests, NULL, NULL));
}
