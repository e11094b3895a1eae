/*
 * The OpenAPI 3.0 document of the gateway, built from the one route table
 * (routes.c) and the one status table (common/status.h): a route or a
 * status row cannot be added without showing up here. Served at
 * GET /openapi.json and written at build time as openapi.json.
 */
#ifndef GW_OPENAPI_H
#define GW_OPENAPI_H

#include <stddef.h>

/*
 * The document as compact JSON (malloc'd, NUL-terminated; caller frees),
 * or NULL when memory ran out. Deterministic: same tables, same bytes.
 */
char *gw_openapi_json(size_t *len);

#endif
