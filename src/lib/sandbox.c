/*
 * The worker's seccomp allowlist.  A worker serves connections it was
 * handed, on descriptors it already holds: everything it does after its
 * init hook is reading, writing, polling, memory and time.  The filter
 * allows that, answers filesystem opens with EPERM (files come from the
 * broker, fdh_broker_open()), and kills the process for anything else:
 * a handler that tries to fork, execve, ptrace, make a socket, connect,
 * bind, mount, unshare, load a module or a BPF program has been taken
 * over, and a dead worker is replaced where a live one would be used.
 *
 * Killing is the default action, so nothing needs listing to be
 * forbidden: fork, vfork, clone, clone3, execve, execveat, ptrace,
 * process_vm_readv/writev, socket, socketpair, connect, bind, listen,
 * accept, accept4, mount, umount2, pivot_root, chroot, unshare, setns,
 * bpf, perf_event_open, keyctl, add_key, request_key, init_module,
 * finit_module, kexec_load, kexec_file_load, io_uring_setup, userfaultfd,
 * setuid and the rest of the credential calls, and whatever a later
 * kernel adds.  Arguments narrow a few of the allowed calls: socket I/O
 * without MSG_OOB, some fcntl commands, some prctl options, one ioctl,
 * signals to itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sandbox.h"

#if defined(__SANITIZE_ADDRESS__)
#define FDH_SANDBOX_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FDH_SANDBOX_ASAN 1
#endif
#endif
#ifdef FDH_SANDBOX_ASAN
#include <sanitizer/lsan_interface.h>
#endif

/* Allowed whatever their arguments: they act on what the process holds. */
static const char *const allowed[] = {
	/*
	 * I/O on held descriptors: connections, the control socket, fds of
	 * requests (recvmsg, sendmsg, recvfrom and sendto: below)
	 */
	"read", "write", "readv", "writev", "pread64", "pwrite64", "lseek",
	/* preadv2(RWF_NOWAIT): a read of a client's pipe that cannot wait */
	"preadv", "pwritev", "preadv2", "pwritev2",
	"shutdown", "getsockopt",
	"getsockname", "getpeername", "poll", "ppoll", "close", "dup", "dup2", "dup3",
	/* the dispatcher's set, made before the filter: waiting on it and changing it */
	"epoll_wait", "epoll_pwait", "epoll_ctl",
	"pipe", "pipe2", "ftruncate", "fsync", "fdatasync", "memfd_create",
	/* fstat(): glibc asks newfstatat(fd, "", AT_EMPTY_PATH); statx likewise */
	"fstat", "newfstatat", "statx",
	/* the dispatcher counts /proc/self/fd through a directory opened before */
	"getdents64",
	/* memory: glibc's allocator, and memfds mapped by handlers */
	"brk", "mmap", "munmap", "mremap", "mprotect", "madvise",
	/* time, randomness, waiting */
	"clock_gettime", "clock_getres", "gettimeofday", "clock_nanosleep", "nanosleep",
	"getrandom", "futex", "sched_yield", "restart_syscall",
	/* signals: the signalfd, abort(), handlers on a stack of their own */
	"rt_sigreturn", "rt_sigprocmask", "rt_sigaction", "signalfd4", "sigaltstack",
	/* who am I: the log line's pid, /sandbox answers */
	"getpid", "gettid", "getuid", "geteuid", "getgid", "getegid", "getgroups",
	/* glibc's qsort() sizes its buffer by the machine's memory */
	"sysinfo",
	"exit", "exit_group",
};

/*
 * Filesystem opens: EPERM, not death.  Library code probes for files
 * (locale data, configuration) and copes when it cannot have them; a
 * handler gets its files from the broker.
 */
static const char *const denied[] = {
	"open", "openat", "openat2", "creat",
};

/*
 * fcntl commands on the process's own descriptors.  Not F_SETOWN or
 * F_SETSIG: they would aim SIGIO at another process of the same user,
 * another worker for instance.
 */
static const int fcntl_cmds[] = {
	F_DUPFD, F_DUPFD_CLOEXEC, F_GETFD, F_SETFD, F_GETFL, F_SETFL,
	F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW,
	F_ADD_SEALS, F_GET_SEALS, F_GETPIPE_SZ, F_SETPIPE_SZ,
};

