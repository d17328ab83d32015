/*
 * Worker lifecycle: start, READY, hand-off choice, replacement (SIGHUP,
 * --max-requests), drain, death and respawn with backoff.  Every message a
 * worker sends is checked; a worker that breaks the protocol is killed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/sockios.h>

#include "broker.h"
#include "closer.h"
#include "ctl.h"
#include "log.h"
#include "notify.h"
#include "spawn.h"
#include "supervisor.h"

/*
 * What the kernel charges the sending end of a control socket for each
 * type the supervisor sends, indexed from FDH_CTL_NEW_CONN: the record's
 * truesize, counted in SIOCOUTQ until the worker has read the record.  It
 * follows from the record's length alone (fds travel beside it), so it is
 * measured once, on a socketpair nobody reads, with the fewest fds a type
 * takes.  Every error errs one way: a cost counted short (or 0, unmeasured)
 * makes answers look unread longer, never read too soon.
 */
static uint32_t send_cost[FDH_CTL_OPEN_REPLY - FDH_CTL_NEW_CONN + 1];

static int
measure_send_costs(void)
{
	static const enum fdh_ctl_type types[] = {
		FDH_CTL_NEW_CONN, FDH_CTL_DRAIN, FDH_CTL_FLUSH, FDH_CTL_OPEN_REPLY,
	};
	struct fdh_ctl_msg m;
	int sv[2], before = 0, after = 0, r = 0;
	size_t i;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
		return -errno;
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		fdh_ctl_init(&m, types[i]);
		if (types[i] == FDH_CTL_OPEN_REPLY)
			m.u.open_reply.error = -EACCES;
		/* A NEW_CONN carries an fd: any will do, and sv[0] is at hand. */
		r = ioctl(sv[0], SIOCOUTQ, &before) == -1 ? -errno :
		    fdh_ctl_send(sv[0], &m, sv, types[i] == FDH_CTL_NEW_CONN ? 1 : 0);
		if (r == 0 && ioctl(sv[0], SIOCOUTQ, &after) == -1)
			r = -errno;
		if (r < 0)
			break;
		if (after > before)
			send_cost[types[i] - FDH_CTL_NEW_CONN] = (uint32_t)(after - before);
	}
	/* Unread, the records go with sv[1]; the fd in one, sv[0], goes then. */
	close(sv[0]);
	close(sv[1]);
	return r;
}

int
workers_send(struct proc *p, const struct fdh_ctl_msg *m, const int *fds, size_t nfds)
{
	int r = fdh_ctl_send(p->ctl, m, fds, nfds);

	if (r == 0 && m->h.type >= FDH_CTL_NEW_CONN && m->h.type <= FDH_CTL_OPEN_REPLY)
		p->ctl_sent += send_cost[m->h.type - FDH_CTL_NEW_CONN];
	return r;
}

static struct proc *
proc_new(struct sup *s, unsigned slot)
{
	struct proc *p;
	int r;

	if (s->nprocs == s->cprocs) {
		size_t n = s->cprocs ? s->cprocs * 2 : 16;
		/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
		struct proc **v = reallocarray(s->procs, n, sizeof(*v));

		if (v == NULL) {
			log_error("worker %u: cannot start: out of memory", slot + 1);
			return NULL;
		}
		s->procs = v;
		s->cprocs = n;
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		log_error("worker %u: cannot start: out of memory", slot + 1);
		return NULL;
	}
	p->id = slot + 1;
	p->gen = s->gen;
	p->state = PROC_STARTING;
	p->started_ms = fdh_mono_ms();
	/*
	 * A service whose init never returns would otherwise hold its slot for
	 * good, and a rolling restart with it: killed, it is started again
	 * with the backoff of any worker that dies, the old one serving.
	 */
	if (s->o->start_timeout_ms)
		p->kill_at = p->started_ms + s->o->start_timeout_ms;
	r = spawn_worker(s->o, p->id, &p->pid, &p->ctl);
	if (r < 0) {
		log_error("worker %u: cannot start: %s", p->id, strerror(-r));
		free(p);
		return NULL;
	}
	s->procs[s->nprocs++] = p;
	log_info("worker %u (pid %ld) started", p->id, (long)p->pid);
	return p;
}

