/* fdhttpd's command line: every option of CONTRACT section 5. */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <math.h>
#include <pwd.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"
#include "limit_range.h"
#include "options.h"

static const char usage_text[] =
"Usage: fdhttpd [OPTIONS] -- SERVICE [SERVICE-ARGS...]\n"
"\n"
"Supervises workers running SERVICE, a libfdhttp service executable, and hands\n"
"each connection accepted on the socket to the least-loaded worker.\n"
"\n"
"  -s, --socket PATH          listening socket (@NAME: abstract); may be left out\n"
"                             when socket-activated (LISTEN_FDS)\n"
"  -w, --workers N            worker processes (default: the number of CPUs)\n"
"  -c, --max-conns N          connections per worker (default 256)\n"
"  -u, --user USER[:GROUP]    workers run as this user; required as root\n"
"  -m, --mode OCTAL           socket file mode (default 0660)\n"
"  -o, --owner USER:GROUP     socket file owner\n"
"      --allow-uid UID        admit only these peer uids (repeatable)\n"
"      --allow-gid GID        admit only these peer gids (repeatable)\n"
"      --max-conns-per-uid N  connections one uid may hold open (default 1024)\n"
"      --max-requests N       recycle each worker after N requests (default: never)\n"
"      --allow-open DIR[:ro|:rw]  directories the broker may open beneath (repeatable)\n"
"      --max-head BYTES       request line and headers (default 8192)\n"
"      --max-headers N        header fields (default 64)\n"
"      --max-body BYTES       request body (default 1048576)\n"
"      --max-fds N            fds per request (default 16)\n"
"      --request-timeout S    time to receive a whole request (default 10)\n"
"      --idle-timeout S       idle keep-alive connection (default 60)\n"
"      --write-timeout S      a response write making no progress (default 10)\n"
"      --pidfile FILE         write the supervisor's pid to FILE\n"
"      --grace S              time workers get to finish at shutdown (default 10)\n"
"      --start-timeout S      time a worker gets to become ready; 0: no limit\n"
"                             (default 60)\n"
"      --log-level LEVEL      debug, info, warn or error (default info)\n"
"      --no-sandbox           run workers without the sandbox (development only)\n"
"  -h, --help                 print this help and exit\n"
"  -V, --version              print the version and exit\n";

enum {
	OPT_ALLOW_UID = 256,
	OPT_ALLOW_GID,
	OPT_MAX_CONNS_PER_UID,
	OPT_MAX_REQUESTS,
	OPT_ALLOW_OPEN,
	OPT_MAX_HEAD,
	OPT_MAX_HEADERS,
	OPT_MAX_BODY,
	OPT_MAX_FDS,
	OPT_REQUEST_TIMEOUT,
	OPT_IDLE_TIMEOUT,
	OPT_WRITE_TIMEOUT,
	OPT_PIDFILE,
	OPT_GRACE,
	OPT_START_TIMEOUT,
	OPT_LOG_LEVEL,
	OPT_NO_SANDBOX,
};

