/*
 * Fuzz target: whole raw client byte streams through the gateway's real
 * HTTP layer -- the strict parser, the chunked decoder, the route table,
 * the header rules and the connection engine (gateway/http/conn.c) -- with
 * only the sockets and the gRPC call replaced: the event loop's role is
 * played here, the input arrives in slices and upstream calls complete at
 * once with a code picked by the input.
 *
 * First byte: bits 0-5 the slice size - 1, bits 6-7 the upstream answer
 * (OK, UNAVAILABLE, INVALID_ARGUMENT with a reason, DEADLINE_EXCEEDED).
 * The rest is what the client sends, then it half-closes.
 *
 * Checked: the engine always makes progress; every answer is one
 * well-formed response (status line, JSON Content-Type, X-Request-Id,
 * Content-Length matching a JSON body with "status", and "error" on 4xx/5xx;
 * a scrape of /metrics: 200 and the Prometheus text format).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/status.h"
#include "gateway/http/conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *find(const char *p, size_t n, const char *s)
{
	size_t sl = strlen(s);

	for (size_t i = 0; i + sl <= n; i++)
		if (memcmp(p + i, s, sl) == 0)
			return p + i;
	return NULL;
}

/* Checks whole responses in out[0..n); returns bytes checked. */
static void check_output(const char *out, size_t n)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	size_t at = 0;

	while (at < n) {
		const char *p = out + at, *end, *cl;
		size_t head, body_len;
		unsigned status;
		bool is_json;
		json_t *j;

		if (n - at >= sizeof(cont) - 1 &&
		    memcmp(p, cont, sizeof(cont) - 1) == 0) {
			at += sizeof(cont) - 1;
			continue;
		}
		if (n - at < 13 || memcmp(p, "HTTP/1.1 ", 9) != 0)
			abort();
		status = (unsigned)atoi(p + 9);
		if (status < 200 || status > 599)
			abort();
		end = find(p, n - at, "\r\n\r\n");
		if (!end)
			abort();
		head = (size_t)(end - p) + 4;
		/* Every answer is JSON but the scrape of /metrics (200, the
		 * Prometheus text format). */
		is_json = find(p, head,
			       "\r\nContent-Type: application/json; "
			       "charset=utf-8\r\n") != NULL;
		if ((!is_json && (status != 200 ||
				  !find(p, head,
					"\r\nContent-Type: " DAS_METRICS_CONTENT_TYPE
					"\r\n"))) ||
		    !find(p, head, "\r\nX-Request-Id: "))
			abort();
		cl = find(p, head, "\r\nContent-Length: ");
		if (!cl)
			abort();
		body_len = (size_t)strtoul(cl + 18, NULL, 10);
		at += head;
		/* HEAD answers carry the length but no body. */
		if (at == n ||
		    (n - at >= 9 && memcmp(out + at, "HTTP/1.1 ", 9) == 0))
			continue;
		if (at + body_len > n)
			abort();
		if (!is_json) {
			at += body_len;
			continue;
		}
		j = json_loadb(out + at, body_len, 0, NULL);
		if (!j || !json_object_get(j, "status") ||
		    (status >= 400 && !json_object_get(j, "error")))
			abort();
		json_decref(j);
		at += body_len;
	}
}

static void complete_call(struct gw_conn *c, unsigned which)
{
	struct gw_call_outcome *o = &c->outcome;

	if (!c->call.tenant || !c->call.user || !c->call.request_id ||
	    !c->call.account)
		abort();
	memset(o, 0, sizeof(*o));
	switch (which) {
	case 0:
		o->grpc_code = DAS_GRPC_OK;
		o->is_serving = true;
		break;
	case 1:
		o->grpc_code = DAS_GRPC_UNAVAILABLE;
		break;
	case 2:
		o->grpc_code = DAS_GRPC_INVALID_ARGUMENT;
		snprintf(o->reason, sizeof(o->reason), "INVALID_ID");
		snprintf(o->message, sizeof(o->message), "bad \xff id");
		break;
	default:
		o->grpc_code = DAS_GRPC_DEADLINE_EXCEEDED;
		break;
	}
	gw_conn_call_done(c, true);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static atomic_ullong counter;
	static struct gw_conn_config cfg = {.id_counter = &counter};
	struct gw_conn c;
	size_t pos = 1, slice;
	unsigned which;

	if (size < 1)
		return 0;
	das_log_set_level(DAS_LOG_ERROR);
	slice = (size_t)(data[0] & 0x3f) + 1;
	which = data[0] >> 6;
	if (gw_conn_init(&c, &cfg) != 0)
		abort();
	for (int steps = 0;; steps++) {
		enum gw_conn_step st = gw_conn_advance(&c);
		size_t avail, n;
		const char *out;
		char *in;

		if (steps > 1000000)
			abort(); /* no progress */
		if (st == GW_CONN_CLOSE)
			break;
		switch (st) {
		case GW_CONN_READ:
			if (pos == size) {
				gw_conn_in_eof(&c);
				break;
			}
			in = gw_conn_in_space(&c, &avail);
			if (!in)
				abort(); /* READ must come with room */
			n = size - pos < slice ? size - pos : slice;
			n = n < avail ? n : avail;
			memcpy(in, data + pos, n);
			gw_conn_in_commit(&c, n);
			pos += n;
			break;
		case GW_CONN_WRITE:
			out = gw_conn_output(&c, &n);
			if (n == 0)
				abort();
			check_output(out, n);
			gw_conn_output_done(&c, n);
			break;
		case GW_CONN_CALL:
			complete_call(&c, which);
			break;
		case GW_CONN_WAIT:
			abort(); /* only after a call we never leave open */
		case GW_CONN_CLOSE:
			break;
		}
	}
	gw_conn_release(&c);
	return 0;
}
