/*
 * The engine end to end inside one process: a real dispatcher on its own
 * thread, connections over socketpairs, handlers of the test's own.  What
 * the wire-level integration tests cannot reach cheaply lives here:
 * partial writes, every timer, drain, taken fds, descriptor headroom.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <linux/sockios.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <fdhttp/service.h>
#include "dispatch.h"
#include "fdpass.h"
#include "harness.h"

#define BIG_BODY (4 * 1024 * 1024)

static int taken_fd = -1;
static struct rlimit saved_nofile;
static char *big;

static int
h_hello(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	const struct fdh_peer *p = fdh_req_peer(req);
	const char *x = fdh_req_header(req, "x-test");

	(void)ud;
	return fdh_resp_printf(resp, "%s %s ?%s x=%s uid=%u", fdh_req_method(req),
	    fdh_req_path(req), fdh_req_query(req), x ? x : "-", (unsigned)p->uid);
}

static int
h_big(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	int fd = fdh_test_make_memfd("attached");

	(void)req;
	(void)ud;
	if (fdh_resp_fd(resp, "memo", fd) < 0)
		return -EIO;
	return fdh_resp_body_borrow(resp, big, BIG_BODY, NULL, NULL);
}

static int
h_take(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	(void)ud;
	taken_fd = fdh_req_take_fd(req, "keep");
	return fdh_resp_printf(resp, "%zu", fdh_req_fd_count(req));
}

/*
 * Passes the request's fd "x" on as it borrowed it, without taking it
 * first; with "?fail" it then gives up, so that the 500 drops it.
 */
static int
h_pass_borrowed(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	int r;

	(void)ud;
	r = fdh_resp_fd(resp, "x", fdh_req_fd(req, "x"));
	if (r < 0)
		return r;
	return strcmp(fdh_req_query(req), "fail") == 0 ? -EIO : 0;
}

/* Hands the client the connection's pidfd; says whether it still has one open. */
static int
h_pass_pidfd(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	int fd = fdh_req_peer_pidfd(req);
	char link[64], path[64];
	ssize_t n;

	(void)ud;
	if (fd == -EOPNOTSUPP)
		return fdh_resp_body(resp, "none", 4);
	if (fd < 0)
		return fd;
	if (strcmp(fdh_req_query(req), "give") == 0)
		return fdh_resp_fd(resp, "peer", fd);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return -errno;
	return fdh_resp_body(resp, link, (size_t)n);
}

/* Answers with as many memfds as the query says. */
static int
h_many(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	int n = atoi(fdh_req_query(req)), i, r;
	char name[16];

	(void)ud;
	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "m%d", i);
		r = fdh_resp_fd(resp, name, fdh_test_make_memfd(name));
		if (r < 0)
			return r;
	}
	return 0;
}

/* Answers with the status the query names, and a body. */
static int
h_status(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	(void)ud;
	fdh_resp_status(resp, atoi(fdh_req_query(req)));
	return fdh_resp_body(resp, "body", 4);
}

static int
h_fail(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	(void)req;
	(void)ud;
	(void)fdh_resp_body(resp, "partial work", 12);
	return -EIO;
}

/* A slip: a status returned instead of set. */
static int
h_return_status(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	(void)req;
	(void)ud;
	(void)fdh_resp_body(resp, "not found, it meant", 19);
	return 404;
}

static int
h_len(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	size_t len, i;
	const unsigned char *b = fdh_req_body(req, &len);
	unsigned sum = 0;

	(void)ud;
	for (i = 0; i < len; i++)
		sum += b[i];
	return fdh_resp_printf(resp, "%zu %u %zu", len, sum, fdh_req_fd_count(req));
}

/* A descriptor the /watched handler looks at, and whether it found it open. */
static int watched_fd = -1;
static int watched_open = -1;

static int
h_watched(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	(void)req;
	(void)ud;
	watched_open = fcntl(watched_fd, F_GETFD) != -1;
	return fdh_resp_body(resp, "ok", 2);
}

/* A long-lived fd the /dup handler hands out again and again. */
static int shared_fd = -1;

/*
 * Attaches a duplicate of shared_fd, and of the request's fd "x" when it
 * has one; with "?bad" under a name no response may carry.  Says whether
 * each stayed its owner's.
 */
static int
h_dup(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	int x = fdh_req_fd(req, "x"), r;

	(void)ud;
	if (strcmp(fdh_req_query(req), "bad") == 0) {
		r = fdh_resp_fd_dup(resp, "no good", shared_fd);
		return fdh_resp_printf(resp, "%d %d", r, fcntl(shared_fd, F_GETFD) != -1);
	}
	r = fdh_resp_fd_dup(resp, "shared", shared_fd);
	if (r == 0 && x >= 0)
		r = fdh_resp_fd_dup(resp, "again", x);
	if (r < 0)
		return r;
	return fdh_resp_printf(resp, "%d %d", fcntl(shared_fd, F_GETFD) != -1,
	    x < 0 || fdh_req_fd(req, "x") == x);
}

/* A handler that takes 100 ms: time for the client to send its next request. */
static int
h_slow(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	(void)req;
	(void)ud;
	usleep(100 * 1000);
	return fdh_resp_body(resp, "slow", 4);
}

static const struct fdh_route routes[] = {
	{ "GET", "/hello/*", h_hello, NULL },
	{ "GET", "/slow", h_slow, NULL },
	{ "POST", "/dup", h_dup, NULL },
	{ "GET", "/big", h_big, NULL },
	{ "POST", "/take", h_take, NULL },
	{ "POST", "/pass", h_pass_borrowed, NULL },
	{ "GET", "/pidfd", h_pass_pidfd, NULL },
	{ "GET", "/status", h_status, NULL },
	{ "GET", "/many", h_many, NULL },
	{ "POST", "/fail", h_fail, NULL },
	{ "GET", "/return404", h_return_status, NULL },
	{ "POST", "/len", h_len, NULL },
	{ "GET", "/watched", h_watched, NULL },
};

static const struct fdh_service svc = {
	.name = "test",
	.routes = routes,
	.nroutes = sizeof(routes) / sizeof(routes[0]),
};

/* A dispatcher on a thread, fed connections through a pipe it watches. */
struct loop {
	struct fdh_dispatch *d;
	pthread_t thread;
	int feed[2];
	int result;
	unsigned closed;
	unsigned done;		/* responses sent whole */
};

static int
on_feed(struct fdh_dispatch *d, int fd, void *arg)
{
	struct loop *l = arg;
	struct fdh_peer peer = { .pid = getpid(), .uid = getuid(), .gid = getgid() };
	int cmd;

	if (read(fd, &cmd, sizeof(cmd)) != (ssize_t)sizeof(cmd))
		return -EIO;
	if (cmd == -1)
		fdh_dispatch_stop(d);
	else if (cmd == -2)
		fdh_dispatch_drain(d);
	else
		__atomic_store_n(&l->result, fdh_dispatch_add_conn(d, cmd, &peer, -1, 0),
		    __ATOMIC_SEQ_CST);
	return 0;
}

static void
on_closed(struct fdh_dispatch *d, uint64_t tag, void *arg)
{
	struct loop *l = arg;

	(void)d;
	(void)tag;
	__atomic_add_fetch(&l->closed, 1, __ATOMIC_SEQ_CST);
}

static void
on_request_done(struct fdh_dispatch *d, void *arg)
{
	struct loop *l = arg;

	(void)d;
	__atomic_add_fetch(&l->done, 1, __ATOMIC_SEQ_CST);
}

static void *
loop_main(void *arg)
{
	struct loop *l = arg;

	l->result = fdh_dispatch_run(l->d);
	return NULL;
}

static void
loop_start(struct loop *l, const struct fdh_limits *lim)
{
	struct fdh_dispatch_hooks hooks = {
		.conn_closed = on_closed,
		.request_done = on_request_done,
		.arg = l,
	};

	memset(l, 0, sizeof(*l));
	assert_int_equal(pipe2(l->feed, O_CLOEXEC), 0);
	assert_int_equal(fdh_dispatch_new(&svc, lim, &l->d), 0);
	fdh_dispatch_set_hooks(l->d, &hooks);
	assert_int_equal(fdh_dispatch_watch(l->d, l->feed[0], on_feed, l), 0);
	assert_int_equal(pthread_create(&l->thread, NULL, loop_main, l), 0);
}

static void
loop_cmd(struct loop *l, int cmd)
{
	assert_int_equal(write(l->feed[1], &cmd, sizeof(cmd)), (ssize_t)sizeof(cmd));
}

/* A connection: our end is returned, the other goes to the dispatcher. */
static int
loop_connect(struct loop *l)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	loop_cmd(l, sv[1]);
	return sv[0];
}

/*
 * A connection whose server end has the smallest send buffer, so that
 * answers the client leaves unread soon fill it.  sv[0] is ours; sv[1]
 * belongs to the dispatcher, on this process's other thread, and may be
 * looked at by number while the connection is open.
 */
static void
loop_connect_tight(struct loop *l, int sv[2])
{
	int small = 4096;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	loop_cmd(l, sv[1]);
}

static void
loop_stop(struct loop *l)
{
	loop_cmd(l, -1);
	assert_int_equal(pthread_join(l->thread, NULL), 0);
	fdh_dispatch_free(l->d);
	close(l->feed[0]);
	close(l->feed[1]);
}

static void
limits_short(struct fdh_limits *lim)
{
	fdh_limits_default(lim);
	lim->request_timeout_ms = 300;
	lim->idle_timeout_ms = 300;
	lim->write_timeout_ms = 300;
}

static int64_t
ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
test_request_seen_by_handler(void **state)
{
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	char want[128];
	int c;

	(void)state;
	fdh_limits_default(&lim);
	loop_start(&l, &lim);
	c = loop_connect(&l);
	fdh_test_sends(c, "GET /hello/world?a=1&b=2 HTTP/1.1\r\nHost: x\r\nX-Test:  spaced  \r\n\r\n",
	    NULL, 0);
	assert_int_equal(fdh_test_read_message(c, 2000, &m), 0);
	assert_int_equal(m.status, 200);
	snprintf(want, sizeof(want), "GET /hello/world ?a=1&b=2 x=spaced uid=%u", (unsigned)getuid());
	assert_string_equal(fdh_test_msg_body(&m), want);
	fdh_test_msg_free(&m);
	close(c);
	loop_stop(&l);
}

