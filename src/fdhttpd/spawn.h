/* Starting one worker: fork, a clean process state, execve of SERVICE. */
#ifndef FDHTTPD_SPAWN_H
#define FDHTTPD_SPAWN_H

#include <sys/types.h>

#include "options.h"

/*
 * Prepares what every worker gets: the environment (the supervisor's
 * without what is the supervisor's alone, plus the FDHTTP_* settings).
 * Returns 0 or -errno.
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
