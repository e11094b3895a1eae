/*
 * common/metrics.c: counters, gauges, histograms, bounded series tables,
 * the text exposition, concurrent updates, and the /metrics listener.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/metrics.h"

static int reset(void **state)
{
	(void)state;
	das_metrics_reset_for_tests();
	return 0;
}

static char *render(void)
{
	size_t len = 0;
	char *text = das_metrics_render(&len);

	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	return text;
}

static void assert_has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)); p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return;
	fail_msg("missing line: %s\n--- in:\n%s", line, text);
}

static void counter_moves_by_exact_amounts(void **state)
{
	static const struct das_metric_def def = {.name = "t_requests_total",
						  .help = "Requests.",
						  .type = DAS_METRIC_COUNTER,
						  .labels = {"route", "status"},
						  .max_series = 8};
	struct das_metric_family *f = das_metric_register(&def);
	struct das_metric_series *a, *b;
	char *text;

	(void)state;
	assert_non_null(f);
	/* Same name again: the same family. */
	assert_ptr_equal(das_metric_register(&def), f);
	a = das_metric_series2(f, "assign", "201");
	b = das_metric_series2(f, "assign", "402");
	assert_ptr_not_equal(a, b);
	assert_ptr_equal(das_metric_series2(f, "assign", "201"), a);
	das_metric_inc(a);
	das_metric_add(a, 4);
	das_metric_add(a, -3); /* a counter never goes down */
	das_metric_inc(b);
	assert_int_equal(das_metric_value(a), 5);
	assert_int_equal(das_metric_value(b), 1);
	/* Splitting values differently is another series. */
	assert_ptr_not_equal(das_metric_series2(f, "assign2", "01"),
			     das_metric_series2(f, "assign", "201"));
	text = render();
	assert_has_line(text, "# TYPE t_requests_total counter");
	assert_has_line(text, "# HELP t_requests_total Requests.");
	assert_has_line(text,
			"t_requests_total{route=\"assign\",status=\"201\"} 5");
	assert_has_line(text,
			"t_requests_total{route=\"assign\",status=\"402\"} 1");
	free(text);
}

static void gauge_goes_both_ways(void **state)
{
	static const struct das_metric_def def = {.name = "t_in_flight",
						  .help = "In flight.",
						  .type = DAS_METRIC_GAUGE,
						  .max_series = 1};
	struct das_metric_family *f = das_metric_register(&def);
	struct das_metric_series *s = das_metric_series0(f);
	char *text;

	(void)state;
	das_metric_add(s, 3);
	das_metric_add(s, -5);
	assert_int_equal(das_metric_value(s), -2);
	das_metric_set(s, 7);
	text = render();
	assert_has_line(text, "# TYPE t_in_flight gauge");
	assert_has_line(text, "t_in_flight 7");
	free(text);
}

static void histogram_buckets_are_cumulative(void **state)
{
	static const struct das_metric_def def = {
		.name = "t_seconds",
		.help = "Latency.",
		.type = DAS_METRIC_HISTOGRAM,
		.labels = {"route"},
		.buckets = das_metric_latency_buckets,
		.n_buckets = DAS_METRIC_LATENCY_BUCKETS,
		.scale = 1e9,
		.max_series = 4};
	struct das_metric_family *f = das_metric_register(&def);
	struct das_metric_series *s = das_metric_series1(f, "list");
	char *text;

	(void)state;
	das_metric_observe(s, 50 * 1000);	/* 50 us */
	das_metric_observe(s, 100 * 1000);	/* 100 us: le is inclusive */
	das_metric_observe(s, 3 * 1000 * 1000); /* 3 ms */
	das_metric_observe(s, 20000000000ull);	/* 20 s: only +Inf */
	assert_int_equal(das_metric_count(s), 4);
	text = render();
	assert_has_line(text, "# TYPE t_seconds histogram");
	assert_has_line(text,
			"t_seconds_bucket{route=\"list\",le=\"0.0001\"} 2");
	assert_has_line(text,
			"t_seconds_bucket{route=\"list\",le=\"0.0025\"} 2");
	assert_has_line(text,
			"t_seconds_bucket{route=\"list\",le=\"0.005\"} 3");
	assert_has_line(text, "t_seconds_bucket{route=\"list\",le=\"10\"} 3");
	assert_has_line(text, "t_seconds_bucket{route=\"list\",le=\"+Inf\"} 4");
	assert_has_line(text, "t_seconds_count{route=\"list\"} 4");
	assert_has_line(text, "t_seconds_sum{route=\"list\"} 20.00315");
	free(text);
}