static const struct option long_options[] = {
	{ "socket",		required_argument,	NULL, 's' },
	{ "workers",		required_argument,	NULL, 'w' },
	{ "max-conns",		required_argument,	NULL, 'c' },
	{ "user",		required_argument,	NULL, 'u' },
	{ "mode",		required_argument,	NULL, 'm' },
	{ "owner",		required_argument,	NULL, 'o' },
	{ "allow-uid",		required_argument,	NULL, OPT_ALLOW_UID },
	{ "allow-gid",		required_argument,	NULL, OPT_ALLOW_GID },
	{ "max-conns-per-uid",	required_argument,	NULL, OPT_MAX_CONNS_PER_UID },
	{ "max-requests",	required_argument,	NULL, OPT_MAX_REQUESTS },
	{ "allow-open",		required_argument,	NULL, OPT_ALLOW_OPEN },
	{ "max-head",		required_argument,	NULL, OPT_MAX_HEAD },
	{ "max-headers",	required_argument,	NULL, OPT_MAX_HEADERS },
	{ "max-body",		required_argument,	NULL, OPT_MAX_BODY },
	{ "max-fds",		required_argument,	NULL, OPT_MAX_FDS },
	{ "request-timeout",	required_argument,	NULL, OPT_REQUEST_TIMEOUT },
	{ "idle-timeout",	required_argument,	NULL, OPT_IDLE_TIMEOUT },
	{ "write-timeout",	required_argument,	NULL, OPT_WRITE_TIMEOUT },
	{ "pidfile",		required_argument,	NULL, OPT_PIDFILE },
	{ "grace",		required_argument,	NULL, OPT_GRACE },
	{ "start-timeout",	required_argument,	NULL, OPT_START_TIMEOUT },
	{ "log-level",		required_argument,	NULL, OPT_LOG_LEVEL },
	{ "no-sandbox",		no_argument,		NULL, OPT_NO_SANDBOX },
	{ "help",		no_argument,		NULL, 'h' },
	{ "version",		no_argument,		NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/*
 * "+": stop at the first non-option, SERVICE, even without "--";
 * ":": report a missing value apart from an unknown option.
 */
static const char short_options[] = "+:s:w:c:u:m:o:hV";

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* One line naming what is wrong, exit status 2: nothing has started yet. */
static void
usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("fdhttpd: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see fdhttpd --help)\n", stderr);
	exit(2);
}

static char *
xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL) {
		fputs("fdhttpd: out of memory\n", stderr);
		exit(1);
	}
	return p;
}

static void *
xreallocarray(void *p, size_t n, size_t size)
{
	p = reallocarray(p, n, size);
	if (p == NULL) {
		fputs("fdhttpd: out of memory\n", stderr);
		exit(1);
	}
	return p;
}

/* A decimal number within [min, max], the whole string and nothing else. */
static unsigned long long
parse_number(const char *opt, const char *s, unsigned long long min, unsigned long long max)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9')
		usage_error("%s: '%s' is not a number", opt, s);
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end != '\0')
		usage_error("%s: '%s' is not a number", opt, s);
	if (errno == ERANGE || v < min || v > max)
		usage_error("%s: %s is out of range (%llu to %llu)", opt, s, min, max);
	return v;
}

static unsigned
default_workers(void)
{
	cpu_set_t set;
	long n;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		n = CPU_COUNT(&set);
	else
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	if (n > FDHTTPD_MAX_WORKERS)
		n = FDHTTPD_MAX_WORKERS;
	return (unsigned)n;
}

static bool
parse_id(const char *s, unsigned long *ret)
{
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	*ret = strtoul(s, &end, 10);
	/* (uid_t)-1 means "unchanged" to chown(2) and setresuid(2): never an id. */
	return *end == '\0' && errno == 0 && *ret < (unsigned long)(uid_t)-1;
}

static uid_t
lookup_user(const char *opt, const char *name, const struct passwd **ret_pw)
{
	const struct passwd *pw;
	unsigned long id;

	pw = getpwnam(name);
	if (pw == NULL && parse_id(name, &id))
		pw = getpwuid((uid_t)id);
	if (pw == NULL && !parse_id(name, &id))
		usage_error("%s: no user '%s'", opt, name);
	*ret_pw = pw;
	return pw ? pw->pw_uid : (uid_t)id;
}

static gid_t
lookup_group(const char *opt, const char *name)
{
	const struct group *gr;
	unsigned long id;

	gr = getgrnam(name);
	if (gr != NULL)
		return gr->gr_gid;
	if (!parse_id(name, &id))
		usage_error("%s: no group '%s'", opt, name);
	return (gid_t)id;
}

