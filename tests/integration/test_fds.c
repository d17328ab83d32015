/*
 * CONTRACT section 3 against a real fdhttp-echo: fds named in X-FD and
 * passed with SCM_RIGHTS, every fd error, who closes what and when, the
 * fds of responses, RLIMIT_NOFILE headroom, and a burst of hostile
 * requests after which the service holds exactly the fds it held before.
 *
 * Whether the service closed an fd is seen from outside with a pipe: we
 * send its write end and drop our copy; the read end reaches EOF only once
 * every copy, the service's included, is closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <fdhttp/client.h>
#include "expect.h"

/* The limits of the "fds" group. */
#define MAX_FDS		4
#define MAX_BODY	65536
/* How long a closed fd may take to be seen closed. */
#define CLOSE_MS	2000

/* --- services -------------------------------------------------------------- */

static int
start_fds(void **state)
{
	static const char *const args[] = {
		"--max-fds", "4", "--max-body", "65536", "--request-timeout", "2",
		"--idle-timeout", "2", "--write-timeout", "2", NULL,
	};

	return fdh_test_group_start_echo(state, args);
}

static int
start_leak(void **state)
{
	static const char *const args[] = {
		"--max-fds", "4", "--max-body", "262144", "--max-head", "2048",
		"--request-timeout", "0.5", "--idle-timeout", "0.5", "--write-timeout", "0.5", NULL,
	};

	return fdh_test_group_start_echo(state, args);
}

/*
 * RLIMIT_NOFILE of the service, inherited from us across fork: 32.  It
 * starts with about 7 (stdio, listener, signalfd, /proc/self/fd, the echo
 * service's /proc/self/status), so some twenty connections leave less than
 * one request's worth of room.
 */
#define LOW_NOFILE 32

/* Starts the service with RLIMIT_NOFILE lowered to nofile, ours restored after the fork. */
static int
start_with_nofile(void **state, const char *const *args, rlim_t nofile)
{
	struct rlimit old, low;
	int r;

	if (getrlimit(RLIMIT_NOFILE, &old) == -1)
		return -1;
	low = old;
	low.rlim_cur = nofile;
	if (setrlimit(RLIMIT_NOFILE, &low) == -1)
		return -1;
	r = fdh_test_group_start_echo(state, args);
	if (setrlimit(RLIMIT_NOFILE, &old) == -1)
		return -1;
	return r;
}

static int
start_low_nofile(void **state)
{
	static const char *const args[] = {
		"--max-fds", "4", "--request-timeout", "5", "--idle-timeout", "1", NULL,
	};

	return start_with_nofile(state, args, LOW_NOFILE);
}

/* --- pipes as probes ------------------------------------------------------- */

struct probe {
	int rd;
	int wr;
};

static void
probe_open(struct probe *pr)
{
	int p[2];

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pr->rd = p[0];
	pr->wr = p[1];
}

/* Drops our write end. */
static void
probe_release(struct probe *pr)
{
	if (pr->wr >= 0)
		close(pr->wr);
	pr->wr = -1;
}

/* 1 when the read end sees EOF within ms: nobody holds the write end any more. */
static bool
probe_eof(const struct probe *pr, int ms)
{
	struct pollfd pfd = { .fd = pr->rd, .events = POLLIN };
	char ch;

	if (poll(&pfd, 1, ms) != 1)
		return false;
	return read(pr->rd, &ch, 1) == 0;
}

static void
probe_close(struct probe *pr)
{
	probe_release(pr);
	if (pr->rd >= 0)
		close(pr->rd);
	pr->rd = -1;
}

/*
 * Sends req with n fresh pipe write ends attached to its first sendmsg and
 * drops our copies; the answer must be status with Connection: close, a
 * one-line text body, the connection must close, and every pipe must see
 * EOF: the service closed every fd of the request.
 */
static void
expect_fd_refusal(const struct fdh_test_proc *p, const char *what, const char *req, size_t n,
    int status)
{
	struct probe pr[FDH_TEST_MAX_FDS];
	int fds[FDH_TEST_MAX_FDS];
	struct fdh_test_msg m;
	size_t i;
	int sock = fdh_expect_connect(p);

	print_message("  %s\n", what);
	assert_true(n <= FDH_TEST_MAX_FDS);
	for (i = 0; i < n; i++) {
		probe_open(&pr[i]);
		fds[i] = pr[i].wr;
	}
	fdh_expect_send_fds(sock, req, fds, n);
	for (i = 0; i < n; i++)
		probe_release(&pr[i]);
	fdh_expect_refusal(sock, req, strlen(req), n, status, &m);
	assert_int_equal(m.nfds, 0);
	for (i = 0; i < n; i++) {
		if (!probe_eof(&pr[i], CLOSE_MS))
			fail_msg("%s: fd %zu of %zu still open in the service after the %d", what,
			    i + 1, n, status);
		probe_close(&pr[i]);
	}
	fdh_test_msg_free(&m);
	close(sock);
}

/* "a,b,c..." of n generated names. */
static void
names(char *buf, size_t size, size_t n)
{
	size_t i, len = 0;

	buf[0] = '\0';
	for (i = 0; i < n; i++)
		len += (size_t)snprintf(buf + len, size - len, "%sfd%zu", i ? "," : "", i);
}

