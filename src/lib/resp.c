/* Responses: headers, bodies, fds and the head that frames them. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>


#include <fdhttp/service.h>
#include "closer.h"
#include "resp.h"

const char *
fdh_status_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 417: return "Expectation Failed";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default:  return "";
	}
}

int
fdh_resp_init(struct fdh_resp *r, unsigned max_fds, int *open_fds)
{
	memset(r, 0, sizeof(*r));
	r->status = 200;
	r->max_fds = max_fds;
	r->open_fds = open_fds;
	r->hcap = 1024;
	r->hbuf = malloc(r->hcap);
	r->bcap = 4096;
	r->bbuf = malloc(r->bcap);
	r->fds = calloc(max_fds ? max_fds : 1, sizeof(*r->fds));
	r->fd_names = calloc(max_fds ? max_fds : 1, sizeof(*r->fd_names));
	if (!r->hbuf || !r->bbuf || !r->fds || !r->fd_names) {
		fdh_resp_free(r);
		return -ENOMEM;
	}
	r->hlen = FDH_RESP_RESERVE;
	return 0;
}

void
fdh_resp_free(struct fdh_resp *r)
{
	if (r->fds)
		fdh_resp_reset(r);
	free(r->hbuf);
	free(r->bbuf);
	free(r->fds);
	free(r->fd_names);
	memset(r, 0, sizeof(*r));
}

static void
drop_borrow(struct fdh_resp *r)
{
	if (r->borrowed && r->release)
		r->release(r->borrow, r->release_ctx);
	r->borrowed = false;
	r->borrow = NULL;
	r->borrow_len = 0;
	r->release = NULL;
}

/* An empty 200 with nothing attached: the stores of a reset. */
static inline void
reset_fields(struct fdh_resp *r)
{
	r->nfds = 0;
	r->borrowed = false;
	r->borrow = NULL;
	r->borrow_len = 0;
	r->release = NULL;
	r->status = 200;
	r->hlen = FDH_RESP_RESERVE;
	r->blen = 0;
}

/*
 * A reset with fds to close or a body to release.  Out of line, and called
 * last, so that the common reset (nothing attached) needs no stack frame.
 */
static __attribute__((noinline)) void
reset_attached(struct fdh_resp *r)
{
	unsigned i;

	/* A handler may answer with a client's fd: the last copy, if the send failed. */
	for (i = 0; i < r->nfds; i++) {
		fdh_closer_close(r->fds[i]);
		(*r->open_fds)--;
	}
	r->nfds = 0;
	drop_borrow(r);
	reset_fields(r);
}

void
fdh_resp_reset(struct fdh_resp *r)
{
	if (r->nfds != 0 || (r->borrowed && r->release)) {
		reset_attached(r);
		return;
	}
	reset_fields(r);
}

