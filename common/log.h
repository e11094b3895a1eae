/*
 * Logs to stderr, one line per event, in one of two formats:
 *
 *   text: 2026-11-24T00:00:00.0000000Z info message
 *   json: {"time":"2026-11-24T00:00:00.0000000Z","level":"info",
 *          "program":"device-assignment-server","msg":"message"}
 *
 * Access lines (das_log_call: one per gRPC call on the server, one per
 * HTTP request on the gateway) carry the request id, method, route or path,
 * status, reason, duration and the token's subject; every string in them is
 * bounded and escaped, so a hostile path or id cannot forge a line. Nothing
 * here ever sees a token.
 *
 * Lines go to fd 2 whole (one write(2) per line or batch of lines, one
 * writer at a time), so threads never interleave. A thread that serves
 * requests may keep its lines in a buffer of its own (after
 * das_log_set_buffered(true)), written once its oldest line is
 * DAS_LOG_BATCH_MS old, when full (128 KiB), at every warn or error line,
 * and when the thread ends. Other threads write each line at once.
 * Two kinds of buffer: with das_log_thread_buffer the thread's own loop
 * writes it (it asks das_log_thread_due_ms on each turn and sleeps no
 * longer than that: an epoll loop, whose timeout costs nothing); with
 * das_log_thread_buffer_background one thread of the log's own writes it
 * (for threads whose wait cannot cheaply be cut short, like gRPC
 * completion-queue workers, where a deadline costs a timer per wait, and
 * for threads that must not wait on a write(2) at all, like the gateway's
 * event loops: a write to a file can wait milliseconds on writeback).
 * Either way a busy thread makes no write(2) per request, and an idle
 * one's lines show within DAS_LOG_BATCH_MS. A clean stop loses nothing; a
 * crash loses what the buffers of running threads hold: the lines of
 * their last DAS_LOG_BATCH_MS (at most 128 KiB each).
 */
#ifndef DAS_COMMON_LOG_H
#define DAS_COMMON_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

enum das_log_level { DAS_LOG_DEBUG, DAS_LOG_INFO, DAS_LOG_WARN, DAS_LOG_ERROR };
enum das_log_format { DAS_LOG_TEXT, DAS_LOG_JSON };

/* Messages below level are dropped (default INFO; DAS_LOG_LEVEL=debug). */
void das_log_set_level(enum das_log_level level);
/* The format of every line from now on (default TEXT). */
void das_log_set_format(enum das_log_format format);
/* The "program" member of JSON lines (static string). */
void das_log_set_program(const char *program);
/* "text" or "json" -> 0 and *out; anything else -> -1. */
int das_log_parse_format(const char *name, enum das_log_format *out);
/* True when lines of level are written. */
bool das_log_is_enabled(enum das_log_level level);

/* Allows threads to buffer their lines (see above); false writes the
 * calling thread's buffer and sends every later line out at once. */
void das_log_set_buffered(bool is_buffered);
/* The calling thread keeps its lines in its own buffer from now on, which
 * its loop writes (when buffering is allowed; else, or out of memory,
 * nothing changes). */
void das_log_thread_buffer(void);
/* The same, written by the log's flusher thread (started on first use);
 * the calling thread need not ask das_log_thread_due_ms. */
void das_log_thread_buffer_background(void);
/* True when the calling thread has lines not yet written. */
bool das_log_thread_pending(void);
/* The longest a buffered line waits in a thread that runs its loop. */
#define DAS_LOG_BATCH_MS 10
/* Milliseconds until the calling thread's buffered lines are due to be
 * written by its loop (0: now), or -1 when it has none (or the flusher
 * writes them). */
int das_log_thread_due_ms(void);
/* Writes the calling thread's buffered lines. */
void das_log_thread_flush(void);
/* Writes what the calling thread has buffered (other threads' buffers are
 * written by those threads or the flusher: when due, full, or ending). */
void das_log_flush(void);

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void das_log(enum das_log_level level, const char *fmt, ...);

/*
 * One call site's share of the log, for lines that a fault repeats for
 * every request (a database that is down, a flood): at most one line per
 * interval. Static or zeroed; see das_log_limit_take.
 */
struct das_log_limit {
	atomic_llong last_ms; /* when the last line was let through; 0: never */
	atomic_uint n_held;   /* lines held back since */
};

/*
 * True when the call site may write its line now: its first one, or
 * every_ms after the last one let through. Else counts it held back and
 * returns false. On true, *n_held gets how many were held back since the
 * last line let through, for the line to say so.
 */
bool das_log_limit_take(struct das_log_limit *l, int every_ms,
			unsigned *n_held);

/* Longest request path and request id written; longer ones are cut and
 * marked with "..." (text) or "truncated":true (json). The subject is cut
 * at 256 bytes, method, route, code and reason at 64 (ours are shorter),
 * and marked "truncated":true in json. */
#define DAS_LOG_PATH_MAX 4096
#define DAS_LOG_ID_MAX	 128

/* One access line. Strings may be NULL (left out); request_id, path and
 * sub need not be NUL-terminated: their *_len fields give their length. */
struct das_log_call {
	const char *request_id;
	size_t request_id_len;
	const char *method; /* HTTP method or gRPC method path */
	const char *path;   /* HTTP request target, as sent */
	size_t path_len;
	const char *route;  /* route name (gateway) */
	int http_status;    /* 0 = none */
	const char *code;   /* gRPC code name, e.g. "OK", "NOT_FOUND" */
	const char *reason; /* ErrorInfo reason */
	double duration_ms;
	const char *sub; /* the token's subject (server) */
	size_t sub_len;
	bool is_aborted;  /* the client went away before the answer */
	bool is_path_cut; /* the caller kept only the start of the path */
};

/* Writes c at level INFO. */
void das_log_call(const struct das_log_call *c);

#endif
