/*
 * The closer process (src/lib/closer.c): what it holds and how it is
 * confined, which fds are closed at once and which go to it, that a close
 * stuck on a lingering TCP socket holds the others back without holding up
 * the caller, that they all close once it ends, and that the closer goes
 * with its parent.  Includes the .c to reach its state and
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
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>

/* The module itself, statics and all (STYLE.md, point 10). */
#include "../../src/lib/closer.c"	/* NOLINT(bugprone-suspicious-include) */
#include "harness.h"

/* Seconds the lingering socket below holds its closer. */
#define LINGER_S 1

/* Waits up to ms for nothing to be pending, offering it again; returns what still is. */
static unsigned
wait_released(long ms)
{
	int64_t end = fdh_test_now_ms() + ms;

	while (fdh_closer_held() > 0 && fdh_test_now_ms() < end) {
		fdh_closer_flush();
		fdh_test_sleep_ms(10);
	}
	return fdh_closer_held();
}

/* Whether fd's peer has closed it, within ms: EOF on a socket of a pair. */
static bool
peer_closed(int fd, long ms)
{
	int64_t end = fdh_test_now_ms() + ms;
	char c;

	do {
		if (recv(fd, &c, 1, MSG_DONTWAIT) == 0)
			return true;
		fdh_test_sleep_ms(10);
	} while (fdh_test_now_ms() < end);
	return false;
}

/* Whether the closer is in close() within ms (/proc/PID/syscall names the call). */
static bool
closer_in_close(long ms)
{
	int64_t end = fdh_test_now_ms() + ms;
	char path[64];
	long nr;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/syscall", (long)closer.pid);
	do {
		f = fopen(path, "re");
		assert_non_null(f);
		nr = -1;
		if (fscanf(f, "%ld", &nr) != 1)
			nr = -1;
		fclose(f);
		if (nr == SYS_close)
			return true;
		fdh_test_sleep_ms(5);
	} while (fdh_test_now_ms() < end);
	return false;
}

/* Waits up to ms for pid, our child, to exit; returns its status, or -1. */
static int
wait_exit(pid_t pid, long ms)
{
	int64_t end = fdh_test_now_ms() + ms;
	int status;

	do {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		fdh_test_sleep_ms(10);
	} while (fdh_test_now_ms() < end);
	return -1;
}

/* The value of a "Name:\tvalue" line of /proc/PID/status, or "". */
static void
proc_status(pid_t pid, const char *name, char *buf, size_t len)
{
	char path[64], line[256];
	size_t n = strlen(name);
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	buf[0] = '\0';
	f = fopen(path, "re");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, name, n) == 0 && line[n] == ':')
			snprintf(buf, len, "%s", line + n + 1 + strspn(line + n + 1, " \t"));
	fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
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

/*
 * One closer, whatever the calls: our child, named, confined, blocking
 * every signal, and holding no fd of ours but its socket (a copy of a
 * worker's control socket would hide the worker's death from fdhttpd).
 */
