/*
 * The closer process.  close() of the last reference to a file runs the
 * file's release in the calling thread, and some releases wait: a TCP
 * socket with SO_LINGER and unsent data for the linger time, a terminal for
 * its pending output, FUSE and NFS for a flush their server may never
 * answer.  Closing an AF_UNIX socket drops the fds still queued in it, which
 * may be such files.  A peer that sends one would freeze whichever loop
 * closes it: the supervisor's, with every worker it watches, or a worker's,
 * with every connection on it.  Those closes happen in a child instead.
 *
 * A child, not a thread: with a second thread in the process, glibc's
 * cancellable system call wrappers (recvmsg, send, epoll_wait, close) all
 * take the slow path that enables and disables asynchronous cancellation,
 * some 140 instructions on every keep-alive request, which never touches
 * the closer.  A child leaves the process single-threaded.
 *
 * The fd travels to the child over an AF_UNIX socket (SCM_RIGHTS) and our
 * copy is closed at once: while the fd is in flight or held by the child
 * our close is not the last, so it cannot wait.  The child must not close
 * its copy first, or ours would be the last after all: it holds the fds
 * of a message until the next message comes, which we send only after
 * closing our copies (a bare one when nothing else follows; "owed" while
 * the socket cannot take it).  The socket is non-blocking on our side: when the child is stuck in a close and the socket's buffer is
 * full, or the kernel refuses more fds in flight (ETOOMANYREFS), fds wait
 * in an array here and go in batches on the next call or
 * fdh_closer_flush().  The array is bounded: every entry is an open fd, so
 * there are never more than RLIMIT_NOFILE.
 */
#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fdhttp/common.h>
#include "closer.h"
#include "ctl.h"
#include "fdpass.h"

/* The first allocation of the pending array; it doubles from there. */
#define PENDING_MIN 64

/* The filesystems whose files are released without waiting on anyone. */
enum { DEV_MEMFD, DEV_ANON, DEV_PIDFS, NDEVS };

static struct {
	int sock;		/* our end, non-blocking; -1: not started, or the child is gone */
	pid_t pid;
	bool started;
	int *pending;		/* fds the socket would not take yet, [0..fdh_closer_npending) */
	size_t cap;
	dev_t devs[NDEVS];
	bool have_dev[NDEVS];
} closer = { .sock = -1, .pid = -1 };

unsigned fdh_closer_npending;
bool fdh_closer_owed;

/*
 * The child's seccomp filter: it receives and closes, nothing else.  A
 * file's release runs in the kernel whatever the filter says; what the
 * filter stops is a bug in this loop or in the C library being made to do
 * more with the clients' fds it holds.
 */
static const char *const child_allowed[] = {
	"recvmsg", "close", "exit", "exit_group", "rt_sigreturn",
#ifdef __SANITIZE_ADDRESS__
	/*
	 * The sanitizers' _exit() takes down their signal stack, and a
	 * report needs these to reach stderr (sandbox.c allows the same for
	 * the worker).
	 */
	"sigaltstack", "write", "mmap", "munmap", "madvise", "futex", "getpid", "gettid",
	"sched_yield",
#endif
};

/* Loads the child's filter; 0 or -errno. */
static int
child_confine(void)
{
	scmp_filter_ctx ctx;
	size_t i;
	int r;

	ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	if (ctx == NULL)
		return -ENOMEM;
	/* A call made through another ABI (i386, x32) is no way around the list. */
	r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	for (i = 0; r == 0 && i < sizeof(child_allowed) / sizeof(child_allowed[0]); i++)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, seccomp_syscall_resolve_name(
		    child_allowed[i]), 0);
	if (r == 0)
		r = seccomp_load(ctx);	/* sets no_new_privs first */
	seccomp_release(ctx);
	return r;
}

/* Closes every fd but a and b. */
static void
close_all_but(int a, int b)
{
	int lo = a < b ? a : b, hi = a < b ? b : a, fd;

	for (fd = 0; fd < hi; fd++)
		if (fd != lo)
			(void)close(fd);
	closefrom(hi + 1);
}

/*
 * The child: sock its end of the socket, ready the pipe on which it says
 * how its start went (an errno on failure, EOF alone once confined).
 */
