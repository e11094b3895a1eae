/*
 * The query string of GET .../ledger (CONTRACT.md section 8), parsed and
 * checked before any RPC. Pure: no I/O, no allocation, bounded input.
 *
 * Parameters: userId, deviceId (percent-decoded; 1-64 characters of
 * [A-Za-z0-9._-], the contract's id syntax, checked here so the 400 can
 * name the parameter), since, until (RFC 3339 timestamps:
 * "2026-12-01T10:00:00Z", up to 9 fractional digits, "Z" or a "+hh:mm" /
 * "-hh:mm" offset; a '+' that form encoding turned into a space is read
 * back as '+'), onlyCharged (true|false), pageSize (1-500, default 100),
 * pageToken (opaque, at most 128 bytes; empty = first page), order
 * (newest|oldest, default newest). Names are case-sensitive. An unknown
 * parameter, one given twice, a bad value or bad percent-encoding is a 400
 * whose reason names the parameter.
 */
#ifndef GW_QUERY_H
#define GW_QUERY_H

#include <stdbool.h>
#include <stddef.h>

#include "common/timefmt.h"
#include "gateway/routes.h"

#define GW_QUERY_MAX 4096 /* raw query bytes we look at */
#define GW_PAGE_TOKEN_MAX 128
#define GW_LEDGER_PAGE_MAX 500
#define GW_LEDGER_PAGE_DEFAULT 100
#define GW_QUERY_REASON_SIZE 160

enum gw_ledger_order {
	GW_LEDGER_NEWEST_FIRST = 1, /* LedgerOrder values of the proto */
	GW_LEDGER_OLDEST_FIRST = 2,
};

struct gw_ledger_params {
	char user[GW_PARAM_SIZE];   /* "" = not given */
	char device[GW_PARAM_SIZE]; /* "" = not given */
	bool has_since;
	struct das_time since;
	bool has_until;
	struct das_time until;
	bool is_only_charged;
	unsigned page_size;
	char page_token[GW_PAGE_TOKEN_MAX + 1];
	int order; /* enum gw_ledger_order */
};

/*
 * Parses query (len bytes, without the '?'; may be empty) into out.
 * Returns 0, or -1 with a public reason naming the parameter in reason.
 */
int gw_query_parse_ledger(const char *query, size_t len,
			  struct gw_ledger_params *out,
			  char reason[GW_QUERY_REASON_SIZE]);

#endif
