/*
 * Command-line flags with environment fallbacks, shared by every program.
 * A flag --some-name is also read from DAS_SOME_NAME; the command line wins
 * over the environment, which wins over the default. --help prints one line
 * per flag in a fixed shape that tests/config parses:
 *
 *   --listen ADDR  [env DAS_LISTEN] [default: 127.0.0.1:50051]  help text
 */
#ifndef DAS_COMMON_CONFIG_H
#define DAS_COMMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define DAS_FLAG_MAX_VALUES 64

struct das_flag {
	const char *name; /* without the leading "--" */
	const char *metavar; /* "ADDR", "FILE"; NULL for a switch */
	const char *def;  /* default value, NULL = none */
	const char *help;
	bool is_repeatable; /* values[] collects every occurrence */
	/* Filled by das_flags_parse: */
	const char *value; /* the last value given, or env, or def */
	size_t n_values;
	const char *values[DAS_FLAG_MAX_VALUES];
};

/* Writes the environment variable of a flag ("DAS_" + NAME) into buf. */
const char *das_flag_env_name(const char *flag, char *buf, size_t size);

enum das_flags_result {
	DAS_FLAGS_OK = 0,
	DAS_FLAGS_EXIT = 1,  /* --help or --version printed: exit 0 */
	DAS_FLAGS_ERROR = 2, /* err holds a one-line reason */
};

/*
 * Parses argv[*argi...] until the first argument that is not a flag (left in
 * *argi) or "--". Unknown flags are errors. Switches (metavar NULL) take no
 * value and read "1" when given. Environment values are read for flags not
 * on the command line. summary is printed by --help above the flags.
 */
enum das_flags_result das_flags_parse(struct das_flag *flags, size_t n,
				      int argc, char **argv, int *argi,
				      const char *prog, const char *summary,
				      char *err, size_t err_size);

/* Prints the --help text for flags. */
void das_flags_help(FILE *out, const char *prog, const char *summary,
		    const struct das_flag *flags, size_t n);

/* The flag named name, or NULL. */
struct das_flag *das_flag_find(struct das_flag *flags, size_t n,
			       const char *name);

/*
 * Parses a decimal unsigned integer in [min, max]; returns 0 and sets *out,
 * or -1 on anything else (sign, junk, overflow, empty).
 */
int das_parse_uint(const char *s, unsigned long min, unsigned long max,
		   unsigned long *out);

#endif
