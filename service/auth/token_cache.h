/*
 * A cache of verified bearer tokens in front of auth_verify.
 *
 * A repeat caller sends the same token on every request; verifying it costs
 * two JSON parses, an HMAC (or RSA) and ~100 mallocs each time. The cache
 * remembers the principal of a token that auth_verify accepted:
 *  - keyed by the whole Authorization value (all bytes, compared in
 *    constant time after a keyed-hash match), and by the auth_config it was
 *    verified under;
 *  - exp and nbf (with AUTH_LEEWAY_SECONDS) re-checked against `now` on
 *    every hit, so a cached token stops working exactly when an uncached
 *    one would; an expired entry is dropped on sight;
 *  - only tokens that verified are stored, so random or forged tokens
 *    never enter it; its size is fixed at creation (capacity entries,
 *    least recently used replaced), whatever the callers send;
 *  - sharded: a lookup locks one of TOKEN_CACHE_SHARDS mutexes chosen by
 *    the hash, never a global lock.
 * Whoever replaces the keys (auth_config_reload) calls token_cache_clear
 * afterwards: entries go, and a verification still in flight under the old
 * keys is not stored (an epoch, checked under the shard lock). Between the
 * swap and the clear a hit can still answer, as a verification in flight
 * finishes with the keys it started with.
 */
#ifndef DAS_TOKEN_CACHE_H
#define DAS_TOKEN_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "service/auth/auth.h"

#define TOKEN_CACHE_SHARDS 16
#define TOKEN_CACHE_WAYS 4
#define TOKEN_CACHE_MAX 65536

struct token_cache;

struct token_cache_stats {
	uint64_t hits;
	uint64_t misses;
	uint64_t inserts;
	uint64_t evictions; /* replaced to make room, or dropped expired */
	size_t entries;     /* held now */
	size_t capacity;
};

/*
 * capacity 0 returns NULL: no cache (token_cache_verify then calls
 * auth_verify every time). Capacity is rounded up to a multiple of
 * TOKEN_CACHE_SHARDS * TOKEN_CACHE_WAYS and capped at TOKEN_CACHE_MAX.
 * NULL is also returned when memory runs out.
 */
struct token_cache *token_cache_new(size_t capacity);
void token_cache_free(struct token_cache *tc);

/*
 * auth_verify with the cache in front; same contract (0 and *who filled,
 * or -1 with a reason in why). tc may be NULL.
 */
int token_cache_verify(struct token_cache *tc, const struct auth_config *cfg,
		       const char *value, size_t len, int64_t now,
		       struct domain_principal *who, char *why,
		       size_t why_size);

/* Forgets every entry (after the verification keys change); see above. */
void token_cache_clear(struct token_cache *tc);

void token_cache_get_stats(struct token_cache *tc,
			   struct token_cache_stats *out);

#endif
