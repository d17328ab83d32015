/*
 * The dispatcher's loop: one epoll set holding the watched fds and every
 * connection, timers kept in one list per timeout kind.  Each kind has a
 * single duration, so appending on (re)arm keeps a list in deadline order
 * and the next deadline is the earliest of three heads: no heap, no scan.
 *
 * epoll, not poll(): poll() hands the kernel every descriptor on every
 * call, so a worker holding hundreds of idle keep-alive connections paid
 * for all of them on each request (about 55 ns apiece here).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "attr.h"
#include "clock.h"
#include "closer.h"
#include "engine.h"
#include "fdpass.h"

/* Reads of a fresh request land here; a request larger than this spans reads. */
#define SCRATCH_MIN (64 * 1024)
/* How often a dispatcher short of descriptors looks again, in ms. */
#define STARVED_RETRY_MS 50
/* Events taken per epoll_wait(); more stay queued for the next turn. */
#define MAX_EVENTS 64
/*
 * A last call (TIMER_LAST): how long a connection answered as a drain
 * began may take to ask again, a refused one lingers, and a request found
 * queued as a connection ends may take to be read.
 */
#define LAST_CALL_MS 1000

static unsigned
timeout_of(const struct fdh_dispatch *d, enum fdh_timer_kind k)
{
	switch (k) {
	case TIMER_IDLE:	return d->lim.idle_timeout_ms;
	case TIMER_REQUEST:	return d->lim.request_timeout_ms;
	case TIMER_LAST:	return LAST_CALL_MS;
	default:		return d->lim.write_timeout_ms;
	}
}

void
fdh_dispatch_timer_disarm(struct fdh_dispatch *d, struct fdh_conn *c)
{
	struct fdh_timer_list *l;

	if (c->timer == TIMER_NONE)
		return;
	l = &d->timers[c->timer];
	if (c->tprev)
		c->tprev->tnext = c->tnext;
	else
		l->head = c->tnext;
	if (c->tnext)
		c->tnext->tprev = c->tprev;
	else
		l->tail = c->tprev;
	c->tprev = c->tnext = NULL;
	c->timer = TIMER_NONE;
}

void
fdh_dispatch_timer_arm(struct fdh_dispatch *d, struct fdh_conn *c, enum fdh_timer_kind k)
{
	struct fdh_timer_list *l = &d->timers[k];

	/*
	 * Already last on this list, as the one busy connection among idle
	 * ones is after each answer: the later deadline keeps the order.
	 */
	if (l->tail == c) {
		c->deadline = d->now + timeout_of(d, k);
		return;
	}
	fdh_dispatch_timer_disarm(d, c);
	c->timer = (uint8_t)k;
	c->deadline = d->now + timeout_of(d, k);
	c->tprev = l->tail;
	c->tnext = NULL;
	if (l->tail)
		l->tail->tnext = c;
	else
		l->head = c;
	l->tail = c;
}

void
fdh_dispatch_conn_events(struct fdh_dispatch *d, struct fdh_conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (c->events == events)
		return;
	/*
	 * Not expected to fail on a descriptor in the set; if it did, the
	 * connection would be woken for what it no longer waits for (a
	 * writable socket, forever): it goes instead.
	 */
	if (epoll_ctl(d->epfd, EPOLL_CTL_MOD, c->fd, &ev) == -1) {
		fdh_conn_close(d, c);
		return;
	}
	c->events = events;
}

/*
 * Watch i is in the set when it is on, and, if its reads bring fds, while
 * there is room for them.  A watch that could not be added (ENOMEM, the
 * user's epoll watch limit) is tried again on every turn.
 */
static void
watch_sync(struct fdh_dispatch *d, unsigned i)
{
	struct fdh_watch *w = &d->watch[i];
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = i };
	bool want = w->fd != -1 && w->on && !(w->brings_fds && d->starved);

	if (want == w->armed)
		return;
	if (epoll_ctl(d->epfd, want ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, w->fd, &ev) == -1 &&
	    (want || errno != ENOENT)) {
		d->retry = true;
		return;
	}
	w->armed = want;
}

