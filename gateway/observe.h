/*
 * What the gateway tells an operator: Prometheus metrics (RED per route,
 * upstream calls and channel states) and one access line per request.
 * The HTTP layer (gateway/http/conn.c) calls gw_obs_begin when a request's
 * head is judged, gw_obs_end when it is answered, and answers the METRICS
 * route with gw_obs_metrics_body; the upstream glue reports its calls.
 */
#ifndef GW_OBSERVE_H
#define GW_OBSERVE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/status.h"
#include "gateway/routes.h"

/*
 * Registers the gateway's families. is_on_main_listener: GET /metrics is
 * answered on the main listener (false when a separate --metrics-listen
 * serves them, so business metrics stay off the public port).
 */
void gw_obs_register(bool is_on_main_listener);

/* A request with this route result has started (in-flight + 1). */
void gw_obs_begin(enum gw_route_result route_rc, enum gw_route_rpc rpc);

struct gw_obs_request {
	const char *method; /* as sent, NUL-terminated */
	const char *path;   /* request target as sent */
	size_t path_len;
	bool is_path_cut;	       /* the target was longer than path */
	enum gw_route_result route_rc; /* as given to gw_obs_begin */
	enum gw_route_rpc rpc;
	bool is_begun;		/* gw_obs_begin was called */
	unsigned http_status;	/* 0 when nothing was answered */
	enum das_status status; /* the row answered */
	const char *request_id; /* NUL-terminated */
	double duration_ms;
	bool is_aborted;
};

/* The request is over: in-flight - 1, counters, latency, access line. */
void gw_obs_end(const struct gw_obs_request *r);

/*
 * The body of GET /metrics: DAS_OK with the exposition in *text (malloc'd,
 * *len bytes; text/plain 0.0.4), or with *text NULL the row to answer:
 * ROUTE_NOT_FOUND when a separate --metrics-listen serves them, INTERNAL
 * when memory runs out.
 */
enum das_status gw_obs_metrics_body(char **text, size_t *len);

/* An upstream call ended: the channel's target (the --upstream value as
 * a gRPC target), rpc and the gRPC code the gateway acted on. */
void gw_obs_upstream_call(const char *target, enum gw_route_rpc rpc,
			  int grpc_code);

/* The upstream channel moved to state ("IDLE", "CONNECTING", "READY",
 * "TRANSIENT_FAILURE", "SHUTDOWN"). */
void gw_obs_channel_state(const char *target, const char *state);

#endif
