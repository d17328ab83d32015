/*
 * The client: one connection, one request at a time, a deadline per call.
 *
 * The socket stays non-blocking after connect and every wait is a poll()
 * bounded by the call's deadline, so a server that trickles bytes cannot
 * stretch a request past its timeout.  Responses are parsed with llhttp as
 * they stream in; the parser's callbacks copy what they keep, so one fixed
 * read buffer serves bodies of any size.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <llhttp.h>

#include <fdhttp/client.h>
#include "clock.h"
#include "fdpass.h"
#include "xfd.h"

#define CLIENT_DEFAULT_MAX_BODY	((size_t)64 * 1024 * 1024)
#define CLIENT_RBUF_SIZE	(64 * 1024)
/* Body bytes reserved up front from Content-Length; beyond it, doubling. */
#define CLIENT_BODY_PREALLOC	((size_t)1024 * 1024)
/*
 * How long a body held back by Expect: 100-continue waits for the server's
 * word before it goes anyway: a server that does not know the expectation
 * never asks for it (RFC 9110 10.1.1).  curl waits as long.
 */
#define CLIENT_CONTINUE_WAIT_MS	1000

struct fdh_client {
	int fd;
	int timeout_ms;
	size_t max_body;
	unsigned max_fds;
	/*
	 * Set while a request is in flight and left set when it failed or the
	 * server closed: the stream may hold a half-sent request or the rest of
	 * a response, so nothing later on it could be trusted.
	 */
	bool broken;
	bool answered;		/* an exchange has ended: see stream_moved() */
	char rbuf[CLIENT_RBUF_SIZE];
};

struct strbuf {
	char *p;
	size_t len;
	size_t cap;
};

/* A received header as offsets into the exchange's string pool. */
struct hdr_ref {
	size_t name;
	size_t value;
};

/* The state of one request/response exchange. */
struct exchange {
	llhttp_t parser;
	llhttp_settings_t settings;
	struct fdh_client *c;
	struct strbuf pool;		/* names and values, each NUL-terminated */
	struct hdr_ref *refs;
	size_t nrefs;
	size_t caprefs;
	size_t cur_name;
	size_t cur_value;
	struct strbuf body;
	int fds[FDH_MAX_FDS_CEILING + 1];	/* received so far, owned; see exchange_read */
	size_t nfds;
	size_t rpos;			/* unparsed bytes are c->rbuf[rpos..rlen) */
	size_t rlen;
	int status;
	int http_minor;
	int err;			/* why a callback stopped the parser */
	bool is_head;
	bool want_continue;		/* Expect: 100-continue, head sent */
	bool got_continue;
	bool done;			/* the final response is complete */
	bool keep_alive;
	bool eof;
	bool heard;			/* a byte or an fd of the response came */
};

/* -1 for no deadline. */
static int64_t
deadline_after(int timeout_ms)
{
	return timeout_ms > 0 ? fdh_mono_ms() + timeout_ms : -1;
}

/* The earlier of two deadlines, -1 being none. */
static int64_t
earlier(int64_t a, int64_t b)
{
	if (a < 0)
		return b;
	return b < 0 || a < b ? a : b;
}

/* Milliseconds left for poll(): -1 when unbounded, -ETIMEDOUT when past. */
static int
time_left(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - fdh_mono_ms();
	if (left <= 0)
		return -ETIMEDOUT;
	return left > INT_MAX ? INT_MAX : (int)left;
}

/* Returns the revents of fd, or -ETIMEDOUT once deadline passes. */
static int
wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int left, n;

	for (;;) {
		left = time_left(deadline);
		if (left == -ETIMEDOUT)
			return -ETIMEDOUT;
		n = poll(&pfd, 1, left);
		if (n > 0) {
			if (pfd.revents & POLLNVAL)
				return -EBADF;
			return pfd.revents;
		}
		if (n == -1 && errno != EINTR)
			return -errno;
		/* 0: poll rounds, so the deadline is checked again above. */
	}
}

