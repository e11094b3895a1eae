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
#define LINE_MAX_BYTES                                                   \
	(6 * (DAS_LOG_PATH_MAX + DAS_LOG_ID_MAX + SUB_MAX_BYTES +         \
	      4 * NAME_MAX_BYTES) +                                       \
	 1024)
/* A thread's buffer: a few hundred access lines. */
#define THREAD_BUFFER_BYTES (64 * 1024)

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static atomic_int min_level = DAS_LOG_INFO;
static atomic_int format = DAS_LOG_TEXT;
static const char *program = "";
static atomic_bool is_buffered;
/* What follows the time in a JSON line of each level, the program's name
 * escaped once: "\",\"level\":\"info\",\"program\":\"NAME\"". */
#define TAIL_SIZE (6 * PROGRAM_MAX_BYTES + 48)
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

/* Appends the string literal lit at p. */
#define PUT_LIT(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) + sizeof(lit) - 1)

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

/* ---- lines ---- */

/*
 * Where the next line is formatted: at the end of the thread's buffer when
 * it has one (written first if a longest line might not fit), else in the
 * thread's scratch line. write_line then keeps or writes it.
 */
static char *line_start(void)
{
	static _Thread_local char scratch[LINE_MAX_BYTES];
	struct thread_buffer *b = own_buffer;

	if (b && atomic_load_explicit(&is_buffered, memory_order_relaxed)) {
		if (sizeof(b->data) - b->len < LINE_MAX_BYTES)
			das_log_thread_flush();
		return b->data + b->len;
	}
	return scratch;
}

/*
 * The line from start to end (its newline not yet written) stays in the
 * thread's buffer when it was formatted there (written when the loop finds
 * it due, when the buffer is full, at a warn or error line and when the
 * thread ends); any other goes straight to fd 2.
 */
static void write_line(char *start, char *end, enum das_log_level level)
{
	struct thread_buffer *b = own_buffer;
	size_t len;

	*end++ = '\n'; /* LINE_MAX_BYTES keeps room for it */
	len = (size_t)(end - start);
	if (!b || start != b->data + b->len) {
		das_log_thread_flush(); /* in order */
		write_out(start, len);
		return;
	}
	if (b->len == 0)
		b->first_ms = monotonic_ms();
	b->len += len;
	if (level >= DAS_LOG_WARN)
		das_log_thread_flush();
}

/* {"time":"...","level":"LEVEL","program":"NAME" */
static char *begin_json(char *p, enum das_log_level lv)
{
	p = PUT_LIT(p, "{\"time\":\"");
	p = das_logfmt_timestamp(p, das_time_now());
	memcpy(p, json_tail[lv], json_tail_len[lv]);
	return p + json_tail_len[lv];
}

void das_log(enum das_log_level level, const char *fmt, ...)
{
	char msg[MSG_MAX_BYTES], *start, *p;
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
	start = p = line_start();
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
	write_line(start, p, level);
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

void das_log_call(const struct das_log_call *c)
{
	char *start, *p;
	size_t path_len = 0, id_len = 0, sub_len = 0, method_len = 0,
	       route_len = 0, code_len = 0, reason_len = 0;
	bool is_cut = c->is_path_cut,
	     is_json = atomic_load(&format) == DAS_LOG_JSON;

	if (!das_log_is_enabled(DAS_LOG_INFO))
		return;
	/* Every string is bounded here; LINE_MAX_BYTES holds them all. */
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
		if (sub_len > SUB_MAX_BYTES) {
			sub_len = SUB_MAX_BYTES;
			is_cut = true;
		}
	}
	if (c->method)
		method_len = bounded_len(c->method, NAME_MAX_BYTES, &is_cut);
	if (c->route)
		route_len = bounded_len(c->route, NAME_MAX_BYTES, &is_cut);
	if (c->code)
		code_len = bounded_len(c->code, NAME_MAX_BYTES, &is_cut);
	if (c->reason)
		reason_len = bounded_len(c->reason, NAME_MAX_BYTES, &is_cut);
	start = p = line_start();
	if (is_json) {
		p = begin_json(p, DAS_LOG_INFO);
#define JSON_FIELD(name, s, n)                         \
	do {                                           \
		p = PUT_LIT(p, ",\"" name "\":\"");    \
		p = das_logfmt_json(p, (s), (n));      \
		*p++ = '"';                            \
	} while (0)
		if (c->request_id)
			JSON_FIELD("request_id", c->request_id, id_len);
		if (c->method)
			JSON_FIELD("method", c->method, method_len);
		if (c->route)
			JSON_FIELD("route", c->route, route_len);
		if (c->path)
			JSON_FIELD("path", c->path, path_len);
		if (c->http_status > 0) {
			p = PUT_LIT(p, ",\"status\":");
			p = das_logfmt_uint(p, (uint64_t)c->http_status);
		}
		if (c->code)
			JSON_FIELD("code", c->code, code_len);
		if (reason_len)
			JSON_FIELD("reason", c->reason, reason_len);
		p = PUT_LIT(p, ",\"duration_ms\":");
		p = das_logfmt_ms(p, c->duration_ms);
		if (c->sub)
			JSON_FIELD("sub", c->sub, sub_len);
		if (c->is_aborted)
			p = PUT_LIT(p, ",\"aborted\":true");
		if (is_cut)
			p = PUT_LIT(p, ",\"truncated\":true");
		*p++ = '}';
#undef JSON_FIELD
	} else {
		p = das_logfmt_timestamp(p, das_time_now());
		p = PUT_LIT(p, " info");
#define TEXT_FIELD(name, s, n)                     \
	do {                                       \
		p = PUT_LIT(p, " " name "=");      \
		p = das_logfmt_text(p, (s), (n));  \
	} while (0)
		if (c->method)
			TEXT_FIELD("method", c->method, method_len);
		if (c->path) {
			TEXT_FIELD("path", c->path, path_len);
			if (path_len < c->path_len || c->is_path_cut)
				p = PUT_LIT(p, "...");
		}
		if (c->route)
			TEXT_FIELD("route", c->route, route_len);
		if (c->http_status > 0) {
			p = PUT_LIT(p, " status=");
			p = das_logfmt_uint(p, (uint64_t)c->http_status);
		}
		if (c->code)
			TEXT_FIELD("code", c->code, code_len);
		if (reason_len)
			TEXT_FIELD("reason", c->reason, reason_len);
		if (c->request_id)
			TEXT_FIELD("rid", c->request_id, id_len);
		if (c->sub)
			TEXT_FIELD("sub", c->sub, sub_len);
		*p++ = ' ';
		p = das_logfmt_ms(p, c->duration_ms);
		p = PUT_LIT(p, "ms");
		if (c->is_aborted)
			p = PUT_LIT(p, " (aborted)");
#undef TEXT_FIELD
	}
	write_line(start, p, DAS_LOG_INFO);
}
