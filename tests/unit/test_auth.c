/*
 * JWT verification and minting (service/auth). RS256 key pairs are made at
 * run time with libcrypto; key files live in a mkdtemp directory that the
 * group teardown removes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <pthread.h>

#include "service/auth/auth.h"
#include "tests/support/jwk_keys.h"

#define NOW 1800000000LL
#define SECRET "0123456789abcdef0123456789abcdef"
#define T1 "0f8fad5b-d9cb-469f-a165-70867728950e"
#define T1_BRACED_UPPER "{0F8FAD5B-D9CB-469F-A165-70867728950E}"
#define T2_PLAIN "7C9E6679742540DE944BE07FC1F90AE7"
#define T2 "7c9e6679-7425-40de-944b-e07fc1f90ae7"

struct pem {
	char *priv;
	size_t priv_len;
	char *pub;
	size_t pub_len;
};

static char tmpdir[64];
static char path_secret[128], path_pub[128], path_priv[128], path_junk[128];
static struct pem rsa_a, rsa_b; /* b: an unrelated key pair */
static struct auth_config cfg_hs, cfg_rs;

/* ---- helpers ---------------------------------------------------------- */

static char *bio_text(BIO *bio, size_t *len)
{
	char *data;
	long n = BIO_get_mem_data(bio, &data);
	char *out = malloc((size_t)n + 1);

	assert_non_null(out);
	memcpy(out, data, (size_t)n);
	out[n] = '\0';
	*len = (size_t)n;
	return out;
}

static void make_rsa(struct pem *k)
{
	EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	BIO *priv = BIO_new(BIO_s_mem()), *pub = BIO_new(BIO_s_mem());

	assert_non_null(pkey);
	assert_non_null(priv);
	assert_non_null(pub);
	assert_int_equal(PEM_write_bio_PrivateKey(priv, pkey, NULL, NULL, 0,
						  NULL, NULL),
			 1);
	assert_int_equal(PEM_write_bio_PUBKEY(pub, pkey), 1);
	k->priv = bio_text(priv, &k->priv_len);
	k->pub = bio_text(pub, &k->pub_len);
	BIO_free(priv);
	BIO_free(pub);
	EVP_PKEY_free(pkey);
}

static void write_file(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/*
 * A compact JWS from raw header and payload bytes. sig: NULL = HS256 with
 * SECRET over the first two segments; otherwise used as the signature
 * segment verbatim. Lets tests sign payloads libjwt would never produce.
 */
static char *raw_token(const char *header, const void *payload,
		       size_t payload_len, const char *sig)
{
	char *h = test_key_b64url((const unsigned char *)header, strlen(header));
	char *p = test_key_b64url(payload, payload_len);
	size_t n = strlen(h) + strlen(p) + 2;
	char *signing = malloc(n), *s, *out;

	assert_non_null(signing);
	snprintf(signing, n, "%s.%s", h, p);
	if (sig) {
		s = strdup(sig);
	} else {
		unsigned char mac[EVP_MAX_MD_SIZE];
		unsigned mac_len = 0;
		assert_non_null(HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET),
				     (const unsigned char *)signing,
				     strlen(signing), mac, &mac_len));
		s = test_key_b64url(mac, mac_len);
	}
	assert_non_null(s);
	n = strlen(signing) + strlen(s) + 2;
	out = malloc(n);
	assert_non_null(out);
	snprintf(out, n, "%s.%s", signing, s);
	free(h);
	free(p);
	free(s);
	free(signing);
	return out;
}

static char *signed_payload(const char *json)
{
	return raw_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", json,
			 strlen(json), NULL);
}

static const char *const default_tenants[] = {T1};

static struct auth_claims base_claims(void)
{
	struct auth_claims c = {
		.sub = "alice",
		.tenants = default_tenants,
		.n_tenants = 1,
		.scope = "devices:assign",
		.iat = NOW - 10,
		.exp = NOW + 3600,
	};
	return c;
}

static char *mint_hs(const struct auth_claims *c)
{
	char err[256] = "";
	char *t = auth_mint(AUTH_HS256, (const unsigned char *)SECRET,
			    strlen(SECRET), c, err, sizeof(err));
	if (!t)
		fail_msg("mint: %s", err);
	return t;
}

static char *mint_rs(const struct pem *k, const struct auth_claims *c)
{
	char err[256] = "";
	char *t = auth_mint(AUTH_RS256, (const unsigned char *)k->priv,
			    k->priv_len, c, err, sizeof(err));
	if (!t)
		fail_msg("mint: %s", err);
	return t;
}

/* auth_verify on "Bearer <token>". */
static int verify_at(const struct auth_config *cfg, const char *token,
		     int64_t now, struct domain_principal *who, char *why,
		     size_t why_size)
{
	size_t n = strlen(token) + 8;
	char *v = malloc(n);
	int rc;

	assert_non_null(v);
	snprintf(v, n, "Bearer %s", token);
	rc = auth_verify(cfg, v, strlen(v), now, who, why, why_size);
	free(v);
	return rc;
}

static int verify(const struct auth_config *cfg, const char *token,
		  struct domain_principal *who)
{
	char why[128];
	return verify_at(cfg, token, NOW, who, why, sizeof(why));
}

/* Verifies, frees token, returns the result. */
static int verify_free(const struct auth_config *cfg, char *token)
{
	struct domain_principal who;
	int rc = verify(cfg, token, &who);
	free(token);
	return rc;
}

static void expect_why(const struct auth_config *cfg, char *token,
		       const char *fragment)
{
	struct domain_principal who;
	char why[128] = "";

	int rc = verify_at(cfg, token, NOW, &who, why, sizeof(why));

	free(token);
	assert_int_equal(rc, -1);
	if (!strstr(why, fragment))
		fail_msg("why \"%s\" lacks \"%s\"", why, fragment);
}

/* ---- fixtures --------------------------------------------------------- */

