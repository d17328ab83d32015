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
 * the socket cannot take it).  The socket is non-blocking on our side:
 * when the child is stuck in a close and the socket's buffer is full, or
 * the kernel refuses more fds in flight (ETOOMANYREFS), fds wait in an
 * array here and go in batches on the next call or fdh_closer_flush().  The
 * array is bounded: every entry is an open fd, so there are never more
 * than RLIMIT_NOFILE.
 *
 * Some closes never end: a linger of an hour whose peer never reads, a
 * FUSE server that never answers a flush.  A single child stuck in one
 * would hold everything behind it open for good (in a worker, counted
 * against the headroom it needs to read from any client), and a local peer
 * can make one cheaply.  A fatal signal ends those waits (the TCP socket
 * then finishes its orderly close in the background), so the child is two
 * processes: the manager, which the parent talks to and which never closes
 * the last copy of a client's fd nor blocks but in poll(), and a runner,
 * its child, which does the closes.  The manager forwards each batch to
 * the runner over a pair of its own, with the same hold-until-the-next-
 * message rule, and the runner answers each message once it has closed
 * the batch before.  When an answer is more than RUNNER_STUCK_MS late, the
 * manager kills the runner (what it held, and what was on its way to it,
 * is released as it dies, where a TCP socket does not linger), makes
 * another, and sends it the one batch the parent may still hold copies of,
 * which it kept for that.  The manager, not the parent, makes runners: a
 * sandboxed worker may not make processes, and nothing changes on the
 * parent's side, which pays no more for it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
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
#include <time.h>
#include <unistd.h>

#include <fdhttp/common.h>
#include "clock.h"
#include "closer.h"
#include "ctl.h"
#include "fdpass.h"

/* The first allocation of the pending array; it doubles from there. */
#define PENDING_MIN 64

/*
 * The filesystems whose files are released without waiting on anyone:
 * the kernel's internal tmpfs (memfds), up to a size, and pidfs.  Not
 * anonymous inodes: an epoll instance with millions of watches, or an
 * inotify one, takes seconds to release, and one eventfd's inode is
 * every one's, so their kinds cannot be told apart by it.
 */
enum { DEV_MEMFD, DEV_PIDFS, NDEVS };

/*
 * The most a memfd closed in place may hold, in 512-byte blocks (16 MiB):
 * freeing its pages costs about 2 ms; one of gigabytes, seconds.
 */
#define MEMFD_INLINE_BLOCKS	(16ULL * 1024 * 1024 / 512)

static struct {
	int sock;		/* our end, non-blocking; -1: not started, or the child is gone */
	pid_t pid;
	bool started;
	int *pending;		/* fds the socket would not take yet, [0..fdh_closer_npending) */
	size_t cap;
	dev_t devs[NDEVS];
	bool have_dev[NDEVS];
	bool *retry;		/* set when fds are left waiting (fdh_closer_notify()) */
} closer = { .sock = -1, .pid = -1 };

unsigned fdh_closer_npending;
bool fdh_closer_owed;

/*
 * How long a runner with work may go without answering before the manager
 * kills it.  A release that waits on nobody takes microseconds; one that
 * goes on for a second waits on a peer or a server (a linger, a flush) that
 * may never come, while everything queued behind it stays open and, in a
 * worker, counts against the headroom that lets it read from its clients.
 * The kill ends the wait, not the close: a TCP socket still sends its data
 * and FIN in the background.
 */
#define RUNNER_STUCK_MS 1000

/*
 * How soon the manager tries again what the kernel refused for now: a new
 * runner (fork() or socketpair() short of memory or processes), a send
 * (ETOOMANYREFS, ENOBUFS), and the reaping of runners it killed.
 */
#define MANAGER_RETRY_MS 100

/*
 * Killed runners not reaped yet, at the most.  A release may wait even in
 * a dying process (a FUSE flush); each such runner stays until it ends.
 * Past this the manager makes no new one until one is reaped, so that a
 * peer cannot fill the process table with them.
 */
