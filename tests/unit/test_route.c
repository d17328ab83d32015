/*
 * The route table (CONTRACT section 2, Routing): exact paths and
 * "/prefix/" + "*" prefixes, 404, 405 with Allow, HEAD served by GET.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <llhttp.h>

#include <fdhttp/service.h>
#include "route.h"

static int
h_any(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	(void)req;
	(void)resp;
	(void)ud;
	return 0;
}

static const struct fdh_route routes[] = {
	{ "GET", "/health", h_any, NULL },		/* 0 */
	{ "POST", "/echo", h_any, NULL },		/* 1 */
	{ "GET", "/files/*", h_any, NULL },		/* 2 */
	{ "PUT", "/a", h_any, NULL },			/* 3 */
	{ "POST", "/a", h_any, NULL },			/* 4 */
	{ "GET", "/a", h_any, NULL },			/* 5 */
	{ "POST", "/a", h_any, NULL },			/* 6: a repeat */
	{ "DELETE", "/files/*", h_any, NULL },		/* 7 */
	{ "UNLOCK", "/w", h_any, NULL },		/* 8 */
	{ "LOCK", "/w", h_any, NULL },			/* 9 */
	{ "GET", "/w", h_any, NULL },			/* 10 */
	{ "GET", "/w", h_any, NULL },			/* 11: a repeat */
	{ "HEAD", "/w", h_any, NULL },			/* 12 */
	{ "GET", "/files/special", h_any, NULL },	/* 13: shadowed by 2 */
	{ "GET", "/", h_any, NULL },			/* 14 */
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

static int
setup(void **state)
{
	static struct fdh_route_table t;
	size_t bad = 999;

	if (fdh_route_table_init(&t, routes, NROUTES, &bad) != 0)
		return -1;
	*state = &t;
	return 0;
}

static int
teardown(void **state)
{
	fdh_route_table_free(*state);
	return 0;
}

/* Looks method and path up; returns the route's index, or -status. */
static int
find(void **state, const char *method, const char *path, char *allow, size_t size)
{
	const struct fdh_route *r;
	char dummy[128];
	int status = -1;

	if (!allow) {
		allow = dummy;
		size = sizeof(dummy);
	}
	r = fdh_route_find(*state, fdh_route_method_id(method), path, strlen(path), allow, size,
	    &status);
	if (r) {
		assert_true(r >= routes && r < routes + NROUTES);
		return (int)(r - routes);
	}
	assert_true(status == 404 || status == 405);
	return -status;
}

/* Splits an Allow value on ", " and checks it holds exactly want[], each once. */
static void
assert_allow(const char *allow, const char *const *want, size_t nwant)
{
	char copy[256], *tok, *save = NULL;
	size_t seen[16] = { 0 }, ntok = 0, i;

	assert_true(strlen(allow) < sizeof(copy));
	strcpy(copy, allow);
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		bool found = false;

		while (*tok == ' ')
			tok++;
		for (i = 0; i < nwant; i++) {
			if (strcmp(tok, want[i]) == 0) {
				seen[i]++;
				found = true;
			}
		}
		if (!found)
			fail_msg("Allow \"%s\" lists \"%s\"", allow, tok);
		ntok++;
	}
	for (i = 0; i < nwant; i++)
		if (seen[i] != 1)
			fail_msg("Allow \"%s\" lists %s %zu times", allow, want[i], seen[i]);
	assert_int_equal(ntok, nwant);
}

static void
test_exact(void **state)
{
	assert_int_equal(find(state, "GET", "/health", NULL, 0), 0);
	assert_int_equal(find(state, "POST", "/echo", NULL, 0), 1);
	assert_int_equal(find(state, "GET", "/health/", NULL, 0), -404);
	assert_int_equal(find(state, "GET", "/healthz", NULL, 0), -404);
	assert_int_equal(find(state, "GET", "/healt", NULL, 0), -404);
	assert_int_equal(find(state, "GET", "/Health", NULL, 0), -404);
	assert_int_equal(find(state, "GET", "/", NULL, 0), 14);
}

static void
test_path_length_counts(void **state)
{
	const struct fdh_route *r;
	char allow[64];
	int status = 0;

	/* The path is path[0..len): what follows (the query's '?') is not part of it. */
	r = fdh_route_find(*state, HTTP_GET, "/health?x=1", 7, allow, sizeof(allow), &status);
	assert_ptr_equal(r, &routes[0]);
	r = fdh_route_find(*state, HTTP_GET, "/healthz", 6, allow, sizeof(allow), &status);
	assert_null(r);
	assert_int_equal(status, 404);
}

