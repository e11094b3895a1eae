#include "openapi.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "common/status.h"
#include "gateway/routes.h"

#define GUID_PATTERN                                                     \
	"^\\{?[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}" \
	"-?[0-9A-Fa-f]{12}\\}?$"
#define ID_PATTERN "^[A-Za-z0-9._-]{1,64}$"
#define EXAMPLE_TENANT "6fa459ea-ee8a-4ca4-894e-db77e160355e"
#define EXAMPLE_TIME "2019-11-29T16:03:23.9251680Z"

/* Which answers a route can give, by kind of route. */
enum {
	K_ASSIGN = 1u << 0,
	K_UNASSIGN = 1u << 1,
	K_LIST = 1u << 2,
	K_READYZ = 1u << 3,
	K_ASSET = 1u << 4,
	K_LOCAL = 1u << 5, /* answered by the gateway alone */
	K_METRICS = 1u << 7,
	K_LEDGER = 1u << 8,
	K_SEATS = 1u << 9,
	/* Answers to a request whatever its route (a method the path does not
	 * take, HTTP-level refusals): components.responses, by row name. */
	K_ANY_REQUEST = 1u << 6,
	K_UPSTREAM = K_ASSIGN | K_UNASSIGN | K_LIST | K_LEDGER | K_SEATS,
	K_ALL = K_UPSTREAM | K_READYZ | K_ASSET | K_LOCAL | K_METRICS,
};

static unsigned route_kind(enum gw_route_rpc rpc)
{
	switch (rpc) {
	case GW_ROUTE_ASSIGN:
		return K_ASSIGN;
	case GW_ROUTE_UNASSIGN:
		return K_UNASSIGN;
	case GW_ROUTE_LIST:
		return K_LIST;
	case GW_ROUTE_LEDGER:
		return K_LEDGER;
	case GW_ROUTE_SEATS:
		return K_SEATS;
	case GW_ROUTE_READYZ:
		return K_READYZ;
	case GW_ROUTE_DOCS_ASSET:
		return K_ASSET;
	case GW_ROUTE_METRICS:
		return K_METRICS;
	case GW_ROUTE_HEALTHZ:
	case GW_ROUTE_OPENAPI:
	case GW_ROUTE_DOCS:
		return K_LOCAL;
	}
	return 0;
}

/*
 * The routes each row of the status table can answer (CONTRACT.md section
 * 2, check order). A row added to common/status.h and not placed here is
 * missing from the document, and the drift test says so.
 */
static unsigned status_routes(enum das_status s)
{
	switch (s) {
	case DAS_OK:
		return K_ASSIGN | K_UNASSIGN;
	case DAS_OK_READ:
		return K_LIST | K_LEDGER | K_SEATS;
	case DAS_UNAUTHENTICATED:
	case DAS_INVALID_TENANT_ID:
	case DAS_FORBIDDEN:
	case DAS_CUSTOMER_NOT_FOUND:
	case DAS_DEADLINE_EXCEEDED:
	case DAS_INTERNAL:
		return K_UPSTREAM;
	case DAS_INVALID_ID: /* the ledger's userId and deviceId filters too */
		return K_ASSIGN | K_UNASSIGN | K_LIST | K_LEDGER;
	case DAS_USER_NOT_FOUND:
		return K_ASSIGN | K_UNASSIGN | K_LIST;
	case DAS_INVALID_ARGUMENT:
		return K_ALL; /* a malformed path, on any route */
	case DAS_UNAVAILABLE:
		return K_UPSTREAM | K_READYZ;
	case DAS_STORE_UNAVAILABLE:
		/* the writes, and the read pass a list shares with them (a
		 * lost database or too many calls waiting for the store) */
		return K_ASSIGN | K_UNASSIGN | K_LIST;
	case DAS_DEVICE_NOT_FOUND:
	case DAS_PAYLOAD_TOO_LARGE:
		return K_ASSIGN | K_UNASSIGN;
	case DAS_INVALID_CLIENT_TYPE:
	case DAS_MISSING_ROLES:
	case DAS_CHARGES_NOT_ACCEPTED:
	case DAS_UNSUPPORTED_MEDIA_TYPE:
		return K_ASSIGN;
	case DAS_ROUTE_NOT_FOUND:
		return K_ASSET | K_METRICS | K_ANY_REQUEST;
	case DAS_METHOD_NOT_ALLOWED:
	case DAS_URI_TOO_LONG:
	case DAS_HEADERS_TOO_LARGE:
	case DAS_NOT_IMPLEMENTED:
	case DAS_HTTP_VERSION_NOT_SUPPORTED:
		return K_ANY_REQUEST;
	default:
		return 0;
	}
}

