/* SCM_RIGHTS send and receive over AF_UNIX sockets, shared by every role. */
#ifndef FDH_FDPASS_H
#define FDH_FDPASS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

/*
 * One recvmsg() into buf with room for max_fds descriptors, all received
 * close-on-exec.  Received fds are stored at fds[0..*ret_nfds); the caller
 * owns them whatever the return value.  *ret_truncated is set when more than
 * max_fds were sent (those beyond went to fdh_closer_close()), or the kernel
 * dropped fds or control data (MSG_CTRUNC: this process is at
 * RLIMIT_NOFILE).  Anything in the control data but
 * SCM_RIGHTS is discarded, fds found in it closed.  EINTR is retried here.
 * Returns the byte count, 0 at end of stream, or -errno (-EAGAIN included).
 */
ssize_t fdh_recv_fds(int sock, void *buf, size_t len, int *fds, size_t max_fds,
    size_t *ret_nfds, bool *ret_truncated);

/*
 * One sendmsg() of iov with fds (borrowed: the caller still owns and closes
 * them) attached, or fdh_send() of a single buffer without fds;
 * MSG_NOSIGNAL, so a vanished peer is -EPIPE, not SIGPIPE.  EINTR is
 * retried here.  Returns the byte count (possibly partial), or
 * -errno.  The fds travel with the first byte sent: after a partial send
 * they must not be sent again.
 */
ssize_t fdh_send_fds(int sock, const struct iovec *iov, size_t iovcnt, const int *fds,
    size_t nfds);

/*
 * One send() of buf, as fdh_send_fds() without fds: a send() spares the
 * kernel copying in a msghdr and importing an iovec, about a fifth of a
 * microsecond, a tenth of what the kernel spends on a keep-alive request.
 */
ssize_t fdh_send(int sock, const void *buf, size_t len);

/*
 * Closes fds[0..n) that are >= 0 (fdh_closer_close(): a peer sent them) and
 * sets them to -1.
 */
void fdh_close_fds(int *fds, size_t n);

#endif
