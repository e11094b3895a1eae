#include "jwks.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "common/log.h"

#define MIN_RSA_BITS 2048
#define MIN_HS256_SECRET 32
#define MAX_COMPONENT 1024 /* bytes of one decoded number: RSA-8192 */

static int b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/*
 * Strict unpadded base64url (RFC 7515 section 2) into a malloc'd buffer.
 * Returns the length, or -1 on any other character, an impossible length
 * or non-zero trailing bits.
 */
static long b64url_decode(const char *in, size_t len, unsigned char **out)
{
	unsigned char *buf;
	size_t o = 0;
	unsigned acc = 0;
	int bits = 0;

	*out = NULL;
	if (len == 0 || len % 4 == 1 || len > 4 * MAX_COMPONENT)
		return -1;
	buf = malloc(len);
	if (!buf)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int v = b64url_value((unsigned char)in[i]);
		if (v < 0)
			goto fail;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0)
		goto fail;
	*out = buf;
	return (long)o;
fail:
	OPENSSL_cleanse(buf, len);
	free(buf);
	return -1;
}

/* A member that must be a base64url string; -1 with a reason. */
static long member_bytes(json_t *jwk, const char *name, const char *kid,
			 unsigned char **out, char *err, size_t err_size)
{
	json_t *v = json_object_get(jwk, name);
	long n;

	*out = NULL;
	if (!json_is_string(v)) {
		snprintf(err, err_size, "key %s: \"%s\" missing", kid, name);
		return -1;
	}
	n = b64url_decode(json_string_value(v), json_string_length(v), out);
	if (n <= 0) {
		snprintf(err, err_size, "key %s: \"%s\" is not base64url", kid,
			 name);
		return -1;
	}
	return n;
}

/* The SubjectPublicKeyInfo PEM of pkey, malloc'd and NUL-terminated. */
static unsigned char *pem_of(EVP_PKEY *pkey, size_t *len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	unsigned char *out = NULL;
	char *data;
	long n;

	if (!bio || PEM_write_bio_PUBKEY(bio, pkey) != 1)
		goto out;
	n = BIO_get_mem_data(bio, &data);
	if (n <= 0)
		goto out;
	out = malloc((size_t)n + 1);
	if (!out)
		goto out;
	memcpy(out, data, (size_t)n);
	out[n] = '\0';
	*len = (size_t)n;
out:
	BIO_free(bio);
	return out;
}

/* Builds a public key of type name from params; NULL on failure. */
static EVP_PKEY *key_from(const char *name, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, name, NULL);
	EVP_PKEY *pkey = NULL;

	if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return pkey;
}

/* Keeps pkey as PEM in out: returns 1, or -1 with err. */
static int keep_pem(EVP_PKEY *pkey, const char *kid, struct auth_jwk *out,
		    char *err, size_t err_size)
{
	out->key = pem_of(pkey, &out->key_len);
	if (!out->key) {
		snprintf(err, err_size, "key %s: cannot write its PEM", kid);
		return -1;
	}
	return 1;
}

/* 1 = made, 0 = skip (warned), -1 = error. */
static int rsa_key(json_t *jwk, const char *kid, struct auth_jwk *out,
		   char *err, size_t err_size)
{
	unsigned char *n = NULL, *e = NULL;
	long n_len, e_len;
	BIGNUM *bn_n = NULL, *bn_e = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pkey = NULL;
	int result = -1;

	n_len = member_bytes(jwk, "n", kid, &n, err, err_size);
	if (n_len < 0)
		goto out;
	e_len = member_bytes(jwk, "e", kid, &e, err, err_size);
	if (e_len < 0)
		goto out;
	bn_n = BN_bin2bn(n, (int)n_len, NULL);
	bn_e = BN_bin2bn(e, (int)e_len, NULL);
	bld = OSSL_PARAM_BLD_new();
	if (!bn_n || !bn_e || !bld ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) ||
	    !(pkey = key_from("RSA", bld))) {
		snprintf(err, err_size, "key %s: not a valid RSA public key",
			 kid);
		goto out;
	}
	if (EVP_PKEY_get_bits(pkey) < MIN_RSA_BITS) {
		das_log(DAS_LOG_WARN,
			"JWKS: key %s ignored: RSA key of %d bits, under %d",
			kid, EVP_PKEY_get_bits(pkey), MIN_RSA_BITS);
		result = 0;
		goto out;
	}
	result = keep_pem(pkey, kid, out, err, err_size);
