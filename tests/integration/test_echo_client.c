/*
 * fdhttp-echo run alone, driven through the client library: every route of
 * CONTRACT section 8, fds there and back, and a long keep-alive run during
 * which the service must not gain a single fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <fdhttp/client.h>
#include "expect.h"

#define TIMEOUT_MS 10000

static struct fdh_test_proc echo_proc;

static int
start_echo(void **state)
{
	const char *exe = fdh_test_echo_exe();
	int r;

	(void)state;
	if (!exe) {
		fprintf(stderr, "FDH_ECHO is not set: run through ctest\n");
		return -1;
	}
	r = fdh_test_start_service(exe, NULL, &echo_proc);
	if (r < 0) {
		fprintf(stderr, "cannot start %s: %s\n", exe, strerror(-r));
		return -1;
	}
	return 0;
}

static int
stop_echo(void **state)
{
	int r;

	(void)state;
	r = fdh_test_stop_service(&echo_proc);
	if (r != 0) {
		fprintf(stderr, "fdhttp-echo exited with status %d\n", r);
		return -1;
	}
	return 0;
}

static struct fdh_client *
connect_echo(void)
{
	struct fdh_client *c = NULL;

	assert_int_equal(fdh_client_connect(echo_proc.sock, TIMEOUT_MS, &c), 0);
	return c;
}

/* One request on a fresh connection; the response goes to *resp. */
static void
request_once(const struct fdh_client_req *req, struct fdh_client_resp *resp)
{
	struct fdh_client *c = connect_echo();

	assert_int_equal(fdh_client_request(c, req, resp), 0);
	fdh_client_free(c);
}

static void
test_health(void **state)
{
	struct fdh_client_req req = { .target = "/health" };
	struct fdh_client_resp resp;

	(void)state;
	request_once(&req, &resp);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.body_len, 2);
	assert_string_equal(resp.body, "ok");
	assert_int_equal(resp.nfds, 0);
	assert_false(resp.closed);
	fdh_client_resp_release(&resp);
}

static void
test_head_health(void **state)
{
	struct fdh_client_req head = { .method = "HEAD", .target = "/health" };
	struct fdh_client_req get = { .target = "/health" };
	struct fdh_client_resp resp;
	struct fdh_client *c = connect_echo();

	(void)state;
	assert_int_equal(fdh_client_request(c, &head, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.body_len, 0);
	assert_string_equal(fdh_client_resp_header(&resp, "Content-Length"), "2");
	assert_false(resp.closed);
	fdh_client_resp_release(&resp);
	/* The stream is still in step: the next answer is GET's own. */
	assert_int_equal(fdh_client_request(c, &get, &resp), 0);
	assert_string_equal(resp.body, "ok");
	fdh_client_resp_release(&resp);
	fdh_client_free(c);
}

static void
test_ping(void **state)
{
	struct fdh_client_req req = { .method = "POST", .target = "/ping", .body = "ping",
	    .body_len = 4 };
	struct fdh_client_resp resp;

	(void)state;
	request_once(&req, &resp);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "pong");
	fdh_client_resp_release(&resp);
}

#define NPIPES 3

