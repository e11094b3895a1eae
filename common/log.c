#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timefmt.h"

static enum das_log_level min_level = DAS_LOG_INFO;

void das_log_set_level(enum das_log_level level)
{
	min_level = level;
}

void das_log(enum das_log_level level, const char *fmt, ...)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	char line[1024], ts[DAS_TIMESTAMP_SIZE];
	va_list ap;
	int n;

	if (level < min_level)
		return;
	das_time_format(das_time_now(), ts);
	n = snprintf(line, sizeof(line), "%s %s ", ts, names[level]);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	/* One write per line so concurrent threads never interleave. */
	size_t len = strlen(line);
	line[len++] = '\n';
	fwrite(line, 1, len, stderr);
}