/* prctl options: the thread's name, and nothing that changes the process. */
static const int prctl_opts[] = { PR_SET_NAME, PR_GET_NAME };

/*
 * Socket I/O, and the argument that holds its MSG_ flags: allowed without
 * MSG_OOB.  Out-of-band data on a Unix stream socket is a corner of the
 * kernel that nothing in a worker uses and that has held use-after-free
 * bugs (CVE-2025-38236, reached from a browser's sandboxed renderer with
 * send() and recv() alone); every connection a worker holds is such a
 * socket.
 */
static const struct {
	const char *name;
	unsigned arg;
} msg_calls[] = {
	{ "recvmsg", 2 }, { "sendmsg", 2 }, { "recvfrom", 3 }, { "sendto", 3 },
};

/*
 * Under AddressSanitizer and UndefinedBehaviorSanitizer the list above is
 * enough while the process runs and when it reports an error (its
 * allocator maps, unmaps and advises; a report is written to stderr after
 * isatty(), getpid() and futex calls).  What it does not allow: the
 * symbolizer (its opens of /proc/self/maps and /proc/self/exe get EPERM,
 * so frames are printed as module+offset, and it never gets to fork one),
 * and LeakSanitizer's scan at exit, which clones a tracer that ptraces the
 * process: fdh_sandbox_apply() runs that scan before the filter instead.
 */

/*
 * What every request makes, checked first: the filter runs on every system
 * call, and a hot path that matches early costs next to nothing.
 */
static const char *const hot[] = {
	"epoll_wait", "recvmsg", "sendto", "sendmsg", "read", "write", "close", "getdents64",
	"lseek",
};

/* The syscall numbers of the service's extra names; they take precedence. */
struct extras {
	int *nr;
	size_t n;
};

static bool
is_extra(const struct extras *x, int nr)
{
	size_t i;

	for (i = 0; i < x->n; i++)
		if (x->nr[i] == nr)
			return true;
	return false;
}

static int
add_names(scmp_filter_ctx ctx, const struct extras *x, uint32_t action,
    const char *const *names, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		int nr = seccomp_syscall_resolve_name(names[i]), r;

		/* Not a call of this architecture: nothing to allow. */
		if (nr == __NR_SCMP_ERROR || is_extra(x, nr))
			continue;
		r = seccomp_rule_add(ctx, action, nr, 0);
		if (r < 0)
			return r;
	}
	return 0;
}

/* nr allowed when its argument arg equals one of values[0..n). */
static int
add_arg_values(scmp_filter_ctx ctx, const struct extras *x, const char *name,
    unsigned arg, const int *values, size_t n)
{
	int nr = seccomp_syscall_resolve_name(name), r;
	size_t i;

	if (nr == __NR_SCMP_ERROR || is_extra(x, nr))
		return 0;
	for (i = 0; i < n; i++) {
		struct scmp_arg_cmp cmp = {
			.arg = arg, .op = SCMP_CMP_EQ, .datum_a = (scmp_datum_t)values[i],
		};

		r = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 1, &cmp);
		if (r < 0)
			return r;
	}
	return 0;
}

/* nr allowed when its argument arg has none of the bits of mask. */
static int
add_arg_clear(scmp_filter_ctx ctx, const struct extras *x, const char *name, unsigned arg,
    scmp_datum_t mask)
{
	int nr = seccomp_syscall_resolve_name(name);
	struct scmp_arg_cmp cmp = {
		.arg = arg, .op = SCMP_CMP_MASKED_EQ, .datum_a = mask, .datum_b = 0,
	};

	if (nr == __NR_SCMP_ERROR || is_extra(x, nr))
		return 0;
	return seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 1, &cmp);
}

