/* The worker side of fdhttpd's control channel. */
#ifndef FDH_WORKER_H
#define FDH_WORKER_H

#include <fdhttp/service.h>

/* Set by fdhttpd in each worker's environment: the control socket's fd number. */
#define FDH_ENV_CONTROL_FD "FDHTTP_CONTROL_FD"

/*
 * Runs the service as a worker of fdhttpd over the control socket named in
 * the environment.  limits already hold the values fdhttpd passed.  Returns
 * the process exit status.
 */
int fdh_worker_main(const struct fdh_service *svc, const struct fdh_limits *limits,
    int argc, char **argv);

#endif
