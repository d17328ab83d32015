/*
 * The client: one connection to a service, requests with named fds,
 * responses with named fds.  Blocking, with a timeout on every call.
 */
#ifndef FDHTTP_CLIENT_H
#define FDHTTP_CLIENT_H

#include <fdhttp/common.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fdh_client;

/* An fd sent with a request: borrowed, the caller keeps it. */
struct fdh_named_fd {
	const char *name;
	int fd;
};

struct fdh_client_req {
	const char *method;		/* "GET" when NULL */
	const char *target;		/* path and query, "/echo?x=1"; starts with '/' */
	/*
	 * Sent after "Host: localhost" (left out when one is given here).
	 * Content-Length, Transfer-Encoding and X-FD are the client's to
	 * write: passing one is -EINVAL.  With "Expect: 100-continue" the
	 * body waits for the server's 100 Continue, or its final answer that
	 * leaves the body unsent; after a second without either it goes
	 * anyway, as curl does: a server that does not know the expectation
	 * never asks for the body.
	 */
	const struct fdh_header *headers;
	size_t nheaders;
	const void *body;
	size_t body_len;
	const struct fdh_named_fd *fds;	/* sent with the request head */
	size_t nfds;
};

struct fdh_client_resp {
	int status;
	int http_minor;
	struct fdh_header *headers;	/* owned by the response */
	size_t nheaders;
	char *body;			/* NUL-terminated for convenience; owned */
	size_t body_len;
	struct fdh_named_fd *fds;	/* owned; take one by setting its fd to -1 */
	size_t nfds;
	/*
	 * The server closed (or will close) the connection, or the body was
	 * left unsent because the server answered first: later requests on
	 * this client return -ENOTCONN.
	 */
	int closed;
};

/*
 * Connects to path ("@name" for an abstract socket) within timeout_ms
 * (0: no timeout).  The timeout also applies to every later request, to
 * the whole of it: a server trickling bytes cannot stretch a call past it.
 */
FDH_API int fdh_client_connect(const char *path, int timeout_ms, struct fdh_client **ret_client);
/* Wraps a connected AF_UNIX stream socket; consumes fd, on failure too. */
FDH_API int fdh_client_from_fd(int fd, int timeout_ms, struct fdh_client **ret_client);
FDH_API void fdh_client_free(struct fdh_client *c);
FDH_API int fdh_client_fd(const struct fdh_client *c);	/* borrowed */
/*
 * The timeout of later requests (0: none), in place of the one given at
 * connect: what is left of a deadline the caller keeps over several steps,
 * for instance.  -EINVAL for a negative one.
 */
FDH_API int fdh_client_set_timeout(struct fdh_client *c, int timeout_ms);
/* Largest response body accepted (default 64 MiB) and fds (default and at most 253). */
FDH_API void fdh_client_set_limits(struct fdh_client *c, size_t max_body, unsigned max_fds);

/*
 * Sends req and waits for its response (skipping 1xx).  On success *ret_resp
 * holds what arrived and must be released with fdh_client_resp_release().
 * -ETIMEDOUT, -ECONNRESET/-EPIPE when the server went away, -EPROTO for a
 * malformed response or fds that do not match its X-FD header, -EMFILE
 * when this process had no descriptor free for the response's fds, -EOVERFLOW
 * for a response head over 1 MiB or 4096 fields, -EMSGSIZE for a body over
 * the limit, -EINVAL (-EBADF, -E2BIG for fds, and -ETOOMANYREFS when the
 * kernel will not pass more) for a request that cannot be sent as given:
 * nothing is sent then, and the client stays usable.  After any other
 * failure the connection is unusable: later calls get -ENOTCONN.  So does
 * a call that finds the server closed the connection since the last
 * response, or sent something nobody asked for, or whose first send the
 * server refused (it was closing the connection) without an answer:
 * nothing was sent, and the request may go again on a new connection.  No
 * received fd outlives a failure: those are closed before the call returns,
 * and their close is the one wait the timeout does not bound (see
 * fdh_client_resp_release()).
 */
FDH_API int fdh_client_request(struct fdh_client *c, const struct fdh_client_req *req,
    struct fdh_client_resp *ret_resp);

/* Case-insensitive header lookup in a response; NULL if absent. */
FDH_API const char *fdh_client_resp_header(const struct fdh_client_resp *resp, const char *name);
/* Takes the fd named name out of the response; -ENOENT if absent. */
FDH_API int fdh_client_resp_take_fd(struct fdh_client_resp *resp, const char *name);
/*
 * Frees everything the response owns and closes its remaining fds, in the
 * calling thread; resp is zeroed.  The last close() of some files waits, as
 * long as their other end likes: a TCP socket with SO_LINGER for its unsent
 * data, a file on FUSE or NFS for its server, an AF_UNIX socket for such
 * files queued on it.  A caller that must not wait on a service it does not
 * trust takes every fd first and closes it where a wait does no harm, or
 * leaves it to the process's exit, which does not linger.
 */
FDH_API void fdh_client_resp_release(struct fdh_client_resp *resp);

#ifdef __cplusplus
}
#endif
#endif
