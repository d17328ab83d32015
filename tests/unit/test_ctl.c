/*
 * The control messages over a real SOCK_SEQPACKET pair: batches of ended
 * connections are checked against their count; those of the broker:
 * OPEN carries its path whole, OPEN_REPLY its fd; a path without its NUL,
 * a reply whose error and fd disagree, and a type sent the wrong way are
 * refused, with every fd that came along closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "ctl.h"
#include "fdpass.h"
#include "harness.h"

struct pair {
	int sup;	/* the supervisor's end */
	int wrk;	/* the worker's end */
	int base_fds;
};

static int
setup(void **state)
{
	static struct pair p;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
		return -1;
	p.sup = sv[0];
	p.wrk = sv[1];
	p.base_fds = fdh_test_count_fds(0);
	*state = &p;
	return 0;
}

static int
teardown(void **state)
{
	struct pair *p = *state;

	close(p->sup);
	close(p->wrk);
	return 0;
}

/* Sends raw bytes with an optional fd, bypassing fdh_ctl_send()'s checks. */
static void
send_raw(int sock, const void *buf, size_t len, int fd)
{
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = (void *)(uintptr_t)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof(u));
		msg.msg_control = u.b;
		msg.msg_controllen = sizeof(u.b);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	assert_int_equal(sendmsg(sock, &msg, 0), (ssize_t)len);
}

static void
test_open_round_trip(void **state)
{
	struct pair *p = *state;
	struct fdh_ctl_msg m, got;
	int fds[FDH_CTL_MAX_FDS];
	const char *why = NULL;
	size_t nfds = 9;

	fdh_ctl_init(&m, FDH_CTL_OPEN);
	m.u.open.id = 7;
	m.u.open.flags = O_RDONLY | O_DIRECTORY;
	strcpy(m.u.open.path, "/srv/data/x");
	assert_int_equal(fdh_ctl_send(p->wrk, &m, NULL, 0), 0);
	assert_int_equal(fdh_ctl_recv(p->sup, FDH_CTL_SUPERVISOR, &got, fds, &nfds, &why), 1);
	assert_int_equal(nfds, 0);
	assert_int_equal(got.h.type, FDH_CTL_OPEN);
	assert_int_equal(got.u.open.id, 7);
	assert_int_equal(got.u.open.flags, O_RDONLY | O_DIRECTORY);
	assert_string_equal(got.u.open.path, "/srv/data/x");
	/* The worker may not receive what it sends. */
	assert_int_equal(fdh_ctl_send(p->sup, &m, NULL, 0), 0);
	assert_int_equal(fdh_ctl_recv(p->wrk, FDH_CTL_WORKER, &got, fds, &nfds, &why), -EBADMSG);
	assert_string_equal(why, "unexpected type");
}

static void
test_open_path_without_nul(void **state)
{
	struct pair *p = *state;
	struct fdh_ctl_msg m, got;
	int fds[FDH_CTL_MAX_FDS];
	const char *why = NULL;
	size_t nfds = 0;

	fdh_ctl_init(&m, FDH_CTL_OPEN);
	memset(m.u.open.path, 'a', sizeof(m.u.open.path));
	send_raw(p->wrk, &m, sizeof(struct fdh_ctl_hdr) + sizeof(struct fdh_ctl_open), -1);
	assert_int_equal(fdh_ctl_recv(p->sup, FDH_CTL_SUPERVISOR, &got, fds, &nfds, &why), -EBADMSG);
	assert_string_equal(why, "OPEN path without its NUL");
}

