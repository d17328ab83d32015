/*
 * fdhttp: a command-line client in the manner of curl, built on the
 * client library, that can attach fds to a request and do something useful
 * with the fds of a response: describe them, save their contents, or hand
 * one to a command as its stdin.
 *
 * Exit statuses follow curl --fail, so scripts written for curl read them
 * the same way: 0 for a 2xx (or 3xx) answer, 22 for 4xx and 5xx, 7 when the
 * socket cannot be reached, 28 on a timeout, 2 for a bad command line.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fdhttp/client.h>

extern char **environ;

/* The exit statuses, numbered as curl numbers them. */
enum {
	XS_DONE = -1,		/* parse_args: --help or --version, nothing more to do */
	XS_OK = 0,
	XS_FAIL = 1,		/* anything without a curl counterpart */
	XS_USAGE = 2,
	XS_CONNECT = 7,
	XS_WEIRD_REPLY = 8,	/* malformed or oversized response head, fds not matching X-FD */
	XS_HTTP = 22,		/* 4xx and 5xx */
	XS_WRITE = 23,		/* stdout or a --save-fd file */
	XS_READ = 26,		/* --data-file or a --fd PATH */
	XS_TIMEOUT = 28,
	XS_SEND = 55,
	XS_RECV = 56,
	XS_TOO_BIG = 63,		/* response body over the client's limit */
};

static const char usage_text[] =
"Usage: fdhttp -s SOCKET [OPTIONS] PATH [-- CMD [ARGS...]]\n"
"\n"
"Sends one HTTP/1.1 request to an fdhttp service on a unix socket, with fds\n"
"attached if asked, prints the response body on stdout and describes every\n"
"fd of the response on stderr.\n"
"\n"
"  -s, --socket SOCKET        the service's socket (@NAME: abstract)\n"
"      --abstract             SOCKET names an abstract socket (given without '@')\n"
"  -X, --request METHOD       request method (default GET, or POST with a body)\n"
"  -H, --header 'NAME: VALUE' add a request header (repeatable)\n"
"  -d, --data DATA            request body\n"
"      --data-file FILE       request body read from FILE ('-': stdin)\n"
"      --fd NAME=PATH         send PATH, opened read-only, as fd NAME (repeatable)\n"
"      --fd NAME=&N           send our fd N as fd NAME\n"
"      --fd NAME=-            send our stdin as fd NAME\n"
"      --save-fd NAME=FILE    copy the content of the response's fd NAME to FILE\n"
"                             ('-': stdout) (repeatable)\n"
"      --exec NAME            after a 2xx or 3xx response, run CMD (given after '--')\n"
"                             with the response's fd NAME as its stdin; exit with its\n"
"                             status\n"
"  -i, --include              print the status line and headers before the body\n"
"  -v, --verbose              show the request and response heads on stderr\n"
"      --timeout SECONDS      limit on the whole run from connecting on: the\n"
"                             request, its response and every --save-fd, not\n"
"                             --exec's CMD (fractions allowed; default: none)\n"
"  -h, --help                 print this help and exit\n"
"  -V, --version              print the version and exit\n"
"\n"
"Exit status: 0 for a 2xx or 3xx answer, 22 for 4xx and 5xx, 7 when the\n"
"socket cannot be reached, 28 on a timeout, 2 for a bad command line; 8, 23,\n"
"26, 55, 56, 63 and 1 for the other failures fdhttp(1) lists.\n";

enum {
	OPT_DATA_FILE = 256,
	OPT_FD,
	OPT_SAVE_FD,
	OPT_EXEC,
	OPT_TIMEOUT,
	OPT_ABSTRACT,
};

