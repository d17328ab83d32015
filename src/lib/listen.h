/* Listening on a Unix socket path without trampling what is there. */
#ifndef FDH_LISTEN_H
#define FDH_LISTEN_H

#include <sys/types.h>

/*
 * Binds and listens on path ("@name": abstract) with the given file mode.
 * A live server at path: -EADDRINUSE.  A stale socket (nobody accepts):
 * replaced.  Anything that is not a socket: -EEXIST, left untouched.  The
 * socket is bound under a temporary name with the mode already applied and
 * renamed into place, so it never exists at path with wider permissions.
 * Returns a non-blocking, close-on-exec listening socket in *ret_fd.
 */
int fdh_listen_unix(const char *path, mode_t mode, int *ret_fd);

/* 1 when something accepts connections at path, 0 when not, -errno on doubt. */
int fdh_unix_path_live(const char *path);

#endif
