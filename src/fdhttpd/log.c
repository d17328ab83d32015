/* The supervisor's fatal exit; the line format lives in ctl.c. */
#include <stdarg.h>
#include <stdlib.h>

#include "log.h"

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fdh_vlog(FDH_LOG_ERROR, fmt, ap);
	va_end(ap);
	exit(1);
}
