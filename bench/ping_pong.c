/*
 * ping_pong: the latency of one request at a time.  Sequential 4-byte
 * POST /ping requests on one keep-alive connection (or a new connection
 * for each), every answer checked, each timed with CLOCK_MONOTONIC.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fdhttp/client.h>

#include "bench.h"

#define MAX_MEM_PIDS 4
/* Seconds without an answer before the benchmark gives up. */
#define WATCHDOG_S 10

struct opts {
	struct bench_common_opts common;
	unsigned long iters;
	unsigned long warmup;
	unsigned long idle;
	bool client_lib;
	pid_t mem_pid[MAX_MEM_PIDS];
	unsigned nmem;
};

static const char usage[] =
    "usage: ping_pong [OPTIONS]\n"
    "\n"
    "Sequential 4-byte POST /ping requests; prints min, p50, p90, p99, p99.9 and\n"
    "max latency in microseconds, and requests/s.  Every answer must be 200 with\n"
    "body \"pong\": anything else stops the run.\n"
    "\n"
    "  -s, --socket PATH     measure the server on PATH; without it, start fdhttpd\n"
    "                        with fdhttp-echo on a temporary socket (fdhttp-echo\n"
    "                        alone when fdhttpd is not built)\n"
    "  -n, --iters N         timed requests (default 200000)\n"
    "      --warmup N        requests before timing (default 20000)\n"
    "      --fd              attach a memfd to each request (X-FD: f)\n"
    "      --new-conn        connect, send one request, close, for each request\n"
    "      --idle-conns N    first open N connections, one request on each, and\n"
    "                        hold them idle during the run\n"
    "      --mem-pid PID     report the memory PID gained per idle connection\n"
    "                        (repeatable; default: the worker of a server we start)\n"
    "      --client-lib      time fdh_client_request() instead of the lean loop\n"
    "  -w, --workers N       workers of the fdhttpd we start (default 1)\n"
    "      --direct          start fdhttp-echo alone, without fdhttpd\n"
    "  -h, --help            this text\n"
    "\n"
    "The last line, \"result key=value ...\", is for scripts.\n";

static void
parse(int argc, char **argv, struct opts *o)
{
	enum { OPT_WARMUP = BENCH_OPT_OWN, OPT_IDLE, OPT_MEM_PID, OPT_CLIENT_LIB };
	static const struct option lopts[] = {
		BENCH_COMMON_LONGOPTS,
		{ "iters", required_argument, NULL, 'n' },
		{ "warmup", required_argument, NULL, OPT_WARMUP },
		{ "idle-conns", required_argument, NULL, OPT_IDLE },
		{ "mem-pid", required_argument, NULL, OPT_MEM_PID },
		{ "client-lib", no_argument, NULL, OPT_CLIENT_LIB },
		{ 0 }
	};
	int c;

	*o = (struct opts){ .iters = 200000, .warmup = 20000,
	    .common = { .server = { .workers = 1 } } };
	while ((c = getopt_long(argc, argv, BENCH_COMMON_SHORTOPTS "n:", lopts, NULL)) != -1) {
		if (bench_common_opt(c, optarg, usage, &o->common))
			continue;
		switch (c) {
		case 'n':
			o->iters = bench_uint("--iters", optarg, 1, 1000000000);
			break;
		case OPT_WARMUP:
			o->warmup = bench_uint("--warmup", optarg, 0, 1000000000);
			break;
		case OPT_IDLE:
			o->idle = bench_uint("--idle-conns", optarg, 0, 1000000);
			break;
		case OPT_MEM_PID:
			if (o->nmem == MAX_MEM_PIDS) {
				fprintf(stderr, "--mem-pid: at most %d\n", MAX_MEM_PIDS);
				exit(2);
			}
			o->mem_pid[o->nmem++] = (pid_t)bench_uint("--mem-pid", optarg, 1, 1u << 30);
			break;
		case OPT_CLIENT_LIB:
			o->client_lib = true;
			break;
		}
	}
	bench_no_operands("ping_pong", argc, argv, optind, usage);
}

static void __attribute__((noreturn))
fail(struct bench_server *srv, unsigned long i, const char *what, const char *why)
{
	fprintf(stderr, "ping_pong: request %lu%s: %s\n", i, what, why);
	(void)bench_watchdog(NULL, 0);
	bench_server_stop(srv);
	exit(1);
}