/* What fills a message's "%s" in its example. */
static const char *example_arg(enum das_status s)
{
	switch (s) {
	case DAS_INVALID_TENANT_ID:
		return "not-a-guid";
	case DAS_INVALID_ID:
		return "bad id!";
	case DAS_MISSING_ROLES:
		return "customer_user_uc_softphone";
	case DAS_INVALID_ARGUMENT:
		return "accept-charges must be true or false";
	case DAS_NOT_IMPLEMENTED:
		return "transfer coding gzip";
	default:
		return "";
	}
}

/* json_pack that names the format it could not build (a bug here). */
static json_t *pack(const char *fmt, ...)
{
	json_error_t err;
	json_t *v;
	va_list ap;

	va_start(ap, fmt);
	v = json_vpack_ex(&err, 0, fmt, ap);
	va_end(ap);
	if (!v)
		fprintf(stderr, "openapi: %s at %d in \"%.60s\"\n", err.text,
			err.position, fmt);
	return v;
}

static json_t *ref(const char *where)
{
	return pack("{s:s}", "$ref", where);
}

static json_t *error_example(enum das_status s)
{
	const struct das_status_row *row = das_status_row(s);
	char msg[256];
	json_t *v;

	das_status_format(s, example_arg(s), msg, sizeof(msg));
	v = pack("{s:i, s:s, s:s, s:s}", "error", row->http_status,
		      "message", msg, "status", "error", "timestamp",
		      EXAMPLE_TIME);
	if (s == DAS_CHARGES_NOT_ACCEPTED)
		json_object_set_new(v, "data", pack("{s:s}", "clientType",
							 "desktop"));
	return pack("{s:s, s:o}", "summary", row->name, "value", v);
}

/* The response object of the error rows in `rows` answering `code`. */
static json_t *error_response(int code, const bool *rows)
{
	json_t *examples = json_object(), *resp, *headers = NULL;
	char desc[1024] = "";
	size_t off = 0;
	const char *schema = code == 402 ? "#/components/schemas/ChargesError"
					 : "#/components/schemas/Error";

	for (int s = 0; s < DAS_STATUS__COUNT; s++) {
		const struct das_status_row *row =
			das_status_row((enum das_status)s);
		if (!rows[s] || row->http_status != code)
			continue;
		json_object_set_new(examples, row->name,
				    error_example((enum das_status)s));
		off += (size_t)snprintf(desc + off, sizeof(desc) - off,
					"%s%s (%s)", off ? "; " : "",
					row->message, row->name);
		if (off >= sizeof(desc))
			off = sizeof(desc) - 1;
	}
	if (code == 401)
		headers = pack(
			"{s:{s:s, s:{s:s, s:s}}}", "WWW-Authenticate",
			"description", "Bearer", "schema", "type", "string",
			"example", "Bearer");
	if (code == 405)
		headers = pack("{s:{s:s, s:{s:s, s:s}}}", "Allow",
				    "description", "the methods the path takes",
				    "schema", "type", "string", "example",
				    "PUT, POST");
	resp = pack("{s:s, s:{s:{s:o, s:o}}}", "description", desc,
			 "content", "application/json", "schema", ref(schema),
			 "examples", examples);
	if (headers)
		json_object_set_new(resp, "headers", headers);
	return resp;
}