/* Body and fds come back; each returned fd is the very pipe we sent. */
static void
test_echo_fds(void **state)
{
	static const char body[] = "hello\0world";	/* a NUL inside, too */
	const char *names[NPIPES] = { "first", "b.2", "Z-3_" };
	struct fdh_named_fd nfds[NPIPES];
	struct fdh_client_req req = { .method = "POST", .target = "/echo", .body = body,
	    .body_len = sizeof(body), .fds = nfds, .nfds = NPIPES };
	struct fdh_client_req health = { .target = "/health" };
	struct fdh_client_resp resp;
	struct fdh_client *c;
	int p[NPIPES][2], before, svc_before, i;
	char buf[64];

	(void)state;
	before = fdh_test_count_fds(0);
	for (i = 0; i < NPIPES; i++) {
		assert_int_equal(pipe2(p[i], O_CLOEXEC), 0);
		nfds[i] = (struct fdh_named_fd){ names[i], p[i][1] };
	}
	c = connect_echo();
	/* A first exchange, so that the baseline includes the accepted connection. */
	assert_int_equal(fdh_client_request(c, &health, &resp), 0);
	fdh_client_resp_release(&resp);
	svc_before = fdh_test_count_fds(echo_proc.pid);
	assert_int_equal(fdh_client_request(c, &req, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.body_len, sizeof(body));
	assert_memory_equal(resp.body, body, sizeof(body));
	assert_int_equal(resp.nfds, NPIPES);
	for (i = 0; i < NPIPES; i++) {
		assert_string_equal(resp.fds[i].name, names[i]);
		assert_true(fdh_test_same_file(resp.fds[i].fd, p[i][1]));
		assert_int_equal(write(resp.fds[i].fd, names[i], strlen(names[i])),
		    (ssize_t)strlen(names[i]));
	}
	fdh_client_resp_release(&resp);
	/* The service kept no copy: with ours closed too, each pipe ends. */
	assert_int_equal(fdh_test_wait_fd_count(echo_proc.pid, svc_before, 2000), svc_before);
	for (i = 0; i < NPIPES; i++) {
		close(p[i][1]);
		assert_int_equal(fdh_test_read_fd(p[i][0], buf, sizeof(buf)),
		    (ssize_t)strlen(names[i]));
		assert_string_equal(buf, names[i]);
		close(p[i][0]);
	}
	fdh_client_free(c);
	assert_int_equal(fdh_test_count_fds(0), before);
}

/* The default fd limit, 16, all of them back in order. */
static void
test_echo_max_fds(void **state)
{
	struct fdh_named_fd nfds[16];
	struct fdh_client_req req = { .method = "POST", .target = "/echo", .fds = nfds,
	    .nfds = 16 };
	struct fdh_client_resp resp;
	char names[16][8], content[16][8], buf[16];
	int before = fdh_test_count_fds(0), i;

	(void)state;
	for (i = 0; i < 16; i++) {
		snprintf(names[i], sizeof(names[i]), "fd%d", i);
		snprintf(content[i], sizeof(content[i]), "c%d", i);
		nfds[i] = (struct fdh_named_fd){ names[i], fdh_test_make_memfd(content[i]) };
		assert_true(nfds[i].fd >= 0);
	}
	request_once(&req, &resp);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.body_len, 0);
	assert_int_equal(resp.nfds, 16);
	for (i = 0; i < 16; i++) {
		assert_string_equal(resp.fds[i].name, names[i]);
		assert_int_equal(pread(resp.fds[i].fd, buf, sizeof(buf), 0),
		    (ssize_t)strlen(content[i]));
		assert_memory_equal(buf, content[i], strlen(content[i]));
		close(nfds[i].fd);
	}
	fdh_client_resp_release(&resp);
	assert_int_equal(fdh_test_count_fds(0), before);
}

/* A body near the 1 MiB limit crosses many reads and partial writes both ways. */
static void
test_echo_big_body(void **state)
{
	const size_t len = 1024 * 1024 - 17;
	struct fdh_client_req req = { .method = "POST", .target = "/echo", .body_len = len };
	struct fdh_client_resp resp;
	char *body;
	size_t i;

	(void)state;
	body = malloc(len);
	assert_non_null(body);
	for (i = 0; i < len; i++)
		body[i] = (char)(i * 31 + 7);
	req.body = body;
	request_once(&req, &resp);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.body_len, len);
	assert_memory_equal(resp.body, body, len);
	fdh_client_resp_release(&resp);
	free(body);
}

