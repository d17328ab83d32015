/* Listening sockets on paths. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>


#include "listen.h"

static int
fill_addr(const char *path, struct sockaddr_un *sun, socklen_t *ret_len)
{
	size_t len = strlen(path);

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (len == 0 || len >= sizeof(sun->sun_path))
		return -ENAMETOOLONG;
	memcpy(sun->sun_path, path, len);
	if (path[0] == '@')
		sun->sun_path[0] = '\0';	/* abstract: no file, the name is the rest */
	*ret_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
	    (path[0] == '@' ? 0 : 1));
	return 0;
}

int
fdh_unix_path_live(const char *path)
{
	struct sockaddr_un sun;
	socklen_t slen;
	int fd, r;

	r = fill_addr(path, &sun, &slen);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	r = connect(fd, (struct sockaddr *)&sun, slen) == 0 ? 1 : -errno;
	close(fd);
	if (r == -ECONNREFUSED || r == -ENOENT)
		return 0;
	return r;
}

int
fdh_listen_unix(const char *path, mode_t mode, int *ret_fd)
{
	struct sockaddr_un sun, tmp;
	socklen_t slen, tlen;
	struct stat st;
	char tmppath[sizeof(sun.sun_path)];
	mode_t old;
	int fd = -1, r;

	r = fill_addr(path, &sun, &slen);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1)
		return -errno;
	if (path[0] == '@') {
		if (bind(fd, (struct sockaddr *)&sun, slen) == -1)
			goto fail_errno;
		goto listen;
	}

	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			r = -EEXIST;
			goto fail;
		}
		r = fdh_unix_path_live(path);
		if (r != 0) {
			r = r > 0 ? -EADDRINUSE : r;
			goto fail;
		}
	} else if (errno != ENOENT) {
		goto fail_errno;
	}

	if ((size_t)snprintf(tmppath, sizeof(tmppath), "%s.%ld.tmp", path, (long)getpid()) >=
	    sizeof(tmppath)) {
		r = -ENAMETOOLONG;
		goto fail;
	}
	r = fill_addr(tmppath, &tmp, &tlen);
	if (r < 0)
		goto fail;
	(void)unlink(tmppath);
	/* The mode holds from bind() on: no window in which others may connect. */
	old = umask((mode_t)(~mode & 0777));
	r = bind(fd, (struct sockaddr *)&tmp, tlen);
	umask(old);
	if (r == -1)
		goto fail_errno;
	if (chmod(tmppath, mode) == -1 || rename(tmppath, path) == -1) {
		r = -errno;
		(void)unlink(tmppath);
		goto fail;
	}
listen:
	if (listen(fd, SOMAXCONN) == -1)
		goto fail_errno;
	*ret_fd = fd;
	return 0;
fail_errno:
	r = -errno;
fail:
	close(fd);
	return r;
}
