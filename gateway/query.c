#include "query.h"

#include <stdio.h>
#include <string.h>

#include "common/chars.h"
#include "common/ids.h"

enum param {
	P_USER,
	P_DEVICE,
	P_SINCE,
	P_UNTIL,
	P_ONLY_CHARGED,
	P_PAGE_SIZE,
	P_PAGE_TOKEN,
	P_ORDER,
	P__COUNT
};

static const char *const names[P__COUNT] = {
	"userId",   "deviceId",  "since",     "until",
	"onlyCharged", "pageSize", "pageToken", "order",
};

/* Makes a name as sent printable and short for a reason text. */
static void quote(const char *s, char out[40])
{
	size_t o = 0;

	for (; *s && o < 32; s++)
		out[o++] = *s > 0x20 && *s < 0x7f ? *s : '?';
	if (*s)
		memcpy(out + o, "...", 3), o += 3;
	out[o] = '\0';
}

static int take_value(enum param p, const char *v, size_t vlen,
		      struct gw_ledger_params *out, char *reason)
{
	char buf[GW_PARAM_SIZE];
	long n;
	int k;

	switch (p) {
	case P_USER:
	case P_DEVICE: {
		char *dst = p == P_USER ? out->user : out->device;

		n = das_percent_decode(v, vlen, dst, GW_PARAM_SIZE);
		if (n <= 0 || !das_id_is_valid(dst, (size_t)n)) {
			snprintf(reason, GW_QUERY_REASON_SIZE,
				 "%s must be 1-%d characters of A-Z a-z 0-9 "
				 ". _ -",
				 names[p], DAS_ID_MAX);
			return -1;
		}
		return 0;
	}
	case P_SINCE:
	case P_UNTIL:
		n = das_percent_decode(v, vlen, buf, sizeof(buf));
		if (n <= 0 ||
		    das_time_parse(buf, (size_t)n,
				     p == P_SINCE ? &out->since
						  : &out->until) != 0) {
			snprintf(reason, GW_QUERY_REASON_SIZE,
				 "%s must be an RFC 3339 timestamp, as in "
				 "2026-12-01T10:00:00Z",
				 names[p]);
			return -1;
		}
		if (p == P_SINCE)
			out->has_since = true;
		else
			out->has_until = true;
		return 0;
	case P_ONLY_CHARGED:
		n = das_percent_decode(v, vlen, buf, sizeof(buf));
		if (n == 4 && strcmp(buf, "true") == 0)
			out->is_only_charged = true;
		else if (n == 5 && strcmp(buf, "false") == 0)
			out->is_only_charged = false;
		else {
			snprintf(reason, GW_QUERY_REASON_SIZE,
				 "onlyCharged must be true or false");
			return -1;
		}
		return 0;
	case P_PAGE_SIZE:
		n = das_percent_decode(v, vlen, buf, sizeof(buf));
		if (n <= 0 || n > 3 || !das_decimal(buf, (size_t)n, &k) ||
		    k < 1 || k > GW_LEDGER_PAGE_MAX) {
			snprintf(reason, GW_QUERY_REASON_SIZE,
				 "pageSize must be an integer from 1 to %d",
				 GW_LEDGER_PAGE_MAX);
			return -1;
		}
		out->page_size = (unsigned)k;
		return 0;
	case P_PAGE_TOKEN:
		n = das_percent_decode(v, vlen, out->page_token,
				       sizeof(out->page_token));
		if (n < 0) {
			snprintf(reason, GW_QUERY_REASON_SIZE,
				 "pageToken is not valid");
			return -1;
		}
		return 0;
	case P_ORDER:
		n = das_percent_decode(v, vlen, buf, sizeof(buf));
		if (n == 6 && strcmp(buf, "newest") == 0)
			out->order = GW_LEDGER_NEWEST_FIRST;
		else if (n == 6 && strcmp(buf, "oldest") == 0)
			out->order = GW_LEDGER_OLDEST_FIRST;
		else {
			snprintf(reason, GW_QUERY_REASON_SIZE,
				 "order must be newest or oldest");
			return -1;
		}
		return 0;
	default:
		return -1;
	}
}

int gw_query_parse_ledger(const char *query, size_t len,
			  struct gw_ledger_params *out,
			  char reason[GW_QUERY_REASON_SIZE])
{
	bool seen[P__COUNT] = {false};
	size_t i = 0;

	memset(out, 0, sizeof(*out));
	out->page_size = GW_LEDGER_PAGE_DEFAULT;
	out->order = GW_LEDGER_NEWEST_FIRST;
	reason[0] = '\0';
	if (len > GW_QUERY_MAX) {
		snprintf(reason, GW_QUERY_REASON_SIZE, "query string too long");
		return -1;
	}
	while (i < len) {
		size_t end = i, eq;
		char name[48], shown[40];
		long n;
		int p;

		while (end < len && query[end] != '&')
			end++;
		if (end == i) { /* "&&" or a trailing '&' */
			i = end + 1;
			continue;
		}
		eq = i;
		while (eq < end && query[eq] != '=')
			eq++;
		n = das_percent_decode(query + i, eq - i, name, sizeof(name));
		for (p = 0; n > 0 && p < P__COUNT; p++)
			if (strcmp(name, names[p]) == 0)
				break;
		if (n <= 0 || p == P__COUNT) {
			if (n > 0)
				quote(name, shown);
			else
				snprintf(shown, sizeof(shown), "?");
			snprintf(reason, GW_QUERY_REASON_SIZE,
				 "unknown query parameter '%s'; known: userId, "
				 "deviceId, since, until, onlyCharged, "
				 "pageSize, pageToken, order",
				 shown);
			return -1;
		}
		if (seen[p]) {
			snprintf(reason, GW_QUERY_REASON_SIZE,
				 "%s is given more than once", names[p]);
			return -1;
		}
		seen[p] = true;
		if (eq == end && p != P_PAGE_TOKEN) {
			/* "name" alone, without "=": no value at all. */
			if (take_value((enum param)p, "", 0, out, reason) != 0)
				return -1;
		} else if (take_value((enum param)p, query + eq + 1,
				      eq == end ? 0 : end - eq - 1, out,
				      reason) != 0) {
			return -1;
		}
		i = end + 1;
	}
	return 0;
}
