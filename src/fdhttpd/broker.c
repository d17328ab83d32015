/*
 * The fd broker.  A sandboxed worker cannot open files: it sends OPEN with
 * an absolute path and open(2) flags, and the supervisor decides by the
 * --allow-open policy, opens with its own privileges and sends the fd back
 * in OPEN_REPLY.
 *
 * Only canonical paths are taken: no "." or ".." component, no "//", no
 * trailing "/".  The longest --allow-open directory that is a prefix of the
 * path (on a component boundary) decides; the rest of the path is opened
 * from that directory's fd with openat2() and RESOLVE_BENEATH, so neither
 * ".." nor a symlink (absolute, or relative and climbing) can lead out of
 * it, and RESOLVE_NO_MAGICLINKS keeps /proc's fd links from jumping
 * anywhere.  RESOLVE_NO_XDEV keeps it on the directory's own mount: a
 * mount beneath it is a place the policy never named, a bind mount of
 * anywhere or a FUSE mount a user made in a writable directory, whose
 * server would hold our loop in the open for as long as it liked.  Such a
 * mount is allowed by naming it in an --allow-open of its own.  A
 * directory not marked ":rw" gives read-only opens: no O_WRONLY, O_RDWR,
 * O_CREAT, O_TRUNC (which truncates even read-only), O_APPEND or
 * O_TMPFILE.
 *
 * A read-only directory may lie beneath a ":rw" one.  The prefix decides by
 * spelling, and a spelling is not a place: a symlink inside the ":rw"
 * directory, or the read-only one named through a symlink on the command
 * line, would let a write reach it by another name.  So a write beneath a
 * ":rw" directory that held a read-only one at start walks the path one
 * directory at a time, following no symlink, and is refused when a
 * directory on the way (or what it opens) is a read-only one, known by
 * (st_dev, st_ino) rather than by name.
 *
 * The supervisor never blocks on a worker's behalf: every open is made
 * with O_NONBLOCK, so that a FIFO or a device cannot hold it, and the flag
 * is taken off again unless the worker asked for it.  Nor does it
 * truncate: freeing a large file's blocks takes the filesystem seconds
 * (tens of them for a fragmented file on a mount with discard), which a
 * worker with a :rw directory could make on purpose.  O_TRUNC is left
 * out of the open, and fdh_broker_open() truncates, in the worker, on the
 * writable fd it gets; so O_TRUNC needs O_WRONLY or O_RDWR.
 *
 * Nor does it answer a worker that does not read: with BROKER_MAX_UNREAD
 * answers unread, the worker's next OPEN is left in its socket, unread,
 * until it has read one (SIOCOUTQ on our end says how far it has).  Left
 * there rather than answered with an error: an error would keep us reading
 * and answering a flood as fast as the worker writes, each answer queued
 * in the socket sized for its connections, and would fail an honest caller
 * that was merely slow; unread, the requests are bounded by the worker's
 * own send buffer and cost us nothing.  What comes before the OPEN (closed
 * connections, READY) is read as usual, and what we send goes on (DRAIN,
 * FLUSH).  A worker waiting in fdh_broker_open() reads its socket all the
 * while, so it is answered at the next look, BROKER_CHECK_MS later at most.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/sockios.h>

#include "broker.h"
#include "log.h"

/* What a worker may ask for; anything else (O_PATH, unknown bits) is -EINVAL. */
#define BROKER_FLAGS	(O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_APPEND | O_NONBLOCK | \
			 O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_SYNC | O_DSYNC | \
			 O_TMPFILE)

/* A file created through the broker: as a shell redirection would, less the umask. */
#define BROKER_CREATE_MODE	0666

/* ".." steps from a directory up to "/" at most: PATH_MAX allows no more. */
#define BROKER_MAX_DEPTH	(PATH_MAX / 2)

/*
 * A path in the log keeps this much of its head and tail around a marker
 * saying how much was cut.  A worker's path may be PATH_MAX long (and grow
 * fourfold as its control bytes are escaped): in full it would push the
 * flags and the outcome off the end of the log's line.
 */
#define LOG_PATH_HEAD		96
#define LOG_PATH_TAIL		64
#define LOG_PATH_BUF		(4 * (LOG_PATH_HEAD + LOG_PATH_TAIL) + 48)

