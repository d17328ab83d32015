/*
 * A service's life as a worker of fdhttpd: connections arrive over the
 * control socket (fd 3) with their peer's credentials, and go to the
 * dispatcher; the supervisor hears when each ends, and asks for a drain
 * when this worker is to go.
 *
 * The worker's loop never waits on the control socket: it is read when
 * the dispatcher's epoll set says so and written with MSG_DONTWAIT.
 * Ended connections are reported FDH_CTL_CLOSED_MAX at a time (each
 * wake-up of the supervisor costs more than the hand-off itself) when the
 * supervisor allows it (FDH_CTL_F_LAZY), and at once after its FLUSH until
 * it allows it again.  Should its queue be full, reports wait in a local
 * queue and go with the next event.
 * The one wait is a handler's in fdh_broker_open(), bounded: what the
 * supervisor sends meanwhile (connections, DRAIN) is kept, fds and all,
 * and handled by the loop once the handler has returned.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "closer.h"
#include "ctl.h"
#include "dispatch.h"
#include "fdpass.h"
#include "route.h"
#include "sandbox.h"
#include "worker.h"

/* How long fdh_broker_open() waits for the supervisor's answer. */
#define BROKER_TIMEOUT_MS	5000

/* A FIFO of connection ids. */
struct idq {
	uint64_t *v;
	size_t head, len, cap;
};

/* A NEW_CONN read while a handler waited for the broker; owns its fds. */
struct held_conn {
	struct fdh_ctl_conn conn;
	int fds[FDH_CTL_MAX_FDS];
	size_t nfds;
};

struct worker {
	struct fdh_dispatch *d;
	int ctl;
	int sfd;			/* SIGTERM/SIGINT: drain, as DRAIN would */
	unsigned id;
	const char *name;
	unsigned long long max_requests;	/* 0: never retire */
	bool retire_sent;
	bool retire_pending;		/* RETIRE still to send */
	bool draining;
	bool hung_up;			/* the supervisor is gone */
	bool sandboxed;			/* the seccomp filter is to close in */
	/*
	 * What arrived while a handler waited in fdh_broker_open(), for the
	 * loop to handle in order: connections, then a DRAIN, then the
	 * control socket's failure.  wake makes poll() return for them.
	 */
	int wake;			/* eventfd */
	struct held_conn *held;
	size_t nheld, cheld;
	bool held_drain;
	bool held_flush;
	char held_failure[160];		/* non-empty: the socket failed */
	uint32_t open_id;		/* the last broker request's */
	struct idq unsent;		/* ended connections not reported yet */
	bool flush_asked;		/* a FLUSH to answer (F_FLUSHED) */
	bool lazy;			/* closes may wait for a full batch (F_LAZY) */
	unsigned title_conns;
	char title_head[160];		/* "fdhttpd: worker 2 echo [" */
	size_t title_head_len;
};

static int
idq_push(struct idq *q, uint64_t id)
{
	if (q->len == q->cap) {
		size_t n = q->cap ? q->cap * 2 : 64, i;
		uint64_t *v = malloc(n * sizeof(*v));

		if (v == NULL)
			return -ENOMEM;
		for (i = 0; i < q->len; i++)
			v[i] = q->v[(q->head + i) % q->cap];
		free(q->v);
		q->v = v;
		q->head = 0;
		q->cap = n;
	}
	q->v[(q->head + q->len) % q->cap] = id;
	q->len++;
	return 0;
}

static uint64_t
idq_pop(struct idq *q)
{
	uint64_t id = q->v[q->head];

	q->head = (q->head + 1) % q->cap;
	q->len--;
	return id;
}

/*
 * "fdhttpd: worker 2 echo [3 conns]", rewritten when the count changes,
 * twice per connection: the head is formatted once (title_init) and the
 * count written here by hand, for vsnprintf() alone cost more than half
 * of a short connection's user-space instructions.
 */
