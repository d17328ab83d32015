/* The service manager's readiness protocol (sd_notify(3)), without libsystemd. */
#ifndef FDHTTPD_NOTIFY_H
#define FDHTTPD_NOTIFY_H

/*
 * Takes NOTIFY_SOCKET from the environment (removing it, so that workers
 * cannot speak for the supervisor).  Without it every notify_send() is a
 * no-op.
 */
void notify_init(void);

/* Sends one datagram of state ("READY=1"); a failure is logged, not fatal. */
void notify_send(const char *state);

void notify_free(void);

#endif