/* A body the socket cannot take at once: the rest follows, the fd went first. */
static void
test_partial_write_keeps_fds_with_first_byte(void **state)
{
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	char buf[64];
	int c, small = 4096;

	(void)state;
	fdh_limits_default(&lim);
	loop_start(&l, &lim);
	c = loop_connect(&l);
	assert_int_equal(setsockopt(c, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
	fdh_test_sends(c, "GET /big HTTP/1.1\r\n\r\n", NULL, 0);
	usleep(100 * 1000);	/* let the first sendmsg fill the socket */
	assert_int_equal(fdh_test_read_message(c, 5000, &m), 0);
	assert_int_equal(m.status, 200);
	assert_int_equal(m.body_len, BIG_BODY);
	assert_memory_equal(fdh_test_msg_body(&m), big, BIG_BODY);
	assert_int_equal(m.nfds, 1);
	assert_int_equal(m.fds_at, 0);
	assert_int_equal(fdh_test_read_fd(m.fds[0], buf, sizeof(buf)), 8);
	assert_string_equal(buf, "attached");
	fdh_test_msg_free(&m);
	/* Keep-alive survives the slow path. */
	fdh_test_sends(c, "GET /hello/again HTTP/1.1\r\n\r\n", NULL, 0);
	assert_int_equal(fdh_test_read_message(c, 2000, &m), 0);
	assert_int_equal(m.status, 200);
	fdh_test_msg_free(&m);
	close(c);
	loop_stop(&l);
}

/*
 * Answers the client leaves unread fill the server's socket; the next
 * short answer, head and body sent as one buffer, finds no room at all.
 * It waits whole and goes out once the client reads: every answer
 * arrives, in order, intact.
 */
static void
test_short_answer_waits_for_room(void **state)
{
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	char req[64], want[128];
	unsigned sent, i, done;
	int sv[2];
	int64_t deadline;

	(void)state;
	fdh_limits_default(&lim);
	loop_start(&l, &lim);
	loop_connect_tight(&l, sv);
	/* One request at a time, each once the one before was answered. */
	for (sent = 0; sent < 1000; sent++) {
		snprintf(req, sizeof(req), "GET /hello/%u HTTP/1.1\r\n\r\n", sent);
		fdh_test_sends(sv[0], req, NULL, 0);
		deadline = ms_now() + 500;
		while ((done = __atomic_load_n(&l.done, __ATOMIC_SEQ_CST)) == sent &&
		    ms_now() < deadline)
			usleep(1000);
		if (done == sent)
			break;		/* this answer is waiting for room */
	}
	assert_true(sent < 1000);
	assert_true(sent > 0);
	for (i = 0; i <= sent; i++) {
		assert_int_equal(fdh_test_read_message(sv[0], 5000, &m), 0);
		assert_int_equal(m.status, 200);
		snprintf(want, sizeof(want), "GET /hello/%u ? x=- uid=%u", i, (unsigned)getuid());
		assert_string_equal(fdh_test_msg_body(&m), want);
		fdh_test_msg_free(&m);
	}
	/* The last answer's end is counted just after its bytes went: a moment later. */
	deadline = ms_now() + 2000;
	while (__atomic_load_n(&l.done, __ATOMIC_SEQ_CST) != sent + 1 && ms_now() < deadline)
		usleep(1000);
	assert_int_equal(__atomic_load_n(&l.done, __ATOMIC_SEQ_CST), sent + 1);
	assert_int_equal(__atomic_load_n(&l.closed, __ATOMIC_SEQ_CST), 0);
	close(sv[0]);
	loop_stop(&l);
}

/*
 * Answers the client has yet to read fill the server's socket, all sent
 * whole; a request with Expect: 100-continue comes next.  Its interim
 * answer finds no room, waits for some, and arrives once the client reads,
 * before the client sends the body.
 */
static void
test_continue_waits_for_room(void **state)
{
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	char req[64];
	unsigned sent = 0, unread = 0, done;
	int sv[2], sndbuf, outq = 0;
	socklen_t optlen = sizeof(sndbuf);
	int64_t deadline;

	(void)state;
	fdh_limits_default(&lim);
	loop_start(&l, &lim);
	loop_connect_tight(&l, sv);
	assert_int_equal(getsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, &optlen), 0);
	/*
	 * Until an answer sent whole leaves the socket over its send buffer
	 * (the kernel then refuses any write, however short); an answer that
	 * waits for room instead is read, with every one before it.
	 */
	while (outq < sndbuf && sent < 1000) {
		snprintf(req, sizeof(req), "GET /hello/%u HTTP/1.1\r\n\r\n", sent);
		fdh_test_sends(sv[0], req, NULL, 0);
		sent++;
		unread++;
		deadline = ms_now() + 500;
		while ((done = __atomic_load_n(&l.done, __ATOMIC_SEQ_CST)) < sent &&
		    ms_now() < deadline)
			usleep(1000);
		if (done < sent) {
			for (; unread > 0; unread--) {
				assert_int_equal(fdh_test_read_message(sv[0], 5000, &m), 0);
				fdh_test_msg_free(&m);
			}
			continue;
		}
		assert_int_equal(ioctl(sv[1], SIOCOUTQ, &outq), 0);
	}
	assert_true(outq >= sndbuf);
	fdh_test_sends(sv[0], "POST /len HTTP/1.1\r\nExpect: 100-continue\r\n"
	    "Content-Length: 4\r\n\r\n", NULL, 0);
	usleep(50 * 1000);	/* the head is read, the 100 Continue refused */
	for (; unread > 0; unread--) {
		assert_int_equal(fdh_test_read_message(sv[0], 5000, &m), 0);
		assert_int_equal(m.status, 200);
		fdh_test_msg_free(&m);
	}
	/* No body yet: what comes now is the interim answer, or nothing. */
	assert_int_equal(fdh_test_read_message(sv[0], 2000, &m), 0);
	assert_int_equal(m.status, 100);
	fdh_test_msg_free(&m);
	fdh_test_sends(sv[0], "abcd", NULL, 0);
	assert_int_equal(fdh_test_read_message(sv[0], 2000, &m), 0);
	assert_int_equal(m.status, 200);
	assert_string_equal(fdh_test_msg_body(&m), "4 394 0");
	fdh_test_msg_free(&m);
	assert_int_equal(__atomic_load_n(&l.closed, __ATOMIC_SEQ_CST), 0);
	close(sv[0]);
	loop_stop(&l);
}

static void
test_write_timeout_closes_and_frees(void **state)
{
	struct fdh_limits lim;
	struct loop l;
	int c, before, small = 4096;

	(void)state;
	limits_short(&lim);
	loop_start(&l, &lim);
	before = fdh_test_count_fds(0);
	c = loop_connect(&l);
	assert_int_equal(setsockopt(c, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
	fdh_test_sends(c, "GET /big HTTP/1.1\r\n\r\n", NULL, 0);
	/* Never read: after the write timeout the server gives up on us. */
	usleep(800 * 1000);
	assert_int_equal(__atomic_load_n(&l.closed, __ATOMIC_SEQ_CST), 1);
	close(c);
	/* The pending body, the attached memfd and the server end are all gone. */
	assert_int_equal(fdh_test_count_fds(0), before);
	loop_stop(&l);
}

static void
test_request_timeout_answers_408(void **state)
{
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	int64_t t0;
	int c;

	(void)state;
	limits_short(&lim);
	loop_start(&l, &lim);
	c = loop_connect(&l);
	t0 = ms_now();
	fdh_test_sends(c, "GET /hello/x HTTP/1.1\r\nHost:", NULL, 0);
	assert_int_equal(fdh_test_read_all(c, 3000, &m), 0);
	assert_true(m.eof);
	assert_true(ms_now() - t0 >= 250);
	assert_non_null(strstr(m.data, "HTTP/1.1 408 "));
	assert_non_null(strstr(m.data, "Connection: close\r\n"));
	fdh_test_msg_free(&m);
	close(c);
	loop_stop(&l);
}

static void
test_idle_timeout_closes_silently(void **state)
{
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	int c;

	(void)state;
	limits_short(&lim);
	loop_start(&l, &lim);
	c = loop_connect(&l);		/* never sends a byte */
	assert_int_equal(fdh_test_read_all(c, 3000, &m), 0);
	assert_true(m.eof);
	assert_int_equal(m.len, 0);
	fdh_test_msg_free(&m);
	close(c);
	loop_stop(&l);
}

/* A request in several pieces, the fds on the second, the body on a third. */
static void
test_request_over_many_reads(void **state)
{
	static char body[300000];
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	unsigned sum = 0;
	size_t i;
	char head[256], want[64];
	int c, fds[2];

	(void)state;
	for (i = 0; i < sizeof(body); i++) {
		body[i] = (char)(i * 7);
		sum += (unsigned char)body[i];
	}
	fdh_limits_default(&lim);
	loop_start(&l, &lim);
	c = loop_connect(&l);
	fds[0] = fdh_test_make_memfd("a");
	fds[1] = fdh_test_make_memfd("b");
	snprintf(head, sizeof(head),
	    "POST /len HTTP/1.1\r\nX-FD: a, b\r\nContent-Length: %zu\r\n\r\n", sizeof(body));
	assert_int_equal(fdh_test_send_all(c, head, 10, NULL, 0), 0);
	usleep(20 * 1000);
	assert_int_equal(fdh_test_send_all(c, head + 10, strlen(head) - 10, fds, 2), 0);
	usleep(20 * 1000);
	assert_int_equal(fdh_test_send_all(c, body, sizeof(body), NULL, 0), 0);
	assert_int_equal(fdh_test_read_message(c, 3000, &m), 0);
	assert_int_equal(m.status, 200);
	snprintf(want, sizeof(want), "%zu %u 2", sizeof(body), sum);
	assert_string_equal(fdh_test_msg_body(&m), want);
	fdh_test_msg_free(&m);
	close(fds[0]);
	close(fds[1]);
	close(c);
	loop_stop(&l);
}

static void
test_taken_fd_survives_others_close(void **state)
{
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	int c, p1[2], p2[2], fds[2];
	char ch;

	(void)state;
	fdh_limits_default(&lim);
	loop_start(&l, &lim);
	c = loop_connect(&l);
	assert_int_equal(pipe2(p1, O_CLOEXEC), 0);
	assert_int_equal(pipe2(p2, O_CLOEXEC), 0);
	fds[0] = p1[1];
	fds[1] = p2[1];
	fdh_test_sends(c, "POST /take HTTP/1.1\r\nX-FD: keep,drop\r\n\r\n", fds, 2);
	close(p1[1]);
	close(p2[1]);
	assert_int_equal(fdh_test_read_message(c, 2000, &m), 0);
	assert_string_equal(fdh_test_msg_body(&m), "2");
	fdh_test_msg_free(&m);
	/* "drop" was closed after the handler: its pipe reads EOF. */
	assert_int_equal(read(p2[0], &ch, 1), 0);
	/* "keep" is the handler's: its pipe is still open for writing. */
	assert_true(taken_fd >= 0);
	assert_int_equal(fdh_test_fd_is_open(taken_fd), 1);
	close(taken_fd);
	assert_int_equal(read(p1[0], &ch, 1), 0);
	close(p1[0]);
	close(p2[0]);
	close(c);
	loop_stop(&l);
}

/* Sends req with fds on c and reads its answer into m, which must have status. */
static void
ask(int c, const char *req, const int *fds, size_t nfds, int status, struct fdh_test_msg *m)
{
	fdh_test_sends(c, req, fds, nfds);
	assert_int_equal(fdh_test_read_message(c, 2000, m), 0);
	assert_int_equal(m->status, status);
}

/*
 * A borrowed fd attached to the response goes to the response, not also
 * back to the request: it is sent once and closed once, and the
 * connection lives on.  Sent, or dropped by a 500, the pipe's write end
 * leaves the dispatcher: the read end sees EOF.  The peer's pidfd, which
 * the connection lends for its whole life, likewise: the next request is
 * given a pidfd of its own, not the number the response closed.
 */
static void
test_borrowed_fds_attached_go_with_response(void **state)
{
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	int c, p[2];
	char ch;

	(void)state;
	fdh_limits_default(&lim);
	loop_start(&l, &lim);
	c = loop_connect(&l);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	ask(c, "POST /pass HTTP/1.1\r\nX-FD: x\r\n\r\n", &p[1], 1, 200, &m);
	close(p[1]);
	assert_int_equal(m.nfds, 1);
	assert_int_equal(write(m.fds[0], "y", 1), 1);
	assert_int_equal(read(p[0], &ch, 1), 1);
	assert_int_equal(ch, 'y');
	fdh_test_msg_free(&m);
	assert_int_equal(read(p[0], &ch, 1), 0);
	close(p[0]);

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	ask(c, "POST /pass?fail HTTP/1.1\r\nX-FD: x\r\n\r\n", &p[1], 1, 500, &m);
	close(p[1]);
	assert_int_equal(m.nfds, 0);
	fdh_test_msg_free(&m);
	assert_int_equal(read(p[0], &ch, 1), 0);
	close(p[0]);

	ask(c, "GET /pidfd?give HTTP/1.1\r\n\r\n", NULL, 0, 200, &m);
	/* No SO_PEERPIDFD before Linux 6.5: nothing more to see. */
	if (strcmp(fdh_test_msg_body(&m), "none") != 0) {
		assert_int_equal(m.nfds, 1);
		fdh_test_msg_free(&m);
		ask(c, "GET /pidfd HTTP/1.1\r\n\r\n", NULL, 0, 200, &m);
		assert_string_equal(fdh_test_msg_body(&m), "anon_inode:[pidfd]");
	}
	fdh_test_msg_free(&m);
	close(c);
	loop_stop(&l);
}

/*
 * fdh_resp_fd_dup() sends a duplicate and leaves the fd with its owner: a
 * service hands one memfd out on every request, and a request's borrowed
 * fd stays the request's, closed with it once the answer is sent.  A
 * refused name makes no duplicate, so nothing is left over.
 */
static void
test_dup_attached_fd_stays_its_owners(void **state)
{
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	struct stat want, got;
	int c, p[2], i, before;
	char ch;

	(void)state;
	fdh_limits_default(&lim);
	shared_fd = fdh_test_make_memfd("shared");
	assert_int_equal(fstat(shared_fd, &want), 0);
	loop_start(&l, &lim);
	c = loop_connect(&l);
	for (i = 0; i < 3; i++) {
		ask(c, "POST /dup HTTP/1.1\r\n\r\n", NULL, 0, 200, &m);
		assert_string_equal(fdh_test_msg_body(&m), "1 1");
		assert_int_equal(m.nfds, 1);
		assert_int_equal(fstat(m.fds[0], &got), 0);
		assert_true(got.st_ino == want.st_ino && got.st_dev == want.st_dev);
		fdh_test_msg_free(&m);
	}

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	ask(c, "POST /dup HTTP/1.1\r\nX-FD: x\r\n\r\n", &p[1], 1, 200, &m);
	close(p[1]);
	assert_string_equal(fdh_test_msg_body(&m), "1 1");
	assert_int_equal(m.nfds, 2);
	assert_int_equal(write(m.fds[1], "y", 1), 1);
	assert_int_equal(read(p[0], &ch, 1), 1);
	assert_int_equal(ch, 'y');
	fdh_test_msg_free(&m);
	/* Ours gone, the request's and its duplicate were both closed. */
	assert_int_equal(read(p[0], &ch, 1), 0);
	close(p[0]);

	/* The dispatcher is a thread of ours: its fds are in our table. */
	before = fdh_test_count_fds(getpid());
	ask(c, "POST /dup?bad HTTP/1.1\r\n\r\n", NULL, 0, 200, &m);
	assert_string_equal(fdh_test_msg_body(&m), "-22 1");
	assert_int_equal(m.nfds, 0);
	fdh_test_msg_free(&m);
	assert_int_equal(fdh_test_count_fds(getpid()), before);
	close(c);
	loop_stop(&l);
	assert_int_not_equal(fcntl(shared_fd, F_GETFD), -1);
	close(shared_fd);
	shared_fd = -1;
}

/*
 * --max-fds bounds what a request brings, not what a response carries: a
 * service that takes no fds (0) still hands them out, and any service up
 * to the 253 one message can carry; past that the handler's attach fails
 * (-E2BIG, a 500) and every fd it made is closed.
 */
static void
test_response_fds_are_not_bound_by_max_fds(void **state)
{
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	int c, before;

	(void)state;
	fdh_limits_default(&lim);
	lim.max_fds = 0;
	loop_start(&l, &lim);
	c = loop_connect(&l);
	ask(c, "GET /many?3 HTTP/1.1\r\n\r\n", NULL, 0, 200, &m);
	assert_int_equal(m.nfds, 3);
	fdh_test_msg_free(&m);
	ask(c, "GET /many?253 HTTP/1.1\r\n\r\n", NULL, 0, 200, &m);
	assert_int_equal(m.nfds, 253);
	fdh_test_msg_free(&m);
	/* The dispatcher is a thread of ours: its fds are in our table. */
	before = fdh_test_count_fds(getpid());
	ask(c, "GET /many?254 HTTP/1.1\r\n\r\n", NULL, 0, 500, &m);
	assert_int_equal(m.nfds, 0);
	fdh_test_msg_free(&m);
	assert_int_equal(fdh_test_count_fds(getpid()), before);
	close(c);
	loop_stop(&l);
}

/*
 * 204 and 304 answers have no body (RFC 9110 6.4.1): a client reads none
 * whatever Content-Length says, and a body sent would be read as the next
 * response.  One a handler set is dropped; a 1xx is no final answer.
 */
static void
test_status_without_body_sends_none(void **state)
{
	static const struct {
		const char *req;
		int status;
		size_t body_len;
	} cases[] = {
		{ "GET /status?204 HTTP/1.1\r\n\r\n", 204, 0 },
		{ "GET /status?304 HTTP/1.1\r\n\r\n", 304, 0 },
		{ "GET /status?304 HTTP/1.1\r\n\r\n", 304, 0 },
		{ "GET /status?101 HTTP/1.1\r\n\r\n", 500, 4 },
		{ "GET /status?201 HTTP/1.1\r\n\r\n", 201, 4 },
		{ "GET /status?204 HTTP/1.1\r\n\r\n", 204, 0 },
		{ "GET /status?204 HTTP/1.1\r\n\r\n", 204, 0 },
		{ "GET /status?200 HTTP/1.1\r\n\r\n", 200, 4 },
	};
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	size_t i;
	int c;

	(void)state;
	fdh_limits_default(&lim);
	loop_start(&l, &lim);
	c = loop_connect(&l);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool bodiless = cases[i].status == 204 || cases[i].status == 304;

		ask(c, cases[i].req, NULL, 0, cases[i].status, &m);
		assert_int_equal(m.body_len, cases[i].body_len);
		/* Not even "Content-Length: 0" after these (RFC 9110 8.6), a status repeated too. */
		assert_int_equal(memmem(m.data, m.head_len, "Content-Length", 14) == NULL, bodiless);
		fdh_test_msg_free(&m);
	}
	/* Nothing was left behind to be taken for the next answer. */
	ask(c, "GET /hello/x HTTP/1.1\r\n\r\n", NULL, 0, 200, &m);
	fdh_test_msg_free(&m);
	close(c);
	loop_stop(&l);
}

static void
test_handler_error_is_500_and_keeps_connection(void **state)
{
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	int c;

	(void)state;
	fdh_limits_default(&lim);
	loop_start(&l, &lim);
	c = loop_connect(&l);
	fdh_test_sends(c, "POST /fail HTTP/1.1\r\n\r\n", NULL, 0);
	assert_int_equal(fdh_test_read_message(c, 2000, &m), 0);
	assert_int_equal(m.status, 500);
	assert_null(strstr(fdh_test_msg_body(&m), "partial work"));
	fdh_test_msg_free(&m);
	/* A positive return is no success either: a 500 that says what was returned. */
	fdh_test_sends(c, "GET /return404 HTTP/1.1\r\n\r\n", NULL, 0);
	assert_int_equal(fdh_test_read_message(c, 2000, &m), 0);
	assert_int_equal(m.status, 500);
	assert_string_equal(fdh_test_msg_body(&m), "handler returned 404, not 0 or a negative errno\n");
	fdh_test_msg_free(&m);
	fdh_test_sends(c, "GET /hello/x HTTP/1.1\r\n\r\n", NULL, 0);
	assert_int_equal(fdh_test_read_message(c, 2000, &m), 0);
	assert_int_equal(m.status, 200);
	fdh_test_msg_free(&m);
	close(c);
	loop_stop(&l);
}

/* c ends without a byte more. */
static void
assert_closed_silently(int c)
{
	struct fdh_test_msg m;

	assert_int_equal(fdh_test_read_all(c, 2000, &m), 0);
	assert_true(m.eof);
	assert_int_equal(m.len, 0);
	fdh_test_msg_free(&m);
}

/* req on c is answered with want in it and Connection: close, then c ends. */
static void
assert_answered_then_closed(int c, const char *req, const char *want)
{
	struct fdh_test_msg m;

	fdh_test_sends(c, req, NULL, 0);
	assert_int_equal(fdh_test_read_all(c, 2000, &m), 0);
	assert_true(m.eof);
	assert_non_null(strstr(m.data, want));
	assert_non_null(strstr(m.data, "Connection: close\r\n"));
	fdh_test_msg_free(&m);
}

/* Drain: a served idle connection closes, a fresh one gets its one request. */
static void
test_drain_serves_first_request_then_ends(void **state)
{
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	int served, fresh;

	(void)state;
	fdh_limits_default(&lim);
	loop_start(&l, &lim);
	served = loop_connect(&l);
	fresh = loop_connect(&l);
	fdh_test_sends(served, "GET /hello/x HTTP/1.1\r\n\r\n", NULL, 0);
	assert_int_equal(fdh_test_read_message(served, 2000, &m), 0);
	fdh_test_msg_free(&m);
	loop_cmd(&l, -2);
	assert_closed_silently(served);
	assert_answered_then_closed(fresh, "GET /hello/y HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\n");
	/* Nothing left: the loop ends by itself. */
	assert_int_equal(pthread_join(l.thread, NULL), 0);
	assert_int_equal(l.result, 0);
	fdh_dispatch_free(l.d);
	close(l.feed[0]);
	close(l.feed[1]);
	close(served);
	close(fresh);
}

/*
 * Retirement after two requests (fdhttpd's --max-requests): the second
 * answer says Connection: close and ends its connection, a served idle
 * connection closes with it, and one yet to send a request is answered
 * once, with Connection: close, where a drain would have stopped the loop.
 */
static void
test_retire_after_nth_request(void **state)
{
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	int idle, nth, fresh;

	(void)state;
	fdh_limits_default(&lim);
	loop_start(&l, &lim);
	fdh_dispatch_retire_after(l.d, 2);	/* read only once a request is served */
	idle = loop_connect(&l);
	nth = loop_connect(&l);
	fresh = loop_connect(&l);
	ask(idle, "GET /hello/1 HTTP/1.1\r\n\r\n", NULL, 0, 200, &m);
	assert_null(strstr(m.data, "Connection: close"));
	fdh_test_msg_free(&m);

	assert_answered_then_closed(nth, "GET /hello/2 HTTP/1.1\r\n\r\n", "/hello/2");
	assert_closed_silently(idle);

	assert_answered_then_closed(fresh, "GET /hello/3 HTTP/1.1\r\n\r\n", "/hello/3");
	/* Unlike a drain, the loop goes on: it takes a connection still. */
	close(fresh);
	fresh = loop_connect(&l);
	fdh_test_sends(fresh, "GET /hello/4 HTTP/1.1\r\n\r\n", NULL, 0);
	assert_int_equal(fdh_test_read_all(fresh, 2000, &m), 0);
	assert_non_null(strstr(m.data, "/hello/4"));
	fdh_test_msg_free(&m);
	close(idle);
	close(nth);
	close(fresh);
	loop_stop(&l);
}

static void
test_max_conns_refuses_and_closes(void **state)
{
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	int a, b, third[2], copy, i;

	(void)state;
	fdh_limits_default(&lim);
	lim.max_conns = 2;
	loop_start(&l, &lim);
	a = loop_connect(&l);
	b = loop_connect(&l);
	/*
	 * The third's server end has a second copy, as fdhttpd keeps one a
	 * while after handing a connection over: the client still sees its
	 * end at once, not when that copy goes.
	 */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, third), 0);
	copy = fcntl(third[1], F_DUPFD_CLOEXEC, 0);
	assert_true(copy >= 0);
	loop_cmd(&l, third[1]);
	assert_int_equal(fdh_test_read_all(third[0], 2000, &m), 0);
	assert_true(m.eof);		/* the dispatcher ended the connection it could not take */
	fdh_test_msg_free(&m);
	close(copy);
	/* The close comes before add_conn returns: give the result a moment. */
	for (i = 0; i < 100 && __atomic_load_n(&l.result, __ATOMIC_SEQ_CST) == 0; i++)
		usleep(10 * 1000);
	assert_int_equal(__atomic_load_n(&l.result, __ATOMIC_SEQ_CST), -EBUSY);
	close(a);
	close(b);
	close(third[0]);
	loop_stop(&l);
}

