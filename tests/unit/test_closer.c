/*
 * The closer thread (src/lib/closer.c): which fds are closed at once and
 * which go to the thread, that a close stuck on a lingering TCP socket
 * holds the others back without holding up the caller, and that they all
 * close once it ends.  Includes the .c to reach the queue and
 * closer_may_wait().
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>

#include <cmocka.h>

/* The module itself, statics and all (STYLE.md, point 10). */
#include "../../src/lib/closer.c"	/* NOLINT(bugprone-suspicious-include) */
#include "harness.h"

/* Seconds the lingering socket below holds its closer. */
#define LINGER_S 1

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static size_t
queued(void)
{
	size_t n;

	pthread_mutex_lock(&closer.lock);
	n = closer.n;
	pthread_mutex_unlock(&closer.lock);
	return n;
}

/* Waits up to ms for nothing to be held; returns what still is. */
static unsigned
wait_released(long ms)
{
	int64_t end = mono_ms() + ms;

	while (fdh_closer_held() > 0 && mono_ms() < end)
		sleep_ms(10);
	return fdh_closer_held();
}

/*
 * A TCP socket whose last close() waits LINGER_S: SO_LINGER on, and data
 * that cannot leave because the peer's window is full (the accepted end is
 * never read).  *ret_keep gets the listener and the accepted end, which the
 * caller closes afterwards.
 */
