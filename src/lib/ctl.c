/* The control channel between fdhttpd and its workers, and the shared log. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <fdhttp/common.h>
#include "clock.h"
#include "closer.h"
#include "ctl.h"

void
fdh_ctl_init(struct fdh_ctl_msg *m, enum fdh_ctl_type type)
{
	memset(m, 0, sizeof(*m));
	m->h.version = FDH_CTL_VERSION;
	m->h.type = (uint16_t)type;
}

const char *
fdh_ctl_type_name(unsigned type)
{
	switch (type) {
	case FDH_CTL_READY:		return "READY";
	case FDH_CTL_CONN_CLOSED:	return "CONN_CLOSED";
	case FDH_CTL_RETIRE:		return "RETIRE";
	case FDH_CTL_CONNS_CLOSED:	return "CONNS_CLOSED";
	case FDH_CTL_OPEN:		return "OPEN";
	case FDH_CTL_NEW_CONN:		return "NEW_CONN";
	case FDH_CTL_DRAIN:		return "DRAIN";
	case FDH_CTL_FLUSH:		return "FLUSH";
	case FDH_CTL_OPEN_REPLY:	return "OPEN_REPLY";
	default:			return "?";
	}
}

/* The one size of each type, 0 for a type this version does not speak. */
static size_t
ctl_size(unsigned type)
{
	switch (type) {
	case FDH_CTL_READY:
	case FDH_CTL_DRAIN:
	case FDH_CTL_FLUSH:
		return sizeof(struct fdh_ctl_hdr);
	case FDH_CTL_CONN_CLOSED:
		return sizeof(struct fdh_ctl_hdr) + sizeof(struct fdh_ctl_closed);
	case FDH_CTL_RETIRE:
		return sizeof(struct fdh_ctl_hdr) + sizeof(struct fdh_ctl_retire);
	case FDH_CTL_CONNS_CLOSED:
		return sizeof(struct fdh_ctl_hdr) + sizeof(struct fdh_ctl_closed_batch);
	case FDH_CTL_NEW_CONN:
		return sizeof(struct fdh_ctl_hdr) + sizeof(struct fdh_ctl_conn);
	case FDH_CTL_OPEN:
		return sizeof(struct fdh_ctl_hdr) + sizeof(struct fdh_ctl_open);
	case FDH_CTL_OPEN_REPLY:
		return sizeof(struct fdh_ctl_hdr) + sizeof(struct fdh_ctl_open_reply);
	default:
		return 0;
	}
}

static uint32_t
ctl_flags_allowed(unsigned type)
{
	/* NOLINTBEGIN(bugprone-branch-clone): flags of different types share bit values */
	switch (type) {
	case FDH_CTL_NEW_CONN:		return FDH_CTL_F_PIDFD | FDH_CTL_F_LAZY;
	case FDH_CTL_OPEN_REPLY:	return FDH_CTL_F_FD;
	case FDH_CTL_CONNS_CLOSED:	return FDH_CTL_F_FLUSHED;
	default:			return 0;
	}
	/* NOLINTEND(bugprone-branch-clone) */
}

static size_t
ctl_nfds(const struct fdh_ctl_hdr *h)
{
	switch (h->type) {
	case FDH_CTL_NEW_CONN:		return (h->flags & FDH_CTL_F_PIDFD) ? 2 : 1;
	case FDH_CTL_OPEN_REPLY:	return (h->flags & FDH_CTL_F_FD) ? 1 : 0;
	default:			return 0;
	}
}