static void
set_title(struct worker *w)
{
	unsigned n = w->d ? fdh_dispatch_nconns(w->d) : 0, v;
	char buf[sizeof(w->title_head) + 32], *p, *q;

	if (n == w->title_conns)
		return;
	w->title_conns = n;
	memcpy(buf, w->title_head, w->title_head_len);
	p = buf + w->title_head_len;
	v = n;
	do {
		p++;
	} while ((v /= 10) != 0);
	q = p;
	v = n;
	do {
		*--q = (char)('0' + v % 10);
	} while ((v /= 10) != 0);
	memcpy(p, n == 1 ? " conn]" : " conns]", n == 1 ? 6 : 7);
	p += n == 1 ? 6 : 7;
	fdh_title_put(buf, (size_t)(p - buf));
}

static void
title_init(struct worker *w)
{
	int n = snprintf(w->title_head, sizeof(w->title_head), "fdhttpd: worker %u %s [", w->id,
	    w->name);

	w->title_head_len = n < 0 ? 0 : (size_t)n < sizeof(w->title_head) ?
	    (size_t)n : sizeof(w->title_head) - 1;
	w->title_conns = (unsigned)-1;
	set_title(w);
}

static void
supervisor_gone(struct worker *w, const char *why)
{
	if (w->hung_up)
		return;
	w->hung_up = true;
	fdh_dispatch_watch_enable(w->d, w->ctl, false);
	if (!w->draining)
		fdh_log(FDH_LOG_WARN, "%s; finishing the connections held, then exiting", why);
	w->draining = true;
	fdh_dispatch_drain(w->d);
}

/* 0 sent, -EAGAIN full (try later), another -errno: the supervisor is gone. */
static int
send_msg(struct worker *w, const struct fdh_ctl_msg *m)
{
	int r;

	if (w->hung_up)
		return 0;	/* nobody left to tell */
	r = fdh_ctl_send(w->ctl, m, NULL, 0);
	if (r < 0 && r != -EAGAIN) {
		char why[128];

		snprintf(why, sizeof(why), "control socket: %s", strerror(-r));
		supervisor_gone(w, why);
		return r;
	}
	return r;
}

/*
 * Sends what is due: ended connections, in full batches while lazy, else
 * each at once, and all with the answer to a FLUSH (its last batch
 * carries F_FLUSHED, ids or none); then a RETIRE.  Stops at the first
 * -EAGAIN.
 */
static void
flush(struct worker *w)
{
	struct fdh_ctl_msg m;

	while (w->unsent.len >= (w->lazy ? FDH_CTL_CLOSED_MAX : 1) || w->flush_asked) {
		uint32_t n = w->unsent.len < FDH_CTL_CLOSED_MAX ? (uint32_t)w->unsent.len :
		    FDH_CTL_CLOSED_MAX, i;

		if (!w->lazy && !w->flush_asked) {
			/* What a supervisor that never sent F_LAZY understands. */
			fdh_ctl_init(&m, FDH_CTL_CONN_CLOSED);
			m.u.closed.id = w->unsent.v[w->unsent.head];
			n = 1;
		} else {
			fdh_ctl_init(&m, FDH_CTL_CONNS_CLOSED);
			m.u.batch.n = n;
			for (i = 0; i < n; i++)
				m.u.batch.ids[i] = w->unsent.v[(w->unsent.head + i) % w->unsent.cap];
			if (w->flush_asked && n == w->unsent.len)
				m.h.flags |= FDH_CTL_F_FLUSHED;
		}
		if (send_msg(w, &m) == -EAGAIN)
			return;
		for (i = 0; i < n; i++)
			idq_pop(&w->unsent);
		if (m.h.flags & FDH_CTL_F_FLUSHED)
			w->flush_asked = false;
	}
	if (w->retire_pending) {
		fdh_ctl_init(&m, FDH_CTL_RETIRE);
		m.u.retire.nrequests = fdh_dispatch_nrequests(w->d);
		if (send_msg(w, &m) == -EAGAIN)
			return;
		w->retire_pending = false;
	}
}

