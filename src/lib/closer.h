/*
 * Closing descriptors a peer sent without stalling the process that drops
 * them.  The last close() of some files waits: a TCP socket with SO_LINGER
 * and unsent data, a terminal with output pending, a file on FUSE or NFS
 * (flush), and an AF_UNIX socket whose queue holds such files.  A process
 * that serves others starts one closer process, and hands it every fd that
 * might be one of those; a close that goes on for long is ended there
 * (closer.c), so that one file cannot hold up the others for good.  Not
 * thread-safe: fdhttpd and the workers are single-threaded, and stay so
 * for it.
 */
#ifndef FDH_CLOSER_H
#define FDH_CLOSER_H

#include <stdbool.h>
#include <sys/types.h>

/*
 * Starts this process's closer, once; later calls return 0.  It is a child
 * made by fork(): call it while the process has a single thread, and before
 * a seccomp filter goes on (the worker's forbids making processes).  The
 * child (the manager) makes a child of its own (a runner) that does the
 * closes, and replaces it when a close goes on for too long (closer.c).
 * Both keep no fd of ours but their sockets, block every signal, die with
 * their parent (PR_SET_PDEATHSIG), name themselves fdh-closer (and take the
 * process title given, the runner's followed by " (runner)", unless NULL:
 * ps tells them from their parent) and, when confine is set, confine
 * themselves with seccomp filters of their own before this returns:
 * wherever the caller is sandboxed, or is the supervisor; not where the
 * caller runs without a sandbox (a service alone, --no-sandbox), which may
 * be under a tool that cannot load filters (valgrind).  The manager sends
 * SIGCHLD only if it dies before us, which nothing but a kill makes it do,
 * and reaps its runners itself.  Returns 0 or -errno.
 */
int fdh_closer_start(bool confine, const char *title);

/*
 * Whether pid, a child the caller has just reaped, was its closer, which
 * dies before its parent only when killed.  If so it is forgotten: what it
 * held died with it, fds not handed over yet stay pending, and
 * fdh_closer_start() may make another (until then closes are made here).
 * A process that cannot make one (a sandboxed worker) need not call this.
 */
bool fdh_closer_reaped(pid_t pid);

/*
 * Consumes fd.  A pipe, a memfd of 16 MiB at most or a pidfd on pidfs is
 * closed now: their release is quick and waits on no one.  Anything else
 * (an epoll instance with millions of watches, a memfd of gigabytes) goes to
 * the closer, and is gone from this process's table at once, unless the
 * closer cannot take it yet (fdh_closer_held()).  Before fdh_closer_start(),
 * and in processes that never call it, fd is closed now.  fd < 0 is ignored.
 */
void fdh_closer_close(int fd);

/*
 * Consumes fd, which the caller knows may wait on close (a connection
 * socket that may still hold unread fds): straight to the closer, without
 * looking at it.  Closed now when the closer is not running.
 */
void fdh_closer_queue(int fd);

/*
 * Consumes each of the n fds as fdh_closer_queue() does, in one message:
 * for a batch gathered over time, which one wake-up of the closer takes.
 */
void fdh_closer_queue_all(const int *fds, size_t n);

/*
 * Tries again to hand over the fds the closer could not take (it is stuck
 * in a close and its socket is full, or the kernel refused more fds in
 * flight).  fdh_closer_queue() and fdh_closer_close() try too; a loop that
 * may go on without calling them calls this while fdh_closer_held() > 0.
 */
void fdh_closer_flush(void);

/*
 * With on, *flag is set whenever a handover falls short and fds are left
 * waiting (fdh_closer_held() > 0): a loop that may sleep with nothing else
 * to do must then call fdh_closer_flush() again soon, or they would wait
 * for the next close, which may never come.  The dispatcher's; one flag at
 * a time.  With !on, flag is forgotten if it is the one set.
 */
void fdh_closer_notify(bool *flag, bool on);

/* Read with fdh_closer_held(); written by closer.c alone. */
extern unsigned fdh_closer_npending;
extern bool fdh_closer_owed;

/*
 * How many fds wait to be handed to the closer, plus one while the closer
 * waits for our word to close the last it got (closer.c).  The former are
 * still in the fd table: whoever counts its headroom under RLIMIT_NOFILE
 * counts them too (the one more errs on the safe side).  Inline, plain
 * loads: the dispatcher asks before every read.
 */
static inline unsigned
fdh_closer_held(void)
{
	return fdh_closer_npending + (fdh_closer_owed ? 1 : 0);
}

#endif