static int group_setup(void **state)
{
	char err[256] = "";
	static const char secret_file[] = SECRET "\n";
	size_t n = (size_t)snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_auth.");

	memset(tmpdir + n, 'X', 6); /* the template mkdtemp fills in */
	tmpdir[n + 6] = '\0';
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(path_secret, sizeof(path_secret), "%s/hs.secret", tmpdir);
	snprintf(path_pub, sizeof(path_pub), "%s/rs.pub", tmpdir);
	snprintf(path_priv, sizeof(path_priv), "%s/rs.key", tmpdir);
	snprintf(path_junk, sizeof(path_junk), "%s/junk", tmpdir);
	make_rsa(&rsa_a);
	make_rsa(&rsa_b);
	write_file(path_secret, secret_file, strlen(secret_file));
	write_file(path_pub, rsa_a.pub, rsa_a.pub_len);
	write_file(path_priv, rsa_a.priv, rsa_a.priv_len);
	write_file(path_junk, "not a key\n", 10);
	if (auth_config_load(&cfg_hs, path_secret, NULL, NULL, NULL, err,
			     sizeof(err)) != 0 ||
	    auth_config_load(&cfg_rs, "", path_pub, "", "", err,
			     sizeof(err)) != 0) {
		fprintf(stderr, "config: %s\n", err);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	auth_config_release(&cfg_hs);
	auth_config_release(&cfg_rs);
	free(rsa_a.priv);
	free(rsa_a.pub);
	free(rsa_b.priv);
	free(rsa_b.pub);
	unlink(path_secret);
	unlink(path_pub);
	unlink(path_priv);
	unlink(path_junk);
	return rmdir(tmpdir) == 0 ? 0 : -1;
}

/* ---- valid tokens ----------------------------------------------------- */

static void test_hs256_valid(void **state)
{
	struct auth_claims c = base_claims();
	const char *tenants[] = {T1, T2};
	struct domain_principal who;
	char *t;

	c.tenants = tenants;
	c.n_tenants = 2;
	c.scope = "devices:assign directory:admin";
	t = mint_hs(&c);
	assert_int_equal(verify(&cfg_hs, t, &who), 0);
	assert_string_equal(who.sub, "alice");
	assert_false(who.is_all_tenants);
	assert_int_equal(who.n_tenants, 2);
	assert_string_equal(who.tenants[0], T1);
	assert_string_equal(who.tenants[1], T2);
	assert_int_equal(who.scopes, DOMAIN_SCOPE_ASSIGN | DOMAIN_SCOPE_DIRECTORY);
	free(t);
}

static void test_rs256_valid(void **state)
{
	struct auth_claims c = base_claims();
	struct domain_principal who;
	char *t = mint_rs(&rsa_a, &c);

	assert_int_equal(verify(&cfg_rs, t, &who), 0);
	assert_string_equal(who.sub, "alice");
	assert_int_equal(who.n_tenants, 1);
	assert_string_equal(who.tenants[0], T1);
	assert_int_equal(who.scopes, DOMAIN_SCOPE_ASSIGN);
	/* The same token means nothing to an HS256 service. */
	assert_int_equal(verify(&cfg_hs, t, &who), -1);
	free(t);
}

/* ---- time ------------------------------------------------------------- */

static int verify_times(int64_t exp, int64_t nbf)
{
	struct auth_claims c = base_claims();
	c.exp = exp;
	c.nbf = nbf;
	return verify_free(&cfg_hs, mint_hs(&c));
}

static void test_expiry_and_leeway(void **state)
{
	assert_int_equal(verify_times(NOW - 3600, 0), -1); /* expired */
	assert_int_equal(verify_times(NOW - 30, 0), 0);    /* within leeway */
	assert_int_equal(verify_times(NOW - 59, 0), 0);
	assert_int_equal(verify_times(NOW - 60, 0), -1); /* leeway used up */
	assert_int_equal(verify_times(NOW + 1, 0), 0);
	expect_why(&cfg_hs, signed_payload("{\"sub\":\"a\",\"exp\":1}"),
		   "expired");
}

static void test_not_before(void **state)
{
	assert_int_equal(verify_times(NOW + 7200, NOW + 3600), -1);
	assert_int_equal(verify_times(NOW + 7200, NOW + 30), 0);
	assert_int_equal(verify_times(NOW + 7200, NOW + 60), 0);
	assert_int_equal(verify_times(NOW + 7200, NOW + 61), -1);
	assert_int_equal(verify_times(NOW + 7200, NOW - 5), 0);
}

static void test_exp_required_and_typed(void **state)
{
	expect_why(&cfg_hs, signed_payload("{\"sub\":\"a\"}"), "no exp");
	expect_why(&cfg_hs,
		   signed_payload("{\"sub\":\"a\",\"exp\":\"1900000000\"}"),
		   "exp");
	expect_why(&cfg_hs,
		   signed_payload("{\"sub\":\"a\",\"exp\":1900000000.5}"),
		   "exp");
	expect_why(&cfg_hs, signed_payload("{\"sub\":\"a\",\"exp\":null}"),
		   "exp");
	expect_why(&cfg_hs,
		   signed_payload("{\"sub\":\"a\",\"exp\":1900000000,"
				  "\"nbf\":\"0\"}"),
		   "nbf");
	expect_why(&cfg_hs,
		   signed_payload("{\"sub\":\"a\",\"exp\":"
				  "9223372036854775807}"),
		   "range");
	/* The raw signer itself is sound: */
	assert_int_equal(
		verify_free(&cfg_hs,
			    signed_payload("{\"sub\":\"a\",\"exp\":1900000000}")),
		0);
}

/* ---- signatures and algorithms ---------------------------------------- */

static void test_wrong_key(void **state)
{
	struct auth_claims c = base_claims();
	const char other[] = "another-secret-another-secret-xx";
	char err[128];
	char *t = auth_mint(AUTH_HS256, (const unsigned char *)other,
			    strlen(other), &c, err, sizeof(err));

	assert_non_null(t);
	expect_why(&cfg_hs, t, "signature");
	expect_why(&cfg_rs, mint_rs(&rsa_b, &c), "signature");
}

static void test_tampered(void **state)
{
	struct auth_claims c = base_claims();
	char *t = mint_hs(&c), *dot1 = strchr(t, '.'), *dot2;
	const char forged[] = "{\"sub\":\"mallory\",\"exp\":1900000000,"
			      "\"tenants\":[\"*\"],\"scope\":\"directory:admin\"}";
	char *payload =
		test_key_b64url((const unsigned char *)forged, strlen(forged));
	size_t n;
	char *forgery;

	assert_non_null(dot1);
	dot2 = strchr(dot1 + 1, '.');
	assert_non_null(dot2);
	/* header . forged payload . original signature */
	n = (size_t)(dot1 - t) + strlen(payload) + strlen(dot2) + 2;
	forgery = malloc(n);
	assert_non_null(forgery);
	snprintf(forgery, n, "%.*s.%s%s", (int)(dot1 - t), t, payload, dot2);
	expect_why(&cfg_hs, forgery, "signature");
	free(payload);

	/* One flipped signature character. */
	n = strlen(t);
	t[n - 2] = t[n - 2] == 'A' ? 'B' : 'A';
	expect_why(&cfg_hs, t, "signature");

	/* RS256 signature flipped too. */
	t = mint_rs(&rsa_a, &c);
	n = strlen(t);
	t[n - 5] = t[n - 5] == 'A' ? 'B' : 'A';
	expect_why(&cfg_rs, t, "signature");
}

static void test_alg_none(void **state)
{
	const char payload[] = "{\"sub\":\"mallory\",\"exp\":1900000000,"
			       "\"tenants\":[\"*\"],\"scope\":\"devices:assign\"}";
	char *t = raw_token("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload,
			    strlen(payload), "");

	/* "eyJ...", "." separators, empty signature */
	assert_memory_equal(t, "eyJ", 3);
	assert_non_null(strstr(t, "."));
	assert_int_equal(t[strlen(t) - 1], '.');
	assert_int_equal(verify_free(&cfg_hs, strdup(t)), -1);
	assert_int_equal(verify_free(&cfg_rs, t), -1);

	/* Same with some signature bytes, and alg spelt other ways. */
	expect_why(&cfg_hs,
		   raw_token("{\"alg\":\"none\"}", payload, strlen(payload),
			     "c2ln"),
		   "alg");
	expect_why(&cfg_hs,
		   raw_token("{\"alg\":\"None\"}", payload, strlen(payload),
			     "c2ln"),
		   "alg");
	expect_why(&cfg_rs,
		   raw_token("{\"alg\":\"NONE\"}", payload, strlen(payload),
			     "c2ln"),
		   "alg");
	expect_why(&cfg_hs,
		   raw_token("{\"typ\":\"JWT\"}", payload, strlen(payload),
			     "c2ln"),
		   "alg");
	/* libjwt 1.10 would take "hs256" as HS256; we take only "HS256". */
	expect_why(&cfg_hs,
		   raw_token("{\"alg\":\"hs256\"}", payload, strlen(payload),
			     NULL),
		   "alg");
}

/*
 * The classic key confusion: the attacker knows the RS256 public key PEM
 * and uses it as an HS256 secret. libjwt 1.10 alone accepts that token
 * (shown first, so this test proves the attack is real); auth_verify must
 * not.
 */
/*
 * RFC 7515 section 4.1.11: crit lists extensions the recipient must
 * understand; we understand none, so a correctly signed token with any crit
 * is refused, whatever its shape.
 */
static void test_crit_refused(void **state)
{
	static const char *const headers[] = {
		"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"crit\":[\"exp\"]}",
		("{\"alg\":\"HS256\",\"crit\":[\"http://example.com/x\"],"
		 "\"http://example.com/x\":true}"),
		"{\"alg\":\"HS256\",\"crit\":[]}",
		"{\"alg\":\"HS256\",\"crit\":\"b64\"}",
		"{\"alg\":\"HS256\",\"b64\":false,\"crit\":[\"b64\"]}",
	};
	const char payload[] = "{\"sub\":\"alice\",\"exp\":1900000000,"
			       "\"tenants\":[\"" T1 "\"],"
			       "\"scope\":\"devices:assign\"}";

	(void)state;
	/* The same claims without crit verify: only crit is refused. */
	assert_int_equal(verify_free(&cfg_hs, raw_token("{\"alg\":\"HS256\"}",
							 payload,
							 strlen(payload),
							 NULL)),
			 0);
	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++)
		expect_why(&cfg_hs,
			   raw_token(headers[i], payload, strlen(payload),
				     NULL),
			   "crit");
}