/*
 * At RLIMIT_NOFILE the kernel would drop a client's fds silently; the
 * dispatcher must wait instead, and serve the request whole once there is room.
 */
static void
test_no_read_without_fd_headroom(void **state)
{
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct rlimit old, low;

	struct loop l;
	int c, gone, fds[4], filler[64], nfill = 0, i, open_now;
	unsigned closed;

	(void)state;
	fdh_limits_default(&lim);
	lim.max_fds = 4;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	saved_nofile = old;
	low = old;
	low.rlim_cur = (rlim_t)fdh_test_count_fds(0) + 24;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	loop_start(&l, &lim);
	c = loop_connect(&l);
	gone = loop_connect(&l);
	for (i = 0; i < 4; i++)
		fds[i] = fdh_test_make_memfd("x");
	usleep(50 * 1000);
	/* Leave fewer free slots than one request's fds. */
	open_now = fdh_test_count_fds(0);
	while (open_now + nfill < (int)low.rlim_cur - 2 && nfill < 64)
		filler[nfill++] = dup(0);
	fdh_test_sends(c, "POST /len HTTP/1.1\r\nX-FD: a,b,c,d\r\n\r\n", fds, 4);
	usleep(200 * 1000);
	/* Nothing answered while starved. */
	assert_int_equal(fdh_test_read_all(c, 100, &m), 0);
	if (!m.timed_out)
		fprintf(stderr, "got %zu bytes: %s\n", m.len, m.data);
	assert_true(m.timed_out);
	assert_int_equal(m.len, 0);
	fdh_test_msg_free(&m);
	/* A peer that hangs up meanwhile is let go, not polled in a busy loop. */
	closed = __atomic_load_n(&l.closed, __ATOMIC_SEQ_CST);
	close(gone);
	for (i = 0; i < 100 && __atomic_load_n(&l.closed, __ATOMIC_SEQ_CST) == closed; i++)
		usleep(10 * 1000);
	assert_int_equal(__atomic_load_n(&l.closed, __ATOMIC_SEQ_CST), closed + 1);
	for (i = 0; i < nfill; i++)
		close(filler[i]);
	assert_int_equal(fdh_test_read_message(c, 2000, &m), 0);
	assert_int_equal(m.status, 200);
	assert_string_equal(fdh_test_msg_body(&m), "0 0 4");
	fdh_test_msg_free(&m);
	for (i = 0; i < 4; i++)
		close(fds[i]);
	close(c);
	loop_stop(&l);
}

