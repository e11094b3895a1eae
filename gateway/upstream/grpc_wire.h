/*
 * gRPC over HTTP/2 as the gateway's client speaks it, without any I/O:
 * the request message framed for a DATA frame (5-byte prefix + protobuf),
 * the reply message decoded into a gw_call_outcome, and the values of the
 * reply's gRPC headers (grpc-status, grpc-message, grpc-status-details-bin).
 * protobuf-c types stay inside grpc_wire.c. Every input here comes from
 * the network: bounded, checked, never trusted.
 */
#ifndef GW_UPSTREAM_GRPC_WIRE_H
#define GW_UPSTREAM_GRPC_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/call.h"

/* The 5-byte prefix of a gRPC message: compressed flag, 32-bit length. */
#define GW_WIRE_PREFIX 5
/* All header bytes (names + values, every block) a reply may carry. */
#define GW_WIRE_MAX_HEADERS (16 * 1024)
/* grpc-status-details-bin as sent (base64). */
#define GW_WIRE_MAX_DETAILS 8192

/* The :path of rpc ("/deviceassignment.v1.DeviceAssignment/..."). */
const char *gw_wire_path(enum gw_route_rpc rpc);

/*
 * The request message of req, framed: malloc'd, *len bytes (the caller
 * frees). NULL when memory runs out or the message would exceed
 * DAS_RPC_MAX_MESSAGE.
 */
uint8_t *gw_wire_encode(const struct gw_call_request *req, size_t *len);

/*
 * Decodes the DATA of an OK reply (body, len bytes: exactly one
 * uncompressed message of rpc's response type) into out. Returns 0, or -1
 * when it is anything else (out may then be partly filled: the caller
 * resets it).
 */
int gw_wire_decode(enum gw_route_rpc rpc, const uint8_t *body, size_t len,
		   struct gw_call_outcome *out);

/* grpc-status: a decimal code 0..16 (1-2 digits). -1 otherwise. */
int gw_wire_status(const uint8_t *v, size_t len);

/* grpc-message, percent-decoded into out (NUL-terminated, truncated). */
void gw_wire_message(const uint8_t *v, size_t len, char *out,
		     size_t out_size);

/*
 * grpc-status-details-bin (base64, padded or not): the ErrorInfo reason of
 * our domain into reason. Returns 0, or -1 (reason "") when the value is
 * not base64 of a google.rpc.Status with such an ErrorInfo.
 */
int gw_wire_details_reason(const uint8_t *v, size_t len, char *reason,
			   size_t reason_size);

/*
 * The gRPC code for a reply that is not gRPC: an HTTP :status other than
 * 200 (429, 502, 503 and 504 are UNAVAILABLE, as gRPC maps them: a proxy
 * in the way is busy or has no server; anything else is INTERNAL: the
 * upstream is not the service we speak to).
 */
int gw_wire_code_from_http(int http_status);

/* "application/grpc", alone or followed by '+' or ';'. */
int gw_wire_is_grpc_type(const uint8_t *v, size_t len);

#endif
