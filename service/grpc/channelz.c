#include "channelz.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/support/alloc.h>
#include <jansson.h>

/* Sockets asked for per page. */
#define CZ_PAGE 500

/* A JSON document from core, parsed; the text is freed. */
static json_t *parsed(char *text)
{
	json_t *j = text ? json_loads(text, 0, NULL) : NULL;

	gpr_free(text);
	return j;
}

/* Channelz writes 64-bit counters as decimal strings, and leaves out 0. */
static uint64_t counter(json_t *data, const char *name)
{
	const char *s = json_string_value(json_object_get(data, name));

	return s ? strtoull(s, NULL, 10) : 0;
}

/* The id of the process's server, or -1. */
static intptr_t server_id(void)
{
	json_t *j = parsed(grpc_channelz_get_servers(0));
	json_t *first = json_array_get(json_object_get(j, "server"), 0);
	const char *id = json_string_value(
		json_object_get(json_object_get(first, "ref"), "serverId"));
	intptr_t v = id ? (intptr_t)strtoll(id, NULL, 10) : -1;

	json_decref(j);
	return v;
}

/* One socket's peer and stream counts; false when it is gone. */
static bool socket_look(intptr_t id, struct cz_conn *c)
{
	json_t *j = parsed(grpc_channelz_get_socket(id));
	json_t *sock = json_object_get(j, "socket");
	json_t *data = json_object_get(sock, "data");
	const char *peer = json_string_value(
		json_object_get(json_object_get(sock, "ref"), "name"));
	bool is_ok = sock && peer;

	if (is_ok) {
		c->id = id;
		/* "chttp2 ipv4:...": the transport's name, then the peer. */
		const char *sp = strchr(peer, ' ');
		snprintf(c->peer, sizeof(c->peer), "%s", sp ? sp + 1 : peer);
		c->started = counter(data, "streamsStarted");
		c->ended = counter(data, "streamsSucceeded") +
			   counter(data, "streamsFailed");
		c->received = counter(data, "messagesReceived");
	}
	json_decref(j);
	return is_ok;
}

/* Appends the sockets of one page; the id to start the next page from,
 * 0 after the last, -1 on failure. */
static intptr_t page_look(intptr_t server, intptr_t start, struct cz_conn **out,
			  size_t *n, size_t *cap)
{
	json_t *j = parsed(
		grpc_channelz_get_server_sockets(server, start, CZ_PAGE));
	json_t *refs = json_object_get(j, "socketRef"), *ref;
	intptr_t next = json_is_true(json_object_get(j, "end")) ? 0 : start;
	size_t i;

	if (!j)
		return -1;
	json_array_foreach(refs, i, ref)
	{
		const char *s =
			json_string_value(json_object_get(ref, "socketId"));
		intptr_t id = s ? (intptr_t)strtoll(s, NULL, 10) : -1;
		if (id < 0)
			continue;
		if (next)
			next = id + 1;
		if (*n == *cap) {
			size_t grown_cap = *cap ? 2 * *cap : 64;
			struct cz_conn *grown =
				realloc(*out, grown_cap * sizeof(**out));
			if (!grown) {
				next = -1;
				break;
			}
			*out = grown;
			*cap = grown_cap;
		}
		if (socket_look(id, &(*out)[*n]))
			(*n)++;
	}
	/* Not the end, yet nothing on the page: stop rather than ask again. */
	if (next == start)
		next = 0;
	json_decref(j);
	return next;
}

bool cz_server_connections(struct cz_conn **out, size_t *n)
{
	intptr_t server = server_id(), next = 0;
	size_t cap = 0;

	*out = NULL;
	*n = 0;
	if (server < 0)
		return false;
	do
		next = page_look(server, next, out, n, &cap);
	while (next > 0);
	if (next < 0) {
		free(*out);
		*out = NULL;
		*n = 0;
		return false;
	}
	return true;
}
