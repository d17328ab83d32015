/*
 * The benchmarks' shared parts: the server under test, the request bytes
 * and a response check that reads each answer once, with no allocation.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#ifndef BENCH_FDHTTPD
#define BENCH_FDHTTPD ""
#endif
#ifndef BENCH_ECHO
#define BENCH_ECHO ""
#endif

/* How long a started server gets to answer its first POST /ping. */
#define START_TIMEOUT_MS 10000
/* How long it gets to exit after SIGTERM before SIGKILL. */
#define STOP_TIMEOUT_MS 10000
/* The descriptor limit we ask for, when allowed to. */
#define BENCH_NOFILE 65536

volatile unsigned long bench_progress;
const char *volatile bench_phase = "";
static const char *wd_prog = "bench";
static unsigned wd_limit, wd_idle;
static unsigned long wd_seen;

static void
wd_write(const char *s)
{
	ssize_t r = write(STDERR_FILENO, s, strlen(s));

	(void)r;
}

/* Only async-signal-safe calls: it may interrupt anything. */
static void
on_alarm(int sig)
{
	char num[16], *p = num + sizeof(num) - 1;
	unsigned v = wd_limit;

	(void)sig;
	if (bench_progress != wd_seen) {
		wd_seen = bench_progress;
		wd_idle = 0;
		return;
	}
	if (++wd_idle < wd_limit)
		return;
	*p = '\0';
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	wd_write(wd_prog);
	wd_write(": no answer for ");
	wd_write(p);
	wd_write(" s");
	if (bench_phase[0]) {
		wd_write(" (");
		wd_write(bench_phase);
		wd_write(")");
	}
	wd_write("; stopping\n");
	_exit(1);
}

int
bench_watchdog(const char *prog, unsigned seconds)
{
	struct sigaction sa = { .sa_handler = on_alarm, .sa_flags = SA_RESTART };
	struct itimerval it = { .it_interval = { .tv_sec = 1 }, .it_value = { .tv_sec = 1 } };

	if (seconds == 0) {
		it = (struct itimerval){ 0 };	/* off */
		return setitimer(ITIMER_REAL, &it, NULL) == -1 ? -errno : 0;
	}
	wd_prog = prog;
	wd_limit = seconds;
	wd_idle = 0;
	wd_seen = bench_progress;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) == -1 || setitimer(ITIMER_REAL, &it, NULL) == -1)
		return -errno;
	return 0;
}

uint64_t
bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* An executable named by the environment, else the one built beside us. */
static const char *
exe(const char *env, const char *built)
{
	const char *p = getenv(env);

	if (p && *p)
		return p;
	return built;
}

static bool
executable(const char *path)
{
	return path && *path && access(path, X_OK) == 0;
}

static void
rmtree_flat(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (d) {
		while ((e = readdir(d)) != NULL)
			if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
				(void)unlinkat(dirfd(d), e->d_name, 0);
		closedir(d);
	}
	(void)rmdir(dir);
}

static void
show_log(const char *dir)
{
	char path[PATH_MAX + 16], buf[4096];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/server.log", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return;
	fprintf(stderr, "--- server output ---\n");
	fflush(stderr);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (write(STDERR_FILENO, buf, (size_t)n) != n)
			break;
	fprintf(stderr, "---\n");
	close(fd);
}

