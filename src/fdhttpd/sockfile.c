/* The listening socket: lock, stale check, private bind, rename into place. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "sockfile.h"

static void
sockfile_clear(struct sockfile *s)
{
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	s->dirfd = -1;
	s->lockfd = -1;
}

/*
 * Takes BASE.lock in the directory, as Wayland compositors do: of two
 * instances starting on one path, exactly one gets it.  The lock file is
 * removed on exit, so after locking we check that the name still leads
 * to the file we locked; if another instance removed it in between, we
 * locked an orphan and start over.
 */
static int
lock_path(struct sockfile *s, const char *path)
{
	struct stat a, b;
	int fd, r, tries;

	for (tries = 0; tries < 16; tries++) {
		fd = openat(s->dirfd, s->lockname, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd == -1) {
			r = -errno;
			log_error("%s.lock: %s", path, strerror(errno));
			return r;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
			r = -errno;
			if (errno == EWOULDBLOCK) {
				log_error("%s: another fdhttpd holds %s.lock; refusing to start",
				    path, path);
				r = -EADDRINUSE;
			} else {
				log_error("%s.lock: %s", path, strerror(errno));
			}
			close(fd);
			return r;
		}
		if (fstat(fd, &a) == 0 &&
		    fstatat(s->dirfd, s->lockname, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
		    a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
			s->lockfd = fd;
			return 0;
		}
		close(fd);
	}
	log_error("%s.lock: keeps being replaced; refusing to start", path);
	return -EBUSY;
}

/*
 * What is at path now: 0 nothing, 1 a stale socket (connect refused), or
 * -errno for anything we must not touch, logged.
 */
static int
probe_path(struct sockfile *s, const char *path, const struct sockaddr_un *sun)
{
	struct stat st;
	int fd, r;

	if (fstatat(s->dirfd, s->base, &st, AT_SYMLINK_NOFOLLOW) == -1) {
		if (errno == ENOENT)
			return 0;
		r = -errno;
		log_error("%s: %s", path, strerror(errno));
		return r;
	}
	if (!S_ISSOCK(st.st_mode)) {
		log_error("%s: exists and is not a socket; refusing to start (the file is left as it is)",
		    path);
		return -EEXIST;
	}
	/* Non-blocking: a live server with a full backlog answers EAGAIN, not a hang. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1) {
		r = -errno;
		log_error("socket: %s", strerror(errno));
		return r;
	}
	r = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0 ? 0 : -errno;
	close(fd);
	if (r == -ECONNREFUSED) {
		log_info("%s: replacing a stale socket", path);
		return 1;
	}
	if (r == 0 || r == -EAGAIN || r == -EINPROGRESS) {
		log_error("%s: a server is already listening there; refusing to start", path);
		return -EADDRINUSE;
	}
	log_error("%s: cannot tell whether a server listens there: %s; refusing to start",
	    path, strerror(-r));
	return r;
}

static int
listen_abstract(const char *name, struct sockfile *s)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	size_t len = strlen(name + 1);
	int r;

	if (len > sizeof(sun.sun_path) - 1) {
		log_error("%s: name too long for a unix socket (at most %zu bytes)",
		    name, sizeof(sun.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(sun.sun_path + 1, name + 1, len);	/* sun_path[0] = 0: abstract */
	s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->fd == -1) {
		r = -errno;
		log_error("socket: %s", strerror(errno));
		return r;
	}
	if (bind(s->fd, (const struct sockaddr *)&sun,
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len)) == -1) {
		r = -errno;
		if (errno == EADDRINUSE)
			log_error("%s: a server is already listening there; refusing to start", name);
		else
			log_error("%s: bind: %s", name, strerror(errno));
		return r;
	}
	if (listen(s->fd, SOMAXCONN) == -1) {
		r = -errno;
		log_error("%s: listen: %s", name, strerror(errno));
		return r;
	}
	return 0;
}

/*
 * Binds fd under a temporary name beside the final one.  The umask makes
 * the mode right from the first instant: the socket never exists with
 * wider permissions, not even under its temporary name.
 */
