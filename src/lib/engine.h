/*
 * The serving engine's shared state: the dispatcher, its connections and
 * the request being handled.  Private to src/lib.
 *
 * Memory: an idle connection is one struct fdh_conn.  A request that
 * arrives in one read is parsed, handled and answered from buffers the
 * dispatcher owns and reuses; only a request spread over several reads, or
 * a response the socket would not take at once, gets buffers of its own,
 * freed when that exchange ends.
 */
#ifndef FDH_ENGINE_H
#define FDH_ENGINE_H

#include <dirent.h>
#include <sys/epoll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>

#include "dispatch.h"
#include "http.h"
#include "resp.h"
#include "route.h"

enum fdh_conn_state {
	CONN_WAIT,		/* no byte of a request yet (empty lines and a lone CR aside) */
	CONN_READ,		/* a request is arriving */
	CONN_WRITE,		/* a response is leaving */
	CONN_LINGER,		/* refused: input read and dropped until EOF (conn.c, conn_linger()) */
};

enum fdh_timer_kind {
	TIMER_IDLE,
	TIMER_REQUEST,
	TIMER_WRITE,
	TIMER_LAST,		/* a last call: LAST_CALL_MS in dispatch.c */
	TIMER_KINDS,
	TIMER_NONE = TIMER_KINDS,
};

/* The unsent rest of a response the socket did not take at once. */
struct fdh_conn_out {
	char *buf;			/* copied head and body remainder */
	size_t len;
	size_t off;
	const void *borrow;		/* a borrowed body, sent after buf */
	size_t borrow_len;
	size_t borrow_off;
	void (*release)(const void *data, void *ctx);
	void *release_ctx;
	int *fds;			/* still unsent: they go with the first byte */
	unsigned nfds;
	bool close_after;
};

struct fdh_conn {
	int fd;				/* -1 once closed, until freed after the event batch */
	int closing_fd;			/* the socket, from fdh_conn_close() to the batch's end */
	int pidfd;			/* -1 until known; open until the batch's end, as closing_fd */
	uint32_t events;		/* what epoll watches for it now */
	uint8_t state;
	uint8_t timer;
	bool served;			/* at least one response sent */
	bool continue_due;		/* a 100 Continue waits for room to go */
	bool drained;			/* read to its end: no fd waits in the socket */
	bool linger;			/* closing from this side while input may be coming */
	bool rd_shut;			/* its input shut: see fdh_conn_idle_end() */
	struct fdh_conn *tprev;
	struct fdh_conn *tnext;
	struct fdh_conn *prev;		/* every open connection, for drain and free */
	struct fdh_conn *next;		/* ... or the closed ones still to free */
	struct fdh_conn *fresh_next;	/* added and not yet read */
	uint64_t deadline;		/* ms, CLOCK_MONOTONIC */
	struct fdh_peer peer;
	uint64_t tag;			/* the adder's name for it */
	/* A request spread over reads: its bytes so far, and its fds. */
	char *in;
	size_t in_len;
	size_t in_cap;
	size_t scan;
	size_t head_len;		/* 0 until the blank line is in */
	size_t need;			/* head + body, once head_len is known */
	int *fds;
	unsigned nfds;
	struct fdh_conn_out *out;
};

struct fdh_req {
	struct fdh_head head;
	char *body;
	size_t body_len;
	int *fds;			/* -1 once taken */
	unsigned nfds;
	char (*fd_names)[FDH_FD_NAME_MAX + 1];
	struct fdh_conn *conn;
	struct fdh_dispatch *d;
};

struct fdh_timer_list {
	struct fdh_conn *head;
	struct fdh_conn *tail;
};

struct fdh_watch {
	fdh_watch_fn *cb;
	void *arg;
	int fd;
	bool on;
	bool brings_fds;		/* polled only while there is room for them */
	bool armed;			/* in the epoll set now */
};

struct fdh_dispatch {
	struct fdh_limits lim;
	const struct fdh_service *svc;
	struct fdh_route_table routes;
	struct fdh_dispatch_hooks hooks;

	/*
	 * One epoll set for the watches and every connection: a connection is
	 * added once, with its pointer as the event's data, and changed only
	 * when it starts or stops writing, so a request costs one epoll_wait()
	 * however many connections sit idle.  A watch's data is its index.
	 */
	int epfd;
	struct epoll_event *events;
	struct fdh_watch watch[FDH_DISPATCH_MAX_WATCH];
	struct fdh_conn *conns;
	struct fdh_conn *closed;	/* freed once no event of the batch can name them */
	struct fdh_conn *fresh;		/* added since the last turn: read at once */
	unsigned nconns;
	/*
	 * Something to try again within STARVED_RETRY_MS: a watch could not
	 * be added to the set, or fds wait for the closer (fdh_closer_notify()).
	 */
	bool retry;

	struct fdh_timer_list timers[TIMER_KINDS];
	uint64_t now;
	uint64_t turn_start;		/* d->now as this turn's wait ended */
	uint64_t turn_prev;		/* ... and the last turn's */

	char *scratch;			/* where a fresh request is read */
	size_t scratch_cap;
	int *rfds;			/* the fds of that read */
	struct fdh_req_hdr *hdrs;
	struct fdh_xfd_name *xfd_names;
	struct fdh_http_parser parser;
	struct fdh_http_error err;	/* why the last head parsed was refused */
	struct fdh_req req;
	struct fdh_resp resp;
	char allow[160];

	/*
	 * Descriptor accounting, so that a read never makes the kernel drop a
	 * client's fds at RLIMIT_NOFILE: open_fds counts what the engine holds,
	 * other_fds the rest of the process as last counted in /proc/self/fd.
	 */
	int open_fds;
	int other_fds;
	rlim_t nofile;
	rlim_t fd_reserve;		/* free fds a read needs (dispatch.c) */
	long long fd_estimate_max;	/* open_fds + other_fds up to this: room, no count */
	DIR *fddir;
	bool starved;

	bool draining;
	bool drain_soon;		/* responses close: a drain or a retirement */
	bool stopped;
	unsigned long long nrequests;
	unsigned long long retire_after;	/* fdh_dispatch_retire_after(); 0: never */
};

/* dispatch.c */
void fdh_dispatch_timer_arm(struct fdh_dispatch *d, struct fdh_conn *c, enum fdh_timer_kind k);
void fdh_dispatch_timer_disarm(struct fdh_dispatch *d, struct fdh_conn *c);
void fdh_dispatch_conn_events(struct fdh_dispatch *d, struct fdh_conn *c, uint32_t events);
/* Reads the clock again: after a handler, which may have taken its time. */
void fdh_dispatch_clock(struct fdh_dispatch *d);
/* Takes c out of the loop; it is freed after the current event batch. */
void fdh_dispatch_conn_gone(struct fdh_dispatch *d, struct fdh_conn *c);
/* Closes the sockets and pidfds of connections ended in this batch; frees nothing. */
void fdh_dispatch_close_ended(struct fdh_dispatch *d);

/* conn.c */
void fdh_conn_event(struct fdh_dispatch *d, struct fdh_conn *c, uint32_t revents);
void fdh_conn_timeout(struct fdh_dispatch *d, struct fdh_conn *c, enum fdh_timer_kind k);
void fdh_conn_close(struct fdh_dispatch *d, struct fdh_conn *c);
/* The end of a connection waiting for a request: closed, or its queued request served first. */
void fdh_conn_idle_end(struct fdh_dispatch *d, struct fdh_conn *c);
/* Events a connection in its state wants. */
uint32_t fdh_conn_wanted(const struct fdh_dispatch *d, const struct fdh_conn *c);

#endif