/* One exchange through the client library: what a real client of the API pays. */
static int
lib_ping(struct fdh_client *cl, int memfd, char *why)
{
	struct fdh_named_fd nfd = { .name = "f", .fd = memfd };
	struct fdh_client_req req = {
		.method = "POST",
		.target = "/ping",
		.body = "ping",
		.body_len = 4,
		.fds = memfd >= 0 ? &nfd : NULL,
		.nfds = memfd >= 0 ? 1 : 0,
	};
	struct fdh_client_resp resp;
	int r = fdh_client_request(cl, &req, &resp);

	if (r < 0) {
		snprintf(why, BENCH_WHY_MAX, "fdh_client_request: %s", strerror(-r));
		return r;
	}
	if (resp.status != 200 || resp.body_len != 4 || memcmp(resp.body, "pong", 4) != 0) {
		snprintf(why, BENCH_WHY_MAX, "status %d, body \"%.20s\"", resp.status, resp.body);
		r = -EPROTO;
	} else if (resp.closed) {
		snprintf(why, BENCH_WHY_MAX, "the server closed the connection");
		r = -ECONNRESET;
	}
	fdh_client_resp_release(&resp);
	return r;
}

/* One request on a connection of its own: connect, send, receive, close. */
static int
new_conn_ping(const struct opts *o, const char *path, const char *req, size_t len, int memfd,
    char *why)
{
	struct fdh_client *cl;
	int s, r;

	if (o->client_lib) {
		r = fdh_client_connect(path, 10000, &cl);
		if (r < 0) {
			snprintf(why, BENCH_WHY_MAX, "connect: %s", strerror(-r));
			return r;
		}
		r = lib_ping(cl, memfd, why);
		fdh_client_free(cl);
		return r;
	}
	s = bench_connect(path);
	if (s < 0) {
		snprintf(why, BENCH_WHY_MAX, "connect: %s", strerror(-s));
		return s;
	}
	r = bench_ping(s, req, len, memfd, why);
	close(s);
	return r;
}

static void
report_mem(const struct opts *o, const struct bench_mem *before, const struct bench_mem *after)
{
	unsigned i;

	for (i = 0; i < o->nmem; i++) {
		long drss = after[i].rss_kib - before[i].rss_kib;
		long dpss = after[i].pss_kib - before[i].pss_kib;

		printf("idle memory: pid %ld, %lu connections: RSS %+ld KiB, PSS %+ld KiB; "
		    "per connection %.0f B RSS, %.0f B PSS\n", (long)o->mem_pid[i], o->idle, drss,
		    dpss, (double)drss * 1024.0 / (double)o->idle,
		    (double)dpss * 1024.0 / (double)o->idle);
		printf("result-mem pid=%ld conns=%lu rss_kib=%ld pss_kib=%ld rss_per_conn=%.0f "
		    "pss_per_conn=%.0f\n", (long)o->mem_pid[i], o->idle, drss, dpss,
		    (double)drss * 1024.0 / (double)o->idle, (double)dpss * 1024.0 / (double)o->idle);
	}
}