out:
	ERR_clear_error();
	EVP_PKEY_free(pkey);
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn_n);
	BN_free(bn_e);
	free(n);
	free(e);
	return result;
}

static int ec_key(json_t *jwk, const char *kid, struct auth_jwk *out,
		  char *err, size_t err_size)
{
	unsigned char *x = NULL, *y = NULL, point[65];
	long x_len, y_len;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pkey = NULL;
	EVP_PKEY_CTX *check = NULL;
	int result = -1;

	x_len = member_bytes(jwk, "x", kid, &x, err, err_size);
	if (x_len < 0)
		goto out;
	y_len = member_bytes(jwk, "y", kid, &y, err, err_size);
	if (y_len < 0)
		goto out;
	if (x_len != 32 || y_len != 32) {
		snprintf(err, err_size,
			 "key %s: P-256 coordinates must be 32 bytes", kid);
		goto out;
	}
	point[0] = 0x04; /* uncompressed: 04 || x || y */
	memcpy(point + 1, x, 32);
	memcpy(point + 33, y, 32);
	bld = OSSL_PARAM_BLD_new();
	if (!bld ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
					     "prime256v1", 0) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
					      point, sizeof(point)) ||
	    !(pkey = key_from("EC", bld))) {
		snprintf(err, err_size, "key %s: not a valid P-256 public key",
			 kid);
		goto out;
	}
	/* The point must be on the curve (invalid-curve attacks). */
	check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	if (!check || EVP_PKEY_public_check(check) != 1) {
		snprintf(err, err_size, "key %s: point is not on P-256", kid);
		goto out;
	}
	result = keep_pem(pkey, kid, out, err, err_size);
out:
	ERR_clear_error();
	EVP_PKEY_CTX_free(check);
	EVP_PKEY_free(pkey);
	OSSL_PARAM_BLD_free(bld);
	free(x);
	free(y);
	return result;
}

static int oct_key(json_t *jwk, const char *kid, struct auth_jwk *out,
		   char *err, size_t err_size)
{
	unsigned char *k = NULL;
	long k_len = member_bytes(jwk, "k", kid, &k, err, err_size);

	if (k_len < 0)
		return -1;
	if (k_len < MIN_HS256_SECRET) {
		das_log(DAS_LOG_WARN,
			"JWKS: key %s ignored: HS256 secret of %ld bytes, "
			"under %d",
			kid, k_len, MIN_HS256_SECRET);
		OPENSSL_cleanse(k, (size_t)k_len);
		free(k);
		return 0;
	}
	out->key = k;
	out->key_len = (size_t)k_len;
	return 1;
}

