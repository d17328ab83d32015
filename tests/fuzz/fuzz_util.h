/*
 * What the fuzz targets share: reading their input a field at a time, a
 * small pool of real fds to attach to what they send, and the process's fd
 * count, which must be the same after every input as before it: an fd that
 * a path forgot to close is a finding like a crash.
 */
#ifndef FDH_FUZZ_UTIL_H
#define FDH_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* libFuzzer's entry point, declared for -Wmissing-prototypes. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input not consumed yet. */
struct fuzz_in {
	const uint8_t *p;
	size_t n;
};

/* The next byte, or 0 once the input is used up. */
uint8_t fuzz_u8(struct fuzz_in *in);
/* The next two bytes, little-endian, or what is left of them. */
uint16_t fuzz_u16(struct fuzz_in *in);
/* Up to len next bytes: *ret_p points at them, the count is returned. */
size_t fuzz_take(struct fuzz_in *in, size_t len, const uint8_t **ret_p);

/* Open fds of this process: the entries of /proc/self/fd. */
int fuzz_count_fds(void);
/* abort()s, saying where, when the count is not base. */
void fuzz_check_fds(int base, const char *where);

/*
 * Fds to attach: memfds with a few bytes and both ends of a pipe, opened
 * once and kept for the life of the process.
 */
#define FUZZ_POOL 4
int fuzz_pool_fd(unsigned i);

/*
 * One sendmsg() of buf[0..len) with nfds fds of the pool attached
 * (pool[i % FUZZ_POOL], a same fd may go more than once), flags |
 * MSG_NOSIGNAL.  Returns the byte count or -errno.
 */
ssize_t fuzz_send(int sock, const void *buf, size_t len, unsigned nfds, int flags);

/*
 * Reads whatever sock has queued without waiting, closing every fd that
 * comes with it.  Returns the byte count, -1 at end of stream or on error.
 */
ssize_t fuzz_drain(int sock);

#endif
