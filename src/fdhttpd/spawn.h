/* Starting one worker: fork, a clean process state, execve of SERVICE. */
#ifndef FDHTTPD_SPAWN_H
#define FDHTTPD_SPAWN_H

#include <sys/resource.h>
#include <sys/types.h>

#include <fdhttp/common.h>
#include "options.h"

/*
 * Descriptors a worker gets beyond its connections' (spawn_nofile()): the
 * 253 one message may carry, which its dispatcher keeps free before every
 * read (dispatch.c, fd_reserve()), and 64 for stdio, the control socket,
 * the dispatcher's own, its closer's socket and what the service opened in
 * its init hook.
 */
#define SPAWN_NOFILE_MARGIN	(FDH_MAX_FDS_CEILING + 64)

/*
 * A sandboxed worker's RLIMIT_NOFILE, soft and hard:
 *	max_conns x (2 + max_fds) + SPAWN_NOFILE_MARGIN
 * 2 for each connection and its peer's pidfd, max_fds for the fds a
 * request may bring (a request still arriving holds them).
 */
rlim_t spawn_nofile(const struct fdh_limits *l);

/*
 * Raises the supervisor's soft RLIMIT_NOFILE to its hard limit, first
 * thing.  Its fds in flight to busy workers count against the soft limit
 * (ETOOMANYREFS beyond), on top of its own table: each worker, each
 * pending connection and its pidfd hold some, and the usual soft 1024 is
 * a default for select() users, which fdhttpd is not.  Workers get the
 * limit fdhttpd was started with back (unsandboxed) or their own.
 */
void spawn_raise_nofile(void);

/*
 * Checks that the supervisor's descriptors fit its RLIMIT_NOFILE
 * (2 per worker and its own), opens /dev/null for the workers' stdin, and
 * prepares what every worker gets: the environment (sandboxed, only PATH,
 * LANG, LC_*, TZ and sanitizer options of the supervisor's; with
 * --no-sandbox, all of it but what is the supervisor's alone; plus the
 * FDHTTP_* settings) and the descriptor limit.  Returns 0 or -errno, and
 * logs why when the limit cannot be given.
 */
int spawn_setup(const struct options *o);
void spawn_free(void);

/*
 * Starts worker id (1-based slot number) running SERVICE with its end of a
 * new control socketpair at fd 3.  Returns 0 with the child's pid and the
 * supervisor's end (non-blocking, close-on-exec, owned by the caller), or
 * -errno when nothing was started.
 */
int spawn_worker(const struct options *o, unsigned id, pid_t *ret_pid, int *ret_ctl);

#endif
