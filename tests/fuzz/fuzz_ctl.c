/*
 * The control-channel decoder, fdh_ctl_recv(): what fdhttpd believes of the
 * records its workers send (and a worker of its supervisor's), over a real
 * SOCK_SEQPACKET pair.  Input: records, each
 *
 *	u8	bits 0-1: fds attached (0 to 3; more than the 2 any type carries
 *		truncates the control data); bit 2: the worker reads (else
 *		the supervisor); bit 3: SO_PASSCRED on the reader, so that
 *		credentials arrive as control data it did not ask for;
 *		bit 7: not a record but a limits string (below)
 *	u16	the record's length, little-endian
 *	bytes	the record
 *
 * A record accepted must be a type the reading side takes, of that type's
 * size and fd count; a refused one has a reason; every fd received is
 * either handed over or closed.  A limits string goes through
 * fdh_ctl_limits_parse(), and what it accepts must format and parse back
 * to the same limits.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl.h"
#include "fuzz_util.h"

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_ctl: %s\n", what);
	abort();
}

/* The size and fd count each type must have: the protocol as ctl.h writes it. */
static bool
expected(unsigned type, uint32_t flags, size_t *ret_size, size_t *ret_nfds)
{
	size_t h = sizeof(struct fdh_ctl_hdr);

	*ret_nfds = 0;
	switch (type) {
	case FDH_CTL_READY:
	case FDH_CTL_DRAIN:
	case FDH_CTL_FLUSH:
		*ret_size = h;
		return true;
	case FDH_CTL_CONN_CLOSED:
		*ret_size = h + sizeof(struct fdh_ctl_closed);
		return true;
	case FDH_CTL_RETIRE:
		*ret_size = h + sizeof(struct fdh_ctl_retire);
		return true;
	case FDH_CTL_CONNS_CLOSED:
		*ret_size = h + sizeof(struct fdh_ctl_closed_batch);
		return true;
	case FDH_CTL_OPEN:
		*ret_size = h + sizeof(struct fdh_ctl_open);
		return true;
	case FDH_CTL_NEW_CONN:
		*ret_size = h + sizeof(struct fdh_ctl_conn);
		*ret_nfds = (flags & FDH_CTL_F_PIDFD) ? 2 : 1;
		return true;
	case FDH_CTL_OPEN_REPLY:
		*ret_size = h + sizeof(struct fdh_ctl_open_reply);
		*ret_nfds = (flags & FDH_CTL_F_FD) ? 1 : 0;
		return true;
	default:
		return false;
	}
}

static void
check_accepted(const struct fdh_ctl_msg *m, size_t len, enum fdh_ctl_side side,
    const int *fds, size_t nfds)
{
	size_t size, want_fds, i;

	if (!expected(m->h.type, m->h.flags, &size, &want_fds))
		fail("an unknown type accepted");
	if ((side == FDH_CTL_SUPERVISOR) != (m->h.type < 64))
		fail("a type of the reader's own side accepted");
	if (m->h.version != FDH_CTL_VERSION)
		fail("another version accepted");
	if (len != size)
		fail("a record of the wrong size accepted");
	if (nfds != want_fds)
		fail("a wrong fd count accepted");
	if (m->h.type == FDH_CTL_OPEN &&
	    memchr(m->u.open.path, '\0', sizeof(m->u.open.path)) == NULL)
		fail("an OPEN path without its NUL accepted");
	if (m->h.type == FDH_CTL_CONNS_CLOSED && m->u.batch.n > FDH_CTL_CLOSED_MAX)
		fail("a CONNS_CLOSED count past its ids accepted");
	for (i = 0; i < nfds; i++)
		if (fds[i] < 0 || fcntl(fds[i], F_GETFD) == -1)
			fail("a handed-over fd that is not open");
}

static void
one_record(int tx, int rx, uint8_t how, const uint8_t *rec, size_t len)
{
	enum fdh_ctl_side side = (how & 4) ? FDH_CTL_WORKER : FDH_CTL_SUPERVISOR;
	int on = (how & 8) ? 1 : 0, fds[FDH_CTL_MAX_FDS] = { -1, -1 };
	struct fdh_ctl_msg m;
	const char *why = NULL;
	size_t nfds = 0, i;
	ssize_t n;
	int r;

	if (setsockopt(rx, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) == -1)
		fail("SO_PASSCRED");
	n = fuzz_send(tx, rec, len, how & 3u, MSG_DONTWAIT);
	if (n < 0)
		return;		/* larger than the socket takes: nothing was sent */
	memset(&m, 0xa5, sizeof(m));
	r = fdh_ctl_recv(rx, side, &m, fds, &nfds, &why);
	if (r == 1) {
		check_accepted(&m, len, side, fds, nfds);
		for (i = 0; i < nfds; i++)
			close(fds[i]);
	} else if (r == -EBADMSG) {
		if (why == NULL)
			fail("refused without a reason");
	} else if (r == 0) {
		if (len != 0 || (how & 3u) != 0 || on)
			fail("a hang-up reported for a record");
	} else {
		fail("an error other than -EBADMSG for a record");
	}
}

static void
limits(const uint8_t *p, size_t len)
{
	struct fdh_limits l, back;
	char s[FDH_CTL_LIMITS_MAX + 1], out[FDH_CTL_LIMITS_MAX];
	const char *bad = NULL;

	if (len > FDH_CTL_LIMITS_MAX)
		len = FDH_CTL_LIMITS_MAX;
	memcpy(s, p, len);
	s[len] = '\0';
	fdh_limits_default(&l);
	if (fdh_ctl_limits_parse(&l, s, &bad) < 0) {
		if (bad == NULL || bad < s || bad > s + strlen(s))
			fail("a refused limits item not pointed at");
		return;
	}
	if (fdh_ctl_limits_format(&l, out, sizeof(out)) < 0)
		fail("accepted limits that do not format");
	fdh_limits_default(&back);
	if (fdh_ctl_limits_parse(&back, out, NULL) < 0)
		fail("formatted limits that do not parse");
	if (l.max_head != back.max_head || l.max_headers != back.max_headers ||
	    l.max_body != back.max_body || l.max_fds != back.max_fds ||
	    l.max_conns != back.max_conns || l.request_timeout_ms != back.request_timeout_ms ||
	    l.idle_timeout_ms != back.idle_timeout_ms ||
	    l.write_timeout_ms != back.write_timeout_ms)
		fail("limits changed by a format and parse");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	int base;
	int sv[2];

	/*
	 * Counted afresh for each input: between inputs libFuzzer may start
	 * its symbolizer, whose pipes are not ours.
	 */
	(void)fuzz_pool_fd(0);
	base = fuzz_count_fds();
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
		fail("socketpair");
	while (in.n > 0) {
		uint8_t how = fuzz_u8(&in);
		size_t len = fuzz_u16(&in);
		const uint8_t *rec;

		len = fuzz_take(&in, len, &rec);
		if (how & 0x80)
			limits(rec, len);
		else
			one_record(sv[0], sv[1], how, rec, len);
	}
	close(sv[0]);
	close(sv[1]);
	fuzz_check_fds(base, "an input");
	return 0;
}
