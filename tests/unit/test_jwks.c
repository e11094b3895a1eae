/*
 * JWKS keys (--jwt-jwks-file): RS256, ES256 and HS256 keys chosen by kid;
 * alg pinned to the key; kid-less tokens only when exactly one key fits;
 * keys we cannot or must not use skipped; broken documents refused; the
 * ES256 key-confusion attacks; reload (rotation) with and without
 * verifications running.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jwt.h>

#include "service/auth/auth.h"
#include "service/auth/jwks.h"
#include "tests/support/jwk_keys.h"

#define NOW 1700000000
#define SECRET_H1 "h1-secret-h1-secret-h1-secret-h1-secret!"

static char tmpdir[64], path[128];
static struct test_key r1, r2, e1, e2, h1;

static void write_text(const char *text)
{
	char tmp[160];
	FILE *f;

	/* Replaced by rename, as an operator's deploy would. */
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	f = fopen(tmp, "wb");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, path), 0);
}

/* Writes {"keys":[a, b, ...]} (NULL-terminated list of JWK texts). */
static void write_jwks(const char *first, ...)
{
	char doc[16384] = "{\"keys\":[";
	va_list ap;

	va_start(ap, first);
	for (const char *k = first; k; k = va_arg(ap, const char *)) {
		if (doc[strlen(doc) - 1] != '[')
			strcat(doc, ",");
		assert_true(strlen(doc) + strlen(k) + 4 < sizeof(doc));
		strcat(doc, k);
	}
	va_end(ap);
	strcat(doc, "]}");
	write_text(doc);
}

static int load(struct auth_config *cfg, char *err, size_t size)
{
	struct auth_sources src = {.jwks_file = path};
	return auth_config_load_sources(cfg, &src, err, size);
}

static char *mint(enum auth_alg alg, const struct test_key *k,
		  const char *kid, const char *sub)
{
	static const char *const all[] = {"*"};
	struct auth_claims c = {
		.sub = sub,
		.tenants = all,
		.n_tenants = 1,
		.scope = "devices:assign",
		.iat = NOW,
		.exp = NOW + 3600,
		.kid = kid,
	};
	char err[256] = "";
	char *t = auth_mint(alg, (const unsigned char *)k->priv, k->priv_len,
			    &c, err, sizeof(err));
	if (!t)
		fail_msg("mint: %s", err);
	return t;
}

/* Verifies "Bearer token", frees token; returns 0 or -1 and why. */
static int check(const struct auth_config *cfg, char *token, char *why,
		 size_t size)
{
	struct domain_principal who;
	size_t n = strlen(token) + 8;
	char *v = malloc(n);
	int rc;

	assert_non_null(v);
	snprintf(v, n, "Bearer %s", token);
	rc = auth_verify(cfg, v, strlen(v), NOW, &who, why, size);
	free(v);
	free(token);
	return rc;
}

static void expect_ok(const struct auth_config *cfg, char *token)
{
	char why[160] = "";
	if (check(cfg, token, why, sizeof(why)) != 0)
		fail_msg("refused: %s", why);
}

static void expect_why(const struct auth_config *cfg, char *token,
		       const char *fragment)
{
	char why[160] = "";
	assert_int_equal(check(cfg, token, why, sizeof(why)), -1);
	if (!strstr(why, fragment))
		fail_msg("why \"%s\" lacks \"%s\"", why, fragment);
}

static int group_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_jwks.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(path, sizeof(path), "%s/jwks.json", tmpdir);
	test_key_rsa(&r1, "r1", "");
	test_key_rsa(&r2, "r2", ",\"use\":\"sig\",\"alg\":\"RS256\"");
	test_key_ec(&e1, "e1", ",\"alg\":\"ES256\"");
	test_key_ec(&e2, "e2", "");
	test_key_oct(&h1, "h1", SECRET_H1, ",\"alg\":\"HS256\"");
	return 0;
}

static int group_teardown(void **state)
{
	char tmp[160];

	(void)state;
	unlink(path);
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	unlink(tmp);
	rmdir(tmpdir);
	test_key_free(&r1);
	test_key_free(&r2);
	test_key_free(&e1);
	test_key_free(&e2);
	test_key_free(&h1);
	return 0;
}