static void add_error_responses(json_t *responses, unsigned kind)
{
	bool rows[DAS_STATUS__COUNT] = {false};
	bool seen_code[600] = {false};

	for (int s = 0; s < DAS_STATUS__COUNT; s++)
		rows[s] = das_status_row((enum das_status)s)->grpc_code !=
				  DAS_GRPC_OK &&
			  (status_routes((enum das_status)s) & kind);
	for (int s = 0; s < DAS_STATUS__COUNT; s++) {
		int code = das_status_row((enum das_status)s)->http_status;
		char key[8];
		if (!rows[s] || code < 0 || code >= 600 || seen_code[code])
			continue;
		seen_code[code] = true;
		snprintf(key, sizeof(key), "%d", code);
		json_object_set_new(responses, key, error_response(code, rows));
	}
}

/*
 * A read's 200 (the OK_READ row): its schema, and an example named by the
 * row whose value is `fields` plus the row's status and a timestamp.
 */
static json_t *read_success(const char *description, const char *schema,
			    json_t *fields)
{
	const struct das_status_row *ok = das_status_row(DAS_OK_READ);

	json_object_set_new(fields, "status", json_string(ok->message));
	json_object_set_new(fields, "timestamp", json_string(EXAMPLE_TIME));
	return pack("{s:s, s:{s:{s:o, s:{s:{s:s, s:o}}}}}", "description",
		    description, "content", "application/json", "schema",
		    ref(schema), "examples", ok->name, "summary", ok->name,
		    "value", fields);
}

static json_t *success_response(unsigned kind)
{
	const struct das_status_row *ok = das_status_row(DAS_OK);

	if (kind & (K_ASSIGN | K_UNASSIGN))
		return pack(
			"{s:s, s:{s:{s:s, s:{s:s, s:s}}}, s:{s:{s:o, "
			"s:{s:{s:s, s:{s:s, s:s}}}}}}",
			"description", "Created: the change is durable",
			"headers", "Location", "description",
			"the absolute URL of the request path", "schema", "type",
			"string", "format", "uri",
			"content", "application/json", "schema",
			ref("#/components/schemas/Success"), "examples",
			ok->name, "summary", ok->name, "value", "status",
			ok->message, "timestamp", EXAMPLE_TIME);
	if (kind & K_LEDGER)
		return read_success("one page of ledger entries",
				    "#/components/schemas/LedgerPage",
				    pack("{s:[], s:s}", "data", "nextPageToken",
					 ""));
	if (kind & K_SEATS)
		return read_success("the customer's seats",
				    "#/components/schemas/SeatUsage",
				    pack("{s:{s:i, s:i, s:i}}", "data",
					 "included", 2, "used", 1, "charged",
					 0));
	if (kind & K_LIST)
		return read_success(
			"the user's softphone assignments, by client type",
			"#/components/schemas/DeviceList",
			pack("{s:[{s:s, s:s}]}", "data", "deviceId", "d1",
			     "clientType", "desktop"));
	return pack("{s:s, s:{s:{s:o}}}", "description", "OK", "content",
			 "application/json", "schema",
			 ref("#/components/schemas/Success"));
}

static const char *param_ref(char capture)
{
	switch (capture) {
	case 'A':
		return "#/components/parameters/accountTenantId";
	case 'T':
		return "#/components/parameters/customerTenantId";
	case 'U':
		return "#/components/parameters/userId";
	case 'D':
		return "#/components/parameters/deviceId";
	default:
		return "#/components/parameters/file";
	}
}

static const char *param_name(char capture)
{
	switch (capture) {
	case 'A':
		return "accountTenantId";
	case 'T':
		return "customerTenantId";
	case 'U':
		return "userId";
	case 'D':
		return "deviceId";
	default:
		return "file";
	}
}

