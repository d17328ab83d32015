/*
 * handoff: what a supervised hand-off costs at the least, on this machine.
 * A minimal responder answers POST /ping on a listening Unix socket, either
 * accepting each connection itself (--direct: the shape of nginx) or
 * receiving it from a second process that accepts it, reads SO_PEERCRED
 * and SO_PEERPIDFD and passes the socket and the pidfd over a
 * SOCK_SEQPACKET socketpair (the shape of fdhttpd and its worker).  No
 * routing, no limits, no timers, no sandbox: what is left is the kernel's
 * share, which bench/compare sets beside fdhttp's and nginx's --new-conn
 * figures.  A bench tool, not a server: it trusts its clients.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

static const char usage[] =
    "usage: handoff --socket PATH [--direct] [--no-pidfd]\n"
    "\n"
    "Serves POST /ping (answer: 200 \"pong\") on PATH until killed, with nothing but\n"
    "the system calls a supervised hand-off needs: one process accepts, reads the\n"
    "peer's credentials and pidfd and passes them with the connection to a second\n"
    "that answers.  Measure it with ping_pong --socket PATH.\n"
    "\n"
    "  -s, --socket PATH     where to listen (replaced if it exists)\n"
    "      --direct          one process that accepts and answers itself\n"
    "      --no-pidfd        hand off without the peer's pidfd\n"
    "  -h, --help            this text\n";

/* Connections are found by fd; a request must fit in one buffer. */
#define MAX_FD 65536
#define BUF_SIZE 4096
#define MAX_EVENTS 64

struct conn {
	int pidfd;
	size_t len;
	char buf[BUF_SIZE];
};

static const char pong[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\npong";

static struct conn *conns[MAX_FD];
static int epfd = -1;

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	fputs("handoff: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void
conn_close(int fd)
{
	struct conn *c = conns[fd];

	(void)epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
	close(fd);
	if (c->pidfd >= 0)
		close(c->pidfd);
	free(c);
	conns[fd] = NULL;
}

/*
 * The body length a request head of len bytes (through its blank line)
 * announces; -1 when it is malformed or over BUF_SIZE.  The buffer is not
 * NUL-terminated: nothing past len is read.
 */
static long
content_length(const char *head, size_t len)
{
	static const char name[] = "\r\ncontent-length:";
	const size_t nlen = sizeof(name) - 1;
	size_t i, j;
	long v = 0;

	for (i = 0; i + nlen <= len; i++) {
		if (strncasecmp(head + i, name, nlen) != 0)
			continue;
		for (j = i + nlen; j < len && head[j] == ' '; j++)
			;
		if (j == len || head[j] < '0' || head[j] > '9')
			return -1;
		for (; j < len && head[j] >= '0' && head[j] <= '9'; j++) {
			v = v * 10 + (head[j] - '0');
			if (v > BUF_SIZE)
				return -1;
		}
		return (j < len && (head[j] == '\r' || head[j] == ' ')) ? v : -1;
	}
	return 0;
}

/* Answers every whole request in c's buffer; false: close the connection. */
static bool
serve(int fd, struct conn *c)
{
	for (;;) {
		char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
		size_t head, total;
		long body;

		if (!end)
			return c->len < BUF_SIZE;
		head = (size_t)(end - c->buf) + 4;
		body = content_length(c->buf, head);
		if (body < 0)
			return false;
		total = head + (size_t)body;
		if (total > BUF_SIZE)
			return false;
		if (c->len < total)
			return true;
		/* A response this small fits any socket buffer: a short send is an error. */
		if (send(fd, pong, sizeof(pong) - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof(pong) - 1))
			return false;
		c->len -= total;
		memmove(c->buf, c->buf + total, c->len);
	}
}

/* One read, closing any fds that came with it, then the answers. */
static void
conn_read(int fd)
{
	struct conn *c = conns[fd];
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * 64)];
	} cm;
	struct iovec iov = { .iov_base = c->buf + c->len, .iov_len = BUF_SIZE - c->len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
	    .msg_controllen = sizeof(cm.buf) };
	struct cmsghdr *h;
	ssize_t n;

	n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	/* A failed recvmsg() leaves msg_controllen as it was: nothing came. */
	if (n >= 0 && m.msg_controllen) {
		for (h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
			size_t i, k;

			if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
				continue;
			k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (i = 0; i < k; i++) {
				int x;

				memcpy(&x, CMSG_DATA(h) + i * sizeof(int), sizeof(x));
				close(x);
			}
		}
	}
	if (n <= 0) {
		conn_close(fd);
		return;
	}
	c->len += (size_t)n;
	if (!serve(fd, c))
		conn_close(fd);
}

/*
 * Consumes fd and pidfd.  The new connection is read at once: its client
 * has usually written the request already, as fdhttp's dispatcher assumes.
 */
static void
conn_add(int fd, int pidfd)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.fd = fd };
	struct conn *c;

	if (fd < 0 || fd >= MAX_FD || !(c = malloc(sizeof(*c)))) {
		if (fd >= 0)
			close(fd);
		if (pidfd >= 0)
			close(pidfd);
		return;
	}
	c->pidfd = pidfd;
	c->len = 0;
	conns[fd] = c;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
		conn_close(fd);
		return;
	}
	conn_read(fd);
}

