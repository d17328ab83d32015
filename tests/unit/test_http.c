/*
 * Request heads (CONTRACT sections 2 and 3): the byte scan that finds the
 * end of a head and refuses smuggling vectors, the llhttp glue that turns a
 * head into what the framework needs or into the status to answer, and the
 * in-place NUL-termination.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <fdhttp/common.h>
#include "http.h"

/* --- fdh_http_head_end ----------------------------------------------------- */

static void assert_err_text(const struct fdh_http_error *err);

/* head_end over all of s (len bytes) in one call, from a fresh cursor. */
static ssize_t
scan_n(const char *s, size_t len)
{
	size_t scan = 0;

	return fdh_http_head_end(s, len, &scan);
}

static ssize_t
scan_s(const char *s)
{
	return scan_n(s, strlen(s));
}

/* Feeds s one more byte per call with one cursor, as a trickling client would. */
static ssize_t
scan_bytewise(const char *s, size_t len)
{
	size_t scan = 0, n;
	ssize_t r = 0;

	for (n = 1; n <= len; n++) {
		size_t before = scan;

		r = fdh_http_head_end(s, n, &scan);
		if (r != 0)
			return r;
		/* The cursor moves forward and never past what is there. */
		assert_true(scan >= before);
		assert_true(scan <= n);
		/* Only a CR at the very end waits for its LF unexamined. */
		if (s[n - 1] == '\r')
			assert_int_equal(scan, n - 1);
		else
			assert_int_equal(scan, n);
	}
	return r;
}

static ssize_t
scan_bytewise_s(const char *s)
{
	return scan_bytewise(s, strlen(s));
}