static const char *summary_of(enum gw_route_rpc rpc)
{
	switch (rpc) {
	case GW_ROUTE_ASSIGN:
		return "Assign a PBX device as the user's softphone for a "
		       "client type";
	case GW_ROUTE_UNASSIGN:
		return "Unassign a PBX device (a no-op when it has no "
		       "assignment)";
	case GW_ROUTE_LIST:
		return "List the user's softphone assignments";
	case GW_ROUTE_LEDGER:
		return "Read the customer's ledger of changes, a page at a time "
		       "(scope ledger:read)";
	case GW_ROUTE_SEATS:
		return "The customer's softphone seats: included, used, charged "
		       "(scope ledger:read)";
	case GW_ROUTE_HEALTHZ:
		return "The gateway process runs";
	case GW_ROUTE_READYZ:
		return "The gateway and its upstream service can take requests";
	case GW_ROUTE_METRICS:
		return "Prometheus metrics of the gateway (404 here when "
		       "--metrics-listen gives them their own address)";
	case GW_ROUTE_OPENAPI:
		return "This OpenAPI document";
	case GW_ROUTE_DOCS:
		return "The API documentation page";
	case GW_ROUTE_DOCS_ASSET:
		return "A script or style sheet of the documentation page";
	}
	return "";
}

/* The responses key of a row: its HTTP status as text. */
static const char *status_key(enum das_status s, char key[8])
{
	snprintf(key, 8, "%d", das_status_row(s)->http_status);
	return key;
}

static json_t *operation(const struct gw_route_info *r, const char *method,
			 const char *path_id, bool is_api)
{
	unsigned kind = route_kind(r->rpc);
	json_t *op = json_object(), *params = json_array(),
	       *responses = json_object();
	char id[160], key[8];

	snprintf(id, sizeof(id), "%s%s%s%s", gw_route_rpc_name(r->rpc),
		 path_id, is_api ? "Api" : "", method);
	json_object_set_new(op, "operationId", json_string(id));
	json_object_set_new(op, "summary", json_string(summary_of(r->rpc)));
	json_object_set_new(
		op, "tags",
		pack("[s]", gw_route_rpc_is_upstream(r->rpc)
					 ? "softphone devices"
					 : "operations"));
	for (size_t i = 0; r->segments[i]; i++)
		if (r->segments[i][0] == '{')
			json_array_append_new(params,
					      ref(param_ref(r->segments[i][1])));
	if (kind & K_ASSIGN) {
		json_array_append_new(
			params, ref("#/components/parameters/acceptCharges"));
		json_object_set_new(
			op, "requestBody",
			pack("{s:b, s:{s:{s:o, s:{s:s}}}}", "required",
				  true, "content", "application/json", "schema",
				  ref("#/components/schemas/AssignBody"),
				  "example", "clientType", "desktop"));
	}
	if (kind & K_LEDGER) {
		static const char *const query[] = {
			"ledgerUserId", "ledgerDeviceId", "since", "until",
			"onlyCharged", "pageSize", "pageToken", "order"};
		char where[64];
		for (size_t i = 0; i < sizeof(query) / sizeof(query[0]); i++) {
			snprintf(where, sizeof(where),
				 "#/components/parameters/%s", query[i]);
			json_array_append_new(params, ref(where));
		}
	}
	if (json_array_size(params))
		json_object_set_new(op, "parameters", params);
	else
		json_decref(params);

	if (kind & (K_LIST | K_LEDGER | K_SEATS))
		json_object_set_new(responses, status_key(DAS_OK_READ, key),
				    success_response(kind));
	else if (kind & (K_ASSIGN | K_UNASSIGN))
		json_object_set_new(responses, status_key(DAS_OK, key),
				    success_response(kind));
	else if (r->rpc == GW_ROUTE_OPENAPI)
		json_object_set_new(
			responses, "200",
			pack("{s:s, s:{s:{s:{s:s}}}}", "description",
				  "this document", "content",
				  "application/json", "schema", "type",
				  "object"));
	else if (r->rpc == GW_ROUTE_DOCS)
		json_object_set_new(
			responses, "200",
			pack("{s:s, s:{s:{s:{s:s}}}}", "description",
				  "the page", "content", "text/html",
				  "schema", "type", "string"));
	else if (kind & K_METRICS)
		json_object_set_new(
			responses, "200",
			pack("{s:s, s:{s:{s:{s:s}}}}", "description",
			     "Prometheus text exposition format 0.0.4", "content",
			     "text/plain", "schema", "type", "string"));
	else if (kind & K_ASSET)
		json_object_set_new(
			responses, "200",
			pack("{s:s, s:{s:{s:{s:s}}, s:{s:{s:s}}}}",
				  "description", "the file", "content",
				  "text/javascript", "schema", "type", "string",
				  "text/css", "schema", "type", "string"));
	else
		json_object_set_new(responses, "200", success_response(kind));
	add_error_responses(responses, kind);
	json_object_set_new(op, "responses", responses);
	if (gw_route_rpc_is_upstream(r->rpc))
		json_object_set_new(op, "security",
				    pack("[{s:[]}]", "bearerAuth"));
	else
		json_object_set_new(op, "security", json_array());
	return op;
}

