#define _GNU_SOURCE /* accept4, memmem */
#include "metrics.h"

#include <dirent.h>
#include <errno.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hostport.h"

const double das_metric_latency_buckets[DAS_METRIC_LATENCY_BUCKETS] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
	0.05,	0.1,	 0.25,	 0.5,	1,	2.5,   5,    10};

/* Slot states of a series table: free, being filled by one thread, ready. */
enum { SLOT_FREE, SLOT_FILLING, SLOT_READY };

/*
 * The cells of a series come in SHARDS copies, each thread updating its
 * own (threads take shards in turn as they first count): the event loops
 * and workers that count on every request then do not pull one cache line
 * back and forth between cores on every update. A scrape adds the shards
 * up. The padding keeps the busy start of one shard off the cache lines
 * of the next.
 */
#define SHARDS 4

struct shard {
	atomic_llong value;				  /* counter, gauge */
	atomic_ullong sum;				  /* histogram */
	atomic_ullong counts[DAS_METRIC_BUCKETS_MAX + 1]; /* per bucket */
	char pad[64];
};

struct das_metric_series {
	atomic_int state;
	enum das_metric_type type; /* the family's, read by every update */
	struct das_metric_family *f;
	char values[DAS_METRIC_LABELS_MAX][DAS_METRIC_VALUE_MAX + 1];
	struct shard shards[SHARDS];
};

/* The calling thread's shard. */
static struct shard *own_shard(struct das_metric_series *s)
{
	static atomic_uint next_shard;
	static _Thread_local unsigned shard = SHARDS;

	if (shard == SHARDS)
		shard = atomic_fetch_add_explicit(&next_shard, 1,
						  memory_order_relaxed) %
			SHARDS;
	return &s->shards[shard];
}

/* A counter's or gauge's value: its shards added up. */
static int64_t value_of(const struct das_metric_series *s)
{
	int64_t v = 0;

	for (unsigned i = 0; i < SHARDS; i++)
		v += atomic_load_explicit(&s->shards[i].value,
					  memory_order_relaxed);
	return v;
}

/* A histogram's bucket b (not cumulative), or its sum for b = -1. */
static uint64_t cell_of(const struct das_metric_series *s, int b)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < SHARDS; i++)
		v += atomic_load_explicit(b < 0 ? &s->shards[i].sum
						: &s->shards[i].counts[b],
					  memory_order_relaxed);
	return v;
}

struct das_metric_family {
	struct das_metric_def def;
	/* Histograms: the least value (in the unit times scale) above each
	 * bound, so an observation finds its bucket with integer compares. */
	uint64_t first_above[DAS_METRIC_BUCKETS_MAX];
	unsigned n_labels;
	unsigned n_slots; /* power of two, at least twice max_series */
	atomic_uint n_series;
	struct das_metric_series *slots;
	struct das_metric_series overflow;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct das_metric_family *families[DAS_METRIC_FAMILIES_MAX];
static atomic_uint n_families;
static const char *program_name = "";
static const char *program_version = "";
static double start_time;
static atomic_bool is_counting = true;

void das_metrics_set_enabled(bool is_enabled)
{
	atomic_store(&is_counting, is_enabled);
}

/* ---- definition ---------------------------------------------------------- */

static bool name_is_valid(const char *s)
{
	if (!s || !*s || (*s >= '0' && *s <= '9'))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == ':'))
			return false;
	return true;
}

static bool def_is_valid(const struct das_metric_def *d, unsigned *n_labels)
{
	unsigned n = 0;

	if (!name_is_valid(d->name) || !d->help || d->max_series == 0 ||
	    d->max_series > 65536)
		return false;
	while (n < DAS_METRIC_LABELS_MAX && d->labels[n]) {
		if (!name_is_valid(d->labels[n]) ||
		    strcmp(d->labels[n], "le") == 0)
			return false;
		n++;
	}
	if (d->type == DAS_METRIC_HISTOGRAM) {
		if (!d->buckets || d->n_buckets == 0 ||
		    d->n_buckets > DAS_METRIC_BUCKETS_MAX || !(d->scale > 0))
			return false;
		for (unsigned i = 1; i < d->n_buckets; i++)
			if (!(d->buckets[i] > d->buckets[i - 1]))
				return false;
	}
	*n_labels = n;
	return true;
}