static void
test_head_end_complete(void **state)
{
	static const char h1[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	static const char h2[] = "GET / HTTP/1.1\r\n\r\n";
	static const char h3[] = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody";
	size_t scan = 0;

	(void)state;
	assert_int_equal(scan_s(h1), (ssize_t)strlen(h1));
	assert_int_equal(scan_s(h2), (ssize_t)strlen(h2));
	/* The body that follows is not part of the head. */
	assert_int_equal(fdh_http_head_end(h3, strlen(h3), &scan), (ssize_t)strlen(h3) - 4);
	assert_int_equal(scan, strlen(h3) - 4);
	/* Tabs and obs-text in a value are fine. */
	assert_int_equal(scan_s("GET / HTTP/1.1\r\nX-A: a\tb \xc3\xa9\r\n\r\n"), 31);
}

static void
test_head_end_incomplete(void **state)
{
	static const char h[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	size_t n, len = strlen(h);

	(void)state;
	for (n = 0; n < len; n++) {
		if (scan_n(h, n) != 0)
			fail_msg("%zu bytes of a %zu-byte head: not incomplete", n, len);
	}
}

static void
test_head_end_bytewise(void **state)
{
	static const char h[] = "GET /x?y=1 HTTP/1.1\r\nHost: localhost\r\nX-FD: a, b\r\n"
	    "Content-Length: 3\r\n\r\n";
	size_t scan = 0, len = strlen(h);

	(void)state;
	assert_int_equal(scan_bytewise(h, len), (ssize_t)len);

	/* In uneven pieces, a CR at the end of one and its LF at the start of the next. */
	assert_int_equal(fdh_http_head_end(h, 20, &scan), 0);
	assert_int_equal(scan, 19);		/* the CR of the request line */
	assert_int_equal(fdh_http_head_end(h, 21, &scan), 0);
	assert_int_equal(scan, 21);
	assert_int_equal(fdh_http_head_end(h, len - 1, &scan), 0);
	assert_int_equal(scan, len - 2);
	assert_int_equal(fdh_http_head_end(h, len, &scan), (ssize_t)len);
	assert_int_equal(scan, len);

	/* Bad bytes are found bytewise too, as soon as they are there. */
	assert_int_equal(scan_bytewise_s("GET / HTTP/1.1\nHost: x\r\n\r\n"), -EBADMSG);
	assert_int_equal(scan_bytewise_s("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"), -EBADMSG);
	assert_int_equal(scan_bytewise_s("GET / HTTP/1.1\rHost: x\r\n\r\n"), -EBADMSG);
}

static void
test_head_end_bare_lf(void **state)
{
	static const char *const bad[] = {
		"GET / HTTP/1.1\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\n",
		"GET / HTTP/1.1\n\n",
		"GET / HTTP/1.1\r\nX-A: a\nb\r\n\r\n",
		"\n",
		"\nGET / HTTP/1.1\r\n\r\n",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (scan_s(bad[i]) != -EBADMSG)
			fail_msg("bare LF not refused in case %zu", i);
	}
}

static void
test_head_end_bare_cr(void **state)
{
	static const char *const bad[] = {
		"GET / HTTP/1.1\rHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\r\n\r\n",
		"GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\r\n",
		"GET / HTTP/1.1\r\r\n\r\n",
	};
	size_t i, scan = 0;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (scan_s(bad[i]) != -EBADMSG)
			fail_msg("bare CR not refused in case %zu", i);
	}
	/* A CR last in the buffer is decided when the next byte comes. */
	assert_int_equal(fdh_http_head_end("GET / HTTP/1.1\rX", 15, &scan), 0);
	assert_int_equal(fdh_http_head_end("GET / HTTP/1.1\rX", 16, &scan), -EBADMSG);
}

static void
test_head_end_control_bytes(void **state)
{
	static const char base[] = "GET / HTTP/1.1\r\nX-A: a?b\r\n\r\n";
	char h[sizeof(base)];
	char *q;
	unsigned ch;

	(void)state;
	for (ch = 0; ch < 0x20; ch++) {
		ssize_t r;

		if (ch == '\t' || ch == '\r' || ch == '\n')
			continue;
		memcpy(h, base, sizeof(base));
		q = strchr(h, '?');
		*q = (char)ch;
		r = scan_n(h, sizeof(base) - 1);
		if (r != -EBADMSG)
			fail_msg("control byte 0x%02x in a value: %zd, expected -EBADMSG", ch, r);
	}
	/* A NUL in the request line, and one right before the end. */
	assert_int_equal(scan_n("GET /\0 HTTP/1.1\r\n\r\n", 19), -EBADMSG);
	assert_int_equal(scan_n("GET / HTTP/1.1\r\nA: b\0\r\n\r\n", 25), -EBADMSG);
	assert_int_equal(scan_n("GET / HTTP/1.1\r\n\0\r\n", 19), -EBADMSG);
}

/* A DEL (0x7f) anywhere in a head: refused by the scan or, at the latest, the parser. */
static void
test_head_del_refused(void **state)
{
	static const char *const reqs[] = {
		"GET / HTTP/1.1\r\nX-A: a\x7f" "b\r\n\r\n",
		"GET /a\x7f" "b HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nX-\x7f" "A: b\r\n\r\n",
		"GE\x7f" "T / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\x7f\r\n\r\n",
	};
	struct fdh_limits lim;
	struct fdh_req_hdr hdrs[8];
	struct fdh_xfd_name names[16];
	struct fdh_http_parser p;
	struct fdh_http_error err;
	struct fdh_head h;
	char buf[128];
	size_t i, len, scan;
	ssize_t r;

	(void)state;
	fdh_limits_default(&lim);
	lim.max_headers = 8;
	fdh_http_parser_init(&p, &lim);
	for (i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		len = strlen(reqs[i]);
		memcpy(buf, reqs[i], len + 1);
		scan = 0;
		r = fdh_http_head_end(buf, len, &scan);
		if (r == -EBADMSG)
			continue;
		assert_int_equal(r, (ssize_t)len);
		memset(&h, 0, sizeof(h));
		h.hdrs = hdrs;
		h.fd_names = names;
		memset(&err, 0, sizeof(err));
		if (fdh_http_parse(&p, buf, len, &h, &err) != -EBADMSG)
			fail_msg("DEL accepted in case %zu", i);
		assert_int_equal(err.status, 400);
		assert_err_text(&err);
	}
}

static void
test_head_end_obs_fold(void **state)
{
	static const char *const bad[] = {
		"GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\r\nX-A: a\r\n\tb\r\n\r\n",
		"GET / HTTP/1.1\r\nX-A: a\r\n  \t b\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\n Host: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n \r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\t\r\n\r\n",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (scan_s(bad[i]) != -EBADMSG)
			fail_msg("obs-fold not refused in case %zu", i);
	}
}

static void
test_head_end_empty_leading_line(void **state)
{
	(void)state;
	/* An empty line where the request line goes is neither a head nor its end. */
	assert_int_equal(scan_s("\r\nGET / HTTP/1.1\r\n\r\n"), -EBADMSG);
	assert_int_equal(scan_s("\r\n\r\n"), -EBADMSG);
	assert_int_equal(scan_bytewise_s("\r\n\r\n"), -EBADMSG);
	assert_int_equal(scan_s("\r"), 0);
}

/*
 * The scan reads words at a time; ref_head_end is the byte-at-a-time scan it
 * replaced, the definition of what it must answer.  Every case below runs
 * both, from a fresh cursor and resumed, on a copy of exactly the bytes
 * given (so a read past them shows under ASan), and wants the same return
 * value and the same cursor.
 */
static ssize_t
ref_head_end(const char *buf, size_t len, size_t *scan)
{
	size_t i;

	for (i = *scan; i < len; i++) {
		unsigned char ch = (unsigned char)buf[i];

		if (ch > ' ' && ch != 0x7f)
			continue;
		switch (ch) {
		case '\n':
			if (i == 0 || buf[i - 1] != '\r')
				return -EBADMSG;
			if (i == 1)
				return -EBADMSG;
			if (i >= 3 && buf[i - 2] == '\n') {
				*scan = i + 1;
				return (ssize_t)(i + 1);
			}
			break;
		case '\r':
			if (i + 1 == len) {
				*scan = i;
				return 0;
			}
			if (buf[i + 1] != '\n')
				return -EBADMSG;
			break;
		case ' ':
		case '\t':
			if (i > 0 && buf[i - 1] == '\n')
				return -EBADMSG;
			break;
		default:
			return -EBADMSG;
		}
	}
	*scan = i;
	return 0;
}

static unsigned long same_as_ref_calls;

/* One call of each from cursor *scan over s[0..n); both cursors must agree. */
static ssize_t
same_as_ref_step(const char *s, size_t n, size_t *scan)
{
	char *copy = malloc(n ? n : 1);
	size_t got_scan = *scan, want_scan = *scan;
	ssize_t got, want;

	assert_non_null(copy);
	memcpy(copy, s, n);
	got = fdh_http_head_end(copy, n, &got_scan);
	want = ref_head_end(copy, n, &want_scan);
	free(copy);
	same_as_ref_calls++;
	if (got != want || got_scan != want_scan) {
		size_t k;

		fprintf(stderr, "bytes:");
		for (k = 0; k < n; k++)
			fprintf(stderr, " %02x", (unsigned char)s[k]);
		fprintf(stderr, "\n");
		fail_msg("%zu bytes from cursor %zu: %zd with cursor %zu, expected %zd with "
		    "cursor %zu", n, *scan, got, got_scan, want, want_scan);
	}
	*scan = got_scan;
	return got;
}

/*
 * s[0..len) in one call; then in two reads split at every point, the second
 * resuming from the first's cursor; then one byte more per call.
 */
static void
same_as_ref(const char *s, size_t len)
{
	size_t scan, cut, n;

	scan = 0;
	(void)same_as_ref_step(s, len, &scan);
	for (cut = 0; cut < len; cut++) {
		scan = 0;
		if (same_as_ref_step(s, cut, &scan) == 0)
			(void)same_as_ref_step(s, len, &scan);
	}
	scan = 0;
	for (n = 0; n <= len; n++)
		if (same_as_ref_step(s, n, &scan) != 0)
			break;
}

/* Each byte the scan treats apart from the rest, and some it must not. */
static const unsigned char odd_bytes[] = {
	'\r', '\n', ' ', '\t', '\0', 0x01, 0x0b, 0x1f, 0x7f, 0x20, 0x21, 0x7e, 0x80, 0xa0, 0xff,
	0x9f, 0xe0,
};

static void
test_head_end_words_one_odd_byte(void **state)
{
	char buf[48];
	size_t len, at, k;

	(void)state;
	/* A run of ordinary bytes with one odd byte at every offset, in every length. */
	for (len = 1; len <= sizeof(buf); len++) {
		for (at = 0; at < len; at++) {
			for (k = 0; k < sizeof(odd_bytes); k++) {
				memset(buf, 'a', len);
				buf[at] = (char)odd_bytes[k];
				same_as_ref(buf, len);
			}
		}
	}
}

static void
test_head_end_words_exhaustive(void **state)
{
	static const char alphabet[] = { 'a', ' ', '\t', '\r', '\n', '\0', 0x7f };
	char buf[16];
	size_t pre, n, k, cursor, scan;
	unsigned long code, combos;

	(void)state;
	/*
	 * Every string of up to 6 bytes over the alphabet, after 0 or 5 ordinary
	 * bytes (so that some cross a word), from every cursor.
	 */
	for (pre = 0; pre <= 5; pre += 5) {
		for (n = 0; n <= 6; n++) {
			for (combos = 1, k = 0; k < n; k++)
				combos *= sizeof(alphabet);
			for (code = 0; code < combos; code++) {
				unsigned long c = code;

				memset(buf, 'b', pre);
				for (k = 0; k < n; k++, c /= sizeof(alphabet))
					buf[pre + k] = alphabet[c % sizeof(alphabet)];
				for (cursor = 0; cursor <= pre + n; cursor++) {
					scan = cursor;
					(void)same_as_ref_step(buf, pre + n, &scan);
				}
			}
		}
	}
}

static void
test_head_end_words_two_odd_bytes(void **state)
{
	static const char prefix[] = "GET / HTTP/1.1\r\n";
	char buf[64];
	size_t plen = sizeof(prefix) - 1, len = plen + 24, a, b, i, j, scan;

	(void)state;
	/* After a request line: two odd bytes at every pair of offsets of a field line. */
	for (a = plen; a < len; a++) {
		for (b = a + 1; b < len; b++) {
			for (i = 0; i < sizeof(odd_bytes); i++) {
				for (j = 0; j < sizeof(odd_bytes); j++) {
					memcpy(buf, prefix, plen);
					memset(buf + plen, 'h', len - plen);
					buf[a] = (char)odd_bytes[i];
					buf[b] = (char)odd_bytes[j];
					scan = 0;
					(void)same_as_ref_step(buf, len, &scan);
					/* Resumed right at the first of them, and right after it. */
					scan = a;
					(void)same_as_ref_step(buf, len, &scan);
					scan = a + 1;
					(void)same_as_ref_step(buf, len, &scan);
				}
			}
		}
	}
}

static void
test_head_end_words_control_after_run(void **state)
{
	char buf[300];
	size_t run, len;
	unsigned ch;

	(void)state;
	/* A control or DEL straight after a long run of ordinary bytes, at every alignment. */
	for (run = 0; run < 40; run++) {
		for (ch = 0; ch <= 0x7f; ch++) {
			if (ch > 0x20 && ch < 0x7f)
				continue;
			len = (size_t)sprintf(buf, "GET /%.*s", (int)run,
			    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ");
			buf[len++] = (char)ch;
			len += (size_t)sprintf(buf + len, "x HTTP/1.1\r\nHost: y\r\n\r\n");
			same_as_ref(buf, len);
			if (ch != ' ' && ch != '\t')
				assert_int_equal(scan_n(buf, len), -EBADMSG);
		}
	}
	/* In a value 200 bytes long, past the first words. */
	len = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nX-A: %0200d", 0);
	buf[len - 1] = '\x01';
	len += (size_t)sprintf(buf + len, "\r\n\r\n");
	assert_int_equal(scan_n(buf, len), -EBADMSG);
	same_as_ref(buf, len);
}

static void
test_head_end_words_boundaries(void **state)
{
	char buf[160];
	size_t pad, len, head;

	(void)state;
	/* Heads of every length around the words, alone and with a body after them. */
	for (pad = 0; pad < 40; pad++) {
		len = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nX-Pad: %.*s\r\n\r\n", (int)pad,
		    "pppppppppppppppppppppppppppppppppppppppp");
		head = len;
		assert_int_equal(scan_n(buf, len), (ssize_t)head);
		assert_int_equal(scan_bytewise(buf, len), (ssize_t)head);
		same_as_ref(buf, len);
		len += (size_t)sprintf(buf + len, "body\r\nbody");
		assert_int_equal(scan_n(buf, len), (ssize_t)head);
		same_as_ref(buf, len);
		/* Cut before its last CR, on it, and before its LF. */
		assert_int_equal(scan_n(buf, head - 2), 0);
		assert_int_equal(scan_n(buf, head - 1), 0);
	}
}

/* A fixed-seed generator: the same heads on every run. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static unsigned
rng(unsigned n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (unsigned)(rng_state % n);
}

static void
test_head_end_words_random(void **state)
{
	static const char pieces[][5] = {
		"\r\n", "\r\n\r\n", "\r", "\n", " ", "\t", "\r\n ", "\r\n\t", ": ",
	};
	char buf[96];
	size_t len, target, k;
	unsigned round;

	(void)state;
	/* Mostly well-formed lines of random lengths, now and then a bad byte. */
	for (round = 0; round < 20000; round++) {
		target = rng(sizeof(buf) - 4);
		len = 0;
		while (len < target) {
			unsigned pick = rng(20);

			if (pick < 12) {
				buf[len++] = (char)('a' + rng(26));
			} else if (pick < 18) {
				const char *pc = pieces[rng(sizeof(pieces) / sizeof(pieces[0]))];

				for (k = 0; pc[k] && len < sizeof(buf); k++)
					buf[len++] = pc[k];
			} else {
				buf[len++] = (char)odd_bytes[rng(sizeof(odd_bytes))];
			}
		}
		same_as_ref(buf, len);
	}
	assert_true(same_as_ref_calls > 0);
}

