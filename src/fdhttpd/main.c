/*
 * fdhttpd: owns the listening socket, runs the workers, hands them the
 * connections.  Startup is all-or-nothing: every option and the socket are
 * checked before the first worker starts, and a refusal exits non-zero
 * leaving nothing behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <libutil.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"
#include "closer.h"
#include "log.h"
#include "notify.h"
#include "options.h"
#include "signals.h"
#include "sockfile.h"
#include "spawn.h"
#include "supervisor.h"

/*
 * Keeps fds 0-2 open, on /dev/null if need be, so that no socket we open
 * lands there and gets written to as if it were stderr.
 */
static void
ensure_stdio(void)
{
	int fd;

	for (fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
			continue;
		if (open("/dev/null", O_RDWR) != fd)
			exit(1);
	}
}

/*
 * Writes our pid into the locked pidfile; 0 or -errno.  Not
 * pidfile_write(): on failure it closes the file and leaves the handle
 * unusable, so that the pidfile could be neither removed nor freed.
 */
static int
pidfile_put(struct pidfh *pfh)
{
	char pid[32];
	int fd = pidfile_fileno(pfh), n;

	/*
	 * No newline: pidfile_open() reads a running instance's pid back with
	 * strtol() and takes anything after it for a malformed file.
	 */
	n = snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	if (ftruncate(fd, 0) == -1)
		return -errno;
	errno = 0;
	if (pwrite(fd, pid, (size_t)n, 0) != (ssize_t)n)
		return errno ? -errno : -EIO;	/* short: the disk filled up in between */
	return 0;
}

/*
 * pidfile_open() follows a symbolic link and truncates the file it names:
 * as root, whoever may write in the pidfile's directory could have any file
 * emptied and overwritten, and the link removed at exit.  So anything but
 * a regular file at path is refused before the open (NULL: nothing is
 * there, or a regular file), and after it the file opened must be the one
 * at path still (a link put there in between has emptied its target, but
 * no pid is written into it and no link is removed).
 */
static const char *
pidfile_not_regular(const char *path)
{
	struct stat st;

	if (lstat(path, &st) == -1)
		return errno == ENOENT ? NULL : strerror(errno);
	if (S_ISLNK(st.st_mode))
		return "a symbolic link, which is not followed";
	return S_ISREG(st.st_mode) ? NULL : "not a regular file";
}

static bool
pidfile_is_at(struct pidfh *pfh, const char *path)
{
	struct stat fst, pst;

	return fstat(pidfile_fileno(pfh), &fst) == 0 && lstat(path, &pst) == 0 &&
	    S_ISREG(pst.st_mode) && fst.st_dev == pst.st_dev && fst.st_ino == pst.st_ino;
}

/* What fdhttpd made and must remove as it exits, cleanly or not. */
struct made {
	struct sockfile sock;
	struct pidfh *pfh;	/* NULL: no --pidfile */
};

/*
 * Closes the listening socket, removes its file and lock if we created
 * them (not a socket passed in, nor an abstract one) and the pidfile.
 */
static void
remove_made(void *arg)
{
	struct made *m = arg;

	sockfile_stop(&m->sock, !m->sock.activated);
	sockfile_free(&m->sock);
	if (m->pfh)
		pidfile_remove(m->pfh);
}

/*
 * A socket passed in is its maker's: its path, mode and owner are set
 * there.  Said at start, so that whoever gave them does not take the
 * socket for what they asked.
 */
static void
warn_unused_socket_options(const struct options *o, const struct sockfile *sock)
{
	if (o->socket_path)
		log_warn("--socket %s: not used; socket-activated on %s", o->socket_path,
		    sock->name);
	if (o->mode_set || o->owner_uid != (uid_t)-1 || o->owner_gid != (gid_t)-1)
		log_warn("--mode, --owner: not used; %s was passed in with its own "
		    "(the socket unit's SocketMode=, SocketUser=, SocketGroup=)", sock->name);
}

