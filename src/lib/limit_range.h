/* What the limits' parser takes, for messages to whoever typed a value. */
#ifndef FDH_LIMIT_RANGE_H
#define FDH_LIMIT_RANGE_H

/*
 * What fdh_limits_set() takes for the limit name ("max-fds"), as text for
 * an error message ("a count, 0 to 253"); "a known limit" for an unknown
 * name, so that the message still reads.
 */
const char *fdh_limits_range(const char *name);

#endif