/* The bucket of a value, as observations were placed when each was divided
 * by the scale and compared as a double. */
static unsigned bucket_by_division(const struct das_metric_def *d,
				   uint64_t value)
{
	double x = (double)value / d->scale;
	unsigned b = 0;

	while (b < d->n_buckets && x > d->buckets[b])
		b++;
	return b;
}

/* Each value in one observation: its bucket is where the division put it,
 * right at, below and above every bound, for bounds that are not exact in
 * binary and for every scale in use. */
static void observations_land_where_division_put_them(void **state)
{
	static const double odd[] = {
		0,   1e-9,  0.1,     0.2, 0.3, 1.0 / 3, 0.7,
		1.1, 2.675, 123.456, 1e3, 4e9, 9.99e9,	1.8446744e10};
	static const double counts[] = {1, 2, 4, 8, 16, 32, 64};
	static const double scales[] = {1e9, 1e3, 1, 7, 1e6};
	static const char *const names[] = {"t_odd_ns", "t_odd_us", "t_odd_1",
					    "t_odd_7", "t_odd_ms"};
	struct das_metric_def defs[] = {
		{.name = "t_lat",
		 .help = "h",
		 .type = DAS_METRIC_HISTOGRAM,
		 .buckets = das_metric_latency_buckets,
		 .n_buckets = DAS_METRIC_LATENCY_BUCKETS,
		 .scale = 1e9,
		 .max_series = 1},
		{.name = "t_batch",
		 .help = "h",
		 .type = DAS_METRIC_HISTOGRAM,
		 .buckets = counts,
		 .n_buckets = 7,
		 .scale = 1,
		 .max_series = 1},
	};
	uint64_t rng = 88172645463325252ULL;

	(void)state;
	for (unsigned k = 0; k < 2 + 5; k++) {
		struct das_metric_def d;
		if (k < 2) {
			d = defs[k];
		} else {
			d = (struct das_metric_def){
				.name = names[k - 2],
				.help = "h",
				.type = DAS_METRIC_HISTOGRAM,
				.buckets = odd,
				.n_buckets = 14,
				.scale = scales[k - 2],
				.max_series = 1};
		}
		struct das_metric_family *f = das_metric_register(&d);
		struct das_metric_series *s = das_metric_series0(f);
		assert_non_null(s);
		for (unsigned i = 0; i < d.n_buckets; i++) {
			double at = d.buckets[i] * d.scale;
			for (int delta = -3; delta <= 3; delta++) {
				double v = at + delta;
				if (v < 0 || v >= 9007199254740992.0) /* 2^53 */
					continue;
				uint64_t value = (uint64_t)v;
				unsigned want = bucket_by_division(&d, value);
				uint64_t before =
					das_metric_bucket_count(s, want);
				das_metric_observe(s, value);
				assert_int_equal(
					das_metric_bucket_count(s, want),
					before + 1);
			}
		}
		for (int i = 0; i < 20000; i++) {
			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			uint64_t value = rng >> (rng % 64);
			if (value >= (1ULL << 53))
				value >>= 11;
			unsigned want = bucket_by_division(&d, value);
			uint64_t before = das_metric_bucket_count(s, want);
			das_metric_observe(s, value);
			assert_int_equal(das_metric_bucket_count(s, want),
					 before + 1);
		}
	}
}

