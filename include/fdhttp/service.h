/*
 * The service runtime: routes, handlers, requests and responses.
 *
 * A service is a table of routes linked with libfdhttp into one executable
 * whose main() calls fdh_service_main().  Handlers run one at a time; a
 * request and everything borrowed from it is valid until the handler
 * returns.
 */
#ifndef FDHTTP_SERVICE_H
#define FDHTTP_SERVICE_H

#include <stdarg.h>
#include <fdhttp/common.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fdh_req;
struct fdh_resp;

/*
 * A handler fills in resp and returns 0.  A negative errno return makes the
 * framework discard whatever the handler put in resp (closing its fds) and
 * answer 500; so does a positive one ("handler returned 404, not 0 or a
 * negative errno": fdh_resp_status() sets a status).  The status defaults
 * to 200.
 */
typedef int fdh_handler_fn(struct fdh_req *req, struct fdh_resp *resp, void *userdata);

/*
 * One route.  path is exact ("/echo") or a prefix: "/files/" then "*", which
 * matches every path that begins with "/files/".  It is compared with the
 * request's path as sent: not percent-decoded, and with no "." or ".."
 * taken out, so a handler that makes a file name of a prefix route's rest
 * must check it (or open it through the broker, which refuses "..").  A
 * GET route also answers HEAD: its handler runs in full, with
 * fdh_req_method() "HEAD", and the answer goes with the would-be
 * Content-Length and no body.  A route without a method or a handler, or
 * whose path does not start with '/' or holds '?' or '#', stops the
 * service at start-up, before its init hook (exit status 2; fdhttpd
 * stops too), naming the route.
 */
struct fdh_route {
	const char *method;
	const char *path;
	fdh_handler_fn *handler;
	void *userdata;
};

struct fdh_service {
	const char *name;		/* short, for process titles and logs */
	const struct fdh_route *routes;
	size_t nroutes;
	/*
	 * Called once with the arguments the framework did not consume, before
	 * the first connection and, under fdhttpd, before the sandbox closes
	 * in: the place to parse service options and open what the service
	 * needs.  Returns 0, or a negative errno to stop; it may say why first
	 * with fdh_service_log().  -EINVAL says the arguments are wrong:
	 * exit status 2, and fdhttpd, before the service has ever come up,
	 * stops with it rather than start a worker that would refuse them
	 * again.  Any other error is exit status 1: under fdhttpd the worker
	 * is started again, with a growing delay, as one that died.
	 */
	int (*init)(int argc, char **argv, void *userdata);
	void *userdata;
	const char *usage;		/* service options for --help, or NULL */
	/*
	 * System calls the service's handlers need beyond the worker's
	 * seccomp allowlist, by name ("uname"), NULL-terminated, or NULL.  A
	 * name unknown on this architecture stops the service at start-up:
	 * a worker with exit status 126 (fdhttpd then stops), and run alone,
	 * though alone it has no sandbox, with exit status 1.  See
	 * docs/security.md before adding one.
	 */
	const char *const *syscalls;
};

/*
 * Runs the service: alone with "--socket PATH" (plus the limit options of
 * fdh_limits_set() spelled "--max-head N" ...), or as a worker of fdhttpd,
 * which it recognises from the environment.  Returns the process exit status.
 */
FDH_API int fdh_service_main(const struct fdh_service *svc, int argc, char *argv[]);

/*
 * One line of the service's own log, such as a bad option in its init
 * hook.  Under fdhttpd it is a line of fdhttpd's log, from the worker
 * ("... error worker 2: echo: MESSAGE"), dropped below fdhttpd's
 * --log-level, control bytes escaped; run alone, "PROGRAM: MESSAGE" on
 * stderr, debug dropped.  Before fdh_service_main() it writes as alone.
 */
