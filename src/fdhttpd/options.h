/* fdhttpd's command line. */
#ifndef FDHTTPD_OPTIONS_H
#define FDHTTPD_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <fdhttp/common.h>
#include "ctl.h"

/* A --allow-open directory (the broker's policy, CONTRACT section 7). */
struct allow_open {
	char *dir;		/* absolute */
	bool rw;		/* ":rw"; read-only otherwise */
};

struct options {
	char *socket_path;		/* "@name" for abstract; NULL when activated */
	unsigned workers;
	struct fdh_limits limits;	/* passed to every worker */

	bool have_user;			/* --user: the workers' credentials */
	char *user_name;
	uid_t user_uid;
	gid_t user_gid;
	gid_t *user_groups;		/* supplementary groups, user_gid included */
	size_t user_ngroups;

	mode_t mode;			/* socket file mode */
	bool mode_set;			/* --mode given, not the default */
	uid_t owner_uid;		/* (uid_t)-1: unchanged */
	gid_t owner_gid;		/* (gid_t)-1: unchanged */

	uid_t *allow_uids;
	size_t nallow_uids;
	gid_t *allow_gids;
	size_t nallow_gids;
	unsigned max_conns_per_uid;
	unsigned long long max_requests;	/* 0: never recycle */
	struct allow_open *allow_open;
	size_t nallow_open;

	char *pidfile;
	unsigned grace_ms;
	unsigned start_timeout_ms;	/* a worker not READY by then is killed */
	enum fdh_log_level log_level;
	bool no_sandbox;

	char *service;			/* SERVICE resolved to a path */
	char **service_argv;		/* SERVICE as given, then SERVICE-ARGS; NULL-ended */
};

#define FDHTTPD_MAX_WORKERS		1024
#define FDHTTPD_DEFAULT_MAX_CONNS_PER_UID	1024
#define FDHTTPD_DEFAULT_GRACE_MS	10000
#define FDHTTPD_DEFAULT_START_TIMEOUT_MS	60000
#define FDHTTPD_DEFAULT_MODE		0660

/*
 * Fills *o from the command line.  --help and --version print and exit 0;
 * anything wrong prints one line naming the option and exits 2, before
 * anything has been started.  The strings of argv are copied: the process
 * title later overwrites them.
 */
void options_parse(int argc, char **argv, struct options *o);
void options_free(struct options *o);

#endif
