#include "observe.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/metrics.h"

/* Route labels: the RPC names of routes.c, plus "none" for requests that
 * matched no route (404, 405, 400 of the path). */
#define ROUTE_NONE_INDEX 16

static struct das_metric_family *m_requests, *m_seconds, *m_in_flight,
	*m_upstream, *m_states;
static struct das_metric_series *latency[ROUTE_NONE_INDEX + 1];
static struct das_metric_series *in_flight[ROUTE_NONE_INDEX + 1];
static bool is_metrics_on_main = true;

/*
 * Every request counts one das_http_requests_total series: the usual ones
 * are kept once found, by route, method, the row answered and whether a
 * success was a 200 (the row fixes the status and reason otherwise).
 * Answers whose status is not the row's are looked up each time. Two
 * threads may find one at the same time; both get the same series.
 */
#define METHODS 5
static _Atomic(struct das_metric_series *)
	request_series[ROUTE_NONE_INDEX + 1][METHODS][DAS_STATUS__COUNT][2];
/* Upstream calls by RPC and gRPC code, for the one target of the process. */
#define RPCS  8
#define CODES 17
static _Atomic(const char *) upstream_target;
static _Atomic(struct das_metric_series *) upstream_series[RPCS][CODES];

static unsigned route_index(enum gw_route_result rc, enum gw_route_rpc rpc)
{
	if (rc != GW_ROUTE_OK || (unsigned)rpc >= ROUTE_NONE_INDEX)
		return ROUTE_NONE_INDEX;
	return (unsigned)rpc;
}

static const char *route_label(unsigned i)
{
	return i == ROUTE_NONE_INDEX ? "none"
				     : gw_route_rpc_name((enum gw_route_rpc)i);
}

/* Methods we serve keep their name; anything else is one label. */
static const char *const method_labels[METHODS] = {"GET", "HEAD", "PUT", "POST",
						   "other"};

static unsigned method_index(const char *m)
{
	for (unsigned i = 0; m && i < METHODS - 1; i++)
		if (strcmp(m, method_labels[i]) == 0)
			return i;
	return METHODS - 1;
}

void gw_obs_register(bool is_on_main_listener)
{
	static const struct das_metric_def requests = {
		.name = "das_http_requests_total",
		.help = "HTTP requests answered, by route, method, status and "
			"ErrorInfo reason.",
		.type = DAS_METRIC_COUNTER,
		.labels = {"route", "method", "status", "reason"},
		.max_series = 512};
	static const struct das_metric_def seconds = {
		.name = "das_http_request_duration_seconds",
		.help = "Time from a request's head to the end of its answer, "
			"by route.",
		.type = DAS_METRIC_HISTOGRAM,
		.labels = {"route"},
		.buckets = das_metric_latency_buckets,
		.n_buckets = DAS_METRIC_LATENCY_BUCKETS,
		.scale = 1e9,
		.max_series = 32};
	static const struct das_metric_def inflight = {
		.name = "das_http_requests_in_flight",
		.help = "Requests being handled now, by route.",
		.type = DAS_METRIC_GAUGE,
		.labels = {"route"},
		.max_series = 32};
	static const struct das_metric_def upstream = {
		.name = "das_upstream_calls_total",
		.help = "gRPC calls to the service, by target, RPC and gRPC "
			"code.",
		.type = DAS_METRIC_COUNTER,
		.labels = {"target", "rpc", "grpc_code"},
		.max_series = 256};
	static const struct das_metric_def states = {
		.name = "das_upstream_channel_state_changes_total",
		.help = "Changes of the upstream channel's connectivity state, "
			"by the state entered.",
		.type = DAS_METRIC_COUNTER,
		.labels = {"target", "state"},
		.max_series = 64};

	is_metrics_on_main = is_on_main_listener;
	m_requests = das_metric_register(&requests);
	m_seconds = das_metric_register(&seconds);
	m_in_flight = das_metric_register(&inflight);
	m_upstream = das_metric_register(&upstream);
	m_states = das_metric_register(&states);
	for (unsigned i = 0; i <= ROUTE_NONE_INDEX; i++) {
		const char *name = route_label(i);
		if (!*name)
			continue; /* no such route */
		latency[i] = das_metric_series1(m_seconds, name);
		in_flight[i] = das_metric_series1(m_in_flight, name);
	}
}

