/*
 * The outcome table: every answer the product can give, with its gRPC code,
 * its google.rpc.ErrorInfo reason, its HTTP status and its default message.
 * The service picks a row; the gateway only looks rows up. No status code is
 * written anywhere else (CONTRACT.md section 2, "error catalog").
 */
#ifndef DAS_COMMON_STATUS_H
#define DAS_COMMON_STATUS_H

#include <stddef.h>

/* The domain of every ErrorInfo we send. */
#define DAS_ERROR_DOMAIN "deviceassignment.v1"

/* gRPC status codes used by the table (values fixed by gRPC). */
#define DAS_GRPC_OK 0
#define DAS_GRPC_CANCELLED 1 /* what a draining server gives calls it drops */
#define DAS_GRPC_INVALID_ARGUMENT 3
#define DAS_GRPC_DEADLINE_EXCEEDED 4
#define DAS_GRPC_NOT_FOUND 5
#define DAS_GRPC_PERMISSION_DENIED 7
#define DAS_GRPC_RESOURCE_EXHAUSTED 8
#define DAS_GRPC_FAILED_PRECONDITION 9
#define DAS_GRPC_UNIMPLEMENTED 12
#define DAS_GRPC_INTERNAL 13
#define DAS_GRPC_UNAVAILABLE 14
#define DAS_GRPC_UNAUTHENTICATED 16

/*
 * X(name, grpc_code, reason, http_status, message)
 * A message containing "%s" is a template filled with the offending value.
 * Rows marked "gateway" are answered by the gateway before any RPC. A row
 * with http_status 0 is answered over gRPC only (no route leads to it); a
 * row with an empty reason sends no ErrorInfo.
 */