FDH_API void fdh_service_log(enum fdh_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * The fd broker: asks fdhttpd to open the file at the absolute path with
 * open(2) flags, for a worker whose sandbox forbids it to open files
 * itself.  fdhttpd opens it beneath one of its --allow-open directories
 * (".." and symlinks cannot lead out), write flags only where that
 * directory is ":rw"; O_CLOEXEC and O_NOCTTY are always added.  O_TRUNC
 * needs O_WRONLY or O_RDWR: the file is truncated here, in the caller,
 * once its fd has come (fdhttpd does not spend its own time on it).
 *
 * Returns the fd, owned by the caller, or a negative errno: -EACCES when
 * the policy refuses; the open's own error (-ENOENT, -EISDIR, ...);
 * -EINVAL for a relative path, flags the broker does not take (O_PATH) or
 * O_TRUNC on a read-only open;
 * -ENAMETOOLONG for a path of PATH_MAX bytes or more; -ETIMEDOUT when no
 * answer came within 5 s; -ENOTSUP in a service run alone (--socket),
 * which has no supervisor to ask and no sandbox: it may open files itself.
 *
 * It waits for the answer: call it from a handler or the init hook.
 * Connections that arrive meanwhile are served once the handler returns.
 */
FDH_API int fdh_broker_open(const char *path, int flags);

/* --- the request --------------------------------------------------------- */

FDH_API const char *fdh_req_method(const struct fdh_req *req);
FDH_API const char *fdh_req_path(const struct fdh_req *req);	/* without the query */
FDH_API const char *fdh_req_query(const struct fdh_req *req);	/* after '?', "" if none */
/*
 * The first query parameter called name ("b" in "a=1&b=2"), its value
 * percent-decoded ('+' is a space) into buf with a NUL: returns the value's
 * length, 0 for a name without '=' ("?verbose").  Names are compared after
 * decoding, case-sensitively.  -ENOENT if absent; -EINVAL for a NULL name or
 * buf, or a value with a bad escape or a NUL (%00); -ERANGE when the value
 * and its NUL need more than size bytes.  buf is written only on success.
 */
FDH_API int fdh_req_query_param(const struct fdh_req *req, const char *name, char *buf,
    size_t size);
/* Case-insensitive; the first field of that name, or NULL (for a NULL name too). */
FDH_API const char *fdh_req_header(const struct fdh_req *req, const char *name);
FDH_API size_t fdh_req_header_count(const struct fdh_req *req);
/* The i-th field in arrival order; -ERANGE past the end, -EINVAL for a NULL ret_header. */
FDH_API int fdh_req_header_at(const struct fdh_req *req, size_t i, struct fdh_header *ret_header);
/*
 * The body, its length in *ret_len (ret_len may be NULL); valid until the
 * handler returns.  Not NUL-terminated: what follows it in memory is not
 * the body's (use the length, or a "%.*s" format).
 */
FDH_API const void *fdh_req_body(const struct fdh_req *req, size_t *ret_len);
/* 1 for HTTP/1.1, 0 for HTTP/1.0. */
FDH_API int fdh_req_http_minor(const struct fdh_req *req);

FDH_API size_t fdh_req_fd_count(const struct fdh_req *req);
/* Name of the i-th fd in X-FD order, or NULL past the end. */
FDH_API const char *fdh_req_fd_name(const struct fdh_req *req, size_t i);
/*
 * Borrows the fd named name: it stays the request's.  -ENOENT if absent
 * (or taken), -EINVAL for a NULL name.
 */
FDH_API int fdh_req_fd(const struct fdh_req *req, const char *name);
/* Takes the fd named name: the caller owns it from now on.  The errors of fdh_req_fd(). */
FDH_API int fdh_req_take_fd(struct fdh_req *req, const char *name);

/* The limits this service runs with, e.g. to bound what a handler reads from an fd. */
FDH_API const struct fdh_limits *fdh_req_limits(const struct fdh_req *req);

FDH_API const struct fdh_peer *fdh_req_peer(const struct fdh_req *req);
/*
 * Borrows a pidfd for the peer process (Linux 6.5+), which unlike the pid
 * cannot be reused; valid as long as the connection.  -EOPNOTSUPP where the
 * kernel has none.
 */
FDH_API int fdh_req_peer_pidfd(struct fdh_req *req);

/* --- the response -------------------------------------------------------- */

/*
 * 200 by default.  A 204 or 304 is sent without a body (one set is
 * dropped); a status outside 200..999, a 1xx included, is sent as 500.
 */
FDH_API void fdh_resp_status(struct fdh_resp *resp, int status);
/*
 * Adds a header.  Refuses (-EINVAL) a NULL name or value, names that are
 * not tokens, values with CR or LF, and the framing headers the framework
 * owns (Content-Length, Transfer-Encoding, Connection, X-FD).  Another of
 * the same name is added beside, not in place of, an earlier one.
 */
FDH_API int fdh_resp_header(struct fdh_resp *resp, const char *name, const char *value);
/* Sets the body to a copy of data; replaces any earlier body.  -EINVAL: NULL data, len > 0. */
FDH_API int fdh_resp_body(struct fdh_resp *resp, const void *data, size_t len);
/*
 * Appends a copy of data to the body.  -EINVAL after fdh_resp_body_borrow(),
 * whose body cannot grow (fdh_resp_body() replaces it with a copy).
 */
FDH_API int fdh_resp_append(struct fdh_resp *resp, const void *data, size_t len);
/* Appends formatted text to the body; -EINVAL after fdh_resp_body_borrow(), too. */
FDH_API int fdh_resp_printf(struct fdh_resp *resp, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/*
 * Sets the body to data without copying.  data must stay valid until
 * release(data, ctx) is called, once the response is sent or abandoned
 * (release may be NULL for static data).  Replaces any earlier body.
 */
FDH_API int fdh_resp_body_borrow(struct fdh_resp *resp, const void *data, size_t len,
    void (*release)(const void *data, void *ctx), void *ctx);
/*
 * Attaches fd under name.  Consumes fd, on failure too (it is closed then):
 * -EINVAL for a bad, repeated or NULL name, -E2BIG past the 253 fds one
 * message can carry (max-fds bounds requests, not responses); -EBADF for a
 * negative fd, which there is nothing to close of; -EEXIST for an fd this
 * response already holds, which stays attached once (fdh_resp_fd_dup() sends
 * one file under two names).  An fd
 * still borrowed from the request (fdh_req_fd(), fdh_req_peer_pidfd()) is
 * taken from it first: the request no longer has it.
 */
FDH_API int fdh_resp_fd(struct fdh_resp *resp, const char *name, int fd);
/*
 * Attaches a duplicate of fd under name (F_DUPFD_CLOEXEC): fd stays the
 * caller's, for an fd handed out again and again, a request's borrowed
 * one included.  The errors of fdh_resp_fd(), and -EBADF for an fd that
 * is not open or -EMFILE when no duplicate can be made.
 */
FDH_API int fdh_resp_fd_dup(struct fdh_resp *resp, const char *name, int fd);

#ifdef __cplusplus
}
#endif
#endif
