/*
 * The verified-token cache (service/auth/token_cache): hits give the same
 * principal as a full verification, exp/nbf hold on every hit, forged or
 * random tokens never enter it, its size is fixed, and it is safe from
 * several threads at once.
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
#include <pthread.h>

#include "service/auth/token_cache.h"

#define NOW 1800000000LL
#define SECRET "0123456789abcdef0123456789abcdef"
#define T1 "0f8fad5b-d9cb-469f-a165-70867728950e"

static const char *const tenants[] = {T1};

/* Tests keep their configs until exit: the cache compares their addresses. */
static struct auth_config *cfg_of(const char *secret)
{
	struct auth_config *c = calloc(1, sizeof(*c));
	char err[128];

	assert_non_null(c);
	assert_int_equal(auth_config_set_key(c, AUTH_HS256,
					     (const unsigned char *)secret,
					     strlen(secret), err, sizeof(err)),
			 0);
	return c;
}

static void cfg_done(struct auth_config *c)
{
	auth_config_release(c);
	free(c);
}

/* "Bearer <jwt>" for sub, valid NOW-10 .. exp, nbf 0 = none. */
static char *bearer(const char *sub, int64_t exp, int64_t nbf)
{
	struct auth_claims c = {.sub = sub, .tenants = tenants, .n_tenants = 1,
				.scope = "devices:assign", .iat = NOW - 10,
				.exp = exp, .nbf = nbf};
	char err[256] = "", *t, *v;

	t = auth_mint(AUTH_HS256, (const unsigned char *)SECRET,
		      strlen(SECRET), &c, err, sizeof(err));
	if (!t)
		fail_msg("mint: %s", err);
	v = malloc(strlen(t) + 8);
	assert_non_null(v);
	sprintf(v, "Bearer %s", t);
	free(t);
	return v;
}

static int check(struct token_cache *tc, const struct auth_config *cfg,
		 const char *v, int64_t now, struct domain_principal *who,
		 char *why)
{
	return token_cache_verify(tc, cfg, v, strlen(v), now, who, why, 128);
}

static void stats(struct token_cache *tc, struct token_cache_stats *s)
{
	token_cache_get_stats(tc, s);
}

static void test_hit_same_principal(void **state)
{
	struct auth_config *cfg = cfg_of(SECRET);
	struct token_cache *tc = token_cache_new(64);
	struct domain_principal a, b, full;
	struct token_cache_stats s;
	char why[128], *v = bearer("alice", NOW + 3600, 0);

	(void)state;
	assert_non_null(tc);
	assert_int_equal(auth_verify(cfg, v, strlen(v), NOW, &full, why,
				     sizeof(why)), 0);
	assert_int_equal(check(tc, cfg, v, NOW, &a, why), 0);
	assert_int_equal(check(tc, cfg, v, NOW, &b, why), 0);
	assert_string_equal(why, "ok (cached)");
	assert_memory_equal(&a, &full, sizeof(full));
	assert_memory_equal(&b, &full, sizeof(full));
	stats(tc, &s);
	assert_int_equal(s.hits, 1);
	assert_int_equal(s.misses, 1);
	assert_int_equal(s.inserts, 1);
	assert_int_equal(s.entries, 1);
	free(v);
	token_cache_free(tc);
	cfg_done(cfg);
}

static void test_expiry_rechecked_on_hit(void **state)
{
	struct auth_config *cfg = cfg_of(SECRET);
	struct token_cache *tc = token_cache_new(64);
	struct domain_principal who;
	struct token_cache_stats s;
	char why[128], *v = bearer("bob", NOW + 100, 0);

	(void)state;
	assert_int_equal(check(tc, cfg, v, NOW, &who, why), 0);
	/* Last second inside the leeway: still a hit. */
	assert_int_equal(check(tc, cfg, v, NOW + 100 + AUTH_LEEWAY_SECONDS - 1,
			       &who, why), 0);
	assert_string_equal(why, "ok (cached)");
	/* At exp + leeway: refused exactly as auth_verify refuses it. */
	assert_int_equal(check(tc, cfg, v, NOW + 100 + AUTH_LEEWAY_SECONDS,
			       &who, why), -1);
	assert_string_equal(why, "token expired");
	stats(tc, &s);
	assert_int_equal(s.entries, 0);
	free(v);
	token_cache_free(tc);
	cfg_done(cfg);
}

