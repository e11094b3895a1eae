#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "timefmt.h"

#define LINE_MAX_BYTES (6 * DAS_LOG_PATH_MAX + 2048)
#define FLUSH_EVERY_NS (100 * 1000 * 1000)

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static atomic_int min_level = DAS_LOG_INFO;
static atomic_int format = DAS_LOG_TEXT;
static const char *program = "";
static atomic_bool is_buffered;
static char stderr_buffer[64 * 1024];

void das_log_set_level(enum das_log_level level)
{
	atomic_store(&min_level, level);
}

void das_log_set_format(enum das_log_format f)
{
	atomic_store(&format, f);
}

void das_log_set_program(const char *name)
{
	program = name ? name : "";
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

static void *flusher(void *arg)
{
	struct timespec pause = {0, FLUSH_EVERY_NS};

	for (;;) {
		nanosleep(&pause, NULL);
		fflush(stderr);
	}
	return NULL;
}

void das_log_set_buffered(bool on)
{
	static bool has_flusher;

	if (!on) {
		atomic_store(&is_buffered, false);
		fflush(stderr);
		return;
	}
	if (atomic_load(&is_buffered))
		return;
	/* Before any line is written: setvbuf must come first on a stream. */
	fflush(stderr);
	if (setvbuf(stderr, stderr_buffer, _IOFBF, sizeof(stderr_buffer)) != 0)
		return;
	if (!has_flusher) {
		pthread_t t;
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		has_flusher = pthread_create(&t, &attr, flusher, NULL) == 0;
		pthread_attr_destroy(&attr);
	}
	atomic_store(&is_buffered, has_flusher);
}

void das_log_flush(void)
{
	fflush(stderr);
}

/* ---- a bounded line ---- */

struct line {
	char *p;
	size_t len, cap; /* cap leaves room for the newline */
};

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

/* JSON string contents: quote, backslash, controls and every byte outside
 * ASCII as \u00XX (so the line is valid UTF-8 whatever came in). */
static void put_json(struct line *l, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			put(l, e, 2);
		} else if (c < 0x20 || c >= 0x7f) {
			char e[6] = {'\\', 'u',		'0',
				     '0',  hex[c >> 4], hex[c & 15]};
			put(l, e, 6);
		} else {
			put(l, (const char *)&c, 1);
		}
	}
}

/* Text values: spaces, quotes, backslashes and non-printables as \xNN, so
 * one value is one word of the line. */
static void put_text(struct line *l, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\') {
			char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
			put(l, e, 4);
		} else {
			put(l, (const char *)&c, 1);
		}
	}
}

static void write_line(struct line *l, enum das_log_level level)
{
	l->p[l->len++] = '\n'; /* cap kept one byte for it */
	fwrite(l->p, 1, l->len, stderr);
	if (level >= DAS_LOG_WARN && atomic_load(&is_buffered))
		fflush(stderr);
}

static void begin_json(struct line *l, const char *ts, enum das_log_level lv)
{
	putf(l, "{\"time\":\"%s\",\"level\":\"%s\",\"program\":\"", ts,
	     level_names[lv]);
	put_json(l, program, strlen(program));
	puts_(l, "\"");
}

void das_log(enum das_log_level level, const char *fmt, ...)
{
	char buf[2048], msg[1024], ts[DAS_TIMESTAMP_SIZE];
	struct line l = {buf, 0, sizeof(buf) - 1};
	va_list ap;
	int n;

	if (!das_log_is_enabled(level))
		return;
	das_time_format(das_time_now(), ts);
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
	struct line l = {buf, 0, sizeof(buf) - 1};
	char ts[DAS_TIMESTAMP_SIZE];
	size_t path_len = 0, id_len = 0, sub_len = 0;
	bool is_cut = c->is_path_cut,
	     is_json = atomic_load(&format) == DAS_LOG_JSON;

	if (!das_log_is_enabled(DAS_LOG_INFO))
		return;
	das_time_format(das_time_now(), ts);
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
		if (c->http_status)
			putf(&l, ",\"status\":%d", c->http_status);
		if (c->code)
			JSON_FIELD("code", c->code, strlen(c->code));
		if (c->reason && *c->reason)
			JSON_FIELD("reason", c->reason, strlen(c->reason));
		putf(&l, ",\"duration_ms\":%.3f", c->duration_ms);
		if (c->sub)
			JSON_FIELD("sub", c->sub, sub_len);
		if (c->is_aborted)
			puts_(&l, ",\"aborted\":true");
		if (is_cut)
			puts_(&l, ",\"truncated\":true");
		puts_(&l, "}");
#undef JSON_FIELD
	} else {
		putf(&l, "%s info", ts);
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
		if (c->http_status)
			putf(&l, " status=%d", c->http_status);
		if (c->code)
			TEXT_FIELD("code", c->code, strlen(c->code));
		if (c->reason && *c->reason)
			TEXT_FIELD("reason", c->reason, strlen(c->reason));
		if (c->request_id)
			TEXT_FIELD("rid", c->request_id, id_len);
		if (c->sub)
			TEXT_FIELD("sub", c->sub, sub_len);
		putf(&l, " %.3fms", c->duration_ms);
		if (c->is_aborted)
			puts_(&l, " (aborted)");
#undef TEXT_FIELD
	}
	write_line(&l, DAS_LOG_INFO);
}