static void full_family_overflows_into_other(void **state)
{
	static const struct das_metric_def def = {.name = "t_by_customer_total",
						  .help = "Bounded.",
						  .type = DAS_METRIC_COUNTER,
						  .labels = {"customer"},
						  .max_series = 2};
	struct das_metric_family *f = das_metric_register(&def);
	struct das_metric_series *a, *b, *c, *d;
	char *text;

	(void)state;
	a = das_metric_series1(f, "c1");
	b = das_metric_series1(f, "c2");
	c = das_metric_series1(f, "c3");
	d = das_metric_series1(f, "c4");
	assert_ptr_not_equal(a, b);
	assert_ptr_equal(c, d); /* both in the overflow series */
	assert_ptr_equal(das_metric_series1(f, "c1"), a);
	das_metric_inc(a);
	das_metric_inc(c);
	das_metric_inc(d);
	text = render();
	assert_has_line(text, "t_by_customer_total{customer=\"c1\"} 1");
	assert_has_line(text, "t_by_customer_total{customer=\"other\"} 2");
	assert_null(strstr(text, "c3"));
	free(text);
}

static void label_values_are_escaped_and_bounded(void **state)
{
	static const struct das_metric_def def = {.name = "t_escape_total",
						  .help = "Escapes.",
						  .type = DAS_METRIC_COUNTER,
						  .labels = {"v"},
						  .max_series = 4};
	struct das_metric_family *f = das_metric_register(&def);
	char long_value[200];
	char *text;

	(void)state;
	das_metric_inc(das_metric_series1(f, "a\"b\\c\nd\xff"));
	memset(long_value, 'x', sizeof(long_value) - 1);
	long_value[sizeof(long_value) - 1] = '\0';
	das_metric_inc(das_metric_series1(f, long_value));
	/* The same long value finds the same (cut) series. */
	das_metric_inc(das_metric_series1(f, long_value));
	text = render();
	assert_has_line(text, "t_escape_total{v=\"a\\\"b\\\\c?d?\"} 1");
	char expect[128];
	snprintf(expect, sizeof(expect), "t_escape_total{v=\"%.*s\"} 2",
		 DAS_METRIC_VALUE_MAX, long_value);
	assert_has_line(text, expect);
	free(text);
}

static void bad_definitions_are_refused(void **state)
{
	static const double down[] = {1, 0.5};
	const struct das_metric_def bad_name = {
		.name = "1abc", .help = "", .max_series = 1};
	const struct das_metric_def le_label = {
		.name = "t_x", .help = "", .labels = {"le"}, .max_series = 1};
	const struct das_metric_def no_series = {
		.name = "t_y", .help = "", .max_series = 0};
	const struct das_metric_def bad_buckets = {.name = "t_z",
						   .help = "",
						   .type = DAS_METRIC_HISTOGRAM,
						   .buckets = down,
						   .n_buckets = 2,
						   .scale = 1,
						   .max_series = 1};

	(void)state;
	assert_null(das_metric_register(&bad_name));
	assert_null(das_metric_register(&le_label));
	assert_null(das_metric_register(&no_series));
	assert_null(das_metric_register(&bad_buckets));
	/* NULL families and series are no-ops. */
	das_metric_inc(das_metric_series1(NULL, "x"));
	assert_int_equal(das_metric_value(NULL), 0);
}

static void counting_off_counts_nothing(void **state)
{
	static const struct das_metric_def def = {
		.name = "t_off_total", .help = "Off.", .max_series = 1};
	struct das_metric_family *f = das_metric_register(&def);
	struct das_metric_series *s = das_metric_series0(f);
	char *text;

	(void)state;
	das_metric_inc(s);
	das_metrics_set_enabled(false);
	das_metric_inc(s);
	assert_null(das_metric_series0(f));
	text = render(); /* what was counted before stays */
	assert_has_line(text, "t_off_total 1");
	free(text);
	das_metrics_set_enabled(true);
	assert_int_equal(das_metric_value(s), 1);
}

