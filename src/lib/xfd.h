/* The X-FD header: a comma-separated list of unique fd names. */
#ifndef FDH_XFD_H
#define FDH_XFD_H

#include <stddef.h>
#include <stdint.h>

/* A name inside the header value it was parsed from. */
struct fdh_xfd_name {
	uint32_t off;
	uint32_t len;
};

/*
 * Parses value[0..len) ("a, b,c"): optional spaces or tabs around names and
 * commas.  Writes at most max names to names[].  Returns the count, -EINVAL
 * for an empty list, an empty, overlong or badly-charactered name, or a name
 * given twice, and -E2BIG when there are more than max names.
 */
int fdh_xfd_parse(const char *value, size_t len, struct fdh_xfd_name *names, size_t max);

#endif
