/*
 * One connection: reading a request with its fds, handing it to its
 * handler, writing the response with its fds.  Requests are served one at
 * a time per connection, so every fd pairs with the request whose bytes it
 * came with.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "attr.h"
#include "closer.h"
#include "engine.h"
#include "fdpass.h"

static void conn_respond(struct fdh_dispatch *d, struct fdh_conn *c, bool close_after,
    bool is_head);

uint32_t
fdh_conn_wanted(const struct fdh_dispatch *d, const struct fdh_conn *c)
{
	if (c->state == CONN_WRITE)
		return EPOLLOUT;
	return (d->starved ? 0 : EPOLLIN) | (c->continue_due ? EPOLLOUT : 0);
}

/*
 * A client chose these fds (or a handler, which may pass a client's on):
 * fdh_closer_close() keeps a lingering one from holding every connection
 * of this worker in its close.
 */
static void
close_request_fds(struct fdh_dispatch *d, int *fds, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		if (fds[i] >= 0) {
			fdh_closer_close(fds[i]);
			fds[i] = -1;
			d->open_fds--;
		}
	}
}

/* Forget the request in progress: its buffer, its fds, its parse state. */
static void
conn_reset_request(struct fdh_dispatch *d, struct fdh_conn *c)
{
	if (c->fds) {
		close_request_fds(d, c->fds, c->nfds);
		free(c->fds);
		c->fds = NULL;
	}
	c->nfds = 0;
	free(c->in);
	c->in = NULL;
	c->in_len = c->in_cap = 0;
	c->scan = c->head_len = c->need = 0;
	c->continue_due = false;
}

static void
out_free(struct fdh_dispatch *d, struct fdh_conn_out *out)
{
	close_request_fds(d, out->fds, out->nfds);
	if (out->release)
		out->release(out->borrow, out->release_ctx);
	free(out->fds);
	free(out->buf);
	free(out);
}

void
fdh_conn_close(struct fdh_dispatch *d, struct fdh_conn *c)
{
	conn_reset_request(d, c);
	if (c->out)
		out_free(d, c->out);
	fdh_dispatch_timer_disarm(d, c);
	fdh_dispatch_conn_gone(d, c);	/* before close(): it leaves the epoll set by fd */
	/*
	 * The socket itself closes at the end of the turn, after the control
	 * socket was read, or before a handler runs if one comes first
	 * (fdh_dispatch_close_ended()).  The last close() of a Unix socket
	 * queues the kernel's SCM_RIGHTS garbage collector on a kworker
	 * whenever any Unix socket is in flight (Linux 6.18 and earlier), and
	 * when a client hangs up, the supervisor has often sent the next
	 * connection already.  Read first, it is no longer in flight.  The
	 * pidfd closes after the socket: each system call before that close
	 * is a moment for the supervisor, woken by the client's next
	 * connect(), to run and put a connection in flight.
	 */
	c->closing_fd = c->fd;
	c->fd = -1;
}

/*
 * fdh_resp_error() with a text made from fmt.  Out of line: its buffer
 * stays off the frames of the per-request path (attr.h).
 */
static __attribute__((noinline, cold, format(printf, 3, 4))) void
resp_errorf(struct fdh_resp *r, int status, const char *fmt, ...)
{
	char text[160];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	fdh_resp_error(r, status, text);
}

/*
 * The kernel refused the response's fds.  Descriptors in flight, sent and
 * not yet received, are charged to the user who sent them, and past its
 * RLIMIT_NOFILE every sendmsg() with fds fails (ETOOMANYREFS) until
 * receivers read: clients that leave answers with fds unread bring every
 * process of that user there.  Nothing was sent: the client is told so in
 * a 503, rather than find its connection closed without an answer.
 */
static __attribute__((noinline, cold)) void
conn_fds_refused(struct fdh_dispatch *d, struct fdh_conn *c, bool is_head)
{
	if (d->hooks.fds_refused)
		d->hooks.fds_refused(d, d->hooks.arg);
	fdh_resp_error(&d->resp, 503, "the response's descriptors could not be sent: too "
	    "many sent by this service wait unread in clients' sockets; try again later");
	conn_respond(d, c, true, is_head);
}