/* What a body must say beyond its size; NULL when it is well-formed. */
static const char *
ctl_body_invalid(const struct fdh_ctl_msg *m)
{
	switch (m->h.type) {
	case FDH_CTL_OPEN:
		/* A path read past its field would be whatever follows in memory. */
		if (memchr(m->u.open.path, '\0', sizeof(m->u.open.path)) == NULL)
			return "OPEN path without its NUL";
		return NULL;
	case FDH_CTL_CONNS_CLOSED:
		/* ids past the count would be whatever the sender left there. */
		if (m->u.batch.n > FDH_CTL_CLOSED_MAX)
			return "CONNS_CLOSED count over FDH_CTL_CLOSED_MAX";
		if (m->u.batch.n == 0 && !(m->h.flags & FDH_CTL_F_FLUSHED))
			return "CONNS_CLOSED without an id";
		return NULL;
	case FDH_CTL_OPEN_REPLY:
		if ((m->h.flags & FDH_CTL_F_FD) ? m->u.open_reply.error != 0 :
		    m->u.open_reply.error >= 0 || m->u.open_reply.error < -4095)
			return "OPEN_REPLY error and fd disagree";
		return NULL;
	default:
		return NULL;
	}
}

static bool
ctl_type_from(unsigned type, enum fdh_ctl_side reader)
{
	bool from_worker = type < 64;

	return reader == FDH_CTL_SUPERVISOR ? from_worker : !from_worker;
}

