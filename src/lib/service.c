/*
 * fdh_service_main(): a service's whole life.  Alone ("--socket PATH") it
 * listens itself in one process; under fdhttpd it is a worker fed over the
 * control socket.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "closer.h"
#include "ctl.h"
#include "dispatch.h"
#include "limit_range.h"
#include "listen.h"
#include "route.h"
#include "sandbox.h"
#include "worker.h"

static const char *const limit_opts[] = {
	"max-head", "max-headers", "max-body", "max-fds", "max-conns",
	"request-timeout", "idle-timeout", "write-timeout",
};

struct standalone {
	int lfd;
	int sfd;
	bool draining;
};

static void
usage(const struct fdh_service *svc, const char *prog, FILE *f)
{
	fprintf(f,
	    "usage: %s --socket PATH [OPTIONS] [SERVICE-OPTIONS]\n"
	    "       (under fdhttpd: fdhttpd [OPTIONS] -- %s [SERVICE-OPTIONS])\n"
	    "\n"
	    "Serves the %s service on a Unix socket, alone, in one process.\n"
	    "\n"
	    "  -s, --socket PATH          listen here (\"@NAME\": abstract socket)\n"
	    "      --max-head BYTES       request line and headers (default %d)\n"
	    "      --max-headers N        header fields (default %d)\n"
	    "      --max-body BYTES       request body (default %d)\n"
	    "      --max-fds N            fds per request (default %d)\n"
	    "      --max-conns N          connections (default %d)\n"
	    "      --request-timeout S    to receive a whole request (default %d)\n"
	    "      --idle-timeout S       keep-alive wait (default %d)\n"
	    "      --write-timeout S      response write without progress (default %d)\n"
	    "  -h, --help                 this text\n"
	    "  -V, --version              print the version\n",
	    prog, prog, svc->name ? svc->name : prog, FDH_DEFAULT_MAX_HEAD,
	    FDH_DEFAULT_MAX_HEADERS, FDH_DEFAULT_MAX_BODY, FDH_DEFAULT_MAX_FDS,
	    FDH_DEFAULT_MAX_CONNS, FDH_DEFAULT_REQUEST_TIMEOUT_MS / 1000,
	    FDH_DEFAULT_IDLE_TIMEOUT_MS / 1000, FDH_DEFAULT_WRITE_TIMEOUT_MS / 1000);
	if (svc->usage)
		fprintf(f, "\nService options:\n%s", svc->usage);
}

static int
on_accept(struct fdh_dispatch *d, int lfd, void *arg)
{
	struct standalone *s = arg;
	unsigned i;

	(void)s;
	/* A bounded batch, so a flood of connects cannot starve the open ones. */
	for (i = 0; i < 64 && !fdh_dispatch_full(d); i++) {
		struct ucred uc;
		struct fdh_peer peer = { 0 };
		socklen_t len = sizeof(uc);
		int fd;

		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd == -1) {
			if (errno == EMFILE || errno == ENFILE)
				fdh_dispatch_watch_enable(d, lfd, false);	/* until one closes */
			if (errno == ECONNABORTED || errno == EINTR)
				continue;
			break;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == 0) {
			peer.pid = uc.pid;
			peer.uid = uc.uid;
			peer.gid = uc.gid;
		}
		(void)fdh_dispatch_add_conn(d, fd, &peer, -1, 0);
	}
	/* Full: the kernel's backlog holds the rest until a connection ends. */
	if (fdh_dispatch_full(d))
		fdh_dispatch_watch_enable(d, lfd, false);
	return 0;
}

static void
on_conn_closed(struct fdh_dispatch *d, uint64_t tag, void *arg)
{
	struct standalone *s = arg;

	(void)tag;
	if (!s->draining)
		fdh_dispatch_watch_enable(d, s->lfd, true);
}

static int
on_signal(struct fdh_dispatch *d, int sfd, void *arg)
{
	struct standalone *s = arg;
	struct signalfd_siginfo si;

	if (read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
		return 0;
	if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
		/* Stop accepting; finish what is in flight; idle connections go now. */
		s->draining = true;
		fdh_dispatch_watch_enable(d, s->lfd, false);
		fdh_dispatch_drain(d);
	}
	return 0;
}

/* Listens on path for the service run alone; 0, or 1 (the exit status) after saying why not. */
static int
listen_standalone(const char *prog, const char *path, int *ret_lfd)
{
	int r = fdh_listen_unix(path, 0660, ret_lfd);

	if (r < 0) {
		fprintf(stderr, "%s: cannot listen on %s: %s\n", prog, path,
		    r == -EADDRINUSE ? "a server is already listening there" :
		    r == -EEXIST ? "the path exists and is not a socket" : strerror(-r));
		return 1;
	}
	return 0;
}

/* Closes the listening socket lfd and removes its file. */
static void
unlisten(int lfd, const char *path)
{
	close(lfd);
	if (path[0] != '@')
		(void)unlink(path);
}

