/* Route lookup. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>


#include "route.h"

int
fdh_route_table_init(struct fdh_route_table *t, const struct fdh_route *routes, size_t n,
    size_t *ret_bad)
{
	size_t i;

	memset(t, 0, sizeof(*t));
	for (i = 0; i < n; i++) {
		const struct fdh_route *r = &routes[i];

		if (!r->method || !r->method[0] || !r->path || r->path[0] != '/' || !r->handler) {
			*ret_bad = i;
			return -EINVAL;
		}
	}
	t->match_len = calloc(n ? n : 1, sizeof(*t->match_len));
	t->prefix = calloc(n ? n : 1, sizeof(*t->prefix));
	if (!t->match_len || !t->prefix) {
		fdh_route_table_free(t);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		size_t len = strlen(routes[i].path);

		t->prefix[i] = len >= 2 && strcmp(routes[i].path + len - 2, "/*") == 0;
		t->match_len[i] = (uint32_t)(t->prefix[i] ? len - 1 : len);
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
	memset(t, 0, sizeof(*t));
}

static bool
path_matches(const struct fdh_route_table *t, size_t i, const char *path, size_t len)
{
	if (t->prefix[i])
		return len >= t->match_len[i] && memcmp(path, t->routes[i].path, t->match_len[i]) == 0;
	return len == t->match_len[i] && memcmp(path, t->routes[i].path, len) == 0;
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
fdh_route_find(const struct fdh_route_table *t, const char *method, const char *path,
    size_t path_len, char *allow, size_t allow_size, int *ret_status)
{
	const struct fdh_route *get = NULL;
	bool is_head = strcmp(method, "HEAD") == 0, known = false;
	size_t i;

	for (i = 0; i < t->n; i++) {
		if (!path_matches(t, i, path, path_len))
			continue;
		known = true;
		if (strcmp(t->routes[i].method, method) == 0)
			return &t->routes[i];
		if (is_head && !get && strcmp(t->routes[i].method, "GET") == 0)
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
		if (strcmp(t->routes[i].method, "GET") == 0)
			allow_add(allow, allow_size, "HEAD");
	}
	*ret_status = 405;
	return NULL;
}
