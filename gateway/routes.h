/*
 * The gateway's one static route table: method + path template -> RPC
 * (CONTRACT.md section 2). Pure: no I/O, no allocation.
 *
 * The raw request target is split on '/' first and each segment is
 * percent-decoded afterwards, exactly once, so an encoded slash stays inside
 * its segment. Path parameters are handed on bounded but otherwise
 * unvalidated: what an id may contain is the service's decision.
 */
#ifndef GW_ROUTES_H
#define GW_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

/* Longest request path we look at, and longest decoded path parameter. */
#define GW_PATH_MAX   2048
#define GW_PARAM_MAX  256
#define GW_PARAM_SIZE (GW_PARAM_MAX + 1)

enum gw_route_rpc {
	GW_ROUTE_ASSIGN,
	GW_ROUTE_UNASSIGN,
	GW_ROUTE_LIST,
	GW_ROUTE_HEALTHZ,
	GW_ROUTE_READYZ,
	GW_ROUTE_METRICS, /* Prometheus exposition, answered by the gateway */
	GW_ROUTE_LEDGER, /* GET .../customers/{T}/ledger */
	GW_ROUTE_SEATS,  /* GET .../customers/{T}/softphone-seats */
	GW_ROUTE_OPENAPI,    /* the OpenAPI document */
	GW_ROUTE_DOCS,       /* the docs page */
	GW_ROUTE_DOCS_ASSET, /* its scripts and styles ({F} = file name) */
};

enum gw_route_result {
	GW_ROUTE_OK = 0,
	GW_ROUTE_NOT_FOUND,	     /* 404: no template matches the path */
	GW_ROUTE_METHOD_NOT_ALLOWED, /* 405: see allow */
	GW_ROUTE_BAD_REQUEST,	     /* 400: see reason */
};

struct gw_route_match {
	enum gw_route_rpc rpc;
	bool has_account;
	/* Decoded parameters, NUL-terminated; may hold any byte but NUL. */
	char account[GW_PARAM_SIZE];
	char tenant[GW_PARAM_SIZE];
	char user[GW_PARAM_SIZE];
	char device[GW_PARAM_SIZE];
	char file[GW_PARAM_SIZE]; /* GW_ROUTE_DOCS_ASSET only */
	/* On 405: the Allow header value (static string). */
	const char *allow;
	/* On 400: a short public reason (static string). */
	const char *reason;
};

/*
 * Matches method (e.g. "PUT") and the raw request target (path, optionally
 * followed by "?query", which is ignored; len bytes, not NUL-terminated)
 * against the table. Fills m and returns GW_ROUTE_OK, or one of the failures
 * with m->allow / m->reason set as described above.
 */
enum gw_route_result gw_route_match(const char *method, const char *target,
				    size_t len, struct gw_route_match *m);

/* "assign", "unassign", "list", "healthz", "readyz", "metrics", "ledger",
 * "seats", "openapi", "docs", "docs-asset". */
const char *gw_route_rpc_name(enum gw_route_rpc rpc);

/* True when the route is answered by an RPC of the service (not locally). */
bool gw_route_rpc_is_upstream(enum gw_route_rpc rpc);

/*
 * One row of the table, for the OpenAPI document and the tests that keep it
 * and the .proto bindings in step with the table. segments is
 * NULL-terminated; "{A}", "{T}", "{U}", "{D}", "{F}" are the captures.
 */
struct gw_route_info {
	const char *const *segments;
	const char *allow; /* "PUT, POST", "GET, HEAD" */
	enum gw_route_rpc rpc;
	bool is_api_prefixable; /* also served under /api */
};

size_t gw_route_count(void);
/* Row i (< gw_route_count()). */
void gw_route_get(size_t i, struct gw_route_info *out);

#endif
