/* Support for the C tests: processes, raw sockets, fds. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fdhttp/common.h>
#include "fdpass.h"
#include "harness.h"

extern char **environ;

int64_t
fdh_test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
fdh_test_sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* -1 for no deadline. */
static int64_t
deadline_after(int timeout_ms)
{
	return timeout_ms > 0 ? fdh_test_now_ms() + timeout_ms : -1;
}

/* Waits for POLLIN: 1 readable, 0 deadline passed, -errno. */
static int
wait_readable(int fd, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int64_t left;
	int n;

	for (;;) {
		left = deadline < 0 ? -1 : deadline - fdh_test_now_ms();
		if (deadline >= 0 && left <= 0)
			return 0;
		n = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (n > 0)
			return 1;
		if (n == -1 && errno != EINTR)
			return -errno;
	}
}

const char *
fdh_test_echo_exe(void)
{
	static char path[PATH_MAX];
	const char *s;

	if ((s = getenv("FDH_ECHO")) && *s)
		return s;
	if ((s = getenv("FDH_BUILD_DIR")) && *s) {
		if (snprintf(path, sizeof(path), "%s/examples/fdhttp-echo", s) <
		    (int)sizeof(path))
			return path;
	}
	return NULL;
}

/* --- processes ------------------------------------------------------------- */

int
fdh_test_mkdtemp(char *ret, size_t size)
{
	const char *base = getenv("TMPDIR");

	/* sun_path holds 108 bytes: keep room for "/fdh-test-XXXXXX/s.sock". */
	if (!base || base[0] != '/' || strlen(base) > 60)
		base = "/tmp";
	if ((size_t)snprintf(ret, size, "%s/fdh-test-XXXXXX", base) >= size)
		return -ENAMETOOLONG;
	if (!mkdtemp(ret))
		return -errno;
	return 0;
}

static int
rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP)
		return rmdir(path) == -1 ? -1 : 0;
	return unlink(path) == -1 ? -1 : 0;
}

int
fdh_test_rmtree(const char *dir)
{
	if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == -1)
		return -errno;
	return 0;
}

/* A copy of s with every "{sock}" and "{dir}" replaced. */
static char *
substitute(const char *s, const struct fdh_test_proc *p)
{
	/* At most one replacement per five characters, each at most PATH_MAX. */
	size_t cap = strlen(s) + strlen(s) / 5 * sizeof(p->dir) + 1, len = 0;
	char *out = malloc(cap);

	if (!out)
		return NULL;
	while (*s) {
		const char *rep = NULL;
		size_t skip = 0;

		if (strncmp(s, "{sock}", 6) == 0) {
			rep = p->sock;
			skip = 6;
		} else if (strncmp(s, "{dir}", 5) == 0) {
			rep = p->dir;
			skip = 5;
		}
		if (rep) {
			memcpy(out + len, rep, strlen(rep));
			len += strlen(rep);
			s += skip;
		} else {
			out[len++] = *s++;
		}
	}
	out[len] = '\0';
	return out;
}

static void
free_argv(char **argv)
{
	size_t i;

	if (!argv)
		return;
	for (i = 0; argv[i]; i++)
		free(argv[i]);
	free(argv);
}

/* Status of a waitpid() as the shell reports it. */
static int
exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -EINVAL;
}

