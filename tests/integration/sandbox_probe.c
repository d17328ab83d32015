/*
 * fdh-sandbox-probe: a service for the sandbox tests only, never installed.
 * Each route tries one thing a sandboxed worker may or may not do and says
 * what happened, or dies trying:
 *
 *	GET  /open		open("/etc/hostname"): {"errno":"EPERM"}, the worker lives
 *	POST /fork		fork(): the worker is killed
 *	POST /execve		execve("/bin/true"): the worker is killed
 *	POST /socket		socket(AF_UNIX): the worker is killed
 *	POST /oob?op=send	send() of one byte with MSG_OOB on the stream socket
 *				the request brings as fd "sock": the worker is killed
 *	POST /oob?op=recv	recv() with MSG_OOB on that socket: the worker is killed
 *	GET  /uname		uname(), a call the service adds: {"sysname":"Linux"}
 *	GET  /broker?flags=F&path=P	fdh_broker_open(P, F): {"errno":"0"} with fd
 *				"file", or {"errno":"EACCES"}; F is ro, wo, rw,
 *				creat (wo|creat), creat-ro, trunc (ro|trunc),
 *				wtrunc (wo|trunc), append, dir or
 *				tmpfile (rw|tmpfile)
 *	GET  /broker/long	a path of PATH_MAX bytes: {"errno":"ENAMETOOLONG"}
 *	GET  /broker/many?n=N&path=P	N opens of P in a row, each read and
 *				closed: {"ok":N,"bytes":B}
 *	GET  /broker/slow?ms=M&path=P	sleeps M ms first, so that control
 *				messages pile up before the broker's answer
 *	GET  /pid		{"pid":P}
 *	POST /rogue/retire	sends RETIRE, as if it had served --max-requests:
 *				without that option, the supervisor kills it
 *
 * With --bad-syscall the service's syscalls name one that does not exist.
 * With --init-open PATH the init hook sleeps half a second, then opens PATH
 * through the broker (as service.h allows): a DRAIN can arrive during the
 * wait, before the worker has a dispatcher.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <fdhttp/service.h>
#include "ctl.h"

extern char **environ;

static const char *
errname(int err)
{
	const char *name = err ? strerrorname_np(err) : "0";

	return name ? name : "?";
}

static int
json_errno(struct fdh_resp *resp, int err)
{
	(void)fdh_resp_header(resp, "Content-Type", "application/json");
	return fdh_resp_printf(resp, "{\"errno\":\"%s\"}\n", errname(err));
}

static int
try_open(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	int fd = open("/etc/hostname", O_RDONLY | O_CLOEXEC);

	(void)req;
	(void)ud;
	if (fd >= 0) {
		close(fd);
		return json_errno(resp, 0);
	}
	return json_errno(resp, errno);
}

static int
try_fork(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	pid_t pid = fork();

	(void)req;
	(void)ud;
	if (pid == 0)
		_exit(0);
	return json_errno(resp, pid == -1 ? errno : 0);
}

static int
try_execve(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	char *argv[] = { (char *)"/bin/true", NULL };

	(void)req;
	(void)ud;
	execve(argv[0], argv, environ);
	return json_errno(resp, errno);
}

static int
try_socket(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	(void)req;
	(void)ud;
	if (fd >= 0) {
		close(fd);
		return json_errno(resp, 0);
	}
	return json_errno(resp, errno);
}

static int
try_uname(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	struct utsname u;

	(void)req;
	(void)ud;
	if (uname(&u) == -1)
		return json_errno(resp, errno);
	(void)fdh_resp_header(resp, "Content-Type", "application/json");
	return fdh_resp_printf(resp, "{\"sysname\":\"%s\"}\n", u.sysname);
}

static int
show_pid(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	(void)req;
	(void)ud;
	(void)fdh_resp_header(resp, "Content-Type", "application/json");
	return fdh_resp_printf(resp, "{\"pid\":%ld}\n", (long)getpid());
}

/* The value of name in the query string, undecoded (tests send plain paths). */
static bool
query_param(const struct fdh_req *req, const char *name, char *buf, size_t len)
{
	const char *q = fdh_req_query(req);
	size_t nlen = strlen(name);

	while (*q != '\0') {
		size_t n = strcspn(q, "&");

		if (n > nlen && strncmp(q, name, nlen) == 0 && q[nlen] == '=') {
			if (n - nlen - 1 >= len)
				return false;
			memcpy(buf, q + nlen + 1, n - nlen - 1);
			buf[n - nlen - 1] = '\0';
			return true;
		}
		q += n;
		if (*q == '&')
			q++;
	}
	return false;
}

