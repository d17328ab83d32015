/*
 * SCM_RIGHTS over a real socketpair (CONTRACT section 3): fds arrive
 * close-on-exec, more than the receiver's room is reported as truncated and
 * leaks nothing, a vanished peer is -EPIPE and never SIGPIPE.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <fdhttp/common.h>
#include "fdpass.h"
#include "harness.h"

struct pair {
	int a, b;
	int base_fds;	/* open before the test, the pair included */
};

static int
setup(void **state)
{
	static struct pair p;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		return -1;
	p.a = sv[0];
	p.b = sv[1];
	p.base_fds = fdh_test_count_fds(0);
	*state = &p;
	return 0;
}

static int
teardown(void **state)
{
	struct pair *p = *state;

	if (p->a >= 0)
		close(p->a);
	if (p->b >= 0)
		close(p->b);
	return 0;
}

/* n fds to send: memfds whose content names their position. */
static void
make_fds(int *fds, size_t n)
{
	char content[32];
	size_t i;

	for (i = 0; i < n; i++) {
		snprintf(content, sizeof(content), "fd%zu", i);
		fds[i] = fdh_test_make_memfd(content);
		assert_true(fds[i] >= 0);
	}
}

static void
close_all(int *fds, size_t n)
{
	fdh_close_fds(fds, n);
}

static ssize_t
send_str(int sock, const char *s, const int *fds, size_t nfds)
{
	struct iovec iov = { .iov_base = (void *)(uintptr_t)s, .iov_len = strlen(s) };

	return fdh_send_fds(sock, &iov, 1, fds, nfds);
}

static void
assert_no_leak(const struct pair *p)
{
	assert_int_equal(fdh_test_count_fds(0), p->base_fds);
}

static void
test_fds_arrive_cloexec(void **state)
{
	struct pair *p = *state;
	int sent[3], got[8];
	char buf[64];
	size_t nfds = 99, i;
	bool trunc = true;
	ssize_t n;

	make_fds(sent, 3);
	assert_int_equal(send_str(p->a, "hello", sent, 3), 5);
	n = fdh_recv_fds(p->b, buf, sizeof(buf), got, 8, &nfds, &trunc);
	assert_int_equal(n, 5);
	assert_memory_equal(buf, "hello", 5);
	assert_int_equal(nfds, 3);
	assert_false(trunc);
	for (i = 0; i < 3; i++) {
		int flags = fcntl(got[i], F_GETFD);

		assert_true(flags != -1);
		assert_true(flags & FD_CLOEXEC);
		/* The same open files, in the order sent. */
		assert_int_equal(fdh_test_same_file(got[i], sent[i]), 1);
		assert_int_not_equal(got[i], sent[i]);
	}
	close_all(got, 3);
	close_all(sent, 3);
	assert_no_leak(p);
}

static void
test_no_fds(void **state)
{
	struct pair *p = *state;
	int got[4] = { -7, -7, -7, -7 };
	char buf[64];
	size_t nfds = 99;
	bool trunc = true;

	assert_int_equal(send_str(p->a, "plain", NULL, 0), 5);
	assert_int_equal(fdh_recv_fds(p->b, buf, sizeof(buf), got, 4, &nfds, &trunc), 5);
	assert_int_equal(nfds, 0);
	assert_false(trunc);
	assert_int_equal(got[0], -7);

	/* Room for none, none sent: nothing truncated either. */
	assert_int_equal(send_str(p->a, "x", NULL, 0), 1);
	nfds = 99;
	trunc = true;
	assert_int_equal(fdh_recv_fds(p->b, buf, sizeof(buf), got, 0, &nfds, &trunc), 1);
	assert_int_equal(nfds, 0);
	assert_false(trunc);
	assert_no_leak(p);
}

