#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ascii.h"
#include "timefmt.h"

#define LINE_MAX_BYTES (6 * DAS_LOG_PATH_MAX + 2048)
/* A thread's buffer: a few hundred access lines. */
#define THREAD_BUFFER_BYTES (64 * 1024)

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* A line being formatted: len bytes at p, at most cap. */
struct line {
	char *p;
	size_t len, cap; /* cap leaves room for the newline */
};

static atomic_int min_level = DAS_LOG_INFO;
static atomic_int format = DAS_LOG_TEXT;
static const char *program = "";
static atomic_bool is_buffered;
/* What follows the time in a JSON line of each level, the program's name
 * escaped once: "\",\"level\":\"info\",\"program\":\"NAME\"". */
#define TAIL_SIZE (6 * 64 + 48)
#define TAIL(lv) "\",\"level\":\"" lv "\",\"program\":\"\""
static char json_tail[4][TAIL_SIZE] = {TAIL("debug"), TAIL("info"),
				       TAIL("warn"), TAIL("error")};
static size_t json_tail_len[4] = {sizeof(TAIL("debug")) - 1,
				  sizeof(TAIL("info")) - 1,
				  sizeof(TAIL("warn")) - 1,
				  sizeof(TAIL("error")) - 1};
#undef TAIL

/* Every write to fd 2 goes through here, whole, one writer at a time: a
 * batch of lines longer than PIPE_BUF is never interleaved with another
 * thread's in a pipe. */
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

struct thread_buffer {
	size_t len;
	uint64_t first_ms; /* when its oldest line came (monotonic) */
	char data[THREAD_BUFFER_BYTES];
};

/* The calling thread's buffer, when it asked for one; only that thread
 * ever reads or writes it, so it needs no lock. */
static _Thread_local struct thread_buffer *own_buffer;
static pthread_key_t buffer_key; /* its destructor writes and frees it */
static pthread_once_t buffer_once = PTHREAD_ONCE_INIT;

void das_log_set_level(enum das_log_level level)
{
	atomic_store(&min_level, level);
}

void das_log_set_format(enum das_log_format f)
{
	atomic_store(&format, f);
}

static void put_json(struct line *l, const char *s, size_t n);

static void puts_(struct line *l, const char *s);

void das_log_set_program(const char *name)
{
	program = name ? name : "";
	for (int lv = 0; lv < 4; lv++) {
		struct line l = {json_tail[lv], 0, TAIL_SIZE - 1};
		puts_(&l, "\",\"level\":\"");
		puts_(&l, level_names[lv]);
		puts_(&l, "\",\"program\":\"");
		put_json(&l, program, strnlen(program, 64));
		puts_(&l, "\"");
		json_tail_len[lv] = l.len;
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

/* Writes n bytes to fd 2, all of them unless it fails. */
static void write_out(const char *p, size_t n)
{
	pthread_mutex_lock(&write_lock);
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break; /* nowhere to log to: the lines are dropped */
		p += w;
		n -= (size_t)w;
	}
	pthread_mutex_unlock(&write_lock);
}

static void buffer_release(void *arg)
{
	struct thread_buffer *b = arg;

	if (b->len)
		write_out(b->data, b->len);
	free(b);
}

static void buffer_key_init(void)
{
	pthread_key_create(&buffer_key, buffer_release);
}

void das_log_set_buffered(bool on)
{
	atomic_store(&is_buffered, on);
	if (!on)
		das_log_thread_flush();
}

void das_log_thread_buffer(void)
{
	struct thread_buffer *b;

	if (own_buffer || !atomic_load(&is_buffered))
		return;
	pthread_once(&buffer_once, buffer_key_init);
	b = malloc(sizeof(*b));
	if (!b)
		return; /* lines are then written one by one */
	b->len = 0;
	if (pthread_setspecific(buffer_key, b) != 0) {
		free(b);
		return;
	}
	own_buffer = b;
}

static uint64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

bool das_log_thread_pending(void)
{
	return own_buffer && own_buffer->len > 0;
}

int das_log_thread_due_ms(void)
{
	uint64_t age;

	if (!das_log_thread_pending())
		return -1;
	age = monotonic_ms() - own_buffer->first_ms;
	return age >= DAS_LOG_BATCH_MS ? 0 : (int)(DAS_LOG_BATCH_MS - age);
}

void das_log_thread_flush(void)
{
	struct thread_buffer *b = own_buffer;

	if (b && b->len) {
		write_out(b->data, b->len);
		b->len = 0;
	}
}

void das_log_flush(void)
{
	das_log_thread_flush();
}

/* ---- a bounded line ---- */

static void put(struct line *l, const char *s, size_t n)
{
	if (n > l->cap - l->len)
		n = l->cap - l->len;
	memcpy(l->p + l->len, s, n);
	l->len += n;
}

static void puts_(struct line *l, const char *s)
{
	put(l, s, strlen(s));
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
putf(struct line *l, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(l->p + l->len, l->cap - l->len + 1, fmt, ap);
	va_end(ap);
	if (n > 0)
		l->len += (size_t)n < l->cap - l->len ? (size_t)n
						      : l->cap - l->len;
}

/* Text words: 0x21..0x7e but '"' and '\\' are copied as they are. */
static bool is_text_plain(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '"' && c != '\\';
}

static size_t text_span(const char *s, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w = das_ascii_word(s + i);
		if (das_ascii_has_less(w, 0x21) | das_ascii_has_more(w, 0x7e) |
		    das_ascii_has_byte(w, '"') | das_ascii_has_byte(w, '\\'))
			break;
	}
	while (i < n && is_text_plain((unsigned char)s[i]))
		i++;
	return i;
}

/* JSON string contents: quote, backslash, controls and every byte outside
 * ASCII as \u00XX (so the line is valid UTF-8 whatever came in). Runs of
 * plain bytes are found eight at a time and copied at once: this is on
 * every request's path. */
static void put_json(struct line *l, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i = 0;

	while (i < n) {
		size_t run = i + das_ascii_json_span(s + i, n - i);
		put(l, s + i, run - i);
		if (run == n)
			break;
		unsigned char c = (unsigned char)s[run];
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			put(l, e, 2);
		} else {
			char e[6] = {'\\', 'u',		'0',
				     '0',  hex[c >> 4], hex[c & 15]};
			put(l, e, 6);
		}
		i = run + 1;
	}
}

