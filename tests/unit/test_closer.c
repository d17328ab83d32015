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
#include <poll.h>
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
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>

/* The module itself, statics and all (STYLE.md, point 10). */
#include "../../src/lib/closer.c"	/* NOLINT(bugprone-suspicious-include) */
#include "dispatch.h"
#include "harness.h"

/* Seconds the lingering socket below holds its closer. */
#define LINGER_S 1
/* A linger no close may be left to sit out: only a kill ends it. */
#define LINGER_FOREVER_S 3600

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

/*
 * Whether fd's other end has closed, within ms: EOF on a socket or a pipe,
 * after whatever data was still on its way (read and dropped).
 */
static bool
peer_closed(int fd, long ms)
{
	int64_t end = fdh_test_now_ms() + ms;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char buf[65536];
	int64_t left;
	ssize_t n;

	for (;;) {
		left = end - fdh_test_now_ms();
		if (poll(&pfd, 1, left > 0 ? (int)left : 0) == 1) {
			n = read(fd, buf, sizeof(buf));
			if (n == 0)
				return true;
			if (n == -1 && errno != EINTR)
				return false;
		} else if (left <= 0) {
			return false;
		}
	}
}

/*
 * How many children pid has (/proc/PID/task/PID/children), the first in
 * *ret_first (-1: none).
 */
