/*
 * Limits (CONTRACT sections 2 and 5): the defaults, and their command-line
 * spellings, which must refuse what does not parse and leave the limits as
 * they were.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <fdhttp/common.h>
#include "limit_range.h"

static const char *const names[] = {
	"max-head", "max-headers", "max-body", "max-fds", "max-conns",
	"request-timeout", "idle-timeout", "write-timeout",
};
#define NNAMES (sizeof(names) / sizeof(names[0]))

static void
assert_limits_equal(const struct fdh_limits *a, const struct fdh_limits *b)
{
	assert_int_equal(a->max_head, b->max_head);
	assert_int_equal(a->max_headers, b->max_headers);
	assert_int_equal(a->max_body, b->max_body);
	assert_int_equal(a->max_fds, b->max_fds);
	assert_int_equal(a->max_conns, b->max_conns);
	assert_int_equal(a->request_timeout_ms, b->request_timeout_ms);
	assert_int_equal(a->idle_timeout_ms, b->idle_timeout_ms);
	assert_int_equal(a->write_timeout_ms, b->write_timeout_ms);
}

/* Limits that differ from the defaults in every field, so a write shows. */
static void
odd_limits(struct fdh_limits *l)
{
	memset(l, 0, sizeof(*l));
	l->max_head = 1111;
	l->max_headers = 11;
	l->max_body = 111;
	l->max_fds = 3;
	l->max_conns = 7;
	l->request_timeout_ms = 1234;
	l->idle_timeout_ms = 2345;
	l->write_timeout_ms = 3456;
}

/* Expects name=value to be refused with -EINVAL and *l left alone. */
static void
assert_refused(const char *name, const char *value)
{
	struct fdh_limits l, before;
	int r;

	odd_limits(&l);
	before = l;
	r = fdh_limits_set(&l, name, value);
	if (r != -EINVAL)
		fail_msg("%s=\"%s\": %d, expected -EINVAL", name, value, r);
	assert_limits_equal(&l, &before);
}

/* Sets name=value on odd limits; returns them for the caller to check. */
static struct fdh_limits
set_ok(const char *name, const char *value)
{
	struct fdh_limits l;
	int r;

	odd_limits(&l);
	r = fdh_limits_set(&l, name, value);
	if (r != 0)
		fail_msg("%s=\"%s\": %d, expected 0", name, value, r);
	return l;
}

static void
test_defaults(void **state)
{
	struct fdh_limits l;

	(void)state;
	odd_limits(&l);
	fdh_limits_default(&l);
	/* The numbers of CONTRACT section 2, written out. */
	assert_int_equal(l.max_head, 8192);
	assert_int_equal(l.max_headers, 64);
	assert_int_equal(l.max_body, 1048576);
	assert_int_equal(l.max_fds, 16);
	assert_int_equal(l.max_conns, 256);
	assert_int_equal(l.request_timeout_ms, 10000);
	assert_int_equal(l.idle_timeout_ms, 60000);
	assert_int_equal(l.write_timeout_ms, 10000);
}

static void
test_set_counts(void **state)
{
	struct fdh_limits l, want;

	(void)state;
	l = set_ok("max-head", "4096");
	odd_limits(&want);
	want.max_head = 4096;
	assert_limits_equal(&l, &want);

	l = set_ok("max-headers", "10");
	odd_limits(&want);
	want.max_headers = 10;
	assert_limits_equal(&l, &want);

	l = set_ok("max-body", "4194304");
	odd_limits(&want);
	want.max_body = 4194304;
	assert_limits_equal(&l, &want);

	l = set_ok("max-body", "0");
	assert_int_equal(l.max_body, 0);

	l = set_ok("max-fds", "1");
	odd_limits(&want);
	want.max_fds = 1;
	assert_limits_equal(&l, &want);

	l = set_ok("max-fds", "253");
	assert_int_equal(l.max_fds, 253);
	l = set_ok("max-fds", "0");
	assert_int_equal(l.max_fds, 0);

	l = set_ok("max-conns", "1000");
	odd_limits(&want);
	want.max_conns = 1000;
	assert_limits_equal(&l, &want);
}

static void
test_set_timeouts(void **state)
{
	struct fdh_limits l, want;

	(void)state;
	l = set_ok("request-timeout", "0.5");
	odd_limits(&want);
	want.request_timeout_ms = 500;
	assert_limits_equal(&l, &want);

	l = set_ok("idle-timeout", "2");
	odd_limits(&want);
	want.idle_timeout_ms = 2000;
	assert_limits_equal(&l, &want);

	l = set_ok("write-timeout", "1.25");
	odd_limits(&want);
	want.write_timeout_ms = 1250;
	assert_limits_equal(&l, &want);

	l = set_ok("request-timeout", "0.001");
	assert_int_equal(l.request_timeout_ms, 1);
	l = set_ok("idle-timeout", "3600");
	assert_int_equal(l.idle_timeout_ms, 3600000);
	l = set_ok("write-timeout", "0.1");
	assert_int_equal(l.write_timeout_ms, 100);
}