/* A watched socket whose messages carry fds, as a worker's control socket does. */
struct fd_watch {
	unsigned calls;		/* how often the dispatcher called us */
	unsigned got;		/* messages read */
	size_t nfds;		/* fds they brought */
	bool truncated;
};

static int
on_fd_watch(struct fdh_dispatch *d, int fd, void *arg)
{
	struct fd_watch *w = arg;
	char byte;
	int fds[4];
	size_t n = 0;
	bool trunc = false;

	__atomic_add_fetch(&w->calls, 1, __ATOMIC_SEQ_CST);
	/* As the worker does: no read that brings fds without room for them. */
	if (!fdh_dispatch_fd_room(d))
		return 0;
	if (fdh_recv_fds(fd, &byte, 1, fds, 4, &n, &trunc) <= 0)
		return 0;
	__atomic_add_fetch(&w->nfds, n, __ATOMIC_SEQ_CST);
	while (n > 0)
		close(fds[--n]);
	if (trunc)
		w->truncated = true;
	__atomic_add_fetch(&w->got, 1, __ATOMIC_SEQ_CST);
	return 0;
}

/*
 * Short of descriptors, a watch marked as bringing fds is not polled: its
 * message waits in the socket, whole, instead of being read with its fds
 * dropped, or reported readable in a busy loop.
 */
static void
test_watch_bringing_fds_waits_for_headroom(void **state)
{
	struct fdh_limits lim;
	struct rlimit old, low;
	struct fd_watch fw = { 0 };
	struct loop l;
	int sv[2], fds[2], filler[64], nfill = 0, i, c, open_now;
	char byte = 'm';

	(void)state;
	fdh_limits_default(&lim);
	lim.max_fds = 4;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	saved_nofile = old;
	low = old;
	low.rlim_cur = (rlim_t)fdh_test_count_fds(0) + 24;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	/* loop_start(), with the second watch added before the thread runs. */
	{
		struct fdh_dispatch_hooks hooks = { .conn_closed = on_closed, .arg = &l };

		memset(&l, 0, sizeof(l));
		assert_int_equal(pipe2(l.feed, O_CLOEXEC), 0);
		assert_int_equal(fdh_dispatch_new(&svc, &lim, &l.d), 0);
		fdh_dispatch_set_hooks(l.d, &hooks);
		assert_int_equal(fdh_dispatch_watch(l.d, l.feed[0], on_feed, &l), 0);
		assert_int_equal(fdh_dispatch_watch(l.d, sv[1], on_fd_watch, &fw), 0);
		fdh_dispatch_watch_brings_fds(l.d, sv[1]);
		assert_int_equal(pthread_create(&l.thread, NULL, loop_main, &l), 0);
	}
	c = loop_connect(&l);
	usleep(50 * 1000);
	open_now = fdh_test_count_fds(0);
	while (open_now + nfill < (int)low.rlim_cur - 2 && nfill < 64)
		filler[nfill++] = dup(0);
	fds[0] = fdh_test_make_memfd("a");
	fds[1] = fdh_test_make_memfd("b");
	assert_int_equal(fdh_test_send(sv[0], &byte, 1, fds, 2), 1);
	usleep(300 * 1000);
	/* Seen once, found short, then left alone: not read, not spun on. */
	assert_int_equal(__atomic_load_n(&fw.got, __ATOMIC_SEQ_CST), 0);
	assert_true(__atomic_load_n(&fw.calls, __ATOMIC_SEQ_CST) <= 2);
	for (i = 0; i < nfill; i++)
		close(filler[i]);
	for (i = 0; i < 200 && __atomic_load_n(&fw.got, __ATOMIC_SEQ_CST) == 0; i++)
		usleep(10 * 1000);
	assert_int_equal(__atomic_load_n(&fw.got, __ATOMIC_SEQ_CST), 1);
	assert_int_equal(__atomic_load_n(&fw.nfds, __ATOMIC_SEQ_CST), 2);
	assert_false(fw.truncated);
	close(fds[0]);
	close(fds[1]);
	close(c);
	loop_stop(&l);
	close(sv[0]);
	close(sv[1]);
}

