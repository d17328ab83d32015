/* The worker side of fdhttpd's control channel. */
#ifndef FDH_WORKER_H
#define FDH_WORKER_H

#include <fdhttp/service.h>

/*
 * Set by fdhttpd in each worker's environment.  FDH_ENV_CONTROL_FD is the
 * control socket's fd number (always 3); its presence is what makes a
 * service run as a worker.
 */
#define FDH_ENV_CONTROL_FD	"FDHTTP_CONTROL_FD"
/* The limits, "max-head=8192,max-headers=64,...": see fdh_worker_env_limits(). */
#define FDH_ENV_LIMITS		"FDHTTP_LIMITS"
/* The worker's slot number, 1 to --workers, for logs and the process title. */
#define FDH_ENV_WORKER_ID	"FDHTTP_WORKER_ID"
/* --max-requests; absent when workers are never recycled. */
#define FDH_ENV_MAX_REQUESTS	"FDHTTP_MAX_REQUESTS"
/* --log-level: "debug", "info", "warn" or "error". */
#define FDH_ENV_LOG_LEVEL	"FDHTTP_LOG_LEVEL"
/* "0" with --no-sandbox: no seccomp filter.  Any other value, or none: the filter. */
#define FDH_ENV_SANDBOX		"FDHTTP_SANDBOX"

/*
 * Applies FDH_ENV_LIMITS to *l (unchanged when the variable is absent):
 * each "name=value" item goes through fdh_limits_set().  Returns 0, or a
 * negative errno for a value that does not parse (*l then unchanged).
 */
int fdh_worker_env_limits(struct fdh_limits *l);

/*
 * Log lines as fdhttpd's other lines, from "worker N" at the level it
 * passed: fdh_worker_main() does it first, and fdh_service_main() before
 * it refuses what fdhttpd started it with.
 */
void fdh_worker_log_setup(void);

struct fdh_dispatch;
/*
 * The fds_refused hook of the dispatcher, alone and as a worker: a warning
 * through fdh_service_log(), one per FDS_REFUSED_LOG_MS at most.
 */
#define FDS_REFUSED_LOG_MS	10000
void fdh_service_warn_fds_refused(struct fdh_dispatch *d, void *arg);

/*
 * Runs the service as a worker of fdhttpd over the control socket named in
 * the environment.  limits already hold the values fdhttpd passed.  Returns
 * the process exit status.
 *
 * argc and argv must be main()'s, unchanged: the process title is written
 * over the memory of the original argument strings (setproctitle(3)), whose
 * contents are first copied to fresh strings that argv[] then points to.
 * Pointers into the original strings taken before this call would see the
 * title instead.  The service's init hook gets argc and argv, argv[0]
 * included.
 */
int fdh_worker_main(const struct fdh_service *svc, const struct fdh_limits *limits,
    int argc, char **argv);

#endif
