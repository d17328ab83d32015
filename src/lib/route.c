/* Route lookup. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

#include "route.h"

unsigned
fdh_route_method_id(const char *name)
{
	/* llhttp's own table, so that every method it parses is known here. */
#define METHOD_ID(num, label, text) if (strcmp(name, #text) == 0) return num;
	HTTP_ALL_METHOD_MAP(METHOD_ID)
#undef METHOD_ID
	return FDH_ROUTE_METHOD_UNKNOWN;
}

int
fdh_route_table_check(const struct fdh_route *routes, size_t n, size_t *ret_bad,
    const char **ret_why)
{
	const char *why = NULL;
	size_t i;

	for (i = 0; i < n && !why; i++) {
		const struct fdh_route *r = &routes[i];

		if (!r->method || !r->method[0])
			why = "no method";
		else if (!r->handler)
			why = "no handler";
		else if (!r->path || r->path[0] != '/')
			why = "its path does not start with '/'";
		else if (strpbrk(r->path, "?#"))
			why = "its path holds '?' or '#', which a request's path never does";
		if (why)
			*ret_bad = i;
	}
	if (!why)
		return 0;
	if (ret_why)
		*ret_why = why;
	return -EINVAL;
}

int
fdh_route_table_explain(const struct fdh_route *routes, size_t n, char *buf, size_t size)
{
	const char *why = "";
	size_t bad = 0;
	int r = fdh_route_table_check(routes, n, &bad, &why);

	if (r < 0)
		(void)snprintf(buf, size, "route %zu (%s %s): %s", bad,
		    routes[bad].method ? routes[bad].method : "(null)",
		    routes[bad].path ? routes[bad].path : "(null)", why);
	return r;
}

int
fdh_route_table_init(struct fdh_route_table *t, const struct fdh_route *routes, size_t n,
    size_t *ret_bad)
{
	size_t i;
	int r;

	memset(t, 0, sizeof(*t));
	r = fdh_route_table_check(routes, n, ret_bad, NULL);
	if (r < 0)
		return r;
	t->match_len = calloc(n ? n : 1, sizeof(*t->match_len));
	t->prefix = calloc(n ? n : 1, sizeof(*t->prefix));
	t->method = calloc(n ? n : 1, sizeof(*t->method));
	if (!t->match_len || !t->prefix || !t->method) {
		fdh_route_table_free(t);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		size_t len = strlen(routes[i].path);

		t->prefix[i] = len >= 2 && strcmp(routes[i].path + len - 2, "/*") == 0;
		t->match_len[i] = (uint32_t)(t->prefix[i] ? len - 1 : len);
		t->method[i] = (uint8_t)fdh_route_method_id(routes[i].method);
	}
	t->routes = routes;
	t->n = n;
	return 0;
}

void
fdh_route_table_free(struct fdh_route_table *t)
{
	free(t->match_len);
	free(t->prefix);
	free(t->method);
	memset(t, 0, sizeof(*t));
}

/*
 * memcmp() for the short strings routes are, without the call: a word at a
 * time, the last word overlapping, so a path costs a few compares.
 */
static bool
same_bytes(const char *a, const char *b, size_t n)
{
	uint64_t x, y;
	uint32_t u, v;

	if (n >= 8) {
		for (; n > 8; a += 8, b += 8, n -= 8) {
			memcpy(&x, a, 8);
			memcpy(&y, b, 8);
			if (x != y)
				return false;
		}
		memcpy(&x, a + n - 8, 8);
		memcpy(&y, b + n - 8, 8);
		return x == y;
	}
	if (n >= 4) {
		memcpy(&u, a, 4);
		memcpy(&v, b, 4);
		if (u != v)
			return false;
		memcpy(&u, a + n - 4, 4);
		memcpy(&v, b + n - 4, 4);
		return u == v;
	}
	for (; n > 0; a++, b++, n--)
		if (*a != *b)
			return false;
	return true;
}

static bool
path_matches(const struct fdh_route_table *t, size_t i, const char *path, size_t len)
{
	if (t->prefix[i])
		return len >= t->match_len[i] && same_bytes(path, t->routes[i].path, t->match_len[i]);
	return len == t->match_len[i] && same_bytes(path, t->routes[i].path, len);
}

static void
allow_add(char *allow, size_t size, const char *method)
{
	size_t mlen = strlen(method);
	const char *p = allow;

	/* Each method once, however many routes share the path. */
	while ((p = strstr(p, method)) != NULL) {
		if ((p == allow || p[-1] == ' ') && (p[mlen] == ',' || p[mlen] == '\0'))
			return;
		p += mlen;
	}
	if (allow[0])
		strlcat(allow, ", ", size);
	strlcat(allow, method, size);
}

const struct fdh_route *
fdh_route_find(const struct fdh_route_table *t, unsigned method, const char *path,
    size_t path_len, char *allow, size_t allow_size, int *ret_status)
{
	const struct fdh_route *get = NULL;
	bool known = false;
	size_t i;

	for (i = 0; i < t->n; i++) {
		if (!path_matches(t, i, path, path_len))
			continue;
		known = true;
		if (t->method[i] == method && method != FDH_ROUTE_METHOD_UNKNOWN)
			return &t->routes[i];
		if (method == HTTP_HEAD && !get && t->method[i] == HTTP_GET)
			get = &t->routes[i];
	}
	if (get)
		return get;
	if (!known) {
		*ret_status = 404;
		return NULL;
	}
	allow[0] = '\0';
	for (i = 0; i < t->n; i++) {
		if (!path_matches(t, i, path, path_len))
			continue;
		allow_add(allow, allow_size, t->routes[i].method);
		if (t->method[i] == HTTP_GET)
			allow_add(allow, allow_size, "HEAD");
	}
	*ret_status = 405;
	return NULL;
}