static int
try_oob(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	char op[8] = "send", byte = '!';
	int fd = fdh_req_fd(req, "sock");
	ssize_t n;

	(void)ud;
	if (fd < 0) {
		fdh_resp_status(resp, 400);
		return fdh_resp_printf(resp, "fd sock is required\n");
	}
	(void)query_param(req, "op", op, sizeof(op));
	if (strcmp(op, "recv") == 0)
		n = recv(fd, &byte, 1, MSG_OOB | MSG_DONTWAIT);
	else
		n = send(fd, &byte, 1, MSG_OOB | MSG_DONTWAIT | MSG_NOSIGNAL);
	return json_errno(resp, n == -1 ? errno : 0);
}

static int
parse_flags(const char *s)
{
	static const struct { const char *name; int flags; } table[] = {
		{ "ro", O_RDONLY },
		{ "wo", O_WRONLY },
		{ "rw", O_RDWR },
		{ "creat", O_WRONLY | O_CREAT },
		{ "creat-ro", O_RDONLY | O_CREAT },
		{ "trunc", O_RDONLY | O_TRUNC },
		{ "wtrunc", O_WRONLY | O_TRUNC },
		{ "append", O_WRONLY | O_APPEND },
		{ "dir", O_RDONLY | O_DIRECTORY },
		{ "tmpfile", O_RDWR | O_TMPFILE },
	};
	size_t i;

	for (i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (strcmp(s, table[i].name) == 0)
			return table[i].flags;
	return -1;
}

static int
answer_open(struct fdh_resp *resp, int fd)
{
	int r;

	if (fd < 0)
		return json_errno(resp, -fd);
	r = fdh_resp_fd(resp, "file", fd);	/* consumes fd */
	if (r < 0)
		return r;
	return json_errno(resp, 0);
}

static int
broker(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	char path[PATH_MAX], flags[16] = "ro";
	int f;

	(void)ud;
	if (!query_param(req, "path", path, sizeof(path))) {
		fdh_resp_status(resp, 400);
		return fdh_resp_printf(resp, "path=P is required\n");
	}
	(void)query_param(req, "flags", flags, sizeof(flags));
	f = parse_flags(flags);
	if (f == -1) {
		fdh_resp_status(resp, 400);
		return fdh_resp_printf(resp, "unknown flags\n");
	}
	return answer_open(resp, fdh_broker_open(path, f));
}

static int
broker_long(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	static char path[PATH_MAX + 1];

	(void)req;
	(void)ud;
	/* PATH_MAX characters: one more than fits with its NUL. */
	memset(path, 'a', PATH_MAX);
	path[0] = '/';
	path[PATH_MAX] = '\0';
	return answer_open(resp, fdh_broker_open(path, O_RDONLY));
}

static int
broker_many(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	char path[PATH_MAX], num[16] = "1", buf[4096];
	long n, i, ok = 0;
	size_t bytes = 0;

	(void)ud;
	if (!query_param(req, "path", path, sizeof(path))) {
		fdh_resp_status(resp, 400);
		return fdh_resp_printf(resp, "path=P is required\n");
	}
	(void)query_param(req, "n", num, sizeof(num));
	n = strtol(num, NULL, 10);
	for (i = 0; i < n; i++) {
		int fd = fdh_broker_open(path, O_RDONLY);
		ssize_t k;

		if (fd < 0)
			return json_errno(resp, -fd);
		k = read(fd, buf, sizeof(buf));
		close(fd);
		if (k > 0) {
			ok++;
			bytes += (size_t)k;
		}
	}
	(void)fdh_resp_header(resp, "Content-Type", "application/json");
	return fdh_resp_printf(resp, "{\"ok\":%ld,\"bytes\":%zu}\n", ok, bytes);
}

/* Sleeps as many ms as the query's "ms" says (none without it). */
static void
sleep_query_ms(const struct fdh_req *req)
{
	char ms[16] = "0";
	struct timespec ts;
	long v;

	(void)query_param(req, "ms", ms, sizeof(ms));
	v = strtol(ms, NULL, 10);
	ts.tv_sec = v / 1000;
	ts.tv_nsec = (v % 1000) * 1000000;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static int
broker_slow(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	/* The supervisor's messages queue meanwhile, ahead of the answer. */
	sleep_query_ms(req);
	return broker(req, resp, ud);
}

static int
rogue_retire(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	struct fdh_ctl_msg m;

	(void)req;
	(void)ud;
	fdh_ctl_init(&m, FDH_CTL_RETIRE);
	m.u.retire.nrequests = 1000000;
	return json_errno(resp, -fdh_ctl_send(FDH_CTL_WORKER_FD, &m, NULL, 0));
}

static int
init(int argc, char **argv, void *ud)
{
	int i;

	(void)ud;
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--init-open") == 0 && i + 1 < argc) {
			struct timespec ts = { .tv_nsec = 500 * 1000000 };
			int fd;

			while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
				;
			fd = fdh_broker_open(argv[++i], O_RDONLY);
			fprintf(stderr, "fdh-sandbox-probe: init: broker open: %s\n",
			    errname(fd < 0 ? -fd : 0));
			if (fd >= 0)
				close(fd);
		} else if (strcmp(argv[i], "--bad-syscall") != 0) {
			fprintf(stderr, "fdh-sandbox-probe: unknown option %s\n", argv[i]);
			return -EINVAL;
		}
	}
	return 0;
}