static void test_nbf_rechecked_on_hit(void **state)
{
	struct auth_config *cfg = cfg_of(SECRET);
	struct token_cache *tc = token_cache_new(64);
	struct domain_principal who;
	char why[128], *v = bearer("carol", NOW + 3600, NOW + 500);

	(void)state;
	/* Not yet valid: refused and not cached. */
	assert_int_equal(check(tc, cfg, v, NOW, &who, why), -1);
	assert_string_equal(why, "token not yet valid");
	/* Valid later; cached; then a clock stepping back is refused. */
	assert_int_equal(check(tc, cfg, v, NOW + 500, &who, why), 0);
	assert_int_equal(check(tc, cfg, v, NOW + 501, &who, why), 0);
	assert_string_equal(why, "ok (cached)");
	assert_int_equal(check(tc, cfg, v, NOW, &who, why), -1);
	assert_string_equal(why, "token not yet valid");
	free(v);
	token_cache_free(tc);
	cfg_done(cfg);
}

static void test_forged_never_cached(void **state)
{
	struct auth_config *cfg = cfg_of(SECRET);
	struct token_cache *tc = token_cache_new(64);
	struct domain_principal who;
	struct token_cache_stats s;
	char why[128], *v = bearer("dave", NOW + 3600, 0);
	char *forged = strdup(v);
	size_t n = strlen(forged);

	(void)state;
	assert_int_equal(check(tc, cfg, v, NOW, &who, why), 0);
	/* Same length, last signature byte changed: a miss, then refused. */
	forged[n - 1] = forged[n - 1] == 'A' ? 'B' : 'A';
	assert_int_equal(check(tc, cfg, forged, NOW, &who, why), -1);
	/* A prefix of a cached value is not a hit. */
	assert_int_equal(token_cache_verify(tc, cfg, v, n - 1, NOW, &who, why,
					    sizeof(why)), -1);
	/* Random junk, many times: nothing enters. */
	for (int i = 0; i < 5000; i++) {
		char junk[64];
		snprintf(junk, sizeof(junk), "Bearer a%d.b%d.c%d", i, i * 7,
			 i * 13);
		assert_int_equal(check(tc, cfg, junk, NOW, &who, why), -1);
	}
	stats(tc, &s);
	assert_int_equal(s.inserts, 1);
	assert_int_equal(s.entries, 1);
	free(forged);
	free(v);
	token_cache_free(tc);
	cfg_done(cfg);
}

static void test_other_key_misses(void **state)
{
	struct auth_config *cfg = cfg_of(SECRET);
	struct auth_config *other = cfg_of("another secret, not the signer");
	struct token_cache *tc = token_cache_new(64);
	struct domain_principal who;
	char why[128], *v = bearer("erin", NOW + 3600, 0);

	(void)state;
	assert_int_equal(check(tc, cfg, v, NOW, &who, why), 0);
	/* Cached under cfg; under another config it is verified again. */
	assert_int_equal(check(tc, other, v, NOW, &who, why), -1);
	/* After a clear, the next use is a full verification. */
	token_cache_clear(tc);
	assert_int_equal(check(tc, cfg, v, NOW, &who, why), 0);
	assert_string_equal(why, "ok");
	free(v);
	token_cache_free(tc);
	cfg_done(cfg);
	cfg_done(other);
}

static void test_bounded(void **state)
{
	struct auth_config *cfg = cfg_of(SECRET);
	struct token_cache *tc = token_cache_new(1);
	struct domain_principal who;
	struct token_cache_stats s;
	char why[128], sub[32];

	(void)state;
	stats(tc, &s);
	assert_int_equal(s.capacity, TOKEN_CACHE_SHARDS * TOKEN_CACHE_WAYS);
	for (int i = 0; i < 600; i++) {
		char *v;
		snprintf(sub, sizeof(sub), "user%d", i);
		v = bearer(sub, NOW + 3600, 0);
		assert_int_equal(check(tc, cfg, v, NOW, &who, why), 0);
		assert_string_equal(who.sub, sub);
		free(v);
	}
	stats(tc, &s);
	assert_true(s.entries <= s.capacity);
	assert_int_equal(s.inserts, 600);
	assert_int_equal(s.evictions, 600 - s.entries);
	assert_null(token_cache_new(0));
	token_cache_free(tc);
	cfg_done(cfg);
}