/*
 * A handler's non-zero return.  A positive one is a slip (return 404, for
 * fdh_resp_status() and 0): answered as an error too, rather than as the
 * 200 the handler did not mean, and the text says which.
 */
static __attribute__((noinline, cold)) void
handler_failed(struct fdh_resp *r, int ret)
{
	if (ret < 0)
		resp_errorf(r, 500, "handler failed: %s", strerror(-ret));
	else
		resp_errorf(r, 500, "handler returned %d, not 0 or a negative errno", ret);
}

/*
 * The framework's own answer to a request it will not serve; then close.
 * is_head: the head was parsed and asks HEAD, so the answer has no body
 * (RFC 9110 9.3.2), as a handler's would not.
 */
static void
conn_fail(struct fdh_dispatch *d, struct fdh_conn *c, int *fds, unsigned nfds, bool is_head,
    int status, const char *text)
{
	close_request_fds(d, fds, nfds);	/* every fd of a refused request */
	c->linger = true;			/* the rest of it may be on its way */
	fdh_resp_error(&d->resp, status, text);
	conn_respond(d, c, true, is_head);
}

/*
 * conn_fail() for a request whose head was parsed in this read, so that
 * d->req.head is its own.  Out of line: is_head is worked out here, where
 * only a refusal pays for it.
 */
static __attribute__((noinline, cold)) void
conn_fail_parsed(struct fdh_dispatch *d, struct fdh_conn *c, int *fds, unsigned nfds,
    int status, const char *text)
{
	conn_fail(d, c, fds, nfds, d->req.head.method_id == HTTP_HEAD, status, text);
}

/* The refusal of a parsed request whose fds and X-FD names do not agree in number. */
static __attribute__((noinline, cold)) void
conn_fail_fd_count(struct fdh_dispatch *d, struct fdh_conn *c, int *fds, unsigned nfds)
{
	char text[80];

	(void)snprintf(text, sizeof(text), "%u fds received but X-FD names %u", nfds,
	    d->req.head.nfd_names);
	conn_fail_parsed(d, c, fds, nfds, 400, text);
}

/* conn_fail() with a text made from fmt. */
static __attribute__((noinline, cold, format(printf, 7, 8))) void
conn_failf(struct fdh_dispatch *d, struct fdh_conn *c, int *fds, unsigned nfds, bool is_head,
    int status, const char *fmt, ...)
{
	char text[160];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	conn_fail(d, c, fds, nfds, is_head, status, text);
}

/*
 * c waits in state (CONN_WAIT or CONN_LINGER) for a last call's time.
 * CONN_WAIT: a drain (or drain_soon) began after c's response said
 * keep-alive, and its client may send one more request, as in
 * close_idle().
 */
static void
conn_last_call(struct fdh_dispatch *d, struct fdh_conn *c, enum fdh_conn_state state)
{
	c->state = (uint8_t)state;
	fdh_dispatch_timer_arm(d, c, TIMER_LAST);
	if (c->events != fdh_conn_wanted(d, c))
		fdh_dispatch_conn_events(d, c, fdh_conn_wanted(d, c));
}

/*
 * A connection closing from this side while its client may still be
 * sending: the rest of a refused request (a body over the limit, a head
 * that never fits), or a next request behind one answered with
 * Connection: close.  Closed at once, the client's next send() would fail
 * with EPIPE before it read the answer (curl then reports "Send failure:
 * Broken pipe", not the 413), and input left unread in a closing unix
 * socket makes its next read fail with ECONNRESET.  So only the write side
 * ends, and what comes in is read and dropped, fds included, until the
 * client closes (it has read the answer and its EOF by then) or
 * LAST_CALL_MS pass.  The time bounds the bytes: no more than a client
 * could have sent as requests meanwhile.
 */
static __attribute__((noinline, cold)) void
conn_linger(struct fdh_dispatch *d, struct fdh_conn *c)
{
	(void)shutdown(c->fd, SHUT_WR);
	conn_last_call(d, c, CONN_LINGER);
}

