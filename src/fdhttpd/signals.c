/* The supervisor's signals, as a file descriptor. */
#include <errno.h>
#include <signal.h>
#include <sys/signalfd.h>

#include "signals.h"

static void
handled_set(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGCHLD);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	/*
	 * Unused, but by their default action they would end the supervisor
	 * on the spot, leaving its socket file and pidfile: an operator's
	 * habit (nginx's "reopen the logs") must not stop the service.
	 */
	sigaddset(set, SIGUSR1);
	sigaddset(set, SIGUSR2);
}

int
signals_open(void)
{
	struct sigaction sa = { .sa_handler = SIG_IGN };
	sigset_t set;
	int fd;

	/* A client or worker that vanishes mid-write is an error return, not death. */
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGPIPE, &sa, NULL) == -1)
		return -errno;
	handled_set(&set);
	/* Blocked first, so that none is lost before the signalfd exists. */
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
		return -errno;
	fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd == -1)
		return -errno;
	return fd;
}

void
signals_reset_child(void)
{
	struct sigaction sa = { .sa_handler = SIG_DFL };
	sigset_t set;

	/* An ignored SIGPIPE and a blocked mask would survive execve. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGPIPE, &sa, NULL);
	sigemptyset(&set);
	sigprocmask(SIG_SETMASK, &set, NULL);
}
