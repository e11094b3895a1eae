/* service/ops/page_token.c: ListLedger's signed keyset cursor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "service/ops/page_token.h"

static const unsigned char key_a[PAGE_TOKEN_KEY_SIZE] = "0123456789abcdef0123456789abcde";
static const unsigned char key_b[PAGE_TOKEN_KEY_SIZE] = "0123456789abcdef0123456789abcdX";
static const char binding[] = "ledger|t|a|u|d|0:0.0|0:0.0|0|0";

static int decode(const unsigned char *key, const char *b, const char *tok,
		  struct page_cursor *c)
{
	return page_token_decode(key, b, strlen(b), tok, strlen(tok), c);
}

static void round_trip(void **state)
{
	const struct page_cursor cases[] = {
		{1, 0}, {1, 1}, {42, 1000}, {INT64_MAX, INT64_MAX}};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char tok[PAGE_TOKEN_SIZE];
		struct page_cursor c = {0, 0};

		page_token_encode(key_a, binding, strlen(binding), &cases[i],
				  tok);
		assert_int_equal(strlen(tok), PAGE_TOKEN_LEN);
		/* URL-safe as is: no '+', '/', '=' or '%' to encode. */
		assert_int_equal(strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef"
					     "ghijklmnopqrstuvwxyz0123456789-_"),
				 PAGE_TOKEN_LEN);
		assert_int_equal(decode(key_a, binding, tok, &c), 0);
		assert_int_equal(c.after_id, cases[i].after_id);
		assert_int_equal(c.bound_id, cases[i].bound_id);
	}
}

/* Every single-character change of a token is refused. */
static void tampering_is_refused(void **state)
{
	const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			   "0123456789-_";
	const struct page_cursor cur = {7, 9};
	char tok[PAGE_TOKEN_SIZE], bad[PAGE_TOKEN_SIZE];
	struct page_cursor c = {-5, -5};
	(void)state;

	page_token_encode(key_a, binding, strlen(binding), &cur, tok);
	for (size_t i = 0; i < PAGE_TOKEN_LEN; i++) {
		for (size_t k = 0; k < sizeof(set) - 1; k++) {
			if (set[k] == tok[i])
				continue;
			memcpy(bad, tok, sizeof(bad));
			bad[i] = set[k];
			assert_int_equal(decode(key_a, binding, bad, &c), -1);
		}
	}
	assert_int_equal(c.after_id, -5); /* untouched on failure */
}

static void other_key_query_or_shape_is_refused(void **state)
{
	const struct page_cursor cur = {7, 9};
	char tok[PAGE_TOKEN_SIZE], bad[PAGE_TOKEN_SIZE + 8];
	struct page_cursor c;
	(void)state;

	page_token_encode(key_a, binding, strlen(binding), &cur, tok);
	assert_int_equal(decode(key_b, binding, tok, &c), -1);
	assert_int_equal(decode(key_a, "ledger|t|a|u|d|0:0.0|0:0.0|1|0", tok,
				&c),
			 -1);
	assert_int_equal(decode(key_a, "", tok, &c), -1);
	assert_int_equal(decode(key_a, binding, "", &c), -1);
	assert_int_equal(page_token_decode(key_a, binding, strlen(binding),
					   NULL, 0, &c),
			 -1);
	snprintf(bad, sizeof(bad), "%s", tok);
	bad[PAGE_TOKEN_LEN - 1] = '\0'; /* one short */
	assert_int_equal(decode(key_a, binding, bad, &c), -1);
	snprintf(bad, sizeof(bad), "%sA", tok); /* one long */
	assert_int_equal(decode(key_a, binding, bad, &c), -1);
	/* A NUL inside: len counts it. */
	memcpy(bad, tok, PAGE_TOKEN_LEN);
	bad[3] = '\0';
	assert_int_equal(page_token_decode(key_a, binding, strlen(binding),
					   bad, PAGE_TOKEN_LEN, &c),
			 -1);
	/* A well-signed cursor with after_id 0 is not a continuation. */
	page_token_encode(key_a, binding, strlen(binding),
			  &(struct page_cursor){0, 5}, tok);
	assert_int_equal(decode(key_a, binding, tok, &c), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trip),
		cmocka_unit_test(tampering_is_refused),
		cmocka_unit_test(other_key_query_or_shape_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