static void __attribute__((noreturn))
child_main(int sock, int ready, pid_t parent, bool confine, const char *title)
{
	int fds[FDH_MAX_FDS_CEILING], held[FDH_MAX_FDS_CEILING], r;
	size_t nfds, nheld = 0, i;
	sigset_t all;
	bool truncated;
	ssize_t n;
	char byte;

	/*
	 * Nothing of the parent's but the socket: a copy of a worker's
	 * control socket here would hide the worker's death from the
	 * supervisor, which waits for EOF on it; a copy of a listening
	 * socket would keep it accepting.
	 */
	close_all_but(sock, ready);
	/*
	 * Signals stay blocked: a SIGTERM or SIGHUP meant for the parent's
	 * process group must not end a close half done, nor run a handler
	 * of the parent's in this copy of it.
	 */
	sigfillset(&all);
	r = sigprocmask(SIG_SETMASK, &all, NULL) == -1 ? -errno : 0;
	/* A closer outlives no parent, even one SIGKILLed before this line. */
	if (r == 0 && prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
		r = -errno;
	if (r == 0 && getppid() != parent)
		_exit(0);
	if (r == 0) {
		(void)prctl(PR_SET_NAME, "fdh-closer");
		if (title)
			fdh_title_set("%s", title);
		if (confine)
			r = child_confine();
	}
	if (r < 0) {
		n = write(ready, &r, sizeof(r));
		_exit(n == (ssize_t)sizeof(r) ? 1 : 2);
	}
	(void)close(ready);
	for (;;) {
		n = fdh_recv_fds(sock, &byte, 1, fds, FDH_MAX_FDS_CEILING, &nfds, &truncated);
		/*
		 * Any message (or EOF) says the parent closed its copies of the
		 * fds of the one before: ours are the last now.  The wait this
		 * process exists for; EINTR still closed the fd.
		 */
		for (i = 0; i < nheld; i++)
			(void)close(held[i]);
		memcpy(held, fds, nfds * sizeof(fds[0]));
		nheld = nfds;
		/*
		 * 0: the parent is gone, or closed its end.  _exit(): no atexit
		 * handler, no LeakSanitizer pass over the parent's heap.
		 */
		if (n <= 0)
			_exit(n == 0 ? 0 : 1);
	}
}

/*
 * The type and device of fd, from what the kernel has cached: fstat() on a
 * FUSE file whose attributes have expired asks the FUSE server, which may
 * never answer.  AT_STATX_DONT_SYNC asks no one, and neither the type nor
 * the device can change.  Returns whether the kernel told.
 */
static bool
closer_stat(int fd, mode_t *ret_type, dev_t *ret_dev)
{
	struct statx stx;

	if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE, &stx) == -1)
		return false;
	*ret_type = stx.stx_mode & S_IFMT;
	*ret_dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
	return true;
}

/* Learns the device of fd, a file of the kind in which (-1: none); consumes fd. */
static void
learn_dev(unsigned which, int fd)
{
	mode_t type;

	if (fd < 0)
		return;
	if (closer_stat(fd, &type, &closer.devs[which]))
		closer.have_dev[which] = true;
	close(fd);
}

/*
 * Whether closing fd may wait.  A pipe's release wakes its other end and
 * frees buffers; memfds live on the kernel's internal tmpfs; eventfds,
 * signalfds, timerfds, epoll and (before pidfs) pidfds are anonymous
 * inodes, which no server or peer stands behind.  Anything else may: a
 * socket, a terminal, a regular file on any filesystem, and what cannot be
 * looked at.
 */
static bool
closer_may_wait(int fd)
{
	mode_t type;
	dev_t dev;
	unsigned i;

	/*
	 * A memfd first, for half a statx(): F_GET_SEALS answers for the
	 * kernel's shmem and hugetlbfs files alone, which no server stands
	 * behind, and asks no filesystem.
	 */
	if (fcntl(fd, F_GET_SEALS) >= 0)
		return false;
	if (!closer_stat(fd, &type, &dev))
		return true;
	if (type == S_IFIFO)
		return false;
	for (i = 0; i < NDEVS; i++)
		if (closer.have_dev[i] && closer.devs[i] == dev)
			return false;
	return true;
}

