/* fork + execve of one worker, with its control socket at fd 3. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl.h"
#include "log.h"
#include "signals.h"
#include "spawn.h"
#include "worker.h"

extern char **environ;

/* Every worker's environment but FDHTTP_WORKER_ID, NULL-terminated. */
static char **base_env;
static size_t base_nenv;
/* Our own entries of base_env; the rest point into environ. */
static char env_ctl[32], env_limits[FDH_CTL_LIMITS_MAX + 32], env_log[48], env_maxreq[64];

static bool
env_is_ours(const char *entry)
{
	/* Ours to set, or the service manager's words to the supervisor alone. */
	return strncmp(entry, "FDHTTP_", 7) == 0 || strncmp(entry, "LISTEN_", 7) == 0 ||
	    strncmp(entry, "NOTIFY_SOCKET=", 14) == 0;
}

int
spawn_setup(const struct options *o)
{
	char limits[FDH_CTL_LIMITS_MAX];
	size_t n = 0, i;

	if (fdh_ctl_limits_format(&o->limits, limits, sizeof(limits)) < 0)
		return -ENOBUFS;
	for (i = 0; environ[i]; i++)
		n++;
	/* environ, four of ours and the NULL. */
	base_env = calloc(n + 5, sizeof(char *));
	if (base_env == NULL)
		return -ENOMEM;
	for (i = 0; environ[i]; i++)
		if (!env_is_ours(environ[i]))
			base_env[base_nenv++] = environ[i];
	snprintf(env_ctl, sizeof(env_ctl), "%s=%d", FDH_ENV_CONTROL_FD, FDH_CTL_WORKER_FD);
	snprintf(env_limits, sizeof(env_limits), "%s=%s", FDH_ENV_LIMITS, limits);
	snprintf(env_log, sizeof(env_log), "%s=%s", FDH_ENV_LOG_LEVEL,
	    fdh_log_level_name(o->log_level));
	base_env[base_nenv++] = env_ctl;
	base_env[base_nenv++] = env_limits;
	base_env[base_nenv++] = env_log;
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

/*
 * The start of the sandbox (CONTRACT section 6), in its required order:
 * groups, gid, then uid.  The remaining steps belong right after these,
 * still before execve: PR_SET_NO_NEW_PRIVS, core dumps off, RLIMIT_NOFILE
 * sized to the limits, the environment reduced.  Any failure is fatal to
 * the child, never a worker running with more privilege than asked.
 */
static int
child_drop_privileges(const struct options *o)
{
	if (!o->have_user)
		return 0;
	if (setgroups(o->user_ngroups, o->user_groups) == -1 ||
	    setresgid(o->user_gid, o->user_gid, o->user_gid) == -1 ||
	    setresuid(o->user_uid, o->user_uid, o->user_uid) == -1)
		return -errno;
	return 0;
}

/*
 * The child after fork().  The supervisor has a single thread, so the libc
 * state it inherits is consistent and logging here is safe.
 */
static void __attribute__((noreturn))
child(const struct options *o, unsigned id, int ctl, char **envp)
{
	char role[32];
	int null, r;

	snprintf(role, sizeof(role), "worker %u", id);
	fdh_log_setup(o->log_level, role);
	signals_reset_child();
	/* Its own session: a terminal's ^C reaches the supervisor, which drains. */
	if (setsid() == -1) {
		log_error("setsid: %s", strerror(errno));
		_exit(127);
	}
	null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null == -1 || dup2(null, STDIN_FILENO) == -1) {
		log_error("/dev/null: %s", strerror(errno));
		_exit(127);
	}
	if (null != STDIN_FILENO)
		close(null);
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
	r = child_drop_privileges(o);
	if (r < 0) {
		log_error("--user %s: %s", o->user_name, strerror(-r));
		_exit(127);
	}
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