/* --user USER[:GROUP]: the workers' uid, gid and supplementary groups. */
static void
parse_user(struct options *o, const char *arg)
{
	const struct passwd *pw;
	char *user = xstrdup(arg), *group;
	int n = 0;

	group = strchr(user, ':');
	if (group)
		*group++ = '\0';
	if (*user == '\0' || (group && *group == '\0'))
		usage_error("--user: '%s' is not USER or USER:GROUP", arg);
	o->user_uid = lookup_user("--user", user, &pw);
	if (group)
		o->user_gid = lookup_group("--user", group);
	else if (pw)
		o->user_gid = pw->pw_gid;
	else
		usage_error("--user: uid %s has no passwd entry; name its group too (UID:GID)", user);

	free(o->user_groups);
	o->user_groups = NULL;
	o->user_ngroups = 0;
	if (pw && !group) {
		/* The user's own groups, as a login would give them. */
		getgrouplist(pw->pw_name, o->user_gid, NULL, &n);
		if (n < 1)
			n = 1;
		o->user_groups = xreallocarray(NULL, (size_t)n, sizeof(gid_t));
		if (getgrouplist(pw->pw_name, o->user_gid, o->user_groups, &n) < 0)
			n = 0;
	}
	if (n <= 0) {
		/* Only the one group: an explicit GROUP replaces the user's set. */
		o->user_groups = xreallocarray(o->user_groups, 1, sizeof(gid_t));
		o->user_groups[0] = o->user_gid;
		n = 1;
	}
	o->user_ngroups = (size_t)n;
	free(o->user_name);
	o->user_name = user;	/* kept for the log; owned by o */
	o->have_user = true;
}

/* --owner USER:GROUP, USER or :GROUP. */
static void
parse_owner(struct options *o, const char *arg)
{
	const struct passwd *pw;
	char *copy = xstrdup(arg), *group;

	group = strchr(copy, ':');
	if (group)
		*group++ = '\0';
	if ((*copy == '\0' && (group == NULL || *group == '\0')) || (group && *group == '\0'))
		usage_error("--owner: '%s' is not USER:GROUP, USER or :GROUP", arg);
	o->owner_uid = *copy ? lookup_user("--owner", copy, &pw) : (uid_t)-1;
	o->owner_gid = group ? lookup_group("--owner", group) : (gid_t)-1;
	free(copy);
}