/* Runs argv with stdin from /dev/null and its output in DIR/server.log. */
static int
spawn(char *const argv[], const char *dir, pid_t *ret_pid)
{
	char log[PATH_MAX + 16];
	pid_t pid;
	int logfd, null, r;

	snprintf(log, sizeof(log), "%s/server.log", dir);
	logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (logfd == -1)
		return -errno;
	null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null == -1) {
		r = -errno;
		close(logfd);
		return r;
	}
	pid = fork();
	if (pid == -1) {
		r = -errno;
		close(logfd);
		close(null);
		return r;
	}
	if (pid == 0) {
		/* A benchmark that dies takes its server with it. */
		(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (dup2(null, STDIN_FILENO) == -1 || dup2(logfd, STDOUT_FILENO) == -1 ||
		    dup2(logfd, STDERR_FILENO) == -1)
			_exit(127);
		(void)close_range(3, ~0u, 0);
		execv(argv[0], argv);
		dprintf(STDERR_FILENO, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(logfd);
	close(null);
	*ret_pid = pid;
	return 0;
}

/* Waits for a first correct POST /ping, or for the server to die. */
static int
wait_ready(pid_t pid, const char *sock, char *why)
{
	uint64_t end = bench_now_ns() + (uint64_t)START_TIMEOUT_MS * 1000000u;
	char req[BENCH_REQ_MAX];
	size_t len = bench_request(req, sizeof(req), false);
	int status, r = -ETIMEDOUT;

	snprintf(why, BENCH_WHY_MAX, "no answer within %d ms", START_TIMEOUT_MS);
	while (bench_now_ns() < end) {
		struct timeval tv = { .tv_sec = 2 };
		int s;

		if (waitpid(pid, &status, WNOHANG) == pid) {
			snprintf(why, BENCH_WHY_MAX, "the server exited (status 0x%x)",
			    (unsigned)status);
			return -ECHILD;
		}
		s = bench_connect(sock);
		if (s >= 0) {
			(void)setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
			r = bench_ping(s, req, len, -1, why);
			close(s);
			if (r == 0)
				return 0;
		}
		sleep_ms(20);
	}
	return r;
}

static void
kill_and_wait(pid_t pid)
{
	uint64_t end = bench_now_ns() + (uint64_t)STOP_TIMEOUT_MS * 1000000u;
	int status;

	(void)kill(pid, SIGTERM);
	while (bench_now_ns() < end) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w == pid || (w == -1 && errno != EINTR))
			return;
		sleep_ms(5);
	}
	(void)kill(pid, SIGKILL);
	(void)waitpid(pid, &status, 0);
}

int
bench_server_start(const struct bench_server_opts *opts, struct bench_server *ret)
{
	const char *fdhttpd = exe("FDH_FDHTTPD", BENCH_FDHTTPD);
	const char *echo = exe("FDH_ECHO", BENCH_ECHO);
	char why[BENCH_WHY_MAX], workers[16], conns[16], peruid[16];
	char *argv[24];
	unsigned max_conns = opts->max_conns ? opts->max_conns : 256;
	size_t n = 0;
	int r;

	memset(ret, 0, sizeof(*ret));
	if (!executable(echo)) {
		fprintf(stderr, "fdhttp-echo not found at '%s': build it, or set FDH_ECHO\n", echo);
		return -ENOENT;
	}
	snprintf(ret->dir, sizeof(ret->dir), "/tmp/fdhttp-bench.XXXXXX");
	if (!mkdtemp(ret->dir))
		return -errno;
	snprintf(ret->sock, sizeof(ret->sock), "%.90s/s.sock", ret->dir);
	snprintf(conns, sizeof(conns), "%u", max_conns);
	snprintf(workers, sizeof(workers), "%u", opts->workers ? opts->workers : 1);
	/* The idle-connection measurements hold more than the default 1024 per uid. */
	snprintf(peruid, sizeof(peruid), "%u", max_conns * (opts->workers ? opts->workers : 1) + 64);

	if (!opts->direct && !executable(fdhttpd))
		fprintf(stderr, "fdhttpd is not built (looked for '%s'): measuring fdhttp-echo "
		    "alone, without the supervisor\n", fdhttpd);
	if (!opts->direct && executable(fdhttpd)) {
		argv[n++] = (char *)(uintptr_t)fdhttpd;
		argv[n++] = (char *)"--socket";
		argv[n++] = ret->sock;
		argv[n++] = (char *)"--workers";
		argv[n++] = workers;
		argv[n++] = (char *)"--max-conns";
		argv[n++] = conns;
		argv[n++] = (char *)"--max-conns-per-uid";
		argv[n++] = peruid;
		argv[n++] = (char *)"--log-level";
		argv[n++] = (char *)"warn";
		if (geteuid() == 0) {
			/* As nginx does when started as root. */
			argv[n++] = (char *)"--user";
			argv[n++] = (char *)"nobody";
		}
		argv[n++] = (char *)"--";
		argv[n++] = (char *)(uintptr_t)echo;
		ret->supervised = true;
		snprintf(ret->what, sizeof(ret->what), "fdhttpd -w %s + fdhttp-echo", workers);
	} else {
		argv[n++] = (char *)(uintptr_t)echo;
		argv[n++] = (char *)"--socket";
		argv[n++] = ret->sock;
		argv[n++] = (char *)"--max-conns";
		argv[n++] = conns;
		snprintf(ret->what, sizeof(ret->what), "fdhttp-echo alone");
	}
	argv[n] = NULL;

	r = spawn(argv, ret->dir, &ret->pid);
	if (r < 0) {
		rmtree_flat(ret->dir);
		return r;
	}
	r = wait_ready(ret->pid, ret->sock, why);
	if (r < 0) {
		fprintf(stderr, "%s on %s did not answer POST /ping: %s\n", ret->what, ret->sock,
		    why);
		kill_and_wait(ret->pid);
		show_log(ret->dir);
		rmtree_flat(ret->dir);
		ret->pid = 0;
		return r;
	}
	return 0;
}