static __attribute__((noinline, cold)) void
conn_linger_read(struct fdh_dispatch *d, struct fdh_conn *c, uint32_t revents)
{
	size_t nfds = 0;
	bool truncated;
	ssize_t n;

	if (!fdh_dispatch_fd_room(d)) {
		if (revents & (EPOLLHUP | EPOLLERR))
			fdh_conn_close(d, c);
		return;
	}
	n = fdh_recv_fds(c->fd, d->scratch, d->scratch_cap, d->rfds, d->lim.max_fds, &nfds,
	    &truncated);
	d->open_fds += (int)nfds;
	close_request_fds(d, d->rfds, (unsigned)nfds);
	if (n == -EAGAIN || n > 0)
		return;
	c->drained = n == 0;
	fdh_conn_close(d, c);
}

/*
 * The end of an exchange after which the connection is not simply kept
 * alive.  Out of line, as conn_finish() is inlined where every request goes.
 */
static __attribute__((noinline, cold)) void
conn_end(struct fdh_dispatch *d, struct fdh_conn *c, bool close_after)
{
	if (!close_after)
		conn_last_call(d, c, CONN_WAIT);
	else if (c->linger)
		conn_linger(d, c);
	else
		fdh_conn_close(d, c);
}

/* Inlined in both callers: a call here costs every request a frame. */
static inline __attribute__((always_inline)) void
conn_finish(struct fdh_dispatch *d, struct fdh_conn *c, bool close_after)
{
	c->served = true;
	if (d->hooks.request_done)
		d->hooks.request_done(d, d->hooks.arg);
	if (close_after || d->draining || d->drain_soon) {
		conn_end(d, c, close_after);
		return;
	}
	c->state = CONN_WAIT;
	fdh_dispatch_timer_arm(d, c, TIMER_IDLE);
	if (c->events != fdh_conn_wanted(d, c))	/* after a write that waited */
		fdh_dispatch_conn_events(d, c, fdh_conn_wanted(d, c));
}

/* Keeps what the socket did not take: copies of the bytes, the fds if none went. */
static int
conn_keep_rest(struct fdh_dispatch *d, struct fdh_conn *c, const char *head, size_t hlen,
    const char *body, size_t blen, size_t sent, bool close_after)
{
	struct fdh_resp *r = &d->resp;
	struct fdh_conn_out *out;
	size_t hrest = sent < hlen ? hlen - sent : 0;
	size_t bsent = sent > hlen ? sent - hlen : 0;
	size_t copy = hrest + (r->borrowed ? 0 : blen - bsent);

	out = calloc(1, sizeof(*out));
	if (!out)
		return -ENOMEM;
	out->buf = malloc(copy ? copy : 1);
	if (!out->buf)
		goto fail;
	memcpy(out->buf, head + (hlen - hrest), hrest);
	if (!r->borrowed)
		memcpy(out->buf + hrest, body + bsent, blen - bsent);
	out->len = copy;
	if (r->borrowed) {
		out->borrow = body;
		out->borrow_len = blen;
		out->borrow_off = bsent;
		out->release = r->release;
		out->release_ctx = r->release_ctx;
	}
	if (sent == 0 && r->nfds) {
		out->fds = malloc(r->nfds * sizeof(*out->fds));
		if (!out->fds)
			goto fail;
		memcpy(out->fds, r->fds, r->nfds * sizeof(*out->fds));
		out->nfds = r->nfds;
		r->nfds = 0;		/* the fds are the pending output's now */
	}
	if (r->borrowed) {
		r->borrowed = false;	/* released by the pending output, not by reset */
		r->release = NULL;
	}
	out->close_after = close_after;
	c->out = out;
	return 0;
fail:
	free(out->buf);
	free(out);
	return -ENOMEM;
}

/*
 * Sends d->resp on c: one head buffer and the body in one sendmsg that
 * carries the response fds.  What the socket does not take waits for
 * EPOLLOUT in c->out; the fds went with the first byte if any byte went.
 */
