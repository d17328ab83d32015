/* fork + execve of one worker, with its control socket at fd 3. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl.h"
#include "log.h"
#include "signals.h"
#include "spawn.h"
#include "supervisor.h"
#include "worker.h"

extern char **environ;

/* Every worker's environment but FDHTTP_WORKER_ID, NULL-terminated. */
static char **base_env;
static size_t base_nenv;
/* Our own entries of base_env; the rest point into environ. */
static char env_ctl[32], env_limits[FDH_CTL_LIMITS_MAX + 32], env_log[48], env_maxreq[64],
    env_sandbox[32];
/* Each worker's RLIMIT_NOFILE, soft and hard (spawn_nofile()). */
static rlim_t worker_nofile;
/* The soft RLIMIT_NOFILE fdhttpd was started with, for unsandboxed workers. */
static rlim_t inherited_nofile = RLIM_INFINITY;
/*
 * Every worker's stdin, opened once: a child opening it itself would do so
 * holding the supervisor's whole table, and at its RLIMIT_NOFILE fail with
 * EMFILE, an exit status that reads as a SERVICE that cannot be run.
 */
static int dev_null = -1;

void
spawn_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur >= rl.rlim_max)
		return;
	inherited_nofile = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max;
	/* Failing, it stays as it was: spawn_setup() checks what the workers need. */
	(void)setrlimit(RLIMIT_NOFILE, &rl);
}

static bool
env_is_ours(const char *entry)
{
	/* Ours to set, or the service manager's words to the supervisor alone. */
	return strncmp(entry, "FDHTTP_", 7) == 0 || strncmp(entry, "LISTEN_", 7) == 0 ||
	    strncmp(entry, "NOTIFY_SOCKET=", 14) == 0;
}

/*
 * What a sandboxed worker keeps of the supervisor's environment: where
 * programs are (PATH), how to speak (LANG, LC_*, TZ), and a sanitizer
 * build's runtime options.  Everything else may hold secrets meant for
 * the supervisor alone, or steer the dynamic loader and libraries of a
 * process that is about to face hostile input.
 */
