/* Input reading, the fd pool and fd accounting for the fuzz targets. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_util.h"

/* The kernel's ceiling on fds in one message (SCM_MAX_FD). */
#define FUZZ_MAX_SEND_FDS 253

uint8_t
fuzz_u8(struct fuzz_in *in)
{
	uint8_t b;

	if (in->n == 0)
		return 0;
	b = in->p[0];
	in->p++;
	in->n--;
	return b;
}

uint16_t
fuzz_u16(struct fuzz_in *in)
{
	uint16_t lo = fuzz_u8(in);

	return (uint16_t)(lo | (uint16_t)(fuzz_u8(in) << 8));
}

size_t
fuzz_take(struct fuzz_in *in, size_t len, const uint8_t **ret_p)
{
	if (len > in->n)
		len = in->n;
	*ret_p = in->p;
	in->p += len;
	in->n -= len;
	return len;
}

int
fuzz_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d) {
		perror("fuzz: /proc/self/fd");
		abort();
	}
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

void
fuzz_check_fds(int base, const char *where)
{
	int n = fuzz_count_fds();

	if (n != base) {
		fprintf(stderr, "fuzz: %d fds open after %s, %d before: %s\n", n, where, base,
		    n > base ? "an fd leaked" : "an fd was closed twice or not ours");
		abort();
	}
}

int
fuzz_pool_fd(unsigned i)
{
	static int pool[FUZZ_POOL];
	static int made;

	if (!made) {
		int p[2];

		pool[0] = memfd_create("fuzz-a", MFD_CLOEXEC);
		pool[1] = memfd_create("fuzz-b", MFD_CLOEXEC);
		if (pool[0] < 0 || pool[1] < 0 || pipe2(p, O_CLOEXEC) == -1 ||
		    write(pool[0], "fuzz", 4) != 4) {
			perror("fuzz: pool");
			abort();
		}
		pool[2] = p[0];
		pool[3] = p[1];
		made = 1;
	}
	return pool[i % FUZZ_POOL];
}

ssize_t
fuzz_send(int sock, const void *buf, size_t len, unsigned nfds, int flags)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * FUZZ_MAX_SEND_FDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = (void *)(uintptr_t)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	unsigned i;
	ssize_t n;

	if (nfds > FUZZ_MAX_SEND_FDS)
		nfds = FUZZ_MAX_SEND_FDS;
	if (nfds > 0) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof(u));
		msg.msg_control = u.b;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&msg);
		if (!cm)
			abort();
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		for (i = 0; i < nfds; i++) {
			int fd = fuzz_pool_fd(i);

			memcpy(CMSG_DATA(cm) + i * sizeof(int), &fd, sizeof(int));
		}
	}
	do
		n = sendmsg(sock, &msg, flags | MSG_NOSIGNAL);
	while (n == -1 && errno == EINTR);
	return n == -1 ? -errno : n;
}

ssize_t
fuzz_drain(int sock)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * FUZZ_MAX_SEND_FDS)];
		struct cmsghdr align;
	} u;
	static char buf[64 * 1024];
	ssize_t total = 0;

	for (;;) {
		struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
		struct msghdr msg = {
			.msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = u.b,
			.msg_controllen = sizeof(u.b),
		};
		struct cmsghdr *cm;
		ssize_t n;

		n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n == -1 && errno == EINTR)
			continue;
		for (cm = n >= 0 ? CMSG_FIRSTHDR(&msg) : NULL; cm; cm = CMSG_NXTHDR(&msg, cm)) {
			size_t i, k;

			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (i = 0; i < k; i++) {
				int fd;

				memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				close(fd);
			}
		}
		if (n == -1)
			return errno == EAGAIN ? total : -1;
		if (n == 0)
			return total > 0 ? total : -1;
		total += n;
	}
}