int
fdh_ctl_send(int sock, const struct fdh_ctl_msg *m, const int *fds, size_t nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * FDH_CTL_MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov = {
		.iov_base = (void *)(uintptr_t)m,
		.iov_len = ctl_size(m->h.type),
	};
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	/* Implied by the type's count, but stated: u.buf has room for FDH_CTL_MAX_FDS. */
	if (iov.iov_len == 0 || nfds > FDH_CTL_MAX_FDS || nfds != ctl_nfds(&m->h) ||
	    (m->h.flags & ~ctl_flags_allowed(m->h.type)) != 0)
		return -EINVAL;
	if (nfds > 0) {
		struct cmsghdr *cm;

		memset(u.buf, 0, sizeof(u.buf));
		msg.msg_control = u.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	/*
	 * MSG_DONTWAIT whatever the socket's flags: neither side may stall on
	 * the other.  MSG_NOSIGNAL: a dead peer is -EPIPE, not SIGPIPE.
	 */
	do
		n = sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	if ((size_t)n != iov.iov_len)
		return -EIO;	/* SEQPACKET sends records whole; never expected */
	return 0;
}

int
fdh_ctl_recv(int sock, enum fdh_ctl_side side, struct fdh_ctl_msg *m,
    int fds[FDH_CTL_MAX_FDS], size_t *ret_nfds, const char **ret_why)
{
	/* One byte more than any message, so that an oversized one shows. */
	union {
		struct fdh_ctl_msg m;
		char raw[sizeof(struct fdh_ctl_msg) + 1];
	} b;
	/*
	 * Room for every fd one sendmsg() can carry, not only ours: fds the
	 * kernel cannot hand over it releases on the reading thread, and one
	 * a worker chose could hold this loop in its close.
	 */
	union {
		char buf[CMSG_SPACE(sizeof(int) * FDH_MAX_FDS_CEILING)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = b.raw, .iov_len = sizeof(b.raw) };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = u.buf,
		.msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *cm;
	const char *why = NULL;
	size_t nfds = 0, k;
	ssize_t n;

	/* Only the header is read before the size is known to be the type's. */
	memset(&b.m.h, 0, sizeof(b.m.h));
	do
		n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;

	/* Take every fd first, so that no error path below can leak one. */
	for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
		size_t i, count;

		if (cm->cmsg_len < CMSG_LEN(0))
			continue;
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
			why = "unexpected control data";
			continue;
		}
		count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < count; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (nfds < FDH_CTL_MAX_FDS) {
				fds[nfds++] = fd;
			} else {
				fdh_closer_close(fd);	/* more than any message has */
				why = "too many fds";
			}
		}
	}

	if (n == 0 && nfds == 0 && why == NULL) {
		char byte;

		/*
		 * A hang-up, or an empty record, which none of ours is: after a
		 * hang-up, reading goes on saying 0.  Taken for a hang-up, it
		 * would have the worker killed a second later without a word.
		 */
		if (recv(sock, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
			return 0;
		*ret_why = "an empty record";
		return -EBADMSG;
	}
	if (msg.msg_flags & MSG_CTRUNC)
		why = "too many fds (control data truncated)";
	if (why != NULL)
		goto bad;
	if ((size_t)n < sizeof(struct fdh_ctl_hdr))
		why = "shorter than a header";
	else if (b.m.h.version != FDH_CTL_VERSION)
		why = "unknown version";
	else if (ctl_size(b.m.h.type) == 0 || !ctl_type_from(b.m.h.type, side))
		why = "unexpected type";
	else if ((size_t)n != ctl_size(b.m.h.type))
		why = "wrong size for its type";
	else if ((b.m.h.flags & ~ctl_flags_allowed(b.m.h.type)) != 0)
		why = "unknown flags";
	else if (nfds != ctl_nfds(&b.m.h))
		why = "wrong fd count for its type";
	else
		why = ctl_body_invalid(&b.m);
	if (why != NULL)
		goto bad;
	/* The record's bytes only: an OPEN is 4 KiB, the rest a few bytes. */
	memcpy(m, &b.m, (size_t)n);
	*ret_nfds = nfds;
	return 1;
bad:
	/* The sender chose them: closing one may wait (closer.h). */
	for (k = 0; k < nfds; k++)
		fdh_closer_close(fds[k]);
	*ret_why = why;
	return -EBADMSG;
}

int
fdh_ctl_limits_format(const struct fdh_limits *l, char *buf, size_t len)
{
	int n;

	n = snprintf(buf, len,
	    "max-head=%zu,max-headers=%u,max-body=%zu,max-fds=%u,max-conns=%u,"
	    "request-timeout=%u.%03u,idle-timeout=%u.%03u,write-timeout=%u.%03u",
	    l->max_head, l->max_headers, l->max_body, l->max_fds, l->max_conns,
	    l->request_timeout_ms / 1000, l->request_timeout_ms % 1000,
	    l->idle_timeout_ms / 1000, l->idle_timeout_ms % 1000,
	    l->write_timeout_ms / 1000, l->write_timeout_ms % 1000);
	if (n < 0 || (size_t)n >= len)
		return -ENOBUFS;
	return n;
}

int
fdh_ctl_limits_parse(struct fdh_limits *l, const char *s, const char **ret_bad)
{
	struct fdh_limits tmp = *l;
	const char *p = s;

	while (*p != '\0') {
		const char *end = strchr(p, ','), *eq;
		char name[32], value[64];
		size_t len, nlen;
		int r;

		len = end ? (size_t)(end - p) : strlen(p);
		eq = memchr(p, '=', len);
		if (eq == NULL) {
			r = -EINVAL;
			goto bad;
		}
		nlen = (size_t)(eq - p);
		if (nlen >= sizeof(name) || len - nlen - 1 >= sizeof(value)) {
			r = -EINVAL;
			goto bad;
		}
		memcpy(name, p, nlen);
		name[nlen] = '\0';
		memcpy(value, eq + 1, len - nlen - 1);
		value[len - nlen - 1] = '\0';
		r = fdh_limits_set(&tmp, name, value);
		if (r < 0)
			goto bad;
		p += len;
		if (*p == ',')
			p++;
		continue;
bad:
		if (ret_bad)
			*ret_bad = p;
		return r;
	}
	*l = tmp;
	return 0;
}

/* --- the process title --------------------------------------------------- */

extern char **environ;

/* The length of the original, contiguous argument strings, NULs between. */
static size_t title_room;

void
fdh_title_init(int argc, char **argv)
{
	char *end;
	int i;

	if (argc < 1 || argv[0] == NULL)
		return;
	end = argv[0] + strlen(argv[0]);
	for (i = 1; i < argc && argv[i] == end + 1; i++)
		end = argv[i] + strlen(argv[i]);
	title_room = (size_t)(end - argv[0]);
	setproctitle_init(argc, argv, environ);
}

void
fdh_title_put(const char *s, size_t len)
{
	char buf[256];
	size_t n = len < sizeof(buf) - 1 ? len : sizeof(buf) - 1;

	memcpy(buf, s, n);
	while (n < title_room && n < sizeof(buf) - 1)
		buf[n++] = ' ';
	buf[n] = '\0';
	/* "-": the title as given, without the program name in front. */
	setproctitle("-%s", buf);
}

void
fdh_title_set(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n >= 0)
		fdh_title_put(buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

/* --- the log ------------------------------------------------------------- */

static enum fdh_log_level log_min = FDH_LOG_INFO;
static char log_role[32] = "supervisor";

static const char *const log_names[] = {
	[FDH_LOG_DEBUG] = "debug",
	[FDH_LOG_INFO] = "info",
	[FDH_LOG_WARN] = "warn",
	[FDH_LOG_ERROR] = "error",
};

int
fdh_log_level_parse(const char *name)
{
	int i;

	for (i = FDH_LOG_DEBUG; i <= FDH_LOG_ERROR; i++)
		if (strcmp(name, log_names[i]) == 0)
			return i;
	return -EINVAL;
}

const char *
fdh_log_level_name(enum fdh_log_level level)
{
	return (unsigned)level <= FDH_LOG_ERROR ? log_names[level] : "?";
}

void
fdh_log_setup(enum fdh_log_level min, const char *role)
{
	log_min = min;
	strlcpy(log_role, role, sizeof(log_role));
}

bool
fdh_log_enabled(enum fdh_log_level level)
{
	return level >= log_min;
}

/* The longest a log line waits for room in stderr. */
#define LOG_WAIT_MS 1000

/*
 * stderr is one open file that fdhttpd and its workers share, and a worker
 * may set O_NONBLOCK on it: every line written while the reader lags would
 * then fail with EAGAIN, the broker's decisions among them.  Such a line
 * waits for room as it would on a blocking stderr, but LOG_WAIT_MS at most,
 * so that a reader that stopped reading cannot stop the supervisor.
 */
static void
log_write(const char *p, size_t n)
{
	int64_t deadline = -1;

	while (n > 0) {
		struct pollfd pfd = { .fd = STDERR_FILENO, .events = POLLOUT };
		ssize_t w = write(STDERR_FILENO, p, n);
		int64_t now;

		if (w >= 0) {
			/* A socket (journald's) may take part of a line. */
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return;		/* nowhere left to report it */
		now = fdh_mono_ms();
		if (deadline == -1)
			deadline = now + LOG_WAIT_MS;
		if (now >= deadline)
			return;
		if (poll(&pfd, 1, (int)(deadline - now)) == -1 && errno != EINTR)
			return;
	}
}

void
fdh_vlog(enum fdh_log_level level, const char *fmt, va_list ap)
{
	char msg[1024], line[2048];
	struct timespec ts;
	struct tm tm;
	size_t n, i;
	int k, saved = errno;	/* callers may log between a failure and its errno */

	if (!fdh_log_enabled(level))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	k = snprintf(line + n, sizeof(line) - n, ".%03ldZ fdhttpd[%ld] %s %s: ",
	    ts.tv_nsec / 1000000, (long)getpid(), fdh_log_level_name(level), log_role);
	if (k < 0)
		goto out;
	n += (size_t)k;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* Escape control bytes: a path or a peer's data must not forge lines. */
	for (i = 0; msg[i] != '\0' && n + 5 < sizeof(line); i++) {
		unsigned char c = (unsigned char)msg[i];

		if (c < 0x20 || c == 0x7f) {
			snprintf(line + n, 5, "\\x%02x", c);
			n += 4;
		} else {
			line[n++] = (char)c;
		}
	}
	line[n++] = '\n';
	/* One write: the kernel keeps a short write to a pipe whole. */
	log_write(line, n);
out:
	errno = saved;
}

void
fdh_log(enum fdh_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fdh_vlog(level, fmt, ap);
	va_end(ap);
}
