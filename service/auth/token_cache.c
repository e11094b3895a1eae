#include "token_cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

struct entry {
	uint64_t hash;
	char *value; /* NULL: empty slot */
	size_t len;
	const struct auth_config *cfg;
	int64_t exp, nbf;
	bool has_nbf;
	uint64_t used; /* shard tick of the last hit, for LRU */
	struct domain_principal who;
};

struct shard {
	pthread_mutex_t mu;
	struct entry *sets; /* n_sets * TOKEN_CACHE_WAYS */
	uint64_t tick;
	uint64_t hits, misses, inserts, evictions;
	size_t entries;
} __attribute__((aligned(64)));

struct token_cache {
	uint64_t seed[2];
	/* Bumped by token_cache_clear: a verification that started before a
	 * clear (perhaps under keys since replaced) is not stored. */
	_Atomic uint64_t epoch;
	size_t n_sets; /* per shard */
	struct shard shards[TOKEN_CACHE_SHARDS];
};

static uint64_t mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/*
 * Keyed with a per-process random seed, so which tokens share a set cannot
 * be chosen from outside. Only a pre-filter: every hit is confirmed by a
 * constant-time comparison of all the bytes.
 */
static uint64_t hash_value(const struct token_cache *tc, const char *v,
			   size_t len)
{
	uint64_t h = tc->seed[0] ^ (len * 0x9e3779b97f4a7c15ULL);
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t w;
		memcpy(&w, v + i, 8);
		h = mix(h ^ w) + tc->seed[1];
	}
	if (i < len) {
		uint64_t w = 0;
		memcpy(&w, v + i, len - i);
		h = mix(h ^ w ^ tc->seed[1]);
	}
	return mix(h);
}

/*
 * Constant time in the contents: every byte is looked at, whatever differs.
 * Eight bytes a step (a ~300-byte token: ~40 steps instead of ~300); the
 * volatile accumulator keeps the compiler from stopping at a difference.
 */
static bool same_bytes(const char *a, const char *b, size_t n)
{
	volatile uint64_t d = 0;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t x, y;
		memcpy(&x, a + i, 8);
		memcpy(&y, b + i, 8);
		d |= x ^ y;
	}
	for (; i < n; i++)
		d |= (uint64_t)(unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

static bool in_window(const struct entry *e, int64_t now)
{
	if (e->exp + AUTH_LEEWAY_SECONDS <= now)
		return false;
	return !e->has_nbf || now >= e->nbf - AUTH_LEEWAY_SECONDS;
}

static void drop(struct shard *s, struct entry *e)
{
	explicit_bzero(e->value, e->len);
	free(e->value);
	memset(e, 0, sizeof(*e));
	s->entries--;
}

struct token_cache *token_cache_new(size_t capacity)
{
	const size_t per_set = TOKEN_CACHE_SHARDS * TOKEN_CACHE_WAYS;
	struct token_cache *tc;

	if (capacity == 0)
		return NULL;
	if (capacity > TOKEN_CACHE_MAX)
		capacity = TOKEN_CACHE_MAX;
	tc = calloc(1, sizeof(*tc));
	if (!tc)
		return NULL;
	tc->n_sets = (capacity + per_set - 1) / per_set;
	if (getrandom(tc->seed, sizeof(tc->seed), 0) != sizeof(tc->seed)) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		tc->seed[0] = mix((uint64_t)ts.tv_nsec ^ (uintptr_t)tc);
		tc->seed[1] = mix(tc->seed[0] + (uint64_t)ts.tv_sec);
	}
	for (size_t i = 0; i < TOKEN_CACHE_SHARDS; i++) {
		struct shard *s = &tc->shards[i];
		s->sets = calloc(tc->n_sets * TOKEN_CACHE_WAYS,
				 sizeof(struct entry));
		if (!s->sets || pthread_mutex_init(&s->mu, NULL) != 0) {
			free(s->sets);
			s->sets = NULL;
			token_cache_free(tc);
			return NULL;
		}
	}
	return tc;
}

void token_cache_clear(struct token_cache *tc)
{
	if (!tc)
		return;
	atomic_fetch_add(&tc->epoch, 1);
	for (size_t i = 0; i < TOKEN_CACHE_SHARDS; i++) {
		struct shard *s = &tc->shards[i];
		if (!s->sets)
			continue;
		pthread_mutex_lock(&s->mu);
		for (size_t j = 0; j < tc->n_sets * TOKEN_CACHE_WAYS; j++)
			if (s->sets[j].value)
				drop(s, &s->sets[j]);
		pthread_mutex_unlock(&s->mu);
	}
}

void token_cache_free(struct token_cache *tc)
{
	if (!tc)
		return;
	token_cache_clear(tc);
	for (size_t i = 0; i < TOKEN_CACHE_SHARDS; i++) {
		if (!tc->shards[i].sets)
			continue;
		pthread_mutex_destroy(&tc->shards[i].mu);
		free(tc->shards[i].sets);
	}
	free(tc);
}

