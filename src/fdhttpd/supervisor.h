/*
 * The supervisor's state, shared by its parts: supervisor.c (the loop,
 * accept and hand-off), workers.c (worker lifecycle and control messages),
 * conns.c (connection ids and per-uid counts), reject.c (403/503 answers).
 * One thread; nothing here is touched from a signal handler.
 */
#ifndef FDHTTPD_SUPERVISOR_H
#define FDHTTPD_SUPERVISOR_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <fdhttp/common.h>
#include "clock.h"
#include "ctl.h"
#include "options.h"
#include "sockfile.h"

enum proc_state {
	PROC_STARTING,		/* forked; no READY yet */
	PROC_READY,		/* takes connections */
	PROC_DRAINING,		/* DRAIN sent (or pending): finishing, then exits */
};

/*
 * The most broker answers (OPEN_REPLY) a worker may leave unread in its
 * control socket; while it has this many, its next OPEN waits there.  An
 * answer's fd is in flight until read, and a non-root supervisor's fds in
 * flight count against its RLIMIT_NOFILE whichever worker they go to: a
 * worker asking without reading would otherwise stall every hand-off of
 * every worker (ETOOMANYREFS), and fill the socket sized for its
 * connections.  fdh_broker_open() asks once and reads its answer before it
 * returns, so a worker has one unread at most, and a few more only after
 * requests that timed out, whose late answers its loop reads.
 */
#define BROKER_MAX_UNREAD	4
/* How often a worker held at BROKER_MAX_UNREAD is looked at again. */
#define BROKER_CHECK_MS		20

/* One worker process, from fork to reaping. */
struct proc {
	pid_t pid;
	int ctl;		/* our end of its control socket; -1 once closed */
	unsigned id;		/* its slot's number, 1-based: "worker N" */
	unsigned gen;		/* the SIGHUP generation it was started in */
	enum proc_state state;
	unsigned nconns;	/* connections handed over and not reported closed */
	unsigned long long nhanded;	/* connections handed over, ever */
	bool blocked;		/* control socket full: skipped until POLLOUT */
	bool drain_pending;	/* DRAIN still to send when the socket has room */
	bool retiring;		/* asked to be replaced (--max-requests) */
	bool was_ready;
	bool killed;		/* SIGKILL sent */
	bool unsandboxed;	/* READY without the sandbox: killed for it */
	/*
	 * A worker reports ended connections in batches, so nconns and the
	 * per-uid counts may be high, never low.  Before they refuse a
	 * connection, FLUSH asks for the rest: eager from then until the
	 * next NEW_CONN (the worker reports each close at once meanwhile),
	 * flush_wait until the answer's last message (F_FLUSHED) is read.
	 */
	bool eager;
	bool flush_wait;
	int64_t flush_sent_ms;	/* when the FLUSH flush_wait is for went */
	int64_t started_ms;
	int64_t kill_at;	/* SIGKILL when due (ms); 0: no deadline */
	/*
	 * What the kernel charged our end of ctl for every message sent on it
	 * (workers_send()); less what SIOCOUTQ says is still queued, it is how
	 * far the worker has read.  answer_end: where each broker answer it
	 * may not have read yet ends in that count, oldest first.
	 */
	uint64_t ctl_sent;
	uint64_t answer_end[BROKER_MAX_UNREAD];
	unsigned nanswers;
	bool broker_held;	/* an OPEN waits in ctl, unread, until answers are */
	bool broker_capped;	/* held since its answers were last all read; logged */
	int64_t broker_check_at;	/* when a held worker is looked at again */
	/*
	 * Its broker answers go without their fd (ctl_send_temporary()) since
	 * one last went with it: the streak is logged once, per worker, so
	 * that another's neither hides it nor ends it.
	 */
	bool answers_short;
};

/* A place for one worker among --workers. */
struct slot {
	struct proc *cur;	/* the worker serving it, ready or starting */
	struct proc *next;	/* its successor while it is being replaced */
	unsigned failures;	/* consecutive early deaths, for the backoff */
	int64_t respawn_at;	/* a start pending (ms); 0: none */
};

/* The supervisor's record of a handed-over connection, by id. */
struct conn_rec {
	uint32_t gen;		/* the id's upper half: stale ids do not match */
	bool used;
	uid_t uid;
	struct proc *owner;	/* NULL while not yet handed over */
};

struct uid_count {
	uid_t uid;
	unsigned n;
};

/* An accepted connection no worker could take yet. */
struct pending_conn {
	int fd;
	int pidfd;
	struct fdh_peer peer;
	uint64_t id;
};

/* The title of fdhttpd's closer process (closer.c), which ps shows. */
#define SUP_CLOSER_TITLE	"fdhttpd: closer of the supervisor"

/* A refused connection, kept for a moment so that the answer is read. */
struct lingering {
	int fd;
	int64_t deadline;
	size_t nread;
};

#define SUP_MAX_LINGER		64
#define SUP_LINGER_MS		1000
#define SUP_LINGER_BYTES	(64 * 1024)
#define SUP_BACKOFF_FIRST_MS	100
#define SUP_BACKOFF_MAX_MS	5000
/* A worker that lived this long before dying is not "dying repeatedly". */
#define SUP_HEALTHY_MS		5000
/* How long a worker that closed its control socket gets to exit by itself. */
#define SUP_HANGUP_KILL_MS	1000
/* How often fds the closer could not take (it is stuck in a close) are offered again. */
#define SUP_CLOSER_RETRY_MS	50
/* Our copies of handed-over connections go to the closer this many at a time, or this late. */
#define SUP_HANDED_BATCH	32
#define SUP_HANDED_MS		50