static void test_disabled_passes_through(void **state)
{
	struct auth_config *cfg = cfg_of(SECRET);
	struct domain_principal who;
	char why[128], *v = bearer("frank", NOW + 3600, 0);

	(void)state;
	assert_int_equal(check(NULL, cfg, v, NOW, &who, why), 0);
	assert_string_equal(why, "ok");
	assert_int_equal(check(NULL, cfg, "Bearer x.y.z", NOW, &who, why), -1);
	free(v);
	cfg_done(cfg);
}

/* A key rotation: after auth_config_reload and token_cache_clear, a token of
 * the old key is verified again, and refused. */
static void test_reload_then_clear(void **state)
{
	char dir[] = "/tmp/das-tc-XXXXXX", path[64], err[256], why[128];
	struct auth_config cfg;
	struct auth_sources src = {0};
	struct token_cache *tc = token_cache_new(64);
	struct domain_principal who;
	char *v = bearer("grace", NOW + 3600, 0);
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/secret", dir);
	assert_non_null(f = fopen(path, "w"));
	fputs(SECRET, f);
	fclose(f);
	src.hs256_secret_file = path;
	assert_int_equal(auth_config_load_sources(&cfg, &src, err, sizeof(err)),
			 0);
	assert_int_equal(check(tc, &cfg, v, NOW, &who, why), 0);
	assert_int_equal(check(tc, &cfg, v, NOW, &who, why), 0);
	assert_string_equal(why, "ok (cached)");

	assert_non_null(f = fopen(path, "w"));
	fputs("a completely different secret!!", f);
	fclose(f);
	assert_int_equal(auth_config_reload(&cfg, err, sizeof(err)), 0);
	token_cache_clear(tc);
	assert_int_equal(check(tc, &cfg, v, NOW, &who, why), -1);
	assert_int_equal(check(tc, &cfg, v, NOW, &who, why), -1);

	unlink(path);
	rmdir(dir);
	free(v);
	token_cache_free(tc);
	auth_config_release(&cfg);
}

struct worker {
	struct token_cache *tc;
	const struct auth_config *cfg;
	char **values;
	int n, failures;
};

static void *loop(void *arg)
{
	struct worker *w = arg;
	struct domain_principal who;
	char why[128], sub[32];

	for (int i = 0; i < 4000; i++) {
		int k = (i * 7 + w->n) % 40;
		snprintf(sub, sizeof(sub), "u%d", k);
		if (check(w->tc, w->cfg, w->values[k], NOW, &who, why) != 0 ||
		    strcmp(who.sub, sub) != 0)
			w->failures++;
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct auth_config *cfg = cfg_of(SECRET);
	struct token_cache *tc = token_cache_new(16); /* smaller than 40 */
	struct token_cache_stats s;
	char *values[40], sub[32];
	pthread_t th[4];
	struct worker w[4];

	(void)state;
	for (int i = 0; i < 40; i++) {
		snprintf(sub, sizeof(sub), "u%d", i);
		values[i] = bearer(sub, NOW + 3600, 0);
	}
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){.tc = tc, .cfg = cfg, .values = values,
				       .n = i * 11};
		assert_int_equal(pthread_create(&th[i], NULL, loop, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(w[i].failures, 0);
	}
	stats(tc, &s);
	assert_int_equal(s.hits + s.misses, 4 * 4000);
	assert_true(s.entries <= s.capacity);
	printf("token cache, 4 threads: %llu hits, %llu misses\n",
	       (unsigned long long)s.hits, (unsigned long long)s.misses);
	for (int i = 0; i < 40; i++)
		free(values[i]);
	token_cache_free(tc);
	cfg_done(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hit_same_principal),
		cmocka_unit_test(test_expiry_rechecked_on_hit),
		cmocka_unit_test(test_nbf_rechecked_on_hit),
		cmocka_unit_test(test_forged_never_cached),
		cmocka_unit_test(test_other_key_misses),
		cmocka_unit_test(test_bounded),
		cmocka_unit_test(test_disabled_passes_through),
		cmocka_unit_test(test_reload_then_clear),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