static int
strbuf_reserve(struct strbuf *b, size_t extra)
{
	size_t cap;
	char *p;

	if (extra <= b->cap - b->len)
		return 0;
	if (extra > SIZE_MAX / 2 - b->len)
		return -ENOMEM;
	cap = b->cap ? b->cap : 256;
	while (cap - b->len < extra)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static int
strbuf_add(struct strbuf *b, const void *p, size_t n)
{
	int r;

	if ((r = strbuf_reserve(b, n)) < 0)
		return r;
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static int
strbuf_adds(struct strbuf *b, const char *s)
{
	return strbuf_add(b, s, strlen(s));
}

static void
strbuf_free(struct strbuf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* --- connecting ------------------------------------------------------------ */

/* Takes fd (closed on failure). */
static int
client_new(int fd, int timeout_ms, struct fdh_client **ret_client)
{
	struct fdh_client *c;
	int fl, r;

	fl = fcntl(fd, F_GETFL);
	if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) == -1) {
		r = -errno;
		goto fail;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		r = -ENOMEM;
		goto fail;
	}
	c->fd = fd;
	c->timeout_ms = timeout_ms;
	c->max_body = CLIENT_DEFAULT_MAX_BODY;
	c->max_fds = FDH_MAX_FDS_CEILING;
	*ret_client = c;
	return 0;
fail:
	close(fd);
	return r;
}

/* Bounds a blocking connect(): 0 in SO_SNDTIMEO means forever. */
static int
set_sndtimeo(int fd, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1)
		return -errno;
	return 0;
}

int
fdh_client_connect(const char *path, int timeout_ms, struct fdh_client **ret_client)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	socklen_t sunlen;
	int64_t deadline;
	size_t plen;
	int fd = -1, r;

	if (!path || !ret_client || timeout_ms < 0)
		return -EINVAL;
	plen = strlen(path);
	if (plen == 0 || (path[0] == '@' && plen == 1))
		return -EINVAL;
	if (path[0] == '@') {
		/* Abstract: a leading NUL, and the length says where the name ends. */
		if (plen > sizeof(sun.sun_path))
			return -ENAMETOOLONG;
		memcpy(sun.sun_path + 1, path + 1, plen - 1);
		sunlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
	} else {
		if (plen >= sizeof(sun.sun_path))
			return -ENAMETOOLONG;
		memcpy(sun.sun_path, path, plen + 1);
		sunlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1);
	}

	/*
	 * A non-blocking AF_UNIX connect() never returns EINPROGRESS: with the
	 * listener's backlog full it fails with EAGAIN, and no poll() event says
	 * when a slot frees.  A blocking connect() bounded by SO_SNDTIMEO is the
	 * kernel's own wait for that slot; the socket turns non-blocking after.
	 */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	deadline = deadline_after(timeout_ms);
	for (;;) {
		int left = time_left(deadline);

		if (left == -ETIMEDOUT) {
			r = -ETIMEDOUT;
			goto fail;
		}
		if ((r = set_sndtimeo(fd, left < 0 ? 0 : left)) < 0)
			goto fail;
		if (connect(fd, (struct sockaddr *)&sun, sunlen) == 0)
			break;
		if (errno == EINTR)
			continue;	/* an interrupted AF_UNIX connect leaves the socket unconnected */
		r = errno == EAGAIN ? -ETIMEDOUT : -errno;
		goto fail;
	}
	if ((r = set_sndtimeo(fd, 0)) < 0)
		goto fail;
	return client_new(fd, timeout_ms, ret_client);
fail:
	close(fd);
	return r;
}

int
fdh_client_from_fd(int fd, int timeout_ms, struct fdh_client **ret_client)
{
	int domain = 0, type = 0, r;
	socklen_t len;

	if (fd < 0)
		return -EBADF;
	if (!ret_client || timeout_ms < 0) {
		r = -EINVAL;
		goto fail;
	}
	len = sizeof(domain);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == -1) {
		r = -errno;
		goto fail;
	}
	len = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1) {
		r = -errno;
		goto fail;
	}
	if (domain != AF_UNIX || type != SOCK_STREAM) {
		r = -EPROTOTYPE;
		goto fail;
	}
	return client_new(fd, timeout_ms, ret_client);
fail:
	close(fd);
	return r;
}