#define RUNNERS_DYING_MAX 8

/* Room for the runner's filter, exported as BPF before the manager confines itself. */
#define RUNNER_BPF_MAX 512

#ifdef __SANITIZE_ADDRESS__
/*
 * The sanitizers' _exit() takes down their signal stack, and a report
 * needs these to reach stderr (sandbox.c allows the same for the worker).
 */
#define SANITIZER_ALLOWED \
	"sigaltstack", "write", "mmap", "munmap", "madvise", "futex", "getpid", "gettid", \
	"sched_yield",
#else
#define SANITIZER_ALLOWED
#endif

/*
 * The runner's seccomp filter: it receives, closes and answers, nothing
 * else.  A file's release runs in the kernel whatever the filter says; what
 * the filter stops is a bug in its loop or in the C library being made to
 * do more with the clients' fds it holds.  send() is sendto().
 */
static const char *const runner_allowed[] = {
	"recvmsg", "sendto", "close", "exit", "exit_group", "rt_sigreturn", "restart_syscall",
	SANITIZER_ALLOWED
};

/*
 * The manager's: it holds clients' fds for a moment too, and makes runners.
 * The rules with arguments are in manager_confine().  set_robust_list is
 * glibc's fork() in the child, and close_range the runner's, which runs
 * under this filter until its own goes on.  restart_syscall: a poll() with
 * a timeout that a SIGSTOP interrupted resumes through it at SIGCONT (one
 * without, the runner's recvmsg(), is simply made again).
 */
static const char *const manager_allowed[] = {
	"poll", "ppoll", "recvmsg", "sendmsg", "sendto", "close", "close_range", "kill",
	"wait4", "clock_gettime", "set_robust_list", "exit", "exit_group", "rt_sigreturn",
	"restart_syscall",
	SANITIZER_ALLOWED
};

/* The manager's state (manager_main()). */
struct mgr {
	int psock;		/* the parent's batches come here */
	int rsock;		/* our end of the runner's socket, non-blocking; -1: no runner */
	pid_t runner;		/* -1: none, or reaped already */
	unsigned dying;		/* runners killed or dead, not reaped yet */
	unsigned unacked;	/* messages the runner has not answered, its greeting included */
	int64_t since;		/* ms: its last answer, or when it got work while it had none */
	int64_t retry;		/* ms: no runner made nor batch sent before then */
	int cur[FDH_MAX_FDS_CEILING];	/* our copies of the parent's last batch */
	size_t ncur;
	bool fwd;		/* cur waits to go to the runner */
	bool confine;
	const char *title;
	struct sock_fprog prog;	/* the runner's filter */
	struct sock_filter bpf[RUNNER_BPF_MAX];
};

/*
 * A filter that kills on any call but those named; names this
 * architecture lacks (poll on arm64) are skipped.  NULL on failure.
 */
static scmp_filter_ctx
filter_new(const char *const *names, size_t n)
{
	scmp_filter_ctx ctx;
	size_t i;
	int r, nr;

	ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	if (ctx == NULL)
		return NULL;
	/* A call made through another ABI (i386, x32) is no way around the list. */
	r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	for (i = 0; r == 0 && i < n; i++) {
		nr = seccomp_syscall_resolve_name(names[i]);
		if (nr != __NR_SCMP_ERROR)
			r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
	}
	if (r < 0) {
		seccomp_release(ctx);
		return NULL;
	}
	return ctx;
}

/*
 * Compiles the runner's filter into m->prog.  Now, not in the runner: the
 * manager's own filter forbids what libseccomp needs to build one, and lets
 * a runner load it with a bare seccomp(2).  0 or -errno.
 */