static void
test_bad_values(void **state)
{
	static const char *const any[] = {
		"", "-1", "abc", "1e999", " 5", "5 ", "5x", "+5", "-", ".", "nan", "inf",
	};
	static const char *const count_only[] = {
		"1.5", "1e3", "0x10", "99999999999999999999999999",
	};
	size_t i, j;

	(void)state;
	for (i = 0; i < NNAMES; i++)
		for (j = 0; j < sizeof(any) / sizeof(any[0]); j++)
			assert_refused(names[i], any[j]);
	for (i = 0; i < 5; i++)
		for (j = 0; j < sizeof(count_only) / sizeof(count_only[0]); j++)
			assert_refused(names[i], count_only[j]);
}

static void
test_out_of_range(void **state)
{
	(void)state;
	/* A zero timeout would time out everything at once. */
	assert_refused("request-timeout", "0");
	assert_refused("idle-timeout", "0");
	assert_refused("write-timeout", "0");
	assert_refused("write-timeout", "0.0");
	assert_refused("idle-timeout", "-0.5");
	/* The kernel passes at most 253 fds in one message (SCM_MAX_FD). */
	assert_refused("max-fds", "254");
	assert_refused("max-fds", "4294967296");
	/* A head of zero bytes, no header field or no connection serves nothing. */
	assert_refused("max-head", "0");
	assert_refused("max-headers", "0");
	assert_refused("max-conns", "0");
	/* Would wrap an unsigned to a small number. */
	assert_refused("max-headers", "4294967297");
	assert_refused("max-conns", "4294967297");
}

static void
test_long_timeout_is_kept_or_refused(void **state)
{
	struct fdh_limits l, before;
	int r;

	(void)state;
	/*
	 * 5e6 s (58 days) is 5e9 ms, more than an unsigned holds: the limit
	 * must not silently become some other duration.
	 */
	odd_limits(&l);
	before = l;
	r = fdh_limits_set(&l, "idle-timeout", "5000000");
	if (r == 0)
		assert_int_equal(l.idle_timeout_ms, 5000000000ULL);
	assert_int_equal(r, -EINVAL);
	assert_limits_equal(&l, &before);
}

static void
test_unknown_name(void **state)
{
	static const char *const bad[] = {
		"", "max_head", "maxhead", "max-head ", "timeout", "max-foo", "-max-fds",
		"--max-fds",
	};
	struct fdh_limits l, before;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		odd_limits(&l);
		before = l;
		if (fdh_limits_set(&l, bad[i], "5") != -ENOENT)
			fail_msg("name \"%s\" was not -ENOENT", bad[i]);
		assert_limits_equal(&l, &before);
	}
}

/*
 * The range an error message quotes is the one the parser takes: both ends
 * accepted, one past each refused.  Counts step by 1; seconds, whose least
 * is 0.001, step by 0.0001 below and by 1 above.
 */
static void
test_range_texts_are_true(void **state)
{
	struct fdh_limits l;
	size_t i;

	(void)state;
	for (i = 0; i < NNAMES; i++) {
		const char *text = fdh_limits_range(names[i]);
		char lo[32], hi[32], below[40], above[40];
		bool seconds;

		assert_non_null(text);
		seconds = strncmp(text, "seconds", 7) == 0;
		if (sscanf(text, "%*[^,], %31s to %31s", lo, hi) != 2)
			fail_msg("%s: no range in \"%s\"", names[i], text);
		fdh_limits_default(&l);
		if (fdh_limits_set(&l, names[i], lo) != 0 || fdh_limits_set(&l, names[i], hi) != 0)
			fail_msg("%s: \"%s\" says %s to %s, which are not both taken", names[i],
			    text, lo, hi);
		if (seconds) {
			snprintf(below, sizeof(below), "%.4f", strtod(lo, NULL) - 0.0001);
			snprintf(above, sizeof(above), "%.0f", strtod(hi, NULL) + 1);
		} else {
			snprintf(below, sizeof(below), "%lld", strtoll(lo, NULL, 10) - 1);
			snprintf(above, sizeof(above), "%llu", strtoull(hi, NULL, 10) + 1);
		}
		if (below[0] != '-')
			assert_refused(names[i], below);
		assert_refused(names[i], above);
	}
	assert_string_equal(fdh_limits_range("max-foo"), "a known limit");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_set_counts),
		cmocka_unit_test(test_set_timeouts),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_out_of_range),
		cmocka_unit_test(test_long_timeout_is_kept_or_refused),
		cmocka_unit_test(test_unknown_name),
		cmocka_unit_test(test_range_texts_are_true),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