static int64_t
backoff_ms(unsigned failures)
{
	int64_t d;

	if (failures == 0)
		return 0;
	d = (int64_t)SUP_BACKOFF_FIRST_MS << (failures > 7 ? 6 : failures - 1);
	return d > SUP_BACKOFF_MAX_MS ? SUP_BACKOFF_MAX_MS : d;
}

static void slot_start(struct sup *s, unsigned i);

/*
 * A worker of slot i died or could not start: start another, at once the
 * first time, then after a delay doubling up to SUP_BACKOFF_MAX_MS while
 * that keeps happening.
 */
static void
slot_again(struct sup *s, unsigned i)
{
	struct slot *sl = &s->slots[i];
	int64_t d = backoff_ms(sl->failures++);

	if (d == 0) {
		/* A successor is retried by workers_replace_step. */
		if (sl->cur == NULL)
			slot_start(s, i);
		return;
	}
	sl->respawn_at = fdh_mono_ms() + d;
	log_info("worker %u: starting again in %lld ms", i + 1, (long long)d);
}

static void
slot_start(struct sup *s, unsigned i)
{
	struct proc *p = proc_new(s, i);

	if (p == NULL)
		slot_again(s, i);
	else
		s->slots[i].cur = p;
}

int
workers_init(struct sup *s)
{
	unsigned i;
	int r;

	r = measure_send_costs();
	if (r < 0)
		log_warn("measuring control messages: %s; a worker's broker answers count as read "
		    "only once it has read all it was sent", strerror(-r));
	s->nslots = s->o->workers;
	s->slots = calloc(s->nslots, sizeof(*s->slots));
	if (s->slots == NULL)
		return -ENOMEM;
	for (i = 0; i < s->nslots; i++)
		slot_start(s, i);
	return 0;
}

void
workers_free(struct sup *s)
{
	size_t i;

	for (i = 0; i < s->nprocs; i++) {
		if (s->procs[i]->ctl != -1)
			fdh_closer_queue(s->procs[i]->ctl);
		free(s->procs[i]);
	}
	free(s->procs);
	free(s->slots);
	s->procs = NULL;
	s->slots = NULL;
	s->nprocs = s->cprocs = 0;
}

static bool
eligible(const struct sup *s, const struct proc *p)
{
	/*
	 * Held at BROKER_MAX_UNREAD, a worker is not reading its socket: a
	 * connection would wait there behind its answers, two more fds in flight.
	 */
	return p != NULL && p->state == PROC_READY && p->ctl != -1 && !p->blocked &&
	    !p->broker_held && p->nconns < s->o->limits.max_conns;
}

/*
 * The least-loaded ready worker, a retiring one only when no other has
 * room.  The search starts after the last one chosen, so that equal loads
 * take turns.
 */
struct proc *
workers_pick(struct sup *s)
{
	struct proc *best = NULL;
	unsigned k, besti = 0;
	uint64_t bestkey = UINT64_MAX;

	for (k = 0; k < s->nslots; k++) {
		unsigned i = (s->rr + k) % s->nslots;
		struct proc *p = s->slots[i].cur;
		uint64_t key;

		if (!eligible(s, p))
			continue;
		key = p->nconns + (p->retiring ? (uint64_t)UINT32_MAX : 0);
		if (key < bestkey) {
			best = p;
			bestkey = key;
			besti = i;
		}
	}
	if (best)
		s->rr = (besti + 1) % s->nslots;
	return best;
}

bool
workers_have_room(const struct sup *s)
{
	unsigned i;

	for (i = 0; i < s->nslots; i++)
		if (eligible(s, s->slots[i].cur))
			return true;
	return false;
}

static void
proc_close_ctl(struct proc *p)
{
	/*
	 * Closing our end also releases connections still queued in it, and
	 * whatever fds the worker sent: the closer's wait, not ours.
	 */
	if (p->ctl != -1) {
		fdh_closer_queue(p->ctl);
		p->ctl = -1;
	}
	p->blocked = false;
	p->drain_pending = false;
	p->flush_wait = false;	/* no answer can come now */
	p->broker_held = false;
	p->nanswers = 0;	/* in flight no more: gone with the socket */
}

static void
proc_kill(struct proc *p)
{
	if (!p->killed && kill(p->pid, SIGKILL) == 0)
		p->killed = true;
	proc_close_ctl(p);
}

