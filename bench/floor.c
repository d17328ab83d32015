/*
 * floor: the least a request over a Unix socket can cost.  Two processes
 * on a socketpair ping-pong 4 bytes, with or without an fd; no HTTP, no
 * poll(), nothing but the kernel's round trip.  The figures fdhttp and
 * nginx are held against.
 */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

static const char usage[] =
    "usage: floor [OPTIONS]\n"
    "\n"
    "Two processes ping-pong 4 bytes over a socketpair; prints the same figures as\n"
    "ping_pong.  Run it under taskset like the others; --server-cpu then moves the\n"
    "answering process to another CPU.\n"
    "\n"
    "  -n, --iters N         timed round trips (default 200000)\n"
    "      --warmup N        round trips before timing (default 20000)\n"
    "      --fd              send a memfd with each ping; the other side closes it\n"
    "      --server-cpu N    pin the answering process to CPU N\n"
    "  -h, --help            this text\n";

/* Reads exactly len bytes, closing any fd that came with them; 0 at EOF. */
static ssize_t
recv_all(int s, char *buf, size_t len)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * 4)];
	} cm;
	size_t off = 0;

	while (off < len) {
		struct iovec iov = { .iov_base = buf + off, .iov_len = len - off };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
		    .msg_controllen = sizeof(cm.buf) };
		struct cmsghdr *c;
		ssize_t n = recvmsg(s, &m, MSG_CMSG_CLOEXEC);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return n;
		for (c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
				size_t i, nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

				for (i = 0; i < nfd; i++) {
					int fd;

					memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
					close(fd);
				}
			}
		}
		off += (size_t)n;
	}
	return (ssize_t)off;
}

static void __attribute__((noreturn))
serve(int s, long cpu)
{
	char buf[4];

	if (cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET((size_t)cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set) == -1) {
			fprintf(stderr, "floor: --server-cpu %ld: %s\n", cpu, strerror(errno));
			_exit(1);
		}
	}
	for (;;) {
		ssize_t n = recv_all(s, buf, sizeof(buf));

		if (n == 0)
			_exit(0);
		if (n < 0 || bench_send(s, "pong", 4, -1) < 0)
			_exit(1);
	}
}

int
main(int argc, char *argv[])
{
	static const struct option lopts[] = {
		{ "iters", required_argument, NULL, 'n' },
		{ "warmup", required_argument, NULL, 'W' },
		{ "fd", no_argument, NULL, 'f' },
		{ "server-cpu", required_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	unsigned long iters = 200000, warmup = 20000, i;
	struct bench_stats st;
	uint64_t *lat = NULL, t_start = 0, t_end;
	long cpu = -1;
	bool with_fd = false;
	int sv[2] = { -1, -1 }, memfd = -1, c, status, ret = 1;
	pid_t pid = -1;

	while ((c = getopt_long(argc, argv, "n:h", lopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			iters = bench_uint("--iters", optarg, 1, 1000000000);
			break;
		case 'W':
			warmup = bench_uint("--warmup", optarg, 0, 1000000000);
			break;
		case 'f':
			with_fd = true;
			break;
		case 'C':
			cpu = (long)bench_uint("--server-cpu", optarg, 0, CPU_SETSIZE - 1);
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	lat = calloc(iters, sizeof(*lat));
	if (!lat) {
		fprintf(stderr, "floor: out of memory\n");
		goto out;
	}
	if (with_fd) {
		memfd = bench_memfd();
		if (memfd < 0) {
			fprintf(stderr, "floor: memfd: %s\n", strerror(-memfd));
			goto out;
		}
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		perror("floor: socketpair");
		goto out;
	}
	pid = fork();
	if (pid == -1) {
		perror("floor: fork");
		goto out;
	}
	if (pid == 0) {
		/* A session of its own, as bench/compare starts every server. */
		(void)setsid();
		close(sv[0]);
		if (memfd >= 0)
			close(memfd);
		serve(sv[1], cpu);
	}
	close(sv[1]);
	sv[1] = -1;

	printf("floor: two processes, a socketpair, 4 bytes each way%s; %lu round trips after "
	    "%lu warm-up\n", with_fd ? ", a memfd with each ping" : "", iters, warmup);
	for (i = 0; i < warmup + iters; i++) {
		char buf[4];
		uint64_t t0, t1;
		ssize_t n;
		int r;

		if (i == warmup)
			t_start = bench_now_ns();
		t0 = bench_now_ns();
		r = bench_send(sv[0], "ping", 4, memfd);
		n = r < 0 ? -1 : recv_all(sv[0], buf, sizeof(buf));
		t1 = bench_now_ns();
		if (n != 4 || memcmp(buf, "pong", 4) != 0) {
			fprintf(stderr, "floor: round trip %lu failed\n", i);
			goto out;
		}
		if (i >= warmup)
			lat[i - warmup] = t1 - t0;
	}
	t_end = bench_now_ns();

	bench_stats(lat, iters, (double)(t_end - t_start) / 1e9, &st);
	bench_print_stats(&st);
	printf("result min=%.2f p50=%.2f p90=%.2f p99=%.2f p999=%.2f max=%.2f rps=%.0f\n", st.min,
	    st.p50, st.p90, st.p99, st.p999, st.max, st.rps);
	ret = 0;
out:
	/* The other side sees EOF and exits. */
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	if (pid > 0)
		(void)waitpid(pid, &status, 0);
	if (memfd >= 0)
		close(memfd);
	free(lat);
	return ret;
}
