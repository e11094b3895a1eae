#ifndef DAS_COMMON_CONDWAIT_H
#define DAS_COMMON_CONDWAIT_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/*
 * Timed waits on condition variables that count on CLOCK_MONOTONIC. A
 * condition variable made with NULL attributes measures its deadline on
 * the wall clock: when NTP or a resumed virtual machine steps that clock
 * back by an hour, a 10 ms wait lasts an hour and 10 ms.
 */

/* Initialises cv for deadlines from das_monotonic_after_ms. */
void das_cond_init_monotonic(pthread_cond_t *cv);

/* The CLOCK_MONOTONIC time ms from now, as pthread_cond_timedwait takes
 * it on such a cv. */
struct timespec das_monotonic_after_ms(uint64_t ms);

/* Waits on cv (mu held) until it is signalled or ms have passed; returns
 * pthread_cond_timedwait's result (0, or ETIMEDOUT). */
int das_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t ms);

#endif
