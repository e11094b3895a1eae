/*
 * The HTTP answer of a request: status, body and the extra headers the
 * contract asks for. Every status code comes from common/status.h; this
 * module only looks rows up (the gateway makes no domain decision).
 */
#ifndef GW_REPLY_H
#define GW_REPLY_H

#include <stdbool.h>

#include "common/status.h"
#include "gateway/call.h"

struct gw_reply {
	unsigned http_status;
	char *body; /* owned, malloc'd JSON; NULL only on allocation failure */
	bool has_www_authenticate; /* 401: WWW-Authenticate: Bearer */
	const char *allow;	   /* 405: Allow value (static) or NULL */
	enum das_status status;	   /* the row answered, for the log */
};

/*
 * An answer the gateway gives itself (route, method, size, media type,
 * body shape, gateway rows and 503/504/500): the row's message with "%s"
 * filled by arg (NULL = ""). now is the error body's timestamp.
 */
void gw_reply_error(struct gw_reply *r, enum das_status status, const char *arg,
		    struct das_time now);

/*
 * The answer to a finished upstream call of rpc: 201/200 on OK (the
 * timestamp the service returned, now when it sent none), else the row of
 * (code, reason) with the service's message for domain rows and the table's
 * text for UNAVAILABLE, DEADLINE_EXCEEDED and INTERNAL. client_type_as_sent
 * feeds the 402 body.
 */
void gw_reply_from_outcome(struct gw_reply *r, enum gw_route_rpc rpc,
			   const struct gw_call_outcome *o,
			   const char *client_type_as_sent,
			   struct das_time now);

/* Frees r->body; the struct can be reused. */
void gw_reply_release(struct gw_reply *r);

#endif