static FDH_NO_CANARY void
conn_respond(struct fdh_dispatch *d, struct fdh_conn *c, bool close_after, bool is_head)
{
	struct fdh_resp *r = &d->resp;
	struct iovec iov[2];
	const char *head;
	const char *body = fdh_resp_body_ptr(r);
	size_t hlen, blen = is_head ? 0 : fdh_resp_body_len(r);
	ssize_t n;
	bool keep_10;

	close_after = close_after || d->draining || d->drain_soon;
	keep_10 = !close_after && d->req.conn == c && d->req.head.http_minor == 0;
	if (fdh_resp_finish_head(r, close_after, keep_10, &head, &hlen) < 0) {
		fdh_resp_reset(r);
		fdh_conn_close(d, c);
		return;
	}
	if (r->nfds == 0 && blen - 1 < FDH_RESP_INLINE_MAX) {
		/* One buffer is one send(): see fdh_resp_inline_body(). */
		hlen = fdh_resp_inline_body(r, head, hlen, body, blen);
		blen = 0;
		n = fdh_send(c->fd, head, hlen);
	} else {
		iov[0].iov_base = (void *)(uintptr_t)head;
		iov[0].iov_len = hlen;
		iov[1].iov_base = (void *)(uintptr_t)body;
		iov[1].iov_len = blen;
		n = fdh_send_fds(c->fd, iov, blen ? 2 : 1, r->fds, r->nfds);
	}
	if (n == (ssize_t)(hlen + blen)) {
		fdh_resp_reset(r);	/* sent: our copies of the fds close now */
		conn_finish(d, c, close_after);
		return;
	}
	if (n == -ETOOMANYREFS && r->nfds > 0) {
		conn_fds_refused(d, c, is_head);
		return;
	}
	if (n < 0 && n != -EAGAIN) {
		fdh_resp_reset(r);	/* the peer is gone; the fds die with the response */
		fdh_conn_close(d, c);
		return;
	}
	if (conn_keep_rest(d, c, head, hlen, body, blen, n > 0 ? (size_t)n : 0,
	    close_after) < 0) {
		fdh_resp_reset(r);
		fdh_conn_close(d, c);
		return;
	}
	fdh_resp_reset(r);
	c->state = CONN_WRITE;
	fdh_dispatch_timer_arm(d, c, TIMER_WRITE);
	fdh_dispatch_conn_events(d, c, EPOLLOUT);
}

static void
conn_write(struct fdh_dispatch *d, struct fdh_conn *c)
{
	struct fdh_conn_out *out = c->out;
	struct iovec iov[2];
	size_t iovcnt = 0, hrest = out->len - out->off;
	size_t brest = out->borrow_len - out->borrow_off;
	ssize_t n;
	bool close_after;

	if (hrest) {
		iov[iovcnt].iov_base = out->buf + out->off;
		iov[iovcnt++].iov_len = hrest;
	}
	if (brest) {
		iov[iovcnt].iov_base = (char *)(uintptr_t)out->borrow + out->borrow_off;
		iov[iovcnt++].iov_len = brest;
	}
	n = fdh_send_fds(c->fd, iov, iovcnt, out->fds, out->nfds);
	if (n == -EAGAIN)
		return;
	if (n <= 0) {
		/*
		 * Closed, not answered 503 as conn_respond() does: rare (the
		 * first send found the socket full), and the head is made.
		 */
		if (n == -ETOOMANYREFS && d->hooks.fds_refused)
			d->hooks.fds_refused(d, d->hooks.arg);
		fdh_conn_close(d, c);
		return;
	}
	close_request_fds(d, out->fds, out->nfds);	/* they went with this first byte */
	out->nfds = 0;
	if ((size_t)n < hrest) {
		out->off += (size_t)n;
	} else {
		out->off = out->len;
		out->borrow_off += (size_t)n - hrest;
	}
	if (out->off < out->len || out->borrow_off < out->borrow_len) {
		fdh_dispatch_timer_arm(d, c, TIMER_WRITE);	/* progress: a fresh write deadline */
		return;
	}
	close_after = out->close_after;
	c->out = NULL;
	out_free(d, out);
	conn_finish(d, c, close_after);
}

