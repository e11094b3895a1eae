/*
 * What the server tells an operator about its calls: Prometheus metrics
 * (RED per RPC, auth verifications, seats) and one access line per call.
 * Everything is registered by obs_register(), before the workers start.
 *
 * Seat metrics carry the customer (tenant GUID) as their only label. That
 * label is bounded: a customer enters it only after its token was verified,
 * the tenant id parsed as a GUID, the customer found in the store and the
 * rules decided a 402 or a charge; and each family keeps at most
 * OBS_CUSTOMERS_MAX customers, the rest counted under customer="other".
 * No user or device id is ever a label.
 */
#ifndef DAS_GRPC_OBSERVE_H
#define DAS_GRPC_OBSERVE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/rpc_methods.h"

#define OBS_CUSTOMERS_MAX 1000

void obs_register(void);

/* A call of method was delivered to a worker (in-flight + 1); returns the
 * start time to hand to obs_call_end. */
uint64_t obs_call_begin(enum das_rpc_method method);

/*
 * The call was answered with grpc_code and reason ("" or NULL for none):
 * counts it, observes its latency, in-flight - 1, and writes its access
 * line. request_id (request_id_len bytes, as received; may be NULL) and
 * sub (the token's subject; "" when not authenticated) go to the line only.
 */
void obs_call_end(enum das_rpc_method method, uint64_t t0, int grpc_code,
		  const char *reason, const char *request_id,
		  size_t request_id_len, const char *sub);

/* A call to a method the server does not serve (UNIMPLEMENTED). */
void obs_call_unknown(const char *request_id, size_t request_id_len);

/* A token verification: "ok", "missing" or "invalid". */
void obs_auth(const char *outcome);

/* Seats of customer (canonical GUID): an assign refused with 402, and an
 * assign that took a new paid seat. */
void obs_seat_declined(const char *customer);
void obs_seat_charged(const char *customer);

/* Rapid-reset guard (flood_guard.c): a call the client cancelled before
 * its deadline and our answer; a connection closed for such resets; a call
 * of a closed connection dropped unanswered. */
void obs_flood_reset(void);
void obs_flood_connection_closed(void);
void obs_flood_call_dropped(void);
/* A connection closed for the bytes its calls do not account for. */
void obs_wire_connection_closed(void);
/* A connection closed as it was accepted: the server holds as many as it
 * may (accept_guard.h). */
void obs_connection_refused(void);
/* A connection closed for the streams it held without their requests. */
void obs_stall_connection_closed(void);
/* A connection closed because its client took none of our bytes. */
void obs_stuck_connection_closed(void);

#endif
