/* The response a handler (or the framework) builds, and its head. */
#ifndef FDH_RESP_H
#define FDH_RESP_H

#include <stdbool.h>
#include <stddef.h>

#include <fdhttp/common.h>

/* Room before the header lines where the status line is written last. */
#define FDH_RESP_RESERVE 64

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
};

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

/*
 * Completes the head: status line, Content-Length (of the body, also for
 * HEAD), Connection as given, X-FD, blank line.  *ret_head points into r.
 */
int fdh_resp_finish_head(struct fdh_resp *r, bool close, bool keep_alive_10,
    const char **ret_head, size_t *ret_len);

/* A framework answer: status, text/plain one-line body, nothing else. */
void fdh_resp_error(struct fdh_resp *r, int status, const char *text);

#endif
