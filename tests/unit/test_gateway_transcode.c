/*
 * JSON bodies in and out (gateway/transcode/) and the HTTP answer of every
 * catalog row (gateway/reply.h over common/status.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/ids.h"
#include "common/status.h"
#include "gateway/reply.h"
#include "gateway/transcode/transcode.h"

static const struct das_time fixed = {1575043403, 925168000};
#define FIXED_TS "2019-11-29T16:03:23.9251680Z"

static int decode(const char *body, int *ct, char *as_sent)
{
	const char *why = NULL;
	int rc = gw_body_decode_assign(body, strlen(body), ct, as_sent, &why);
	if (rc != 0)
		assert_non_null(why);
	return rc;
}

static void assign_bodies(void **state)
{
	char as_sent[GW_CLIENT_TYPE_AS_SENT_SIZE];
	int ct;

	assert_int_equal(decode("{\"clientType\":\"desktop\"}", &ct, as_sent),
			 0);
	assert_int_equal(ct, DAS_CLIENT_DESKTOP);
	assert_string_equal(as_sent, "desktop");
	assert_int_equal(decode(" {\"x\":[1,2,{}], \"clientType\":\"WebRTC\"}",
				&ct, as_sent),
			 0);
	assert_int_equal(ct, DAS_CLIENT_WEBRTC);
	assert_string_equal(as_sent, "WebRTC");
	assert_int_equal(decode("{\"clientType\":\"CRM\"}", &ct, as_sent), 0);
	assert_int_equal(ct, DAS_CLIENT_CRM);
	assert_int_equal(decode("{\"clientType\":\"Mobile\"}", &ct, as_sent),
			 0);
	assert_int_equal(ct, DAS_CLIENT_MOBILE);
	/* Well-formed objects without a usable clientType go on as NONE. */
	static const char *const none[] = {"{}",
					   "{\"clientType\":null}",
					   "{\"clientType\":1}",
					   "{\"clientType\":[\"desktop\"]}",
					   "{\"clientType\":\"\"}",
					   "{\"clientType\":\"laptop\"}",
					   "{\"clienttype\":\"desktop\"}",
					   "{\"clientType\":\"desktop \"}",
					   "{\"clientType\":\"Desktops\"}"};
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
		ct = -1;
		assert_int_equal(decode(none[i], &ct, as_sent), 0);
		assert_int_equal(ct, DAS_CLIENT_NONE);
	}
	/* Not JSON, or not an object: the gateway's 400. */
	static const char *const bad[] = {
		"",
		" ",
		"null",
		"[]",
		"\"desktop\"",
		"42",
		"{",
		"{\"clientType\":\"desktop\"",
		"{}{}",
		"{} x",
		"{\"clientType\":\"desktop\",\"clientType\":\"crm\"}",
		"{\"a\":\"\\u0000\"}",
		"{\"clientType\":\"desktop\"}}",
		"{\"clientType\":\"de\"sk\"}",
		"{\"clientType\":\"desktop\"}{\"clientType\":\"crm\"}",
		"\xef\xbb\xbf{}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (decode(bad[i], &ct, as_sent) != -1)
			fail_msg("accepted '%s'", bad[i]);
	/* A name longer than what is kept: cut, as with any other body. */
	char lng[300];
	memcpy(lng, "{\"clientType\":\"", 15);
	memset(lng + 15, 'd', 200);
	memcpy(lng + 215, "\"}", 3);
	assert_int_equal(decode(lng, &ct, as_sent), 0);
	assert_int_equal(ct, DAS_CLIENT_NONE);
	assert_int_equal(strlen(as_sent), GW_CLIENT_TYPE_AS_SENT_SIZE - 1);
	/* The usual body in other spellings means the same. */
	assert_int_equal(decode("{ \"clientType\" : \"Desktop\" }", &ct,
				as_sent),
			 0);
	assert_int_equal(ct, DAS_CLIENT_DESKTOP);
	assert_string_equal(as_sent, "Desktop");
	assert_int_equal(decode("{\"clientType\":\"Desktop\"}", &ct, as_sent),
			 0);
	assert_int_equal(ct, DAS_CLIENT_DESKTOP);
	assert_string_equal(as_sent, "Desktop");
	/* Bytes after the object inside the given length are junk. */
	const char *why;
	assert_int_equal(gw_body_decode_assign("{}\0{}", 5, &ct, as_sent, &why),
			 -1);
	assert_int_equal(gw_body_decode_assign(NULL, 0, &ct, as_sent, &why),
			 -1);
}

