/*
 * The worker's seccomp filter (CONTRACT section 6), closed in by
 * fdh_worker_main() after the service's init hook and before READY.
 */
#ifndef FDH_SANDBOX_H
#define FDH_SANDBOX_H

/*
 * Confines the calling process for the rest of its life to what a worker
 * does on descriptors it already holds: filesystem opens fail with EPERM,
 * and every other system call outside the allowlist (process creation,
 * execve, ptrace, new sockets, mounts, ...) kills the process.
 *
 * extra: system call names the service's handlers need besides
 * (struct fdh_service's syscalls), NULL-terminated, or NULL.  Returns 0;
 * -EINVAL with *ret_bad pointing at a name libseccomp does not know on
 * this architecture, nothing applied then; another -errno when the filter
 * could not be built or loaded.
 *
 * The process must be single-threaded: the filter binds the calling
 * thread, which threads it starts later inherit.
 */
int fdh_sandbox_apply(const char *const *extra, const char **ret_bad);

/*
 * Only the check of extra that fdh_sandbox_apply() makes first: 0, or
 * -EINVAL with *ret_bad, or -ENOMEM.  A service run alone has no filter,
 * and runs it so that a misspelt name shows while the service is
 * developed, not when fdhttpd first starts it.
 */
int fdh_sandbox_check(const char *const *extra, const char **ret_bad);

#endif