/* "/v1.0/customers/{customerTenantId}/..." and a short id for it. */
static void add_route(json_t *paths, const struct gw_route_info *r,
		      bool is_api)
{
	char path[1024], path_id[64] = "";
	size_t off = 0;
	json_t *item;
	char allow[64];
	bool has_account = false;

	if (is_api)
		off += (size_t)snprintf(path, sizeof(path), "/api");
	path[off] = '\0';
	for (size_t i = 0; r->segments[i]; i++) {
		const char *seg = r->segments[i];
		if (seg[0] == '{') {
			off += (size_t)snprintf(path + off, sizeof(path) - off,
						"/{%s}", param_name(seg[1]));
			has_account |= seg[1] == 'A';
		} else {
			off += (size_t)snprintf(path + off, sizeof(path) - off,
						"/%s", seg);
		}
		if (off >= sizeof(path))
			return;
	}
	if (has_account)
		snprintf(path_id, sizeof(path_id), "ForAccount");
	item = json_object_get(paths, path);
	if (!item) {
		item = json_object();
		json_object_set_new(paths, path, item);
	}
	snprintf(allow, sizeof(allow), "%s", r->allow);
	for (char *save = NULL, *m = strtok_r(allow, ", ", &save); m;
	     m = strtok_r(NULL, ", ", &save)) {
		char lower[8], cap[8];
		size_t n = strlen(m);
		if (strcmp(m, "HEAD") == 0 || n >= sizeof(lower))
			continue; /* HEAD is GET without the body */
		for (size_t i = 0; i <= n; i++) {
			lower[i] = (char)(m[i] >= 'A' && m[i] <= 'Z'
						  ? m[i] - 'A' + 'a'
						  : m[i]);
			cap[i] = i == 0 ? m[i] : lower[i];
		}
		json_object_set_new(item, lower,
				    operation(r, cap, path_id, is_api));
	}
}

