/*
 * The fd broker (CONTRACT section 7): opens files for sandboxed workers
 * beneath the --allow-open directories, and sends them the fds.
 */
#ifndef FDHTTPD_BROKER_H
#define FDHTTPD_BROKER_H

#include <stdbool.h>
#include <stddef.h>

#include "ctl.h"
#include "options.h"
#include "supervisor.h"

/*
 * Opens each --allow-open directory (O_PATH, close-on-exec) once, at
 * start: later renames of the path cannot move the policy elsewhere.
 * Returns 0, or -errno after logging the directory at fault.
 */
int broker_setup(const struct options *o);
/*
 * Whether path[0..len) has no "." or ".." component, no empty one ("//")
 * and no trailing "/" (the empty path stands for "/").
 */
bool broker_canonical(const char *path, size_t len);
void broker_free(void);

/*
 * Answers an OPEN from worker p with an OPEN_REPLY: the fd, or a negative
 * errno (-EACCES for a refusal).  Logs the decision at info.
 */
void broker_on_open(struct sup *s, struct proc *p, const struct fdh_ctl_open *req);

/*
 * Whether p's control socket is to be left unread for now: p has
 * BROKER_MAX_UNREAD answers unread and an OPEN is next in its socket.
 * p is then held (broker_held; logged once while it stays behind).
 */
bool broker_hold(struct proc *p);

/* A held p looked at again: released once it has read an answer. */
void broker_check(struct proc *p, int64_t now);

#endif