static void client_type_as_sent_is_bounded(void **state)
{
	char body[1024], as_sent[GW_CLIENT_TYPE_AS_SENT_SIZE];
	int ct;

	snprintf(body, sizeof(body), "{\"clientType\":\"");
	size_t o = strlen(body);
	for (int i = 0; i < 300; i++)
		body[o++] = 'x';
	memcpy(body + o, "\"}", 3);
	assert_int_equal(decode(body, &ct, as_sent), 0);
	assert_int_equal(ct, DAS_CLIENT_NONE);
	assert_int_equal(strlen(as_sent), GW_CLIENT_TYPE_AS_SENT_SIZE - 1);
}

/* Parses body and checks the shape every error body must have. */
static json_t *error_body(const char *body, int http)
{
	json_error_t err;
	json_t *root = json_loads(body, 0, &err);

	assert_non_null(root);
	assert_true(json_is_object(root));
	assert_int_equal(json_integer_value(json_object_get(root, "error")),
			 http);
	assert_true(json_is_string(json_object_get(root, "message")));
	assert_string_equal(json_string_value(json_object_get(root, "status")),
			    "error");
	const char *ts = json_string_value(json_object_get(root, "timestamp"));
	assert_non_null(ts);
	assert_int_equal(strlen(ts), DAS_TIMESTAMP_SIZE - 1);
	return root;
}

static void success_and_list_bodies(void **state)
{
	struct gw_device_entry devs[2] = {{"d1", DAS_CLIENT_DESKTOP},
					  {"d\xff\"2", DAS_CLIENT_CRM}};
	char *s = gw_json_success(FIXED_TS);

	assert_string_equal(
		s, "{\"status\":\"success\",\"timestamp\":\"" FIXED_TS "\"}");
	free(s);
	s = gw_json_list(FIXED_TS, devs, 2);
	assert_string_equal(s,
			    "{\"status\":\"success\",\"timestamp\":\"" FIXED_TS
			    "\",\"data\":[{\"deviceId\":\"d1\",\"clientType\":"
			    "\"desktop\"},{\"deviceId\":\"d\xef\xbf\xbd\\\"2\","
			    "\"clientType\":\"crm\"}]}");
	free(s);
	s = gw_json_list(FIXED_TS, devs, 0);
	assert_string_equal(s,
			    "{\"status\":\"success\",\"timestamp\":\"" FIXED_TS
			    "\",\"data\":[]}");
	free(s);
	s = gw_json_ok();
	assert_string_equal(s, "{\"status\":\"ok\"}");
	free(s);
}

static void ledger_and_seats_bodies(void **state)
{
	struct gw_ledger_entry e[2];
	char *s;

	(void)state;
	memset(e, 0, sizeof(e));
	e[0].sequence = 9000000000LL;
	e[0].time = fixed;
	snprintf(e[0].actor, sizeof(e[0].actor), "ops@\xff");
	snprintf(e[0].request_id, sizeof(e[0].request_id), "rid-1");
	e[0].operation = 1;
	snprintf(e[0].user_id, sizeof(e[0].user_id), "u1");
	snprintf(e[0].device_id, sizeof(e[0].device_id), "d1");
	e[0].new_client_type = 1;
	e[0].is_charged = true;
	e[1] = e[0];
	e[1].sequence = 2;
	e[1].operation = 2;
	e[1].previous_client_type = 1;
	e[1].new_client_type = 4;
	e[1].is_charged = false;
	e[1].request_id[0] = '\0';
	s = gw_json_ledger(FIXED_TS, e, 2, "tok-1");
	assert_string_equal(
		s, "{\"status\":\"success\",\"timestamp\":\"" FIXED_TS
		   "\",\"data\":[{\"sequence\":9000000000,\"time\":\"" FIXED_TS
		   "\",\"actor\":\"ops@\xef\xbf\xbd\",\"requestId\":\"rid-1\","
		   "\"operation\":\"assign\",\"userId\":\"u1\",\"deviceId\":"
		   "\"d1\",\"previousClientType\":null,\"newClientType\":"
		   "\"desktop\",\"charged\":true},{\"sequence\":2,\"time\":\""
		   FIXED_TS "\",\"actor\":\"ops@\xef\xbf\xbd\",\"requestId\":"
		   "\"\",\"operation\":\"move\",\"userId\":\"u1\",\"deviceId\""
		   ":\"d1\",\"previousClientType\":\"desktop\",\"newClientType\""
		   ":\"crm\",\"charged\":false}],\"nextPageToken\":\"tok-1\"}");
	free(s);
	s = gw_json_ledger(FIXED_TS, e, 0, "");
	assert_string_equal(s, "{\"status\":\"success\",\"timestamp\":\""
			       FIXED_TS "\",\"data\":[],\"nextPageToken\":null}");
	free(s);
	s = gw_json_seats(FIXED_TS, true, 5, 7, 2);
	assert_string_equal(s, "{\"status\":\"success\",\"timestamp\":\""
			       FIXED_TS "\",\"data\":{\"included\":5,\"used\":"
			       "7,\"charged\":2}}");
	free(s);
	s = gw_json_seats(FIXED_TS, false, 0, 3, 0);
	assert_string_equal(s, "{\"status\":\"success\",\"timestamp\":\""
			       FIXED_TS "\",\"data\":{\"included\":null,"
			       "\"used\":3,\"charged\":0}}");
	free(s);
}

