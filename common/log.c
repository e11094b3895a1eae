#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "logfmt.h"
#include "timefmt.h"

/* The longest method, route, gRPC code and reason written: they come from
 * our tables (the gateway's method is a token the parser bounds); a longer
 * one is cut and marked like a long path. */
#define NAME_MAX_BYTES 64
#define SUB_MAX_BYTES  256
/* The longest program name in JSON lines. */
#define PROGRAM_MAX_BYTES 64
/* The longest printf message. */
#define MSG_MAX_BYTES 1024

/*
 * The longest line: every string of an access line at its bound and
 * escaped at its worst (6 bytes a byte), plus the fixed parts (the time,
 * level and program part, field names, numbers, under 1 KiB with the
 * escapers' slack). Lines are written into a buffer with this much room,
 * so formatting checks no room as it goes.
 */
#define LINE_MAX_BYTES                                            \
	(6 * (DAS_LOG_PATH_MAX + DAS_LOG_ID_MAX + SUB_MAX_BYTES + \
	      4 * NAME_MAX_BYTES) +                               \
	 1024)
/* A thread's buffer: a few hundred access lines. It is written by its
 * owner once less than LINE_MAX_BYTES is left, so it holds the lines of a
 * flusher's tick (DAS_LOG_BATCH_MS) of a busy thread: ~100 KiB room for
 * ~350 lines of ~290 bytes, 35 k lines a second per thread. */
#define THREAD_BUFFER_BYTES (128 * 1024)

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static atomic_int min_level = DAS_LOG_INFO;
static atomic_int format = DAS_LOG_TEXT;
static const char *program = "";
static atomic_bool is_buffered;
/* What follows the time in a JSON line of each level, the program's name
 * escaped once: "\",\"level\":\"info\",\"program\":\"NAME\"". */
#define TAIL_SIZE (6 * PROGRAM_MAX_BYTES + 48)
#define TAIL(lv)  "\",\"level\":\"" lv "\",\"program\":\"\""
static char json_tail[4][TAIL_SIZE] = {TAIL("debug"), TAIL("info"),
				       TAIL("warn"), TAIL("error")};
static size_t json_tail_len[4] = {
	sizeof(TAIL("debug")) - 1, sizeof(TAIL("info")) - 1,
	sizeof(TAIL("warn")) - 1, sizeof(TAIL("error")) - 1};
#undef TAIL

/* Every write to fd 2 goes through here, whole, one writer at a time: a
 * batch of lines longer than PIPE_BUF is never interleaved with another
 * thread's in a pipe. */
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

struct thread_buffer {
	char *data; /* THREAD_BUFFER_BYTES; the flusher swaps it for another */
	size_t len;
	uint64_t first_ms; /* when its oldest line came (monotonic; loop) */
	/* Written by the flusher thread, not by the owner's loop: then
	 * is_busy is held while the owner formats a line in data or the
	 * flusher takes data away, and next links the flusher's list. */
	bool is_background;
	atomic_bool is_busy;
	struct thread_buffer *next;
};

/* The calling thread's buffer, when it asked for one. Only that thread
 * reads or writes it, but for the flusher under is_busy. */
static _Thread_local struct thread_buffer *own_buffer;
static pthread_key_t buffer_key; /* its destructor writes and frees it */
static pthread_once_t buffer_once = PTHREAD_ONCE_INIT;

/*
 * The flusher: one thread that writes the background buffers every
 * DAS_LOG_BATCH_MS (flusher_main). Locks are taken in the order
 * flusher_lock, write_lock, is_busy.
 */
static pthread_mutex_t flusher_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t flusher_wake = PTHREAD_COND_INITIALIZER;
static struct thread_buffer *background; /* under flusher_lock */
static char *flusher_spare;		 /* the flusher's own data buffer */
static atomic_bool is_flusher_idle;
static pthread_once_t flusher_once = PTHREAD_ONCE_INIT;
static bool is_flusher_running;

void das_log_set_level(enum das_log_level level)
{
	atomic_store(&min_level, level);
}

void das_log_set_format(enum das_log_format f)
{
	atomic_store(&format, f);
}

/* Appends the string literal lit at p. */
#define PUT_LIT(p, lit) \
	(memcpy((p), (lit), sizeof(lit) - 1), (p) + sizeof(lit) - 1)

