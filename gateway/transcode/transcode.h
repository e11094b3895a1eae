/*
 * JSON <-> gateway structs (jansson stays in this folder). Pure functions:
 * request bodies in, response bodies out.
 */
#ifndef GW_TRANSCODE_H
#define GW_TRANSCODE_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway/call.h"

/* Longest clientType value kept for the 402 answer's data.clientType. */
#define GW_CLIENT_TYPE_AS_SENT_SIZE 128

/*
 * Decodes an assign body: exactly one JSON object. Its "clientType", when a
 * string naming one of the four types (any case), gives *client_type; when
 * missing, not a string or not a known name, *client_type is
 * DAS_CLIENT_NONE so the service answers in its own check order. as_sent
 * receives the string as sent ("" when not a string), truncated and made
 * valid UTF-8 by das_utf8_sanitize().
 * Returns 0, or -1 (body not JSON or not an object) with a public reason.
 */
int gw_body_decode_assign(const char *body, size_t len, int *client_type,
			  char as_sent[GW_CLIENT_TYPE_AS_SENT_SIZE],
			  const char **reason);

/*
 * Response bodies; each returns a malloc'd NUL-terminated string (caller
 * frees) or NULL on allocation failure. ts is a das_time_format string.
 */
char *gw_json_success(const char *ts);
char *gw_json_list(const char *ts, const struct gw_device_entry *devices,
		   size_t n);
/* client_type_as_sent non-NULL adds "data":{"clientType":...} (402). */
char *gw_json_error(int http_status, const char *message, const char *ts,
		    const char *client_type_as_sent);
/*
 * GET .../ledger: {"status","timestamp","data":[entries],"nextPageToken"}
 * (null on the last page); each entry's time has 7 fractional digits,
 * client types are names or null.
 */
char *gw_json_ledger(const char *ts, const struct gw_ledger_entry *entries,
		     size_t n, const char *next_page_token);
/* GET .../softphone-seats: data {"included" (null = unlimited), "used",
 * "charged"}. */
char *gw_json_seats(const char *ts, bool has_included,
		    unsigned long included, unsigned long used,
		    unsigned long charged);
/* {"status":"ok"} */
char *gw_json_ok(void);

#endif
