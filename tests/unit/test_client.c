/*
 * The client against a scripted fake server on the other end of a real
 * socket: the exact bytes and fds it sends, and what it makes of replies,
 * well-formed or not.  Every test checks that no fd was left behind.
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <fdhttp/client.h>
#include "harness.h"

/* --- the fake server ------------------------------------------------------- */

enum step_kind {
	STEP_END,
	STEP_READ_MSG,		/* one request, head and Content-Length body */
	STEP_READ_HEAD,		/* one request head */
	STEP_READ_BYTES,	/* exactly len raw bytes */
	STEP_SILENCE,		/* nothing arrives for ms */
	STEP_SEND,		/* data (len, or strlen) with fds on its first byte */
	STEP_SEND_UNHEARD,	/* the same, where the client may hang up before the end */
	STEP_SEND_SLOWLY,	/* data a byte at a time, ms apart */
	STEP_SLEEP,
	STEP_CLOSE,
	STEP_WAIT_EOF,		/* until the client hangs up */
	STEP_SHUT_RD,		/* no more input: the client's sends fail with EPIPE */
};

struct step {
	enum step_kind kind;
	const char *data;
	size_t len;
	const int *fds;
	size_t nfds;
	int ms;
};

/* Designated initializers keep -Wmissing-field-initializers quiet. */
#define S_READ_MSG		{ .kind = STEP_READ_MSG }
#define S_READ_HEAD		{ .kind = STEP_READ_HEAD }
#define S_READ_BYTES(n)		{ .kind = STEP_READ_BYTES, .len = (n) }
#define S_SILENCE(t)		{ .kind = STEP_SILENCE, .ms = (t) }
#define S_SEND(s)		{ .kind = STEP_SEND, .data = (s) }
#define S_SEND_UNHEARD(s, n)	{ .kind = STEP_SEND_UNHEARD, .data = (s), .len = (n) }
#define S_SEND_SLOWLY(s, t)	{ .kind = STEP_SEND_SLOWLY, .data = (s), .ms = (t) }
#define S_SLEEP(t)		{ .kind = STEP_SLEEP, .ms = (t) }
#define S_CLOSE			{ .kind = STEP_CLOSE }
#define S_WAIT_EOF		{ .kind = STEP_WAIT_EOF }
#define S_SHUT_RD		{ .kind = STEP_SHUT_RD }
#define S_END			{ .kind = STEP_END }

#define FAKE_MAX_MSGS 8

struct fake {
	int sock;
	const struct step *steps;
	struct fdh_test_msg got[FAKE_MAX_MSGS];	/* what READ_* steps received */
	size_t ngot;
	int failed_step;	/* -1, or the index of the step that went wrong */
	int err;
	pthread_t th;
};

static void *
fake_run(void *arg)
{
	struct fake *f = arg;
	const struct step *s;
	int i, r = 0;

	for (i = 0, s = f->steps; s->kind != STEP_END; i++, s++) {
		struct fdh_test_msg *m = &f->got[f->ngot];
		size_t len = s->len ? s->len : (s->data ? strlen(s->data) : 0);

		switch (s->kind) {
		case STEP_READ_MSG:
			r = fdh_test_read_message(f->sock, 10000, m);
			f->ngot++;
			break;
		case STEP_READ_HEAD:
			r = fdh_test_read_head(f->sock, 10000, m);
			f->ngot++;
			break;
		case STEP_READ_BYTES: {
			size_t have = 0;

			memset(m, 0, sizeof(*m));
			m->data = malloc(s->len + 1);
			if (!m->data) {
				r = -ENOMEM;
				break;
			}
			f->ngot++;
			while (have < s->len) {
				ssize_t n = recv(f->sock, m->data + have, s->len - have, 0);

				if (n <= 0) {
					r = n == 0 ? -ECONNRESET : -errno;
					break;
				}
				have += (size_t)n;
			}
			m->len = have;
			m->data[have] = '\0';
			break;
		}
		case STEP_SILENCE: {
			struct pollfd pfd = { .fd = f->sock, .events = POLLIN };
			char ch;

			/* A hang-up is not a byte: the client may be done already. */
			r = poll(&pfd, 1, s->ms) == 0 ||
			    recv(f->sock, &ch, 1, MSG_PEEK | MSG_DONTWAIT) == 0 ? 0 : -EBADMSG;
			break;
		}
		case STEP_SEND:
			r = fdh_test_send_all(f->sock, s->data, len, s->fds, s->nfds);
			break;
		case STEP_SEND_UNHEARD:
			r = fdh_test_send_all(f->sock, s->data, len, s->fds, s->nfds);
			if (r == -EPIPE || r == -ECONNRESET)
				r = 0;
			break;
		case STEP_SEND_SLOWLY: {
			size_t k;

			for (k = 0; k < len && r == 0; k++) {
				r = fdh_test_send_all(f->sock, s->data + k, 1, NULL, 0);
				usleep((useconds_t)s->ms * 1000);
			}
			if (r == -EPIPE)
				r = 0;	/* the client gave up waiting, as it should */
			break;
		}
		case STEP_SLEEP:
			usleep((useconds_t)s->ms * 1000);
			break;
		case STEP_CLOSE:
			close(f->sock);
			f->sock = -1;
			break;
		case STEP_SHUT_RD:
			r = shutdown(f->sock, SHUT_RD) == -1 ? -errno : 0;
			break;
		case STEP_WAIT_EOF: {
			struct fdh_test_msg rest;

			r = fdh_test_read_all(f->sock, 10000, &rest);
			if (r == 0 && !rest.eof)
				r = -ETIMEDOUT;
			fdh_test_msg_free(&rest);
			break;
		}
		case STEP_END:
			break;
		}
		if (r < 0) {
			f->failed_step = i;
			f->err = r;
			break;
		}
	}
	return NULL;
}

/* Starts f running steps on one end of a socketpair; the client gets the other. */
static void
fake_start(struct fake *f, const struct step *steps, int timeout_ms, struct fdh_client **ret_c)
{
	int sv[2];

	memset(f, 0, sizeof(*f));
	f->failed_step = -1;
	f->steps = steps;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	f->sock = sv[1];
	assert_int_equal(fdh_client_from_fd(sv[0], timeout_ms, ret_c), 0);
	assert_int_equal(pthread_create(&f->th, NULL, fake_run, f), 0);
}

/* Frees c first, or a fake waiting for EOF would wait on; then joins f and checks it ran clean. */
static void
fake_finish(struct fake *f, struct fdh_client *c)
{
	fdh_client_free(c);
	assert_int_equal(pthread_join(f->th, NULL), 0);
	if (f->sock >= 0)
		close(f->sock);
	f->sock = -1;
	if (f->failed_step != -1)
		fprintf(stderr, "fake server: step %d failed: %s\n", f->failed_step,
		    strerror(-f->err));
	assert_int_equal(f->failed_step, -1);
}

static void
fake_free(struct fake *f)
{
	size_t i;

	for (i = 0; i < f->ngot; i++)
		fdh_test_msg_free(&f->got[i]);
	f->ngot = 0;
}

/* Runs one request against steps and returns what fdh_client_request() did. */
static int
one_exchange(const struct step *steps, const struct fdh_client_req *req,
    struct fdh_client_resp *resp, struct fake *f)
{
	struct fdh_client *c;
	int r;

	fake_start(f, steps, 5000, &c);
	r = fdh_client_request(c, req, resp);
	fake_finish(f, c);
	return r;
}

#define OK_RESP "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

/* --- requests -------------------------------------------------------------- */

