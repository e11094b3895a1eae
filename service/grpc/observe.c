#include "observe.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/status.h"

static struct das_metric_family *m_handled, *m_seconds, *m_in_flight, *m_auth,
	*m_declined, *m_charged;
static struct das_metric_series *flood_resets, *flood_closed, *wire_closed,
	*refused, *stalled, *stuck, *flood_dropped;
static struct das_metric_series *latency[DAS_RPC__COUNT];
/* The hot series, found once: calls answered OK per method, auth "ok". */
static struct das_metric_series *handled_ok[DAS_RPC__COUNT];
static struct das_metric_series *auth_ok;
static struct das_metric_series *in_flight[DAS_RPC__COUNT];
/* "/pkg.Service/Method" split once into its two labels. */
static char service_of[DAS_RPC__COUNT][64];
static char method_of[DAS_RPC__COUNT][64];

void obs_register(void)
{
	static const struct das_metric_def handled = {
		.name = "das_grpc_server_handled_total",
		.help = "RPCs answered, by method, gRPC code and ErrorInfo "
			"reason.",
		.type = DAS_METRIC_COUNTER,
		.labels = {"grpc_service", "grpc_method", "grpc_code",
			   "reason"},
		.max_series = 512};
	static const struct das_metric_def seconds = {
		.name = "das_grpc_server_handling_seconds",
		.help = "Time from a call's delivery to its answer, by method.",
		.type = DAS_METRIC_HISTOGRAM,
		.labels = {"grpc_service", "grpc_method"},
		.buckets = das_metric_latency_buckets,
		.n_buckets = DAS_METRIC_LATENCY_BUCKETS,
		.scale = 1e9,
		.max_series = 32};
	static const struct das_metric_def inflight = {
		.name = "das_grpc_server_in_flight",
		.help = "Calls being handled now, by method.",
		.type = DAS_METRIC_GAUGE,
		.labels = {"grpc_service", "grpc_method"},
		.max_series = 32};
	static const struct das_metric_def auth = {
		.name = "das_auth_verifications_total",
		.help = "Bearer token verifications by outcome (ok, missing, "
			"invalid).",
		.type = DAS_METRIC_COUNTER,
		.labels = {"outcome"},
		.max_series = 4};
	static const struct das_metric_def declined = {
		.name = "das_seat_charges_declined_total",
		.help = "Assigns refused with 402 (a new paid seat without "
			"accept-charges), by customer.",
		.type = DAS_METRIC_COUNTER,
		.labels = {"customer"},
		.max_series = OBS_CUSTOMERS_MAX};
	static const struct das_metric_def charged = {
		.name = "das_seats_charged_total",
		.help = "Assigns that took a new paid seat (charged), by "
			"customer.",
		.type = DAS_METRIC_COUNTER,
		.labels = {"customer"},
		.max_series = OBS_CUSTOMERS_MAX};

	static const struct das_metric_def resets = {
		.name = "das_grpc_server_client_resets_total",
		.help = "Calls the client cancelled before their deadline and "
			"before the answer.",
		.type = DAS_METRIC_COUNTER,
		.max_series = 1};
	static const struct das_metric_def closed = {
		.name = "das_grpc_server_connections_closed_total",
		.help = "Connections the server closed, by reason "
			"(rapid_reset: most of its calls reset by the client; "
			"unaccounted_bytes: it sent far more bytes than its "
			"calls hold; connection_limit: closed as it was "
			"accepted, the server holding as many as it may; "
			"held_streams: it kept streams open without sending "
			"their requests; not_reading: it took none of the "
			"server's bytes for too long).",
		.type = DAS_METRIC_COUNTER,
		.labels = {"reason"},
		.max_series = 5};
	static const struct das_metric_def dropped = {
		.name = "das_grpc_server_calls_dropped_total",
		.help = "Calls of a connection closed for rapid reset, dropped "
			"unanswered.",
		.type = DAS_METRIC_COUNTER,
		.max_series = 1};

	m_handled = das_metric_register(&handled);
	m_seconds = das_metric_register(&seconds);
	m_in_flight = das_metric_register(&inflight);
	m_auth = das_metric_register(&auth);
	m_declined = das_metric_register(&declined);
	m_charged = das_metric_register(&charged);
	auth_ok = das_metric_series1(m_auth, "ok");
	flood_resets = das_metric_series0(das_metric_register(&resets));
	struct das_metric_family *m_closed = das_metric_register(&closed);
	flood_closed = das_metric_series1(m_closed, "rapid_reset");
	wire_closed = das_metric_series1(m_closed, "unaccounted_bytes");
	refused = das_metric_series1(m_closed, "connection_limit");
	stalled = das_metric_series1(m_closed, "held_streams");
	stuck = das_metric_series1(m_closed, "not_reading");
	flood_dropped = das_metric_series0(das_metric_register(&dropped));
	for (int m = 0; m < DAS_RPC__COUNT; m++) {
		const char *path = das_rpc_method((enum das_rpc_method)m)->path;
		const char *slash = strrchr(path, '/');
		snprintf(service_of[m], sizeof(service_of[m]), "%.*s",
			 (int)(slash - path - 1), path + 1);
		snprintf(method_of[m], sizeof(method_of[m]), "%s", slash + 1);
		latency[m] = das_metric_series2(m_seconds, service_of[m],
						method_of[m]);
		in_flight[m] = das_metric_series2(m_in_flight, service_of[m],
						  method_of[m]);
		handled_ok[m] = das_metric_series4(m_handled, service_of[m],
						   method_of[m], "OK", "");
	}
}

