/* common/condwait.c: timed waits that count on CLOCK_MONOTONIC. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/condwait.h"

static int64_t mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void deadlines_are_normalised(void **state)
{
	(void)state;
	for (uint64_t ms = 0; ms < 3000; ms += 7) {
		struct timespec now, at;

		clock_gettime(CLOCK_MONOTONIC, &now);
		at = das_monotonic_after_ms(ms);
		assert_true(at.tv_nsec >= 0 && at.tv_nsec < 1000000000L);
		int64_t d = (int64_t)(at.tv_sec - now.tv_sec) * 1000 +
			    (at.tv_nsec - now.tv_nsec) / 1000000;
		assert_true(d >= (int64_t)ms && d <= (int64_t)ms + 1);
	}
}

/*
 * The wait lasts its time. A condition variable that measured deadlines
 * on the wall clock would take this monotonic deadline (about the
 * machine's uptime) as decades past and return at once.
 */
static void wait_lasts_its_time(void **state)
{
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cv;
	int64_t t0, took;
	int rc;

	(void)state;
	das_cond_init_monotonic(&cv);
	pthread_mutex_lock(&mu);
	t0 = mono_ms();
	do
		rc = das_cond_wait_ms(&cv, &mu, 50);
	while (rc == 0 && mono_ms() - t0 < 50);
	took = mono_ms() - t0;
	pthread_mutex_unlock(&mu);
	pthread_cond_destroy(&cv);
	assert_int_equal(rc, ETIMEDOUT);
	assert_true(took >= 49);
	assert_true(took < 5000);
}

struct signaller {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int is_set;
};

static void *signal_later(void *arg)
{
	struct signaller *s = arg;

	usleep(20 * 1000);
	pthread_mutex_lock(&s->mu);
	s->is_set = 1;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* A signal ends the wait before its time. */
static void signal_ends_the_wait(void **state)
{
	struct signaller s = {.mu = PTHREAD_MUTEX_INITIALIZER};
	pthread_t t;
	int64_t t0;

	(void)state;
	das_cond_init_monotonic(&s.cv);
	pthread_mutex_lock(&s.mu);
	assert_int_equal(pthread_create(&t, NULL, signal_later, &s), 0);
	t0 = mono_ms();
	while (!s.is_set)
		assert_int_equal(das_cond_wait_ms(&s.cv, &s.mu, 30000), 0);
	pthread_mutex_unlock(&s.mu);
	assert_true(mono_ms() - t0 < 10000);
	pthread_join(t, NULL);
	pthread_cond_destroy(&s.cv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(deadlines_are_normalised),
		cmocka_unit_test(wait_lasts_its_time),
		cmocka_unit_test(signal_ends_the_wait),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