/* One connection and its pidfd from the acceptor; false when it is gone. */
static bool
ctl_read(int ctl)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * 2)];
	} cm;
	struct ucred cred;
	struct iovec iov = { .iov_base = &cred, .iov_len = sizeof(cred) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
	    .msg_controllen = sizeof(cm.buf) };
	struct cmsghdr *h;
	int fds[2] = { -1, -1 };
	ssize_t n;

	n = recvmsg(ctl, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return true;
	if (n <= 0)
		return false;
	h = CMSG_FIRSTHDR(&m);
	if (h && h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
		size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);

		memcpy(fds, CMSG_DATA(h), (k > 2 ? 2 : k) * sizeof(int));
	}
	conn_add(fds[0], fds[1]);
	return true;
}

/* lfd: the listening socket (--direct), or -1; ctl: the acceptor's socket, or -1. */
static void __attribute__((noreturn))
respond(int lfd, int ctl)
{
	struct epoll_event ev, events[MAX_EVENTS];

	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd == -1)
		die("epoll_create1: %s", strerror(errno));
	ev.events = EPOLLIN;
	ev.data.fd = lfd >= 0 ? lfd : ctl;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, ev.data.fd, &ev) == -1)
		die("epoll_ctl: %s", strerror(errno));
	for (;;) {
		int i, n = epoll_wait(epfd, events, MAX_EVENTS, -1);

		if (n == -1 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		/*
		 * The next connection first: when a client hangs up, the
		 * acceptor has often sent the next one already, and closing a
		 * Unix socket while another is in flight queues the kernel's fd
		 * garbage collector on a kworker (Linux 6.18 and earlier).
		 * fdhttp's worker closes after reading its control socket for
		 * the same reason.
		 */
		for (i = 0; i < n; i++) {
			if (ctl >= 0 && events[i].data.fd == ctl) {
				if (!ctl_read(ctl))
					exit(0);
				events[i].data.fd = -1;
			}
		}
		for (i = 0; i < n; i++) {
			int fd = events[i].data.fd;

			if (fd < 0)
				continue;
			if (fd == lfd) {
				/* One accept per wake-up, as nginx does without multi_accept. */
				int s = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

				if (s >= 0)
					conn_add(s, -1);
			} else if (conns[fd]) {
				conn_read(fd);
			}
		}
	}
}

/* The acceptor: each connection, its credentials and its pidfd go to ctl. */
static void __attribute__((noreturn))
accept_loop(int lfd, int ctl, bool with_pidfd)
{
	struct pollfd p[2] = { { .fd = lfd, .events = POLLIN }, { .fd = ctl, .events = POLLIN } };

	for (;;) {
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(sizeof(int) * 2)];
		} cm;
		struct ucred cred;
		socklen_t len = sizeof(cred);
		struct iovec iov = { .iov_base = &cred, .iov_len = sizeof(cred) };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf };
		struct cmsghdr *h;
		int fds[2], nfds = 1, s;

		if (poll(p, 2, -1) == -1) {
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		if (p[1].revents)
			exit(0);	/* the responder is gone */
		if (!p[0].revents)
			continue;
		s = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (s == -1)
			continue;
		if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) {
			close(s);
			continue;
		}
		fds[0] = s;
		len = sizeof(fds[1]);
		if (with_pidfd && getsockopt(s, SOL_SOCKET, SO_PEERPIDFD, &fds[1], &len) == 0)
			nfds = 2;
		memset(cm.buf, 0, sizeof(cm.buf));
		m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		h = CMSG_FIRSTHDR(&m);
		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(h), fds, sizeof(int) * (size_t)nfds);
		if (sendmsg(ctl, &m, MSG_NOSIGNAL) == -1 && errno == EPIPE)
			exit(0);
		close(s);
		if (nfds == 2)
			close(fds[1]);
	}
}

int
main(int argc, char *argv[])
{
	static const struct option lopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "direct", no_argument, NULL, 'd' },
		{ "no-pidfd", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = NULL;
	bool direct = false, with_pidfd = true;
	size_t len;
	int c, lfd, sv[2];
	pid_t pid;

	while ((c = getopt_long(argc, argv, "s:h", lopts, NULL)) != -1) {
		switch (c) {
		case 's':
			path = optarg;
			break;
		case 'd':
			direct = true;
			break;
		case 'P':
			with_pidfd = false;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	if (!path || optind != argc) {
		fputs(usage, stderr);
		return 2;
	}
	len = strlen(path);
	if (len >= sizeof(sa.sun_path))
		die("--socket %s: the path is too long for a Unix socket", path);
	memcpy(sa.sun_path, path, len + 1);
	signal(SIGPIPE, SIG_IGN);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd == -1)
		die("socket: %s", strerror(errno));
	(void)unlink(path);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == -1 || listen(lfd, 4096) == -1)
		die("%s: %s", path, strerror(errno));
	if (direct)
		respond(lfd, -1);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
		die("socketpair: %s", strerror(errno));
	pid = fork();
	if (pid == -1)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		/* The responder holds no listening socket, as a worker does not. */
		(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
		close(lfd);
		close(sv[0]);
		respond(-1, sv[1]);
	}
	close(sv[1]);
	accept_loop(lfd, sv[0], with_pidfd);
}