/* The ledger's query parameters and the ledger and seats bodies. */
static void add_ledger_components(json_t *c)
{
	json_t *params = json_object_get(c, "parameters"),
	       *schemas = json_object_get(c, "schemas");

	json_object_set_new(
		params, "ledgerUserId",
		pack("{s:s, s:s, s:s, s:{s:s, s:i, s:i, s:s}}", "name", "userId",
		     "in", "query", "description", "only this user's entries",
		     "schema", "type", "string", "minLength", 1, "maxLength", 64,
		     "pattern", ID_PATTERN));
	json_object_set_new(
		params, "ledgerDeviceId",
		pack("{s:s, s:s, s:s, s:{s:s, s:i, s:i, s:s}}", "name",
		     "deviceId", "in", "query", "description",
		     "only this device's entries", "schema", "type", "string",
		     "minLength", 1, "maxLength", 64, "pattern", ID_PATTERN));
	json_object_set_new(
		params, "since",
		pack("{s:s, s:s, s:s, s:{s:s, s:s}}", "name", "since", "in",
		     "query", "description",
		     "entries at or after this time (RFC 3339)", "schema", "type",
		     "string", "format", "date-time"));
	json_object_set_new(
		params, "until",
		pack("{s:s, s:s, s:s, s:{s:s, s:s}}", "name", "until", "in",
		     "query", "description",
		     "entries before this time (RFC 3339)", "schema", "type",
		     "string", "format", "date-time"));
	json_object_set_new(
		params, "onlyCharged",
		pack("{s:s, s:s, s:{s:s, s:[s,s], s:s}}", "name", "onlyCharged",
		     "in", "query", "schema", "type", "string", "enum", "true",
		     "false", "default", "false"));
	json_object_set_new(
		params, "pageSize",
		pack("{s:s, s:s, s:{s:s, s:i, s:i, s:i}}", "name", "pageSize",
		     "in", "query", "schema", "type", "integer", "minimum", 1,
		     "maximum", 500, "default", 100));
	json_object_set_new(
		params, "pageToken",
		pack("{s:s, s:s, s:s, s:{s:s}}", "name", "pageToken", "in",
		     "query", "description",
		     "the nextPageToken of the previous page (same filters)",
		     "schema", "type", "string"));
	json_object_set_new(
		params, "order",
		pack("{s:s, s:s, s:{s:s, s:[s,s], s:s}}", "name", "order", "in",
		     "query", "schema", "type", "string", "enum", "newest",
		     "oldest", "default", "newest"));

	json_object_set_new(
		schemas, "LedgerEntry",
		pack("{s:s, s:{s:{s:s, s:s}, s:o, s:{s:s}, s:{s:s}, "
		     "s:{s:s, s:[s,s,s]}, s:{s:s}, s:{s:s}, s:{s:b, s:[o]}, "
		     "s:{s:b, s:[o]}, s:{s:s}}}",
		     "type", "object", "properties", "sequence", "type",
		     "integer", "format", "int64", "time",
		     ref("#/components/schemas/Timestamp"), "actor", "type",
		     "string", "requestId", "type", "string", "operation", "type",
		     "string", "enum", "assign", "move", "unassign", "userId",
		     "type", "string", "deviceId", "type", "string",
		     "previousClientType", "nullable", true, "allOf",
		     ref("#/components/schemas/ClientType"), "newClientType",
		     "nullable", true, "allOf",
		     ref("#/components/schemas/ClientType"), "charged", "type",
		     "boolean"));
	json_object_set_new(
		schemas, "LedgerPage",
		pack("{s:s, s:[s,s,s], s:{s:{s:s, s:[s]}, s:o, s:{s:s, s:o}, "
		     "s:{s:s, s:b}}}",
		     "type", "object", "required", "status", "timestamp", "data",
		     "properties", "status", "type", "string", "enum", "success",
		     "timestamp", ref("#/components/schemas/Timestamp"), "data",
		     "type", "array", "items",
		     ref("#/components/schemas/LedgerEntry"), "nextPageToken",
		     "type", "string", "nullable", true));
	json_object_set_new(
		schemas, "SeatUsage",
		pack("{s:s, s:[s,s,s], s:{s:{s:s, s:[s]}, s:o, s:{s:s, s:{s:{s:s, "
		     "s:b, s:s}, s:{s:s}, s:{s:s}}}}}",
		     "type", "object", "required", "status", "timestamp", "data",
		     "properties", "status", "type", "string", "enum", "success",
		     "timestamp", ref("#/components/schemas/Timestamp"), "data",
		     "type", "object", "properties", "included", "type",
		     "integer", "nullable", true, "description",
		     "null: unlimited seats", "used", "type", "integer",
		     "charged", "type", "integer"));
}

