/*
 * The serving engine (dispatch.c, conn.c, http.c, resp.c, req.c) end to
 * end: a real dispatcher with a few routes, driven on this one thread with
 * fdh_dispatch_run_once(), and a client that is the other end of a
 * socketpair, writing the input's bytes in chunks with fds attached where
 * the input says.  Input:
 *
 *	u8	limits: bits 0-1 max_fds 0, 1, 4 or 16; bit 2: request timeout
 *		0 (it expires at the next turn); bit 3: write timeout 0; bit 4:
 *		idle timeout 0; bit 5: max_head 256 (else 8192); bit 6: max_body
 *		64 (else 65536); bit 7: max_headers 4 (else 64)
 *	u8	bit 0: the server's send buffer is small, so that responses go
 *		out in parts; bit 1: the client starts out not reading; bit 2:
 *		RLIMIT_NOFILE a little above what is open, so that the
 *		dispatcher runs short of descriptors and stops reading
 *	then operations, each a u8: bits 0-2 what, bits 3-7 an fd count k
 *	0	a chunk: u8 length, the bytes, k fds of the pool attached
 *	1	a chunk: u16 length, the bytes, k fds
 *	2	turn the loop until nothing more happens
 *	3	the client reads what has come, closing the fds that came with it
 *	4	the client stops, or resumes, reading
 *	5	the client shuts down its writing side
 *	6	the client hangs up and connects again
 *	7	fdh_dispatch_drain()
 *
 * Nothing may crash or trip a sanitizer, and when the dispatcher is freed
 * and the client gone, the process holds exactly the fds it held before.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fdhttp/service.h>
#include "engine.h"
#include "fuzz_util.h"

/* Turns of the loop before "until nothing more happens" gives up. */
#define MAX_TURNS 64
/* Descriptors left free under a tight RLIMIT_NOFILE: fewer than max_fds 16 wants. */
#define TIGHT_NOFILE 24
/* A body large enough that it cannot leave in one send(). */
#define BIG_BODY (256 * 1024)

static char big[BIG_BODY];
/* Borrowed bodies handed to the engine, and released by it: equal in the end. */
static unsigned borrowed, released;

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_engine: %s\n", what);
	abort();
}

/* POST /echo: the body back, and every fd under its own name. */
static int
h_echo(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	size_t len, i, n = fdh_req_fd_count(req);
	const void *body = fdh_req_body(req, &len);
	int r;

	(void)ud;
	for (i = 0; i < n; i++) {
		const char *name = fdh_req_fd_name(req, i);
		int fd = fdh_req_take_fd(req, name);

		if (fd < 0)
			fail("an fd named in X-FD could not be taken");
		if ((r = fdh_resp_fd(resp, name, fd)) < 0)
			return r;
	}
	return fdh_resp_body(resp, body, len);
}

/* POST /take: the handler takes fd "keep" and is done with it. */
static int
h_take(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	int fd = fdh_req_take_fd(req, "keep");

	(void)ud;
	if (fd >= 0)
		close(fd);
	return fdh_resp_printf(resp, "%d %zu", fd >= 0, fdh_req_fd_count(req));
}

/* GET /fail: a response half built, with an fd, then an error. */
static int
h_fail(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	(void)req;
	(void)ud;
	(void)fdh_resp_body(resp, "partial", 7);
	(void)fdh_resp_fd(resp, "lost", dup(fuzz_pool_fd(0)));	/* -EBADF if dup() failed */
	return -EIO;
}

static void
release_big(const void *data, void *ctx)
{
	(void)data;
	(void)ctx;
	released++;
}

/* GET /big: a borrowed body the socket cannot take at once, and an fd. */
static int
h_big(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	int r;

	(void)req;
	(void)ud;
	if ((r = fdh_resp_fd(resp, "memo", dup(fuzz_pool_fd(1)))) < 0)
		return r;
	if ((r = fdh_resp_body_borrow(resp, big, sizeof(big), release_big, NULL)) == 0)
		borrowed++;
	return r;
}

