/*
 * common/log.c: text and JSON lines, access lines with hostile paths and
 * ids (bounded, escaped, one line, valid JSON), levels and buffering.
 * stderr is redirected to a temporary file for each test.
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/log.h"

static char path[] = "/tmp/das-test-log.XXXXXX";
static int saved_stderr = -1;

static int capture(void **state)
{
	int fd;

	(void)state;
	fflush(stderr);
	memcpy(path, "/tmp/das-test-log.XXXXXX", sizeof(path));
	fd = mkstemp(path);
	assert_true(fd >= 0);
	saved_stderr = dup(2);
	dup2(fd, 2);
	close(fd);
	das_log_set_level(DAS_LOG_INFO);
	das_log_set_format(DAS_LOG_TEXT);
	das_log_set_program("t-prog");
	return 0;
}

static int release(void **state)
{
	(void)state;
	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	unlink(path);
	return 0;
}

/* The captured lines, NUL-terminated (malloc'd). */
static char *captured(void)
{
	FILE *f;
	long n;
	char *text;

	fflush(stderr);
	f = fopen(path, "r");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	text = calloc(1, (size_t)n + 1);
	assert_non_null(text);
	assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return text;
}

static size_t count_lines(const char *text)
{
	size_t n = 0;

	for (; *text; text++)
		n += *text == '\n';
	return n;
}

static void json_message_line_parses(void **state)
{
	json_error_t e;
	json_t *j;
	char *text;

	(void)state;
	das_log_set_format(DAS_LOG_JSON);
	das_log(DAS_LOG_WARN, "quote \" backslash \\ tab \t byte \xff end");
	das_log(DAS_LOG_DEBUG, "dropped below the level");
	text = captured();
	assert_int_equal(count_lines(text), 1);
	j = json_loads(text, 0, &e);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "level")),
			    "warn");
	assert_string_equal(json_string_value(json_object_get(j, "program")),
			    "t-prog");
	assert_string_equal(json_string_value(json_object_get(j, "msg")),
			    "quote \" backslash \\ tab \t byte \xc3\xbf end");
	assert_int_equal(strlen(json_string_value(json_object_get(j, "time"))),
			 28);
	json_decref(j);
	free(text);
}

static void json_access_line_is_whole_bounded_and_escaped(void **state)
{
	char long_path[DAS_LOG_PATH_MAX + 500];
	const char hostile[] = "/v1.0/x\"y\\z\n{\"forged\":1}\x01\xc3";
	json_error_t e;
	json_t *j;
	char *text;

	(void)state;
	das_log_set_format(DAS_LOG_JSON);
	/* A whole long path, longer than the old 95-character cut. */
	memset(long_path, 'a', sizeof(long_path));
	long_path[0] = '/';
	struct das_log_call c = {
		.request_id = "rid-1234",
		.request_id_len = 8,
		.method = "PUT",
		.path = long_path,
		.path_len = 300,
		.route = "assign",
		.http_status = 201,
		.duration_ms = 1.5,
	};
	das_log_call(&c);
	c.path = long_path;
	c.path_len = sizeof(long_path);
	das_log_call(&c);
	c.path = hostile;
	c.path_len = sizeof(hostile) - 1;
	c.sub = "alice";
	c.sub_len = 5;
	c.code = "FAILED_PRECONDITION";
	c.reason = "CHARGES_NOT_ACCEPTED";
	das_log_call(&c);
	text = captured();
	assert_int_equal(count_lines(text), 3);

	char *line = text, *nl = strchr(line, '\n');
	*nl = '\0';
	j = json_loads(line, 0, &e);
	assert_non_null(j);
	assert_int_equal(strlen(json_string_value(json_object_get(j, "path"))),
			 300);
	assert_string_equal(json_string_value(json_object_get(j, "request_id")),
			    "rid-1234");
	assert_int_equal(json_integer_value(json_object_get(j, "status")), 201);
	assert_null(json_object_get(j, "truncated"));
	assert_null(json_object_get(j, "sub"));
	json_decref(j);

	line = nl + 1;
	nl = strchr(line, '\n');
	*nl = '\0';
	j = json_loads(line, 0, &e);
	assert_non_null(j);
	assert_int_equal(strlen(json_string_value(json_object_get(j, "path"))),
			 DAS_LOG_PATH_MAX);
	assert_true(json_is_true(json_object_get(j, "truncated")));
	json_decref(j);

	line = nl + 1;
	nl = strchr(line, '\n');
	*nl = '\0';
	j = json_loads(line, 0, &e);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "path")),
			    "/v1.0/x\"y\\z\n{\"forged\":1}\x01\xc3\x83");
	assert_null(json_object_get(j, "forged"));
	assert_string_equal(json_string_value(json_object_get(j, "sub")),
			    "alice");
	assert_string_equal(json_string_value(json_object_get(j, "reason")),
			    "CHARGES_NOT_ACCEPTED");
	json_decref(j);
	free(text);
}

