#include "reflection.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "common/log.h"
#include "common/status.h"
#include "service/grpc/flood_guard.h"
#include "service/grpc/server.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"

/* The bytes of deviceassignment.protoset (cmake/Embed.cmake). */
extern const unsigned char das_protoset[], das_protoset_end[];

/* v1alpha has the same messages, field for field, as v1. */
static const char *const method_paths[] = {
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
};
#define N_METHODS 2
#define CALLS_PER_METHOD 2
/* Streams open at once; past it the one that waited longest is ended
 * (evict_oldest). */
#define MAX_STREAMS 64
/* Longest symbol or file name we look up. */
#define MAX_NAME 512
/* How often the thread looks for streams past their deadline. */
#define DEADLINE_TICK_MS 250

struct file {
	const char *name;
	const uint8_t *bytes; /* the FileDescriptorProto as in the set */
	size_t len;
	Google__Protobuf__FileDescriptorProto *fd;
	size_t *deps; /* indexes of its direct imports */
	size_t n_deps;
};

struct symbol {
	char *name; /* fully qualified, no leading dot */
	size_t file;
};

struct extension {
	const char *extendee; /* fully qualified, no leading dot */
	int32_t number;
	size_t file;
};

struct reflection {
	grpc_server *server;
	void *methods[N_METHODS];
	grpc_completion_queue *cq;
	pthread_t thread;
	bool is_started;
	struct file *files;
	size_t n_files;
	struct symbol *symbols;
	size_t n_symbols, cap_symbols;
	struct extension *exts;
	size_t n_exts, cap_exts;
	char **services;
	size_t n_services;
	int n_streams; /* touched by the thread only */
	int n_ending;  /* of them, cancelled by us and not yet freed */
	struct stream *open; /* the streams taken, for their deadlines */
	struct flood_guard *guard; /* told of requests past a stream's first */
};

enum phase { S_REQUESTED, S_READING, S_WRITING, S_CLOSING };

struct stream {
	struct reflection *r;
	int method;
	enum phase phase;
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array md;
	grpc_byte_buffer *recv;
	grpc_byte_buffer *send;
	grpc_slice status_text;
	bool has_status_text;
	bool is_counted;
	bool is_ending; /* cancelled by us (deadline, or room for another) */
	gpr_timespec since; /* when its current batch started */
	int is_cancelled;
	struct flood_peer peer; /* its connection, for the flood guard */
	unsigned n_requests;
	struct stream *prev, *next; /* in r->open while counted */
};

const unsigned char *reflection_protoset(size_t *len)
{
	*len = (size_t)(das_protoset_end - das_protoset);
	return das_protoset;
}

/* ---- the index ---- */

/* Reads a varint; returns bytes used, 0 when malformed or truncated. */
static size_t read_varint(const uint8_t *p, size_t len, uint64_t *v)
{
	*v = 0;
	for (size_t i = 0; i < len && i < 10; i++) {
		*v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80))
			return i + 1;
	}
	return 0;
}

static int add_symbol(struct reflection *r, const char *scope,
		      const char *name, size_t file)
{
	size_t n;
	char *full;

	if (!name)
		return 0;
	if (r->n_symbols == r->cap_symbols) {
		size_t cap = r->cap_symbols ? r->cap_symbols * 2 : 64;
		struct symbol *s = realloc(r->symbols, cap * sizeof(*s));
		if (!s)
			return -1;
		r->symbols = s;
		r->cap_symbols = cap;
	}
	n = strlen(scope) + 1 + strlen(name) + 1;
	full = malloc(n);
	if (!full)
		return -1;
	snprintf(full, n, "%s%s%s", scope, *scope ? "." : "", name);
	r->symbols[r->n_symbols].name = full;
	r->symbols[r->n_symbols].file = file;
	r->n_symbols++;
	return 0;
}

