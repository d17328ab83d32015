/* Request heads: finding their end, parsing them with llhttp. */
#ifndef FDH_HTTP_H
#define FDH_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <llhttp.h>

#include <fdhttp/common.h>
#include "xfd.h"

struct fdh_req_hdr {
	char *name;
	char *value;
	uint32_t name_len;
	uint32_t value_len;
};

/* What the framework needs from a head; strings point into the head buffer. */
struct fdh_head {
	uint8_t method_id;		/* enum llhttp_method; its name only when asked */
	uint8_t http_minor;
	bool keep_alive;
	bool expect_continue;
	char *path;
	uint32_t path_len;
	char *query;			/* NULL when the target has no '?' */
	uint32_t query_len;
	uint64_t content_length;
	struct fdh_req_hdr *hdrs;	/* caller's array of max_headers */
	unsigned nhdrs;
	int xfd_hdr;			/* index in hdrs, or -1 */
	struct fdh_xfd_name *fd_names;	/* caller's array of max_fds */
	unsigned nfd_names;
};

/* A head the framework refuses: the status to answer and a one-line reason. */
struct fdh_http_error {
	int status;
	char text[160];
};

/*
 * Scans buf[*scan..len) for the blank line ending a head and checks every
 * byte on the way: a bare CR or LF, a NUL, or a folded (obs-fold) line is a
 * smuggling vector, refused here before any parser sees it.  *scan records
 * progress so bytes arriving one at a time are looked at once.  Returns the
 * head length, 0 when more bytes are needed, -EBADMSG for a bad byte.
 */
ssize_t fdh_http_head_end(const char *buf, size_t len, size_t *scan);

struct fdh_http_parser {
	llhttp_t llhttp;
	llhttp_t fresh;			/* llhttp as llhttp_init() leaves it: copied per head */
	struct fdh_head *head;
	struct fdh_req_hdr *hdr;	/* the field being parsed */
	struct fdh_req_hdr *next;	/* where the next field goes */
	struct fdh_req_hdr *hdrs_end;	/* head->hdrs + max_headers */
	const struct fdh_limits *limits;
	unsigned ncl;			/* Content-Length fields seen */
	unsigned nte;			/* Transfer-Encoding fields seen */
	unsigned nxfd;
	bool in_value;			/* or before the first field: the next name is new */
	bool too_many;
	bool bad_expect;
	bool empty_name;
};

void fdh_http_parser_init(struct fdh_http_parser *p, const struct fdh_limits *limits);

/*
 * Parses a complete head buf[0..len) (as found by fdh_http_head_end) into
 * *head, whose hdrs and fd_names arrays the caller provides.  Returns 0, or
 * -EBADMSG with *ret_err set to the answer.  Nothing is NUL-terminated yet:
 * see fdh_http_terminate().
 */
int fdh_http_parse(struct fdh_http_parser *p, char *buf, size_t len, struct fdh_head *head,
    struct fdh_http_error *ret_err);

/* NUL-terminates path, query, header names and values in place. */
void fdh_http_terminate(struct fdh_head *head);

#endif
