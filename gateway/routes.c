#include "routes.h"

#include <string.h>

#include "common/ascii.h"
#include "common/chars.h"

/*
 * Templates are lists of segments; "{A}", "{T}", "{U}", "{D}" and "{F}"
 * capture the account, tenant, user, device and docs file name. Each path template appears once per
 * method group so a 405 can say which methods the path does take.
 */
#define MAX_SEGMENTS 12

enum { M_GET = 1, M_PUT = 2, M_POST = 4 };

struct route {
	const char *segments[MAX_SEGMENTS]; /* NULL-terminated */
	unsigned methods;
	const char *allow;
	enum gw_route_rpc rpc;
	bool is_api_prefixable; /* also reachable under /api */
};

#define CUST "v1.0", "customers", "{T}", "users", "{U}", "devices", "pbx"
#define ACCT                                                           \
	"v1.0", "accounts", "{A}", "customers", "{T}", "users", "{U}", \
		"devices", "pbx"

static const struct route routes[] = {
	{{CUST, "{D}", "assign", NULL},
	 M_PUT | M_POST,
	 "PUT, POST",
	 GW_ROUTE_ASSIGN,
	 true},
	{{CUST, "{D}", "unassign", NULL},
	 M_PUT | M_POST,
	 "PUT, POST",
	 GW_ROUTE_UNASSIGN,
	 true},
	{{CUST, NULL}, M_GET, "GET, HEAD", GW_ROUTE_LIST, true},
	{{ACCT, "{D}", "assign", NULL},
	 M_PUT | M_POST,
	 "PUT, POST",
	 GW_ROUTE_ASSIGN,
	 true},
	{{ACCT, "{D}", "unassign", NULL},
	 M_PUT | M_POST,
	 "PUT, POST",
	 GW_ROUTE_UNASSIGN,
	 true},
	{{ACCT, NULL}, M_GET, "GET, HEAD", GW_ROUTE_LIST, true},
	{{"v1.0", "customers", "{T}", "ledger", NULL},
	 M_GET,
	 "GET, HEAD",
	 GW_ROUTE_LEDGER,
	 true},
	{{"v1.0", "accounts", "{A}", "customers", "{T}", "ledger", NULL},
	 M_GET,
	 "GET, HEAD",
	 GW_ROUTE_LEDGER,
	 true},
	{{"v1.0", "customers", "{T}", "softphone-seats", NULL},
	 M_GET,
	 "GET, HEAD",
	 GW_ROUTE_SEATS,
	 true},
	{{"v1.0", "accounts", "{A}", "customers", "{T}", "softphone-seats",
	  NULL},
	 M_GET,
	 "GET, HEAD",
	 GW_ROUTE_SEATS,
	 true},
	{{"healthz", NULL}, M_GET, "GET, HEAD", GW_ROUTE_HEALTHZ, false},
	{{"readyz", NULL}, M_GET, "GET, HEAD", GW_ROUTE_READYZ, false},
	{{"metrics", NULL}, M_GET, "GET, HEAD", GW_ROUTE_METRICS, false},
	{{"openapi.json", NULL}, M_GET, "GET, HEAD", GW_ROUTE_OPENAPI, false},
	{{"docs", NULL}, M_GET, "GET, HEAD", GW_ROUTE_DOCS, false},
	{{"docs", "{F}", NULL}, M_GET, "GET, HEAD", GW_ROUTE_DOCS_ASSET, false},
};

size_t gw_route_count(void)
{
	return sizeof(routes) / sizeof(routes[0]);
}

void gw_route_get(size_t i, struct gw_route_info *out)
{
	out->segments = routes[i].segments;
	out->allow = routes[i].allow;
	out->rpc = routes[i].rpc;
	out->is_api_prefixable = routes[i].is_api_prefixable;
}

struct segment {
	const char *p;
	size_t len;
};

