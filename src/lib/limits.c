/* Limits: defaults and their command-line spellings. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <fdhttp/common.h>
#include "limit_range.h"

void
fdh_limits_default(struct fdh_limits *l)
{
	l->max_head = FDH_DEFAULT_MAX_HEAD;
	l->max_headers = FDH_DEFAULT_MAX_HEADERS;
	l->max_body = FDH_DEFAULT_MAX_BODY;
	l->max_fds = FDH_DEFAULT_MAX_FDS;
	l->max_conns = FDH_DEFAULT_MAX_CONNS;
	l->request_timeout_ms = FDH_DEFAULT_REQUEST_TIMEOUT_MS;
	l->idle_timeout_ms = FDH_DEFAULT_IDLE_TIMEOUT_MS;
	l->write_timeout_ms = FDH_DEFAULT_WRITE_TIMEOUT_MS;
}

static int
parse_count(const char *v, unsigned long long min, unsigned long long max,
    unsigned long long *ret)
{
	unsigned long long n;
	char *end;

	if (!v || v[0] < '0' || v[0] > '9')
		return -EINVAL;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || *end || n < min || n > max)
		return -EINVAL;
	*ret = n;
	return 0;
}

/* Seconds with an optional fraction, to whole milliseconds: 1 ms to 49 days. */
static int
parse_seconds(const char *v, unsigned *ret_ms)
{
	double s;
	char *end;

	if (!v || !((v[0] >= '0' && v[0] <= '9') || v[0] == '.'))
		return -EINVAL;
	errno = 0;
	s = strtod(v, &end);
	if (errno || *end || !isfinite(s) || s < 0.001 || s > 4294967.0)
		return -EINVAL;
	*ret_ms = (unsigned)(s * 1000.0 + 0.5);
	return 0;
}

int
fdh_limits_set(struct fdh_limits *l, const char *name, const char *value)
{
	unsigned long long n;
	unsigned ms;

	if (strcmp(name, "max-head") == 0) {
		if (parse_count(value, 64, FDH_MAX_HEAD_CEILING, &n) < 0)
			return -EINVAL;
		l->max_head = (size_t)n;
	} else if (strcmp(name, "max-headers") == 0) {
		if (parse_count(value, 1, FDH_MAX_HEADERS_CEILING, &n) < 0)
			return -EINVAL;
		l->max_headers = (unsigned)n;
	} else if (strcmp(name, "max-body") == 0) {
		if (parse_count(value, 0, (unsigned long long)1 << 40, &n) < 0)
			return -EINVAL;
		l->max_body = (size_t)n;
	} else if (strcmp(name, "max-fds") == 0) {
		if (parse_count(value, 0, FDH_MAX_FDS_CEILING, &n) < 0)
			return -EINVAL;
		l->max_fds = (unsigned)n;
	} else if (strcmp(name, "max-conns") == 0) {
		if (parse_count(value, 1, 1u << 20, &n) < 0)
			return -EINVAL;
		l->max_conns = (unsigned)n;
	} else if (strcmp(name, "request-timeout") == 0) {
		if (parse_seconds(value, &ms) < 0)
			return -EINVAL;
		l->request_timeout_ms = ms;
	} else if (strcmp(name, "idle-timeout") == 0) {
		if (parse_seconds(value, &ms) < 0)
			return -EINVAL;
		l->idle_timeout_ms = ms;
	} else if (strcmp(name, "write-timeout") == 0) {
		if (parse_seconds(value, &ms) < 0)
			return -EINVAL;
		l->write_timeout_ms = ms;
	} else {
		return -ENOENT;
	}
	return 0;
}

/* test_limits checks every text against fdh_limits_set(): both ends taken, one past refused. */
const char *
fdh_limits_range(const char *name)
{
	static const struct {
		const char *name;
		const char *range;
	} ranges[] = {
		{ "max-head", "bytes, 64 to 1048576" },
		{ "max-headers", "a count, 1 to 4096" },
		{ "max-body", "bytes, 0 to 1099511627776 (1 TiB)" },
		{ "max-fds", "a count, 0 to 253" },
		{ "max-conns", "a count, 1 to 1048576" },
		{ "request-timeout", "seconds, 0.001 to 4294967" },
		{ "idle-timeout", "seconds, 0.001 to 4294967" },
		{ "write-timeout", "seconds, 0.001 to 4294967" },
	};
	size_t i;

	for (i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
		if (strcmp(ranges[i].name, name) == 0)
			return ranges[i].range;
	return "a known limit";
}
