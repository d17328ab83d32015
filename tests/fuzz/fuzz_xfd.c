/*
 * The X-FD parser, fdh_xfd_parse().  Input: one byte choosing the caller's
 * room for names (0 to 253), then the header value, which is not
 * NUL-terminated: the parser must keep to its length, and ASan sees a read
 * past it.  What the parser accepts must be valid, unique names inside the
 * value, no more than the room, and the same list written back plainly
 * ("a,b,c") must parse to the same names.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fdhttp/common.h>
#include "fuzz_util.h"
#include "xfd.h"

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_xfd: %s\n", what);
	abort();
}

/* "a,b,c" from names into buf; the length. */
static size_t
rewrite(const char *value, const struct fdh_xfd_name *names, size_t n, char *buf)
{
	size_t i, len = 0;

	for (i = 0; i < n; i++) {
		if (i > 0)
			buf[len++] = ',';
		memcpy(buf + len, value + names[i].off, names[i].len);
		len += names[i].len;
	}
	return len;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fdh_xfd_name names[FDH_MAX_FDS_CEILING], again[FDH_MAX_FDS_CEILING];
	static char plain[FDH_MAX_FDS_CEILING * (FDH_FD_NAME_MAX + 1)];
	struct fuzz_in in = { data, size };
	const uint8_t *v;
	size_t max, len, i, j, plen;
	char *value;
	int n, m;

	max = fuzz_u8(&in) % (FDH_MAX_FDS_CEILING + 1);
	len = fuzz_take(&in, in.n, &v);
	/* A heap copy of exactly len bytes, so that a read past the value is caught. */
	value = malloc(len ? len : 1);
	if (!value)
		return 0;
	if (len)
		memcpy(value, v, len);

	n = fdh_xfd_parse(value, len, names, max);
	if (n < 0) {
		if (n != -EINVAL && n != -E2BIG)
			fail("an error other than -EINVAL or -E2BIG");
		free(value);
		return 0;
	}
	if (n == 0)
		fail("an empty list accepted");
	if ((size_t)n > max)
		fail("more names than room for them");
	for (i = 0; i < (size_t)n; i++) {
		if (names[i].off > len || names[i].len > len - names[i].off)
			fail("a name outside the value");
		if (!fdh_fd_name_valid(value + names[i].off, names[i].len))
			fail("an invalid name accepted");
		for (j = 0; j < i; j++) {
			if (names[j].len == names[i].len &&
			    memcmp(value + names[j].off, value + names[i].off, names[i].len) == 0)
				fail("a name accepted twice");
		}
	}
	plen = rewrite(value, names, (size_t)n, plain);
	m = fdh_xfd_parse(plain, plen, again, max);
	if (m != n)
		fail("the plain rewrite parses to another count");
	for (i = 0; i < (size_t)n; i++) {
		if (again[i].len != names[i].len ||
		    memcmp(plain + again[i].off, value + names[i].off, names[i].len) != 0)
			fail("the plain rewrite parses to other names");
	}
	free(value);
	return 0;
}