static void
test_prefix(void **state)
{
	assert_int_equal(find(state, "GET", "/files/x", NULL, 0), 2);
	assert_int_equal(find(state, "GET", "/files/", NULL, 0), 2);
	assert_int_equal(find(state, "GET", "/files/a/b/c", NULL, 0), 2);
	assert_int_equal(find(state, "DELETE", "/files/x", NULL, 0), 7);
	assert_int_equal(find(state, "GET", "/files", NULL, 0), -404);
	assert_int_equal(find(state, "GET", "/filesx", NULL, 0), -404);
	assert_int_equal(find(state, "GET", "/filesx/y", NULL, 0), -404);
	assert_int_equal(find(state, "GET", "/file", NULL, 0), -404);
	assert_int_equal(find(state, "GET", "/x/files/y", NULL, 0), -404);
}

static void
test_table_order(void **state)
{
	/* The prefix route comes first in the table, so it wins. */
	assert_int_equal(find(state, "GET", "/files/special", NULL, 0), 2);
	/* The first of two identical routes. */
	assert_int_equal(find(state, "POST", "/a", NULL, 0), 4);
}

static void
test_not_found(void **state)
{
	const struct fdh_route *r;
	char allow[64] = "untouched";
	int status = 0;

	r = fdh_route_find(*state, HTTP_GET, "/nothing", 8, allow, sizeof(allow), &status);
	assert_null(r);
	assert_int_equal(status, 404);
	r = fdh_route_find(*state, HTTP_POST, "", 0, allow, sizeof(allow), &status);
	assert_null(r);
	assert_int_equal(status, 404);
}

static void
test_method_not_allowed(void **state)
{
	static const char *const health[] = { "GET", "HEAD" };
	static const char *const echo[] = { "POST" };
	static const char *const a[] = { "PUT", "POST", "GET", "HEAD" };
	static const char *const files[] = { "GET", "HEAD", "DELETE" };
	char allow[128];

	memset(allow, 'Z', sizeof(allow));
	allow[sizeof(allow) - 1] = '\0';
	assert_int_equal(find(state, "POST", "/health", allow, sizeof(allow)), -405);
	assert_allow(allow, health, 2);

	assert_int_equal(find(state, "GET", "/echo", allow, sizeof(allow)), -405);
	assert_allow(allow, echo, 1);

	assert_int_equal(find(state, "DELETE", "/a", allow, sizeof(allow)), -405);
	assert_allow(allow, a, 4);

	assert_int_equal(find(state, "PUT", "/files/x", allow, sizeof(allow)), -405);
	assert_allow(allow, files, 3);

	/* Methods are case-sensitive: "get" is not GET. */
	assert_int_equal(find(state, "get", "/health", allow, sizeof(allow)), -405);
	assert_allow(allow, health, 2);
}

static void
test_allow_methods_that_contain_each_other(void **state)
{
	static const char *const w[] = { "UNLOCK", "LOCK", "GET", "HEAD" };
	char allow[128];

	/* LOCK is inside UNLOCK, HEAD comes both from GET and its own route. */
	assert_int_equal(find(state, "POST", "/w", allow, sizeof(allow)), -405);
	assert_allow(allow, w, 4);
}

static void
test_head_uses_get(void **state)
{
	static const char *const echo[] = { "POST" };
	char allow[128];

	assert_int_equal(find(state, "HEAD", "/health", NULL, 0), 0);
	assert_int_equal(find(state, "HEAD", "/files/x", NULL, 0), 2);
	assert_int_equal(find(state, "HEAD", "/a", NULL, 0), 5);
	assert_int_equal(find(state, "HEAD", "/nothing", NULL, 0), -404);
	/* No GET route: HEAD is not allowed either. */
	assert_int_equal(find(state, "HEAD", "/echo", allow, sizeof(allow)), -405);
	assert_allow(allow, echo, 1);
}