/* Sends nsend fds to a receiver with room for max; expects truncation, no leak. */
static void
check_truncated(struct pair *p, size_t nsend, size_t max)
{
	int sent[FDH_MAX_FDS_CEILING], got[FDH_MAX_FDS_CEILING];
	char buf[64];
	size_t nfds = 999, i;
	bool trunc = false;
	ssize_t n;

	make_fds(sent, nsend);
	assert_int_equal(send_str(p->a, "abc", sent, nsend), 3);
	close_all(sent, nsend);
	for (i = 0; i < FDH_MAX_FDS_CEILING; i++)
		got[i] = -1;
	n = fdh_recv_fds(p->b, buf, sizeof(buf), got, max, &nfds, &trunc);
	assert_int_equal(n, 3);
	assert_memory_equal(buf, "abc", 3);
	assert_true(nfds <= max);
	if (!trunc)
		fail_msg("%zu fds sent, room for %zu: not reported truncated (%zu received)",
		    nsend, max, nfds);
	/* Nothing was written past the room given. */
	for (i = max; i < FDH_MAX_FDS_CEILING; i++)
		assert_int_equal(got[i], -1);
	for (i = 0; i < nfds; i++)
		assert_true(fcntl(got[i], F_GETFD) & FD_CLOEXEC);
	close_all(got, nfds);
	assert_no_leak(p);
}

static void
test_more_than_max_even(void **state)
{
	check_truncated(*state, 17, 16);
}

static void
test_more_than_max_many(void **state)
{
	check_truncated(*state, 40, 16);
}

static void
test_more_than_max_one(void **state)
{
	/* Room for one fd, two sent: the second must not go unnoticed. */
	check_truncated(*state, 2, 1);
}

static void
test_more_than_max_odd(void **state)
{
	check_truncated(*state, 4, 3);
}

static void
test_max_zero_with_fds(void **state)
{
	check_truncated(*state, 1, 0);
}

static void
test_max_zero_with_many_fds(void **state)
{
	check_truncated(*state, 5, 0);
}

static void
test_exactly_max(void **state)
{
	struct pair *p = *state;
	size_t counts[] = { 1, 2, 3, 16 }, k;

	for (k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		int sent[16], got[16];
		char buf[8];
		size_t nfds = 0, n = counts[k], i;
		bool trunc = true;

		make_fds(sent, n);
		assert_int_equal(send_str(p->a, "z", sent, n), 1);
		assert_int_equal(fdh_recv_fds(p->b, buf, sizeof(buf), got, n, &nfds, &trunc), 1);
		assert_int_equal(nfds, n);
		assert_false(trunc);
		for (i = 0; i < n; i++)
			assert_int_equal(fdh_test_same_file(got[i], sent[i]), 1);
		close_all(got, n);
		close_all(sent, n);
	}
	assert_no_leak(p);
}

static void
test_kernel_ceiling(void **state)
{
	struct pair *p = *state;
	int sent[FDH_MAX_FDS_CEILING + 1], got[FDH_MAX_FDS_CEILING + 1], one;
	struct rlimit rl;
	char buf[8];
	size_t nfds = 0, i;
	bool trunc = true;

	/* 253 sent and 253 received at once need room for 506 more fds. */
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur < 1024 && rl.rlim_max >= 1024) {
		rl.rlim_cur = 1024;
		assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
	}
	one = fdh_test_make_memfd("one");
	assert_true(one >= 0);
	for (i = 0; i < FDH_MAX_FDS_CEILING; i++) {
		sent[i] = dup(one);
		assert_true(sent[i] >= 0);
	}
	assert_int_equal(send_str(p->a, "k", sent, FDH_MAX_FDS_CEILING), 1);
	close_all(sent, FDH_MAX_FDS_CEILING);
	assert_int_equal(fdh_recv_fds(p->b, buf, sizeof(buf), got, FDH_MAX_FDS_CEILING, &nfds,
	    &trunc), 1);
	assert_int_equal(nfds, FDH_MAX_FDS_CEILING);
	assert_false(trunc);
	for (i = 0; i < nfds; i++)
		assert_int_equal(fdh_test_same_file(got[i], one), 1);
	close_all(got, nfds);
	close(one);
	assert_no_leak(p);

	/* Past the ceiling: refused by both ends before any syscall. */
	assert_int_equal(send_str(p->a, "k", sent, FDH_MAX_FDS_CEILING + 1), -E2BIG);
	assert_int_equal(fdh_recv_fds(p->b, buf, sizeof(buf), got, FDH_MAX_FDS_CEILING + 1,
	    &nfds, &trunc), -EINVAL);
}

