/*
 * cmocka checks over raw exchanges with a service: see expect.h.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "expect.h"

void
fdh_expect_print_bytes(const char *what, const char *p, size_t len)
{
	size_t i;

	if (!p)
		len = 0;
	print_error("%s (%zu bytes): \"", what, len);
	/* Enough to see what went wrong without flooding the log with a body. */
	for (i = 0; i < len && i < 600; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (ch == '\r')
			print_error("\\r");
		else if (ch == '\n')
			print_error("\\n");
		else if (ch < ' ' || ch > '~')
			print_error("\\x%02x", ch);
		else
			print_error("%c", ch);
	}
	print_error("%s\"\n", i < len ? "..." : "");
}

int
fdh_expect_connect(const struct fdh_test_proc *p)
{
	int fd = fdh_test_connect(p->sock, FDH_EXPECT_IO_MS);

	if (fd < 0)
		print_error("connect %s: %s\n", p->sock, strerror(-fd));
	assert_true(fd >= 0);
	return fd;
}

void
fdh_expect_send_len(int sock, const void *buf, size_t len, const int *fds, size_t nfds)
{
	int r = fdh_test_send_all(sock, buf, len, fds, nfds);

	if (r < 0)
		print_error("send of %zu bytes with %zu fds: %s\n", len, nfds, strerror(-r));
	assert_int_equal(r, 0);
}

void
fdh_expect_send(int sock, const char *s)
{
	fdh_expect_send_len(sock, s, strlen(s), NULL, 0);
}

void
fdh_expect_send_fds(int sock, const char *s, const int *fds, size_t nfds)
{
	fdh_expect_send_len(sock, s, strlen(s), fds, nfds);
}

void
fdh_expect_read_resp_within(int sock, int ms, struct fdh_test_msg *m)
{
	int r = fdh_test_read_message(sock, ms, m);

	if (r != 0) {
		print_error("no whole response within %d ms: %s\n", ms, strerror(-r));
		fdh_expect_print_bytes("received", m->data, m->len);
	}
	assert_int_equal(r, 0);
}

void
fdh_expect_read_resp(int sock, struct fdh_test_msg *m)
{
	fdh_expect_read_resp_within(sock, FDH_EXPECT_IO_MS, m);
}

void
fdh_expect_status(const struct fdh_test_msg *m, int status)
{
	if (m->status != status) {
		print_error("expected status %d\n", status);
		fdh_expect_print_bytes("received", m->data, m->len);
	}
	assert_int_equal(m->status, status);
}

void
fdh_expect_answer(int sock, const char *req, int status, struct fdh_test_msg *m)
{
	fdh_expect_send(sock, req);
	fdh_expect_read_resp(sock, m);
	fdh_expect_status(m, status);
}

bool
fdh_expect_has_header(const struct fdh_test_msg *m, const char *name, const char *value)
{
	char v[256];

	return fdh_test_msg_header(m, name, v, sizeof(v)) == 0 && strcasecmp(v, value) == 0;
}

bool
fdh_expect_has_close(const struct fdh_test_msg *m)
{
	return fdh_expect_has_header(m, "Connection", "close");
}

void
fdh_expect_close_header(const struct fdh_test_msg *m, bool want)
{
	if (fdh_expect_has_close(m) != want) {
		print_error("expected %s Connection: close\n", want ? "a" : "no");
		fdh_expect_print_bytes("received", m->data, m->len);
	}
	assert_true(fdh_expect_has_close(m) == want);
}

/*
 * Nothing arrives on sock within ms: the server closes it when closes is
 * set, and otherwise keeps it open.
 */
static void
expect_no_bytes(int sock, int ms, bool closes)
{
	struct fdh_test_msg m;
	int r = fdh_test_read_all(sock, ms, &m);
	bool ended;

	/* A reset is a close too: the server may drop unread bytes of ours. */
	if (closes && r == -ECONNRESET) {
		r = 0;
		m.eof = true;
	}
	ended = closes ? m.eof : m.timed_out;
	if (r != 0 || !ended || m.len != 0) {
		if (closes)
			print_error("expected the server to close");
		else
			print_error("expected silence for %d ms", ms);
		print_error(" (r=%d eof=%d timed_out=%d)\n", r, (int)m.eof, (int)m.timed_out);
		fdh_expect_print_bytes(closes ? "received after the response" : "received", m.data,
		    m.len);
	}
	assert_int_equal(r, 0);
	assert_true(ended);
	assert_int_equal(m.len, 0);
	fdh_test_msg_free(&m);
}

void
fdh_expect_closed(int sock)
{
	expect_no_bytes(sock, FDH_EXPECT_IO_MS, true);
}

void
fdh_expect_quiet(int sock, int ms)
{
	expect_no_bytes(sock, ms, false);
}

void
fdh_expect_error_body(const struct fdh_test_msg *m)
{
	const char *b = fdh_test_msg_body(m);
	char ct[128];

	if (fdh_test_msg_header(m, "Content-Type", ct, sizeof(ct)) != 0 ||
	    strncasecmp(ct, "text/plain", 10) != 0 || m->body_len < 2 ||
	    b[m->body_len - 1] != '\n' || memchr(b, '\n', m->body_len - 1) != NULL) {
		print_error("expected a one-line text/plain body\n");
		fdh_expect_print_bytes("received", m->data, m->len);
		fail();
	}
}

void
fdh_expect_health(int sock)
{
	struct fdh_test_msg m;

	fdh_expect_answer(sock, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 200, &m);
	assert_string_equal(fdh_test_msg_body(&m), "ok");
	fdh_expect_close_header(&m, false);
	fdh_test_msg_free(&m);
}

void
fdh_expect_refusal(int sock, const char *req, size_t len, size_t nfds, int status,
    struct fdh_test_msg *m)
{
	if (fdh_test_read_message(sock, FDH_EXPECT_IO_MS, m) != 0 || m->status != status ||
	    !fdh_expect_has_close(m)) {
		fdh_expect_print_bytes("request", req, len);
		print_error("sent with %zu fds: expected %d with Connection: close\n", nfds, status);
		fdh_expect_print_bytes("received", m->data, m->len);
		fail();
	}
	fdh_expect_error_body(m);
	fdh_expect_closed(sock);
}