static int
runner_filter(struct mgr *m)
{
	scmp_filter_ctx ctx;
	int p[2] = { -1, -1 }, r;
	size_t len = 0;
	ssize_t n;

	ctx = filter_new(runner_allowed, sizeof(runner_allowed) / sizeof(runner_allowed[0]));
	if (ctx == NULL)
		return -ENOMEM;
	/* Far less than a pipe holds: the export cannot block. */
	if (pipe2(p, O_CLOEXEC) == -1) {
		r = -errno;
		goto fail;
	}
	r = seccomp_export_bpf(ctx, p[1]);
	close(p[1]);
	p[1] = -1;
	while (r == 0 && (n = read(p[0], (char *)m->bpf + len, sizeof(m->bpf) - len)) != 0) {
		if (n > 0)
			len += (size_t)n;
		else if (errno != EINTR)
			r = -errno;
		if (len == sizeof(m->bpf))
			r = -E2BIG;
	}
	if (r == 0 && (len == 0 || len % sizeof(m->bpf[0]) != 0))
		r = -EPROTO;
	if (r < 0)
		goto fail;
	close(p[0]);
	seccomp_release(ctx);
	m->prog.filter = m->bpf;
	m->prog.len = (unsigned short)(len / sizeof(m->bpf[0]));
	return 0;
fail:
	if (p[0] != -1)
		close(p[0]);
	seccomp_release(ctx);
	return r;
}

/*
 * Loads the manager's filter; 0 or -errno.  Processes, not threads nor
 * namespaces: clone() with no flag but those glibc's fork() passes.
 * clone3() cannot be checked (its flags are in memory) and fails as on a
 * kernel without it.  Sockets are AF_UNIX pairs for runners; fcntl() makes
 * our end non-blocking; prctl() and seccomp() are the runner's, which dies
 * with us and confines itself under this filter.
 */
static int
manager_confine(void)
{
	const uint64_t fork_flags = CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | CSIGNAL;
	scmp_filter_ctx ctx;
	int r;

	ctx = filter_new(manager_allowed, sizeof(manager_allowed) / sizeof(manager_allowed[0]));
	if (ctx == NULL)
		return -ENOMEM;
	r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
	    SCMP_A0(SCMP_CMP_MASKED_EQ, ~fork_flags, 0));
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socketpair), 1,
		    SCMP_A0(SCMP_CMP_EQ, AF_UNIX, 0));
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(fcntl), 1,
		    SCMP_A1(SCMP_CMP_EQ, F_SETFL, 0));
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
		    SCMP_A0(SCMP_CMP_EQ, PR_SET_PDEATHSIG, 0));
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(seccomp), 2,
		    SCMP_A0(SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER, 0), SCMP_A1(SCMP_CMP_EQ, 0, 0));
	if (r == 0)
		r = seccomp_load(ctx);	/* no_new_privs is set already */
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
 * The runner, on sock: it greets its manager (0, or -errno when it could
 * not start), then holds the fds of each message until the next one comes,
 * closes them and answers.  Its manager kills it when an answer is late.
 */
static void __attribute__((noreturn))
runner_main(const struct mgr *m, int sock)
{
	int fds[FDH_MAX_FDS_CEILING], held[FDH_MAX_FDS_CEILING], r = 0;
	size_t nfds, nheld = 0, i;
	bool truncated;
	ssize_t n;
	char byte = 0;

	/*
	 * Nothing but its socket: not the manager's copies of a batch, nor
	 * the parent's socket (whose EOF tells the manager its parent went).
	 */
	close_all_but(sock, sock);
	/*
	 * Signals stay blocked (inherited).  PR_SET_PDEATHSIG: a runner stuck
	 * in a close outlives no manager.  A manager gone before this line
	 * leaves EOF on the socket, and the runner holds nothing yet.
	 */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
		r = -errno;
	if (r == 0 && m->title)
		fdh_title_set("%s (runner)", m->title);
	if (r == 0 && m->confine && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &m->prog) == -1)
		r = -errno;
	n = fdh_send(sock, &r, sizeof(r));
	if (r < 0 || n != (ssize_t)sizeof(r))
		_exit(1);
	for (;;) {
		n = fdh_recv_fds(sock, &byte, 1, fds, FDH_MAX_FDS_CEILING, &nfds, &truncated);
		/*
		 * Any message (or EOF) says the manager closed its copies of the
		 * fds of the one before, and the parent its own: ours are the
		 * last now.  The wait this process exists for; EINTR still
		 * closed the fd.
		 */
		for (i = 0; i < nheld; i++)
			(void)close(held[i]);
		/* _exit(): no atexit handler, no LeakSanitizer pass over the parent's heap. */
		if (n <= 0)
			_exit(n == 0 ? 0 : 1);
		memcpy(held, fds, nfds * sizeof(fds[0]));
		nheld = nfds;
		if (fdh_send(sock, &byte, 1) < 0)
			_exit(1);
	}
}