static void
proc_send_drain(struct proc *p)
{
	struct fdh_ctl_msg m;
	int r;

	fdh_ctl_init(&m, FDH_CTL_DRAIN);
	r = workers_send(p, &m, NULL, 0);
	if (r == -EAGAIN) {
		p->drain_pending = true;	/* sent on POLLOUT */
		return;
	}
	p->drain_pending = false;
	if (ctl_send_temporary(r)) {
		/*
		 * Short of memory, with room in the socket: POLLOUT would spin.
		 * A worker drains on SIGTERM as on DRAIN, and a signal needs
		 * no buffer.
		 */
		log_warn("worker %u (pid %ld): sending DRAIN: %s; sending SIGTERM instead", p->id,
		    (long)p->pid, strerror(-r));
		if (kill(p->pid, SIGTERM) == -1)
			log_warn("worker %u (pid %ld): SIGTERM: %s", p->id, (long)p->pid,
			    strerror(errno));
		return;
	}
	if (r < 0) {
		log_warn("worker %u (pid %ld): sending DRAIN: %s", p->id, (long)p->pid,
		    strerror(-r));
		proc_close_ctl(p);
	}
}

/* Asks p to finish what it has in flight and exit; SIGKILL after --grace. */
static void
proc_drain(struct sup *s, struct proc *p, const char *why)
{
	if (p->state == PROC_DRAINING)
		return;
	p->state = PROC_DRAINING;
	p->retiring = false;
	if (!p->killed)
		p->kill_at = fdh_mono_ms() + s->o->grace_ms;
	log_info("worker %u (pid %ld) draining: %s", p->id, (long)p->pid, why);
	if (p->ctl != -1)
		proc_send_drain(p);
}

static void
check_all_ready(struct sup *s)
{
	unsigned i;

	if (s->notified_ready)
		return;
	for (i = 0; i < s->nslots; i++)
		if (s->slots[i].cur == NULL || !s->slots[i].cur->was_ready)
			return;
	s->notified_ready = true;
	log_info("ready: %u worker%s of %s", s->nslots, s->nslots == 1 ? "" : "s",
	    s->o->service);
	notify_send("READY=1");
}

/* The value of "key:\t" in a /proc/PID/status text, "?" when absent. */
static void
status_field(const char *text, const char *key, char *ret, size_t len)
{
	size_t klen = strlen(key);
	const char *p = text;

	snprintf(ret, len, "?");
	for (; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, key, klen) == 0 && p[klen] == ':') {
			p += klen + 1;
			p += strspn(p, " \t");
			snprintf(ret, len, "%.*s", (int)strcspn(p, "\n"), p);
			return;
		}
	}
}

/*
 * Whether the kernel says p runs under a seccomp filter (Seccomp: 2) with
 * no_new_privs (NoNewPrivs: 1).  The worker's own word (READY) is not
 * enough: a service built against a library without the sandbox, or one
 * whose filter failed silently, must not face clients.  p is our unreaped
 * child, so its pid cannot name another process meanwhile.
 */
static bool
sandbox_verified(const struct proc *p, char *why, size_t len)
{
	char path[64], text[8192], seccomp[16], nnp[16];
	size_t n = 0;
	ssize_t k;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)p->pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1) {
		snprintf(why, len, "%s: %s", path, strerror(errno));
		return false;
	}
	while (n < sizeof(text) - 1 && (k = read(fd, text + n, sizeof(text) - 1 - n)) > 0)
		n += (size_t)k;
	close(fd);
	text[n] = '\0';
	status_field(text, "Seccomp", seccomp, sizeof(seccomp));
	status_field(text, "NoNewPrivs", nnp, sizeof(nnp));
	snprintf(why, len, "Seccomp: %s, NoNewPrivs: %s", seccomp, nnp);
	return strcmp(seccomp, "2") == 0 && strcmp(nnp, "1") == 0;
}

