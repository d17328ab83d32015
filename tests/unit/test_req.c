/*
 * What a handler reads of its request: query parameters, decoded the way
 * HTML forms and curl's --data-urlencode encode them; headers and fds by
 * name.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <fdhttp/service.h>
#include "engine.h"

/* A request whose target had "?query" (NULL: no '?' at all). */
static struct fdh_req
req_with_query(char *query)
{
	struct fdh_req req;

	memset(&req, 0, sizeof(req));
	req.head.query = query;
	req.head.query_len = query ? (uint32_t)strlen(query) : 0;
	return req;
}

/* The value of name in query, or the error, as fdh_req_query_param() gives it. */
static int
param(const char *query, const char *name, char *buf, size_t size)
{
	char copy[256];
	struct fdh_req req;

	assert_true(strlen(query) < sizeof(copy));
	strcpy(copy, query);
	req = req_with_query(copy);
	return fdh_req_query_param(&req, name, buf, size);
}

static void
test_query_param_found_among_others(void **state)
{
	char v[32];

	(void)state;
	assert_int_equal(param("a=1&bb=22&c=333", "bb", v, sizeof(v)), 2);
	assert_string_equal(v, "22");
	assert_int_equal(param("a=1&bb=22&c=333", "a", v, sizeof(v)), 1);
	assert_string_equal(v, "1");
	assert_int_equal(param("a=1&bb=22&c=333", "c", v, sizeof(v)), 3);
	assert_string_equal(v, "333");
	/* A name is a whole name: neither a prefix nor a suffix of one. */
	assert_int_equal(param("bb=22", "b", v, sizeof(v)), -ENOENT);
	assert_int_equal(param("abb=22", "bb", v, sizeof(v)), -ENOENT);
	/* Case matters, as it does in every form encoding. */
	assert_int_equal(param("Path=x", "path", v, sizeof(v)), -ENOENT);
}

static void
test_query_param_decodes_value_and_name(void **state)
{
	char v[64];

	(void)state;
	assert_int_equal(param("path=dir%2Fa+b%20c%25", "path", v, sizeof(v)), 10);
	assert_string_equal(v, "dir/a b c%");
	/* Escapes in either case; in the name too. */
	assert_int_equal(param("na%6de=%c3%A9", "name", v, sizeof(v)), 2);
	assert_string_equal(v, "\xc3\xa9");
	assert_int_equal(param("x+y=1", "x y", v, sizeof(v)), 1);
	/* '=' after the first belongs to the value. */
	assert_int_equal(param("k=a=b", "k", v, sizeof(v)), 3);
	assert_string_equal(v, "a=b");
}

static void
test_query_param_first_of_repeated_name(void **state)
{
	char v[32];

	(void)state;
	assert_int_equal(param("x=first&x=second", "x", v, sizeof(v)), 5);
	assert_string_equal(v, "first");
}

static void
test_query_param_without_value_is_empty(void **state)
{
	char v[8] = "unset";

	(void)state;
	assert_int_equal(param("verbose&x=1", "verbose", v, sizeof(v)), 0);
	assert_string_equal(v, "");
	memcpy(v, "unset", 6);
	assert_int_equal(param("x=1&empty=", "empty", v, sizeof(v)), 0);
	assert_string_equal(v, "");
	/* Empty pairs are skipped, not taken for a parameter called "". */
	assert_int_equal(param("&&x=1&", "x", v, sizeof(v)), 1);
	assert_int_equal(param("&&", "", v, sizeof(v)), -ENOENT);
}

static void
test_query_param_absent(void **state)
{
	char v[8];
	struct fdh_req req = req_with_query(NULL);

	(void)state;
	assert_int_equal(fdh_req_query_param(&req, "x", v, sizeof(v)), -ENOENT);
	assert_int_equal(param("", "x", v, sizeof(v)), -ENOENT);
	assert_int_equal(param("y=1", "x", v, sizeof(v)), -ENOENT);
}

static void
test_query_param_refuses_bad_escape_and_nul(void **state)
{
	char v[16] = "unset";

	(void)state;
	assert_int_equal(param("p=a%2", "p", v, sizeof(v)), -EINVAL);
	assert_int_equal(param("p=a%zz", "p", v, sizeof(v)), -EINVAL);
	assert_int_equal(param("p=a%", "p", v, sizeof(v)), -EINVAL);
	/* A NUL would end the value a C caller sees before what was sent. */
	assert_int_equal(param("p=/etc/x%00.txt", "p", v, sizeof(v)), -EINVAL);
	assert_string_equal(v, "unset");
	/* A name that does not decode is no parameter's name; the next one is found. */
	assert_int_equal(param("p%zz=1&p=2", "p", v, sizeof(v)), 1);
	assert_string_equal(v, "2");
	assert_int_equal(param("p%00=1", "p", v, sizeof(v)), -ENOENT);
	/* A bad escape in another parameter is that parameter's business. */
	assert_int_equal(param("q=%zz&p=ok", "p", v, sizeof(v)), 2);
}