static bool
env_is_kept(const char *entry)
{
	static const char *const exact[] = {
		"PATH=", "LANG=", "TZ=", "ASAN_OPTIONS=", "UBSAN_OPTIONS=", "LSAN_OPTIONS=",
	};
	size_t i;

	for (i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
		if (strncmp(entry, exact[i], strlen(exact[i])) == 0)
			return true;
	return strncmp(entry, "LC_", 3) == 0 && strchr(entry, '=') != NULL;
}

rlim_t
spawn_nofile(const struct fdh_limits *l)
{
	/* Each connection holds itself and its peer's pidfd, and a request max_fds. */
	return (rlim_t)l->max_conns * (2 + (rlim_t)l->max_fds) + SPAWN_NOFILE_MARGIN;
}

/*
 * The supervisor's own descriptors, at most: per worker its control socket
 * and, while it starts, the child's end (2), one more worker during a
 * rolling restart, the refused connections lingering (SUP_MAX_LINGER), a
 * connection held pending and one rechecked with their pidfds (4), each
 * --allow-open directory, and 16 of its own (stdio, the listening socket
 * and its lock, the pidfile, the signalfd, the notify socket, /dev/null,
 * a connection being accepted and its pidfd, /proc reads).  Not counted:
 * its copies of connections handed over, up to SUP_HANDED_BATCH for up to
 * SUP_HANDED_MS, which the room for refusals lingering, seldom all in use,
 * covers; should an accept find no descriptor meanwhile, it pauses, as for
 * any shortage, and the copies are gone when it resumes.
 */
#define SUP_NOFILE(workers, ndirs) \
	(2ULL * ((unsigned long long)(workers) + 1) + SUP_MAX_LINGER + 4 + (ndirs) + 16)

/*
 * Whether the supervisor's own descriptors fit its RLIMIT_NOFILE (raised to
 * the hard limit already): better refused at start than workers that fail
 * one by one, or connections dropped at accept.  0, or -EMFILE after
 * logging why.
 */
static int
supervisor_fits(const struct options *o)
{
	unsigned long long need = SUP_NOFILE(o->workers, o->nallow_open),
	    flight = o->workers * (2ULL * o->limits.max_conns + BROKER_MAX_UNREAD);
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY)
		return 0;
	if (need > rl.rlim_cur) {
		log_error("--workers %u needs about %llu descriptors in fdhttpd (2 per worker, "
		    "%d for refused connections lingering, the rest its own), over its "
		    "RLIMIT_NOFILE of %llu; lower --workers or raise the limit",
		    o->workers, need, SUP_MAX_LINGER, (unsigned long long)rl.rlim_cur);
		return -EMFILE;
	}
	/*
	 * A worker's control message may carry 253 fds (the kernel's ceiling,
	 * not ours); what fdhttpd's table has no room for the kernel releases
	 * on fdhttpd's loop, inside recvmsg(), where the last close of a
	 * lingering socket a compromised worker chose would stall it.  Room
	 * beyond its own descriptors keeps every fd received, and the closer
	 * takes them (ctl.c).
	 */
	if (need + FDH_MAX_FDS_CEILING > rl.rlim_cur)
		log_warn("fdhttpd's RLIMIT_NOFILE of %llu leaves fewer than %d descriptors beyond "
		    "the %llu it may hold, so a compromised worker could stall it with the fds "
		    "of one message; raise the limit to %llu or more",
		    (unsigned long long)rl.rlim_cur, FDH_MAX_FDS_CEILING, need,
		    need + FDH_MAX_FDS_CEILING);
	/*
	 * Without CAP_SYS_RESOURCE, connections queued to busy workers (a
	 * connection and a pidfd each) and broker answers not yet read count
	 * against the same limit while in flight: past it they wait
	 * (ETOOMANYREFS), which works, but slowly.
	 */
	if (geteuid() != 0 && need + flight > rl.rlim_cur)
		log_warn("--workers %u x --max-conns %u: up to %llu descriptors may wait in "
		    "workers' control sockets, over fdhttpd's RLIMIT_NOFILE of %llu; at it, "
		    "connections wait until busy workers catch up", o->workers,
		    o->limits.max_conns, flight, (unsigned long long)rl.rlim_cur);
	return 0;
}

int
spawn_setup(const struct options *o)
{
	char limits[FDH_CTL_LIMITS_MAX];
	struct rlimit rl;
	size_t n = 0, i;
	int r;

	if (fdh_ctl_limits_format(&o->limits, limits, sizeof(limits)) < 0)
		return -ENOBUFS;
	r = supervisor_fits(o);
	if (r < 0)
		return r;
	worker_nofile = spawn_nofile(&o->limits);
	/*
	 * A worker may be given more than the supervisor's own hard limit
	 * only if the supervisor may raise it (CAP_SYS_RESOURCE, up to
	 * fs.nr_open): raise it here, once, or say now rather than have
	 * every worker fail.  The soft limit stays.
	 */
	if (!o->no_sandbox && getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_max != RLIM_INFINITY && worker_nofile > rl.rlim_max) {
		unsigned long long hard = (unsigned long long)rl.rlim_max;

		rl.rlim_max = worker_nofile;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
			log_error("--max-conns %u and --max-fds %u need %llu descriptors per worker "
			    "(max-conns x (2 + max-fds) + %d), over the hard RLIMIT_NOFILE of %llu, "
			    "which fdhttpd cannot raise (%s); lower them or raise the limit",
			    o->limits.max_conns, o->limits.max_fds,
			    (unsigned long long)worker_nofile, SPAWN_NOFILE_MARGIN, hard,
			    strerror(errno));
			return -EMFILE;
		}
	}
	dev_null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (dev_null == -1) {
		r = -errno;
		log_error("/dev/null: %s", strerror(-r));
		return r;
	}
	for (i = 0; environ[i]; i++)
		n++;
	/* environ, five of ours and the NULL. */
	base_env = calloc(n + 6, sizeof(char *));
	if (base_env == NULL)
		return -ENOMEM;
	for (i = 0; environ[i]; i++)
		if (!env_is_ours(environ[i]) && (o->no_sandbox || env_is_kept(environ[i])))
			base_env[base_nenv++] = environ[i];
	snprintf(env_ctl, sizeof(env_ctl), "%s=%d", FDH_ENV_CONTROL_FD, FDH_CTL_WORKER_FD);
	snprintf(env_limits, sizeof(env_limits), "%s=%s", FDH_ENV_LIMITS, limits);
	snprintf(env_log, sizeof(env_log), "%s=%s", FDH_ENV_LOG_LEVEL,
	    fdh_log_level_name(o->log_level));
	snprintf(env_sandbox, sizeof(env_sandbox), "%s=%d", FDH_ENV_SANDBOX, !o->no_sandbox);
	base_env[base_nenv++] = env_ctl;
	base_env[base_nenv++] = env_limits;
	base_env[base_nenv++] = env_log;
	base_env[base_nenv++] = env_sandbox;
	if (o->max_requests > 0) {
		snprintf(env_maxreq, sizeof(env_maxreq), "%s=%llu", FDH_ENV_MAX_REQUESTS,
		    o->max_requests);
		base_env[base_nenv++] = env_maxreq;
	}
	return 0;
}

