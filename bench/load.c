/*
 * load: closed-loop throughput.  C connections, each with one POST /ping
 * in flight at all times, driven by T threads with poll(); every answer is
 * checked.  Prints requests/s, p50 and p99, and what went wrong.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "bench.h"

struct opts {
	struct bench_common_opts common;
	unsigned long conns;
	unsigned long threads;
	double seconds;
	double warmup;
};

/* What every thread reads and nobody writes once the threads run. */
struct shared {
	struct sockaddr_un sun;
	socklen_t sun_len;
	char req[BENCH_REQ_MAX];
	size_t req_len;
	int memfd;
	bool new_conn;
	uint64_t t_measure;	/* answers from here on count */
	uint64_t t_end;
};

struct lconn {
	int fd;			/* -1 while waiting to connect again */
	uint64_t t0;		/* when the request in flight began */
	size_t len;
	char buf[BENCH_RESP_MAX];
};

struct lthread {
	pthread_t tid;
	const struct shared *sh;
	struct lconn *c;
	struct pollfd *pfd;
	unsigned n;
	uint64_t *lat;
	size_t nlat;
	size_t cap;
	unsigned long errors;	/* broken exchanges: resets, bad answers, failed connects */
	unsigned long non2xx;
	unsigned long closed;	/* connections the server ended */
	char first_error[BENCH_WHY_MAX];
};

static const char usage[] =
    "usage: load [OPTIONS]\n"
    "\n"
    "Closed-loop load: C connections, each with one 4-byte POST /ping in flight,\n"
    "driven by T threads with poll().  Every answer is checked.  Prints requests/s,\n"
    "p50 and p99 in microseconds, and the counts of errors, non-2xx answers and\n"
    "connections the server closed.\n"
    "\n"
    "  -s, --socket PATH     load the server on PATH; without it, start fdhttpd\n"
    "                        with fdhttp-echo on a temporary socket\n"
    "  -c, --conns N         concurrent connections (default 64)\n"
    "  -t, --threads N       client threads (default 1)\n"
    "  -d, --seconds S       measured time (default 10)\n"
    "      --warmup S        load before measuring (default 1)\n"
    "      --fd              attach a memfd to each request (X-FD: f)\n"
    "      --new-conn        a new connection for every request\n"
    "  -w, --workers N       workers of the fdhttpd we start (default 1)\n"
    "      --direct          start fdhttp-echo alone, without fdhttpd\n"
    "  -h, --help            this text\n"
    "\n"
    "Exits 1 when any request failed or was answered other than 2xx.  The last\n"
    "line, \"result key=value ...\", is for scripts.\n";