static int add_extensions(struct reflection *r,
			  Google__Protobuf__FieldDescriptorProto **f, size_t n,
			  const char *scope, size_t file)
{
	for (size_t i = 0; i < n; i++) {
		const char *extendee = f[i]->extendee ? f[i]->extendee : "";
		if (add_symbol(r, scope, f[i]->name, file) != 0)
			return -1;
		if (r->n_exts == r->cap_exts) {
			size_t cap = r->cap_exts ? r->cap_exts * 2 : 16;
			struct extension *e =
				realloc(r->exts, cap * sizeof(*e));
			if (!e)
				return -1;
			r->exts = e;
			r->cap_exts = cap;
		}
		r->exts[r->n_exts].extendee =
			extendee[0] == '.' ? extendee + 1 : extendee;
		r->exts[r->n_exts].number = f[i]->number;
		r->exts[r->n_exts].file = file;
		r->n_exts++;
	}
	return 0;
}

static int index_message(struct reflection *r,
			 const Google__Protobuf__DescriptorProto *m,
			 const char *scope, size_t file)
{
	char inner[MAX_NAME];

	if (add_symbol(r, scope, m->name, file) != 0)
		return -1;
	snprintf(inner, sizeof(inner), "%s%s%s", scope, *scope ? "." : "",
		 m->name ? m->name : "");
	for (size_t i = 0; i < m->n_field; i++)
		if (add_symbol(r, inner, m->field[i]->name, file) != 0)
			return -1;
	for (size_t i = 0; i < m->n_nested_type; i++)
		if (index_message(r, m->nested_type[i], inner, file) != 0)
			return -1;
	for (size_t i = 0; i < m->n_enum_type; i++)
		if (add_symbol(r, inner, m->enum_type[i]->name, file) != 0)
			return -1;
	return add_extensions(r, m->extension, m->n_extension, inner, file);
}

static int index_file(struct reflection *r, size_t k)
{
	Google__Protobuf__FileDescriptorProto *fd = r->files[k].fd;
	const char *pkg = fd->package ? fd->package : "";

	for (size_t i = 0; i < fd->n_message_type; i++)
		if (index_message(r, fd->message_type[i], pkg, k) != 0)
			return -1;
	for (size_t i = 0; i < fd->n_enum_type; i++) {
		Google__Protobuf__EnumDescriptorProto *e = fd->enum_type[i];
		if (add_symbol(r, pkg, e->name, k) != 0)
			return -1;
		/* Enum values live in the enclosing scope (C++ rules). */
		for (size_t v = 0; v < e->n_value; v++)
			if (add_symbol(r, pkg, e->value[v]->name, k) != 0)
				return -1;
	}
	for (size_t i = 0; i < fd->n_service; i++) {
		Google__Protobuf__ServiceDescriptorProto *s = fd->service[i];
		char svc[MAX_NAME];
		if (add_symbol(r, pkg, s->name, k) != 0)
			return -1;
		snprintf(svc, sizeof(svc), "%s%s%s", pkg, *pkg ? "." : "",
			 s->name ? s->name : "");
		for (size_t m = 0; m < s->n_method; m++)
			if (add_symbol(r, svc, s->method[m]->name, k) != 0)
				return -1;
		char **more = realloc(r->services, (r->n_services + 1) *
							   sizeof(*more));
		if (!more)
			return -1;
		r->services = more;
		r->services[r->n_services] = strdup(svc);
		if (!r->services[r->n_services])
			return -1;
		r->n_services++;
	}
	return add_extensions(r, fd->extension, fd->n_extension, pkg, k);
}

static ssize_t find_file(const struct reflection *r, const char *name)
{
	for (size_t i = 0; i < r->n_files; i++)
		if (strcmp(r->files[i].name, name) == 0)
			return (ssize_t)i;
	return -1;
}

