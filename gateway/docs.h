/*
 * What the gateway answers by itself from memory: GET /openapi.json (the
 * document of openapi.c, built once) and the docs page GET /docs with its
 * files under /docs/ (swagger-ui-dist, vendored at build time at the
 * version pinned in gateway/docs/package-lock.json). No I/O.
 */
#ifndef GW_DOCS_H
#define GW_DOCS_H

#include <stddef.h>

#include "gateway/routes.h"

/*
 * The Content-Security-Policy of every answer here: nothing but this
 * origin's own scripts, styles and the document, and data: images (the
 * icons of swagger-ui's style sheet); no inline script or style, no eval,
 * no frames, no form posts.
 */
#define GW_DOCS_CSP                                                    \
	"default-src 'none'; script-src 'self'; style-src 'self'; "    \
	"img-src 'self' data:; connect-src 'self'; font-src 'self'; "  \
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

struct gw_static {
	const char *content_type;
	const void *body; /* static: valid for the life of the process */
	size_t len;
};

/*
 * The answer for a GW_ROUTE_OPENAPI, GW_ROUTE_DOCS or GW_ROUTE_DOCS_ASSET
 * match (file = the {F} segment of an asset). Returns 0, or -1 when there
 * is no such file (404) or the document could not be built (500: *is_oom).
 */
int gw_static_lookup(enum gw_route_rpc rpc, const char *file,
		     struct gw_static *out, int *is_oom);

#endif