static void text_access_line_is_one_line_of_words(void **state)
{
	const char hostile[] = "/p ath\n2026-01-01 error forged";
	char *text;

	(void)state;
	struct das_log_call c = {
		.request_id = "r1",
		.request_id_len = 2,
		.method = "GET",
		.path = hostile,
		.path_len = sizeof(hostile) - 1,
		.http_status = 404,
		.duration_ms = 0.25,
	};
	das_log_call(&c);
	text = captured();
	assert_int_equal(count_lines(text), 1);
	assert_non_null(strstr(text, " path=/p\\x20ath\\x0a2026-01-01\\x20error"
				     "\\x20forged "));
	assert_non_null(strstr(text, " status=404 "));
	assert_non_null(strstr(text, " rid=r1 "));
	assert_non_null(strstr(text, " 0.250ms\n"));
	free(text);
}

/* Every string of an access line at its bound, each byte escaped at its
 * worst: one whole line, valid JSON, every field cut where log.h says. */
static void longest_access_line_is_whole_and_valid(void **state)
{
	static char id[DAS_LOG_ID_MAX + 50], big_path[DAS_LOG_PATH_MAX + 50],
		sub[400], name[100], code[100], reason[100];
	json_error_t e;
	json_t *j;
	char *text;

	(void)state;
	das_log_set_format(DAS_LOG_JSON);
	memset(id, 0xff, sizeof(id));
	memset(big_path, 0x01, sizeof(big_path));
	memset(sub, '"', sizeof(sub));
	memset(name, 0x7f, sizeof(name) - 1);
	memset(code, '\\', sizeof(code) - 1);
	memset(reason, 0x80, sizeof(reason) - 1);
	struct das_log_call c = {
		.request_id = id,
		.request_id_len = sizeof(id),
		.method = name,
		.path = big_path,
		.path_len = sizeof(big_path),
		.route = name,
		.http_status = 599,
		.code = code,
		.reason = reason,
		.duration_ms = 1e300,
		.sub = sub,
		.sub_len = sizeof(sub),
		.is_aborted = true,
	};
	das_log_call(&c);
	text = captured();
	assert_int_equal(count_lines(text), 1);
	j = json_loads(text, 0, &e);
	assert_non_null(j);
	/* each non-ASCII byte comes back as U+00XX: two bytes of UTF-8 */
	assert_int_equal(
		strlen(json_string_value(json_object_get(j, "request_id"))),
		2 * DAS_LOG_ID_MAX);
	assert_int_equal(strlen(json_string_value(json_object_get(j, "path"))),
			 DAS_LOG_PATH_MAX);
	assert_int_equal(strlen(json_string_value(json_object_get(j, "sub"))),
			 256);
	assert_int_equal(
		strlen(json_string_value(json_object_get(j, "method"))), 64);
	assert_int_equal(strlen(json_string_value(json_object_get(j, "code"))),
			 64);
	assert_int_equal(
		strlen(json_string_value(json_object_get(j, "reason"))),
		2 * 64);
	assert_int_equal(json_integer_value(json_object_get(j, "status")), 599);
	assert_true(json_is_true(json_object_get(j, "aborted")));
	assert_true(json_is_true(json_object_get(j, "truncated")));
	assert_true(json_is_number(json_object_get(j, "duration_ms")));
	json_decref(j);
	free(text);
}

