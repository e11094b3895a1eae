/*
 * Prometheus metrics: counters, gauges and fixed-bucket histograms, and
 * their text exposition (format 0.0.4).
 *
 * A family (name, help, type, label names, buckets) is registered once, at
 * start-up, in the process-wide registry. A series of a family is one tuple
 * of label values; the series table of a family has a fixed capacity
 * (max_series, chosen by whoever defines the family), so no input can grow
 * memory or the scrape: once it is full, new tuples land in one overflow
 * series whose every label value is "other".
 *
 * Hot path: das_metric_series() finds (or inserts, with one compare-and-swap)
 * the series of a tuple without a lock; the cells are relaxed atomics. A
 * caller that knows its series at start-up can keep the pointer.
 * The scrape reads the cells without stopping writers: a histogram's _count
 * always equals its +Inf bucket, its _sum may lag by the observations in
 * flight.
 */
#ifndef DAS_COMMON_METRICS_H
#define DAS_COMMON_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DAS_METRIC_LABELS_MAX	4  /* label names per family */
#define DAS_METRIC_BUCKETS_MAX	16 /* finite histogram bounds */
#define DAS_METRIC_VALUE_MAX	63 /* bytes of one label value kept */
#define DAS_METRIC_FAMILIES_MAX 64

enum das_metric_type {
	DAS_METRIC_COUNTER,
	DAS_METRIC_GAUGE,
	DAS_METRIC_HISTOGRAM,
};

/* Seconds buckets from 100 us to 10 s (for das_metric_observe_ns). */
extern const double das_metric_latency_buckets[];
#define DAS_METRIC_LATENCY_BUCKETS 16

struct das_metric_def {
	const char *name; /* [a-zA-Z_:][a-zA-Z0-9_:]*, static */
	const char *help; /* static */
	enum das_metric_type type;
	const char *labels[DAS_METRIC_LABELS_MAX]; /* NULL-terminated, static */
	/* Histograms: increasing finite bounds (the +Inf bucket is implied),
	 * in the unit of the exposition; values observed are in that unit
	 * times scale (1e9 for seconds observed in nanoseconds, 1 for counts).
	 */
	const double *buckets;
	unsigned n_buckets;
	double scale;
	unsigned max_series; /* capacity, the overflow series excluded */
};

struct das_metric_family;
struct das_metric_series;

/*
 * Registers a family (def is copied; its strings must be static). Returns
 * the family of the same name when one exists already (same definition
 * assumed), or NULL when the registry is full, the definition is invalid or
 * memory runs out. Call before the threads that use it start.
 */
struct das_metric_family *das_metric_register(const struct das_metric_def *def);

/*
 * The series of the label values (one per label name of the family, NULL
 * read as ""; values longer than DAS_METRIC_VALUE_MAX bytes are cut).
 * Never NULL for a non-NULL family: the overflow series when the family is
 * full. NULL family gives NULL, which every update below accepts.
 */
struct das_metric_series *das_metric_series(struct das_metric_family *f,
					    const char *const *values);

/* Shorthands for 0 to 4 label values. */
struct das_metric_series *das_metric_series0(struct das_metric_family *f);
struct das_metric_series *das_metric_series1(struct das_metric_family *f,
					     const char *v0);
struct das_metric_series *das_metric_series2(struct das_metric_family *f,
					     const char *v0, const char *v1);
struct das_metric_series *das_metric_series3(struct das_metric_family *f,
					     const char *v0, const char *v1,
					     const char *v2);
struct das_metric_series *das_metric_series4(struct das_metric_family *f,
					     const char *v0, const char *v1,
					     const char *v2, const char *v3);

/* Counters and gauges (a counter only ever takes n >= 0). */
void das_metric_add(struct das_metric_series *s, int64_t n);
static inline void das_metric_inc(struct das_metric_series *s)
{
	das_metric_add(s, 1);
}
/* Gauges only. */
void das_metric_set(struct das_metric_series *s, int64_t v);
/* Histograms: value in the family's unit times its scale. */
void das_metric_observe(struct das_metric_series *s, uint64_t value);

/* The current value of a counter or gauge series (tests, /metrics). */
int64_t das_metric_value(const struct das_metric_series *s);
/* Observations so far of a histogram series. */
uint64_t das_metric_count(const struct das_metric_series *s);
/* Of those, the ones in bucket b alone (not cumulative; b = n_buckets is
 * +Inf); 0 for a bucket the series does not have. */
uint64_t das_metric_bucket_count(const struct das_metric_series *s, unsigned b);

/*
 * With false, every update is a no-op and das_metric_series() gives NULL
 * (the exposition then holds the families without series, process_* and
 * build_info): the "metrics off" of a benchmark. Default true.
 */
void das_metrics_set_enabled(bool is_enabled);

/* Monotonic nanoseconds, for latency observations. */
uint64_t das_metric_now_ns(void);

/*
 * Process-wide facts exposed with every scrape: build_info{program,version}
 * and process_start_time_seconds. Call once from main.
 */
void das_metrics_set_program(const char *program, const char *version);

/*
 * Writes the exposition of every family plus process_* and build_info into
 * a malloc'd, NUL-terminated buffer (*len bytes, excluding the NUL).
 * Returns NULL when memory runs out. The caller frees it.
 */
char *das_metrics_render(size_t *len);

/* The Content-Type of that text. */
#define DAS_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/*
 * A minimal HTTP/1.x listener that answers GET (and HEAD) /metrics with
 * the exposition and anything else with 400/404/405, one request per
 * connection, reading at most 8 KiB of request head (more is a 431) and
 * sending the answer within 5 s of the accept. One thread serves up to 16
 * connections at once (more wait in the listen backlog); meant for
 * loopback or a private network.
 *
 * Starts listening on addr ("HOST:PORT", "[v6]:PORT"; port 0 picks one).
 * Returns NULL with a one-line reason in err.
 */
struct das_metrics_http;
struct das_metrics_http *das_metrics_http_start(const char *addr, char *err,
						size_t err_size);
/* The bound port. */
unsigned das_metrics_http_port(const struct das_metrics_http *m);
/* Stops the thread, closes the socket, frees m; NULL is a no-op. */
void das_metrics_http_stop(struct das_metrics_http *m);

/* Tests only: forgets every family (not thread-safe). */
void das_metrics_reset_for_tests(void);

#endif