/*
 * The length of the empty lines (CRLF pairs) that open b[0..len).  RFC 9112
 * 2.2 asks a server to ignore them where a request line is due: some clients
 * end a body with a CRLF that Content-Length does not count.  A bare LF is
 * not one: the head scan refuses it everywhere.  Out of line, as its
 * callers' branches are: a well-formed request never runs it.
 */
static __attribute__((noinline, cold)) size_t
empty_lines(const char *b, size_t len)
{
	size_t i = 0;

	while (i + 1 < len && b[i] == '\r' && b[i + 1] == '\n')
		i += 2;
	return i;
}

/* Whether the bytes after a request's, b[0..len), start another. */
static inline bool
is_surplus(const char *b, size_t len)
{
	return empty_lines(b, len) < len;
}

/*
 * Whether bytes of a next request came while a handler ran: a look without
 * taking them, or the fds that may ride on them.  Out of line and made
 * only after a handler that took a millisecond or more: made on every
 * request, it would cost each a system call.
 */
static __attribute__((noinline, cold)) bool
surplus_arrived(const struct fdh_conn *c)
{
	char b[64];
	ssize_t n = recv(c->fd, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);

	return n > 0 && is_surplus(b, (size_t)n);
}

/*
 * Hands the complete request in buf to its handler and answers it.  after
 * counts the bytes that followed it in the same read.
 */
static void
conn_serve(struct fdh_dispatch *d, struct fdh_conn *c, char *buf, int *fds, unsigned nfds,
    size_t after)
{
	struct fdh_req *req = &d->req;
	struct fdh_head *h = &req->head;
	const struct fdh_route *route;
	bool is_head, close_after;
	uint64_t began = d->now;
	unsigned i;
	int status, r;

	fdh_http_terminate(h);
	for (i = 0; i < h->nfd_names; i++) {
		const struct fdh_req_hdr *x = &h->hdrs[h->xfd_hdr];

		memcpy(req->fd_names[i], x->value + h->fd_names[i].off, h->fd_names[i].len);
		req->fd_names[i][h->fd_names[i].len] = '\0';
	}
	req->body = buf + c->head_len;
	req->body_len = (size_t)h->content_length;
	req->fds = fds;
	req->nfds = nfds;
	req->conn = c;
	close_after = !h->keep_alive;
	/* Bytes of a next request already here: answer this one, then close. */
	if (after > 0 && is_surplus(buf + c->need, after))
		close_after = c->linger = true;
	is_head = h->method_id == HTTP_HEAD;

	route = fdh_route_find(&d->routes, h->method_id, h->path, h->path_len, d->allow,
	    sizeof(d->allow), &status);
	if (!route) {
		fdh_resp_error(&d->resp, status,
		    status == 404 ? "no route for this path" : "method not allowed for this path");
		if (status == 405)
			(void)fdh_resp_header(&d->resp, "Allow", d->allow);
	} else {
		/* A handler may take its time: an ended connection's peer does not wait on it. */
		if (d->closed)
			fdh_dispatch_close_ended(d);
		r = route->handler(req, &d->resp, route->userdata);
		if (r != 0)
			handler_failed(&d->resp, r);
		else if (d->resp.status != 200)
			fdh_resp_settle(&d->resp);
	}
	close_request_fds(d, fds, nfds);	/* those the handler did not take */
	conn_reset_request(d, c);		/* nothing may point into the request now */
	/* Timers armed from here on count from now, not from before the handler. */
	fdh_dispatch_clock(d);
	/* A handler that took its time: the client may have sent its next request meanwhile. */
	if (d->now != began && !close_after && surplus_arrived(c))
		close_after = c->linger = true;
	/* --max-requests: from the request that reaches it on, no connection is kept alive. */
	if (++d->nrequests == d->retire_after)
		fdh_dispatch_retire(d);
	conn_respond(d, c, close_after, is_head);
	req->conn = NULL;
}

/*
 * The interim answer a client that sent Expect: 100-continue waits for
 * before its body; without it curl stalls a second.  A unix stream socket
 * takes a write this short whole or not at all.  With no room (answers the
 * client has yet to read fill the socket), it goes once there is: EPOLLOUT
 * is watched beside EPOLLIN until then (fdh_conn_wanted()), or until the
 * request ends.  The caller brings the epoll set up to date.
 */