static void
test_get_bytes(void **state)
{
	static const struct step steps[] = {
		S_READ_MSG, S_SEND(OK_RESP), S_WAIT_EOF, S_END,
	};
	struct fdh_client_req req = { .target = "/health" };
	struct fdh_client_resp resp;
	struct fake f;
	int before = fdh_test_count_fds(0);

	(void)state;
	assert_int_equal(one_exchange(steps, &req, &resp, &f), 0);
	assert_string_equal(f.got[0].data, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
	assert_int_equal(f.got[0].nfds, 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.http_minor, 1);
	assert_int_equal(resp.body_len, 2);
	assert_string_equal(resp.body, "ok");
	assert_int_equal(resp.nfds, 0);
	assert_false(resp.closed);
	assert_string_equal(fdh_client_resp_header(&resp, "content-length"), "2");
	assert_null(fdh_client_resp_header(&resp, "X-FD"));
	fdh_client_resp_release(&resp);
	fake_free(&f);
	assert_int_equal(fdh_test_count_fds(0), before);
}

static void
test_post_with_fds_bytes(void **state)
{
	static const struct step steps[] = {
		S_READ_MSG, S_SEND(OK_RESP), S_WAIT_EOF, S_END,
	};
	const struct fdh_header hdrs[] = { { "X-A", "1" }, { "Accept", "text/plain" } };
	struct fdh_named_fd fds[2];
	struct fdh_client_req req = {
		.method = "POST", .target = "/echo?x=1", .headers = hdrs, .nheaders = 2,
		.body = "hello", .body_len = 5, .fds = fds, .nfds = 2,
	};
	struct fdh_client_resp resp;
	struct fake f;
	int before = fdh_test_count_fds(0), mem, pipe_r;

	(void)state;
	mem = fdh_test_make_memfd("memory");
	pipe_r = fdh_test_make_pipe_with("piped");
	assert_true(mem >= 0 && pipe_r >= 0);
	fds[0] = (struct fdh_named_fd){ "a", mem };
	fds[1] = (struct fdh_named_fd){ "b.2", pipe_r };

	assert_int_equal(one_exchange(steps, &req, &resp, &f), 0);
	assert_string_equal(f.got[0].data,
	    "POST /echo?x=1 HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\nAccept: text/plain\r\n"
	    "Content-Length: 5\r\nX-FD: a,b.2\r\n\r\nhello");
	/* Both fds, in order, with the very first byte of the head. */
	assert_int_equal(f.got[0].nfds, 2);
	assert_int_equal(f.got[0].fds_at, 0);
	assert_true(fdh_test_same_file(f.got[0].fds[0], mem));
	assert_true(fdh_test_same_file(f.got[0].fds[1], pipe_r));
	assert_int_equal(fcntl(f.got[0].fds[0], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	/* Borrowed: the caller's fds stay open. */
	assert_true(fdh_test_fd_is_open(mem));
	assert_true(fdh_test_fd_is_open(pipe_r));
	fdh_client_resp_release(&resp);
	fake_free(&f);
	close(mem);
	close(pipe_r);
	assert_int_equal(fdh_test_count_fds(0), before);
}

/* Content-Length is always sent but for GET and HEAD without a body; keep-alive reuse. */
static void
test_content_length_rules(void **state)
{
	static const struct step steps[] = {
		S_READ_MSG, S_SEND(OK_RESP),
		S_READ_MSG, S_SEND("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"),
		S_READ_MSG, S_SEND(OK_RESP),
		S_READ_MSG, S_SEND(OK_RESP),
		S_WAIT_EOF, S_END,
	};
	const struct fdh_header host = { "Host", "svc" };
	struct fdh_client_req post = { .method = "POST", .target = "/ping" };
	struct fdh_client_req head = { .method = "HEAD", .target = "/health" };
	struct fdh_client_req del = { .method = "DELETE", .target = "/x" };
	struct fdh_client_req get = { .target = "/q", .body = "xy", .body_len = 2,
	    .headers = &host, .nheaders = 1 };
	struct fdh_client_resp resp;
	struct fdh_client *c;
	struct fake f;
	int before = fdh_test_count_fds(0);

	(void)state;
	fake_start(&f, steps, 5000, &c);
	assert_int_equal(fdh_client_request(c, &post, &resp), 0);
	fdh_client_resp_release(&resp);
	assert_int_equal(fdh_client_request(c, &head, &resp), 0);
	fdh_client_resp_release(&resp);
	assert_int_equal(fdh_client_request(c, &del, &resp), 0);
	fdh_client_resp_release(&resp);
	assert_int_equal(fdh_client_request(c, &get, &resp), 0);
	fdh_client_resp_release(&resp);
	fake_finish(&f, c);
	assert_string_equal(f.got[0].data,
	    "POST /ping HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
	assert_string_equal(f.got[1].data, "HEAD /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
	assert_string_equal(f.got[2].data,
	    "DELETE /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
	/* The caller's Host replaces ours rather than doubling it. */
	assert_string_equal(f.got[3].data,
	    "GET /q HTTP/1.1\r\nHost: svc\r\nContent-Length: 2\r\n\r\nxy");
	fake_free(&f);
	assert_int_equal(fdh_test_count_fds(0), before);
}

/* Bad input is refused before a byte is sent, and the connection stays usable. */
static void
test_invalid_requests(void **state)
{
	/* Had anything gone out before the good request, it would read first. */
	static const struct step steps[] = {
		S_READ_MSG, S_SEND(OK_RESP), S_WAIT_EOF, S_END,
	};
	const struct fdh_header crlf = { "X-A", "1\r\nX-Evil: 1" };
	const struct fdh_header lf = { "X-A", "1\nX" };
	const struct fdh_header badname = { "X A", "1" };
	const struct fdh_header emptyname = { "", "1" };
	const struct fdh_header cl = { "content-length", "3" };
	const struct fdh_header te = { "Transfer-Encoding", "chunked" };
	const struct fdh_header xfd = { "X-FD", "a" };
	struct fdh_named_fd dup[2] = { { "a", 0 }, { "a", 1 } };
	struct fdh_named_fd badfd[1] = { { "a,b", 0 } };
	struct fdh_named_fd emptyfd[1] = { { "", 0 } };
	struct fdh_named_fd negfd[1] = { { "a", -1 } };
	struct fdh_named_fd many[254];
	struct fdh_client_req reqs[] = {
		{ .target = "/", .headers = &crlf, .nheaders = 1 },
		{ .target = "/", .headers = &lf, .nheaders = 1 },
		{ .target = "/", .headers = &badname, .nheaders = 1 },
		{ .target = "/", .headers = &emptyname, .nheaders = 1 },
		{ .target = "/", .headers = &cl, .nheaders = 1 },
		{ .target = "/", .headers = &te, .nheaders = 1 },
		{ .target = "/", .headers = &xfd, .nheaders = 1 },
		{ .target = "/", .fds = dup, .nfds = 2 },
		{ .target = "/", .fds = badfd, .nfds = 1 },
		{ .target = "/", .fds = emptyfd, .nfds = 1 },
		{ .method = "GE T", .target = "/" },
		{ .method = "", .target = "/" },
		{ .target = "/a b" },
		{ .target = "/a\r\n" },
		{ .target = "" },
		{ .target = "no-slash" },
		{ .target = "http://x/" },
		{ .target = NULL },
		{ .target = "/", .body = NULL, .body_len = 3 },
	};
	struct fdh_client_req neg = { .target = "/", .fds = negfd, .nfds = 1 };
	struct fdh_client_req toomany = { .target = "/", .fds = many, .nfds = 254 };
	struct fdh_client_req good = { .target = "/" };
	struct fdh_client_resp resp;
	struct fdh_client *c;
	struct fake f;
	char names[254][8];
	size_t i;
	int before = fdh_test_count_fds(0);

	(void)state;
	for (i = 0; i < 254; i++) {
		snprintf(names[i], sizeof(names[i]), "f%zu", i);
		many[i] = (struct fdh_named_fd){ names[i], 0 };
	}
	fake_start(&f, steps, 5000, &c);
	for (i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		int r = fdh_client_request(c, &reqs[i], &resp);

		if (r != -EINVAL)
			fprintf(stderr, "request %zu: %d\n", i, r);
		assert_int_equal(r, -EINVAL);
	}
	assert_int_equal(fdh_client_request(c, &neg, &resp), -EBADF);
	assert_int_equal(fdh_client_request(c, &toomany, &resp), -E2BIG);
	assert_int_equal(fdh_client_request(c, &good, &resp), 0);
	assert_int_equal(resp.status, 200);
	fdh_client_resp_release(&resp);
	fake_finish(&f, c);
	assert_string_equal(f.got[0].data, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
	fake_free(&f);
	assert_int_equal(fdh_test_count_fds(0), before);
}

/*
 * An fd that is not open is found by the kernel, not by build_head(): the
 * sendmsg() fails before a byte is queued, so the stream is as it was and
 * the client stays usable, as for any request refused before sending.
 */
static void
test_fd_refused_by_the_kernel(void **state)
{
	static const struct step steps[] = {
		S_READ_MSG, S_SEND(OK_RESP), S_WAIT_EOF, S_END,
	};
	struct fdh_named_fd closed[1];
	struct fdh_client_req bad = { .method = "POST", .target = "/echo", .body = "hi",
	    .body_len = 2, .fds = closed, .nfds = 1 };
	struct fdh_client_req good = { .target = "/health" };
	struct fdh_client_resp resp;
	struct fdh_client *c;
	struct fake f;
	int before = fdh_test_count_fds(0), fd;

	(void)state;
	fake_start(&f, steps, 5000, &c);
	/* After the fake's sockets, which would take the number over. */
	fd = fdh_test_make_memfd("x");
	assert_true(fd >= 0);
	close(fd);			/* a number that names nothing now */
	closed[0] = (struct fdh_named_fd){ "in", fd };
	assert_int_equal(fdh_client_request(c, &bad, &resp), -EBADF);
	assert_int_equal(fdh_client_request(c, &good, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_false(resp.closed);
	fdh_client_resp_release(&resp);
	fake_finish(&f, c);
	/* The refused request left no byte behind to be read as a request. */
	assert_string_equal(f.got[0].data, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
	assert_int_equal(f.got[0].nfds, 0);
	fake_free(&f);
	assert_int_equal(fdh_test_count_fds(0), before);
}

/* --- responses ------------------------------------------------------------- */

static void
test_response_fds_by_name(void **state)
{
	struct step steps[] = {
		S_READ_MSG,
		S_SEND("HTTP/1.1 200 OK\r\nX-FD: out , mem\r\nContent-Length: 3\r\n"
		    "X-Other:  v w  \r\nX-Empty:\r\n\r\nabc"),
		S_WAIT_EOF, S_END,
	};
	struct fdh_client_req req = { .method = "POST", .target = "/fds" };
	struct fdh_client_resp resp;
	struct fake f;
	char buf[64];
	int before = fdh_test_count_fds(0), p[2], mem, sfds[2], fd;

	(void)state;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	mem = fdh_test_make_memfd("in memory");
	assert_true(mem >= 0);
	sfds[0] = p[1];
	sfds[1] = mem;
	steps[1].fds = sfds;
	steps[1].nfds = 2;

	assert_int_equal(one_exchange(steps, &req, &resp, &f), 0);
	close(p[1]);
	close(mem);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "abc");
	assert_string_equal(fdh_client_resp_header(&resp, "x-other"), "v w");
	assert_string_equal(fdh_client_resp_header(&resp, "X-EMPTY"), "");
	assert_int_equal(resp.nfds, 2);
	assert_string_equal(resp.fds[0].name, "out");
	assert_string_equal(resp.fds[1].name, "mem");
	assert_int_equal(fcntl(resp.fds[0].fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	assert_int_equal(write(resp.fds[0].fd, "through", 7), 7);
	assert_int_equal(read(p[0], buf, sizeof(buf)), 7);

	fd = fdh_client_resp_take_fd(&resp, "mem");
	assert_true(fd >= 0);
	assert_int_equal(resp.fds[1].fd, -1);
	assert_int_equal(fdh_client_resp_take_fd(&resp, "mem"), -ENOENT);
	assert_int_equal(fdh_client_resp_take_fd(&resp, "nope"), -ENOENT);
	assert_int_equal(fdh_test_read_fd(fd, buf, sizeof(buf)), 9);
	assert_string_equal(buf, "in memory");
	close(fd);

	/* Release closes the write end it still holds: the reader sees EOF. */
	fdh_client_resp_release(&resp);
	assert_int_equal(read(p[0], buf, sizeof(buf)), 0);
	close(p[0]);
	assert_null(resp.fds);
	fdh_client_resp_release(&resp);	/* twice is harmless */
	fake_free(&f);
	assert_int_equal(fdh_test_count_fds(0), before);
}

/* Interim responses are skipped, and nothing of theirs leaks into the final one. */
static void
test_interim_skipped(void **state)
{
	static const struct step steps[] = {
		S_READ_MSG,
		S_SEND("HTTP/1.1 100 Continue\r\n\r\n"),
		S_SLEEP(20),
		S_SEND("HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
		    "HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nz"),
		S_WAIT_EOF, S_END,
	};
	struct fdh_client_req req = { .method = "POST", .target = "/", .body = "b", .body_len = 1 };
	struct fdh_client_resp resp;
	struct fake f;

	(void)state;
	assert_int_equal(one_exchange(steps, &req, &resp, &f), 0);
	assert_int_equal(resp.status, 201);
	assert_string_equal(resp.body, "z");
	assert_null(fdh_client_resp_header(&resp, "Link"));
	assert_int_equal(resp.nheaders, 1);
	assert_false(resp.closed);
	fdh_client_resp_release(&resp);
	fake_free(&f);
}

/* Expect: 100-continue holds the body back until the server asks for it. */
static void
test_expect_continue(void **state)
{
	struct fdh_named_fd nfd[1];
	static const struct step steps[] = {
		S_READ_HEAD,
		S_SILENCE(200),
		S_SEND("HTTP/1.1 100 Continue\r\n\r\n"),
		S_READ_BYTES(10),
		S_SEND(OK_RESP),
		S_WAIT_EOF, S_END,
	};
	const struct fdh_header expect = { "Expect", "100-Continue" };
	struct fdh_client_req req = { .method = "PUT", .target = "/up", .headers = &expect,
	    .nheaders = 1, .body = "0123456789", .body_len = 10, .fds = nfd, .nfds = 1 };
	struct fdh_client_resp resp;
	struct fake f;
	int before = fdh_test_count_fds(0), mem;

	(void)state;
	mem = fdh_test_make_memfd("x");
	nfd[0] = (struct fdh_named_fd){ "in", mem };
	assert_int_equal(one_exchange(steps, &req, &resp, &f), 0);
	assert_string_equal(f.got[0].data, "PUT /up HTTP/1.1\r\nHost: localhost\r\n"
	    "Expect: 100-Continue\r\nContent-Length: 10\r\nX-FD: in\r\n\r\n");
	assert_int_equal(f.got[0].nfds, 1);
	assert_string_equal(f.got[1].data, "0123456789");
	assert_int_equal(resp.status, 200);
	assert_false(resp.closed);
	fdh_client_resp_release(&resp);
	fake_free(&f);
	close(mem);
	assert_int_equal(fdh_test_count_fds(0), before);
}

static const struct fdh_header expect_100 = { "Expect", "100-continue" };
/* Ten bytes of body held back for a 100 Continue. */
static const struct fdh_client_req expect_req = { .method = "PUT", .target = "/up",
    .headers = &expect_100, .nheaders = 1, .body = "0123456789", .body_len = 10 };

/*
 * A server that does not know 100-continue never asks for the body: after
 * a second the client sends it anyway (RFC 9110 10.1.1), and a 100 Continue
 * that comes after that is skipped as any interim response.  A timeout
 * shorter than that second still bounds the call, the body left unsent.
 */
static void
test_expect_unanswered(void **state)
{
	static const struct step late[] = {
		S_READ_HEAD,
		S_READ_BYTES(10),
		S_SEND("HTTP/1.1 100 Continue\r\n\r\n" OK_RESP),
		S_WAIT_EOF, S_END,
	};
	static const struct step silent[] = {
		S_READ_HEAD, S_SILENCE(1500), S_WAIT_EOF, S_END,
	};
	struct fdh_client_resp resp;
	struct fdh_client *c;
	struct fake f;
	int64_t t0;

	(void)state;
	t0 = fdh_test_now_ms();
	assert_int_equal(one_exchange(late, &expect_req, &resp, &f), 0);
	assert_in_range(fdh_test_now_ms() - t0, 900, 3000);
	assert_string_equal(f.got[1].data, "0123456789");
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "ok");
	assert_false(resp.closed);
	fdh_client_resp_release(&resp);
	fake_free(&f);

	fake_start(&f, silent, 300, &c);
	t0 = fdh_test_now_ms();
	assert_int_equal(fdh_client_request(c, &expect_req, &resp), -ETIMEDOUT);
	assert_in_range(fdh_test_now_ms() - t0, 250, 900);
	fake_finish(&f, c);
	fake_free(&f);
}

/* A final answer instead of 100 Continue: the body is never sent, the connection is done. */
static void
test_expect_refused(void **state)
{
	static const struct step steps[] = {
		S_READ_HEAD,
		S_SEND("HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\n\r\nbig\n"),
		S_SILENCE(200),
		S_WAIT_EOF, S_END,
	};
	struct fdh_client_resp resp;
	struct fdh_client *c;
	struct fake f;

	(void)state;
	fake_start(&f, steps, 5000, &c);
	assert_int_equal(fdh_client_request(c, &expect_req, &resp), 0);
	assert_int_equal(resp.status, 413);
	assert_string_equal(resp.body, "big\n");
	assert_true(resp.closed);
	fdh_client_resp_release(&resp);
	assert_int_equal(fdh_client_request(c, &expect_req, &resp), -ENOTCONN);
	fake_finish(&f, c);
	fake_free(&f);
}

static void
test_head_has_no_body(void **state)
{
	static const struct step steps[] = {
		S_READ_MSG,
		S_SEND("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),
		S_READ_MSG, S_SEND(OK_RESP),
		S_WAIT_EOF, S_END,
	};
	struct fdh_client_req head = { .method = "HEAD", .target = "/health" };
	struct fdh_client_req get = { .target = "/health" };
	struct fdh_client_resp resp;
	struct fdh_client *c;
	struct fake f;

	(void)state;
	fake_start(&f, steps, 5000, &c);
	assert_int_equal(fdh_client_request(c, &head, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.body_len, 0);
	assert_string_equal(resp.body, "");
	assert_string_equal(fdh_client_resp_header(&resp, "Content-Length"), "10");
	assert_false(resp.closed);
	fdh_client_resp_release(&resp);
	assert_int_equal(fdh_client_request(c, &get, &resp), 0);
	assert_string_equal(resp.body, "ok");
	fdh_client_resp_release(&resp);
	fake_finish(&f, c);
	fake_free(&f);
}

static void
test_connection_close(void **state)
{
	static const struct step close_hdr[] = {
		S_READ_MSG,
		S_SEND("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"),
		S_WAIT_EOF, S_END,
	};
	static const struct step http10[] = {
		S_READ_MSG,
		S_SEND("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"),
		S_WAIT_EOF, S_END,
	};
	static const struct step eof_body[] = {
		S_READ_MSG,
		S_SEND("HTTP/1.1 200 OK\r\n\r\nuntil "),
		S_SLEEP(20),
		S_SEND("the end"),
		S_CLOSE, S_END,
	};
	const struct step *scripts[] = { close_hdr, http10, eof_body };
	struct fdh_client_req req = { .target = "/" };
	struct fdh_client_resp resp;
	struct fdh_client *c;
	struct fake f;
	size_t i;

	(void)state;
	for (i = 0; i < 3; i++) {
		fake_start(&f, scripts[i], 5000, &c);
		assert_int_equal(fdh_client_request(c, &req, &resp), 0);
		assert_int_equal(resp.status, 200);
		assert_true(resp.closed);
		if (i == 1)
			assert_int_equal(resp.http_minor, 0);
		if (i == 2)
			assert_string_equal(resp.body, "until the end");
		fdh_client_resp_release(&resp);
		/* Nothing more may go over a connection the server is closing. */
		assert_int_equal(fdh_client_request(c, &req, &resp), -ENOTCONN);
		fake_finish(&f, c);
		fake_free(&f);
	}
}

/* X-FD and the fds that came must agree, or nothing is kept and nothing leaks. */
static void
test_fd_mismatch(void **state)
{
	struct step steps[] = {
		S_READ_MSG, { .kind = STEP_SEND }, S_WAIT_EOF, S_END,
	};
	static const struct {
		const char *reply;
		size_t nfds;
		unsigned max_fds;
	} cases[] = {
		{ "HTTP/1.1 200 OK\r\nX-FD: a,b\r\nContent-Length: 0\r\n\r\n", 1, 16 },
		{ "HTTP/1.1 200 OK\r\nX-FD: a\r\nContent-Length: 0\r\n\r\n", 2, 16 },
		{ "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 2, 16 },
		{ "HTTP/1.1 200 OK\r\nX-FD: a\r\nContent-Length: 0\r\n\r\n", 0, 16 },
		{ "HTTP/1.1 200 OK\r\nX-FD: a,a\r\nContent-Length: 0\r\n\r\n", 2, 16 },
		{ "HTTP/1.1 200 OK\r\nX-FD: a;b\r\nContent-Length: 0\r\n\r\n", 2, 16 },
		{ "HTTP/1.1 200 OK\r\nX-FD: a\r\nX-FD: b\r\nContent-Length: 0\r\n\r\n", 2, 16 },
		/* more fds than the client takes: the kernel truncates */
		{ "HTTP/1.1 200 OK\r\nX-FD: a,b,c\r\nContent-Length: 0\r\n\r\n", 3, 2 },
		{ "HTTP/1.1 200 OK\r\nX-FD: a\r\nContent-Length: 0\r\n\r\n", 1, 0 },
		/* the names match what got through, but some fds were dropped */
		{ "HTTP/1.1 200 OK\r\nX-FD: a,b\r\nContent-Length: 0\r\n\r\n", 3, 2 },
		/* the same where control-message padding has room for one fd more */
		{ "HTTP/1.1 200 OK\r\nX-FD: a\r\nContent-Length: 0\r\n\r\n", 2, 1 },
		{ "HTTP/1.1 200 OK\r\nX-FD: a,b,c\r\nContent-Length: 0\r\n\r\n", 4, 3 },
	};
	struct fdh_client_req req = { .target = "/" };
	struct fdh_client_resp resp;
	struct fdh_client *c;
	struct fake f;
	int before = fdh_test_count_fds(0), sfds[4];
	size_t i;

	(void)state;
	for (i = 0; i < 4; i++) {
		sfds[i] = fdh_test_make_memfd("x");
		assert_true(sfds[i] >= 0);
	}
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int mid;

		steps[1].data = cases[i].reply;
		steps[1].fds = sfds;
		steps[1].nfds = cases[i].nfds;
		fake_start(&f, steps, 5000, &c);
		fdh_client_set_limits(c, 1024, cases[i].max_fds);
		mid = fdh_test_count_fds(0);
		assert_int_equal(fdh_client_request(c, &req, &resp), -EPROTO);
		/* Every fd that arrived was closed. */
		assert_int_equal(fdh_test_count_fds(0), mid);
		assert_int_equal(fdh_client_request(c, &req, &resp), -ENOTCONN);
		fake_finish(&f, c);
		fake_free(&f);
	}
	for (i = 0; i < 4; i++)
		close(sfds[i]);
	assert_int_equal(fdh_test_count_fds(0), before);
}

static void
test_malformed(void **state)
{
	struct step steps[] = {
		S_READ_MSG, { .kind = STEP_SEND }, S_WAIT_EOF, S_END,
	};
	static const char *const replies[] = {
		"HTTX/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
		"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
		/* a byte past the response: no request asked for it */
		"HTTP/1.1 200 OK\r\nX-FD: f\r\nContent-Length: 2\r\n\r\nokX",
		/* two responses in one read: one string, not two elements */
		("HTTP/1.1 200 OK\r\nX-FD: f\r\nContent-Length: 2\r\n\r\nok"
		    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
		"HTTP/1.1 200 OK\r\nX-FD: f\r\nContent-Length: 0\r\n\r\n\r\n",
	};
	struct fdh_client_req req = { .target = "/" };
	struct fdh_client_resp resp;
	struct fake f;
	int before = fdh_test_count_fds(0), fd;
	size_t i;

	(void)state;
	fd = fdh_test_make_memfd("x");
	for (i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
		int r;

		steps[1].data = replies[i];
		/* An fd where it would be welcome, to see it closed on the way out. */
		steps[1].fds = &fd;
		steps[1].nfds = strstr(replies[i], "X-FD") ? 1 : 0;
		r = one_exchange(steps, &req, &resp, &f);
		if (r != -EPROTO)
			fprintf(stderr, "reply %zu: %d\n", i, r);
		assert_int_equal(r, -EPROTO);
		fake_free(&f);
	}
	close(fd);
	assert_int_equal(fdh_test_count_fds(0), before);
}

/*
 * Found by fuzz_client: llhttp reads a status code of one to three digits,
 * so "20" and "0" came back to the caller as final statuses.
 */
static void
test_status_below_100(void **state)
{
	struct step steps[] = {
		S_READ_MSG, { .kind = STEP_SEND }, S_WAIT_EOF, S_END,
	};
	static const char *const replies[] = {
		"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 0 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 099 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 2 OK\r\n\r\nuntil the end",
	};
	struct fdh_client_req req = { .target = "/" };
	struct fdh_client_resp resp;
	struct fake f;
	int before = fdh_test_count_fds(0);
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
		steps[1].data = replies[i];
		assert_int_equal(one_exchange(steps, &req, &resp, &f), -EPROTO);
		fake_free(&f);
	}
	assert_int_equal(fdh_test_count_fds(0), before);
}

static void
test_body_limit(void **state)
{
	struct step steps[] = {
		S_READ_MSG, { .kind = STEP_SEND }, S_WAIT_EOF, S_END,
	};
	static const char *const replies[] = {
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\n12345",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n",
	};
	struct fdh_client_req req = { .target = "/" };
	struct fdh_client_resp resp;
	struct fdh_client *c;
	struct fake f;
	size_t i;

	(void)state;
	for (i = 0; i < 3; i++) {
		steps[1].data = replies[i];
		steps[2].kind = i == 1 ? STEP_CLOSE : STEP_WAIT_EOF;
		fake_start(&f, steps, 5000, &c);
		fdh_client_set_limits(c, 4, 16);
		assert_int_equal(fdh_client_request(c, &req, &resp), -EMSGSIZE);
		fake_finish(&f, c);
		fake_free(&f);
	}
	/* At the limit exactly is fine. */
	steps[1].data = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n1234";
	steps[2].kind = STEP_WAIT_EOF;
	fake_start(&f, steps, 5000, &c);
	fdh_client_set_limits(c, 4, 16);
	assert_int_equal(fdh_client_request(c, &req, &resp), 0);
	assert_string_equal(resp.body, "1234");
	fdh_client_resp_release(&resp);
	fake_finish(&f, c);
	fake_free(&f);
}

/*
 * A head over the client's ceilings (1 MiB, 4096 fields) is not a body over
 * the caller's limit: it has an error of its own.
 */
static void
test_head_limits(void **state)
{
	struct step steps[] = {
		S_READ_MSG, S_SEND_UNHEARD(NULL, 0), S_WAIT_EOF, S_END,
	};
	static const char status[] = "HTTP/1.1 200 OK\r\n";
	static const char field[] = "X-A: a\r\n";
	static const char cl0[] = "Content-Length: 0\r\n\r\n";
	struct fdh_client_req req = { .target = "/" };
	struct fdh_client_resp resp;
	size_t len, i, n, flen = sizeof(field) - 1;
	int before = fdh_test_count_fds(0);
	struct fake f;
	char *reply;

	(void)state;
	/* One field value one byte over the ceiling... */
	len = sizeof(status) - 1 + 5 + FDH_MAX_HEAD_CEILING + 2 + 2;
	reply = malloc(len);
	assert_non_null(reply);
	n = (size_t)sprintf(reply, "%sX-A: ", status);
	memset(reply + n, 'a', FDH_MAX_HEAD_CEILING);
	memcpy(reply + n + FDH_MAX_HEAD_CEILING, "\r\n\r\n", 4);
	steps[1].data = reply;
	steps[1].len = len;
	assert_int_equal(one_exchange(steps, &req, &resp, &f), -EOVERFLOW);
	fake_free(&f);
	free(reply);

	/* ...and one field more than 4096, each of them small. */
	len = sizeof(status) - 1 + FDH_MAX_HEADERS_CEILING * flen + sizeof(cl0) - 1;
	reply = malloc(len);
	assert_non_null(reply);
	memcpy(reply, status, sizeof(status) - 1);
	for (i = 0, n = sizeof(status) - 1; i < FDH_MAX_HEADERS_CEILING; i++, n += flen)
		memcpy(reply + n, field, flen);
	memcpy(reply + n, cl0, sizeof(cl0) - 1);
	steps[1].data = reply;
	steps[1].len = len;
	assert_int_equal(one_exchange(steps, &req, &resp, &f), -EOVERFLOW);
	fake_free(&f);

	/* 4096 fields is within it. */
	memcpy(reply + n - flen, cl0, sizeof(cl0) - 1);
	steps[1].len = len - flen;
	assert_int_equal(one_exchange(steps, &req, &resp, &f), 0);
	assert_int_equal(resp.nheaders, FDH_MAX_HEADERS_CEILING);
	fdh_client_resp_release(&resp);
	fake_free(&f);
	free(reply);
	assert_int_equal(fdh_test_count_fds(0), before);
}

/* --- failures of the peer -------------------------------------------------- */

static void
test_timeout(void **state)
{
	static const struct step silent[] = {
		S_READ_MSG, S_WAIT_EOF, S_END,
	};
	/* Each byte is quick, the whole is not: the timeout bounds the call. */
	static const struct step trickle[] = {
		S_READ_MSG,
		S_SEND_SLOWLY("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 30),
		S_WAIT_EOF, S_END,
	};
	const struct step *scripts[] = { silent, trickle };
	struct fdh_client_req req = { .target = "/" };
	struct fdh_client_resp resp;
	struct fdh_client *c;
	struct fake f;
	int before = fdh_test_count_fds(0);
	size_t i;

	(void)state;
	for (i = 0; i < 2; i++) {
		int64_t t0, dt;

		fake_start(&f, scripts[i], 300, &c);
		t0 = fdh_test_now_ms();
		assert_int_equal(fdh_client_request(c, &req, &resp), -ETIMEDOUT);
		dt = fdh_test_now_ms() - t0;
		assert_in_range(dt, 250, 1500);
		assert_int_equal(fdh_client_request(c, &req, &resp), -ENOTCONN);
		fake_finish(&f, c);
		fake_free(&f);
	}
	assert_int_equal(fdh_test_count_fds(0), before);
}

/* A timeout set after connecting bounds the requests from then on, in place of none. */
static void
test_timeout_set_later(void **state)
{
	static const struct step silent[] = {
		S_READ_MSG, S_WAIT_EOF, S_END,
	};
	struct fdh_client_req req = { .target = "/" };
	struct fdh_client_resp resp;
	struct fdh_client *c;
	struct fake f;
	int64_t t0, dt;

	(void)state;
	fake_start(&f, silent, 0, &c);
	assert_int_equal(fdh_client_set_timeout(c, -1), -EINVAL);
	assert_int_equal(fdh_client_set_timeout(c, 300), 0);
	t0 = fdh_test_now_ms();
	assert_int_equal(fdh_client_request(c, &req, &resp), -ETIMEDOUT);
	dt = fdh_test_now_ms() - t0;
	assert_in_range(dt, 250, 1500);
	fake_finish(&f, c);
	fake_free(&f);
}

static void
test_server_vanishes(void **state)
{
	struct step steps[] = {
		S_READ_MSG, { .kind = STEP_SEND }, S_CLOSE, S_END,
	};
	static const char *const partial[] = {
		"",
		"HTTP/1.1 200 OK\r\nContent-Len",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nonly",
		"HTTP/1.1 100 Continue\r\n\r\n",
	};
	struct fdh_client_req req = { .method = "POST", .target = "/", .body = "x", .body_len = 1 };
	struct fdh_client_resp resp;
	struct fake f;
	int before = fdh_test_count_fds(0), fd;
	size_t i;

	(void)state;
	fd = fdh_test_make_memfd("x");
	for (i = 0; i < sizeof(partial) / sizeof(partial[0]); i++) {
		int r;

		steps[1].data = partial[i];
		steps[1].len = 0;
		steps[1].fds = i == 2 ? &fd : NULL;
		steps[1].nfds = i == 2 ? 1 : 0;
		steps[1].kind = i == 0 ? STEP_SLEEP : STEP_SEND;
		r = one_exchange(steps, &req, &resp, &f);
		if (r != -ECONNRESET)
			fprintf(stderr, "partial %zu: %d\n", i, r);
		assert_int_equal(r, -ECONNRESET);
		fake_free(&f);
	}
	close(fd);
	assert_int_equal(fdh_test_count_fds(0), before);
}

/*
 * Between two requests the server closes the connection, or sends what
 * nobody asked for (a second response, with an fd).  The next request is
 * refused with -ENOTCONN before a byte of it goes, so that it may be sent
 * again elsewhere, and is not answered by the late bytes.
 */
static void
test_stream_moved_between_requests(void **state)
{
	static const struct step late[] = {
		S_READ_MSG, S_SEND(OK_RESP), S_SLEEP(50), { .kind = STEP_SEND }, S_SILENCE(200),
		S_END,
	};
	static const struct step closed[] = {
		S_READ_MSG, S_SEND(OK_RESP), S_CLOSE, S_END,
	};
	struct step steps[6];
	struct fdh_client_req req = { .target = "/" };
	struct fdh_client_resp resp;
	struct fdh_client *c;
	struct pollfd pfd;
	struct fake f;
	int before = fdh_test_count_fds(0), fd, k;

	(void)state;
	fd = fdh_test_make_memfd("late");
	memcpy(steps, late, sizeof(late));
	steps[3].data = "HTTP/1.1 200 OK\r\nX-FD: late\r\nContent-Length: 4\r\n\r\nlate";
	steps[3].fds = &fd;
	steps[3].nfds = 1;
	for (k = 0; k < 2; k++) {
		fake_start(&f, k == 0 ? steps : closed, 5000, &c);
		assert_int_equal(fdh_client_request(c, &req, &resp), 0);
		assert_string_equal(resp.body, "ok");
		assert_false(resp.closed);
		fdh_client_resp_release(&resp);
		/* Once what the server did next has arrived: */
		pfd = (struct pollfd){ .fd = fdh_client_fd(c), .events = POLLIN };
		assert_int_equal(poll(&pfd, 1, 5000), 1);
		assert_int_equal(fdh_client_request(c, &req, &resp), -ENOTCONN);
		assert_int_equal(fdh_client_request(c, &req, &resp), -ENOTCONN);
		/*
		 * The fake ends first: our close, with bytes unread, would reset
		 * the connection under its silence step, which saw no byte.
		 */
		assert_int_equal(pthread_join(f.th, NULL), 0);
		assert_int_equal(f.failed_step, -1);
		assert_int_equal(f.ngot, 1);
		fdh_client_free(c);
		if (f.sock >= 0)
			close(f.sock);
		fake_free(&f);
	}
	close(fd);
	assert_int_equal(fdh_test_count_fds(0), before);
}

/*
 * A server that shuts its input after answering (a draining fdhttpd worker
 * does, before it looks for a queued request): the next request's first
 * send fails, not a byte of it gone, and is reported as -ENOTCONN, so that
 * it may be sent again on a new connection, not as the server going away
 * in the middle of it.
 */
static void
test_input_shut_after_an_answer_is_not_connected(void **state)
{
	static const struct step steps[] = {
		S_READ_MSG, S_SEND(OK_RESP), S_SHUT_RD, S_SLEEP(300), S_END,
	};
	struct fdh_client_req req = { .target = "/" };
	struct fdh_client_resp resp;
	struct fdh_client *c;
	struct fake f;
	int before = fdh_test_count_fds(0);

	(void)state;
	fake_start(&f, steps, 5000, &c);
	assert_int_equal(fdh_client_request(c, &req, &resp), 0);
	fdh_client_resp_release(&resp);
	usleep(100 * 1000);	/* the fake has shut its input by now */
	assert_int_equal(fdh_client_request(c, &req, &resp), -ENOTCONN);
	assert_int_equal(fdh_client_request(c, &req, &resp), -ENOTCONN);
	assert_int_equal(pthread_join(f.th, NULL), 0);
	assert_int_equal(f.failed_step, -1);
	assert_int_equal(f.ngot, 1);
	fdh_client_free(c);
	if (f.sock >= 0)
		close(f.sock);
	fake_free(&f);
	assert_int_equal(fdh_test_count_fds(0), before);
}

/*
 * A fresh connection that the server closes before it reads a byte (a
 * worker killed at the end of a drain's grace): the send fails, not a
 * byte gone, and nothing is answered: -ENOTCONN, the request may go again.
 * One that answers first (fdhttpd's 403 from a full set of lingerers)
 * gets its answer read, not -ENOTCONN.
 */
static void
test_closed_before_a_byte_is_not_connected(void **state)
{
	static const struct step closed[] = { S_CLOSE, S_END };
	static const struct step refused[] = {
		S_SEND("HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 3\r\n\r\nno\n"),
		S_CLOSE, S_END,
	};
	struct fdh_client_req req = { .target = "/" };
	struct fdh_client_resp resp;
	struct fdh_client *c;
	struct fake f;
	int before = fdh_test_count_fds(0), k;

	(void)state;
	for (k = 0; k < 2; k++) {
		fake_start(&f, k == 0 ? closed : refused, 5000, &c);
		assert_int_equal(pthread_join(f.th, NULL), 0);	/* closed by now */
		if (k == 0) {
			assert_int_equal(fdh_client_request(c, &req, &resp), -ENOTCONN);
		} else {
			assert_int_equal(fdh_client_request(c, &req, &resp), 0);
			assert_int_equal(resp.status, 403);
			fdh_client_resp_release(&resp);
		}
		assert_int_equal(f.failed_step, -1);
		fdh_client_free(c);
		fake_free(&f);
	}
	assert_int_equal(fdh_test_count_fds(0), before);
}

/*
 * A response whose fds this process has no descriptors left for: the
 * kernel drops the rest (MSG_CTRUNC).  That is -EMFILE, the client's own
 * limit, not -EPROTO, which blames the server.
 */
static void
test_response_fds_past_our_nofile_are_emfile(void **state)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nX-FD: a,b,c,d\r\nContent-Length: 0\r\n\r\n";
	struct step steps[] = { S_READ_MSG, { .kind = STEP_SEND }, S_END };
	struct fdh_client_req req = { .target = "/" };
	struct fdh_client_resp resp;
	struct fdh_client *c;
	struct rlimit saved, low;
	struct fake f;
	int before = fdh_test_count_fds(0), fds[4], fill[64], nfill = 0, i;

	(void)state;
	for (i = 0; i < 4; i++)
		fds[i] = fdh_test_make_memfd("x");
	steps[1].data = head;
	steps[1].fds = fds;
	steps[1].nfds = 4;
	fake_start(&f, steps, 5000, &c);
	/* Every descriptor below the limit taken, but two. */
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	low = saved;
	low.rlim_cur = (rlim_t)fcntl(0, F_DUPFD_CLOEXEC, 0);
	close((int)low.rlim_cur);
	low.rlim_cur += 48;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	while (nfill < 64 && (fill[nfill] = fcntl(0, F_DUPFD_CLOEXEC, 0)) >= 0)
		nfill++;
	assert_true(nfill >= 2 && nfill < 64);
	close(fill[--nfill]);
	close(fill[--nfill]);
	assert_int_equal(fdh_client_request(c, &req, &resp), -EMFILE);
	for (i = 0; i < nfill; i++)
		close(fill[i]);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
	assert_int_equal(pthread_join(f.th, NULL), 0);
	assert_int_equal(f.failed_step, -1);
	fdh_client_free(c);
	if (f.sock >= 0)
		close(f.sock);
	fake_free(&f);
	for (i = 0; i < 4; i++)
		close(fds[i]);
	assert_int_equal(fdh_test_count_fds(0), before);
}

/* --- big bodies: partial writes, EAGAIN, many reads ------------------------ */

#define BIG_REQ (4u * 1024 * 1024)
#define BIG_RESP (3u * 1024 * 1024)

static void
fill_pattern(char *p, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (char)('a' + (i * 7 + seed) % 26);
}

static void
test_big_bodies(void **state)
{
	struct step steps[] = {
		S_READ_MSG, { .kind = STEP_SEND }, S_WAIT_EOF, S_END,
	};
	struct fdh_named_fd nfd[1];
	struct fdh_client_req req = { .method = "POST", .target = "/big", .fds = nfd, .nfds = 1 };
	struct fdh_client_resp resp;
	struct fake f;
	char *body, *reply, head[128];
	int before = fdh_test_count_fds(0), mem, rfd, hlen;

	(void)state;
	body = malloc(BIG_REQ);
	reply = malloc(BIG_RESP + sizeof(head));
	assert_non_null(body);
	assert_non_null(reply);
	fill_pattern(body, BIG_REQ, 3);
	hlen = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nX-FD: r\r\nContent-Length: %u\r\n\r\n",
	    BIG_RESP);
	memcpy(reply, head, (size_t)hlen);
	fill_pattern(reply + hlen, BIG_RESP, 5);
	mem = fdh_test_make_memfd("big");
	rfd = fdh_test_make_memfd("reply");
	nfd[0] = (struct fdh_named_fd){ "m", mem };
	req.body = body;
	req.body_len = BIG_REQ;
	steps[1].data = reply;
	steps[1].len = (size_t)hlen + BIG_RESP;
	steps[1].fds = &rfd;
	steps[1].nfds = 1;

	assert_int_equal(one_exchange(steps, &req, &resp, &f), 0);
	/* One copy of the fd, with the head, and every body byte in order. */
	assert_int_equal(f.got[0].nfds, 1);
	assert_int_equal(f.got[0].fds_at, 0);
	assert_int_equal(f.got[0].body_len, BIG_REQ);
	assert_memory_equal(fdh_test_msg_body(&f.got[0]), body, BIG_REQ);
	assert_int_equal(resp.body_len, BIG_RESP);
	assert_memory_equal(resp.body, reply + hlen, BIG_RESP);
	assert_int_equal(resp.body[BIG_RESP], '\0');
	assert_int_equal(resp.nfds, 1);
	assert_true(fdh_test_same_file(resp.fds[0].fd, rfd));
	fdh_client_resp_release(&resp);
	fake_free(&f);
	close(mem);
	close(rfd);
	free(body);
	free(reply);
	assert_int_equal(fdh_test_count_fds(0), before);
}

/* A server that answers before the body is in (413) is heard, not met with EPIPE. */
static void
test_early_answer(void **state)
{
	static const struct step steps[] = {
		S_READ_HEAD,
		S_SEND("HTTP/1.1 413 Content Too Large\r\nConnection: close\r\n"
		    "Content-Length: 9\r\n\r\ntoo large"),
		S_CLOSE, S_END,
	};
	struct fdh_client_req req = { .method = "POST", .target = "/" };
	struct fdh_client_resp resp;
	struct fake f;
	char *body;

	(void)state;
	body = calloc(1, BIG_REQ);
	assert_non_null(body);
	req.body = body;
	req.body_len = BIG_REQ;
	assert_int_equal(one_exchange(steps, &req, &resp, &f), 0);
	assert_int_equal(resp.status, 413);
	assert_string_equal(resp.body, "too large");
	assert_true(resp.closed);
	fdh_client_resp_release(&resp);
	fake_free(&f);
	free(body);
}

/* The same, from a server that keeps the connection open and stops reading. */
static void
test_early_answer_open(void **state)
{
	static const struct step steps[] = {
		S_READ_HEAD,
		S_SEND("HTTP/1.1 413 Content Too Large\r\nConnection: close\r\n"
		    "Content-Length: 9\r\n\r\ntoo large"),
		S_SLEEP(3000), S_CLOSE, S_END,
	};
	struct fdh_client_req req = { .method = "POST", .target = "/" };
	struct fdh_client_resp resp;
	struct fdh_client *c;
	struct fake f;
	char *body;

	(void)state;
	body = calloc(1, BIG_REQ);
	assert_non_null(body);
	req.body = body;
	req.body_len = BIG_REQ;
	fake_start(&f, steps, 2000, &c);
	assert_int_equal(fdh_client_request(c, &req, &resp), 0);
	assert_int_equal(resp.status, 413);
	assert_true(resp.closed);
	fdh_client_resp_release(&resp);
	fake_finish(&f, c);
	fake_free(&f);
	free(body);
}

/* --- connecting ------------------------------------------------------------ */

struct acceptor {
	int lfd;
	struct fake f;
	const struct step *steps;
	pthread_t th;
};

static void *
accept_run(void *arg)
{
	struct acceptor *a = arg;

	a->f.sock = accept4(a->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (a->f.sock < 0) {
		a->f.failed_step = 99;
		a->f.err = -errno;
		return NULL;
	}
	a->f.steps = a->steps;
	return fake_run(&a->f);
}

static void
connect_and_get(const char *path)
{
	static const struct step steps[] = {
		S_READ_MSG, S_SEND(OK_RESP), S_WAIT_EOF, S_END,
	};
	struct fdh_client_req req = { .target = "/health" };
	struct fdh_client_resp resp;
	struct fdh_client *c;
	struct acceptor a;
	int fl;

	memset(&a, 0, sizeof(a));
	a.f.failed_step = -1;
	a.steps = steps;
	a.lfd = fdh_test_listen(path, 4);
	assert_true(a.lfd >= 0);
	assert_int_equal(pthread_create(&a.th, NULL, accept_run, &a), 0);
	assert_int_equal(fdh_client_connect(path, 2000, &c), 0);
	fl = fcntl(fdh_client_fd(c), F_GETFD);
	assert_int_equal(fl & FD_CLOEXEC, FD_CLOEXEC);
	assert_true(fcntl(fdh_client_fd(c), F_GETFL) & O_NONBLOCK);
	assert_int_equal(fdh_client_request(c, &req, &resp), 0);
	assert_string_equal(resp.body, "ok");
	fdh_client_resp_release(&resp);
	fdh_client_free(c);
	assert_int_equal(pthread_join(a.th, NULL), 0);
	assert_int_equal(a.f.failed_step, -1);
	close(a.f.sock);
	close(a.lfd);
	assert_string_equal(a.f.got[0].data, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
	fake_free(&a.f);
}

static void
test_connect_path(void **state)
{
	char dir[PATH_MAX], path[PATH_MAX + 16];
	int before = fdh_test_count_fds(0);

	(void)state;
	assert_int_equal(fdh_test_mkdtemp(dir, sizeof(dir)), 0);
	snprintf(path, sizeof(path), "%s/s.sock", dir);
	connect_and_get(path);
	assert_int_equal(fdh_test_rmtree(dir), 0);
	assert_int_equal(fdh_test_count_fds(0), before);
}

static void
test_connect_abstract(void **state)
{
	char name[64];
	int before = fdh_test_count_fds(0);

	(void)state;
	snprintf(name, sizeof(name), "@fdh-test-client-%d", (int)getpid());
	connect_and_get(name);
	assert_int_equal(fdh_test_count_fds(0), before);
}

static void
test_connect_errors(void **state)
{
	struct fdh_client *c = NULL;
	char dir[PATH_MAX], path[PATH_MAX + 16], longname[200];
	int before = fdh_test_count_fds(0), lfd, queued;
	int64_t t0;

	(void)state;
	assert_int_equal(fdh_test_mkdtemp(dir, sizeof(dir)), 0);
	snprintf(path, sizeof(path), "%s/none.sock", dir);
	assert_int_equal(fdh_client_connect(path, 1000, &c), -ENOENT);
	memset(longname, 'x', sizeof(longname) - 1);
	longname[0] = '/';
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(fdh_client_connect(longname, 1000, &c), -ENAMETOOLONG);
	longname[0] = '@';
	assert_int_equal(fdh_client_connect(longname, 1000, &c), -ENAMETOOLONG);
	assert_int_equal(fdh_client_connect("", 1000, &c), -EINVAL);
	assert_int_equal(fdh_client_connect("@", 1000, &c), -EINVAL);
	assert_int_equal(fdh_client_connect("/x", -1, &c), -EINVAL);
	assert_null(c);

	/*
	 * A listener that never accepts, its backlog of 0 holding one
	 * connection: the next connect waits for room, up to the timeout.
	 */
	snprintf(path, sizeof(path), "%s/full.sock", dir);
	lfd = fdh_test_listen(path, 0);
	assert_true(lfd >= 0);
	queued = fdh_test_connect(path, 1000);
	assert_true(queued >= 0);
	t0 = fdh_test_now_ms();
	assert_int_equal(fdh_client_connect(path, 300, &c), -ETIMEDOUT);
	assert_in_range(fdh_test_now_ms() - t0, 250, 1500);
	assert_null(c);
	close(queued);
	close(lfd);
	assert_int_equal(fdh_test_rmtree(dir), 0);
	assert_int_equal(fdh_test_count_fds(0), before);
}

static void
test_from_fd(void **state)
{
	struct fdh_client *c = NULL;
	int before = fdh_test_count_fds(0), p[2], dg;

	(void)state;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	/* Consumed on failure too. */
	assert_int_equal(fdh_client_from_fd(p[0], 0, &c), -ENOTSOCK);
	assert_false(fdh_test_fd_is_open(p[0]));
	close(p[1]);
	dg = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_int_equal(fdh_client_from_fd(dg, 0, &c), -EPROTOTYPE);
	assert_false(fdh_test_fd_is_open(dg));
	assert_int_equal(fdh_client_from_fd(-1, 0, &c), -EBADF);
	assert_null(c);
	fdh_client_free(NULL);
	assert_int_equal(fdh_test_count_fds(0), before);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get_bytes),
		cmocka_unit_test(test_post_with_fds_bytes),
		cmocka_unit_test(test_content_length_rules),
		cmocka_unit_test(test_invalid_requests),
		cmocka_unit_test(test_fd_refused_by_the_kernel),
		cmocka_unit_test(test_response_fds_by_name),
		cmocka_unit_test(test_interim_skipped),
		cmocka_unit_test(test_expect_continue),
		cmocka_unit_test(test_expect_unanswered),
		cmocka_unit_test(test_expect_refused),
		cmocka_unit_test(test_head_has_no_body),
		cmocka_unit_test(test_connection_close),
		cmocka_unit_test(test_fd_mismatch),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_status_below_100),
		cmocka_unit_test(test_body_limit),
		cmocka_unit_test(test_head_limits),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_timeout_set_later),
		cmocka_unit_test(test_server_vanishes),
		cmocka_unit_test(test_stream_moved_between_requests),
		cmocka_unit_test(test_input_shut_after_an_answer_is_not_connected),
		cmocka_unit_test(test_response_fds_past_our_nofile_are_emfile),
		cmocka_unit_test(test_closed_before_a_byte_is_not_connected),
		cmocka_unit_test(test_big_bodies),
		cmocka_unit_test(test_early_answer),
		cmocka_unit_test(test_early_answer_open),
		cmocka_unit_test(test_connect_path),
		cmocka_unit_test(test_connect_abstract),
		cmocka_unit_test(test_connect_errors),
		cmocka_unit_test(test_from_fd),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
