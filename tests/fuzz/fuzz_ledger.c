/*
 * Fuzz target: the ledger's hostile inputs — a query string through the
 * gateway's parser, and the same bytes as a page token through the
 * service's decoder — checking what each promises: a parse either fails
 * with a reason or fills bounded, NUL-terminated, valid fields; a token
 * nobody signed is never accepted.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/ids.h"
#include "gateway/query.h"
#include "service/ops/page_token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned char key[PAGE_TOKEN_KEY_SIZE] = {1, 2, 3};
	struct gw_ledger_params p;
	struct page_cursor c;
	char reason[GW_QUERY_REASON_SIZE];

	if (gw_query_parse_ledger((const char *)data, size, &p, reason) == 0) {
		if (p.page_size < 1 || p.page_size > GW_LEDGER_PAGE_MAX ||
		    (p.order != GW_LEDGER_NEWEST_FIRST &&
		     p.order != GW_LEDGER_OLDEST_FIRST) ||
		    strlen(p.page_token) > GW_PAGE_TOKEN_MAX ||
		    (p.user[0] && !das_id_is_valid(p.user, strlen(p.user))) ||
		    (p.device[0] &&
		     !das_id_is_valid(p.device, strlen(p.device))) ||
		    (p.has_since && (p.since.nanos < 0 ||
				     p.since.nanos > 999999999)))
			abort();
	} else if (!reason[0] || strlen(reason) >= sizeof(reason)) {
		abort();
	}
	if (page_token_decode(key, "b", 1, (const char *)data, size, &c) == 0)
		abort(); /* forging a 128-bit MAC by chance: no */
	return 0;
}