/* Splits the FileDescriptorSet (field 1: file, repeated) into its files. */
static int load_index(struct reflection *r, char *err, size_t err_size)
{
	const uint8_t *p = das_protoset;
	size_t len = (size_t)(das_protoset_end - das_protoset), off = 0;

	while (off < len) {
		uint64_t key, n;
		size_t used = read_varint(p + off, len - off, &key);
		if (!used || key != ((1u << 3) | 2))
			goto bad;
		off += used;
		used = read_varint(p + off, len - off, &n);
		if (!used || n > len - off - used)
			goto bad;
		off += used;
		struct file *more = realloc(r->files, (r->n_files + 1) *
							      sizeof(*more));
		if (!more)
			goto bad;
		r->files = more;
		memset(&r->files[r->n_files], 0, sizeof(struct file));
		r->files[r->n_files].bytes = p + off;
		r->files[r->n_files].len = (size_t)n;
		r->files[r->n_files].fd =
			google__protobuf__file_descriptor_proto__unpack(
				NULL, (size_t)n, p + off);
		if (!r->files[r->n_files].fd)
			goto bad;
		r->files[r->n_files].name = r->files[r->n_files].fd->name
						    ? r->files[r->n_files].fd->name
						    : "";
		r->n_files++;
		off += (size_t)n;
	}
	for (size_t i = 0; i < r->n_files; i++) {
		struct file *f = &r->files[i];
		f->deps = calloc(f->fd->n_dependency + 1, sizeof(*f->deps));
		if (!f->deps)
			goto bad;
		for (size_t d = 0; d < f->fd->n_dependency; d++) {
			ssize_t j = find_file(r, f->fd->dependency[d]);
			if (j < 0) {
				snprintf(err, err_size,
					 "reflection: %s imports %s, which is "
					 "not in the descriptor set",
					 f->name, f->fd->dependency[d]);
				return -1;
			}
			f->deps[f->n_deps++] = (size_t)j;
		}
		if (index_file(r, i) != 0)
			goto bad;
	}
	return 0;
bad:
	snprintf(err, err_size, "reflection: cannot read the descriptor set");
	return -1;
}

/* ---- answers ---- */

/* Adds file k and everything it imports, each once, into out/seen. */
static void closure(const struct reflection *r, size_t k, bool *seen,
		    ProtobufCBinaryData *out, size_t *n)
{
	if (seen[k])
		return;
	seen[k] = true;
	out[(*n)++] = (ProtobufCBinaryData){
		.len = r->files[k].len, .data = (uint8_t *)r->files[k].bytes};
	for (size_t d = 0; d < r->files[k].n_deps; d++)
		closure(r, r->files[k].deps[d], seen, out, n);
}

static ssize_t file_of_symbol(const struct reflection *r, const char *name)
{
	if (name[0] == '.')
		name++;
	for (size_t i = 0; i < r->n_symbols; i++)
		if (strcmp(r->symbols[i].name, name) == 0)
			return (ssize_t)r->symbols[i].file;
	return -1;
}

static ssize_t file_of_extension(const struct reflection *r, const char *type,
				 int32_t number)
{
	if (type[0] == '.')
		type++;
	for (size_t i = 0; i < r->n_exts; i++)
		if (r->exts[i].number == number &&
		    strcmp(r->exts[i].extendee, type) == 0)
			return (ssize_t)r->exts[i].file;
	return -1;
}

/*
 * Builds the serialized answer to one request. Returns a malloc'd buffer,
 * or NULL when memory ran out.
 */
/* One answer being built: the response, its parts, what they own. */
struct answer {
	Grpc__Reflection__V1__ServerReflectionResponse resp;
	Grpc__Reflection__V1__FileDescriptorResponse files;
	Grpc__Reflection__V1__ListServiceResponse list;
	Grpc__Reflection__V1__ErrorResponse error;
	Grpc__Reflection__V1__ExtensionNumberResponse numbers;
	Grpc__Reflection__V1__ServiceResponse *svc, **svcp;
	ProtobufCBinaryData *blobs;
	int32_t *nums;
	bool *seen;
};

static void answer_error(struct answer *a, int code, const char *message)
{
	a->error.error_code = code;
	a->error.error_message = (char *)message;
	a->resp.message_response_case =
		GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
	a->resp.error_response = &a->error;
}