/* --- fdh_http_parse -------------------------------------------------------- */

struct parsed {
	struct fdh_limits lim;
	struct fdh_http_parser p;
	struct fdh_head h;
	struct fdh_req_hdr *hdrs;
	struct fdh_xfd_name *names;
	struct fdh_http_error err;
	char buf[16384];
	size_t len;
	int rc;
};

static struct parsed px;

static int
teardown_parsed(void **state)
{
	(void)state;
	free(px.hdrs);
	free(px.names);
	px.hdrs = NULL;
	px.names = NULL;
	return 0;
}

/* Arrays exactly as large as the limits, so an overrun shows under ASan. */
static void
prepare(const struct fdh_limits *lim)
{
	teardown_parsed(NULL);
	memset(&px, 0, sizeof(px));
	px.lim = *lim;
	px.hdrs = calloc(lim->max_headers ? lim->max_headers : 1, sizeof(*px.hdrs));
	px.names = calloc(lim->max_fds ? lim->max_fds : 1, sizeof(*px.names));
	assert_non_null(px.hdrs);
	assert_non_null(px.names);
	px.h.hdrs = px.hdrs;
	px.h.fd_names = px.names;
	fdh_http_parser_init(&px.p, &px.lim);
}

/* The text of a refusal: one line, not empty, terminated within its array. */
static void
assert_err_text(const struct fdh_http_error *err)
{
	size_t len = strnlen(err->text, sizeof(err->text));

	assert_true(len > 0);
	assert_true(len < sizeof(err->text));
	assert_null(strchr(err->text, '\n'));
	assert_null(strchr(err->text, '\r'));
}