static void test_tokens_by_kid(void **state)
{
	struct auth_config cfg;
	struct auth_key_info info[8];
	char err[256];

	(void)state;
	write_jwks(r1.jwk, e1.jwk, h1.jwk, NULL);
	assert_int_equal(load(&cfg, err, sizeof(err)), 0);
	assert_int_equal(auth_config_keys(&cfg, info, 8), 3);
	assert_string_equal(info[0].kid, "r1");
	assert_int_equal(info[0].alg, AUTH_RS256);
	assert_string_equal(info[1].kid, "e1");
	assert_int_equal(info[1].alg, AUTH_ES256);
	assert_string_equal(info[2].kid, "h1");
	assert_int_equal(info[2].alg, AUTH_HS256);
	expect_ok(&cfg, mint(AUTH_RS256, &r1, "r1", "alice"));
	expect_ok(&cfg, mint(AUTH_ES256, &e1, "e1", "alice"));
	expect_ok(&cfg, mint(AUTH_HS256, &h1, "h1", "alice"));
	/* The kid picks the key: another key's signature does not pass. */
	expect_why(&cfg, mint(AUTH_ES256, &e2, "e1", "mallory"), "signature");
	expect_why(&cfg, mint(AUTH_RS256, &r2, "r1", "mallory"), "signature");
	expect_why(&cfg, mint(AUTH_RS256, &r1, "nope", "mallory"), "kid");
	auth_config_release(&cfg);
}

static void test_tokens_without_kid(void **state)
{
	struct auth_config cfg;
	char err[256];

	(void)state;
	write_jwks(r1.jwk, e1.jwk, h1.jwk, NULL);
	assert_int_equal(load(&cfg, err, sizeof(err)), 0);
	/* Exactly one key of each alg: it is used. */
	expect_ok(&cfg, mint(AUTH_RS256, &r1, NULL, "alice"));
	expect_ok(&cfg, mint(AUTH_ES256, &e1, NULL, "alice"));
	expect_ok(&cfg, mint(AUTH_HS256, &h1, NULL, "alice"));
	auth_config_release(&cfg);

	/* Two RS256 keys: a kid-less RS256 token is refused, even one whose
	 * signature the first key would accept. */
	write_jwks(r1.jwk, r2.jwk, e1.jwk, NULL);
	assert_int_equal(load(&cfg, err, sizeof(err)), 0);
	expect_why(&cfg, mint(AUTH_RS256, &r1, NULL, "alice"), "no kid");
	expect_why(&cfg, mint(AUTH_RS256, &r2, NULL, "alice"), "no kid");
	expect_ok(&cfg, mint(AUTH_RS256, &r2, "r2", "alice"));
	expect_ok(&cfg, mint(AUTH_ES256, &e1, NULL, "alice"));
	/* No HS256 key at all. */
	expect_why(&cfg, mint(AUTH_HS256, &h1, NULL, "alice"), "HS256");
	auth_config_release(&cfg);
}

static void test_alg_must_be_the_keys(void **state)
{
	struct auth_config cfg;
	char err[256];

	(void)state;
	write_jwks(r1.jwk, e1.jwk, h1.jwk, NULL);
	assert_int_equal(load(&cfg, err, sizeof(err)), 0);
	expect_why(&cfg, mint(AUTH_ES256, &e1, "r1", "mallory"),
		   "not its key's alg");
	expect_why(&cfg, mint(AUTH_RS256, &r1, "e1", "mallory"),
		   "not its key's alg");
	expect_why(&cfg, mint(AUTH_RS256, &r1, "h1", "mallory"),
		   "not its key's alg");
	auth_config_release(&cfg);
}

/*
 * ES256 key confusion: the attacker knows the EC public key (it is
 * published in the JWKS) and signs an HS256 token with its PEM as the
 * secret. libjwt alone accepts that (shown first: the attack is real);
 * auth_verify refuses it with the kid of the EC key, without a kid, and
 * under a single-key ES256 configuration.
 */
