/*
 * The supervisor's loop: one poll() over the signalfd, the listening
 * socket, every worker's control socket and the refused connections still
 * lingering.  Accepted connections go to the least-loaded ready worker
 * with the peer's credentials; the supervisor closes its copy once the
 * send succeeded.  It never blocks on a worker: control sockets are
 * written with MSG_DONTWAIT and a full one just makes that worker skipped.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "closer.h"
#include "ctl.h"
#include "log.h"
#include "notify.h"
#include "supervisor.h"

/* Linux 6.5; older headers lack the number, which never changes. */
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

/* Out of fds or memory: how long to leave the backlog alone. */
#define ACCEPT_PAUSE_MS		100

static bool
gid_allowed(const struct options *o, gid_t gid)
{
	size_t i;

	for (i = 0; i < o->nallow_gids; i++)
		if (o->allow_gids[i] == gid)
			return true;
	return false;
}

/*
 * --allow-uid / --allow-gid: either list admits.  A group counts whether
 * it is the peer's primary group or one of its supplementary groups
 * (SO_PEERGROUPS), as file permissions would see it.
 */
static bool
peer_allowed(const struct options *o, int fd, const struct ucred *cred)
{
	gid_t groups[256];
	socklen_t len = sizeof(groups);
	size_t i;

	if (o->nallow_uids == 0 && o->nallow_gids == 0)
		return true;
	for (i = 0; i < o->nallow_uids; i++)
		if (o->allow_uids[i] == cred->uid)
			return true;
	if (gid_allowed(o, cred->gid))
		return true;
	if (o->nallow_gids == 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == -1)
		return false;	/* more than 256 groups: the primary one decides */
	for (i = 0; i < len / sizeof(gid_t); i++)
		if (gid_allowed(o, groups[i]))
			return true;
	return false;
}

/* The peer's pidfd, or -1 where the kernel has none (it is then never asked again). */
static int
peer_pidfd(struct sup *s, int fd)
{
	socklen_t len = sizeof(int);
	int pidfd = -1;

	if (!s->pidfd_supported)
		return -1;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == -1) {
		if (errno == ENOPROTOOPT || errno == EINVAL)
			s->pidfd_supported = false;
		return -1;	/* the peer may have exited already: credentials still go */
	}
	return pidfd;
}

/*
 * Our copies of connections handed to workers go to the closer, a batch at
 * a time.  Closed here, a copy would be the last one whenever its worker
 * closed first, as a compromised worker can on purpose: the socket's end
 * would then release, in our loop, the fds its client left queued on it,
 * and a TCP socket with SO_LINGER among them would hold the loop for its
 * linger time.  A batch, not each at once: a message to the closer and its
 * wake-up for every connection would cost each new one 10 to 30 us.  A
 * worker that ends a connection itself shuts it down first, so that its
 * client sees the end without waiting for the batch.
 */
static void
handed_flush(struct sup *s)
{
	fdh_closer_queue_all(s->handed, s->nhanded);
	s->nhanded = 0;
}

static void
handed_add(struct sup *s, int fd)
{
	if (s->nhanded == 0)
		s->handed_since = fdh_mono_ms();
	s->handed[s->nhanded++] = fd;
	if (s->nhanded == SUP_HANDED_BATCH)
		handed_flush(s);
}

/*
 * Sends c to a worker.  Consumes c's fds when it returns true; when no
 * worker can take it now, returns false and c stays the caller's.
 */