int
bench_server_attach(const char *path, struct bench_server *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (strlen(path) >= sizeof(ret->sock))
		return -ENAMETOOLONG;
	snprintf(ret->sock, sizeof(ret->sock), "%s", path);
	snprintf(ret->what, sizeof(ret->what), "the server");
	return 0;
}

void
bench_server_stop(struct bench_server *s)
{
	if (s->pid <= 0)
		return;
	kill_and_wait(s->pid);
	rmtree_flat(s->dir);
	s->pid = 0;
}

pid_t
bench_server_worker(const struct bench_server *s)
{
	char path[64], buf[256];
	long pid;
	FILE *f;

	if (s->pid <= 0 || !s->supervised)
		return s->pid;
	snprintf(path, sizeof(path), "/proc/%ld/task/%ld/children", (long)s->pid, (long)s->pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f) || sscanf(buf, "%ld", &pid) != 1)
		pid = -1;
	fclose(f);
	return (pid_t)pid;
}

int
bench_connect(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	size_t len = strlen(path);
	socklen_t alen;
	int s, r;

	if (len >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, len);
	alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	if (path[0] == '@') {
		sun.sun_path[0] = '\0';
		alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	}
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s == -1)
		return -errno;
	if (connect(s, (struct sockaddr *)&sun, alen) == -1) {
		r = -errno;
		close(s);
		return r;
	}
	return s;
}

unsigned long
bench_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return 0;
	/* Root may raise the hard limit too; servers we start inherit it. */
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < BENCH_NOFILE) {
		struct rlimit more = { .rlim_cur = BENCH_NOFILE, .rlim_max = BENCH_NOFILE };

		if (setrlimit(RLIMIT_NOFILE, &more) == 0)
			rl = more;
	}
	rl.rlim_cur = rl.rlim_max;
	(void)setrlimit(RLIMIT_NOFILE, &rl);
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return 0;
	return (unsigned long)rl.rlim_cur;
}

size_t
bench_request(char *buf, size_t size, bool with_fd)
{
	int n = snprintf(buf, size, "POST /ping HTTP/1.1\r\nHost: localhost\r\n%s"
	    "Content-Length: 4\r\n\r\nping", with_fd ? "X-FD: f\r\n" : "");

	return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

/* One sendmsg() of buf with fd attached. */
static ssize_t
send_with_fd(int sock, const char *buf, size_t len, int fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct iovec iov = { .iov_base = (char *)(uintptr_t)buf, .iov_len = len };
	struct msghdr m = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cm.buf,
		.msg_controllen = sizeof(cm.buf),
	};
	struct cmsghdr *c;

	memset(&cm, 0, sizeof(cm));
	c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &m, MSG_NOSIGNAL);
}

int
bench_send(int sock, const char *req, size_t len, int fd)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n;

		/*
		 * Without an fd, send(): the client's cost is in every figure,
		 * and load runs its thread flat out; sendmsg() would have the
		 * kernel copy in a msghdr and an iovec besides.
		 */
		if (fd >= 0 && off == 0)
			n = send_with_fd(sock, req, len, fd);
		else
			n = send(sock, req + off, len - off, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (size_t)n;
	}
	return 0;
}

static bool
name_is(const char *p, size_t n, const char *name)
{
	return strlen(name) == n && strncasecmp(p, name, n) == 0;
}

/* The value of a header field without the whitespace around it. */
static void
trim(const char **v, const char **end)
{
	while (*v < *end && (**v == ' ' || **v == '\t'))
		(*v)++;
	while (*end > *v && ((*end)[-1] == ' ' || (*end)[-1] == '\t'))
		(*end)--;
}

