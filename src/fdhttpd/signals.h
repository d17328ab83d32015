/*
 * Signals reach the supervisor through a signalfd polled with everything
 * else: no work is ever done in a handler.
 */
#ifndef FDHTTPD_SIGNALS_H
#define FDHTTPD_SIGNALS_H

/*
 * Blocks SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2, ignores
 * SIGPIPE, and returns a non-blocking, close-on-exec signalfd for the six,
 * or -errno.
 */
int signals_open(void);

/* In a child between fork and execve: nothing blocked or ignored. */
void signals_reset_child(void);

#endif
