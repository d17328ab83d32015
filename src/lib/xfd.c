/* X-FD header parsing. */
#include <errno.h>
#include <string.h>

#include <fdhttp/common.h>
#include "xfd.h"

int
fdh_fd_name_valid(const char *name, size_t len)
{
	size_t i;

	if (len == 0 || len > FDH_FD_NAME_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		char ch = name[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return 0;
	}
	return 1;
}

static int
is_ows(char ch)
{
	return ch == ' ' || ch == '\t';
}

int
fdh_xfd_parse(const char *value, size_t len, struct fdh_xfd_name *names, size_t max)
{
	size_t pos = 0, n = 0;

	for (;;) {
		size_t start, end, i;

		while (pos < len && is_ows(value[pos]))
			pos++;
		start = pos;
		while (pos < len && value[pos] != ',' && !is_ows(value[pos]))
			pos++;
		end = pos;
		while (pos < len && is_ows(value[pos]))
			pos++;
		if (pos < len && value[pos] != ',')
			return -EINVAL;		/* "a b": a space inside a name */
		if (!fdh_fd_name_valid(value + start, end - start))
			return -EINVAL;
		if (n == max)
			return -E2BIG;
		/* Names pick fds; a repeated one would make the choice ambiguous. */
		for (i = 0; i < n; i++) {
			if (names[i].len == end - start &&
			    memcmp(value + names[i].off, value + start, end - start) == 0)
				return -EINVAL;
		}
		names[n].off = (uint32_t)start;
		names[n].len = (uint32_t)(end - start);
		n++;
		if (pos == len)
			return (int)n;
		pos++;				/* the comma */
	}
}