static void
test_head_route_of_its_own(void **state)
{
	static const struct fdh_route own[] = {
		{ "HEAD", "/h", h_any, NULL },
		{ "GET", "/h", h_any, NULL },
	};
	static const char *const h[] = { "HEAD", "GET" };
	struct fdh_route_table t;
	const struct fdh_route *r;
	char allow[64];
	size_t bad = 0;
	int status = 0;

	(void)state;
	assert_int_equal(fdh_route_table_init(&t, own, 2, &bad), 0);
	r = fdh_route_find(&t, HTTP_HEAD, "/h", 2, allow, sizeof(allow), &status);
	assert_ptr_equal(r, &own[0]);
	r = fdh_route_find(&t, HTTP_GET, "/h", 2, allow, sizeof(allow), &status);
	assert_ptr_equal(r, &own[1]);
	r = fdh_route_find(&t, HTTP_PUT, "/h", 2, allow, sizeof(allow), &status);
	assert_null(r);
	assert_int_equal(status, 405);
	assert_allow(allow, h, 2);
	fdh_route_table_free(&t);
}

static void
test_invalid_tables(void **state)
{
	struct fdh_route bad_routes[4] = {
		{ "GET", "/ok", h_any, NULL },
		{ "GET", "/also-ok/*", h_any, NULL },
		{ "GET", "/x", h_any, NULL },
		{ "GET", "/y", h_any, NULL },
	};
	struct fdh_route_table t;
	size_t bad;

	(void)state;
	/* The table is fine as it is. */
	bad = 77;
	assert_int_equal(fdh_route_table_init(&t, bad_routes, 4, &bad), 0);
	fdh_route_table_free(&t);

	bad_routes[2].handler = NULL;
	bad = 77;
	assert_int_equal(fdh_route_table_init(&t, bad_routes, 4, &bad), -EINVAL);
	assert_int_equal(bad, 2);
	bad_routes[2].handler = h_any;

	bad_routes[3].path = "y";
	bad = 77;
	assert_int_equal(fdh_route_table_init(&t, bad_routes, 4, &bad), -EINVAL);
	assert_int_equal(bad, 3);

	bad_routes[1].path = "";
	bad = 77;
	assert_int_equal(fdh_route_table_init(&t, bad_routes, 4, &bad), -EINVAL);
	assert_int_equal(bad, 1);
	bad_routes[1].path = "/ok2";
	bad_routes[3].path = "/y";

	bad_routes[0].path = NULL;
	bad = 77;
	assert_int_equal(fdh_route_table_init(&t, bad_routes, 4, &bad), -EINVAL);
	assert_int_equal(bad, 0);
	bad_routes[0].path = "/ok";

	bad_routes[1].method = NULL;
	bad = 77;
	assert_int_equal(fdh_route_table_init(&t, bad_routes, 4, &bad), -EINVAL);
	assert_int_equal(bad, 1);

	bad_routes[1].method = "";
	bad = 77;
	assert_int_equal(fdh_route_table_init(&t, bad_routes, 4, &bad), -EINVAL);
	assert_int_equal(bad, 1);
	bad_routes[1].method = "GET";
}

