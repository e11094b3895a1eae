/* One-line logs to stderr: "2026-11-24T00:00:00.0000000Z level message". */
#ifndef DAS_COMMON_LOG_H
#define DAS_COMMON_LOG_H

enum das_log_level { DAS_LOG_DEBUG, DAS_LOG_INFO, DAS_LOG_WARN, DAS_LOG_ERROR };

/* Messages below level are dropped (default INFO; DAS_LOG_LEVEL=debug). */
void das_log_set_level(enum das_log_level level);

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void das_log(enum das_log_level level, const char *fmt, ...);

#endif