static const struct option long_options[] = {
	{ "socket", required_argument, NULL, 's' },
	{ "abstract", no_argument, NULL, OPT_ABSTRACT },
	{ "request", required_argument, NULL, 'X' },
	{ "header", required_argument, NULL, 'H' },
	{ "data", required_argument, NULL, 'd' },
	{ "data-file", required_argument, NULL, OPT_DATA_FILE },
	{ "fd", required_argument, NULL, OPT_FD },
	{ "save-fd", required_argument, NULL, OPT_SAVE_FD },
	{ "exec", required_argument, NULL, OPT_EXEC },
	{ "include", no_argument, NULL, 'i' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/* An fd to send: opened here (owned) or one of ours borrowed (&N, -). */
struct send_fd {
	char name[FDH_FD_NAME_MAX + 1];
	int fd;
	bool owned;
};

/* --save-fd NAME=FILE */
struct save_fd {
	char name[FDH_FD_NAME_MAX + 1];
	const char *file;
};

struct opts {
	const char *socket;
	bool abstract;
	const char *method;
	const char *target;
	struct fdh_header *headers;
	char **header_bufs;		/* owned copies the headers point into */
	size_t nheaders;
	const char *data;		/* -d */
	const char *data_file;		/* --data-file */
	struct send_fd *sends;
	size_t nsends;
	struct save_fd *saves;
	size_t nsaves;
	const char *exec_name;
	char **exec_argv;		/* NULL-terminated, from argv */
	bool include;
	bool verbose;
	int timeout_ms;			/* 0: none */
};

static void
errmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
errmsg(const char *fmt, ...)
{
	va_list ap;

	fputs("fdhttp: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void
usage_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
usage_msg(const char *fmt, ...)
{
	char msg[1024];
	const char *p;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Arguments are quoted as given: a control byte in one is shown, not obeyed. */
	fputs("fdhttp: ", stderr);
	for (p = msg; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c < 0x20 || c == 0x7f)
			fprintf(stderr, "\\x%02x", c);
		else
			fputc(c, stderr);
	}
	fputs("\nTry 'fdhttp --help'.\n", stderr);
}

/*
 * Says what is wrong with the command line; evaluates to XS_USAGE.  A macro
 * so that the status is in plain sight at each "return usage_error(...)":
 * static analyzers do not follow variadic functions, and would take the
 * failure for a possible success and its out-parameters for set.
 */
#define usage_error(...) (usage_msg(__VA_ARGS__), XS_USAGE)

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Prints s to f with control characters and non-ASCII escaped: memfd
 * names and paths come from the server, which must not be able to write to
 * the user's terminal through them.
 */
static void
put_escaped(FILE *f, const char *s)
{
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p >= 0x7f || *p == '\\' || *p == '"')
			fprintf(f, "\\x%02x", *p);
		else
			fputc(*p, f);
	}
}

/*
 * Fills a closed stdin, stdout or stderr with /dev/null, opened read-only.
 * Left closed, its number would go to the next open() or socket(): the body
 * would be written into the connection, as bytes of a next request, or our
 * messages into a --fd file.  Writes to it fail, so a closed stdout still
 * gets exit status 23; close-on-exec, so --exec's command finds it closed.
 */
static int
fill_closed_stdio(void)
{
	int fd;

	do {
		fd = open("/dev/null", O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (fd == -1)
			return -errno;
	} while (fd <= STDERR_FILENO);	/* held until exit */
	close(fd);
	return 0;
}

/* --- the command line --------------------------------------------------- */

/* Splits NAME=REST; the name is checked against the X-FD grammar. */
static int
split_named(const char *opt, const char *arg, char name[FDH_FD_NAME_MAX + 1],
    const char **ret_rest)
{
	/*
	 * arg is the optarg of an option that requires one, which getopt_long()
	 * always sets; the analyzer does not know that it writes optarg.
	 */
	/* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
	const char *eq = strchr(arg, '=');
	size_t len;

	if (!eq || eq == arg)
		return usage_error("%s %s: expected NAME=...", opt, arg);
	len = (size_t)(eq - arg);
	if (!fdh_fd_name_valid(arg, len))
		return usage_error("%s %s: an fd name is 1 to %d characters from "
		    "[A-Za-z0-9._-]", opt, arg, FDH_FD_NAME_MAX);
	memcpy(name, arg, len);
	name[len] = '\0';
	*ret_rest = eq + 1;
	return 0;
}

/* RFC 9110's tchar: what a header name is made of. */
static bool
is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int
parse_header(struct opts *o, const char *arg)
{
	const char *colon = strchr(arg, ':');
	size_t nlen, vlen, i;
	const char *v;
	char *buf;

	if (!colon || colon == arg)
		return usage_error("-H %s: expected 'NAME: VALUE'", arg);
	nlen = (size_t)(colon - arg);
	while (nlen > 0 && (arg[nlen - 1] == ' ' || arg[nlen - 1] == '\t'))
		nlen--;
	v = colon + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	vlen = strlen(v);
	while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	/* Said here, of this header: the library would answer -EINVAL for the whole request. */
	for (i = 0; i < nlen; i++)
		if (!is_tchar((unsigned char)arg[i]))
			return usage_error("-H %s: a header name is letters, digits and "
			    "!#$%%&'*+-.^_`|~ only", arg);
	for (i = 0; i < vlen; i++)
		if (((unsigned char)v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f)
			return usage_error("-H %s: a header value cannot hold a line break or "
			    "another control byte (tab aside)", arg);
	buf = malloc(nlen + vlen + 2);
	if (!buf) {
		errmsg("out of memory");
		return XS_FAIL;
	}
	memcpy(buf, arg, nlen);
	buf[nlen] = '\0';
	memcpy(buf + nlen + 1, v, vlen);
	buf[nlen + 1 + vlen] = '\0';
	o->header_bufs[o->nheaders] = buf;
	o->headers[o->nheaders].name = buf;
	o->headers[o->nheaders].value = buf + nlen + 1;
	o->nheaders++;
	/* Said here in words: the library would only answer -EINVAL. */
	if (strcasecmp(buf, "Content-Length") == 0 || strcasecmp(buf, "Transfer-Encoding") == 0 ||
	    strcasecmp(buf, "X-FD") == 0)
		return usage_error("-H %s: fdhttp writes Content-Length and X-FD itself, "
		    "and sends no Transfer-Encoding", arg);
	return 0;
}

/* --fd NAME=PATH | NAME=&N | NAME=- */
static int
parse_send_fd(struct opts *o, const char *arg)
{
	struct send_fd *s = &o->sends[o->nsends];
	const char *spec;
	size_t i;
	int r;

	if ((r = split_named("--fd", arg, s->name, &spec)) != 0)
		return r;
	for (i = 0; i < o->nsends; i++) {
		if (strcmp(o->sends[i].name, s->name) == 0)
			return usage_error("--fd %s: fd %s is already given", arg, s->name);
	}
	if (o->nsends == FDH_MAX_FDS_CEILING)
		return usage_error("--fd %s: at most %d fds go with one request", arg,
		    FDH_MAX_FDS_CEILING);
	s->owned = false;
	if (strcmp(spec, "-") == 0) {
		s->fd = STDIN_FILENO;
	} else if (spec[0] == '&') {
		char *end;
		long n;

		errno = 0;
		n = strtol(spec + 1, &end, 10);
		if (errno != 0 || end == spec + 1 || *end != '\0' || n < 0 || n > INT_MAX)
			return usage_error("--fd %s: expected &N with N an fd number", arg);
		if (fcntl((int)n, F_GETFD) == -1)
			return usage_error("--fd %s: fd %ld is not open", arg, n);
		s->fd = (int)n;
	} else {
		if (spec[0] == '\0')
			return usage_error("--fd %s: expected NAME=PATH, NAME=&N or NAME=-", arg);
		s->fd = open(spec, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (s->fd == -1) {
			errmsg("--fd %s: cannot open %s: %s", arg, spec, strerror(errno));
			return XS_READ;
		}
		s->owned = true;
	}
	o->nsends++;
	return 0;
}

static int
parse_save_fd(struct opts *o, const char *arg)
{
	struct save_fd *s = &o->saves[o->nsaves];
	const char *file;
	int r;

	if ((r = split_named("--save-fd", arg, s->name, &file)) != 0)
		return r;
	if (file[0] == '\0')
		return usage_error("--save-fd %s: expected NAME=FILE", arg);
	s->file = file;
	o->nsaves++;
	return 0;
}

static int
parse_timeout(struct opts *o, const char *arg)
{
	char *end;
	double s;

	errno = 0;
	/* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker): an optarg, as above */
	s = strtod(arg, &end);
	if (errno != 0 || end == arg || *end != '\0' || !isfinite(s) || s < 0 ||
	    s * 1000 > INT_MAX)
		return usage_error("--timeout %s: expected seconds, fractions allowed", arg);
	o->timeout_ms = (int)ceil(s * 1000);
	return 0;
}

static void
opts_free(struct opts *o)
{
	size_t i;

	for (i = 0; i < o->nsends; i++) {
		if (o->sends[i].owned && o->sends[i].fd >= 0)
			close(o->sends[i].fd);
	}
	for (i = 0; i < o->nheaders; i++)
		free(o->header_bufs[i]);
	free(o->header_bufs);
	free(o->headers);
	free(o->sends);
	free(o->saves);
}

/* Returns 0, XS_DONE after --help or --version, or an exit status. */
static int
parse_args(struct opts *o, int argc, char *argv[])
{
	size_t n = (size_t)argc;
	bool saw_target = false;
	int c, r;

	/* Every repeatable option takes one argv element: argc bounds them all. */
	o->headers = calloc(n, sizeof(*o->headers));
	o->header_bufs = calloc(n, sizeof(*o->header_bufs));
	o->sends = calloc(n, sizeof(*o->sends));
	o->saves = calloc(n, sizeof(*o->saves));
	if (!o->headers || !o->header_bufs || !o->sends || !o->saves) {
		errmsg("out of memory");
		return XS_FAIL;
	}

	/*
	 * A leading '-' hands us PATH in place (code 1), so "--" is the only
	 * thing that ends the options: what follows it is --exec's command,
	 * whatever it looks like.
	 */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "-:s:X:H:d:ivhV", long_options, NULL)) != -1) {
		r = 0;
		switch (c) {
		case 1:
			if (saw_target)
				return usage_error("one PATH only (%s, then %s); a command "
				    "for --exec goes after '--'", o->target, optarg);
			o->target = optarg;
			saw_target = true;
			break;
		case 's':
			o->socket = optarg;
			break;
		case OPT_ABSTRACT:
			o->abstract = true;
			break;
		case 'X':
			o->method = optarg;
			break;
		case 'H':
#ifndef __clang__
			/* GCC 12's analyzer loses the copy parse_header() stores in a heap array. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
#endif
			r = parse_header(o, optarg);
#ifndef __clang__
#pragma GCC diagnostic pop
#endif
			break;
		case 'd':
			if (o->data || o->data_file)
				return usage_error("one body only: -d or --data-file, once");
			o->data = optarg;
			break;
		case OPT_DATA_FILE:
			if (o->data || o->data_file)
				return usage_error("one body only: -d or --data-file, once");
			o->data_file = optarg;
			break;
		case OPT_FD:
			r = parse_send_fd(o, optarg);
			break;
		case OPT_SAVE_FD:
			r = parse_save_fd(o, optarg);
			break;
		case OPT_EXEC:
			if (o->exec_name)
				return usage_error("--exec is given once");
			/* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker): see split_named() */
			if (!fdh_fd_name_valid(optarg, strlen(optarg)))
				return usage_error("--exec %s: not an fd name", optarg);
			o->exec_name = optarg;
			break;
		case 'i':
			o->include = true;
			break;
		case 'v':
			o->verbose = true;
			break;
		case OPT_TIMEOUT:
			r = parse_timeout(o, optarg);
			break;
		case 'h':
			fputs(usage_text, stdout);
			return XS_DONE;
		case 'V':
			printf("fdhttp %s\n", FDH_VERSION);
			return XS_DONE;
		case ':':
			return usage_error("%s needs an argument", argv[optind - 1]);
		default:
			if (optopt)
				return usage_error("unknown option -%c", optopt);
			return usage_error("unknown option %s", argv[optind - 1]);
		}
		if (r != 0)
			return r;
	}

	if (!o->socket)
		return usage_error("no socket: give -s SOCKET");
	if (o->socket[0] == '\0')
		return usage_error("-s: the socket name is empty");
	if (!o->target)
		return usage_error("no PATH to request, such as /health");
	if (o->target[0] != '/')
		return usage_error("%s: PATH starts with '/'", o->target);
	if (optind < argc) {
		if (!o->exec_name)
			return usage_error("a command after '--' needs --exec NAME");
		o->exec_argv = argv + optind;
	} else if (o->exec_name) {
		return usage_error("--exec %s: give the command after '--'", o->exec_name);
	}
	if (o->data_file && strcmp(o->data_file, "-") == 0) {
		size_t i;

		for (i = 0; i < o->nsends; i++) {
			if (o->sends[i].fd == STDIN_FILENO)
				return usage_error("stdin cannot be both the body and fd %s",
				    o->sends[i].name);
		}
	}
	if (!o->method)
		o->method = o->data || o->data_file ? "POST" : "GET";
	return 0;
}

/* --- the body ----------------------------------------------------------- */

/* Reads all of fd into a new buffer. */
static int
slurp(int fd, char **ret_buf, size_t *ret_len)
{
	size_t len = 0, cap = 0;
	char *buf = NULL;

	for (;;) {
		ssize_t n;

		if (cap - len < 4096) {
			size_t ncap = cap ? cap * 2 : 65536;
			char *nbuf = realloc(buf, ncap);

			if (!nbuf) {
				free(buf);
				return -ENOMEM;
			}
			buf = nbuf;
			cap = ncap;
		}
		n = read(fd, buf + len, cap - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			int r = -errno;

			free(buf);
			return r;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	*ret_buf = buf;
	*ret_len = len;
	return 0;
}

static int
read_data_file(const char *file, char **ret_buf, size_t *ret_len)
{
	int fd, r;

	if (strcmp(file, "-") == 0)
		return slurp(STDIN_FILENO, ret_buf, ret_len);
	fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd == -1)
		return -errno;
	r = slurp(fd, ret_buf, ret_len);
	close(fd);
	return r;
}

/* --- output ------------------------------------------------------------- */

static int
write_all(int fd, const void *p, size_t len)
{
	const char *s = p;

	while (len > 0) {
		ssize_t n = write(fd, s, len);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -errno;
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The request head as the library writes it (build_head in client.c). */
static void
show_request(const struct opts *o, size_t body_len)
{
	bool has_host = false;
	size_t i;

	fprintf(stderr, "* connected to %s%s\n", o->abstract ? "@" : "", o->socket);
	fprintf(stderr, "> %s %s HTTP/1.1\n", o->method, o->target);
	for (i = 0; i < o->nheaders; i++) {
		if (strcasecmp(o->headers[i].name, "Host") == 0)
			has_host = true;
	}
	if (!has_host)
		fputs("> Host: localhost\n", stderr);
	for (i = 0; i < o->nheaders; i++)
		fprintf(stderr, "> %s: %s\n", o->headers[i].name, o->headers[i].value);
	if (body_len > 0 || (strcmp(o->method, "GET") != 0 && strcmp(o->method, "HEAD") != 0))
		fprintf(stderr, "> Content-Length: %zu\n", body_len);
	if (o->nsends > 0) {
		fputs("> X-FD: ", stderr);
		for (i = 0; i < o->nsends; i++)
			fprintf(stderr, "%s%s", i ? "," : "", o->sends[i].name);
		fputc('\n', stderr);
	}
	fputs(">\n", stderr);
}

static void
show_response(FILE *f, const char *prefix, const char *eol, const struct fdh_client_resp *resp)
{
	size_t i;

	fprintf(f, "%sHTTP/1.%d %d %s%s", prefix, resp->http_minor, resp->status,
	    fdh_status_reason(resp->status), eol);
	for (i = 0; i < resp->nheaders; i++)
		fprintf(f, "%s%s: %s%s", prefix, resp->headers[i].name, resp->headers[i].value, eol);
	fprintf(f, "%s%s", prefix, eol);
}

/*
 * Appends what F_GET_SEALS says, as words: a receiver trusts a sealed memfd
 * not to change.  Only WRITE with SHRINK and GROW (truncating or extending
 * changes the contents too) make it so.  FUTURE_WRITE does not: a shared
 * writable mapping made before it, which the sender may still hold, writes
 * on.  SEAL alone, which a memfd made without MFD_ALLOW_SEALING reports,
 * only forbids adding seals.
 */
static void
describe_seals(int fd)
{
	static const struct { int bit; const char *name; } seals[] = {
		{ F_SEAL_SEAL, "seal" }, { F_SEAL_SHRINK, "shrink" }, { F_SEAL_GROW, "grow" },
		{ F_SEAL_WRITE, "write" }, { F_SEAL_FUTURE_WRITE, "future-write" },
	};
	const int fixed = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW;
	int s = fcntl(fd, F_GET_SEALS);
	const char *sep;
	size_t i;

	if (s < 0)
		return;
	if ((s & fixed) == fixed) {
		sep = ", sealed (";
	} else {
		fputs(", contents can change", stderr);
		if (s == 0)
			return;
		sep = " (seals: ";
	}
	for (i = 0; i < sizeof(seals) / sizeof(seals[0]); i++) {
		if (s & seals[i].bit) {
			fprintf(stderr, "%s%s", sep, seals[i].name);
			sep = " ";
		}
	}
	fputc(')', stderr);
}

/* What the fd may do with its file: O_PATH names it only, O_APPEND writes at the end. */
static const char *
access_mode(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl == -1)
		return "";
	if (fl & O_PATH)
		return ", a path only (O_PATH: no read or write)";
	switch (fl & O_ACCMODE) {
	case O_RDONLY:	return ", read-only";
	case O_WRONLY:	return fl & O_APPEND ? ", write-only, appending" : ", write-only";
	default:	return fl & O_APPEND ? ", read-write, appending" : ", read-write";
	}
}

/*
 * One line on stderr per received fd: its name, what it is (from fstat and
 * the /proc/self/fd link, which is what tells a memfd or an anon inode such
 * as a pidfd apart), and its size where it has one.
 */
static void
describe_fd(const char *name, int fd)
{
	char proc[64], link[PATH_MAX];
	struct stat st;
	ssize_t n;

	fprintf(stderr, "fd %s: ", name);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	n = readlink(proc, link, sizeof(link) - 1);
	link[n < 0 ? 0 : n] = '\0';
	if (fstat(fd, &st) == -1) {
		fprintf(stderr, "fstat failed: %s\n", strerror(errno));
		return;
	}
	switch (st.st_mode & S_IFMT) {
	case S_IFREG:
		if (strncmp(link, "/memfd:", 7) == 0) {
			char *del = strstr(link, " (deleted)");

			if (del)
				*del = '\0';
			fputs("memfd \"", stderr);
			put_escaped(stderr, link + 7);
			fprintf(stderr, "\", %jd bytes", (intmax_t)st.st_size);
			describe_seals(fd);
		} else {
			fputs("regular file \"", stderr);
			put_escaped(stderr, link);
			fprintf(stderr, "\", %jd bytes%s", (intmax_t)st.st_size, access_mode(fd));
		}
		break;
	case S_IFIFO: {
		int avail = 0, acc = fcntl(fd, F_GETFL) & O_ACCMODE;

		/* A FIFO opened O_RDWR is both ends at once. */
		fprintf(stderr, "pipe (%s)", acc == O_WRONLY ? "write end" :
		    acc == O_RDWR ? "read and write ends" : "read end");
		if (ioctl(fd, FIONREAD, &avail) == 0)
			fprintf(stderr, ", %d bytes buffered", avail);
		break;
	}
	case S_IFSOCK: {
		int domain = 0, type = 0;
		socklen_t len = sizeof(domain);

		(void)getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len);
		len = sizeof(type);
		(void)getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
		fprintf(stderr, "%s %s socket",
		    domain == AF_UNIX ? "unix" : domain == AF_INET ? "inet" :
		    domain == AF_INET6 ? "inet6" : "other",
		    type == SOCK_STREAM ? "stream" : type == SOCK_DGRAM ? "datagram" :
		    type == SOCK_SEQPACKET ? "seqpacket" : "other");
		break;
	}
	case S_IFDIR:
		fputs("directory \"", stderr);
		put_escaped(stderr, link);
		fputc('"', stderr);
		break;
	case S_IFCHR:
	case S_IFBLK:
		fprintf(stderr, "%s device \"", S_ISCHR(st.st_mode) ? "character" : "block");
		put_escaped(stderr, link);
		fprintf(stderr, "\"%s", access_mode(fd));
		break;
	default:
		/* Anon inodes (pidfd, eventfd, ...) have no file type: the link names them. */
		if (strncmp(link, "anon_inode:", 11) == 0) {
			char *kind = link + 11;
			size_t klen = strlen(kind);

			if (kind[0] == '[' && klen >= 2 && kind[klen - 1] == ']') {
				kind[klen - 1] = '\0';
				kind++;
			}
			fputs("anon inode ", stderr);
			put_escaped(stderr, kind);
		} else {
			fputs("unknown kind \"", stderr);
			put_escaped(stderr, link);
			fprintf(stderr, "\" (mode 0%o)", (unsigned)st.st_mode);
		}
		break;
	}
	fputc('\n', stderr);
}

/* Waits for fd to be readable; -ETIMEDOUT once deadline (0: none) passes. */
static int
wait_readable(int fd, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int left = -1, r;

	for (;;) {
		if (deadline) {
			int64_t d = deadline - now_ms();

			if (d <= 0)
				return -ETIMEDOUT;
			left = d > INT_MAX ? INT_MAX : (int)d;
		}
		r = poll(&p, 1, left);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		return 0;
	}
}

/*
 * Copies the content of fd into out: the whole of a regular file or memfd
 * (pread from offset 0, leaving its offset alone for a later --exec), or
 * everything up to end-of-file for a pipe or socket, within the deadline.
 * The deadline is checked before every read, not only when one would
 * block: a device such as /dev/zero always has more, at once.
 * Returns 0, -errno of a read in *ret_read_err, or of a write as the result.
 */
static int
copy_fd(int fd, int out, int64_t deadline, int *ret_read_err)
{
	char buf[65536];
	struct stat st;
	bool positional;
	off_t off = 0;
	int r;

	*ret_read_err = 0;
	if (fstat(fd, &st) == -1) {
		*ret_read_err = -errno;
		return 0;
	}
	positional = S_ISREG(st.st_mode) || S_ISBLK(st.st_mode);
	for (;;) {
		ssize_t n;

		/* A clock_gettime() in the vDSO per 64 KiB: nothing beside the copy. */
		if (deadline && now_ms() >= deadline) {
			*ret_read_err = -ETIMEDOUT;
			return 0;
		}
		if (positional) {
			n = pread(fd, buf, sizeof(buf), off);
		} else {
			n = read(fd, buf, sizeof(buf));
			if (n == -1 && errno == EAGAIN) {
				if ((r = wait_readable(fd, deadline)) < 0) {
					*ret_read_err = r;
					return 0;
				}
				continue;
			}
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			*ret_read_err = -errno;
			return 0;
		}
		if (n == 0)
			return 0;
		off += n;
		if ((r = write_all(out, buf, (size_t)n)) < 0)
			return r;
	}
}

/* The fd whose O_NONBLOCK save_fd() set, and its flags before, for a signal to put back. */
static volatile sig_atomic_t lent_fd = -1;
static volatile sig_atomic_t lent_flags;

/* Signals that end the process by default, meanwhile, and what they did before. */
static const int ending_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE };
#define NENDING (sizeof(ending_signals) / sizeof(ending_signals[0]))
static struct sigaction ending_saved[NENDING];
static bool ending_caught[NENDING];

static void
on_ending_signal(int sig)
{
	if (lent_fd >= 0)
		(void)fcntl(lent_fd, F_SETFL, lent_flags);
	/* Then the end the signal would have had, status and all. */
	signal(sig, SIG_DFL);
	raise(sig);
}

/*
 * Sets (on) or takes back O_NONBLOCK on fd, whose flags were fl.  While it
 * is set, a signal that ends the process puts the flags back first: they
 * belong to an open file others may share, a terminal or the caller's own
 * end of a pipe, which would be left non-blocking by a Ctrl-C.
 */
static void
lend_nonblock(int fd, int fl, bool on)
{
	struct sigaction sa;
	size_t i;

	if (on) {
		lent_flags = fl;
		lent_fd = fd;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_ending_signal;
		sigemptyset(&sa.sa_mask);
		/* Only where the default would end us: an ignored SIGPIPE stays ignored. */
		for (i = 0; i < NENDING; i++)
			ending_caught[i] = sigaction(ending_signals[i], NULL, &ending_saved[i]) == 0 &&
			    ending_saved[i].sa_handler == SIG_DFL &&
			    sigaction(ending_signals[i], &sa, NULL) == 0;
		(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
		return;
	}
	(void)fcntl(fd, F_SETFL, fl);
	lent_fd = -1;
	for (i = 0; i < NENDING; i++)
		if (ending_caught[i])
			sigaction(ending_signals[i], &ending_saved[i], NULL);
}

/*
 * A pipe from a server may be blocking: a read would then wait for its
 * writer forever, past --timeout.  Non-blocking reads plus poll keep the
 * deadline; O_NONBLOCK is a status flag of the shared open file, so it is
 * put back afterwards, and on a signal that ends the process.
 */
static int
save_fd(const char *name, int fd, const char *file, int64_t deadline)
{
	int fl, out, r, rerr;

	if (strcmp(file, "-") == 0) {
		out = STDOUT_FILENO;
	} else {
		out = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0666);
		if (out == -1) {
			errmsg("--save-fd %s: cannot create %s: %s", name, file, strerror(errno));
			return XS_WRITE;
		}
	}
	fl = fcntl(fd, F_GETFL);
	if (fl != -1 && !(fl & O_NONBLOCK))
		lend_nonblock(fd, fl, true);
	r = copy_fd(fd, out, deadline, &rerr);
	if (fl != -1 && !(fl & O_NONBLOCK))
		lend_nonblock(fd, fl, false);
	if (out != STDOUT_FILENO && close(out) == -1 && r == 0)
		r = -errno;
	if (rerr == -ETIMEDOUT) {
		errmsg("--save-fd %s: no end of data within the timeout", name);
		return XS_TIMEOUT;
	}
	if (rerr < 0) {
		errmsg("--save-fd %s: cannot read the fd: %s", name, strerror(-rerr));
		return XS_FAIL;
	}
	if (r < 0) {
		errmsg("--save-fd %s: cannot write %s: %s", name, file, strerror(-r));
		return XS_WRITE;
	}
	return XS_OK;
}

/* Runs argv with fd as its stdin and returns its exit status, shell-style. */
static int
run_with_stdin(char **argv, int fd)
{
	posix_spawn_file_actions_t fa;
	int r, status;
	pid_t pid;

	if ((r = posix_spawn_file_actions_init(&fa)) != 0) {
		errmsg("--exec: %s", strerror(r));
		return XS_FAIL;
	}
	/* dup2 onto 0 clears close-on-exec, which the received fd has. */
	r = posix_spawn_file_actions_adddup2(&fa, fd, STDIN_FILENO);
	if (r == 0)
		r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r != 0) {
		errmsg("--exec: cannot run %s: %s", argv[0], strerror(r));
		return r == ENOENT ? 127 : 126;
	}
	while (waitpid(pid, &status, 0) == -1) {
		if (errno != EINTR) {
			errmsg("--exec: waitpid: %s", strerror(errno));
			return XS_FAIL;
		}
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

static int
find_fd(const struct fdh_client_resp *resp, const char *name)
{
	size_t i;

	for (i = 0; i < resp->nfds; i++) {
		if (strcmp(resp->fds[i].name, name) == 0)
			return resp->fds[i].fd;
	}
	return -1;
}

/*
 * Leaves the response's fds open for our exit to close.  The last close()
 * of a TCP socket with SO_LINGER and unsent data waits up to its linger
 * time, which the server chose, past --timeout; an exiting process's close
 * does not linger.
 */
static void
leave_fds_to_exit(struct fdh_client_resp *resp)
{
	size_t i;

	for (i = 0; i < resp->nfds; i++)
		resp->fds[i].fd = -1;
}

/* --- the request -------------------------------------------------------- */

static int
connect_status(int r)
{
	return r == -ETIMEDOUT ? XS_TIMEOUT : r == -EINVAL || r == -ENAMETOOLONG ? XS_USAGE :
	    XS_CONNECT;
}

static int
request_status(int r)
{
	switch (r) {
	case -ETIMEDOUT:	return XS_TIMEOUT;
	case -EINVAL:
	case -EBADF:
	case -E2BIG:		return XS_USAGE;
	case -EPROTO:
	case -EOVERFLOW:	return XS_WEIRD_REPLY;
	case -EMSGSIZE:		return XS_TOO_BIG;
	case -EPIPE:
	case -ETOOMANYREFS:	return XS_SEND;
	default:		return XS_RECV;
	}
}

static const char *
request_error(int r)
{
	switch (r) {
	case -ETIMEDOUT:	return "no complete response within the timeout";
	case -EINVAL:		return "the request cannot be sent as given (method, PATH or a header)";
	case -EPROTO:		return "malformed response, or its fds do not match its X-FD header";
	case -EMFILE:		return "no descriptor free here for the response's fds "
				    "(RLIMIT_NOFILE): some were dropped";
	case -EOVERFLOW:	return "the response head is over 1 MiB or 4096 header fields";
	case -EMSGSIZE:		return "the response body is larger than the client accepts";
	case -ECONNRESET:	return "the server closed the connection without a complete response";
	case -EPIPE:		return "the server closed the connection while the request was sent";
	case -ETOOMANYREFS:	return "the kernel will not pass the fds: this user has as many in "
				    "flight as its RLIMIT_NOFILE (ETOOMANYREFS); nothing was sent";
	default:		return strerror(-r);
	}
}

/* Everything after the response arrived: output, saves (by deadline, 0: none), --exec. */
static int
handle_response(const struct opts *o, struct fdh_client_resp *resp, int64_t deadline)
{
	size_t i;
	int r;

	if (o->verbose)
		show_response(stderr, "< ", "\n", resp);
	if (o->include)
		show_response(stdout, "", "\r\n", resp);
	for (i = 0; i < resp->nfds; i++)
		describe_fd(resp->fds[i].name, resp->fds[i].fd);
	/* The head went through stdio, the body goes around it: flush in between. */
	r = fflush(stdout) == EOF ? -errno : write_all(STDOUT_FILENO, resp->body, resp->body_len);
	if (r < 0) {
		errmsg("cannot write the body to stdout: %s", strerror(-r));
		return XS_WRITE;
	}
	if (resp->status >= 400) {
		errmsg("the server answered %d %s", resp->status, fdh_status_reason(resp->status));
		return XS_HTTP;
	}
	for (i = 0; i < o->nsaves; i++) {
		int fd = find_fd(resp, o->saves[i].name);

		if (fd < 0) {
			errmsg("--save-fd %s: the response has no fd of that name", o->saves[i].name);
			return XS_FAIL;
		}
		if ((r = save_fd(o->saves[i].name, fd, o->saves[i].file, deadline)) != XS_OK)
			return r;
	}
	if (o->exec_name) {
		int fd = find_fd(resp, o->exec_name);

		if (fd < 0) {
			errmsg("--exec %s: the response has no fd of that name", o->exec_name);
			return XS_FAIL;
		}
		return run_with_stdin(o->exec_argv, fd);
	}
	return XS_OK;
}

int
main(int argc, char *argv[])
{
	struct opts o = { 0 };
	struct fdh_named_fd *fds = NULL;
	struct fdh_client *c = NULL;
	struct fdh_client_resp resp;
	struct fdh_client_req req = { 0 };
	char *body = NULL, *path = NULL;
	size_t body_len = 0, i;
	int64_t deadline = 0;	/* of --timeout, from connecting on; 0: none */
	int r, status;

	if ((r = fill_closed_stdio()) < 0) {
		errmsg("cannot open /dev/null: %s", strerror(-r));
		status = XS_FAIL;
		goto done;
	}
	status = parse_args(&o, argc, argv);
	if (status == XS_DONE) {
		status = XS_OK;
		goto done;
	}
	if (status != 0)
		goto done;

	if (o.data_file) {
		if ((r = read_data_file(o.data_file, &body, &body_len)) < 0) {
			errmsg("--data-file %s: %s", o.data_file, strerror(-r));
			status = XS_READ;
			goto done;
		}
	} else if (o.data) {
		body_len = strlen(o.data);
	}

	fds = calloc(o.nsends ? o.nsends : 1, sizeof(*fds));
	if (!fds || asprintf(&path, "%s%s", o.abstract ? "@" : "", o.socket) == -1) {
		path = NULL;
		errmsg("out of memory");
		status = XS_FAIL;
		goto done;
	}
	for (i = 0; i < o.nsends; i++) {
		fds[i].name = o.sends[i].name;
		fds[i].fd = o.sends[i].fd;
	}

	if (o.timeout_ms)
		deadline = now_ms() + o.timeout_ms;
	r = fdh_client_connect(path, o.timeout_ms, &c);
	if (r < 0) {
		errmsg("cannot connect to %s: %s", path,
		    r == -ETIMEDOUT ? "no answer within the timeout" : strerror(-r));
		status = connect_status(r);
		goto done;
	}
	if (o.verbose)
		show_request(&o, body_len);

	req.method = o.method;
	req.target = o.target;
	req.headers = o.headers;
	req.nheaders = o.nheaders;
	req.body = body ? body : o.data;
	req.body_len = body_len;
	req.fds = fds;
	req.nfds = o.nsends;
	/* One --timeout for the whole run, as curl's --max-time: the request gets what is left. */
	r = 0;
	if (deadline) {
		int64_t left = deadline - now_ms();

		r = left > 0 ? fdh_client_set_timeout(c, (int)left) : -ETIMEDOUT;
	}
	if (r == 0)
		r = fdh_client_request(c, &req, &resp);
	/* The request held our fds only on loan; the server has its own now. */
	for (i = 0; i < o.nsends; i++) {
		if (o.sends[i].owned) {
			close(o.sends[i].fd);
			o.sends[i].fd = -1;
		}
	}
	if (r < 0) {
		errmsg("%s %s: %s", o.method, o.target, request_error(r));
		status = request_status(r);
		goto done;
	}
	status = handle_response(&o, &resp, deadline);
	leave_fds_to_exit(&resp);
	fdh_client_resp_release(&resp);
done:
	fdh_client_free(c);
	free(path);
	free(fds);
	free(body);
	opts_free(&o);
	return status;
}