/*
 * The least integer v with v / scale > bound, as doubles compare them (what
 * "value in bucket le=bound" meant when observations were divided by the
 * scale): equal to that division for every v below 2^53. 0 for a negative
 * bound (every value is above it).
 */
static uint64_t first_above(double bound, double scale)
{
	double x = bound * scale;
	uint64_t v;

	if (!(x >= 0))
		return 0;
	if (x >= 1.8e19)
		return UINT64_MAX;
	v = (uint64_t)x;
	while (v > 0 && (double)(v - 1) / scale > bound)
		v--;
	while (v < UINT64_MAX && !((double)v / scale > bound))
		v++;
	return v;
}

struct das_metric_family *das_metric_register(const struct das_metric_def *def)
{
	struct das_metric_family *f = NULL;
	unsigned n_labels, n;

	if (!def || !def_is_valid(def, &n_labels))
		return NULL;
	pthread_mutex_lock(&registry_lock);
	n = atomic_load(&n_families);
	for (unsigned i = 0; i < n; i++)
		if (strcmp(families[i]->def.name, def->name) == 0) {
			f = families[i];
			goto out;
		}
	if (n >= DAS_METRIC_FAMILIES_MAX)
		goto out;
	f = calloc(1, sizeof(*f));
	if (!f)
		goto out;
	f->def = *def;
	f->n_labels = n_labels;
	if (def->type == DAS_METRIC_HISTOGRAM)
		for (unsigned i = 0; i < def->n_buckets; i++)
			f->first_above[i] =
				first_above(def->buckets[i], def->scale);
	f->n_slots = 2;
	while (f->n_slots < 2 * def->max_series)
		f->n_slots *= 2;
	f->slots = calloc(f->n_slots, sizeof(*f->slots));
	if (!f->slots) {
		free(f);
		f = NULL;
		goto out;
	}
	f->overflow.f = f;
	f->overflow.type = def->type;
	for (unsigned i = 0; i < n_labels; i++)
		snprintf(f->overflow.values[i], sizeof(f->overflow.values[i]),
			 "other");
	atomic_store(&f->overflow.state, SLOT_READY);
	families[n] = f;
	atomic_store(&n_families, n + 1);
out:
	pthread_mutex_unlock(&registry_lock);
	return f;
}

void das_metrics_reset_for_tests(void)
{
	unsigned n = atomic_load(&n_families);

	for (unsigned i = 0; i < n; i++) {
		free(families[i]->slots);
		free(families[i]);
		families[i] = NULL;
	}
	atomic_store(&n_families, 0);
}

/* ---- series lookup ---------------------------------------------------------
 */

/* A label value as kept: cut to size, bytes outside printable ASCII as '?'
 * (the exposition must be UTF-8; ours never needs more than ASCII). */
static void value_copy(char *dst, const char *src)
{
	size_t i = 0;

	for (; src && src[i] && i < DAS_METRIC_VALUE_MAX; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	dst[i] = '\0';
}

static bool values_equal(const struct das_metric_series *s, unsigned n,
			 const char *const *values)
{
	for (unsigned i = 0; i < n; i++) {
		const char *v = values[i] ? values[i] : "";
		const char *k = s->values[i];
		size_t j = 0;
		for (; j < DAS_METRIC_VALUE_MAX && v[j]; j++) {
			unsigned char c = (unsigned char)v[j];
			char kept = c >= 0x20 && c < 0x7f ? (char)c : '?';
			if (k[j] != kept)
				return false;
		}
		if (k[j] != '\0')
			return false;
	}
	return true;
}

static uint32_t values_hash(unsigned n, const char *const *values)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (unsigned i = 0; i < n; i++) {
		const char *v = values[i] ? values[i] : "";
		for (size_t j = 0; j < DAS_METRIC_VALUE_MAX && v[j]; j++) {
			unsigned char c = (unsigned char)v[j];
			h ^= c >= 0x20 && c < 0x7f ? c : '?';
			h *= 16777619u;
		}
		h ^= 0xff; /* separates ("ab","c") from ("a","bc") */
		h *= 16777619u;
	}
	return h;
}

