/*
 * The X-FD header value (CONTRACT section 3): a comma-separated list of
 * unique names of 1-64 characters from [A-Za-z0-9._-], spaces or tabs
 * around the commas.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <fdhttp/common.h>
#include "xfd.h"

#define ROOM 8
#define SENTINEL 0xdeadbeefu

/* Parses s with room for max names; names beyond max keep a sentinel. */
static int
parse(const char *s, size_t max, struct fdh_xfd_name names[ROOM])
{
	size_t i;

	assert_true(max < ROOM);
	for (i = 0; i < ROOM; i++) {
		names[i].off = SENTINEL;
		names[i].len = SENTINEL;
	}
	return fdh_xfd_parse(s, strlen(s), names, max);
}

/* Asserts that the i-th name parsed from s is want. */
static void
assert_name(const char *s, const struct fdh_xfd_name *n, const char *want)
{
	assert_int_equal(n->len, strlen(want));
	assert_true(n->off + n->len <= strlen(s));
	assert_memory_equal(s + n->off, want, n->len);
}

static void
test_single_name(void **state)
{
	struct fdh_xfd_name names[ROOM];
	const char *s = "input";

	(void)state;
	assert_int_equal(parse(s, 4, names), 1);
	assert_name(s, &names[0], "input");
	assert_int_equal(names[1].off, SENTINEL);
}

static void
test_list_with_spaces_and_tabs(void **state)
{
	struct fdh_xfd_name names[ROOM];
	const char *s = " \ta ,b\t,\t c.d_e-F9 , \tG ";

	(void)state;
	assert_int_equal(parse(s, 4, names), 4);
	assert_name(s, &names[0], "a");
	assert_name(s, &names[1], "b");
	assert_name(s, &names[2], "c.d_e-F9");
	assert_name(s, &names[3], "G");
}

static void
test_list_without_spaces(void **state)
{
	struct fdh_xfd_name names[ROOM];
	const char *s = "in,out,err";

	(void)state;
	assert_int_equal(parse(s, 3, names), 3);
	assert_name(s, &names[0], "in");
	assert_name(s, &names[1], "out");
	assert_name(s, &names[2], "err");
}

static void
test_length_is_honoured(void **state)
{
	struct fdh_xfd_name names[ROOM];
	const char *s = "a,b,!!!";

	(void)state;
	/* Only the first three bytes are the value; what follows is not looked at. */
	assert_int_equal(fdh_xfd_parse(s, 3, names, 4), 2);
	assert_name(s, &names[0], "a");
	assert_name(s, &names[1], "b");
}

static void
test_name_length_limit(void **state)
{
	struct fdh_xfd_name names[ROOM];
	char n64[80], n65[80], list[200];

	(void)state;
	memset(n64, 'x', 64);
	n64[64] = '\0';
	memset(n65, 'y', 65);
	n65[65] = '\0';
	assert_int_equal(parse(n64, 4, names), 1);
	assert_int_equal(names[0].len, 64);
	assert_int_equal(parse(n65, 4, names), -EINVAL);
	snprintf(list, sizeof(list), "a, %s", n65);
	assert_int_equal(parse(list, 4, names), -EINVAL);
	snprintf(list, sizeof(list), "%s,a", n64);
	assert_int_equal(parse(list, 4, names), 2);
}

static void
test_bad_characters(void **state)
{
	static const char *const bad[] = {
		"a/b", "a:b", "a;b", "a*", "a=b", "\"a\"", "a+b", "a@b", "a\\b",
		"caf\xc3\xa9", "a\x01", "in, o/ut", "a\r", "a\nb",
	};
	struct fdh_xfd_name names[ROOM];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i], 4, names) != -EINVAL)
			fail_msg("\"%s\" was not refused", bad[i]);
	}
}

static void
test_empty_list(void **state)
{
	struct fdh_xfd_name names[ROOM];

	(void)state;
	assert_int_equal(parse("", 4, names), -EINVAL);
	assert_int_equal(parse(" ", 4, names), -EINVAL);
	assert_int_equal(parse(" \t ", 4, names), -EINVAL);
	assert_int_equal(parse(",", 4, names), -EINVAL);
}

