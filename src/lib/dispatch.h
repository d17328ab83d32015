/*
 * The dispatcher: one thread, one epoll loop, every connection of this
 * process, requests served one at a time.  Connections come from a source
 * the caller watches (a listening socket when the service runs alone, the
 * control socket from fdhttpd in a worker) and are handed in with
 * fdh_dispatch_add_conn().
 */
#ifndef FDH_DISPATCH_H
#define FDH_DISPATCH_H

#include <stdbool.h>
#include <stdint.h>

#include <fdhttp/service.h>

struct fdh_dispatch;

/* Called from the loop; none may re-enter fdh_dispatch_run(). */
struct fdh_dispatch_hooks {
	/* The connection added with tag ended, for whatever reason. */
	void (*conn_closed)(struct fdh_dispatch *d, uint64_t tag, void *arg);
	/* A response was sent in full. */
	void (*request_done)(struct fdh_dispatch *d, void *arg);
	/*
	 * Optional.  The kernel refused a response's fds (ETOOMANYREFS: this
	 * user's fds in flight are over its RLIMIT_NOFILE); the client got a
	 * 503 without them, or its connection closed when part was sent.
	 */
	void (*fds_refused)(struct fdh_dispatch *d, void *arg);
	void *arg;
};

/* A watched fd became readable or hung up.  A negative return stops the loop. */
typedef int fdh_watch_fn(struct fdh_dispatch *d, int fd, void *arg);

int fdh_dispatch_new(const struct fdh_service *svc, const struct fdh_limits *limits,
    struct fdh_dispatch **ret_d);
void fdh_dispatch_free(struct fdh_dispatch *d);	/* closes every connection */
void fdh_dispatch_set_hooks(struct fdh_dispatch *d, const struct fdh_dispatch_hooks *hooks);

/* Watches fd (borrowed) for input; at most FDH_DISPATCH_MAX_WATCH of them. */
#define FDH_DISPATCH_MAX_WATCH 4
int fdh_dispatch_watch(struct fdh_dispatch *d, int fd, fdh_watch_fn *cb, void *arg);
/* Stops or resumes polling a watched fd, e.g. a listening socket while full. */
void fdh_dispatch_watch_enable(struct fdh_dispatch *d, int fd, bool on);
/*
 * Marks a watched fd whose reads bring fds (a worker's control socket):
 * like a connection, it is not polled while the process lacks room for
 * the fds one message may carry, so that the kernel never drops fds sent
 * on it.
 */
void fdh_dispatch_watch_brings_fds(struct fdh_dispatch *d, int fd);
/*
 * Whether a read that brings fds may be made now.  When not, connections
 * and such watches are left alone until descriptors free up.
 */
bool fdh_dispatch_fd_room(struct fdh_dispatch *d);

/*
 * Adds a connected stream socket with its peer's credentials and pidfd
 * (-1 when unknown; the dispatcher then asks the kernel when a handler does).
 * tag comes back in the conn_closed hook.  Consumes fd and pidfd, on failure
 * too; the hook is not called then.  -EBUSY when at max_conns, -ESHUTDOWN
 * while draining.  The socket is read at the end of the turn that added
 * it, or at the start of the next when added outside one.
 */
int fdh_dispatch_add_conn(struct fdh_dispatch *d, int fd, const struct fdh_peer *peer,
    int pidfd, uint64_t tag);
unsigned fdh_dispatch_nconns(const struct fdh_dispatch *d);
bool fdh_dispatch_full(const struct fdh_dispatch *d);
unsigned long long fdh_dispatch_nrequests(const struct fdh_dispatch *d);

/*
 * Graceful stop: idle keep-alive connections close now; a request in
 * progress is finished and answered with Connection: close; a connection
 * that has not sent its first request yet is served that one request.
 * fdh_dispatch_run() returns 0 once no connection is left.
 */
void fdh_dispatch_drain(struct fdh_dispatch *d);
/*
 * A drain is coming, held back by the caller until what arrived before it
 * is handled (a worker's control messages read during a broker wait): from
 * now on a response says Connection: close and its connection ends, as
 * under the drain itself.
 */
void fdh_dispatch_drain_soon(struct fdh_dispatch *d);
/*
 * Retirement (fdhttpd's --max-requests): the response to the nth request
 * and every later one say Connection: close and end their connection,
 * and idle keep-alive connections close as the nth is answered
 * (fdh_dispatch_retire()).  0, the default: never.
 */
void fdh_dispatch_retire_after(struct fdh_dispatch *d, unsigned long long n);
/*
 * Keeps no connection alive from now on: idle ones close, every response
 * ends its connection.  Unlike a drain, connections are still added (each
 * is served one request) and fdh_dispatch_run() goes on.
 */
void fdh_dispatch_retire(struct fdh_dispatch *d);
/* Makes fdh_dispatch_run() return 0 at once (connections stay open). */
void fdh_dispatch_stop(struct fdh_dispatch *d);
int fdh_dispatch_run(struct fdh_dispatch *d);
/*
 * One turn of fdh_dispatch_run()'s loop, for a caller that drives the
 * dispatcher itself on its own thread (the engine's fuzzer, which is also
 * the clients): expired timers, one epoll_wait() of at most timeout_ms (-1: until
 * the next timer), the events it reported.  Returns 1 when the loop would
 * end (stopped, or drained with no connection left), 0 when it would go
 * on, or -errno from epoll_wait() or a watch.
 */
int fdh_dispatch_run_once(struct fdh_dispatch *d, int timeout_ms);

#endif