/* GET /p/...: what the request says of itself, its "q" parameter and the peer's pidfd. */
static int
h_prefix(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	const char *x = fdh_req_header(req, "x-fuzz");
	int pidfd = fdh_req_peer_pidfd(req);
	char q[16];
	int qlen = fdh_req_query_param(req, "q", q, sizeof(q));

	(void)ud;
	(void)fdh_resp_header(resp, "X-Echo", x ? x : "-");
	return fdh_resp_printf(resp, "%s %s ?%s %d q=%d:%s", fdh_req_method(req), fdh_req_path(req),
	    fdh_req_query(req), pidfd >= 0, qlen, qlen >= 0 ? q : "-");
}

static const struct fdh_route routes[] = {
	{ "POST", "/echo", h_echo, NULL },
	{ "POST", "/take", h_take, NULL },
	{ "GET", "/fail", h_fail, NULL },
	{ "GET", "/big", h_big, NULL },
	{ "GET", "/p/*", h_prefix, NULL },
};

static const struct fdh_service svc = {
	.name = "fuzz",
	.routes = routes,
	.nroutes = sizeof(routes) / sizeof(routes[0]),
};

struct client {
	struct fdh_dispatch *d;
	int sock;		/* our end; -1 once hung up */
	bool paused;		/* not reading */
	bool small_sndbuf;
};

static void
client_read(struct client *cl)
{
	if (cl->sock >= 0 && !cl->paused)
		(void)fuzz_drain(cl->sock);
}

/* Whether a turn would find nothing to do: no fd of the dispatcher is ready. */
static bool
quiet(struct fdh_dispatch *d)
{
	struct pollfd p = { .fd = d->epfd, .events = POLLIN };

	/* An epoll set polls readable while any fd in it has an event to report. */
	return poll(&p, 1, 0) == 0;
}

/*
 * The dispatcher counts the descriptors it holds (open_fds) to know when
 * a read could make the kernel drop a client's fds; the count must be what
 * is open beyond what the input started with, less the client's socket and
 * the dispatcher's /proc/self/fd directory and its epoll set.
 */
static void
check_accounting(const struct client *cl, int base)
{
	int mine = (cl->sock >= 0 ? 1 : 0) + (cl->d->fddir ? 1 : 0) + 1;	/* + epfd */

	if (fuzz_count_fds() - base - mine != cl->d->open_fds) {
		fprintf(stderr, "fuzz_engine: %d fds open beyond the client's, open_fds %d\n",
		    fuzz_count_fds() - base - mine, cl->d->open_fds);
		fail("the dispatcher's count of the fds it holds is off");
	}
}

static void
turn_until_quiet(struct client *cl, int base)
{
	int i;

	for (i = 0; i < MAX_TURNS; i++) {
		if (fdh_dispatch_run_once(cl->d, 0) < 0)
			fail("fdh_dispatch_run_once failed");
		client_read(cl);
		if (quiet(cl->d))
			break;
	}
	check_accounting(cl, base);
}

static void
client_connect(struct client *cl)
{
	struct fdh_peer peer = { .pid = getpid(), .uid = getuid(), .gid = getgid() };
	int sv[2], r;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		if (errno != EMFILE)
			fail("socketpair");
		return;		/* under the tight RLIMIT_NOFILE: no client this time */
	}
	if (cl->small_sndbuf) {
		int size = 4096;

		if (setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)) == -1)
			fail("SO_SNDBUF");
	}
	if (fcntl(sv[0], F_SETFL, O_NONBLOCK) == -1)
		fail("O_NONBLOCK");
	cl->sock = sv[0];
	/* Consumes sv[1], also when refused: while draining, or at max_conns. */
	r = fdh_dispatch_add_conn(cl->d, sv[1], &peer, -1, 0);
	if (r < 0 && r != -ESHUTDOWN && r != -EBUSY)
		fail("fdh_dispatch_add_conn");
}