static void error_bodies(void **state)
{
	char *s = gw_json_error(404, "Not Found", FIXED_TS, NULL);

	assert_string_equal(s, "{\"error\":404,\"message\":\"Not Found\","
			       "\"status\":\"error\",\"timestamp\":\"" FIXED_TS
			       "\"}");
	free(s);
	s = gw_json_error(402, "additional charges apply", FIXED_TS, "Desktop");
	assert_string_equal(s, "{\"error\":402,\"message\":\"additional "
			       "charges apply\",\"status\":\"error\","
			       "\"timestamp\":\"" FIXED_TS "\",\"data\":{"
			       "\"clientType\":\"Desktop\"}}");
	free(s);
	/* Any bytes in a message still give valid JSON. */
	s = gw_json_error(400, "The value '\xff\x01\"\\</x>' is not valid.",
			  FIXED_TS, NULL);
	json_decref(error_body(s, 400));
	assert_non_null(strstr(s, "\xef\xbf\xbd\\u0001\\\"\\\\</x>"));
	free(s);
}

struct row_case {
	int code;
	const char *reason;
	const char *service_message;
	int http;
	const char *message; /* expected in the body */
};

static void every_catalog_row(void **state)
{
	static const struct row_case cases[] = {
		{0, "", "", 201, NULL},
		{16, "UNAUTHENTICATED", "Unauthorized", 401, "Unauthorized"},
		{16, "", "Unauthorized", 401, "Unauthorized"},
		{3, "INVALID_TENANT_ID", "The value 'x{' is not valid.", 400,
		 "The value 'x{' is not valid."},
		{3, "INVALID_ID", "The value 'a b' is not valid.", 400,
		 "The value 'a b' is not valid."},
		{7, "FORBIDDEN", "Forbidden", 403, "Forbidden"},
		{7, "", "Forbidden", 403, "Forbidden"},
		{3, "INVALID_CLIENT_TYPE",
		 "clientType is missing or invalid; valid values: desktop, "
		 "mobile, webrtc, crm",
		 400,
		 "clientType is missing or invalid; valid values: desktop, "
		 "mobile, webrtc, crm"},
		{3, "INVALID_ARGUMENT", "accept-charges must be true or false",
		 400, "accept-charges must be true or false"},
		{5, "CUSTOMER_NOT_FOUND", "Not Found", 404, "Not Found"},
		{5, "USER_NOT_FOUND", "User not found", 404, "User not found"},
		{5, "DEVICE_NOT_FOUND", "Device not found", 404,
		 "Device not found"},
		{9, "MISSING_ROLES",
		 "The user lacks the role(s): customer_user_uc", 400,
		 "The user lacks the role(s): customer_user_uc"},
		{9, "CHARGES_NOT_ACCEPTED", "additional charges apply", 402,
		 "additional charges apply"},
		/* Infrastructure rows: the table's text, never internals. */
		{14, "", "failed to connect to all addresses; 10.0.0.1", 503,
		 "Service Unavailable"},
		{4, "", "Deadline Exceeded", 504, "Gateway Timeout"},
		{13, "", "segfault in handler.c:42", 500,
		 "Internal Server Error"},
		{2, "", "unknown", 500, "Internal Server Error"},
		{12, "", "unimplemented method", 500, "Internal Server Error"},
		/* A domain row with no message falls back to the table. */
		{5, "USER_NOT_FOUND", "", 404, "User not found"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct row_case *c = &cases[i];
		struct gw_call_outcome o;
		struct gw_reply r;

		memset(&o, 0, sizeof(o));
		o.grpc_code = c->code;
		snprintf(o.reason, sizeof(o.reason), "%s", c->reason);
		snprintf(o.message, sizeof(o.message), "%s",
			 c->service_message);
		o.has_timestamp = true;
		o.timestamp = fixed;
		gw_reply_from_outcome(&r, GW_ROUTE_ASSIGN, &o, "Desktop",
				      das_time_now());
		if ((int)r.http_status != c->http)
			fail_msg("row %zu: http %u", i, r.http_status);
		assert_int_equal(
			(int)r.http_status,
			das_status_from_grpc(c->code, c->reason)->http_status);
		assert_int_equal(r.has_www_authenticate, c->http == 401);
		assert_non_null(r.body);
		if (c->http == 201) {
			assert_string_equal(
				r.body, "{\"status\":\"success\",\"timestamp\":"
					"\"" FIXED_TS "\"}");
		} else {
			json_t *root = error_body(r.body, c->http);
			assert_string_equal(json_string_value(json_object_get(
						    root, "message")),
					    c->message);
			json_t *data = json_object_get(root, "data");
			if (c->http == 402)
				assert_string_equal(
					json_string_value(json_object_get(
						data, "clientType")),
					"Desktop");
			else
				assert_null(data);
			json_decref(root);
		}
		gw_reply_release(&r);
	}
}

static void list_and_unassign_success(void **state)
{
	struct gw_call_outcome o;
	struct gw_reply r;

	memset(&o, 0, sizeof(o));
	o.n_devices = 1;
	snprintf(o.devices[0].device_id, sizeof(o.devices[0].device_id), "d9");
	o.devices[0].client_type = DAS_CLIENT_MOBILE;
	o.has_timestamp = true;
	o.timestamp = fixed;
	gw_reply_from_outcome(&r, GW_ROUTE_LIST, &o, NULL, das_time_now());
	assert_int_equal(r.http_status, 200);
	assert_int_equal(r.status, DAS_OK_READ); /* the 200 is a table row */
	assert_string_equal(r.body,
			    "{\"status\":\"success\",\"timestamp\":\"" FIXED_TS
			    "\",\"data\":[{\"deviceId\":\"d9\",\"clientType\":"
			    "\"mobile\"}]}");
	gw_reply_release(&r);
	gw_reply_from_outcome(&r, GW_ROUTE_UNASSIGN, &o, NULL, das_time_now());
	assert_int_equal(r.http_status, 201);
	assert_int_equal(r.status, DAS_OK);
	gw_reply_release(&r);
	/* No timestamp from the service: the gateway's clock. */
	o.has_timestamp = false;
	gw_reply_from_outcome(&r, GW_ROUTE_UNASSIGN, &o, NULL, fixed);
	assert_string_equal(r.body,
			    "{\"status\":\"success\",\"timestamp\":\"" FIXED_TS
			    "\"}");
	gw_reply_release(&r);
	/* 402 with no clientType string sent still carries data. */
	o.grpc_code = DAS_GRPC_FAILED_PRECONDITION;
	snprintf(o.reason, sizeof(o.reason), "CHARGES_NOT_ACCEPTED");
	gw_reply_from_outcome(&r, GW_ROUTE_ASSIGN, &o, NULL, fixed);
	assert_int_equal(r.http_status, 402);
	assert_non_null(strstr(r.body, "\"data\":{\"clientType\":\"\"}"));
	gw_reply_release(&r);
}

static void gateway_rows(void **state)
{
	static const struct {
		enum das_status st;
		const char *arg;
		int http;
		const char *message;
	} cases[] = {
		{DAS_ROUTE_NOT_FOUND, NULL, 404, "Not Found"},
		{DAS_METHOD_NOT_ALLOWED, NULL, 405, "Method Not Allowed"},
		{DAS_PAYLOAD_TOO_LARGE, NULL, 413, "Payload Too Large"},
		{DAS_UNSUPPORTED_MEDIA_TYPE, NULL, 415,
		 "Content-Type must be application/json"},
		{DAS_INVALID_ARGUMENT, "request body is not valid JSON", 400,
		 "request body is not valid JSON"},
		{DAS_UNAVAILABLE, NULL, 503, "Service Unavailable"},
		{DAS_INTERNAL, NULL, 500, "Internal Server Error"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct gw_reply r;
		gw_reply_error(&r, cases[i].st, cases[i].arg, fixed);
		assert_int_equal((int)r.http_status, cases[i].http);
		json_t *root = error_body(r.body, cases[i].http);
		assert_string_equal(
			json_string_value(json_object_get(root, "message")),
			cases[i].message);
		assert_string_equal(
			json_string_value(json_object_get(root, "timestamp")),
			FIXED_TS);
		json_decref(root);
		gw_reply_release(&r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(assign_bodies),
		cmocka_unit_test(client_type_as_sent_is_bounded),
		cmocka_unit_test(success_and_list_bodies),
		cmocka_unit_test(error_bodies),
		cmocka_unit_test(ledger_and_seats_bodies),
		cmocka_unit_test(every_catalog_row),
		cmocka_unit_test(list_and_unassign_success),
		cmocka_unit_test(gateway_rows),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