/* Parses the head req with the parser of px (set up by prepare()). */
static int
parse_again(const char *req)
{
	size_t scan = 0;

	px.len = strlen(req);
	assert_true(px.len < sizeof(px.buf));
	memcpy(px.buf, req, px.len + 1);
	/* Every head here is well-formed bytewise: the scan must find all of it. */
	if (fdh_http_head_end(px.buf, px.len, &scan) != (ssize_t)px.len)
		fail_msg("head_end did not find the end of:\n%s", req);
	memset(&px.err, 0, sizeof(px.err));
	px.err.status = -1;
	px.rc = fdh_http_parse(&px.p, px.buf, px.len, &px.h, &px.err);
	if (px.rc != 0) {
		assert_int_equal(px.rc, -EBADMSG);
		assert_err_text(&px.err);
	}
	return px.rc;
}

static int
parse_lim(const struct fdh_limits *lim, const char *req)
{
	prepare(lim);
	return parse_again(req);
}

static int
parse(const char *req)
{
	struct fdh_limits lim;

	fdh_limits_default(&lim);
	return parse_lim(&lim, req);
}

static void
expect_ok_lim(const struct fdh_limits *lim, const char *req)
{
	if (parse_lim(lim, req) != 0)
		fail_msg("refused with %d \"%s\":\n%s", px.err.status, px.err.text, req);
}

static void
expect_ok(const char *req)
{
	struct fdh_limits lim;

	fdh_limits_default(&lim);
	expect_ok_lim(&lim, req);
}

static void
expect_status_lim(const struct fdh_limits *lim, const char *req, int status)
{
	int rc = parse_lim(lim, req);

	if (rc == 0)
		fail_msg("accepted, expected %d:\n%s", status, req);
	if (px.err.status != status)
		fail_msg("status %d (\"%s\"), expected %d:\n%s", px.err.status, px.err.text,
		    status, req);
}

static void
expect_status(const char *req, int status)
{
	struct fdh_limits lim;

	fdh_limits_default(&lim);
	expect_status_lim(&lim, req, status);
}

/* Whether s[0..len) is want. */
static bool
span_is(const char *s, uint32_t len, const char *want)
{
	return s && len == strlen(want) && memcmp(s, want, len) == 0;
}

static void
assert_span(const char *s, uint32_t len, const char *want)
{
	if (!span_is(s, len, want))
		fail_msg("\"%.*s\" (%u bytes), expected \"%s\"", s ? (int)len : 6,
		    s ? s : "(null)", len, want);
}

static void
test_parse_get(void **state)
{
	(void)state;
	expect_ok("GET /health HTTP/1.1\r\nHost: localhost\r\nUser-Agent: t\r\n\r\n");
	assert_int_equal(px.h.method_id, HTTP_GET);
	assert_int_equal(px.h.http_minor, 1);
	assert_true(px.h.keep_alive);
	assert_false(px.h.expect_continue);
	assert_span(px.h.path, px.h.path_len, "/health");
	assert_null(px.h.query);
	assert_int_equal(px.h.content_length, 0);
	assert_int_equal(px.h.nhdrs, 2);
	assert_span(px.hdrs[0].name, px.hdrs[0].name_len, "Host");
	assert_span(px.hdrs[0].value, px.hdrs[0].value_len, "localhost");
	assert_span(px.hdrs[1].name, px.hdrs[1].name_len, "User-Agent");
	assert_span(px.hdrs[1].value, px.hdrs[1].value_len, "t");
	assert_int_equal(px.h.xfd_hdr, -1);
	assert_int_equal(px.h.nfd_names, 0);
	/* The strings point into the buffer. */
	assert_true(px.h.path > px.buf && px.h.path < px.buf + px.len);
}