const char *gw_route_rpc_name(enum gw_route_rpc rpc)
{
	switch (rpc) {
	case GW_ROUTE_ASSIGN:
		return "assign";
	case GW_ROUTE_UNASSIGN:
		return "unassign";
	case GW_ROUTE_LIST:
		return "list";
	case GW_ROUTE_HEALTHZ:
		return "healthz";
	case GW_ROUTE_READYZ:
		return "readyz";
	case GW_ROUTE_METRICS:
		return "metrics";
	case GW_ROUTE_LEDGER:
		return "ledger";
	case GW_ROUTE_SEATS:
		return "seats";
	case GW_ROUTE_OPENAPI:
		return "openapi";
	case GW_ROUTE_DOCS:
		return "docs";
	case GW_ROUTE_DOCS_ASSET:
		return "docs-asset";
	}
	return "";
}

bool gw_route_rpc_is_upstream(enum gw_route_rpc rpc)
{
	switch (rpc) {
	case GW_ROUTE_ASSIGN:
	case GW_ROUTE_UNASSIGN:
	case GW_ROUTE_LIST:
	case GW_ROUTE_LEDGER:
	case GW_ROUTE_SEATS:
		return true;
	case GW_ROUTE_HEALTHZ:
	case GW_ROUTE_READYZ:
	case GW_ROUTE_METRICS:
	case GW_ROUTE_OPENAPI:
	case GW_ROUTE_DOCS:
	case GW_ROUTE_DOCS_ASSET:
		return false;
	}
	return false;
}

static unsigned method_bit(const char *method)
{
	/* HEAD is GET without the body (RFC 9110); http/conn.c drops it. */
	if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
		return M_GET;
	if (strcmp(method, "PUT") == 0)
		return M_PUT;
	if (strcmp(method, "POST") == 0)
		return M_POST;
	return 0;
}

/*
 * Decodes one segment into out (GW_PARAM_SIZE bytes). A '%' must be
 * followed by two hex digits and must not encode NUL (it would cut the id
 * short further down). Returns 0, or -1 with *reason set.
 */
static int decode_segment(struct segment s, char *out, const char **reason)
{
	/* The path was checked for raw bytes <= 0x20 (NUL among them), so
	 * a segment without '%' decodes to itself (the usual case). */
	if (!memchr(s.p, '%', s.len)) {
		if (s.len >= GW_PARAM_SIZE) {
			*reason = "path segment too long";
			return -1;
		}
		memcpy(out, s.p, s.len);
		out[s.len] = '\0';
		return 0;
	}
	switch (das_percent_decode(s.p, s.len, out, GW_PARAM_SIZE)) {
	case DAS_PCT_BAD_ESCAPE:
		*reason = "bad percent-encoding in the path";
		return -1;
	case DAS_PCT_NUL:
		*reason = "NUL byte in the path";
		return -1;
	case DAS_PCT_TOO_LONG:
		*reason = "path segment too long";
		return -1;
	default:
		return 0;
	}
}

static bool literal_is(struct segment s, const char *lit)
{
	size_t n = strlen(lit);
	return s.len == n && memcmp(s.p, lit, n) == 0;
}

static bool template_matches(const struct route *r, const struct segment *seg,
			     size_t n)
{
	size_t i = 0;

	for (; i < n && r->segments[i]; i++) {
		const char *t = r->segments[i];
		if (t[0] == '{')
			continue;
		if (!literal_is(seg[i], t))
			return false;
	}
	return i == n && r->segments[i] == NULL;
}

static char *param_slot(struct gw_route_match *m, char name)
{
	switch (name) {
	case 'A':
		return m->account;
	case 'T':
		return m->tenant;
	case 'U':
		return m->user;
	case 'F':
		return m->file;
	default:
		return m->device;
	}
}

/*
 * Splits the path (path_len bytes of target, the query already cut off)
 * into seg (MAX_SEGMENTS + 1 entries) and validates every segment once,
 * whether or not a route will match. Returns GW_ROUTE_OK with *n set, or a
 * failure (with *reason for a 400).
 */