static void
on_ready(struct sup *s, struct proc *p)
{
	struct slot *sl = &s->slots[p->id - 1];
	char why[128];

	if (!s->o->no_sandbox && !sandbox_verified(p, why, sizeof(why))) {
		log_error("worker %u (pid %ld) is not sandboxed (%s); killing it", p->id,
		    (long)p->pid, why);
		p->unsandboxed = true;
		proc_kill(p);
		return;
	}
	p->state = PROC_READY;
	p->was_ready = true;
	p->kill_at = 0;
	log_info("worker %u (pid %ld) ready", p->id, (long)p->pid);
	if (sl->next == p) {
		struct proc *old = sl->cur;

		/* Serving first, draining second: the slot never goes empty. */
		sl->cur = p;
		sl->next = NULL;
		if (old)
			proc_drain(s, old, old->retiring ? "served --max-requests" : "replaced");
	}
	check_all_ready(s);
}

/*
 * --max-requests as far as the supervisor can tell: it never sees a
 * request, only the connections it hands over.  A worker handed twice as
 * many connections as it may answer requests that has not said it
 * answered them (RETIRE) is replaced all the same: a compromised one
 * would never say so.  An honest one says so first unless most of its
 * connections carried no request; replaced early, it loses nothing.  A
 * compromised worker holding a keep-alive connection keeps it until it
 * ends: nothing the supervisor sees counts its requests.
 */
void
workers_retire_unasked(struct proc *p)
{
	if (p->state != PROC_READY || p->retiring)
		return;
	p->retiring = true;
	log_warn("worker %u (pid %ld) was handed %llu connections and has not said it answered "
	    "--max-requests: replacing it", p->id, (long)p->pid, p->nhanded);
}

static void
protocol_error(struct proc *p, const char *why)
{
	log_error("worker %u (pid %ld): bad control message: %s; killing it", p->id,
	    (long)p->pid, why);
	proc_kill(p);
}

static void
on_message(struct sup *s, struct proc *p, const struct fdh_ctl_msg *m)
{
	uint32_t i;

	switch (m->h.type) {
	case FDH_CTL_READY:
		if (p->state == PROC_DRAINING)
			break;	/* drained while starting: it exits once it reads DRAIN */
		if (p->state != PROC_STARTING) {
			protocol_error(p, "READY twice");
			break;
		}
		on_ready(s, p);
		break;
	case FDH_CTL_CONN_CLOSED:
		if (conns_close(s, m->u.closed.id, p) < 0)
			protocol_error(p, "CONN_CLOSED for a connection it does not hold");
		break;
	case FDH_CTL_CONNS_CLOSED:
		for (i = 0; i < m->u.batch.n; i++) {
			if (conns_close(s, m->u.batch.ids[i], p) < 0) {
				protocol_error(p, "CONNS_CLOSED for a connection it does not hold");
				return;
			}
		}
		if (m->h.flags & FDH_CTL_F_FLUSHED)
			p->flush_wait = false;
		break;
	case FDH_CTL_RETIRE:
		/* Without it, a replacement the worker could ask for as often as it liked. */
		if (s->o->max_requests == 0) {
			protocol_error(p, "RETIRE without --max-requests");
			break;
		}
		if (p->state == PROC_READY && !p->retiring) {
			p->retiring = true;
			log_info("worker %u (pid %ld) answered %llu requests (--max-requests): replacing it",
			    p->id, (long)p->pid, (unsigned long long)m->u.retire.nrequests);
		}
		break;
	case FDH_CTL_OPEN:
		broker_on_open(s, p, &m->u.open);
		break;
	default:
		protocol_error(p, "unexpected type");
		break;
	}
}

/* The control socket of p hung up or failed: it is exiting, or broken. */
void
workers_ctl_failed(struct sup *s, struct proc *p, int err)
{
	(void)s;
	proc_close_ctl(p);
	if (p->state == PROC_DRAINING || p->killed)
		return;
	if (err)
		log_warn("worker %u (pid %ld): control socket: %s", p->id, (long)p->pid,
		    strerror(err));
	/* Exiting on its own is logged when reaped; give it a moment to. */
	p->kill_at = fdh_mono_ms() + SUP_HANGUP_KILL_MS;
}