/*
 * Claims that are a JSON object followed by a NUL byte and more: libjwt
 * reads its claims as a C string and would take the object alone. Found
 * by fuzz_auth (the target signs what it mutates). Refused, signed or not.
 */
static void test_claims_with_nul_refused(void **state)
{
	const char object[] = "{\"sub\":\"alice\",\"exp\":1900000000,"
			      "\"tenants\":[\"" T1 "\"],"
			      "\"scope\":\"devices:assign\"}";
	char payload[sizeof(object) + 8];
	size_t n = sizeof(object) - 1;

	(void)state;
	memcpy(payload, object, n);
	/* The object alone verifies. */
	assert_int_equal(verify_free(&cfg_hs,
				     raw_token("{\"alg\":\"HS256\"}", payload,
					       n, NULL)),
			 0);
	memcpy(payload + n, "\0junk", 5);
	expect_why(&cfg_hs,
		   raw_token("{\"alg\":\"HS256\"}", payload, n + 5, NULL),
		   "claims");
	/* A NUL alone at the end, and one inside a string. */
	expect_why(&cfg_hs,
		   raw_token("{\"alg\":\"HS256\"}", payload, n + 1, NULL),
		   "claims");
	memcpy(payload, object, n);
	payload[9] = '\0'; /* in "alice" */
	expect_why(&cfg_hs,
		   raw_token("{\"alg\":\"HS256\"}", payload, n, NULL), "");
}

