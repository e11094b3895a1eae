#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *das_flag_env_name(const char *flag, char *buf, size_t size)
{
	size_t o = 0;

	if (size == 0)
		return buf;
	for (const char *p = "DAS_"; *p && o + 1 < size; p++)
		buf[o++] = *p;
	for (const char *p = flag; *p && o + 1 < size; p++)
		buf[o++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
	buf[o] = '\0';
	return buf;
}

struct das_flag *das_flag_find(struct das_flag *flags, size_t n,
			       const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(flags[i].name, name) == 0)
			return &flags[i];
	return NULL;
}

static int flag_set(struct das_flag *f, const char *value, char *err,
		    size_t err_size)
{
	if (f->is_repeatable) {
		if (f->n_values >= DAS_FLAG_MAX_VALUES) {
			snprintf(err, err_size, "--%s given too often",
				 f->name);
			return -1;
		}
		f->values[f->n_values++] = value;
	}
	f->value = value;
	return 0;
}

void das_flags_help(FILE *out, const char *prog, const char *summary,
		    const struct das_flag *flags, size_t n)
{
	char env[96];

	fprintf(out, "usage: %s [flags]\n%s\n\nflags:\n", prog,
		summary ? summary : "");
	for (size_t i = 0; i < n; i++) {
		const struct das_flag *f = &flags[i];
		char left[96];
		snprintf(left, sizeof(left), "--%s%s%s", f->name,
			 f->metavar ? " " : "", f->metavar ? f->metavar : "");
		fprintf(out, "  %-32s [env %s] [default: %s]%s  %s\n", left,
			das_flag_env_name(f->name, env, sizeof(env)),
			f->def ? f->def : "",
			f->is_repeatable ? " [repeatable]" : "", f->help);
	}
	fprintf(out, "  %-32s print this help and exit\n", "--help");
	fprintf(out, "  %-32s print the version and exit\n", "--version");
}

enum das_flags_result das_flags_parse(struct das_flag *flags, size_t n,
				      int argc, char **argv, int *argi,
				      const char *prog, const char *summary,
				      char *err, size_t err_size)
{
	bool seen[64] = {false};
	int i = *argi;

	if (n > 64) {
		snprintf(err, err_size, "too many flags");
		return DAS_FLAGS_ERROR;
	}
	for (; i < argc; i++) {
		const char *arg = argv[i];
		if (strcmp(arg, "--") == 0) {
			i++;
			break;
		}
		if (strncmp(arg, "--", 2) != 0)
			break;
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			das_flags_help(stdout, prog, summary, flags, n);
			return DAS_FLAGS_EXIT;
		}
		if (strcmp(arg, "--version") == 0) {
			printf("%s %s\n", prog, DAS_VERSION);
			return DAS_FLAGS_EXIT;
		}
		const char *name = arg + 2;
		const char *eq = strchr(name, '=');
		size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
		struct das_flag *f = NULL;
		size_t fi = 0;
		for (; fi < n; fi++)
			if (strlen(flags[fi].name) == name_len &&
			    strncmp(flags[fi].name, name, name_len) == 0) {
				f = &flags[fi];
				break;
			}
		if (!f) {
			snprintf(err, err_size, "unknown flag %.*s (see --help)",
				 (int)(name_len + 2), arg);
			return DAS_FLAGS_ERROR;
		}
		const char *value;
		if (!f->metavar) {
			if (eq) {
				snprintf(err, err_size, "--%s takes no value",
					 f->name);
				return DAS_FLAGS_ERROR;
			}
			value = "1";
		} else if (eq) {
			value = eq + 1;
		} else if (i + 1 < argc) {
			value = argv[++i];
		} else {
			snprintf(err, err_size, "--%s needs a value", f->name);
			return DAS_FLAGS_ERROR;
		}
		if (flag_set(f, value, err, err_size) != 0)
			return DAS_FLAGS_ERROR;
		seen[fi] = true;
	}
	*argi = i;

	for (size_t fi = 0; fi < n; fi++) {
		struct das_flag *f = &flags[fi];
		if (seen[fi])
			continue;
		char env[96];
		const char *v = getenv(das_flag_env_name(f->name, env,
							 sizeof(env)));
		if (v && *v) {
			if (flag_set(f, v, err, err_size) != 0)
				return DAS_FLAGS_ERROR;
		} else if (!f->value) {
			f->value = f->def;
		}
	}
	return DAS_FLAGS_OK;
}

int das_parse_uint(const char *s, unsigned long min, unsigned long max,
		   unsigned long *out)
{
	char *end;
	unsigned long v;

	if (!s || !isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}