void
workers_on_ctl(struct sup *s, struct proc *p, short revents)
{
	struct fdh_ctl_msg m;
	int fds[FDH_CTL_MAX_FDS];
	const char *why = NULL;
	size_t nfds = 0;
	int r;

	if (p->ctl != -1 && (revents & POLLOUT)) {
		p->blocked = false;
		if (p->drain_pending)
			proc_send_drain(p);
	}
	if (p->ctl == -1 || !(revents & (POLLIN | POLLHUP | POLLERR)))
		return;
	/* A hang-up is read as usual: it ends the worker's socket, cap or not. */
	if (!(revents & (POLLHUP | POLLERR)) && broker_hold(p))
		return;
	/*
	 * One message per poll() turn: a worker mostly has one queued, and
	 * reading on until EAGAIN would cost a system call each time.  With
	 * more queued, poll() reports the socket again at once, and one
	 * chatty worker cannot starve the others.
	 */
	r = fdh_ctl_recv(p->ctl, FDH_CTL_SUPERVISOR, &m, fds, &nfds, &why);
	if (r == -EAGAIN)
		return;
	if (r == -EBADMSG) {
		protocol_error(p, why);
		return;
	}
	if (r <= 0) {
		workers_ctl_failed(s, p, r < 0 ? -r : 0);
		return;
	}
	on_message(s, p, &m);	/* no supervisor-bound type carries fds */
}

static void
log_exit(const struct proc *p, int status)
{
	/* Drained workers are expected to go; any other death is news. */
	enum fdh_log_level level = p->state == PROC_DRAINING ? FDH_LOG_INFO : FDH_LOG_WARN;
	const char *sig;

	if (WIFEXITED(status)) {
		fdh_log(level, "worker %u (pid %ld) exited with status %d", p->id,
		    (long)p->pid, WEXITSTATUS(status));
	} else if (WIFSIGNALED(status)) {
		sig = sigabbrev_np(WTERMSIG(status));
		fdh_log(level, "worker %u (pid %ld) killed by signal %d (SIG%s)%s%s", p->id,
		    (long)p->pid, WTERMSIG(status), sig ? sig : "?",
		    WCOREDUMP(status) ? ", core dumped" : "",
		    WTERMSIG(status) == SIGSYS ? ": a system call its sandbox forbids (the kernel "
		    "log's 'type=1326 ... syscall=N' names it; see docs/security.md)" : "");
	}
}

static void
on_death(struct sup *s, struct proc *p, int status)
{
	int64_t lived = fdh_mono_ms() - p->started_ms;
	unsigned i = p->id - 1;
	struct slot *sl = &s->slots[i];

	log_exit(p, status);
	conns_release_proc(s, p);
	proc_close_ctl(p);
	if (sl->cur != p && sl->next != p)
		return;		/* drained: replaced already, or shutting down */
	if (sl->cur == p && sl->next != NULL) {
		/* Its successor was starting anyway: it takes the slot. */
		sl->cur = sl->next;
		sl->next = NULL;
		return;
	}
	if (sl->cur == p)
		sl->cur = NULL;
	else
		sl->next = NULL;
	/* Stopping already, or about to: every worker dying alike says why once. */
	if (s->stopping || s->exit_status != 0)
		return;
	/*
	 * Before the service ever came up, a usage error (exit status 2), a
	 * sandbox that cannot be set up (FDH_EXIT_SANDBOX), a SERVICE that
	 * cannot be run (127) or one that does not sandbox itself would
	 * repeat with every respawn: stop instead, as a bad fdhttpd option
	 * would have.  The service's 2 and 127 become ours, as fdhttpd(8)
	 * says, so that a unit's status tells a bad command line from a
	 * missing executable.
	 */
	if (!s->notified_ready && !p->was_ready && p->unsandboxed) {
		log_error("worker %u: %s does not sandbox itself (a libfdhttp without the "
		    "sandbox?); stopping", p->id, s->o->service);
		s->exit_status = 1;
		return;
	}
	if (!s->notified_ready && !p->was_ready && WIFEXITED(status) &&
	    (WEXITSTATUS(status) == 2 || WEXITSTATUS(status) == FDH_EXIT_SANDBOX ||
	    WEXITSTATUS(status) == 127)) {
		log_error("worker %u: %s %s; stopping", p->id, s->o->service,
		    WEXITSTATUS(status) == 2 ? "refused its arguments" :
		    WEXITSTATUS(status) == FDH_EXIT_SANDBOX ? "could not be sandboxed" :
		    "could not be started");
		s->exit_status = WEXITSTATUS(status) == FDH_EXIT_SANDBOX ? 1 : WEXITSTATUS(status);
		return;
	}
	/* Only a worker that keeps dying young waits longer each time. */
	if (p->was_ready && lived >= SUP_HEALTHY_MS)
		sl->failures = 0;
	slot_again(s, i);
}