static void test_key_confusion(void **state)
{
	struct auth_claims c = base_claims();
	char err[128];
	jwt_t *jwt = NULL;
	char *t;

	c.sub = "mallory";
	t = auth_mint(AUTH_HS256, (const unsigned char *)rsa_a.pub,
		      rsa_a.pub_len, &c, err, sizeof(err));
	assert_non_null(t);
	assert_int_equal(jwt_decode(&jwt, t, (const unsigned char *)rsa_a.pub, (int)rsa_a.pub_len),
			 0);
	assert_int_equal(jwt_get_alg(jwt), JWT_ALG_HS256);
	jwt_free(jwt);
	expect_why(&cfg_rs, t, "alg");
}

static void test_rs256_when_hs256_configured(void **state)
{
	struct auth_claims c = base_claims();
	expect_why(&cfg_hs, mint_rs(&rsa_a, &c), "alg");
}

/* ---- iss / aud -------------------------------------------------------- */

static void test_issuer_audience(void **state)
{
	struct auth_config cfg;
	struct auth_claims c = base_claims();
	struct domain_principal who;
	char err[256];

	assert_int_equal(auth_config_load(&cfg, path_secret, NULL,
					  "https://idp.example",
					  "device-assignment", err,
					  sizeof(err)),
			 0);
	c.issuer = "https://idp.example";
	c.audience = "device-assignment";
	assert_int_equal(verify_free(&cfg, mint_hs(&c)), 0);
	/* Not configured: not checked. */
	assert_int_equal(verify_free(&cfg_hs, mint_hs(&c)), 0);

	c.issuer = "https://evil.example";
	expect_why(&cfg, mint_hs(&c), "issuer");
	c.issuer = NULL;
	expect_why(&cfg, mint_hs(&c), "issuer");
	c.issuer = "https://idp.example";
	c.audience = "other-service";
	expect_why(&cfg, mint_hs(&c), "audience");
	c.audience = NULL;
	expect_why(&cfg, mint_hs(&c), "audience");

	/* aud as an array of strings. */
	{
		char *t = signed_payload(
			"{\"sub\":\"a\",\"exp\":1900000000,"
			"\"iss\":\"https://idp.example\","
			"\"aud\":[\"x\",\"device-assignment\"]}");
		assert_int_equal(verify(&cfg, t, &who), 0);
		free(t);
	}
	expect_why(&cfg,
		   signed_payload("{\"sub\":\"a\",\"exp\":1900000000,"
				  "\"iss\":\"https://idp.example\","
				  "\"aud\":[\"x\",\"y\"]}"),
		   "audience");
	expect_why(&cfg,
		   signed_payload("{\"sub\":\"a\",\"exp\":1900000000,"
				  "\"iss\":\"https://idp.example\","
				  "\"aud\":[1,\"device-assignment\"]}"),
		   "aud");
	expect_why(&cfg,
		   signed_payload("{\"sub\":\"a\",\"exp\":1900000000,"
				  "\"iss\":\"https://idp.example\","
				  "\"aud\":{\"device-assignment\":1}}"),
		   "audience");
	expect_why(&cfg,
		   signed_payload("{\"sub\":\"a\",\"exp\":1900000000,"
				  "\"iss\":7,\"aud\":\"device-assignment\"}"),
		   "issuer");
	auth_config_release(&cfg);
}

/* ---- claims ----------------------------------------------------------- */

static void test_sub(void **state)
{
	struct auth_claims c = base_claims();
	struct domain_principal who;
	char long_sub[DOMAIN_SUB_SIZE + 1];
	char *t;

	expect_why(&cfg_hs, signed_payload("{\"exp\":1900000000}"), "sub");
	expect_why(&cfg_hs, signed_payload("{\"sub\":\"\",\"exp\":1900000000}"),
		   "sub");
	expect_why(&cfg_hs, signed_payload("{\"sub\":42,\"exp\":1900000000}"),
		   "sub");
	expect_why(&cfg_hs,
		   signed_payload("{\"sub\":\"a\\nb\",\"exp\":1900000000}"),
		   "sub");
	expect_why(&cfg_hs,
		   signed_payload("{\"sub\":\"a\\u0000b\",\"exp\":1900000000}"),
		   "signature or malformed");

	memset(long_sub, 'x', DOMAIN_SUB_SIZE - 1);
	long_sub[DOMAIN_SUB_SIZE - 1] = '\0';
	c.sub = long_sub;
	t = mint_hs(&c);
	assert_int_equal(verify(&cfg_hs, t, &who), 0);
	assert_int_equal(strlen(who.sub), DOMAIN_SUB_SIZE - 1);
	free(t);
	long_sub[DOMAIN_SUB_SIZE - 1] = 'x';
	long_sub[DOMAIN_SUB_SIZE] = '\0';
	expect_why(&cfg_hs, mint_hs(&c), "sub");

	/* UTF-8 is fine. */
	c.sub = "J\xc3\xa9r\xc3\xb4me";
	t = mint_hs(&c);
	assert_int_equal(verify(&cfg_hs, t, &who), 0);
	assert_string_equal(who.sub, "J\xc3\xa9r\xc3\xb4me");
	free(t);
}

static void test_tenants_normalised(void **state)
{
	struct auth_claims c = base_claims();
	const char *tenants[] = {T1_BRACED_UPPER, T2_PLAIN, T1};
	struct domain_principal who;
	char *t;

	c.tenants = tenants;
	c.n_tenants = 3;
	t = mint_hs(&c);
	assert_int_equal(verify(&cfg_hs, t, &who), 0);
	assert_false(who.is_all_tenants);
	assert_int_equal(who.n_tenants, 2); /* T1 twice counts once */
	assert_string_equal(who.tenants[0], T1);
	assert_string_equal(who.tenants[1], T2);
	free(t);
}