/* Every error any request can get, one named response each. */
static json_t *any_request_responses(void)
{
	json_t *any_request = json_object();

	for (int s = 0; s < DAS_STATUS__COUNT; s++) {
		bool rows[DAS_STATUS__COUNT] = {false};
		const struct das_status_row *row =
			das_status_row((enum das_status)s);
		if (!(status_routes((enum das_status)s) & K_ANY_REQUEST))
			continue;
		rows[s] = true;
		json_object_set_new(any_request, row->name,
				    error_response(row->http_status, rows));
	}
	return any_request;
}

/* The path and header parameters the operations refer to. */
static json_t *parameters(void)
{
	return pack(
		"{s:o, s:o, s:o, s:o, s:o, s:o}",
		"accountTenantId",
		pack("{s:s, s:s, s:b, s:s, s:{s:s, s:s}, s:s}", "name",
			  "accountTenantId", "in", "path", "required", true,
			  "description",
			  "The account (reseller) GUID: 32 hex digits, "
			  "8-4-4-4-12 or plain, optionally in {}, any case.",
			  "schema", "type", "string", "pattern", GUID_PATTERN,
			  "example", "0f8fad5b-d9cb-469f-a165-70867728950e"),
		"customerTenantId",
		pack("{s:s, s:s, s:b, s:s, s:{s:s, s:s}, s:s}", "name",
			  "customerTenantId", "in", "path", "required", true,
			  "description",
			  "The customer (tenant) GUID: 32 hex digits, "
			  "8-4-4-4-12 or plain, optionally in {}, any case.",
			  "schema", "type", "string", "pattern", GUID_PATTERN,
			  "example", EXAMPLE_TENANT),
		"userId",
		pack("{s:s, s:s, s:b, s:s, s:{s:s, s:i, s:i, s:s}, s:s}",
			  "name", "userId", "in", "path", "required", true,
			  "description", "1-64 characters of [A-Za-z0-9._-]",
			  "schema", "type", "string", "minLength", 1,
			  "maxLength", 64, "pattern", ID_PATTERN, "example",
			  "alice"),
		"deviceId",
		pack("{s:s, s:s, s:b, s:s, s:{s:s, s:i, s:i, s:s}, s:s}",
			  "name", "deviceId", "in", "path", "required", true,
			  "description", "1-64 characters of [A-Za-z0-9._-]",
			  "schema", "type", "string", "minLength", 1,
			  "maxLength", 64, "pattern", ID_PATTERN, "example",
			  "alice-desk"),
		"acceptCharges",
		pack("{s:s, s:s, s:b, s:s, s:{s:s, s:[s,s], s:s}}", "name",
			  "accept-charges", "in", "header", "required", false,
			  "description",
			  "true to accept the charge of a new paid seat "
			  "(otherwise such an assign is 402); case-insensitive "
			  "header name",
			  "schema", "type", "string", "enum", "true", "false",
			  "default", "false"),
		"file",
		pack("{s:s, s:s, s:b, s:{s:s}}", "name", "file", "in",
			  "path", "required", true, "schema", "type",
			  "string"));
}