static void test_es256_key_confusion(void **state)
{
	struct auth_config cfg;
	struct test_key forged = {0};
	jwt_t *jwt = NULL;
	char err[256];
	char *t;

	(void)state;
	forged.priv = strdup(e1.pub);
	forged.priv_len = e1.pub_len;
	assert_non_null(forged.priv);

	t = mint(AUTH_HS256, &forged, "e1", "mallory");
	assert_int_equal(jwt_decode(&jwt, t, (const unsigned char *)e1.pub,
				    (int)e1.pub_len),
			 0);
	assert_int_equal(jwt_get_alg(jwt), JWT_ALG_HS256);
	jwt_free(jwt);

	write_jwks(r1.jwk, e1.jwk, NULL);
	assert_int_equal(load(&cfg, err, sizeof(err)), 0);
	expect_why(&cfg, t, "not its key's alg");
	expect_why(&cfg, mint(AUTH_HS256, &forged, NULL, "mallory"),
		   "no key for token alg HS256");
	auth_config_release(&cfg);

	/* With an HS256 key in the set too, the kid still pins the alg. */
	write_jwks(r1.jwk, e1.jwk, h1.jwk, NULL);
	assert_int_equal(load(&cfg, err, sizeof(err)), 0);
	expect_why(&cfg, mint(AUTH_HS256, &forged, "e1", "mallory"),
		   "not its key's alg");
	expect_why(&cfg, mint(AUTH_HS256, &forged, NULL, "mallory"),
		   "signature");
	auth_config_release(&cfg);

	/* One ES256 key given in memory: HS256 and RS256 tokens refused. */
	assert_int_equal(auth_config_set_key(&cfg, AUTH_ES256,
					     (const unsigned char *)e1.pub,
					     e1.pub_len, err, sizeof(err)),
			 0);
	expect_ok(&cfg, mint(AUTH_ES256, &e1, NULL, "alice"));
	expect_why(&cfg, mint(AUTH_HS256, &forged, NULL, "mallory"),
		   "alg is not ES256");
	expect_why(&cfg, mint(AUTH_RS256, &r1, NULL, "mallory"),
		   "alg is not ES256");
	/* alg "none" and alg names in another case never reach libjwt. */
	expect_why(&cfg,
		   strdup("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIiwiZXhwIjoxODAwMDAwMDAwfQ.x"),
		   "alg");
	expect_why(&cfg,
		   strdup("eyJhbGciOiJlczI1NiJ9.eyJzdWIiOiJhIiwiZXhwIjoxODAwMDAwMDAwfQ.x"),
		   "alg");
	auth_config_release(&cfg);
	test_key_free(&forged);
}

static void test_keys_skipped_with_a_warning(void **state)
{
	struct auth_config cfg;
	struct auth_key_info info[8];
	struct test_key enc, rs512, weak;
	char err[256];

	(void)state;
	test_key_rsa(&enc, "enc", ",\"use\":\"enc\"");
	test_key_rsa(&rs512, "rs512", ",\"alg\":\"RS512\"");
	test_key_oct(&weak, "weak", "short", "");
	write_jwks(enc.jwk, rs512.jwk, weak.jwk,
		   "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"ed\",\"x\":\"AA\"}",
		   "{\"kty\":\"EC\",\"crv\":\"P-384\",\"kid\":\"p384\",\"x\":\"AA\",\"y\":\"AA\"}",
		   "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"rsalg\",\"alg\":\"RS256\",\"x\":\"AA\",\"y\":\"AA\"}",
		   "{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}",
		   e1.jwk, NULL);
	assert_int_equal(load(&cfg, err, sizeof(err)), 0);
	assert_int_equal(auth_config_keys(&cfg, info, 8), 1);
	assert_string_equal(info[0].kid, "e1");
	expect_why(&cfg, mint(AUTH_RS256, &enc, "enc", "alice"), "kid");
	expect_why(&cfg, mint(AUTH_RS256, &rs512, "rs512", "alice"), "kid");
	expect_ok(&cfg, mint(AUTH_ES256, &e1, "e1", "alice"));
	auth_config_release(&cfg);
	test_key_free(&enc);
	test_key_free(&rs512);
	test_key_free(&weak);
}

static void expect_load_error(const char *doc, const char *fragment)
{
	struct auth_config cfg;
	char err[256] = "";

	write_text(doc);
	assert_int_equal(load(&cfg, err, sizeof(err)), -1);
	if (!strstr(err, fragment))
		fail_msg("error \"%s\" lacks \"%s\"", err, fragment);
	assert_null(strchr(err, '\n'));
	assert_null(cfg.keys);
}

static void test_documents_refused(void **state)
{
	char doc[8192], many[16384];

	(void)state;
	expect_load_error("not json", "not JSON");
	expect_load_error("{\"keys\":{}}", "no \"keys\" array");
	expect_load_error("{\"keys\":[]}", "no usable key");
	expect_load_error("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"x\",\"use\":\"enc\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
			  "no usable key");
	expect_load_error("{\"keys\":[{\"kid\":\"x\"}]}", "no kty");
	expect_load_error("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"x\",\"n\":\"A+B\",\"e\":\"AQAB\"}]}",
			  "not base64url");
	expect_load_error("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"x\",\"e\":\"AQAB\"}]}",
			  "\"n\" missing");
	/* A point that is not on P-256. */
	expect_load_error("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"x\","
			  "\"x\":\"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE\","
			  "\"y\":\"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE\"}]}",
			  "P-256");
	snprintf(doc, sizeof(doc), "{\"keys\":[%s,%s]}", e1.jwk, e1.jwk);
	expect_load_error(doc, "two keys with kid e1");
	snprintf(doc, sizeof(doc), "{\"keys\":[%s],\"keys\":[]}", e1.jwk);
	expect_load_error(doc, "not JSON");
	strcpy(many, "{\"keys\":[");
	for (int i = 0; i < 65; i++)
		strcat(many, i ? ",{}" : "{}");
	strcat(many, "]}");
	expect_load_error(many, "more than 64");

	/* One source only. */
	struct auth_config cfg;
	char err[256];
	struct auth_sources both = {.jwks_file = path,
				    .hs256_secret_file = path};
	assert_int_equal(auth_config_load_sources(&cfg, &both, err,
						  sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "only one"));
}