static int
add_rules(scmp_filter_ctx ctx, const struct extras *x)
{
	const int self[] = { (int)getpid() };
	/* isatty() on stdio; how much a connection still holds unread (dispatch.c) */
	const int ioctls[] = { TCGETS, FIONREAD };
	size_t i;
	int r;

	r = add_names(ctx, x, SCMP_ACT_ALLOW, allowed, sizeof(allowed) / sizeof(allowed[0]));
	if (r == 0)
		r = add_names(ctx, x, SCMP_ACT_ERRNO(EPERM), denied,
		    sizeof(denied) / sizeof(denied[0]));
	if (r == 0)
		r = add_arg_values(ctx, x, "fcntl", 1, fcntl_cmds,
		    sizeof(fcntl_cmds) / sizeof(fcntl_cmds[0]));
	if (r == 0)
		r = add_arg_values(ctx, x, "prctl", 0, prctl_opts,
		    sizeof(prctl_opts) / sizeof(prctl_opts[0]));
	for (i = 0; r == 0 && i < sizeof(msg_calls) / sizeof(msg_calls[0]); i++)
		r = add_arg_clear(ctx, x, msg_calls[i].name, msg_calls[i].arg, MSG_OOB);
	/* Those two; any other ioctl (TIOCSTI on a terminal) kills. */
	if (r == 0)
		r = add_arg_values(ctx, x, "ioctl", 1, ioctls, 2);
	/*
	 * Signals to itself only (abort(), raise()): the worker has no
	 * business signalling the other processes of its user.
	 */
	if (r == 0)
		r = add_arg_values(ctx, x, "kill", 0, self, 1);
	if (r == 0)
		r = add_arg_values(ctx, x, "tgkill", 0, self, 1);
	for (i = 0; r == 0 && i < x->n; i++)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, x->nr[i], 0);
	for (i = 0; r == 0 && i < sizeof(hot) / sizeof(hot[0]); i++) {
		int nr = seccomp_syscall_resolve_name(hot[i]);

		if (nr != __NR_SCMP_ERROR)
			r = seccomp_syscall_priority(ctx, nr, 255);
	}
	return r;
}

/* The numbers of the extra names in *ret (x.nr to free), or -EINVAL and *ret_bad. */
static int
resolve_extras(const char *const *extra, struct extras *ret, const char **ret_bad)
{
	struct extras x = { 0 };
	size_t n = 0, i;

	while (extra && extra[n])
		n++;
	if (n > 0) {
		x.nr = calloc(n, sizeof(*x.nr));
		if (x.nr == NULL)
			return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		int nr = seccomp_syscall_resolve_name(extra[i]);

		if (nr == __NR_SCMP_ERROR) {
			free(x.nr);
			*ret_bad = extra[i];
			return -EINVAL;
		}
		x.nr[x.n++] = nr;
	}
	*ret = x;
	return 0;
}

int
fdh_sandbox_check(const char *const *extra, const char **ret_bad)
{
	struct extras x;
	int r = resolve_extras(extra, &x, ret_bad);

	if (r == 0)
		free(x.nr);
	return r;
}

int
fdh_sandbox_apply(const char *const *extra, const char **ret_bad)
{
	struct extras x = { 0 };
	scmp_filter_ctx ctx = NULL;
	int r;

	r = resolve_extras(extra, &x, ret_bad);
	if (r < 0)
		return r;
	ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	if (ctx == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	/* A call made through another ABI (i386, x32) is no way around the list. */
	r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	/*
	 * Filters are per thread: without TSYNC a thread the service's init
	 * started would run unconfined.  The worker's own code has none (its
	 * closer is a process, with a filter of its own).
	 */
	if (r == 0)
		r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (r == 0)
		r = add_rules(ctx, &x);
	if (r < 0)
		goto fail;
#ifdef FDH_SANDBOX_ASAN
	/*
	 * LeakSanitizer's exit-time scan clones a tracer that ptraces this
	 * process and reads /proc: the filter would kill the worker at its
	 * last step.  One scan now stands for it (none later runs); later
	 * leaks are caught where the same code runs unconfined: the service
	 * run alone, the unit tests, and CI's leak-check pass of the fdhttpd
	 * tests, whose workers run with --no-sandbox.
	 */
	__lsan_do_leak_check();
#endif
	r = seccomp_load(ctx);
fail:
	if (ctx != NULL)
		seccomp_release(ctx);
	free(x.nr);
	return r;
}
