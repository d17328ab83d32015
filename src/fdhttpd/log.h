/*
 * The supervisor's log: one line per event on stderr, in the format ctl.h
 * shares with the workers.  fatal() is for startup, before anything needs
 * cleaning up.
 */
#ifndef FDHTTPD_LOG_H
#define FDHTTPD_LOG_H

#include "ctl.h"

#define log_debug(...)	fdh_log(FDH_LOG_DEBUG, __VA_ARGS__)
#define log_info(...)	fdh_log(FDH_LOG_INFO, __VA_ARGS__)
#define log_warn(...)	fdh_log(FDH_LOG_WARN, __VA_ARGS__)
#define log_error(...)	fdh_log(FDH_LOG_ERROR, __VA_ARGS__)

/* Logs at error and exits with status 1. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