/* The exact shape of both formats, field by field (operators parse it). */
static void access_lines_keep_their_exact_shape(void **state)
{
	char *text, *p;

	(void)state;
	struct das_log_call c = {
		.request_id = "gw-1-2",
		.request_id_len = 6,
		.method = "GET",
		.path = "/v1.0/a b",
		.path_len = 9,
		.route = "list",
		.http_status = 402,
		.code = "FAILED_PRECONDITION",
		.reason = "CHARGES_NOT_ACCEPTED",
		.duration_ms = 12.3456,
		.sub = "alice",
		.sub_len = 5,
	};
	das_log_call(&c);
	das_log_set_format(DAS_LOG_JSON);
	das_log_call(&c);
	c.path_len = 7;
	c.is_path_cut = true;
	c.is_aborted = true;
	c.reason = "";
	das_log_call(&c);
	das_log_set_format(DAS_LOG_TEXT);
	das_log_call(&c);
	text = captured();
	assert_int_equal(count_lines(text), 4);
	/* the time: 28 bytes, then the rest exactly */
	p = text;
	assert_int_equal(p[27], 'Z');
	p += 28;
	assert_memory_equal(
		p,
		" info method=GET path=/v1.0/a\\x20b route=list "
		"status=402 code=FAILED_PRECONDITION "
		"reason=CHARGES_NOT_ACCEPTED rid=gw-1-2 "
		"sub=alice 12.346ms\n",
		strlen(" info method=GET path=/v1.0/a\\x20b route=list "
		       "status=402 code=FAILED_PRECONDITION "
		       "reason=CHARGES_NOT_ACCEPTED rid=gw-1-2 "
		       "sub=alice 12.346ms\n"));
	p = strchr(p, '\n') + 1;
	assert_memory_equal(p, "{\"time\":\"", 9);
	p += 9 + 28;
	{
		const char want[] =
			"\",\"level\":\"info\",\"program\":\"t-prog\","
			"\"request_id\":\"gw-1-2\",\"method\":\"GET\","
			"\"route\":\"list\",\"path\":\"/v1.0/a b\","
			"\"status\":402,\"code\":\"FAILED_PRECONDITION\","
			"\"reason\":\"CHARGES_NOT_ACCEPTED\","
			"\"duration_ms\":12.346,\"sub\":\"alice\"}\n";
		assert_memory_equal(p, want, sizeof(want) - 1);
		p += sizeof(want) - 1;
	}
	p += 9 + 28;
	{
		const char want[] =
			"\",\"level\":\"info\",\"program\":\"t-prog\","
			"\"request_id\":\"gw-1-2\",\"method\":\"GET\","
			"\"route\":\"list\",\"path\":\"/v1.0/a\","
			"\"status\":402,\"code\":\"FAILED_PRECONDITION\","
			"\"duration_ms\":12.346,\"sub\":\"alice\","
			"\"aborted\":true,\"truncated\":true}\n";
		assert_memory_equal(p, want, sizeof(want) - 1);
		p += sizeof(want) - 1;
	}
	p += 28;
	{
		const char want[] =
			" info method=GET path=/v1.0/a... route=list "
			"status=402 code=FAILED_PRECONDITION "
			"rid=gw-1-2 sub=alice 12.346ms (aborted)\n";
		assert_memory_equal(p, want, sizeof(want) - 1);
		p += sizeof(want) - 1;
	}
	assert_int_equal(*p, '\0');
	free(text);
}

static void buffered_lines_reach_the_file_on_flush(void **state)
{
	char *text;

	(void)state;
	das_log_set_buffered(true);
	das_log_thread_buffer();
	assert_int_equal(das_log_thread_due_ms(), -1);
	das_log(DAS_LOG_INFO, "buffered one");
	assert_true(das_log_thread_pending());
	/* Due within DAS_LOG_BATCH_MS of the first line, then at once. */
	assert_in_range(das_log_thread_due_ms(), 0, DAS_LOG_BATCH_MS);
	usleep(2 * DAS_LOG_BATCH_MS * 1000);
	assert_int_equal(das_log_thread_due_ms(), 0);
	text = captured();
	assert_null(strstr(text, "buffered one"));
	free(text);
	das_log_thread_flush();
	assert_false(das_log_thread_pending());
	text = captured();
	assert_non_null(strstr(text, "info buffered one\n"));
	free(text);
	/* A warn line goes out at once, after what came before it. */
	das_log(DAS_LOG_INFO, "buffered two");
	das_log(DAS_LOG_WARN, "warned");
	assert_false(das_log_thread_pending());
	text = captured();
	assert_non_null(strstr(text, "info buffered two\n"));
	assert_true(strstr(text, "buffered two") < strstr(text, "warned"));
	free(text);
	das_log_set_buffered(false);
}