/* Does a Connection value list the token "close"? */
static bool
has_close(const char *v, const char *end)
{
	while (v < end) {
		const char *t = v, *te;

		while (v < end && *v != ',')
			v++;
		te = v;
		trim(&t, &te);
		if (name_is(t, (size_t)(te - t), "close"))
			return true;
		if (v < end)
			v++;
	}
	return false;
}

int
bench_parse_resp(const char *buf, size_t len, struct bench_resp *r)
{
	const char *blank = memmem(buf, len, "\r\n\r\n", 4);
	const char *p, *head_end;
	bool have_length = false;
	size_t length = 0;

	if (!blank)
		return len >= BENCH_RESP_MAX ? -EBADMSG : 0;
	head_end = blank + 2;	/* every line of the head ends in CRLF */
	if (head_end - buf < 14 || memcmp(buf, "HTTP/1.1 ", 9) != 0 ||
	    !isdigit((unsigned char)buf[9]) || !isdigit((unsigned char)buf[10]) ||
	    !isdigit((unsigned char)buf[11]) || (buf[12] != ' ' && buf[12] != '\r'))
		return -EBADMSG;
	r->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	r->close = false;
	p = memmem(buf, (size_t)(head_end - buf), "\r\n", 2) + 2;
	while (p < head_end) {
		const char *eol = memmem(p, (size_t)(head_end - p), "\r\n", 2);
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		const char *v, *ve;

		if (!colon)
			return -EBADMSG;
		v = colon + 1;
		ve = eol;
		trim(&v, &ve);
		if (name_is(p, (size_t)(colon - p), "content-length")) {
			if (have_length || v == ve)
				return -EBADMSG;
			have_length = true;
			for (; v < ve; v++) {
				if (!isdigit((unsigned char)*v) || length > BENCH_RESP_MAX)
					return -EBADMSG;
				length = length * 10 + (size_t)(*v - '0');
			}
		} else if (name_is(p, (size_t)(colon - p), "transfer-encoding")) {
			return -EBADMSG;	/* every server here frames with Content-Length */
		} else if (name_is(p, (size_t)(colon - p), "connection")) {
			r->close = r->close || has_close(v, ve);
		}
		p = eol + 2;
	}
	if (!have_length)
		return -EBADMSG;
	r->head_len = (size_t)(blank + 4 - buf);
	r->body_len = length;
	r->total = r->head_len + length;
	if (r->total > BENCH_RESP_MAX)
		return -EBADMSG;
	return len >= r->total ? 1 : 0;
}

const char *
bench_check_pong(const char *buf, const struct bench_resp *r)
{
	if (r->status != 200)
		return "status is not 200";
	if (r->body_len != 4 || memcmp(buf + r->head_len, "pong", 4) != 0)
		return "body is not \"pong\"";
	return NULL;
}

int
bench_recv_pong(int sock, char *buf, struct bench_resp *r, char *why)
{
	const char *bad;
	size_t len = 0;
	int p;

	for (;;) {
		ssize_t n = recv(sock, buf + len, BENCH_RESP_MAX - len, 0);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			int e = errno;

			snprintf(why, BENCH_WHY_MAX, "%s",
			    e == EAGAIN ? "no answer in time" : strerror(e));
			return -e;
		}
		if (n == 0) {
			snprintf(why, BENCH_WHY_MAX, "%s", len ?
			    "the server closed the connection inside a response" :
			    "the server closed the connection instead of answering");
			return -ECONNRESET;
		}
		len += (size_t)n;
		p = bench_parse_resp(buf, len, r);
		if (p < 0) {
			snprintf(why, BENCH_WHY_MAX, "malformed response: \"%.60s\"", buf);
			return p;
		}
		if (p > 0)
			break;
	}
	if (len != r->total) {
		snprintf(why, BENCH_WHY_MAX, "%zu bytes after the response", len - r->total);
		return -EPROTO;
	}
	bad = bench_check_pong(buf, r);
	if (bad) {
		snprintf(why, BENCH_WHY_MAX, "%s: \"%.*s\"", bad,
		    (int)(memchr(buf, '\r', len) ? (const char *)memchr(buf, '\r', len) - buf : 0),
		    buf);
		return -EPROTO;
	}
	if (r->close) {
		snprintf(why, BENCH_WHY_MAX, "the server answered with Connection: close");
		return -ECONNRESET;
	}
	return 0;
}