static bool kid_is_printable(const char *s, size_t n)
{
	if (n == 0 || n > AUTH_JWKS_MAX_KID)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

/*
 * The alg a key of this kty verifies: the JWK's own alg when given, else
 * the one alg we verify for that kty. Returns 0, or 1 (skip, warned).
 */
static int pick_alg(json_t *jwk, const char *kty, const char *kid,
		    enum auth_alg *alg)
{
	json_t *a = json_object_get(jwk, "alg");
	json_t *crv = json_object_get(jwk, "crv");
	const char *name;

	if (strcmp(kty, "RSA") == 0) {
		*alg = AUTH_RS256;
	} else if (strcmp(kty, "oct") == 0) {
		*alg = AUTH_HS256;
	} else if (strcmp(kty, "EC") == 0) {
		if (!json_is_string(crv) ||
		    strcmp(json_string_value(crv), "P-256") != 0) {
			das_log(DAS_LOG_WARN,
				"JWKS: key %s ignored: EC curve is not P-256",
				kid);
			return 1;
		}
		*alg = AUTH_ES256;
	} else {
		das_log(DAS_LOG_WARN, "JWKS: key %s ignored: unknown kty %.16s",
			kid, kty);
		return 1;
	}
	if (!a)
		return 0;
	name = json_is_string(a) ? json_string_value(a) : "";
	if (strcmp(name, auth_alg_name(*alg)) != 0) {
		das_log(DAS_LOG_WARN,
			"JWKS: key %s ignored: alg %.16s is not %s (the alg "
			"verified for kty %s)",
			kid, name, auth_alg_name(*alg), kty);
		return 1;
	}
	return 0;
}

/* 1 = made, 0 = skipped, -1 = error. */
static int one_key(json_t *jwk, size_t index, struct auth_jwk *out, char *err,
		   size_t err_size)
{
	json_t *kty = json_object_get(jwk, "kty");
	json_t *kid = json_object_get(jwk, "kid");
	json_t *use = json_object_get(jwk, "use");
	char name[AUTH_JWKS_MAX_KID + 1];
	int rc;

	if (!json_is_object(jwk) || !json_is_string(kty)) {
		snprintf(err, err_size, "keys[%zu] has no kty", index);
		return -1;
	}
	if (!json_is_string(kid) ||
	    !kid_is_printable(json_string_value(kid), json_string_length(kid))) {
		das_log(DAS_LOG_WARN,
			"JWKS: keys[%zu] ignored: no kid of 1..%d printable "
			"characters",
			index, AUTH_JWKS_MAX_KID);
		return 0;
	}
	snprintf(name, sizeof(name), "%s", json_string_value(kid));
	if (use && (!json_is_string(use) ||
		    strcmp(json_string_value(use), "sig") != 0)) {
		das_log(DAS_LOG_WARN, "JWKS: key %s ignored: use is not \"sig\"",
			name);
		return 0;
	}
	if (pick_alg(jwk, json_string_value(kty), name, &out->alg) != 0)
		return 0;
	switch (out->alg) {
	case AUTH_RS256:
		rc = rsa_key(jwk, name, out, err, err_size);
		break;
	case AUTH_ES256:
		rc = ec_key(jwk, name, out, err, err_size);
		break;
	default:
		rc = oct_key(jwk, name, out, err, err_size);
		break;
	}
	if (rc == 1 && !(out->kid = strdup(name))) {
		snprintf(err, err_size, "out of memory");
		rc = -1;
	}
	return rc;
}

int auth_jwks_parse(const unsigned char *text, size_t len, const char *what,
		    struct auth_jwk **keys, size_t *n, char *err,
		    size_t err_size)
{
	json_t *doc, *arr, *jwk;
	json_error_t jerr;
	struct auth_jwk *out = NULL;
	size_t count = 0, i;
	char why[200];
	int result = -1;

	*keys = NULL;
	*n = 0;
	doc = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc) {
		snprintf(err, err_size, "%s: not JSON (line %d: %.80s)", what,
			 jerr.line, jerr.text);
		return -1;
	}
	arr = json_object_get(doc, "keys");
	if (!json_is_array(arr)) {
		snprintf(err, err_size, "%s: no \"keys\" array", what);
		goto out;
	}
	if (json_array_size(arr) > AUTH_JWKS_MAX_KEYS) {
		snprintf(err, err_size, "%s: more than %d keys", what,
			 AUTH_JWKS_MAX_KEYS);
		goto out;
	}
	out = calloc(json_array_size(arr) + 1, sizeof(*out));
	if (!out) {
		snprintf(err, err_size, "out of memory");
		goto out;
	}
	json_array_foreach(arr, i, jwk) {
		int rc = one_key(jwk, i, &out[count], why, sizeof(why));
		if (rc < 0) {
			snprintf(err, err_size, "%s: %s", what, why);
			goto out;
		}
		if (rc == 0)
			continue;
		for (size_t k = 0; k < count; k++)
			if (strcmp(out[k].kid, out[count].kid) == 0) {
				snprintf(err, err_size,
					 "%s: two keys with kid %s", what,
					 out[count].kid);
				count++;
				goto out;
			}
		count++;
	}
	if (count == 0) {
		snprintf(err, err_size, "%s: no usable key (RS256, ES256 or "
			 "HS256 signing keys with a kid)", what);
		goto out;
	}
	*keys = out;
	*n = count;
	out = NULL;
	result = 0;
out:
	if (out)
		auth_jwks_free(out, count + 1);
	json_decref(doc);
	return result;
}

void auth_jwks_free(struct auth_jwk *keys, size_t n)
{
	if (!keys)
		return;
	for (size_t i = 0; i < n; i++) {
		if (keys[i].key) {
			OPENSSL_cleanse(keys[i].key, keys[i].key_len);
			free(keys[i].key);
		}
		free(keys[i].kid);
	}
	free(keys);
}
