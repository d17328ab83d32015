/*
 * CONTRACT section 2 against a real fdhttp-echo: framing, keep-alive,
 * Expect, HEAD, limits, timeouts, pipelining, smuggling, routing and the
 * connection limit.  Well-formed requests go through the client library;
 * hostile ones are written byte by byte with the harness.
 *
 * Each group runs its own service, started with the limits it tests.
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <fdhttp/client.h>
#include "expect.h"

/* The limits of the "limits" group. */
#define MAX_HEAD	1024
#define MAX_HEADERS	8
#define MAX_BODY	4096

/* --- services -------------------------------------------------------------- */

static int
start_limits(void **state)
{
	static const char *const args[] = {
		"--max-head", "1024", "--max-headers", "8", "--max-body", "4096",
		"--request-timeout", "2", "--idle-timeout", "2", "--write-timeout", "2", NULL,
	};

	return fdh_test_group_start_echo(state, args);
}

static int
start_timeouts(void **state)
{
	static const char *const args[] = {
		"--request-timeout", "0.5", "--idle-timeout", "0.5", "--write-timeout", "0.5",
		"--max-body", "2097152", NULL,
	};

	return fdh_test_group_start_echo(state, args);
}

static int
start_conns(void **state)
{
	static const char *const args[] = {
		"--max-conns", "4", "--request-timeout", "10", "--idle-timeout", "10", NULL,
	};

	return fdh_test_group_start_echo(state, args);
}

/* --- raw exchanges --------------------------------------------------------- */

/*
 * What the response promised about the connection holds: with
 * Connection: close it closes, without it another request is served.
 */
static void
expect_promise_kept(int fd, const struct fdh_test_msg *m)
{
	if (fdh_expect_has_close(m))
		fdh_expect_closed(fd);
	else
		fdh_expect_health(fd);
}

/* req on a fresh connection gets status, Connection: close, a text line, then EOF. */
static void
expect_refused_len(const struct fdh_test_proc *p, const char *req, size_t len, int status)
{
	struct fdh_test_msg m;
	int fd = fdh_expect_connect(p);

	fdh_expect_send_len(fd, req, len, NULL, 0);
	fdh_expect_refusal(fd, req, len, 0, status, &m);
	fdh_test_msg_free(&m);
	close(fd);
}

static void
expect_refused(const struct fdh_test_proc *p, const char *req, int status)
{
	expect_refused_len(p, req, strlen(req), status);
}

/* --- client library -------------------------------------------------------- */

static struct fdh_client *
client(const struct fdh_test_proc *p)
{
	struct fdh_client *c = NULL;
	int r = fdh_client_connect(p->sock, FDH_EXPECT_IO_MS, &c);

	if (r < 0)
		print_error("fdh_client_connect: %s\n", strerror(-r));
	assert_int_equal(r, 0);
	return c;
}

static void
request(struct fdh_client *c, const char *method, const char *target, const char *body,
    struct fdh_client_resp *resp)
{
	struct fdh_client_req req = {
		.method = method,
		.target = target,
		.body = body,
		.body_len = body ? strlen(body) : 0,
	};
	int r = fdh_client_request(c, &req, resp);

	if (r < 0)
		print_error("%s %s: %s\n", method, target, strerror(-r));
	assert_int_equal(r, 0);
}

/* --- framing --------------------------------------------------------------- */