/*
 * A socket pair and a child: returns the child's pid (0 in the child), or
 * -errno with nothing left open.  SEQPACKET: one message a batch, and EOF
 * for the child when we go.  Our end, sv[0], is non-blocking; the child's
 * blocks.
 */
static pid_t
fork_with_socket(int sv[2])
{
	pid_t pid;
	int r;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
		return -errno;
	if (fcntl(sv[0], F_SETFL, O_NONBLOCK) == -1) {
		r = -errno;
		goto fail;
	}
	pid = fork();
	if (pid != -1)
		return pid;
	r = -errno;
fail:
	close(sv[0]);
	close(sv[1]);
	sv[0] = sv[1] = -1;
	return r;
}

/* Makes a runner; on failure the manager tries again later.  0 or -errno. */
static int
runner_start(struct mgr *m, int64_t now)
{
	int sv[2];
	pid_t pid;

	pid = fork_with_socket(sv);
	if (pid < 0) {
		m->retry = now + MANAGER_RETRY_MS;
		return pid;
	}
	if (pid == 0)
		runner_main(m, sv[1]);
	close(sv[1]);
	m->rsock = sv[0];
	m->runner = pid;
	m->unacked = 1;		/* its greeting */
	m->since = now;
	return 0;
}

/*
 * The runner is stuck, or gone: it goes (SIGKILL ends a linger's wait and a
 * FUSE flush's), and with it what it held and what was on its way to it,
 * released as it dies, where a TCP socket does not linger.  Those batches
 * the parent was done with.  Not cur, which the parent may still hold: our
 * copies go to the next runner.  A runner that died by itself is not
 * replaced at once, lest one that cannot start be made in a loop.
 */
static void
runner_lose(struct mgr *m, int64_t now, bool stuck)
{
	if (m->runner != -1) {
		(void)kill(m->runner, SIGKILL);
		m->dying++;
		m->runner = -1;
	}
	close(m->rsock);
	m->rsock = -1;
	m->unacked = 0;
	m->fwd = m->fwd || m->ncur > 0;
	m->retry = stuck ? now : now + MANAGER_RETRY_MS;
}

/* Reaps runners that went, without waiting for those still dying. */
static void
runner_reap(struct mgr *m)
{
	pid_t pid;

	while (m->dying > 0) {
		pid = waitpid(-1, NULL, WNOHANG);
		if (pid == -1 && errno == ECHILD) {
			m->dying = 0;
			return;
		}
		if (pid <= 0)
			return;
		if (pid == m->runner)
			m->runner = -1;	/* not to be killed: its pid is free for others now */
		else if (m->dying > 0)
			m->dying--;
	}
}