/*
 * The closer (closer.c) dies before us only if killed.  Another is made
 * at once: without one, what clients send is closed on this loop, where
 * a lingering socket among it would stop everything.
 */
static void
closer_replace(pid_t pid, int status)
{
	const char *sig = WIFSIGNALED(status) ? sigabbrev_np(WTERMSIG(status)) : NULL;
	int r;

	if (WIFSIGNALED(status))
		log_warn("closer of the supervisor (pid %ld) killed by signal %d (SIG%s); "
		    "starting another", (long)pid, WTERMSIG(status), sig ? sig : "?");
	else
		log_warn("closer of the supervisor (pid %ld) exited with status %d; starting another",
		    (long)pid, WEXITSTATUS(status));
	r = fdh_closer_start(true, SUP_CLOSER_TITLE);
	if (r < 0)
		log_error("closer: %s; what clients send is closed here from now on",
		    strerror(-r));
}

void
workers_reap(struct sup *s)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		size_t k;

		if (fdh_closer_reaped(pid)) {
			closer_replace(pid, status);
			continue;
		}

		for (k = 0; k < s->nprocs; k++) {
			struct proc *p = s->procs[k];

			if (p->pid != pid)
				continue;
			on_death(s, p, status);
			s->procs[k] = s->procs[--s->nprocs];
			free(p);
			break;
		}
	}
}

void
workers_timers(struct sup *s, int64_t now)
{
	unsigned i;
	size_t k;

	for (i = 0; i < s->nslots; i++) {
		struct slot *sl = &s->slots[i];

		if (sl->respawn_at == 0 || now < sl->respawn_at)
			continue;
		sl->respawn_at = 0;
		if (!s->stopping && sl->cur == NULL)
			slot_start(s, i);
		/* With cur still there, it was a successor: workers_replace_step retries. */
	}
	for (k = 0; k < s->nprocs; k++) {
		struct proc *p = s->procs[k];

		if (p->broker_held && now >= p->broker_check_at)
			broker_check(p, now);

		if (p->kill_at == 0 || now < p->kill_at || p->killed)
			continue;
		if (p->state == PROC_DRAINING)
			log_warn("worker %u (pid %ld) still running %u ms after DRAIN (--grace): killing it",
			    p->id, (long)p->pid, s->o->grace_ms);
		else if (p->state == PROC_STARTING && p->ctl != -1)
			log_warn("worker %u (pid %ld) not ready %u ms after it started "
			    "(--start-timeout): killing it", p->id, (long)p->pid,
			    s->o->start_timeout_ms);
		else
			log_warn("worker %u (pid %ld) lost its control socket but did not exit: killing it",
			    p->id, (long)p->pid);
		proc_kill(p);
	}
}

int64_t
workers_next_timer(const struct sup *s)
{
	int64_t t = 0;
	unsigned i;
	size_t k;

	for (i = 0; i < s->nslots; i++)
		if (s->slots[i].respawn_at && (t == 0 || s->slots[i].respawn_at < t))
			t = s->slots[i].respawn_at;
	for (k = 0; k < s->nprocs; k++) {
		const struct proc *p = s->procs[k];

		if (p->kill_at && !p->killed && (t == 0 || p->kill_at < t))
			t = p->kill_at;
		if (p->broker_held && (t == 0 || p->broker_check_at < t))
			t = p->broker_check_at;
	}
	return t;
}

/*
 * Replaces, one at a time, every worker older than the last SIGHUP or
 * retiring after --max-requests: a successor is started, and only once
 * it is READY is the old one drained.  One at a time keeps at most one
 * extra worker starting, and every slot serving throughout.
 */