static struct shard *shard_of(struct token_cache *tc, uint64_t h,
			      struct entry **set)
{
	struct shard *s = &tc->shards[h % TOKEN_CACHE_SHARDS];

	*set = &s->sets[((h >> 8) % tc->n_sets) * TOKEN_CACHE_WAYS];
	return s;
}

/* Under s->mu: the live entry for value, or NULL (expired ones dropped). */
static struct entry *find(struct shard *s, struct entry *set, uint64_t h,
			  const struct auth_config *cfg, const char *value,
			  size_t len, int64_t now)
{
	for (int w = 0; w < TOKEN_CACHE_WAYS; w++) {
		struct entry *e = &set[w];
		if (!e->value || e->hash != h || e->len != len ||
		    e->cfg != cfg || !same_bytes(e->value, value, len))
			continue;
		if (e->exp + AUTH_LEEWAY_SECONDS <= now) {
			drop(s, e);
			s->evictions++;
			return NULL;
		}
		return e;
	}
	return NULL;
}

static void insert(struct token_cache *tc, const struct auth_config *cfg,
		   const char *value, size_t len, uint64_t h, uint64_t epoch,
		   const struct domain_principal *who)
{
	struct entry fresh, *set, *victim = NULL;
	struct shard *s;

	memset(&fresh, 0, sizeof(fresh));
	if (auth_token_window(value, len, &fresh.exp, &fresh.nbf,
			      &fresh.has_nbf) != 0)
		return;
	fresh.value = malloc(len);
	if (!fresh.value)
		return;
	memcpy(fresh.value, value, len);
	fresh.len = len;
	fresh.hash = h;
	fresh.cfg = cfg;
	fresh.who = *who;

	s = shard_of(tc, h, &set);
	pthread_mutex_lock(&s->mu);
	if (atomic_load(&tc->epoch) != epoch ||
	    find(s, set, h, cfg, value, len, INT64_MIN)) {
		/* Cleared since the verification began, or another thread was
		 * first. */
		pthread_mutex_unlock(&s->mu);
		explicit_bzero(fresh.value, len);
		free(fresh.value);
		return;
	}
	for (int w = 0; w < TOKEN_CACHE_WAYS; w++) {
		struct entry *e = &set[w];
		if (!e->value) {
			victim = e;
			break;
		}
		if (!victim || e->used < victim->used)
			victim = e;
	}
	if (victim->value) {
		drop(s, victim);
		s->evictions++;
	}
	fresh.used = ++s->tick;
	*victim = fresh;
	s->entries++;
	s->inserts++;
	pthread_mutex_unlock(&s->mu);
}

int token_cache_verify(struct token_cache *tc, const struct auth_config *cfg,
		       const char *value, size_t len, int64_t now,
		       struct domain_principal *who, char *why,
		       size_t why_size)
{
	struct entry *set, *e;
	struct shard *s;
	uint64_t h, epoch;

	if (!tc || !cfg || !value || len == 0 || len > AUTH_MAX_TOKEN)
		return auth_verify(cfg, value, len, now, who, why, why_size);
	epoch = atomic_load(&tc->epoch);
	h = hash_value(tc, value, len);
	s = shard_of(tc, h, &set);
	pthread_mutex_lock(&s->mu);
	e = find(s, set, h, cfg, value, len, now);
	if (e && in_window(e, now)) {
		e->used = ++s->tick;
		s->hits++;
		*who = e->who;
		pthread_mutex_unlock(&s->mu);
		if (why && why_size) { /* no printf on the hot path */
			static const char hit[] = "ok (cached)";
			size_t n = why_size < sizeof(hit) ? why_size - 1
							  : sizeof(hit) - 1;
			memcpy(why, hit, n);
			why[n] = '\0';
		}
		return 0;
	}
	s->misses++;
	pthread_mutex_unlock(&s->mu);
	/* Not cached, expired or not yet valid: the full check decides. */
	if (auth_verify(cfg, value, len, now, who, why, why_size) != 0)
		return -1;
	insert(tc, cfg, value, len, h, epoch, who);
	return 0;
}

void token_cache_get_stats(struct token_cache *tc,
			   struct token_cache_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!tc)
		return;
	out->capacity = TOKEN_CACHE_SHARDS * tc->n_sets * TOKEN_CACHE_WAYS;
	for (size_t i = 0; i < TOKEN_CACHE_SHARDS; i++) {
		struct shard *s = &tc->shards[i];
		pthread_mutex_lock(&s->mu);
		out->hits += s->hits;
		out->misses += s->misses;
		out->inserts += s->inserts;
		out->evictions += s->evictions;
		out->entries += s->entries;
		pthread_mutex_unlock(&s->mu);
	}
}