static int
restore_nofile(void **state)
{
	(void)state;
	return setrlimit(RLIMIT_NOFILE, &saved_nofile);
}

/*
 * req sent on a connection of a loop with the default limits, and all that
 * came back until the server closed it, in *m.
 */
static void
answered_then_closed(const char *req, struct fdh_test_msg *m)
{
	struct fdh_limits lim;
	struct loop l;
	int c;

	fdh_limits_default(&lim);
	loop_start(&l, &lim);
	c = loop_connect(&l);
	fdh_test_sends(c, req, NULL, 0);
	assert_int_equal(fdh_test_read_all(c, 2000, m), 0);
	assert_true(m->eof);
	close(c);
	loop_stop(&l);
}

static void
test_surplus_bytes_answered_with_close(void **state)
{
	struct fdh_test_msg m;

	(void)state;
	answered_then_closed("GET /hello/1 HTTP/1.1\r\n\r\nGET /hello/2 HTTP/1.1\r\n\r\n", &m);
	assert_non_null(strstr(m.data, "/hello/1"));
	assert_null(strstr(m.data, "/hello/2"));
	assert_non_null(strstr(m.data, "Connection: close\r\n"));
	fdh_test_msg_free(&m);
}

/*
 * Reads all c has until its end: an EOF, not a reset, though the server
 * closes with bytes of ours it never served (it reads them first).
 */
static void
read_to_end(int c, struct fdh_test_msg *m)
{
	assert_int_equal(fdh_test_read_all(c, 2000, m), 0);
	assert_true(m->eof);
	assert_non_null(m->data);
}

static unsigned
closed_count(struct loop *l)
{
	return __atomic_load_n(&l->closed, __ATOMIC_SEQ_CST);
}

/* Waits up to ms for the dispatcher to have closed want connections in all. */
static void
wait_closed(struct loop *l, unsigned want, int ms)
{
	int64_t end = ms_now() + ms;

	while (closed_count(l) < want && ms_now() < end)
		usleep(5 * 1000);
	assert_int_equal(closed_count(l), want);
}

/*
 * A body over the limit, sent whole by a client that reads only once it
 * has sent it (as curl does without Expect): the 413 goes at once, and
 * the rest of the body, fds and all, is read and dropped until the client
 * closes.  Closed at once, the client's send would fail with EPIPE and it
 * would never see the 413.
 */
static void
test_refused_request_read_to_its_end(void **state)
{
	static const char head[] = "POST /len HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n";
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	size_t half = 512 * 1024;
	char *body;
	int c, fd, before;

	(void)state;
	fdh_limits_default(&lim);
	lim.max_body = 64 * 1024;
	loop_start(&l, &lim);
	before = fdh_test_count_fds(0);
	body = calloc(1, half);
	assert_non_null(body);
	c = loop_connect(&l);
	assert_int_equal(fdh_test_send_all(c, head, sizeof(head) - 1, NULL, 0), 0);
	assert_int_equal(fdh_test_send_all(c, body, half, NULL, 0), 0);
	fd = fdh_test_make_memfd("late");
	assert_int_equal(fdh_test_send_all(c, body, half, &fd, 1), 0);
	close(fd);
	read_to_end(c, &m);
	assert_non_null(strstr(m.data, "HTTP/1.1 413 "));
	assert_non_null(strstr(m.data, "Connection: close\r\n"));
	fdh_test_msg_free(&m);
	/* Still the client's to end: it may have more to send. */
	assert_int_equal(closed_count(&l), 0);
	close(c);
	wait_closed(&l, 1, 2000);
	/* The memfd that came after the refusal was closed too. */
	assert_int_equal(fdh_test_wait_fd_count(0, before, 2000), before);
	free(body);
	loop_stop(&l);
}

/*
 * A refused client that neither sends nor closes is not waited for long:
 * the connection ends a second after the answer (LAST_CALL_MS).
 */
static void
test_refused_request_lingers_a_second_at_most(void **state)
{
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	int64_t t0;
	int c;

	(void)state;
	fdh_limits_default(&lim);
	lim.max_head = 256;
	loop_start(&l, &lim);
	c = loop_connect(&l);
	t0 = ms_now();
	assert_true(fdh_test_sends(c, "GET /hello/x HTTP/1.1\r\nX-Long: "
	    "0123456789012345678901234567890123456789012345678901234567890123456789"
	    "0123456789012345678901234567890123456789012345678901234567890123456789"
	    "0123456789012345678901234567890123456789012345678901234567890123456789"
	    "0123456789012345678901234567890123456789012345678901234567890123456789", NULL, 0) > 0);
	read_to_end(c, &m);
	assert_non_null(strstr(m.data, "HTTP/1.1 431 "));
	fdh_test_msg_free(&m);
	wait_closed(&l, 1, 3000);
	assert_true(ms_now() - t0 >= 900);
	close(c);
	loop_stop(&l);
}

/*
 * A request read in several reads: the read that completes it may bring
 * bytes after it, and when it does, those are a next request sent before
 * the answer: this one is answered with close, the next is not served.
 * The body is larger than one read takes, or comes in two writes.
 */
static void
test_surplus_after_request_of_many_reads_answered_with_close(void **state)
{
	static const char next[] = "GET /hello/2 HTTP/1.1\r\n\r\n";
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	size_t body = 200 * 1024, hlen, i;
	char head[96], *buf;
	int c, split;

	(void)state;
	fdh_limits_default(&lim);
	loop_start(&l, &lim);
	for (split = 0; split < 2; split++) {
		hlen = (size_t)snprintf(head, sizeof(head),
		    "POST /len HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", split ? 10 : body);
		buf = malloc(hlen + body + sizeof(next));
		assert_non_null(buf);
		memcpy(buf, head, hlen);
		for (i = 0; i < body; i++)
			buf[hlen + i] = 'x';
		c = loop_connect(&l);
		if (split) {
			/* The head and 5 bytes; then the other 5 with the next request. */
			assert_int_equal(fdh_test_send_all(c, buf, hlen + 5, NULL, 0), 0);
			usleep(50 * 1000);
			memcpy(buf + hlen + 10, next, sizeof(next) - 1);
			assert_int_equal(fdh_test_send_all(c, buf + hlen + 5, 5 + sizeof(next) - 1,
			    NULL, 0), 0);
		} else {
			memcpy(buf + hlen + body, next, sizeof(next) - 1);
			assert_int_equal(fdh_test_send_all(c, buf, hlen + body + sizeof(next) - 1,
			    NULL, 0), 0);
		}
		/* Bytes it did not read are left: the close may be a reset. */
		read_to_end(c, &m);
		assert_non_null(strstr(m.data, "HTTP/1.1 200 "));
		assert_non_null(strstr(m.data, "Connection: close\r\n"));
		assert_null(strstr(m.data, "/hello/2"));
		fdh_test_msg_free(&m);
		close(c);
		free(buf);
	}
	loop_stop(&l);
}

/*
 * The next request, with an fd, sent while the handler of this one runs:
 * the read that brought this one could not bring it, and it is still a
 * request sent before the answer.  This one is answered with close; the
 * next is not served and its fd is closed unread.
 */
static void
test_surplus_sent_while_the_handler_runs_answered_with_close(void **state)
{
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct pollfd pfd;
	struct loop l;
	int c, p[2];
	char byte;

	(void)state;
	fdh_limits_default(&lim);
	loop_start(&l, &lim);
	c = loop_connect(&l);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_true(fdh_test_sends(c, "GET /slow HTTP/1.1\r\n\r\n", NULL, 0) > 0);
	usleep(30 * 1000);
	assert_true(fdh_test_sends(c, "GET /hello/2 HTTP/1.1\r\nX-FD: w\r\n\r\n", &p[1], 1) > 0);
	close(p[1]);
	read_to_end(c, &m);
	assert_non_null(strstr(m.data, "HTTP/1.1 200 "));
	assert_non_null(strstr(m.data, "slow"));
	assert_non_null(strstr(m.data, "Connection: close\r\n"));
	assert_null(strstr(m.data, "/hello/2"));
	fdh_test_msg_free(&m);
	/* The pipe's last write end was the one queued on the connection. */
	pfd = (struct pollfd){ .fd = p[0], .events = POLLIN };
	assert_int_equal(poll(&pfd, 1, 2000), 1);
	assert_int_equal(read(p[0], &byte, 1), 0);
	close(p[0]);
	close(c);
	loop_stop(&l);
}

/*
 * A request that ends in the write that starts the next one, fds attached
 * to that write: they belong to neither with certainty, even when the
 * request's head came in an earlier read.  400, and every fd closed.
 */
static void
test_fds_with_end_of_request_and_next_refused(void **state)
{
	static const char rest[] = "67890GET /hello/2 HTTP/1.1\r\n\r\n";
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	int c, fd, before;

	(void)state;
	fdh_limits_default(&lim);
	loop_start(&l, &lim);
	before = fdh_test_count_fds(0);
	c = loop_connect(&l);
	fdh_test_sends(c, "POST /len HTTP/1.1\r\nX-FD: a\r\nContent-Length: 10\r\n\r\n12345",
	    NULL, 0);
	usleep(50 * 1000);
	fd = fdh_test_make_memfd("a");
	assert_int_equal(fdh_test_sends(c, rest, &fd, 1), (ssize_t)(sizeof(rest) - 1));
	close(fd);
	read_to_end(c, &m);
	assert_non_null(strstr(m.data, "HTTP/1.1 400 "));
	assert_non_null(strstr(m.data, "fds arrived with bytes of two requests"));
	assert_null(strstr(m.data, "/hello/2"));
	fdh_test_msg_free(&m);
	close(c);
	assert_int_equal(fdh_test_wait_fd_count(0, before, 2000), before);
	loop_stop(&l);
}

/* The framework's own refusal of a HEAD request has no body, as a handler's answer would not. */
static void
test_refused_head_request_has_no_body(void **state)
{
	struct fdh_test_msg m;

	(void)state;
	answered_then_closed("HEAD /hello/x HTTP/1.1\r\nExpect: nothing\r\n\r\n", &m);
	assert_non_null(strstr(m.data, "HTTP/1.1 417 "));
	/* The length a GET would have had, and not one byte of it. */
	assert_null(strstr(m.data, "Content-Length: 0\r\n"));
	assert_non_null(strstr(m.data, "Content-Length: "));
	assert_int_equal(strstr(m.data, "\r\n\r\n") + 4 - m.data, (long)m.len);
	fdh_test_msg_free(&m);
}

