/*
 * JWKS documents (RFC 7517) turned into the keys auth.c verifies with:
 * RSA keys become RS256 PEM public keys, EC P-256 keys ES256 PEM public
 * keys (OpenSSL builds the PEM from the JWK's numbers, since libjwt 1.10
 * reads no JWK), oct keys HS256 secrets.
 *
 * A key is skipped with a warning in the log, never an error, when its
 * use is not "sig", its alg is one we do not verify or does not fit its
 * kty, its kty or curve is unknown, it has no kid, or it is too weak
 * (RSA under 2048 bits, an HS256 secret under 32 bytes): identity
 * providers publish such keys next to the ones we need. A key we would
 * use but cannot read, two usable keys with one kid, or no usable key at
 * all make the whole document an error.
 */
#ifndef DAS_AUTH_JWKS_H
#define DAS_AUTH_JWKS_H

#include <stddef.h>

#include "service/auth/auth.h"

#define AUTH_JWKS_MAX_KEYS 64
#define AUTH_JWKS_MAX_KID 128

struct auth_jwk {
	char *kid;          /* owned, printable ASCII */
	enum auth_alg alg;
	unsigned char *key; /* owned: PEM public key (NUL-terminated) or secret */
	size_t key_len;     /* without the PEM's NUL */
};

/*
 * Parses len bytes of JSON (what is the file's name, for messages).
 * Returns 0 with *keys (n >= 1 entries; free with auth_jwks_free), or -1
 * with a one-line reason in err.
 */
int auth_jwks_parse(const unsigned char *text, size_t len, const char *what,
		    struct auth_jwk **keys, size_t *n, char *err,
		    size_t err_size);

void auth_jwks_free(struct auth_jwk *keys, size_t n);

#endif
