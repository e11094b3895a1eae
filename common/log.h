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
 * Each line is one fwrite, so threads never interleave. With
 * das_log_set_buffered(true), stderr is fully buffered and flushed every
 * 100 ms by a background thread, at every warn or error line, and by
 * das_log_flush(); otherwise each line is written at once.
 */
#ifndef DAS_COMMON_LOG_H
#define DAS_COMMON_LOG_H

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

/* Switches stderr to full buffering with a 100 ms flusher (see above). */
void das_log_set_buffered(bool is_buffered);
/* Writes out what is buffered. */
void das_log_flush(void);

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void das_log(enum das_log_level level, const char *fmt, ...);

/* Longest request path and request id written; longer ones are cut and
 * marked with "..." (text) or "truncated":true (json). */
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