/* The service names. -1: out of memory. */
static int answer_services(const struct reflection *r, struct answer *a)
{
	a->svc = calloc(r->n_services + 1, sizeof(*a->svc));
	a->svcp = calloc(r->n_services + 1, sizeof(*a->svcp));
	if (!a->svc || !a->svcp)
		return -1;
	for (size_t i = 0; i < r->n_services; i++) {
		grpc__reflection__v1__service_response__init(&a->svc[i]);
		a->svc[i].name = r->services[i];
		a->svcp[i] = &a->svc[i];
	}
	a->list.n_service = r->n_services;
	a->list.service = a->svcp;
	a->resp.message_response_case =
		GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
	a->resp.list_services_response = &a->list;
	return 0;
}

/* The extension numbers of a type (NOT_FOUND for an unknown type). -1:
 * out of memory. */
static int answer_numbers(const struct reflection *r, const char *type,
			  struct answer *a)
{
	if (type[0] == '.')
		type++;
	if (file_of_symbol(r, type) < 0) {
		answer_error(a, 5 /* NOT_FOUND */, "type not found");
		return 0;
	}
	a->nums = calloc(r->n_exts + 1, sizeof(*a->nums));
	if (!a->nums)
		return -1;
	for (size_t i = 0; i < r->n_exts; i++)
		if (strcmp(r->exts[i].extendee, type) == 0)
			a->nums[a->numbers.n_extension_number++] =
				r->exts[i].number;
	a->numbers.base_type_name = (char *)type;
	a->numbers.extension_number = a->nums;
	a->resp.message_response_case =
		GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
	a->resp.all_extension_numbers_response = &a->numbers;
	return 0;
}

/* File k with every file it imports, or NOT_FOUND with what (k < 0). -1:
 * out of memory. */
static int answer_files(const struct reflection *r, ssize_t k,
			const char *what, struct answer *a)
{
	size_t n = 0;

	if (k < 0) {
		answer_error(a, 5 /* NOT_FOUND */, what);
		return 0;
	}
	a->seen = calloc(r->n_files, sizeof(*a->seen));
	a->blobs = calloc(r->n_files, sizeof(*a->blobs));
	if (!a->seen || !a->blobs)
		return -1;
	closure(r, (size_t)k, a->seen, a->blobs, &n);
	a->files.n_file_descriptor_proto = n;
	a->files.file_descriptor_proto = a->blobs;
	a->resp.message_response_case =
		GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
	a->resp.file_descriptor_response = &a->files;
	return 0;
}

/* Decides the answer to req into a. -1: out of memory. */
static int answer_build(const struct reflection *r,
			Grpc__Reflection__V1__ServerReflectionRequest *req,
			struct answer *a)
{
	Grpc__Reflection__V1__ExtensionRequest *ext;

	switch (req->message_request_case) {
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
		return answer_services(r, a);
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
		return answer_files(r, find_file(r, req->file_by_filename),
				    "file not found", a);
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
		return answer_files(r,
				    file_of_symbol(r,
						   req->file_containing_symbol),
				    "symbol not found", a);
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
		ext = req->file_containing_extension;
		return answer_files(r,
				    file_of_extension(r, ext->containing_type,
						      ext->extension_number),
				    "extension not found", a);
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
		return answer_numbers(r, req->all_extension_numbers_of_type,
				      a);
	default:
		answer_error(a, 12 /* UNIMPLEMENTED */,
			     "request type not implemented");
		return 0;
	}
}

static uint8_t *answer(const struct reflection *r,
		       Grpc__Reflection__V1__ServerReflectionRequest *req,
		       size_t *len)
{
	struct answer a = {
		.resp = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT,
		.files = GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT,
		.list = GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT,
		.error = GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT,
		.numbers =
			GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT,
	};
	uint8_t *out = NULL;

	a.resp.valid_host = req->host;
	a.resp.original_request = req;
	if (answer_build(r, req, &a) == 0) {
		*len = grpc__reflection__v1__server_reflection_response__get_packed_size(
			&a.resp);
		out = malloc(*len ? *len : 1);
		if (out)
			grpc__reflection__v1__server_reflection_response__pack(
				&a.resp, out);
	}
	free(a.svc);
	free(a.svcp);
	free(a.blobs);
	free(a.seen);
	free(a.nums);
	return out;
}