/* The bodies of the assign and list operations and their errors. */
static json_t *schemas(void)
{
	return pack(
		"{s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
		"Timestamp",
		pack("{s:s, s:s, s:s, s:s}", "type", "string", "description",
			  "UTC, ISO 8601, exactly 7 fractional digits, Z",
			  "pattern",
			  "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
			  "\\.[0-9]{7}Z$",
			  "example", EXAMPLE_TIME),
		"Success",
		pack("{s:s, s:[s,s], s:{s:{s:s, s:[s]}, s:o}}", "type",
			  "object", "required", "status", "timestamp",
			  "properties", "status", "type", "string", "enum",
			  "success", "timestamp",
			  ref("#/components/schemas/Timestamp")),
		"Error",
		pack("{s:s, s:[s,s,s,s], s:{s:{s:s, s:i, s:i}, s:{s:s}, "
			  "s:{s:s, s:[s]}, s:o}}",
			  "type", "object", "required", "error", "message",
			  "status", "timestamp", "properties", "error", "type",
			  "integer", "minimum", 400, "maximum", 599, "message",
			  "type", "string", "status", "type", "string", "enum",
			  "error", "timestamp",
			  ref("#/components/schemas/Timestamp")),
		"ChargesError",
		pack("{s:[o, {s:s, s:[s], s:{s:{s:s, s:[s], s:{s:{s:s, "
			  "s:s}}}}}]}",
			  "allOf", ref("#/components/schemas/Error"), "type",
			  "object", "required", "data", "properties", "data",
			  "type", "object", "required", "clientType",
			  "properties", "clientType", "type", "string",
			  "description", "the clientType as sent"),
		"ClientType",
		pack("{s:s, s:[s,s,s,s], s:s}", "type", "string", "enum",
			  "desktop", "mobile", "webrtc", "crm", "description",
			  "matched case-insensitively"),
		"AssignBody",
		pack("{s:s, s:[s], s:{s:o}, s:b}", "type", "object",
			  "required", "clientType", "properties", "clientType",
			  ref("#/components/schemas/ClientType"),
			  "additionalProperties", true),
		"DeviceList",
		pack("{s:s, s:[s,s,s], s:{s:{s:s, s:[s]}, s:o, s:{s:s, "
			  "s:{s:s, s:[s,s], s:{s:{s:s}, s:o}}}}}",
			  "type", "object", "required", "status", "timestamp",
			  "data", "properties", "status", "type", "string",
			  "enum", "success", "timestamp",
			  ref("#/components/schemas/Timestamp"), "data", "type",
			  "array", "items", "type", "object", "required",
			  "deviceId", "clientType", "properties", "deviceId",
			  "type", "string", "clientType",
			  ref("#/components/schemas/ClientType")));
}

static json_t *components(void)
{
	json_t *c = pack(
		"{s:{s:{s:s, s:s, s:s, s:s}}, s:o, s:o, s:o}",
		"securitySchemes", "bearerAuth", "type", "http", "scheme",
		"bearer", "bearerFormat", "JWT", "description",
		"A JWT (HS256 or RS256) with exp, sub, tenants (customer or "
		"account GUIDs, or \"*\") and scope devices:assign (ledger:read "
		"for the ledger and the seats).",
		"parameters", parameters(), "schemas", schemas(),
		"responses", any_request_responses());

	if (c)
		add_ledger_components(c);
	return c;
}

char *gw_openapi_json(size_t *len)
{
	json_t *paths = json_object(), *doc;
	char *text;

	for (size_t i = 0; i < gw_route_count(); i++) {
		struct gw_route_info r;
		gw_route_get(i, &r);
		add_route(paths, &r, false);
		if (r.is_api_prefixable)
			add_route(paths, &r, true);
	}
	doc = pack(
		"{s:s, s:{s:s, s:s, s:s}, s:[{s:s}], s:[{s:s, s:s}, {s:s, s:s}],"
		" s:o, s:o}",
		"openapi", "3.0.3", "info", "title", "Device Assignment",
		"version", DAS_VERSION, "description",
		"Which of a user's PBX devices is the softphone for which UC "
		"client (desktop, mobile, webrtc, crm). Every path is also "
		"served under /api. An unknown path is 404, a method the "
		"path does not list 405 with Allow (components.responses "
		"lists the answers any request can get). Errors share one "
		"body shape; the examples of each response are the rows of "
		"the service's status table.",
		"servers", "url", "/", "tags", "name", "softphone devices",
		"description", "the REST bindings of deviceassignment.v1",
		"name", "operations", "description",
		"answered by the gateway itself",
		"paths", paths, "components", components());
	if (!doc)
		return NULL;
	text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(doc);
	if (text && len)
		*len = strlen(text);
	return text;
}
