/* SCM_RIGHTS send and receive. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fdhttp/common.h>
#include "attr.h"
#include "closer.h"
#include "fdpass.h"

/* Room for the kernel's own ceiling, so one buffer fits every caller. */
#define CMSG_ROOM CMSG_SPACE(sizeof(int) * FDH_MAX_FDS_CEILING)

FDH_NO_CANARY ssize_t
fdh_recv_fds(int sock, void *buf, size_t len, int *fds, size_t max_fds,
    size_t *ret_nfds, bool *ret_truncated)
{
	union {
		char buf[CMSG_ROOM];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = u.buf,
		/*
		 * Room for every fd one sendmsg() can carry, whatever max_fds:
		 * fds that do not fit the kernel releases on this thread before
		 * recvmsg() returns, and the last close of a lingering socket
		 * among them would hold it there.  Those past max_fds are
		 * handed to the closer below, and reported as MSG_CTRUNC.
		 */
		.msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *cm;
	size_t nfds = 0;
	ssize_t n;

	if (max_fds > FDH_MAX_FDS_CEILING)
		return -EINVAL;
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		return -errno;
	if (msg.msg_controllen == 0) {		/* no fds: most requests */
		*ret_nfds = 0;
		*ret_truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
		return n;
	}

	for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
		size_t i, k;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
		    cm->cmsg_len < CMSG_LEN(0))
			continue;
		k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (nfds < max_fds) {
				fds[nfds++] = fd;
			} else {
				fdh_closer_close(fd);	/* more than asked for: refuse as the kernel would */
				msg.msg_flags |= MSG_CTRUNC;
			}
		}
	}
	*ret_nfds = nfds;
	*ret_truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
	return n;
}

ssize_t
fdh_send(int sock, const void *buf, size_t len)
{
	ssize_t n;

	do
		n = send(sock, buf, len, MSG_NOSIGNAL);
	while (n == -1 && errno == EINTR);
	return n == -1 ? -errno : n;
}

ssize_t
fdh_send_fds(int sock, const struct iovec *iov, size_t iovcnt, const int *fds, size_t nfds)
{
	union {
		char buf[CMSG_ROOM];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {
		.msg_iov = (struct iovec *)(uintptr_t)iov,
		.msg_iovlen = iovcnt,
	};
	ssize_t n;

	if (nfds > FDH_MAX_FDS_CEILING)
		return -E2BIG;
	if (nfds == 0 && iovcnt == 1)
		return fdh_send(sock, iov[0].iov_base, iov[0].iov_len);
	if (nfds > 0) {
		struct cmsghdr *cm;

		memset(u.buf, 0, CMSG_SPACE(sizeof(int) * nfds));
		msg.msg_control = u.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	do
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	while (n == -1 && errno == EINTR);
	return n == -1 ? -errno : n;
}

void
fdh_close_fds(int *fds, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (fds[i] >= 0) {
			fdh_closer_close(fds[i]);
			fds[i] = -1;
		}
	}
}
