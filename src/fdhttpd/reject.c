/*
 * Connections the supervisor refuses itself (403 for a peer outside
 * --allow-uid/--allow-gid, 503 over --max-conns-per-uid), before any
 * worker sees them.
 *
 * The answer is written at once, then the connection lingers briefly,
 * its input read and discarded: closing a unix socket with unread input
 * makes the client's next read fail with ECONNRESET, and a client that
 * sends its request after our answer would get EPIPE instead of reading
 * the answer.  Lingering is bounded in count, time and bytes.
 *
 * Refusals are logged one line per kind per SUP_REFUSAL_LOG_MS, then
 * counted: the client chooses how often it connects, not how much we write.
 *
 * Every socket and fd of a refused client is closed by the closer
 * (closer.h): such a client chooses what it sends, and a lingering TCP
 * socket among it would hold this loop for the linger time.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "closer.h"
#include "fdpass.h"
#include "log.h"
#include "supervisor.h"

/* Each kind's level (a 503 is a user at a limit; a 403, policy at work) and reason. */
static const struct {
	enum fdh_log_level level;
	const char *why;
} refusal_kinds[REFUSED_NKINDS] = {
	[REFUSED_NOT_ALLOWED] = { FDH_LOG_INFO, "not in --allow-uid/--allow-gid" },
	[REFUSED_TOO_MANY] = { FDH_LOG_WARN, "over --max-conns-per-uid" },
};

void
reject_log(struct sup *s, enum refusal kind, const char *fmt, ...)
{
	struct refusal_log *l = &s->refusal_logs[kind];
	int64_t now = fdh_mono_ms();
	va_list ap;

	if (now < l->until) {
		l->held++;
		return;
	}
	va_start(ap, fmt);
	fdh_vlog(refusal_kinds[kind].level, fmt, ap);
	va_end(ap);
	l->until = now + SUP_REFUSAL_LOG_MS;
}

/* The count of the refusals of a kind held back, if any. */
static void
refusal_log_flush(struct sup *s, enum refusal kind)
{
	struct refusal_log *l = &s->refusal_logs[kind];

	if (l->held > 0)
		fdh_log(refusal_kinds[kind].level, "refused %u more connection%s in the last %d s: %s",
		    l->held, l->held == 1 ? "" : "s", SUP_REFUSAL_LOG_MS / 1000,
		    refusal_kinds[kind].why);
	l->held = 0;
}

static const char *
reason(int status)
{
	switch (status) {
	case 403:	return "Forbidden";
	case 503:	return "Service Unavailable";
	default:	return "Error";
	}
}

void
reject_conn(struct sup *s, int fd, int status, const char *fmt, ...)
{
	char body[256], buf[512];
	va_list ap;
	int blen, n;

	va_start(ap, fmt);
	blen = vsnprintf(body, sizeof(body) - 1, fmt, ap);
	va_end(ap);
	if (blen < 0)
		blen = 0;
	if ((size_t)blen > sizeof(body) - 2)
		blen = (int)sizeof(body) - 2;
	body[blen++] = '\n';
	body[blen] = '\0';
	n = snprintf(buf, sizeof(buf),
	    "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
	    "Connection: close\r\n\r\n%s", status, reason(status), blen, body);
	/* A fresh socket's buffer takes these few bytes whole, or nothing matters. */
	if (n > 0 && send(fd, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1,
	    MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		fdh_closer_queue(fd);
		return;
	}
	shutdown(fd, SHUT_WR);
	if (s->nlingers == SUP_MAX_LINGER) {
		fdh_closer_queue(fd);
		return;
	}
	s->lingers[s->nlingers].fd = fd;
	s->lingers[s->nlingers].deadline = fdh_mono_ms() + SUP_LINGER_MS;
	s->lingers[s->nlingers].nread = 0;
	s->nlingers++;
}

static void
linger_end(struct sup *s, size_t i)
{
	/* Input it never read may still hold fds. */
	fdh_closer_queue(s->lingers[i].fd);
	s->lingers[i] = s->lingers[--s->nlingers];
}

void
reject_on_event(struct sup *s, size_t i)
{
	struct lingering *l = &s->lingers[i];
	char buf[4096];
	int fds[FDH_MAX_FDS_CEILING];
	size_t nfds = 0;
	bool truncated;
	ssize_t n;

	n = fdh_recv_fds(l->fd, buf, sizeof(buf), fds, FDH_MAX_FDS_CEILING, &nfds, &truncated);
	/* Whatever fds a refused client sent are closed unread (by the closer). */
	fdh_close_fds(fds, nfds);
	if (n == -EAGAIN)
		return;
	if (n <= 0) {
		linger_end(s, i);
		return;
	}
	l->nread += (size_t)n;
	if (l->nread > SUP_LINGER_BYTES)
		linger_end(s, i);
}

void
reject_timers(struct sup *s, int64_t now)
{
	size_t i = 0;
	int k;

	for (k = 0; k < REFUSED_NKINDS; k++)
		if (s->refusal_logs[k].held > 0 && now >= s->refusal_logs[k].until)
			refusal_log_flush(s, (enum refusal)k);
	while (i < s->nlingers) {
		if (now >= s->lingers[i].deadline)
			linger_end(s, i);	/* moves the last one here */
		else
			i++;
	}
}

int64_t
reject_next_timer(const struct sup *s)
{
	int64_t t = 0;
	size_t i;
	int k;

	for (i = 0; i < s->nlingers; i++)
		if (t == 0 || s->lingers[i].deadline < t)
			t = s->lingers[i].deadline;
	for (k = 0; k < REFUSED_NKINDS; k++)
		if (s->refusal_logs[k].held > 0 && (t == 0 || s->refusal_logs[k].until < t))
			t = s->refusal_logs[k].until;
	return t;
}

void
reject_free(struct sup *s)
{
	int k;

	/* Stopping: what was held back is counted now, or never. */
	for (k = 0; k < REFUSED_NKINDS; k++)
		refusal_log_flush(s, (enum refusal)k);
	while (s->nlingers > 0)
		linger_end(s, s->nlingers - 1);
}