/* Serves on lfd, which listen_standalone() made; consumes it. */
static int
run_standalone(const struct fdh_service *svc, const struct fdh_limits *limits,
    const char *prog, const char *path, int lfd)
{
	struct standalone s = { .lfd = lfd, .sfd = -1 };
	struct fdh_dispatch *d = NULL;
	struct fdh_dispatch_hooks hooks = {
		.conn_closed = on_conn_closed,
		.fds_refused = fdh_service_warn_fds_refused,
		.arg = &s,
	};
	sigset_t mask;
	int r, status = 1;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) == -1 ||
	    (s.sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) == -1) {
		fprintf(stderr, "%s: signalfd: %s\n", prog, strerror(errno));
		goto out;
	}
	r = fdh_dispatch_new(svc, limits, &d);
	if (r < 0) {
		fprintf(stderr, "%s: %s\n", prog, r == -EINVAL ?
		    "invalid route table or limits" : strerror(-r));
		goto out;
	}
	fdh_dispatch_set_hooks(d, &hooks);
	r = fdh_closer_start(false, NULL);	/* alone: no sandbox */
	if (r < 0) {
		fprintf(stderr, "%s: closer: %s\n", prog, strerror(-r));
		goto out;
	}
	if (fdh_dispatch_watch(d, s.lfd, on_accept, &s) < 0 ||
	    fdh_dispatch_watch(d, s.sfd, on_signal, &s) < 0)
		goto out;
	fprintf(stderr, "%s: listening on %s\n", prog, path);
	r = fdh_dispatch_run(d);
	if (r < 0) {
		fprintf(stderr, "%s: poll: %s\n", prog, strerror(-r));
		goto out;
	}
	status = 0;
out:
	fdh_dispatch_free(d);
	if (s.sfd >= 0)
		close(s.sfd);
	unlisten(s.lfd, path);
	return status;
}

/* "--name VALUE" or "--name=VALUE" for name; NULL when argv[*i] is another option. */
static const char *
opt_value(int argc, char **argv, int *i, const char *name, bool *ret_missing)
{
	const char *a = argv[*i] + 2;
	size_t len = strlen(name);

	*ret_missing = false;
	/*
	 * *i is below argc, so a points into a string; the analyzer, once it
	 * loses track of *i, pictures argv[0] == NULL there.
	 */
	/* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
	if (strncmp(a, name, len) != 0)
		return NULL;
	if (a[len] == '=')
		return a + len + 1;
	if (a[len] != '\0')
		return NULL;
	if (*i + 1 >= argc) {
		*ret_missing = true;
		return NULL;
	}
	return argv[++*i];
}

/* Whether argv[i], a "--" option, is --name, with its value or without. */
static bool
names_opt(int argc, char **argv, int i, const char *name)
{
	bool missing;

	return opt_value(argc, argv, &i, name, &missing) != NULL || missing;
}

/*
 * The first of argv[1..argc) that is the framework's own option (the socket
 * or a limit), up to a "--"; NULL when none is.
 */
static const char *
framework_opt(int argc, char **argv)
{
	size_t k;
	int i;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "-s") == 0)
			return argv[i];
		if (argv[i][0] != '-' || argv[i][1] != '-')
			continue;
		if (names_opt(argc, argv, i, "socket"))
			return argv[i];
		for (k = 0; k < sizeof(limit_opts) / sizeof(*limit_opts); k++)
			if (names_opt(argc, argv, i, limit_opts[k]))
				return argv[i];
	}
	return NULL;
}

/* What fdh_service_log() writes: the name it goes by, and where to. */
static char log_name[64] = "service";
static bool log_to_fdhttpd;

void
fdh_service_log(enum fdh_log_level level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (level > FDH_LOG_ERROR)
		level = FDH_LOG_ERROR;
	if (log_to_fdhttpd)
		fdh_log(level, "%s: %s", log_name, msg);
	else if (level >= FDH_LOG_INFO)
		fprintf(stderr, "%s: %s\n", log_name, msg);
}

void
fdh_service_warn_fds_refused(struct fdh_dispatch *d, void *arg)
{
	static int64_t last_ms;
	static unsigned held;
	int64_t now = fdh_mono_ms();

	(void)d;
	(void)arg;
	/* A client keeping the condition up would write a line per request. */
	if (last_ms != 0 && now - last_ms < FDS_REFUSED_LOG_MS) {
		held++;
		return;
	}
	/* Not getrlimit(): the sandbox has no prlimit64. */
	fdh_service_log(FDH_LOG_WARN, "a response's descriptors could not be sent (ETOOMANYREFS): "
	    "uid %u has more in flight than this process's RLIMIT_NOFILE, as clients leave "
	    "answers with descriptors unread; answered 503 (%u more since the last such line)",
	    (unsigned)getuid(), held);
	last_ms = now;
	held = 0;
}