int
fdh_closer_start(bool confine, const char *title)
{
	int sv[2] = { -1, -1 }, ready[2] = { -1, -1 }, err = 0, r;
	pid_t parent = getpid(), pid;
	ssize_t n;

	if (closer.started)
		return 0;
	learn_dev(DEV_MEMFD, memfd_create("fdhttp-closer", MFD_CLOEXEC));
	learn_dev(DEV_ANON, eventfd(0, EFD_CLOEXEC));
	/* pidfds have a filesystem of their own since Linux 6.9 (pidfs). */
	learn_dev(DEV_PIDFS, (int)syscall(SYS_pidfd_open, getpid(), 0));

	/* SEQPACKET: one message a batch, and EOF for the child when we go. */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1 ||
	    pipe2(ready, O_CLOEXEC) == -1) {
		r = -errno;
		goto fail;
	}
	pid = fork();
	if (pid == -1) {
		r = -errno;
		goto fail;
	}
	if (pid == 0)
		child_main(sv[1], ready[1], parent, confine, title);
	close(sv[1]);
	close(ready[1]);
	sv[1] = ready[1] = -1;
	/* EOF alone: the child is confined and waiting (or died: closer_lose() later). */
	do
		n = read(ready[0], &err, sizeof(err));
	while (n == -1 && errno == EINTR);
	if (n == (ssize_t)sizeof(err) && err < 0) {
		r = err;
		(void)waitpid(pid, NULL, 0);
		goto fail;
	}
	if (fcntl(sv[0], F_SETFL, O_NONBLOCK) == -1) {
		r = -errno;
		close(sv[0]);	/* the child reads EOF and exits */
		sv[0] = -1;
		(void)waitpid(pid, NULL, 0);
		goto fail;
	}
	close(ready[0]);
	closer.sock = sv[0];
	closer.pid = pid;
	closer.started = true;
	return 0;
fail:
	if (sv[0] != -1)
		close(sv[0]);
	if (sv[1] != -1)
		close(sv[1]);
	if (ready[0] != -1)
		close(ready[0]);
	if (ready[1] != -1)
		close(ready[1]);
	return r;
}

/* Closes every pending fd here: the child is gone, nothing else is left. */
static void
closer_lose(void)
{
	while (fdh_closer_npending > 0)
		close(closer.pending[--fdh_closer_npending]);
	if (closer.sock != -1)
		close(closer.sock);
	closer.sock = -1;	/* started, and every close inline from now on */
	fdh_closer_owed = false;
}

/*
 * Whether r, a failed send to the child, is worth trying again: its socket
 * is full (it is stuck in a close), or the kernel refuses more fds in
 * flight (RLIMIT_NOFILE of ours already are) or memory for now.  Anything
 * else (EPIPE, ECONNRESET) means someone killed the child.
 */
static bool
closer_retry(ssize_t r)
{
	return r == -EAGAIN || r == -ETOOMANYREFS || r == -ENOBUFS || r == -ENOMEM;
}

void
fdh_closer_flush(void)
{
	char byte = 0;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	size_t n, i;
	int *fds;
	ssize_t r;

	while (fdh_closer_npending > 0) {
		n = fdh_closer_npending < FDH_MAX_FDS_CEILING ? fdh_closer_npending :
		    FDH_MAX_FDS_CEILING;
		fds = closer.pending + fdh_closer_npending - n;
		r = fdh_send_fds(closer.sock, &iov, 1, fds, n);
		if (r < 0)
			goto fail;
		/* In flight, and the child waits for our next message: not the last close. */
		for (i = 0; i < n; i++)
			close(fds[i]);
		fdh_closer_npending -= (unsigned)n;
		fdh_closer_owed = true;
	}
	if (!fdh_closer_owed)
		return;
	r = fdh_send(closer.sock, &byte, 1);
	if (r >= 0)
		fdh_closer_owed = false;
	else
		goto fail;
	return;
fail:
	if (!closer_retry(r))
		closer_lose();
}

/* Keeps fd for fdh_closer_flush(); consumes fd. */
static void
closer_hold(int fd)
{
	if (fdh_closer_npending == closer.cap) {
		size_t cap = closer.cap ? closer.cap * 2 : PENDING_MIN;
		int *p = realloc(closer.pending, cap * sizeof(*p));

		if (p == NULL) {
			/*
			 * Out of memory, the process cannot serve anyway: a close
			 * that may wait is the one way left not to leak fd.
			 */
			close(fd);
			return;
		}
		closer.pending = p;
		closer.cap = cap;
	}
	closer.pending[fdh_closer_npending++] = fd;
}

void
fdh_closer_queue(int fd)
{
	if (fd < 0)
		return;
	if (closer.sock == -1) {
		close(fd);	/* not started, or the last resort once the child is gone */
		return;
	}
	/* Behind those that wait already, if any: one message takes them all. */
	closer_hold(fd);
	fdh_closer_flush();
}

void
fdh_closer_close(int fd)
{
	if (fd < 0)
		return;
	if (closer.sock != -1 && closer_may_wait(fd)) {
		fdh_closer_queue(fd);
		return;
	}
	close(fd);
	if (fdh_closer_held() > 0)
		fdh_closer_flush();
}