/* CPU seconds this process has used, every thread counted. */
static double
cpu_seconds(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) == -1)
		return 0;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	    (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void
parse(int argc, char **argv, struct opts *o)
{
	enum { OPT_WARMUP = BENCH_OPT_OWN };
	static const struct option lopts[] = {
		BENCH_COMMON_LONGOPTS,
		{ "conns", required_argument, NULL, 'c' },
		{ "threads", required_argument, NULL, 't' },
		{ "seconds", required_argument, NULL, 'd' },
		{ "warmup", required_argument, NULL, OPT_WARMUP },
		{ 0 }
	};
	int c;

	*o = (struct opts){ .conns = 64, .threads = 1, .seconds = 10, .warmup = 1,
	    .common = { .server = { .workers = 1 } } };
	while ((c = getopt_long(argc, argv, BENCH_COMMON_SHORTOPTS "c:t:d:", lopts, NULL)) != -1) {
		if (bench_common_opt(c, optarg, usage, &o->common))
			continue;
		switch (c) {
		case 'c':
			o->conns = bench_uint("--conns", optarg, 1, 1000000);
			break;
		case 't':
			o->threads = bench_uint("--threads", optarg, 1, 1024);
			break;
		case 'd':
			o->seconds = bench_seconds("--seconds", optarg);
			break;
		case OPT_WARMUP:
			o->warmup = strcmp(optarg, "0") == 0 ? 0 : bench_seconds("--warmup", optarg);
			break;
		}
	}
	bench_no_operands("load", argc, argv, optind, usage);
	if (o->threads > o->conns) {
		fprintf(stderr, "load: more threads (%lu) than connections (%lu)\n", o->threads,
		    o->conns);
		exit(2);
	}
}

static void
note_error(struct lthread *t, const char *what, int e)
{
	t->errors++;
	if (!t->first_error[0])
		snprintf(t->first_error, sizeof(t->first_error), "%s%s%s", what, e ? ": " : "",
		    e ? strerror(e) : "");
}

static void
drop(struct lthread *t, unsigned i)
{
	struct lconn *c = &t->c[i];

	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->len = 0;
	t->pfd[i].fd = -1;
}

/*
 * Sends the next request on c, connecting first when it has no socket.
 * Returns false when it must wait (the listen backlog is full) or failed.
 */
static bool
start(struct lthread *t, unsigned i, uint64_t now)
{
	const struct shared *sh = t->sh;
	struct lconn *c = &t->c[i];
	int r;

	if (c->fd < 0) {
		c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (c->fd == -1) {
			note_error(t, "socket", errno);
			return false;
		}
		/* A Unix socket connects at once, or says the backlog is full. */
		if (connect(c->fd, (const struct sockaddr *)&sh->sun, sh->sun_len) == -1) {
			int e = errno;

			drop(t, i);
			if (e != EAGAIN)
				note_error(t, "connect", e);
			return false;
		}
	}
	c->t0 = now;
	c->len = 0;
	r = bench_send(c->fd, sh->req, sh->req_len, sh->memfd);
	if (r < 0) {
		/* A request this small only fails to fit when something is wrong. */
		note_error(t, "send", -r);
		drop(t, i);
		return false;
	}
	t->pfd[i].fd = c->fd;
	return true;
}

static void
record(struct lthread *t, uint64_t ns)
{
	if (t->nlat == t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 65536;
		uint64_t *p = realloc(t->lat, ncap * sizeof(*p));

		if (!p)
			return;		/* the count of answers stays exact */
		t->lat = p;
		t->cap = ncap;
	}
	t->lat[t->nlat++] = ns;
}

/* Reads what arrived on connection i; starts its next request once answered. */
static void
on_input(struct lthread *t, unsigned i)
{
	const struct shared *sh = t->sh;
	struct lconn *c = &t->c[i];
	struct bench_resp r;
	uint64_t now;
	ssize_t n;
	int p;

	n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n == -1) {
		note_error(t, "recv", errno);
		drop(t, i);
		return;
	}
	if (n == 0) {
		t->closed++;
		if (c->len)
			note_error(t, "the server closed a connection inside a response", 0);
		else
			note_error(t, "the server closed a connection with a request in flight", 0);
		drop(t, i);
		return;
	}
	c->len += (size_t)n;
	p = bench_parse_resp(c->buf, c->len, &r);
	if (p == 0)
		return;
	if (p < 0 || c->len != r.total) {
		note_error(t, p < 0 ? "malformed response" : "bytes after a response", 0);
		drop(t, i);
		return;
	}
	now = bench_now_ns();
	if (r.status < 200 || r.status > 299)
		t->non2xx++;
	else if (bench_check_pong(c->buf, &r))
		note_error(t, bench_check_pong(c->buf, &r), 0);
	else if (now >= sh->t_measure && now < sh->t_end)
		record(t, now - c->t0);
	if (r.close) {
		t->closed++;
		drop(t, i);
	} else if (sh->new_conn) {
		drop(t, i);
	}
	(void)start(t, i, now);
}

static void *
run(void *arg)
{
	struct lthread *t = arg;
	const struct shared *sh = t->sh;
	unsigned i, dead = 0;

	for (i = 0; i < t->n; i++) {
		t->c[i].fd = -1;
		t->pfd[i] = (struct pollfd){ .fd = -1, .events = POLLIN };
		if (!start(t, i, bench_now_ns()))
			dead++;
	}
	for (;;) {
		uint64_t now = bench_now_ns();
		int n;

		if (now >= sh->t_end)
			break;
		/* Connections without a socket try again; otherwise wait for answers. */
		if (dead) {
			dead = 0;
			for (i = 0; i < t->n; i++)
				if (t->c[i].fd < 0 && !start(t, i, now))
					dead++;
		}
		n = poll(t->pfd, t->n, dead ? 1 : 100);
		if (n == -1 && errno != EINTR) {
			note_error(t, "poll", errno);
			break;
		}
		for (i = 0; n > 0 && i < t->n; i++) {
			short rev = t->pfd[i].revents;

			if (!rev)
				continue;
			n--;
			t->pfd[i].revents = 0;
			on_input(t, i);
			if (t->c[i].fd < 0)
				dead++;
		}
	}
	for (i = 0; i < t->n; i++)
		drop(t, i);
	return NULL;
}