static void test_tenants_star_and_missing(void **state)
{
	struct auth_claims c = base_claims();
	const char *star[] = {"*"};
	const char *mixed[] = {T2, "*"};
	struct domain_principal who;
	char *t;

	c.tenants = star;
	c.n_tenants = 1;
	t = mint_hs(&c);
	assert_int_equal(verify(&cfg_hs, t, &who), 0);
	assert_true(who.is_all_tenants);
	assert_int_equal(who.n_tenants, 0);
	free(t);

	c.tenants = mixed;
	c.n_tenants = 2;
	t = mint_hs(&c);
	assert_int_equal(verify(&cfg_hs, t, &who), 0);
	assert_true(who.is_all_tenants);
	assert_int_equal(who.n_tenants, 1);
	assert_string_equal(who.tenants[0], T2);
	free(t);

	/* Missing: valid token that covers nothing. */
	c.tenants = NULL;
	c.n_tenants = 0;
	t = mint_hs(&c);
	assert_int_equal(verify(&cfg_hs, t, &who), 0);
	assert_false(who.is_all_tenants);
	assert_int_equal(who.n_tenants, 0);
	free(t);
}

static void test_tenants_invalid(void **state)
{
	struct auth_claims c = base_claims();
	const char *bad[] = {T1, "acme"};
	const char *empty[] = {""};
	const char *stars[] = {"**"};

	c.tenants = bad;
	c.n_tenants = 2;
	expect_why(&cfg_hs, mint_hs(&c), "tenants[1]");
	c.tenants = empty;
	c.n_tenants = 1;
	expect_why(&cfg_hs, mint_hs(&c), "tenants[0]");
	c.tenants = stars;
	expect_why(&cfg_hs, mint_hs(&c), "tenants[0]");
	expect_why(&cfg_hs,
		   signed_payload("{\"sub\":\"a\",\"exp\":1900000000,"
				  "\"tenants\":\"" T1 "\"}"),
		   "not an array");
	expect_why(&cfg_hs,
		   signed_payload("{\"sub\":\"a\",\"exp\":1900000000,"
				  "\"tenants\":[42]}"),
		   "tenants[0]");
	expect_why(&cfg_hs,
		   signed_payload("{\"sub\":\"a\",\"exp\":1900000000,"
				  "\"tenants\":[[\"" T1 "\"]]}"),
		   "tenants[0]");
	expect_why(&cfg_hs,
		   signed_payload("{\"sub\":\"a\",\"exp\":1900000000,"
				  "\"tenants\":{\"a\":1}}"),
		   "not an array");
}

static void test_tenants_limit(void **state)
{
	struct auth_claims c = base_claims();
	const char *tenants[DOMAIN_MAX_TENANTS + 1];
	char guids[DOMAIN_MAX_TENANTS + 1][DAS_GUID_SIZE];
	struct domain_principal who;
	char *t;

	for (int i = 0; i <= DOMAIN_MAX_TENANTS; i++) {
		snprintf(guids[i], sizeof(guids[i]),
			 "00000000-0000-0000-0000-%012d", i);
		tenants[i] = guids[i];
	}
	c.tenants = tenants;
	c.n_tenants = DOMAIN_MAX_TENANTS;
	t = mint_hs(&c);
	assert_int_equal(verify(&cfg_hs, t, &who), 0);
	assert_int_equal(who.n_tenants, DOMAIN_MAX_TENANTS);
	assert_string_equal(who.tenants[DOMAIN_MAX_TENANTS - 1],
			    guids[DOMAIN_MAX_TENANTS - 1]);
	free(t);
	c.n_tenants = DOMAIN_MAX_TENANTS + 1;
	expect_why(&cfg_hs, mint_hs(&c), "more than");
}

static unsigned scopes_of(const char *scope)
{
	struct auth_claims c = base_claims();
	struct domain_principal who;
	char *t;
	int rc;

	c.scope = scope;
	t = mint_hs(&c);
	rc = verify(&cfg_hs, t, &who);
	free(t);
	assert_int_equal(rc, 0);
	return who.scopes;
}

static void test_scopes(void **state)
{
	assert_int_equal(scopes_of("devices:assign"), DOMAIN_SCOPE_ASSIGN);
	assert_int_equal(scopes_of("directory:admin"), DOMAIN_SCOPE_DIRECTORY);
	assert_int_equal(scopes_of("openid devices:assign profile "
				   "directory:admin"),
			 DOMAIN_SCOPE_ASSIGN | DOMAIN_SCOPE_DIRECTORY);
	assert_int_equal(scopes_of("  devices:assign   "), DOMAIN_SCOPE_ASSIGN);
	assert_int_equal(scopes_of("devices:assignx devices: assign"), 0);
	assert_int_equal(scopes_of("DEVICES:ASSIGN"), 0);
	assert_int_equal(scopes_of("ledger:read"), DOMAIN_SCOPE_LEDGER);
	assert_int_equal(scopes_of("devices:assign ledger:read"),
			 DOMAIN_SCOPE_ASSIGN | DOMAIN_SCOPE_LEDGER);
	assert_int_equal(scopes_of("ledger:write ledger"), 0);
	assert_int_equal(scopes_of("devices:assign,directory:admin"), 0);
	assert_int_equal(scopes_of(NULL), 0); /* claim omitted */
	expect_why(&cfg_hs,
		   signed_payload("{\"sub\":\"a\",\"exp\":1900000000,"
				  "\"scope\":[\"devices:assign\"]}"),
		   "scope");
}

/* ---- the Authorization value ------------------------------------------ */

static int verify_value(const char *v, size_t len)
{
	struct domain_principal who;
	char why[128];
	return auth_verify(&cfg_hs, v, len, NOW, &who, why, sizeof(why));
}