struct das_metric_series *das_metric_series(struct das_metric_family *f,
					    const char *const *values)
{
	static const char *const none[DAS_METRIC_LABELS_MAX] = {NULL};
	uint32_t mask, i;

	if (!f || !atomic_load_explicit(&is_counting, memory_order_relaxed))
		return NULL;
	if (!values)
		values = none;
	mask = f->n_slots - 1;
	i = values_hash(f->n_labels, values) & mask;
	/* Linear probing; the table is never more than half full. */
	for (uint32_t probes = 0; probes <= mask;
	     probes++, i = (i + 1) & mask) {
		struct das_metric_series *s = &f->slots[i];
		int state =
			atomic_load_explicit(&s->state, memory_order_acquire);
		if (state == SLOT_FREE) {
			int expected = SLOT_FREE;
			if (atomic_fetch_add(&f->n_series, 1) >=
			    f->def.max_series) {
				atomic_fetch_sub(&f->n_series, 1);
				return &f->overflow;
			}
			if (!atomic_compare_exchange_strong(
				    &s->state, &expected, SLOT_FILLING)) {
				/* Another thread took this slot: look at
				 * what it puts there. */
				atomic_fetch_sub(&f->n_series, 1);
				state = expected;
			} else {
				s->f = f;
				s->type = f->def.type;
				for (unsigned k = 0; k < f->n_labels; k++)
					value_copy(s->values[k], values[k]);
				atomic_store_explicit(&s->state, SLOT_READY,
						      memory_order_release);
				return s;
			}
		}
		while (state == SLOT_FILLING)
			state = atomic_load_explicit(&s->state,
						     memory_order_acquire);
		if (values_equal(s, f->n_labels, values))
			return s;
	}
	return &f->overflow;
}

struct das_metric_series *das_metric_series0(struct das_metric_family *f)
{
	return das_metric_series(f, NULL);
}

struct das_metric_series *das_metric_series1(struct das_metric_family *f,
					     const char *v0)
{
	const char *v[DAS_METRIC_LABELS_MAX] = {v0};
	return das_metric_series(f, v);
}

struct das_metric_series *das_metric_series2(struct das_metric_family *f,
					     const char *v0, const char *v1)
{
	const char *v[DAS_METRIC_LABELS_MAX] = {v0, v1};
	return das_metric_series(f, v);
}

struct das_metric_series *das_metric_series3(struct das_metric_family *f,
					     const char *v0, const char *v1,
					     const char *v2)
{
	const char *v[DAS_METRIC_LABELS_MAX] = {v0, v1, v2};
	return das_metric_series(f, v);
}

struct das_metric_series *das_metric_series4(struct das_metric_family *f,
					     const char *v0, const char *v1,
					     const char *v2, const char *v3)
{
	const char *v[DAS_METRIC_LABELS_MAX] = {v0, v1, v2, v3};
	return das_metric_series(f, v);
}

/* ---- updates
 * ----------------------------------------------------------------- */

void das_metric_add(struct das_metric_series *s, int64_t n)
{
	if (!s || s->type == DAS_METRIC_HISTOGRAM ||
	    (n < 0 && s->type == DAS_METRIC_COUNTER) ||
	    !atomic_load_explicit(&is_counting, memory_order_relaxed))
		return;
	atomic_fetch_add_explicit(&own_shard(s)->value, n,
				  memory_order_relaxed);
}

void das_metric_set(struct das_metric_series *s, int64_t v)
{
	if (!s || !atomic_load_explicit(&is_counting, memory_order_relaxed) ||
	    s->f->def.type != DAS_METRIC_GAUGE)
		return;
	for (unsigned i = 1; i < SHARDS; i++)
		atomic_store_explicit(&s->shards[i].value, 0,
				      memory_order_relaxed);
	atomic_store_explicit(&s->shards[0].value, v, memory_order_relaxed);
}