void das_log_set_program(const char *name)
{
	char tail[TAIL_SIZE + DAS_LOGFMT_SLACK];

	program = name ? name : "";
	for (int lv = 0; lv < 4; lv++) {
		char *p = PUT_LIT(tail, "\",\"level\":\"");
		size_t n = strlen(level_names[lv]);
		memcpy(p, level_names[lv], n);
		p = PUT_LIT(p + n, "\",\"program\":\"");
		p = das_logfmt_json(p, program,
				    strnlen(program, PROGRAM_MAX_BYTES));
		p = PUT_LIT(p, "\"");
		json_tail_len[lv] = (size_t)(p - tail);
		memcpy(json_tail[lv], tail, json_tail_len[lv]);
	}
}

int das_log_parse_format(const char *name, enum das_log_format *out)
{
	if (name && strcmp(name, "text") == 0)
		*out = DAS_LOG_TEXT;
	else if (name && strcmp(name, "json") == 0)
		*out = DAS_LOG_JSON;
	else
		return -1;
	return 0;
}

bool das_log_is_enabled(enum das_log_level level)
{
	return (int)level >= atomic_load(&min_level);
}

/* Writes n bytes to fd 2, all of them unless it fails; write_lock held. */
static void write_all(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break; /* nowhere to log to: the lines are dropped */
		p += w;
		n -= (size_t)w;
	}
}

static void write_out(const char *p, size_t n)
{
	pthread_mutex_lock(&write_lock);
	write_all(p, n);
	pthread_mutex_unlock(&write_lock);
}