/* One request on c and its answer: 200, kept alive, and a body that names path. */
static void
expect_hello(int c, const char *path)
{
	struct fdh_test_msg m;
	char req[128];

	snprintf(req, sizeof(req), "GET /hello/%s HTTP/1.1\r\n\r\n", path);
	fdh_test_sends(c, req, NULL, 0);
	assert_int_equal(fdh_test_read_message(c, 2000, &m), 0);
	assert_int_equal(m.status, 200);
	assert_non_null(strstr(fdh_test_msg_body(&m), path));
	assert_null(strstr(m.data, "Connection: close\r\n"));
	fdh_test_msg_free(&m);
}

/* RFC 9112 2.2: empty lines where a request line is due are skipped, however they arrive. */
static void
test_empty_lines_before_request_ignored(void **state)
{
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	int c, fd;

	(void)state;
	fdh_limits_default(&lim);
	loop_start(&l, &lim);
	c = loop_connect(&l);
	/* With the request, in one read. */
	fdh_test_sends(c, "\r\n\r\n", NULL, 0);
	expect_hello(c, "first");
	/* On their own, a read before the request. */
	fdh_test_sends(c, "\r\n", NULL, 0);
	usleep(30 * 1000);
	expect_hello(c, "second");
	/* Split between reads: a CR alone waits for its LF. */
	fdh_test_sends(c, "\r", NULL, 0);
	usleep(30 * 1000);
	fdh_test_sends(c, "\n", NULL, 0);
	usleep(30 * 1000);
	expect_hello(c, "third");
	/* After a body, in the same write: the connection stays open. */
	fdh_test_sends(c, "POST /len HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd\r\n", NULL, 0);
	assert_int_equal(fdh_test_read_message(c, 2000, &m), 0);
	assert_int_equal(m.status, 200);
	assert_string_equal(fdh_test_msg_body(&m), "4 394 0");
	assert_null(strstr(m.data, "Connection: close\r\n"));
	fdh_test_msg_free(&m);
	expect_hello(c, "fourth");
	/* The same with an fd: it belongs to the request, as nothing else came. */
	fd = fdh_test_make_memfd("a");
	fdh_test_sends(c, "POST /len HTTP/1.1\r\nX-FD: a\r\nContent-Length: 4\r\n\r\nabcd\r\n",
	    &fd, 1);
	close(fd);
	assert_int_equal(fdh_test_read_message(c, 2000, &m), 0);
	assert_int_equal(m.status, 200);
	assert_string_equal(fdh_test_msg_body(&m), "4 394 1");
	assert_null(strstr(m.data, "Connection: close\r\n"));
	fdh_test_msg_free(&m);
	expect_hello(c, "fifth");
	assert_int_equal(__atomic_load_n(&l.closed, __ATOMIC_SEQ_CST), 0);
	close(c);
	loop_stop(&l);
}

/*
 * Sends bytes (with a memfd when fd_name is set) on a new connection and
 * expects a 400 that says why, the connection's end, and no fd left open.
 */
static void
expect_refused(const char *bytes, const char *fd_name, const char *why)
{
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	int c, fd = -1, before;

	fdh_limits_default(&lim);
	loop_start(&l, &lim);
	before = fdh_test_count_fds(0);
	c = loop_connect(&l);
	if (fd_name)
		fd = fdh_test_make_memfd(fd_name);
	fdh_test_sends(c, bytes, fd_name ? &fd : NULL, fd_name ? 1 : 0);
	if (fd_name)
		close(fd);
	assert_int_equal(fdh_test_read_all(c, 2000, &m), 0);
	assert_true(m.eof);
	assert_non_null(strstr(m.data, "HTTP/1.1 400 "));
	assert_non_null(strstr(m.data, why));
	fdh_test_msg_free(&m);
	close(c);
	assert_int_equal(fdh_test_wait_fd_count(0, before, 2000), before);
	loop_stop(&l);
}

/* Only CRLF is an empty line: a bare LF before the request line is refused. */
static void
test_bare_lf_before_request_refused(void **state)
{
	(void)state;
	expect_refused("\r\n\nGET /hello/x HTTP/1.1\r\n\r\n", NULL, "bare CR or LF");
}

/* fds that come with empty lines alone belong to no request: refused, and closed. */
static void
test_fds_with_empty_lines_alone_refused(void **state)
{
	(void)state;
	expect_refused("\r\n", "stray", "fds sent with no request");
}

/* Empty lines are not a request: they do not hold off the idle timeout. */
static void
test_empty_lines_do_not_keep_idle_connection(void **state)
{
	struct fdh_limits lim;
	struct pollfd p;
	struct loop l;
	int64_t t0;
	bool eof = false;
	char b[64];
	int c;

	(void)state;
	limits_short(&lim);		/* idle: 300 ms */
	loop_start(&l, &lim);
	c = loop_connect(&l);
	t0 = ms_now();
	while (!eof && ms_now() - t0 < 3000) {
		(void)send(c, "\r\n", 2, MSG_NOSIGNAL);
		p = (struct pollfd){ .fd = c, .events = POLLIN };
		if (poll(&p, 1, 50) == 1)
			eof = read(c, b, sizeof(b)) <= 0;
	}
	assert_true(eof);
	/* Every 50 ms would have held it open for good, had they counted. */
	assert_true(ms_now() - t0 < 1500);
	close(c);
	loop_stop(&l);
}

/*
 * An empty line whose CR and LF come in two writes is one too: the
 * connection stays idle, closed silently at the idle timeout, not given a
 * 408 at the (shorter) request timeout as a request begun would be.
 */
static void
test_split_empty_line_keeps_connection_idle(void **state)
{
	struct fdh_limits lim;
	struct fdh_test_msg m;
	struct loop l;
	int64_t t0;
	int c, lone;

	(void)state;
	fdh_limits_default(&lim);
	lim.request_timeout_ms = 200;
	lim.idle_timeout_ms = 800;
	loop_start(&l, &lim);
	for (lone = 0; lone < 2; lone++) {
		c = loop_connect(&l);
		expect_hello(c, "first");
		t0 = ms_now();
		fdh_test_sends(c, "\r", NULL, 0);
		if (!lone) {
			usleep(50 * 1000);
			fdh_test_sends(c, "\n", NULL, 0);
		}
		assert_int_equal(fdh_test_read_all(c, 3000, &m), 0);
		assert_true(m.eof);
		assert_int_equal(m.len, 0);	/* no 408 */
		assert_true(ms_now() - t0 >= 600);
		fdh_test_msg_free(&m);
		close(c);
	}
	loop_stop(&l);
}