void
fdh_client_free(struct fdh_client *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

int
fdh_client_fd(const struct fdh_client *c)
{
	return c->fd;
}

void
fdh_client_set_limits(struct fdh_client *c, size_t max_body, unsigned max_fds)
{
	/* Room for the NUL after the body, and for what SCM_RIGHTS can carry. */
	c->max_body = max_body < SIZE_MAX / 2 ? max_body : SIZE_MAX / 2;
	c->max_fds = max_fds < FDH_MAX_FDS_CEILING ? max_fds : FDH_MAX_FDS_CEILING;
}

int
fdh_client_set_timeout(struct fdh_client *c, int timeout_ms)
{
	if (timeout_ms < 0)
		return -EINVAL;
	c->timeout_ms = timeout_ms;
	return 0;
}

/* --- the request head ------------------------------------------------------ */

static bool
is_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	    (ch >= '0' && ch <= '9') || (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool
token_valid(const char *s)
{
	if (!s || !*s)
		return false;
	for (; *s; s++) {
		if (!is_tchar((unsigned char)*s))
			return false;
	}
	return true;
}

/*
 * A CR or LF in a value would let a caller's data inject headers or a second
 * request; other controls but HTAB are refused by strict servers anyway.
 */
static bool
value_valid(const char *s)
{
	if (!s)
		return false;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return false;
	}
	return true;
}

/*
 * The request-target: a path ("/echo?x=1"), the only form a server of
 * this protocol routes, and visible ASCII, so no space can end it early.
 * Sent without its '/', it would cost the connection a 400.
 */
static bool
target_valid(const char *s)
{
	if (!s || *s != '/')
		return false;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch <= 0x20 || ch >= 0x7f)
			return false;
	}
	return true;
}

/*
 * Checks req and writes its head into *head.  *ret_expect is set when the
 * caller asked for Expect: 100-continue.
 */
static int
build_head(const struct fdh_client_req *req, const char *method, struct strbuf *head,
    bool *ret_expect)
{
	bool has_host = false, expect = false;
	char num[32];
	size_t i, j;
	int r;

	if (!target_valid(req->target) || !token_valid(method))
		return -EINVAL;
	if (req->nheaders > 0 && !req->headers)
		return -EINVAL;
	if (req->body_len > 0 && !req->body)
		return -EINVAL;
	if (req->nfds > 0 && !req->fds)
		return -EINVAL;
	if (req->nfds > FDH_MAX_FDS_CEILING)
		return -E2BIG;
	for (i = 0; i < req->nheaders; i++) {
		const struct fdh_header *h = &req->headers[i];

		if (!token_valid(h->name) || !value_valid(h->value))
			return -EINVAL;
		/* The client frames the body and names the fds itself. */
		if (strcasecmp(h->name, "Content-Length") == 0 ||
		    strcasecmp(h->name, "Transfer-Encoding") == 0 ||
		    strcasecmp(h->name, "X-FD") == 0)
			return -EINVAL;
		if (strcasecmp(h->name, "Host") == 0)
			has_host = true;
		if (strcasecmp(h->name, "Expect") == 0 && strcasecmp(h->value, "100-continue") == 0)
			expect = true;
	}
	for (i = 0; i < req->nfds; i++) {
		const char *name = req->fds[i].name;

		if (!name || !fdh_fd_name_valid(name, strlen(name)))
			return -EINVAL;
		if (req->fds[i].fd < 0)
			return -EBADF;
		for (j = 0; j < i; j++) {
			if (strcmp(req->fds[j].name, name) == 0)
				return -EINVAL;
		}
	}

	if ((r = strbuf_adds(head, method)) < 0 || (r = strbuf_adds(head, " ")) < 0 ||
	    (r = strbuf_adds(head, req->target)) < 0 ||
	    (r = strbuf_adds(head, " HTTP/1.1\r\n")) < 0)
		return r;
	if (!has_host && (r = strbuf_adds(head, "Host: localhost\r\n")) < 0)
		return r;
	for (i = 0; i < req->nheaders; i++) {
		if ((r = strbuf_adds(head, req->headers[i].name)) < 0 ||
		    (r = strbuf_adds(head, ": ")) < 0 ||
		    (r = strbuf_adds(head, req->headers[i].value)) < 0 ||
		    (r = strbuf_adds(head, "\r\n")) < 0)
			return r;
	}
	/* GET and HEAD without a body are the only requests that may omit it. */
	if (req->body_len > 0 || (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)) {
		snprintf(num, sizeof(num), "%zu", req->body_len);
		if ((r = strbuf_adds(head, "Content-Length: ")) < 0 ||
		    (r = strbuf_adds(head, num)) < 0 || (r = strbuf_adds(head, "\r\n")) < 0)
			return r;
	}
	if (req->nfds > 0) {
		if ((r = strbuf_adds(head, "X-FD: ")) < 0)
			return r;
		for (i = 0; i < req->nfds; i++) {
			if ((i > 0 && (r = strbuf_adds(head, ",")) < 0) ||
			    (r = strbuf_adds(head, req->fds[i].name)) < 0)
				return r;
		}
		if ((r = strbuf_adds(head, "\r\n")) < 0)
			return r;
	}
	if ((r = strbuf_adds(head, "\r\n")) < 0)
		return r;
	*ret_expect = expect;
	return 0;
}

