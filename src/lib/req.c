/* What a handler sees of its request. */
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "engine.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

const char *
fdh_req_method(const struct fdh_req *req)
{
	return llhttp_method_name((llhttp_method_t)req->head.method_id);
}

const char *
fdh_req_path(const struct fdh_req *req)
{
	return req->head.path;
}

const char *
fdh_req_query(const struct fdh_req *req)
{
	return req->head.query ? req->head.query : "";
}

static int
hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * The byte that s[*i..end) starts with, percent-decoded and with '+' for a
 * space, *i moved past it; -1 for a '%' not followed by two hex digits.
 */
static int
query_byte(const char *s, size_t *i, size_t end)
{
	int hi, lo;

	if (s[*i] == '+') {
		(*i)++;
		return ' ';
	}
	if (s[*i] != '%') {
		return (unsigned char)s[(*i)++];
	}
	if (end - *i < 3 || (hi = hex_digit(s[*i + 1])) < 0 || (lo = hex_digit(s[*i + 2])) < 0)
		return -1;
	*i += 3;
	return hi * 16 + lo;
}

/* Whether the encoded name s[0..len) decodes to exactly name. */
static bool
query_name_is(const char *s, size_t len, const char *name)
{
	size_t i = 0;
	int c;

	while (i < len) {
		c = query_byte(s, &i, len);
		/* A NUL never matches: name ends there, the encoded one does not. */
		if (c <= 0 || c != (unsigned char)*name++)
			return false;
	}
	return *name == '\0';
}

int
fdh_req_query_param(const struct fdh_req *req, const char *name, char *buf, size_t size)
{
	const char *q = req->head.query, *pair, *amp, *eq;
	size_t qlen = req->head.query_len, at = 0, n, nlen, i, vlen;
	int c;

	if (!name || !buf)
		return -EINVAL;
	for (; q && at < qlen; at += n + 1) {
		pair = q + at;
		amp = memchr(pair, '&', qlen - at);
		n = amp ? (size_t)(amp - pair) : qlen - at;
		eq = memchr(pair, '=', n);
		nlen = eq ? (size_t)(eq - pair) : n;
		if (n == 0 || !query_name_is(pair, nlen, name))
			continue;
		/* Decoded once to measure and check, then to copy: buf is written only on success. */
		for (i = nlen + (eq != NULL), vlen = 0; i < n; vlen++) {
			c = query_byte(pair, &i, n);
			/* A NUL would cut the value a C caller sees short of what was sent. */
			if (c <= 0)
				return -EINVAL;
		}
		if (vlen >= size)
			return -ERANGE;
		for (i = nlen + (eq != NULL), vlen = 0; i < n; vlen++)
			buf[vlen] = (char)query_byte(pair, &i, n);
		buf[vlen] = '\0';
		return (int)vlen;
	}
	return -ENOENT;
}

const char *
fdh_req_header(const struct fdh_req *req, const char *name)
{
	size_t len;
	unsigned i;

	if (!name)
		return NULL;
	len = strlen(name);
	for (i = 0; i < req->head.nhdrs; i++) {
		const struct fdh_req_hdr *h = &req->head.hdrs[i];

		if (h->name_len == len && strcasecmp(h->name, name) == 0)
			return h->value;
	}
	return NULL;
}

size_t
fdh_req_header_count(const struct fdh_req *req)
{
	return req->head.nhdrs;
}

int
fdh_req_header_at(const struct fdh_req *req, size_t i, struct fdh_header *ret_header)
{
	if (!ret_header)
		return -EINVAL;
	if (i >= req->head.nhdrs)
		return -ERANGE;
	ret_header->name = req->head.hdrs[i].name;
	ret_header->value = req->head.hdrs[i].value;
	return 0;
}

const void *
fdh_req_body(const struct fdh_req *req, size_t *ret_len)
{
	if (ret_len)
		*ret_len = req->body_len;
	return req->body;
}

int
fdh_req_http_minor(const struct fdh_req *req)
{
	return req->head.http_minor;
}

size_t
fdh_req_fd_count(const struct fdh_req *req)
{
	return req->nfds;
}

const char *
fdh_req_fd_name(const struct fdh_req *req, size_t i)
{
	return i < req->nfds ? req->fd_names[i] : NULL;
}

static int
fd_index(const struct fdh_req *req, const char *name)
{
	unsigned i;

	if (!name)
		return -EINVAL;	/* fdh_req_fd_name() past the end */
	for (i = 0; i < req->nfds; i++)
		if (strcmp(req->fd_names[i], name) == 0)
			return req->fds[i] >= 0 ? (int)i : -ENOENT;
	return -ENOENT;
}

/* An fd the engine held is the handler's now; headroom checks count it as the process's. */
static inline void
handed_out(struct fdh_req *req)
{
	req->d->open_fds--;
	req->d->other_fds++;
}

int
fdh_req_fd(const struct fdh_req *req, const char *name)
{
	int i = fd_index(req, name);

	return i < 0 ? i : req->fds[i];
}

int
fdh_req_take_fd(struct fdh_req *req, const char *name)
{
	int i = fd_index(req, name), fd;

	if (i < 0)
		return i;
	fd = req->fds[i];
	req->fds[i] = -1;
	handed_out(req);
	return fd;
}

void
fdh_req_release_fd(struct fdh_req *req, int fd)
{
	unsigned i;

	if (!req->conn)
		return;		/* no handler runs: req->fds is a past request's */
	for (i = 0; i < req->nfds; i++) {
		if (req->fds[i] == fd) {
			req->fds[i] = -1;
			handed_out(req);
			return;
		}
	}
	/* The peer's pidfd: fdh_req_peer_pidfd() asks the kernel for another. */
	if (req->conn->pidfd == fd) {
		req->conn->pidfd = -1;
		handed_out(req);
	}
}

const struct fdh_peer *
fdh_req_peer(const struct fdh_req *req)
{
	return &req->conn->peer;
}

int
fdh_req_peer_pidfd(struct fdh_req *req)
{
	struct fdh_conn *c = req->conn;
	socklen_t len = sizeof(int);
	int fd;

	if (c->pidfd >= 0)
		return c->pidfd;
	/* Asked of the kernel only when wanted: most handlers never need one. */
	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERPIDFD, &fd, &len) == -1)
		return errno == ENOPROTOOPT ? -EOPNOTSUPP : -errno;
	c->pidfd = fd;
	req->d->open_fds++;
	return fd;
}

const struct fdh_limits *
fdh_req_limits(const struct fdh_req *req)
{
	return &req->d->lim;
}
