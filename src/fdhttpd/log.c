/* The supervisor's fatal exit; the line format lives in ctl.c. */
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"

static struct fatal_undo *undos;

void
fatal_push(struct fatal_undo *u, void (*fn)(void *arg), void *arg)
{
	u->fn = fn;
	u->arg = arg;
	u->pid = getpid();
	u->next = undos;
	undos = u;
}

void
fatal_pop(struct fatal_undo *u)
{
	if (undos == u)
		undos = u->next;
}

void
fatal(const char *fmt, ...)
{
	struct fatal_undo *u;
	va_list ap;

	va_start(ap, fmt);
	fdh_vlog(FDH_LOG_ERROR, fmt, ap);
	va_end(ap);
	/* Each off the list before it runs: a fatal() within it goes on with the rest. */
	while ((u = undos) != NULL) {
		undos = u->next;
		if (u->pid == getpid())
			u->fn(u->arg);
	}
	exit(1);
}
