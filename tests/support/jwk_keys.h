/*
 * Test keys and their JWKs: an RSA-2048, EC P-256 or HS256 key made with
 * OpenSSL, its PEMs, and the JWK object text a JWKS document would carry
 * (RFC 7518 section 6). Header-only, for the unit and integration tests;
 * any failure aborts (a test bug).
 */
#ifndef DAS_TESTS_JWK_KEYS_H
#define DAS_TESTS_JWK_KEYS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

struct test_key {
	char *priv; /* PEM private key (RSA, EC) or the raw secret (oct) */
	size_t priv_len;
	char *pub;  /* PEM public key; NULL for oct */
	size_t pub_len;
	char jwk[2048]; /* {"kty":...,"kid":...,...} */
};

static inline char *test_key_b64url(const unsigned char *in, size_t len)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "abcdefghijklmnopqrstuvwxyz0123456789-_";
	char *out = malloc(len / 3 * 4 + 5);
	size_t o = 0, i = 0;

	if (!out)
		abort();
	for (; i + 2 < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 |
			     in[i + 2];
		out[o++] = tab[v >> 18];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = tab[(v >> 6) & 63];
		out[o++] = tab[v & 63];
	}
	if (len - i == 1) {
		unsigned v = (unsigned)in[i] << 16;
		out[o++] = tab[v >> 18];
		out[o++] = tab[(v >> 12) & 63];
	} else if (len - i == 2) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
		out[o++] = tab[v >> 18];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = tab[(v >> 6) & 63];
	}
	out[o] = '\0';
	return out;
}

static inline char *test_key_bio_text(BIO *bio, size_t *len)
{
	char *data;
	long n = BIO_get_mem_data(bio, &data);
	char *out = malloc((size_t)n + 1);

	if (!out || n <= 0)
		abort();
	memcpy(out, data, (size_t)n);
	out[n] = '\0';
	*len = (size_t)n;
	return out;
}

static inline void test_key_pems(struct test_key *k, EVP_PKEY *pkey)
{
	BIO *priv = BIO_new(BIO_s_mem()), *pub = BIO_new(BIO_s_mem());

	if (!priv || !pub ||
	    PEM_write_bio_PrivateKey(priv, pkey, NULL, NULL, 0, NULL, NULL) !=
		    1 ||
	    PEM_write_bio_PUBKEY(pub, pkey) != 1)
		abort();
	k->priv = test_key_bio_text(priv, &k->priv_len);
	k->pub = test_key_bio_text(pub, &k->pub_len);
	BIO_free(priv);
	BIO_free(pub);
}

/* A big number as unpadded base64url, left-padded to pad bytes (0 = none). */
static inline char *test_key_bn(EVP_PKEY *pkey, const char *name, int pad)
{
	BIGNUM *bn = NULL;
	unsigned char buf[1024];
	int n;
	char *out;

	if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1)
		abort();
	n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
	if (n <= 0)
		abort();
	out = test_key_b64url(buf, (size_t)n);
	BN_free(bn);
	return out;
}

/* extra: more JSON members (",\"use\":\"sig\"") or "". */
static inline void test_key_rsa(struct test_key *k, const char *kid,
				const char *extra)
{
	EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	char *n, *e;

	if (!pkey)
		abort();
	memset(k, 0, sizeof(*k));
	test_key_pems(k, pkey);
	n = test_key_bn(pkey, OSSL_PKEY_PARAM_RSA_N, 0);
	e = test_key_bn(pkey, OSSL_PKEY_PARAM_RSA_E, 0);
	snprintf(k->jwk, sizeof(k->jwk),
		 "{\"kty\":\"RSA\",\"kid\":\"%s\",\"n\":\"%s\",\"e\":\"%s\"%s}",
		 kid, n, e, extra);
	free(n);
	free(e);
	EVP_PKEY_free(pkey);
}

static inline void test_key_ec(struct test_key *k, const char *kid,
			       const char *extra)
{
	EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	char *x, *y;

	if (!pkey)
		abort();
	memset(k, 0, sizeof(*k));
	test_key_pems(k, pkey);
	x = test_key_bn(pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32);
	y = test_key_bn(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
	snprintf(k->jwk, sizeof(k->jwk),
		 "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"%s\",\"x\":\"%s\","
		 "\"y\":\"%s\"%s}",
		 kid, x, y, extra);
	free(x);
	free(y);
	EVP_PKEY_free(pkey);
}

static inline void test_key_oct(struct test_key *k, const char *kid,
				const char *secret, const char *extra)
{
	char *b;

	memset(k, 0, sizeof(*k));
	k->priv_len = strlen(secret);
	k->priv = strdup(secret);
	if (!k->priv)
		abort();
	b = test_key_b64url((const unsigned char *)secret, k->priv_len);
	snprintf(k->jwk, sizeof(k->jwk),
		 "{\"kty\":\"oct\",\"kid\":\"%s\",\"k\":\"%s\"%s}", kid, b,
		 extra);
	free(b);
}

static inline void test_key_free(struct test_key *k)
{
	free(k->priv);
	free(k->pub);
	memset(k, 0, sizeof(*k));
}

#endif