static uint64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Held for a few instructions at a time (a line's formatting, a swap):
 * a waiter gives its CPU away rather than spin. */
static void busy_take(struct thread_buffer *b)
{
	while (atomic_exchange_explicit(&b->is_busy, true,
					memory_order_acquire))
		sched_yield();
}

static void busy_drop(struct thread_buffer *b)
{
	atomic_store_explicit(&b->is_busy, false, memory_order_release);
}

/* Writes what b holds; b is the calling thread's own buffer. */
static void buffer_flush(struct thread_buffer *b)
{
	if (!b->is_background) {
		if (b->len) {
			write_out(b->data, b->len);
			b->len = 0;
		}
		return;
	}
	pthread_mutex_lock(&write_lock); /* after the flusher's write */
	busy_take(b);
	if (b->len) {
		write_all(b->data, b->len);
		b->len = 0;
	}
	busy_drop(b);
	pthread_mutex_unlock(&write_lock);
}

static void buffer_release(void *arg)
{
	struct thread_buffer *b = arg;

	if (b->is_background) {
		pthread_mutex_lock(&flusher_lock);
		for (struct thread_buffer **at = &background; *at;
		     at = &(*at)->next)
			if (*at == b) {
				*at = b->next;
				break;
			}
		pthread_mutex_unlock(&flusher_lock);
	}
	buffer_flush(b); /* the flusher no longer sees it */
	own_buffer = NULL;
	free(b->data);
	free(b);
}

static void buffer_key_init(void)
{
	pthread_key_create(&buffer_key, buffer_release);
}

/* True when some background buffer holds lines; flusher_lock held. */
static bool background_pending(void)
{
	bool is_pending = false;

	for (struct thread_buffer *b = background; b && !is_pending;
	     b = b->next) {
		busy_take(b);
		is_pending = b->len > 0;
		busy_drop(b);
	}
	return is_pending;
}

/* Writes every background buffer that holds lines, in one turn of
 * write_lock; false when none did. flusher_lock held. */
static bool background_flush(void)
{
	bool is_locked = false;

	for (struct thread_buffer *b = background; b; b = b->next) {
		char *full;
		size_t n;
		busy_take(b);
		n = b->len;
		busy_drop(b);
		if (n == 0)
			continue;
		if (!is_locked) {
			pthread_mutex_lock(&write_lock);
			is_locked = true;
		}
		/* Its data is handed over whole, the owner gets the spare,
		 * and is held only for that. */
		busy_take(b);
		full = b->data;
		n = b->len;
		b->data = flusher_spare;
		b->len = 0;
		busy_drop(b);
		flusher_spare = full;
		write_all(full, n);
	}
	if (is_locked)
		pthread_mutex_unlock(&write_lock);
	return is_locked;
}

/* Ticks with nothing to write before the flusher sleeps until a line. */
#define FLUSHER_IDLE_TICKS 10

/*
 * Every DAS_LOG_BATCH_MS the flusher writes what the background buffers
 * hold: a line waits at most that long, and a busy server makes one
 * write(2) per worker and tick, whatever its rate. After
 * FLUSHER_IDLE_TICKS ticks with nothing to write it sleeps until an
 * owner's first line wakes it (only then: is_flusher_idle).
 */
static void *flusher_main(void *arg)
{
	unsigned idle_ticks = 0;
	sigset_t all;

	(void)arg;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_mutex_lock(&flusher_lock);
	for (;;) {
		struct timespec tick = {0, DAS_LOG_BATCH_MS * 1000000L};
		/* A plain sleep: cheaper than a timed wait on the condition
		 * variable, which only the idle flusher needs. */
		pthread_mutex_unlock(&flusher_lock);
		while (clock_nanosleep(CLOCK_MONOTONIC, 0, &tick, &tick) ==
		       EINTR)
			;
		pthread_mutex_lock(&flusher_lock);
		if (background_flush()) {
			idle_ticks = 0;
			continue;
		}
		if (++idle_ticks < FLUSHER_IDLE_TICKS)
			continue;
		/* A line that came after the flush above is seen below, or
		 * its owner sees is_flusher_idle (both sides store, then
		 * load, with a full barrier between). */
		atomic_store(&is_flusher_idle, true);
		if (!background_pending())
			pthread_cond_wait(&flusher_wake, &flusher_lock);
		atomic_store(&is_flusher_idle, false);
		idle_ticks = 0;
	}
	return NULL;
}

static void flusher_start(void)
{
	pthread_attr_t attr;
	pthread_t t;

	flusher_spare = malloc(THREAD_BUFFER_BYTES);
	if (!flusher_spare)
		return;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	is_flusher_running = pthread_create(&t, &attr, flusher_main, NULL) == 0;
	pthread_attr_destroy(&attr);
}

void das_log_set_buffered(bool on)
{
	atomic_store(&is_buffered, on);
	if (!on)
		das_log_thread_flush();
}

/* The calling thread's buffer, written by its loop or by the flusher. */
static void thread_buffer(bool is_background)
{
	struct thread_buffer *b;

	if (own_buffer || !atomic_load(&is_buffered))
		return;
	pthread_once(&buffer_once, buffer_key_init);
	if (is_background) {
		pthread_once(&flusher_once, flusher_start);
		if (!is_flusher_running)
			return; /* lines are then written one by one */
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		return;
	b->data = malloc(THREAD_BUFFER_BYTES);
	if (!b->data || pthread_setspecific(buffer_key, b) != 0) {
		free(b->data);
		free(b);
		return;
	}
	b->is_background = is_background;
	if (is_background) {
		pthread_mutex_lock(&flusher_lock);
		b->next = background;
		background = b;
		pthread_mutex_unlock(&flusher_lock);
	}
	own_buffer = b;
}

void das_log_thread_buffer(void)
{
	thread_buffer(false);
}

void das_log_thread_buffer_background(void)
{
	thread_buffer(true);
}

bool das_log_thread_pending(void)
{
	struct thread_buffer *b = own_buffer;
	bool is_pending;

	if (!b)
		return false;
	if (!b->is_background)
		return b->len > 0;
	busy_take(b);
	is_pending = b->len > 0;
	busy_drop(b);
	return is_pending;
}

int das_log_thread_due_ms(void)
{
	struct thread_buffer *b = own_buffer;
	uint64_t age;

	if (!b || b->is_background || b->len == 0)
		return -1; /* the flusher's, or none */
	age = monotonic_ms() - b->first_ms;
	return age >= DAS_LOG_BATCH_MS ? 0 : (int)(DAS_LOG_BATCH_MS - age);
}

void das_log_thread_flush(void)
{
	if (own_buffer)
		buffer_flush(own_buffer);
}

void das_log_flush(void)
{
	das_log_thread_flush();
}

/* ---- lines ---- */

/*
 * Where the next line is formatted: at the end of the thread's buffer when
 * it has one (written first if a longest line might not fit; a background
 * buffer is held busy until write_line), else in the thread's scratch
 * line. write_line then keeps or writes it.
 */
static char *line_start(bool *is_in_buffer)
{
	static _Thread_local char scratch[LINE_MAX_BYTES];
	struct thread_buffer *b = own_buffer;

	*is_in_buffer =
		b && atomic_load_explicit(&is_buffered, memory_order_relaxed);
	if (!*is_in_buffer)
		return scratch;
	if (b->is_background)
		busy_take(b);
	if (THREAD_BUFFER_BYTES - b->len < LINE_MAX_BYTES) {
		if (b->is_background)
			busy_drop(b);
		buffer_flush(b);
		if (b->is_background)
			busy_take(b);
	}
	return b->data + b->len;
}

/*
 * The line from start to end (its newline not yet written) stays in the
 * thread's buffer when it was formatted there (written when due, when the
 * buffer is full, at a warn or error line and when the thread ends); any
 * other goes straight to fd 2.
 */
static void write_line(char *start, char *end, bool is_in_buffer,
		       enum das_log_level level)
{
	struct thread_buffer *b = own_buffer;
	bool is_first;

	*end++ = '\n'; /* LINE_MAX_BYTES keeps room for it */
	if (!is_in_buffer) {
		das_log_thread_flush(); /* in order */
		write_out(start, (size_t)(end - start));
		return;
	}
	is_first = b->len == 0;
	b->len += (size_t)(end - start);
	if (!b->is_background) {
		if (is_first)
			b->first_ms = monotonic_ms();
		if (level >= DAS_LOG_WARN)
			buffer_flush(b);
		return;
	}
	busy_drop(b);
	if (level >= DAS_LOG_WARN) {
		buffer_flush(b);
	} else if (is_first) {
		/* The flusher may be asleep with nothing to wait for. */
		atomic_thread_fence(memory_order_seq_cst);
		if (atomic_load_explicit(&is_flusher_idle,
					 memory_order_relaxed)) {
			pthread_mutex_lock(&flusher_lock);
			pthread_cond_signal(&flusher_wake);
			pthread_mutex_unlock(&flusher_lock);
		}
	}
}

/* {"time":"...","level":"LEVEL","program":"NAME" */
static char *begin_json(char *p, enum das_log_level lv)
{
	p = PUT_LIT(p, "{\"time\":\"");
	p = das_logfmt_timestamp(p, das_time_now());
	memcpy(p, json_tail[lv], json_tail_len[lv]);
	return p + json_tail_len[lv];
}

bool das_log_limit_take(struct das_log_limit *l, int every_ms,
			unsigned *n_held)
{
	struct timespec ts;
	long long now, last;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 1;
	last = atomic_load(&l->last_ms);
	if ((last != 0 && now - last < every_ms) ||
	    !atomic_compare_exchange_strong(&l->last_ms, &last, now)) {
		atomic_fetch_add(&l->n_held, 1);
		return false;
	}
	*n_held = atomic_exchange(&l->n_held, 0);
	return true;
}

void das_log(enum das_log_level level, const char *fmt, ...)
{
	char msg[MSG_MAX_BYTES], *start, *p;
	bool is_in_buffer;
	va_list ap;
	int n;

	if (!das_log_is_enabled(level))
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	start = p = line_start(&is_in_buffer);
	if (atomic_load(&format) == DAS_LOG_JSON) {
		p = begin_json(p, level);
		p = PUT_LIT(p, ",\"msg\":\"");
		p = das_logfmt_json(p, msg, (size_t)n);
		p = PUT_LIT(p, "\"}");
	} else {
		size_t ln = strlen(level_names[level]);
		p = das_logfmt_timestamp(p, das_time_now());
		*p++ = ' ';
		memcpy(p, level_names[level], ln);
		p += ln;
		*p++ = ' ';
		memcpy(p, msg, (size_t)n);
		p += n;
	}
	write_line(start, p, is_in_buffer, level);
}

/* The length of s, at most max; *is_cut when s is longer. Most of these
 * are a few bytes long: they are counted here before strnlen is asked. */
static size_t bounded_len(const char *s, size_t max, bool *is_cut)
{
	size_t n = 0;

	while (n < 8 && s[n])
		n++;
	if (n < 8)
		return n;
	n = strnlen(s, max + 1);
	if (n > max) {
		*is_cut = true;
		return max;
	}
	return n;
}

/* The lengths of an access line's strings, each bounded. */
struct call_lens {
	size_t path, id, sub, method, route, code, reason;
	bool is_cut; /* a string was cut to its bound */
};

static size_t bounded_n(size_t n, size_t max, bool *is_cut)
{
	if (n <= max)
		return n;
	*is_cut = true;
	return max;
}

/* Every string is bounded here; LINE_MAX_BYTES holds them all. */
static void call_lens_of(const struct das_log_call *c, struct call_lens *l)
{
	memset(l, 0, sizeof(*l));
	l->is_cut = c->is_path_cut;
	if (c->path)
		l->path = bounded_n(c->path_len, DAS_LOG_PATH_MAX, &l->is_cut);
	if (c->request_id)
		l->id = bounded_n(c->request_id_len, DAS_LOG_ID_MAX,
				  &l->is_cut);
	if (c->sub)
		l->sub = bounded_n(c->sub_len, SUB_MAX_BYTES, &l->is_cut);
	if (c->method)
		l->method = bounded_len(c->method, NAME_MAX_BYTES, &l->is_cut);
	if (c->route)
		l->route = bounded_len(c->route, NAME_MAX_BYTES, &l->is_cut);
	if (c->code)
		l->code = bounded_len(c->code, NAME_MAX_BYTES, &l->is_cut);
	if (c->reason)
		l->reason = bounded_len(c->reason, NAME_MAX_BYTES, &l->is_cut);
}

static char *json_field(char *p, const char *name, size_t name_len,
			const char *s, size_t n)
{
	*p++ = ',';
	*p++ = '"';
	memcpy(p, name, name_len);
	p += name_len;
	p = PUT_LIT(p, "\":\"");
	p = das_logfmt_json(p, s, n);
	*p++ = '"';
	return p;
}
#define JSON_FIELD(p, name, s, n) json_field((p), name, sizeof(name) - 1, (s), (n))

/* The access line's fields as one JSON object (after begin_json). */
static char *call_json(char *p, const struct das_log_call *c,
		       const struct call_lens *l)
{
	if (c->request_id)
		p = JSON_FIELD(p, "request_id", c->request_id, l->id);
	if (c->method)
		p = JSON_FIELD(p, "method", c->method, l->method);
	if (c->route)
		p = JSON_FIELD(p, "route", c->route, l->route);
	if (c->path)
		p = JSON_FIELD(p, "path", c->path, l->path);
	if (c->http_status > 0) {
		p = PUT_LIT(p, ",\"status\":");
		p = das_logfmt_uint(p, (uint64_t)c->http_status);
	}
	if (c->code)
		p = JSON_FIELD(p, "code", c->code, l->code);
	if (l->reason)
		p = JSON_FIELD(p, "reason", c->reason, l->reason);
	p = PUT_LIT(p, ",\"duration_ms\":");
	p = das_logfmt_ms(p, c->duration_ms);
	if (c->sub)
		p = JSON_FIELD(p, "sub", c->sub, l->sub);
	if (c->is_aborted)
		p = PUT_LIT(p, ",\"aborted\":true");
	if (l->is_cut)
		p = PUT_LIT(p, ",\"truncated\":true");
	*p++ = '}';
	return p;
}
#undef JSON_FIELD

static char *text_field(char *p, const char *name, size_t name_len,
			const char *s, size_t n)
{
	*p++ = ' ';
	memcpy(p, name, name_len);
	p += name_len;
	*p++ = '=';
	return das_logfmt_text(p, s, n);
}
#define TEXT_FIELD(p, name, s, n) text_field((p), name, sizeof(name) - 1, (s), (n))

/* The access line's fields as text (after the timestamp and level). */
static char *call_text(char *p, const struct das_log_call *c,
		       const struct call_lens *l)
{
	if (c->method)
		p = TEXT_FIELD(p, "method", c->method, l->method);
	if (c->path) {
		p = TEXT_FIELD(p, "path", c->path, l->path);
		if (l->path < c->path_len || c->is_path_cut)
			p = PUT_LIT(p, "...");
	}
	if (c->route)
		p = TEXT_FIELD(p, "route", c->route, l->route);
	if (c->http_status > 0) {
		p = PUT_LIT(p, " status=");
		p = das_logfmt_uint(p, (uint64_t)c->http_status);
	}
	if (c->code)
		p = TEXT_FIELD(p, "code", c->code, l->code);
	if (l->reason)
		p = TEXT_FIELD(p, "reason", c->reason, l->reason);
	if (c->request_id)
		p = TEXT_FIELD(p, "rid", c->request_id, l->id);
	if (c->sub)
		p = TEXT_FIELD(p, "sub", c->sub, l->sub);
	*p++ = ' ';
	p = das_logfmt_ms(p, c->duration_ms);
	p = PUT_LIT(p, "ms");
	if (c->is_aborted)
		p = PUT_LIT(p, " (aborted)");
	return p;
}
#undef TEXT_FIELD

void das_log_call(const struct das_log_call *c)
{
	struct call_lens lens;
	char *start, *p;
	bool is_in_buffer;

	if (!das_log_is_enabled(DAS_LOG_INFO))
		return;
	call_lens_of(c, &lens);
	start = p = line_start(&is_in_buffer);
	if (atomic_load(&format) == DAS_LOG_JSON) {
		p = begin_json(p, DAS_LOG_INFO);
		p = call_json(p, c, &lens);
	} else {
		p = das_logfmt_timestamp(p, das_time_now());
		p = PUT_LIT(p, " info");
		p = call_text(p, c, &lens);
	}
	write_line(start, p, is_in_buffer, DAS_LOG_INFO);
}