static const struct fdh_route routes[] = {
	{ "GET",  "/open",		try_open,	NULL },
	{ "POST", "/fork",		try_fork,	NULL },
	{ "POST", "/execve",		try_execve,	NULL },
	{ "POST", "/socket",		try_socket,	NULL },
	{ "POST", "/oob",		try_oob,	NULL },
	{ "GET",  "/uname",		try_uname,	NULL },
	{ "GET",  "/pid",		show_pid,	NULL },
	{ "GET",  "/broker",		broker,		NULL },
	{ "GET",  "/broker/long",	broker_long,	NULL },
	{ "GET",  "/broker/many",	broker_many,	NULL },
	{ "GET",  "/broker/slow",	broker_slow,	NULL },
	{ "POST", "/rogue/retire",	rogue_retire,	NULL },
};

/* A slip a route table may hold: a path without its leading '/'. */
static const struct fdh_route bad_routes[] = {
	{ "GET",  "/uname",		try_uname,	NULL },
	{ "GET",  "health",		try_uname,	NULL },
};

static const char *const syscalls[] = { "uname", NULL };
static const char *const bad_syscalls[] = { "uname", "no_such_call", NULL };

int
main(int argc, char *argv[])
{
	struct fdh_service svc = {
		.name = "probe",
		.routes = routes,
		.nroutes = sizeof(routes) / sizeof(routes[0]),
		.init = init,
		.syscalls = syscalls,
	};
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--bad-syscall") == 0)
			svc.syscalls = bad_syscalls;
		if (strcmp(argv[i], "--bad-route") == 0) {
			svc.routes = bad_routes;
			svc.nroutes = sizeof(bad_routes) / sizeof(bad_routes[0]);
		}
	}
	return fdh_service_main(&svc, argc, argv);
}