static void
report_closed(struct worker *w, uint64_t id)
{
	if (idq_push(&w->unsent, id) < 0) {
		/* The supervisor would count this connection forever: better restart. */
		fdh_log(FDH_LOG_ERROR, "out of memory; exiting");
		exit(1);
	}
	flush(w);
}

static void
on_conn_closed(struct fdh_dispatch *d, uint64_t id, void *arg)
{
	struct worker *w = arg;

	(void)d;
	report_closed(w, id);
	set_title(w);
}

static void
on_request_done(struct fdh_dispatch *d, void *arg)
{
	struct worker *w = arg;

	/* Counting is free; the one message goes when the count is reached. */
	if (w->max_requests == 0 || w->retire_sent ||
	    fdh_dispatch_nrequests(d) < w->max_requests)
		return;
	w->retire_sent = true;
	w->retire_pending = true;
	flush(w);
}

/* Consumes fds (the connection [, its peer's pidfd]), on failure too. */
static void
on_new_conn(struct worker *w, const struct fdh_ctl_conn *c, int *fds, size_t nfds)
{
	struct fdh_peer peer = {
		.pid = (pid_t)c->pid,
		.uid = (uid_t)c->uid,
		.gid = (gid_t)c->gid,
	};
	int r;

	r = fdh_dispatch_add_conn(w->d, fds[0], &peer, nfds == 2 ? fds[1] : -1, c->id);
	if (r < 0) {
		fdh_log(FDH_LOG_WARN, "connection from pid %ld dropped: %s", (long)peer.pid,
		    strerror(-r));
		report_closed(w, c->id);
		return;
	}
	set_title(w);
}

static void
on_drain(struct worker *w)
{
	if (!w->draining)
		fdh_log(FDH_LOG_DEBUG, "draining");
	w->draining = true;
	fdh_dispatch_drain(w->d);
}

/* Every ended connection is reported, the last report marked F_FLUSHED. */
static void
on_flush(struct worker *w)
{
	w->lazy = false;
	w->flush_asked = true;
}

/* What the loop does with one message; consumes fds. */
static void
on_message(struct worker *w, const struct fdh_ctl_msg *m, int *fds, size_t nfds)
{
	switch (m->h.type) {
	case FDH_CTL_NEW_CONN:
		/* The supervisor has room again: it stopped asking. */
		w->lazy = (m->h.flags & FDH_CTL_F_LAZY) != 0;
		on_new_conn(w, &m->u.conn, fds, nfds);
		break;
	case FDH_CTL_DRAIN:
		on_drain(w);
		break;
	case FDH_CTL_FLUSH:
		on_flush(w);
		break;
	default:
		/* An OPEN_REPLY for a request that timed out: its fd is nobody's. */
		fdh_close_fds(fds, nfds);
		break;
	}
}

/* Lets poll() return for what fdh_broker_open() held. */
static void
wake_loop(struct worker *w)
{
	uint64_t one = 1;

	/* Full (2^64 - 2 wake-ups pending) cannot happen; either way it wakes. */
	if (write(w->wake, &one, sizeof(one)) < 0)
		return;
}

/* Handles, in order, what arrived while a handler waited for the broker. */
static void
handle_held(struct worker *w)
{
	size_t i;

	for (i = 0; i < w->nheld; i++)
		on_new_conn(w, &w->held[i].conn, w->held[i].fds, w->held[i].nfds);
	w->nheld = 0;
	if (w->held_flush) {
		w->held_flush = false;
		on_flush(w);
	}
	if (w->held_drain) {
		w->held_drain = false;
		on_drain(w);
	}
	if (w->held_failure[0] != '\0') {
		supervisor_gone(w, w->held_failure);
		w->held_failure[0] = '\0';
	}
}

/*
 * Keeps a message for the loop, consuming fds.  Out of memory, a
 * connection is given up and reported closed, never leaked.
 */