/* Out of line: a buffer rarely grows, and its callers need no frame then. */
static __attribute__((noinline)) int
grow(char **buf, size_t *cap, size_t need)
{
	size_t ncap = *cap;
	char *p;

	if (need <= *cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	p = realloc(*buf, ncap);
	if (!p)
		return -ENOMEM;
	*buf = p;
	*cap = ncap;
	return 0;
}

void
fdh_resp_status(struct fdh_resp *resp, int status)
{
	resp->status = status;
}

static bool
is_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	    (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

int
fdh_resp_header(struct fdh_resp *resp, const char *name, const char *value)
{
	static const char *const owned[] = {
		"content-length", "transfer-encoding", "connection", "x-fd",
	};
	size_t nlen, vlen, i;
	char *p;
	int r;

	/* NULL: fdh_req_header()'s answer for a field a request lacks, passed on. */
	if (!name || !value)
		return -EINVAL;
	nlen = strlen(name);
	vlen = strlen(value);
	if (nlen == 0)
		return -EINVAL;
	for (i = 0; i < nlen; i++)
		if (!is_tchar((unsigned char)name[i]))
			return -EINVAL;
	/* A CR or LF in a value would let its author write headers, or a second response. */
	for (i = 0; i < vlen; i++)
		if (value[i] == '\r' || value[i] == '\n')
			return -EINVAL;
	/* The framework frames the message; a handler's own framing would contradict it. */
	for (i = 0; i < sizeof(owned) / sizeof(owned[0]); i++)
		if (strcasecmp(name, owned[i]) == 0)
			return -EINVAL;
	r = grow(&resp->hbuf, &resp->hcap, resp->hlen + nlen + vlen + 4);
	if (r < 0)
		return r;
	/* Header lines are counted bytes, not strings: no NUL follows them. */
	p = resp->hbuf + resp->hlen;
	memcpy(p, name, nlen);	/* NOLINT(bugprone-not-null-terminated-result) */
	p += nlen;
	*p++ = ':';
	*p++ = ' ';
	memcpy(p, value, vlen);	/* NOLINT(bugprone-not-null-terminated-result) */
	p += vlen;
	*p++ = '\r';
	*p++ = '\n';
	resp->hlen = (size_t)(p - resp->hbuf);
	return 0;
}

int
fdh_resp_append(struct fdh_resp *resp, const void *data, size_t len)
{
	int r;

	if (resp->borrowed || (!data && len > 0))
		return -EINVAL;		/* a borrowed body cannot grow */
	if (len == 0)
		return 0;
	r = grow(&resp->bbuf, &resp->bcap, resp->blen + len);
	if (r < 0)
		return r;
	memcpy(resp->bbuf + resp->blen, data, len);
	resp->blen += len;
	return 0;
}

int
fdh_resp_body(struct fdh_resp *resp, const void *data, size_t len)
{
	if (!data && len > 0)
		return -EINVAL;		/* the body there stays */
	drop_borrow(resp);
	resp->blen = 0;
	return fdh_resp_append(resp, data, len);
}

int
fdh_resp_printf(struct fdh_resp *resp, const char *fmt, ...)
{
	va_list ap;
	int n, r;

	if (resp->borrowed)
		return -EINVAL;
	va_start(ap, fmt);
	n = vsnprintf(resp->bbuf + resp->blen, resp->bcap - resp->blen, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= resp->bcap - resp->blen) {
		r = grow(&resp->bbuf, &resp->bcap, resp->blen + (size_t)n + 1);
		if (r < 0)
			return r;
		va_start(ap, fmt);
		vsnprintf(resp->bbuf + resp->blen, resp->bcap - resp->blen, fmt, ap);
		va_end(ap);
	}
	resp->blen += (size_t)n;
	return 0;
}

static inline int
set_borrow(struct fdh_resp *resp, const void *data, size_t len,
    void (*release)(const void *data, void *ctx), void *ctx)
{
	resp->blen = 0;
	resp->borrowed = true;
	resp->borrow = data;
	resp->borrow_len = len;
	resp->release = release;
	resp->release_ctx = ctx;
	return 0;
}

/* A borrowed body replaced by another: out of line, as reset_attached(). */
static __attribute__((noinline)) int
borrow_again(struct fdh_resp *resp, const void *data, size_t len,
    void (*release)(const void *data, void *ctx), void *ctx)
{
	drop_borrow(resp);
	return set_borrow(resp, data, len, release, ctx);
}

int
fdh_resp_body_borrow(struct fdh_resp *resp, const void *data, size_t len,
    void (*release)(const void *data, void *ctx), void *ctx)
{
	if (resp->borrowed && resp->release)
		return borrow_again(resp, data, len, release, ctx);
	return set_borrow(resp, data, len, release, ctx);
}

/* Whether an fd may join the response under name: 0, -EINVAL or -E2BIG. */
static int
fd_slot_check(const struct fdh_resp *resp, const char *name)
{
	unsigned i;

	if (!name || !fdh_fd_name_valid(name, strlen(name)))
		return -EINVAL;	/* NULL: fdh_req_fd_name() past the end */
	for (i = 0; i < resp->nfds; i++)
		if (strcmp(resp->fd_names[i], name) == 0)
			return -EINVAL;
	return resp->nfds == resp->max_fds ? -E2BIG : 0;
}

/* Consumes fd, which fd_slot_check() let in. */
static void
fd_slot_fill(struct fdh_resp *resp, const char *name, int fd)
{
	memcpy(resp->fd_names[resp->nfds], name, strlen(name) + 1);
	resp->fds[resp->nfds++] = fd;
	(*resp->open_fds)++;
}

int
fdh_resp_fd(struct fdh_resp *resp, const char *name, int fd)
{
	unsigned i;
	int r;

	if (fd < 0)
		return -EBADF;
	/*
	 * Already attached: the response would send it twice and close it
	 * twice, the second close another file's that took its number.  It
	 * stays attached once; closed here, it would not be sent at all.
	 */
	for (i = 0; i < resp->nfds; i++)
		if (resp->fds[i] == fd)
			return -EEXIST;
	/*
	 * Borrowed with fdh_req_fd() rather than taken: the request would
	 * close it when the handler returns, before the response is sent, and
	 * again after it.  Consumed here, it is taken first, whatever follows.
	 */
	if (resp->req)
		fdh_req_release_fd(resp->req, fd);
	r = fd_slot_check(resp, name);
	if (r < 0) {
		fdh_closer_close(fd);	/* it may be a client's */
		return r;
	}
	fd_slot_fill(resp, name, fd);
	return 0;
}

int
fdh_resp_fd_dup(struct fdh_resp *resp, const char *name, int fd)
{
	int r, copy;

	if (fd < 0)
		return -EBADF;
	r = fd_slot_check(resp, name);
	if (r < 0)
		return r;
	copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (copy < 0)
		return -errno;
	fd_slot_fill(resp, name, copy);
	return 0;
}

static char *
put(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

/* Decimal, the digits written from the last one back, two at a time. */
static __attribute__((noinline)) char *
put_u64_digits(char *p, unsigned long long v)
{
	static const char pairs[201] =
	    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
	    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
	    "8081828384858687888990919293949596979899";
	unsigned long long t;
	size_t n = 1;
	char *q;

	for (t = v; t >= 10; t /= 10)
		n++;
	q = p + n;
	while (v >= 100) {
		unsigned d = (unsigned)(v % 100) * 2;

		v /= 100;
		*--q = pairs[d + 1];
		*--q = pairs[d];
	}
	if (v >= 10) {
		*--q = pairs[v * 2 + 1];
		*--q = pairs[v * 2];
	} else {
		*--q = (char)('0' + v);
	}
	return p + n;
}

static inline char *
put_u64(char *p, unsigned long long v)
{
	if (v < 10) {
		*p = (char)('0' + v);
		return p + 1;
	}
	return put_u64_digits(p, v);
}

/*
 * Writes the status line right-aligned against the first header line, at
 * the end of the reserve before it.  Responses reuse hbuf, so the line
 * written last stays there: for a response with the same status (line_len
 * and line_status tell) it is not called.
 */
static __attribute__((noinline)) void
status_line(struct fdh_resp *r)
{
	const char *reason;
	size_t rlen;
	char line[FDH_RESP_RESERVE], *p;
	int s = r->status;

	/* A 1xx is interim: sent as the answer, the client would wait for the real one. */
	if (s < 200 || s > 999)
		s = 500;
	reason = fdh_status_reason(s);
	rlen = strlen(reason);
	p = put(line, "HTTP/1.1 ", 9);
	*p++ = (char)('0' + s / 100);
	*p++ = (char)('0' + s / 10 % 10);
	*p++ = (char)('0' + s % 10);
	*p++ = ' ';
	p = put(p, reason, rlen);
	p = put(p, "\r\n", 2);
	r->line_len = (size_t)(p - line);
	r->line_status = r->status;
	memcpy(r->hbuf + FDH_RESP_RESERVE - r->line_len, line, r->line_len);
}

/* The length of the X-FD line: "X-FD: ", the names with a comma between two, CRLF. */
static __attribute__((noinline)) size_t
xfd_room(const struct fdh_resp *r)
{
	size_t names = 0;
	unsigned i;

	for (i = 0; i < r->nfds; i++)
		names += strlen(r->fd_names[i]) + 1;
	return 6 + names + 1;
}

static __attribute__((noinline)) char *
put_xfd(char *p, const struct fdh_resp *r)
{
	unsigned i;

	p = put(p, "X-FD: ", 6);
	for (i = 0; i < r->nfds; i++) {
		if (i)
			*p++ = ',';
		p = put(p, r->fd_names[i], strlen(r->fd_names[i]));
	}
	return put(p, "\r\n", 2);
}

/*
 * The header lines after the handler's, in room made before.  length:
 * false for a status that has no body (204, 304), whose head must not
 * carry a Content-Length (RFC 9110 8.6).
 */
static inline int
head_lines(struct fdh_resp *r, bool close, bool keep_alive_10, bool xfd, bool length,
    const char **ret_head, size_t *ret_len)
{
	char *p = r->hbuf + r->hlen;

	if (length) {
		p = put(p, "Content-Length: ", 16);
		p = put_u64(p, fdh_resp_body_len(r));
		p = put(p, "\r\n", 2);
	}
	if (close)
		p = put(p, "Connection: close\r\n", 19);
	else if (keep_alive_10)
		p = put(p, "Connection: keep-alive\r\n", 24);
	if (xfd)
		p = put_xfd(p, r);
	p = put(p, "\r\n", 2);
	*ret_head = r->hbuf + FDH_RESP_RESERVE - r->line_len;
	*ret_len = (size_t)(p - *ret_head);
	return 0;
}

/*
 * Content-Length with 20 digits, Connection: keep-alive and the blank line
 * fit in 64; a short body goes behind them (fdh_resp_inline_body()).
 */
#define HEAD_ROOM (64 + FDH_RESP_INLINE_MAX)

/* A head with fds, a new status line, or a buffer to grow. */
static __attribute__((noinline)) int
finish_head_slow(struct fdh_resp *r, bool close, bool keep_alive_10, const char **ret_head,
    size_t *ret_len)
{
	size_t need = r->hlen + HEAD_ROOM + (r->nfds ? xfd_room(r) : 0);
	bool bodiless = r->status == 204 || r->status == 304;
	int err;

	err = grow(&r->hbuf, &r->hcap, need);
	if (err < 0)
		return err;
	if (r->line_len == 0 || r->line_status != r->status)
		status_line(r);
	err = head_lines(r, close, keep_alive_10, r->nfds != 0, !bodiless, ret_head, ret_len);
	/*
	 * Its status line is not kept for the next head: the common way
	 * writes a Content-Length, so a 204 or 304 always comes this way.
	 */
	if (bodiless)
		r->line_len = 0;
	return err;
}

/*
 * The common head (no fds, the status of the response before, room in
 * hbuf) calls nothing; the rest goes the slow way, out of line.
 */
int
fdh_resp_finish_head(struct fdh_resp *r, bool close, bool keep_alive_10,
    const char **ret_head, size_t *ret_len)
{
	if (r->nfds != 0 || r->hlen + HEAD_ROOM > r->hcap || r->line_len == 0 ||
	    r->line_status != r->status)
		return finish_head_slow(r, close, keep_alive_10, ret_head, ret_len);
	return head_lines(r, close, keep_alive_10, false, true, ret_head, ret_len);
}

void
fdh_resp_settle(struct fdh_resp *r)
{
	/*
	 * No body follows a 204 or a 304 (RFC 9110 6.4.1), whatever the
	 * head says: one sent would be read as the next response's head.
	 */
	if (r->status == 204 || r->status == 304) {
		drop_borrow(r);
		r->blen = 0;
	}
}

void
fdh_resp_error(struct fdh_resp *r, int status, const char *text)
{
	fdh_resp_reset(r);
	r->status = status;
	/* Both fit the buffers fdh_resp_init() made; failure would only drop the body. */
	(void)fdh_resp_header(r, "Content-Type", "text/plain; charset=utf-8");
	(void)fdh_resp_body(r, text, strlen(text));
	(void)fdh_resp_append(r, "\n", 1);
}