static void test_authorization_values(void **state)
{
	struct auth_claims c = base_claims();
	char *t = mint_hs(&c);
	size_t tl = strlen(t);
	char *buf = malloc(AUTH_MAX_TOKEN + 64);
	int n;

	assert_non_null(buf);
	assert_int_equal(verify_value(NULL, 0), -1);
	assert_int_equal(verify_value("", 0), -1);
	assert_int_equal(verify_value("Bearer", 6), -1);
	assert_int_equal(verify_value("Bearer ", 7), -1);
	assert_int_equal(verify_value("Bearer   ", 9), -1);
	assert_int_equal(verify_value("Basic x", 7), -1);
	assert_int_equal(verify_value("Basic YWxhZGRpbjpvcGVuc2VzYW1l", 30), -1);
	assert_int_equal(verify_value(t, tl), -1); /* no scheme */

	n = snprintf(buf, AUTH_MAX_TOKEN, "Bearer %s", t);
	assert_int_equal(verify_value(buf, (size_t)n), 0);
	n = snprintf(buf, AUTH_MAX_TOKEN, "bEARER %s", t);
	assert_int_equal(verify_value(buf, (size_t)n), 0);
	n = snprintf(buf, AUTH_MAX_TOKEN, "Bearer    %s", t);
	assert_int_equal(verify_value(buf, (size_t)n), 0);
	n = snprintf(buf, AUTH_MAX_TOKEN, "Bearer\t%s", t);
	assert_int_equal(verify_value(buf, (size_t)n), -1);
	n = snprintf(buf, AUTH_MAX_TOKEN, "Bearer%s", t);
	assert_int_equal(verify_value(buf, (size_t)n), -1);
	n = snprintf(buf, AUTH_MAX_TOKEN, " Bearer %s", t);
	assert_int_equal(verify_value(buf, (size_t)n), -1);
	/* Trailing OWS (spaces, tabs) is not part of the value: dropped. */
	n = snprintf(buf, AUTH_MAX_TOKEN, "Bearer %s ", t);
	assert_int_equal(verify_value(buf, (size_t)n), 0);
	n = snprintf(buf, AUTH_MAX_TOKEN, "Bearer %s \t \t", t);
	assert_int_equal(verify_value(buf, (size_t)n), 0);
	/* ... but nothing else after the token, and only OWS. */
	n = snprintf(buf, AUTH_MAX_TOKEN, "Bearer %s \r", t);
	assert_int_equal(verify_value(buf, (size_t)n), -1);
	n = snprintf(buf, AUTH_MAX_TOKEN, "Bearer %s x", t);
	assert_int_equal(verify_value(buf, (size_t)n), -1);
	n = snprintf(buf, AUTH_MAX_TOKEN, "Bearer %s\n", t);
	assert_int_equal(verify_value(buf, (size_t)n), -1);
	n = snprintf(buf, AUTH_MAX_TOKEN, "Bearer \t ");
	assert_int_equal(verify_value(buf, (size_t)n), -1);
	n = snprintf(buf, AUTH_MAX_TOKEN, "Bearer %s.x", t);
	assert_int_equal(verify_value(buf, (size_t)n), -1);
	n = snprintf(buf, AUTH_MAX_TOKEN, "Bearer %s==", t);
	assert_int_equal(verify_value(buf, (size_t)n), -1);
	n = snprintf(buf, AUTH_MAX_TOKEN, "Token %s", t);
	assert_int_equal(verify_value(buf, (size_t)n), -1);

	/* len rules, not NUL: a valid value followed by a NUL and more. */
	n = snprintf(buf, AUTH_MAX_TOKEN, "Bearer %s", t);
	buf[n] = '\0';
	memcpy(buf + n + 1, "xyz", 3);
	assert_int_equal(verify_value(buf, (size_t)n + 4), -1);
	/* A NUL in the middle of the token. */
	buf[7 + 5] = '\0';
	assert_int_equal(verify_value(buf, (size_t)n), -1);
	/* len shorter than the string: the signature is cut. */
	n = snprintf(buf, AUTH_MAX_TOKEN, "Bearer %s", t);
	assert_int_equal(verify_value(buf, (size_t)n - 1), -1);

	/* Over-long: refused on length alone. */
	memset(buf, 'A', AUTH_MAX_TOKEN + 1);
	memcpy(buf, "Bearer ", 7);
	assert_int_equal(verify_value(buf, AUTH_MAX_TOKEN + 1), -1);
	free(buf);
	free(t);
}

static void test_who_untouched_on_failure(void **state)
{
	struct domain_principal who, before;
	char why[128] = "";

	memset(&who, 0x5a, sizeof(who));
	before = who;
	assert_int_equal(auth_verify(&cfg_hs, "Bearer a.b.c", 12, NOW, &who,
				     why, sizeof(why)),
			 -1);
	assert_memory_equal(&who, &before, sizeof(who));
	assert_true(strlen(why) > 0);
	/* A NULL reason buffer is allowed. */
	assert_int_equal(auth_verify(&cfg_hs, "x", 1, NOW, &who, NULL, 0), -1);
	assert_memory_equal(&who, &before, sizeof(who));
}

/* ---- hostile input ---------------------------------------------------- */