/* 1 when path accepts a connection. */
static int
socket_ready(const char *path)
{
	int fd = fdh_test_connect(path, 1000);

	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

int
fdh_test_start_argv(const char *const *argv, struct fdh_test_proc *ret)
{
	struct fdh_test_proc p = { .pid = -1 };
	char **args = NULL;
	size_t n, i;
	pid_t parent = getpid();
	int64_t deadline;
	int r, status;

	if (!argv || !argv[0] || !ret)
		return -EINVAL;
	if ((r = fdh_test_mkdtemp(p.dir, sizeof(p.dir))) < 0)
		return r;
	if ((size_t)snprintf(p.sock, sizeof(p.sock), "%s/s.sock", p.dir) >= sizeof(p.sock)) {
		r = -ENAMETOOLONG;
		goto fail;
	}
	for (n = 0; argv[n]; n++)
		;
	args = calloc(n + 1, sizeof(*args));
	if (!args) {
		r = -ENOMEM;
		goto fail;
	}
	for (i = 0; i < n; i++) {
		if (!(args[i] = substitute(argv[i], &p))) {
			r = -ENOMEM;
			goto fail;
		}
	}

	p.pid = fork();
	if (p.pid == -1) {
		r = -errno;
		goto fail;
	}
	if (p.pid == 0) {
		sigset_t all;

		/* A test that crashes must not leave its service running. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		/* The service sees only stdio, so its fd counts mean something. */
		close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		signal(SIGPIPE, SIG_DFL);
		execve(args[0], args, environ);
		_exit(127);
	}

	deadline = fdh_test_now_ms() + FDH_TEST_START_TIMEOUT_MS;
	for (;;) {
		pid_t w = waitpid(p.pid, &status, WNOHANG);

		if (w == p.pid) {
			p.pid = -1;
			r = -ECHILD;
			goto fail;
		}
		if (socket_ready(p.sock))
			break;
		if (fdh_test_now_ms() > deadline) {
			r = -ETIMEDOUT;
			goto fail;
		}
		fdh_test_sleep_ms(10);
	}
	free_argv(args);
	*ret = p;
	return 0;
fail:
	if (p.pid > 0) {
		kill(p.pid, SIGKILL);
		while (waitpid(p.pid, &status, 0) == -1 && errno == EINTR)
			;
	}
	free_argv(args);
	fdh_test_rmtree(p.dir);
	return r;
}

int
fdh_test_start_service(const char *exe, const char *const *extra_args,
    struct fdh_test_proc *ret)
{
	const char **argv;
	size_t n = 0, i;
	int r;

	if (!exe)
		return -EINVAL;
	while (extra_args && extra_args[n])
		n++;
	argv = calloc(n + 4, sizeof(*argv));
	if (!argv)
		return -ENOMEM;
	argv[0] = exe;
	argv[1] = "--socket";
	argv[2] = "{sock}";
	for (i = 0; i < n; i++)
		argv[3 + i] = extra_args[i];
	r = fdh_test_start_argv(argv, ret);
	free(argv);
	return r;
}

int
fdh_test_wait_exit(pid_t pid, int timeout_ms)
{
	int64_t deadline = deadline_after(timeout_ms);
	int status;
	pid_t w;

	for (;;) {
		w = waitpid(pid, &status, deadline < 0 ? 0 : WNOHANG);
		if (w == pid)
			return exit_code(status);
		if (w == -1 && errno != EINTR)
			return -errno;
		if (deadline >= 0 && fdh_test_now_ms() > deadline)
			return -ETIMEDOUT;
		if (w == 0)
			fdh_test_sleep_ms(2);
	}
}

int
fdh_test_stop_service(struct fdh_test_proc *p)
{
	int r, status;

	if (!p || p->pid <= 0)
		return -EINVAL;
	if (kill(p->pid, SIGTERM) == -1) {
		r = -errno;
		goto out;
	}
	r = fdh_test_wait_exit(p->pid, FDH_TEST_STOP_TIMEOUT_MS);
	if (r == -ETIMEDOUT) {
		kill(p->pid, SIGKILL);
		while (waitpid(p->pid, &status, 0) == -1 && errno == EINTR)
			;
		r = exit_code(status);
	}
out:
	p->pid = -1;
	fdh_test_rmtree(p->dir);
	return r;
}

int
fdh_test_count_fds(pid_t pid)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	int n = 0, self;

	if (pid == 0)
		pid = getpid();
	self = pid == getpid();
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		/* Our own listing holds a descriptor that is not the test's. */
		if (self && atoi(de->d_name) == dirfd(d))
			continue;
		n++;
	}
	closedir(d);
	return n;
}