/* Text values: spaces, quotes, backslashes and non-printables as \xNN, so
 * one value is one word of the line. */
static void put_text(struct line *l, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i = 0;

	while (i < n) {
		size_t run = i + text_span(s + i, n - i);
		put(l, s + i, run - i);
		if (run == n)
			break;
		unsigned char c = (unsigned char)s[run];
		char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
		put(l, e, 4);
		i = run + 1;
	}
}

/* Decimal digits of v. */
static void put_uint(struct line *l, uint64_t v)
{
	char d[24];
	size_t n = sizeof(d);

	do {
		d[--n] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(l, d + n, sizeof(d) - n);
}

/* Milliseconds with three decimals, without printf. */
static void put_ms(struct line *l, double ms)
{
	uint64_t us = ms > 0 ? (uint64_t)(ms * 1000 + 0.5) : 0;
	char frac[4] = {'.', (char)('0' + us / 100 % 10),
			(char)('0' + us / 10 % 10), (char)('0' + us % 10)};

	put_uint(l, us / 1000);
	put(l, frac, 4);
}

/*
 * The current time as das_time_format writes it. The part up to the
 * seconds is formatted once per second and thread; the rest by hand.
 */
static void timestamp(char ts[DAS_TIMESTAMP_SIZE])
{
	static _Thread_local int64_t cached_second = -1;
	static _Thread_local char cached[DAS_TIMESTAMP_SIZE];
	struct das_time now = das_time_now();
	int32_t frac = now.nanos / 100;

	if (now.seconds != cached_second) {
		if (das_time_format(now, cached) != 0) {
			memcpy(ts, cached, DAS_TIMESTAMP_SIZE);
			return;
		}
		cached_second = now.seconds;
	}
	memcpy(ts, cached, 20); /* "YYYY-MM-DDTHH:MM:SS." */
	for (int i = 26; i >= 20; i--) {
		ts[i] = (char)('0' + frac % 10);
		frac /= 10;
	}
	ts[27] = 'Z';
	ts[28] = '\0';
}

/*
 * Where the next line is formatted: at the end of the thread's buffer when
 * it has one (written first if a longest line might not fit), else in
 * scratch. write_line then keeps or writes it.
 */
static void line_start(struct line *l, char *scratch, size_t scratch_size)
{
	struct thread_buffer *b = own_buffer;

	if (b && atomic_load_explicit(&is_buffered, memory_order_relaxed)) {
		if (sizeof(b->data) - b->len < LINE_MAX_BYTES)
			das_log_thread_flush();
		l->p = b->data + b->len;
		l->len = 0;
		l->cap = LINE_MAX_BYTES - 1;
		return;
	}
	l->p = scratch;
	l->len = 0;
	l->cap = scratch_size - 1;
}

/*
 * A line formatted in the thread's buffer stays there (written when the
 * loop finds it due, when the buffer is full, at a warn or error line and
 * when the thread ends); any other goes straight to fd 2.
 */
static void write_line(struct line *l, enum das_log_level level)
{
	struct thread_buffer *b = own_buffer;

	l->p[l->len++] = '\n'; /* cap kept one byte for it */
	if (!b || l->p != b->data + b->len) {
		das_log_thread_flush(); /* in order */
		write_out(l->p, l->len);
		return;
	}
	if (b->len == 0)
		b->first_ms = monotonic_ms();
	b->len += l->len;
	if (level >= DAS_LOG_WARN)
		das_log_thread_flush();
}

static void begin_json(struct line *l, const char *ts, enum das_log_level lv)
{
	puts_(l, "{\"time\":\"");
	put(l, ts, DAS_TIMESTAMP_SIZE - 1);
	put(l, json_tail[lv], json_tail_len[lv]);
}

void das_log(enum das_log_level level, const char *fmt, ...)
{
	char buf[2048], msg[1024], ts[DAS_TIMESTAMP_SIZE];
	struct line l;
	va_list ap;
	int n;

	if (!das_log_is_enabled(level))
		return;
	line_start(&l, buf, sizeof(buf));
	timestamp(ts);
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	if (atomic_load(&format) == DAS_LOG_JSON) {
		begin_json(&l, ts, level);
		puts_(&l, ",\"msg\":\"");
		put_json(&l, msg, (size_t)n);
		puts_(&l, "\"}");
	} else {
		putf(&l, "%s %s ", ts, level_names[level]);
		put(&l, msg, (size_t)n);
	}
	write_line(&l, level);
}

void das_log_call(const struct das_log_call *c)
{
	static _Thread_local char buf[LINE_MAX_BYTES];
	struct line l;
	char ts[DAS_TIMESTAMP_SIZE];
	size_t path_len = 0, id_len = 0, sub_len = 0;
	bool is_cut = c->is_path_cut,
	     is_json = atomic_load(&format) == DAS_LOG_JSON;

	if (!das_log_is_enabled(DAS_LOG_INFO))
		return;
	line_start(&l, buf, sizeof(buf));
	timestamp(ts);
	if (c->path) {
		path_len = c->path_len;
		if (path_len > DAS_LOG_PATH_MAX) {
			path_len = DAS_LOG_PATH_MAX;
			is_cut = true;
		}
	}
	if (c->request_id) {
		id_len = c->request_id_len;
		if (id_len > DAS_LOG_ID_MAX) {
			id_len = DAS_LOG_ID_MAX;
			is_cut = true;
		}
	}
	if (c->sub) {
		sub_len = c->sub_len;
		if (sub_len > 256) {
			sub_len = 256;
			is_cut = true;
		}
	}
	if (is_json) {
		begin_json(&l, ts, DAS_LOG_INFO);
#define JSON_FIELD(name, s, n)                 \
	do {                                   \
		puts_(&l, ",\"" name "\":\""); \
		put_json(&l, (s), (n));        \
		puts_(&l, "\"");               \
	} while (0)
		if (c->request_id)
			JSON_FIELD("request_id", c->request_id, id_len);
		if (c->method)
			JSON_FIELD("method", c->method, strlen(c->method));
		if (c->route)
			JSON_FIELD("route", c->route, strlen(c->route));
		if (c->path)
			JSON_FIELD("path", c->path, path_len);
		if (c->http_status > 0) {
			puts_(&l, ",\"status\":");
			put_uint(&l, (uint64_t)c->http_status);
		}
		if (c->code)
			JSON_FIELD("code", c->code, strlen(c->code));
		if (c->reason && *c->reason)
			JSON_FIELD("reason", c->reason, strlen(c->reason));
		puts_(&l, ",\"duration_ms\":");
		put_ms(&l, c->duration_ms);
		if (c->sub)
			JSON_FIELD("sub", c->sub, sub_len);
		if (c->is_aborted)
			puts_(&l, ",\"aborted\":true");
		if (is_cut)
			puts_(&l, ",\"truncated\":true");
		puts_(&l, "}");
#undef JSON_FIELD
	} else {
		put(&l, ts, DAS_TIMESTAMP_SIZE - 1);
		puts_(&l, " info");
#define TEXT_FIELD(name, s, n)           \
	do {                             \
		puts_(&l, " " name "="); \
		put_text(&l, (s), (n));  \
	} while (0)
		if (c->method)
			TEXT_FIELD("method", c->method, strlen(c->method));
		if (c->path) {
			TEXT_FIELD("path", c->path, path_len);
			if (path_len < c->path_len || c->is_path_cut)
				puts_(&l, "...");
		}
		if (c->route)
			TEXT_FIELD("route", c->route, strlen(c->route));
		if (c->http_status > 0) {
			puts_(&l, " status=");
			put_uint(&l, (uint64_t)c->http_status);
		}
		if (c->code)
			TEXT_FIELD("code", c->code, strlen(c->code));
		if (c->reason && *c->reason)
			TEXT_FIELD("reason", c->reason, strlen(c->reason));
		if (c->request_id)
			TEXT_FIELD("rid", c->request_id, id_len);
		if (c->sub)
			TEXT_FIELD("sub", c->sub, sub_len);
		puts_(&l, " ");
		put_ms(&l, c->duration_ms);
		puts_(&l, "ms");
		if (c->is_aborted)
			puts_(&l, " (aborted)");
#undef TEXT_FIELD
	}
	write_line(&l, DAS_LOG_INFO);
}