void das_metric_observe(struct das_metric_series *s, uint64_t value)
{
	const struct das_metric_family *f;
	unsigned b = 0, n;

	if (!s || s->type != DAS_METRIC_HISTOGRAM ||
	    !atomic_load_explicit(&is_counting, memory_order_relaxed))
		return;
	f = s->f;
	n = f->def.n_buckets;
	while (b < n && value >= f->first_above[b])
		b++;
	struct shard *h = own_shard(s);
	atomic_fetch_add_explicit(&h->counts[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum, value, memory_order_relaxed);
}

int64_t das_metric_value(const struct das_metric_series *s)
{
	return s ? value_of(s) : 0;
}

uint64_t das_metric_count(const struct das_metric_series *s)
{
	uint64_t n = 0;

	if (!s || s->f->def.type != DAS_METRIC_HISTOGRAM)
		return 0;
	for (unsigned b = 0; b <= s->f->def.n_buckets; b++)
		n += cell_of(s, (int)b);
	return n;
}

uint64_t das_metric_bucket_count(const struct das_metric_series *s, unsigned b)
{
	if (!s || s->type != DAS_METRIC_HISTOGRAM || b > s->f->def.n_buckets)
		return 0;
	return cell_of(s, (int)b);
}

uint64_t das_metric_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void das_metrics_set_program(const char *program, const char *version)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	program_name = program ? program : "";
	program_version = version ? version : "";
}

/* ---- exposition
 * ---------------------------------------------------------------- */

struct out {
	char *p;
	size_t len, cap;
	bool is_oom;
};

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
out_printf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->is_oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->is_oom = true;
			return;
		}
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		size_t cap = o->cap * 2 + (size_t)n;
		char *p = realloc(o->p, cap);
		if (!p) {
			o->is_oom = true;
			return;
		}
		o->p = p;
		o->cap = cap;
	}
}

/* A label value in the exposition: backslash, quote and newline escaped. */
static void out_value(struct out *o, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			out_printf(o, "\\%c", *v);
		else if (*v == '\n')
			out_printf(o, "\\n");
		else
			out_printf(o, "%c", *v);
	}
}

/* {a="x",b="y"} or {a="x",le="0.5"} or nothing. */
static void out_labels(struct out *o, const struct das_metric_series *s,
		       const char *le)
{
	const struct das_metric_family *f = s->f;

	if (f->n_labels == 0 && !le)
		return;
	out_printf(o, "{");
	for (unsigned i = 0; i < f->n_labels; i++) {
		out_printf(o, "%s%s=\"", i ? "," : "", f->def.labels[i]);
		out_value(o, s->values[i]);
		out_printf(o, "\"");
	}
	if (le)
		out_printf(o, "%sle=\"%s\"", f->n_labels ? "," : "", le);
	out_printf(o, "}");
}

static void out_series(struct out *o, const struct das_metric_series *s)
{
	const struct das_metric_def *d = &s->f->def;
	uint64_t cum = 0;
	char le[32];

	if (d->type != DAS_METRIC_HISTOGRAM) {
		out_printf(o, "%s", d->name);
		out_labels(o, s, NULL);
		out_printf(o, " %lld\n", (long long)value_of(s));
		return;
	}
	for (unsigned b = 0; b <= d->n_buckets; b++) {
		cum += cell_of(s, (int)b);
		if (b < d->n_buckets)
			snprintf(le, sizeof(le), "%g", d->buckets[b]);
		else
			snprintf(le, sizeof(le), "+Inf");
		out_printf(o, "%s_bucket", d->name);
		out_labels(o, s, le);
		out_printf(o, " %llu\n", (unsigned long long)cum);
	}
	out_printf(o, "%s_sum", d->name);
	out_labels(o, s, NULL);
	out_printf(o, " %.9g\n",
		   (double)cell_of(s, -1) / d->scale);
	out_printf(o, "%s_count", d->name);
	out_labels(o, s, NULL);
	out_printf(o, " %llu\n", (unsigned long long)cum);
}

static void out_family(struct out *o, const struct das_metric_family *f)
{
	static const char *const types[] = {"counter", "gauge", "histogram"};
	bool is_overflow_used = false;
	unsigned shown = 0;

	out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", f->def.name, f->def.help,
		   f->def.name, types[f->def.type]);
	for (unsigned i = 0; i < f->n_slots; i++) {
		const struct das_metric_series *s = &f->slots[i];
		if (atomic_load_explicit(&s->state, memory_order_acquire) !=
		    SLOT_READY)
			continue;
		out_series(o, s);
		shown++;
	}
	is_overflow_used = value_of(&f->overflow) ||
			   das_metric_count(&f->overflow) > 0;
	if (is_overflow_used)
		out_series(o, &f->overflow);
	/* A family without labels shows its one series even at zero. */
	if (shown == 0 && !is_overflow_used && f->n_labels == 0) {
		struct das_metric_family *mf = (struct das_metric_family *)f;
		struct das_metric_series *s = das_metric_series0(mf);
		if (s) /* NULL while counting is off */
			out_series(o, s);
	}
}