static void
client_hang_up(struct client *cl)
{
	if (cl->sock >= 0)
		close(cl->sock);
	cl->sock = -1;
}

/* Sends a chunk; a full socket gets the loop turned, and a few more tries. */
static void
client_write(struct client *cl, const uint8_t *p, size_t len, unsigned nfds, int base)
{
	int tries;

	for (tries = 0; cl->sock >= 0 && tries < 4; tries++) {
		ssize_t n = fuzz_send(cl->sock, p, len, nfds, MSG_DONTWAIT);

		if (n != -EAGAIN)
			return;		/* sent, or the server has gone: either way done */
		turn_until_quiet(cl, base);
	}
}

static void
limits_from(uint8_t b, struct fdh_limits *lim)
{
	static const unsigned fds[] = { 0, 1, 4, 16 };

	fdh_limits_default(lim);
	lim->max_fds = fds[b & 3u];
	if (b & 0x04)
		lim->request_timeout_ms = 0;
	if (b & 0x08)
		lim->write_timeout_ms = 0;
	if (b & 0x10)
		lim->idle_timeout_ms = 0;
	lim->max_head = (b & 0x20) ? 256 : 8192;
	lim->max_body = (b & 0x40) ? 64 : 65536;
	lim->max_headers = (b & 0x80) ? 4 : 64;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct fdh_limits lim;
	struct client cl = { .sock = -1 };
	struct rlimit saved, tight;
	uint8_t opts;
	int base;

	/* Afresh for each input: libFuzzer's symbolizer, started between inputs, has pipes. */
	(void)fuzz_pool_fd(0);
	base = fuzz_count_fds();
	borrowed = released = 0;

	limits_from(fuzz_u8(&in), &lim);
	opts = fuzz_u8(&in);
	cl.small_sndbuf = opts & 1u;
	cl.paused = (opts & 2u) != 0;
	/* Before the dispatcher is made: it reads the limit once, then. */
	if (getrlimit(RLIMIT_NOFILE, &saved) == -1)
		fail("getrlimit");
	if (opts & 4u) {
		tight = saved;
		tight.rlim_cur = (rlim_t)base + TIGHT_NOFILE;
		if (setrlimit(RLIMIT_NOFILE, &tight) == -1)
			fail("setrlimit");
	}
	if (fdh_dispatch_new(&svc, &lim, &cl.d) < 0)
		fail("fdh_dispatch_new");
	client_connect(&cl);

	while (in.n > 0) {
		uint8_t op = fuzz_u8(&in);
		unsigned k = op >> 3;
		const uint8_t *p;
		size_t len;

		switch (op & 7u) {
		case 0:
		case 1:
			len = (op & 7u) == 0 ? fuzz_u8(&in) : fuzz_u16(&in);
			len = fuzz_take(&in, len, &p);
			client_write(&cl, p, len, k, base);
			break;
		case 2:
			turn_until_quiet(&cl, base);
			break;
		case 3:
			if (cl.sock >= 0)
				(void)fuzz_drain(cl.sock);
			break;
		case 4:
			cl.paused = !cl.paused;
			break;
		case 5:
			if (cl.sock >= 0)
				shutdown(cl.sock, SHUT_WR);
			break;
		case 6:
			client_hang_up(&cl);
			client_connect(&cl);
			break;
		default:
			fdh_dispatch_drain(cl.d);
			break;
		}
	}
	turn_until_quiet(&cl, base);
	fdh_dispatch_free(cl.d);
	client_hang_up(&cl);
	if (setrlimit(RLIMIT_NOFILE, &saved) == -1)
		fail("setrlimit");
	if (released != borrowed)
		fail("a borrowed body was not released, or twice");
	fuzz_check_fds(base, "an input");
	return 0;
}