static void
parse_allow_open(struct options *o, const char *arg)
{
	struct allow_open a = { .dir = xstrdup(arg), .rw = false };
	size_t len = strlen(a.dir), i;

	if (len > 3 && strcmp(a.dir + len - 3, ":rw") == 0) {
		a.rw = true;
		a.dir[len - 3] = '\0';
	} else if (len > 3 && strcmp(a.dir + len - 3, ":ro") == 0) {
		a.dir[len - 3] = '\0';
	}
	if (a.dir[0] != '/')
		usage_error("--allow-open: '%s' is not an absolute directory", a.dir);
	/* Trailing slashes go ("/" stays): "/srv/" and "/srv" are one directory. */
	len = strlen(a.dir);
	while (len > 1 && a.dir[len - 1] == '/')
		a.dir[--len] = '\0';
	/* Worker paths must be canonical: another spelling would never match. */
	if (!broker_canonical(a.dir, len == 1 ? 0 : len))
		usage_error("--allow-open %s: not a canonical path (\".\", \"..\" or \"//\" in it)",
		    a.dir);
	for (i = 0; i < o->nallow_open; i++)
		if (strcmp(o->allow_open[i].dir, a.dir) == 0)
			usage_error("--allow-open %s: given twice", a.dir);
	/* Whether it is a directory the broker finds as it opens it (exit 1, not 2). */
	o->allow_open = xreallocarray(o->allow_open, o->nallow_open + 1, sizeof(*o->allow_open));
#ifndef __clang__
	/* GCC 12's analyzer loses a pointer stored at a computed index of a heap array. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
#endif
	o->allow_open[o->nallow_open++] = a;
#ifndef __clang__
#pragma GCC diagnostic pop
#endif
}

static unsigned
parse_seconds_ms(const char *opt, const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end != '\0' || errno != 0 || !isfinite(v) || v < 0 || v > 86400)
		usage_error("%s: '%s' is not a number of seconds (0 to 86400)", opt, s);
	return (unsigned)lround(v * 1000);
}

static void
set_limit(struct options *o, const char *name, const char *value)
{
	int r = fdh_limits_set(&o->limits, name, value);

	if (r < 0)
		usage_error("--%s: '%s' is not a valid value: %s", name, value,
		    fdh_limits_range(name));
}

/* SERVICE as execvp(3) would find it, resolved once so that respawns agree. */
static char *
resolve_service(const char *name)
{
	const char *path, *p;
	struct stat st;
	char buf[PATH_MAX];

	if (strchr(name, '/')) {
		if (stat(name, &st) == -1)
			usage_error("%s: %s", name, strerror(errno));
		if (!S_ISREG(st.st_mode) || access(name, X_OK) == -1)
			usage_error("%s: not an executable file", name);
		return xstrdup(name);
	}
	path = getenv("PATH");
	if (path == NULL || *path == '\0')
		path = "/usr/local/bin:/usr/bin:/bin";
	for (p = path; ; ) {
		const char *colon = strchrnul(p, ':');
		int n = (int)(colon - p);

		if (snprintf(buf, sizeof(buf), "%.*s/%s", n, n ? p : ".", name) < (int)sizeof(buf) &&
		    stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
			return xstrdup(buf);
		if (*colon == '\0')
			break;
		p = colon + 1;
	}
	usage_error("%s: no such executable in PATH", name);
}

void
options_parse(int argc, char **argv, struct options *o)
{
	int c, r, i;

	memset(o, 0, sizeof(*o));
	fdh_limits_default(&o->limits);
	o->workers = default_workers();
	o->mode = FDHTTPD_DEFAULT_MODE;
	o->owner_uid = (uid_t)-1;
	o->owner_gid = (gid_t)-1;
	o->max_conns_per_uid = FDHTTPD_DEFAULT_MAX_CONNS_PER_UID;
	o->grace_ms = FDHTTPD_DEFAULT_GRACE_MS;
	o->start_timeout_ms = FDHTTPD_DEFAULT_START_TIMEOUT_MS;
	o->log_level = FDH_LOG_INFO;

	opterr = 0;	/* our own one-line messages */
	while ((c = getopt_long(argc, argv, short_options, long_options, NULL)) != -1) {
		switch (c) {
		case 's':
			if (*optarg == '\0' || (optarg[0] == '@' && optarg[1] == '\0'))
				usage_error("--socket: empty path");
			free(o->socket_path);	/* the last one given counts */
			o->socket_path = xstrdup(optarg);
			break;
		case 'w':
			o->workers = (unsigned)parse_number("--workers", optarg, 1, FDHTTPD_MAX_WORKERS);
			break;
		case 'c':
			set_limit(o, "max-conns", optarg);
			break;
		case 'u':
			parse_user(o, optarg);
			break;
		case 'm': {
			char *end;
			unsigned long m;

			errno = 0;
			m = strtoul(optarg, &end, 8);
			if (*optarg < '0' || *optarg > '7' || *end != '\0' || errno || m > 0777)
				usage_error("--mode: '%s' is not an octal mode (0 to 0777)", optarg);
			o->mode = (mode_t)m;
			o->mode_set = true;
			break;
		}
		case 'o':
			parse_owner(o, optarg);
			break;
		case OPT_ALLOW_UID:
			o->allow_uids = xreallocarray(o->allow_uids, o->nallow_uids + 1, sizeof(uid_t));
			o->allow_uids[o->nallow_uids++] =
			    (uid_t)parse_number("--allow-uid", optarg, 0, (uid_t)-2);
			break;
		case OPT_ALLOW_GID:
			o->allow_gids = xreallocarray(o->allow_gids, o->nallow_gids + 1, sizeof(gid_t));
			o->allow_gids[o->nallow_gids++] =
			    (gid_t)parse_number("--allow-gid", optarg, 0, (gid_t)-2);
			break;
		case OPT_MAX_CONNS_PER_UID:
			o->max_conns_per_uid =
			    (unsigned)parse_number("--max-conns-per-uid", optarg, 1, UINT_MAX);
			break;
		case OPT_MAX_REQUESTS:
			o->max_requests = parse_number("--max-requests", optarg, 1, ULLONG_MAX);
			break;
		case OPT_ALLOW_OPEN:
			parse_allow_open(o, optarg);
			break;
		case OPT_MAX_HEAD:
			set_limit(o, "max-head", optarg);
			break;
		case OPT_MAX_HEADERS:
			set_limit(o, "max-headers", optarg);
			break;
		case OPT_MAX_BODY:
			set_limit(o, "max-body", optarg);
			break;
		case OPT_MAX_FDS:
			set_limit(o, "max-fds", optarg);
			break;
		case OPT_REQUEST_TIMEOUT:
			set_limit(o, "request-timeout", optarg);
			break;
		case OPT_IDLE_TIMEOUT:
			set_limit(o, "idle-timeout", optarg);
			break;
		case OPT_WRITE_TIMEOUT:
			set_limit(o, "write-timeout", optarg);
			break;
		case OPT_PIDFILE:
			if (*optarg == '\0')
				usage_error("--pidfile: empty path");
			free(o->pidfile);
			o->pidfile = xstrdup(optarg);
			break;
		case OPT_GRACE:
			o->grace_ms = parse_seconds_ms("--grace", optarg);
			break;
		case OPT_START_TIMEOUT:
			o->start_timeout_ms = parse_seconds_ms("--start-timeout", optarg);
			break;
		case OPT_LOG_LEVEL:
			r = fdh_log_level_parse(optarg);
			if (r < 0)
				usage_error("--log-level: '%s' is not debug, info, warn or error", optarg);
			o->log_level = (enum fdh_log_level)r;
			break;
		case OPT_NO_SANDBOX:
			o->no_sandbox = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			exit(0);
		case 'V':
			printf("fdhttpd %s\n", FDH_VERSION);
			exit(0);
		case ':':
			usage_error("option '%s' needs a value", argv[optind - 1]);
		default:
			if (optopt >= 256 || optopt == 'h' || optopt == 'V')
				usage_error("option '%s' takes no value", argv[optind - 1]);
			if (optopt > 0)
				usage_error("unknown option '-%c'", optopt);
			/* getopt_long leaves the long option it refused before optind. */
			usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}

	if (optind >= argc)
		usage_error("no SERVICE to run (fdhttpd [OPTIONS] -- SERVICE [SERVICE-ARGS...])");
	/*
	 * Anyone who can reach the network namespace can connect to an
	 * abstract socket: a mode taken for a restriction would be a false one.
	 */
	if (o->socket_path && o->socket_path[0] == '@' &&
	    (o->mode_set || o->owner_uid != (uid_t)-1 || o->owner_gid != (gid_t)-1))
		usage_error("%s: %s is an abstract socket, which has no file mode or owner "
		    "(admit peers with --allow-uid/--allow-gid)",
		    o->mode_set ? "--mode" : "--owner", o->socket_path);
	if (o->have_user && geteuid() != 0 && o->user_uid != geteuid())
		usage_error("--user: only root can run workers as another user");
	if (o->owner_uid != (uid_t)-1 && geteuid() != 0 && o->owner_uid != geteuid())
		usage_error("--owner: only root can give the socket to another user");
	o->service = resolve_service(argv[optind]);
	/*
	 * A worker faces every client's bytes: as root, a bug in a handler
	 * would be the whole machine's.  Only an explicit choice runs it so.
	 */
	if (geteuid() == 0 && !o->have_user && !o->no_sandbox)
		usage_error("running as root: workers need --user USER[:GROUP] "
		    "(or --no-sandbox, for development only)");
	/* --user root would keep every capability a sandboxed worker should lack. */
	if (o->have_user && o->user_uid == 0 && !o->no_sandbox)
		usage_error("--user %s: workers would run as root; name an unprivileged user "
		    "(or --no-sandbox, for development only)", o->user_name);
	o->service_argv = xreallocarray(NULL, (size_t)argc - (size_t)optind + 1, sizeof(char *));
	for (i = optind; i < argc; i++)
		o->service_argv[i - optind] = xstrdup(argv[i]);
	o->service_argv[argc - optind] = NULL;
}

void
options_free(struct options *o)
{
	size_t i;

	free(o->socket_path);
	free(o->user_name);
	free(o->user_groups);
	free(o->allow_uids);
	free(o->allow_gids);
	for (i = 0; i < o->nallow_open; i++)
		free(o->allow_open[i].dir);
	free(o->allow_open);
	free(o->pidfile);
	free(o->service);
	for (i = 0; o->service_argv && o->service_argv[i]; i++)
		free(o->service_argv[i]);
	free(o->service_argv);
	memset(o, 0, sizeof(*o));
}
