/*
 * fdhttp-echo: the reference service.  Every route answers something a
 * test or a benchmark can check exactly (CONTRACT section 8).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <fdhttp/service.h>

/* How long POST /fd/read waits for the writer of a pipe to finish, in ms. */
#define FD_READ_TIMEOUT_MS 5000

struct echo {
	bool enable_crash;
	int status_fd;	/* /proc/self/status, opened before any sandbox */
};

static struct echo echo = { .status_fd = -1 };

static int
health(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	(void)req;
	(void)ud;
	return fdh_resp_body_borrow(resp, "ok", 2, NULL, NULL);
}

static int
ping(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	(void)req;
	(void)ud;
	return fdh_resp_body_borrow(resp, "pong", 4, NULL, NULL);
}

static int
echo_body(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	const void *body;
	size_t len, i, n = fdh_req_fd_count(req);
	int r;

	(void)ud;
	body = fdh_req_body(req, &len);
	r = fdh_resp_body(resp, body, len);
	if (r < 0)
		return r;
	/* Same names, same order: the client can tell each fd came back. */
	for (i = 0; i < n; i++) {
		const char *name = fdh_req_fd_name(req, i);
		int fd = fdh_req_take_fd(req, name);

		if (fd < 0)
			return fd;
		r = fdh_resp_fd(resp, name, fd);
		if (r < 0)
			return r;
	}
	return 0;
}

static int
text(struct fdh_resp *resp, int status, const char *msg)
{
	fdh_resp_status(resp, status);
	(void)fdh_resp_header(resp, "Content-Type", "text/plain; charset=utf-8");
	return fdh_resp_printf(resp, "%s\n", msg);
}

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * One read of at most len bytes from a client's fd, never a wait: -EAGAIN
 * when nothing is there.  poll() then read() is not enough: the client
 * keeps its own copy of the fd, and what poll() saw it can read away
 * before our read(), which would then wait for its next write, holding
 * the worker and every connection on it.  Setting O_NONBLOCK would change
 * the client's copy too (one open file description), so the read itself
 * is asked not to wait (RWF_NOWAIT).  A block device, or a regular file
 * on a disk or in memory (plain_fs()), never waits for a writer, and may
 * answer EAGAIN while its data is not cached: those are read plainly.
 */
static ssize_t
read_nowait(int fd, bool plain, char *buf, size_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	ssize_t n;

	do
		n = plain ? read(fd, buf, len) : preadv2(fd, &iov, 1, -1, RWF_NOWAIT);
	while (n == -1 && errno == EINTR);
	return n == -1 ? -errno : n;
}

/*
 * Whether a regular file on this filesystem is read without waiting on
 * anyone: disks and memory.  Not FUSE or a network filesystem, whose
 * server may never answer, nor tracefs (trace_pipe waits for events),
 * procfs (/proc/kmsg) or sysfs, whose "regular" files wait as pipes do.
 */
static bool
plain_fs(int fd)
{
	static const unsigned long local[] = {
		0xEF53,		/* ext2, ext3, ext4 */
		0x58465342,	/* xfs */
		0x9123683E,	/* btrfs */
		0xF2F52010,	/* f2fs */
		0x2FC12FC1,	/* zfs */
		0x01021994,	/* tmpfs, and memfds */
		0x958458f6,	/* hugetlbfs */
		0x794C7630,	/* overlayfs, a container's root */
		0x73717368,	/* squashfs */
		0x9660,		/* iso9660 */
		0x4d44,		/* vfat */
	};
	struct statfs sf;
	size_t i;

	if (fstatfs(fd, &sf) == -1)
		return false;
	for (i = 0; i < sizeof(local) / sizeof(local[0]); i++)
		if ((unsigned long)sf.f_type == local[i])
			return true;
	return false;
}

static int
fd_read(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	size_t limit = fdh_req_limits(req)->max_body, total = 0;
	int fd = fdh_req_fd(req, "input"), r;
	int64_t deadline;
	struct stat st;
	bool plain;
	char buf[16384];

	(void)ud;
	if (fd < 0)
		return text(resp, 400, "this route needs an fd named input");
	if (fstat(fd, &st) == -1)
		return text(resp, 400, "fd input cannot be read");
	if (S_ISDIR(st.st_mode))
		return text(resp, 400, "fd input is a directory");
	plain = S_ISBLK(st.st_mode) || (S_ISREG(st.st_mode) && plain_fs(fd));
	/*
	 * A writer that never closes, or trickles a byte now and then, must
	 * not hold the service (one handler at a time) for long: the whole
	 * read has FD_READ_TIMEOUT_MS.
	 */
	deadline = mono_ms() + FD_READ_TIMEOUT_MS;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left;
		ssize_t n = read_nowait(fd, plain, buf, sizeof(buf));

		if (n == -EAGAIN) {
			left = deadline - mono_ms();
			/* poll() says a file is always ready: look again in 10 ms. */
			if (left > 0 && S_ISREG(st.st_mode)) {
				(void)poll(NULL, 0, left < 10 ? (int)left : 10);
				continue;
			}
			r = left > 0 ? poll(&p, 1, (int)left) : 0;
			if (r == 0) {
				fdh_resp_body(resp, NULL, 0);
				return text(resp, 504, "fd input did not reach its end within 5 s");
			}
			continue;	/* ready, a moment gone, or EINTR: read again */
		}
		if (n == -EOPNOTSUPP) {
			/* A terminal, say: its reads cannot be asked not to wait. */
			fdh_resp_body(resp, NULL, 0);
			return text(resp, 400, "fd input cannot be read without waiting");
		}
		if (n < 0) {
			fdh_resp_body(resp, NULL, 0);
			return text(resp, 400, "fd input cannot be read");
		}
		if (n == 0)
			return 0;
		total += (size_t)n;
		if (total > limit) {
			fdh_resp_body(resp, NULL, 0);
			return text(resp, 413, "fd input holds more than the body limit");
		}
		r = fdh_resp_append(resp, buf, (size_t)n);
		if (r < 0)
			return r;
	}
}