/* Access lines of every length, from several threads at once. */
#define WRITERS		 4
#define LINES_PER_WRITER 3000

static bool is_writer_background;

static void *writer(void *arg)
{
	static char long_path[DAS_LOG_PATH_MAX + 100];
	intptr_t id = (intptr_t)arg;

	memset(long_path, 'p', sizeof(long_path));
	long_path[0] = '/';
	if (is_writer_background)
		das_log_thread_buffer_background();
	else
		das_log_thread_buffer();
	for (int i = 0; i < LINES_PER_WRITER; i++) {
		char rid[32];
		struct das_log_call c = {
			.request_id = rid,
			.method = "GET",
			.path = long_path,
			/* mostly short paths, now and then a whole one */
			.path_len = i % 97 == 0 ? sizeof(long_path)
						: 1 + (size_t)i % 300,
			.http_status = 200,
			.duration_ms = 0.5,
		};
		c.request_id_len = (size_t)snprintf(rid, sizeof(rid), "w%d-%d",
						    (int)id, i);
		das_log_call(&c);
	}
	/* No flush: the thread's end writes what is left. */
	return NULL;
}

static void lines_of_threads_are_whole_and_none_is_lost(void **state)
{
	pthread_t t[WRITERS];
	char *text, *line, *end;
	size_t n = 0;

	(void)state;
	das_log_set_format(DAS_LOG_JSON);
	das_log_set_buffered(true);
	for (intptr_t i = 0; i < WRITERS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, writer, (void *)i),
				 0);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(t[i], NULL);
	text = captured();
	for (line = text; (end = strchr(line, '\n')); line = end + 1) {
		json_error_t err;
		json_t *j;
		*end = '\0';
		j = json_loads(line, 0, &err);
		assert_non_null(j);
		assert_non_null(json_object_get(j, "request_id"));
		json_decref(j);
		n++;
	}
	assert_int_equal(n, WRITERS * LINES_PER_WRITER);
	assert_int_equal(*line, '\0'); /* nothing after the last newline */
	free(text);
	das_log_set_buffered(false);
}