static void
hold(struct worker *w, const struct fdh_ctl_msg *m, int *fds, size_t nfds)
{
	if (m->h.type == FDH_CTL_DRAIN) {
		w->held_drain = true;
		/*
		 * The response being made now is the last on its connection.
		 * In the service's init hook there is no dispatcher yet, nor a
		 * response: the drain is only remembered, and the loop's first
		 * turn (the wake-up below) drains a worker that never served.
		 */
		if (w->d != NULL)
			fdh_dispatch_drain_soon(w->d);
	} else if (m->h.type == FDH_CTL_FLUSH) {
		/* Answered by the loop's flush(), after what was held before it. */
		w->held_flush = true;
	} else if (m->h.type != FDH_CTL_NEW_CONN) {
		fdh_close_fds(fds, nfds);	/* a late OPEN_REPLY, as in on_message() */
		return;
	} else {
		if (w->nheld == w->cheld) {
			size_t n = w->cheld ? w->cheld * 2 : 16;
			struct held_conn *v = reallocarray(w->held, n, sizeof(*v));

			if (v == NULL) {
				fdh_close_fds(fds, nfds);
				fdh_log(FDH_LOG_WARN, "connection from pid %ld dropped: out of memory",
				    (long)m->u.conn.pid);
				report_closed(w, m->u.conn.id);
				return;
			}
			w->held = v;
			w->cheld = n;
		}
		w->held[w->nheld].conn = m->u.conn;
		memcpy(w->held[w->nheld].fds, fds, nfds * sizeof(int));
		w->held[w->nheld].nfds = nfds;
		w->nheld++;
	}
	wake_loop(w);
}

static void
held_free(struct worker *w)
{
	size_t i;

	for (i = 0; i < w->nheld; i++)
		fdh_close_fds(w->held[i].fds, w->held[i].nfds);
	free(w->held);
	w->held = NULL;
	w->nheld = w->cheld = 0;
}

static int
on_wake(struct fdh_dispatch *d, int fd, void *arg)
{
	struct worker *w = arg;
	uint64_t n;

	(void)d;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		return -errno;
	handle_held(w);
	flush(w);
	return 0;
}

/* Reads and handles one message from the supervisor, if one is queued. */
static void
read_ctl(struct worker *w, int fd)
{
	struct fdh_ctl_msg m;
	int fds[FDH_CTL_MAX_FDS];
	const char *why = NULL;
	size_t nfds = 0;
	char buf[160];
	int r;

	r = fdh_ctl_recv(fd, FDH_CTL_WORKER, &m, fds, &nfds, &why);
	if (r == 0) {
		supervisor_gone(w, "the supervisor closed the control socket");
	} else if (r < 0 && r != -EAGAIN) {
		snprintf(buf, sizeof(buf), "bad control message: %s",
		    r == -EBADMSG ? why : strerror(-r));
		supervisor_gone(w, buf);
	} else if (r > 0) {
		on_message(w, &m, fds, nfds);
	}
}

static int
on_ctl(struct fdh_dispatch *d, int fd, void *arg)
{
	struct worker *w = arg;

	/* What was held came first; the wake-up may not have been seen yet. */
	handle_held(w);
	/*
	 * One message per turn of the loop: the supervisor mostly has one
	 * connection queued, and reading on until EAGAIN would put a system
	 * call between that connection and its first request.  With more
	 * queued, the loop reports the socket again at once, and connections
	 * already held get served meanwhile.  A NEW_CONN brings two fds: read
	 * at RLIMIT_NOFILE, the kernel would drop them and the connection with
	 * them.  Short of descriptors, the rest waits in the socket until
	 * connections end.
	 */
	if (!w->hung_up && fdh_dispatch_fd_room(d))
		read_ctl(w, fd);
	flush(w);
	return 0;
}

/* The worker while fdh_worker_main() runs; the broker's way to its socket. */
static struct worker *current;

