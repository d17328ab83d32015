/* Route lookup: exact paths and prefixes ("/files/" followed by a star). */
#ifndef FDH_ROUTE_H
#define FDH_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include <fdhttp/service.h>

/* A method llhttp does not know; such a route never matches (llhttp refuses the request). */
#define FDH_ROUTE_METHOD_UNKNOWN 0xffu

struct fdh_route_table {
	const struct fdh_route *routes;
	size_t n;
	uint32_t *match_len;		/* bytes compared: the path, or the prefix before '*' */
	uint8_t *prefix;
	uint8_t *method;		/* enum llhttp_method, or FDH_ROUTE_METHOD_UNKNOWN */
};

/*
 * Whether every route can be served: a method, a handler, a path that
 * starts with '/' and holds no '?' or '#'.  -EINVAL names the first that
 * cannot in *ret_bad, and why in *ret_why (a static string; ret_why may
 * be NULL).
 */
int fdh_route_table_check(const struct fdh_route *routes, size_t n, size_t *ret_bad,
    const char **ret_why);

/* fdh_route_table_check(), its refusal written to buf ("route 3 (GET health): ..."). */
int fdh_route_table_explain(const struct fdh_route *routes, size_t n, char *buf, size_t size);

/* Checks every route (-EINVAL names the index in *ret_bad) and precomputes lengths. */
int fdh_route_table_init(struct fdh_route_table *t, const struct fdh_route *routes, size_t n,
    size_t *ret_bad);
void fdh_route_table_free(struct fdh_route_table *t);

/* The llhttp method number of a method name, or FDH_ROUTE_METHOD_UNKNOWN. */
unsigned fdh_route_method_id(const char *name);

/*
 * The route for method (llhttp's number, as the parser reports it) and
 * path, or NULL with *ret_status 404, or 405 and the methods that path
 * does answer written to allow (", "-separated).  HEAD falls back to the
 * GET route.
 */
const struct fdh_route *fdh_route_find(const struct fdh_route_table *t, unsigned method,
    const char *path, size_t path_len, char *allow, size_t allow_size, int *ret_status);

#endif
