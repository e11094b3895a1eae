#include "das_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "common/status.h"
#include "common/tls_grpc.h"

/* Longest bearer token we send; the service refuses longer ones anyway. */
#define CLIENT_MAX_TOKEN 8192

struct das_client {
	grpc_channel *channel;
	/* Registration handles, one per RPC of the table: the method path is
	 * interned once instead of on every call. */
	void *handles[DAS_RPC__COUNT];
};

static void set_message(struct das_call_status *st, const char *text,
			size_t len)
{
	if (len >= sizeof(st->message))
		len = sizeof(st->message) - 1;
	memcpy(st->message, text, len);
	st->message[len] = '\0';
}

/* A failure on our side of the wire: the call never completed. */
static int local_failure(struct das_call_status *st, const char *why)
{
	st->code = DAS_GRPC_INTERNAL;
	st->reason[0] = '\0';
	set_message(st, why, strlen(why));
	return -1;
}

struct das_client *das_client_new(const char *target)
{
	char err[256];

	return das_client_new_tls(target, NULL, err, sizeof(err));
}

struct das_client *das_client_new_tls(const char *target,
				      const struct das_client_tls *tls,
				      char *err, size_t err_size)
{
	struct das_client *c;
	grpc_channel_credentials *creds;
	/*
	 * The receive limit bounds what a server can make us allocate. A
	 * local subchannel pool keeps each client's connection state its
	 * own: a test that restarts a server and opens a new client does not
	 * inherit the old client's reconnect backoff.
	 */
	grpc_arg args[] = {
		{.type = GRPC_ARG_INTEGER,
		 .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
		 .value.integer = DAS_RPC_MAX_MESSAGE},
		{.type = GRPC_ARG_INTEGER,
		 .key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL,
		 .value.integer = 1},
		{.type = GRPC_ARG_STRING,
		 .key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
		 .value.string = NULL},
	};
	grpc_channel_args channel_args = {2, args};

	if (!target || !*target) {
		snprintf(err, err_size, "no server address");
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	grpc_init();
	if (tls) {
		creds = das_tls_channel_credentials(tls->cert_file,
						    tls->key_file, tls->ca_file,
						    err, err_size);
		if (tls->server_name && *tls->server_name) {
			args[2].value.string = (char *)tls->server_name;
			channel_args.num_args = 3;
		}
	} else {
		creds = grpc_insecure_credentials_create();
		if (!creds)
			snprintf(err, err_size, "no credentials");
	}
	if (!creds) {
		grpc_shutdown();
		free(c);
		return NULL;
	}
	c->channel = grpc_channel_create(target, creds, &channel_args);
	grpc_channel_credentials_release(creds);
	if (!c->channel) {
		snprintf(err, err_size, "cannot open a channel to %s", target);
		grpc_shutdown();
		free(c);
		return NULL;
	}
	for (int m = 0; m < DAS_RPC__COUNT; m++)
		c->handles[m] = grpc_channel_register_call(
			c->channel, das_rpc_method((enum das_rpc_method)m)->path,
			NULL, NULL);
	return c;
}

void das_client_free(struct das_client *c)
{
	if (!c)
		return;
	grpc_channel_destroy(c->channel);
	free(c);
	grpc_shutdown();
}

static gpr_timespec deadline_after(int timeout_ms)
{
	if (timeout_ms < 1)
		timeout_ms = 1;
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
			    gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

/* Copies the whole message out of a received byte buffer (decompressed). */
static int read_message(grpc_byte_buffer *bb, grpc_slice *out)
{
	grpc_byte_buffer_reader reader;

	if (!grpc_byte_buffer_reader_init(&reader, bb))
		return -1;
	*out = grpc_byte_buffer_reader_readall(&reader);
	grpc_byte_buffer_reader_destroy(&reader);
	return 0;
}

/* Fills st->reason from the google.rpc.Status trailer, when there is one. */
static void read_reason(const grpc_metadata_array *trailing,
			struct das_call_status *st)
{
	for (size_t i = 0; i < trailing->count; i++) {
		const grpc_metadata *md = &trailing->metadata[i];
		if (grpc_slice_str_cmp(md->key, DAS_STATUS_DETAILS_KEY) != 0)
			continue;
		size_t len = GRPC_SLICE_LENGTH(md->value);
		if (len > DAS_RPC_MAX_MESSAGE)
			return;
		if (das_status_details_reason(GRPC_SLICE_START_PTR(md->value),
					      len, st->reason,
					      sizeof(st->reason)) != 0)
			st->reason[0] = '\0';
		return;
	}
}

/*
 * Runs one unary call on call (bound to cq) as a single batch of six ops and
 * waits for it. Takes the request buffer (destroyed here). On return 0 the
 * call completed: st is filled and, when the status is OK and a message
 * came, *response holds it (caller destroys). -1: the batch could not start.
 */
static int run_call(grpc_call *call, grpc_completion_queue *cq,
		    grpc_byte_buffer *request, grpc_metadata *md, size_t n_md,
		    grpc_byte_buffer **response, struct das_call_status *st)
{
	grpc_metadata_array initial, trailing;
	grpc_byte_buffer *received = NULL;
	grpc_status_code code = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	const char *error_string = NULL;
	grpc_op ops[6];
	grpc_call_error err;
	grpc_event ev;
	int result = -1;

	grpc_metadata_array_init(&initial);
	grpc_metadata_array_init(&trailing);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = n_md;
	ops[0].data.send_initial_metadata.metadata = md;
	/* A server that is (re)starting is waited for up to the deadline
	 * instead of failing fast during reconnect backoff. */
	ops[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = request;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &received;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
	ops[5].data.recv_status_on_client.status = &code;
	ops[5].data.recv_status_on_client.status_details = &details;
	ops[5].data.recv_status_on_client.error_string = &error_string;

	err = grpc_call_start_batch(call, ops, 6, ops, NULL);
	if (err != GRPC_CALL_OK) {
		char why[96];
		snprintf(why, sizeof(why), "cannot start the call (error %d%s)",
			 (int)err,
			 err == GRPC_CALL_ERROR_INVALID_METADATA
				 ? ", invalid metadata"
				 : "");
		local_failure(st, why);
		goto done;
	}
	/* The call's deadline bounds this wait. */
	ev = grpc_completion_queue_pluck(cq, ops,
					 gpr_inf_future(GPR_CLOCK_REALTIME),
					 NULL);
	if (ev.type != GRPC_OP_COMPLETE) {
		local_failure(st, "completion queue failed");
		goto done;
	}

	st->code = (int)code;
	st->reason[0] = '\0';
	if (GRPC_SLICE_LENGTH(details) > 0)
		set_message(st, (const char *)GRPC_SLICE_START_PTR(details),
			    GRPC_SLICE_LENGTH(details));
	else if (code != GRPC_STATUS_OK && error_string)
		set_message(st, error_string, strlen(error_string));
	else
		st->message[0] = '\0';
	if (code != GRPC_STATUS_OK)
		read_reason(&trailing, st);
	if (code == GRPC_STATUS_OK && response) {
		*response = received;
		received = NULL;
	}
	result = 0;
done:
	if (received)
		grpc_byte_buffer_destroy(received);
	grpc_byte_buffer_destroy(request);
	grpc_slice_unref(details);
	gpr_free((void *)error_string);
	grpc_metadata_array_destroy(&initial);
	grpc_metadata_array_destroy(&trailing);
	return result;
}

/* Wraps bytes into a byte buffer (one copy). */
static grpc_byte_buffer *buffer_from(const void *bytes, size_t len)
{
	grpc_slice slice = grpc_slice_from_copied_buffer(bytes, len);
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);

	grpc_slice_unref(slice);
	return bb;
}

/* Ends a call and its private queue (nothing is pending on either). */
static void call_release(grpc_call *call, grpc_completion_queue *cq)
{
	if (call)
		grpc_call_unref(call);
	if (cq) {
		grpc_completion_queue_shutdown(cq);
		grpc_completion_queue_destroy(cq);
	}
}

/* The authorization entry for token ("Bearer TOKEN"): 1 when set, 0 with
 * no token, -1 (st says why) when it is too long. */
static int auth_metadata(const char *token, grpc_metadata *auth,
			 struct das_call_status *st)
{
	static const char bearer[] = "Bearer ";
	const size_t bearer_len = sizeof(bearer) - 1;
	size_t token_len;

	memset(auth, 0, sizeof(*auth));
	if (!token)
		return 0;
	token_len = strlen(token);
	if (token_len > CLIENT_MAX_TOKEN)
		return local_failure(st, "token too long");
	auth->key = grpc_slice_from_static_string("authorization");
	auth->value = grpc_slice_malloc(bearer_len + token_len);
	memcpy(GRPC_SLICE_START_PTR(auth->value), bearer, bearer_len);
	memcpy(GRPC_SLICE_START_PTR(auth->value) + bearer_len, token,
	       token_len);
	return 1;
}

/*
 * The reply of a call that ended OK: exactly one well-formed message of
 * the method's response type. Anything else is a broken server, reported
 * as INTERNAL in st rather than a crash.
 */
static void unpack_reply(const struct das_rpc_method_info *info,
			 grpc_byte_buffer *resp_bb, ProtobufCMessage **response,
			 struct das_call_status *st)
{
	grpc_slice data;

	if (!resp_bb) {
		st->code = DAS_GRPC_INTERNAL;
		set_message(st, "no response message", 19);
		return;
	}
	if (grpc_byte_buffer_length(resp_bb) > DAS_RPC_MAX_MESSAGE ||
	    read_message(resp_bb, &data) != 0) {
		st->code = DAS_GRPC_INTERNAL;
		set_message(st, "response message unreadable", 27);
		return;
	}
	if (GRPC_SLICE_LENGTH(data) <= DAS_RPC_MAX_MESSAGE)
		*response = protobuf_c_message_unpack(
			info->response, NULL, GRPC_SLICE_LENGTH(data),
			GRPC_SLICE_START_PTR(data));
	grpc_slice_unref(data);
	if (!*response) {
		st->code = DAS_GRPC_INTERNAL;
		set_message(st, "malformed response message", 27);
	}
}

int das_client_call(struct das_client *c, enum das_rpc_method method,
		    const char *token, const ProtobufCMessage *request,
		    ProtobufCMessage **response, int timeout_ms,
		    struct das_call_status *st)
{
	const struct das_rpc_method_info *info;
	grpc_completion_queue *cq = NULL;
	grpc_call *call = NULL;
	grpc_byte_buffer *req_bb, *resp_bb = NULL;
	grpc_metadata auth;
	int n_md, result = -1;

	memset(st, 0, sizeof(*st));
	*response = NULL;
	if ((int)method < 0 || method >= DAS_RPC__COUNT)
		return local_failure(st, "unknown method");
	info = das_rpc_method(method);
	if (!request || request->descriptor != info->request)
		return local_failure(st, "request of the wrong message type");
	n_md = auth_metadata(token, &auth, st);
	if (n_md < 0)
		return -1;

	size_t len = protobuf_c_message_get_packed_size(request);
	if (len > DAS_RPC_MAX_MESSAGE) {
		local_failure(st, "request message too large");
		goto done;
	}
	grpc_slice slice = grpc_slice_malloc(len);
	protobuf_c_message_pack(request, GRPC_SLICE_START_PTR(slice));
	req_bb = grpc_raw_byte_buffer_create(&slice, 1);
	grpc_slice_unref(slice);

	cq = grpc_completion_queue_create_for_pluck(NULL);
	call = grpc_channel_create_registered_call(
		c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
		c->handles[method], deadline_after(timeout_ms), NULL);
	if (!call) {
		grpc_byte_buffer_destroy(req_bb);
		local_failure(st, "cannot create the call");
		goto done;
	}
	/* run_call takes req_bb. */
	result = run_call(call, cq, req_bb, n_md ? &auth : NULL,
			  (size_t)n_md, &resp_bb, st);
	if (result == 0 && st->code == GRPC_STATUS_OK)
		unpack_reply(info, resp_bb, response, st);
done:
	if (n_md) {
		grpc_slice_unref(auth.key);
		grpc_slice_unref(auth.value);
	}
	if (resp_bb)
		grpc_byte_buffer_destroy(resp_bb);
	call_release(call, cq);
	return result;
}

int das_client_call_raw(struct das_client *c, const char *path,
			const void *bytes, size_t len, const char *const *md,
			size_t n_md, int timeout_ms, struct das_call_status *st)
{
	grpc_completion_queue *cq = NULL;
	grpc_call *call = NULL;
	grpc_metadata *meta = NULL;
	grpc_slice method;
	int result = -1;

	memset(st, 0, sizeof(*st));
	if (!path || (len > 0 && !bytes) || (n_md > 0 && !md))
		return local_failure(st, "bad arguments");
	if (n_md > 0) {
		meta = calloc(n_md, sizeof(*meta));
		if (!meta)
			return local_failure(st, "out of memory");
	}
	for (size_t i = 0; i < n_md; i++) {
		meta[i].key = grpc_slice_from_copied_string(md[2 * i]);
		meta[i].value = grpc_slice_from_copied_string(md[2 * i + 1]);
	}

	cq = grpc_completion_queue_create_for_pluck(NULL);
	method = grpc_slice_from_copied_string(path);
	call = grpc_channel_create_call(c->channel, NULL,
					GRPC_PROPAGATE_DEFAULTS, cq, method,
					NULL, deadline_after(timeout_ms), NULL);
	grpc_slice_unref(method);
	if (!call) {
		local_failure(st, "cannot create the call");
		goto done;
	}
	/* The reply, if any, is dropped by run_call (response NULL). */
	result = run_call(call, cq, buffer_from(len ? bytes : "", len), meta,
			  n_md, NULL, st);
done:
	for (size_t i = 0; i < n_md; i++) {
		grpc_slice_unref(meta[i].key);
		grpc_slice_unref(meta[i].value);
	}
	free(meta);
	call_release(call, cq);
	return result;
}