static enum gw_route_result split_path(const char *target, size_t path_len,
				       struct segment *seg, size_t *n,
				       const char **reason)
{
	char scratch[GW_PARAM_SIZE];

	*n = 0;
	if (path_len > GW_PATH_MAX) {
		*reason = "request path too long";
		return GW_ROUTE_BAD_REQUEST;
	}
	/* Only visible ASCII may appear raw; anything else must be encoded. */
	if (das_ascii_visible_span(target, path_len) != path_len ||
	    memchr(target, ' ', path_len) || memchr(target, '#', path_len)) {
		*reason = "invalid character in the path";
		return GW_ROUTE_BAD_REQUEST;
	}
	if (path_len == 0 || target[0] != '/')
		return GW_ROUTE_NOT_FOUND;
	for (size_t i = 1, start = 1; i <= path_len; i++) {
		if (i < path_len && target[i] != '/')
			continue;
		if (*n > MAX_SEGMENTS)
			return GW_ROUTE_NOT_FOUND;
		seg[*n].p = target + start;
		seg[*n].len = i - start;
		(*n)++;
		start = i + 1;
	}
	for (size_t i = 0; i < *n; i++) {
		if (seg[i].len == 0)
			return GW_ROUTE_NOT_FOUND; /* "//" or trailing '/' */
		if (literal_is(seg[i], ".") || literal_is(seg[i], "..")) {
			*reason = "dot segments are not allowed in the path";
			return GW_ROUTE_BAD_REQUEST;
		}
		if (decode_segment(seg[i], scratch, reason) != 0)
			return GW_ROUTE_BAD_REQUEST;
	}
	return GW_ROUTE_OK;
}

/*
 * True when r's template matches the n segments, directly or (for the
 * routes that allow it) under "/api"; *first is then the index of the
 * segment the template starts at.
 */
static bool route_matches(const struct route *r, const struct segment *seg,
			  size_t n, size_t *first)
{
	*first = 0;
	if (template_matches(r, seg, n))
		return true;
	if (!r->is_api_prefixable || n < 2 || !literal_is(seg[0], "api") ||
	    !template_matches(r, seg + 1, n - 1))
		return false;
	*first = 1;
	return true;
}

/* Decodes r's parameters from seg (the template's first segment on). */
static void take_params(const struct route *r, const struct segment *seg,
			struct gw_route_match *m)
{
	for (size_t i = 0; r->segments[i]; i++) {
		const char *t = r->segments[i];
		if (t[0] != '{')
			continue;
		/* Validated by split_path: cannot fail here. */
		decode_segment(seg[i], param_slot(m, t[1]), &m->reason);
		if (t[1] == 'A')
			m->has_account = true;
	}
}

enum gw_route_result gw_route_match(const char *method, const char *target,
				    size_t len, struct gw_route_match *m)
{
	struct segment seg[MAX_SEGMENTS + 1];
	const char *query;
	size_t n, path_len = 0, first;
	const struct route *path_hit = NULL;
	enum gw_route_result res;

	memset(m, 0, sizeof(*m));
	query = memchr(target, '?', len);
	path_len = query ? (size_t)(query - target) : len;
	res = split_path(target, path_len, seg, &n, &m->reason);
	if (res != GW_ROUTE_OK)
		return res;
	for (size_t k = 0; k < sizeof(routes) / sizeof(routes[0]); k++) {
		const struct route *r = &routes[k];

		if (!route_matches(r, seg, n, &first))
			continue;
		if (!path_hit)
			path_hit = r;
		if (!(r->methods & method_bit(method)))
			continue;
		m->rpc = r->rpc;
		take_params(r, seg + first, m);
		m->reason = NULL;
		return GW_ROUTE_OK;
	}
	if (path_hit) {
		m->allow = path_hit->allow;
		return GW_ROUTE_METHOD_NOT_ALLOWED;
	}
	return GW_ROUTE_NOT_FOUND;
}