static void
test_byte_counts_and_fds_with_first_byte(void **state)
{
	struct pair *p = *state;
	struct iovec iov[3] = {
		{ .iov_base = (void *)(uintptr_t)"GET ", .iov_len = 4 },
		{ .iov_base = (void *)(uintptr_t)"/x", .iov_len = 2 },
		{ .iov_base = (void *)(uintptr_t)" HTTP/1.1", .iov_len = 9 },
	};
	int sent[2], got[4];
	char buf[16];
	size_t nfds = 0;
	bool trunc = true;

	make_fds(sent, 2);
	assert_int_equal(fdh_send_fds(p->a, iov, 3, sent, 2), 15);
	/* A short read: the fds come with it, and not again. */
	assert_int_equal(fdh_recv_fds(p->b, buf, 5, got, 4, &nfds, &trunc), 5);
	assert_memory_equal(buf, "GET /", 5);
	assert_int_equal(nfds, 2);
	assert_false(trunc);
	close_all(got, 2);
	nfds = 99;
	assert_int_equal(fdh_recv_fds(p->b, buf, sizeof(buf), got, 4, &nfds, &trunc), 10);
	assert_memory_equal(buf, "x HTTP/1.1", 10);
	assert_int_equal(nfds, 0);
	assert_false(trunc);
	close_all(sent, 2);
	assert_no_leak(p);
}

static void
test_two_sends_keep_their_fds_apart(void **state)
{
	struct pair *p = *state;
	int s1[1], s2[2], got[4];
	char buf[16];
	size_t nfds = 0;
	bool trunc = true;

	make_fds(s1, 1);
	make_fds(s2, 2);
	assert_int_equal(send_str(p->a, "one", s1, 1), 3);
	assert_int_equal(send_str(p->a, "two", s2, 2), 3);
	/* A read ends with the bytes that brought fds: the next message's stay apart. */
	assert_int_equal(fdh_recv_fds(p->b, buf, sizeof(buf), got, 4, &nfds, &trunc), 3);
	assert_memory_equal(buf, "one", 3);
	assert_int_equal(nfds, 1);
	assert_int_equal(fdh_test_same_file(got[0], s1[0]), 1);
	close_all(got, 1);
	assert_int_equal(fdh_recv_fds(p->b, buf, sizeof(buf), got, 4, &nfds, &trunc), 3);
	assert_memory_equal(buf, "two", 3);
	assert_int_equal(nfds, 2);
	assert_int_equal(fdh_test_same_file(got[1], s2[1]), 1);
	close_all(got, 2);
	close_all(s1, 1);
	close_all(s2, 2);
	assert_no_leak(p);
}

/*
 * Without fds: one buffer through fdh_send() or fdh_send_fds() (which
 * hands it to send()), two through sendmsg(); the bytes arrive whole and
 * in order, and no control data comes with them.
 */
static void
test_without_fds_bytes_arrive_in_order(void **state)
{
	static const size_t splits[][2] = {
		{ 42, 0 }, { 38, 4 }, { 0, 9 }, { 4000, 3000 },
	};
	struct pair *p = *state;
	static char out[8192], in[8192];
	size_t i, k, want = 0, have = 0, nfds = 0;
	int got[1];
	bool trunc = true;

	for (k = 0; k < sizeof(out); k++)
		out[k] = (char)('a' + k % 23);
	assert_int_equal(fdh_send(p->a, out, 5), 5);
	want += 5;
	for (i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
		size_t h = splits[i][0], b = splits[i][1];
		struct iovec iov[2] = {
			{ .iov_base = out + want, .iov_len = h },
			{ .iov_base = out + want + h, .iov_len = b },
		};

		assert_int_equal(fdh_send_fds(p->a, iov, b ? 2 : 1, NULL, 0), (ssize_t)(h + b));
		want += h + b;
	}
	while (have < want) {
		ssize_t n = fdh_recv_fds(p->b, in + have, sizeof(in) - have, got, 1, &nfds,
		    &trunc);

		assert_true(n > 0);
		assert_int_equal(nfds, 0);
		assert_false(trunc);
		have += (size_t)n;
	}
	assert_int_equal(have, want);
	assert_memory_equal(in, out, want);
	assert_no_leak(p);
}