static int
children(pid_t pid, pid_t *ret_first)
{
	char path[96];
	long child;
	int n = 0;
	FILE *f;

	*ret_first = -1;
	snprintf(path, sizeof(path), "/proc/%ld/task/%ld/children", (long)pid, (long)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return 0;
	while (fscanf(f, "%ld", &child) == 1)
		if (n++ == 0)
			*ret_first = (pid_t)child;
	fclose(f);
	return n;
}

/*
 * Whether manager has one runner (its pid in *ret_pid) and that runner is
 * under its own filter as well as the manager's: done setting itself up.
 */
static bool
runner_confined(pid_t manager, pid_t *ret_pid)
{
	char path[64], line[256];
	bool two = false;
	FILE *f;

	if (children(manager, ret_pid) != 1)
		return false;
	snprintf(path, sizeof(path), "/proc/%ld/status", (long)*ret_pid);
	f = fopen(path, "re");
	if (f == NULL)
		return false;
	while (fgets(line, sizeof(line), f))
		if (strcmp(line, "Seccomp_filters:\t2\n") == 0)
			two = true;
	fclose(f);
	return two;
}

/* Whether pid is in close() (/proc/PID/syscall names the call). */
static bool
in_close(pid_t pid)
{
	char path[64];
	long nr = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/syscall", (long)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return false;
	if (fscanf(f, "%ld", &nr) != 1)
		nr = -1;
	fclose(f);
	return nr == SYS_close;
}

/*
 * The process of the closer's that is in close() within ms: the closer
 * itself or a child of it.  Returns its pid, or -1.
 */
static pid_t
closer_in_close(long ms)
{
	int64_t end = fdh_test_now_ms() + ms;
	pid_t child;

	do {
		if (in_close(closer.pid))
			return closer.pid;
		if (children(closer.pid, &child) > 0 && in_close(child))
			return child;
		fdh_test_sleep_ms(5);
	} while (fdh_test_now_ms() < end);
	return -1;
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
 * A TCP socket whose last close() waits linger_s: SO_LINGER on, and data
 * that cannot leave because the peer's window is full (the accepted end is
 * never read).  *ret_keep gets the listener and the accepted end, which the
 * caller closes afterwards.
 */
static int
lingering_tcp(int linger_s, int ret_keep[2])
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	struct linger lg = { .l_onoff = 1, .l_linger = linger_s };
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
 * pid, a process of the closer's, is parent's child, named, confined,
 * blocking every signal, and holds nsocks fds, all sockets: none of ours
 * (a copy of a worker's control socket would hide the worker's death from
 * fdhttpd), nor of its parent's but its own socket.
 */
static void
assert_closer_process(pid_t pid, pid_t parent, int nsocks)
{
	char path[320], link[64], buf[128];
	unsigned long long blk;
	struct dirent *e;
	int nfds = 0, sig;
	ssize_t n;
	DIR *dir;

	proc_status(pid, "Name", buf, sizeof(buf));
	assert_string_equal(buf, "fdh-closer");
	proc_status(pid, "PPid", buf, sizeof(buf));
	assert_int_equal(atol(buf), (long)parent);
	proc_status(pid, "Seccomp", buf, sizeof(buf));
	assert_string_equal(buf, "2");
	proc_status(pid, "NoNewPrivs", buf, sizeof(buf));
	assert_string_equal(buf, "1");
	proc_status(pid, "SigBlk", buf, sizeof(buf));
	blk = strtoull(buf, NULL, 16);
	for (sig = 1; sig < 32; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			assert_true(blk & (1ull << (sig - 1)));

	snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
	dir = opendir(path);
	assert_non_null(dir);
	while ((e = readdir(dir)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		nfds++;
		snprintf(path, sizeof(path), "/proc/%ld/fd/%s", (long)pid, e->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		assert_true(n > 0);
		link[n] = '\0';
		assert_true(strncmp(link, "socket:", 7) == 0);
	}
	closedir(dir);
	assert_int_equal(nfds, nsocks);
}

/*
 * One closer, whatever the calls: the manager, our child, with its socket
 * and its runner's, and one runner, the manager's child, with its socket
 * alone.
 */
static void
test_closer_start(void **state)
{
	pid_t runner;

	(void)state;
	assert_int_equal(fdh_closer_start(true, NULL), 0);
	assert_int_equal(fdh_closer_start(true, NULL), 0);
	assert_true(closer.have_dev[DEV_MEMFD]);
	assert_true(closer.pid > 0);
	assert_int_equal(fdh_test_fd_is_open(closer.sock), 1);
	assert_closer_process(closer.pid, getpid(), 2);
	assert_int_equal(children(closer.pid, &runner), 1);
	assert_closer_process(runner, closer.pid, 1);
}

/*
 * Closed at once: nothing behind them can make close() wait.  A memfd up
 * to 16 MiB; a pidfd where pidfs gives it a filesystem of its own.
 */
static void
test_closer_closes_now(void **state)
{
	int fds[8], n = 0, p[2], i;

	(void)state;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	fds[n++] = p[0];
	fds[n++] = p[1];
	fds[n++] = memfd_create("test", MFD_CLOEXEC);
	fds[n++] = memfd_create("test", MFD_CLOEXEC);
	assert_int_equal(fallocate(fds[n - 1], 0, 0, 16 << 20), 0);
	if (closer.have_dev[DEV_PIDFS])
		fds[n++] = (int)syscall(SYS_pidfd_open, getpid(), 0);
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
	int fds[10], n = 0, sv[2], i;
	sigset_t set;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	fds[n++] = mkostemp(path, O_CLOEXEC);
	assert_int_equal(unlink(path), 0);
	fds[n++] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	fds[n++] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	fds[n++] = dup(sv[0]);
	/* Freeing a memfd of gigabytes takes seconds: past 16 MiB, it goes. */
	fds[n++] = memfd_create("test", MFD_CLOEXEC);
	assert_int_equal(fallocate(fds[n - 1], 0, 0, (16 << 20) + 4096), 0);
	/*
	 * Anonymous inodes all look alike, and an epoll instance with
	 * millions of watches takes seconds to release.
	 */
	fds[n++] = epoll_create1(EPOLL_CLOEXEC);
	fds[n++] = eventfd(0, EFD_CLOEXEC);
	fds[n++] = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	sigemptyset(&set);
	fds[n++] = signalfd(-1, &set, SFD_CLOEXEC);
	/* Last: its end says the closer got through the others (the next test wants it idle). */
	fds[n++] = sv[1];
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
 * comes after queues in the closer's sockets and, once they are full,
 * waits with us (open, and counted by fdh_closer_held(), beyond the
 * pending array's first allocation), and all of it is closed once the
 * linger ends.
 */
static void
test_closer_stuck_queues(void **state)
{
	int keep[2], tcp, (*pairs)[2], small = 1, i, n, max, before;
	struct rlimit rl;
	int64_t t0;

	(void)state;
	/* The smallest buffer the kernel allows: a few messages fill it. */
	assert_int_equal(setsockopt(closer.sock, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	/*
	 * On a loaded machine the peer's window may take the data after all
	 * and the close not wait: then another socket, a few times.
	 */
	for (i = 0; i < 5; i++) {
		tcp = lingering_tcp(LINGER_S, keep);
		t0 = fdh_test_now_ms();
		fdh_closer_close(tcp);
		assert_true(fdh_test_now_ms() - t0 < 200);
		assert_int_equal(fdh_test_fd_is_open(tcp), 0);
		/* Handed over; on a busy machine the word that follows may wait a moment. */
		assert_int_equal(wait_released(2000), 0);
		if (closer_in_close(500) > 0)
			break;
		close(keep[0]);
		close(keep[1]);
	}
	assert_true(i < 5);

	/*
	 * As many as it takes for some to wait with us: the manager's socket
	 * to its runner takes a few hundred first (net.core.wmem_default).
	 * Each costs us its kept end, and its other end while it waits.
	 */
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	max = rl.rlim_cur > 4096 ? 2048 : (int)(rl.rlim_cur / 2) - 32;
	pairs = calloc((size_t)max, sizeof(*pairs));
	assert_non_null(pairs);
	before = fdh_test_count_fds(0);
	t0 = fdh_test_now_ms();
	for (n = 0; n < max && fdh_closer_npending <= PENDING_MIN; n++) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pairs[n]), 0);
		if (n % 2)
			fdh_closer_close(pairs[n][1]);
		else
			fdh_closer_queue(pairs[n][1]);
	}
	assert_true(fdh_test_now_ms() - t0 < 500);
	assert_true(fdh_closer_held() > PENDING_MIN);
	assert_true(fdh_closer_held() < (unsigned)n);
	assert_true(closer.cap >= fdh_closer_held());
	/* What the closer took has left our table: ours are the kept ends and the pending. */
	assert_int_equal(fdh_test_count_fds(0), before + n + (int)fdh_closer_npending);
	for (i = 0; i < n; i++)
		assert_false(peer_closed(pairs[i][0], 0));

	assert_int_equal(wait_released(LINGER_S * 1000 + 3000), 0);
	assert_int_equal(fdh_test_count_fds(0), before + n);
	for (i = 0; i < n; i++) {
		assert_true(peer_closed(pairs[i][0], 2000));
		close(pairs[i][0]);
	}
	free(pairs);
	close(keep[0]);
	close(keep[1]);
}

/*
 * SIGSTOP and SIGCONT (a debugger, an operator, a job stopped whole) leave
 * the closer working.  Regression: the manager's poll() with a timeout
 * resumed through restart_syscall, which its filter did not allow, and the
 * kernel killed it.
 */
static void
test_closer_survives_stop_and_continue(void **state)
{
	pid_t manager = closer.pid, runner;
	char buf[32];
	int p[2];

	(void)state;
	assert_true(runner_confined(manager, &runner));
	assert_int_equal(kill(manager, SIGSTOP), 0);
	assert_int_equal(kill(runner, SIGSTOP), 0);
	fdh_test_sleep_ms(50);
	assert_int_equal(kill(runner, SIGCONT), 0);
	assert_int_equal(kill(manager, SIGCONT), 0);
	fdh_test_sleep_ms(50);
	proc_status(manager, "State", buf, sizeof(buf));
	assert_true(buf[0] == 'S' || buf[0] == 'R');
	assert_true(runner_confined(manager, &p[0]));
	assert_int_equal(p[0], runner);
	/* And it still closes what it is given. */
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	fdh_closer_queue(p[1]);
	assert_int_equal(wait_released(2000), 0);
	assert_true(peer_closed(p[0], 2000));
	close(p[0]);
}

static int
h_none(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	(void)req;
	(void)resp;
	(void)ud;
	return 0;
}

/*
 * fds the closer could not take while its manager was busy (here:
 * stopped) leave an idle dispatcher once it can: the loop offers them
 * again on its own, with nothing else to do.  Regression: they waited for
 * the next close, which an idle worker never makes, and the clients of the
 * connections among them for an EOF that never came.
 */
static void
test_closer_waiting_fds_leave_an_idle_loop(void **state)
{
	static const struct fdh_route routes[] = { { "GET", "/", h_none, NULL } };
	static const struct fdh_service svc = { .name = "t", .routes = routes, .nroutes = 1 };
	int small = 1, (*pairs)[2], i, n, max = 2048;
	struct fdh_dispatch *d;
	struct fdh_limits lim;

	(void)state;
	fdh_limits_default(&lim);
	assert_int_equal(fdh_dispatch_new(&svc, &lim, &d), 0);
	assert_int_equal(setsockopt(closer.sock, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	pairs = calloc((size_t)max, sizeof(*pairs));
	assert_non_null(pairs);
	assert_int_equal(kill(closer.pid, SIGSTOP), 0);
	for (n = 0; n < max && fdh_closer_held() == 0; n++) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pairs[n]), 0);
		fdh_closer_queue(pairs[n][1]);
	}
	assert_true(fdh_closer_held() > 0);
	assert_int_equal(kill(closer.pid, SIGCONT), 0);
	/* Turns with nothing to do: no connection, no timer but the retry. */
	for (i = 0; i < 40 && fdh_closer_held() > 0; i++)
		assert_true(fdh_dispatch_run_once(d, 1000) >= 0);
	assert_int_equal(fdh_closer_held(), 0);
	for (i = 0; i < n; i++) {
		assert_true(peer_closed(pairs[i][0], 2000));
		close(pairs[i][0]);
	}
	free(pairs);
	fdh_dispatch_free(d);
}

/* Whether pid is gone (exited and reaped) within ms. */
static bool
gone(pid_t pid, long ms)
{
	int64_t end = fdh_test_now_ms() + ms;

	do {
		if (kill(pid, 0) == -1 && errno == ESRCH)
			return true;
		fdh_test_sleep_ms(10);
	} while (fdh_test_now_ms() < end);
	return false;
}

/*
 * A close that never ends (an hour's linger, a peer that never reads) holds
 * up nothing for long: what is queued behind it is closed within the
 * closer's bound, the process stuck in it goes, and so does the socket (its
 * peer reads the data to the end, then EOF: the close went on without it).
 * Twice, so that the closer that took over is seen to take over in turn;
 * none of those that went is left unreaped.
 */
static void
test_closer_stuck_is_bounded(void **state)
{
	enum { NPIPES = 8, ROUNDS = 2 };
	int keep[2], tcp, p[NPIPES][2], before, round, tries, i;
	pid_t stuck = -1;
	char buf[32];

	(void)state;
	for (round = 0; round < ROUNDS; round++) {
		/* Counted with nothing of ours waiting for the closer. */
		assert_int_equal(wait_released(3000), 0);
		before = fdh_test_count_fds(0);
		/* As in test_closer_stuck_queues: the close may not wait on a loaded machine. */
		for (tries = 0; tries < 5; tries++) {
			tcp = lingering_tcp(LINGER_FOREVER_S, keep);
			fdh_closer_close(tcp);
			stuck = closer_in_close(500);
			if (stuck > 0)
				break;
			close(keep[0]);
			close(keep[1]);
		}
		assert_true(tries < 5);

		/* Pipes, which the closer takes only when told to: EOF says it closed them. */
		for (i = 0; i < NPIPES; i++) {
			assert_int_equal(pipe2(p[i], O_CLOEXEC), 0);
			fdh_closer_queue(p[i][1]);
		}
		/* The closer takes them all within its bound (the earlier test left its socket small). */
		assert_int_equal(wait_released(RUNNER_STUCK_MS + 3000), 0);
		for (i = 0; i < NPIPES; i++) {
			assert_true(peer_closed(p[i][0], 2000));
			close(p[i][0]);
		}
		assert_true(gone(stuck, 3000));
		assert_true(peer_closed(keep[1], 5000));
		close(keep[0]);
		close(keep[1]);
		assert_int_equal(fdh_test_count_fds(0), before);
	}
	/*
	 * The last runner came after the manager confined itself: its filter
	 * and the manager's.  Waited for: on a loaded machine the manager may
	 * have had to make it again (a late greeting, a fork refused for now),
	 * and a runner just made is still closing what it inherited until its
	 * own filter goes on.
	 */
	for (i = 0; i < 200 && !runner_confined(closer.pid, &stuck); i++)
		fdh_test_sleep_ms(10);
	assert_true(runner_confined(closer.pid, &stuck));
	assert_closer_process(stuck, closer.pid, 1);
	proc_status(stuck, "Seccomp_filters", buf, sizeof(buf));
	assert_string_equal(buf, "2");
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
		cmocka_unit_test(test_closer_stuck_is_bounded),
		cmocka_unit_test(test_closer_survives_stop_and_continue),
		cmocka_unit_test(test_closer_waiting_fds_leave_an_idle_loop),
		cmocka_unit_test(test_closer_exits_with_parent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