static long count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

static void out_process(struct out *o)
{
	struct rusage ru;
	struct rlimit rl;
	unsigned long vm_pages = 0, rss_pages = 0;
	long page = sysconf(_SC_PAGESIZE);
	FILE *statm = fopen("/proc/self/statm", "r");
	long fds = count_open_fds();

	if (statm) {
		if (fscanf(statm, "%lu %lu", &vm_pages, &rss_pages) != 2)
			vm_pages = rss_pages = 0;
		fclose(statm);
	}
	getrusage(RUSAGE_SELF, &ru);
	out_printf(o,
		   "# HELP process_cpu_seconds_total Total user and system CPU "
		   "time spent in seconds.\n"
		   "# TYPE process_cpu_seconds_total counter\n"
		   "process_cpu_seconds_total %.6f\n",
		   (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
			   (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) /
				   1e6);
	out_printf(o,
		   "# HELP process_resident_memory_bytes Resident memory size "
		   "in bytes.\n"
		   "# TYPE process_resident_memory_bytes gauge\n"
		   "process_resident_memory_bytes %lu\n"
		   "# HELP process_virtual_memory_bytes Virtual memory size in "
		   "bytes.\n"
		   "# TYPE process_virtual_memory_bytes gauge\n"
		   "process_virtual_memory_bytes %lu\n",
		   rss_pages * (unsigned long)page,
		   vm_pages * (unsigned long)page);
	if (fds >= 0)
		out_printf(o,
			   "# HELP process_open_fds Number of open file "
			   "descriptors.\n"
			   "# TYPE process_open_fds gauge\n"
			   "process_open_fds %ld\n",
			   fds);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		out_printf(o,
			   "# HELP process_max_fds Maximum number of open file "
			   "descriptors.\n"
			   "# TYPE process_max_fds gauge\n"
			   "process_max_fds %llu\n",
			   (unsigned long long)rl.rlim_cur);
	out_printf(
		o,
		"# HELP process_start_time_seconds Start time of the process "
		"since unix epoch in seconds.\n"
		"# TYPE process_start_time_seconds gauge\n"
		"process_start_time_seconds %.3f\n",
		start_time);
	out_printf(o,
		   "# HELP das_build_info The program and its version; always "
		   "1.\n"
		   "# TYPE das_build_info gauge\n"
		   "das_build_info{program=\"");
	out_value(o, program_name);
	out_printf(o, "\",version=\"");
	out_value(o, program_version);
	out_printf(o, "\"} 1\n");
}

char *das_metrics_render(size_t *len)
{
	struct out o = {NULL, 0, 16384, false};
	unsigned n = atomic_load(&n_families);

	o.p = malloc(o.cap);
	if (!o.p)
		return NULL;
	o.p[0] = '\0';
	for (unsigned i = 0; i < n; i++)
		out_family(&o, families[i]);
	out_process(&o);
	if (o.is_oom) {
		free(o.p);
		return NULL;
	}
	*len = o.len;
	return o.p;
}

/* ---- the small HTTP listener
 * ---------------------------------------------------- */

#define HEAD_MAX      (8 * 1024)
#define IO_TIMEOUT_MS 5000
/* Connections served at once; more wait in the listen backlog. */
#define CONNS_MAX 16

/*
 * One connection: first its request head is read (up to HEAD_MAX), then
 * its whole answer is sent, all within IO_TIMEOUT_MS of its accept.
 */
struct conn {
	int fd; /* -1: a free slot */
	uint64_t deadline_ns;
	size_t len;	/* bytes of head read */
	char *out;	/* the answer once the head is read, else NULL */
	size_t out_len; /* its size */
	size_t sent;	/* bytes of it sent */
	char head[HEAD_MAX + 1];
};

struct das_metrics_http {
	int fd;
	int wake[2]; /* a byte on wake[1] stops the thread */
	unsigned port;
	pthread_t thread;
	struct conn conns[CONNS_MAX];
};

static int64_t ms_left(uint64_t deadline_ns)
{
	uint64_t now = das_metric_now_ns();
	return now >= deadline_ns ? 0
				  : (int64_t)((deadline_ns - now) / 1000000);
}

/* The whole answer in one buffer; NULL when out of memory. */
static char *answer(int status, const char *reason, const char *type,
		    const char *body, size_t body_len, bool is_head,
		    size_t *out_len)
{
	char head[256];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
			 status, reason, type, body_len);
	size_t sent_body = is_head ? 0 : body_len;
	char *out = malloc((size_t)n + sent_body);

	if (!out)
		return NULL;
	memcpy(out, head, (size_t)n);
	if (sent_body)
		memcpy(out + n, body, sent_body);
	*out_len = (size_t)n + sent_body;
	return out;
}

