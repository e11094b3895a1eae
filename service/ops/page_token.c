#include "page_token.h"

#include <stdbool.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define VERSION 1
#define MAC_SIZE 16
#define RAW_SIZE (1 + 8 + 8 + MAC_SIZE) /* 33 bytes: 44 base64 chars */

static const char alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)(v & 0xff);
}

static uint64_t get_u64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/*
 * MAC of the first 17 raw bytes followed by the binding. HMAC() is the
 * one-shot form libcrypto 3 keeps undeprecated. A binding over
 * BINDING_MAX (no query of ours comes close) or a libcrypto failure gives
 * an all-zero MAC, which decode never accepts: it refuses zeros.
 */
#define BINDING_MAX 1024

static void mac(const unsigned char key[PAGE_TOKEN_KEY_SIZE],
		const unsigned char *raw, const void *binding,
		size_t binding_len, unsigned char out[MAC_SIZE])
{
	unsigned char msg[17 + BINDING_MAX];
	unsigned char full[EVP_MAX_MD_SIZE];
	unsigned int full_len = 0;

	memset(out, 0, MAC_SIZE);
	if (binding_len > BINDING_MAX)
		return;
	memcpy(msg, raw, 17);
	if (binding_len)
		memcpy(msg + 17, binding, binding_len);
	if (HMAC(EVP_sha256(), key, PAGE_TOKEN_KEY_SIZE, msg, 17 + binding_len,
		 full, &full_len) &&
	    full_len >= MAC_SIZE)
		memcpy(out, full, MAC_SIZE);
}

static bool is_zero(const unsigned char *p, size_t n)
{
	unsigned char acc = 0;

	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

void page_token_encode(const unsigned char key[PAGE_TOKEN_KEY_SIZE],
		       const void *binding, size_t binding_len,
		       const struct page_cursor *c, char out[PAGE_TOKEN_SIZE])
{
	unsigned char raw[RAW_SIZE];
	size_t o = 0;

	raw[0] = VERSION;
	put_u64(raw + 1, (uint64_t)c->after_id);
	put_u64(raw + 9, (uint64_t)c->bound_id);
	mac(key, raw, binding, binding_len, raw + 17);
	/* 33 bytes = 11 groups of 3: no padding. */
	for (size_t i = 0; i < RAW_SIZE; i += 3) {
		uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 |
			     raw[i + 2];

		out[o++] = alphabet[(v >> 18) & 63];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = alphabet[(v >> 6) & 63];
		out[o++] = alphabet[v & 63];
	}
	out[o] = '\0';
}

static int b64_value(char ch)
{
	const char *p = ch ? memchr(alphabet, ch, 64) : NULL;

	return p ? (int)(p - alphabet) : -1;
}

int page_token_decode(const unsigned char key[PAGE_TOKEN_KEY_SIZE],
		      const void *binding, size_t binding_len,
		      const char *token, size_t len, struct page_cursor *c)
{
	unsigned char raw[RAW_SIZE], want[MAC_SIZE];
	int64_t after, bound;

	if (!token || len != PAGE_TOKEN_LEN)
		return -1;
	for (size_t i = 0, o = 0; i < len; i += 4) {
		uint32_t v = 0;

		for (size_t k = 0; k < 4; k++) {
			int d = b64_value(token[i + k]);

			if (d < 0)
				return -1;
			v = v << 6 | (uint32_t)d;
		}
		raw[o++] = (unsigned char)(v >> 16);
		raw[o++] = (unsigned char)(v >> 8);
		raw[o++] = (unsigned char)v;
	}
	if (raw[0] != VERSION)
		return -1;
	mac(key, raw, binding, binding_len, want);
	if (is_zero(want, MAC_SIZE) ||
	    CRYPTO_memcmp(want, raw + 17, MAC_SIZE) != 0)
		return -1;
	after = (int64_t)get_u64(raw + 1);
	bound = (int64_t)get_u64(raw + 9);
	if (after <= 0 || bound < 0)
		return -1;
	c->after_id = after;
	c->bound_id = bound;
	return 0;
}