static bool
hand_off(struct sup *s, struct pending_conn *c)
{
	struct proc *p;

	if (s->send_retry_at != 0 && fdh_mono_ms() < s->send_retry_at)
		return false;
	s->send_retry_at = 0;
	while ((p = workers_pick(s)) != NULL) {
		struct fdh_ctl_msg m;
		int fds[2] = { c->fd, c->pidfd };
		int r;

		fdh_ctl_init(&m, FDH_CTL_NEW_CONN);
		m.h.flags = FDH_CTL_F_LAZY;
		m.u.conn.id = c->id;
		m.u.conn.pid = (int32_t)c->peer.pid;
		m.u.conn.uid = (uint32_t)c->peer.uid;
		m.u.conn.gid = (uint32_t)c->peer.gid;
		if (c->pidfd != -1)
			m.h.flags |= FDH_CTL_F_PIDFD;
		r = workers_send(p, &m, fds, c->pidfd != -1 ? 2 : 1);
		if (r == 0) {
			/* The worker has its own copies now. */
			handed_add(s, c->fd);
			if (c->pidfd != -1)
				close(c->pidfd);
			c->fd = c->pidfd = -1;
			conns_assign(s, c->id, p);
			/* It stops reporting each close at once on reading this. */
			p->eager = false;
			/* Twice --max-requests, without overflow: see workers_retire_unasked(). */
			if (++p->nhanded >= s->o->max_requests && s->o->max_requests != 0 &&
			    p->nhanded - s->o->max_requests == s->o->max_requests)
				workers_retire_unasked(p);
			if (s->send_short) {
				log_debug("handing over connections again");
				s->send_short = false;
			}
			return true;
		}
		if (ctl_send_temporary(r)) {
			int64_t now = fdh_mono_ms();

			/*
			 * Every worker would fail alike: keep the connection,
			 * leave the backlog alone, and try again shortly.  At a
			 * limit, hand-offs fail and succeed by turns: one line
			 * per SUP_SEND_WARN_MS says so, not one per turn.
			 */
			if (s->send_warned_ms == 0 || now - s->send_warned_ms >= SUP_SEND_WARN_MS) {
				log_warn("handing over a connection: %s; holding it and pausing "
				    "accepts, retrying every %d ms", strerror(-r), SUP_SEND_RETRY_MS);
				s->send_warned_ms = now;
			}
			s->send_short = true;
			s->send_retry_at = now + SUP_SEND_RETRY_MS;
			return false;
		}
		if (r == -EAGAIN) {
			log_debug("worker %u (pid %ld): control socket full; skipping it",
			    p->id, (long)p->pid);
			p->blocked = true;
			continue;
		}
		workers_ctl_failed(s, p, -r);
	}
	return false;
}

static void
drop_pending(struct sup *s)
{
	if (!s->have_pending)
		return;
	fdh_closer_queue(s->pending.fd);	/* it may hold the client's fds */
	if (s->pending.pidfd != -1)
		close(s->pending.pidfd);
	conns_drop(s, s->pending.id);
	s->have_pending = false;
}

/*
 * Hands over an allowed connection, or refuses it over --max-conns-per-uid.
 * may_ask: at the cap, first ask workers for closes they hold back and
 * decide again once they answered (the counts may be high, never low).
 */
static void
place(struct sup *s, int fd, const struct ucred *cred, bool may_ask)
{
	struct pending_conn c = { .fd = fd, .pidfd = -1 };
	unsigned n;

	n = conns_uid_count(s, cred->uid);
	if (n >= s->o->max_conns_per_uid && may_ask && workers_flush(s)) {
		s->recheck_fd = fd;
		s->recheck_cred = *cred;
		s->recheck_at = fdh_mono_ms() + RECHECK_MS;
		return;
	}
	if (n >= s->o->max_conns_per_uid) {
		reject_log(s, REFUSED_TOO_MANY,
		    "refused pid %ld uid %u: it has %u connections open (--max-conns-per-uid)",
		    (long)cred->pid, (unsigned)cred->uid, n);
		reject_conn(s, fd, 503, "uid %u has too many connections open (limit %u)",
		    (unsigned)cred->uid, s->o->max_conns_per_uid);
		return;
	}
	if (conns_open(s, cred->uid, &c.id) < 0) {
		log_error("out of memory; closing a connection");
		fdh_closer_queue(fd);
		return;
	}
	c.peer.pid = cred->pid;
	c.peer.uid = cred->uid;
	c.peer.gid = cred->gid;
	c.pidfd = peer_pidfd(s, fd);
	if (!hand_off(s, &c)) {
		/* Every worker went full or blocked meanwhile: hold it, stop accepting. */
		s->pending = c;
		s->have_pending = true;
	}
}

/* Checks one accepted connection and hands it over, or refuses it. */
static void
admit(struct sup *s, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) {
		log_warn("SO_PEERCRED: %s; closing the connection", strerror(errno));
		fdh_closer_queue(fd);
		return;
	}
	if (!peer_allowed(s->o, fd, &cred)) {
		reject_log(s, REFUSED_NOT_ALLOWED,
		    "refused pid %ld uid %u gid %u: not in --allow-uid/--allow-gid",
		    (long)cred.pid, (unsigned)cred.uid, (unsigned)cred.gid);
		reject_conn(s, fd, 403, "uid %u is not allowed to connect to this service",
		    (unsigned)cred.uid);
		return;
	}
	place(s, fd, &cred, true);
}

/* The connection held for workers' FLUSH answers: decided once they are in. */
static void
recheck_step(struct sup *s, int64_t now)
{
	int fd = s->recheck_fd;

	if (fd == -1 || (workers_flush(s) && now < s->recheck_at))
		return;
	s->recheck_fd = -1;
	place(s, fd, &s->recheck_cred, false);
}