/* The answer to a complete request head (NUL-terminated, end at its blank
 * line); NULL when out of memory. */
static char *answer_head(char *buf, const char *end, size_t *out_len)
{
	static const char not_found[] = "not found; try /metrics\n";
	static const char bad[] = "bad request\n";
	static const char not_allowed[] = "method not allowed\n";
	char *sp1, *sp2;
	bool is_head;

	/* "METHOD SP TARGET SP HTTP/1.x" */
	sp1 = memchr(buf, ' ', (size_t)(end - buf));
	sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1)) : NULL;
	if (!sp1 || !sp2 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0)
		return answer(400, "Bad Request", "text/plain", bad,
			      sizeof(bad) - 1, false, out_len);
	*sp1 = *sp2 = '\0';
	is_head = strcmp(buf, "HEAD") == 0;
	sp1[1 + strcspn(sp1 + 1, "?")] = '\0';
	if (strcmp(sp1 + 1, "/metrics") != 0)
		return answer(404, "Not Found", "text/plain", not_found,
			      sizeof(not_found) - 1, is_head, out_len);
	if (!is_head && strcmp(buf, "GET") != 0)
		return answer(405, "Method Not Allowed", "text/plain",
			      not_allowed, sizeof(not_allowed) - 1, false,
			      out_len);
	size_t n = 0;
	char *text = das_metrics_render(&n);
	if (!text)
		return answer(500, "Internal Server Error", "text/plain", "", 0,
			      is_head, out_len);
	char *out = answer(200, "OK", DAS_METRICS_CONTENT_TYPE, text, n,
			   is_head, out_len);
	free(text);
	return out;
}

static void conn_close(struct conn *c)
{
	/* Half-close, then drop what the client still sends. */
	shutdown(c->fd, SHUT_WR);
	close(c->fd);
	free(c->out);
	c->fd = -1;
	c->out = NULL;
}