/* ---- the stream loop ---- */

static void stream_free(struct stream *s)
{
	if (s->is_counted) {
		s->r->n_streams--;
		if (s->is_ending)
			s->r->n_ending--;
		if (s->prev)
			s->prev->next = s->next;
		else
			s->r->open = s->next;
		if (s->next)
			s->next->prev = s->prev;
	}
	grpc_metadata_array_destroy(&s->md);
	if (s->recv)
		grpc_byte_buffer_destroy(s->recv);
	if (s->send)
		grpc_byte_buffer_destroy(s->send);
	if (s->has_status_text)
		grpc_slice_unref(s->status_text);
	if (s->call)
		grpc_call_unref(s->call); /* cancels it when not finished */
	free(s);
}

static int request_stream(struct reflection *r, int method)
{
	struct stream *s = calloc(1, sizeof(*s));

	if (!s)
		return -1;
	s->r = r;
	s->method = method;
	s->phase = S_REQUESTED;
	grpc_metadata_array_init(&s->md);
	if (grpc_server_request_registered_call(
		    r->server, r->methods[method], &s->call, &s->deadline,
		    &s->md, NULL, r->cq, r->cq, s) != GRPC_CALL_OK) {
		stream_free(s);
		return -1;
	}
	return 0;
}

static void start(struct stream *s, grpc_op *ops, size_t n, enum phase next)
{
	s->phase = next;
	s->since = gpr_now(GPR_CLOCK_MONOTONIC);
	if (grpc_call_start_batch(s->call, ops, n, s, NULL) != GRPC_CALL_OK) {
		das_log(DAS_LOG_ERROR, "reflection: could not start a batch");
		stream_free(s);
	}
}

static void finish(struct stream *s, grpc_status_code code, const char *msg)
{
	grpc_op ops[3];
	size_t n = 0;

	memset(ops, 0, sizeof(ops));
	s->status_text = grpc_slice_from_copied_string(msg);
	s->has_status_text = true;
	if (code != GRPC_STATUS_OK && s->phase == S_REQUESTED) {
		ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
		n++;
	}
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = code;
	ops[n].data.send_status_from_server.status_details = &s->status_text;
	n++;
	ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[n].data.recv_close_on_server.cancelled = &s->is_cancelled;
	n++;
	start(s, ops, n, S_CLOSING);
}

static void read_next(struct stream *s, bool with_initial_metadata)
{
	grpc_op ops[2];
	size_t n = 0;

	memset(ops, 0, sizeof(ops));
	if (with_initial_metadata) {
		ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
		n++;
	}
	ops[n].op = GRPC_OP_RECV_MESSAGE;
	ops[n].data.recv_message.recv_message = &s->recv;
	n++;
	start(s, ops, n, S_READING);
}