int
bench_ping(int sock, const char *req, size_t len, int fd, char *why)
{
	char buf[BENCH_RESP_MAX];
	struct bench_resp r;
	int e = bench_send(sock, req, len, fd);

	if (e < 0) {
		snprintf(why, BENCH_WHY_MAX, "sending the request: %s", strerror(-e));
		return e;
	}
	return bench_recv_pong(sock, buf, &r, why);
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest value with at least p percent at or below it. */
static double
pct_us(const uint64_t *sorted, size_t n, double p)
{
	size_t k = (size_t)((p / 100.0) * (double)n + 0.999999);

	if (k == 0)
		k = 1;
	if (k > n)
		k = n;
	return (double)sorted[k - 1] / 1000.0;
}

void
bench_stats(uint64_t *ns, size_t n, double seconds, struct bench_stats *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (n == 0)
		return;
	qsort(ns, n, sizeof(*ns), cmp_u64);
	ret->min = (double)ns[0] / 1000.0;
	ret->p50 = pct_us(ns, n, 50);
	ret->p90 = pct_us(ns, n, 90);
	ret->p99 = pct_us(ns, n, 99);
	ret->p999 = pct_us(ns, n, 99.9);
	ret->max = (double)ns[n - 1] / 1000.0;
	ret->rps = seconds > 0 ? (double)n / seconds : 0;
}

void
bench_print_stats(const struct bench_stats *s)
{
	printf("latency us:  min %.2f  p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n",
	    s->min, s->p50, s->p90, s->p99, s->p999, s->max);
	printf("requests/s:  %.0f\n", s->rps);
}

int
bench_mem(pid_t pid, struct bench_mem *ret)
{
	char path[64], line[256];
	FILE *f;

	ret->rss_kib = ret->pss_kib = -1;
	snprintf(path, sizeof(path), "/proc/%ld/smaps_rollup", (long)pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		long v;

		if (sscanf(line, "Rss: %ld kB", &v) == 1)
			ret->rss_kib = v;
		else if (sscanf(line, "Pss: %ld kB", &v) == 1)
			ret->pss_kib = v;
	}
	fclose(f);
	return ret->rss_kib >= 0 && ret->pss_kib >= 0 ? 0 : -EPROTO;
}

bool
bench_common_opt(int c, const char *arg, const char *usage, struct bench_common_opts *o)
{
	switch (c) {
	case 's':
		o->socket = arg;
		return true;
	case BENCH_OPT_FD:
		o->fd = true;
		return true;
	case BENCH_OPT_NEW_CONN:
		o->new_conn = true;
		return true;
	case 'w':
		o->server.workers = (unsigned)bench_uint("--workers", arg, 1, 256);
		return true;
	case BENCH_OPT_DIRECT:
		o->server.direct = true;
		return true;
	case 'h':
		fputs(usage, stdout);
		exit(0);
	case '?':
		fputs(usage, stderr);
		exit(2);
	default:
		return false;
	}
}

void
bench_no_operands(const char *prog, int argc, char **argv, int optind_, const char *usage)
{
	if (optind_ < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n%s", prog, argv[optind_], usage);
		exit(2);
	}
}

unsigned long
bench_uint(const char *opt, const char *arg, unsigned long min, unsigned long max)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(arg, &end, 10);
	if (errno || end == arg || *end || arg[0] == '-' || v < min || v > max) {
		fprintf(stderr, "%s: '%s' is not a number from %lu to %lu\n", opt, arg, min, max);
		exit(2);
	}
	return v;
}

double
bench_seconds(const char *opt, const char *arg)
{
	double v;
	char *end;

	errno = 0;
	v = strtod(arg, &end);
	if (errno || end == arg || *end || !(v > 0) || v > 86400) {
		fprintf(stderr, "%s: '%s' is not a number of seconds\n", opt, arg);
		exit(2);
	}
	return v;
}

int
bench_memfd(void)
{
	int fd = memfd_create("fdhttp-bench", MFD_CLOEXEC | MFD_ALLOW_SEALING), r;

	if (fd == -1)
		return -errno;
	if (write(fd, "f", 1) != 1 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) == -1) {
		r = errno ? -errno : -EIO;	/* a short write() sets no errno */
		close(fd);
		return r;
	}
	return fd;
}