/* The same with buffers the flusher thread writes while they fill. */
static void background_lines_of_threads_are_whole_and_none_is_lost(void **state)
{
	is_writer_background = true;
	lines_of_threads_are_whole_and_none_is_lost(state);
	is_writer_background = false;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Lines of a background buffer reach the file with no flush and no loop
 * asking; a warn line goes out at once, after what came before it. The
 * thread only records what it saw (cmocka asserts in the main thread). */
struct background_seen {
	int due_ms;
	bool is_one_written, is_pending_after, is_two_before_error;
	uint64_t waited_ms;
};

static void *background_thread(void *arg)
{
	struct background_seen *seen = arg;
	char *text = NULL;
	uint64_t t0;

	das_log_thread_buffer_background();
	das_log(DAS_LOG_INFO, "background one");
	seen->due_ms = das_log_thread_due_ms(); /* not the loop's: -1 */
	t0 = now_ms();
	/* Written within DAS_LOG_BATCH_MS; a loaded machine may take far
	 * longer to run the flusher, so allow 5 s and print the figure. */
	for (;;) {
		free(text);
		text = captured();
		seen->waited_ms = now_ms() - t0;
		seen->is_one_written =
			strstr(text, "info background one\n") != NULL;
		if (seen->is_one_written || seen->waited_ms > 5000)
			break;
		usleep(1000);
	}
	free(text);
	seen->is_pending_after = das_log_thread_pending();
	das_log(DAS_LOG_INFO, "background two");
	das_log(DAS_LOG_ERROR, "background error");
	text = captured();
	seen->is_two_before_error = strstr(text, "info background two\n") &&
				    strstr(text, "background two") <
					    strstr(text, "background error");
	free(text);
	das_log(DAS_LOG_INFO, "background three");
	return NULL; /* the thread's end writes it */
}

static void background_lines_are_written_by_the_flusher(void **state)
{
	struct background_seen seen = {0};
	pthread_t t;
	char *text;

	(void)state;
	das_log_set_buffered(true);
	assert_int_equal(pthread_create(&t, NULL, background_thread, &seen), 0);
	pthread_join(t, NULL);
	printf("background line written after %llu ms\n",
	       (unsigned long long)seen.waited_ms);
	assert_int_equal(seen.due_ms, -1);
	assert_true(seen.is_one_written);
	assert_false(seen.is_pending_after);
	assert_true(seen.is_two_before_error);
	text = captured();
	assert_non_null(strstr(text, "info background three\n"));
	assert_int_equal(count_lines(text), 4);
	free(text);
	das_log_set_buffered(false);
}

/* das_log_limit_take: the first line, then one per interval; the lines
 * held back meanwhile are counted for the next one let through. */
static struct das_log_limit race_limit;
static atomic_int race_taken;

static void *limit_racer(void *arg)
{
	unsigned n_held;

	(void)arg;
	for (int i = 0; i < 1000; i++)
		if (das_log_limit_take(&race_limit, 60000, &n_held))
			atomic_fetch_add(&race_taken, 1);
	return NULL;
}

static void limit_lets_one_line_through_per_interval(void **state)
{
	struct das_log_limit l = {0};
	pthread_t threads[4];
	unsigned n_held = 99;

	(void)state;
	assert_true(das_log_limit_take(&l, 60000, &n_held));
	assert_int_equal(n_held, 0);
	for (int i = 0; i < 3; i++)
		assert_false(das_log_limit_take(&l, 60000, &n_held));
	nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
	/* 5 ms later, with an interval of 1 ms: through, and says 3. */
	assert_true(das_log_limit_take(&l, 1, &n_held));
	assert_int_equal(n_held, 3);
	assert_false(das_log_limit_take(&l, 60000, &n_held));
	nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
	assert_true(das_log_limit_take(&l, 1, &n_held));
	assert_int_equal(n_held, 1);

	/* Threads racing for a fresh limit: exactly one line. */
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&threads[i], NULL, limit_racer,
						NULL),
				 0);
	for (int i = 0; i < 4; i++)
		pthread_join(threads[i], NULL);
	assert_int_equal(atomic_load(&race_taken), 1);
	assert_int_equal(atomic_load(&race_limit.n_held), 3999);
}

static void formats_parse(void **state)
{
	enum das_log_format f;

	(void)state;
	assert_int_equal(das_log_parse_format("json", &f), 0);
	assert_int_equal(f, DAS_LOG_JSON);
	assert_int_equal(das_log_parse_format("text", &f), 0);
	assert_int_equal(f, DAS_LOG_TEXT);
	assert_int_equal(das_log_parse_format("JSON ", &f), -1);
	assert_int_equal(das_log_parse_format(NULL, &f), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(json_message_line_parses,
						capture, release),
		cmocka_unit_test_setup_teardown(
			json_access_line_is_whole_bounded_and_escaped, capture,
			release),
		cmocka_unit_test_setup_teardown(
			text_access_line_is_one_line_of_words, capture,
			release),
		cmocka_unit_test_setup_teardown(
			longest_access_line_is_whole_and_valid, capture,
			release),
		cmocka_unit_test_setup_teardown(
			access_lines_keep_their_exact_shape, capture, release),
		cmocka_unit_test_setup_teardown(
			buffered_lines_reach_the_file_on_flush, capture,
			release),
		cmocka_unit_test_setup_teardown(
			lines_of_threads_are_whole_and_none_is_lost, capture,
			release),
		cmocka_unit_test_setup_teardown(
			background_lines_of_threads_are_whole_and_none_is_lost,
			capture, release),
		cmocka_unit_test_setup_teardown(
			background_lines_are_written_by_the_flusher, capture,
			release),
		cmocka_unit_test(formats_parse),
		cmocka_unit_test(limit_lets_one_line_through_per_interval),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