static void
conn_continue(struct fdh_conn *c)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	ssize_t n = send(c->fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);

	/* Any other failure is the peer's end: the next read finds it. */
	c->continue_due = n == -1 && errno == EAGAIN;
}

/*
 * Room a partial request's buffer keeps beyond its end.  The read that
 * completes a request must be able to bring bytes after it, or a next
 * request sent behind a long one would never be seen with it and would be
 * served as a pipelined one; and fds that came in one write with the end
 * of this request and the start of the next would be given to this one.
 * Two bytes: the CRLF some clients put after a body is not a next request.
 */
#define CONN_LOOKAHEAD 2

/* Moves a request that did not arrive in one read into buffers of its own. */
static int
conn_keep_partial(struct fdh_dispatch *d, struct fdh_conn *c, const char *buf, size_t len,
    const int *fds, unsigned nfds, size_t scan)
{
	size_t cap = c->head_len ? c->need + CONN_LOOKAHEAD : d->lim.max_head;

	c->in = malloc(cap ? cap : 1);
	c->fds = malloc((d->lim.max_fds ? d->lim.max_fds : 1) * sizeof(*c->fds));
	if (!c->in || !c->fds) {
		free(c->in);
		free(c->fds);
		c->in = NULL;
		c->fds = NULL;
		return -ENOMEM;
	}
	memcpy(c->in, buf, len);
	memcpy(c->fds, fds, nfds * sizeof(*fds));
	c->in_len = len;
	c->in_cap = cap;
	c->nfds = nfds;
	c->scan = scan;
	return 0;
}

/*
 * A head the scan refused.  The scan refuses an empty line where the
 * request line goes, so this is where empty lines are looked for: on the
 * error path, which a well-formed request never takes.  Returns how many
 * bytes of empty lines open buf[0..len), for the caller to scan what
 * follows them (a partial buffer has had them taken out), or 0 when it
 * dealt with the read itself.
 */
static __attribute__((noinline, cold)) size_t
conn_head_refused(struct fdh_dispatch *d, struct fdh_conn *c, const char *buf, size_t len,
    int *fds, unsigned nfds, bool fresh)
{
	size_t skip = c->scan == 0 ? empty_lines(buf, len) : 0;

	if (skip == 0) {
		conn_fail(d, c, fds, nfds, false, 400,
		    "malformed request head: bare CR or LF, control byte or folded line");
		return 0;
	}
	if (c->in) {
		memmove(c->in, c->in + skip, len - skip);
		c->in_len = len - skip;
	}
	if (skip < len)
		return skip;
	if (nfds > 0) {
		conn_fail(d, c, fds, nfds, false, 400, "fds sent with no request");
		return 0;
	}
	conn_reset_request(d, c);
	/* Idle again, on the timer it had: empty lines buy no time. */
	c->state = CONN_WAIT;
	if (!fresh && c->served && (d->draining || d->drain_soon))
		fdh_dispatch_timer_arm(d, c, TIMER_LAST);	/* still its last call */
	else if (!fresh)
		fdh_dispatch_timer_arm(d, c, TIMER_IDLE);
	return 0;
}