/* Waits until the control socket has events, or the deadline: 0, -ETIMEDOUT. */
static int
wait_ctl(struct worker *w, short events, int64_t deadline)
{
	struct pollfd p = { .fd = w->ctl, .events = events };
	int64_t left = deadline - fdh_mono_ms();

	if (left <= 0)
		return -ETIMEDOUT;
	if (poll(&p, 1, (int)left) == -1 && errno != EINTR)
		return -errno;
	return 0;
}

/*
 * Reads the control socket until the OPEN_REPLY for id arrives; returns
 * its fd or its error.  Everything else is held for the loop.
 */
static int
broker_wait(struct worker *w, uint32_t id, int64_t deadline)
{
	for (;;) {
		struct fdh_ctl_msg m;
		int fds[FDH_CTL_MAX_FDS];
		const char *why = NULL;
		size_t nfds = 0;
		int r;

		r = fdh_ctl_recv(w->ctl, FDH_CTL_WORKER, &m, fds, &nfds, &why);
		if (r == -EAGAIN) {
			r = wait_ctl(w, POLLIN, deadline);
			if (r < 0)
				return r;
			continue;
		}
		if (r <= 0) {
			/* The loop gives up on the supervisor, as on_ctl() would. */
			if (r == 0)
				snprintf(w->held_failure, sizeof(w->held_failure),
				    "the supervisor closed the control socket");
			else
				snprintf(w->held_failure, sizeof(w->held_failure),
				    "bad control message: %s", r == -EBADMSG ? why : strerror(-r));
			wake_loop(w);
			return -EPIPE;
		}
		if (m.h.type == FDH_CTL_OPEN_REPLY && m.u.open_reply.id == id)
			return nfds == 1 ? fds[0] : m.u.open_reply.error;
		hold(w, &m, fds, nfds);
	}
}

/* O_TRUNC as open(2) applies it: to a regular file only. */
static int
truncate_regular(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == -1)
		return -errno;
	if (S_ISREG(st.st_mode) && st.st_size != 0 && ftruncate(fd, 0) == -1)
		return -errno;
	return 0;
}

int
fdh_broker_open(const char *path, int flags)
{
	struct worker *w = current;
	struct fdh_ctl_msg m;
	int64_t deadline;
	size_t len;
	int r, err;

	if (path == NULL || path[0] != '/')
		return -EINVAL;
	len = strlen(path);
	if (len >= sizeof(m.u.open.path))
		return -ENAMETOOLONG;
	/* Alone, there is nobody to ask, and no sandbox that forbids opening. */
	if (w == NULL)
		return -ENOTSUP;
	if (w->hung_up || w->held_failure[0] != '\0')
		return -EPIPE;
	fdh_ctl_init(&m, FDH_CTL_OPEN);
	/* 0 is never an id: a zeroed reply cannot pass for an answer. */
	if (++w->open_id == 0)
		w->open_id = 1;
	m.u.open.id = w->open_id;
	m.u.open.flags = flags;
	memcpy(m.u.open.path, path, len + 1);
	deadline = fdh_mono_ms() + BROKER_TIMEOUT_MS;
	while ((r = fdh_ctl_send(w->ctl, &m, NULL, 0)) == -EAGAIN) {
		r = wait_ctl(w, POLLOUT, deadline);
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	r = broker_wait(w, m.u.open.id, deadline);
	/* The broker leaves the truncation, which can take long, to us (broker.c). */
	if (r >= 0 && (flags & O_TRUNC) && (err = truncate_regular(r)) < 0) {
		close(r);
		return err;
	}
	return r;
}

static int
on_signal(struct fdh_dispatch *d, int fd, void *arg)
{
	struct worker *w = arg;
	struct signalfd_siginfo si;

	(void)d;
	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		/* The whole group got it (a service manager stopping): drain too. */
		if (!w->draining)
			fdh_log(FDH_LOG_INFO, "SIG%s: draining", sigabbrev_np((int)si.ssi_signo));
		w->draining = true;
		fdh_dispatch_drain(w->d);
	}
	return 0;
}

