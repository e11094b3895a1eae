/*
 * Fuzz target: what an upstream may send back, through the gateway's gRPC
 * wire functions (gateway/upstream/grpc_wire.h). The first byte picks the
 * part, the rest is the upstream's bytes:
 *   0-5  DATA of an OK reply for LIST, LEDGER, SEATS, ASSIGN, UNASSIGN,
 *        READYZ, decoded into an outcome (bounded counts and strings)
 *   6    a grpc-message value, percent-decoded (stays NUL-terminated)
 *   7    a grpc-status-details-bin value (base64 google.rpc.Status)
 *   8    grpc-status and content-type values
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/upstream/grpc_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const enum gw_route_rpc rpcs[] = {
	GW_ROUTE_LIST,	 GW_ROUTE_LEDGER,   GW_ROUTE_SEATS,
	GW_ROUTE_ASSIGN, GW_ROUTE_UNASSIGN, GW_ROUTE_READYZ,
};

static void decode(enum gw_route_rpc rpc, const uint8_t *p, size_t n)
{
	struct gw_call_outcome *out = calloc(1, sizeof(*out));

	if (!out)
		return;
	if (gw_wire_decode(rpc, p, n, out) == 0) {
		if (out->n_devices > GW_LIST_MAX ||
		    out->n_entries > GW_LEDGER_PAGE_MAX)
			abort();
		for (size_t i = 0; i < out->n_devices; i++)
			if (strlen(out->devices[i].device_id) >=
			    sizeof(out->devices[i].device_id))
				abort();
		if (strlen(out->next_page_token) >=
		    sizeof(out->next_page_token))
			abort();
	}
	gw_call_outcome_release(out);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char text[GW_MESSAGE_MAX], reason[GW_REASON_MAX];
	int code;

	if (size < 1)
		return 0;
	uint8_t which = data[0];
	const uint8_t *p = data + 1;
	size_t n = size - 1;

	if (which < 6) {
		decode(rpcs[which], p, n);
	} else if (which == 6) {
		memset(text, 'x', sizeof(text));
		gw_wire_message(p, n, text, sizeof(text));
		if (!memchr(text, '\0', sizeof(text)))
			abort();
	} else if (which == 7) {
		memset(reason, 'x', sizeof(reason));
		if (gw_wire_details_reason(p, n, reason, sizeof(reason)) != 0 &&
		    reason[0] != '\0')
			abort();
		if (!memchr(reason, '\0', sizeof(reason)))
			abort();
	} else {
		code = gw_wire_status(p, n);
		if (code < -1 || code > 16)
			abort();
		(void)gw_wire_is_grpc_type(p, n);
	}
	return 0;
}