static void process_and_build_info_are_exposed(void **state)
{
	char *text;

	(void)state;
	das_metrics_set_program("t-program", "9.9.9");
	text = render();
	assert_non_null(strstr(text, "\nprocess_cpu_seconds_total "));
	assert_non_null(strstr(text, "\nprocess_resident_memory_bytes "));
	assert_non_null(strstr(text, "\nprocess_open_fds "));
	assert_non_null(strstr(text, "\nprocess_start_time_seconds "));
	assert_has_line(text, "das_build_info{program=\"t-program\","
			      "version=\"9.9.9\"} 1");
	free(text);
}

/* ---- concurrency: exact totals with many threads and new series ---- */

#define THREADS 4
#define ROUNDS	20000

static struct das_metric_family *race_family;

static void *race(void *arg)
{
	char name[16];

	for (int i = 0; i < ROUNDS; i++) {
		/* 32 distinct tuples created concurrently by all threads. */
		snprintf(name, sizeof(name), "s%d", i % 32);
		das_metric_inc(das_metric_series1(race_family, name));
	}
	return arg;
}

static void concurrent_updates_are_exact(void **state)
{
	static const struct das_metric_def def = {.name = "t_race_total",
						  .help = "Race.",
						  .type = DAS_METRIC_COUNTER,
						  .labels = {"s"},
						  .max_series = 64};
	pthread_t t[THREADS];
	int64_t total = 0;

	(void)state;
	race_family = das_metric_register(&def);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, race, NULL), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 32; i++) {
		char name[16];
		snprintf(name, sizeof(name), "s%d", i);
		int64_t v =
			das_metric_value(das_metric_series1(race_family, name));
		assert_int_equal(v, THREADS * ROUNDS / 32);
		total += v;
	}
	assert_int_equal(total, THREADS * ROUNDS);
}

/* ---- the listener ---- */

static void http_send(unsigned port, const char *request, size_t len,
		      char *out, size_t size)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	size_t got = 0;
	ssize_t r;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(write(fd, request, len), (ssize_t)len);
	while (got + 1 < size && (r = read(fd, out + got, size - 1 - got)) > 0)
		got += (size_t)r;
	out[got] = '\0';
	close(fd);
}

static void http_get(unsigned port, const char *request, char *out, size_t size)
{
	http_send(port, request, strlen(request), out, size);
}

static void listener_answers_metrics_only(void **state)
{
	static const struct das_metric_def def = {.name = "t_served_total",
						  .help = "Served.",
						  .type = DAS_METRIC_COUNTER,
						  .max_series = 1};
	char err[256], buf[65536];
	struct das_metrics_http *m;

	(void)state;
	das_metric_add(das_metric_series0(das_metric_register(&def)), 42);
	assert_null(das_metrics_http_start("nonsense", err, sizeof(err)));
	m = das_metrics_http_start("127.0.0.1:0", err, sizeof(err));
	assert_non_null(m);
	assert_true(das_metrics_http_port(m) > 0);

	http_get(das_metrics_http_port(m),
		 "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", buf, sizeof(buf));
	assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(buf, "Content-Type: text/plain; version=0.0.4"));
	assert_non_null(strstr(buf, "\nt_served_total 42\n"));

	http_get(das_metrics_http_port(m), "GET /other HTTP/1.1\r\n\r\n", buf,
		 sizeof(buf));
	assert_non_null(strstr(buf, "HTTP/1.1 404 "));
	http_get(das_metrics_http_port(m), "POST /metrics HTTP/1.1\r\n\r\n",
		 buf, sizeof(buf));
	assert_non_null(strstr(buf, "HTTP/1.1 405 "));
	http_get(das_metrics_http_port(m), "garbage\r\n\r\n", buf, sizeof(buf));
	assert_non_null(strstr(buf, "HTTP/1.1 400 "));
	/* A NUL in the head: 400, not a head read on to its limit. */
	static const char nul[] = "GET /met\0rics HTTP/1.1\r\n\r\n";
	http_send(das_metrics_http_port(m), nul, sizeof(nul) - 1, buf,
		  sizeof(buf));
	assert_non_null(strstr(buf, "HTTP/1.1 400 "));
	/* 8 KiB of head without its end: 431, not a silent close. */
	static char long_head[8192];
	memset(long_head, 'a', sizeof(long_head));
	memcpy(long_head, "GET /metrics HTTP/1.1\r\nX: ", 27);
	http_send(das_metrics_http_port(m), long_head, sizeof(long_head), buf,
		  sizeof(buf));
	assert_non_null(strstr(buf, "HTTP/1.1 431 "));
	das_metrics_http_stop(m);
	das_metrics_http_stop(NULL);
}