/* Reads the runner's answers; EOF or an error loses it. */
static void
runner_read(struct mgr *m, int64_t now)
{
	int answer;
	struct iovec iov = { .iov_base = &answer, .iov_len = sizeof(answer) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	for (;;) {
		n = recvmsg(m->rsock, &msg, 0);
		if (n > 0) {
			if (m->unacked > 0)
				m->unacked--;
			m->since = now;
		} else if (n == -1 && errno == EINTR) {
			continue;
		} else if (n == -1 && errno == EAGAIN) {
			return;
		} else {
			runner_lose(m, now, false);
			return;
		}
	}
}

/*
 * Sends cur to the runner.  Our copies stay until the parent's next
 * message: the parent may not have closed its own yet, and the runner may
 * die before it closes them.
 */
static void
runner_send(struct mgr *m, int64_t now)
{
	char byte = 0;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	ssize_t r;

	r = fdh_send_fds(m->rsock, &iov, 1, m->cur, m->ncur);
	if (r >= 0) {
		if (m->unacked++ == 0)
			m->since = now;
		m->fwd = false;
	} else if (r == -ETOOMANYREFS || r == -ENOBUFS || r == -ENOMEM) {
		m->retry = now + MANAGER_RETRY_MS;
	} else if (r != -EAGAIN) {	/* EAGAIN: full, POLLOUT says when */
		runner_lose(m, now, false);
	}
}

/*
 * Reads the parent's next message.  It says the parent closed its copies
 * of cur, which the runner holds (or has on its way) and will not close
 * before the next message from us: our close is not the last.  EOF: the
 * parent is gone, and so are we, the runner with us.
 */
static void
parent_read(struct mgr *m)
{
	int fds[FDH_MAX_FDS_CEILING];
	size_t nfds, i;
	bool truncated;
	ssize_t n;
	char byte;

	n = fdh_recv_fds(m->psock, &byte, 1, fds, FDH_MAX_FDS_CEILING, &nfds, &truncated);
	/* _exit(): as the runner's, and a dying process's closes do not linger. */
	if (n <= 0)
		_exit(n == 0 ? 0 : 1);
	for (i = 0; i < m->ncur; i++)
		close(m->cur[i]);
	memcpy(m->cur, fds, nfds * sizeof(fds[0]));
	m->ncur = nfds;
	m->fwd = true;
}

/* Sets *t to when, if sooner. */
static void
soonest(int64_t *t, int64_t when)
{
	if (*t == -1 || when < *t)
		*t = when;
}

/* The manager's poll timeout: the next deadline, or -1. */
static int
manager_timeout(const struct mgr *m, int64_t now)
{
	int64_t t = -1;

	if (m->rsock != -1 && m->unacked > 0)
		soonest(&t, m->since + RUNNER_STUCK_MS);
	/* A retry is in the future when due: the loop tried already. */
	if (m->retry > now && (m->rsock == -1 || m->fwd))
		soonest(&t, m->retry);
	if (m->dying > 0)
		soonest(&t, now + MANAGER_RETRY_MS);
	if (t == -1)
		return -1;
	return t <= now ? 0 : (int)(t - now < INT_MAX ? t - now : INT_MAX);
}

/*
 * The manager's loop.  It blocks in poll() alone: sockets non-blocking or
 * read when poll() says so, children reaped with WNOHANG.
 */
static void __attribute__((noreturn))
manager_loop(struct mgr *m)
{
	struct pollfd pfd[2];
	int64_t now;

	for (;;) {
		now = fdh_mono_ms();
		runner_reap(m);
		if (m->rsock == -1 && now >= m->retry && m->dying < RUNNERS_DYING_MAX)
			(void)runner_start(m, now);
		if (m->rsock != -1 && m->fwd && now >= m->retry)
			runner_send(m, now);
		if (m->rsock != -1 && m->unacked > 0 && now - m->since >= RUNNER_STUCK_MS) {
			runner_lose(m, now, true);
			continue;
		}
		/* One batch at a time from the parent: while cur waits, its socket fills up. */
		pfd[0].fd = m->fwd ? -1 : m->psock;
		pfd[0].events = POLLIN;
		pfd[1].fd = m->rsock;
		pfd[1].events = POLLIN | (m->fwd && now >= m->retry ? POLLOUT : 0);
		pfd[0].revents = pfd[1].revents = 0;
		if (poll(pfd, 2, manager_timeout(m, now)) <= 0)
			continue;
		/* Answers first: a runner that just answered is not stuck. */
		if (pfd[1].revents & (POLLIN | POLLHUP | POLLERR))
			runner_read(m, fdh_mono_ms());
		if (pfd[0].revents != 0 && !m->fwd)
			parent_read(m);
	}
}

/*
 * The closer process, the manager: sock its end of the parent's socket,
 * ready the pipe on which it says how its start went (an errno on
 * failure, EOF alone once its first runner is up and both are confined).
 */
static void __attribute__((noreturn))
manager_main(int sock, int ready, pid_t parent, bool confine, const char *title)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	struct mgr m = {
		.psock = sock, .rsock = -1, .runner = -1, .confine = confine, .title = title,
	};
	struct pollfd pfd;
	sigset_t all;
	ssize_t n;
	int r, answer = 0;

	/*
	 * Nothing of the parent's but the socket: a copy of a worker's
	 * control socket here would hide the worker's death from the
	 * supervisor, which waits for EOF on it; a copy of a listening
	 * socket would keep it accepting.
	 */
	close_all_but(sock, ready);
	/*
	 * Signals stay blocked, here and in runners: a SIGTERM or SIGHUP
	 * meant for the parent's process group must not end a close half
	 * done, nor run a handler of the parent's in this copy of it.
	 * SIGCHLD at its default, whatever the parent made of it: runners
	 * wait to be reaped.
	 */
	sigfillset(&all);
	r = sigprocmask(SIG_SETMASK, &all, NULL) == -1 ? -errno : 0;
	if (r == 0 && sigaction(SIGCHLD, &dfl, NULL) == -1)
		r = -errno;
	/* A closer outlives no parent, even one SIGKILLed before this line. */
	if (r == 0 && prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
		r = -errno;
	if (r == 0 && getppid() != parent)
		_exit(0);
	if (r == 0) {
		(void)prctl(PR_SET_NAME, "fdh-closer");
		if (title)
			fdh_title_set("%s", title);
	}
	if (r == 0 && confine && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		r = -errno;
	if (r == 0 && confine)
		r = runner_filter(&m);
	/* The first runner, now: a runner that cannot start is an error to report. */
	if (r == 0)
		r = runner_start(&m, fdh_mono_ms());
	if (r == 0) {
		pfd.fd = m.rsock;
		pfd.events = POLLIN;
		do
			n = poll(&pfd, 1, -1) == 1 ? recv(m.rsock, &answer, sizeof(answer), 0) : -1;
		while (n == -1 && (errno == EINTR || errno == EAGAIN));
		if (n != (ssize_t)sizeof(answer))
			r = n == -1 ? -errno : -ECHILD;
		else
			r = answer;
		m.unacked = 0;
	}
	if (r == 0 && confine)
		r = manager_confine();
	if (r < 0) {
		n = write(ready, &r, sizeof(r));
		_exit(n == (ssize_t)sizeof(r) ? 1 : 2);
	}
	(void)close(ready);
	manager_loop(&m);
}

/*
 * The type and device of fd, from what the kernel has cached: fstat() on a
 * FUSE file whose attributes have expired asks the FUSE server, which may
 * never answer.  AT_STATX_DONT_SYNC asks no one, and neither the type nor
 * the device can change.  Returns whether the kernel told.
 */
static bool
closer_stat(int fd, mode_t *ret_type, dev_t *ret_dev, uint64_t *ret_blocks)
{
	struct statx stx;

	if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE | STATX_BLOCKS,
	    &stx) == -1)
		return false;
	*ret_type = stx.stx_mode & S_IFMT;
	*ret_dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
	/* Unknown: as if large. */
	*ret_blocks = (stx.stx_mask & STATX_BLOCKS) ? stx.stx_blocks : UINT64_MAX;
	return true;
}

