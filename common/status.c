#include "status.h"

#include <string.h>

static const struct das_status_row rows[DAS_STATUS__COUNT] = {
#define DAS_STATUS_ROW(name, grpc, reason, http, msg)                          \
	[DAS_##name] = {DAS_##name, #name, grpc, reason, http, msg},
	DAS_STATUS_MAP(DAS_STATUS_ROW)
#undef DAS_STATUS_ROW
};

const struct das_status_row *das_status_row(enum das_status status)
{
	if ((int)status < 0 || status >= DAS_STATUS__COUNT)
		return &rows[DAS_INTERNAL];
	return &rows[status];
}

const struct das_status_row *das_status_from_grpc(int grpc_code,
						  const char *reason)
{
	if (grpc_code == DAS_GRPC_OK)
		return &rows[DAS_OK];
	if (reason && *reason) {
		for (int i = 0; i < DAS_STATUS__COUNT; i++)
			if (rows[i].grpc_code == grpc_code &&
			    strcmp(rows[i].reason, reason) == 0)
				return &rows[i];
	}
	/* No (known) reason: the first row with that code is its plain form. */
	switch (grpc_code) {
	case DAS_GRPC_UNAUTHENTICATED:
		return &rows[DAS_UNAUTHENTICATED];
	case DAS_GRPC_PERMISSION_DENIED:
		return &rows[DAS_FORBIDDEN];
	case DAS_GRPC_INVALID_ARGUMENT:
		return &rows[DAS_INVALID_ARGUMENT];
	case DAS_GRPC_NOT_FOUND:
		return &rows[DAS_CUSTOMER_NOT_FOUND];
	case DAS_GRPC_UNAVAILABLE:
		return &rows[DAS_UNAVAILABLE];
	case DAS_GRPC_DEADLINE_EXCEEDED:
		return &rows[DAS_DEADLINE_EXCEEDED];
	default:
		return &rows[DAS_INTERNAL];
	}
}

const char *das_status_format(enum das_status status, const char *arg,
			      char *buf, size_t size)
{
	const char *tmpl = das_status_row(status)->message;
	const char *hole = strstr(tmpl, "%s");
	size_t used = 0;

	if (size == 0)
		return buf;
	if (!arg)
		arg = "";
	for (const char *p = tmpl; *p && used + 1 < size; p++) {
		if (p == hole) {
			for (const char *a = arg; *a && used + 1 < size; a++)
				buf[used++] = *a;
			p++; /* skip the 's' */
			continue;
		}
		buf[used++] = *p;
	}
	buf[used] = '\0';
	return buf;
}

const char *das_grpc_code_name(int code)
{
	static const char *const names[] = {
		"OK",		       "CANCELLED",	    "UNKNOWN",
		"INVALID_ARGUMENT",    "DEADLINE_EXCEEDED", "NOT_FOUND",
		"ALREADY_EXISTS",      "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
		"FAILED_PRECONDITION", "ABORTED",	    "OUT_OF_RANGE",
		"UNIMPLEMENTED",       "INTERNAL",	    "UNAVAILABLE",
		"DATA_LOSS",	       "UNAUTHENTICATED"};

	if (code < 0 || (size_t)code >= sizeof(names) / sizeof(names[0]))
		return "UNKNOWN";
	return names[code];
}