/* --- sending --------------------------------------------------------------- */

/*
 * Sends iov[0..iovcnt) (modified as it goes) with fds riding on the first
 * sendmsg() that moves a byte, so they reach the server with the head.
 * Returns 0 when everything went, 1 when the server began to answer first
 * (an early error response: the rest is left unsent), or -errno.
 */
static int
client_send(struct fdh_client *c, struct iovec *iov, size_t iovcnt, const int *fds,
    size_t nfds, int64_t deadline)
{
	ssize_t n;
	int r;

	for (;;) {
		while (iovcnt > 0 && iov->iov_len == 0) {
			iov++;
			iovcnt--;
		}
		if (iovcnt == 0)
			return 0;
		n = fdh_send_fds(c->fd, iov, iovcnt, fds, nfds);
		if (n == -EAGAIN) {
			r = wait_fd(c->fd, POLLOUT | POLLIN, deadline);
			if (r < 0)
				return r;
			if (r & POLLIN)
				return 1;
			continue;	/* POLLERR/POLLHUP: the next send says why */
		}
		if (n < 0)
			return (int)n;
		if (n > 0) {
			fds = NULL;
			nfds = 0;
		}
		/* sendmsg() never reports more than iov holds; iovcnt keeps that visible. */
		while (n > 0 && iovcnt > 0) {
			size_t k = (size_t)n < iov->iov_len ? (size_t)n : iov->iov_len;

			iov->iov_base = (char *)iov->iov_base + k;
			iov->iov_len -= k;
			n -= (ssize_t)k;
			if (iov->iov_len == 0) {
				iov++;
				iovcnt--;
			}
		}
	}
}

/* --- the response ---------------------------------------------------------- */

static struct exchange *
xchg(llhttp_t *p)
{
	return p->data;
}

/* Stops the parser with err; llhttp turns the -1 into an HPE_CB_* error. */
static int
fail_cb(struct exchange *x, int err)
{
	x->err = err;
	return -1;
}

static int
pool_add(struct exchange *x, const char *at, size_t len)
{
	/*
	 * The client trusts its server little more than a server its client.
	 * -EOVERFLOW, not the body's -EMSGSIZE: raising the body limit would
	 * not help.
	 */
	if (len > FDH_MAX_HEAD_CEILING - x->pool.len)
		return -EOVERFLOW;
	return strbuf_add(&x->pool, at, len);
}

static int
on_message_begin(llhttp_t *p)
{
	struct exchange *x = xchg(p);

	/* A new message: whatever an interim 1xx carried is forgotten. */
	x->pool.len = 0;
	x->cur_name = 0;
	x->nrefs = 0;
	x->body.len = 0;
	x->status = 0;
	return 0;
}

static int
on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct exchange *x = xchg(p);
	int r;

	if ((r = pool_add(x, at, len)) < 0)
		return fail_cb(x, r);
	return 0;
}

static int
on_header_field_complete(llhttp_t *p)
{
	struct exchange *x = xchg(p);
	int r;

	if ((r = pool_add(x, "", 1)) < 0)
		return fail_cb(x, r);
	/* The value starts here even when llhttp never calls on_header_value. */
	x->cur_value = x->pool.len;
	return 0;
}