struct allowed_dir {
	const char *path;	/* as given, trailing slashes not counted */
	size_t len;		/* 0 for "/" */
	bool rw;
	bool holds_ro;		/* :rw with a read-only one beneath it at start */
	char name[LOG_PATH_BUF];	/* for the log: "/" for "/", cut when long */
	int fd;			/* O_PATH | O_DIRECTORY, opened at start */
	dev_t dev;		/* the directory itself, whatever names it later */
	ino_t ino;
};

static struct allowed_dir *dirs;
static size_t ndirs;

/*
 * Appends p[0..len) to buf at *at, each byte that is not printable ASCII,
 * and the backslash and the double quote, as \xNN.  The audit line then
 * reads one way only: a file named "x\x0ay" does not log as one with a
 * newline in its name, a quote in a name does not end the quoted path, and
 * neither invalid UTF-8 nor a bidirectional override reaches a terminal.
 */
static void
log_path_put(char *buf, size_t size, size_t *at, const char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len && *at + 5 < size; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c < 0x20 || c >= 0x7f || c == '\\' || c == '"') {
			snprintf(buf + *at, 5, "\\x%02x", c);
			*at += 4;
		} else {
			buf[(*at)++] = (char)c;
		}
	}
	buf[*at] = '\0';
}

/* path[0..len) for the log, escaped, its middle cut when longer than the log keeps. */
static const char *
log_path(const char *path, size_t len, char *buf, size_t size)
{
	char mark[48];
	size_t at = 0;
	int n;

	buf[0] = '\0';
	if (len <= LOG_PATH_HEAD + LOG_PATH_TAIL) {
		log_path_put(buf, size, &at, path, len);
		return buf;
	}
	log_path_put(buf, size, &at, path, LOG_PATH_HEAD);
	n = snprintf(mark, sizeof(mark), "...[%zu bytes cut]...", len - LOG_PATH_HEAD - LOG_PATH_TAIL);
	if (n > 0 && at + (size_t)n < size) {
		memcpy(buf + at, mark, (size_t)n);
		at += (size_t)n;
	}
	log_path_put(buf, size, &at, path + len - LOG_PATH_TAIL, LOG_PATH_TAIL);
	return buf;
}

/*
 * Whether path[0..len) has no "." or ".." component, no empty one ("//")
 * and no trailing "/".  Its prefix alone then says which directory it is
 * beneath: "/D/./private/f" or "/D//private/f" cannot pass for a path in D
 * while naming one in D/private.
 */
bool
broker_canonical(const char *path, size_t len)
{
	size_t i = 0, n;

	while (i < len) {
		if (path[i] != '/')
			return false;
		i++;
		n = 0;
		while (i + n < len && path[i + n] != '/')
			n++;
		if (n == 0 || (n == 1 && path[i] == '.') ||
		    (n == 2 && path[i] == '.' && path[i + 1] == '.'))
			return false;
		i += n;
	}
	return true;
}

/* The read-only --allow-open directory that fd is, or NULL. */
static const struct allowed_dir *
ro_dir_of(int fd)
{
	struct stat st;
	size_t i;

	if (fstat(fd, &st) == -1 || !S_ISDIR(st.st_mode))
		return NULL;
	for (i = 0; i < ndirs; i++)
		if (!dirs[i].rw && dirs[i].dev == st.st_dev && dirs[i].ino == st.st_ino)
			return &dirs[i];
	return NULL;
}

/*
 * Whether the directory fd lies beneath d (following ".." up to "/").  A
 * step that fails says yes: the careful way to open beneath d costs only
 * symlinks, the careless one could cost the read-only directory.
 */