int
main(int argc, char *argv[])
{
	struct bench_server srv;
	struct shared sh = { .memfd = -1 };
	struct lthread *th;
	struct opts o;
	uint64_t *all, t0;
	unsigned long i, errors = 0, non2xx = 0, closed = 0;
	unsigned long nofile;
	size_t nall = 0, k;
	const char *first_error = NULL;
	double p50 = 0, p99 = 0, rps, cpu0, cpu;
	int r;

	parse(argc, argv, &o);
	signal(SIGPIPE, SIG_IGN);
	nofile = bench_raise_nofile();
	if (o.conns + 32 > nofile) {
		fprintf(stderr, "load: --conns %lu needs more descriptors than RLIMIT_NOFILE "
		    "allows (%lu)\n", o.conns, nofile);
		return 2;
	}
	sh.req_len = bench_request(sh.req, sizeof(sh.req), o.common.fd);
	sh.new_conn = o.common.new_conn;
	if (o.common.fd) {
		sh.memfd = bench_memfd();
		if (sh.memfd < 0) {
			fprintf(stderr, "load: memfd: %s\n", strerror(-sh.memfd));
			return 1;
		}
	}
	if (o.common.socket) {
		r = bench_server_attach(o.common.socket, &srv);
	} else {
		o.common.server.max_conns = o.conns + 16 > 256 ? (unsigned)o.conns + 16 : 256;
		r = bench_server_start(&o.common.server, &srv);
	}
	if (r < 0) {
		fprintf(stderr, "load: no server to load: %s\n", strerror(-r));
		return 1;
	}
	sh.sun.sun_family = AF_UNIX;
	memcpy(sh.sun.sun_path, srv.sock, strlen(srv.sock));
	sh.sun_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(srv.sock) + 1);
	if (srv.sock[0] == '@') {
		sh.sun.sun_path[0] = '\0';
		sh.sun_len--;
	}

	th = calloc(o.threads, sizeof(*th));
	if (!th) {
		fprintf(stderr, "load: out of memory\n");
		bench_server_stop(&srv);
		return 1;
	}
	cpu0 = cpu_seconds();
	t0 = bench_now_ns();
	sh.t_measure = t0 + (uint64_t)(o.warmup * 1e9);
	sh.t_end = sh.t_measure + (uint64_t)(o.seconds * 1e9);
	for (i = 0; i < o.threads; i++) {
		struct lthread *t = &th[i];

		t->sh = &sh;
		t->n = (unsigned)(o.conns / o.threads + (i < o.conns % o.threads ? 1 : 0));
		t->c = calloc(t->n, sizeof(*t->c));
		t->pfd = calloc(t->n, sizeof(*t->pfd));
		if (!t->c || !t->pfd || pthread_create(&t->tid, NULL, run, t) != 0) {
			/* Threads already running must not outlive their data. */
			fprintf(stderr, "load: cannot start thread %lu\n", i);
			bench_server_stop(&srv);
			exit(1);
		}
	}
	for (i = 0; i < o.threads; i++)
		pthread_join(th[i].tid, NULL);
	/* Near 100% per thread means the client, not the server, set the pace. */
	cpu = (cpu_seconds() - cpu0) / ((double)(bench_now_ns() - t0) / 1e9) * 100.0;
	for (i = 0; i < o.threads; i++) {
		nall += th[i].nlat;
		errors += th[i].errors;
		non2xx += th[i].non2xx;
		closed += th[i].closed;
		if (!first_error && th[i].first_error[0])
			first_error = th[i].first_error;
	}
	all = malloc((nall ? nall : 1) * sizeof(*all));
	if (!all) {
		fprintf(stderr, "load: out of memory\n");
		bench_server_stop(&srv);
		return 1;
	}
	for (i = 0, k = 0; i < o.threads; i++) {
		/* A thread that got no good answer has no latencies, and no array. */
		if (th[i].nlat)
			memcpy(all + k, th[i].lat, th[i].nlat * sizeof(*all));
		k += th[i].nlat;
	}
	if (nall) {
		struct bench_stats st;

		bench_stats(all, nall, o.seconds, &st);
		p50 = st.p50;
		p99 = st.p99;
	}
	rps = (double)nall / o.seconds;

	printf("load: %s on %s; %lu connections, %lu thread%s, %s, %s; %.1f s after %.1f s "
	    "warm-up\n", srv.what, srv.sock, o.conns, o.threads, o.threads == 1 ? "" : "s",
	    o.common.new_conn ? "a new connection per request" : "keep-alive",
	    o.common.fd ? "a memfd with each request" : "no fd", o.seconds, o.warmup);
	printf("requests/s:  %.0f  (%zu answered)\n", rps, nall);
	printf("latency us:  p50 %.2f  p99 %.2f\n", p50, p99);
	printf("errors %lu, non-2xx %lu, closed by the server %lu\n", errors, non2xx, closed);
	printf("client cpu:  %.0f%% of one CPU\n", cpu);
	if (first_error)
		printf("first error: %s\n", first_error);
	printf("result rps=%.0f p50=%.2f p99=%.2f errors=%lu non2xx=%lu closed=%lu client_cpu=%.0f\n",
	    rps, p50, p99, errors, non2xx, closed, cpu);
	fflush(stdout);

	bench_server_stop(&srv);
	for (i = 0; i < o.threads; i++) {
		free(th[i].c);
		free(th[i].pfd);
		free(th[i].lat);
	}
	free(th);
	free(all);
	if (sh.memfd >= 0)
		close(sh.memfd);
	return errors || non2xx ? 1 : 0;
}