static int
on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct exchange *x = xchg(p);
	int r;

	if ((r = pool_add(x, at, len)) < 0)
		return fail_cb(x, r);
	return 0;
}

static int
on_header_value_complete(llhttp_t *p)
{
	struct exchange *x = xchg(p);
	size_t end;
	int r;

	/* llhttp leaves trailing whitespace in the value; OWS is not part of it. */
	end = x->pool.len;
	while (end > x->cur_value && (x->pool.p[end - 1] == ' ' || x->pool.p[end - 1] == '\t'))
		end--;
	x->pool.len = end;
	if ((r = pool_add(x, "", 1)) < 0)
		return fail_cb(x, r);
	if (x->nrefs == x->caprefs) {
		size_t cap = x->caprefs ? x->caprefs * 2 : 16;
		struct hdr_ref *refs;

		if (x->nrefs >= FDH_MAX_HEADERS_CEILING)
			return fail_cb(x, -EOVERFLOW);
		refs = reallocarray(x->refs, cap, sizeof(*refs));
		if (!refs)
			return fail_cb(x, -ENOMEM);
		x->refs = refs;
		x->caprefs = cap;
	}
	x->refs[x->nrefs].name = x->cur_name;
	x->refs[x->nrefs].value = x->cur_value;
	x->nrefs++;
	x->cur_name = x->pool.len;
	return 0;
}

static int
on_headers_complete(llhttp_t *p)
{
	struct exchange *x = xchg(p);

	if (p->http_major != 1)
		return fail_cb(x, -EPROTO);
	/* llhttp takes one to three digits: "20" or "0" would pass for a final status. */
	if (p->status_code < 100)
		return fail_cb(x, -EPROTO);
	x->status = p->status_code;
	x->http_minor = p->http_minor;
	if (p->status_code / 100 == 1)
		return 0;
	if ((p->flags & F_CONTENT_LENGTH) && !x->is_head) {
		if (p->content_length > x->c->max_body)
			return fail_cb(x, -EMSGSIZE);
		if (strbuf_reserve(&x->body, (p->content_length < CLIENT_BODY_PREALLOC ?
		    (size_t)p->content_length : CLIENT_BODY_PREALLOC) + 1) < 0)
			return fail_cb(x, -ENOMEM);
	}
	/* 1: the response to HEAD describes a body it does not carry. */
	return x->is_head ? 1 : 0;
}

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
	struct exchange *x = xchg(p);

	if (len > x->c->max_body - x->body.len)
		return fail_cb(x, -EMSGSIZE);
	if (strbuf_add(&x->body, at, len) < 0)
		return fail_cb(x, -ENOMEM);
	return 0;
}

static int
on_message_complete(llhttp_t *p)
{
	struct exchange *x = xchg(p);

	if (x->status / 100 == 1) {
		if (x->status == 100 && x->want_continue) {
			x->got_continue = true;
			return HPE_PAUSED;	/* the caller sends the body, then resumes */
		}
		return 0;	/* interim: the final response follows */
	}
	x->done = true;
	x->keep_alive = llhttp_should_keep_alive(p) != 0;
	/* Pausing marks where the response ended: anything after it is surplus. */
	return HPE_PAUSED;
}

static void
exchange_init(struct exchange *x, struct fdh_client *c, bool is_head)
{
	memset(x, 0, sizeof(*x));
	x->c = c;
	x->is_head = is_head;
	llhttp_settings_init(&x->settings);
	x->settings.on_message_begin = on_message_begin;
	x->settings.on_header_field = on_header_field;
	x->settings.on_header_field_complete = on_header_field_complete;
	x->settings.on_header_value = on_header_value;
	x->settings.on_header_value_complete = on_header_value_complete;
	x->settings.on_headers_complete = on_headers_complete;
	x->settings.on_body = on_body;
	x->settings.on_message_complete = on_message_complete;
	llhttp_init(&x->parser, HTTP_RESPONSE, &x->settings);
	x->parser.data = x;
}

