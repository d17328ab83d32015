/*
 * The closer thread.  close() of the last reference to a file runs the
 * file's release on the calling thread, and some releases wait: a TCP
 * socket with SO_LINGER and unsent data for the linger time, a terminal for
 * its pending output, FUSE and NFS for a flush their server may never
 * answer.  Closing an AF_UNIX socket drops the fds still queued in it, which
 * may be such files.  A peer that sends one would freeze whichever loop
 * closes it: the supervisor's, with every worker it watches, or a worker's,
 * with every connection on it.  Those closes happen here instead.
 *
 * The queue is an array under a mutex, and the thread sleeps on a condition
 * variable.  A pipe would bound the queue, and then need a second queue for
 * when it is full (the thread is stuck, which is the case this exists for)
 * and a loop to retry it; an array grown as needed is one queue, which the
 * thread empties on its own.  It stays bounded: every entry is an open fd,
 * so there are never more than RLIMIT_NOFILE.
 *
 * Between fork() and execve() a child may find this mutex held (never the
 * thread's only lock: it makes no other library call but close()); no
 * child touches the closer.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "closer.h"

/* The first allocation of the queue; it doubles from there. */
#define QUEUE_MIN 64

/* The filesystems whose files are released without waiting on anyone. */
enum { DEV_MEMFD, DEV_ANON, DEV_PIDFS, NDEVS };

static struct {
	pthread_mutex_t lock;
	pthread_cond_t wake;		/* the thread: there is work */
	pthread_cond_t up;		/* the starter: the thread runs */
	bool running;			/* under lock */
	int *q;			/* fds to close, q[0..n); under lock */
	size_t n, cap;
	bool started;
	dev_t devs[NDEVS];
	bool have_dev[NDEVS];
} closer = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.wake = PTHREAD_COND_INITIALIZER,
	.up = PTHREAD_COND_INITIALIZER,
};

unsigned fdh_closer_nheld;	/* handed over, not closed yet; atomic */

static void *
closer_main(void *arg)
{
	int fd;

	(void)arg;
	pthread_mutex_lock(&closer.lock);
	closer.running = true;
	pthread_cond_signal(&closer.up);
	pthread_mutex_unlock(&closer.lock);
	for (;;) {
		pthread_mutex_lock(&closer.lock);
		while (closer.n == 0)
			pthread_cond_wait(&closer.wake, &closer.lock);
		fd = closer.q[--closer.n];
		pthread_mutex_unlock(&closer.lock);
		/* The wait this thread exists for; EINTR still closed the fd. */
		(void)close(fd);
		__atomic_sub_fetch(&fdh_closer_nheld, 1, __ATOMIC_RELAXED);
	}
	return NULL;
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
fdh_closer_start(void)
{
	sigset_t all, old;
	pthread_attr_t attr;
	pthread_t t;
	int r;

	if (closer.started)
		return 0;
	learn_dev(DEV_MEMFD, memfd_create("fdhttp-closer", MFD_CLOEXEC));
	learn_dev(DEV_ANON, eventfd(0, EFD_CLOEXEC));
	/* pidfds have a filesystem of their own since Linux 6.9 (pidfs). */
	learn_dev(DEV_PIDFS, (int)syscall(SYS_pidfd_open, getpid(), 0));

	r = pthread_attr_init(&attr);
	if (r != 0)
		return -r;
	r = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (r != 0)
		goto out;
	/*
	 * Created with every signal blocked, and keeps them so: a SIGTERM
	 * must stay pending for the caller's signalfd, not find a thread that
	 * takes its default action and ends the process mid-request.
	 */
	sigfillset(&all);
	r = pthread_sigmask(SIG_SETMASK, &all, &old);
	if (r != 0)
		goto out;
	r = pthread_create(&t, &attr, closer_main, NULL);
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0)
		goto out;
	/*
	 * A new thread's start in the C library makes system calls of its
	 * own (rseq, set_robust_list) that a seccomp filter loaded meanwhile
	 * would answer with death: return once it has made them.
	 */
	pthread_mutex_lock(&closer.lock);
	while (!closer.running)
		pthread_cond_wait(&closer.up, &closer.lock);
	pthread_mutex_unlock(&closer.lock);
	closer.started = true;
out:
	pthread_attr_destroy(&attr);
	return -r;
}

void
fdh_closer_queue(int fd)
{
	if (fd < 0)
		return;
	if (!closer.started) {
		close(fd);
		return;
	}
	pthread_mutex_lock(&closer.lock);
	if (closer.n == closer.cap) {
		size_t cap = closer.cap ? closer.cap * 2 : QUEUE_MIN;
		int *q = realloc(closer.q, cap * sizeof(*q));

		if (q == NULL) {
			pthread_mutex_unlock(&closer.lock);
			/*
			 * Out of memory, the process cannot serve anyway: a close
			 * that may wait is the one way left not to leak fd.
			 */
			close(fd);
			return;
		}
		closer.q = q;
		closer.cap = cap;
	}
	closer.q[closer.n++] = fd;
	__atomic_add_fetch(&fdh_closer_nheld, 1, __ATOMIC_RELAXED);
	pthread_cond_signal(&closer.wake);
	pthread_mutex_unlock(&closer.lock);
}

void
fdh_closer_close(int fd)
{
	if (fd < 0)
		return;
	if (closer.started && closer_may_wait(fd))
		fdh_closer_queue(fd);
	else
		close(fd);
}