/* Why the supervisor refused a connection itself (reject.c). */
enum refusal {
	REFUSED_NOT_ALLOWED,	/* 403: not in --allow-uid/--allow-gid */
	REFUSED_TOO_MANY,	/* 503: at --max-conns-per-uid */
	REFUSED_NKINDS,
};

/* One kind of refusal's log: the line last written, and the ones held back since. */
struct refusal_log {
	int64_t until;		/* none written before this (ms) */
	unsigned held;		/* refusals not written since */
};

/*
 * A local user connecting in a loop would write a line per attempt: a
 * log flooded, and journald's rate limit then dropping the lines that
 * matter.  At most one refusal line of each kind per this long; a
 * count of the others follows.
 */
#define SUP_REFUSAL_LOG_MS	10000

struct sup {
	const struct options *o;
	struct sockfile *sock;
	int sigfd;

	struct proc **procs;	/* every live worker, in no order */
	size_t nprocs, cprocs;
	struct slot *slots;
	unsigned nslots;
	unsigned rr;		/* where the next least-loaded search starts */
	unsigned gen;		/* bumped by SIGHUP: older workers get replaced */
	bool restarting;	/* a SIGHUP's replacements not all done yet */

	bool stopping;
	int exit_status;	/* non-zero: stop, and exit with it */
	bool notified_ready;
	bool pidfd_supported;
	int64_t accept_pause_until;	/* after EMFILE and the like */

	struct conn_rec *conns;
	size_t cconns;
	uint32_t *free_ids;
	size_t nfree;
	struct uid_count *uids;
	size_t nuids, cuids;

	bool have_pending;
	struct pending_conn pending;
	/* Our copies of connections handed over, for the closer (supervisor.c). */
	int handed[SUP_HANDED_BATCH];
	unsigned nhanded;
	int64_t handed_since;
	/*
	 * After a temporary send failure (ctl_send_temporary()): no hand-off
	 * and no accept before send_retry_at (ms); send_short until one
	 * succeeds; send_warned_ms, when it was last logged.
	 */
	int64_t send_retry_at;
	bool send_short;
	int64_t send_warned_ms;

	/*
	 * A connection whose uid looked at --max-conns-per-uid, held while
	 * workers answer FLUSH (until recheck_at at most), then decided again.
	 */
	int recheck_fd;		/* -1: none */
	struct ucred recheck_cred;
	int64_t recheck_at;

	struct lingering lingers[SUP_MAX_LINGER];
	size_t nlingers;
	struct refusal_log refusal_logs[REFUSED_NKINDS];
};

/*
 * Whether a failed send on a control socket (a negative errno) is the
 * supervisor's own condition, gone once descriptors or memory free up,
 * rather than the worker's socket breaking.  ETOOMANYREFS: a non-root
 * supervisor's fds in flight, queued to every busy worker alike, count
 * against its RLIMIT_NOFILE.  Retiring the worker for it would kill a
 * healthy one with its connections, then the next, and the next.
 */
static inline bool
ctl_send_temporary(int r)
{
	return r == -ETOOMANYREFS || r == -ENOBUFS || r == -ENOMEM;
}

/* How long hand-offs and accepting pause after a temporary send failure. */
#define SUP_SEND_RETRY_MS	100
/* At most one warning about it in this long. */
#define SUP_SEND_WARN_MS	10000

/* supervisor.c */
int supervisor_run(const struct options *o, struct sockfile *sock, int sigfd);

/* workers.c */
int workers_init(struct sup *s);
int workers_send(struct proc *p, const struct fdh_ctl_msg *m, const int *fds, size_t nfds);
void workers_free(struct sup *s);
struct proc *workers_pick(struct sup *s);
bool workers_have_room(const struct sup *s);
void workers_on_ctl(struct sup *s, struct proc *p, short revents);
void workers_ctl_failed(struct sup *s, struct proc *p, int err);
void workers_retire_unasked(struct proc *p);
void workers_reap(struct sup *s);
void workers_timers(struct sup *s, int64_t now);
int64_t workers_next_timer(const struct sup *s);
void workers_replace_step(struct sup *s);
void workers_restart(struct sup *s);
void workers_shutdown(struct sup *s);
void workers_wait(struct sup *s);
/*
 * How long a connection at --max-conns-per-uid waits for workers' FLUSH
 * answers; accepting stops meanwhile.  A worker that has not answered in
 * this time (a long handler, a stopped process) is not waited for again
 * until it answers: a user at the cap could otherwise stall every accept
 * this long, once per connection it attempts.
 */
#define RECHECK_MS		100

bool workers_flush(struct sup *s);

/* conns.c */
unsigned conns_uid_count(const struct sup *s, uid_t uid);
int conns_open(struct sup *s, uid_t uid, uint64_t *ret_id);
void conns_assign(struct sup *s, uint64_t id, struct proc *p);
int conns_close(struct sup *s, uint64_t id, const struct proc *p);
void conns_drop(struct sup *s, uint64_t id);
void conns_release_proc(struct sup *s, struct proc *p);
void conns_free(struct sup *s);

/* reject.c */
void reject_log(struct sup *s, enum refusal kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void reject_conn(struct sup *s, int fd, int status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void reject_on_event(struct sup *s, size_t i);
void reject_timers(struct sup *s, int64_t now);
int64_t reject_next_timer(const struct sup *s);
void reject_free(struct sup *s);

#endif