/* Sends what the socket takes; false when the connection is done. */
static bool conn_send(struct conn *c)
{
	while (c->sent < c->out_len) {
		ssize_t w = send(c->fd, c->out + c->sent, c->out_len - c->sent,
				 MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return true;
		if (w <= 0)
			return false;
		c->sent += (size_t)w;
	}
	return false;
}

/* Reads what has come; once the head is whole, starts its answer. False
 * when the connection is done. */
static bool conn_read(struct conn *c)
{
	char *end = NULL;

	while (c->len < HEAD_MAX) {
		ssize_t r = recv(c->fd, c->head + c->len, HEAD_MAX - c->len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			return true;
		if (r <= 0)
			return false;
		c->len += (size_t)r;
		c->head[c->len] = '\0';
		end = memmem(c->head, c->len, "\r\n\r\n", 4);
		if (!end)
			end = memmem(c->head, c->len, "\n\n", 2);
		if (end)
			break;
	}
	if (end && memchr(c->head, '\0', (size_t)(end - c->head)))
		c->out = answer(400, "Bad Request", "text/plain", "", 0, false,
				&c->out_len);
	else if (end)
		c->out = answer_head(c->head, end, &c->out_len);
	else
		c->out = answer(431, "Request Header Fields Too Large",
				"text/plain", "", 0, false, &c->out_len);
	return c->out && conn_send(c);
}

static void conn_accept(struct das_metrics_http *m, struct conn *c)
{
	/* Non-blocking: a client that stops reading, or never sends its
	 * request, holds its slot until its deadline and no one else. */
	int fd = accept4(m->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0) {
		/* Out of descriptors or memory: the listener stays
		 * readable, so wait a moment instead of spinning. */
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
		    errno == ENOMEM)
			poll(NULL, 0, 100);
		return;
	}
	c->fd = fd;
	c->deadline_ns = das_metric_now_ns() + IO_TIMEOUT_MS * 1000000ull;
	c->len = c->out_len = c->sent = 0;
	c->out = NULL;
}

/*
 * One thread serves up to CONNS_MAX connections at once, each within its
 * own deadline, so a client that is slow or silent delays nobody else.
 */
static void *http_main(void *arg)
{
	struct das_metrics_http *m = arg;
	struct pollfd pfd[2 + CONNS_MAX];
	struct conn *polled[CONNS_MAX];

	for (;;) {
		struct conn *free_slot = NULL;
		int64_t timeout = -1;
		nfds_t n = 2;

		pfd[0] = (struct pollfd){m->wake[0], POLLIN, 0};
		for (int i = 0; i < CONNS_MAX; i++) {
			struct conn *c = &m->conns[i];
			if (c->fd < 0) {
				free_slot = free_slot ? free_slot : c;
				continue;
			}
			int64_t left = ms_left(c->deadline_ns);
			if (left <= 0) {
				conn_close(c);
				free_slot = free_slot ? free_slot : c;
				continue;
			}
			if (timeout < 0 || left < timeout)
				timeout = left;
			polled[n - 2] = c;
			pfd[n++] = (struct pollfd){
				c->fd, c->out ? POLLOUT : POLLIN, 0};
		}
		/* With every slot taken, new connections wait in the
		 * backlog. */
		pfd[1] = (struct pollfd){free_slot ? m->fd : -1, POLLIN, 0};
		if (poll(pfd, n, (int)timeout) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[0].revents)
			break;
		for (nfds_t i = 2; i < n; i++) {
			struct conn *c = polled[i - 2];
			if (!pfd[i].revents)
				continue;
			if (!(c->out ? conn_send(c) : conn_read(c)))
				conn_close(c);
		}
		if (free_slot && (pfd[1].revents & POLLIN))
			conn_accept(m, free_slot);
	}
	for (int i = 0; i < CONNS_MAX; i++)
		if (m->conns[i].fd >= 0)
			conn_close(&m->conns[i]);
	return NULL;
}

struct das_metrics_http *das_metrics_http_start(const char *addr, char *err,
						size_t err_size)
{
	struct das_metrics_http *m = calloc(1, sizeof(*m));
	struct addrinfo *res = NULL;
	struct sockaddr_storage ss;
	socklen_t sl;
	int one = 1;

	if (!m) {
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	m->fd = m->wake[0] = m->wake[1] = -1;
	for (int i = 0; i < CONNS_MAX; i++)
		m->conns[i].fd = -1;
	if (das_hostport_resolve(addr, "", &res, err, err_size) != 0)
		goto fail;
	memcpy(&ss, res->ai_addr, res->ai_addrlen);
	sl = res->ai_addrlen;
	freeaddrinfo(res);
	m->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (m->fd < 0 ||
	    setsockopt(m->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(m->fd, (struct sockaddr *)&ss, sl) != 0 ||
	    listen(m->fd, 16) != 0) {
		snprintf(err, err_size, "cannot listen on %s: %s", addr,
			 strerror(errno));
		goto fail;
	}
	sl = sizeof(ss);
	getsockname(m->fd, (struct sockaddr *)&ss, &sl);
	m->port = ntohs(ss.ss_family == AF_INET6
				? ((struct sockaddr_in6 *)&ss)->sin6_port
				: ((struct sockaddr_in *)&ss)->sin_port);
	if (pipe(m->wake) != 0 ||
	    pthread_create(&m->thread, NULL, http_main, m) != 0) {
		snprintf(err, err_size, "cannot start the metrics listener");
		goto fail;
	}
	return m;
fail:
	if (m->fd >= 0)
		close(m->fd);
	if (m->wake[0] >= 0) {
		close(m->wake[0]);
		close(m->wake[1]);
	}
	free(m);
	return NULL;
}

unsigned das_metrics_http_port(const struct das_metrics_http *m)
{
	return m->port;
}

void das_metrics_http_stop(struct das_metrics_http *m)
{
	char b = 1;

	if (!m)
		return;
	while (write(m->wake[1], &b, 1) < 0 && errno == EINTR)
		;
	pthread_join(m->thread, NULL);
	close(m->fd);
	close(m->wake[0]);
	close(m->wake[1]);
	free(m);
}