int
main(int argc, char *argv[])
{
	struct bench_mem before[MAX_MEM_PIDS], after[MAX_MEM_PIDS];
	struct bench_server srv;
	struct bench_stats st;
	struct fdh_client *cl = NULL;
	struct opts o;
	char req[BENCH_REQ_MAX], why[BENCH_WHY_MAX];
	uint64_t *lat = NULL, t_start = 0, t_end;
	unsigned long i, total;
	unsigned long nofile;
	size_t len;
	int *idle = NULL, sock = -1, memfd = -1, r, ret = 1;
	unsigned k;

	parse(argc, argv, &o);
	signal(SIGPIPE, SIG_IGN);
	nofile = bench_raise_nofile();
	if (o.idle + 32 > nofile) {
		fprintf(stderr, "ping_pong: --idle-conns %lu needs more descriptors than "
		    "RLIMIT_NOFILE allows (%lu)\n", o.idle, nofile);
		return 2;
	}
	lat = calloc(o.iters, sizeof(*lat));
	idle = calloc(o.idle ? o.idle : 1, sizeof(*idle));
	if (!lat || !idle) {
		fprintf(stderr, "ping_pong: out of memory\n");
		goto out;
	}
	len = bench_request(req, sizeof(req), o.common.fd);
	if (o.common.fd) {
		memfd = bench_memfd();
		if (memfd < 0) {
			fprintf(stderr, "ping_pong: memfd: %s\n", strerror(-memfd));
			goto out;
		}
	}

	if (o.common.socket) {
		r = bench_server_attach(o.common.socket, &srv);
	} else {
		/* Room for the idle connections, the measured one and a margin. */
		o.common.server.max_conns = o.idle + 16 > 256 ? (unsigned)o.idle + 16 : 256;
		r = bench_server_start(&o.common.server, &srv);
	}
	if (r < 0) {
		fprintf(stderr, "ping_pong: no server to measure: %s\n", strerror(-r));
		goto out;
	}
	/* From here on every request gets an answer within WATCHDOG_S or we stop. */
	(void)bench_watchdog("ping_pong", WATCHDOG_S);
	if (o.nmem == 0 && srv.pid > 0 && o.idle > 0) {
		o.mem_pid[o.nmem++] = bench_server_worker(&srv);
		if (srv.supervised)
			o.mem_pid[o.nmem++] = srv.pid;
	}

	printf("ping_pong: %s on %s; %s, %s; %lu requests after %lu warm-up%s%s\n", srv.what,
	    srv.sock, o.common.new_conn ? "a new connection per request" : "one keep-alive connection",
	    o.common.fd ? "a memfd with each" : "no fd", o.iters, o.warmup,
	    o.client_lib ? "; fdh_client_request()" : "", o.idle ? "; idle connections held" : "");

	if (!o.common.new_conn) {
		if (o.client_lib) {
			r = fdh_client_connect(srv.sock, 10000, &cl);
		} else {
			sock = r = bench_connect(srv.sock);
		}
		if (r < 0) {
			snprintf(why, sizeof(why), "cannot connect to %.100s: %s", srv.sock,
			    strerror(-r));
			fail(&srv, 0, "", why);
		}
	}
	/* A few requests first, so the memory baseline has every buffer in place. */
	bench_phase = "first requests";
	for (i = 0; i < 100 && !o.common.new_conn; i++) {
		r = cl ? lib_ping(cl, memfd, why) : bench_ping(sock, req, len, memfd, why);
		if (r < 0)
			fail(&srv, i, " (before the run)", why);
		bench_progress++;
	}
	for (k = 0; k < o.nmem; k++) {
		if (bench_mem(o.mem_pid[k], &before[k]) < 0) {
			fprintf(stderr, "ping_pong: cannot read the memory of pid %ld\n",
			    (long)o.mem_pid[k]);
			(void)bench_watchdog(NULL, 0);
			bench_server_stop(&srv);
			goto out;
		}
	}
	bench_phase = "opening idle connections: does the server allow that many?";
	for (i = 0; i < o.idle; i++) {
		idle[i] = bench_connect(srv.sock);
		if (idle[i] < 0)
			fail(&srv, i, " (opening idle connections)", strerror(-idle[i]));
		/* A served keep-alive connection, as a client between requests holds it. */
		r = bench_ping(idle[i], req, len, memfd, why);
		if (r < 0)
			fail(&srv, i, " (on an idle connection)", why);
		bench_progress++;
	}
	if (o.idle > 0) {
		for (k = 0; k < o.nmem; k++)
			(void)bench_mem(o.mem_pid[k], &after[k]);
		report_mem(&o, before, after);
	}

	bench_phase = "timed requests";
	total = o.warmup + o.iters;
	for (i = 0; i < total; i++) {
		uint64_t t0, t1;

		if (i == o.warmup)
			t_start = bench_now_ns();
		t0 = bench_now_ns();
		if (o.common.new_conn)
			r = new_conn_ping(&o, srv.sock, req, len, memfd, why);
		else if (cl)
			r = lib_ping(cl, memfd, why);
		else
			r = bench_ping(sock, req, len, memfd, why);
		t1 = bench_now_ns();
		if (r < 0)
			fail(&srv, i, i < o.warmup ? " (warm-up)" : "", why);
		if (i >= o.warmup)
			lat[i - o.warmup] = t1 - t0;
		bench_progress++;
	}
	t_end = bench_now_ns();
	(void)bench_watchdog(NULL, 0);

	bench_stats(lat, o.iters, (double)(t_end - t_start) / 1e9, &st);
	bench_print_stats(&st);
	printf("result min=%.2f p50=%.2f p90=%.2f p99=%.2f p999=%.2f max=%.2f rps=%.0f\n", st.min,
	    st.p50, st.p90, st.p99, st.p999, st.max, st.rps);
	fflush(stdout);

	if (cl)
		fdh_client_free(cl);
	else if (sock >= 0)
		close(sock);
	for (i = 0; i < o.idle; i++)
		close(idle[i]);
	bench_server_stop(&srv);
	ret = 0;
out:
	if (memfd >= 0)
		close(memfd);
	free(lat);
	free(idle);
	return ret;
}
