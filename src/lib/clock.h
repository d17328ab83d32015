/* The one clock of deadlines and timers. */
#ifndef FDH_CLOCK_H
#define FDH_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds of CLOCK_MONOTONIC: a change of the wall clock moves no deadline. */
static inline int64_t
fdh_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	/* Both fields are never negative, and unsigned division is the shorter. */
	return (int64_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

#endif
