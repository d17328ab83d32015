/*
 * Closing descriptors a peer sent without stalling the thread that drops
 * them.  The last close() of some files waits: a TCP socket with SO_LINGER
 * and unsent data, a terminal with output pending, a file on FUSE or NFS
 * (flush), and an AF_UNIX socket whose queue holds such files.  A process
 * that serves others starts one closer thread, and hands it every fd that
 * might be one of those.
 */
#ifndef FDH_CLOSER_H
#define FDH_CLOSER_H

/*
 * Starts this process's closer thread, once; later calls return 0.  Call it
 * before a seccomp filter goes on (the filter forbids creating threads; one
 * loaded with SCMP_FLTATR_CTL_TSYNC then covers the thread too) and before
 * the service's own threads, if any, use fdh_closer_close().  The thread
 * blocks every signal, so that signals keep reaching the caller's signalfd.
 * Returns 0 or -errno.
 */
int fdh_closer_start(void);

/*
 * Consumes fd.  A pipe, a memfd, an eventfd, a pidfd or another anonymous
 * inode is closed now: their release never waits.  Anything else goes to
 * the closer thread, and stays open (counted by fdh_closer_held()) until
 * it is closed there.  Before fdh_closer_start(), and in processes that
 * never call it, fd is closed now.  fd < 0 is ignored.
 */
void fdh_closer_close(int fd);

/*
 * Consumes fd, which the caller knows may wait on close (a connection
 * socket that may still hold unread fds): straight to the closer thread,
 * without looking at it.  Closed now when the thread is not running.
 */
void fdh_closer_queue(int fd);

/* Read with fdh_closer_held(); written by closer.c alone. */
extern unsigned fdh_closer_nheld;

/*
 * How many fds handed to the closer thread are not closed yet.  They are
 * still in the fd table: whoever counts its headroom under RLIMIT_NOFILE
 * counts them too.  Inline, a relaxed atomic load: the dispatcher asks
 * before every read.
 */
static inline unsigned
fdh_closer_held(void)
{
	return __atomic_load_n(&fdh_closer_nheld, __ATOMIC_RELAXED);
}

#endif