/* Expect: 100-continue within the limit: the service asks for the body. */
static void
test_echo_expect_continue(void **state)
{
	const struct fdh_header expect = { "Expect", "100-continue" };
	struct fdh_client_req req = { .method = "POST", .target = "/echo", .headers = &expect,
	    .nheaders = 1, .body = "after 100", .body_len = 9 };
	struct fdh_client_resp resp;
	struct fdh_client *c = connect_echo();
	int64_t t0 = fdh_test_now_ms();

	(void)state;
	assert_int_equal(fdh_client_request(c, &req, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "after 100");
	assert_false(resp.closed);
	/* No waiting out a timer: the 100 came straight away. */
	assert_true(fdh_test_now_ms() - t0 < 900);
	fdh_client_resp_release(&resp);
	fdh_client_free(c);
}

static void
test_fd_read(void **state)
{
	struct fdh_named_fd in[1];
	struct fdh_client_req req = { .method = "POST", .target = "/fd/read", .fds = in,
	    .nfds = 1 };
	struct fdh_client_req none = { .method = "POST", .target = "/fd/read" };
	struct fdh_client_resp resp;
	int before = fdh_test_count_fds(0);

	(void)state;
	in[0] = (struct fdh_named_fd){ "input", fdh_test_make_pipe_with("from a pipe") };
	assert_true(in[0].fd >= 0);
	request_once(&req, &resp);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "from a pipe");
	fdh_client_resp_release(&resp);
	close(in[0].fd);

	in[0].fd = fdh_test_make_memfd("from a memfd");
	assert_true(in[0].fd >= 0);
	request_once(&req, &resp);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "from a memfd");
	fdh_client_resp_release(&resp);
	close(in[0].fd);

	request_once(&none, &resp);
	assert_int_equal(resp.status, 400);
	fdh_client_resp_release(&resp);
	assert_int_equal(fdh_test_count_fds(0), before);
}