/* rcvbuf > 0: that receive buffer and the MSS of a network path (536),
 * as a slow scraper elsewhere would have; with loopback's 64 KiB MSS the
 * kernel grows the server's send buffer past any exposition at once. */
static int loopback_connect(unsigned port, int rcvbuf)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	if (rcvbuf > 0) {
		int mss = 536;
		assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
					    sizeof(rcvbuf)),
				 0);
		assert_int_equal(setsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss,
					    sizeof(mss)),
				 0);
	}
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) +
	       (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/*
 * A scraper that asks for a large exposition and never reads it (a 4 KiB
 * receive window) holds only its own connection, for at most its 5 s: the
 * next scrape is answered beside it. With blocking sockets the one
 * listener thread stayed in send() until that client went away, so every
 * later scrape, and the process's shutdown (which joins the thread),
 * waited for it: the next scrape had no answer after 15 s in 3 runs of 3.
 */
static void listener_outlasts_a_client_that_does_not_read(void **state)
{
	static const struct das_metric_def def = {
		.name = "t_wide_total",
		.help = "Many series.",
		.type = DAS_METRIC_COUNTER,
		.labels = {"k"},
		.max_series = 4096};
	struct das_metric_family *f;
	char err[256], value[64], head[64];
	struct das_metrics_http *m;
	struct timeval tv = {.tv_sec = 15};
	struct timespec t0;

	(void)state;
	f = das_metric_register(&def);
	assert_non_null(f);
	for (int i = 0; i < 4096; i++) {
		snprintf(value, sizeof(value), "%055d", i);
		das_metric_add(das_metric_series1(f, value), 1);
	}
	m = das_metrics_http_start("127.0.0.1:0", err, sizeof(err));
	assert_non_null(m);
	static const char get[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
	/* ~310 KB to a client that takes none of it. */
	int slow = loopback_connect(das_metrics_http_port(m), 4096);
	assert_int_equal(write(slow, get, sizeof(get) - 1),
			 (ssize_t)(sizeof(get) - 1));
	usleep(200 * 1000);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int next = loopback_connect(das_metrics_http_port(m), 0);
	assert_int_equal(setsockopt(next, SOL_SOCKET, SO_RCVTIMEO, &tv,
				    sizeof(tv)),
			 0);
	assert_int_equal(write(next, get, sizeof(get) - 1),
			 (ssize_t)(sizeof(get) - 1));
	ssize_t n = read(next, head, sizeof(head) - 1);
	double waited = seconds_since(&t0);
	fprintf(stderr, "the next scrape waited %.2f s\n", waited);
	assert_true(n > 0);
	head[n] = '\0';
	assert_non_null(strstr(head, "HTTP/1.1 200 OK\r\n"));
	assert_true(waited < 6.0);
	close(next);
	close(slow);
	das_metrics_http_stop(m);
}

/* Opens n connections that send nothing (or, every other one, half a
 * request head) into fds. */
static void open_silent(unsigned port, int *fds, int n)
{
	static const char half[] = "GET /metr";

	for (int i = 0; i < n; i++) {
		fds[i] = loopback_connect(port, 0);
		if (i % 2)
			assert_int_equal(write(fds[i], half, sizeof(half) - 1),
					 (ssize_t)(sizeof(half) - 1));
	}
}

/* A scrape's status line, waiting up to 15 s; returns the seconds it took. */
static double scrape(unsigned port, char *head, size_t size)
{
	static const char get[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
	struct timeval tv = {.tv_sec = 15};
	struct timespec t0;
	int fd;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	fd = loopback_connect(port, 0);
	assert_int_equal(
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(write(fd, get, sizeof(get) - 1),
			 (ssize_t)(sizeof(get) - 1));
	ssize_t n = read(fd, head, size - 1);
	head[n > 0 ? n : 0] = '\0';
	close(fd);
	return seconds_since(&t0);
}

/* Starts a listener, opens n silent clients into fds, and checks that a
 * scrape beside them is answered 200 within limit_s seconds. */
static struct das_metrics_http *scrape_beside_silent(int *fds, int n,
						     double limit_s)
{
	char err[256], head[64];
	struct das_metrics_http *m;

	m = das_metrics_http_start("127.0.0.1:0", err, sizeof(err));
	assert_non_null(m);
	open_silent(das_metrics_http_port(m), fds, n);
	usleep(100 * 1000);
	double waited = scrape(das_metrics_http_port(m), head, sizeof(head));
	fprintf(stderr, "scrape beside %d silent clients: %.3f s\n", n,
		waited);
	assert_non_null(strstr(head, "HTTP/1.1 200 OK\r\n"));
	assert_true(waited < limit_s);
	return m;
}

/*
 * Clients that connect and send nothing, or half a request, delay no
 * other scrape and no shutdown: each holds only its own slot, for its own
 * 5 s. With one connection served at a time, the scrape after 15 such
 * clients waited 15 x 5 s, and stopping the listener waited for the one
 * being served.
 */
static void listener_serves_others_while_clients_are_silent(void **state)
{
	enum { SILENT = 15 };
	int fds[SILENT];
	struct timespec t0;

	(void)state;
	struct das_metrics_http *m = scrape_beside_silent(fds, SILENT, 2.0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	das_metrics_http_stop(m);
	double waited = seconds_since(&t0);
	fprintf(stderr, "stop beside %d silent clients: %.3f s\n", SILENT,
		waited);
	assert_true(waited < 1.0);
	for (int i = 0; i < SILENT; i++)
		close(fds[i]);
}

/*
 * The listener serves 16 connections at once, so memory stays bounded
 * (8 KiB of head and one exposition each). A 17th waits in the backlog
 * until a slot frees, at the latest when the oldest silent client's 5 s
 * are up, and is then answered.
 */
static void listener_at_its_connection_cap_answers_later(void **state)
{
	enum { SILENT = 16 };
	int fds[SILENT];

	(void)state;
	struct das_metrics_http *m = scrape_beside_silent(fds, SILENT, 7.0);
	for (int i = 0; i < SILENT; i++)
		close(fds[i]);
	das_metrics_http_stop(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(counter_moves_by_exact_amounts, reset),
		cmocka_unit_test_setup(gauge_goes_both_ways, reset),
		cmocka_unit_test_setup(histogram_buckets_are_cumulative, reset),
		cmocka_unit_test_setup(
			observations_land_where_division_put_them, reset),
		cmocka_unit_test_setup(full_family_overflows_into_other, reset),
		cmocka_unit_test_setup(label_values_are_escaped_and_bounded,
				       reset),
		cmocka_unit_test_setup(bad_definitions_are_refused, reset),
		cmocka_unit_test_setup(counting_off_counts_nothing, reset),
		cmocka_unit_test_setup(process_and_build_info_are_exposed,
				       reset),
		cmocka_unit_test_setup(concurrent_updates_are_exact, reset),
		cmocka_unit_test_setup(listener_answers_metrics_only, reset),
		cmocka_unit_test_setup(
			listener_outlasts_a_client_that_does_not_read, reset),
		cmocka_unit_test_setup(
			listener_serves_others_while_clients_are_silent, reset),
		cmocka_unit_test_setup(
			listener_at_its_connection_cap_answers_later, reset),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	das_metrics_reset_for_tests();
	return rc;
}