static int
lingering_tcp(int ret_keep[2])
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	struct linger lg = { .l_onoff = 1, .l_linger = LINGER_S };
	int small = 4096, lfd, cfd, afd;
	char buf[65536];

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	assert_int_equal(setsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(cfd >= 0);
	assert_int_equal(setsockopt(cfd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	assert_int_equal(connect(cfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(afd >= 0);
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(fcntl(cfd, F_SETFL, O_NONBLOCK), 0);
	while (send(cfd, buf, sizeof(buf), MSG_NOSIGNAL) > 0)
		;
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(setsockopt(cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	ret_keep[0] = lfd;
	ret_keep[1] = afd;
	return cfd;
}

/* Before fdh_closer_start(), as in a client process: every close at once. */
static void
test_closer_not_started_closes_now(void **state)
{
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	fdh_closer_close(sv[0]);
	fdh_closer_queue(sv[1]);
	assert_int_equal(fdh_test_fd_is_open(sv[0]), 0);
	assert_int_equal(fdh_test_fd_is_open(sv[1]), 0);
	assert_int_equal(fdh_closer_held(), 0);
	fdh_closer_close(-1);	/* ignored */
}

/* SigBlk of the thread that is not this one, as a mask. */
static unsigned long long
closer_sigblk(void)
{
	char path[320], line[256];
	unsigned long long mask = 0;
	struct dirent *e;
	DIR *dir;
	FILE *f;
	int tasks = 0;

	dir = opendir("/proc/self/task");
	assert_non_null(dir);
	while ((e = readdir(dir)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		tasks++;
		if (atol(e->d_name) == (long)gettid())
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
		f = fopen(path, "re");
		assert_non_null(f);
		while (fgets(line, sizeof(line), f))
			if (strncmp(line, "SigBlk:", 7) == 0)
				mask = strtoull(line + 7, NULL, 16);
		fclose(f);
	}
	closedir(dir);
	assert_int_equal(tasks, 2);
	return mask;
}

/* One thread, whatever the calls; it blocks the signals a signalfd waits for. */
static void
test_closer_start(void **state)
{
	unsigned long long blk;
	int sig;

	(void)state;
	assert_int_equal(fdh_closer_start(), 0);
	assert_int_equal(fdh_closer_start(), 0);
	assert_true(closer.have_dev[DEV_MEMFD]);
	assert_true(closer.have_dev[DEV_ANON]);
	blk = closer_sigblk();
	for (sig = 1; sig < 32; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			assert_true(blk & (1ull << (sig - 1)));
}

/* Closed at once: nothing behind them can make close() wait. */
static void
test_closer_closes_now(void **state)
{
	int fds[8], n = 0, p[2], i;
	sigset_t set;

	(void)state;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	fds[n++] = p[0];
	fds[n++] = p[1];
	fds[n++] = memfd_create("test", MFD_CLOEXEC);
	fds[n++] = eventfd(0, EFD_CLOEXEC);
	fds[n++] = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	sigemptyset(&set);
	fds[n++] = signalfd(-1, &set, SFD_CLOEXEC);
	fds[n++] = (int)syscall(SYS_pidfd_open, getpid(), 0);
	fds[n++] = epoll_create1(EPOLL_CLOEXEC);
	for (i = 0; i < n; i++) {
		assert_true(fds[i] >= 0);
		assert_false(closer_may_wait(fds[i]));
		fdh_closer_close(fds[i]);
		assert_int_equal(fdh_test_fd_is_open(fds[i]), 0);
	}
	assert_int_equal(fdh_closer_held(), 0);
}

/* Sockets, terminals, files and devices may wait: the thread closes them. */
static void
test_closer_hands_over(void **state)
{
	char path[] = "/tmp/fdh-closer-XXXXXX";
	int fds[5], n = 0, sv[2], i;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	fds[n++] = sv[0];
	fds[n++] = sv[1];
	fds[n++] = mkostemp(path, O_CLOEXEC);
	assert_int_equal(unlink(path), 0);
	fds[n++] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	fds[n++] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	for (i = 0; i < n; i++) {
		assert_true(fds[i] >= 0);
		assert_true(closer_may_wait(fds[i]));
		fdh_closer_close(fds[i]);
	}
	assert_int_equal(wait_released(2000), 0);
	for (i = 0; i < n; i++)
		assert_int_equal(fdh_test_fd_is_open(fds[i]), 0);
}

/*
 * A close stuck on a lingering socket: the caller goes on at once, what
 * comes after waits in the queue (open, and counted by fdh_closer_held(),
 * beyond the queue's first allocation), and all of it is closed once the
 * linger ends.
 */
static void
test_closer_stuck_queues(void **state)
{
	enum { NPAIRS = QUEUE_MIN * 2 };
	int keep[2], tcp, pairs[NPAIRS][2], i;
	int64_t t0;

	(void)state;
	tcp = lingering_tcp(keep);
	t0 = mono_ms();
	fdh_closer_close(tcp);
	assert_true(mono_ms() - t0 < 200);
	/* The thread has taken it and is in close(). */
	for (i = 0; i < 200 && queued() > 0; i++)
		sleep_ms(5);
	assert_int_equal(queued(), 0);
	assert_int_equal(fdh_closer_held(), 1);

	t0 = mono_ms();
	for (i = 0; i < NPAIRS; i++) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pairs[i]), 0);
		fdh_closer_close(pairs[i][0]);
		fdh_closer_queue(pairs[i][1]);
	}
	assert_true(mono_ms() - t0 < 200);
	assert_int_equal(fdh_closer_held(), 1 + 2 * NPAIRS);
	assert_true(closer.cap >= 2 * NPAIRS);
	for (i = 0; i < NPAIRS; i++) {
		assert_int_equal(fdh_test_fd_is_open(pairs[i][0]), 1);
		assert_int_equal(fdh_test_fd_is_open(pairs[i][1]), 1);
	}

	assert_int_equal(wait_released(LINGER_S * 1000 + 3000), 0);
	assert_int_equal(fdh_test_fd_is_open(tcp), 0);
	for (i = 0; i < NPAIRS; i++) {
		assert_int_equal(fdh_test_fd_is_open(pairs[i][0]), 0);
		assert_int_equal(fdh_test_fd_is_open(pairs[i][1]), 0);
	}
	close(keep[0]);
	close(keep[1]);
}

int
main(void)
{
	/* In this order: the first runs before the thread exists. */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_closer_not_started_closes_now),
		cmocka_unit_test(test_closer_start),
		cmocka_unit_test(test_closer_closes_now),
		cmocka_unit_test(test_closer_hands_over),
		cmocka_unit_test(test_closer_stuck_queues),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