static void
drop_recheck(struct sup *s)
{
	if (s->recheck_fd != -1)
		fdh_closer_queue(s->recheck_fd);
	s->recheck_fd = -1;
}

static bool
can_accept(const struct sup *s, int64_t now)
{
	return !s->stopping && s->sock->fd != -1 && !s->have_pending && s->recheck_fd == -1 &&
	    now >= s->accept_pause_until && workers_have_room(s);
}

/*
 * One connection per poll() turn.  Connections mostly arrive one at a
 * time, and a second accept4() would only answer EAGAIN: a system call on
 * every connection's path, and a Unix listening socket has no cheaper way
 * to tell that its backlog is empty (FIONREAD is refused on it).  When more
 * are queued, poll() reports the socket again at once; the turn between
 * lets workers' messages through, which no budget then has to ensure.
 */
static void
accept_one(struct sup *s)
{
	int fd;

	if (!can_accept(s, fdh_mono_ms()))
		return;
	do
		fd = accept4(s->sock->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	while (fd == -1 && (errno == EINTR || errno == ECONNABORTED));
	if (fd != -1) {
		admit(s, fd);
		return;
	}
	switch (errno) {
	case EAGAIN:
		return;
	case EMFILE:
	case ENFILE:
	case ENOBUFS:
	case ENOMEM:
		/* The backlog keeps them; try again shortly. */
		log_warn("accept: %s; pausing %d ms", strerror(errno), ACCEPT_PAUSE_MS);
		break;
	default:
		log_error("accept: %s", strerror(errno));
		break;
	}
	s->accept_pause_until = fdh_mono_ms() + ACCEPT_PAUSE_MS;
}

/* sig: the signal that asked for it, or 0 when the supervisor gives up itself. */
static void
begin_shutdown(struct sup *s, int sig)
{
	if (s->stopping) {
		log_info("SIG%s again: already stopping", sigabbrev_np(sig));
		return;
	}
	s->stopping = true;
	if (sig)
		log_info("SIG%s: stopping; workers get %u ms to finish", sigabbrev_np(sig),
		    s->o->grace_ms);
	notify_send("STOPPING=1");
	/* New clients are refused at once instead of waiting in a dead backlog. */
	sockfile_stop(s->sock, !s->sock->activated);
	handed_flush(s);
	drop_pending(s);
	drop_recheck(s);
	reject_free(s);
	workers_shutdown(s);
}

/*
 * A fatal error at run time (poll() failing, memory running out): the
 * stop SIGTERM makes, without the loop.  New clients are refused at once,
 * and every worker drains, is killed at --grace if still running, and is
 * reaped, before main's undo removes the socket file and the pidfile.
 */
static void
stop_on_fatal(void *arg)
{
	struct sup *s = arg;

	if (!s->stopping)
		begin_shutdown(s, 0);
	workers_wait(s);
}

static void
on_signals(struct sup *s)
{
	struct signalfd_siginfo si;

	while (read(s->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			workers_reap(s);
			break;
		case SIGTERM:
		case SIGINT:
			begin_shutdown(s, (int)si.ssi_signo);
			break;
		case SIGHUP:
			if (s->stopping)
				log_info("SIGHUP: stopping; no workers are replaced");
			else
				workers_restart(s);
			break;
		case SIGUSR1:
		case SIGUSR2:
			log_info("SIG%s: not used by fdhttpd; ignored", sigabbrev_np((int)si.ssi_signo));
			break;
		default:
			break;
		}
	}
	/* Coalesced SIGCHLDs, and children that went before we looked. */
	workers_reap(s);
}

static int
poll_timeout(const struct sup *s, int64_t now)
{
	int64_t t = workers_next_timer(s), r = reject_next_timer(s);

	if (r && (t == 0 || r < t))
		t = r;
	if (s->accept_pause_until > now && (t == 0 || s->accept_pause_until < t))
		t = s->accept_pause_until;
	if (s->have_pending && s->send_retry_at != 0 && (t == 0 || s->send_retry_at < t))
		t = s->send_retry_at;
	if (s->recheck_fd != -1 && (t == 0 || s->recheck_at < t))
		t = s->recheck_at;
	if (fdh_closer_held() > 0 && (t == 0 || now + SUP_CLOSER_RETRY_MS < t))
		t = now + SUP_CLOSER_RETRY_MS;
	if (s->nhanded > 0 && (t == 0 || s->handed_since + SUP_HANDED_MS < t))
		t = s->handed_since + SUP_HANDED_MS;
	if (t == 0)
		return -1;
	return t <= now ? 0 : (int)(t - now > 60000 ? 60000 : t - now);
}

/* What each pollfd stands for: fixed slots first, then workers, then lingers. */
enum { PFD_SIGNAL, PFD_LISTEN, PFD_FIXED };

static int
run(struct sup *s)
{
	struct pollfd *pfds = NULL;
	struct proc **pprocs = NULL;
	size_t cap = 0;

	while (!(s->stopping && s->nprocs == 0)) {
		size_t n = PFD_FIXED, nworkers, k, i;
		int64_t now = fdh_mono_ms();
		int r;

		if (s->have_pending && !s->stopping && hand_off(s, &s->pending))
			s->have_pending = false;
		recheck_step(s, now);
		/* Every worker looks full: the closes they hold back may say otherwise. */
		if (!s->stopping && (s->have_pending || !workers_have_room(s)))
			workers_flush(s);
		workers_replace_step(s);
		if (s->nhanded > 0 && now >= s->handed_since + SUP_HANDED_MS)
			handed_flush(s);
		/* What a stuck closer could not take waits here, in our table. */
		if (fdh_closer_held() > 0)
			fdh_closer_flush();

		/* Tested for NULL too: were the sum ever to wrap, pfds would be used unallocated. */
		if (pfds == NULL || cap < PFD_FIXED + s->nprocs + SUP_MAX_LINGER) {
			cap = PFD_FIXED + s->nprocs + SUP_MAX_LINGER + 16;
			free(pfds);
			free(pprocs);
			pfds = calloc(cap, sizeof(*pfds));
			/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
			pprocs = calloc(cap, sizeof(*pprocs));
			if (pfds == NULL || pprocs == NULL)
				fatal("out of memory");
		}
		pfds[PFD_SIGNAL] = (struct pollfd){ .fd = s->sigfd, .events = POLLIN };
		/* While every worker is full the backlog waits in the kernel. */
		pfds[PFD_LISTEN] = (struct pollfd){
			.fd = can_accept(s, now) ? s->sock->fd : -1, .events = POLLIN };
		for (k = 0; k < s->nprocs; k++) {
			struct proc *p = s->procs[k];

			if (p->ctl == -1)
				continue;
			pprocs[n] = p;
			/* Held, its OPEN waits unread: workers_timers() looks again. */
			pfds[n++] = (struct pollfd){ .fd = p->ctl,
			    .events = (short)((p->broker_held ? 0 : POLLIN) |
			    (p->blocked || p->drain_pending ? POLLOUT : 0)) };
		}
		nworkers = n;
		for (i = 0; i < s->nlingers; i++)
			pfds[n++] = (struct pollfd){ .fd = s->lingers[i].fd, .events = POLLIN };

		r = poll(pfds, n, poll_timeout(s, now));
		if (r == -1) {
			if (errno == EINTR)
				continue;
			fatal("poll: %s", strerror(errno));
		}
		/*
		 * Workers first: nothing below frees a proc until on_signals()
		 * reaps, last.  Lingers in reverse, as ending one moves the last.
		 */
		for (k = PFD_FIXED; k < nworkers; k++)
			if (pfds[k].revents)
				workers_on_ctl(s, pprocs[k], pfds[k].revents);
		for (i = n; i > nworkers; i--)
			if (pfds[i - 1].revents && i - 1 - nworkers < s->nlingers)
				reject_on_event(s, i - 1 - nworkers);
		if (pfds[PFD_LISTEN].revents)
			accept_one(s);
		now = fdh_mono_ms();
		workers_timers(s, now);
		reject_timers(s, now);
		if (pfds[PFD_SIGNAL].revents)
			on_signals(s);
		if (s->exit_status != 0 && !s->stopping)
			begin_shutdown(s, 0);
	}
	free(pfds);
	free(pprocs);
	return s->exit_status;
}

int
supervisor_run(const struct options *o, struct sockfile *sock, int sigfd)
{
	struct fatal_undo undo;
	struct sup s;
	int r;

	memset(&s, 0, sizeof(s));
	s.o = o;
	s.sock = sock;
	s.sigfd = sigfd;
	s.pidfd_supported = true;
	s.recheck_fd = -1;
	r = workers_init(&s);
	if (r < 0)
		fatal("starting workers: %s", strerror(-r));
	fatal_push(&undo, stop_on_fatal, &s);
	r = run(&s);
	fatal_pop(&undo);
	handed_flush(&s);
	drop_pending(&s);
	drop_recheck(&s);
	reject_free(&s);
	workers_free(&s);
	conns_free(&s);
	return r;
}