#define DAS_STATUS_MAP(X)                                                      \
	X(OK, DAS_GRPC_OK, "", 201, "success")                                 \
	/* a read's success: list, ledger page, seats */                       \
	X(OK_READ, DAS_GRPC_OK, "", 200, "success")                            \
	X(UNAUTHENTICATED, DAS_GRPC_UNAUTHENTICATED, "UNAUTHENTICATED", 401,   \
	  "Unauthorized")                                                      \
	X(INVALID_TENANT_ID, DAS_GRPC_INVALID_ARGUMENT, "INVALID_TENANT_ID",   \
	  400, "The value '%s' is not valid.")                                 \
	X(INVALID_ID, DAS_GRPC_INVALID_ARGUMENT, "INVALID_ID", 400,            \
	  "The value '%s' is not valid.")                                      \
	X(FORBIDDEN, DAS_GRPC_PERMISSION_DENIED, "FORBIDDEN", 403,             \
	  "Forbidden")                                                         \
	X(INVALID_CLIENT_TYPE, DAS_GRPC_INVALID_ARGUMENT,                      \
	  "INVALID_CLIENT_TYPE", 400,                                          \
	  "clientType is missing or invalid; valid values: desktop, mobile, "  \
	  "webrtc, crm")                                                       \
	X(INVALID_ARGUMENT, DAS_GRPC_INVALID_ARGUMENT, "INVALID_ARGUMENT",     \
	  400, "%s")                                                           \
	X(CUSTOMER_NOT_FOUND, DAS_GRPC_NOT_FOUND, "CUSTOMER_NOT_FOUND", 404,   \
	  "Not Found")                                                         \
	X(USER_NOT_FOUND, DAS_GRPC_NOT_FOUND, "USER_NOT_FOUND", 404,           \
	  "User not found")                                                    \
	X(DEVICE_NOT_FOUND, DAS_GRPC_NOT_FOUND, "DEVICE_NOT_FOUND", 404,       \
	  "Device not found")                                                  \
	X(MISSING_ROLES, DAS_GRPC_FAILED_PRECONDITION, "MISSING_ROLES", 400,   \
	  "The user lacks the role(s): %s")                                    \
	X(CHARGES_NOT_ACCEPTED, DAS_GRPC_FAILED_PRECONDITION,                  \
	  "CHARGES_NOT_ACCEPTED", 402, "additional charges apply")             \
	X(UNAVAILABLE, DAS_GRPC_UNAVAILABLE, "UNAVAILABLE", 503,               \
	  "Service Unavailable")                                               \
	X(STORE_UNAVAILABLE, DAS_GRPC_UNAVAILABLE, "STORE_UNAVAILABLE", 503,   \
	  "The store cannot take the write; nothing was applied")              \
	X(DEADLINE_EXCEEDED, DAS_GRPC_DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED",  \
	  504, "Gateway Timeout")                                              \
	X(INTERNAL, DAS_GRPC_INTERNAL, "INTERNAL", 500,                        \
	  "Internal Server Error")                                             \
	/* gRPC only: grpc.health.v1 Check of a service we do not serve */    \
	X(UNKNOWN_SERVICE, DAS_GRPC_NOT_FOUND, "", 0, "unknown service")       \
	/* gateway: problems of the HTTP request itself */                     \
	X(ROUTE_NOT_FOUND, DAS_GRPC_NOT_FOUND, "ROUTE_NOT_FOUND", 404,         \
	  "Not Found")                                                         \
	X(METHOD_NOT_ALLOWED, DAS_GRPC_UNIMPLEMENTED, "METHOD_NOT_ALLOWED",    \
	  405, "Method Not Allowed")                                           \
	X(PAYLOAD_TOO_LARGE, DAS_GRPC_RESOURCE_EXHAUSTED, "PAYLOAD_TOO_LARGE", \
	  413, "Payload Too Large")                                            \
	X(UNSUPPORTED_MEDIA_TYPE, DAS_GRPC_INVALID_ARGUMENT,                   \
	  "UNSUPPORTED_MEDIA_TYPE", 415,                                       \
	  "Content-Type must be application/json")                            \
	/* gateway: the HTTP layer (RFC 9112) */                               \
	X(URI_TOO_LONG, DAS_GRPC_INVALID_ARGUMENT, "URI_TOO_LONG", 414,        \
	  "URI Too Long")                                                      \
	X(HEADERS_TOO_LARGE, DAS_GRPC_INVALID_ARGUMENT, "HEADERS_TOO_LARGE",   \
	  431, "Request Header Fields Too Large")                              \
	X(NOT_IMPLEMENTED, DAS_GRPC_UNIMPLEMENTED, "NOT_IMPLEMENTED", 501,     \
	  "Not Implemented: %s")                                               \
	X(HTTP_VERSION_NOT_SUPPORTED, DAS_GRPC_UNIMPLEMENTED,                  \
	  "HTTP_VERSION_NOT_SUPPORTED", 505, "HTTP Version Not Supported")

enum das_status {
#define DAS_STATUS_ENUM(name, grpc, reason, http, msg) DAS_##name,
	DAS_STATUS_MAP(DAS_STATUS_ENUM)
#undef DAS_STATUS_ENUM
	DAS_STATUS__COUNT
};

struct das_status_row {
	enum das_status status;
	const char *name;
	int grpc_code;
	const char *reason;
	int http_status;
	const char *message; /* may be a "%s" template */
};

/* The row of a status; never NULL (out-of-range values give INTERNAL). */
const struct das_status_row *das_status_row(enum das_status status);

/*
 * The row an upstream answer maps to: by ErrorInfo reason when it names a
 * row, else by gRPC code alone (UNAUTHENTICATED, PERMISSION_DENIED,
 * UNAVAILABLE, DEADLINE_EXCEEDED, INVALID_ARGUMENT, NOT_FOUND...), else
 * INTERNAL. reason may be NULL or empty.
 */
const struct das_status_row *das_status_from_grpc(int grpc_code,
						  const char *reason);

/* "OK", "INVALID_ARGUMENT", ...: the name of any gRPC code (0..16), else
 * "UNKNOWN". For metrics and logs. */
const char *das_grpc_code_name(int grpc_code);

/*
 * Fills buf with the row's message, "%s" replaced by arg (NULL = ""),
 * truncated to fit; returns buf.
 */
const char *das_status_format(enum das_status status, const char *arg,
			      char *buf, size_t size);

#endif
