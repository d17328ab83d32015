/*
 * The supervisor's log: one line per event on stderr, in the format ctl.h
 * shares with the workers, and its fatal exit.
 */
#ifndef FDHTTPD_LOG_H
#define FDHTTPD_LOG_H

#include <sys/types.h>

#include "ctl.h"

#define log_debug(...)	fdh_log(FDH_LOG_DEBUG, __VA_ARGS__)
#define log_info(...)	fdh_log(FDH_LOG_INFO, __VA_ARGS__)
#define log_warn(...)	fdh_log(FDH_LOG_WARN, __VA_ARGS__)
#define log_error(...)	fdh_log(FDH_LOG_ERROR, __VA_ARGS__)

/*
 * What a fatal exit undoes first: fn(arg), for what its pusher created
 * (the socket file, the pidfile) or started (the workers).  The caller
 * keeps the record until it pops it; pushed before, it is run after.
 */
struct fatal_undo {
	void (*fn)(void *arg);
	void *arg;
	pid_t pid;		/* the pusher's: a child forked since has nothing to undo */
	struct fatal_undo *next;
};

void fatal_push(struct fatal_undo *u, void (*fn)(void *arg), void *arg);
/* Removes u, the last one pushed. */
void fatal_pop(struct fatal_undo *u);

/* Logs at error, runs what was pushed, newest first, and exits with status 1. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
