/*
 * One function per RPC, in one table (handlers.c: whether it needs a token,
 * whether it writes, the function), behind one dispatcher: authenticate (row
 * 1 of the check order), unpack the protobuf-c request, call the use case in
 * ops/, pack the response. Nothing here knows about completion queues.
 */
#ifndef DAS_GRPC_HANDLERS_H
#define DAS_GRPC_HANDLERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "deviceassignment/v1/device_assignment.pb-c.h"

#include "common/status.h"
#include "proto/rpc_methods.h"
#include "service/auth/auth.h"
#include "service/auth/token_cache.h"
#include "service/store/store.h"

struct health;

struct handler_env {
	struct store *store;
	const struct auth_config *auth;
	struct health *health; /* Health/Check's answer; NULL: SERVING */
	struct token_cache *tokens; /* NULL: verify every token in full */
};

/* The caller's metadata we look at, already extracted (bytes, lengths). */
struct handler_meta {
	const char *authorization; /* NULL when absent */
	size_t authorization_len;
	const char *request_id; /* NULL when absent */
	size_t request_id_len;
	bool has_duplicate_authorization; /* more than one authorization entry */
	/* the call's deadline, CLOCK_MONOTONIC in ms (0: none): an answer
	 * that waits for the store past it changes nothing (ops_later) */
	int64_t deadline_ms;
	/* DAS_OK, or why the request message could not be read (answered
	 * after authentication, with payload_detail for the row's "%s") */
	enum das_status payload_status;
	char payload_detail[128];
};

struct handler_reply {
	enum das_status status; /* the status table's row of the answer */
	char message[512];   /* the status message (row text, filled) */
	/* packed response on OK: inline_body, or malloc'd when larger;
	 * handlers_reply_release frees it */
	uint8_t *body;
	size_t body_len;
	char sub[DOMAIN_SUB_SIZE]; /* the verified token's subject, or "" */
	uint8_t inline_body[512];
	/* Set by handlers_dispatch: the answer comes later (see there). */
	bool is_later;
	/* handlers' own: where a later answer goes, and by when */
	void (*later)(void *ctx, struct handler_reply *reply);
	void *later_ctx;
	int64_t later_deadline_ms;
};

/*
 * Receives an answer that came after handlers_dispatch returned; reply is
 * filled as handlers_dispatch fills it and is released after this returns
 * (copy what is kept).
 */
typedef void (*handler_later_fn)(void *ctx, struct handler_reply *reply);

/*
 * Handles one call. request is the message bytes (NULL when the caller sent
 * none). Fills reply completely, and the caller releases it with
 * handlers_reply_release, unless reply->is_later: then a write of the call
 * waits for the store's group commit without holding this thread, and
 * later(ctx, answer) is called once with the answer when it is durable or
 * failed, on any thread, possibly before this returns (later NULL: every
 * answer is given here).
 */
void handlers_dispatch(const struct handler_env *env,
		       enum das_rpc_method method,
		       const struct handler_meta *meta, const uint8_t *request,
		       size_t request_len, struct handler_reply *reply,
		       handler_later_fn later, void *ctx);

/* Frees the reply's body when it is on the heap; the rest stays. */
void handlers_reply_release(struct handler_reply *reply);

/*
 * The string check every RPC gets (a NUL byte in any string field is
 * refused; in an id, with the id's "not valid" row), for calls that do not
 * go through handlers_dispatch (Health/Watch). DAS_OK, or the row to answer
 * with detail filled (its "%s").
 */
enum das_status handlers_check_strings(const ProtobufCMessageDescriptor *d,
				       const uint8_t *request, size_t len,
				       char detail[DOMAIN_DETAIL_SIZE]);

/*
 * The domain request of an AssignDeviceRequest (rows 2-10 then judge it);
 * out points into in's strings. Exposed for the fuzz target.
 */
void handlers_assign_request(const Deviceassignment__V1__AssignDeviceRequest *in,
			     struct domain_request *out);

#endif