static bool
beneath(int fd, const struct allowed_dir *d)
{
	struct stat st, prev = { 0 };
	int cur = -1, up, i;
	bool yes = true;

	for (i = 0; i < BROKER_MAX_DEPTH; i++) {
		up = openat(i == 0 ? fd : cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (cur != -1)
			close(cur);
		cur = up;
		if (cur == -1 || fstat(cur, &st) == -1 ||
		    (st.st_dev == d->dev && st.st_ino == d->ino))
			break;
		if (i > 0 && st.st_dev == prev.st_dev && st.st_ino == prev.st_ino) {
			yes = false;	/* "/", its own parent, and d not met */
			break;
		}
		prev = st;
	}
	if (cur != -1)
		close(cur);
	return yes;
}

int
broker_setup(const struct options *o)
{
	struct stat st;
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
		/* Spelled twice, or not canonically: refused with the command line. */
		d->fd = open(d->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (d->fd == -1 || fstat(d->fd, &st) == -1) {
			r = -errno;
			log_error("--allow-open %s: %s%s", d->path, strerror(-r),
			    r == -ENOENT && strchr(strrchr(d->path, '/'), ':') ?
			    " (its mode, if any, is :ro or :rw)" : "");
			if (d->fd != -1)
				close(d->fd);
			ndirs = i;
			broker_free();
			return r;
		}
		d->dev = st.st_dev;
		d->ino = st.st_ino;
		if (d->len == 0)
			snprintf(d->name, sizeof(d->name), "/");
		else
			log_path(d->path, d->len, d->name, sizeof(d->name));
		for (k = 0; k < i; k++) {
			/* One directory both :ro and :rw by two names is no policy. */
			if (dirs[k].dev == d->dev && dirs[k].ino == d->ino) {
				log_error("--allow-open %s: the same directory as %s", d->path,
				    dirs[k].name);
				ndirs = i + 1;
				broker_free();
				return -EINVAL;
			}
		}
	}
	ndirs = o->nallow_open;
	for (i = 0; i < ndirs; i++)
		for (k = 0; k < ndirs; k++)
			if (dirs[i].rw && !dirs[k].rw && beneath(dirs[k].fd, &dirs[i]))
				dirs[i].holds_ro = true;
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

static int
openat2_retry(int dirfd, const char *path, const struct open_how *how)
{
	int fd;

	do
		fd = (int)syscall(SYS_openat2, dirfd, path, how, sizeof(*how));
	while (fd == -1 && errno == EINTR);
	return fd == -1 ? -errno : fd;
}

/*
 * Opens rest beneath d (a :rw directory holding a read-only one) one
 * directory at a time, following no symlink, each step from the fd of the
 * last: the directories checked are the ones the open goes through, with
 * no name looked up twice.  Returns the fd, -ELOOP for a symlink on the
 * way, or -EACCES with *ret_ro the read-only directory reached.
 */
static int
open_walk(const struct allowed_dir *d, const char *rest, const struct open_how *how,
    const struct allowed_dir **ret_ro)
{
	struct open_how step = {
		.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
		    RESOLVE_NO_XDEV,
	};
	struct open_how last = *how;
	const struct allowed_dir *ro;
	char name[NAME_MAX + 1];
	const char *slash;
	int dir = d->fd, fd, r;

	last.resolve |= RESOLVE_NO_SYMLINKS;
	while ((slash = strchr(rest, '/')) != NULL) {
		if ((size_t)(slash - rest) > NAME_MAX) {
			r = -ENAMETOOLONG;
			goto fail;
		}
		memcpy(name, rest, (size_t)(slash - rest));
		name[slash - rest] = '\0';
		fd = openat2_retry(dir, name, &step);
		if (dir != d->fd)
			close(dir);
		dir = fd;
		if (dir < 0) {
			r = dir;
			goto fail;
		}
		if ((ro = ro_dir_of(dir)) != NULL) {
			*ret_ro = ro;
			r = -EACCES;
			goto fail;
		}
		rest = slash + 1;
	}
	/* O_TMPFILE makes its file in the directory named last: check that one too. */
	if ((how->flags & O_TMPFILE) == O_TMPFILE) {
		fd = openat2_retry(dir, rest, &step);
		if (fd >= 0 && (ro = ro_dir_of(fd)) != NULL) {
			close(fd);
			*ret_ro = ro;
			r = -EACCES;
			goto fail;
		}
		if (fd >= 0)
			close(fd);
	}
	fd = openat2_retry(dir, rest, &last);
	if (fd >= 0 && (ro = ro_dir_of(fd)) != NULL) {
		close(fd);
		*ret_ro = ro;
		fd = -EACCES;
	}
	if (dir != d->fd)
		close(dir);
	return fd;
fail:
	if (dir >= 0 && dir != d->fd)
		close(dir);
	return r;
}

/*
 * The decision and the open: the fd, or -errno with *why saying what the
 * policy refused (NULL when the open itself failed).
 */
static int
decide_and_open(const struct fdh_ctl_open *req, char *why, size_t len)
{
	const struct allowed_dir *d, *ro = NULL;
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
	if (strcmp(req->path, "/") != 0 && !broker_canonical(req->path, strlen(req->path))) {
		snprintf(why, len, "refused: not a canonical path (\".\", \"..\", \"//\" or a "
		    "trailing \"/\")");
		return -EACCES;
	}
	d = match(req->path, &rest);
	if (d == NULL) {
		snprintf(why, len, "refused: outside every --allow-open directory");
		return -EACCES;
	}
	if (wants_write(req->flags) && !d->rw) {
		snprintf(why, len, "refused: %s is read-only", d->name);
		return -EACCES;
	}
	if ((req->flags & O_TRUNC) && (req->flags & O_ACCMODE) == O_RDONLY) {
		snprintf(why, len, "refused: O_TRUNC without O_WRONLY or O_RDWR");
		return -EINVAL;
	}
	how.flags = (uint64_t)(unsigned)((req->flags & ~O_TRUNC) | O_CLOEXEC | O_NOCTTY |
	    O_NONBLOCK);
	how.mode = (req->flags & O_CREAT) || (req->flags & O_TMPFILE) == O_TMPFILE ?
	    BROKER_CREATE_MODE : 0;
	how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
	if (d->holds_ro && wants_write(req->flags))
		fd = open_walk(d, rest, &how, &ro);
	else
		fd = openat2_retry(d->fd, rest, &how);
	if (ro != NULL) {
		snprintf(why, len, "refused: leads into %s, which is read-only", ro->name);
		return -EACCES;
	}
	if (fd == -ELOOP && d->holds_ro && wants_write(req->flags)) {
		/* Where a symlink leads is a place the walk did not check. */
		snprintf(why, len, "refused: a symlink on the way (writes beneath %s, which holds "
		    "a read-only directory, follow none)", d->name);
		return -EACCES;
	}
	if (fd < 0) {
		if (fd == -EXDEV) {
			/*
			 * RESOLVE_BENEATH: ".." or a symlink on the way led
			 * out; RESOLVE_NO_XDEV: the path crossed a mount.
			 */
			snprintf(why, len, "refused: leads out of %s or into a mount beneath it",
			    d->name);
			return -EACCES;
		}
		snprintf(why, len, "%s", strerror(-fd));
		return fd;
	}
	if (!(req->flags & O_NONBLOCK) && ((fl = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == -1)) {
		int err = errno;

		close(fd);
		snprintf(why, len, "%s", strerror(err));
		return -err;
	}
	snprintf(why, len, "opened beneath %s (%s)", d->name, d->rw ? "rw" : "ro");
	return fd;
}

/*
 * Forgets the answers p has read: the kernel charges our end for every
 * record until its reader takes it (SIOCOUTQ), so ctl_sent less that is
 * how far p has read.  Should the count fail, every answer is forgotten: a
 * worker never to be answered again is worse than one left uncapped.
 */
static void
answers_read(struct proc *p)
{
	uint64_t done;
	unsigned k = 0;
	int queued;

	if (p->nanswers == 0)
		return;
	if (ioctl(p->ctl, SIOCOUTQ, &queued) == -1 || queued < 0)
		done = UINT64_MAX;
	else
		done = (uint64_t)queued < p->ctl_sent ? p->ctl_sent - (uint64_t)queued : 0;
	while (k < p->nanswers && p->answer_end[k] <= done)
		k++;
	p->nanswers -= k;
	memmove(p->answer_end, p->answer_end + k, p->nanswers * sizeof(p->answer_end[0]));
	if (p->broker_capped && p->nanswers == 0) {
		log_info("worker %u (pid %ld): read its broker answers; taking its requests again",
		    p->id, (long)p->pid);
		p->broker_capped = false;
	}
}

bool
broker_hold(struct proc *p)
{
	struct fdh_ctl_hdr h;
	ssize_t n;

	if (p->nanswers < BROKER_MAX_UNREAD)
		return false;
	answers_read(p);
	if (p->nanswers < BROKER_MAX_UNREAD)
		return false;
	/* Only an OPEN waits: the fds of a peeked record are not taken. */
	n = recv(p->ctl, &h, sizeof(h), MSG_PEEK | MSG_DONTWAIT);
	if (n != (ssize_t)sizeof(h) || h.type != FDH_CTL_OPEN)
		return false;
	p->broker_held = true;
	p->broker_check_at = fdh_mono_ms() + BROKER_CHECK_MS;
	if (!p->broker_capped)
		log_warn("worker %u (pid %ld): %d broker answers unread; leaving its requests "
		    "unread until it reads them", p->id, (long)p->pid, BROKER_MAX_UNREAD);
	p->broker_capped = true;
	return true;
}

void
broker_check(struct proc *p, int64_t now)
{
	answers_read(p);
	if (p->nanswers < BROKER_MAX_UNREAD)
		p->broker_held = false;	/* polled for POLLIN again: the OPEN is read */
	else
		p->broker_check_at = now + BROKER_CHECK_MS;
}

/*
 * Notes an answer sent to p as unread.  Over BROKER_MAX_UNREAD (an OPEN
 * read with the hang-up) the newest end replaces the last: read, it says
 * that every earlier one was too.
 */
static void
answer_sent(struct proc *p)
{
	if (p->nanswers < BROKER_MAX_UNREAD)
		p->nanswers++;
	p->answer_end[p->nanswers - 1] = p->ctl_sent;
}

void
broker_on_open(struct sup *s, struct proc *p, const struct fdh_ctl_open *req)
{
	struct fdh_ctl_msg m;
	char why[LOG_PATH_BUF + 128], flags[160], path[LOG_PATH_BUF];
	int fd, r;

	fd = decide_and_open(req, why, sizeof(why));
	flags_name(req->flags, flags, sizeof(flags));
	/* Who, what and the outcome first; the path, bounded, last. */
	log_info("broker: worker %u (pid %ld): open %s: %s: \"%s\"", p->id, (long)p->pid, flags,
	    why, log_path(req->path, strnlen(req->path, sizeof(req->path)), path, sizeof(path)));
	fdh_ctl_init(&m, FDH_CTL_OPEN_REPLY);
	m.u.open_reply.id = req->id;
	if (fd >= 0)
		m.h.flags |= FDH_CTL_F_FD;
	else
		m.u.open_reply.error = fd;
	r = workers_send(p, &m, fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0);
	/* Sent or not, ours is closed: the worker has its own copy or none. */
	if (fd >= 0)
		close(fd);
	if (fd >= 0 && ctl_send_temporary(r)) {
		/*
		 * The fd could not travel (our fds in flight at RLIMIT_NOFILE,
		 * or no memory): the worker gets the reason instead of a
		 * 5-second wait, and keeps its socket.  Said once a streak:
		 * a worker can ask as fast as it likes.
		 */
		if (!p->answers_short)
			log_warn("worker %u (pid %ld): broker answer: %s; answering the error "
			    "instead until an fd goes through again", p->id, (long)p->pid,
			    strerror(-r));
		p->answers_short = true;
		m.h.flags &= ~FDH_CTL_F_FD;
		m.u.open_reply.error = r;
		r = workers_send(p, &m, NULL, 0);
	} else if (fd >= 0 && r == 0) {
		p->answers_short = false;
	}
	if (r == 0) {
		answer_sent(p);
	} else if (ctl_send_temporary(r)) {
		log_warn("worker %u (pid %ld): broker answer dropped: %s", p->id, (long)p->pid,
		    strerror(-r));
	} else if (r == -EAGAIN) {
		/* Its queue is full of what it does not read: it times out. */
		log_warn("worker %u (pid %ld): control socket full; broker answer dropped",
		    p->id, (long)p->pid);
		p->blocked = true;
	} else if (r < 0) {
		workers_ctl_failed(s, p, -r);
	}
}