/* fdh_dispatch_run_once(): turns on the caller's thread, as the engine's fuzzer drives them. */
static void
test_run_once_on_callers_thread(void **state)
{
	struct fdh_peer peer = { .pid = getpid(), .uid = getuid(), .gid = getgid() };
	struct fdh_limits lim;
	struct fdh_dispatch *d;
	struct fdh_test_msg m;
	int sv[2], i, before = fdh_test_count_fds(0);

	(void)state;
	fdh_limits_default(&lim);
	assert_int_equal(fdh_dispatch_new(&svc, &lim, &d), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(fdh_dispatch_add_conn(d, sv[1], &peer, -1, 0), 0);
	/* Nothing to do: the turn waits no longer than it is told, and goes on. */
	assert_int_equal(fdh_dispatch_run_once(d, 0), 0);
	assert_true(fdh_test_sends(sv[0], "GET /hello/once HTTP/1.1\r\n\r\n", NULL, 0) > 0);
	for (i = 0; i < 20 && fdh_dispatch_nrequests(d) == 0; i++)
		assert_int_equal(fdh_dispatch_run_once(d, 100), 0);
	assert_int_equal(fdh_test_read_message(sv[0], 2000, &m), 0);
	assert_int_equal(m.status, 200);
	assert_non_null(strstr(fdh_test_msg_body(&m), "/hello/once"));
	fdh_test_msg_free(&m);
	/* Stopped: the turn says the loop would end, and does nothing. */
	fdh_dispatch_stop(d);
	assert_int_equal(fdh_dispatch_run_once(d, 0), 1);
	assert_int_equal(fdh_dispatch_nconns(d), 1);
	fdh_dispatch_free(d);
	close(sv[0]);
	assert_int_equal(fdh_test_count_fds(0), before);
}

static bool drain_armed;

static void
drain_after_response(struct fdh_dispatch *d, void *arg)
{
	(void)arg;
	if (drain_armed)
		fdh_dispatch_drain(d);
}

/*
 * A connection added to d under tag, its first request served by turns on
 * the caller's thread and its keep-alive answer read: sv[0] is the
 * client's end.
 */
static void
conn_served(struct fdh_dispatch *d, int sv[2], uint64_t tag)
{
	struct fdh_peer peer = { .pid = getpid(), .uid = getuid(), .gid = getgid() };
	unsigned long long n = fdh_dispatch_nrequests(d);
	struct fdh_test_msg m;
	int i;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(fdh_dispatch_add_conn(d, sv[1], &peer, -1, tag), 0);
	assert_true(fdh_test_sends(sv[0], "GET /hello/a HTTP/1.1\r\n\r\n", NULL, 0) > 0);
	for (i = 0; i < 20 && fdh_dispatch_nrequests(d) == n; i++)
		assert_int_equal(fdh_dispatch_run_once(d, 100), 0);
	assert_int_equal(fdh_test_read_message(sv[0], 2000, &m), 0);
	assert_int_equal(m.status, 200);
	assert_null(strstr(m.data, "Connection: close"));
	fdh_test_msg_free(&m);
}

/* Turns of the loop, a few ms apart, so that earlier answers are no longer recent. */
static void
age_answers(struct fdh_dispatch *d)
{
	int i;

	for (i = 0; i < 2; i++) {
		usleep(3000);
		assert_int_equal(fdh_dispatch_run_once(d, 0), 0);
	}
}

/*
 * Two idle keep-alive connections: one sends a request, the other's client
 * hangs up, so both are in one batch of events; the request's answer
 * starts a drain (as a worker's retirement does), which closes the other
 * at once.  That one must be untouched after it is closed (ASan would see
 * a use after free), and neither may leak a descriptor.  The first, told
 * it would be kept alive, may still send one more request (close_idle()).
 */
static void
test_conn_closed_by_earlier_event_of_batch(void **state)
{
	struct fdh_dispatch_hooks hooks = { .request_done = drain_after_response };
	struct fdh_limits lim;
	struct fdh_dispatch *d;
	struct fdh_test_msg m;
	int sv[2][2], k, r, answered = -1, before = fdh_test_count_fds(0);

	(void)state;
	drain_armed = false;
	fdh_limits_default(&lim);
	assert_int_equal(fdh_dispatch_new(&svc, &lim, &d), 0);
	fdh_dispatch_set_hooks(d, &hooks);
	for (k = 0; k < 2; k++)
		conn_served(d, sv[k], (uint64_t)k);
	age_answers(d);
	drain_armed = true;
	assert_true(fdh_test_sends(sv[0][0], "GET /hello/b HTTP/1.1\r\n\r\n", NULL, 0) > 0);
	assert_int_equal(shutdown(sv[1][0], SHUT_WR), 0);
	/* One turn takes both events. */
	assert_int_equal(fdh_dispatch_run_once(d, 100), 0);
	assert_int_equal(fdh_dispatch_nconns(d), 1);
	assert_int_equal(fdh_dispatch_nrequests(d), 3);
	for (k = 0; k < 2; k++) {
		r = fdh_test_read_all(sv[k][0], 200, &m);
		if (m.len > 0) {
			/* Answered keep-alive before the drain began: still open. */
			assert_int_equal(answered, -1);
			answered = k;
			assert_non_null(strstr(m.data, "HTTP/1.1 200 "));
			assert_non_null(strstr(m.data, "/hello/b"));
			assert_null(strstr(m.data, "Connection: close"));
			assert_true(r == 0 && m.timed_out);
		} else {
			assert_true(r == 0 && m.eof);
		}
		fdh_test_msg_free(&m);
	}
	assert_int_equal(answered, 0);
	assert_true(fdh_test_sends(sv[answered][0], "GET /hello/c HTTP/1.1\r\n\r\n", NULL, 0) > 0);
	assert_int_equal(fdh_dispatch_run_once(d, 1000), 0);
	assert_int_equal(fdh_test_read_all(sv[answered][0], 2000, &m), 0);
	assert_non_null(strstr(m.data, "/hello/c"));
	assert_non_null(strstr(m.data, "Connection: close"));
	assert_true(m.eof);
	fdh_test_msg_free(&m);
	for (k = 0; k < 2; k++)
		close(sv[k][0]);
	assert_int_equal(fdh_dispatch_run_once(d, 0), 1);	/* drained, nobody left */
	fdh_dispatch_free(d);
	assert_int_equal(fdh_test_count_fds(0), before);
}

/*
 * The idle timeout, run out with a request already queued (its client sent
 * it just then): the request is answered, not dropped with the connection,
 * and the connection ends after it.
 */
static void
test_idle_timeout_answers_a_request_already_queued(void **state)
{
	struct fdh_limits lim;
	struct fdh_dispatch *d;
	struct fdh_test_msg m;
	int sv[2], i, before = fdh_test_count_fds(0);

	(void)state;
	limits_short(&lim);
	assert_int_equal(fdh_dispatch_new(&svc, &lim, &d), 0);
	conn_served(d, sv, 0);
	/* Past the idle timeout, the loop not running: the next request waits in the socket. */
	usleep((lim.idle_timeout_ms + 100) * 1000);
	assert_true(fdh_test_sends(sv[0], "GET /hello/late HTTP/1.1\r\n\r\n", NULL, 0) > 0);
	for (i = 0; i < 20 && fdh_dispatch_nconns(d) == 1; i++)
		assert_int_equal(fdh_dispatch_run_once(d, 100), 0);
	assert_int_equal(fdh_dispatch_nrequests(d), 2);
	assert_int_equal(fdh_dispatch_nconns(d), 0);
	assert_int_equal(fdh_test_read_all(sv[0], 2000, &m), 0);
	assert_non_null(strstr(m.data, "HTTP/1.1 200 "));
	assert_non_null(strstr(m.data, "/hello/late"));
	assert_true(m.eof);
	fdh_test_msg_free(&m);
	close(sv[0]);
	fdh_dispatch_free(d);
	assert_int_equal(fdh_test_count_fds(0), before);
}

/*
 * A request that is already in the socket of an idle keep-alive connection
 * when a drain begins (its client sent it as the drain was asked for) is
 * answered, with Connection: close; closed unread, it would be a request
 * sent whole and failed.  The drain shuts the connection's input at once:
 * a request sent after that fails to send (EPIPE), so its client knows it
 * never went.
 */
static void
test_drain_answers_a_request_already_queued(void **state)
{
	struct fdh_limits lim;
	struct fdh_dispatch *d;
	struct fdh_test_msg m;
	int sv[2][2], i, k, before = fdh_test_count_fds(0);

	(void)state;
	fdh_limits_default(&lim);
	assert_int_equal(fdh_dispatch_new(&svc, &lim, &d), 0);
	for (k = 0; k < 2; k++)
		conn_served(d, sv[k], (uint64_t)k);
	age_answers(d);
	/* Sent, not yet read: the drain comes between. */
	assert_true(fdh_test_sends(sv[0][0], "GET /hello/queued HTTP/1.1\r\n\r\n", NULL, 0) > 0);
	fdh_dispatch_drain(d);
	errno = 0;
	assert_int_equal(send(sv[1][0], "GET /", 5, MSG_NOSIGNAL), -1);
	assert_int_equal(errno, EPIPE);
	for (i = 0; i < 20 && fdh_dispatch_nrequests(d) == 2; i++)
		assert_int_equal(fdh_dispatch_run_once(d, 100), 0);
	assert_int_equal(fdh_test_read_all(sv[0][0], 2000, &m), 0);
	assert_non_null(strstr(m.data, "HTTP/1.1 200 "));
	assert_non_null(strstr(m.data, "/hello/queued"));
	assert_non_null(strstr(m.data, "Connection: close\r\n"));
	assert_true(m.eof);
	fdh_test_msg_free(&m);
	assert_int_equal(fdh_test_read_all(sv[1][0], 2000, &m), 0);
	assert_true(m.eof && m.len == 0);
	fdh_test_msg_free(&m);
	assert_int_equal(fdh_dispatch_nconns(d), 0);
	for (k = 0; k < 2; k++)
		close(sv[k][0]);
	assert_int_equal(fdh_dispatch_run_once(d, 0), 1);
	fdh_dispatch_free(d);
	assert_int_equal(fdh_test_count_fds(0), before);
}

/*
 * A drain closes idle keep-alive connections, but not one answered in this
 * turn of the loop or the last: its response said keep-alive after the
 * drain was asked for (a handler was running), and its client may already
 * be sending the next request.  That one is answered with Connection:
 * close; a connection that sends nothing is closed LAST_CALL_MS later.
 */
static void
test_drain_gives_the_just_answered_a_last_request(void **state)
{
	struct fdh_peer peer = { .pid = getpid(), .uid = getuid(), .gid = getgid() };
	struct fdh_limits lim;
	struct fdh_dispatch *d;
	struct fdh_test_msg m;
	int old[2], late[2], quiet[2], *sv[] = { old, late, quiet }, i, k;
	int before = fdh_test_count_fds(0);
	int64_t t0;

	(void)state;
	fdh_limits_default(&lim);
	assert_int_equal(fdh_dispatch_new(&svc, &lim, &d), 0);
	for (k = 0; k < 3; k++) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[k]), 0);
		assert_int_equal(fdh_dispatch_add_conn(d, sv[k][1], &peer, -1, (uint64_t)k), 0);
	}
	/* old is answered, then turns go by; late and quiet are answered last. */
	for (k = 0; k < 3; k++) {
		assert_true(fdh_test_sends(sv[k][0], "GET /hello/a HTTP/1.1\r\n\r\n", NULL, 0) > 0);
		for (i = 0; i < 20 && fdh_dispatch_nrequests(d) == (unsigned)k; i++)
			assert_int_equal(fdh_dispatch_run_once(d, 100), 0);
		assert_int_equal(fdh_test_read_message(sv[k][0], 2000, &m), 0);
		assert_null(strstr(m.data, "Connection: close"));
		fdh_test_msg_free(&m);
		if (k == 0)
			age_answers(d);
	}
	fdh_dispatch_drain(d);
	assert_int_equal(fdh_dispatch_nconns(d), 2);
	assert_int_equal(fdh_dispatch_run_once(d, 0), 0);	/* a closed socket goes at a turn's end */
	assert_int_equal(fdh_test_read_all(old[0], 2000, &m), 0);
	assert_true(m.eof && m.len == 0);	/* closed silently, at once */
	fdh_test_msg_free(&m);

	assert_true(fdh_test_sends(late[0], "GET /hello/last HTTP/1.1\r\n\r\n", NULL, 0) > 0);
	assert_int_equal(fdh_dispatch_run_once(d, 1000), 0);
	assert_int_equal(fdh_test_read_all(late[0], 2000, &m), 0);
	assert_non_null(strstr(m.data, "HTTP/1.1 200 "));
	assert_non_null(strstr(m.data, "/hello/last"));
	assert_non_null(strstr(m.data, "Connection: close"));
	assert_true(m.eof);
	fdh_test_msg_free(&m);
	assert_int_equal(fdh_dispatch_nconns(d), 1);

	/* quiet sent nothing: closed after its last call, the drain then done. */
	t0 = fdh_test_now_ms();
	for (i = 0; i < 50 && fdh_dispatch_nconns(d) > 0; i++)
		assert_true(fdh_dispatch_run_once(d, 100) >= 0);
	assert_int_equal(fdh_dispatch_nconns(d), 0);
	assert_true(fdh_test_now_ms() - t0 >= 900);
	assert_int_equal(fdh_test_read_all(quiet[0], 2000, &m), 0);
	assert_true(m.eof && m.len == 0);
	fdh_test_msg_free(&m);
	assert_int_equal(fdh_dispatch_run_once(d, 0), 1);
	for (k = 0; k < 3; k++)
		close(sv[k][0]);
	fdh_dispatch_free(d);
	assert_int_equal(fdh_test_count_fds(0), before);
}

static int
add_queued_conn(struct fdh_dispatch *d, int fd, void *arg)
{
	struct fdh_peer peer = { .pid = getpid(), .uid = getuid(), .gid = getgid() };
	char byte;

	if (read(fd, &byte, 1) != 1)
		return -EIO;
	return fdh_dispatch_add_conn(d, *(int *)arg, &peer, -1, 0);
}

/*
 * A connection handed in (as a worker gets one on its control socket) with
 * its request already queued is answered in the same turn, without waiting
 * for epoll to report it: the turn saved is on every new connection's path.
 */