static void
test_query_param_too_long_for_buffer(void **state)
{
	char v[8] = "unset";

	(void)state;
	/* Seven bytes and the NUL fit in eight; eight do not, and buf is untouched. */
	assert_int_equal(param("p=1234567", "p", v, sizeof(v)), 7);
	assert_string_equal(v, "1234567");
	memcpy(v, "unset", 6);
	assert_int_equal(param("p=12345678", "p", v, sizeof(v)), -ERANGE);
	assert_string_equal(v, "unset");
	/* Measured decoded: nine bytes of escapes are three. */
	assert_int_equal(param("p=%41%42%43", "p", v, 4), 3);
	assert_string_equal(v, "ABC");
	assert_int_equal(param("p=", "p", v, 0), -ERANGE);
}

static void
test_query_param_null_arguments(void **state)
{
	char v[8];
	struct fdh_req req = req_with_query(NULL);

	(void)state;
	assert_int_equal(fdh_req_query_param(&req, NULL, v, sizeof(v)), -EINVAL);
	assert_int_equal(fdh_req_query_param(&req, "x", NULL, 0), -EINVAL);
}

/* The query ends at query_len, whatever follows it in memory. */
static void
test_query_param_stays_within_query(void **state)
{
	char buf[] = "a=1&b=2", v[8];
	struct fdh_req req = req_with_query(buf);

	(void)state;
	req.head.query_len = 3;
	assert_int_equal(fdh_req_query_param(&req, "b", v, sizeof(v)), -ENOENT);
	req.head.query_len = 6;
	assert_int_equal(fdh_req_query_param(&req, "b", v, sizeof(v)), 0);
}

/*
 * A NULL name, as fdh_req_fd_name() gives past the end, finds nothing
 * and crashes nothing, in a request that has headers and fds to look at.
 */
static void
test_null_name_finds_nothing(void **state)
{
	char hname[] = "X-A", hvalue[] = "1";
	struct fdh_req_hdr hdr = { .name = hname, .name_len = 3, .value = hvalue, .value_len = 1 };
	char names[1][FDH_FD_NAME_MAX + 1] = { "a" };
	int fds[1] = { 0 };
	struct fdh_req req = req_with_query(NULL);

	(void)state;
	req.head.hdrs = &hdr;
	req.head.nhdrs = 1;
	req.fds = fds;
	req.fd_names = names;
	req.nfds = 1;
	assert_string_equal(fdh_req_header(&req, "x-a"), "1");
	assert_null(fdh_req_header(&req, NULL));
	assert_int_equal(fdh_req_fd(&req, "a"), 0);
	assert_null(fdh_req_fd_name(&req, 1));
	assert_int_equal(fdh_req_fd(&req, fdh_req_fd_name(&req, 1)), -EINVAL);
	assert_int_equal(fdh_req_take_fd(&req, NULL), -EINVAL);
	assert_int_equal(fds[0], 0);
}

/* Out-parameters a handler may leave out, or get wrong, without a crash. */
static void
test_null_out_parameters(void **state)
{
	char hname[] = "X-A", hvalue[] = "1", body[] = "abc";
	struct fdh_req_hdr hdr = { .name = hname, .name_len = 3, .value = hvalue, .value_len = 1 };
	struct fdh_req req = req_with_query(NULL);
	struct fdh_header h;
	size_t len = 0;

	(void)state;
	req.head.hdrs = &hdr;
	req.head.nhdrs = 1;
	req.body = body;
	req.body_len = 3;
	assert_ptr_equal(fdh_req_body(&req, NULL), body);
	assert_ptr_equal(fdh_req_body(&req, &len), body);
	assert_int_equal(len, 3);
	assert_int_equal(fdh_req_header_at(&req, 0, NULL), -EINVAL);
	assert_int_equal(fdh_req_header_at(&req, 0, &h), 0);
	assert_string_equal(h.value, "1");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_query_param_found_among_others),
		cmocka_unit_test(test_query_param_decodes_value_and_name),
		cmocka_unit_test(test_query_param_first_of_repeated_name),
		cmocka_unit_test(test_query_param_without_value_is_empty),
		cmocka_unit_test(test_query_param_absent),
		cmocka_unit_test(test_query_param_refuses_bad_escape_and_nul),
		cmocka_unit_test(test_query_param_too_long_for_buffer),
		cmocka_unit_test(test_query_param_null_arguments),
		cmocka_unit_test(test_query_param_stays_within_query),
		cmocka_unit_test(test_null_name_finds_nothing),
		cmocka_unit_test(test_null_out_parameters),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
