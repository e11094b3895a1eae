/*
 * A replay-and-mutate driver for the fuzz targets, so that every target also
 * runs under ctest with gcc and ASan/UBSan on machines without libFuzzer:
 * each file of the corpus directories given is fed to LLVMFuzzerTestOneInput,
 * then FUZZ_ITERATIONS mutations of them (bit flips, byte sets, cuts,
 * duplications, splices) from a fixed seed, so a failure is reproducible.
 * With -DDAS_FUZZ=ON the same targets link against libFuzzer instead.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_INPUT 16384
#define FUZZ_MAX_SEEDS 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *seeds[FUZZ_MAX_SEEDS];
static size_t seed_len[FUZZ_MAX_SEEDS];
static size_t n_seeds;

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
	/* xorshift64*: small, deterministic, good enough to pick mutations */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static void load_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d) {
		fprintf(stderr, "fuzz driver: cannot open %s\n", dir);
		exit(2);
	}
	while ((e = readdir(d)) && n_seeds < FUZZ_MAX_SEEDS) {
		char path[4096];
		FILE *f;
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		f = fopen(path, "rb");
		if (!f)
			continue;
		uint8_t *buf = malloc(FUZZ_MAX_INPUT);
		size_t n = buf ? fread(buf, 1, FUZZ_MAX_INPUT, f) : 0;
		fclose(f);
		if (!buf)
			continue;
		seeds[n_seeds] = buf;
		seed_len[n_seeds] = n;
		n_seeds++;
	}
	closedir(d);
}

static size_t mutate(uint8_t *buf, size_t len)
{
	int rounds = 1 + (int)(rng() % 4);

	for (int r = 0; r < rounds; r++) {
		size_t at = len ? (size_t)(rng() % len) : 0;
		switch (rng() % 6) {
		case 0: /* flip a bit */
			if (len)
				buf[at] ^= (uint8_t)(1u << (rng() % 8));
			break;
		case 1: /* set an interesting byte */ {
			static const uint8_t bytes[] = {0, 0xff, 0x7f, 0x80,
							'%', '/', '{', '"',
							'\\', '.', ' ', 0xc3};
			if (len)
				buf[at] = bytes[rng() % sizeof(bytes)];
			break;
		}
		case 2: /* cut */
			len = at;
			break;
		case 3: /* duplicate a run */ {
			size_t run = 1 + (size_t)(rng() % 16);
			if (at + run <= len && len + run <= FUZZ_MAX_INPUT) {
				memmove(buf + at + run, buf + at, len - at);
				len += run;
			}
			break;
		}
		case 4: /* delete a run */ {
			size_t run = 1 + (size_t)(rng() % 8);
			if (at + run <= len) {
				memmove(buf + at, buf + at + run,
					len - at - run);
				len -= run;
			}
			break;
		}
		default: /* splice the tail of another seed */ {
			size_t s = (size_t)(rng() % n_seeds);
			size_t from = seed_len[s] ? (size_t)(rng() % seed_len[s])
						  : 0;
			size_t n = seed_len[s] - from;
			if (at + n > FUZZ_MAX_INPUT)
				n = FUZZ_MAX_INPUT - at;
			memcpy(buf + at, seeds[s] + from, n);
			len = at + n;
			break;
		}
		}
	}
	return len;
}

int main(int argc, char **argv)
{
	long iterations = 20000;
	uint8_t *buf = malloc(FUZZ_MAX_INPUT);
	const char *env = getenv("FUZZ_ITERATIONS");

	if (env)
		iterations = strtol(env, NULL, 10);
	for (int i = 1; i < argc; i++)
		load_dir(argv[i]);
	if (!buf || n_seeds == 0) {
		fprintf(stderr, "fuzz driver: no corpus\n");
		return 2;
	}
	for (size_t i = 0; i < n_seeds; i++)
		LLVMFuzzerTestOneInput(seeds[i], seed_len[i]);
	for (long i = 0; i < iterations; i++) {
		size_t s = (size_t)(rng() % n_seeds);
		memcpy(buf, seeds[s], seed_len[s]);
		size_t len = mutate(buf, seed_len[s]);
		LLVMFuzzerTestOneInput(buf, len);
	}
	printf("fuzz driver: %zu seeds, %ld mutations, no crash\n", n_seeds,
	       iterations);
	for (size_t i = 0; i < n_seeds; i++)
		free(seeds[i]);
	free(buf);
	return 0;
}
