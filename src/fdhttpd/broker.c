/*
 * The fd broker.  A sandboxed worker cannot open files: it sends OPEN with
 * an absolute path and open(2) flags, and the supervisor decides by the
 * --allow-open policy, opens with its own privileges and sends the fd back
 * in OPEN_REPLY.
 *
 * The longest --allow-open directory that is a prefix of the path (on a
 * component boundary) decides; the rest of the path is opened from that
 * directory's fd with openat2() and RESOLVE_BENEATH, so neither ".." nor a
 * symlink (absolute, or relative and climbing) can lead out of it, and
 * RESOLVE_NO_MAGICLINKS keeps /proc's fd links from jumping anywhere.  A
 * directory not marked ":rw" gives read-only opens: no O_WRONLY, O_RDWR,
 * O_CREAT, O_TRUNC (which truncates even read-only), O_APPEND or O_TMPFILE.
 *
 * The supervisor never blocks on a worker's behalf: every open is made
 * with O_NONBLOCK, so that a FIFO or a device cannot hold it, and the flag
 * is taken off again unless the worker asked for it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "broker.h"
#include "log.h"

/* What a worker may ask for; anything else (O_PATH, unknown bits) is -EINVAL. */
#define BROKER_FLAGS	(O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_APPEND | O_NONBLOCK | \
			 O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_SYNC | O_DSYNC | \
			 O_TMPFILE)

/* A file created through the broker: as a shell redirection would, less the umask. */
#define BROKER_CREATE_MODE	0666

struct allowed_dir {
	const char *path;	/* as given, trailing slashes not counted */
	size_t len;		/* 0 for "/" */
	bool rw;
	int fd;			/* O_PATH | O_DIRECTORY, opened at start */
};

static struct allowed_dir *dirs;
static size_t ndirs;

int
broker_setup(const struct options *o)
{
	size_t i, k;

	dirs = calloc(o->nallow_open ? o->nallow_open : 1, sizeof(*dirs));
	if (dirs == NULL)
		return -ENOMEM;
	for (i = 0; i < o->nallow_open; i++) {
		struct allowed_dir *d = &dirs[i];
		int r;

		d->path = o->allow_open[i].dir;
		d->len = strlen(d->path);
		while (d->len > 0 && d->path[d->len - 1] == '/')
			d->len--;
		d->rw = o->allow_open[i].rw;
		for (k = 0; k < i; k++) {
			if (dirs[k].len == d->len && strncmp(dirs[k].path, d->path, d->len) == 0) {
				log_error("--allow-open %s: given twice", d->path);
				ndirs = i;
				broker_free();
				return -EINVAL;
			}
		}
		d->fd = open(d->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (d->fd == -1) {
			r = -errno;
			log_error("--allow-open %s: %s", d->path, strerror(-r));
			ndirs = i;
			broker_free();
			return r;
		}
	}
	ndirs = o->nallow_open;
	return 0;
}

void
broker_free(void)
{
	size_t i;

	for (i = 0; i < ndirs; i++)
		close(dirs[i].fd);
	free(dirs);
	dirs = NULL;
	ndirs = 0;
}

/* The directory deciding for path, or NULL; *ret_rest: the path beneath it. */
static const struct allowed_dir *
match(const char *path, const char **ret_rest)
{
	const struct allowed_dir *best = NULL;
	size_t i;

	for (i = 0; i < ndirs; i++) {
		const struct allowed_dir *d = &dirs[i];

		/* "/srv/data" covers "/srv/data" and "/srv/data/x", not "/srv/database". */
		if (strncmp(path, d->path, d->len) != 0 ||
		    (path[d->len] != '/' && path[d->len] != '\0'))
			continue;
		if (best == NULL || d->len > best->len)
			best = d;
	}
	if (best != NULL) {
		const char *rest = path + best->len;

		rest += strspn(rest, "/");
		*ret_rest = *rest != '\0' ? rest : ".";
	}
	return best;
}

static bool
wants_write(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC | O_APPEND)) != 0 ||
	    (flags & O_TMPFILE) == O_TMPFILE;
}

