#include "transcode.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/ids.h"
#include "common/timefmt.h"
#include "common/utf8.h"

/*
 * The body every client sends, {"clientType":"NAME"} with NAME of ASCII
 * letters and nothing else around, read without a parser: it means
 * exactly what jansson would make of it. Returns false for any other
 * body (which then goes through jansson).
 */
static bool decode_plain_assign(const char *body, size_t len, int *client_type,
				char as_sent[GW_CLIENT_TYPE_AS_SENT_SIZE])
{
	static const char head[] = "{\"clientType\":\"";
	const size_t head_len = sizeof(head) - 1;
	size_t n = 0;

	if (!body || len < head_len + 2 || memcmp(body, head, head_len) != 0 ||
	    body[len - 2] != '"' || body[len - 1] != '}')
		return false;
	n = len - head_len - 2;
	if (n >= GW_CLIENT_TYPE_AS_SENT_SIZE)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = body[head_len + i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
			return false;
	}
	memcpy(as_sent, body + head_len, n);
	as_sent[n] = '\0';
	*client_type = das_client_type_parse(as_sent, n);
	return true;
}

int gw_body_decode_assign(const char *body, size_t len, int *client_type,
			  char as_sent[GW_CLIENT_TYPE_AS_SENT_SIZE],
			  const char **reason)
{
	json_error_t jerr;
	json_t *root, *ct;
	int rc = -1;

	as_sent[0] = '\0';
	if (decode_plain_assign(body, len, client_type, as_sent))
		return 0;
	/* Duplicate members would make "the" clientType ambiguous. */
	root = json_loadb(body ? body : "", len,
			  JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (!root) {
		*reason = "request body is not valid JSON";
		goto out;
	}
	if (!json_is_object(root)) {
		*reason = "request body must be a JSON object";
		goto out;
	}
	*client_type = DAS_CLIENT_NONE;
	ct = json_object_get(root, "clientType");
	if (json_is_string(ct)) {
		const char *s = json_string_value(ct);
		size_t n = json_string_length(ct);
		*client_type = das_client_type_parse(s, n);
		das_utf8_sanitize(s, n, as_sent, GW_CLIENT_TYPE_AS_SENT_SIZE);
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

static char *dump(json_t *root)
{
	char *s = NULL;

	if (root)
		s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return s;
}

/* A JSON string from arbitrary bytes; never NULL for non-NULL input
 * unless memory runs out. */
static json_t *safe_string(const char *s)
{
	char buf[GW_MESSAGE_MAX * 3 + 1];
	size_t len = strlen(s);

	if (len > GW_MESSAGE_MAX * 2)
		len = GW_MESSAGE_MAX * 2;
	das_utf8_sanitize(s, len, buf, sizeof(buf));
	return json_string(buf);
}

/* True when ts needs no escaping: das_time_format's characters. */
static bool is_plain_timestamp(const char *ts, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strchr("0123456789-:.TZ", ts[i]) || !ts[i])
			return false;
	return true;
}

char *gw_json_success(const char *ts)
{
	static const char head[] = "{\"status\":\"success\",\"timestamp\":\"";
	size_t n = strlen(ts);
	char *s;

	/* The answer of every successful assign and unassign: written
	 * directly, as jansson would (its output is the same bytes). */
	if (n > DAS_TIMESTAMP_SIZE - 1 || !is_plain_timestamp(ts, n))
		return dump(json_pack("{s:s, s:s}", "status", "success",
				      "timestamp", ts));
	s = malloc(sizeof(head) - 1 + n + 3);
	if (!s)
		return NULL;
	memcpy(s, head, sizeof(head) - 1);
	memcpy(s + sizeof(head) - 1, ts, n);
	memcpy(s + sizeof(head) - 1 + n, "\"}", 3);
	return s;
}

char *gw_json_list(const char *ts, const struct gw_device_entry *devices,
		   size_t n)
{
	json_t *arr = json_array();

	if (!arr)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		json_t *item = json_pack(
			"{s:o, s:s}", "deviceId",
			safe_string(devices[i].device_id), "clientType",
			das_client_type_name(devices[i].client_type));
		if (!item || json_array_append_new(arr, item) != 0) {
			json_decref(arr);
			return NULL;
		}
	}
	return dump(json_pack("{s:s, s:s, s:o}", "status", "success",
			      "timestamp", ts, "data", arr));
}

/* A client type's name, or null for none. */
static json_t *type_or_null(int type)
{
	const char *name = das_client_type_name(type);

	return name[0] ? json_string(name) : json_null();
}

static const char *operation_name(int op)
{
	switch (op) {
	case 1:
		return "assign";
	case 2:
		return "move";
	case 3:
		return "unassign";
	default:
		return "unknown";
	}
}

char *gw_json_ledger(const char *ts, const struct gw_ledger_entry *entries,
		     size_t n, const char *next_page_token)
{
	json_t *arr = json_array();

	if (!arr)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const struct gw_ledger_entry *e = &entries[i];
		char when[DAS_TIMESTAMP_SIZE];
		json_t *item;

		if (das_time_format(e->time, when) != 0) {
			json_decref(arr);
			return NULL;
		}
		item = json_pack(
			"{s:I, s:s, s:o, s:o, s:s, s:o, s:o, s:o, s:o, s:b}",
			"sequence", (json_int_t)e->sequence, "time", when,
			"actor", safe_string(e->actor), "requestId",
			safe_string(e->request_id), "operation",
			operation_name(e->operation), "userId",
			safe_string(e->user_id), "deviceId",
			safe_string(e->device_id), "previousClientType",
			type_or_null(e->previous_client_type),
			"newClientType", type_or_null(e->new_client_type),
			"charged", e->is_charged);
		if (!item || json_array_append_new(arr, item) != 0) {
			json_decref(arr);
			return NULL;
		}
	}
	return dump(json_pack("{s:s, s:s, s:o, s:o}", "status", "success",
			      "timestamp", ts, "data", arr, "nextPageToken",
			      next_page_token && next_page_token[0]
				      ? safe_string(next_page_token)
				      : json_null()));
}

char *gw_json_seats(const char *ts, bool has_included,
		    unsigned long included, unsigned long used,
		    unsigned long charged)
{
	return dump(json_pack(
		"{s:s, s:s, s:{s:o, s:I, s:I}}", "status", "success",
		"timestamp", ts, "data", "included",
		has_included ? json_integer((json_int_t)included) : json_null(),
		"used", (json_int_t)used, "charged", (json_int_t)charged));
}

char *gw_json_error(int http_status, const char *message, const char *ts,
		    const char *client_type_as_sent)
{
	json_t *root = json_pack("{s:i, s:o, s:s, s:s}", "error", http_status,
				 "message", safe_string(message), "status",
				 "error", "timestamp", ts);

	if (root && client_type_as_sent) {
		json_t *data = json_pack("{s:o}", "clientType",
					 safe_string(client_type_as_sent));
		if (!data || json_object_set_new(root, "data", data) != 0) {
			json_decref(root);
			return NULL;
		}
	}
	return dump(root);
}

char *gw_json_ok(void)
{
	return dump(json_pack("{s:s}", "status", "ok"));
}