/*
 * Also what retry stands for besides the watches: fds waiting for the
 * closer.  Out of line: it runs when starvation begins or ends, or on a
 * retry, and inlined it would cost fdh_dispatch_fd_room() an instruction
 * on every read.
 */
static __attribute__((noinline)) void
watches_sync(struct fdh_dispatch *d)
{
	unsigned i;

	d->retry = fdh_closer_held() > 0;
	for (i = 0; i < FDH_DISPATCH_MAX_WATCH; i++)
		watch_sync(d, i);
}

/*
 * What failed before, tried again: fds the closer could not take (its
 * socket full while its runner caught up), which would otherwise wait in
 * an idle loop until the next close, and their clients for an EOF; then
 * the watches, which set retry again for whatever still fails.
 */
static __attribute__((noinline, cold)) void
retry_now(struct fdh_dispatch *d)
{
	if (fdh_closer_held() > 0)
		fdh_closer_flush();
	watches_sync(d);
}

void
fdh_dispatch_close_ended(struct fdh_dispatch *d)
{
	struct fdh_conn *c;
	int queued;

	for (c = d->closed; c; c = c->next) {
		if (c->closing_fd >= 0) {
			/*
			 * Unread input may hold fds, and one may wait in its
			 * close: the closer's wait.  Read to its end (a
			 * client that hung up, the common way out) it holds
			 * none, and closes here without a system call more.
			 */
			if (c->drained) {
				close(c->closing_fd);
			} else {
				/*
				 * Ended from this side: the supervisor may hold a
				 * copy a while yet (supervisor.c, handed_flush()),
				 * and the client is to see the end now.
				 */
				(void)shutdown(c->closing_fd, SHUT_RDWR);
				/*
				 * Shut, it takes nothing more; with nothing
				 * queued, our close releases no client's fd
				 * and waits on no one.  Closed here, it cannot
				 * stay in our table when the closer is refused
				 * more fds in flight (ETOOMANYREFS: clients
				 * holding answers with fds unread can bring
				 * this user there).
				 */
				if (ioctl(c->closing_fd, FIONREAD, &queued) == 0 && queued == 0)
					close(c->closing_fd);
				else
					fdh_closer_queue(c->closing_fd);
			}
			c->closing_fd = -1;
			d->open_fds--;
		}
		if (c->pidfd >= 0) {
			close(c->pidfd);
			c->pidfd = -1;
			d->open_fds--;
		}
	}
}

static void
free_closed(struct fdh_dispatch *d)
{
	struct fdh_conn *c;

	fdh_dispatch_close_ended(d);
	while ((c = d->closed) != NULL) {
		d->closed = c->next;
		free(c);
	}
}