static void
test_content_length_framing(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	int fd = fdh_expect_connect(p);

	/* The body in pieces: Content-Length, not the sends, decides where it ends. */
	fdh_expect_send(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello");
	fdh_test_sleep_ms(50);
	fdh_expect_answer(fd, " world", 200, &m);
	assert_int_equal(m.body_len, 11);
	assert_string_equal(fdh_test_msg_body(&m), "hello world");
	fdh_expect_close_header(&m, false);
	fdh_test_msg_free(&m);

	/* A body of zero bytes, said so. */
	fdh_expect_answer(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 200, &m);
	assert_int_equal(m.body_len, 0);
	fdh_test_msg_free(&m);
	close(fd);
}

static void
test_no_content_length_is_empty_body(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	int fd = fdh_expect_connect(p);

	/* No Content-Length: empty body, so the bytes after the head are the next request. */
	fdh_expect_answer(fd, "POST /echo HTTP/1.1\r\nHost: x\r\n\r\n", 200, &m);
	assert_true(fdh_expect_has_header(&m, "Content-Length", "0"));
	assert_int_equal(m.body_len, 0);
	fdh_expect_close_header(&m, false);
	fdh_test_msg_free(&m);
	fdh_expect_quiet(fd, 100);
	fdh_expect_health(fd);
	close(fd);
}

static void
test_transfer_encoding_alone_501(void **state)
{
	const struct fdh_test_proc *p = *state;

	expect_refused(p, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
	    501);
	expect_refused(p, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	    501);
	expect_refused(p, "GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
}

/* --- persistence ----------------------------------------------------------- */

static void
test_keep_alive_http11(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_client *c = client(p);
	struct fdh_test_msg m;
	char body[32];
	int i, fd;

	/* Several requests on one connection through the client library. */
	for (i = 0; i < 5; i++) {
		struct fdh_client_resp resp;

		snprintf(body, sizeof(body), "request %d", i);
		request(c, "POST", "/echo", body, &resp);
		assert_int_equal(resp.status, 200);
		assert_string_equal(resp.body, body);
		assert_int_equal(resp.closed, 0);
		assert_true(!fdh_client_resp_header(&resp, "Connection") ||
		    strcasecmp(fdh_client_resp_header(&resp, "Connection"), "close") != 0);
		fdh_client_resp_release(&resp);
	}
	fdh_client_free(c);

	/* And raw, reading each response exactly. */
	fd = fdh_expect_connect(p);
	for (i = 0; i < 3; i++)
		fdh_expect_health(fd);
	fdh_expect_answer(fd, "POST /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nping", 200, &m);
	assert_string_equal(fdh_test_msg_body(&m), "pong");
	fdh_test_msg_free(&m);
	fdh_expect_health(fd);
	close(fd);
}

static void
test_connection_close_http11(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	int fd = fdh_expect_connect(p);

	fdh_expect_health(fd);
	fdh_expect_answer(fd, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200, &m);
	assert_string_equal(fdh_test_msg_body(&m), "ok");
	fdh_expect_close_header(&m, true);
	fdh_expect_closed(fd);
	fdh_test_msg_free(&m);
	close(fd);
}

static void
test_http10_closes(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	int fd = fdh_expect_connect(p);

	fdh_expect_answer(fd, "GET /health HTTP/1.0\r\n\r\n", 200, &m);
	assert_string_equal(fdh_test_msg_body(&m), "ok");
	fdh_expect_close_header(&m, true);
	fdh_expect_closed(fd);
	fdh_test_msg_free(&m);
	close(fd);
}

static void
test_http10_keep_alive(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	int fd = fdh_expect_connect(p), i;

	for (i = 0; i < 2; i++) {
		fdh_expect_answer(fd, "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200, &m);
		assert_string_equal(fdh_test_msg_body(&m), "ok");
		fdh_expect_close_header(&m, false);
		/* A 1.0 client keeps the connection only when told it may. */
		if (!fdh_expect_has_header(&m, "Connection", "keep-alive")) {
			fdh_expect_print_bytes("response to HTTP/1.0 keep-alive", m.data, m.len);
			fail_msg("no Connection: keep-alive for an HTTP/1.0 client");
		}
		fdh_test_msg_free(&m);
	}
	fdh_expect_quiet(fd, 100);
	fdh_expect_health(fd);
	close(fd);
}

/* --- Expect ---------------------------------------------------------------- */

static void
test_expect_continue(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	int fd = fdh_expect_connect(p);

	fdh_expect_send(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
	    "Content-Length: 5\r\n\r\n");
	/* Well before curl's one-second wait: the server must not sit on it. */
	fdh_expect_read_resp_within(fd, 900, &m);
	fdh_expect_status(&m, 100);
	assert_true(strncmp(m.data, "HTTP/1.1 100 Continue\r\n", 23) == 0);
	assert_int_equal(m.body_len, 0);
	fdh_test_msg_free(&m);

	fdh_expect_answer(fd, "hello", 200, &m);
	assert_string_equal(fdh_test_msg_body(&m), "hello");
	fdh_expect_close_header(&m, false);
	fdh_test_msg_free(&m);
	fdh_expect_health(fd);
	close(fd);
}

static void
test_expect_continue_over_limit_413(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	int fd = fdh_expect_connect(p);

	fdh_expect_send(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
	    "Content-Length: 4097\r\n\r\n");
	/* At once: not after the request timeout, and with no 100 first. */
	fdh_expect_read_resp_within(fd, 1000, &m);
	fdh_expect_status(&m, 413);
	fdh_expect_close_header(&m, true);
	fdh_expect_error_body(&m);
	fdh_expect_closed(fd);
	fdh_test_msg_free(&m);
	close(fd);
}

static void
test_expect_other_417(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	int fd = fdh_expect_connect(p);

	fdh_expect_send(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n"
	    "Content-Length: 0\r\n\r\n");
	fdh_expect_read_resp_within(fd, 1000, &m);
	fdh_expect_status(&m, 417);
	fdh_expect_error_body(&m);
	expect_promise_kept(fd, &m);
	fdh_test_msg_free(&m);
	close(fd);
}

/* --- HEAD ------------------------------------------------------------------ */

static void
test_head_on_get_route(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg get, head;
	char get_cl[32], head_cl[32];
	int fd = fdh_expect_connect(p);

	fdh_expect_answer(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 200, &get);
	assert_int_equal(fdh_test_msg_header(&get, "Content-Length", get_cl, sizeof(get_cl)), 0);

	fdh_expect_send(fd, "HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n");
	assert_int_equal(fdh_test_read_head(fd, FDH_EXPECT_IO_MS, &head), 0);
	fdh_expect_status(&head, 200);
	assert_int_equal(fdh_test_msg_header(&head, "Content-Length", head_cl, sizeof(head_cl)), 0);
	assert_string_equal(head_cl, get_cl);
	assert_string_equal(head_cl, "2");
	fdh_expect_close_header(&head, false);
	/* Not one body byte follows; the next response starts clean. */
	fdh_expect_quiet(fd, 150);
	fdh_expect_health(fd);
	fdh_test_msg_free(&get);
	fdh_test_msg_free(&head);
	close(fd);
}

/* --- limits ---------------------------------------------------------------- */

/* A GET /health head of exactly size bytes, blank line included, padded in X-Pad. */
static char *
head_of_size(size_t size)
{
	static const char pre[] = "GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: ";
	static const char post[] = "\r\n\r\n";
	size_t fixed = sizeof(pre) - 1 + sizeof(post) - 1;
	char *s = malloc(size + 1);

	assert_non_null(s);
	assert_true(size > fixed);
	memcpy(s, pre, sizeof(pre) - 1);
	memset(s + sizeof(pre) - 1, 'a', size - fixed);
	memcpy(s + size - (sizeof(post) - 1), post, sizeof(post));
	assert_int_equal(strlen(s), size);
	return s;
}

static void
test_head_limit_exact_passes(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	char *req = head_of_size(MAX_HEAD);
	int fd = fdh_expect_connect(p);

	fdh_expect_send(fd, req);
	fdh_expect_read_resp(fd, &m);
	if (m.status != 200)
		print_error("a head of exactly --max-head %d bytes was refused\n", MAX_HEAD);
	fdh_expect_status(&m, 200);
	assert_string_equal(fdh_test_msg_body(&m), "ok");
	fdh_test_msg_free(&m);
	fdh_expect_health(fd);
	close(fd);
	free(req);
}

static void
test_head_limit_one_over_431(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	char *req = head_of_size(MAX_HEAD + 1);
	int fd = fdh_expect_connect(p);

	fdh_expect_answer(fd, req, 431, &m);
	fdh_expect_close_header(&m, true);
	fdh_expect_error_body(&m);
	/* It says what was wrong, with the limit in force. */
	if (!strstr(fdh_test_msg_body(&m), "1024")) {
		fdh_expect_print_bytes("431 body", fdh_test_msg_body(&m), m.body_len);
		fail_msg("the 431 text does not name the 1024-byte limit");
	}
	fdh_expect_closed(fd);
	fdh_test_msg_free(&m);
	close(fd);
	free(req);

	/* The same head in pieces: the limit counts bytes, not reads. */
	req = head_of_size(MAX_HEAD + 1);
	fd = fdh_expect_connect(p);
	fdh_expect_send_len(fd, req, 600, NULL, 0);
	fdh_test_sleep_ms(50);
	fdh_expect_send(fd, req + 600);
	fdh_expect_read_resp(fd, &m);
	fdh_expect_status(&m, 431);
	fdh_expect_close_header(&m, true);
	fdh_expect_closed(fd);
	fdh_test_msg_free(&m);
	close(fd);
	free(req);

	/* A head that never ends is refused once it passes the limit, not at the timeout. */
	req = head_of_size(4 * MAX_HEAD);
	req[2 * MAX_HEAD] = '\0';
	fd = fdh_expect_connect(p);
	fdh_expect_send(fd, req);
	fdh_expect_read_resp_within(fd, 1000, &m);
	fdh_expect_status(&m, 431);
	fdh_expect_close_header(&m, true);
	fdh_test_msg_free(&m);
	close(fd);
	free(req);
}

/* A GET /health with n header fields, Host the first of them. */
static void
head_with_fields(char *buf, size_t size, unsigned n)
{
	size_t len;
	unsigned i;

	len = (size_t)snprintf(buf, size, "GET /health HTTP/1.1\r\nHost: x\r\n");
	for (i = 1; i < n; i++)
		len += (size_t)snprintf(buf + len, size - len, "X-H%u: %u\r\n", i, i);
	snprintf(buf + len, size - len, "\r\n");
}

static void
test_header_field_limit(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	char req[512];
	int fd;

	/* Exactly --max-headers fields, Host counted: served. */
	head_with_fields(req, sizeof(req), MAX_HEADERS);
	fd = fdh_expect_connect(p);
	fdh_expect_answer(fd, req, 200, &m);
	fdh_test_msg_free(&m);
	fdh_expect_health(fd);
	close(fd);

	/* One more: 431 and close. */
	head_with_fields(req, sizeof(req), MAX_HEADERS + 1);
	expect_refused(p, req, 431);
}

static void
test_body_limit_413(void **state)
{
	const struct fdh_test_proc *p = *state;
	char *req;
	size_t n, len;
	int fd;

	/* Exactly the limit is served. */
	req = malloc(MAX_BODY + 256);
	assert_non_null(req);
	n = (size_t)snprintf(req, 256, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
	    MAX_BODY);
	memset(req + n, 'b', MAX_BODY);
	fd = fdh_expect_connect(p);
	fdh_expect_send_len(fd, req, n + MAX_BODY, NULL, 0);
	{
		struct fdh_test_msg m;

		fdh_expect_read_resp(fd, &m);
		fdh_expect_status(&m, 200);
		assert_int_equal(m.body_len, MAX_BODY);
		fdh_test_msg_free(&m);
	}
	close(fd);
	free(req);

	/* One byte more, the body sent along: 413, close. */
	req = malloc(MAX_BODY + 256);
	assert_non_null(req);
	n = (size_t)snprintf(req, 256, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
	    MAX_BODY + 1);
	memset(req + n, 'b', MAX_BODY + 1);
	req[n + MAX_BODY + 1] = '\0';
	expect_refused(p, req, 413);
	free(req);

	/*
	 * A body far over the limit, sent whole before the answer is read, as
	 * curl sends one without Expect: the server reads and drops the rest,
	 * so the client's send ends and it reads the 413, not a broken pipe.
	 */
	n = 1024 * 1024;
	req = malloc(n + 256);
	assert_non_null(req);
	len = (size_t)snprintf(req, 256,
	    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", n);
	memset(req + len, 'b', n);
	expect_refused_len(p, req, len + n, 413);
	free(req);

	/* One byte more, announced in the head: refused before the body. */
	expect_refused(p, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4097\r\n\r\n", 413);
	expect_refused(p, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
	    413);
}

/* --- pipelining ------------------------------------------------------------ */

static void
test_pipelining_answers_first_and_closes(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	int fd = fdh_expect_connect(p);

	fdh_expect_answer(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirst"
	    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsecond", 200, &m);
	assert_string_equal(fdh_test_msg_body(&m), "first");
	fdh_expect_close_header(&m, true);
	/* The second request is never answered. */
	fdh_expect_closed(fd);
	fdh_test_msg_free(&m);
	close(fd);
}

/* --- smuggling and malformed requests -------------------------------------- */

struct bad_req {
	const char *what;
	const char *bytes;
	size_t len;	/* 0: strlen */
};

#define NUL_REQ(s) { "NUL byte", s, sizeof(s) - 1 }

static const struct bad_req smuggling[] = {
	{ "two equal Content-Length",
	  "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 0 },
	{ "two different Content-Length",
	  "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 0 },
	{ "Content-Length list",
	  "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc", 0 },
	{ "Content-Length then Transfer-Encoding",
	  "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
	  "0\r\n\r\n", 0 },
	{ "Transfer-Encoding then Content-Length",
	  "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
	  "0\r\n\r\n", 0 },
	{ "bare LF line endings", "GET /health HTTP/1.1\nHost: x\n\n", 0 },
	{ "bare LF after a header", "GET /health HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n", 0 },
	{ "bare LF as the blank line", "GET /health HTTP/1.1\r\nHost: x\r\n\n", 0 },
	{ "bare CR in a header", "GET /health HTTP/1.1\r\nHost: x\rX-A: 1\r\n\r\n", 0 },
	{ "bare CR in the request line", "GET /health\rHTTP/1.1\r\nHost: x\r\n\r\n", 0 },
	{ "obs-fold with a space", "GET /health HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n", 0 },
	{ "obs-fold with a tab", "GET /health HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\t2\r\n\r\n", 0 },
	NUL_REQ("GET /health HTTP/1.1\r\nHost: x\r\nX-A: 1\0002\r\n\r\n"),
	NUL_REQ("GET /health HTTP/1.1\r\nHost: x\r\nX-\000A: 1\r\n\r\n"),
	NUL_REQ("GET /hea\000lth HTTP/1.1\r\nHost: x\r\n\r\n"),
	{ "whitespace before the colon", "GET /health HTTP/1.1\r\nHost : x\r\n\r\n", 0 },
};

static const struct bad_req malformed[] = {
	{ "not a request line", "GARBAGE\r\nHost: x\r\n\r\n", 0 },
	{ "truncated version", "GET /health HTTP/\r\nHost: x\r\n\r\n", 0 },
	{ "two request lines", "GET /health HTTP/1.1\r\nGET /health HTTP/1.1\r\n\r\n", 0 },
	{ "relative target", "GET health HTTP/1.1\r\nHost: x\r\n\r\n", 0 },
	{ "bad version", "GET /health HTTX/1.1\r\nHost: x\r\n\r\n", 0 },
	{ "bytes after the version", "GET /health HTTP/1.1 x\r\nHost: x\r\n\r\n", 0 },
	{ "header without a colon", "GET /health HTTP/1.1\r\nHost x\r\n\r\n", 0 },
	{ "bad Content-Length", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3x\r\n\r\nabc", 0 },
	{ "negative Content-Length", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 0 },
};

static void
run_bad(const struct fdh_test_proc *p, const struct bad_req *t, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		print_message("  %s\n", t[i].what);
		expect_refused_len(p, t[i].bytes, t[i].len ? t[i].len : strlen(t[i].bytes), 400);
	}
}

static void
test_smuggling_400(void **state)
{
	run_bad(*state, smuggling, sizeof(smuggling) / sizeof(smuggling[0]));
}

static void
test_malformed_400(void **state)
{
	run_bad(*state, malformed, sizeof(malformed) / sizeof(malformed[0]));
}

/* --- routing --------------------------------------------------------------- */

static void
test_routing(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_client *c = client(p);
	struct fdh_client_resp resp;
	const char *allow;

	request(c, "GET", "/nope", NULL, &resp);
	assert_int_equal(resp.status, 404);
	assert_int_equal(resp.body_len > 1, 1);
	assert_int_equal(resp.body[resp.body_len - 1], '\n');
	assert_non_null(fdh_client_resp_header(&resp, "Content-Type"));
	assert_true(strncmp(fdh_client_resp_header(&resp, "Content-Type"), "text/plain", 10) == 0);
	fdh_client_resp_release(&resp);

	/* Exact paths: a trailing slash is another path. */
	request(c, "GET", "/health/", NULL, &resp);
	assert_int_equal(resp.status, 404);
	fdh_client_resp_release(&resp);
	request(c, "GET", "/nope?x=/health", NULL, &resp);
	assert_int_equal(resp.status, 404);
	fdh_client_resp_release(&resp);

	request(c, "DELETE", "/health", NULL, &resp);
	assert_int_equal(resp.status, 405);
	allow = fdh_client_resp_header(&resp, "Allow");
	assert_non_null(allow);
	assert_non_null(strstr(allow, "GET"));
	assert_null(strstr(allow, "POST"));
	assert_true(strncmp(fdh_client_resp_header(&resp, "Content-Type"), "text/plain", 10) == 0);
	fdh_client_resp_release(&resp);

	request(c, "GET", "/echo", NULL, &resp);
	assert_int_equal(resp.status, 405);
	allow = fdh_client_resp_header(&resp, "Allow");
	assert_non_null(allow);
	assert_string_equal(allow, "POST");
	fdh_client_resp_release(&resp);

	/* The query string is not part of the match. */
	request(c, "GET", "/health?x=1", NULL, &resp);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "ok");
	fdh_client_resp_release(&resp);
	request(c, "POST", "/echo?a=b&c=/d", "q", &resp);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "q");
	assert_int_equal(resp.closed, 0);
	fdh_client_resp_release(&resp);
	fdh_client_free(c);
}

static void
test_routing_raw_405_keeps_promise(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	char allow[128];
	int fd = fdh_expect_connect(p);

	fdh_expect_answer(fd, "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, &m);
	assert_int_equal(fdh_test_msg_header(&m, "Allow", allow, sizeof(allow)), 0);
	assert_non_null(strstr(allow, "GET"));
	fdh_expect_error_body(&m);
	expect_promise_kept(fd, &m);
	fdh_test_msg_free(&m);
	close(fd);
}

/* --- timeouts -------------------------------------------------------------- */

static void
test_request_timeout_408(void **state)
{
	const struct fdh_test_proc *p = *state;
	static const char *const halves[] = {
		"GET /health HTTP/1.1\r\nHo",
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
	};
	size_t i;

	for (i = 0; i < sizeof(halves) / sizeof(halves[0]); i++) {
		struct fdh_test_msg m;
		int64_t t0, dt;
		int fd = fdh_expect_connect(p);

		t0 = fdh_test_now_ms();
		fdh_expect_send(fd, halves[i]);
		fdh_expect_read_resp(fd, &m);
		dt = fdh_test_now_ms() - t0;
		fdh_expect_status(&m, 408);
		fdh_expect_close_header(&m, true);
		fdh_expect_error_body(&m);
		fdh_expect_closed(fd);
		/* --request-timeout 0.5: not before it, and not much after. */
		print_message("  408 after %lld ms\n", (long long)dt);
		assert_in_range(dt, 400, 2500);
		fdh_test_msg_free(&m);
		close(fd);
	}
}

static void
test_idle_keep_alive_silent_close(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	int64_t t0, dt;
	int fd = fdh_expect_connect(p);

	fdh_expect_health(fd);
	t0 = fdh_test_now_ms();
	assert_int_equal(fdh_test_read_all(fd, FDH_EXPECT_IO_MS, &m), 0);
	dt = fdh_test_now_ms() - t0;
	if (!m.eof || m.len != 0)
		fdh_expect_print_bytes("received on an idle connection", m.data, m.len);
	assert_true(m.eof);
	assert_int_equal(m.len, 0);
	print_message("  idle close after %lld ms\n", (long long)dt);
	assert_in_range(dt, 400, 2500);
	fdh_test_msg_free(&m);
	close(fd);
}

static void
test_idle_never_a_byte(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	int64_t t0, dt;
	int fd;

	t0 = fdh_test_now_ms();
	fd = fdh_expect_connect(p);
	assert_int_equal(fdh_test_read_all(fd, FDH_EXPECT_IO_MS, &m), 0);
	dt = fdh_test_now_ms() - t0;
	if (!m.eof || m.len != 0)
		fdh_expect_print_bytes("received on a silent connection", m.data, m.len);
	assert_true(m.eof);
	assert_int_equal(m.len, 0);
	print_message("  closed after %lld ms\n", (long long)dt);
	assert_in_range(dt, 400, 2500);
	fdh_test_msg_free(&m);
	close(fd);
}

/*
 * The idle timeout runs from the end of the response, not from when the
 * service began the request: a handler that works longer than the idle
 * timeout (here POST /fd/read waiting 0.8 s on a pipe we hold) must not
 * cost the client its connection.
 */
static void
test_idle_starts_after_response(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	static const char req[] = "POST /fd/read HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
	    "X-FD: input\r\n\r\n";
	static const char next[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
	int pipefd[2], fd = fdh_expect_connect(p), r;

	assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
	r = fdh_test_send_all(fd, req, sizeof(req) - 1, &pipefd[0], 1);
	assert_int_equal(r, 0);
	close(pipefd[0]);
	fdh_test_sleep_ms(800);
	assert_int_equal(write(pipefd[1], "slow", 4), 4);
	close(pipefd[1]);
	fdh_expect_read_resp(fd, &m);
	fdh_expect_status(&m, 200);
	assert_string_equal(fdh_test_msg_body(&m), "slow");
	fdh_expect_close_header(&m, false);
	fdh_test_msg_free(&m);
	/* At once: the connection has been idle for no time at all. */
	r = fdh_test_send_all(fd, next, sizeof(next) - 1, NULL, 0);
	if (r == 0)
		r = fdh_test_read_message(fd, FDH_EXPECT_IO_MS, &m);
	if (r != 0) {
		print_error("the next request on a keep-alive connection failed (%s): closed as idle "
		    "right after a response whose handler took longer than --idle-timeout\n",
		    strerror(-r));
		fail();
	}
	fdh_expect_status(&m, 200);
	fdh_test_msg_free(&m);
	close(fd);
}

/* Waits up to ms for the peer to close fd (POLLHUP), without reading. */
static bool
wait_hangup(int fd, int ms)
{
	int64_t deadline = fdh_test_now_ms() + ms;

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLRDHUP };
		int64_t left = deadline - fdh_test_now_ms();

		if (left <= 0)
			return false;
		if (poll(&pfd, 1, (int)left) > 0 && (pfd.revents & (POLLHUP | POLLERR)))
			return true;
		fdh_test_sleep_ms(5);	/* POLLRDHUP alone: the peer shut down writing, not yet gone */
	}
}

static void
test_write_timeout(void **state)
{
	const struct fdh_test_proc *p = *state;
	const size_t body = 1024 * 1024;
	struct fdh_test_msg m;
	char head[128];
	char *req;
	size_t n;
	int64_t t0, dt;
	int rcvbuf = 4096, fd, r;

	fd = fdh_expect_connect(p);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
	n = (size_t)snprintf(head, sizeof(head),
	    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", body);
	req = malloc(n + body);
	assert_non_null(req);
	memcpy(req, head, n);
	memset(req + n, 'w', body);
	fdh_expect_send_len(fd, req, n + body, NULL, 0);
	free(req);
	t0 = fdh_test_now_ms();

	/* Meanwhile the service answers others. */
	{
		int other = fdh_expect_connect(p);

		fdh_expect_health(other);
		close(other);
	}

	/* We never read: the response stalls, and the server gives up on it. */
	if (!wait_hangup(fd, FDH_EXPECT_IO_MS))
		fail_msg("the connection of a client that never reads is still open after %d ms",
		    FDH_EXPECT_IO_MS);
	dt = fdh_test_now_ms() - t0;
	print_message("  closed %lld ms after the request was sent\n", (long long)dt);
	assert_true(dt >= 300);

	/* What had been queued is readable, then the end: not the whole response. */
	r = fdh_test_read_all(fd, FDH_EXPECT_IO_MS, &m);
	if (r == 0)
		assert_true(m.eof);
	else
		assert_int_equal(r, -ECONNRESET);
	assert_true(m.len > 0);
	assert_true(strncmp(m.data, "HTTP/1.1 200 ", 13) == 0);
	assert_true(m.len < n + body);
	fdh_test_msg_free(&m);
	close(fd);

	/* And afterwards. */
	fd = fdh_expect_connect(p);
	fdh_expect_health(fd);
	close(fd);
}

/* --- the connection limit -------------------------------------------------- */

static void
test_max_conns_backlog(void **state)
{
	const struct fdh_test_proc *p = *state;
	struct fdh_test_msg m;
	int fds[4], fifth;
	size_t i;

	for (i = 0; i < 4; i++) {
		fds[i] = fdh_expect_connect(p);
		fdh_expect_health(fds[i]);
	}
	/* The kernel's backlog takes the fifth; the service does not serve it yet. */
	fifth = fdh_expect_connect(p);
	fdh_expect_send(fifth, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
	fdh_expect_quiet(fifth, 400);
	/* The four are still served. */
	for (i = 0; i < 4; i++)
		fdh_expect_health(fds[i]);
	fdh_expect_quiet(fifth, 100);

	close(fds[0]);
	fdh_expect_read_resp(fifth, &m);
	fdh_expect_status(&m, 200);
	assert_string_equal(fdh_test_msg_body(&m), "ok");
	fdh_test_msg_free(&m);
	fdh_expect_health(fifth);
	for (i = 1; i < 4; i++)
		close(fds[i]);
	close(fifth);
}

int
main(void)
{
	const struct CMUnitTest limits[] = {
		cmocka_unit_test(test_content_length_framing),
		cmocka_unit_test(test_no_content_length_is_empty_body),
		cmocka_unit_test(test_transfer_encoding_alone_501),
		cmocka_unit_test(test_keep_alive_http11),
		cmocka_unit_test(test_connection_close_http11),
		cmocka_unit_test(test_http10_closes),
		cmocka_unit_test(test_http10_keep_alive),
		cmocka_unit_test(test_expect_continue),
		cmocka_unit_test(test_expect_continue_over_limit_413),
		cmocka_unit_test(test_expect_other_417),
		cmocka_unit_test(test_head_on_get_route),
		cmocka_unit_test(test_head_limit_exact_passes),
		cmocka_unit_test(test_head_limit_one_over_431),
		cmocka_unit_test(test_header_field_limit),
		cmocka_unit_test(test_body_limit_413),
		cmocka_unit_test(test_pipelining_answers_first_and_closes),
		cmocka_unit_test(test_smuggling_400),
		cmocka_unit_test(test_malformed_400),
		cmocka_unit_test(test_routing),
		cmocka_unit_test(test_routing_raw_405_keeps_promise),
	};
	const struct CMUnitTest timeouts[] = {
		cmocka_unit_test(test_request_timeout_408),
		cmocka_unit_test(test_idle_keep_alive_silent_close),
		cmocka_unit_test(test_idle_never_a_byte),
		cmocka_unit_test(test_idle_starts_after_response),
		cmocka_unit_test(test_write_timeout),
	};
	const struct CMUnitTest conns[] = {
		cmocka_unit_test(test_max_conns_backlog),
	};
	int failed = 0;

	failed += cmocka_run_group_tests_name("protocol/limits", limits, start_limits, fdh_test_group_stop);
	failed += cmocka_run_group_tests_name("protocol/timeouts", timeouts, start_timeouts, fdh_test_group_stop);
	failed += cmocka_run_group_tests_name("protocol/conns", conns, start_conns, fdh_test_group_stop);
	return failed ? 1 : 0;
}