/* Why a table cannot be served, naming the route: the message a service prints. */
static void
test_invalid_tables_explained(void **state)
{
	struct fdh_route own[3] = {
		{ "GET", "/a", h_any, NULL },
		{ "POST", "/a", h_any, NULL },
		{ "GET", "/b/*", h_any, NULL },
	};
	char why[160];

	(void)state;
	assert_int_equal(fdh_route_table_explain(own, 3, why, sizeof(why)), 0);
	own[2].path = "/b?x=1";
	assert_int_equal(fdh_route_table_explain(own, 3, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "route 2 (GET /b?x=1): its path holds '?' or '#', which a "
	    "request's path never does");
	own[2].path = "/b#x";
	assert_int_equal(fdh_route_table_explain(own, 3, why, sizeof(why)), -EINVAL);
	own[2].path = "/b/*";
	own[1].path = "a";
	assert_int_equal(fdh_route_table_explain(own, 3, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "route 1 (POST a): its path does not start with '/'");
	own[1].path = NULL;
	assert_int_equal(fdh_route_table_explain(own, 3, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "route 1 (POST (null)): its path does not start with '/'");
}

static void
test_empty_table(void **state)
{
	struct fdh_route_table t;
	char allow[16];
	size_t bad = 0;
	int status = 0;

	(void)state;
	assert_int_equal(fdh_route_table_init(&t, NULL, 0, &bad), 0);
	assert_null(fdh_route_find(&t, HTTP_GET, "/", 1, allow, sizeof(allow), &status));
	assert_int_equal(status, 404);
	fdh_route_table_free(&t);
}

/*
 * Paths are compared a word at a time: every length up to three words,
 * with one byte changed at every offset, must still be told apart, and a
 * prefix route must match exactly its prefix.
 */
static void
test_path_bytes_at_every_offset(void **state)
{
	static char paths[24][32];
	static struct fdh_route own[24];
	struct fdh_route_table t;
	char q[32], allow[64];
	size_t bad = 0, len, i, k;
	int status = 0;

	(void)state;
	for (k = 0; k < 24; k++) {
		len = k + 1;
		paths[k][0] = '/';
		for (i = 1; i < len; i++)
			paths[k][i] = (char)('a' + (i + k) % 26);
		paths[k][len] = '\0';
		own[k] = (struct fdh_route){ "GET", paths[k], h_any, NULL };
	}
	assert_int_equal(fdh_route_table_init(&t, own, 24, &bad), 0);
	for (k = 0; k < 24; k++) {
		len = k + 1;
		memcpy(q, paths[k], len + 1);
		assert_ptr_equal(fdh_route_find(&t, HTTP_GET, q, len, allow, sizeof(allow),
		    &status), &own[k]);
		for (i = 0; i < len; i++) {
			q[i] ^= 0x20;
			status = 0;
			assert_null(fdh_route_find(&t, HTTP_GET, q, len, allow, sizeof(allow),
			    &status));
			assert_int_equal(status, 404);
			q[i] ^= 0x20;
		}
	}
	fdh_route_table_free(&t);

	/* "/abcdefghijk/" and a star: the eleven letters and both slashes, and no fewer. */
	own[0] = (struct fdh_route){ "GET", "/abcdefghijk/*", h_any, NULL };
	assert_int_equal(fdh_route_table_init(&t, own, 1, &bad), 0);
	assert_ptr_equal(fdh_route_find(&t, HTTP_GET, "/abcdefghijk/x", 14, allow,
	    sizeof(allow), &status), &own[0]);
	assert_ptr_equal(fdh_route_find(&t, HTTP_GET, "/abcdefghijk/", 13, allow,
	    sizeof(allow), &status), &own[0]);
	assert_null(fdh_route_find(&t, HTTP_GET, "/abcdefghijk", 12, allow, sizeof(allow),
	    &status));
	assert_null(fdh_route_find(&t, HTTP_GET, "/abcdefghijK/x", 14, allow, sizeof(allow),
	    &status));
	fdh_route_table_free(&t);
}

/* Methods are llhttp's numbers; a name llhttp does not parse never matches. */
static void
test_method_ids(void **state)
{
	static const struct fdh_route own[] = {
		{ "FROB", "/m", h_any, NULL },
		{ "M-SEARCH", "/m", h_any, NULL },
		{ "get", "/m", h_any, NULL },
	};
	struct fdh_route_table t;
	char allow[64];
	size_t bad = 0;
	int status = 0;

	(void)state;
	assert_int_equal(fdh_route_method_id("GET"), HTTP_GET);
	assert_int_equal(fdh_route_method_id("M-SEARCH"), HTTP_MSEARCH);
	assert_int_equal(fdh_route_method_id("FROB"), FDH_ROUTE_METHOD_UNKNOWN);
	assert_int_equal(fdh_route_method_id("get"), FDH_ROUTE_METHOD_UNKNOWN);
	assert_int_equal(fdh_route_table_init(&t, own, 3, &bad), 0);
	assert_ptr_equal(fdh_route_find(&t, HTTP_MSEARCH, "/m", 2, allow, sizeof(allow),
	    &status), &own[1]);
	/* Methods are case-sensitive (RFC 9110): "get" is not GET. */
	assert_null(fdh_route_find(&t, HTTP_GET, "/m", 2, allow, sizeof(allow), &status));
	assert_int_equal(status, 405);
	assert_null(fdh_route_find(&t, FDH_ROUTE_METHOD_UNKNOWN, "/m", 2, allow, sizeof(allow),
	    &status));
	assert_int_equal(status, 405);
	fdh_route_table_free(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_bytes_at_every_offset),
		cmocka_unit_test(test_method_ids),
		cmocka_unit_test_setup_teardown(test_exact, setup, teardown),
		cmocka_unit_test_setup_teardown(test_path_length_counts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_table_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
		cmocka_unit_test_setup_teardown(test_method_not_allowed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_allow_methods_that_contain_each_other,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_head_uses_get, setup, teardown),
		cmocka_unit_test(test_head_route_of_its_own),
		cmocka_unit_test(test_invalid_tables),
		cmocka_unit_test(test_invalid_tables_explained),
		cmocka_unit_test(test_empty_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
