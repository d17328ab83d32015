/*
 * fdhttp-files: hands out read-only fds of the files beneath one directory
 * (CONTRACT section 8).  Its workers cannot open files themselves; every
 * open goes through fdhttpd's broker, which refuses what lies outside the
 * directory, ".." and symlinks leading out included:
 *
 *	fdhttpd --allow-open DIR:ro -- fdhttp-files --root DIR
 *
 *	GET /open?path=REL	200 with fd "file": DIR/REL opened read-only;
 *				403 for an absolute or not canonical REL
 *				(".", "..", "//") or a refusal, 404 when absent
 *
 * Run alone (--socket) there is no broker: it opens beneath DIR itself,
 * with the same rule (openat2 with RESOLVE_BENEATH and RESOLVE_NO_XDEV from
 * DIR's fd).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fdhttp/service.h>

struct files {
	char root[PATH_MAX];	/* absolute, without a trailing slash */
	int root_fd;		/* alone only: DIR, opened on first use */
};

static struct files files = { .root_fd = -1 };

static int
text(struct fdh_resp *resp, int status, const char *msg)
{
	fdh_resp_status(resp, status);
	(void)fdh_resp_header(resp, "Content-Type", "text/plain; charset=utf-8");
	return fdh_resp_printf(resp, "%s\n", msg);
}

/*
 * Whether rel has no "." or ".." component, no "//" and no trailing "/":
 * the broker takes only such paths (a path says by its prefix where it
 * leads), and alone the same path gets the same answer from this.
 */
static bool
canonical_rel(const char *rel)
{
	const char *p = rel, *end;
	size_t n;

	for (;;) {
		end = strchr(p, '/');
		n = end ? (size_t)(end - p) : strlen(p);
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		if (!end)
			return true;
		p = end + 1;
	}
}

/* Alone: the broker's rule, applied here. */
static int
open_alone(const char *rel)
{
	struct open_how how = {
		.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};
	int fd, fl;

	if (files.root_fd == -1) {
		files.root_fd = open(files.root, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (files.root_fd == -1)
			return -errno;
	}
	fd = (int)syscall(SYS_openat2, files.root_fd, rel, &how, sizeof(how));
	if (fd == -1)
		return errno == EXDEV ? -EACCES : -errno;
	/* O_NONBLOCK kept a FIFO from holding the open; the reader gets a plain fd. */
	if ((fl = fcntl(fd, F_GETFL)) == -1 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == -1) {
		fl = -errno;
		close(fd);
		return fl;
	}
	return fd;
}

static int
open_file(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	char rel[PATH_MAX], path[PATH_MAX];
	int fd, r;

	(void)ud;
	r = fdh_req_query_param(req, "path", rel, sizeof(rel));
	if (r == -ERANGE)
		return text(resp, 414, "path is too long");
	if (r == -EINVAL)
		return text(resp, 400, "path is not a valid percent-encoded path");
	if (r <= 0)
		return text(resp, 400, "this route needs ?path=REL");
	if (rel[0] == '/')
		return text(resp, 403, "path must be relative to the root");
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", files.root, rel) >= sizeof(path))
		return text(resp, 414, "path is too long");
	fd = fdh_broker_open(path, O_RDONLY);
	if (fd == -ENOTSUP)
		fd = canonical_rel(rel) ? open_alone(rel) : -EACCES;
	switch (fd) {
	case -EACCES:
	case -EPERM:
		return text(resp, 403, "path leads outside the root, or is not readable");
	case -ENOENT:
	case -ENOTDIR:
		return text(resp, 404, "no such file");
	case -ENAMETOOLONG:
		return text(resp, 414, "path is too long");
	case -ELOOP:
		return text(resp, 403, "too many symlinks on the way");
	case -ENXIO:
	case -EOPNOTSUPP:
		/* A socket, or a device with no driver: nothing open(2) can hand out. */
		return text(resp, 403, "not a file that can be opened");
	default:
		break;
	}
	if (fd < 0)
		return fd;	/* 500 */
	return fdh_resp_fd(resp, "file", fd);	/* consumes fd */
}

static int
init(int argc, char **argv, void *ud)
{
	const char *root = NULL;
	char real[PATH_MAX];
	struct stat st;
	size_t len;
	int i;

	(void)ud;
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--root") == 0 && i + 1 < argc) {
			root = argv[++i];
		} else if (strncmp(argv[i], "--root=", 7) == 0) {
			root = argv[i] + 7;
		} else {
			fdh_service_log(FDH_LOG_ERROR, "unknown option %s (see --help)", argv[i]);
			return -EINVAL;
		}
	}
	if (root == NULL || root[0] != '/') {
		fdh_service_log(FDH_LOG_ERROR, "--root DIR is required, an absolute directory");
		return -EINVAL;
	}
	/*
	 * The broker compares paths by their spelling: DIR through a symlink
	 * (/srv/data -> /data/srv) would put every path outside the
	 * --allow-open directory, which names the real one, and every request
	 * would get 403.  A DIR whose own path this worker may not search (the
	 * broker opens as fdhttpd's user) is kept as given.
	 */
	if (realpath(root, real) != NULL && stat(real, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			fdh_service_log(FDH_LOG_ERROR, "--root %s: not a directory", root);
			return -EINVAL;
		}
		root = real;
	} else if (errno == ENOENT || errno == ENOTDIR) {
		fdh_service_log(FDH_LOG_ERROR, "--root %s: %s", root, strerror(errno));
		return -EINVAL;
	}
	len = strlen(root);
	while (len > 1 && root[len - 1] == '/')
		len--;
	if (len >= sizeof(files.root)) {
		fdh_service_log(FDH_LOG_ERROR, "--root is too long");
		return -EINVAL;
	}
	/* "/" stays "" so that "/" + REL is not "//REL". */
	memcpy(files.root, root, len);
	files.root[len == 1 ? 0 : len] = '\0';
	return 0;
}

static const struct fdh_route routes[] = {
	{ "GET", "/open", open_file, NULL },
};

static const struct fdh_service service = {
	.name = "files",
	.routes = routes,
	.nroutes = sizeof(routes) / sizeof(routes[0]),
	.init = init,
	.usage = "      --root DIR             the directory whose files are handed out (required)\n",
};

int
main(int argc, char *argv[])
{
	return fdh_service_main(&service, argc, argv);
}