int
fdh_service_main(const struct fdh_service *svc, int argc, char *argv[])
{
	const char *prog = argc > 0 && argv[0] ? argv[0] : "service";
	const char *socket_path = NULL;
	struct fdh_limits limits;
	char **sargv, why[512];
	int sargc = 0, i, r, status, lfd = -1;

	if (strrchr(prog, '/'))
		prog = strrchr(prog, '/') + 1;
	/* Handlers that write to a closed pipe get EPIPE; the process lives. */
	signal(SIGPIPE, SIG_IGN);
	fdh_limits_default(&limits);

	/* Started by fdhttpd: connections come over the control socket. */
	if (getenv(FDH_ENV_CONTROL_FD)) {
		/*
		 * fdhttpd owns the socket and the limits, and the service's
		 * init would take such an option for one of its own, or call
		 * it unknown, an option it has alone.
		 */
		const char *own = framework_opt(argc, argv);

		fdh_worker_log_setup();
		strlcpy(log_name, svc->name ? svc->name : prog, sizeof(log_name));
		log_to_fdhttpd = true;
		if (own) {
			fdh_log(FDH_LOG_ERROR, "%s: %s is fdhttpd's option when the service runs "
			    "under it: give it before the --", prog, own);
			return 2;
		}
		if (fdh_worker_env_limits(&limits) < 0) {
			fdh_log(FDH_LOG_ERROR, "%s: %s does not parse", prog, FDH_ENV_LIMITS);
			return 2;
		}
		return fdh_worker_main(svc, &limits, argc, argv);
	}

	strlcpy(log_name, prog, sizeof(log_name));
	sargv = calloc((size_t)argc + 1, sizeof(*sargv));
	if (!sargv)
		return 1;
	sargv[sargc++] = argv[0];
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v;
		bool missing, known = false;
		size_t k;

		if (strcmp(a, "--") == 0) {
			while (++i < argc)
				sargv[sargc++] = argv[i];
			break;
		}
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(svc, prog, stdout);
			free(sargv);
			return 0;
		}
		if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
			printf("%s (fdhttp %s)\n", prog, FDH_VERSION);
			free(sargv);
			return 0;
		}
		if (strcmp(a, "-s") == 0 || strncmp(a, "--socket", 8) == 0) {
			if (strcmp(a, "-s") == 0) {
				if (i + 1 < argc)
					socket_path = argv[++i];
				else
					missing = true;
			} else {
				socket_path = opt_value(argc, argv, &i, "socket", &missing);
			}
			if (!socket_path || !socket_path[0]) {
				fprintf(stderr, "%s: --socket needs a path\n", prog);
				free(sargv);
				return 2;
			}
			continue;
		}
		for (k = 0; a[0] == '-' && a[1] == '-' && k < sizeof(limit_opts) / sizeof(*limit_opts); k++) {
			v = opt_value(argc, argv, &i, limit_opts[k], &missing);
			if (!v && !missing)
				continue;
			known = true;
			if (missing || fdh_limits_set(&limits, limit_opts[k], v) < 0) {
				fprintf(stderr, "%s: invalid value for --%s: %s (%s)\n", prog,
				    limit_opts[k], missing ? "(missing)" : v,
				    fdh_limits_range(limit_opts[k]));
				free(sargv);
				return 2;
			}
			break;
		}
		if (!known)
			sargv[sargc++] = argv[i];	/* the service's own */
	}
	sargv[sargc] = NULL;

	if (!socket_path) {
		fprintf(stderr, "%s: --socket PATH is required (see --help)\n", prog);
		free(sargv);
		return 2;
	}
	/* Before init: a table that cannot be served is the program's fault, whatever init does. */
	if (fdh_route_table_explain(svc->routes, svc->nroutes, why, sizeof(why)) < 0) {
		fprintf(stderr, "%s: %s; not starting\n", svc->name ? svc->name : prog, why);
		free(sargv);
		return 2;
	}
	if (svc->syscalls) {
		const char *bad = NULL;

		r = fdh_sandbox_check(svc->syscalls, &bad);
		if (r < 0) {
			if (r == -EINVAL)
				fprintf(stderr, "%s: the service's syscalls name '%s', which is not "
				    "a system call here; not starting\n", svc->name ? svc->name : prog,
				    bad);
			else
				fprintf(stderr, "%s: %s\n", prog, strerror(-r));
			free(sargv);
			return 1;
		}
	}
	/*
	 * Before init: a socket already taken is found before the service
	 * prepares, or says it is ready, for nothing.
	 */
	if (listen_standalone(prog, socket_path, &lfd) != 0) {
		free(sargv);
		return 1;
	}
	if (svc->init) {
		r = svc->init(sargc, sargv, svc->userdata);
		if (r < 0) {
			unlisten(lfd, socket_path);
			free(sargv);
			return r == -EINVAL ? 2 : 1;
		}
	}
	status = run_standalone(svc, &limits, prog, socket_path, lfd);
	free(sargv);
	return status;
}
