/*
 * Fuzz target: the access line (das_log_call) in both formats, with the
 * strings a client controls (path, request id, token subject) of any
 * bytes and any length, up to and past their bounds. The line is caught
 * on a memory file standing in for stderr and checked: one line, no raw
 * control byte in it, and in JSON a single object that jansson reads
 * with the fields that were given.
 *
 * Input: a flags byte (format, aborted, path cut, and which of path,
 * request id, subject, method and route are there), the HTTP status and
 * duration (2 bytes each), then for each of the seven strings a 2-byte
 * length (code and reason are there when theirs is not 0); the rest of the
 * input is the bytes the strings are cut from, repeated as far as a length
 * asks, so a short input can make a 60 KiB path. A crash inside the call
 * reports on the memory file, not the terminal: run the saved input under gdb.
 */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { F_PATH, F_ID, F_SUB, F_METHOD, F_ROUTE, F_CODE, F_REASON, N_FIELDS };

#define HEAD	(1 + 2 + 2 + 2 * N_FIELDS)
#define OUT_MAX (1 << 20)

static char out[OUT_MAX + 1];

/* n bytes of pool repeated, NUL-terminated; NULL when pool is empty. */
static char *repeat(const uint8_t *pool, size_t pool_len, size_t n)
{
	char *s;

	if (pool_len == 0)
		return NULL;
	s = malloc(n + 1);
	if (!s)
		abort();
	for (size_t i = 0; i < n; i++)
		s[i] = (char)pool[i % pool_len];
	s[n] = '\0';
	return s;
}

/* Runs c with stderr on a memory file; returns the bytes written. */
static size_t catch_line(const struct das_log_call *c)
{
	static int mem = -1;
	int saved = dup(STDERR_FILENO);
	ssize_t n;

	if (mem < 0)
		mem = memfd_create("fuzz_log", 0);
	if (mem < 0 || saved < 0 || ftruncate(mem, 0) != 0 ||
	    lseek(mem, 0, SEEK_SET) != 0 || dup2(mem, STDERR_FILENO) < 0)
		abort();
	das_log_call(c);
	das_log_flush();
	if (dup2(saved, STDERR_FILENO) < 0)
		abort();
	close(saved);
	n = pread(mem, out, OUT_MAX, 0);
	if (n < 0)
		abort();
	out[n] = '\0';
	return (size_t)n;
}

static void check_json(const char *line, size_t n, const struct das_log_call *c)
{
	json_error_t e;
	json_t *o = json_loadb(line, n, JSON_ALLOW_NUL, &e);

	if (!o || !json_is_object(o) ||
	    !json_is_number(json_object_get(o, "duration_ms")) ||
	    (c->path && !json_is_string(json_object_get(o, "path"))) ||
	    (c->request_id &&
	     !json_is_string(json_object_get(o, "request_id"))) ||
	    (c->sub && !json_is_string(json_object_get(o, "sub"))) ||
	    (c->method && !json_is_string(json_object_get(o, "method"))))
		abort();
	json_decref(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s[N_FIELDS] = {0};
	size_t len[N_FIELDS];
	struct das_log_call c;
	const uint8_t *pool;
	size_t pool_len, n;
	uint8_t flags;
	bool is_json;

	if (size < HEAD)
		return 0;
	flags = data[0];
	pool = data + HEAD;
	pool_len = size - HEAD;
	for (int i = 0; i < N_FIELDS; i++) {
		len[i] = (size_t)data[5 + 2 * i] | (size_t)data[6 + 2 * i] << 8;
		/* path, id, sub, method, route: there when their flag bit
		 * (3 to 7) is set; code and reason when their length is not 0
		 */
		if (i < 5 ? (flags >> (3 + i)) & 1 : len[i] > 0)
			s[i] = repeat(pool, pool_len, len[i]);
	}
	is_json = flags & 1;
	memset(&c, 0, sizeof(c));
	c.is_aborted = flags & 2;
	c.is_path_cut = flags & 4;
	c.http_status = (int)((size_t)data[1] | (size_t)data[2] << 8) % 1000;
	c.duration_ms = (double)((size_t)data[3] | (size_t)data[4] << 8) / 7.0;
	c.path = s[F_PATH];
	c.path_len = s[F_PATH] ? len[F_PATH] : 0;
	c.request_id = s[F_ID];
	c.request_id_len = s[F_ID] ? len[F_ID] : 0;
	c.sub = s[F_SUB];
	c.sub_len = s[F_SUB] ? len[F_SUB] : 0;
	c.method = s[F_METHOD];
	c.route = s[F_ROUTE];
	c.code = s[F_CODE];
	c.reason = s[F_REASON];

	das_log_set_level(DAS_LOG_INFO);
	das_log_set_format(is_json ? DAS_LOG_JSON : DAS_LOG_TEXT);
	n = catch_line(&c);
	/* one line, ended by its only newline, every control byte escaped */
	if (n == 0 || out[n - 1] != '\n')
		abort();
	for (size_t i = 0; i + 1 < n; i++) {
		unsigned char b = (unsigned char)out[i];
		if (b < 0x20 || b == 0x7f)
			abort();
	}
	if (is_json)
		check_json(out, n - 1, &c);
	for (int i = 0; i < N_FIELDS; i++)
		free(s[i]);
	return 0;
}
