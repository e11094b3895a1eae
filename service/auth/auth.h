/*
 * Caller identity: JWT verification with libjwt (CONTRACT.md section 5) and
 * dev-token minting for the CLI and tests.
 *
 * libjwt 1.10 checks only the signature; everything else is done here: the
 * token's alg must equal the configured one (so "none" and HS256 tokens
 * under an RS256 key are refused), exp is required, nbf honoured, iss/aud
 * compared when configured, with 60 s leeway.
 */
#ifndef DAS_AUTH_H
#define DAS_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "service/domain/domain.h"

#define AUTH_LEEWAY_SECONDS 60
#define AUTH_MAX_TOKEN 8192 /* longer Authorization values are refused */

enum auth_alg { AUTH_HS256, AUTH_RS256 };

struct auth_config {
	enum auth_alg alg;
	unsigned char *key; /* HS256 secret or RS256 PEM public key, owned */
	size_t key_len;
	char *issuer;   /* owned; NULL = not checked */
	char *audience; /* owned; NULL = not checked */
};

/*
 * Loads the key from exactly one of hs256_secret_file / rs256_public_key
 * (the other NULL or ""); issuer / audience may be NULL or "". Returns 0, or
 * -1 with a one-line reason in err (missing file, empty secret, both or
 * neither given, a PEM that is not a public key).
 */
int auth_config_load(struct auth_config *cfg, const char *hs256_secret_file,
		     const char *rs256_public_key, const char *issuer,
		     const char *audience, char *err, size_t err_size);
void auth_config_release(struct auth_config *cfg);

/*
 * Verifies an Authorization value ("Bearer <jwt>", scheme case-insensitive;
 * value is len bytes, not NUL-terminated) at time now (Unix seconds).
 * Returns 0 and fills who (sub, tenants normalised to canonical GUIDs or
 * "*", scopes), or -1 (UNAUTHENTICATED) with a short reason in why for the
 * log only. who is untouched on failure.
 * A "*" entry sets who->is_all_tenants and is not stored in who->tenants,
 * which holds distinct canonical GUIDs only. No tenants claim: a valid
 * token that covers nothing. A tenants entry that is neither "*" nor a
 * GUID, more than DOMAIN_MAX_TENANTS entries, an empty or over-long sub
 * (>= DOMAIN_SUB_SIZE bytes) or claims of the wrong JSON type: -1.
 * Unknown scopes are ignored. why may be NULL.
 */
int auth_verify(const struct auth_config *cfg, const char *value, size_t len,
		int64_t now, struct domain_principal *who, char *why,
		size_t why_size);

/* What a minted token says. */
struct auth_claims {
	const char *sub;
	const char *const *tenants; /* GUIDs or "*" */
	size_t n_tenants;
	const char *scope; /* space-separated */
	int64_t iat;
	int64_t exp;
	int64_t nbf; /* 0 = omitted */
	const char *issuer;   /* NULL = omitted */
	const char *audience; /* NULL = omitted */
};

/*
 * Signs claims with alg and key (HS256 secret, or RS256 PEM private key).
 * Returns a malloc'd JWT (caller frees), or NULL with a reason in err.
 */
char *auth_mint(enum auth_alg alg, const unsigned char *key, size_t key_len,
		const struct auth_claims *claims, char *err, size_t err_size);

/*
 * Reads a whole key/secret file into a malloc'd, NUL-terminated buffer
 * (at most 64 KiB). For a secret, one trailing newline is dropped. Returns
 * 0 and sets *out and *len, or -1 with a reason in err.
 */
int auth_read_key_file(const char *path, bool is_secret, unsigned char **out,
		       size_t *len, char *err, size_t err_size);

#endif