static void
exchange_cleanup(struct exchange *x)
{
	fdh_close_fds(x->fds, x->nfds);
	x->nfds = 0;
	strbuf_free(&x->pool);
	strbuf_free(&x->body);
	free(x->refs);
	x->refs = NULL;
}

/* Parses the buffered bytes.  1: paused (done or 100 Continue), 0: need more. */
static int
exchange_feed(struct exchange *x)
{
	const char *p = x->c->rbuf + x->rpos;
	llhttp_errno_t e;

	if (x->rpos == x->rlen)
		return 0;
	e = llhttp_execute(&x->parser, p, x->rlen - x->rpos);
	if (x->err)
		return x->err;
	if (e == HPE_OK) {
		x->rpos = x->rlen = 0;
		return 0;
	}
	if (e == HPE_PAUSED && (x->done || x->got_continue)) {
		x->rpos += (size_t)(llhttp_get_error_pos(&x->parser) - p);
		return 1;
	}
	return -EPROTO;	/* malformed, or a 101 switching to a protocol we do not speak */
}

/* Reads until the final response is complete or a 100 Continue we wait for. */
static int
exchange_read(struct exchange *x, int64_t deadline)
{
	struct fdh_client *c = x->c;
	size_t got, room;
	bool truncated;
	ssize_t n;
	int r;

	for (;;) {
		if ((r = exchange_feed(x)) != 0)
			return r;
		/*
		 * Room for one fd more than allowed: CMSG_SPACE() rounds up to
		 * 8 bytes, so for an odd room the kernel passes one extra fd
		 * without MSG_CTRUNC and the helper would close it unseen,
		 * leaving a count that matches X-FD by accident.  Taken, it is
		 * seen and refused.  253 needs no spare: no message carries more.
		 */
		room = c->max_fds - x->nfds;
		if (room < FDH_MAX_FDS_CEILING)
			room++;
		n = fdh_recv_fds(c->fd, c->rbuf, sizeof(c->rbuf), x->fds + x->nfds, room,
		    &got, &truncated);
		if (n == -EAGAIN) {
			if ((r = wait_fd(c->fd, POLLIN, deadline)) < 0)
				return r;
			continue;
		}
		if (n < 0)
			return (int)n;
		x->heard = x->heard || n > 0 || got > 0;
		x->nfds += got;
		/*
		 * Fewer fds than we had room for, and truncated: the kernel
		 * found no descriptor free for the rest (RLIMIT_NOFILE), our
		 * fault and not the server's.
		 */
		if (truncated && got < room)
			return -EMFILE;
		/* More fds than max_fds. */
		if (truncated || x->nfds > c->max_fds)
			return -EPROTO;
		if (n == 0) {
			x->eof = true;
			llhttp_finish(&x->parser);	/* completes a body framed by EOF */
			if (x->err)
				return x->err;
			return x->done ? 1 : -ECONNRESET;
		}
		x->rpos = 0;
		x->rlen = (size_t)n;
	}
}

/* Moves the received fds into resp, named by the response's X-FD header. */
static int
exchange_take_fds(struct exchange *x, const struct fdh_header *h, size_t nh,
    struct fdh_client_resp *resp)
{
	struct fdh_xfd_name names[FDH_MAX_FDS_CEILING];
	struct fdh_named_fd *nfd;
	const char *xfd = NULL;
	size_t i, size;
	char *s;
	int n;

	for (i = 0; i < nh; i++) {
		if (strcasecmp(h[i].name, "X-FD") == 0) {
			if (xfd)
				return -EPROTO;
			xfd = h[i].value;
		}
	}
	if (!xfd)
		return x->nfds == 0 ? 0 : -EPROTO;
	n = fdh_xfd_parse(xfd, strlen(xfd), names, FDH_MAX_FDS_CEILING);
	if (n <= 0 || (size_t)n != x->nfds)
		return -EPROTO;

	size = x->nfds * sizeof(*nfd);
	for (i = 0; i < x->nfds; i++)
		size += names[i].len + 1;
	nfd = malloc(size);
	if (!nfd)
		return -ENOMEM;
	s = (char *)(nfd + x->nfds);
	for (i = 0; i < x->nfds; i++) {
		memcpy(s, xfd + names[i].off, names[i].len);
		s[names[i].len] = '\0';
		nfd[i].name = s;
		nfd[i].fd = x->fds[i];
		x->fds[i] = -1;
		s += names[i].len + 1;
	}
	resp->fds = nfd;
	resp->nfds = x->nfds;
	x->nfds = 0;
	return 0;
}