void
spawn_free(void)
{
	if (dev_null != -1)
		close(dev_null);
	dev_null = -1;
	free(base_env);
	base_env = NULL;
	base_nenv = 0;
}

/*
 * Room in each direction for every message that can be outstanding: one
 * NEW_CONN or CONN_CLOSED per connection the worker may hold, plus a few
 * others.  Then a full socket means a stuck peer, not a busy one.  The
 * kernel accounts about a kilobyte per small record.
 */
static void
size_buffers(int fd, unsigned max_conns)
{
	int bytes = (int)(((size_t)max_conns + 32) * 1024 > (size_t)(64 << 20) ?
	    (size_t)(64 << 20) : ((size_t)max_conns + 32) * 1024);

	/* SO_SNDBUFFORCE passes net.core.wmem_max, when we are allowed to. */
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof(bytes)) == -1)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
}

static void __attribute__((noreturn))
sandbox_failed(const char *step, int err)
{
	log_error("sandbox: %s: %s; the worker is not started", step, strerror(err));
	_exit(FDH_EXIT_SANDBOX);
}

/*
 * The sandbox's part before execve (CONTRACT section 6), in its required
 * order.  Resource limits come first, while the child may still raise a
 * hard limit; then groups, gid and uid; then no_new_privs, which execve
 * keeps, so that no set-uid program the service might run could regain
 * what was dropped.  Any failure ends the child: never a worker running
 * with more than it was meant to have.
 */
static void
child_sandbox(const struct options *o)
{
	struct rlimit rl;

	if (o->no_sandbox && inherited_nofile != RLIM_INFINITY &&
	    getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		/* The limit fdhttpd was given is the service's too (a select() user's 1024). */
		rl.rlim_cur = inherited_nofile < rl.rlim_max ? inherited_nofile : rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);	/* lowering a soft limit cannot fail */
	}
	if (!o->no_sandbox) {
		/* A crashing handler leaves no image of its memory (requests, keys). */
		rl.rlim_cur = rl.rlim_max = 0;
		if (setrlimit(RLIMIT_CORE, &rl) == -1)
			sandbox_failed("setrlimit(RLIMIT_CORE, 0)", errno);
		/*
		 * Exactly the worker's share, hard limit too: a compromised handler
		 * cannot hoard descriptors the kernel has for the whole machine.
		 */
		rl.rlim_cur = rl.rlim_max = worker_nofile;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
			char step[64];

			snprintf(step, sizeof(step), "setrlimit(RLIMIT_NOFILE, %llu)",
			    (unsigned long long)worker_nofile);
			sandbox_failed(step, errno);
		}
	}
	if (o->have_user) {
		char step[160];

		snprintf(step, sizeof(step), "--user %s", o->user_name);
		if (setgroups(o->user_ngroups, o->user_groups) == -1 ||
		    setresgid(o->user_gid, o->user_gid, o->user_gid) == -1 ||
		    setresuid(o->user_uid, o->user_uid, o->user_uid) == -1)
			sandbox_failed(step, errno);
		/* Gone for good: a uid that could come back was never dropped. */
		if (o->user_uid != 0 && (setuid(0) != -1 || seteuid(0) != -1))
			sandbox_failed(step, EPERM);
	}
	if (!o->no_sandbox && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		sandbox_failed("prctl(PR_SET_NO_NEW_PRIVS)", errno);
}