static void test_rotation_by_reload(void **state)
{
	struct auth_config cfg;
	char err[256];

	(void)state;
	write_jwks(r1.jwk, NULL);
	assert_int_equal(load(&cfg, err, sizeof(err)), 0);
	expect_ok(&cfg, mint(AUTH_RS256, &r1, "r1", "alice"));
	expect_why(&cfg, mint(AUTH_ES256, &e1, "e1", "alice"), "kid");

	/* Publish the new key next to the old one. */
	write_jwks(r1.jwk, e1.jwk, NULL);
	assert_int_equal(auth_config_reload(&cfg, err, sizeof(err)), 0);
	expect_ok(&cfg, mint(AUTH_RS256, &r1, "r1", "alice"));
	expect_ok(&cfg, mint(AUTH_ES256, &e1, "e1", "alice"));

	/* A broken document: refused, both keys stay. */
	write_text("{\"keys\":[");
	assert_int_equal(auth_config_reload(&cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not JSON"));
	expect_ok(&cfg, mint(AUTH_RS256, &r1, "r1", "alice"));
	expect_ok(&cfg, mint(AUTH_ES256, &e1, "e1", "alice"));

	/* Retire the old key. */
	write_jwks(e1.jwk, NULL);
	assert_int_equal(auth_config_reload(&cfg, err, sizeof(err)), 0);
	expect_why(&cfg, mint(AUTH_RS256, &r1, "r1", "alice"), "kid");
	expect_ok(&cfg, mint(AUTH_ES256, &e1, "e1", "alice"));
	auth_config_release(&cfg);
}

struct verifier {
	const struct auth_config *cfg;
	const char *value;
	atomic_bool *is_stopping;
	int ok, failed;
};

static void *verify_loop(void *arg)
{
	struct verifier *v = arg;

	while (!atomic_load(v->is_stopping)) {
		struct domain_principal who;
		char why[160];
		if (auth_verify(v->cfg, v->value, strlen(v->value), NOW, &who,
				why, sizeof(why)) == 0)
			v->ok++;
		else
			v->failed++;
	}
	return NULL;
}

/* Reloads while threads verify a token whose key is in every set. */
static void test_reload_while_verifying(void **state)
{
	struct auth_config cfg;
	struct verifier v[3];
	pthread_t th[3];
	atomic_bool is_stopping = false;
	char err[256], value[4096];
	char *t;

	(void)state;
	write_jwks(r1.jwk, e1.jwk, NULL);
	assert_int_equal(load(&cfg, err, sizeof(err)), 0);
	t = mint(AUTH_ES256, &e1, "e1", "alice");
	snprintf(value, sizeof(value), "Bearer %s", t);
	free(t);
	for (int i = 0; i < 3; i++) {
		v[i] = (struct verifier){&cfg, value, &is_stopping, 0, 0};
		assert_int_equal(pthread_create(&th[i], NULL, verify_loop,
						&v[i]),
				 0);
	}
	for (int i = 0; i < 40; i++) {
		if (i % 2)
			write_jwks(e1.jwk, r1.jwk, NULL);
		else
			write_jwks(r2.jwk, e1.jwk, h1.jwk, NULL);
		assert_int_equal(auth_config_reload(&cfg, err, sizeof(err)),
				 0);
	}
	atomic_store(&is_stopping, true);
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(v[i].failed, 0);
	}
	print_message("reload while verifying: %d + %d + %d verified, "
		      "40 reloads, 0 refused\n",
		      v[0].ok, v[1].ok, v[2].ok);
	auth_config_release(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tokens_by_kid),
		cmocka_unit_test(test_tokens_without_kid),
		cmocka_unit_test(test_alg_must_be_the_keys),
		cmocka_unit_test(test_es256_key_confusion),
		cmocka_unit_test(test_keys_skipped_with_a_warning),
		cmocka_unit_test(test_documents_refused),
		cmocka_unit_test(test_rotation_by_reload),
		cmocka_unit_test(test_reload_while_verifying),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
