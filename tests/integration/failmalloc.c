/*
 * An LD_PRELOAD shim for the fault tests: malloc, calloc and realloc fail
 * (NULL, ENOMEM) on demand, so that the paths a service takes when memory
 * runs out are walked for real.
 *
 * Inert unless the process opts in with FDH_FAILMALLOC=1 in its
 * environment; then:
 *
 *   FDH_FAILMALLOC_AFTER=N   the first N calls counted succeed (default 0)
 *   FDH_FAILMALLOC_COUNT=M   at most M calls fail, then none (default: no end)
 *   FDH_FAILMALLOC_P=p       each later call fails with probability p (default 1)
 *   FDH_FAILMALLOC_SEED=s    for the pseudo-random choice (default 1)
 *
 * Counting starts at the process's first epoll_wait(), where the
 * dispatcher's loop first waits: start-up (argument parsing, the
 * listening socket, the service's init) is never failed, the request path
 * is.  At exit one line on stderr says how many calls were
 * counted and failed ("failmalloc: 123 calls, 4 failed").
 *
 * Under AddressSanitizer the shim must be allowed to come first
 * (ASAN_OPTIONS=verify_asan_link_order=0); its calls are passed on to the
 * sanitizer's allocator.
 */
#include <dlfcn.h>
#include <errno.h>
#include <sys/epoll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_epoll_wait)(int, struct epoll_event *, int, int);

/* dlsym() may allocate before the real functions are known: from here. */
static _Alignas(16) char boot[8192];
static size_t boot_used;
static bool resolving;

static bool configured, enabled, armed;
static unsigned long long after, count = (unsigned long long)-1, calls, failed;
static uint64_t prob_scaled = UINT64_MAX;	/* p * 2^64 */
static uint64_t rng = 1;

static void *
boot_alloc(size_t n)
{
	size_t at = (boot_used + 15) & ~(size_t)15;

	if (n > sizeof(boot) - at)
		return NULL;
	boot_used = at + n;
	return boot + at;
}

static bool
in_boot(const void *p)
{
	return (const char *)p >= boot && (const char *)p < boot + sizeof(boot);
}

static unsigned long long
env_ull(const char *name, unsigned long long dflt)
{
	const char *v = getenv(name);
	char *end;
	unsigned long long n;

	if (v == NULL || *v == '\0')
		return dflt;
	n = strtoull(v, &end, 10);
	return *end == '\0' ? n : dflt;
}

static void
resolve(void)
{
	resolving = true;
	real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
	real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
	real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
	real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
	real_epoll_wait = (int (*)(int, struct epoll_event *, int, int))dlsym(RTLD_NEXT,
	    "epoll_wait");
	resolving = false;
	if (!real_malloc || !real_calloc || !real_realloc || !real_free || !real_epoll_wait)
		abort();
}

/*
 * Read at the first epoll_wait(), not at the first allocation: under
 * AddressSanitizer that comes while the runtime starts, before the
 * environment can be read.
 */
static void
configure(void)
{
	const char *p;

	configured = true;
	p = getenv("FDH_FAILMALLOC");
	enabled = p != NULL && strcmp(p, "1") == 0;
	after = env_ull("FDH_FAILMALLOC_AFTER", 0);
	count = env_ull("FDH_FAILMALLOC_COUNT", (unsigned long long)-1);
	rng = env_ull("FDH_FAILMALLOC_SEED", 1) | 1;
	p = getenv("FDH_FAILMALLOC_P");
	if (p != NULL) {
		double v = strtod(p, NULL);

		prob_scaled = v >= 1.0 ? UINT64_MAX : v <= 0.0 ? 0 :
		    (uint64_t)(v * 18446744073709551616.0);
	}
}

/* xorshift64: reproducible for a seed, no allocation, no lock. */
static uint64_t
next_random(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static bool
should_fail(void)
{
	if (!armed)
		return false;
	if (calls++ < after || failed >= count)
		return false;
	if (prob_scaled != UINT64_MAX && next_random() >= prob_scaled)
		return false;
	failed++;
	errno = ENOMEM;
	return true;
}

EXPORT void *
malloc(size_t n)
{
	if (real_malloc == NULL) {
		if (resolving)
			return boot_alloc(n);
		resolve();
	}
	return should_fail() ? NULL : real_malloc(n);
}

EXPORT void *
calloc(size_t n, size_t size)
{
	if (real_calloc == NULL) {
		if (resolving)
			return boot_alloc(n * size);	/* static: zeroed already */
		resolve();
	}
	return should_fail() ? NULL : real_calloc(n, size);
}

EXPORT void *
realloc(void *p, size_t n)
{
	if (real_realloc == NULL)
		resolve();
	if (in_boot(p)) {
		void *q = malloc(n);

		if (q != NULL)
			memcpy(q, p, n < sizeof(boot) ? n : sizeof(boot));
		return q;
	}
	return should_fail() ? NULL : real_realloc(p, n);
}

EXPORT void
free(void *p)
{
	if (p == NULL || in_boot(p))
		return;
	if (real_free == NULL)
		resolve();
	real_free(p);
}

EXPORT int
epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout)
{
	if (real_epoll_wait == NULL)
		resolve();
	if (!configured)
		configure();
	armed = enabled;
	return real_epoll_wait(epfd, events, maxevents, timeout);
}

__attribute__((destructor)) static void
report(void)
{
	char line[96];
	int len;

	if (!enabled)
		return;
	armed = false;
	len = snprintf(line, sizeof(line), "failmalloc: %llu calls, %llu failed\n", calls, failed);
	if (len > 0 && write(STDERR_FILENO, line, (size_t)len) < 0)
		return;		/* nowhere left to say it */
}
