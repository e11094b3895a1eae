/*
 * Fuzz target: a JWKS document (--jwt-jwks-file) through the parser that
 * turns JWKs into PEM keys with OpenSSL. Whatever the bytes, the parser
 * either refuses them or returns at least one key, each with a kid, a key
 * and an alg we verify.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "service/auth/jwks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct auth_jwk *keys = NULL;
	size_t n = 0;
	char err[256];

	das_log_set_level(DAS_LOG_ERROR); /* skipped keys warn */
	if (auth_jwks_parse(data, size, "fuzz", &keys, &n, err, sizeof(err)) !=
	    0)
		return 0;
	if (n == 0 || n > AUTH_JWKS_MAX_KEYS)
		abort();
	for (size_t i = 0; i < n; i++) {
		if (!keys[i].kid || !keys[i].key || keys[i].key_len == 0 ||
		    strlen(keys[i].kid) > AUTH_JWKS_MAX_KID)
			abort();
		if (keys[i].alg != AUTH_HS256 && keys[i].alg != AUTH_RS256 &&
		    keys[i].alg != AUTH_ES256)
			abort();
	}
	auth_jwks_free(keys, n);
	return 0;
}
