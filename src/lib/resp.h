/* The response a handler (or the framework) builds, and its head. */
#ifndef FDH_RESP_H
#define FDH_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <fdhttp/common.h>

/* Room before the header lines where the status line is written last. */
#define FDH_RESP_RESERVE 64

struct fdh_req;

struct fdh_resp {
	int status;
	char *hbuf;			/* [RESERVE] then "Name: value\r\n"... */
	size_t hlen;
	size_t hcap;
	size_t line_len;		/* the status line at the end of the reserve, */
	int line_status;		/* for this status; none while line_len is 0 */
	char *bbuf;			/* copied body */
	size_t blen;
	size_t bcap;
	const void *borrow;		/* borrowed body, when set */
	size_t borrow_len;
	void (*release)(const void *data, void *ctx);
	void *release_ctx;
	bool borrowed;
	int *fds;			/* owned until sent or reset */
	char (*fd_names)[FDH_FD_NAME_MAX + 1];
	unsigned nfds;
	unsigned max_fds;
	int *open_fds;			/* the dispatcher's count of fds it holds */
	struct fdh_req *req;		/* whose fds a handler may attach unreleased */
};

/*
 * Releases fd from req if it is one of the fds req still holds, as
 * fdh_req_take_fd() does: attached to the response, it is the response's
 * alone to send and close.  A no-op outside a handler, and for other fds.
 */
void fdh_req_release_fd(struct fdh_req *req, int fd);

/* Buffers are kept across responses so a steady stream allocates nothing. */
int fdh_resp_init(struct fdh_resp *r, unsigned max_fds, int *open_fds);
void fdh_resp_free(struct fdh_resp *r);
/* Back to an empty 200: closes attached fds, releases a borrowed body. */
void fdh_resp_reset(struct fdh_resp *r);

static inline const void *
fdh_resp_body_ptr(const struct fdh_resp *r)
{
	return r->borrowed ? r->borrow : r->bbuf;
}

static inline size_t
fdh_resp_body_len(const struct fdh_resp *r)
{
	return r->borrowed ? r->borrow_len : r->blen;
}

/* The longest body fdh_resp_inline_body() copies behind the head. */
#define FDH_RESP_INLINE_MAX 256

/*
 * Completes the head: status line, Content-Length (of the body, also for
 * HEAD), Connection as given, X-FD, blank line.  *ret_head points into r,
 * with FDH_RESP_INLINE_MAX bytes of room after it.
 */
int fdh_resp_finish_head(struct fdh_resp *r, bool close, bool keep_alive_10,
    const char **ret_head, size_t *ret_len);

/*
 * Copies a body of 1 to FDH_RESP_INLINE_MAX bytes behind the head
 * fdh_resp_finish_head() returned, and returns the length of both: a
 * response in one buffer goes out in one send(), which costs the kernel a
 * fifth of a microsecond less than a sendmsg() of head and body apart.
 * Bodies of 4 to 16 bytes, the commonest short answers, are copied
 * without a call.
 */
static inline size_t
fdh_resp_inline_body(struct fdh_resp *r, const char *head, size_t hlen, const void *body,
    size_t blen)
{
	char *to = r->hbuf + (head - r->hbuf) + hlen;
	const char *from = body;
	uint64_t a, b;
	uint32_t c, d;

	if (blen >= 8 && blen <= 16) {		/* two overlapping words */
		memcpy(&a, from, 8);
		memcpy(&b, from + blen - 8, 8);
		memcpy(to, &a, 8);
		memcpy(to + blen - 8, &b, 8);
	} else if (blen >= 4 && blen < 8) {
		memcpy(&c, from, 4);
		memcpy(&d, from + blen - 4, 4);
		memcpy(to, &c, 4);
		memcpy(to + blen - 4, &d, 4);
	} else {
		memcpy(to, from, blen);
	}
	return hlen + blen;
}

/*
 * Called after a handler that set a status other than 200: drops the body
 * of a status that has none.  Out of line, off the path of a plain 200.
 */
void fdh_resp_settle(struct fdh_resp *r) __attribute__((cold));

/* A framework answer: status, text/plain one-line body, nothing else. */
void fdh_resp_error(struct fdh_resp *r, int status, const char *text);

#endif
