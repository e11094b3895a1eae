/*
 * Prints the gateway's route table and the status table as JSON, for the
 * tests that check the .proto bindings and the OpenAPI document against
 * them. Paths are expanded (the /api prefix is a route of its own here) and
 * methods listed one by one, HEAD left out (it is GET without a body).
 *
 *   {"routes": [{"method": "PUT", "path": "/v1.0/customers/{T}/...",
 *                "rpc": "assign", "upstream": true}, ...],
 *    "statuses": [{"name": "OK", "http": 201, "grpc": 0, "reason": "",
 *                  "message": "success"}, ...]}
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/status.h"
#include "gateway/routes.h"

static void add_route(json_t *routes, const struct gw_route_info *r,
		      const char *prefix)
{
	char path[1024];
	size_t off = 0;
	char allow[64];

	off += (size_t)snprintf(path, sizeof(path), "%s", prefix);
	for (size_t i = 0; r->segments[i]; i++)
		off += (size_t)snprintf(path + off, sizeof(path) - off, "/%s",
					r->segments[i]);
	snprintf(allow, sizeof(allow), "%s", r->allow);
	for (char *save = NULL, *m = strtok_r(allow, ", ", &save); m;
	     m = strtok_r(NULL, ", ", &save)) {
		if (strcmp(m, "HEAD") == 0)
			continue;
		json_array_append_new(
			routes,
			json_pack("{s:s, s:s, s:s, s:b}", "method", m, "path",
				  path, "rpc", gw_route_rpc_name(r->rpc),
				  "upstream", gw_route_rpc_is_upstream(r->rpc)));
	}
}

int main(void)
{
	json_t *routes = json_array(), *statuses = json_array(), *doc;
	char *text;

	for (size_t i = 0; i < gw_route_count(); i++) {
		struct gw_route_info r;
		gw_route_get(i, &r);
		add_route(routes, &r, "");
		if (r.is_api_prefixable)
			add_route(routes, &r, "/api");
	}
	for (int s = 0; s < DAS_STATUS__COUNT; s++) {
		const struct das_status_row *row =
			das_status_row((enum das_status)s);
		json_array_append_new(
			statuses,
			json_pack("{s:s, s:i, s:i, s:s, s:s}", "name", row->name,
				  "http", row->http_status, "grpc",
				  row->grpc_code, "reason", row->reason,
				  "message", row->message));
	}
	doc = json_pack("{s:o, s:o}", "routes", routes, "statuses", statuses);
	text = json_dumps(doc, JSON_INDENT(1) | JSON_SORT_KEYS);
	if (!text)
		return 1;
	puts(text);
	free(text);
	json_decref(doc);
	return 0;
}