int
main(int argc, char *argv[])
{
	struct options o;
	struct made made = { .pfh = NULL };
	struct sockfile *sock = &made.sock;
	struct fatal_undo undo;
	pid_t other;
	int r, err, sigfd;

	ensure_stdio();
	/*
	 * First: by their default action SIGTERM, SIGINT and SIGHUP would end
	 * a supervisor still starting; blocked, they wait in the signalfd and
	 * are acted on once the loop runs (a clean stop, or a reload).
	 */
	sigfd = signals_open();
	if (sigfd < 0) {
		fprintf(stderr, "fdhttpd: signals: %s\n", strerror(-sigfd));
		exit(1);
	}
	options_parse(argc, argv, &o);
	fdh_log_setup(o.log_level, "supervisor");
	spawn_raise_nofile();
	/*
	 * Before anything keeps a pointer into the environment: this moves it
	 * to fresh memory, as the title is written over the original one.
	 */
	fdh_title_init(argc, argv);
	notify_init();

	r = sockfile_activated(sock);
	if (r < 0)
		exit(1);
	if (r == 0 && o.socket_path == NULL) {
		fputs("fdhttpd: --socket is required unless socket-activated (see fdhttpd --help)\n",
		    stderr);
		exit(2);
	}
	/*
	 * What clients and workers send is closed there: a lingering socket
	 * among it would otherwise stop this loop, signals and all.
	 */
	err = fdh_closer_start(true, SUP_CLOSER_TITLE);
	if (err < 0)
		fatal("closer: %s", strerror(-err));
	if (o.pidfile) {
		const char *why = pidfile_not_regular(o.pidfile);

		if (why)
			fatal("--pidfile %s: %s; refusing to start", o.pidfile, why);
		made.pfh = pidfile_open(o.pidfile, 0644, &other);
		if (made.pfh == NULL) {
			if (errno == EEXIST)
				fatal("%s: fdhttpd is already running as pid %ld; refusing to start",
				    o.pidfile, (long)other);
			fatal("%s: %s", o.pidfile, strerror(errno));
		}
		if (!pidfile_is_at(made.pfh, o.pidfile)) {
			pidfile_close(made.pfh);
			fatal("--pidfile %s: replaced while it was opened; refusing to start",
			    o.pidfile);
		}
		fcntl(pidfile_fileno(made.pfh), F_SETFD, FD_CLOEXEC);
		/*
		 * Now, before the socket exists: a pidfile that cannot be
		 * written (a full disk) refuses the start with nothing to undo,
		 * rather than leave a server running that no pidfile names.
		 */
		if ((err = pidfile_put(made.pfh)) < 0) {
			pidfile_remove(made.pfh);
			fatal("%s: %s; refusing to start", o.pidfile, strerror(-err));
		}
	}
	if (r == 0 && sockfile_listen(o.socket_path, o.mode, o.owner_uid, o.owner_gid, sock) < 0) {
		if (made.pfh)
			pidfile_remove(made.pfh);
		exit(1);
	}
	r = spawn_setup(&o);
	if (r == 0)
		r = broker_setup(&o);
	if (r < 0) {
		if (r == -ENOMEM || r == -ENOBUFS)	/* the others name what is at fault */
			log_error("preparing workers: %s", strerror(-r));
		remove_made(&made);
		spawn_free();
		exit(1);
	}
	fdh_title_set("fdhttpd: supervisor %s", sock->name);
	log_info("fdhttpd %s on %s%s: %u worker%s of %s, %u connections each", FDH_VERSION,
	    sock->name, sock->activated ? " (socket-activated)" : "", o.workers,
	    o.workers == 1 ? "" : "s", o.service, o.limits.max_conns);
	if (sock->activated)
		warn_unused_socket_options(&o, sock);
	if (o.no_sandbox)
		log_warn("--no-sandbox: workers run without the sandbox; for development only");

	/* From here on a fatal error leaves nothing of ours behind either. */
	fatal_push(&undo, remove_made, &made);
	r = supervisor_run(&o, sock, sigfd);
	fatal_pop(&undo);

	remove_made(&made);
	spawn_free();
	broker_free();
	notify_free();
	close(sigfd);
	log_info("stopped");
	options_free(&o);
	return r;
}