static int
count_open_fds(struct fdh_dispatch *d)
{
	struct dirent *e;
	int n = 0;

	if (!d->fddir)
		return -ENOENT;
	rewinddir(d->fddir);
	while ((e = readdir(d->fddir)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	return n;
}

static void
set_starved(struct fdh_dispatch *d, bool starved)
{
	struct fdh_conn *c, *next;

	if (d->starved == starved)
		return;
	d->starved = starved;
	watches_sync(d);
	for (c = d->conns; c; c = next) {
		next = c->next;
		fdh_dispatch_conn_events(d, c, fdh_conn_wanted(d, c));
	}
}

/*
 * Room for the fds one read may bring (d->fd_reserve), plus one for an
 * accept or a memfd?  The estimate decides while it is far below the limit
 * (a quarter of it, or 64, spare beyond the reserve).  Nearer,
 * /proc/self/fd is counted before every read, so fds a handler or the
 * service opened on its own are seen too: the estimate only knows those the
 * engine handled.
 */
FDH_NO_CANARY bool
fdh_dispatch_fd_room(struct fdh_dispatch *d)
{
	bool ok;
	int n;

	/* fds the closer could not take yet are still in the table, uncounted in open_fds. */
	if ((long long)d->open_fds + d->other_fds + fdh_closer_held() <= d->fd_estimate_max) {
		ok = true;
	} else {
		fdh_dispatch_close_ended(d);	/* near the limit, a count must not see them */
		/*
		 * Starved, this runs again on the retry timer: the fds a stuck
		 * closer left with us leave as soon as it takes them again.
		 */
		if (fdh_closer_held() > 0)
			fdh_closer_flush();
		n = count_open_fds(d);
		if (n >= 0)
			d->other_fds = n - d->open_fds - (int)fdh_closer_held();
		ok = n < 0 || (rlim_t)n + d->fd_reserve <= d->nofile;
	}
	/* Starved: stop reading until descriptors free up; then read again. */
	if (d->starved == ok)
		set_starved(d, !ok);
	return ok;
}

/*
 * How many free descriptors a read needs.  One message may carry
 * FDH_MAX_FDS_CEILING fds whatever max_fds says, and those the table has no
 * room for the kernel drops on this thread, inside recvmsg(): the last
 * close of a lingering socket among them would stall every connection (the
 * ones past max_fds that were received go to the closer instead).  So the
 * ceiling is kept free, plus two for the fds a NEW_CONN brings.  A process
 * whose limit cannot spare that beside a working set of FD_RESERVE_WORKING
 * (a service run alone under a low soft limit; a worker of fdhttpd always
 * can, spawn_nofile()) keeps room for max_fds alone, as it always could:
 * reading nothing would serve no one.
 */
#define FD_RESERVE_WORKING	64

static rlim_t
fd_reserve(rlim_t nofile, unsigned max_fds)
{
	rlim_t full = (rlim_t)FDH_MAX_FDS_CEILING + 2;

	return nofile >= full + FD_RESERVE_WORKING ? full : (rlim_t)max_fds + 2;
}

/* Up to how many open descriptors fdh_dispatch_fd_room() trusts its estimate. */
static long long
fd_estimate_max(rlim_t nofile, rlim_t reserve)
{
	rlim_t spare = nofile / 4 > 64 ? nofile / 4 : 64;

	if (nofile == RLIM_INFINITY || nofile > (rlim_t)LLONG_MAX)
		return LLONG_MAX;
	return (long long)nofile - (long long)(reserve + spare);
}

FDH_NO_CANARY void
fdh_dispatch_clock(struct fdh_dispatch *d)
{
	d->now = (uint64_t)fdh_mono_ms();
}

int
fdh_dispatch_new(const struct fdh_service *svc, const struct fdh_limits *limits,
    struct fdh_dispatch **ret_d)
{
	struct fdh_dispatch *d;
	struct rlimit rl;
	size_t bad, i;
	int r, n;

	if (limits->max_fds > FDH_MAX_FDS_CEILING || limits->max_head == 0 ||
	    limits->max_conns == 0)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->lim = *limits;
	d->svc = svc;
	r = fdh_route_table_init(&d->routes, svc->routes, svc->nroutes, &bad);
	if (r < 0) {
		free(d);
		return r;
	}
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d->epfd == -1) {
		r = -errno;
		fdh_route_table_free(&d->routes);
		free(d);
		return r;
	}
	r = -ENOMEM;
	d->events = calloc(MAX_EVENTS, sizeof(*d->events));
	d->scratch_cap = d->lim.max_head > SCRATCH_MIN ? d->lim.max_head : SCRATCH_MIN;
	d->scratch = malloc(d->scratch_cap);
	d->rfds = calloc(d->lim.max_fds + 1, sizeof(*d->rfds));
	d->hdrs = calloc(d->lim.max_headers + 1, sizeof(*d->hdrs));
	d->xfd_names = calloc(d->lim.max_fds + 1, sizeof(*d->xfd_names));
	d->req.fd_names = calloc(d->lim.max_fds + 1, sizeof(*d->req.fd_names));
	if (!d->events || !d->scratch || !d->rfds || !d->hdrs ||
	    !d->xfd_names || !d->req.fd_names)
		goto fail;
	/*
	 * A response may carry what one sendmsg() can, whatever --max-fds: that
	 * limit bounds what clients make the service hold, and a service that
	 * takes no fds (--max-fds 0) may still hand them out.
	 */
	r = fdh_resp_init(&d->resp, FDH_MAX_FDS_CEILING, &d->open_fds);
	if (r < 0)
		goto fail;
	d->resp.req = &d->req;
	d->req.head.hdrs = d->hdrs;
	d->req.head.fd_names = d->xfd_names;
	d->req.d = d;
	fdh_http_parser_init(&d->parser, &d->lim);
	for (i = 0; i < FDH_DISPATCH_MAX_WATCH; i++)
		d->watch[i].fd = -1;

	/* Opened now, before any sandbox forbids opens, and kept for counting. */
	d->fddir = opendir("/proc/self/fd");
	fdh_closer_notify(&d->retry, true);
	d->nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : RLIM_INFINITY;
	d->fd_reserve = fd_reserve(d->nofile, d->lim.max_fds);
	d->fd_estimate_max = fd_estimate_max(d->nofile, d->fd_reserve);
	n = count_open_fds(d);
	d->other_fds = n > 0 ? n : 0;
	d->now = (uint64_t)fdh_mono_ms();
	*ret_d = d;
	return 0;
fail:
	fdh_dispatch_free(d);
	return r;
}

void
fdh_dispatch_free(struct fdh_dispatch *d)
{
	if (!d)
		return;
	d->hooks = (struct fdh_dispatch_hooks){ 0 };	/* the owner is going away too */
	fdh_closer_notify(&d->retry, false);
	while (d->conns)
		fdh_conn_close(d, d->conns);
	free_closed(d);
	close(d->epfd);
	if (d->resp.fds)
		fdh_resp_free(&d->resp);
	if (d->fddir)
		closedir(d->fddir);
	fdh_route_table_free(&d->routes);
	free(d->events);
	free(d->scratch);
	free(d->rfds);
	free(d->hdrs);
	free(d->xfd_names);
	free(d->req.fd_names);
	free(d);
}

void
fdh_dispatch_set_hooks(struct fdh_dispatch *d, const struct fdh_dispatch_hooks *hooks)
{
	d->hooks = *hooks;
}

int
fdh_dispatch_watch(struct fdh_dispatch *d, int fd, fdh_watch_fn *cb, void *arg)
{
	unsigned i;

	for (i = 0; i < FDH_DISPATCH_MAX_WATCH; i++) {
		if (d->watch[i].fd == -1) {
			struct epoll_event ev = { .events = EPOLLIN, .data.u64 = i };

			if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
				return -errno;
			d->watch[i] = (struct fdh_watch){ .cb = cb, .arg = arg, .fd = fd, .on = true,
			    .armed = true };
			return 0;
		}
	}
	return -ENOSPC;
}

void
fdh_dispatch_watch_enable(struct fdh_dispatch *d, int fd, bool on)
{
	unsigned i;

	for (i = 0; i < FDH_DISPATCH_MAX_WATCH; i++) {
		if (d->watch[i].fd == fd) {
			d->watch[i].on = on;
			watch_sync(d, i);
		}
	}
}

void
fdh_dispatch_watch_brings_fds(struct fdh_dispatch *d, int fd)
{
	unsigned i;

	for (i = 0; i < FDH_DISPATCH_MAX_WATCH; i++) {
		if (d->watch[i].fd == fd) {
			d->watch[i].brings_fds = true;
			watch_sync(d, i);
		}
	}
}

int
fdh_dispatch_add_conn(struct fdh_dispatch *d, int fd, const struct fdh_peer *peer, int pidfd,
    uint64_t tag)
{
	struct epoll_event ev;
	struct fdh_conn *c = NULL;
	int flags, r;

	if (d->draining) {
		r = -ESHUTDOWN;
		goto fail;
	}
	if (d->nconns >= d->lim.max_conns) {
		r = -EBUSY;
		goto fail;
	}
	/* A blocking socket would let one slow client stall every other. */
	flags = fcntl(fd, F_GETFL);
	if (flags == -1 || (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1)) {
		r = -errno;
		goto fail;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		r = -ENOMEM;
		goto fail;
	}
	c->fd = fd;
	c->closing_fd = -1;
	c->pidfd = pidfd;
	c->peer = *peer;
	c->tag = tag;
	c->timer = TIMER_NONE;
	c->state = CONN_WAIT;
	c->events = fdh_conn_wanted(d, c);
	ev = (struct epoll_event){ .events = c->events, .data.ptr = c };
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
		r = -errno;
		goto fail;
	}
	c->next = d->conns;
	if (d->conns)
		d->conns->prev = c;
	d->conns = c;
	c->fresh_next = d->fresh;
	d->fresh = c;
	d->nconns++;
	d->open_fds += pidfd >= 0 ? 2 : 1;
	d->now = (uint64_t)fdh_mono_ms();
	fdh_dispatch_timer_arm(d, c, TIMER_IDLE);
	return 0;
fail:
	free(c);
	/*
	 * The supervisor's copy may outlive ours a while: without the
	 * shutdown, the client would wait that long for its EOF.
	 */
	(void)shutdown(fd, SHUT_RDWR);
	fdh_closer_queue(fd);	/* the client may have sent fds already */
	if (pidfd >= 0)
		close(pidfd);
	return r;
}