int
fdh_test_wait_fd_count(pid_t pid, int want, int ms)
{
	int64_t deadline = fdh_test_now_ms() + ms;
	int n;

	for (;;) {
		n = fdh_test_count_fds(pid);
		if (n == want || fdh_test_now_ms() > deadline)
			return n;
		fdh_test_sleep_ms(5);
	}
}

/* --- raw sockets ----------------------------------------------------------- */

static int
make_sun(const char *path, struct sockaddr_un *sun, socklen_t *ret_len)
{
	size_t plen = strlen(path);

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (path[0] == '@') {
		if (plen > sizeof(sun->sun_path))
			return -ENAMETOOLONG;
		memcpy(sun->sun_path + 1, path + 1, plen - 1);
		*ret_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
	} else {
		if (plen >= sizeof(sun->sun_path))
			return -ENAMETOOLONG;
		memcpy(sun->sun_path, path, plen + 1);
		*ret_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1);
	}
	return 0;
}

int
fdh_test_connect(const char *path, int timeout_ms)
{
	struct timeval tv = { .tv_sec = timeout_ms / 1000,
	    .tv_usec = (timeout_ms % 1000) * 1000 };
	struct sockaddr_un sun;
	socklen_t len;
	int fd, r;

	if ((r = make_sun(path, &sun, &len)) < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1 ||
	    connect(fd, (struct sockaddr *)&sun, len) == -1) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

int
fdh_test_listen(const char *path, int backlog)
{
	struct sockaddr_un sun;
	socklen_t len;
	int fd, r;

	if ((r = make_sun(path, &sun, &len)) < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sun, len) == -1 || listen(fd, backlog) == -1) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

ssize_t
fdh_test_send(int sock, const void *buf, size_t len, const int *fds, size_t nfds)
{
	struct iovec iov = { .iov_base = (void *)(uintptr_t)buf, .iov_len = len };

	return fdh_send_fds(sock, &iov, 1, fds, nfds);
}

ssize_t
fdh_test_sends(int sock, const char *s, const int *fds, size_t nfds)
{
	return fdh_test_send(sock, s, strlen(s), fds, nfds);
}

int
fdh_test_send_all(int sock, const void *buf, size_t len, const int *fds, size_t nfds)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = fdh_test_send(sock, p, len, fds, nfds);
		if (n < 0)
			return (int)n;
		if (n > 0) {
			fds = NULL;
			nfds = 0;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
msg_reserve(struct fdh_test_msg *m, size_t *cap, size_t extra)
{
	size_t c = *cap ? *cap : 4096;
	char *p;

	if (m->len + extra + 1 <= *cap)
		return 0;
	while (c < m->len + extra + 1)
		c *= 2;
	p = realloc(m->data, c);
	if (!p)
		return -ENOMEM;
	m->data = p;
	*cap = c;
	return 0;
}

/*
 * One poll-bounded receive of up to want bytes, appended to m.
 * Returns the byte count, 0 at EOF, -ETIMEDOUT, or -errno.
 */
static ssize_t
msg_recv(int sock, struct fdh_test_msg *m, size_t *cap, size_t want, int64_t deadline)
{
	size_t got = 0;
	bool trunc = false;
	ssize_t n;
	int r;

	if ((r = msg_reserve(m, cap, want)) < 0)
		return r;
	for (;;) {
		r = wait_readable(sock, deadline);
		if (r < 0)
			return r;
		if (r == 0)
			return -ETIMEDOUT;
		n = fdh_recv_fds(sock, m->data + m->len, want, m->fds + m->nfds,
		    FDH_TEST_MAX_FDS - m->nfds, &got, &trunc);
		if (n == -EAGAIN)
			continue;
		if (n < 0)
			return n;
		if (got > 0 && m->nfds == 0)
			m->fds_at = m->len;
		m->nfds += got;
		m->truncated |= trunc;
		m->len += (size_t)n;
		m->data[m->len] = '\0';
		return n;
	}
}

static void
msg_init(struct fdh_test_msg *m)
{
	memset(m, 0, sizeof(*m));
}

int
fdh_test_read_all(int sock, int timeout_ms, struct fdh_test_msg *ret)
{
	size_t cap = 0;
	ssize_t n;

	msg_init(ret);
	if (msg_reserve(ret, &cap, 0) < 0)
		return -ENOMEM;
	ret->data[0] = '\0';
	for (;;) {
		/* The timeout is for silence: a steady stream is read to its end. */
		n = msg_recv(sock, ret, &cap, 65536, deadline_after(timeout_ms));
		if (n == -ETIMEDOUT) {
			ret->timed_out = true;
			return 0;
		}
		if (n < 0)
			return (int)n;
		if (n == 0) {
			ret->eof = true;
			return 0;
		}
	}
}

/* The value of Content-Length in head[0..len): 0 when absent, -EBADMSG when bad. */
static int
head_content_length(const char *head, size_t len, size_t *ret)
{
	const char *p = head, *end = head + len;
	size_t v = 0;
	bool seen = false;

	while (p < end) {
		const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);

		if (!eol)
			break;
		if ((size_t)(eol - p) > 15 && strncasecmp(p, "Content-Length:", 15) == 0) {
			const char *q = p + 15;

			if (seen)
				return -EBADMSG;
			seen = true;
			while (q < eol && (*q == ' ' || *q == '\t'))
				q++;
			if (q == eol || *q < '0' || *q > '9')
				return -EBADMSG;
			for (; q < eol && *q >= '0' && *q <= '9'; q++) {
				if (v > (SIZE_MAX - 9) / 10)
					return -EBADMSG;
				v = v * 10 + (size_t)(*q - '0');
			}
			while (q < eol && (*q == ' ' || *q == '\t'))
				q++;
			if (q != eol)
				return -EBADMSG;
		}
		p = eol + 2;
	}
	*ret = v;
	return 0;
}

static int
read_head(int sock, int64_t deadline, struct fdh_test_msg *m, size_t *cap)
{
	ssize_t n;

	/* Byte by byte, so that not one byte of what follows is consumed. */
	for (;;) {
		n = msg_recv(sock, m, cap, 1, deadline);
		if (n == -ETIMEDOUT) {
			m->timed_out = true;
			return -ETIMEDOUT;
		}
		if (n < 0)
			return (int)n;
		if (n == 0) {
			m->eof = true;
			return -ECONNRESET;
		}
		if (m->len >= 4 && memcmp(m->data + m->len - 4, "\r\n\r\n", 4) == 0)
			break;
	}
	m->head_len = m->len;
	if (m->len > 12 && strncmp(m->data, "HTTP/1.", 7) == 0 && m->data[8] == ' ')
		m->status = atoi(m->data + 9);
	return 0;
}

int
fdh_test_read_head(int sock, int timeout_ms, struct fdh_test_msg *ret)
{
	size_t cap = 0;

	msg_init(ret);
	if (msg_reserve(ret, &cap, 0) < 0)
		return -ENOMEM;
	ret->data[0] = '\0';
	return read_head(sock, deadline_after(timeout_ms), ret, &cap);
}

int
fdh_test_read_message(int sock, int timeout_ms, struct fdh_test_msg *ret)
{
	int64_t deadline = deadline_after(timeout_ms);
	size_t cap = 0, cl = 0;
	ssize_t n;
	int r;

	msg_init(ret);
	if (msg_reserve(ret, &cap, 0) < 0)
		return -ENOMEM;
	ret->data[0] = '\0';
	if ((r = read_head(sock, deadline, ret, &cap)) < 0)
		return r;
	if ((r = head_content_length(ret->data, ret->head_len, &cl)) < 0)
		return r;
	ret->body_len = cl;
	while (ret->len < ret->head_len + cl) {
		size_t want = ret->head_len + cl - ret->len;

		n = msg_recv(sock, ret, &cap, want < 65536 ? want : 65536, deadline);
		if (n == -ETIMEDOUT) {
			ret->timed_out = true;
			return -ETIMEDOUT;
		}
		if (n < 0)
			return (int)n;
		if (n == 0) {
			ret->eof = true;
			return -ECONNRESET;
		}
	}
	return 0;
}

void
fdh_test_msg_free(struct fdh_test_msg *msg)
{
	if (!msg)
		return;
	fdh_close_fds(msg->fds, msg->nfds);
	msg->nfds = 0;
	free(msg->data);
	msg->data = NULL;
	msg->len = 0;
}

const char *
fdh_test_msg_body(const struct fdh_test_msg *msg)
{
	return msg->data ? msg->data + msg->head_len : "";
}

int
fdh_test_msg_header(const struct fdh_test_msg *msg, const char *name, char *buf, size_t size)
{
	size_t nlen = strlen(name);
	const char *p, *end;

	if (!msg->data || msg->head_len == 0)
		return -ENOENT;
	end = msg->data + msg->head_len;
	p = memmem(msg->data, msg->head_len, "\r\n", 2);
	while (p && p + 2 < end) {
		const char *line = p + 2, *eol = memmem(line, (size_t)(end - line), "\r\n", 2);
		const char *v, *ve;

		if (!eol)
			break;
		if ((size_t)(eol - line) > nlen && line[nlen] == ':' &&
		    strncasecmp(line, name, nlen) == 0) {
			v = line + nlen + 1;
			ve = eol;
			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			if ((size_t)(ve - v) >= size)
				return -ENOBUFS;
			memcpy(buf, v, (size_t)(ve - v));
			buf[ve - v] = '\0';
			return 0;
		}
		p = eol;
	}
	return -ENOENT;
}

/* --- fds ------------------------------------------------------------------- */

static int
write_all(int fd, const char *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
fdh_test_make_memfd(const char *content)
{
	int fd, r;

	fd = memfd_create("fdh-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd == -1)
		return -errno;
	if ((r = write_all(fd, content, strlen(content))) < 0)
		goto fail;
	if (lseek(fd, 0, SEEK_SET) == -1) {
		r = -errno;
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return r;
}

int
fdh_test_make_pipe_with(const char *content)
{
	int p[2], r;

	if (strlen(content) > 65536)
		return -EFBIG;
	if (pipe2(p, O_CLOEXEC) == -1)
		return -errno;
	r = write_all(p[1], content, strlen(content));
	close(p[1]);
	if (r < 0) {
		close(p[0]);
		return r;
	}
	return p[0];
}

int
fdh_test_fd_is_open(int fd)
{
	return fd >= 0 && fcntl(fd, F_GETFD) != -1;
}

ssize_t
fdh_test_read_fd(int fd, char *buf, size_t size)
{
	size_t len = 0;
	ssize_t n;

	if (size == 0)
		return -ENOBUFS;
	while (len < size - 1) {
		n = read(fd, buf + len, size - 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -errno;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return (ssize_t)len;
}

int
fdh_test_same_file(int a, int b)
{
	struct stat sa, sb;

	if (fstat(a, &sa) == -1 || fstat(b, &sb) == -1)
		return 0;
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int
fdh_test_group_start_echo(void **state, const char *const *args)
{
	struct fdh_test_proc *p = calloc(1, sizeof(*p));
	const char *exe = fdh_test_echo_exe();
	int r;

	if (!p || !exe) {
		fprintf(stderr, "fdhttp-echo not found: set FDH_ECHO\n");
		free(p);
		return -1;
	}
	r = fdh_test_start_service(exe, args, p);
	if (r < 0) {
		fprintf(stderr, "cannot start %s: %s\n", exe, strerror(-r));
		free(p);
		return -1;
	}
	*state = p;
	return 0;
}

int
fdh_test_group_stop(void **state)
{
	struct fdh_test_proc *p = *state;
	int r;

	if (!p)
		return 0;
	r = fdh_test_stop_service(p);
	free(p);
	*state = NULL;
	if (r != 0) {
		fprintf(stderr, "the service exited with status %d\n", r);
		return -1;
	}
	return 0;
}
