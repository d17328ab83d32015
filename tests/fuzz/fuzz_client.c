/*
 * The client's side of an exchange, fdh_client_request(), against a fake
 * server: the other end of a socketpair, into which the whole response is
 * written (in chunks, fds attached where the input says) before the client
 * sends its request, so that one thread does it all and nothing waits.
 * Input:
 *
 *	u8	bits 0-1: the request: GET, HEAD, POST with a body, POST with
 *		Expect: 100-continue; bit 2: the request carries an fd;
 *		bits 3-4: requests made while the connection stays usable,
 *		less one (the server's end is shut by then, so a later one is
 *		refused, -ENOTCONN, before it is sent); bit 5: the server
 *		closes its end once it has written
 *		(else it only shuts down writing); bit 6: small limits
 *	u8	with bit 6 only: max_body is this byte, max_fds its low 2 bits
 *	then chunks of the server's bytes, each
 *	u8	bits 0-4: fds attached from the pool; bit 7: a two-byte length
 *	u8/u16	the chunk's length (little-endian)
 *	bytes	the chunk
 *
 * A response the client returns must be one it could have read: a final
 * status, a NUL-terminated body within max_body, fds within max_fds, each
 * open and named by a valid, unique name.  A failure must be one the API
 * documents, and never a wait: the server has said all it will.  After each
 * input every fd the client received is closed again.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fdhttp/client.h>
#include "fuzz_util.h"

/* Nothing should make the client wait; this only bounds a bug that does. */
#define CLIENT_TIMEOUT_MS 2000

static void
fail(const char *what, int r)
{
	fprintf(stderr, "fuzz_client: %s (%d: %s)\n", what, r, strerror(r < 0 ? -r : r));
	abort();
}

static void
check_response(const struct fdh_client_resp *resp, size_t max_body, unsigned max_fds)
{
	size_t i, j;

	if (resp->status < 200 || resp->status > 999)
		fail("a response with a status that is not final", resp->status);
	if (resp->body == NULL || resp->body_len > max_body || resp->body[resp->body_len] != '\0')
		fail("a body over the limit or not NUL-terminated", (int)resp->body_len);
	for (i = 0; i < resp->nheaders; i++)
		if (resp->headers[i].name == NULL || resp->headers[i].value == NULL)
			fail("a header without its name or value", (int)i);
	if (resp->nfds > max_fds)
		fail("more fds than max_fds", (int)resp->nfds);
	for (i = 0; i < resp->nfds; i++) {
		const char *name = resp->fds[i].name;

		if (!name || !fdh_fd_name_valid(name, strlen(name)))
			fail("an fd without a valid name", (int)i);
		if (fcntl(resp->fds[i].fd, F_GETFD) == -1)
			fail("an fd that is not open", resp->fds[i].fd);
		for (j = 0; j < i; j++)
			if (strcmp(resp->fds[j].name, name) == 0)
				fail("two fds of one name", (int)i);
	}
}

static bool
documented(int r)
{
	switch (r) {
	case -ECONNRESET:
	case -EPIPE:
	case -EPROTO:
	case -ENOTCONN:
	case -EMFILE:
	case -EOVERFLOW:
	case -EMSGSIZE:
	case -ENOMEM:
		return true;
	default:
		return false;
	}
}

/* Writes the response chunks into the server's end; stops where it is full. */
static void
serve(int sock, struct fuzz_in *in)
{
	while (in->n > 0) {
		uint8_t how = fuzz_u8(in);
		size_t len = (how & 0x80) ? fuzz_u16(in) : fuzz_u8(in);
		const uint8_t *p;

		len = fuzz_take(in, len, &p);
		if (fuzz_send(sock, p, len, how & 0x1fu, MSG_DONTWAIT) < 0)
			return;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const methods[] = { "GET", "HEAD", "POST", "POST" };
	static const struct fdh_header expect = { "Expect", "100-continue" };
	struct fuzz_in in = { data, size };
	int base;
	struct fdh_client *c = NULL;
	struct fdh_named_fd rfd;
	struct fdh_client_req req = { .target = "/fuzz" };
	size_t max_body = 64 * 1024 * 1024;
	unsigned max_fds = 253, nreq, i;
	bool closed;
	uint8_t mode;
	int sv[2], r;

	/*
	 * Counted afresh for each input: between inputs libFuzzer may start
	 * its symbolizer, whose pipes are not ours.
	 */
	(void)fuzz_pool_fd(0);
	base = fuzz_count_fds();
	mode = fuzz_u8(&in);
	if (mode & 0x40) {
		uint8_t lim = fuzz_u8(&in);

		max_body = lim;
		max_fds = lim & 3u;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		fail("socketpair", -errno);
	serve(sv[1], &in);
	if (mode & 0x20) {
		close(sv[1]);
		sv[1] = -1;
	} else {
		shutdown(sv[1], SHUT_WR);
	}
	r = fdh_client_from_fd(sv[0], CLIENT_TIMEOUT_MS, &c);
	if (r < 0)
		fail("fdh_client_from_fd", r);
	if (mode & 0x40)
		fdh_client_set_limits(c, max_body, max_fds);

	req.method = methods[mode & 3u];
	if ((mode & 3u) >= 2) {
		req.body = "hello";
		req.body_len = 5;
	}
	if ((mode & 3u) == 3) {
		req.headers = &expect;
		req.nheaders = 1;
	}
	if (mode & 4) {
		rfd = (struct fdh_named_fd){ .name = "in", .fd = fuzz_pool_fd(0) };
		req.fds = &rfd;
		req.nfds = 1;
	}
	nreq = 1 + ((mode >> 3) & 3u);
	for (i = 0; i < nreq; i++) {
		struct fdh_client_resp resp;

		r = fdh_client_request(c, &req, &resp);
		/* What is left after a response can answer no later request. */
		if (i > 0 && r != -ENOTCONN)
			fail("a request sent on a connection whose server had shut its end", r);
		if (r < 0) {
			if (r == -ETIMEDOUT)
				fail("the client waited on a server that has said all", r);
			if (!documented(r))
				fail("an undocumented error", r);
			break;
		}
		check_response(&resp, max_body, max_fds);
		closed = resp.closed != 0;
		fdh_client_resp_release(&resp);
		if (closed)
			break;
	}
	fdh_client_free(c);
	if (sv[1] >= 0)
		close(sv[1]);
	fuzz_check_fds(base, "an exchange");
	return 0;
}