static void
test_parse_post_and_head(void **state)
{
	(void)state;
	expect_ok("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1234\r\n\r\n");
	assert_int_equal(px.h.method_id, HTTP_POST);
	assert_int_equal(px.h.content_length, 1234);
	assert_span(px.h.path, px.h.path_len, "/echo");

	expect_ok("POST /echo HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(px.h.content_length, 0);

	expect_ok("HEAD /health HTTP/1.1\r\n\r\n");
	assert_int_equal(px.h.method_id, HTTP_HEAD);
	assert_int_equal(px.h.nhdrs, 0);

	expect_ok("DELETE /files/x HTTP/1.1\r\n\r\n");
	assert_int_equal(px.h.method_id, HTTP_DELETE);
}

static void
test_parse_path_and_query(void **state)
{
	(void)state;
	expect_ok("GET /echo?x=1&y=2 HTTP/1.1\r\n\r\n");
	assert_span(px.h.path, px.h.path_len, "/echo");
	assert_span(px.h.query, px.h.query_len, "x=1&y=2");

	expect_ok("GET /p? HTTP/1.1\r\n\r\n");
	assert_span(px.h.path, px.h.path_len, "/p");
	assert_non_null(px.h.query);
	assert_int_equal(px.h.query_len, 0);

	expect_ok("GET /a?b?c=/d HTTP/1.1\r\n\r\n");
	assert_span(px.h.path, px.h.path_len, "/a");
	assert_span(px.h.query, px.h.query_len, "b?c=/d");

	expect_ok("GET /?q HTTP/1.1\r\n\r\n");
	assert_span(px.h.path, px.h.path_len, "/");
	assert_span(px.h.query, px.h.query_len, "q");

	expect_ok("GET /files/a%20b/c HTTP/1.1\r\n\r\n");
	assert_span(px.h.path, px.h.path_len, "/files/a%20b/c");
	assert_null(px.h.query);
}

static void
test_parse_absolute_form(void **state)
{
	(void)state;
	expect_ok("GET http://localhost/p?q=1 HTTP/1.1\r\nHost: localhost\r\n\r\n");
	assert_span(px.h.path, px.h.path_len, "/p");
	assert_span(px.h.query, px.h.query_len, "q=1");

	expect_ok("GET http://host:8080/a/b HTTP/1.1\r\n\r\n");
	assert_span(px.h.path, px.h.path_len, "/a/b");
	assert_null(px.h.query);

	expect_ok("GET HTTP://host/ HTTP/1.1\r\n\r\n");
	assert_span(px.h.path, px.h.path_len, "/");
}

static void
test_parse_asterisk_and_authority_form(void **state)
{
	(void)state;
	expect_status("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 400);
	expect_status("CONNECT localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\n", 400);
	expect_status("GET http://host HTTP/1.1\r\n\r\n", 400);
}

static void
test_parse_keep_alive(void **state)
{
	(void)state;
	expect_ok("GET / HTTP/1.1\r\n\r\n");
	assert_int_equal(px.h.http_minor, 1);
	assert_true(px.h.keep_alive);

	expect_ok("GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
	assert_false(px.h.keep_alive);

	expect_ok("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n");
	assert_false(px.h.keep_alive);

	expect_ok("GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n");
	assert_true(px.h.keep_alive);

	expect_ok("GET / HTTP/1.0\r\n\r\n");
	assert_int_equal(px.h.http_minor, 0);
	assert_false(px.h.keep_alive);

	expect_ok("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	assert_int_equal(px.h.http_minor, 0);
	assert_true(px.h.keep_alive);

	expect_ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
	assert_true(px.h.keep_alive);

	expect_ok("GET / HTTP/1.0\r\nConnection: close\r\n\r\n");
	assert_false(px.h.keep_alive);

	/* "close" wins where both are named (RFC 9112 9.3), in one field or two. */
	expect_ok("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
	assert_false(px.h.keep_alive);
	expect_ok("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n");
	assert_false(px.h.keep_alive);
	expect_ok("GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n");
	assert_false(px.h.keep_alive);
}

static void
test_parse_content_length_smuggling(void **state)
{
	(void)state;
	expect_status("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\ncontent-length: 0\r\nCONTENT-LENGTH: 0\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
	    400);
}

static void
test_parse_transfer_encoding(void **state)
{
	(void)state;
	expect_status("POST / HTTP/1.1\r\nContent-Length: 5\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
	    "Content-Length: 5\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501);
	expect_status("POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n", 501);
	expect_status("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
	/* llhttp finds these invalid; they are still a framing not served (501)... */
	expect_status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501);
	expect_status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked,chunked\r\n\r\n", 501);
	expect_status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", 501);
	/* ...unless a Content-Length comes too, before or after: smuggling (400). */
	expect_status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n"
	    "content-length: 5\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nContent-Length: 5\r\n"
	    "Transfer-Encoding: chunked, gzip\r\n\r\n", 400);
	/* A refused HEAD is still known as one: its answer carries no body. */
	expect_status("HEAD / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501);
	assert_int_equal(px.h.method_id, HTTP_HEAD);
}

static void
test_parse_transfer_encoding_not_chunked(void **state)
{
	(void)state;
	/* "Transfer-Encoding alone (chunked or anything else): 501" (docs/protocol.md). */
	expect_status("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
}

static void
test_parse_expect(void **state)
{
	(void)state;
	expect_ok("POST /echo HTTP/1.1\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n");
	assert_true(px.h.expect_continue);
	assert_int_equal(px.h.content_length, 10);

	expect_ok("POST /echo HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n");
	assert_true(px.h.expect_continue);

	expect_ok("POST /echo HTTP/1.1\r\nContent-Length: 1\r\n\r\n");
	assert_false(px.h.expect_continue);

	expect_status("POST /echo HTTP/1.1\r\nExpect: something-else\r\n\r\n", 417);
	expect_status("POST /echo HTTP/1.1\r\nExpect: 100-continuex\r\n\r\n", 417);
	expect_status("POST /echo HTTP/1.1\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\n", 417);

	/* An HTTP/1.0 client cannot know 100 Continue: ignored (RFC 9110 10.1.1). */
	expect_ok("POST /echo HTTP/1.0\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n");
	assert_false(px.h.expect_continue);
}

static void
test_parse_known_names_any_case(void **state)
{
	(void)state;
	/* The names the framework reads, in any case; near misses are other fields. */
	expect_status("POST / HTTP/1.1\r\nCONTENT-LENGTH: 1\r\ncOnTeNt-LeNgTh: 1\r\n\r\n", 400);
	expect_ok("POST / HTTP/1.1\r\nContent_Length: 5\r\nContent-Length: 5\r\n\r\n");
	assert_int_equal(px.h.content_length, 5);
	expect_ok("POST / HTTP/1.1\r\nContent-Lengti: 5\r\nContent-Length: 5\r\n\r\n");
	expect_ok("POST / HTTP/1.1\r\nDontent-Length: 5\r\nContent-Length: 5\r\n\r\n");
	expect_ok("POST / HTTP/1.1\r\nContent-Lengt: 5\r\nContent-Length: 5\r\n\r\n");
	expect_ok("POST / HTTP/1.1\r\nContent-Lengths: 5\r\nContent-Length: 5\r\n\r\n");

	expect_status("POST / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\n\r\n", 501);
	expect_status("POST / HTTP/1.1\r\ntransfer-encodinG: chunked\r\n\r\n", 501);
	expect_ok("POST / HTTP/1.1\r\nTransfer-Encodinh: chunked\r\n\r\n");
	expect_ok("POST / HTTP/1.1\r\nTransfer_Encoding: chunked\r\n\r\n");
	expect_ok("POST / HTTP/1.1\r\nUransfer-Encoding: chunked\r\n\r\n");

	expect_ok("POST / HTTP/1.1\r\nEXPECT: 100-CONTINUE\r\n\r\n");
	assert_true(px.h.expect_continue);
	expect_ok("POST / HTTP/1.1\r\neXpEcT: 100-cOnTiNuE\r\n\r\n");
	assert_true(px.h.expect_continue);
	expect_status("POST / HTTP/1.1\r\nExpect: 100_continue\r\n\r\n", 417);
	expect_status("POST / HTTP/1.1\r\nExpect: 1OO-continue\r\n\r\n", 417);
	expect_status("POST / HTTP/1.1\r\nExpect: 100-continuf\r\n\r\n", 417);
	expect_status("POST / HTTP/1.1\r\nExpect: 000-continue\r\n\r\n", 417);
	expect_status("POST / HTTP/1.1\r\nExpect: 100-continue, x\r\n\r\n", 417);
	expect_ok("POST / HTTP/1.1\r\nExpecu: 100-continue\r\n\r\n");
	assert_false(px.h.expect_continue);
	expect_ok("POST / HTTP/1.1\r\nFxpect: nope\r\n\r\n");

	expect_ok("POST / HTTP/1.1\r\nx-fD: a\r\n\r\n");
	assert_int_equal(px.h.xfd_hdr, 0);
	expect_ok("POST / HTTP/1.1\r\nX_FD: a\r\nX-FD: b\r\n\r\n");
	assert_int_equal(px.h.xfd_hdr, 1);
	expect_ok("POST / HTTP/1.1\r\nX-FE: a\r\nY-FD: a\r\nX-FDS: a\r\n\r\n");
	assert_int_equal(px.h.xfd_hdr, -1);

	/* And the absolute form's scheme. */
	expect_ok("GET hTtP://h/x HTTP/1.1\r\n\r\n");
	assert_span(px.h.path, px.h.path_len, "/x");
	expect_status("GET https://h/x HTTP/1.1\r\n\r\n", 400);
}

static void
test_parse_body_limit(void **state)
{
	struct fdh_limits lim;

	(void)state;
	expect_ok("POST / HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n");
	assert_int_equal(px.h.content_length, 1048576);
	expect_status("POST / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n", 413);
	expect_status("POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n", 413);

	fdh_limits_default(&lim);
	lim.max_body = 10;
	expect_ok_lim(&lim, "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n");
	expect_status_lim(&lim, "POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", 413);
	/* Over the limit with Expect: the final 413 comes instead of 100 Continue. */
	expect_status_lim(&lim, "POST / HTTP/1.1\r\nExpect: 100-continue\r\n"
	    "Content-Length: 11\r\n\r\n", 413);
	lim.max_body = 0;
	expect_ok_lim(&lim, "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
	expect_ok_lim(&lim, "GET / HTTP/1.1\r\n\r\n");
	expect_status_lim(&lim, "POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\n", 413);
}

/* A request with Host and n - 1 more fields. */
static const char *
with_fields(unsigned n)
{
	static char req[8192];
	char *p = req;
	unsigned i;

	p += sprintf(p, "GET / HTTP/1.1\r\nHost: x\r\n");
	for (i = 1; i < n; i++)
		p += sprintf(p, "X-F%u: %u\r\n", i, i);
	sprintf(p, "\r\n");
	return req;
}

static void
test_parse_header_count(void **state)
{
	struct fdh_limits lim;

	(void)state;
	fdh_limits_default(&lim);
	lim.max_headers = 3;
	expect_ok_lim(&lim, with_fields(3));
	assert_int_equal(px.h.nhdrs, 3);
	assert_span(px.hdrs[2].name, px.hdrs[2].name_len, "X-F2");
	expect_status_lim(&lim, with_fields(4), 431);
	expect_status_lim(&lim, with_fields(40), 431);

	/* Host is counted like any other field. */
	lim.max_headers = 1;
	expect_ok_lim(&lim, with_fields(1));
	expect_status_lim(&lim, with_fields(2), 431);

	/* An empty value is a field as well. */
	lim.max_headers = 2;
	expect_ok_lim(&lim, "GET / HTTP/1.1\r\nA:\r\nB: \r\n\r\n");
	expect_status_lim(&lim, "GET / HTTP/1.1\r\nA:\r\nB:\r\nC:\r\n\r\n", 431);

	/* The defaults: 64 fields pass, 65 do not. */
	expect_ok(with_fields(64));
	assert_int_equal(px.h.nhdrs, 64);
	expect_status(with_fields(65), 431);
}

static void
test_parse_xfd(void **state)
{
	struct fdh_limits lim;
	const struct fdh_req_hdr *x;

	(void)state;
	expect_ok("POST /echo HTTP/1.1\r\nX-FD: in, out\t,err\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(px.h.xfd_hdr, 0);
	assert_int_equal(px.h.nfd_names, 3);
	x = &px.hdrs[px.h.xfd_hdr];
	assert_span(x->value + px.names[0].off, px.names[0].len, "in");
	assert_span(x->value + px.names[1].off, px.names[1].len, "out");
	assert_span(x->value + px.names[2].off, px.names[2].len, "err");

	expect_ok("POST /echo HTTP/1.1\r\nHost: x\r\nx-fd: one\r\n\r\n");
	assert_int_equal(px.h.xfd_hdr, 1);
	assert_int_equal(px.h.nfd_names, 1);

	expect_status("POST / HTTP/1.1\r\nX-FD: a\r\nX-FD: b\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nX-FD: a\r\nx-fd: a\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nX-FD: a/b\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nX-FD: a,a\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nX-FD: a,,b\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nX-FD: a b\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nX-FD:\r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nX-FD: \r\n\r\n", 400);
	expect_status("POST / HTTP/1.1\r\nX-FD: "
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n", 400);

	fdh_limits_default(&lim);
	lim.max_fds = 2;
	expect_ok_lim(&lim, "POST / HTTP/1.1\r\nX-FD: a,b\r\n\r\n");
	assert_int_equal(px.h.nfd_names, 2);
	expect_status_lim(&lim, "POST / HTTP/1.1\r\nX-FD: a,b,c\r\n\r\n", 400);
	lim.max_fds = 0;
	expect_status_lim(&lim, "POST / HTTP/1.1\r\nX-FD: a\r\n\r\n", 400);
	expect_ok_lim(&lim, "POST / HTTP/1.1\r\n\r\n");
	assert_int_equal(px.h.nfd_names, 0);
}

static void
test_parse_bad_method(void **state)
{
	char req[512];
	size_t i;

	(void)state;
	expect_status("FOO / HTTP/1.1\r\n\r\n", 400);
	expect_status("get / HTTP/1.1\r\n\r\n", 400);
	expect_status("GETX / HTTP/1.1\r\n\r\n", 400);
	expect_status("G / HTTP/1.1\r\n\r\n", 400);
	expect_status("/ HTTP/1.1\r\n\r\n", 400);
	strcpy(req, "");
	for (i = 0; i < 50; i++)
		strcat(req, "GET");
	strcat(req, " / HTTP/1.1\r\n\r\n");
	expect_status(req, 400);
	memset(req, 'A', 300);
	strcpy(req + 300, " / HTTP/1.1\r\n\r\n");
	expect_status(req, 400);
}

static void
test_parse_malformed(void **state)
{
	(void)state;
	expect_status("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nX-A : b\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1 extra\r\n\r\n", 400);
	expect_status("GET / FTP/1.1\r\n\r\n", 400);
}

static void
test_parse_empty_header_name(void **state)
{
	(void)state;
	/* field-name = token: at least one character.  An empty one is malformed. */
	expect_status("GET / HTTP/1.1\r\n: no name\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: x\r\n: no name\r\n\r\n", 400);
}

static void
test_parse_not_http_1(void **state)
{
	static const char *const reqs[] = {
		"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
		"GET / HTTP/3.0\r\nHost: x\r\n\r\n",
		"GET / HTTP/0.9\r\n\r\n",
		"GET / HTTP/9.9\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\n",
		"GET /\r\n\r\n",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		if (parse(reqs[i]) == 0)
			fail_msg("accepted:\n%s", reqs[i]);
		if (px.err.status != 505)
			fail_msg("status %d (%s) for:\n%s", px.err.status, px.err.text, reqs[i]);
	}
	/* Not a version at all: malformed. */
	expect_status("GET / HTTP/1.x\r\n\r\n", 400);
	expect_status("GET / HTTP/11.1\r\n\r\n", 400);
	expect_status("GET / http/1.1\r\n\r\n", 400);
}

static void
test_parse_http_1_2(void **state)
{
	(void)state;
	/* "HTTP/1.1 and HTTP/1.0. Any other version gets 505" (docs/protocol.md). */
	if (parse("GET / HTTP/1.2\r\n\r\n") == 0)
		fail_msg("HTTP/1.2 accepted as HTTP/1.%u", px.h.http_minor);
	assert_int_equal(px.err.status, 505);
}

static void
test_parse_bytes_after_head(void **state)
{
	struct fdh_limits lim;
	static const char req[] = "GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n";

	(void)state;
	fdh_limits_default(&lim);
	prepare(&lim);
	memcpy(px.buf, req, sizeof(req));
	/* A head, then more: the parser is handed only heads; anything more is refused. */
	px.rc = fdh_http_parse(&px.p, px.buf, sizeof(req) - 1, &px.h, &px.err);
	assert_int_equal(px.rc, -EBADMSG);
	assert_int_equal(px.err.status, 400);
	assert_err_text(&px.err);
	/* And a head cut short. */
	px.rc = fdh_http_parse(&px.p, px.buf, 10, &px.h, &px.err);
	assert_int_equal(px.rc, -EBADMSG);
	assert_int_equal(px.err.status, 400);
	assert_err_text(&px.err);
}

static void
test_parse_reuses_parser(void **state)
{
	struct fdh_limits lim;

	(void)state;
	fdh_limits_default(&lim);
	prepare(&lim);
	/* One parser, many requests, as a connection sees them: nothing carries over. */
	assert_int_equal(parse_again("POST /a?x HTTP/1.0\r\nConnection: keep-alive\r\n"
	    "X-FD: f\r\nExpect: 100-continue\r\nContent-Length: 7\r\n\r\n"), 0);
	assert_false(px.h.expect_continue);	/* HTTP/1.0 */
	assert_int_equal(px.h.nfd_names, 1);
	assert_int_equal(px.h.content_length, 7);
	assert_true(px.h.keep_alive);
	assert_int_equal(parse_again("POST /c HTTP/1.1\r\nExpect: 100-continue\r\n"
	    "Content-Length: 1\r\n\r\n"), 0);
	assert_true(px.h.expect_continue);

	assert_int_equal(parse_again("GET /b HTTP/1.1\r\nConnection: close\r\n\r\n"), 0);
	assert_false(px.h.expect_continue);
	assert_int_equal(px.h.nfd_names, 0);
	assert_int_equal(px.h.xfd_hdr, -1);
	assert_int_equal(px.h.content_length, 0);
	assert_false(px.h.keep_alive);
	assert_int_equal(px.h.http_minor, 1);
	assert_null(px.h.query);
	assert_int_equal(px.h.nhdrs, 1);
	assert_span(px.h.path, px.h.path_len, "/b");

	/* After a refusal, the next head parses as if it were the first. */
	assert_int_equal(parse_again("POST / HTTP/1.1\r\nContent-Length: 1\r\n"
	    "Content-Length: 1\r\nExpect: nope\r\n\r\n"), -EBADMSG);
	assert_int_equal(parse_again("POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\n"), 0);
	assert_int_equal(px.h.content_length, 1);
	assert_false(px.h.expect_continue);

	lim.max_headers = 2;
	prepare(&lim);
	assert_int_equal(parse_again(with_fields(3)), -EBADMSG);
	assert_int_equal(px.err.status, 431);
	assert_int_equal(parse_again(with_fields(2)), 0);
	assert_int_equal(px.h.nhdrs, 2);
}

/* --- fdh_http_terminate ---------------------------------------------------- */

static void
test_terminate(void **state)
{
	(void)state;
	expect_ok("GET /files/x?a=1&b=2 HTTP/1.1\r\nHost: localhost\r\n"
	    "X-Trail: value  \t \r\nX-Lead:   lead\r\nX-FD: in,out\r\n"
	    "X-Inner: a  b\r\nX-Empty:\r\n\r\n");
	fdh_http_terminate(&px.h);
	assert_string_equal(px.h.path, "/files/x");
	assert_string_equal(px.h.query, "a=1&b=2");
	assert_int_equal(px.h.nhdrs, 6);
	assert_string_equal(px.hdrs[0].name, "Host");
	assert_string_equal(px.hdrs[0].value, "localhost");
	assert_string_equal(px.hdrs[1].name, "X-Trail");
	assert_string_equal(px.hdrs[1].value, "value");
	assert_int_equal(px.hdrs[1].value_len, 5);
	assert_string_equal(px.hdrs[2].name, "X-Lead");
	assert_string_equal(px.hdrs[2].value, "lead");
	assert_string_equal(px.hdrs[3].name, "X-FD");
	assert_string_equal(px.hdrs[3].value, "in,out");
	assert_string_equal(px.hdrs[4].name, "X-Inner");
	assert_string_equal(px.hdrs[4].value, "a  b");
	assert_string_equal(px.hdrs[5].name, "X-Empty");
	assert_string_equal(px.hdrs[5].value, "");
	assert_int_equal(px.hdrs[5].value_len, 0);
	/* The names taken from X-FD still point at the terminated value. */
	assert_int_equal(px.h.nfd_names, 2);
	assert_span(px.hdrs[3].value + px.names[1].off, px.names[1].len, "out");
}

static void
test_terminate_empty_value_before_another(void **state)
{
	(void)state;
	/* An empty value, then more fields: terminating one must not cut the next. */
	expect_ok("GET / HTTP/1.1\r\nX-Empty:\r\nX-Next: n\r\nX-Blank: \r\nHost: h\r\n\r\n");
	fdh_http_terminate(&px.h);
	assert_int_equal(px.h.nhdrs, 4);
	assert_string_equal(px.hdrs[0].name, "X-Empty");
	assert_string_equal(px.hdrs[0].value, "");
	assert_string_equal(px.hdrs[1].name, "X-Next");
	assert_string_equal(px.hdrs[1].value, "n");
	assert_string_equal(px.hdrs[2].name, "X-Blank");
	assert_string_equal(px.hdrs[2].value, "");
	assert_string_equal(px.hdrs[3].name, "Host");
	assert_string_equal(px.hdrs[3].value, "h");
}

static void
test_terminate_without_query(void **state)
{
	(void)state;
	expect_ok("GET / HTTP/1.0\r\nA: b\r\n\r\n");
	fdh_http_terminate(&px.h);
	assert_string_equal(px.h.path, "/");
	assert_null(px.h.query);
	assert_string_equal(px.hdrs[0].name, "A");
	assert_string_equal(px.hdrs[0].value, "b");

	expect_ok("GET /p? HTTP/1.1\r\nX-Empty: \r\n\r\n");
	fdh_http_terminate(&px.h);
	assert_string_equal(px.h.path, "/p");
	assert_string_equal(px.h.query, "");
	assert_string_equal(px.hdrs[0].name, "X-Empty");
	assert_string_equal(px.hdrs[0].value, "");

	expect_ok("GET http://h/abs?q HTTP/1.1\r\n\r\n");
	fdh_http_terminate(&px.h);
	assert_string_equal(px.h.path, "/abs");
	assert_string_equal(px.h.query, "q");
}

int
main(void)
{
#define T(fn) cmocka_unit_test_teardown(fn, teardown_parsed)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_head_end_complete),
		cmocka_unit_test(test_head_end_incomplete),
		cmocka_unit_test(test_head_end_bytewise),
		cmocka_unit_test(test_head_end_bare_lf),
		cmocka_unit_test(test_head_end_bare_cr),
		cmocka_unit_test(test_head_end_control_bytes),
		cmocka_unit_test(test_head_del_refused),
		cmocka_unit_test(test_head_end_obs_fold),
		cmocka_unit_test(test_head_end_empty_leading_line),
		cmocka_unit_test(test_head_end_words_one_odd_byte),
		cmocka_unit_test(test_head_end_words_exhaustive),
		cmocka_unit_test(test_head_end_words_two_odd_bytes),
		cmocka_unit_test(test_head_end_words_control_after_run),
		cmocka_unit_test(test_head_end_words_boundaries),
		cmocka_unit_test(test_head_end_words_random),
		T(test_parse_get),
		T(test_parse_post_and_head),
		T(test_parse_path_and_query),
		T(test_parse_absolute_form),
		T(test_parse_asterisk_and_authority_form),
		T(test_parse_keep_alive),
		T(test_parse_content_length_smuggling),
		T(test_parse_transfer_encoding),
		T(test_parse_transfer_encoding_not_chunked),
		T(test_parse_expect),
		T(test_parse_known_names_any_case),
		T(test_parse_body_limit),
		T(test_parse_header_count),
		T(test_parse_xfd),
		T(test_parse_bad_method),
		T(test_parse_malformed),
		T(test_parse_empty_header_name),
		T(test_parse_not_http_1),
		T(test_parse_http_1_2),
		T(test_parse_bytes_after_head),
		T(test_parse_reuses_parser),
		T(test_terminate),
		T(test_terminate_empty_value_before_another),
		T(test_terminate_without_query),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