/* Learns the device of fd, a file of the kind in which (-1: none); consumes fd. */
static void
learn_dev(unsigned which, int fd)
{
	uint64_t blocks;
	mode_t type;

	if (fd < 0)
		return;
	if (closer_stat(fd, &type, &closer.devs[which], &blocks))
		closer.have_dev[which] = true;
	close(fd);
}

/*
 * Whether closing fd may wait.  A pipe's release wakes its other end and
 * frees its buffers (a megabyte at most, pipe-max-size); a memfd of
 * MEMFD_INLINE_BLOCKS at most lives on the kernel's internal tmpfs, and a
 * pidfd on pidfs, which no server or peer stands behind.  Anything else
 * may: a socket, a terminal, a regular file on any filesystem, a large
 * memfd, an anonymous inode (epoll, inotify, and pidfds before pidfs),
 * and what cannot be looked at.
 */
static bool
closer_may_wait(int fd)
{
	uint64_t blocks;
	mode_t type;
	dev_t dev;

	if (!closer_stat(fd, &type, &dev, &blocks))
		return true;
	if (type == S_IFIFO)
		return false;
	if (closer.have_dev[DEV_MEMFD] && closer.devs[DEV_MEMFD] == dev)
		return blocks > MEMFD_INLINE_BLOCKS;
	return !(closer.have_dev[DEV_PIDFS] && closer.devs[DEV_PIDFS] == dev);
}