static void on_message(struct stream *s)
{
	Grpc__Reflection__V1__ServerReflectionRequest *req = NULL;
	uint8_t *out = NULL;
	size_t out_len = 0;
	grpc_op op;

	if (!s->recv) {
		/* The client half-closed: the stream is over. */
		finish(s, GRPC_STATUS_OK, "");
		return;
	}
	/* Core counts every request a call reads; the guard counts streams
	 * by their first (flood_guard.h, streams held without a request). */
	if (s->n_requests++ > 0)
		flood_guard_more_requests(s->r->guard, &s->peer);
	{
		/* Copied out, or inflated by the server's bounded inflater
		 * (core's own decompression is off). */
		char detail[128] = "";
		uint8_t *bytes = NULL;
		size_t len = 0;
		enum das_status st = server_payload_bytes(
			s->recv, &bytes, &len, detail, sizeof(detail));
		grpc_byte_buffer_destroy(s->recv);
		s->recv = NULL;
		if (st != DAS_OK) {
			const struct das_status_row *row = das_status_row(st);
			finish(s, (grpc_status_code)row->grpc_code,
			       detail[0] ? detail : row->message);
			return;
		}
		req = grpc__reflection__v1__server_reflection_request__unpack(
			NULL, len, bytes);
		free(bytes);
	}
	if (!req) {
		finish(s, GRPC_STATUS_INVALID_ARGUMENT,
		       "not a ServerReflectionRequest");
		return;
	}
	if (strlen(req->host) > MAX_NAME ||
	    (req->message_request_case ==
		     GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL &&
	     strlen(req->file_containing_symbol) > MAX_NAME)) {
		grpc__reflection__v1__server_reflection_request__free_unpacked(
			req, NULL);
		finish(s, GRPC_STATUS_INVALID_ARGUMENT, "name too long");
		return;
	}
	out = answer(s->r, req, &out_len);
	grpc__reflection__v1__server_reflection_request__free_unpacked(req,
								       NULL);
	if (!out) {
		finish(s, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	grpc_slice body = grpc_slice_from_copied_buffer((const char *)out,
							out_len);
	free(out);
	s->send = grpc_raw_byte_buffer_create(&body, 1);
	grpc_slice_unref(body);
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_SEND_MESSAGE;
	op.data.send_message.send_message = s->send;
	start(s, &op, 1, S_WRITING);
}

/* Cancels s (counted, not ending yet); its batch's completion frees it. */
static void end_stream(struct stream *s, grpc_status_code code,
		       const char *message)
{
	s->is_ending = true;
	s->r->n_ending++;
	grpc_call_cancel_with_status(s->call, code, message, NULL);
}

/*
 * Past the cap, the stream whose batch has waited longest (for its
 * client's next request, or for its client to take an answer) ends
 * RESOURCE_EXHAUSTED and newcomer takes its place. So a client that opens
 * streams and leaves them idle cannot keep reflection from everyone else:
 * to hold the places it must open new streams faster than others do.
 * Returns false when every other stream is ending already.
 */
static bool evict_oldest(struct reflection *r, const struct stream *newcomer)
{
	struct stream *oldest = NULL;

	for (struct stream *s = r->open; s; s = s->next)
		if (s != newcomer && !s->is_ending &&
		    (!oldest || gpr_time_cmp(s->since, oldest->since) < 0))
			oldest = s;
	if (!oldest)
		return false;
	end_stream(oldest, GRPC_STATUS_RESOURCE_EXHAUSTED,
		   "another reflection stream took the place of this one, "
		   "which had waited longest (64 open at most)");
	return true;
}

static void on_event(struct reflection *r, struct stream *s, bool ok)
{
	if (!ok) {
		/* Cancelled, deadline, shutdown or a broken connection. */
		stream_free(s);
		return;
	}
	switch (s->phase) {
	case S_REQUESTED: {
		request_stream(r, s->method); /* keep the method armed */
		char *peer = grpc_call_get_peer(s->call);
		if (!peer || !flood_peer_parse(peer, &s->peer))
			memset(&s->peer, 0, sizeof(s->peer));
		gpr_free(peer);
		s->is_counted = true;
		r->n_streams++;
		s->next = r->open;
		if (r->open)
			r->open->prev = s;
		r->open = s;
		if (r->n_streams - r->n_ending > MAX_STREAMS &&
		    !evict_oldest(r, s)) {
			finish(s, GRPC_STATUS_RESOURCE_EXHAUSTED,
			       "too many reflection streams");
			return;
		}
		read_next(s, true);
		break;
	}
	case S_READING:
		on_message(s);
		break;
	case S_WRITING:
		grpc_byte_buffer_destroy(s->send);
		s->send = NULL;
		read_next(s, false);
		break;
	case S_CLOSING:
		stream_free(s);
		break;
	}
}

/*
 * Ends the streams whose client's deadline has passed (core's own timer
 * for each call is off: server.c, core_server_create). Cancelling ends
 * whatever batch is in flight; its completion frees the stream.
 */
static void end_expired(struct reflection *r, gpr_timespec now)
{
	char text[128];

	das_status_format(DAS_DEADLINE_EXCEEDED, NULL, text, sizeof(text));
	for (struct stream *s = r->open; s; s = s->next) {
		if (s->is_ending || s->phase == S_CLOSING ||
		    gpr_time_cmp(gpr_convert_clock_type(s->deadline,
							GPR_CLOCK_MONOTONIC),
				 now) > 0)
			continue;
		end_stream(s,
			   (grpc_status_code)das_status_row(
				   DAS_DEADLINE_EXCEEDED)
				   ->grpc_code,
			   text);
	}
}

static gpr_timespec after_ms(gpr_timespec t, int ms)
{
	return gpr_time_add(t, gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static void *loop(void *arg)
{
	struct reflection *r = arg;
	gpr_timespec next_tick =
		after_ms(gpr_now(GPR_CLOCK_MONOTONIC), DEADLINE_TICK_MS);

	for (;;) {
		grpc_event ev = grpc_completion_queue_next(
			r->cq, r->open ? next_tick
				       : gpr_inf_future(GPR_CLOCK_MONOTONIC),
			NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type == GRPC_OP_COMPLETE)
			on_event(r, ev.tag, ev.success != 0);
		gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
		if (gpr_time_cmp(now, next_tick) >= 0) {
			end_expired(r, now);
			next_tick = after_ms(now, DEADLINE_TICK_MS);
		}
	}
	return NULL;
}

int reflection_register(grpc_server *server, struct reflection **out,
			char *err, size_t err_size)
{
	struct reflection *r = calloc(1, sizeof(*r));

	*out = NULL;
	if (!r) {
		snprintf(err, err_size, "out of memory");
		return -1;
	}
	r->server = server;
	if (load_index(r, err, err_size) != 0) {
		reflection_stop(r);
		return -1;
	}
	for (int m = 0; m < N_METHODS; m++)
		r->methods[m] = grpc_server_register_method(
			server, method_paths[m], NULL, GRPC_SRM_PAYLOAD_NONE,
			0);
	r->cq = grpc_completion_queue_create_for_next(NULL);
	grpc_server_register_completion_queue(server, r->cq, NULL);
	*out = r;
	return 0;
}

int reflection_start(struct reflection *r, struct flood_guard *guard, char *err,
		     size_t err_size)
{
	r->guard = guard;
	for (int m = 0; m < N_METHODS; m++)
		for (int k = 0; k < CALLS_PER_METHOD; k++)
			if (request_stream(r, m) != 0) {
				snprintf(err, err_size,
					 "reflection: cannot request calls");
				return -1;
			}
	if (pthread_create(&r->thread, NULL, loop, r) != 0) {
		snprintf(err, err_size, "reflection: cannot start its thread");
		return -1;
	}
	r->is_started = true;
	return 0;
}

void reflection_stop(struct reflection *r)
{
	if (!r)
		return;
	if (r->cq) {
		grpc_completion_queue_shutdown(r->cq);
		if (r->is_started) {
			pthread_join(r->thread, NULL);
		} else {
			for (;;) {
				grpc_event ev = grpc_completion_queue_next(
					r->cq,
					gpr_inf_future(GPR_CLOCK_REALTIME),
					NULL);
				if (ev.type == GRPC_QUEUE_SHUTDOWN)
					break;
				if (ev.type == GRPC_OP_COMPLETE)
					stream_free(ev.tag);
			}
		}
		grpc_completion_queue_destroy(r->cq);
	}
	for (size_t i = 0; i < r->n_files; i++) {
		google__protobuf__file_descriptor_proto__free_unpacked(
			r->files[i].fd, NULL);
		free(r->files[i].deps);
	}
	for (size_t i = 0; i < r->n_symbols; i++)
		free(r->symbols[i].name);
	for (size_t i = 0; i < r->n_services; i++)
		free(r->services[i]);
	free(r->files);
	free(r->symbols);
	free(r->exts);
	free(r->services);
	free(r);
}