static void
test_empty_element(void **state)
{
	static const char *const bad[] = {
		"a,,b", "a,", ",a", "a, ,b", "a,\t,b", "a , ", " , a", "a,b,",
	};
	struct fdh_xfd_name names[ROOM];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i], 4, names) != -EINVAL)
			fail_msg("\"%s\" was not refused", bad[i]);
	}
}

static void
test_duplicates(void **state)
{
	struct fdh_xfd_name names[ROOM];
	const char *s = "a,A";

	(void)state;
	assert_int_equal(parse("a,a", 4, names), -EINVAL);
	assert_int_equal(parse("in, out, in", 4, names), -EINVAL);
	assert_int_equal(parse("x , x", 4, names), -EINVAL);
	/* Names are case-sensitive: these are two. */
	assert_int_equal(parse(s, 4, names), 2);
	assert_name(s, &names[0], "a");
	assert_name(s, &names[1], "A");
	/* A prefix of another name is a name of its own. */
	assert_int_equal(parse("ab,a", 4, names), 2);
	assert_int_equal(parse("a,ab", 4, names), 2);
}

static void
test_more_than_max(void **state)
{
	struct fdh_xfd_name names[ROOM];

	(void)state;
	assert_int_equal(parse("a,b,c", 3, names), 3);
	assert_int_equal(parse("a,b,c,d", 3, names), -E2BIG);
	/* Nothing is written past max. */
	assert_int_equal(names[3].off, SENTINEL);
	assert_int_equal(names[3].len, SENTINEL);
	assert_int_equal(parse("a, b", 1, names), -E2BIG);
	assert_int_equal(names[1].off, SENTINEL);
}

static void
test_max_zero(void **state)
{
	struct fdh_xfd_name names[ROOM];

	(void)state;
	assert_int_equal(parse("a", 0, names), -E2BIG);
	assert_int_equal(names[0].off, SENTINEL);
	assert_int_equal(names[0].len, SENTINEL);
	assert_int_equal(parse("", 0, names), -EINVAL);
}

static void
test_space_inside_name(void **state)
{
	struct fdh_xfd_name names[ROOM];

	(void)state;
	assert_int_equal(parse("a b", 4, names), -EINVAL);
	assert_int_equal(parse("a\tb", 4, names), -EINVAL);
	assert_int_equal(parse("x, a b, y", 4, names), -EINVAL);
	assert_int_equal(parse("a b,c", 4, names), -EINVAL);
}

static void
test_fd_name_valid(void **state)
{
	char n[70];

	(void)state;
	memset(n, 'k', sizeof(n));
	assert_int_equal(fdh_fd_name_valid("a", 1), 1);
	assert_int_equal(fdh_fd_name_valid("AZaz09._-", 9), 1);
	assert_int_equal(fdh_fd_name_valid(n, 64), 1);
	assert_int_equal(fdh_fd_name_valid(n, 65), 0);
	assert_int_equal(fdh_fd_name_valid("", 0), 0);
	assert_int_equal(fdh_fd_name_valid("a b", 3), 0);
	assert_int_equal(fdh_fd_name_valid("a,b", 3), 0);
	assert_int_equal(fdh_fd_name_valid("a/", 2), 0);
	/* The length counts, not a NUL. */
	assert_int_equal(fdh_fd_name_valid("ab/", 2), 1);
	assert_int_equal(fdh_fd_name_valid("a\0b", 3), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_name),
		cmocka_unit_test(test_list_with_spaces_and_tabs),
		cmocka_unit_test(test_list_without_spaces),
		cmocka_unit_test(test_length_is_honoured),
		cmocka_unit_test(test_name_length_limit),
		cmocka_unit_test(test_bad_characters),
		cmocka_unit_test(test_empty_list),
		cmocka_unit_test(test_empty_element),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_more_than_max),
		cmocka_unit_test(test_max_zero),
		cmocka_unit_test(test_space_inside_name),
		cmocka_unit_test(test_fd_name_valid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