static void
test_eof_and_eagain(void **state)
{
	struct pair *p = *state;
	int got[2];
	char buf[8];
	size_t nfds = 0;
	bool trunc = false;
	int fl;

	fl = fcntl(p->b, F_GETFL);
	assert_int_equal(fcntl(p->b, F_SETFL, fl | O_NONBLOCK), 0);
	assert_int_equal(fdh_recv_fds(p->b, buf, sizeof(buf), got, 2, &nfds, &trunc), -EAGAIN);
	close(p->a);
	p->a = -1;
	assert_int_equal(fdh_recv_fds(p->b, buf, sizeof(buf), got, 2, &nfds, &trunc), 0);
}

/* Whether SIGPIPE is pending (it is blocked); consumes it if so. */
static bool
sigpipe_pending(void)
{
	sigset_t pend, only;
	struct timespec zero = { 0, 0 };

	assert_int_equal(sigpending(&pend), 0);
	if (!sigismember(&pend, SIGPIPE))
		return false;
	sigemptyset(&only);
	sigaddset(&only, SIGPIPE);
	(void)sigtimedwait(&only, NULL, &zero);
	return true;
}

static void
test_closed_peer_is_epipe(void **state)
{
	struct pair *p = *state;
	sigset_t block, old;
	int sent[2];
	ssize_t r1, r2, r3;
	bool pending;

	make_fds(sent, 2);
	close(p->b);
	p->b = -1;
	/* Blocked, a SIGPIPE would stay pending instead of ending the test. */
	sigemptyset(&block);
	sigaddset(&block, SIGPIPE);
	assert_int_equal(sigprocmask(SIG_BLOCK, &block, &old), 0);
	r1 = send_str(p->a, "nobody", NULL, 0);
	r2 = send_str(p->a, "nobody", sent, 2);
	r3 = fdh_send(p->a, "nobody", 6);
	pending = sigpipe_pending();
	assert_int_equal(sigprocmask(SIG_SETMASK, &old, NULL), 0);
	assert_int_equal(r1, -EPIPE);
	assert_int_equal(r2, -EPIPE);
	assert_int_equal(r3, -EPIPE);
	assert_false(pending);
	/* Borrowed: still ours after the failure. */
	assert_int_equal(fdh_test_fd_is_open(sent[0]), 1);
	assert_int_equal(fdh_test_fd_is_open(sent[1]), 1);
	close_all(sent, 2);
	assert_int_equal(fdh_test_count_fds(0), p->base_fds - 1);
}

static void
test_close_fds(void **state)
{
	struct pair *p = *state;
	int fds[4];
	int a, b;

	make_fds(fds, 2);
	a = fds[0];
	b = fds[1];
	fds[2] = -1;
	fds[3] = fds[1];
	fds[1] = -1;
	fdh_close_fds(fds, 4);
	assert_int_equal(fds[0], -1);
	assert_int_equal(fds[1], -1);
	assert_int_equal(fds[2], -1);
	assert_int_equal(fds[3], -1);
	assert_int_equal(fdh_test_fd_is_open(a), 0);
	assert_int_equal(fdh_test_fd_is_open(b), 0);
	assert_no_leak(p);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_fds_arrive_cloexec),
		T(test_no_fds),
		T(test_more_than_max_even),
		T(test_more_than_max_many),
		T(test_more_than_max_one),
		T(test_more_than_max_odd),
		T(test_max_zero_with_fds),
		T(test_max_zero_with_many_fds),
		T(test_exactly_max),
		T(test_kernel_ceiling),
		T(test_byte_counts_and_fds_with_first_byte),
		T(test_two_sends_keep_their_fds_apart),
		T(test_without_fds_bytes_arrive_in_order),
		T(test_eof_and_eagain),
		T(test_closed_peer_is_epipe),
		T(test_close_fds),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