static void
test_closer_start(void **state)
{
	char path[320], link[64], buf[128];
	unsigned long long blk;
	struct dirent *e;
	int nfds = 0, sig;
	ssize_t n;
	DIR *dir;

	(void)state;
	assert_int_equal(fdh_closer_start(true, NULL), 0);
	assert_int_equal(fdh_closer_start(true, NULL), 0);
	assert_true(closer.have_dev[DEV_MEMFD]);
	assert_true(closer.have_dev[DEV_ANON]);
	assert_true(closer.pid > 0);
	assert_int_equal(fdh_test_fd_is_open(closer.sock), 1);

	proc_status(closer.pid, "Name", buf, sizeof(buf));
	assert_string_equal(buf, "fdh-closer");
	proc_status(closer.pid, "PPid", buf, sizeof(buf));
	assert_int_equal(atol(buf), (long)getpid());
	proc_status(closer.pid, "Seccomp", buf, sizeof(buf));
	assert_string_equal(buf, "2");
	proc_status(closer.pid, "NoNewPrivs", buf, sizeof(buf));
	assert_string_equal(buf, "1");
	proc_status(closer.pid, "SigBlk", buf, sizeof(buf));
	blk = strtoull(buf, NULL, 16);
	for (sig = 1; sig < 32; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			assert_true(blk & (1ull << (sig - 1)));

	snprintf(path, sizeof(path), "/proc/%ld/fd", (long)closer.pid);
	dir = opendir(path);
	assert_non_null(dir);
	while ((e = readdir(dir)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		nfds++;
		snprintf(path, sizeof(path), "/proc/%ld/fd/%s", (long)closer.pid, e->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		assert_true(n > 0);
		link[n] = '\0';
		assert_true(strncmp(link, "socket:", 7) == 0);
	}
	closedir(dir);
	assert_int_equal(nfds, 1);
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

/*
 * Sockets, terminals, files and devices may wait: the closer closes them,
 * and they leave our table at once.
 */
static void
test_closer_hands_over(void **state)
{
	char path[] = "/tmp/fdh-closer-XXXXXX";
	int fds[5], n = 0, sv[2], i;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	fds[n++] = sv[1];
	fds[n++] = mkostemp(path, O_CLOEXEC);
	assert_int_equal(unlink(path), 0);
	fds[n++] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	fds[n++] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	fds[n++] = dup(sv[0]);
	for (i = 0; i < n; i++) {
		assert_true(fds[i] >= 0);
		assert_true(closer_may_wait(fds[i]));
		fdh_closer_close(fds[i]);
		assert_int_equal(fdh_test_fd_is_open(fds[i]), 0);
	}
	assert_int_equal(fdh_closer_held(), 0);
	assert_true(peer_closed(sv[0], 2000));	/* sv[1]'s last reference went in the closer */
	close(sv[0]);
}

/*
 * A close stuck on a lingering socket: the caller goes on at once, what
 * comes after queues in the socket and, once it is full, waits with us
 * (open, and counted by fdh_closer_held(), beyond the pending array's
 * first allocation), and all of it is closed once the linger ends.
 */
static void
test_closer_stuck_queues(void **state)
{
	enum { NPAIRS = PENDING_MIN * 4 };
	int keep[2], tcp, pairs[NPAIRS][2], small = 1, i, before;
	int64_t t0;

	(void)state;
	/* The smallest buffer the kernel allows: a few messages fill it. */
	assert_int_equal(setsockopt(closer.sock, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	/*
	 * On a loaded machine the peer's window may take the data after all
	 * and the close not wait: then another socket, a few times.
	 */
	for (i = 0; i < 5; i++) {
		tcp = lingering_tcp(keep);
		t0 = fdh_test_now_ms();
		fdh_closer_close(tcp);
		assert_true(fdh_test_now_ms() - t0 < 200);
		assert_int_equal(fdh_test_fd_is_open(tcp), 0);
		assert_int_equal(fdh_closer_held(), 0);
		if (closer_in_close(500))
			break;
		close(keep[0]);
		close(keep[1]);
	}
	assert_true(i < 5);

	before = fdh_test_count_fds(0);
	t0 = fdh_test_now_ms();
	for (i = 0; i < NPAIRS; i++) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pairs[i]), 0);
		if (i % 2)
			fdh_closer_close(pairs[i][1]);
		else
			fdh_closer_queue(pairs[i][1]);
	}
	assert_true(fdh_test_now_ms() - t0 < 200);
	assert_true(fdh_closer_held() > PENDING_MIN);
	assert_true(fdh_closer_held() < NPAIRS);
	assert_true(closer.cap >= fdh_closer_held());
	/* What the closer took has left our table: ours are the kept ends and the pending. */
	assert_int_equal(fdh_test_count_fds(0), before + NPAIRS + (int)fdh_closer_npending);
	for (i = 0; i < NPAIRS; i++)
		assert_false(peer_closed(pairs[i][0], 0));

	assert_int_equal(wait_released(LINGER_S * 1000 + 3000), 0);
	assert_int_equal(fdh_test_count_fds(0), before + NPAIRS);
	for (i = 0; i < NPAIRS; i++) {
		assert_true(peer_closed(pairs[i][0], 2000));
		close(pairs[i][0]);
	}
	close(keep[0]);
	close(keep[1]);
}

/* The closer of a process that dies goes with it (its pid in *ret_pid). */
static void
closer_of_dying(pid_t *ret_pid)
{
	int p[2];
	pid_t mid, pid = -1;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	mid = fork();
	assert_true(mid >= 0);
	if (mid == 0) {
		/* A process of its own: its own closer, not a copy of ours. */
		close(closer.sock);
		closer.sock = -1;
		closer.started = false;
		if (fdh_closer_start(true, NULL) == 0)
			(void)!write(p[1], &closer.pid, sizeof(closer.pid));
		pause();
		_exit(0);
	}
	close(p[1]);
	assert_int_equal(read(p[0], &pid, sizeof(pid)), (ssize_t)sizeof(pid));
	close(p[0]);
	assert_int_equal(kill(mid, SIGKILL), 0);
	assert_int_equal(waitpid(mid, NULL, 0), mid);
	*ret_pid = pid;
}

/*
 * The closer goes when its parent does: at EOF on its socket, or killed by
 * PR_SET_PDEATHSIG.  This process is a subreaper, so that it can wait for
 * its grandchild.
 */
static void
test_closer_exits_with_parent(void **state)
{
	pid_t pid;
	int status;

	(void)state;
	assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	closer_of_dying(&pid);
	assert_true(wait_exit(pid, 2000) != -1);

	/* Ours, last: its end closed, it reads EOF and exits 0. */
	pid = closer.pid;
	close(closer.sock);
	closer.sock = -1;
	status = wait_exit(pid, 2000);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int
main(void)
{
	/* In this order: the first runs before the closer exists, the last ends it. */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_closer_not_started_closes_now),
		cmocka_unit_test(test_closer_start),
		cmocka_unit_test(test_closer_closes_now),
		cmocka_unit_test(test_closer_hands_over),
		cmocka_unit_test(test_closer_stuck_queues),
		cmocka_unit_test(test_closer_exits_with_parent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