/* Turns a completed exchange into resp; x keeps nothing on success. */
static int
exchange_finish(struct exchange *x, struct fdh_client_resp *resp)
{
	struct fdh_header *h = NULL;
	size_t i;
	int r;

	memset(resp, 0, sizeof(*resp));
	if (x->nrefs > 0) {
		char *s;

		h = malloc(x->nrefs * sizeof(*h) + x->pool.len);
		if (!h)
			return -ENOMEM;
		s = (char *)(h + x->nrefs);
		memcpy(s, x->pool.p, x->pool.len);
		for (i = 0; i < x->nrefs; i++) {
			h[i].name = s + x->refs[i].name;
			h[i].value = s + x->refs[i].value;
		}
	}
	if ((r = exchange_take_fds(x, h, x->nrefs, resp)) < 0)
		goto fail;
	if ((r = strbuf_add(&x->body, "", 1)) < 0)
		goto fail;
	resp->status = x->status;
	resp->http_minor = x->http_minor;
	resp->headers = h;
	resp->nheaders = x->nrefs;
	resp->body = x->body.p;
	resp->body_len = x->body.len - 1;
	x->body.p = NULL;
	x->body.len = x->body.cap = 0;
	return 0;
fail:
	free(h);
	if (resp->fds) {
		/* Hand the fds back so the exchange's cleanup closes them. */
		for (i = 0; i < resp->nfds; i++)
			x->fds[i] = resp->fds[i].fd;
		x->nfds = resp->nfds;
		free(resp->fds);
	}
	memset(resp, 0, sizeof(*resp));
	return r;
}

/*
 * Between exchanges nothing may arrive but the end of the stream: a server
 * closing an idle connection, or bytes and fds it sent after its response
 * (a second response to one request).  Read by the next exchange, such
 * bytes would pass for its response.  Looked at before anything is sent,
 * the caller learns that the request never went and may send it on a new
 * connection.
 */
static bool
stream_moved(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, 0) == 1;
}

static bool
gone(int r)
{
	return r == -EPIPE || r == -ECONNRESET;
}

/*
 * What sendmsg() says of the fds themselves: not open (EBADF), of a kind
 * that may not be passed (EINVAL: an io_uring), or over the user's limit on
 * fds in flight (ETOOMANYREFS).  The kernel checks them before it queues a
 * byte, so such a failure of the first sendmsg() leaves the stream as it was.
 */
static bool
fds_refused(int r)
{
	return r == -EBADF || r == -EINVAL || r == -ETOOMANYREFS;
}

int
fdh_client_request(struct fdh_client *c, const struct fdh_client_req *req,
    struct fdh_client_resp *ret_resp)
{
	struct strbuf head = { 0 };
	struct fdh_client_resp resp;
	struct exchange x;
	struct iovec iov[2];
	int fds[FDH_MAX_FDS_CEILING];
	const char *method;
	bool expect = false, sent_all = false;
	int64_t deadline, continue_by = -1;
	int r, send_err = 0;
	size_t i;

	if (!c || !req || !ret_resp)
		return -EINVAL;
	if (c->broken)
		return -ENOTCONN;
	method = req->method ? req->method : "GET";
	if ((r = build_head(req, method, &head, &expect)) < 0) {
		strbuf_free(&head);
		return r;
	}
	if (c->answered && stream_moved(c->fd)) {
		strbuf_free(&head);
		c->broken = true;
		return -ENOTCONN;
	}
	for (i = 0; i < req->nfds; i++)
		fds[i] = req->fds[i].fd;

	deadline = deadline_after(c->timeout_ms);
	exchange_init(&x, c, strcmp(method, "HEAD") == 0);
	c->broken = true;
	iov[0].iov_base = head.p;
	iov[0].iov_len = head.len;
	iov[1].iov_base = (void *)(uintptr_t)req->body;
	iov[1].iov_len = req->body_len;