static void
test_request_queued_at_hand_over_answered_at_once(void **state)
{
	struct fdh_limits lim;
	struct fdh_dispatch *d;
	struct fdh_test_msg m;
	int a[2], b[2], feed[2], before = fdh_test_count_fds(0);

	(void)state;
	fdh_limits_default(&lim);
	assert_int_equal(fdh_dispatch_new(&svc, &lim, &d), 0);
	assert_int_equal(pipe2(feed, O_CLOEXEC), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b), 0);
	assert_int_equal(fdh_dispatch_watch(d, feed[0], add_queued_conn, &a[1]), 0);
	assert_true(fdh_test_sends(a[0], "GET /hello/now HTTP/1.1\r\n\r\n", NULL, 0) > 0);
	assert_int_equal(write(feed[1], "c", 1), 1);
	assert_int_equal(fdh_dispatch_run_once(d, 1000), 0);
	assert_int_equal(fdh_dispatch_nconns(d), 1);
	assert_int_equal(fdh_dispatch_nrequests(d), 1);
	assert_int_equal(fdh_test_read_message(a[0], 1000, &m), 0);
	assert_int_equal(m.status, 200);
	assert_non_null(strstr(fdh_test_msg_body(&m), "/hello/now"));
	fdh_test_msg_free(&m);
	/* One that has sent nothing yet is read in vain and waits, open. */
	a[1] = b[1];
	assert_int_equal(write(feed[1], "c", 1), 1);
	assert_int_equal(fdh_dispatch_run_once(d, 1000), 0);
	assert_int_equal(fdh_dispatch_nconns(d), 2);
	assert_int_equal(fdh_dispatch_nrequests(d), 1);
	assert_true(fdh_test_sends(b[0], "GET /hello/later HTTP/1.1\r\n\r\n", NULL, 0) > 0);
	assert_int_equal(fdh_dispatch_run_once(d, 1000), 0);
	assert_int_equal(fdh_test_read_message(b[0], 1000, &m), 0);
	assert_int_equal(m.status, 200);
	assert_non_null(strstr(fdh_test_msg_body(&m), "/hello/later"));
	fdh_test_msg_free(&m);
	fdh_dispatch_free(d);
	close(a[0]);
	close(b[0]);
	close(feed[0]);
	close(feed[1]);
	assert_int_equal(fdh_test_count_fds(0), before);
}

/* A control socket's watch that also notes whether a connection's socket is still open. */
struct handoff_seen {
	struct fd_watch w;
	int ended_fd;		/* the dispatcher's end of that connection */
	int ended_open;		/* when the watch ran: 1 open, 0 closed, -1 not run */
	int pidfd;		/* that connection's pidfd */
	int pidfd_open;		/* likewise */
};

static int
on_handoff(struct fdh_dispatch *d, int fd, void *arg)
{
	struct handoff_seen *h = arg;

	h->ended_open = fcntl(h->ended_fd, F_GETFD) != -1;
	h->pidfd_open = fcntl(h->pidfd, F_GETFD) != -1;
	return on_fd_watch(d, fd, &h->w);
}

/*
 * A client hangs up while the next connection is on its way in, as a
 * worker sees at every new connection: the ended connection's socket
 * closes only after the watches have read what came.  Closing a Unix
 * socket while another is in flight queues the kernel's fd garbage
 * collector (Linux 6.18 and earlier); read first, the hand-off is no
 * longer in flight.  The socket, and the pidfd after it, still close in
 * that same turn.
 */
static void
test_ended_socket_closes_after_watches_read(void **state)
{
	struct fdh_peer peer = { .pid = getpid(), .uid = getuid(), .gid = getgid() };
	struct handoff_seen h = { .ended_open = -1, .pidfd_open = -1 };
	struct fdh_limits lim;
	struct fdh_dispatch *d;
	int sv[2], ctl[2], next[2], before = fdh_test_count_fds(0);
	char byte = 'c';

	(void)state;
	fdh_limits_default(&lim);
	assert_int_equal(fdh_dispatch_new(&svc, &lim, &d), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, next), 0);
	/* Any descriptor stands in for the peer's pidfd: the dispatcher holds and closes it. */
	h.pidfd = fdh_test_make_memfd("pidfd");
	assert_int_equal(fdh_dispatch_add_conn(d, sv[1], &peer, h.pidfd, 0), 0);
	assert_int_equal(fdh_dispatch_watch(d, ctl[1], on_handoff, &h), 0);
	fdh_dispatch_watch_brings_fds(d, ctl[1]);
	h.ended_fd = sv[1];
	assert_int_equal(fdh_dispatch_run_once(d, 0), 0);	/* read once, found idle */
	assert_int_equal(fdh_dispatch_nconns(d), 1);
	/* One turn takes both: the hang-up, and a socket in flight to the watch. */
	close(sv[0]);
	assert_int_equal(fdh_test_send(ctl[0], &byte, 1, &next[1], 1), 1);
	close(next[1]);
	assert_int_equal(fdh_dispatch_run_once(d, 1000), 0);
	assert_int_equal(h.w.got, 1);
	assert_int_equal(h.w.nfds, 1);
	assert_int_equal(h.ended_open, 1);
	assert_int_equal(h.pidfd_open, 1);
	/* Closed by the end of the turn all the same. */
	assert_int_equal(fdh_dispatch_nconns(d), 0);
	assert_int_equal(fcntl(sv[1], F_GETFD), -1);
	assert_int_equal(errno, EBADF);
	assert_int_equal(fcntl(h.pidfd, F_GETFD), -1);
	assert_int_equal(errno, EBADF);
	fdh_dispatch_free(d);
	close(next[0]);
	close(ctl[0]);
	close(ctl[1]);
	assert_int_equal(fdh_test_count_fds(0), before);
}

/*
 * A connection that ended earlier in a batch closes before a later
 * handler of that batch runs: a handler may take its time, and the ended
 * connection's peer should not wait on it for its end of file.
 */
static void
test_ended_socket_closes_before_a_handler_runs(void **state)
{
	struct fdh_peer peer = { .pid = getpid(), .uid = getuid(), .gid = getgid() };
	struct fdh_limits lim;
	struct fdh_dispatch *d;
	struct fdh_test_msg m;
	int a[2], b[2], before = fdh_test_count_fds(0);

	(void)state;
	fdh_limits_default(&lim);
	assert_int_equal(fdh_dispatch_new(&svc, &lim, &d), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b), 0);
	assert_int_equal(fdh_dispatch_add_conn(d, a[1], &peer, -1, 0), 0);
	assert_int_equal(fdh_dispatch_add_conn(d, b[1], &peer, -1, 1), 0);
	assert_int_equal(fdh_dispatch_run_once(d, 0), 0);	/* read once, found idle */
	watched_fd = a[1];
	watched_open = -1;
	/* One batch: a's hang-up first, then b's request. */
	close(a[0]);
	assert_true(fdh_test_sends(b[0], "GET /watched HTTP/1.1\r\n\r\n", NULL, 0) > 0);
	assert_int_equal(fdh_dispatch_run_once(d, 1000), 0);
	assert_int_equal(watched_open, 0);
	assert_int_equal(fdh_test_read_message(b[0], 1000, &m), 0);
	assert_int_equal(m.status, 200);
	fdh_test_msg_free(&m);
	assert_int_equal(fdh_dispatch_nconns(d), 1);
	fdh_dispatch_free(d);
	close(b[0]);
	assert_int_equal(fdh_test_count_fds(0), before);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_seen_by_handler),
		cmocka_unit_test(test_dup_attached_fd_stays_its_owners),
		cmocka_unit_test(test_partial_write_keeps_fds_with_first_byte),
		cmocka_unit_test(test_short_answer_waits_for_room),
		cmocka_unit_test(test_continue_waits_for_room),
		cmocka_unit_test(test_write_timeout_closes_and_frees),
		cmocka_unit_test(test_request_timeout_answers_408),
		cmocka_unit_test(test_idle_timeout_closes_silently),
		cmocka_unit_test(test_request_over_many_reads),
		cmocka_unit_test(test_taken_fd_survives_others_close),
		cmocka_unit_test(test_borrowed_fds_attached_go_with_response),
		cmocka_unit_test(test_response_fds_are_not_bound_by_max_fds),
		cmocka_unit_test(test_status_without_body_sends_none),
		cmocka_unit_test(test_handler_error_is_500_and_keeps_connection),
		cmocka_unit_test(test_drain_serves_first_request_then_ends),
		cmocka_unit_test(test_retire_after_nth_request),
		cmocka_unit_test(test_max_conns_refuses_and_closes),
		cmocka_unit_test_teardown(test_no_read_without_fd_headroom, restore_nofile),
		cmocka_unit_test_teardown(test_watch_bringing_fds_waits_for_headroom, restore_nofile),
		cmocka_unit_test(test_surplus_bytes_answered_with_close),
		cmocka_unit_test(test_refused_request_read_to_its_end),
		cmocka_unit_test(test_refused_request_lingers_a_second_at_most),
		cmocka_unit_test(test_empty_lines_before_request_ignored),
		cmocka_unit_test(test_bare_lf_before_request_refused),
		cmocka_unit_test(test_fds_with_empty_lines_alone_refused),
		cmocka_unit_test(test_empty_lines_do_not_keep_idle_connection),
		cmocka_unit_test(test_split_empty_line_keeps_connection_idle),
		cmocka_unit_test(test_surplus_after_request_of_many_reads_answered_with_close),
		cmocka_unit_test(test_surplus_sent_while_the_handler_runs_answered_with_close),
		cmocka_unit_test(test_fds_with_end_of_request_and_next_refused),
		cmocka_unit_test(test_refused_head_request_has_no_body),
		cmocka_unit_test(test_run_once_on_callers_thread),
		cmocka_unit_test(test_conn_closed_by_earlier_event_of_batch),
		cmocka_unit_test(test_drain_gives_the_just_answered_a_last_request),
		cmocka_unit_test(test_drain_answers_a_request_already_queued),
		cmocka_unit_test(test_idle_timeout_answers_a_request_already_queued),
		cmocka_unit_test(test_request_queued_at_hand_over_answered_at_once),
		cmocka_unit_test(test_ended_socket_closes_after_watches_read),
		cmocka_unit_test(test_ended_socket_closes_before_a_handler_runs),
	};
	size_t i;

	big = malloc(BIG_BODY);
	for (i = 0; i < BIG_BODY; i++)
		big[i] = (char)('a' + i % 26);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
