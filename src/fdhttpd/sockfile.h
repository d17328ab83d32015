/*
 * The listening socket: a file created safely (CONTRACT section 5), an
 * abstract name, or a socket handed over by the service manager.
 */
#ifndef FDHTTPD_SOCKFILE_H
#define FDHTTPD_SOCKFILE_H

#include <stdbool.h>
#include <sys/types.h>

struct sockfile {
	int fd;			/* listening, O_NONBLOCK | O_CLOEXEC */
	char *name;		/* for logs and the title: a path or "@name" */
	bool activated;		/* from LISTEN_FDS: the manager owns the name */
	/* A socket file only: */
	int dirfd;		/* its directory, O_PATH */
	char *base;		/* its name in dirfd */
	char *lockname;		/* "BASE.lock" in dirfd, flocked through lockfd */
	int lockfd;
	dev_t dev;		/* the file we created, so that we never */
	ino_t ino;		/* unlink one that replaced it */
};

/*
 * Binds and listens on path ("@name": abstract) with the file's mode and
 * owner ((uid_t)-1 / (gid_t)-1: unchanged).  A live server at path, a lock
 * held by another instance or a file that is not a socket are refused (the
 * file is left alone); a stale socket is replaced.  Every refusal is
 * logged naming the path.  Returns 0 or -errno.
 */
int sockfile_listen(const char *path, mode_t mode, uid_t owner, gid_t group,
    struct sockfile *ret);

/*
 * Takes the socket passed by a service manager (LISTEN_PID/LISTEN_FDS,
 * fd 3) and removes those variables from the environment.  Returns 1 with
 * *ret filled, 0 when not socket-activated, -errno (logged) when the
 * hand-over is unusable.
 */
int sockfile_activated(struct sockfile *ret);

/* Stops listening: closes the socket and, when remove, unlinks our file. */
void sockfile_stop(struct sockfile *s, bool remove);

/* Releases the lock (removing its file) and everything else s holds. */
void sockfile_free(struct sockfile *s);

#endif
