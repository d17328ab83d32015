/*
 * What fdhttpd and its workers share: the control messages that travel over
 * each worker's SOCK_SEQPACKET socketpair, the limits passed through the
 * environment, and the format of the log lines both write to stderr.
 *
 * Messages are fixed-layout structs in host byte order (both ends run on
 * one machine, usually from one build), one struct per SEQPACKET record.
 * Each carries a version; each type has exactly one size and says how many
 * fds travel with it.  A receiver rejects anything else: a worker that
 * sends a malformed message is killed, never trusted.
 */
#ifndef FDH_CTL_H
#define FDH_CTL_H

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <fdhttp/common.h>

#define FDH_CTL_VERSION 1

/*
 * Message types.  A number is never reused for another meaning.  Workers
 * send types below 64, the supervisor sends types from 64 up; a receiver
 * refuses the other side's types.
 */
enum fdh_ctl_type {
	/* worker → supervisor */
	FDH_CTL_READY		= 1,	/* initialised; send connections */
	FDH_CTL_CONN_CLOSED	= 2,	/* a connection from NEW_CONN ended */
	FDH_CTL_RETIRE		= 3,	/* served --max-requests: replace me */
	FDH_CTL_CONNS_CLOSED	= 4,	/* several connections from NEW_CONN ended */
	FDH_CTL_OPEN		= 8,	/* broker: open this path for me */
	/* supervisor → worker */
	FDH_CTL_NEW_CONN	= 64,	/* fds: the connection [, the peer's pidfd] */
	FDH_CTL_DRAIN		= 65,	/* finish what is in flight, then exit */
	FDH_CTL_FLUSH		= 66,	/* report every ended connection now */
	FDH_CTL_OPEN_REPLY	= 72,	/* broker: the answer [, fd: the file] */
};

/* NEW_CONN flag: a second fd, the peer's pidfd, follows the connection. */
#define FDH_CTL_F_PIDFD		0x1u
/*
 * NEW_CONN flag: the sender speaks FLUSH, so the worker may hold back
 * ended connections and report them in CONNS_CLOSED batches.  Without
 * it, each goes at once in a CONN_CLOSED.
 */
#define FDH_CTL_F_LAZY		0x2u
/* OPEN_REPLY flag: the open succeeded and its fd travels with the reply. */
#define FDH_CTL_F_FD		0x1u
/* CONNS_CLOSED flag: the last of the answer to a FLUSH. */
#define FDH_CTL_F_FLUSHED	0x1u

/* The most ids one CONNS_CLOSED carries. */
#define FDH_CTL_CLOSED_MAX	16

/* The path field of OPEN: a path and its NUL must fit, as for open(2). */
#define FDH_CTL_PATH_MAX	PATH_MAX

/* Where a worker finds its end of the control socket (FDH_ENV_CONTROL_FD). */
#define FDH_CTL_WORKER_FD	3

/* The most fds any message carries. */
#define FDH_CTL_MAX_FDS		2

/*
 * The exit status of a worker whose sandbox could not be set up: in the
 * child before execve (--user, rlimits, no_new_privs) or in the worker
 * runtime (the seccomp filter).  It would fail the same way every time,
 * so the supervisor stops instead of respawning it when the service has
 * never come up.
 */
#define FDH_EXIT_SANDBOX	126

struct fdh_ctl_hdr {
	uint16_t version;	/* FDH_CTL_VERSION */
	uint16_t type;		/* enum fdh_ctl_type */
	uint32_t flags;		/* per type; unknown bits are an error */
};

/* NEW_CONN: an accepted connection and who is at the other end. */
struct fdh_ctl_conn {
	uint64_t id;		/* chosen by the supervisor, echoed in CONN_CLOSED */
	int32_t pid;		/* SO_PEERCRED */
	uint32_t uid;
	uint32_t gid;
	uint32_t reserved;	/* zero */
};

/* CONN_CLOSED: the connection with this id is gone from the worker. */
struct fdh_ctl_closed {
	uint64_t id;
};

/*
 * CONNS_CLOSED: the first n ids are gone from the worker (n at most
 * FDH_CTL_CLOSED_MAX; 0 only in the answer to a FLUSH).  A worker holds
 * ended connections back and reports them FDH_CTL_CLOSED_MAX at a time,
 * so that the supervisor is not woken once per connection; between its
 * FLUSH and the next NEW_CONN with FDH_CTL_F_LAZY it reports each at once.
 * The supervisor's counts are thus never low, and when one would refuse a
 * connection it asks with FLUSH before it decides.
 */
struct fdh_ctl_closed_batch {
	uint32_t n;
	uint32_t reserved;	/* zero */
	uint64_t ids[FDH_CTL_CLOSED_MAX];
};

/* RETIRE: how many requests the worker has answered, for the log. */
struct fdh_ctl_retire {
	uint64_t nrequests;
};

/*
 * OPEN: fdh_broker_open() in a worker.  The path is absolute and ends with
 * a NUL within the field (fdh_ctl_recv() checks); the field is fixed, so
 * that every OPEN has one size.
 */
