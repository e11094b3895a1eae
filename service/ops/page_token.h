/*
 * ListLedger's page token: an opaque, tamper-evident keyset cursor.
 *
 * It carries the last sequence number a page returned (after_id) and the
 * highest sequence number of the customer's ledger when paging began
 * (bound_id), so later pages skip what was written since and return every
 * entry of that moment exactly once. An HMAC-SHA-256 (cut to 128 bits)
 * under the store's shared key covers both and the query it belongs to
 * (binding: customer, account, filters, order), so a token cannot be
 * forged, edited, or replayed against another query. Pure: no I/O.
 *
 * Wire form: base64url without padding of version (1 byte) | after_id
 * (8 bytes, big-endian) | bound_id (8) | MAC (16): 44 characters.
 */
#ifndef DAS_OPS_PAGE_TOKEN_H
#define DAS_OPS_PAGE_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define PAGE_TOKEN_KEY_SIZE 32
#define PAGE_TOKEN_LEN 44
#define PAGE_TOKEN_SIZE (PAGE_TOKEN_LEN + 1)

struct page_cursor {
	int64_t after_id; /* > 0 */
	int64_t bound_id; /* >= 0 */
};

/* Writes the token of c for the query binding (len bytes) to out. */
void page_token_encode(const unsigned char key[PAGE_TOKEN_KEY_SIZE],
		       const void *binding, size_t binding_len,
		       const struct page_cursor *c, char out[PAGE_TOKEN_SIZE]);

/*
 * Checks token (len bytes, any content) against key and binding. Returns 0
 * and fills c, or -1 when it is malformed, of another version, altered,
 * signed by another key or made for another query (c untouched).
 */
int page_token_decode(const unsigned char key[PAGE_TOKEN_KEY_SIZE],
		      const void *binding, size_t binding_len,
		      const char *token, size_t len, struct page_cursor *c);

#endif