int
fdh_closer_start(bool confine, const char *title)
{
	int sv[2] = { -1, -1 }, ready[2] = { -1, -1 }, err = 0, r, anon;
	uint64_t blocks;
	mode_t type;
	dev_t dev;
	pid_t parent = getpid(), pid;
	ssize_t n;

	if (closer.started)
		return 0;
	learn_dev(DEV_MEMFD, memfd_create("fdhttp-closer", MFD_CLOEXEC));
	/*
	 * pidfds have a filesystem of their own since Linux 6.9 (pidfs);
	 * before, they are anonymous inodes, as an eventfd is.
	 */
	learn_dev(DEV_PIDFS, (int)syscall(SYS_pidfd_open, getpid(), 0));
	anon = eventfd(0, EFD_CLOEXEC);
	if (closer.have_dev[DEV_PIDFS] && (anon < 0 ||
	    (closer_stat(anon, &type, &dev, &blocks) && dev == closer.devs[DEV_PIDFS])))
		closer.have_dev[DEV_PIDFS] = false;
	if (anon >= 0)
		close(anon);

	if (pipe2(ready, O_CLOEXEC) == -1) {
		r = -errno;
		goto fail;
	}
	pid = fork_with_socket(sv);
	if (pid < 0) {
		r = pid;
		goto fail;
	}
	if (pid == 0)
		manager_main(sv[1], ready[1], parent, confine, title);
	close(sv[1]);
	close(ready[1]);
	sv[1] = ready[1] = -1;
	/* EOF alone: the closer is confined and waiting (or died: closer_lose() later). */
	do
		n = read(ready[0], &err, sizeof(err));
	while (n == -1 && errno == EINTR);
	if (n == (ssize_t)sizeof(err) && err < 0) {
		r = err;
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

bool
fdh_closer_reaped(pid_t pid)
{
	if (!closer.started || pid != closer.pid)
		return false;
	/*
	 * Its end went with it, and what was queued there; ours holds
	 * nothing, so this close waits on no one.  A message owed was owed
	 * to it alone.
	 */
	if (closer.sock != -1)
		close(closer.sock);
	closer.sock = -1;
	closer.pid = -1;
	closer.started = false;
	fdh_closer_owed = false;
	return true;
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
	else if (closer.retry)
		*closer.retry = true;	/* the caller's loop offers them again soon */
}

void
fdh_closer_notify(bool *flag, bool on)
{
	if (on)
		closer.retry = flag;
	else if (closer.retry == flag)
		closer.retry = NULL;
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
fdh_closer_queue_all(const int *fds, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (fds[i] < 0)
			continue;
		if (closer.sock == -1)
			close(fds[i]);	/* not started, or the last resort once the child is gone */
		else
			closer_hold(fds[i]);
	}
	/* Behind those that wait already, if any: one message takes them all. */
	if (closer.sock != -1)
		fdh_closer_flush();
}

void
fdh_closer_queue(int fd)
{
	fdh_closer_queue_all(&fd, 1);
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