void
workers_replace_step(struct sup *s)
{
	unsigned i;

	if (s->stopping)
		return;
	/*
	 * One at a time: a successor starting, or one waiting out the
	 * backoff after the last died (its slot still served by cur).  A
	 * build that does not come up is then tried in one slot only, not in
	 * each slot in turn while the first waits.
	 */
	for (i = 0; i < s->nslots; i++)
		if (s->slots[i].next != NULL ||
		    (s->slots[i].cur != NULL && s->slots[i].respawn_at != 0))
			return;
	for (i = 0; i < s->nslots; i++) {
		struct slot *sl = &s->slots[i];
		struct proc *p = sl->cur;

		if (p == NULL || sl->respawn_at != 0 || p->state != PROC_READY)
			continue;
		if (p->gen == s->gen && !p->retiring)
			continue;
		sl->next = proc_new(s, i);
		if (sl->next == NULL)
			slot_again(s, i);
		return;
	}
	/*
	 * A reload's end is news: the signal's sender learns nothing else of
	 * it, and a new build that does not come up never gets this far.
	 */
	if (!s->restarting)
		return;
	for (i = 0; i < s->nslots; i++) {
		const struct proc *p = s->slots[i].cur;

		if (p == NULL || p->gen != s->gen || p->state != PROC_READY)
			return;
	}
	s->restarting = false;
	if (s->nslots == 1)
		log_info("SIGHUP: the worker replaced");
	else
		log_info("SIGHUP: all %u workers replaced", s->nslots);
}

void
workers_restart(struct sup *s)
{
	s->gen++;
	s->restarting = true;
	if (s->nslots == 1)
		log_info("SIGHUP: replacing the worker");
	else
		log_info("SIGHUP: replacing all %u workers, one at a time", s->nslots);
}

/*
 * Asks every worker that may hold back ended connections to report them
 * (FLUSH); the counts are exact once no answer is outstanding.  Returns
 * whether one is.  A worker already asked reports at once until its next
 * NEW_CONN, so that asking is rare even while the counts sit at a limit.
 */
bool
workers_flush(struct sup *s)
{
	int64_t now = fdh_mono_ms();
	bool waiting = false;
	size_t k;

	for (k = 0; k < s->nprocs; k++) {
		struct proc *p = s->procs[k];
		struct fdh_ctl_msg m;
		int r;

		if (p->ctl != -1 && p->nconns > 0 && !p->eager) {
			fdh_ctl_init(&m, FDH_CTL_FLUSH);
			r = workers_send(p, &m, NULL, 0);
			if (r == 0) {
				p->eager = p->flush_wait = true;
				p->flush_sent_ms = now;
			} else if (r != -EAGAIN && !ctl_send_temporary(r)) {
				workers_ctl_failed(s, p, -r);
			}
			/*
			 * Full: a worker that reads nothing would not answer either.
			 * Short of memory: asked again on the next turn.
			 */
		}
		waiting |= p->flush_wait && now - p->flush_sent_ms < RECHECK_MS;
	}
	return waiting;
}

void
workers_shutdown(struct sup *s)
{
	unsigned i;
	size_t k;

	for (i = 0; i < s->nslots; i++)
		s->slots[i].respawn_at = 0;
	for (k = 0; k < s->nprocs; k++)
		proc_drain(s, s->procs[k], "shutting down");
}

/*
 * What run() does once stopping, for a fatal exit that has no loop left:
 * waits for every worker to exit, killing those still running at their
 * --grace deadline.  No control socket is polled now, so a DRAIN waiting
 * for room in one would never go: SIGTERM drains a worker the same way.
 */
void
workers_wait(struct sup *s)
{
	sigset_t chld;
	size_t k;

	for (k = 0; k < s->nprocs; k++) {
		struct proc *p = s->procs[k];

		if (p->drain_pending && kill(p->pid, SIGTERM) == 0)
			p->drain_pending = false;
	}
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	for (;;) {
		struct timespec ts;
		int64_t now, t;

		workers_reap(s);
		if (s->nprocs == 0)
			return;
		now = fdh_mono_ms();
		workers_timers(s, now);
		/*
		 * Blocked (signals.c), SIGCHLD stays pending until taken here:
		 * a worker that exited since the reap ends the wait at once.
		 */
		t = workers_next_timer(s);
		if (t == 0) {
			(void)sigwaitinfo(&chld, NULL);	/* only killed ones are left */
			continue;
		}
		t = t > now ? t - now : 0;
		ts.tv_sec = (time_t)(t / 1000);
		ts.tv_nsec = (long)(t % 1000) * 1000000;
		(void)sigtimedwait(&chld, NULL, &ts);
	}
}