void
fdh_dispatch_conn_gone(struct fdh_dispatch *d, struct fdh_conn *c)
{
	struct fdh_conn **pp;

	/*
	 * Out of the set before close(): close() alone removes it only when no
	 * other descriptor shares the open file, and an event naming a freed
	 * connection would be a use after free.
	 */
	(void)epoll_ctl(d->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	for (pp = &d->fresh; *pp; pp = &(*pp)->fresh_next) {
		if (*pp == c) {
			*pp = c->fresh_next;
			break;
		}
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		d->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	/* Events of this batch may still name it: freed after the batch. */
	c->prev = NULL;
	c->next = d->closed;
	d->closed = c;
	d->nconns--;
	if (d->hooks.conn_closed)
		d->hooks.conn_closed(d, c->tag, d->hooks.arg);
}

unsigned
fdh_dispatch_nconns(const struct fdh_dispatch *d)
{
	return d->nconns;
}

bool
fdh_dispatch_full(const struct fdh_dispatch *d)
{
	return d->nconns >= d->lim.max_conns;
}

unsigned long long
fdh_dispatch_nrequests(const struct fdh_dispatch *d)
{
	return d->nrequests;
}

/*
 * Idle keep-alive connections go now (a request already queued on one is
 * answered first: fdh_conn_idle_end()); one yet to send its first request
 * is served it.  One answered in this turn or the last was told it would be
 * kept alive after the drain was asked for, as a handler ran or before
 * this turn read the request: closed now, it would fail the request its
 * client is about to send.  It gets LAST_CALL_MS to send one, which is
 * answered with Connection: close.
 */
static void
close_idle(struct fdh_dispatch *d)
{
	unsigned idle_ms = timeout_of(d, TIMER_IDLE);
	struct fdh_conn *c, *next;

	for (c = d->conns; c; c = next) {
		next = c->next;
		if (c->state != CONN_WAIT || !c->served || c->timer == TIMER_LAST)
			continue;
		if (c->timer == TIMER_IDLE && c->deadline - idle_ms >= d->turn_prev)
			fdh_dispatch_timer_arm(d, c, TIMER_LAST);
		else
			fdh_conn_idle_end(d, c);
	}
}

void
fdh_dispatch_drain(struct fdh_dispatch *d)
{
	d->draining = true;
	close_idle(d);
}

void
fdh_dispatch_retire_after(struct fdh_dispatch *d, unsigned long long n)
{
	d->retire_after = n;
}

void
fdh_dispatch_retire(struct fdh_dispatch *d)
{
	d->drain_soon = true;
	close_idle(d);
}

void
fdh_dispatch_drain_soon(struct fdh_dispatch *d)
{
	d->drain_soon = true;
}

void
fdh_dispatch_stop(struct fdh_dispatch *d)
{
	d->stopped = true;
}

static inline void
expire_list(struct fdh_dispatch *d, enum fdh_timer_kind k, uint64_t *next)
{
	struct fdh_conn *c;

	while ((c = d->timers[k].head) != NULL && c->deadline <= d->now)
		fdh_conn_timeout(d, c, k);
	if (c && c->deadline < *next)
		*next = c->deadline;
}

/*
 * Ends the connections whose deadline has passed and returns the
 * milliseconds to the next deadline (-1: none).  A timeout only closes
 * connections, never arms a timer, so one pass over the lists does both.
 */
static int
expire_timers(struct fdh_dispatch *d)
{
	uint64_t next = UINT64_MAX;

	expire_list(d, TIMER_IDLE, &next);
	expire_list(d, TIMER_REQUEST, &next);
	expire_list(d, TIMER_WRITE, &next);
	/* Only drains, refusals and ends arm the last list: one test on every other turn. */
	if (__builtin_expect(d->timers[TIMER_LAST].head != NULL, 0))
		expire_list(d, TIMER_LAST, &next);
	if ((d->starved || d->retry) && next > d->now + STARVED_RETRY_MS)
		next = d->now + STARVED_RETRY_MS;
	if (next == UINT64_MAX)
		return -1;
	return next <= d->now ? 0 : (int)(next - d->now > 86400000 ? 86400000 : next - d->now);
}

/*
 * A connection just handed in is read without waiting for epoll to report
 * it: its client has usually sent the request before the hand-off ended
 * (connect, then write), and the wait would cost a turn of the loop on
 * every new connection.  One that has sent nothing yet costs one read
 * that finds nothing.
 */
static void
read_fresh(struct fdh_dispatch *d)
{
	struct fdh_conn *c;

	if (d->stopped)
		return;		/* "at once": they are read when the loop runs again */
	while ((c = d->fresh) != NULL) {
		d->fresh = c->fresh_next;
		c->fresh_next = NULL;
		fdh_conn_event(d, c, EPOLLIN);
	}
}

/*
 * clock_fresh: d->now was read when the last turn's wait ended, or after
 * its last handler, which is as good as now when turns follow each other
 * in fdh_dispatch_run(): one clock read less per request.
 */
static FDH_NO_CANARY int
turn(struct fdh_dispatch *d, int timeout_ms, bool clock_fresh)
{
	struct fdh_conn *c;
	struct fdh_watch *w;
	unsigned ready = 0, u;
	int i, n, r = 0, t;

	if (!clock_fresh)
		d->now = (uint64_t)fdh_mono_ms();
	read_fresh(d);
	t = expire_timers(d);
	free_closed(d);
	if (d->starved)
		(void)fdh_dispatch_fd_room(d);
	if (d->retry)
		retry_now(d);
	if (d->stopped || (d->draining && d->nconns == 0))
		return 1;
	if (timeout_ms >= 0 && (t < 0 || t > timeout_ms))
		t = timeout_ms;
	n = epoll_wait(d->epfd, d->events, MAX_EVENTS, t);
	if (n == -1 && errno != EINTR)
		return -errno;
	d->now = (uint64_t)fdh_mono_ms();	/* after every wait: the next turn starts from it */
	d->turn_prev = d->turn_start;
	d->turn_start = d->now;
	if (n <= 0)
		return 0;
	/*
	 * Connections first, watches after: a request that has arrived is
	 * served before a drain or a stop from a watch could close its
	 * connection unanswered.
	 */
	for (i = 0; i < n; i++) {
		if (d->events[i].data.u64 < FDH_DISPATCH_MAX_WATCH) {
			ready |= 1u << d->events[i].data.u64;
			continue;
		}
		c = d->events[i].data.ptr;
		if (c->fd >= 0)		/* not closed by an earlier event of this batch */
			fdh_conn_event(d, c, d->events[i].events);
	}
	for (u = 0; ready && u < FDH_DISPATCH_MAX_WATCH; u++) {
		w = &d->watch[u];
		/* Not one taken out by an earlier callback of this batch. */
		if (!(ready & 1u << u) || !w->armed)
			continue;
		r = w->cb(d, w->fd, w->arg);
		if (r < 0)
			break;
	}
	read_fresh(d);
	free_closed(d);
	return r < 0 ? r : 0;
}

int
fdh_dispatch_run_once(struct fdh_dispatch *d, int timeout_ms)
{
	return turn(d, timeout_ms, false);
}

int
fdh_dispatch_run(struct fdh_dispatch *d)
{
	int r;

	d->stopped = false;
	r = turn(d, -1, false);
	while (r == 0)
		r = turn(d, -1, true);
	return r < 0 ? r : 0;
}
