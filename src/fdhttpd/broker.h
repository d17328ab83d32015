/*
 * The fd broker (CONTRACT section 7): opens files for sandboxed workers
 * beneath the --allow-open directories, and sends them the fds.
 */
#ifndef FDHTTPD_BROKER_H
#define FDHTTPD_BROKER_H

#include "ctl.h"
#include "options.h"
#include "supervisor.h"

/*
 * Opens each --allow-open directory (O_PATH, close-on-exec) once, at
 * start: later renames of the path cannot move the policy elsewhere.
 * Returns 0, or -errno after logging the directory at fault.
 */
int broker_setup(const struct options *o);
void broker_free(void);

/*
 * Answers an OPEN from worker p with an OPEN_REPLY: the fd, or a negative
 * errno (-EACCES for a refusal).  Logs the decision at info.
 */
void broker_on_open(struct sup *s, struct proc *p, const struct fdh_ctl_open *req);

#endif