/*
 * The child after fork().  The supervisor has a single thread (its closer
 * is a process), so the libc state the child inherits is consistent and
 * logging here is safe.  The supervisor's end of its closer's socket is
 * close-on-exec and goes with closefrom() below.
 */
static void __attribute__((noreturn))
child(const struct options *o, unsigned id, int ctl, char **envp)
{
	char role[32];
	int r;

	snprintf(role, sizeof(role), "worker %u", id);
	fdh_log_setup(o->log_level, role);
	signals_reset_child();
	/* Its own session: a terminal's ^C reaches the supervisor, which drains. */
	if (setsid() == -1) {
		log_error("setsid: %s", strerror(errno));
		_exit(127);
	}
	/* dup2 allocates nothing: it works with the supervisor's table full. */
	if (dup2(dev_null, STDIN_FILENO) == -1) {
		log_error("/dev/null: %s", strerror(errno));
		_exit(127);
	}
	/* dup2 leaves the copy without FD_CLOEXEC; on the same number, clear it. */
	if (ctl == FDH_CTL_WORKER_FD)
		r = fcntl(ctl, F_SETFD, 0);
	else
		r = dup2(ctl, FDH_CTL_WORKER_FD);
	if (r == -1) {
		log_error("control socket: %s", strerror(errno));
		_exit(127);
	}
	/* stdio and the control socket only: no supervisor fd reaches SERVICE. */
	closefrom(FDH_CTL_WORKER_FD + 1);
	child_sandbox(o);
	execve(o->service, o->service_argv, envp);
	log_error("cannot run %s: %s", o->service, strerror(errno));
	_exit(127);
}

int
spawn_worker(const struct options *o, unsigned id, pid_t *ret_pid, int *ret_ctl)
{
	char idvar[64];
	char **envp = NULL;
	int sv[2] = { -1, -1 }, r;
	pid_t pid;

	envp = calloc(base_nenv + 2, sizeof(char *));
	if (envp == NULL)
		return -ENOMEM;
	memcpy(envp, base_env, base_nenv * sizeof(char *));
	snprintf(idvar, sizeof(idvar), "%s=%u", FDH_ENV_WORKER_ID, id);
	envp[base_nenv] = idvar;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		r = -errno;
		goto fail;
	}
	size_buffers(sv[0], o->limits.max_conns);
	size_buffers(sv[1], o->limits.max_conns);
	if (fcntl(sv[0], F_SETFL, O_NONBLOCK) == -1) {
		r = -errno;
		goto fail;
	}
	pid = fork();
	if (pid == -1) {
		r = -errno;
		goto fail;
	}
	if (pid == 0)
		child(o, id, sv[1], envp);
	close(sv[1]);
	free(envp);
	*ret_pid = pid;
	*ret_ctl = sv[0];	/* the caller owns it now */
	return 0;
fail:
	if (sv[0] != -1)
		close(sv[0]);
	if (sv[1] != -1)
		close(sv[1]);
	free(envp);
	return r;
}