static unsigned long long
env_number(const char *name, unsigned long long dflt)
{
	const char *v = getenv(name);
	unsigned long long n;
	char *end;

	if (v == NULL || *v < '0' || *v > '9')
		return dflt;
	errno = 0;
	n = strtoull(v, &end, 10);
	return *end != '\0' || errno ? dflt : n;
}

void
fdh_worker_log_setup(void)
{
	char role[32];
	int level;

	level = getenv(FDH_ENV_LOG_LEVEL) ? fdh_log_level_parse(getenv(FDH_ENV_LOG_LEVEL)) : -1;
	snprintf(role, sizeof(role), "worker %u", (unsigned)env_number(FDH_ENV_WORKER_ID, 0));
	fdh_log_setup(level < 0 ? FDH_LOG_INFO : (enum fdh_log_level)level, role);
}

int
fdh_worker_env_limits(struct fdh_limits *l)
{
	const char *v = getenv(FDH_ENV_LIMITS);

	return v == NULL ? 0 : fdh_ctl_limits_parse(l, v, NULL);
}

/* The control socket from the environment, checked; -1 when unusable. */
static int
control_fd(void)
{
	unsigned long long n = env_number(FDH_ENV_CONTROL_FD, (unsigned long long)-1);
	int type = 0;
	socklen_t len = sizeof(type);

	if (n < 3 || n > 65535)
		return -1;
	if (getsockopt((int)n, SOL_SOCKET, SO_TYPE, &type, &len) == -1 ||
	    type != SOCK_SEQPACKET)
		return -1;
	/* Ours alone: nothing a handler might start inherits it. */
	if (fcntl((int)n, F_SETFD, FD_CLOEXEC) == -1)
		return -1;
	return (int)n;
}

static int
open_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
		return -1;
	return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

