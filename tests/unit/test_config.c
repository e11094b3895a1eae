/* common/config.c: flags, DAS_* environment fallbacks, numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/config.h"

static struct das_flag *fresh_flags(void)
{
	static struct das_flag flags[3];

	memset(flags, 0, sizeof(flags));
	flags[0].name = "listen";
	flags[0].metavar = "ADDR";
	flags[0].def = "127.0.0.1:50051";
	flags[0].help = "where";
	flags[1].name = "tenant";
	flags[1].metavar = "GUID";
	flags[1].help = "repeatable";
	flags[1].is_repeatable = true;
	flags[2].name = "accept-charges";
	flags[2].help = "a switch";
	return flags;
}

static enum das_flags_result parse(struct das_flag *f, int argc, char **argv,
				   int *argi, char *err)
{
	*argi = 1;
	return das_flags_parse(f, 3, argc, argv, argi, "prog", "summary", err,
			       256);
}

static void defaults_env_and_argv(void **state)
{
	struct das_flag *f = fresh_flags();
	char err[256];
	int argi;
	char *argv1[] = {"prog", NULL};
	char *argv2[] = {"prog", "--listen", "127.0.0.1:1", "rest", NULL};
	char *argv3[] = {"prog", "--listen=127.0.0.1:2", "--accept-charges",
			 "--", "--listen", NULL};

	(void)state;
	unsetenv("DAS_LISTEN");
	assert_int_equal(parse(f, 1, argv1, &argi, err), DAS_FLAGS_OK);
	assert_string_equal(f[0].value, "127.0.0.1:50051");
	assert_null(f[2].value);

	/* the environment beats the default */
	setenv("DAS_LISTEN", "127.0.0.9:9", 1);
	f = fresh_flags();
	assert_int_equal(parse(f, 1, argv1, &argi, err), DAS_FLAGS_OK);
	assert_string_equal(f[0].value, "127.0.0.9:9");

	/* the command line beats the environment; parsing stops at the
	 * first argument that is not a flag */
	f = fresh_flags();
	assert_int_equal(parse(f, 4, argv2, &argi, err), DAS_FLAGS_OK);
	assert_string_equal(f[0].value, "127.0.0.1:1");
	assert_int_equal(argi, 3);

	/* --name=value, a switch, and "--" ends the flags */
	f = fresh_flags();
	assert_int_equal(parse(f, 5, argv3, &argi, err), DAS_FLAGS_OK);
	assert_string_equal(f[0].value, "127.0.0.1:2");
	assert_string_equal(f[2].value, "1");
	assert_int_equal(argi, 4);
	unsetenv("DAS_LISTEN");
}

static void repeatable(void **state)
{
	struct das_flag *f = fresh_flags();
	char err[256];
	int argi;
	char *argv[] = {"prog", "--tenant", "a", "--tenant=b", NULL};

	(void)state;
	assert_int_equal(parse(f, 4, argv, &argi, err), DAS_FLAGS_OK);
	assert_int_equal(f[1].n_values, 2);
	assert_string_equal(f[1].values[0], "a");
	assert_string_equal(f[1].values[1], "b");
}

static void errors(void **state)
{
	struct das_flag *f = fresh_flags();
	char err[256];
	int argi;
	char *unknown[] = {"prog", "--nope", NULL};
	char *missing[] = {"prog", "--listen", NULL};
	char *switch_value[] = {"prog", "--accept-charges=yes", NULL};
	char *prefix[] = {"prog", "--list", "x", NULL};

	(void)state;
	assert_int_equal(parse(f, 2, unknown, &argi, err), DAS_FLAGS_ERROR);
	assert_non_null(strstr(err, "--nope"));
	f = fresh_flags();
	assert_int_equal(parse(f, 2, missing, &argi, err), DAS_FLAGS_ERROR);
	assert_non_null(strstr(err, "needs a value"));
	f = fresh_flags();
	assert_int_equal(parse(f, 2, switch_value, &argi, err),
			 DAS_FLAGS_ERROR);
	f = fresh_flags();
	/* no prefix matching: --list is not --listen */
	assert_int_equal(parse(f, 3, prefix, &argi, err), DAS_FLAGS_ERROR);
}

static void env_names_and_help(void **state)
{
	char buf[64];
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	(void)state;
	assert_string_equal(das_flag_env_name("jwt-hs256-secret-file", buf,
					      sizeof(buf)),
			    "DAS_JWT_HS256_SECRET_FILE");
	assert_non_null(out);
	das_flags_help(out, "prog", "summary", fresh_flags(), 3);
	fclose(out);
	assert_non_null(strstr(text, "--listen ADDR"));
	assert_non_null(strstr(text, "[env DAS_LISTEN] [default: 127.0.0.1:50051]"));
	assert_non_null(strstr(text, "[env DAS_TENANT] [default: ] [repeatable]"));
	assert_non_null(strstr(text, "--accept-charges "));
	free(text);
}

static void numbers(void **state)
{
	unsigned long v = 7;

	(void)state;
	assert_int_equal(das_parse_uint("42", 0, 100, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(das_parse_uint("0", 0, 100, &v), 0);
	assert_int_equal(das_parse_uint("101", 0, 100, &v), -1);
	assert_int_equal(das_parse_uint("5", 6, 100, &v), -1);
	assert_int_equal(das_parse_uint("-1", 0, 100, &v), -1);
	assert_int_equal(das_parse_uint("+1", 0, 100, &v), -1);
	assert_int_equal(das_parse_uint(" 1", 0, 100, &v), -1);
	assert_int_equal(das_parse_uint("1x", 0, 100, &v), -1);
	assert_int_equal(das_parse_uint("", 0, 100, &v), -1);
	assert_int_equal(das_parse_uint(NULL, 0, 100, &v), -1);
	assert_int_equal(das_parse_uint("99999999999999999999999", 0,
					(unsigned long)-1, &v),
			 -1);
	assert_int_equal(v, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(defaults_env_and_argv),
		cmocka_unit_test(repeatable),
		cmocka_unit_test(errors),
		cmocka_unit_test(env_names_and_help),
		cmocka_unit_test(numbers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