static FDH_NO_CANARY void
conn_read(struct fdh_dispatch *d, struct fdh_conn *c, uint32_t revents)
{
	struct fdh_head *h = &d->req.head;
	bool partial = c->in != NULL, truncated, parsed = false, fresh;
	char *buf;
	int *fds;
	size_t off, room, fds_room, nnew = 0, len, scan, limit, skip;
	unsigned nfds;
	ssize_t n, hl;

	if (!fdh_dispatch_fd_room(d)) {
		/*
		 * Reading now could let the kernel drop a client's fds.  A peer
		 * that hung up cannot read an answer: close it, which also frees
		 * whatever fds it left queued; epoll would report it again.
		 */
		if (revents & (EPOLLHUP | EPOLLERR))
			fdh_conn_close(d, c);
		return;
	}
	if (partial) {
		buf = c->in;
		off = c->in_len;
		room = c->in_cap - c->in_len;
		fds = c->fds;
		fds_room = d->lim.max_fds - c->nfds;
	} else {
		buf = d->scratch;
		off = 0;
		room = d->scratch_cap;
		fds = d->rfds;
		fds_room = d->lim.max_fds;
	}
	n = fdh_recv_fds(c->fd, buf + off, room, fds + (partial ? c->nfds : 0), fds_room, &nnew,
	    &truncated);
	d->open_fds += (int)nnew;
	nfds = (partial ? c->nfds : 0) + (unsigned)nnew;
	if (partial)
		c->nfds = nfds;
	if (n == -EAGAIN)
		return;
	if (n <= 0) {
		/* The client left (or broke the stream): nobody to answer. */
		c->drained = n == 0;
		if (!partial)
			close_request_fds(d, fds, nfds);
		fdh_conn_close(d, c);
		return;
	}
	len = off + (size_t)n;
	if (partial)
		c->in_len = len;
	/*
	 * The request timer starts only when the request must wait for more
	 * bytes: one that came whole is answered before any timer is looked
	 * at, and every way out of here arms the connection's next timer.
	 */
	fresh = c->state == CONN_WAIT;
	c->state = CONN_READ;
	if (truncated) {
		conn_failf(d, c, fds, nfds, false, 400, "more than %u fds sent with one request",
		    d->lim.max_fds);
		return;
	}

	if (!c->head_len) {
		limit = len < d->lim.max_head ? len : d->lim.max_head;
		scan = c->scan;
		hl = fdh_http_head_end(buf, limit, &scan);
		if (hl < 0) {
			skip = conn_head_refused(d, c, buf, len, fds, nfds, fresh);
			if (skip == 0)
				return;
			/* What follows the empty lines, which cannot open with one. */
			len -= skip;
			if (!partial)
				buf += skip;
			limit = len < d->lim.max_head ? len : d->lim.max_head;
			scan = 0;
			hl = fdh_http_head_end(buf, limit, &scan);
			if (hl < 0) {
				(void)conn_head_refused(d, c, buf, len, fds, nfds, fresh);
				return;
			}
		}
		if (hl == 0 && len >= d->lim.max_head) {
			conn_failf(d, c, fds, nfds, false, 431, "request head is larger than %zu bytes",
			    d->lim.max_head);
			return;
		}
		if (hl == 0) {
			if (partial)
				c->scan = scan;
			else if (conn_keep_partial(d, c, buf, len, fds, nfds, scan) < 0)
				goto nomem;
			/*
			 * A lone CR may open an empty line, which buys no time:
			 * the connection stays idle, on the timer it had, until
			 * the byte after it says what it is.
			 */
			if (fresh && len == 1 && buf[0] == '\r' && nfds == 0) {
				c->state = CONN_WAIT;
				fresh = false;
			}
			goto wait;
		}
		if (fdh_http_parse(&d->parser, buf, (size_t)hl, h, &d->err) < 0) {
			conn_fail_parsed(d, c, fds, nfds, d->err.status, d->err.text);
			return;
		}
		parsed = true;
		c->head_len = (size_t)hl;
		c->need = (size_t)hl + (size_t)h->content_length;
		if (h->expect_continue && len == c->head_len && h->content_length > 0)
			conn_continue(c);
	}
	if (len < c->need) {
		if (!partial) {
			if (conn_keep_partial(d, c, buf, len, fds, nfds, 0) < 0)
				goto nomem;
		} else if (c->in_cap < c->need + CONN_LOOKAHEAD) {
			char *p = realloc(c->in, c->need + CONN_LOOKAHEAD);

			if (!p)
				goto nomem;
			c->in = p;
			c->in_cap = c->need + CONN_LOOKAHEAD;
		}
		goto wait;
	}

	/* Complete.  A head parsed in an earlier read is parsed again from here. */
	if (!parsed && fdh_http_parse(&d->parser, buf, c->head_len, h, &d->err) < 0) {
		conn_fail_parsed(d, c, fds, nfds, d->err.status, d->err.text);
		return;
	}
	/* fds that came with bytes of two requests belong to neither with certainty. */
	if (len > c->need && nnew > 0 && is_surplus(buf + c->need, len - c->need)) {
		conn_fail_parsed(d, c, fds, nfds, 400, "fds arrived with bytes of two requests");
		return;
	}
	if (nfds != h->nfd_names) {
		conn_fail_fd_count(d, c, fds, nfds);
		return;
	}
	conn_serve(d, c, buf, fds, nfds, len - c->need);
	/* c may be closed now; when not, its request buffers go. */
	return;
wait:
	if (fresh)
		fdh_dispatch_timer_arm(d, c, TIMER_REQUEST);
	/* Last: a failure closes c, with the request it now holds. */
	if (c->events != fdh_conn_wanted(d, c))
		fdh_dispatch_conn_events(d, c, fdh_conn_wanted(d, c));
	return;
nomem:
	/* d->req.head is this request's only when parsed here: a partial head may be another's. */
	if (parsed)
		conn_fail_parsed(d, c, fds, nfds, 503, "out of memory");
	else
		conn_fail(d, c, fds, nfds, false, 503, "out of memory");
}

