/*
 * Caller identity: JWT verification with libjwt (CONTRACT.md section 5) and
 * dev-token minting for the CLI and tests.
 *
 * libjwt 1.10 checks only the signature; everything else is done here: the
 * token's alg must equal the configured one (so "none" and HS256 tokens
 * under an RS256 key are refused), exp is required, nbf honoured, iss/aud
 * compared when configured, with 60 s leeway.
 *
 * Keys: with one key (the secret or PEM flags) a token's alg must be that
 * key's. With a JWKS, the token's kid picks the key and its alg must be
 * that key's; a token without kid is accepted only when exactly one loaded
 * key has its alg. The alg is read from the header and compared before
 * libjwt sees the key, so "none" and key-confusion tokens (HS256 signed
 * with a public key as the secret) never reach signature checking.
 */
#ifndef DAS_AUTH_H
#define DAS_AUTH_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "service/domain/domain.h"

#define AUTH_LEEWAY_SECONDS 60
#define AUTH_MAX_TOKEN 8192 /* longer Authorization values are refused */

enum auth_alg { AUTH_HS256, AUTH_RS256, AUTH_ES256 };

/* "HS256", "RS256", "ES256". */
const char *auth_alg_name(enum auth_alg alg);

/* The keys verification uses; opaque, swapped whole by a reload. */
struct auth_keyset;

/*
 * Where the keys come from: exactly one of the three files. A JWKS file
 * holds keys chosen by the token's kid (see jwks.h for what is accepted).
 */
struct auth_sources {
	const char *hs256_secret_file;
	const char *rs256_public_key;
	const char *jwks_file;
	const char *issuer;   /* NULL or "" = not checked */
	const char *audience; /* NULL or "" = not checked */
};

struct auth_config {
	pthread_mutex_t lock;       /* guards keys (the pointer) */
	struct auth_keyset *keys;   /* current; verifications hold a ref */
	struct auth_sources files;  /* owned copies, read again on reload */
	char *issuer;   /* owned; NULL = not checked */
	char *audience; /* owned; NULL = not checked */
};

/*
 * Loads the keys from src. Returns 0, or -1 with a one-line reason in err
 * (missing file, empty secret, not exactly one source, a PEM that is not
 * a public key, a JWKS without a usable key); cfg is then zeroed.
 */
int auth_config_load_sources(struct auth_config *cfg,
			     const struct auth_sources *src, char *err,
			     size_t err_size);

/* The same with one HS256 secret file or one RS256 public key file. */
int auth_config_load(struct auth_config *cfg, const char *hs256_secret_file,
		     const char *rs256_public_key, const char *issuer,
		     const char *audience, char *err, size_t err_size);

/*
 * One key given in memory (tests, fuzzing): an HS256 secret or an RS256 or
 * ES256 PEM public key, no kid. The key is copied. Returns 0 or -1.
 */
int auth_config_set_key(struct auth_config *cfg, enum auth_alg alg,
			const unsigned char *key, size_t key_len, char *err,
			size_t err_size);

/*
 * Reads the key files again and swaps the new keys in; verifications in
 * flight finish with the keys they started with. Returns 0, or -1 with the
 * reason in err, the current keys staying in use.
 */
int auth_config_reload(struct auth_config *cfg, char *err, size_t err_size);

/* What is loaded, for logs and tests: one line per key ("kid=a RS256"). */
struct auth_key_info {
	char kid[129]; /* "" when the key has none */
	enum auth_alg alg;
	size_t key_len;
};
/* Fills up to max entries; returns the number of keys loaded. */
size_t auth_config_keys(const struct auth_config *cfg, struct auth_key_info *out,
			size_t max);

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

/*
 * The exp and nbf claims of an Authorization value that auth_verify has
 * already accepted (the payload is not verified again here). Returns 0, or
 * -1 when they cannot be read unambiguously (then do not cache the token).
 */
int auth_token_window(const char *value, size_t len, int64_t *exp,
		      int64_t *nbf, bool *has_nbf);

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
	const char *kid;      /* header kid; NULL = omitted */
};

/*
 * Signs claims with alg and key (HS256 secret, or RS256 / ES256 PEM
 * private key).
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
