/*
 * Support for the C tests: services started in a temporary directory, raw
 * sockets that bypass the client library, and fd accounting.
 *
 * Functions return 0 (or a count, or an fd) on success and -errno on
 * failure, like the library.  None of them calls cmocka: a test decides
 * what a failure means.
 */
#ifndef FDH_TEST_HARNESS_H
#define FDH_TEST_HARNESS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Room for every fd the kernel can pass in one message. */
#define FDH_TEST_MAX_FDS	253

/* Default wait for a service to come up, and for it to stop. */
#define FDH_TEST_START_TIMEOUT_MS	10000
#define FDH_TEST_STOP_TIMEOUT_MS	10000

struct fdh_test_proc {
	pid_t pid;
	char dir[PATH_MAX];	/* temporary directory, removed by stop */
	char sock[108];		/* DIR/s.sock; fits sockaddr_un.sun_path */
};

/* $FDH_ECHO (set by ctest), else FDH_BUILD_DIR/examples/fdhttp-echo; NULL if neither. */
const char *fdh_test_echo_exe(void);

/*
 * Makes a temporary directory and runs "exe --socket DIR/s.sock extra_args..."
 * (extra_args NULL-terminated, or NULL), stdout and stderr inherited, every
 * other fd of ours closed in the child.  Returns once the socket accepts a
 * connection; -ECHILD if the child exits first, -ETIMEDOUT after 10 s (the
 * child is then killed).  The child gets SIGKILL should the calling thread
 * die, so a crashed test leaves no service behind.
 */
int fdh_test_start_service(const char *exe, const char *const *extra_args,
    struct fdh_test_proc *ret);

/*
 * Like fdh_test_start_service() with a whole argv of the caller's (argv[0]
 * is the executable); "{sock}" and "{dir}" in an argument are replaced by
 * the socket path and the directory.  For fdhttpd command lines.
 */
int fdh_test_start_argv(const char *const *argv, struct fdh_test_proc *ret);

/*
 * SIGTERM, up to 10 s for the process to exit, then SIGKILL; removes the
 * directory and what is in it.  Returns the exit status (0..255), 128 + the
 * signal number if a signal ended it, or -errno.
 */
int fdh_test_stop_service(struct fdh_test_proc *p);

/* Waits up to timeout_ms for pid (our child) to exit, status as above. */
int fdh_test_wait_exit(pid_t pid, int timeout_ms);

/* The number of open fds of pid (our own when pid is 0 or getpid()). */
int fdh_test_count_fds(pid_t pid);
/*
 * The fd count of pid once it equals want, polled up to ms: a response is
 * in our hands a moment before the service has closed what went with it.
 * Returns the last count seen, for the caller to check.
 */
int fdh_test_wait_fd_count(pid_t pid, int want, int ms);

/* A fresh temporary directory in ret (PATH_MAX), and its recursive removal. */
int fdh_test_mkdtemp(char *ret, size_t size);
int fdh_test_rmtree(const char *dir);

/*
 * A blocking connected socket to path ("@name" is abstract) with
 * SO_RCVTIMEO and SO_SNDTIMEO of timeout_ms (0: none); close-on-exec.
 */
int fdh_test_connect(const char *path, int timeout_ms);

/* A listening socket at path ("@name" is abstract), blocking, backlog given. */
int fdh_test_listen(const char *path, int backlog);

/*
 * One sendmsg() of buf[0..len) with fds[0..nfds) attached (borrowed).
 * Returns the byte count, possibly short, or -errno; never SIGPIPE.
 */
ssize_t fdh_test_send(int sock, const void *buf, size_t len, const int *fds, size_t nfds);
/* Like fdh_test_send() with a NUL-terminated string. */
ssize_t fdh_test_sends(int sock, const char *s, const int *fds, size_t nfds);
/* Sends all of buf, fds with the first byte; 0 or -errno. */
int fdh_test_send_all(int sock, const void *buf, size_t len, const int *fds, size_t nfds);

/* What a raw read collected.  Release with fdh_test_msg_free(). */
struct fdh_test_msg {
	char *data;		/* every byte read, NUL-terminated; malloc'd */
	size_t len;
	size_t head_len;	/* through the blank line; 0 if none seen */
	size_t body_len;	/* Content-Length of the head (0 if absent) */
	int status;		/* of a response's status line; 0 otherwise */
	int fds[FDH_TEST_MAX_FDS];	/* received, owned, close-on-exec */
	size_t nfds;
	size_t fds_at;		/* offset in data of the first byte the fds came with */
	bool truncated;		/* MSG_CTRUNC was seen */
	bool eof;		/* the peer closed */
	bool timed_out;
};

/*
 * Reads until EOF, or until timeout_ms (0: none) pass with nothing to read,
 * collecting fds.  Returns 0 (see eof / timed_out) or -errno.
 */
int fdh_test_read_all(int sock, int timeout_ms, struct fdh_test_msg *ret);

/*
 * Reads exactly one HTTP message (request or response): the head through
 * the blank line and a Content-Length body, never a byte more, so that a
 * keep-alive stream can be read message by message.  A 100 Continue is a
 * message of its own.  Returns 0, -ETIMEDOUT after timeout_ms overall
 * (0: none), -ECONNRESET if the peer closed first (what arrived is still
 * in *ret), -EBADMSG for a head without a parsable Content-Length when
 * one is present.  *ret is filled in every case but -ENOMEM.
 */
int fdh_test_read_message(int sock, int timeout_ms, struct fdh_test_msg *ret);

/* Reads one head only, as fdh_test_read_message() does: for responses to HEAD. */
int fdh_test_read_head(int sock, int timeout_ms, struct fdh_test_msg *ret);

/* Closes the fds still in msg and frees its data. */
void fdh_test_msg_free(struct fdh_test_msg *msg);

/* The body of a message read by fdh_test_read_message(). */
const char *fdh_test_msg_body(const struct fdh_test_msg *msg);

/*
 * Copies the value of the first header called name (case-insensitive) in
 * the head of msg into buf; -ENOENT when absent, -ENOBUFS when too long.
 */
int fdh_test_msg_header(const struct fdh_test_msg *msg, const char *name, char *buf,
    size_t size);

/* A memfd holding content, offset 0, close-on-exec. */
int fdh_test_make_memfd(const char *content);

/*
 * The read end of a pipe holding content, its write end already closed
 * (content must fit the pipe buffer, 64 KiB).
 */
int fdh_test_make_pipe_with(const char *content);

/* 1 when fd is open in this process, 0 otherwise. */
int fdh_test_fd_is_open(int fd);

/* Reads fd until EOF into buf (NUL-terminated); the byte count or -errno. */
ssize_t fdh_test_read_fd(int fd, char *buf, size_t size);

/* 1 when a and b refer to the same open file description's file (dev, ino). */
int fdh_test_same_file(int a, int b);

/* CLOCK_MONOTONIC in ms, and a sleep that resumes after signals. */
int64_t fdh_test_now_ms(void);
void fdh_test_sleep_ms(int ms);

/*
 * cmocka group fixtures: start fdhttp-echo with args into *state (a
 * struct fdh_test_proc), and stop it, failing when it did not exit 0.
 */
int fdh_test_group_start_echo(void **state, const char *const *args);
int fdh_test_group_stop(void **state);

#endif