FDH_NO_CANARY void
fdh_conn_event(struct fdh_dispatch *d, struct fdh_conn *c, uint32_t revents)
{
	if (c->state >= CONN_WRITE) {
		if (c->state == CONN_LINGER)
			conn_linger_read(d, c, revents);
		else if (revents & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			conn_write(d, c);
		return;
	}
	if ((revents & EPOLLOUT) && c->continue_due) {
		conn_continue(c);
		fdh_dispatch_conn_events(d, c, fdh_conn_wanted(d, c));
		if (c->fd < 0)
			return;		/* closed by that */
	}
	if (revents & (EPOLLIN | EPOLLERR | EPOLLHUP))
		conn_read(d, c, revents);
}

/*
 * A drain, or the idle timeout, closes connections that wait for a
 * request.  Closed as they are, one whose client has just sent that
 * request would fail it: the request sits unread in the socket, the client
 * reads the end instead of an answer.  So the input side is shut first,
 * which from then on fails the client's sends with EPIPE (a request that
 * never went, which a client may send again on a new connection); and a
 * request already queued is read and answered within a last call (with
 * Connection: close in a drain; after the idle timeout the answer may say
 * keep-alive, and the end of input read next closes the connection).  A
 * look with MSG_PEEK, as the sandbox allows no FIONREAD.
 */
void
fdh_conn_idle_end(struct fdh_dispatch *d, struct fdh_conn *c)
{
	char b;

	if (!c->rd_shut) {
		c->rd_shut = true;
		(void)shutdown(c->fd, SHUT_RD);
		if (recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 1) {
			fdh_dispatch_timer_arm(d, c, TIMER_LAST);
			return;
		}
	}
	fdh_conn_close(d, c);
}

void
fdh_conn_timeout(struct fdh_dispatch *d, struct fdh_conn *c, enum fdh_timer_kind k)
{
	struct fdh_resp *r = &d->resp;
	struct iovec iov[2];
	const char *head;
	size_t hlen;

	/* A slow client gets its answer if the socket takes it now; never a wait. */
	if (k == TIMER_REQUEST) {
		fdh_resp_error(r, 408, "request was not received in full within the request timeout");
		if (fdh_resp_finish_head(r, true, false, &head, &hlen) == 0) {
			iov[0].iov_base = (void *)(uintptr_t)head;
			iov[0].iov_len = hlen;
			iov[1].iov_base = r->bbuf;
			iov[1].iov_len = r->blen;
			(void)fdh_send_fds(c->fd, iov, 2, NULL, 0);
		}
		fdh_resp_reset(r);
	}
	/* An idle connection, or a last call, that ran out: a request may have come just now. */
	if ((k == TIMER_IDLE || k == TIMER_LAST) && c->state == CONN_WAIT) {
		fdh_conn_idle_end(d, c);
		return;
	}
	fdh_conn_close(d, c);
}