/* "O_RDONLY|O_CREAT" for the log. */
static void
flags_name(int flags, char *buf, size_t len)
{
	static const struct { int flag; const char *name; } names[] = {
		{ O_CREAT, "O_CREAT" }, { O_EXCL, "O_EXCL" }, { O_TRUNC, "O_TRUNC" },
		{ O_APPEND, "O_APPEND" }, { O_NONBLOCK, "O_NONBLOCK" },
		{ O_NOFOLLOW, "O_NOFOLLOW" }, { O_CLOEXEC, "O_CLOEXEC" },
		{ O_NOCTTY, "O_NOCTTY" }, { O_SYNC, "O_SYNC" }, { O_DSYNC, "O_DSYNC" },
		{ O_TMPFILE, "O_TMPFILE" }, { O_DIRECTORY, "O_DIRECTORY" }, { O_PATH, "O_PATH" },
	};
	static const char *const acc[] = { "O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE" };
	int rest = flags & ~O_ACCMODE;
	size_t n, i;

	n = strlcpy(buf, acc[flags & O_ACCMODE], len);
	for (i = 0; i < sizeof(names) / sizeof(names[0]) && n < len; i++) {
		if ((rest & names[i].flag) != names[i].flag)
			continue;
		rest &= ~names[i].flag;
		n += (size_t)snprintf(buf + n, len - n, "|%s", names[i].name);
	}
	if (rest != 0 && n < len)
		snprintf(buf + n, len - n, "|0%o", (unsigned)rest);
}

/*
 * The decision and the open: the fd, or -errno with *why saying what the
 * policy refused (NULL when the open itself failed).
 */
static int
decide_and_open(const struct fdh_ctl_open *req, char *why, size_t len)
{
	const struct allowed_dir *d;
	struct open_how how = { 0 };
	const char *rest = NULL;
	int fd, fl;

	if (req->path[0] != '/') {
		snprintf(why, len, "refused: not an absolute path");
		return -EINVAL;
	}
	if ((req->flags & ~BROKER_FLAGS) != 0 || (req->flags & O_ACCMODE) == O_ACCMODE) {
		snprintf(why, len, "refused: flags the broker does not take");
		return -EINVAL;
	}
	d = match(req->path, &rest);
	if (d == NULL) {
		snprintf(why, len, "refused: outside every --allow-open directory");
		return -EACCES;
	}
	if (wants_write(req->flags) && !d->rw) {
		snprintf(why, len, "refused: %s is read-only", d->len ? d->path : "/");
		return -EACCES;
	}
	how.flags = (uint64_t)(unsigned)(req->flags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	how.mode = (req->flags & O_CREAT) || (req->flags & O_TMPFILE) == O_TMPFILE ?
	    BROKER_CREATE_MODE : 0;
	how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
	do
		fd = (int)syscall(SYS_openat2, d->fd, rest, &how, sizeof(how));
	while (fd == -1 && errno == EINTR);
	if (fd == -1) {
		int err = errno;

		if (err == EXDEV) {
			/* RESOLVE_BENEATH: ".." or a symlink on the way led out. */
			snprintf(why, len, "refused: leads out of %s", d->len ? d->path : "/");
			return -EACCES;
		}
		snprintf(why, len, "%s", strerror(err));
		return -err;
	}
	if (!(req->flags & O_NONBLOCK) && ((fl = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == -1)) {
		int err = errno;

		close(fd);
		snprintf(why, len, "%s", strerror(err));
		return -err;
	}
	snprintf(why, len, "opened beneath %s (%s)", d->len ? d->path : "/", d->rw ? "rw" : "ro");
	return fd;
}

void
broker_on_open(struct sup *s, struct proc *p, const struct fdh_ctl_open *req)
{
	struct fdh_ctl_msg m;
	char why[PATH_MAX + 64], flags[160];
	int fd, r;

	fd = decide_and_open(req, why, sizeof(why));
	flags_name(req->flags, flags, sizeof(flags));
	log_info("broker: worker %u (pid %ld): open \"%s\" %s: %s", p->id, (long)p->pid,
	    req->path, flags, why);
	fdh_ctl_init(&m, FDH_CTL_OPEN_REPLY);
	m.u.open_reply.id = req->id;
	if (fd >= 0)
		m.h.flags |= FDH_CTL_F_FD;
	else
		m.u.open_reply.error = fd;
	r = fdh_ctl_send(p->ctl, &m, fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0);
	/* Sent or not, ours is closed: the worker has its own copy or none. */
	if (fd >= 0)
		close(fd);
	if (r == -EAGAIN) {
		/* Its queue is full of what it does not read: it times out. */
		log_warn("worker %u (pid %ld): control socket full; broker answer dropped",
		    p->id, (long)p->pid);
		p->blocked = true;
	} else if (r < 0) {
		workers_ctl_failed(s, p, -r);
	}
}