static void test_hostile(void **state)
{
	static const char *const garbage[] = {
		"a.b.c",
		"____.____.____",
		"eyJ.eyJ.eyJ",
		"e.e.e",
		"eyJhbGciOiJIUzI1NiJ9.eyJ.x",
		"..",
		"a..b",
		".a.b",
		"a.b.",
		"a.b.c.d",
		"!!!!.????.####",
		"eyJhbGciOiJIUzI1NiJ9..c2ln",
	};
	struct domain_principal who;
	char *t, *deep, *big;
	size_t i;

	for (i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		assert_int_equal(verify(&cfg_hs, garbage[i], &who), -1);
		assert_int_equal(verify(&cfg_rs, garbage[i], &who), -1);
	}

	/* Header that is not JSON, or JSON that is not an object. */
	expect_why(&cfg_hs, raw_token("alg=HS256", "{}", 2, "c2ln"), "header");
	expect_why(&cfg_hs, raw_token("[\"HS256\"]", "{}", 2, "c2ln"), "header");
	expect_why(&cfg_hs, raw_token("{\"alg\":\"HS256\",\"alg\":\"none\"}",
				      "{}", 2, NULL),
		   "header");

	/* Non-UTF-8 in the payload, correctly signed. */
	{
		const char p[] = "{\"sub\":\"\xff\xfe\",\"exp\":1900000000}";
		t = raw_token("{\"alg\":\"HS256\"}", p, strlen(p), NULL);
		assert_int_equal(verify_free(&cfg_hs, t), -1);
	}
	/* Payload that is an array, a string, or not JSON, signed. */
	expect_why(&cfg_hs, signed_payload("[1,2,3]"), "not an object");
	expect_why(&cfg_hs, signed_payload("\"sub\""), "malformed");
	expect_why(&cfg_hs, signed_payload("{\"sub\":"), "malformed");

	/* Deeply nested JSON, beyond and within the parser's depth limit. */
	deep = malloc(4001);
	assert_non_null(deep);
	memset(deep, '[', 3000);
	memset(deep + 3000, ']', 1000);
	deep[4000] = '\0';
	assert_int_equal(verify_free(&cfg_hs, signed_payload(deep)), -1);
	free(deep);
	{
		size_t depth = 1500, o = 0;
		const char head[] = "{\"sub\":\"a\",\"exp\":1900000000,\"x\":";
		deep = malloc(sizeof(head) + 2 * depth + 2);
		assert_non_null(deep);
		memcpy(deep, head, sizeof(head) - 1);
		o = sizeof(head) - 1;
		memset(deep + o, '[', depth);
		o += depth;
		memset(deep + o, ']', depth);
		o += depth;
		deep[o++] = '}';
		deep[o] = '\0';
		/* Deep but within the parser's limit: our code never recurses. */
		t = signed_payload(deep);
		assert_true(strlen(t) + 7 <= AUTH_MAX_TOKEN);
		assert_int_equal(verify_free(&cfg_hs, t), 0);
		free(deep);
	}
	{
		/* Nested but short enough: accepted, the extra claim ignored. */
		const char p[] = "{\"sub\":\"a\",\"exp\":1900000000,\"x\":"
				 "[[[[[[[[[[{\"y\":[[[[[]]]]]}]]]]]]]]]]}";
		assert_int_equal(verify_free(&cfg_hs, signed_payload(p)), 0);
	}

	/* The biggest value we accept, with a big but valid claim. */
	{
		const char head[] = "{\"sub\":\"a\",\"exp\":1900000000,\"pad\":\"";
		size_t pad = 5900;
		size_t n = sizeof(head) - 1 + pad + 3;
		big = malloc(n);
		assert_non_null(big);
		memcpy(big, head, sizeof(head) - 1);
		memset(big + sizeof(head) - 1, 'p', pad);
		memcpy(big + sizeof(head) - 1 + pad, "\"}", 3);
		t = signed_payload(big);
		assert_true(strlen(t) + 7 <= AUTH_MAX_TOKEN);
		assert_int_equal(verify_free(&cfg_hs, t), 0);
		free(big);
	}

	/* Claims of the wrong types all at once. */
	expect_why(&cfg_hs,
		   signed_payload("{\"sub\":{},\"exp\":[],\"tenants\":1,"
				  "\"scope\":false}"),
		   "exp");
	/* A huge RS256 "signature" of garbage. */
	{
		char sig[4000];
		memset(sig, 'Q', sizeof(sig) - 1);
		sig[sizeof(sig) - 1] = '\0';
		t = raw_token("{\"alg\":\"RS256\"}", "{}", 2, sig);
		expect_why(&cfg_rs, t, "signature");
	}
}

/* ---- configuration ---------------------------------------------------- */

static void test_config_load(void **state)
{
	struct auth_config cfg;
	char err[256];
	char path[160];

	/* The secret's trailing newline is dropped. */
	struct auth_key_info info[2];
	assert_int_equal(auth_config_keys(&cfg_hs, info, 2), 1);
	assert_int_equal(info[0].alg, AUTH_HS256);
	assert_int_equal(info[0].key_len, strlen(SECRET));
	assert_string_equal(info[0].kid, "");
	assert_null(cfg_hs.issuer);
	assert_null(cfg_hs.audience);
	assert_int_equal(auth_config_keys(&cfg_rs, info, 2), 1);
	assert_int_equal(info[0].alg, AUTH_RS256);
	assert_null(cfg_rs.issuer); /* "" means not checked */
	assert_null(cfg_rs.audience);

	assert_int_equal(auth_config_load(&cfg, path_secret, path_pub, NULL,
					  NULL, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "only one"));
	assert_int_equal(auth_config_load(&cfg, NULL, "", NULL, NULL, err,
					  sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "no JWT key"));
	snprintf(path, sizeof(path), "%s/missing", tmpdir);
	assert_int_equal(auth_config_load(&cfg, path, NULL, NULL, NULL, err,
					  sizeof(err)),
			 -1);
	assert_non_null(strstr(err, path));
	assert_null(strchr(err, '\n'));
	/* A private key where the public key belongs. */
	assert_int_equal(auth_config_load(&cfg, NULL, path_priv, NULL, NULL,
					  err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "private key"));
	assert_int_equal(auth_config_load(&cfg, NULL, path_junk, NULL, NULL,
					  err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "not a PEM public key"));
	assert_null(cfg.keys);

	/* An empty secret, or one that is only a newline. */
	snprintf(path, sizeof(path), "%s/empty", tmpdir);
	write_file(path, "\n", 1);
	assert_int_equal(auth_config_load(&cfg, path, NULL, NULL, NULL, err,
					  sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "empty"));
	unlink(path);

	/* A file over 64 KiB. */
	{
		size_t n = 64 * 1024 + 1;
		char *big = malloc(n);
		assert_non_null(big);
		memset(big, 's', n);
		snprintf(path, sizeof(path), "%s/big", tmpdir);
		write_file(path, big, n);
		free(big);
		assert_int_equal(auth_config_load(&cfg, path, NULL, NULL, NULL,
						  err, sizeof(err)),
				 -1);
		assert_non_null(strstr(err, "larger"));
		unlink(path);
	}
	auth_config_release(&cfg); /* zeroed by the failed load: a no-op */
	auth_config_release(NULL);
}

