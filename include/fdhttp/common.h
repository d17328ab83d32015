/*
 * fdhttp: HTTP/1.1 over Unix-domain sockets with file descriptors passed
 * by name.  Declarations shared by the service runtime and the client.
 *
 * Conventions: functions return 0 (or a count) on success and a negative
 * errno value on failure; ret_* out-parameters are written only on success.
 * Every function taking an fd states whether it consumes it.
 */
#ifndef FDHTTP_COMMON_H
#define FDHTTP_COMMON_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FDH_API __attribute__((visibility("default")))

#define FDH_VERSION "0.1.0"

/* Names in X-FD: 1 to 64 characters from [A-Za-z0-9._-]. */
#define FDH_FD_NAME_MAX 64

/* The bounds every connection lives within (CONTRACT section 2). */
struct fdh_limits {
	size_t max_head;		/* request line through blank line, bytes */
	unsigned max_headers;		/* header fields, Host included */
	size_t max_body;		/* bytes */
	unsigned max_fds;		/* descriptors per request */
	unsigned max_conns;		/* connections per worker */
	unsigned request_timeout_ms;	/* first byte to complete request */
	unsigned idle_timeout_ms;	/* wait for a (next) request */
	unsigned write_timeout_ms;	/* response write making no progress */
};

#define FDH_DEFAULT_MAX_HEAD		8192
#define FDH_DEFAULT_MAX_HEADERS		64
#define FDH_DEFAULT_MAX_BODY		(1024 * 1024)
#define FDH_DEFAULT_MAX_FDS		16
#define FDH_DEFAULT_MAX_CONNS		256
#define FDH_DEFAULT_REQUEST_TIMEOUT_MS	10000
#define FDH_DEFAULT_IDLE_TIMEOUT_MS	60000
#define FDH_DEFAULT_WRITE_TIMEOUT_MS	10000

/* Hard ceilings, so that a configuration cannot make a limit meaningless. */
#define FDH_MAX_FDS_CEILING		253	/* SCM_MAX_FD in the kernel */
#define FDH_MAX_HEAD_CEILING		(1024 * 1024)
#define FDH_MAX_HEADERS_CEILING		4096

/* Log levels, as fdhttpd's --log-level names them: see fdh_service_log(). */
enum fdh_log_level {
	FDH_LOG_DEBUG,
	FDH_LOG_INFO,
	FDH_LOG_WARN,
	FDH_LOG_ERROR,
};

FDH_API void fdh_limits_default(struct fdh_limits *l);

/*
 * Sets one limit from its command-line spelling: name is one of "max-head",
 * "max-headers", "max-body", "max-fds", "max-conns", "request-timeout",
 * "idle-timeout", "write-timeout" (seconds, fractions allowed).  Returns
 * -ENOENT for an unknown name, -EINVAL for a value that does not parse or
 * is out of range; *l is unchanged on failure.
 */
FDH_API int fdh_limits_set(struct fdh_limits *l, const char *name, const char *value);

/* The credentials of the process at the other end of a connection. */
struct fdh_peer {
	pid_t pid;
	uid_t uid;
	gid_t gid;
};

/* A header as a name and a value, both NUL-terminated. */
struct fdh_header {
	const char *name;
	const char *value;
};

/* Short text for an HTTP status code ("Not Found"); "" when unknown. */
FDH_API const char *fdh_status_reason(int status);

/* 1 when name is a valid X-FD name, 0 otherwise. */
FDH_API int fdh_fd_name_valid(const char *name, size_t len);

#ifdef __cplusplus
}
#endif
#endif