static void
test_fd_memfd(void **state)
{
	static const char body[] = "sealed contents";
	struct fdh_client_req req = { .method = "POST", .target = "/fd/memfd", .body = body,
	    .body_len = sizeof(body) - 1 };
	struct fdh_client_resp resp;
	char buf[64];
	int before = fdh_test_count_fds(0), fd, seals;

	(void)state;
	request_once(&req, &resp);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.body_len, 0);
	assert_int_equal(resp.nfds, 1);
	assert_string_equal(resp.fds[0].name, "output");
	fd = fdh_client_resp_take_fd(&resp, "output");
	assert_true(fd >= 0);
	fdh_client_resp_release(&resp);

	assert_int_equal(pread(fd, buf, sizeof(buf), 0), (ssize_t)(sizeof(body) - 1));
	assert_memory_equal(buf, body, sizeof(body) - 1);
	seals = fcntl(fd, F_GET_SEALS);
	assert_true(seals >= 0);
	assert_int_equal(seals & (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
	    F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	/* The seals hold: the contents cannot change under us. */
	assert_int_equal(pwrite(fd, "x", 1, 0), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(ftruncate(fd, 0), -1);
	close(fd);
	assert_int_equal(fdh_test_count_fds(0), before);
}

static void
test_whoami(void **state)
{
	struct fdh_client_req req = { .target = "/whoami" };
	struct fdh_client_resp resp;
	long pid = -1, uid = -1, gid = -1;

	(void)state;
	request_once(&req, &resp);
	assert_int_equal(resp.status, 200);
	assert_non_null(fdh_client_resp_header(&resp, "Content-Type"));
	assert_string_equal(fdh_client_resp_header(&resp, "Content-Type"), "application/json");
	assert_int_equal(sscanf(resp.body, "{\"pid\":%ld,\"uid\":%ld,\"gid\":%ld}", &pid, &uid,
	    &gid), 3);
	assert_int_equal(pid, getpid());
	assert_int_equal(uid, getuid());
	assert_int_equal(gid, getgid());
	fdh_client_resp_release(&resp);
}

/* "Key:" of our own /proc/self/status, the state the service inherited. */
static long
own_status(const char *key)
{
	char buf[8192], *p;
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n > 0);
	buf[n] = '\0';
	for (p = buf; p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (strncmp(p, key, strlen(key)) == 0 && p[strlen(key)] == ':')
			return strtol(p + strlen(key) + 1, NULL, 10);
	}
	return -1;
}

/*
 * Alone, the service sandboxes nothing: its seccomp and no_new_privs are
 * what it inherited from us (0 on a plain host), and open() works.
 */
static void
test_sandbox_alone(void **state)
{
	struct fdh_client_req req = { .target = "/sandbox" };
	struct fdh_client_resp resp;
	long seccomp = -1, nnp = -1, uid = -1, gid = -1;
	char errname[32] = "";

	(void)state;
	request_once(&req, &resp);
	assert_int_equal(resp.status, 200);
	assert_int_equal(sscanf(resp.body,
	    "{\"seccomp\":%ld,\"no_new_privs\":%ld,\"uid\":%ld,\"gid\":%ld,\"open_errno\":\"%31[^\"]\"}",
	    &seccomp, &nnp, &uid, &gid, errname), 5);
	assert_int_equal(seccomp, own_status("Seccomp"));
	assert_int_equal(nnp, own_status("NoNewPrivs"));
	assert_int_equal(uid, getuid());
	assert_int_equal(gid, getgid());
	assert_string_equal(errname, "0");
	fdh_client_resp_release(&resp);
}

static void
test_not_found(void **state)
{
	struct fdh_client_req req = { .target = "/no/such/route" };
	struct fdh_client_req get_after = { .target = "/health" };
	struct fdh_client_resp resp;
	struct fdh_client *c = connect_echo();

	(void)state;
	assert_int_equal(fdh_client_request(c, &req, &resp), 0);
	assert_int_equal(resp.status, 404);
	assert_true(resp.body_len > 0);
	assert_false(resp.closed);
	fdh_client_resp_release(&resp);
	/* A 404 is an answer like any other: the connection carries on. */
	assert_int_equal(fdh_client_request(c, &get_after, &resp), 0);
	assert_int_equal(resp.status, 200);
	fdh_client_resp_release(&resp);
	fdh_client_free(c);
}

static void
test_method_not_allowed(void **state)
{
	struct fdh_client_req get_echo = { .target = "/echo" };
	struct fdh_client_req post_health = { .method = "POST", .target = "/health" };
	struct fdh_client_resp resp;
	const char *allow;

	(void)state;
	request_once(&get_echo, &resp);
	assert_int_equal(resp.status, 405);
	allow = fdh_client_resp_header(&resp, "Allow");
	assert_non_null(allow);
	assert_non_null(strstr(allow, "POST"));
	assert_null(strstr(allow, "GET"));
	fdh_client_resp_release(&resp);

	request_once(&post_health, &resp);
	assert_int_equal(resp.status, 405);
	allow = fdh_client_resp_header(&resp, "Allow");
	assert_non_null(allow);
	assert_non_null(strstr(allow, "GET"));
	fdh_client_resp_release(&resp);
}

static void
test_connection_close(void **state)
{
	const struct fdh_header close_hdr = { "Connection", "close" };
	struct fdh_client_req req = { .target = "/health", .headers = &close_hdr, .nheaders = 1 };
	struct fdh_client_resp resp;
	struct fdh_client *c = connect_echo();
	struct fdh_test_msg rest;

	(void)state;
	assert_int_equal(fdh_client_request(c, &req, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_true(resp.closed);
	assert_non_null(fdh_client_resp_header(&resp, "Connection"));
	fdh_client_resp_release(&resp);
	assert_int_equal(fdh_client_request(c, &req, &resp), -ENOTCONN);
	/* And the service did close its end. */
	assert_int_equal(fdh_test_read_all(fdh_client_fd(c), 5000, &rest), 0);
	assert_true(rest.eof);
	assert_int_equal(rest.len, 0);
	fdh_test_msg_free(&rest);
	fdh_client_free(c);
}

/*
 * 1000 requests on one connection, one in ten with an fd to /echo: every
 * answer right, the connection never dropped, no fd gained on either side.
 */
static void
test_keepalive_1000(void **state)
{
	struct fdh_named_fd nfd[1];
	struct fdh_client_req ping = { .method = "POST", .target = "/ping", .body = "ping",
	    .body_len = 4 };
	struct fdh_client_req echo_fd = { .method = "POST", .target = "/echo", .body = "e",
	    .body_len = 1, .fds = nfd, .nfds = 1 };
	struct fdh_client_resp resp;
	struct fdh_client *c;
	int before = fdh_test_count_fds(0), svc_before, mem, i, fd0 = -1;

	(void)state;
	mem = fdh_test_make_memfd("m");
	assert_true(mem >= 0);
	nfd[0] = (struct fdh_named_fd){ "m", mem };
	c = connect_echo();
	fd0 = fdh_client_fd(c);
	/* A first exchange, so that the baseline includes the accepted connection. */
	assert_int_equal(fdh_client_request(c, &ping, &resp), 0);
	fdh_client_resp_release(&resp);
	svc_before = fdh_test_count_fds(echo_proc.pid);
	for (i = 0; i < 1000; i++) {
		bool with_fd = i % 10 == 9;

		assert_int_equal(fdh_client_request(c, with_fd ? &echo_fd : &ping, &resp), 0);
		assert_int_equal(resp.status, 200);
		assert_false(resp.closed);
		if (with_fd) {
			assert_string_equal(resp.body, "e");
			assert_int_equal(resp.nfds, 1);
			assert_true(fdh_test_same_file(resp.fds[0].fd, mem));
		} else {
			assert_string_equal(resp.body, "pong");
			assert_int_equal(resp.nfds, 0);
		}
		fdh_client_resp_release(&resp);
	}
	assert_int_equal(fdh_client_fd(c), fd0);
	assert_int_equal(fdh_test_wait_fd_count(echo_proc.pid, svc_before, 2000), svc_before);
	fdh_client_free(c);
	close(mem);
	assert_int_equal(fdh_test_count_fds(0), before);
}

/* Several clients at once, interleaved: the service keeps each one's answers apart. */
static void
test_interleaved_clients(void **state)
{
	enum { N = 8 };
	struct fdh_client *c[N];
	struct fdh_client_req req = { .method = "POST", .target = "/echo" };
	struct fdh_client_resp resp;
	char body[32];
	int i, round;

	(void)state;
	for (i = 0; i < N; i++)
		c[i] = connect_echo();
	for (round = 0; round < 20; round++) {
		for (i = 0; i < N; i++) {
			snprintf(body, sizeof(body), "client %d round %d", i, round);
			req.body = body;
			req.body_len = strlen(body);
			assert_int_equal(fdh_client_request(c[i], &req, &resp), 0);
			assert_string_equal(resp.body, body);
			fdh_client_resp_release(&resp);
		}
	}
	for (i = 0; i < N; i++)
		fdh_client_free(c[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_health),
		cmocka_unit_test(test_head_health),
		cmocka_unit_test(test_ping),
		cmocka_unit_test(test_echo_fds),
		cmocka_unit_test(test_echo_max_fds),
		cmocka_unit_test(test_echo_big_body),
		cmocka_unit_test(test_echo_expect_continue),
		cmocka_unit_test(test_fd_read),
		cmocka_unit_test(test_fd_memfd),
		cmocka_unit_test(test_whoami),
		cmocka_unit_test(test_sandbox_alone),
		cmocka_unit_test(test_not_found),
		cmocka_unit_test(test_method_not_allowed),
		cmocka_unit_test(test_connection_close),
		cmocka_unit_test(test_keepalive_1000),
		cmocka_unit_test(test_interleaved_clients),
	};

	return cmocka_run_group_tests(tests, start_echo, stop_echo);
}