uint64_t obs_call_begin(enum das_rpc_method method)
{
	das_metric_add(in_flight[method], 1);
	return das_metric_now_ns();
}

void obs_call_end(enum das_rpc_method method, uint64_t t0, int grpc_code,
		  const char *reason, const char *request_id,
		  size_t request_id_len, const char *sub)
{
	uint64_t ns = das_metric_now_ns() - t0;
	const char *code = das_grpc_code_name(grpc_code);

	if (!reason)
		reason = "";
	das_metric_add(in_flight[method], -1);
	das_metric_observe(latency[method], ns);
	if (grpc_code == 0 && !*reason)
		das_metric_inc(handled_ok[method]);
	else
		das_metric_inc(das_metric_series4(m_handled, service_of[method],
						  method_of[method], code,
						  reason));
	if (das_log_is_enabled(DAS_LOG_INFO)) {
		struct das_log_call line = {
			.request_id = request_id,
			.request_id_len = request_id_len,
			.method = das_rpc_method(method)->path,
			.code = code,
			.reason = reason,
			.duration_ms = (double)ns / 1e6,
			.sub = sub && *sub ? sub : NULL,
			.sub_len = sub ? strlen(sub) : 0,
		};
		das_log_call(&line);
	}
}

void obs_call_unknown(const char *request_id, size_t request_id_len)
{
	das_metric_inc(das_metric_series4(m_handled, "unknown", "unknown",
					  "UNIMPLEMENTED", ""));
	if (das_log_is_enabled(DAS_LOG_INFO)) {
		struct das_log_call line = {
			.request_id = request_id,
			.request_id_len = request_id_len,
			.method = "unknown",
			.code = "UNIMPLEMENTED",
		};
		das_log_call(&line);
	}
}

void obs_auth(const char *outcome)
{
	if (strcmp(outcome, "ok") == 0)
		das_metric_inc(auth_ok);
	else
		das_metric_inc(das_metric_series1(m_auth, outcome));
}

void obs_seat_declined(const char *customer)
{
	das_metric_inc(das_metric_series1(m_declined, customer));
}

void obs_seat_charged(const char *customer)
{
	das_metric_inc(das_metric_series1(m_charged, customer));
}

void obs_flood_reset(void)
{
	das_metric_inc(flood_resets);
}

void obs_flood_connection_closed(void)
{
	das_metric_inc(flood_closed);
}

void obs_wire_connection_closed(void)
{
	das_metric_inc(wire_closed);
}

void obs_connection_refused(void)
{
	das_metric_inc(refused);
}

void obs_stall_connection_closed(void)
{
	das_metric_inc(stalled);
}

void obs_stuck_connection_closed(void)
{
	das_metric_inc(stuck);
}

void obs_flood_call_dropped(void)
{
	das_metric_inc(flood_dropped);
}