static void
echo_head(char *buf, size_t size, const char *xfd)
{
	if (xfd)
		snprintf(buf, size, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
		    "X-FD: %s\r\n\r\nhi", xfd);
	else
		snprintf(buf, size, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
}

/* --- fds of requests ------------------------------------------------------- */

static void
test_echo_same_names_order_files(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	struct probe pr;
	char xfd[128];
	int fds[4], sock;
	size_t i;

	probe_open(&pr);
	fds[0] = fdh_test_make_memfd("zeta");
	fds[1] = pr.rd;
	fds[2] = pr.wr;
	fds[3] = fdh_test_make_memfd("b");
	assert_true(fds[0] >= 0 && fds[3] >= 0);

	sock = fdh_expect_connect(p);
	/* Names out of any sorted order, spaces around the commas. */
	fdh_expect_send_fds(sock, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
	    "X-FD: zeta , alpha,mid ,b\r\n\r\nbody", fds, 4);
	fdh_expect_read_resp(sock, &m);
	fdh_expect_status(&m, 200);
	assert_string_equal(fdh_test_msg_body(&m), "body");
	assert_int_equal(fdh_test_msg_header(&m, "X-FD", xfd, sizeof(xfd)), 0);
	assert_string_equal(xfd, "zeta,alpha,mid,b");
	assert_int_equal(m.nfds, 4);
	/* With the sendmsg that carries the response head. */
	assert_int_equal(m.fds_at, 0);
	assert_false(m.truncated);
	for (i = 0; i < 4; i++) {
		if (!fdh_test_same_file(m.fds[i], fds[i]))
			fail_msg("response fd %zu is not the file sent under that name", i);
	}
	fdh_test_msg_free(&m);
	fdh_expect_health(sock);
	close(sock);
	close(fds[0]);
	close(fds[3]);
	probe_close(&pr);
}

static void
test_echo_client_library(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_client *c = NULL;
	struct fdh_client_resp resp;
	struct fdh_named_fd nfds[2];
	struct fdh_client_req req = {
		.method = "POST", .target = "/echo", .body = "x", .body_len = 1,
		.fds = nfds, .nfds = 2,
	};
	char buf[64];
	int out;

	nfds[0] = (struct fdh_named_fd){ "config.json", fdh_test_make_memfd("{}") };
	nfds[1] = (struct fdh_named_fd){ "log_1-2", fdh_test_make_memfd("log") };
	assert_true(nfds[0].fd >= 0 && nfds[1].fd >= 0);
	assert_int_equal(fdh_client_connect(p->sock, FDH_EXPECT_IO_MS, &c), 0);
	assert_int_equal(fdh_client_request(c, &req, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "x");
	assert_int_equal(resp.nfds, 2);
	assert_string_equal(resp.fds[0].name, "config.json");
	assert_string_equal(resp.fds[1].name, "log_1-2");
	assert_true(fdh_test_same_file(resp.fds[0].fd, nfds[0].fd));
	assert_true(fdh_test_same_file(resp.fds[1].fd, nfds[1].fd));
	out = fdh_client_resp_take_fd(&resp, "log_1-2");
	assert_true(out >= 0);
	assert_int_equal(pread(out, buf, sizeof(buf), 0), 3);
	close(out);
	fdh_client_resp_release(&resp);

	/* The boundary: exactly --max-fds fds, a name of exactly 64 characters. */
	{
		struct fdh_named_fd four[MAX_FDS];
		char longname[FDH_FD_NAME_MAX + 1];
		size_t i;

		memset(longname, 'n', FDH_FD_NAME_MAX);
		longname[FDH_FD_NAME_MAX] = '\0';
		four[0] = (struct fdh_named_fd){ longname, nfds[0].fd };
		four[1] = (struct fdh_named_fd){ "b", nfds[1].fd };
		four[2] = (struct fdh_named_fd){ "c", nfds[0].fd };
		four[3] = (struct fdh_named_fd){ "d", nfds[1].fd };
		req.fds = four;
		req.nfds = MAX_FDS;
		assert_int_equal(fdh_client_request(c, &req, &resp), 0);
		assert_int_equal(resp.status, 200);
		assert_int_equal(resp.nfds, MAX_FDS);
		assert_string_equal(resp.fds[0].name, longname);
		for (i = 0; i < MAX_FDS; i++)
			assert_true(fdh_test_same_file(resp.fds[i].fd, four[i].fd));
		fdh_client_resp_release(&resp);
	}
	fdh_client_free(c);
	close(nfds[0].fd);
	close(nfds[1].fd);
}

static void
test_fds_with_later_body_sendmsg(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	int memfd = fdh_test_make_memfd("late"), other = fdh_test_make_memfd("early"), sock;
	char xfd[64];

	assert_true(memfd >= 0 && other >= 0);

	/* Head alone, then body bytes carrying the fd, then the rest. */
	sock = fdh_expect_connect(p);
	fdh_expect_send(sock, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\nX-FD: late\r\n\r\n");
	fdh_test_sleep_ms(50);
	fdh_expect_send_fds(sock, "body", &memfd, 1);
	fdh_test_sleep_ms(50);
	fdh_expect_answer(sock, "tail", 200, &m);
	assert_string_equal(fdh_test_msg_body(&m), "bodytail");
	assert_int_equal(m.nfds, 1);
	assert_true(fdh_test_same_file(m.fds[0], memfd));
	fdh_test_msg_free(&m);

	/* One fd with the head, the other with the body: still one request's fds, in order. */
	fdh_expect_send_fds(sock, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
	    "X-FD: early,late\r\n\r\n", &other, 1);
	fdh_test_sleep_ms(50);
	fdh_expect_send_fds(sock, "abc", &memfd, 1);
	fdh_expect_read_resp(sock, &m);
	fdh_expect_status(&m, 200);
	assert_string_equal(fdh_test_msg_body(&m), "abc");
	assert_int_equal(fdh_test_msg_header(&m, "X-FD", xfd, sizeof(xfd)), 0);
	assert_string_equal(xfd, "early,late");
	assert_int_equal(m.nfds, 2);
	assert_true(fdh_test_same_file(m.fds[0], other));
	assert_true(fdh_test_same_file(m.fds[1], memfd));
	fdh_test_msg_free(&m);

	/* The head in two pieces, the fd with the second. */
	fdh_expect_send(sock, "POST /echo HTTP/1.1\r\nHost: x\r\nCont");
	fdh_test_sleep_ms(50);
	fdh_expect_send_fds(sock, "ent-Length: 1\r\nX-FD: late\r\n\r\nz", &memfd, 1);
	fdh_expect_read_resp(sock, &m);
	fdh_expect_status(&m, 200);
	assert_int_equal(m.nfds, 1);
	assert_true(fdh_test_same_file(m.fds[0], memfd));
	fdh_test_msg_free(&m);
	close(sock);
	close(memfd);
	close(other);
}

static void
test_fd_errors_400_close_and_closed(void **state)
{
	const struct fdh_test_proc *p = *state;
	char req[1024], list[512];

	echo_head(req, sizeof(req), "a,b");
	expect_fd_refusal(p, "2 names, 1 fd", req, 1, 400);
	echo_head(req, sizeof(req), "a");
	expect_fd_refusal(p, "1 name, 2 fds", req, 2, 400);
	echo_head(req, sizeof(req), NULL);
	expect_fd_refusal(p, "fds without X-FD", req, 2, 400);
	expect_fd_refusal(p, "an fd sent to GET /health without X-FD",
	    "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 1, 400);
	echo_head(req, sizeof(req), "a");
	expect_fd_refusal(p, "X-FD without fds", req, 0, 400);
	echo_head(req, sizeof(req), "a,b");
	expect_fd_refusal(p, "X-FD of two without fds", req, 0, 400);

	echo_head(req, sizeof(req), "a b");
	expect_fd_refusal(p, "name with a space", req, 1, 400);
	echo_head(req, sizeof(req), "a/b");
	expect_fd_refusal(p, "name with a slash", req, 1, 400);
	echo_head(req, sizeof(req), "a,,b");
	expect_fd_refusal(p, "empty name in the list", req, 2, 400);
	echo_head(req, sizeof(req), "a,");
	expect_fd_refusal(p, "trailing comma", req, 1, 400);
	echo_head(req, sizeof(req), "");
	expect_fd_refusal(p, "empty X-FD", req, 1, 400);
	echo_head(req, sizeof(req), "caf\xc3\xa9");
	expect_fd_refusal(p, "non-ASCII name", req, 1, 400);
	memset(list, 'n', FDH_FD_NAME_MAX + 1);
	list[FDH_FD_NAME_MAX + 1] = '\0';
	echo_head(req, sizeof(req), list);
	expect_fd_refusal(p, "name of 65 characters", req, 1, 400);
	echo_head(req, sizeof(req), "a,b,a");
	expect_fd_refusal(p, "repeated name", req, 3, 400);
	expect_fd_refusal(p, "two X-FD headers",
	    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nX-FD: a\r\nX-FD: b\r\n\r\n", 2,
	    400);

	/* More than --max-fds: the kernel truncates (MSG_CTRUNC). */
	names(list, sizeof(list), MAX_FDS + 1);
	echo_head(req, sizeof(req), list);
	expect_fd_refusal(p, "max+1 fds, max+1 names", req, MAX_FDS + 1, 400);
	names(list, sizeof(list), MAX_FDS);
	echo_head(req, sizeof(req), list);
	expect_fd_refusal(p, "max+1 fds, max names", req, MAX_FDS + 1, 400);
	names(list, sizeof(list), 40);
	echo_head(req, sizeof(req), list);
	expect_fd_refusal(p, "40 fds, 40 names", req, 40, 400);
	names(list, sizeof(list), MAX_FDS + 1);
	echo_head(req, sizeof(req), list);
	expect_fd_refusal(p, "max fds, max+1 names", req, MAX_FDS, 400);
}

static void
test_fds_with_two_requests_400(void **state)
{
	const struct fdh_test_proc *p = *state;

	/* One read returns the fd with bytes of two requests: whose is it? */
	expect_fd_refusal(p, "fd with bytes of two requests",
	    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nX-FD: a\r\n\r\n"
	    "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 1, 400);
	expect_fd_refusal(p, "fd with a request and the start of another",
	    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nX-FD: a\r\n\r\nGET /he", 1, 400);
}

static void
test_fds_of_other_refusals_closed(void **state)
{
	const struct fdh_test_proc *p = *state;

	/* Errors that are not about fds close the request's fds too. */
	expect_fd_refusal(p, "413 with fds",
	    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\nX-FD: a\r\n\r\n", 1, 413);
	expect_fd_refusal(p, "smuggling with fds",
	    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n"
	    "X-FD: a\r\n\r\nx", 1, 400);
	expect_fd_refusal(p, "bare LF with fds", "POST /echo HTTP/1.1\nX-FD: a\n\n", 1, 400);
}

static void
test_fds_closed_after_handler(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	struct probe pr;
	int sock = fdh_expect_connect(p);

	probe_open(&pr);
	fdh_expect_send_fds(sock, "POST /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
	    "X-FD: w\r\n\r\nping", &pr.wr, 1);
	probe_release(&pr);
	fdh_expect_read_resp(sock, &m);
	fdh_expect_status(&m, 200);
	assert_string_equal(fdh_test_msg_body(&m), "pong");
	assert_int_equal(m.nfds, 0);
	fdh_test_msg_free(&m);
	/* Closed with the request, while the connection lives on. */
	if (!probe_eof(&pr, CLOSE_MS))
		fail_msg("the fd of a served POST /ping is still open in the service");
	fdh_expect_health(sock);
	close(sock);
	probe_close(&pr);
}

static void
test_response_fds_closed_once_sent(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	struct probe pr;
	int sock = fdh_expect_connect(p);

	probe_open(&pr);
	fdh_expect_send_fds(sock, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nX-FD: w\r\n\r\n",
	    &pr.wr, 1);
	probe_release(&pr);
	fdh_expect_read_resp(sock, &m);
	fdh_expect_status(&m, 200);
	assert_int_equal(m.nfds, 1);
	fdh_test_msg_free(&m);		/* closes the copy that came back */
	if (!probe_eof(&pr, CLOSE_MS))
		fail_msg("the service kept its copy of a response fd after sending it");
	fdh_expect_health(sock);
	close(sock);
	probe_close(&pr);
}

static void
test_fd_numbers_in_body_mean_nothing(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	int sock = fdh_expect_connect(p);

	fdh_expect_answer(sock, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 24\r\n\r\n"
	    "X-FD: a\r\nfd=0 fd=1 fd=2\n", 200, &m);
	assert_int_equal(m.nfds, 0);
	assert_int_equal(fdh_test_msg_header(&m, "X-FD", (char[8]){ 0 }, 8), -ENOENT);
	fdh_test_msg_free(&m);
	close(sock);
}

/* --- fds of responses ------------------------------------------------------ */

static void
test_fd_memfd_sealed(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_client *c = NULL;
	struct fdh_client_resp resp;
	struct fdh_client_req req = {
		.method = "POST", .target = "/fd/memfd", .body = "sealed content", .body_len = 14,
	};
	struct fdh_test_msg m;
	char buf[64], xfd[32];
	int fd, seals, sock;

	assert_int_equal(fdh_client_connect(p->sock, FDH_EXPECT_IO_MS, &c), 0);
	assert_int_equal(fdh_client_request(c, &req, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.body_len, 0);
	assert_int_equal(resp.nfds, 1);
	assert_string_equal(resp.fds[0].name, "output");
	fd = fdh_client_resp_take_fd(&resp, "output");
	assert_true(fd >= 0);
	seals = fcntl(fd, F_GET_SEALS);
	assert_true(seals >= 0);
	assert_true((seals & (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW)) ==
	    (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW));
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), 14);
	assert_memory_equal(buf, "sealed content", 14);
	/* Sealed means it: no write gets through. */
	assert_int_equal(pwrite(fd, "x", 1, 0), -1);
	close(fd);
	fdh_client_resp_release(&resp);
	fdh_client_free(c);

	/* Raw: named in X-FD, attached to the head's sendmsg. */
	sock = fdh_expect_connect(p);
	fdh_expect_answer(sock, "POST /fd/memfd HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
	    200, &m);
	assert_int_equal(fdh_test_msg_header(&m, "X-FD", xfd, sizeof(xfd)), 0);
	assert_string_equal(xfd, "output");
	assert_int_equal(m.nfds, 1);
	assert_int_equal(m.fds_at, 0);
	assert_int_equal(pread(m.fds[0], buf, sizeof(buf), 0), 3);
	fdh_test_msg_free(&m);
	close(sock);
}

static int
fd_read(const struct fdh_test_proc *p, const char *name, int fd, struct fdh_client_resp *resp)
{
	struct fdh_client *c = NULL;
	struct fdh_named_fd nfd = { name, fd };
	struct fdh_client_req req = {
		.method = "POST", .target = "/fd/read", .fds = &nfd, .nfds = fd >= 0 ? 1 : 0,
	};
	int r;

	assert_int_equal(fdh_client_connect(p->sock, FDH_EXPECT_IO_MS, &c), 0);
	r = fdh_client_request(c, &req, resp);
	fdh_client_free(c);
	return r;
}

static void
test_fd_read(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_client_resp resp;
	char *big;
	int fd;

	fd = fdh_test_make_memfd("from a memfd\n");
	assert_int_equal(fd_read(p, "input", fd, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "from a memfd\n");
	fdh_client_resp_release(&resp);
	close(fd);

	fd = fdh_test_make_pipe_with("from a pipe");
	assert_int_equal(fd_read(p, "input", fd, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "from a pipe");
	fdh_client_resp_release(&resp);
	close(fd);

	/* No input. */
	assert_int_equal(fd_read(p, "input", -1, &resp), 0);
	assert_int_equal(resp.status, 400);
	fdh_client_resp_release(&resp);
	fd = fdh_test_make_memfd("x");
	assert_int_equal(fd_read(p, "other", fd, &resp), 0);
	assert_int_equal(resp.status, 400);
	fdh_client_resp_release(&resp);
	close(fd);

	/* Exactly the body limit, then one byte more. */
	big = malloc(MAX_BODY + 2);
	assert_non_null(big);
	memset(big, 'q', MAX_BODY);
	big[MAX_BODY] = '\0';
	fd = fdh_test_make_memfd(big);
	assert_int_equal(fd_read(p, "input", fd, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.body_len, MAX_BODY);
	fdh_client_resp_release(&resp);
	close(fd);
	big[MAX_BODY] = 'q';
	big[MAX_BODY + 1] = '\0';
	fd = fdh_test_make_memfd(big);
	assert_int_equal(fd_read(p, "input", fd, &resp), 0);
	assert_int_equal(resp.status, 413);
	fdh_client_resp_release(&resp);
	close(fd);
	free(big);
}

/* --- RLIMIT_NOFILE --------------------------------------------------------- */

static int stable_count(pid_t pid);

#define FILLERS		64
#define REQUESTERS	5

static void
test_nofile_never_truncates(void **state)
{
	const struct fdh_test_proc *p = *state;
	int fillers[FILLERS], reqs[REQUESTERS], fds[MAX_FDS], memfd, base, nfill;
	int64_t t0;
	size_t i, j;

	/*
	 * About 7 fds of its own + idle connections + 5 more = 30 of 32: a
	 * request's 4 fds do not fit.  Read now, the kernel would drop some
	 * (MSG_CTRUNC) and the request would fail; the service must wait until
	 * the idle ones time out (1 s) and then serve every request whole.
	 */
	fdh_test_sleep_ms(100);
	base = stable_count(p->pid);
	nfill = LOW_NOFILE - 2 - REQUESTERS - base;
	print_message("  service holds %d fds of %d; %d idle connections, %d requests\n", base,
	    LOW_NOFILE, nfill, REQUESTERS);
	assert_true(nfill > 0 && nfill <= FILLERS);
	t0 = fdh_test_now_ms();
	for (i = 0; i < (size_t)nfill; i++)
		fillers[i] = fdh_expect_connect(p);
	fdh_test_sleep_ms(600);
	memfd = fdh_test_make_memfd("shared");
	assert_true(memfd >= 0);
	for (j = 0; j < MAX_FDS; j++)
		fds[j] = memfd;
	for (i = 0; i < REQUESTERS; i++) {
		reqs[i] = fdh_expect_connect(p);
		fdh_expect_send_fds(reqs[i], "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
		    "X-FD: a,b,c,d\r\n\r\nhi", fds, MAX_FDS);
	}
	for (i = 0; i < REQUESTERS; i++) {
		struct fdh_test_msg m;
		int r = fdh_test_read_message(reqs[i], FDH_EXPECT_IO_MS, &m);

		if (r != 0 || m.status != 200) {
			print_error("request %zu near RLIMIT_NOFILE: r=%d\n", i, r);
			fdh_expect_print_bytes("received", m.data, m.len);
			fail();
		}
		print_message("  request %zu answered %lld ms after the first connect\n", i,
		    (long long)(fdh_test_now_ms() - t0));
		assert_int_equal(m.nfds, MAX_FDS);
		for (j = 0; j < MAX_FDS; j++)
			assert_true(fdh_test_same_file(m.fds[j], memfd));
		fdh_test_msg_free(&m);
	}
	for (i = 0; i < (size_t)nfill; i++)
		close(fillers[i]);
	for (i = 0; i < REQUESTERS; i++)
		close(reqs[i]);
	close(memfd);
}

/*
 * The service must also come back from a shortage: here hundreds of idle
 * connections time out in one pass of the timers while it is starved, and
 * from then on it must read again.  RLIMIT_NOFILE 300; a handler blocked
 * on a pipe we hold makes the timers of the idle ones expire together.
 */
#define MID_NOFILE	300
#define MID_TARGET	292	/* fds open when X's, Y's and A's requests are read */

static int
start_mid_nofile(void **state)
{
	static const char *const args[] = {
		"--max-fds", "4", "--max-conns", "1000", "--request-timeout", "3",
		"--idle-timeout", "1", NULL,
	};

	return start_with_nofile(state, args, MID_NOFILE);
}

/* POST /fd/read with the read end of pr: the handler waits until we close the write end. */
static void
send_blocking_read(int sock, struct probe *pr)
{
	fdh_expect_send_fds(sock, "POST /fd/read HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
	    "X-FD: input\r\n\r\n", &pr->rd, 1);
	close(pr->rd);
	pr->rd = -1;
}

static void
test_nofile_resumes_after_mass_close(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct probe px, py;
	struct fdh_test_msg m;
	int x, b, a, y, z, memfd, fds[MAX_FDS], *fillers, base, nfill, i, r;
	bool served_a, served_z;

	fdh_test_sleep_ms(100);
	/* Accepted in this order: y has the highest slot, then a, then b. */
	x = fdh_expect_connect(p);
	b = fdh_expect_connect(p);
	a = fdh_expect_connect(p);
	y = fdh_expect_connect(p);
	fdh_test_sleep_ms(50);
	base = stable_count(p->pid);
	nfill = MID_TARGET - base;
	print_message("  service holds %d fds; %d idle connections bring it to %d of %d\n", base,
	    nfill, MID_TARGET, MID_NOFILE);
	assert_true(nfill > 100);
	fillers = calloc((size_t)nfill, sizeof(*fillers));
	assert_non_null(fillers);
	for (i = 0; i < nfill; i++)
		fillers[i] = fdh_expect_connect(p);
	assert_int_equal(fdh_test_wait_fd_count(p->pid, MID_TARGET, 2000), MID_TARGET);
	/* x, y, a, b: idle deadlines after the fillers'. */
	fdh_expect_health(x);
	fdh_expect_health(b);
	fdh_expect_health(a);
	fdh_expect_health(y);

	/* x's handler holds the service while y, a and b queue their requests. */
	probe_open(&px);
	probe_open(&py);
	send_blocking_read(x, &px);
	fdh_test_sleep_ms(50);
	memfd = fdh_test_make_memfd("m");
	for (i = 0; i < MAX_FDS; i++)
		fds[i] = memfd;
	fdh_expect_send_fds(a, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
	    "X-FD: a,b,c,d\r\n\r\nab", fds, MAX_FDS);
	fdh_expect_send(b, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
	send_blocking_read(y, &py);
	fdh_test_sleep_ms(50);
	probe_release(&px);
	fdh_expect_read_resp(x, &m);
	fdh_expect_status(&m, 200);
	fdh_test_msg_free(&m);

	/*
	 * Now y's handler waits.  When it returns, a's fds fill the table, b
	 * finds no room, and the fillers (idle 1 s) all expire in one pass.
	 */
	fdh_test_sleep_ms(1300);
	probe_release(&py);
	fdh_expect_read_resp(y, &m);
	fdh_expect_status(&m, 200);
	fdh_test_msg_free(&m);
	fdh_test_sleep_ms(100);
	print_message("  service holds %d fds after the idle ones expired\n",
	    fdh_test_count_fds(p->pid));

	/* Room again: a's request completes, and a newcomer is served. */
	fdh_expect_send(a, "cd");
	z = fdh_expect_connect(p);
	fdh_expect_send(z, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
	r = fdh_test_read_message(a, FDH_EXPECT_IO_MS, &m);
	served_a = r == 0 && m.status == 200 && m.nfds == MAX_FDS;
	if (!served_a) {
		print_error("after the shortage ended, a pending request was not served: r=%d\n", r);
		fdh_expect_print_bytes("received", m.data, m.len);
	}
	fdh_test_msg_free(&m);
	r = fdh_test_read_message(z, FDH_EXPECT_IO_MS, &m);
	served_z = r == 0 && m.status == 200;
	if (!served_z) {
		print_error("after the shortage ended, a new connection was not served: r=%d\n", r);
		fdh_expect_print_bytes("received", m.data, m.len);
	}
	fdh_test_msg_free(&m);

	for (i = 0; i < nfill; i++)
		close(fillers[i]);
	free(fillers);
	close(memfd);
	close(x);
	close(y);
	close(a);
	close(b);
	close(z);
	probe_close(&px);
	probe_close(&py);
	assert_true(served_a);
	assert_true(served_z);
}

/* --- no leaks -------------------------------------------------------------- */

/* Waits for the count to stop moving: the same value twice, 100 ms apart. */
static int
stable_count(pid_t pid)
{
	int a = fdh_test_count_fds(pid), b, i;

	for (i = 0; i < 50; i++) {
		fdh_test_sleep_ms(100);
		b = fdh_test_count_fds(pid);
		if (a == b)
			return b;
		a = b;
	}
	return a;
}

enum hostile {
	H_MISMATCH_2_1,
	H_MISMATCH_1_2,
	H_NO_XFD,
	H_XFD_NO_FDS,
	H_BAD_NAME,
	H_REPEATED,
	H_TOO_MANY_SAME,
	H_TOO_MANY_FEWER,
	H_TWO_REQUESTS,
	H_HEAD_431,
	H_BODY_413,
	H_DUP_CL,
	H_BARE_LF,
	H_NOT_FOUND,
	H_EXPECT_417,
	H_VANISH_MID_HEAD,
	H_VANISH_MID_BODY,
	H_VANISH_UNREAD,
	H_VANISH_LATE_FDS,
	H_PING,
	H_FD_READ,
	H_MEMFD_UNREAD,
	H_KINDS
};

/*
 * One hostile exchange on a fresh connection, its fds the canary's write
 * end (repeated) or a fresh pipe.  When read is set and the kind expects an
 * answer, the answer is checked; otherwise the client vanishes at once.
 */
static void
hostile(const struct fdh_test_proc *p, enum hostile kind, int canary, bool read)
{
	char buf[4096];
	int fds[MAX_FDS + 1], sock, expect = 0, extra = -1;
	size_t n = 1, i;
	const char *req = buf;

	sock = fdh_expect_connect(p);
	switch (kind) {
	case H_MISMATCH_2_1:
		echo_head(buf, sizeof(buf), "a,b");
		expect = 400;
		break;
	case H_MISMATCH_1_2:
		echo_head(buf, sizeof(buf), "a");
		n = 2;
		expect = 400;
		break;
	case H_NO_XFD:
		echo_head(buf, sizeof(buf), NULL);
		expect = 400;
		break;
	case H_XFD_NO_FDS:
		echo_head(buf, sizeof(buf), "a");
		n = 0;
		expect = 400;
		break;
	case H_BAD_NAME:
		echo_head(buf, sizeof(buf), "a/b");
		expect = 400;
		break;
	case H_REPEATED:
		echo_head(buf, sizeof(buf), "a,a");
		n = 2;
		expect = 400;
		break;
	case H_TOO_MANY_SAME:
		echo_head(buf, sizeof(buf), "a,b,c,d,e");
		n = MAX_FDS + 1;
		expect = 400;
		break;
	case H_TOO_MANY_FEWER:
		echo_head(buf, sizeof(buf), "a,b,c,d");
		n = MAX_FDS + 1;
		expect = 400;
		break;
	case H_TWO_REQUESTS:
		req = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nX-FD: a\r\n\r\n"
		    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
		expect = 400;
		break;
	case H_HEAD_431:
		i = (size_t)snprintf(buf, sizeof(buf), "POST /echo HTTP/1.1\r\nX-FD: a\r\nX-Pad: ");
		memset(buf + i, 'p', 2100);
		strcpy(buf + i + 2100, "\r\n\r\n");
		expect = 431;
		break;
	case H_BODY_413:
		req = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 300000\r\nX-FD: a\r\n\r\n";
		expect = 413;
		break;
	case H_DUP_CL:
		req = "POST /echo HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\nX-FD: a\r\n\r\n";
		expect = 400;
		break;
	case H_BARE_LF:
		req = "POST /echo HTTP/1.1\nX-FD: a\n\n";
		expect = 400;
		break;
	case H_NOT_FOUND:
		req = "POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nX-FD: a\r\n\r\n";
		expect = 404;
		break;
	case H_EXPECT_417:
		req = "POST /echo HTTP/1.1\r\nExpect: nothing\r\nContent-Length: 0\r\nX-FD: a\r\n\r\n";
		expect = 417;
		break;
	case H_VANISH_MID_HEAD:
		req = "POST /echo HTTP/1.1\r\nHost: x\r\nX-FD: a,b\r\nContent-Le";
		n = 2;
		read = false;
		break;
	case H_VANISH_MID_BODY:
		req = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nX-FD: a\r\n\r\nsome";
		read = false;
		break;
	case H_VANISH_UNREAD:
		req = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-FD: a,b\r\n\r\nhi";
		n = 2;
		read = false;
		break;
	case H_VANISH_LATE_FDS:
		fdh_expect_send(sock, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nX-FD: a\r\n\r\n");
		req = "abc";
		read = false;
		break;
	case H_PING:
		req = "POST /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nX-FD: a\r\n\r\n";
		expect = 200;
		break;
	case H_FD_READ:
		extra = fdh_test_make_pipe_with("data");
		assert_true(extra >= 0);
		req = "POST /fd/read HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nX-FD: input\r\n\r\n";
		expect = 200;
		break;
	case H_MEMFD_UNREAD:
		req = "POST /fd/memfd HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
		n = 0;
		read = false;
		break;
	default:
		fail();
	}
	for (i = 0; i < n; i++)
		fds[i] = extra >= 0 ? extra : canary;
	/* The peer may already be gone (a refusal before we finished): not our failure. */
	(void)fdh_test_send_all(sock, req, strlen(req), fds, n);
	if (extra >= 0)
		close(extra);
	if (read && expect) {
		struct fdh_test_msg m;

		if (fdh_test_read_message(sock, FDH_EXPECT_IO_MS, &m) != 0 || m.status != expect) {
			print_error("hostile kind %d: expected %d\n", (int)kind, expect);
			fdh_expect_print_bytes("request", req, strlen(req));
			fdh_expect_print_bytes("received", m.data, m.len);
			fail();
		}
		fdh_test_msg_free(&m);
	}
	close(sock);
}

/*
 * An fd attached to a response is closed on failure too.  Each connection
 * first asks for a large echo and never reads it, so the service's socket
 * buffer is full (or nearly); then a request with a pipe's write end, which
 * the echo attaches to its response.  Whether that response went out in
 * part, in full or not at all, once the write timeout (0.5 s) has ended
 * the connection and we closed ours, no copy of the fd may remain.
 */
#define STALL_CONNS 6

static void
test_response_fds_closed_on_write_failure(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct probe pr[STALL_CONNS];
	int socks[STALL_CONNS], inq1[STALL_CONNS], inq2[STALL_CONNS];
	size_t i, body, full[STALL_CONNS];
	char head[128];
	char *big;

	big = malloc(262144);
	assert_non_null(big);
	memset(big, 'r', 262144);
	for (i = 0; i < STALL_CONNS; i++) {
		size_t hl;

		body = 150 * 1024 + i * 20 * 1024;
		socks[i] = fdh_expect_connect(p);
		hl = (size_t)snprintf(head, sizeof(head),
		    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", body);
		assert_int_equal(fdh_test_send_all(socks[i], head, hl, NULL, 0), 0);
		assert_int_equal(fdh_test_send_all(socks[i], big, body, NULL, 0), 0);
		/* The whole echo: its head, then the body. */
		full[i] = (size_t)snprintf(head, sizeof(head),
		    "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", body) + body;
	}
	free(big);
	fdh_test_sleep_ms(100);
	for (i = 0; i < STALL_CONNS; i++) {
		assert_int_equal(ioctl(socks[i], FIONREAD, &inq1[i]), 0);
		probe_open(&pr[i]);
		fdh_expect_send_fds(socks[i], "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
		    "X-FD: w\r\n\r\nx", &pr[i].wr, 1);
		probe_release(&pr[i]);
	}
	fdh_test_sleep_ms(100);
	for (i = 0; i < STALL_CONNS; i++) {
		assert_int_equal(ioctl(socks[i], FIONREAD, &inq2[i]), 0);
		print_message("  conn %zu: %d of %zu bytes of the first response queued, %d with the "
		    "second%s\n", i, inq1[i], full[i], inq2[i],
		    (size_t)inq1[i] == full[i] && inq2[i] == inq1[i] ?
		    ": its fd never left the service" : "");
	}
	fdh_test_sleep_ms(700);
	for (i = 0; i < STALL_CONNS; i++) {
		close(socks[i]);
		if (!probe_eof(&pr[i], CLOSE_MS))
			fail_msg("conn %zu: the fd of a response that could not be sent is still open",
			    i);
		probe_close(&pr[i]);
	}
}

#define HOSTILE_ROUNDS	24	/* 22 kinds x 24 = 528 requests */
#define STALLED		8

static void
test_no_fd_leaks(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct probe canary;
	int before, after, stalled[STALLED], mine;
	size_t i, k;

	/* Warm up: every route and error path once, so lazy allocations are done. */
	probe_open(&canary);
	for (k = 0; k < H_KINDS; k++)
		hostile(p, (enum hostile)k, canary.wr, true);
	before = stable_count(p->pid);
	mine = fdh_test_count_fds(0);
	print_message("  service holds %d fds before the burst\n", before);
	assert_true(before > 0);

	/* Slow clients with fds that the request timeout (0.5 s) must end. */
	for (i = 0; i < STALLED; i++) {
		int fds[2] = { canary.wr, canary.wr };

		stalled[i] = fdh_expect_connect(p);
		fdh_expect_send_fds(stalled[i], "POST /echo HTTP/1.1\r\nHost: x\r\nX-FD: a,b\r\nContent-Len",
		    fds, 2);
	}
	for (i = 0; i < HOSTILE_ROUNDS; i++) {
		for (k = 0; k < H_KINDS; k++)
			hostile(p, (enum hostile)k, canary.wr, i % 2 == 0);
	}
	for (i = 0; i < STALLED; i++)
		close(stalled[i]);

	after = fdh_test_wait_fd_count(p->pid, before, 2000);
	print_message("  service holds %d fds after %d hostile requests\n", after,
	    HOSTILE_ROUNDS * H_KINDS + STALLED);
	assert_int_equal(after, before);
	/* Ours too: the test itself leaked nothing that could hide a leak. */
	assert_int_equal(fdh_test_count_fds(0), mine);

	/* Not one copy of the canary's write end survives anywhere. */
	probe_release(&canary);
	if (!probe_eof(&canary, CLOSE_MS))
		fail_msg("a copy of an fd sent with a hostile request is still open");
	probe_close(&canary);
	mine = fdh_expect_connect(p);
	fdh_expect_health(mine);
	close(mine);
}

int
main(void)
{
	const struct CMUnitTest fds[] = {
		cmocka_unit_test(test_echo_same_names_order_files),
		cmocka_unit_test(test_echo_client_library),
		cmocka_unit_test(test_fds_with_later_body_sendmsg),
		cmocka_unit_test(test_fd_errors_400_close_and_closed),
		cmocka_unit_test(test_fds_with_two_requests_400),
		cmocka_unit_test(test_fds_of_other_refusals_closed),
		cmocka_unit_test(test_fds_closed_after_handler),
		cmocka_unit_test(test_response_fds_closed_once_sent),
		cmocka_unit_test(test_fd_numbers_in_body_mean_nothing),
		cmocka_unit_test(test_fd_memfd_sealed),
		cmocka_unit_test(test_fd_read),
	};
	const struct CMUnitTest nofile[] = {
		cmocka_unit_test(test_nofile_never_truncates),
	};
	const struct CMUnitTest nofile_mid[] = {
		cmocka_unit_test(test_nofile_resumes_after_mass_close),
	};
	const struct CMUnitTest leak[] = {
		cmocka_unit_test(test_response_fds_closed_on_write_failure),
		cmocka_unit_test(test_no_fd_leaks),
	};
	int failed = 0;

	failed += cmocka_run_group_tests_name("fds", fds, start_fds, fdh_test_group_stop);
	failed += cmocka_run_group_tests_name("fds/nofile", nofile, start_low_nofile, fdh_test_group_stop);
	failed += cmocka_run_group_tests_name("fds/nofile-mass-close", nofile_mid, start_mid_nofile,
	    fdh_test_group_stop);
	failed += cmocka_run_group_tests_name("fds/leak", leak, start_leak, fdh_test_group_stop);
	return failed ? 1 : 0;
}