int
fdh_worker_main(const struct fdh_service *svc, const struct fdh_limits *limits,
    int argc, char **argv)
{
	struct worker w = { .ctl = -1, .sfd = -1, .wake = -1, .title_conns = (unsigned)-1 };
	struct fdh_dispatch_hooks hooks = {
		.conn_closed = on_conn_closed,
		.request_done = on_request_done,
		.fds_refused = fdh_service_warn_fds_refused,
		.arg = &w,
	};
	struct fdh_ctl_msg m;
	const char *slash, *sandbox;
	char closer_title[64], why[512];
	int r, status = 1;

	/* First: the argument strings are about to become the title's room. */
	fdh_title_init(argc, argv);
	w.id = (unsigned)env_number(FDH_ENV_WORKER_ID, 0);
	w.max_requests = env_number(FDH_ENV_MAX_REQUESTS, 0);
	fdh_worker_log_setup();
	w.name = svc->name;
	if (w.name == NULL) {
		w.name = argc > 0 && argv[0] ? argv[0] : "service";
		slash = strrchr(w.name, '/');
		w.name = slash ? slash + 1 : w.name;
	}
	w.ctl = control_fd();
	if (w.ctl == -1) {
		fdh_log(FDH_LOG_ERROR, "%s does not name a control socket; start workers with fdhttpd",
		    FDH_ENV_CONTROL_FD);
		return 1;
	}
	/* Only fdhttpd's --no-sandbox leaves it off. */
	sandbox = getenv(FDH_ENV_SANDBOX);
	w.sandboxed = sandbox == NULL || strcmp(sandbox, "0") != 0;
	/* The handlers have no use for these, and nothing they run should see them. */
	unsetenv(FDH_ENV_SANDBOX);
	unsetenv(FDH_ENV_CONTROL_FD);
	unsetenv(FDH_ENV_LIMITS);
	unsetenv(FDH_ENV_WORKER_ID);
	unsetenv(FDH_ENV_MAX_REQUESTS);
	unsetenv(FDH_ENV_LOG_LEVEL);
	title_init(&w);
	w.wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w.wake == -1) {
		fdh_log(FDH_LOG_ERROR, "eventfd: %s", strerror(errno));
		goto out;
	}
	/* From here on fdh_broker_open() can reach the supervisor, init included. */
	current = &w;

	/* Exit status 2, as for arguments refused: a respawn cannot mend it, fdhttpd stops. */
	if (fdh_route_table_explain(svc->routes, svc->nroutes, why, sizeof(why)) < 0) {
		fdh_log(FDH_LOG_ERROR, "%s: %s; not starting", w.name, why);
		status = 2;
		goto out;
	}
	if (svc->init) {
		r = svc->init(argc, argv, svc->userdata);
		if (r < 0) {
			fdh_log(FDH_LOG_ERROR, "%s: init failed: %s", w.name, strerror(-r));
			status = r == -EINVAL ? 2 : 1;
			goto out;
		}
	}
	r = fdh_dispatch_new(svc, limits, &w.d);
	if (r < 0) {
		fdh_log(FDH_LOG_ERROR, "%s: %s", w.name, r == -EINVAL ?
		    "invalid route table or limits" : strerror(-r));
		goto out;
	}
	fdh_dispatch_set_hooks(w.d, &hooks);
	/* Past --max-requests no connection is kept alive: the successor serves what follows. */
	fdh_dispatch_retire_after(w.d, w.max_requests);
	w.sfd = open_signals();
	if (w.sfd == -1) {
		fdh_log(FDH_LOG_ERROR, "signalfd: %s", strerror(errno));
		goto out;
	}
	if (fdh_dispatch_watch(w.d, w.ctl, on_ctl, &w) < 0 ||
	    fdh_dispatch_watch(w.d, w.sfd, on_signal, &w) < 0 ||
	    fdh_dispatch_watch(w.d, w.wake, on_wake, &w) < 0) {
		fdh_log(FDH_LOG_ERROR, "cannot watch the control socket");
		goto out;
	}
	fdh_dispatch_watch_brings_fds(w.d, w.ctl);
	w.title_conns = (unsigned)-1;
	set_title(&w);
	/* Now: the filter forbids making processes. */
	(void)snprintf(closer_title, sizeof(closer_title), "fdhttpd: closer of worker %u", w.id);
	r = fdh_closer_start(w.sandboxed, closer_title);
	if (r < 0) {
		fdh_log(FDH_LOG_ERROR, "closer: %s", strerror(-r));
		goto out;
	}
	/*
	 * The service is initialised and no connection has been seen: the
	 * seccomp filter closes in now, before READY.  The supervisor checks
	 * that it did before it hands over a connection.
	 */
	if (w.sandboxed) {
		const char *bad = NULL;

		r = fdh_sandbox_apply(svc->syscalls, &bad);
		if (r == -EINVAL && bad != NULL) {
			fdh_log(FDH_LOG_ERROR, "%s: the service's syscalls name '%s', which is not "
			    "a system call here; not starting", w.name, bad);
			status = FDH_EXIT_SANDBOX;
			goto out;
		}
		if (r < 0) {
			fdh_log(FDH_LOG_ERROR, "%s: seccomp filter: %s; not starting", w.name,
			    strerror(-r));
			status = FDH_EXIT_SANDBOX;
			goto out;
		}
	}
	fdh_ctl_init(&m, FDH_CTL_READY);
	r = fdh_ctl_send(w.ctl, &m, NULL, 0);
	if (r < 0) {
		fdh_log(FDH_LOG_ERROR, "sending READY: %s", strerror(-r));
		goto out;
	}
	fdh_log(FDH_LOG_DEBUG, "%s ready", w.name);
	r = fdh_dispatch_run(w.d);
	if (r < 0) {
		fdh_log(FDH_LOG_ERROR, "poll: %s", strerror(-r));
		goto out;
	}
	status = 0;
out:
	current = NULL;
	held_free(&w);
	fdh_dispatch_free(w.d);
	if (w.sfd != -1)
		close(w.sfd);
	if (w.wake != -1)
		close(w.wake);
	close(w.ctl);
	free(w.unsent.v);
	return status;
}