static void
test_open_reply_with_fd(void **state)
{
	struct pair *p = *state;
	struct fdh_ctl_msg m, got;
	int fds[FDH_CTL_MAX_FDS], fd = fdh_test_make_memfd("file");
	const char *why = NULL;
	size_t nfds = 0;
	char buf[8] = "";

	assert_true(fd >= 0);
	fdh_ctl_init(&m, FDH_CTL_OPEN_REPLY);
	m.h.flags = FDH_CTL_F_FD;
	m.u.open_reply.id = 3;
	assert_int_equal(fdh_ctl_send(p->sup, &m, &fd, 1), 0);
	close(fd);
	assert_int_equal(fdh_ctl_recv(p->wrk, FDH_CTL_WORKER, &got, fds, &nfds, &why), 1);
	assert_int_equal(nfds, 1);
	assert_int_equal(got.u.open_reply.id, 3);
	assert_int_equal(got.u.open_reply.error, 0);
	assert_int_equal(pread(fds[0], buf, sizeof(buf) - 1, 0), 4);
	assert_string_equal(buf, "file");
	assert_int_equal(fcntl(fds[0], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	close(fds[0]);
	assert_int_equal(fdh_test_count_fds(0), p->base_fds);

	/* A refusal: no fd, a negative errno. */
	fdh_ctl_init(&m, FDH_CTL_OPEN_REPLY);
	m.u.open_reply.id = 4;
	m.u.open_reply.error = -EACCES;
	assert_int_equal(fdh_ctl_send(p->sup, &m, NULL, 0), 0);
	assert_int_equal(fdh_ctl_recv(p->wrk, FDH_CTL_WORKER, &got, fds, &nfds, &why), 1);
	assert_int_equal(nfds, 0);
	assert_int_equal(got.u.open_reply.error, -EACCES);
	/* The flag and the fd count must agree. */
	assert_int_equal(fdh_ctl_send(p->sup, &m, &fd, 1), -EINVAL);
}

static void
test_open_reply_disagreeing(void **state)
{
	struct pair *p = *state;
	struct fdh_ctl_msg m, got;
	int fds[FDH_CTL_MAX_FDS], fd;
	const char *why = NULL;
	size_t nfds = 0, len = sizeof(struct fdh_ctl_hdr) + sizeof(struct fdh_ctl_open_reply);

	/* An fd with an error: the fd is closed, never handed on. */
	fd = fdh_test_make_memfd("x");
	fdh_ctl_init(&m, FDH_CTL_OPEN_REPLY);
	m.h.flags = FDH_CTL_F_FD;
	m.u.open_reply.error = -ENOENT;
	send_raw(p->sup, &m, len, fd);
	close(fd);
	assert_int_equal(fdh_ctl_recv(p->wrk, FDH_CTL_WORKER, &got, fds, &nfds, &why), -EBADMSG);
	assert_string_equal(why, "OPEN_REPLY error and fd disagree");
	assert_int_equal(fdh_test_count_fds(0), p->base_fds);

	/* No fd and no error: nothing to give the caller. */
	fdh_ctl_init(&m, FDH_CTL_OPEN_REPLY);
	send_raw(p->sup, &m, len, -1);
	assert_int_equal(fdh_ctl_recv(p->wrk, FDH_CTL_WORKER, &got, fds, &nfds, &why), -EBADMSG);
	assert_string_equal(why, "OPEN_REPLY error and fd disagree");

	/* The flag without the fd. */
	fdh_ctl_init(&m, FDH_CTL_OPEN_REPLY);
	m.h.flags = FDH_CTL_F_FD;
	send_raw(p->sup, &m, len, -1);
	assert_int_equal(fdh_ctl_recv(p->wrk, FDH_CTL_WORKER, &got, fds, &nfds, &why), -EBADMSG);
	assert_string_equal(why, "wrong fd count for its type");
}

/*
 * A batch of ended connections: the count is checked, since ids past it
 * would be whatever the sender left in the record, and the supervisor
 * would release connections it never handed over.
 */
static void
test_conns_closed_batch(void **state)
{
	struct pair *p = *state;
	struct fdh_ctl_msg m, got;
	int fds[FDH_CTL_MAX_FDS];
	const char *why = NULL;
	size_t nfds = 0, len = sizeof(struct fdh_ctl_hdr) + sizeof(struct fdh_ctl_closed_batch);

	fdh_ctl_init(&m, FDH_CTL_CONNS_CLOSED);
	m.u.batch.n = 2;
	m.u.batch.ids[0] = 5;
	m.u.batch.ids[1] = 1ull << 40;
	assert_int_equal(fdh_ctl_send(p->wrk, &m, NULL, 0), 0);
	assert_int_equal(fdh_ctl_recv(p->sup, FDH_CTL_SUPERVISOR, &got, fds, &nfds, &why), 1);
	assert_int_equal(got.u.batch.n, 2);
	assert_int_equal(got.u.batch.ids[0], 5);
	assert_int_equal(got.u.batch.ids[1], 1ull << 40);

	/* The answer to a FLUSH may hold no id; any other batch may not. */
	m.u.batch.n = 0;
	m.h.flags = FDH_CTL_F_FLUSHED;
	assert_int_equal(fdh_ctl_send(p->wrk, &m, NULL, 0), 0);
	assert_int_equal(fdh_ctl_recv(p->sup, FDH_CTL_SUPERVISOR, &got, fds, &nfds, &why), 1);
	assert_int_equal(got.h.flags, FDH_CTL_F_FLUSHED);
	m.h.flags = 0;
	send_raw(p->wrk, &m, len, -1);
	assert_int_equal(fdh_ctl_recv(p->sup, FDH_CTL_SUPERVISOR, &got, fds, &nfds, &why), -EBADMSG);
	assert_string_equal(why, "CONNS_CLOSED without an id");

	m.u.batch.n = FDH_CTL_CLOSED_MAX + 1;
	send_raw(p->wrk, &m, len, -1);
	assert_int_equal(fdh_ctl_recv(p->sup, FDH_CTL_SUPERVISOR, &got, fds, &nfds, &why), -EBADMSG);
	assert_string_equal(why, "CONNS_CLOSED count over FDH_CTL_CLOSED_MAX");

	/* FLUSH goes the other way only. */
	fdh_ctl_init(&m, FDH_CTL_FLUSH);
	assert_int_equal(fdh_ctl_send(p->sup, &m, NULL, 0), 0);
	assert_int_equal(fdh_ctl_recv(p->wrk, FDH_CTL_WORKER, &got, fds, &nfds, &why), 1);
	assert_int_equal(got.h.type, FDH_CTL_FLUSH);
	assert_int_equal(fdh_ctl_send(p->wrk, &m, NULL, 0), 0);
	assert_int_equal(fdh_ctl_recv(p->sup, FDH_CTL_SUPERVISOR, &got, fds, &nfds, &why), -EBADMSG);
	assert_string_equal(why, "unexpected type");
}

/* An empty record is a bad message, not the hang-up that reads the same way. */
static void
test_empty_record(void **state)
{
	struct pair *p = *state;
	struct fdh_ctl_msg got;
	int fds[FDH_CTL_MAX_FDS];
	const char *why = NULL;
	size_t nfds = 0;

	assert_int_equal(send(p->wrk, "", 0, 0), 0);
	assert_int_equal(fdh_ctl_recv(p->sup, FDH_CTL_SUPERVISOR, &got, fds, &nfds, &why),
	    -EBADMSG);
	assert_string_equal(why, "an empty record");
	assert_int_equal(fdh_ctl_recv(p->sup, FDH_CTL_SUPERVISOR, &got, fds, &nfds, &why),
	    -EAGAIN);
	assert_int_equal(shutdown(p->wrk, SHUT_WR), 0);
	assert_int_equal(fdh_ctl_recv(p->sup, FDH_CTL_SUPERVISOR, &got, fds, &nfds, &why), 0);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_open_round_trip),
		T(test_open_path_without_nul),
		T(test_open_reply_with_fd),
		T(test_open_reply_disagreeing),
		T(test_conns_closed_batch),
		T(test_empty_record),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
