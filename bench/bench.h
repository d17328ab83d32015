/*
 * What the benchmarks share: the server they measure (started here or
 * named with --socket), the request bytes, a lean response check, clocks
 * and percentiles.
 *
 * The hot loops speak to the socket directly rather than through
 * fdh_client_request(): one sendmsg() of prebuilt bytes and one recv() of
 * the answer, so the figures measure the server and not the client.
 * Functions return 0 (or a count, or an fd) on success and -errno on
 * failure, like the library.
 */
#ifndef FDH_BENCH_H
#define FDH_BENCH_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Room for any answer to POST /ping: nginx's is about 160 bytes. */
#define BENCH_RESP_MAX	1024
/* Room for the request with its X-FD header. */
#define BENCH_REQ_MAX	256

struct bench_server_opts {
	unsigned workers;	/* fdhttpd -w */
	unsigned max_conns;	/* per worker; 0: the default (256) */
	bool direct;		/* fdhttp-echo alone, without fdhttpd */
};

struct bench_server {
	pid_t pid;		/* fdhttpd, or fdhttp-echo alone; 0 with --socket */
	bool supervised;	/* pid is fdhttpd */
	char dir[PATH_MAX];	/* temporary directory, removed by stop */
	char sock[108];		/* what the benchmark connects to */
	char what[128];		/* "fdhttpd -w 1 + fdhttp-echo", for the report */
};

/*
 * Starts fdhttpd with opts->workers fdhttp-echo workers (or fdhttp-echo
 * alone, when asked or when fdhttpd was not built) on a socket in a new
 * temporary directory, and returns once it answers POST /ping.  The
 * server's output goes to a log that is shown when it fails to start.
 */
int bench_server_start(const struct bench_server_opts *opts, struct bench_server *ret);
/* Uses a server someone else runs at path. */
int bench_server_attach(const char *path, struct bench_server *ret);
/* Stops a server we started (SIGTERM, then SIGKILL) and removes its directory. */
void bench_server_stop(struct bench_server *s);
/* The process that serves connections: the first worker, or the server itself. */
pid_t bench_server_worker(const struct bench_server *s);

/* A blocking, close-on-exec socket connected to path ("@name": abstract). */
int bench_connect(const char *path);
/* Raises RLIMIT_NOFILE (the hard limit too, as root); returns the new soft limit. */
unsigned long bench_raise_nofile(void);

/* "POST /ping" with body "ping", and "X-FD: f" when with_fd; returns its length. */
size_t bench_request(char *buf, size_t size, bool with_fd);
/*
 * Sends the request: one sendmsg() with fd attached, or one send() when
 * fd is -1.
 * Returns 0, or -errno (-EAGAIN on a non-blocking socket that is full);
 * a short send finishes in further calls, the fd going with the first.
 */
int bench_send(int sock, const char *req, size_t len, int fd);

struct bench_resp {
	int status;
	bool close;		/* Connection: close */
	size_t head_len;	/* through the blank line */
	size_t body_len;	/* Content-Length */
	size_t total;		/* head_len + body_len */
};

/*
 * Parses the response at the start of buf[0..len).  1: complete (r filled
 * in), 0: incomplete, -EBADMSG: not a Content-Length framed HTTP/1.1
 * response.
 */
int bench_parse_resp(const char *buf, size_t len, struct bench_resp *r);
/* NULL when the complete response in buf is 200 with body "pong"; else the reason. */
const char *bench_check_pong(const char *buf, const struct bench_resp *r);

/* Room for what went wrong with an exchange. */
#define BENCH_WHY_MAX	160

/*
 * Reads one response from a blocking socket into buf (BENCH_RESP_MAX) and
 * checks it is 200 "pong" with nothing after it.  Returns 0, or -errno
 * with why (BENCH_WHY_MAX) saying what was wrong.
 */
int bench_recv_pong(int sock, char *buf, struct bench_resp *r, char *why);

/* One request and its check on a connected blocking socket. */
int bench_ping(int sock, const char *req, size_t len, int fd, char *why);

uint64_t bench_now_ns(void);

struct bench_stats {
	double min, p50, p90, p99, p999, max;	/* microseconds, nearest rank */
	double rps;
};
/* Sorts ns[0..n), latencies in nanoseconds, and fills in *ret; n / seconds is rps. */
void bench_stats(uint64_t *ns, size_t n, double seconds, struct bench_stats *ret);
/* "latency us: min ... max ..." and "requests/s: ..." */
void bench_print_stats(const struct bench_stats *s);

/*
 * A stalled server must not hang a benchmark.  Once a second (SIGALRM, with
 * SA_RESTART) the watchdog looks at bench_progress, which the loop bumps
 * after each answer; after `seconds` without one it says so, naming
 * bench_phase, and exits 1 (the server we started follows by
 * PR_SET_PDEATHSIG).  No system call per request.  0 seconds: off.
 */
extern volatile unsigned long bench_progress;
extern const char *volatile bench_phase;
int bench_watchdog(const char *prog, unsigned seconds);

struct bench_mem {
	long rss_kib;
	long pss_kib;
};
/* Rss and Pss of pid from /proc/PID/smaps_rollup. */
int bench_mem(pid_t pid, struct bench_mem *ret);

/* Parses a decimal count in [min, max] or exits with a message naming opt. */
/*
 * The options ping_pong and load share: where the server is, what each
 * request carries, how a server we start is run.  Each program lists
 * BENCH_COMMON_LONGOPTS among its own and numbers its own long-only
 * options from BENCH_OPT_OWN.
 */
struct bench_common_opts {
	const char *socket;
	bool fd;
	bool new_conn;
	struct bench_server_opts server;
};
enum { BENCH_OPT_FD = 256, BENCH_OPT_NEW_CONN, BENCH_OPT_DIRECT, BENCH_OPT_OWN };
#define BENCH_COMMON_SHORTOPTS "s:w:h"
#define BENCH_COMMON_LONGOPTS \
	{ "socket", required_argument, NULL, 's' }, \
	{ "fd", no_argument, NULL, BENCH_OPT_FD }, \
	{ "new-conn", no_argument, NULL, BENCH_OPT_NEW_CONN }, \
	{ "workers", required_argument, NULL, 'w' }, \
	{ "direct", no_argument, NULL, BENCH_OPT_DIRECT }, \
	{ "help", no_argument, NULL, 'h' }
/*
 * Takes getopt_long()'s c when it is a shared option; --help prints usage
 * and exits 0, an unknown option exits 2.  False for the caller's own.
 */
bool bench_common_opt(int c, const char *arg, const char *usage, struct bench_common_opts *o);
/* Exits 2 when operands follow the options: the benchmarks take none. */
void bench_no_operands(const char *prog, int argc, char **argv, int optind_, const char *usage);

unsigned long bench_uint(const char *opt, const char *arg, unsigned long min, unsigned long max);
/* Parses seconds (fractions allowed) > 0 or exits. */
double bench_seconds(const char *opt, const char *arg);

/* A sealed one-byte memfd to attach to requests. */
int bench_memfd(void);

#endif