void gw_obs_begin(enum gw_route_result route_rc, enum gw_route_rpc rpc)
{
	das_metric_add(in_flight[route_index(route_rc, rpc)], 1);
}

void gw_obs_end(const struct gw_obs_request *r)
{
	unsigned i = route_index(r->route_rc, r->rpc);
	unsigned m = method_index(r->method);
	const struct das_status_row *row = das_status_row(r->status);
	const char *reason = "";
	struct das_metric_series *s = NULL;
	_Atomic(struct das_metric_series *) *slot = NULL;
	char status[8];

	if (r->http_status >= 400)
		reason = row->reason;
	if (row->status == DAS_OK &&
	    (r->http_status == 200 || r->http_status == 201))
		slot = &request_series[i][m][row->status]
				      [r->http_status == 200];
	else if (r->http_status == (unsigned)row->http_status)
		slot = &request_series[i][m][row->status][0];
	if (slot)
		s = atomic_load_explicit(slot, memory_order_acquire);
	if (!s) {
		/* Three digits by hand. */
		status[0] = (char)('0' + r->http_status / 100 % 10);
		status[1] = (char)('0' + r->http_status / 10 % 10);
		status[2] = (char)('0' + r->http_status % 10);
		status[3] = '\0';
		s = das_metric_series4(m_requests, route_label(i),
				       method_labels[m], status, reason);
		if (slot)
			atomic_store_explicit(slot, s, memory_order_release);
	}
	if (r->is_begun)
		das_metric_add(in_flight[i], -1);
	das_metric_observe(latency[i], (uint64_t)(r->duration_ms * 1e6));
	das_metric_inc(s);
	if (das_log_is_enabled(DAS_LOG_INFO)) {
		struct das_log_call line = {
			.request_id = r->request_id,
			.request_id_len =
				r->request_id ? strlen(r->request_id) : 0,
			.method = r->method,
			.path = r->path,
			.path_len = r->path_len,
			.route = route_label(i),
			.http_status = (int)r->http_status,
			.reason = reason,
			.duration_ms = r->duration_ms,
			.is_aborted = r->is_aborted,
			.is_path_cut = r->is_path_cut,
		};
		das_log_call(&line);
	}
}

enum das_status gw_obs_metrics_body(char **text, size_t *len)
{
	*text = NULL;
	*len = 0;
	if (!is_metrics_on_main)
		return DAS_ROUTE_NOT_FOUND;
	*text = das_metrics_render(len);
	return *text ? DAS_OK : DAS_INTERNAL;
}

void gw_obs_upstream_call(const char *target, enum gw_route_rpc rpc,
			  int grpc_code)
{
	const char *first = NULL;
	_Atomic(struct das_metric_series *) *slot = NULL;
	struct das_metric_series *s = NULL;

	/* The process has one upstream target: its series are kept. */
	atomic_compare_exchange_strong(&upstream_target, &first, target);
	if (atomic_load(&upstream_target) == target && (unsigned)rpc < RPCS &&
	    grpc_code >= 0 && grpc_code < CODES)
		slot = &upstream_series[rpc][grpc_code];
	if (slot)
		s = atomic_load_explicit(slot, memory_order_acquire);
	if (!s) {
		s = das_metric_series3(m_upstream, target,
				       gw_route_rpc_name(rpc),
				       das_grpc_code_name(grpc_code));
		if (slot)
			atomic_store_explicit(slot, s, memory_order_release);
	}
	das_metric_inc(s);
}

void gw_obs_channel_state(const char *target, const char *state)
{
	das_metric_inc(das_metric_series2(m_states, target, state));
}