struct fdh_ctl_open {
	uint32_t id;			/* chosen by the worker, echoed in OPEN_REPLY */
	int32_t flags;			/* open(2) flags as the worker asked */
	char path[FDH_CTL_PATH_MAX];
};

/*
 * OPEN_REPLY: with FDH_CTL_F_FD, error is 0 and the opened fd travels
 * with it; without, error is a negative errno (-EACCES: policy refused).
 */
struct fdh_ctl_open_reply {
	uint32_t id;
	int32_t error;
};

struct fdh_ctl_msg {
	struct fdh_ctl_hdr h;
	union {
		struct fdh_ctl_conn conn;
		struct fdh_ctl_closed closed;
		struct fdh_ctl_closed_batch batch;
		struct fdh_ctl_retire retire;
		struct fdh_ctl_open open;
		struct fdh_ctl_open_reply open_reply;
	} u;
};

/* Which side is reading: it decides which types are acceptable. */
enum fdh_ctl_side {
	FDH_CTL_SUPERVISOR,	/* reads worker messages */
	FDH_CTL_WORKER,		/* reads supervisor messages */
};

/* Sets the header of *m for type (version, flags 0) and zeroes the rest. */
void fdh_ctl_init(struct fdh_ctl_msg *m, enum fdh_ctl_type type);

/* Short name of a message type for logs ("NEW_CONN"), "?" when unknown. */
const char *fdh_ctl_type_name(unsigned type);

/*
 * Sends *m, sized by its type, with fds (borrowed: the caller closes them
 * after a successful send, the receiver got its own copies).  Never
 * blocks: -EAGAIN when the peer's queue is full, and then nothing was sent.
 * A SEQPACKET record goes whole or not at all.  -EPIPE when the peer is
 * gone, -EINVAL when nfds does not match the type.
 */
int fdh_ctl_send(int sock, const struct fdh_ctl_msg *m, const int *fds, size_t nfds);

/*
 * Receives one message sent to side.  Returns 1 with *m filled (the
 * header and the body of its type; the rest of the union is left alone)
 * and fds[0..*ret_nfds) owned by the caller; 0 when the peer hung up;
 * -EAGAIN when nothing is queued; -EBADMSG for a malformed message (wrong
 * size, version, type, flags or fd count, truncated control data, an OPEN
 * path without its NUL, an OPEN_REPLY whose error and fd disagree), with
 * every fd that came with it closed and *ret_why saying what was wrong;
 * another -errno when the socket failed.
 */
int fdh_ctl_recv(int sock, enum fdh_ctl_side side, struct fdh_ctl_msg *m,
    int fds[FDH_CTL_MAX_FDS], size_t *ret_nfds, const char **ret_why);

/*
 * The limits as a FDH_ENV_LIMITS value: "max-head=8192,max-headers=64,...",
 * each name as fdh_limits_set() spells it.  Returns the length, or -ENOBUFS
 * when len is too small.
 */
#define FDH_CTL_LIMITS_MAX 256
int fdh_ctl_limits_format(const struct fdh_limits *l, char *buf, size_t len);

/*
 * Applies a "name=value,name=value" list with fdh_limits_set().  *l is
 * changed only when every item is valid.  -EINVAL (or -ENOENT for an
 * unknown name) with *ret_bad, when given, pointing at the offending item.
 */
int fdh_ctl_limits_parse(struct fdh_limits *l, const char *s, const char **ret_bad);

/* --- the process title --------------------------------------------------- */

/*
 * setproctitle_init(3), which must come before anything keeps a pointer
 * into argv[] strings or the environment: both are moved to fresh memory,
 * the original memory becomes the title's.
 */
void fdh_title_init(int argc, char **argv);

/*
 * Sets the whole title ("fdhttpd: worker 2 echo [3 conns]").  Padded with
 * spaces to the original arguments' length: shorter, libbsd would mark
 * the end with a visible '.'.  Memory writes only, no system call.
 */
void fdh_title_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * fdh_title_set() of s[0..len) as it is, without formatting: for a title
 * rewritten at every connection, where vsnprintf() cost more than the
 * rest of the connection's user-space work.
 */
void fdh_title_put(const char *s, size_t len);

/* --- the log ------------------------------------------------------------- */

/*
 * One line per event on stderr, written with a single write(2) so lines of
 * several processes never interleave:
 *	2026-11-21T10:00:00.123Z fdhttpd[PID] LEVEL ROLE: message
 * Control characters in the message are escaped, so a line stays a line.
 */
/* enum fdh_log_level is public: <fdhttp/common.h>. */

/* The level for "debug", "info", "warn" or "error"; -EINVAL otherwise. */
int fdh_log_level_parse(const char *name);
const char *fdh_log_level_name(enum fdh_log_level level);

/* Sets the lowest level written and the ROLE ("supervisor", "worker 2"). */
void fdh_log_setup(enum fdh_log_level min, const char *role);
bool fdh_log_enabled(enum fdh_log_level level);
void fdh_log(enum fdh_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void fdh_vlog(enum fdh_log_level level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

#endif
