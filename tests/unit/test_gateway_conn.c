/*
 * gateway/http/conn.c: the connection engine without sockets -- what it
 * asks the loop to do, and the exact bytes it answers, for keep-alive,
 * pipelining, Expect: 100-continue, HEAD, half-close, drain and refusal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/log.h"
#include "common/status.h"
#include "gateway/http/conn.h"
#include "gateway/openapi.h"

static atomic_ullong counter;
static struct gw_conn_config cfg = {.id_counter = &counter};
static struct gw_conn c;
static char out[262144];
static size_t out_len;

static int setup(void **state)
{
	(void)state;
	das_log_set_level(DAS_LOG_ERROR);
	out_len = 0;
	out[0] = '\0';
	return gw_conn_init(&c, &cfg);
}

static int teardown(void **state)
{
	(void)state;
	gw_conn_release(&c);
	return 0;
}

static void feed(const char *s)
{
	size_t avail, n = strlen(s);
	char *p = gw_conn_in_space(&c, &avail);

	assert_non_null(p);
	assert_true(n <= avail);
	memcpy(p, s, n);
	gw_conn_in_commit(&c, n);
}

/* Advances, collecting output, until the engine wants something else. */
static enum gw_conn_step run(void)
{
	for (;;) {
		enum gw_conn_step st = gw_conn_advance(&c);
		size_t n;
		const char *p;

		if (st != GW_CONN_WRITE)
			return st;
		p = gw_conn_output(&c, &n);
		assert_true(out_len + n < sizeof(out));
		memcpy(out + out_len, p, n);
		out_len += n;
		out[out_len] = '\0';
		gw_conn_output_done(&c, n);
	}
}

static size_t count(const char *what)
{
	size_t n = 0;

	for (const char *p = out; (p = strstr(p, what)); p += strlen(what))
		n++;
	return n;
}