static int
fd_memfd(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	const char *body;
	size_t len, off = 0;
	int fd, r;

	(void)ud;
	body = fdh_req_body(req, &len);
	fd = memfd_create("fdhttp-echo", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd == -1)
		return -errno;
	while (off < len) {
		ssize_t n = write(fd, body + off, len - off);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			r = -errno;
			goto fail;
		}
		off += (size_t)n;
	}
	/* Sealed: the receiver can trust the contents will not change under it. */
	if (lseek(fd, 0, SEEK_SET) == -1 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) == -1) {
		r = -errno;
		goto fail;
	}
	return fdh_resp_fd(resp, "output", fd);
fail:
	close(fd);
	return r;
}

static int
whoami(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	const struct fdh_peer *p = fdh_req_peer(req);

	(void)ud;
	(void)fdh_resp_header(resp, "Content-Type", "application/json");
	return fdh_resp_printf(resp, "{\"pid\":%ld,\"uid\":%lu,\"gid\":%lu}\n", (long)p->pid,
	    (unsigned long)p->uid, (unsigned long)p->gid);
}

/* The value of "Key:" in /proc/self/status, or -1. */
static long
status_field(const char *status, const char *key)
{
	size_t klen = strlen(key);
	const char *p = status;

	while (p && *p) {
		if (strncmp(p, key, klen) == 0 && p[klen] == ':')
			return strtol(p + klen + 1, NULL, 10);
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return -1;
}

static int
sandbox(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	char status[8192], errname[32];
	ssize_t n = -1;
	int fd;

	(void)req;
	(void)ud;
	/* procfs regenerates the text on every read from offset 0. */
	if (echo.status_fd >= 0)
		n = pread(echo.status_fd, status, sizeof(status) - 1, 0);
	status[n > 0 ? n : 0] = '\0';

	fd = open("/etc/hostname", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		strcpy(errname, "0");
	} else {
		const char *name = strerrorname_np(errno);

		snprintf(errname, sizeof(errname), "%s", name ? name : "unknown");
	}
	(void)fdh_resp_header(resp, "Content-Type", "application/json");
	return fdh_resp_printf(resp,
	    "{\"seccomp\":%ld,\"no_new_privs\":%ld,\"uid\":%lu,\"gid\":%lu,\"open_errno\":\"%s\"}\n",
	    status_field(status, "Seccomp"), status_field(status, "NoNewPrivs"),
	    (unsigned long)getuid(), (unsigned long)getgid(), errname);
}

static int
crash(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	(void)req;
	(void)ud;
	if (!echo.enable_crash)
		return text(resp, 404, "crash is off: start with --enable-crash");
	abort();
}

static int
init(int argc, char **argv, void *ud)
{
	int i;

	(void)ud;
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--enable-crash") == 0) {
			echo.enable_crash = true;
		} else {
			fdh_service_log(FDH_LOG_ERROR, "unknown option %s (see --help)", argv[i]);
			return -EINVAL;
		}
	}
	echo.status_fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	return 0;
}

static const struct fdh_route routes[] = {
	{ "GET",  "/health",    health,    NULL },
	{ "POST", "/echo",      echo_body, NULL },
	{ "POST", "/ping",      ping,      NULL },
	{ "POST", "/fd/read",   fd_read,   NULL },
	{ "POST", "/fd/memfd",  fd_memfd,  NULL },
	{ "GET",  "/whoami",    whoami,    NULL },
	{ "GET",  "/sandbox",   sandbox,   NULL },
	{ "POST", "/crash",     crash,     NULL },
};

/* /fd/read asks which filesystem a regular file is on (plain_fs()). */
static const char *const syscalls[] = { "fstatfs", NULL };

static const struct fdh_service service = {
	.name = "echo",
	.routes = routes,
	.nroutes = sizeof(routes) / sizeof(routes[0]),
	.init = init,
	.syscalls = syscalls,
	.usage = "      --enable-crash         POST /crash aborts the process (respawn tests)\n",
};

int
main(int argc, char *argv[])
{
	return fdh_service_main(&service, argc, argv);
}