static void test_read_key_file(void **state)
{
	unsigned char *key = NULL;
	size_t len = 0;
	char err[256];
	char path[160];

	assert_int_equal(auth_read_key_file(path_pub, false, &key, &len, err,
					    sizeof(err)),
			 0);
	assert_int_equal(len, rsa_a.pub_len);
	assert_int_equal(key[len], '\0');
	assert_memory_equal(key, rsa_a.pub, len); /* newline kept */
	free(key);

	snprintf(path, sizeof(path), "%s/crlf", tmpdir);
	write_file(path, "s3cret\r\n", 8);
	assert_int_equal(auth_read_key_file(path, true, &key, &len, err,
					    sizeof(err)),
			 0);
	assert_int_equal(len, 6);
	assert_string_equal((char *)key, "s3cret");
	free(key);
	write_file(path, "s3cret\n\n", 8); /* only one newline goes */
	assert_int_equal(auth_read_key_file(path, true, &key, &len, err,
					    sizeof(err)),
			 0);
	assert_int_equal(len, 7);
	free(key);
	unlink(path);
	assert_int_equal(auth_read_key_file(NULL, true, &key, &len, err,
					    sizeof(err)),
			 -1);
}

static void test_mint_errors(void **state)
{
	struct auth_claims c = base_claims();
	const char *bad_tenant[] = {NULL};
	char err[256];

	assert_null(auth_mint(AUTH_RS256, (const unsigned char *)rsa_a.pub,
			      rsa_a.pub_len, &c, err, sizeof(err)));
	assert_non_null(strstr(err, "private key"));
	assert_null(auth_mint(AUTH_HS256, (const unsigned char *)"", 0, &c,
			      err, sizeof(err)));
	assert_null(auth_mint(AUTH_RS256, (const unsigned char *)"PRIVATE KEY",
			      11, &c, err, sizeof(err)));
	c.sub = NULL;
	assert_null(auth_mint(AUTH_HS256, (const unsigned char *)SECRET,
			      strlen(SECRET), &c, err, sizeof(err)));
	c = base_claims();
	c.tenants = bad_tenant;
	assert_null(auth_mint(AUTH_HS256, (const unsigned char *)SECRET,
			      strlen(SECRET), &c, err, sizeof(err)));
	c = base_claims();
	c.sub = "\xff";
	assert_null(auth_mint(AUTH_HS256, (const unsigned char *)SECRET,
			      strlen(SECRET), &c, err, sizeof(err)));
	assert_null(auth_mint(AUTH_HS256, (const unsigned char *)SECRET,
			      strlen(SECRET), NULL, err, sizeof(err)));
}

/* ---- threads ---------------------------------------------------------- */

struct worker {
	const struct auth_config *cfg;
	const char *value;
	int failures;
};

static void *verify_loop(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < 200; i++) {
		struct domain_principal who;
		char why[128];
		if (auth_verify(w->cfg, w->value, strlen(w->value), NOW, &who,
				why, sizeof(why)) != 0 ||
		    strcmp(who.sub, "alice") != 0 ||
		    strcmp(who.tenants[0], T1) != 0)
			w->failures++;
	}
	return NULL;
}

static void test_concurrent_verify(void **state)
{
	struct auth_claims c = base_claims();
	char *hs = mint_hs(&c), *rs = mint_rs(&rsa_a, &c);
	char vh[2048], vr[2048];
	pthread_t th[4];
	struct worker w[4];

	snprintf(vh, sizeof(vh), "Bearer %s", hs);
	snprintf(vr, sizeof(vr), "Bearer %s", rs);
	for (int i = 0; i < 4; i++) {
		w[i].cfg = i % 2 ? &cfg_rs : &cfg_hs;
		w[i].value = i % 2 ? vr : vh;
		w[i].failures = 0;
		assert_int_equal(pthread_create(&th[i], NULL, verify_loop, &w[i]),
				 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(w[i].failures, 0);
	}
	free(hs);
	free(rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hs256_valid),
		cmocka_unit_test(test_rs256_valid),
		cmocka_unit_test(test_expiry_and_leeway),
		cmocka_unit_test(test_not_before),
		cmocka_unit_test(test_exp_required_and_typed),
		cmocka_unit_test(test_wrong_key),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_alg_none),
		cmocka_unit_test(test_crit_refused),
		cmocka_unit_test(test_claims_with_nul_refused),
		cmocka_unit_test(test_key_confusion),
		cmocka_unit_test(test_rs256_when_hs256_configured),
		cmocka_unit_test(test_issuer_audience),
		cmocka_unit_test(test_sub),
		cmocka_unit_test(test_tenants_normalised),
		cmocka_unit_test(test_tenants_star_and_missing),
		cmocka_unit_test(test_tenants_invalid),
		cmocka_unit_test(test_tenants_limit),
		cmocka_unit_test(test_scopes),
		cmocka_unit_test(test_authorization_values),
		cmocka_unit_test(test_who_untouched_on_failure),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_config_load),
		cmocka_unit_test(test_read_key_file),
		cmocka_unit_test(test_mint_errors),
		cmocka_unit_test(test_concurrent_verify),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