static void keep_alive_and_pipelining(void **state)
{
	(void)state;
	feed("GET /healthz HTTP/1.1\r\nHost: a\r\nX-Request-Id: one\r\n\r\n"
	     "HEAD /healthz HTTP/1.1\r\nHost: a\r\nX-Request-Id: two\r\n\r\n"
	     "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	assert_int_equal(run(), GW_CONN_READ);
	assert_int_equal(count("HTTP/1.1 200 OK\r\n"), 3);
	assert_int_equal(count("Content-Length: 15\r\n"), 3);
	/* HEAD: the length of the GET answer, no body. */
	assert_int_equal(count("{\"status\":\"ok\"}"), 2);
	assert_non_null(strstr(out, "X-Request-Id: one\r\n"));
	assert_true(strstr(out, "X-Request-Id: one") <
		    strstr(out, "X-Request-Id: two"));
	assert_int_equal(count("Connection: keep-alive\r\n"), 1);
	assert_int_equal(count("Connection: close"), 0);
	/* The client half-closes: the engine closes after its answers. */
	gw_conn_in_eof(&c);
	assert_int_equal(run(), GW_CONN_CLOSE);
}

static void expect_continue_then_call(void **state)
{
	(void)state;
	feed("PUT /v1.0/customers/t/users/u/devices/pbx/d/assign HTTP/1.1\r\n"
	     "Host: gw.example\r\nContent-Type: application/json\r\n"
	     "Expect: 100-continue\r\nContent-Length: 24\r\n\r\n");
	assert_int_equal(run(), GW_CONN_READ);
	assert_string_equal(out, "HTTP/1.1 100 Continue\r\n\r\n");
	feed("{\"clientType\":\"desktop\"}");
	assert_int_equal(run(), GW_CONN_CALL);
	assert_string_equal(c.call.tenant, "t");
	assert_null(c.call.authorization);
	/* The client half-closes while the call is out: it still gets the
	 * answer. */
	gw_conn_in_eof(&c);
	assert_int_equal(run(), GW_CONN_WAIT);
	memset(&c.outcome, 0, sizeof(c.outcome));
	c.outcome.grpc_code = DAS_GRPC_OK;
	gw_conn_call_done(&c, true);
	assert_int_equal(run(), GW_CONN_CLOSE);
	assert_non_null(strstr(out, "HTTP/1.1 201 Created\r\n"));
	assert_non_null(strstr(
		out, "Location: http://gw.example/v1.0/customers/t/users/u/"
		     "devices/pbx/d/assign\r\n"));
}

static void early_answer_closes(void **state)
{
	(void)state;
	/* 415 before the body is read: the body would be taken for the next
	 * request, so the connection ends. */
	feed("PUT /v1.0/customers/t/users/u/devices/pbx/d/assign HTTP/1.1\r\n"
	     "Host: a\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n"
	     "{}GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
	assert_int_equal(run(), GW_CONN_CLOSE);
	assert_int_equal(count("HTTP/1.1 "), 1);
	assert_non_null(strstr(out, "HTTP/1.1 415 "));
	assert_non_null(strstr(out, "Connection: close\r\n"));
}

static void no_body_error_keeps_alive(void **state)
{
	(void)state;
	feed("DELETE /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
	     "GET /nope HTTP/1.1\r\nHost: a\r\n\r\n");
	assert_int_equal(run(), GW_CONN_READ);
	assert_non_null(strstr(out, "HTTP/1.1 405 "));
	assert_non_null(strstr(out, "\r\nAllow: GET, HEAD\r\n"));
	assert_non_null(strstr(out, "HTTP/1.1 404 "));
}

static void drain_and_refuse(void **state)
{
	(void)state;
	feed("GET /readyz HTTP/1.1\r\nHost: a\r\n\r\n");
	assert_int_equal(run(), GW_CONN_CALL);
	gw_conn_drain(&c);
	assert_int_equal(run(), GW_CONN_WAIT);
	memset(&c.outcome, 0, sizeof(c.outcome));
	c.outcome.grpc_code = DAS_GRPC_UNAVAILABLE;
	gw_conn_call_done(&c, true);
	assert_int_equal(run(), GW_CONN_CLOSE);
	assert_non_null(strstr(out, "HTTP/1.1 503 "));
	assert_non_null(strstr(out, "Connection: close\r\n"));
	assert_null(strstr(out, "Retry-After"));
}

/* Long bodies (a docs page, metrics) are written from where they are,
 * and what is pipelined behind them comes after them. */
static void long_bodies_are_not_copied(void **state)
{
	static char page[100000];
	char *owned = malloc(20000);
	const char *body;

	(void)state;
	assert_non_null(owned);
	memset(page, 'p', sizeof(page));
	memset(owned, 'o', 20000);
	feed("GET /readyz HTTP/1.1\r\nHost: a\r\n\r\n"
	     "GET /readyz HTTP/1.1\r\nHost: a\r\n\r\n"
	     "HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
	/* Two requests a local route would answer (stand-ins here). */
	assert_int_equal(run(), GW_CONN_CALL);
	gw_conn_answer_raw(&c, 200, "text/html", "X-A: b\r\n", page,
			   sizeof(page), false);
	assert_int_equal(run(), GW_CONN_CALL);
	gw_conn_answer_raw(&c, 200, "text/plain", NULL, owned, 20000, true);
	assert_int_equal(run(), GW_CONN_READ);
	assert_true(out_len > sizeof(page) + 20000);
	assert_non_null(strstr(out, "Content-Type: text/html\r\n"
				    "Content-Length: 100000\r\n"));
	assert_non_null(strstr(out, "\r\nX-A: b\r\n"));
	body = strstr(out, "\r\n\r\n") + 4;
	for (size_t i = 0; i < sizeof(page); i++)
		assert_int_equal(body[i], 'p');
	assert_true(strncmp(body + sizeof(page), "HTTP/1.1 200 OK\r\n", 17) ==
		    0);
	body = strstr(body + sizeof(page), "\r\n\r\n") + 4;
	assert_int_equal(body[0], 'o');
	assert_int_equal(body[19999], 'o');
	assert_true(strncmp(body + 20000, "HTTP/1.1 200 OK\r\n", 17) == 0);
	/* The HEAD answer ends the output: no body. */
	assert_string_equal(strstr(body + 20000, "\r\n\r\n"), "\r\n\r\n");
}

/* /openapi.json and the docs files (docs.c) in order with other answers. */
static void static_answers_in_order(void **state)
{
	size_t doc_len = 0;
	char *doc = gw_openapi_json(&doc_len);
	char *body;

	(void)state;
	assert_non_null(doc);
	assert_true(doc_len > GW_CONN_OUT_MAX); /* not copied: written as is */
	feed("GET /openapi.json HTTP/1.1\r\nHost: a\r\n\r\n"
	     "HEAD /openapi.json HTTP/1.1\r\nHost: a\r\n\r\n"
	     "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
	     "GET /docs/nope.js HTTP/1.1\r\nHost: a\r\n\r\n");
	assert_int_equal(run(), GW_CONN_READ);
	assert_int_equal(count("HTTP/1.1 200 OK\r\n"), 3);
	assert_int_equal(count("Content-Security-Policy: default-src 'none'"),
			 2);
	assert_int_equal(count("X-Content-Type-Options: nosniff\r\n"), 2);
	assert_int_equal(count("Content-Type: application/json; charset="
			       "utf-8\r\nContent-Length: "),
			 4);
	/* The document once (HEAD has no body), whole, before /healthz. */
	body = strstr(out, "\r\n\r\n") + 4;
	assert_memory_equal(body, doc, doc_len);
	assert_int_equal(count("\"openapi\":\"3.0.3\""), 1);
	assert_true(strstr(out, "HTTP/1.1 200 OK\r\n") < body);
	assert_true(strstr(body + doc_len, "{\"status\":\"ok\"}") != NULL);
	assert_non_null(strstr(out, "HTTP/1.1 404 Not Found\r\n"));
	free(doc);
}

static void refusal_has_retry_after(void **state)
{
	(void)state;
	gw_conn_refuse(&c);
	assert_int_equal(run(), GW_CONN_CLOSE);
	assert_non_null(strstr(out, "HTTP/1.1 503 Service Unavailable\r\n"));
	assert_non_null(strstr(out, "\r\nRetry-After: 1\r\n"));
	assert_non_null(strstr(out, "\r\nConnection: close\r\n"));
	assert_non_null(strstr(out, "\"error\":503"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(keep_alive_and_pipelining,
						setup, teardown),
		cmocka_unit_test_setup_teardown(expect_continue_then_call,
						setup, teardown),
		cmocka_unit_test_setup_teardown(early_answer_closes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(no_body_error_keeps_alive,
						setup, teardown),
		cmocka_unit_test_setup_teardown(drain_and_refuse, setup,
						teardown),
		cmocka_unit_test_setup_teardown(long_bodies_are_not_copied,
						setup, teardown),
		cmocka_unit_test_setup_teardown(static_answers_in_order, setup,
						teardown),
		cmocka_unit_test_setup_teardown(refusal_has_retry_after, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
