/*
 * Responses (CONTRACT sections 2 and 3): headers a handler may and may not
 * set, the exact bytes of the head, fds owned by the response, borrowed
 * bodies released once, the framework's one-line error bodies.
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
#include <unistd.h>

#include <cmocka.h>

#include <fdhttp/service.h>
#include "harness.h"
#include "resp.h"

struct fixture {
	struct fdh_resp r;
	int open_fds;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->open_fds = 5;	/* the dispatcher's count of what it holds already */
	if (fdh_resp_init(&f->r, 2, &f->open_fds) != 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	fdh_resp_free(&f->r);
	free(f);
	return 0;
}

/* The head as a NUL-terminated string (static storage). */
static const char *
head_of(struct fdh_resp *r, bool close, bool keep_alive_10)
{
	static char buf[16384];
	const char *head = NULL;
	size_t len = 0;

	assert_int_equal(fdh_resp_finish_head(r, close, keep_alive_10, &head, &len), 0);
	assert_non_null(head);
	assert_true(len < sizeof(buf));
	memcpy(buf, head, len);
	buf[len] = '\0';
	/* The head is all the length says, no NUL inside. */
	assert_int_equal(strlen(buf), len);
	return buf;
}

static bool
fd_closed(int fd)
{
	errno = 0;
	return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

static int
new_fd(void)
{
	int fd = fdh_test_make_memfd("x");

	assert_true(fd >= 0);
	return fd;
}

/* --- headers ------------------------------------------------------------- */

static void
test_header_refuses_cr_lf(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(fdh_resp_header(&f->r, "X-A", "a\r\nX-Injected: 1"), -EINVAL);
	assert_int_equal(fdh_resp_header(&f->r, "X-A", "a\nb"), -EINVAL);
	assert_int_equal(fdh_resp_header(&f->r, "X-A", "a\rb"), -EINVAL);
	assert_int_equal(fdh_resp_header(&f->r, "X-A", "\r\n"), -EINVAL);
	assert_int_equal(fdh_resp_header(&f->r, "X-A", "trailing\n"), -EINVAL);
	/* A value from fdh_req_header() for a field the request lacks. */
	assert_int_equal(fdh_resp_header(&f->r, "X-A", NULL), -EINVAL);
	assert_int_equal(fdh_resp_header(&f->r, NULL, "v"), -EINVAL);
	/* Nothing of them reached the head. */
	assert_string_equal(head_of(&f->r, false, false),
	    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
}

static void
test_header_refuses_non_token_names(void **state)
{
	static const char *const bad[] = {
		"", "X A", "X:A", "X-A:", " X", "X\t", "X(A)", "X,A", "X/A", "X;A", "X=A",
		"X\"A", "X@A", "X[A]", "X{A}", "X?", "X\\A", "X\r\nY", "caf\xc3\xa9", "X\x7f",
		"X\x01",
	};
	struct fixture *f = *state;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (fdh_resp_header(&f->r, bad[i], "v") != -EINVAL)
			fail_msg("header name \"%s\" was accepted", bad[i]);
	}
	assert_string_equal(head_of(&f->r, false, false),
	    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	/* Every tchar is fine. */
	assert_int_equal(fdh_resp_header(&f->r, "!#$%&'*+-.^_`|~09azAZ", "v"), 0);
}

static void
test_header_refuses_framing_names(void **state)
{
	static const char *const owned[] = {
		"Content-Length", "content-length", "CONTENT-LENGTH", "Content-length",
		"Transfer-Encoding", "transfer-encoding", "TRANSFER-ENCODING",
		"Connection", "connection", "CoNNecTioN",
		"X-FD", "x-fd", "X-Fd", "x-FD",
	};
	struct fixture *f = *state;
	size_t i;

	for (i = 0; i < sizeof(owned) / sizeof(owned[0]); i++) {
		if (fdh_resp_header(&f->r, owned[i], "1") != -EINVAL)
			fail_msg("framework header \"%s\" was accepted", owned[i]);
	}
	assert_string_equal(head_of(&f->r, false, false),
	    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	/* Names that merely contain them are the handler's. */
	assert_int_equal(fdh_resp_header(&f->r, "X-Content-Length", "1"), 0);
	assert_int_equal(fdh_resp_header(&f->r, "Connection-Info", "1"), 0);
	assert_int_equal(fdh_resp_header(&f->r, "X-FDs", "1"), 0);
}

/* --- the head ------------------------------------------------------------ */

static void
test_head_exact_bytes(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(fdh_resp_header(&f->r, "Content-Type", "text/plain"), 0);
	assert_int_equal(fdh_resp_header(&f->r, "X-B", "2"), 0);
	assert_int_equal(fdh_resp_header(&f->r, "X-A", ""), 0);
	assert_int_equal(fdh_resp_body(&f->r, "hello", 5), 0);
	assert_string_equal(head_of(&f->r, false, false),
	    "HTTP/1.1 200 OK\r\n"
	    "Content-Type: text/plain\r\n"
	    "X-B: 2\r\n"
	    "X-A: \r\n"
	    "Content-Length: 5\r\n"
	    "\r\n");
}

static void
test_head_connection(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(fdh_resp_body(&f->r, "ok", 2), 0);
	assert_string_equal(head_of(&f->r, true, false),
	    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n");
	fdh_resp_reset(&f->r);
	assert_int_equal(fdh_resp_body(&f->r, "ok", 2), 0);
	assert_string_equal(head_of(&f->r, false, true),
	    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n");
	/* Closing wins over an HTTP/1.0 keep-alive. */
	fdh_resp_reset(&f->r);
	assert_string_equal(head_of(&f->r, true, true),
	    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

static void
test_head_with_fds(void **state)
{
	struct fixture *f = *state;

	fdh_resp_status(&f->r, 201);
	assert_int_equal(fdh_resp_header(&f->r, "X-Z", "last"), 0);
	assert_int_equal(fdh_resp_fd(&f->r, "a", new_fd()), 0);
	assert_int_equal(fdh_resp_fd(&f->r, "b", new_fd()), 0);
	assert_int_equal(fdh_resp_body(&f->r, "0123456789", 10), 0);
	assert_string_equal(head_of(&f->r, true, false),
	    "HTTP/1.1 201 Created\r\n"
	    "X-Z: last\r\n"
	    "Content-Length: 10\r\n"
	    "Connection: close\r\n"
	    "X-FD: a,b\r\n"
	    "\r\n");
}

static void
test_head_status_lines(void **state)
{
	struct fixture *f = *state;

	fdh_resp_status(&f->r, 404);
	assert_string_equal(head_of(&f->r, false, false),
	    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
	fdh_resp_reset(&f->r);
	fdh_resp_status(&f->r, 431);
	assert_string_equal(head_of(&f->r, false, false),
	    "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n");
	/* An unknown status: no reason, the space before it still there. */
	fdh_resp_reset(&f->r);
	fdh_resp_status(&f->r, 299);
	assert_string_equal(head_of(&f->r, false, false),
	    "HTTP/1.1 299 \r\nContent-Length: 0\r\n\r\n");
	fdh_resp_reset(&f->r);
	fdh_resp_status(&f->r, 599);
	assert_int_equal(fdh_resp_header(&f->r, "X-A", "b"), 0);
	assert_string_equal(head_of(&f->r, false, false),
	    "HTTP/1.1 599 \r\nX-A: b\r\nContent-Length: 0\r\n\r\n");
	/*
	 * A 1xx is no final answer: a client would wait for the one after it,
	 * or read the body as its head.
	 */
	fdh_resp_reset(&f->r);
	fdh_resp_status(&f->r, 101);
	assert_string_equal(head_of(&f->r, false, false),
	    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
	assert_string_equal(fdh_status_reason(299), "");
	assert_string_equal(fdh_status_reason(413), "Content Too Large");
}

/* The head of an empty response of status s, as it must read. */
static const char *
want_head(int s, const char *extra)
{
	static char want[256];
	int shown = s < 200 || s > 999 ? 500 : s;

	/*
	 * A status out of range, or an interim one, is sent as 500, and reads
	 * as one.  204 and 304 have no Content-Length (RFC 9110 8.6).
	 */
	snprintf(want, sizeof(want), "HTTP/1.1 %d %s\r\n%s%s\r\n", shown,
	    fdh_status_reason(shown), extra,
	    shown == 204 || shown == 304 ? "" : "Content-Length: 0\r\n");
	return want;
}

static void
test_head_status_changes(void **state)
{
	static const int seq[] = {
		200, 200, 404, 404, 200, 431, 204, 431, 100, 0, 500, -1, 1000, 999, 299, 200,
		505, 200, 204, 204, 304, 200,
	};
	struct fixture *f = *state;
	const char *prefix;
	char name[32];
	size_t i;
	int k;

	/* One response after another, as a connection sends them; each status line its own. */
	for (i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
		fdh_resp_reset(&f->r);
		fdh_resp_status(&f->r, seq[i]);
		assert_string_equal(head_of(&f->r, false, false), want_head(seq[i], ""));
		/* The same response again, its head finished twice. */
		assert_string_equal(head_of(&f->r, false, false), want_head(seq[i], ""));
	}
	/* The same status after the header buffer grew (moved), and after it. */
	fdh_resp_reset(&f->r);
	for (k = 0; k < 100; k++) {
		snprintf(name, sizeof(name), "X-Grow-%d", k);
		assert_int_equal(fdh_resp_header(&f->r, name, "a value to fill the buffer"), 0);
	}
	assert_true(f->r.hcap > 1024);
	prefix = "HTTP/1.1 200 OK\r\nX-Grow-0: a value";
	assert_int_equal(strncmp(head_of(&f->r, false, false), prefix, strlen(prefix)), 0);
	fdh_resp_reset(&f->r);
	assert_int_equal(fdh_resp_header(&f->r, "X-A", "b"), 0);
	assert_string_equal(head_of(&f->r, false, false), want_head(200, "X-A: b\r\n"));
	fdh_resp_reset(&f->r);
	fdh_resp_status(&f->r, 413);
	assert_string_equal(head_of(&f->r, false, false), want_head(413, ""));
}

static void
release_nothing(const void *data, void *ctx)
{
	(void)data;
	(void)ctx;
}

static void
test_head_content_lengths(void **state)
{
	static const unsigned long long lens[] = {
		0, 1, 9, 10, 11, 19, 42, 99, 100, 101, 109, 110, 999, 1000, 1001, 4096, 9999,
		10000, 12345, 65535, 65536, 99999, 100000, 1048576, 4294967295ULL, 4294967296ULL,
		999999999999ULL, 1000000000000ULL, 10000000000000000000ULL,
		18446744073709551615ULL,
	};
	struct fixture *f = *state;
	char want[128];
	unsigned long long v;
	size_t i;
	int k;

	/* A borrowed body only has to say its length: any length will do here. */
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		fdh_resp_reset(&f->r);
		assert_int_equal(fdh_resp_body_borrow(&f->r, "", (size_t)lens[i], release_nothing,
		    NULL), 0);
		snprintf(want, sizeof(want), "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n\r\n",
		    lens[i]);
		assert_string_equal(head_of(&f->r, false, false), want);
	}
	/* Every power of ten and its neighbours. */
	for (k = 0, v = 1; k < 20; k++, v *= 10) {
		unsigned long long n;

		for (n = v - 1; n <= v + 1; n++) {
			fdh_resp_reset(&f->r);
			assert_int_equal(fdh_resp_body_borrow(&f->r, "", (size_t)n, release_nothing,
			    NULL), 0);
			snprintf(want, sizeof(want),
			    "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n\r\n", n);
			assert_string_equal(head_of(&f->r, false, false), want);
		}
	}
	fdh_resp_reset(&f->r);
}

static void
test_head_room_at_the_edge(void **state)
{
	struct fixture *f = *state;
	char *value, *want, a[FDH_FD_NAME_MAX + 1], b[FDH_FD_NAME_MAX + 1];
	size_t target, vlen, wlen;
	int k, fds;

	memset(a, 'a', FDH_FD_NAME_MAX);
	a[FDH_FD_NAME_MAX] = '\0';
	memset(b, 'b', FDH_FD_NAME_MAX);
	b[FDH_FD_NAME_MAX] = '\0';
	/*
	 * The longest lines the framework adds (a 20-digit Content-Length,
	 * Connection: keep-alive, X-FD with the longest names), after header
	 * lines that end anywhere from 260 bytes before the end of the buffer
	 * to past it: ASan sees any byte written past the buffer.
	 */
	for (fds = 0; fds <= 2; fds++) {
		for (k = -260; k <= 8; k++) {
			/* A new response each time, its header buffer as first made. */
			fdh_resp_free(&f->r);
			assert_int_equal(fdh_resp_init(&f->r, 2, &f->open_fds), 0);
			target = f->r.hcap + (size_t)(ssize_t)k;	/* where the handler's lines end */
			vlen = target - f->r.hlen - strlen("X-Pad: \r\n");
			wlen = target + 512;
			value = malloc(vlen + 1);
			want = malloc(wlen);
			assert_non_null(value);
			assert_non_null(want);
			memset(value, 'v', vlen);
			value[vlen] = '\0';
			assert_int_equal(fdh_resp_header(&f->r, "X-Pad", value), 0);
			assert_int_equal(f->r.hlen, target);
			assert_int_equal(fdh_resp_body_borrow(&f->r, "", SIZE_MAX, release_nothing, NULL),
			    0);
			if (fds > 0)
				assert_int_equal(fdh_resp_fd(&f->r, a, new_fd()), 0);
			if (fds > 1)
				assert_int_equal(fdh_resp_fd(&f->r, b, new_fd()), 0);
			snprintf(want, wlen, "HTTP/1.1 200 OK\r\nX-Pad: %s\r\n"
			    "Content-Length: %zu\r\nConnection: keep-alive\r\n%s%s%s%s%s\r\n", value,
			    (size_t)SIZE_MAX, fds ? "X-FD: " : "", fds ? a : "", fds > 1 ? "," : "",
			    fds > 1 ? b : "", fds ? "\r\n" : "");
			assert_string_equal(head_of(&f->r, false, true), want);
			free(value);
			free(want);
		}
	}
	fdh_resp_reset(&f->r);
}

/*
 * A body copied behind the head (what goes out as one send()): every
 * length the copy treats apart, after header lines ending anywhere near
 * the end of the buffer.  The bytes are head then body; ASan sees any
 * byte written past the buffer.
 */
static void
test_inline_body_at_the_edge(void **state)
{
	static const size_t lens[] = { 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 100, FDH_RESP_INLINE_MAX };
	struct fixture *f = *state;
	char body[FDH_RESP_INLINE_MAX], *value, *want;
	const char *head;
	size_t i, target, vlen, hlen, len;
	int k;

	for (i = 0; i < sizeof(body); i++)
		body[i] = (char)('A' + i % 26);
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		for (k = -400; k <= 8; k += 3) {
			fdh_resp_free(&f->r);
			assert_int_equal(fdh_resp_init(&f->r, 2, &f->open_fds), 0);
			target = f->r.hcap + (size_t)(ssize_t)k;
			vlen = target - f->r.hlen - strlen("X-Pad: \r\n");
			value = malloc(vlen + 1);
			want = malloc(target + 512);
			assert_non_null(value);
			assert_non_null(want);
			memset(value, 'v', vlen);
			value[vlen] = '\0';
			assert_int_equal(fdh_resp_header(&f->r, "X-Pad", value), 0);
			assert_int_equal(fdh_resp_body(&f->r, body, lens[i]), 0);
			assert_int_equal(fdh_resp_finish_head(&f->r, false, false, &head, &hlen), 0);
			len = fdh_resp_inline_body(&f->r, head, hlen, fdh_resp_body_ptr(&f->r),
			    lens[i]);
			assert_int_equal(len, hlen + lens[i]);
			snprintf(want, target + 512,
			    "HTTP/1.1 200 OK\r\nX-Pad: %s\r\nContent-Length: %zu\r\n\r\n%.*s",
			    value, lens[i], (int)lens[i], body);
			assert_int_equal(len, strlen(want));
			assert_memory_equal(head, want, len);
			free(value);
			free(want);
		}
	}
	fdh_resp_reset(&f->r);
}

static void
test_head_many_headers(void **state)
{
	struct fixture *f = *state;
	char name[32], value[64], want[8192], *p = want;
	int i;

	/* Well past the first header buffer. */
	p += sprintf(p, "HTTP/1.1 200 OK\r\n");
	for (i = 0; i < 60; i++) {
		snprintf(name, sizeof(name), "X-Header-%d", i);
		snprintf(value, sizeof(value), "value number %d, padded out a bit", i);
		assert_int_equal(fdh_resp_header(&f->r, name, value), 0);
		p += sprintf(p, "%s: %s\r\n", name, value);
	}
	assert_int_equal(fdh_resp_fd(&f->r, "in", new_fd()), 0);
	p += sprintf(p, "Content-Length: 0\r\nConnection: close\r\nX-FD: in\r\n\r\n");
	assert_true(strlen(want) > 2048);
	assert_string_equal(head_of(&f->r, true, false), want);
}

static void
test_head_after_reset(void **state)
{
	struct fixture *f = *state;

	fdh_resp_status(&f->r, 500);
	assert_int_equal(fdh_resp_header(&f->r, "X-Old", "1"), 0);
	assert_int_equal(fdh_resp_fd(&f->r, "a", new_fd()), 0);
	assert_int_equal(fdh_resp_body(&f->r, "old", 3), 0);
	(void)head_of(&f->r, false, false);
	fdh_resp_reset(&f->r);
	/* An empty 200 again: no header, fd or body of before. */
	assert_string_equal(head_of(&f->r, false, false),
	    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(fdh_resp_body_len(&f->r), 0);
}

/* --- fds ----------------------------------------------------------------- */

static void
test_fd_consumed_on_failure(void **state)
{
	struct fixture *f = *state;
	char n65[70];
	int fd;

	memset(n65, 'n', 65);
	n65[65] = '\0';

	fd = new_fd();
	assert_int_equal(fdh_resp_fd(&f->r, "bad name", fd), -EINVAL);
	assert_true(fd_closed(fd));

	fd = new_fd();
	assert_int_equal(fdh_resp_fd(&f->r, "", fd), -EINVAL);
	assert_true(fd_closed(fd));

	/* fdh_req_fd_name() past the end, passed on unchecked. */
	fd = new_fd();
	assert_int_equal(fdh_resp_fd(&f->r, NULL, fd), -EINVAL);
	assert_true(fd_closed(fd));

	fd = new_fd();
	assert_int_equal(fdh_resp_fd(&f->r, n65, fd), -EINVAL);
	assert_true(fd_closed(fd));

	fd = new_fd();
	assert_int_equal(fdh_resp_fd(&f->r, "a,b", fd), -EINVAL);
	assert_true(fd_closed(fd));
	assert_int_equal(f->open_fds, 5);

	fd = new_fd();
	assert_int_equal(fdh_resp_fd(&f->r, "out", fd), 0);
	assert_false(fd_closed(fd));
	assert_int_equal(f->open_fds, 6);

	/* A repeated name. */
	fd = new_fd();
	assert_int_equal(fdh_resp_fd(&f->r, "out", fd), -EINVAL);
	assert_true(fd_closed(fd));
	assert_int_equal(f->open_fds, 6);

	fd = new_fd();
	assert_int_equal(fdh_resp_fd(&f->r, "err", fd), 0);
	assert_int_equal(f->open_fds, 7);

	/* The same fd again: it would go twice and be closed twice.  It stays attached once. */
	assert_int_equal(fdh_resp_fd(&f->r, "again", fd), -EEXIST);
	assert_false(fd_closed(fd));
	assert_int_equal(f->open_fds, 7);

	/* max_fds is 2 here. */
	fd = new_fd();
	assert_int_equal(fdh_resp_fd(&f->r, "third", fd), -E2BIG);
	assert_true(fd_closed(fd));
	assert_int_equal(f->open_fds, 7);

	/* The failures left the two good ones in place. */
	assert_string_equal(head_of(&f->r, false, false),
	    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-FD: out,err\r\n\r\n");
	assert_int_equal(fdh_resp_fd(&f->r, "neg", -1), -EBADF);
	assert_int_equal(f->open_fds, 7);
}

static void
test_reset_closes_fds(void **state)
{
	struct fixture *f = *state;
	int a = new_fd(), b = new_fd();

	assert_int_equal(fdh_resp_fd(&f->r, "a", a), 0);
	assert_int_equal(fdh_resp_fd(&f->r, "b", b), 0);
	assert_int_equal(f->open_fds, 7);
	fdh_resp_reset(&f->r);
	assert_true(fd_closed(a));
	assert_true(fd_closed(b));
	assert_int_equal(f->open_fds, 5);
	/* Nothing left to close twice. */
	fdh_resp_reset(&f->r);
	assert_int_equal(f->open_fds, 5);
	/* And the names are free again. */
	a = new_fd();
	assert_int_equal(fdh_resp_fd(&f->r, "a", a), 0);
	assert_int_equal(f->open_fds, 6);
}

static void
test_free_closes_fds(void **state)
{
	struct fdh_resp r;
	int open_fds = 0, a = new_fd();

	(void)state;
	assert_int_equal(fdh_resp_init(&r, 4, &open_fds), 0);
	assert_int_equal(fdh_resp_fd(&r, "a", a), 0);
	assert_int_equal(open_fds, 1);
	fdh_resp_free(&r);
	assert_true(fd_closed(a));
	assert_int_equal(open_fds, 0);
}

static void
test_max_fds_zero(void **state)
{
	struct fdh_resp r;
	int open_fds = 0, a = new_fd();

	(void)state;
	assert_int_equal(fdh_resp_init(&r, 0, &open_fds), 0);
	assert_int_equal(fdh_resp_fd(&r, "a", a), -E2BIG);
	assert_true(fd_closed(a));
	assert_int_equal(open_fds, 0);
	fdh_resp_free(&r);
}

/* --- borrowed bodies ----------------------------------------------------- */

struct release_log {
	int calls;
	const void *last;
};

static void
on_release(const void *data, void *ctx)
{
	struct release_log *log = ctx;

	log->calls++;
	log->last = data;
}

static void
test_borrow_released_once_on_reset(void **state)
{
	static const char data[] = "borrowed body";
	struct fixture *f = *state;
	struct release_log log = { 0, NULL };

	assert_int_equal(fdh_resp_body_borrow(&f->r, data, 13, on_release, &log), 0);
	assert_ptr_equal(fdh_resp_body_ptr(&f->r), data);
	assert_int_equal(fdh_resp_body_len(&f->r), 13);
	assert_string_equal(head_of(&f->r, false, false),
	    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n");
	assert_int_equal(log.calls, 0);
	fdh_resp_reset(&f->r);
	assert_int_equal(log.calls, 1);
	assert_ptr_equal(log.last, data);
	fdh_resp_reset(&f->r);
	assert_int_equal(log.calls, 1);
	assert_int_equal(fdh_resp_body_len(&f->r), 0);
}

static void
test_borrow_released_once_on_replacement(void **state)
{
	static const char one[] = "one", two[] = "two!";
	struct fixture *f = *state;
	struct release_log l1 = { 0, NULL }, l2 = { 0, NULL };

	assert_int_equal(fdh_resp_body_borrow(&f->r, one, 3, on_release, &l1), 0);
	assert_int_equal(fdh_resp_body_borrow(&f->r, two, 4, on_release, &l2), 0);
	assert_int_equal(l1.calls, 1);
	assert_ptr_equal(l1.last, one);
	assert_int_equal(l2.calls, 0);
	assert_ptr_equal(fdh_resp_body_ptr(&f->r), two);
	assert_int_equal(fdh_resp_body_len(&f->r), 4);

	/* A copied body replaces it too. */
	assert_int_equal(fdh_resp_body(&f->r, "copy", 4), 0);
	assert_int_equal(l2.calls, 1);
	assert_ptr_equal(l2.last, two);
	assert_memory_equal(fdh_resp_body_ptr(&f->r), "copy", 4);

	fdh_resp_reset(&f->r);
	assert_int_equal(l1.calls, 1);
	assert_int_equal(l2.calls, 1);
}

static void
test_borrow_released_once_on_error_and_free(void **state)
{
	static const char data[] = "abc";
	struct fixture *f = *state;
	struct release_log log = { 0, NULL };
	struct fdh_resp r;
	int open_fds = 0;

	assert_int_equal(fdh_resp_body_borrow(&f->r, data, 3, on_release, &log), 0);
	fdh_resp_error(&f->r, 500, "handler failed");
	assert_int_equal(log.calls, 1);
	fdh_resp_reset(&f->r);
	assert_int_equal(log.calls, 1);

	assert_int_equal(fdh_resp_init(&r, 1, &open_fds), 0);
	assert_int_equal(fdh_resp_body_borrow(&r, data, 3, on_release, &log), 0);
	fdh_resp_free(&r);
	assert_int_equal(log.calls, 2);

	/* No release function: static data, nothing to call. */
	assert_int_equal(fdh_resp_body_borrow(&f->r, data, 3, NULL, NULL), 0);
	assert_int_equal(fdh_resp_body_len(&f->r), 3);
	fdh_resp_reset(&f->r);
	assert_int_equal(log.calls, 2);
}

/* --- bodies -------------------------------------------------------------- */

static void
test_printf_appends_and_grows(void **state)
{
	struct fixture *f = *state;
	char *big, *want;
	size_t i, len;

	big = malloc(10001);
	want = malloc(20100);
	assert_non_null(big);
	assert_non_null(want);
	for (i = 0; i < 10000; i++)
		big[i] = (char)('a' + i % 26);
	big[10000] = '\0';

	assert_int_equal(fdh_resp_body(&f->r, "start:", 6), 0);
	assert_int_equal(fdh_resp_printf(&f->r, "%d-%s;", 42, "x"), 0);
	assert_int_equal(fdh_resp_body_len(&f->r), 11);
	assert_memory_equal(fdh_resp_body_ptr(&f->r), "start:42-x;", 11);

	/* 10000 bytes in one call: past the 4096 the buffer starts with. */
	assert_int_equal(fdh_resp_printf(&f->r, "%s", big), 0);
	assert_int_equal(fdh_resp_printf(&f->r, "|%05u|", 7u), 0);
	assert_int_equal(fdh_resp_append(&f->r, "end", 3), 0);
	len = (size_t)sprintf(want, "start:42-x;%s|00007|end", big);
	assert_int_equal(fdh_resp_body_len(&f->r), len);
	assert_memory_equal(fdh_resp_body_ptr(&f->r), want, len);
	assert_int_equal(len, 11 + 10000 + 7 + 3);
	free(big);
	free(want);
}

static void
test_printf_at_the_buffer_edge(void **state)
{
	static const char tail[] = "ABCD";
	struct fdh_resp r;
	char fill[4096];
	const char *b;
	size_t k;
	int open_fds = 0;

	(void)state;
	memset(fill, 'f', sizeof(fill));
	/* A fresh 4096-byte buffer with k bytes free, then k bytes of printf, then 2 more. */
	for (k = 1; k <= 3; k++) {
		assert_int_equal(fdh_resp_init(&r, 1, &open_fds), 0);
		assert_int_equal(fdh_resp_body(&r, fill, 4096 - k), 0);
		assert_int_equal(fdh_resp_printf(&r, "%s", tail + 4 - k), 0);
		assert_int_equal(fdh_resp_body_len(&r), 4096);
		assert_int_equal(fdh_resp_printf(&r, "%s", "xy"), 0);
		assert_int_equal(fdh_resp_body_len(&r), 4098);
		b = fdh_resp_body_ptr(&r);
		assert_memory_equal(b, fill, 4096 - k);
		assert_memory_equal(b + 4096 - k, tail + 4 - k, k);
		assert_memory_equal(b + 4096, "xy", 2);
		fdh_resp_free(&r);
	}
}

/* NULL data with a length: refused, and the body there stays. */
static void
test_null_data_refused(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(fdh_resp_body(&f->r, "kept", 4), 0);
	assert_int_equal(fdh_resp_body(&f->r, NULL, 5), -EINVAL);
	assert_int_equal(fdh_resp_append(&f->r, NULL, 3), -EINVAL);
	assert_int_equal(fdh_resp_append(&f->r, NULL, 0), 0);
	assert_int_equal(f->r.blen, 4);
	assert_memory_equal(f->r.bbuf, "kept", 4);
	assert_int_equal(fdh_resp_body(&f->r, NULL, 0), 0);
	assert_int_equal(f->r.blen, 0);
}

static void
test_body_replaces(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(fdh_resp_body(&f->r, "first body", 10), 0);
	assert_int_equal(fdh_resp_body(&f->r, "2nd", 3), 0);
	assert_int_equal(fdh_resp_body_len(&f->r), 3);
	assert_memory_equal(fdh_resp_body_ptr(&f->r), "2nd", 3);
	assert_int_equal(fdh_resp_append(&f->r, "+", 1), 0);
	assert_int_equal(fdh_resp_body_len(&f->r), 4);
	assert_memory_equal(fdh_resp_body_ptr(&f->r), "2nd+", 4);
}

/* --- framework errors ---------------------------------------------------- */

static void
test_error_body(void **state)
{
	struct fixture *f = *state;
	const char *body;
	size_t len;
	int a = new_fd();

	/* Whatever the handler had put in goes. */
	assert_int_equal(fdh_resp_header(&f->r, "X-Handler", "1"), 0);
	assert_int_equal(fdh_resp_body(&f->r, "partial", 7), 0);
	assert_int_equal(fdh_resp_fd(&f->r, "a", a), 0);
	fdh_resp_error(&f->r, 404, "no route for /nothing");
	assert_true(fd_closed(a));
	assert_int_equal(f->open_fds, 5);

	body = fdh_resp_body_ptr(&f->r);
	len = fdh_resp_body_len(&f->r);
	assert_int_equal(len, 22);
	assert_memory_equal(body, "no route for /nothing\n", 22);
	/* One line: the only newline ends it. */
	assert_ptr_equal(memchr(body, '\n', len), body + len - 1);
	assert_null(memchr(body, '\r', len));
	assert_string_equal(head_of(&f->r, true, false),
	    "HTTP/1.1 404 Not Found\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: 22\r\n"
	    "Connection: close\r\n"
	    "\r\n");
}

static void
test_error_after_error(void **state)
{
	struct fixture *f = *state;

	fdh_resp_error(&f->r, 400, "first");
	fdh_resp_error(&f->r, 431, "request head is larger than 8192 bytes");
	assert_int_equal(fdh_resp_body_len(&f->r), 39);
	assert_memory_equal(fdh_resp_body_ptr(&f->r),
	    "request head is larger than 8192 bytes\n", 39);
	/* One Content-Type, not two. */
	assert_string_equal(head_of(&f->r, true, false),
	    "HTTP/1.1 431 Request Header Fields Too Large\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: 39\r\n"
	    "Connection: close\r\n"
	    "\r\n");
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_header_refuses_cr_lf),
		T(test_header_refuses_non_token_names),
		T(test_header_refuses_framing_names),
		T(test_head_exact_bytes),
		T(test_head_connection),
		T(test_head_with_fds),
		T(test_head_status_lines),
		T(test_head_status_changes),
		T(test_head_content_lengths),
		T(test_head_room_at_the_edge),
		T(test_inline_body_at_the_edge),
		T(test_head_many_headers),
		T(test_head_after_reset),
		T(test_fd_consumed_on_failure),
		T(test_reset_closes_fds),
		cmocka_unit_test(test_free_closes_fds),
		cmocka_unit_test(test_max_fds_zero),
		T(test_borrow_released_once_on_reset),
		T(test_borrow_released_once_on_replacement),
		T(test_borrow_released_once_on_error_and_free),
		T(test_printf_appends_and_grows),
		T(test_printf_at_the_buffer_edge),
		T(test_body_replaces),
		T(test_null_data_refused),
		T(test_error_body),
		T(test_error_after_error),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
