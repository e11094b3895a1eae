/*
 * Fuzz target: JWT verification, two ways.
 *
 * - Input starting with a 0x00 byte: "\0<header JSON>\n<claims JSON>" (any
 *   bytes). The target base64url-encodes both and signs them with the
 *   verifier's HS256 secret, so every mutation of the claims or the header
 *   reaches the claim checks (a mutated token signed outside the target
 *   fails its HMAC, and only the parsers get fuzzed). On success the
 *   principal must be sane and the token must have deserved it: alg HS256,
 *   no crit, an exp not past.
 * - Any other input: the raw Authorization value (scheme and compact-form
 *   parsing, base64url, libjwt's decoder).
 *
 * At exit it prints how many inputs verified, so a run shows the claim
 * checks were reached.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "service/auth/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char secret[] = "fuzz-secret-fuzz-secret-fuzz-sec";
#define NOW 1700000000LL

static unsigned long n_inputs, n_signed, n_verified;

static void report(void)
{
	fprintf(stderr,
		"fuzz_auth: %lu inputs, %lu signed inside the target, %lu "
		"verified\n",
		n_inputs, n_signed, n_verified);
}

static size_t b64url(const uint8_t *in, size_t len, char *out)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
				  "qrstuvwxyz0123456789-_";
	size_t o = 0;

	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		size_t n = len - i < 3 ? len - i : 3;
		if (n > 1)
			v |= (uint32_t)in[i + 1] << 8;
		if (n > 2)
			v |= in[i + 2];
		out[o++] = tbl[(v >> 18) & 63];
		out[o++] = tbl[(v >> 12) & 63];
		if (n > 1)
			out[o++] = tbl[(v >> 6) & 63];
		if (n > 2)
			out[o++] = tbl[v & 63];
	}
	return o;
}

/* "Bearer h.c.sig" signed with secret; returns its length (0: too long). */
static size_t sign(const uint8_t *head, size_t head_len, const uint8_t *claims,
		   size_t claims_len, char *out, size_t size)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned mac_len = 0;
	size_t o = 7, start;

	if (7 + (head_len + claims_len) * 4 / 3 + 8 + 64 > size)
		return 0;
	memcpy(out, "Bearer ", 7);
	start = o;
	o += b64url(head, head_len, out + o);
	out[o++] = '.';
	o += b64url(claims, claims_len, out + o);
	if (!HMAC(EVP_sha256(), secret, (int)(sizeof(secret) - 1),
		  (const unsigned char *)out + start, o - start, mac, &mac_len))
		return 0;
	out[o++] = '.';
	o += b64url(mac, mac_len, out + o);
	return o;
}

/* What a verified token must have had. */
static void check_deserved(const uint8_t *head, size_t head_len,
			   const uint8_t *claims, size_t claims_len)
{
	json_t *h = json_loadb((const char *)head, head_len, 0, NULL);
	json_t *c = json_loadb((const char *)claims, claims_len, 0, NULL);
	json_t *alg = json_object_get(h, "alg");
	json_t *exp = json_object_get(c, "exp");

	if (!json_is_object(h) || !json_is_object(c))
		abort();
	if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256"))
		abort();
	if (json_object_get(h, "crit"))
		abort();
	if (!json_is_number(exp) ||
	    json_number_value(exp) + AUTH_LEEWAY_SECONDS <= (double)NOW)
		abort();
	json_decref(h);
	json_decref(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char value[4 * AUTH_MAX_TOKEN];
	static int is_registered;
	static struct auth_config cfg;
	struct domain_principal who;
	char why[128];
	const uint8_t *head = NULL, *claims = NULL;
	size_t head_len = 0, claims_len = 0;
	const char *v = (const char *)data;
	size_t len = size;

	if (!is_registered) {
		is_registered = 1;
		if (auth_config_set_key(&cfg, AUTH_HS256,
					(const unsigned char *)secret,
					sizeof(secret) - 1, why,
					sizeof(why)) != 0)
			abort();
		atexit(report);
	}
	n_inputs++;
	if (size > 0 && data[0] == 0) {
		const uint8_t *nl = memchr(data + 1, '\n', size - 1);
		if (!nl)
			return 0;
		head = data + 1;
		head_len = (size_t)(nl - head);
		claims = nl + 1;
		claims_len = size - (size_t)(claims - data);
		len = sign(head, head_len, claims, claims_len, value,
			   sizeof(value));
		if (!len)
			return 0;
		v = value;
		n_signed++;
	}
	if (auth_verify(&cfg, v, len, NOW, &who, why, sizeof(why)) == 0) {
		n_verified++;
		if (who.n_tenants > DOMAIN_MAX_TENANTS || !who.sub[0] ||
		    strlen(who.sub) >= DOMAIN_SUB_SIZE)
			abort();
		for (size_t i = 0; i < who.n_tenants; i++)
			if (strlen(who.tenants[i]) != DAS_GUID_SIZE - 1)
				abort();
		if (head)
			check_deserved(head, head_len, claims, claims_len);
	}
	return 0;
}