	/* With Expect: 100-continue the body waits for the server's go-ahead. */
	r = client_send(c, iov, expect ? 1 : 2, fds, req->nfds, deadline);
	if (r == 0) {
		sent_all = !expect || req->body_len == 0;
		x.want_continue = expect;
		if (!sent_all)
			continue_by = fdh_mono_ms() + CLIENT_CONTINUE_WAIT_MS;
	} else if (gone(r) && c->answered && iov[0].iov_base == head.p) {
		/*
		 * Not a byte went, on a connection that has served: a drain or
		 * the idle timeout ended it as this request was being sent (a
		 * draining server shuts a connection's input before it looks
		 * for a request there).  As stream_moved(): it may go again.
		 */
		r = -ENOTCONN;
		goto fail;
	} else if (gone(r)) {
		send_err = r;	/* the server may have answered before it left */
	} else if (r < 0) {
		/*
		 * Checking every fd with fcntl() first would cost a system call
		 * per fd on every request; the kernel checks them anyway.
		 */
		if (iov[0].iov_base == head.p && fds_refused(r))
			c->broken = false;
		goto fail;
	}

	for (;;) {
		bool held = x.want_continue && !sent_all;

		r = exchange_read(&x, held ? earlier(deadline, continue_by) : deadline);
		if (r == -ETIMEDOUT && held && time_left(deadline) != -ETIMEDOUT) {
			/* No word from the server: the body goes anyway, a late 100 is skipped. */
			x.want_continue = false;
		} else if (r < 0) {
			/*
			 * Closed before it took a byte, and not a word said (a
			 * refusal, as fdhttpd's 403, is read first): the request
			 * never went, and may go again, as on a served connection.
			 */
			if (send_err && iov[0].iov_base == head.p && !x.heard)
				r = -ENOTCONN;
			else if (send_err)
				r = send_err;
			goto fail;
		} else if (x.done) {
			break;
		} else {
			/* 100 Continue */
			llhttp_resume(&x.parser);
			x.got_continue = false;
			x.want_continue = false;
		}
		if (sent_all || send_err)
			continue;
		r = client_send(c, &iov[1], 1, NULL, 0, deadline);
		if (r == 0)
			sent_all = true;
		else if (gone(r))
			send_err = r;
		else if (r < 0)
			goto fail;
	}
	/* No pipelining: a byte past the response answers nothing we asked. */
	if (x.rpos != x.rlen) {
		r = -EPROTO;
		goto fail;
	}
	if ((r = exchange_finish(&x, &resp)) < 0)
		goto fail;
	/*
	 * A body left unsent (the server answered early) would be read as the
	 * next request, so such a connection is finished too.
	 */
	resp.closed = !x.keep_alive || x.eof || !sent_all || send_err != 0;
	c->broken = resp.closed != 0;
	c->answered = true;
	exchange_cleanup(&x);
	strbuf_free(&head);
	*ret_resp = resp;
	return 0;
fail:
	exchange_cleanup(&x);
	strbuf_free(&head);
	return r;
}

const char *
fdh_client_resp_header(const struct fdh_client_resp *resp, const char *name)
{
	size_t i;

	for (i = 0; i < resp->nheaders; i++) {
		if (strcasecmp(resp->headers[i].name, name) == 0)
			return resp->headers[i].value;
	}
	return NULL;
}

int
fdh_client_resp_take_fd(struct fdh_client_resp *resp, const char *name)
{
	size_t i;
	int fd;

	for (i = 0; i < resp->nfds; i++) {
		if (resp->fds[i].fd >= 0 && strcmp(resp->fds[i].name, name) == 0) {
			fd = resp->fds[i].fd;
			resp->fds[i].fd = -1;
			return fd;
		}
	}
	return -ENOENT;
}

void
fdh_client_resp_release(struct fdh_client_resp *resp)
{
	size_t i;

	if (!resp)
		return;
	for (i = 0; i < resp->nfds; i++) {
		if (resp->fds[i].fd >= 0)
			close(resp->fds[i].fd);
	}
	free(resp->fds);
	free(resp->headers);
	free(resp->body);
	memset(resp, 0, sizeof(*resp));
}
