/*
 * cmocka checks over raw exchanges with a service, shared by the C
 * integration tests.  Each sends, reads or checks one thing and fails the
 * test when it does not hold, printing first what was received so that a
 * failure can be read from the log alone.
 *
 * This is the cmocka side of the test support: harness.h stays free of
 * cmocka because the benchmarks and fuzzers use it too.  A file including
 * this one includes cmocka.h (with its prerequisites) first.
 */
#ifndef FDH_TEST_EXPECT_H
#define FDH_TEST_EXPECT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "harness.h"

/* How long a single exchange may take before a test calls it lost. */
#define FDH_EXPECT_IO_MS	3000

/* Prints p[0..len) (NULL: nothing) with CR, LF and other controls made visible. */
void fdh_expect_print_bytes(const char *what, const char *p, size_t len);

/* A connection to p's socket, timeouts of FDH_EXPECT_IO_MS. */
int fdh_expect_connect(const struct fdh_test_proc *p);

/* Sends all of buf, fds[0..nfds) (borrowed) with its first byte. */
void fdh_expect_send_len(int sock, const void *buf, size_t len, const int *fds, size_t nfds);
/* Likewise with a NUL-terminated string, without and with fds. */
void fdh_expect_send(int sock, const char *s);
void fdh_expect_send_fds(int sock, const char *s, const int *fds, size_t nfds);

/*
 * Reads one whole response into *m within FDH_EXPECT_IO_MS, or within ms;
 * the caller frees it with fdh_test_msg_free().
 */
void fdh_expect_read_resp(int sock, struct fdh_test_msg *m);
void fdh_expect_read_resp_within(int sock, int ms, struct fdh_test_msg *m);

void fdh_expect_status(const struct fdh_test_msg *m, int status);

/* Sends req on sock and reads the response into *m, which must have status. */
void fdh_expect_answer(int sock, const char *req, int status, struct fdh_test_msg *m);

/* Whether header name of m has value, both compared case-insensitively. */
bool fdh_expect_has_header(const struct fdh_test_msg *m, const char *name, const char *value);
bool fdh_expect_has_close(const struct fdh_test_msg *m);

/* m says Connection: close when want, and does not otherwise. */
void fdh_expect_close_header(const struct fdh_test_msg *m, bool want);

/* The server closed: EOF (or a reset) and not one more byte. */
void fdh_expect_closed(int sock);

/* Nothing arrives for ms and the connection stays open. */
void fdh_expect_quiet(int sock, int ms);

/* The framework's own error: a one-line text/plain body. */
void fdh_expect_error_body(const struct fdh_test_msg *m);

/* GET /health on sock answers 200 "ok" and keeps the connection. */
void fdh_expect_health(int sock);

/*
 * The answer to req[0..len), already sent with nfds fds, is status with
 * Connection: close and a one-line text body, and then the connection
 * closes.  The response is left in *m for further checks; the caller
 * frees it.
 */
void fdh_expect_refusal(int sock, const char *req, size_t len, size_t nfds, int status,
    struct fdh_test_msg *m);


#endif