static int
bind_private(struct sockfile *s, const char *dir, const char *tmpname, mode_t mode)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	mode_t old;
	int n, r;

	n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/%s", dir, tmpname);
	if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
		/* The final path fits but the temporary one not: reach it by fd. */
		n = snprintf(sun.sun_path, sizeof(sun.sun_path), "/proc/self/fd/%d/%s",
		    s->dirfd, tmpname);
		if (n < 0 || (size_t)n >= sizeof(sun.sun_path))
			return -ENAMETOOLONG;
	}
	old = umask(~mode & 0777);
	r = bind(s->fd, (const struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	return r == -1 ? -errno : 0;
}

static int
listen_file(const char *path, mode_t mode, uid_t owner, gid_t group, struct sockfile *s)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	const char *slash = strrchr(path, '/');
	char *dir = NULL, *lockname = NULL, tmpname[64];
	struct stat st;
	int r, stale;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		log_error("%s: path too long for a unix socket (at most %zu bytes)",
		    path, sizeof(sun.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(sun.sun_path, path, strlen(path));
	if (slash && slash[1] == '\0') {
		log_error("%s: names a directory, not a socket file", path);
		return -EISDIR;
	}
	dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
	s->base = strdup(slash ? slash + 1 : path);
	/*
	 * Into a local first: asprintf() leaves its pointer undefined when it
	 * fails, and *s must hold only what sockfile_free() may free.
	 */
	if (dir == NULL || s->base == NULL || asprintf(&lockname, "%s.lock", s->base) < 0) {
		r = -ENOMEM;
		log_error("out of memory");
		goto fail;
	}
	s->lockname = lockname;
	s->dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (s->dirfd == -1) {
		r = -errno;
		log_error("%s: %s", dir, strerror(errno));
		goto fail;
	}
	r = lock_path(s, path);
	if (r < 0)
		goto fail;
	stale = probe_path(s, path, &sun);
	if (stale < 0) {
		r = stale;
		goto fail;
	}

	s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->fd == -1) {
		r = -errno;
		log_error("socket: %s", strerror(errno));
		goto fail;
	}
	snprintf(tmpname, sizeof(tmpname), ".fdhttpd-%ld.tmp", (long)getpid());
	/* A leftover of a crashed instance that had our pid; we hold the lock. */
	unlinkat(s->dirfd, tmpname, 0);
	r = bind_private(s, dir, tmpname, mode);
	if (r < 0) {
		log_error("%s: bind: %s", path, strerror(-r));
		goto fail;
	}
	if ((owner != (uid_t)-1 || group != (gid_t)-1) &&
	    fchownat(s->dirfd, tmpname, owner, group, AT_SYMLINK_NOFOLLOW) == -1) {
		r = -errno;
		log_error("%s: --owner: %s", path, strerror(errno));
		goto fail_tmp;
	}
	/* After chown, which may clear mode bits; the umask already set them. */
	if (fchmodat(s->dirfd, tmpname, mode, 0) == -1) {
		r = -errno;
		log_error("%s: --mode: %s", path, strerror(errno));
		goto fail_tmp;
	}
	/* Listening before the name appears: a client never finds it refusing. */
	if (listen(s->fd, SOMAXCONN) == -1) {
		r = -errno;
		log_error("%s: listen: %s", path, strerror(errno));
		goto fail_tmp;
	}
	/*
	 * A stale socket is replaced atomically; otherwise nothing may appear
	 * there meanwhile that we would clobber.
	 */
	if (renameat2(s->dirfd, tmpname, s->dirfd, s->base, stale ? 0 : RENAME_NOREPLACE) == -1) {
		r = -errno;
		log_error("%s: rename into place: %s", path, strerror(errno));
		goto fail_tmp;
	}
	if (fstatat(s->dirfd, s->base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		s->dev = st.st_dev;
		s->ino = st.st_ino;
	}
	free(dir);
	return 0;
fail_tmp:
	unlinkat(s->dirfd, tmpname, 0);
fail:
	free(dir);
	return r;
}

int
sockfile_listen(const char *path, mode_t mode, uid_t owner, gid_t group, struct sockfile *ret)
{
	struct sockfile s;
	int r;

	sockfile_clear(&s);
	s.name = strdup(path);
	if (s.name == NULL)
		return -ENOMEM;
	if (path[0] == '@')
		r = listen_abstract(path, &s);
	else
		r = listen_file(path, mode, owner, group, &s);
	if (r < 0) {
		sockfile_free(&s);
		return r;
	}
	*ret = s;
	return 0;
}

int
sockfile_activated(struct sockfile *ret)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	struct sockaddr_un sun;
	socklen_t len = sizeof(sun);
	struct sockfile s;
	int type = 0, acc = 0, domain = 0, flags;
	socklen_t olen = sizeof(int);
	char *end;
	long p;

	if (pid == NULL || fds == NULL)
		return 0;
	p = strtol(pid, &end, 10);
	if (*end != '\0' || p != (long)getpid())
		return 0;	/* meant for another process; not ours to take */
	if (strcmp(fds, "1") != 0) {
		log_error("LISTEN_FDS=%s: fdhttpd takes exactly one socket", fds);
		return -EINVAL;
	}
	if (getsockopt(3, SOL_SOCKET, SO_DOMAIN, &domain, &olen) == -1 || domain != AF_UNIX ||
	    getsockopt(3, SOL_SOCKET, SO_TYPE, &type, &olen) == -1 || type != SOCK_STREAM ||
	    getsockopt(3, SOL_SOCKET, SO_ACCEPTCONN, &acc, &olen) == -1 || !acc) {
		log_error("LISTEN_FDS: fd 3 is not a listening AF_UNIX stream socket");
		return -ENOTSOCK;
	}
	flags = fcntl(3, F_GETFL);
	if (flags == -1 || fcntl(3, F_SETFL, flags | O_NONBLOCK) == -1 ||
	    fcntl(3, F_SETFD, FD_CLOEXEC) == -1) {
		log_error("LISTEN_FDS: fd 3: %s", strerror(errno));
		return -errno;
	}
	sockfile_clear(&s);
	s.fd = 3;
	s.activated = true;
	memset(&sun, 0, sizeof(sun));
	if (getsockname(3, (struct sockaddr *)&sun, &len) == 0 &&
	    len > offsetof(struct sockaddr_un, sun_path)) {
		size_t n = len - offsetof(struct sockaddr_un, sun_path);

		if (sun.sun_path[0] == '\0') {
			s.name = malloc(n + 1);
			if (s.name) {
				s.name[0] = '@';
				memcpy(s.name + 1, sun.sun_path + 1, n - 1);
				s.name[n] = '\0';
			}
		} else {
			s.name = strndup(sun.sun_path, n);
		}
	}
	if (s.name == NULL)
		s.name = strdup("(socket-activated)");
	/* The workers must not think the socket is theirs. */
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	*ret = s;
	return 1;
}

void
sockfile_stop(struct sockfile *s, bool remove)
{
	struct stat st;

	if (s->fd != -1) {
		close(s->fd);
		s->fd = -1;
	}
	/* Unlink only the file we created, never one that replaced it. */
	if (remove && s->dirfd != -1 && s->base && s->ino != 0 &&
	    fstatat(s->dirfd, s->base, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    st.st_dev == s->dev && st.st_ino == s->ino) {
		if (unlinkat(s->dirfd, s->base, 0) == -1)
			log_warn("%s: %s", s->name, strerror(errno));
	}
	s->ino = 0;
}

void
sockfile_free(struct sockfile *s)
{
	sockfile_stop(s, false);
	if (s->lockfd != -1) {
		/* Removed while still locked: a waiting instance re-checks the name. */
		unlinkat(s->dirfd, s->lockname, 0);
		close(s->lockfd);
	}
	if (s->dirfd != -1)
		close(s->dirfd);
	free(s->name);
	free(s->base);
	free(s->lockname);
	sockfile_clear(s);
}
