"""fdhttp-echo driven from Python with socket.send_fds / socket.recv_fds.

Run by ctest (FDH_ECHO names the executable), or by hand:
    FDH_ECHO=build/examples/fdhttp-echo python3 tests/integration/test_python_fds.py
"""

import fcntl
import os
import sys
import tempfile
import threading
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fdhttp_testlib import (Conn, Service, build_request,  # noqa: E402
                            settled_fd_count, wait_for)

MiB = 1024 * 1024


def memfd_with(data):
    fd = os.memfd_create("fdh-test", os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class EchoFdTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.service = Service()

    @classmethod
    def tearDownClass(cls):
        cls.service.stop()

    def setUp(self):
        self.conn = Conn(self.service.connect())
        self.addCleanup(self.conn.close)

    def pipe(self):
        r, w = os.pipe2(os.O_CLOEXEC)
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        return r, w

    def keep(self, resp):
        self.addCleanup(resp.close_fds)
        return resp

    def test_echo_returns_the_same_pipes_by_name_and_order(self):
        ra, wa = self.pipe()
        rb, wb = self.pipe()
        resp = self.keep(self.conn.request("POST", "/echo", b"with fds",
                                           fds=[wa, wb], xfd="a,b"))
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.body, b"with fds")
        self.assertEqual([n.strip() for n in resp.header("x-fd").split(",")], ["a", "b"])
        self.assertEqual(sorted(resp.fds), ["a", "b"])
        # Same pipes: what goes into the returned write ends comes out of our read ends.
        os.write(resp.fds["a"], b"into a")
        os.write(resp.fds["b"], b"into b")
        self.assertEqual(os.read(ra, 100), b"into a")
        self.assertEqual(os.read(rb, 100), b"into b")
        self.assertEqual(os.fstat(resp.fds["a"]).st_ino, os.fstat(wa).st_ino)
        self.assertEqual(os.fstat(resp.fds["b"]).st_ino, os.fstat(wb).st_ino)
        self.assertFalse(resp.closes)

    def test_echo_names_with_spaces_around_commas_and_full_length(self):
        long_name = "A-z0.9_" * 9 + "x"           # 64 characters
        self.assertEqual(len(long_name), 64)
        _, w1 = self.pipe()
        _, w2 = self.pipe()
        resp = self.keep(self.conn.request("POST", "/echo", fds=[w1, w2],
                                           xfd="first ,  " + long_name))
        self.assertEqual(resp.status, 200)
        self.assertEqual(sorted(resp.fds), sorted(["first", long_name]))

    def test_echo_without_fds(self):
        resp = self.conn.request("POST", "/echo", b"plain")
        self.assertEqual((resp.status, resp.body, resp.fds), (200, b"plain", {}))
        self.assertIsNone(resp.header("x-fd"))

    def test_fds_may_ride_on_a_later_sendmsg_of_the_request(self):
        r, w = self.pipe()
        head = build_request("POST", "/echo", b"late", xfd="late")
        body_at = head.index(b"\r\n\r\n") + 4
        self.conn.send(head[:body_at])
        time.sleep(0.05)
        self.conn.send(head[body_at:], fds=[w])
        resp = self.keep(self.conn.read_response())
        self.assertEqual((resp.status, resp.body), (200, b"late"))
        os.write(resp.fds["late"], b"!")
        self.assertEqual(os.read(r, 10), b"!")

    def test_fd_read_from_memfd(self):
        data = os.urandom(100000)
        fd = memfd_with(data)
        self.addCleanup(os.close, fd)
        resp = self.conn.request("POST", "/fd/read", fds=[fd], xfd="input")
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.body, data)

    def test_fd_read_from_pipe(self):
        r, w = os.pipe2(os.O_CLOEXEC)
        self.addCleanup(os.close, r)
        os.write(w, b"through a pipe")
        os.close(w)
        resp = self.conn.request("POST", "/fd/read", fds=[r], xfd="input")
        self.assertEqual((resp.status, resp.body), (200, b"through a pipe"))

    def test_fd_read_of_a_file_whose_reads_wait_is_bounded(self):
        """Regression: a regular file was read plainly, as if on a disk, and
        tracefs's trace_pipe (or a file on FUSE) waits for as long as it
        likes: the worker answered nothing, on any connection.  Files on
        other filesystems than disks and memory are read without waiting,
        within the 5 s bound."""
        path = "/sys/kernel/tracing/trace_pipe"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            self.skipTest("%s: %s" % (path, e.strerror))
        self.addCleanup(os.close, fd)
        start = time.monotonic()
        resp = self.conn.request("POST", "/fd/read", fds=[fd], xfd="input")
        self.assertIn(resp.status, (400, 504), resp.body)
        self.assertLess(time.monotonic() - start, 8)
        self.assertEqual(self.conn.request("GET", "/health").status, 200)

    def test_fd_read_of_a_directory_says_so(self):
        fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.addCleanup(os.close, fd)
        resp = self.conn.request("POST", "/fd/read", fds=[fd], xfd="input")
        self.assertEqual((resp.status, resp.body), (400, b"fd input is a directory\n"))

    def test_fd_read_from_a_file_on_disk(self):
        with tempfile.NamedTemporaryFile() as f:
            f.write(b"on disk")
            f.flush()
            fd = os.open(f.name, os.O_RDONLY | os.O_CLOEXEC)
            self.addCleanup(os.close, fd)
            resp = self.conn.request("POST", "/fd/read", fds=[fd], xfd="input")
        self.assertEqual((resp.status, resp.body), (200, b"on disk"))

    def test_fd_read_of_a_trickling_writer_times_out_as_a_whole(self):
        """The handler's 5 s bound the whole read: a writer that sends a byte
        every half second cannot hold the worker (one handler at a time)."""
        r, w = os.pipe2(os.O_CLOEXEC)
        self.addCleanup(os.close, r)
        stop = threading.Event()

        def trickle():
            try:
                while not stop.wait(0.5):
                    os.write(w, b".")
            finally:
                os.close(w)
        t = threading.Thread(target=trickle)
        t.start()
        try:
            start = time.monotonic()
            resp = self.conn.request("POST", "/fd/read", fds=[r], xfd="input")
            took = time.monotonic() - start
        finally:
            stop.set()
            t.join()
        self.assertEqual(resp.status, 504, resp.body)
        self.assertLess(took, 8)

    def test_fd_read_keeps_its_bound_when_the_client_reads_the_pipe_too(self):
        """The client keeps its copy of the pipe and takes back each byte it
        writes: the handler, woken for a byte, may find it gone.  A read that
        then waited would hold the worker until the client's next write, past
        the 5 s bound, every other connection of the worker waiting too."""
        r, w = os.pipe2(os.O_CLOEXEC)
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        self.conn.send(build_request("POST", "/fd/read", fds=[r], xfd="input"), [r])
        start = time.monotonic()
        buf = bytearray(1)

        def in_read():
            # The handler sitting in read(2), syscall 0, is the fault itself.
            try:
                with open("/proc/%d/syscall" % self.service.pid) as f:
                    return f.read().split()[0] == "0"
            except OSError:
                return False

        while time.monotonic() - start < 1.5:
            os.write(w, b"x")
            try:
                os.preadv(r, [buf], -1, os.RWF_NOWAIT)
            except BlockingIOError:
                pass        # the handler had it first
            if in_read():
                time.sleep(0.05)
                if in_read():
                    break
        self.conn.sock.settimeout(10)
        resp = self.conn.read_response()
        took = time.monotonic() - start
        self.assertEqual(resp.status, 504, resp.body)
        self.assertLess(took, 8)

    def test_fd_read_over_the_body_limit(self):
        fd = memfd_with(b"x" * (MiB + 1))
        self.addCleanup(os.close, fd)
        resp = self.conn.request("POST", "/fd/read", fds=[fd], xfd="input")
        self.assertEqual(resp.status, 413)

    def test_fd_read_without_input(self):
        resp = self.conn.request("POST", "/fd/read")
        self.assertEqual(resp.status, 400)
        fd = memfd_with(b"named wrong")
        self.addCleanup(os.close, fd)
        conn = Conn(self.service.connect())
        self.addCleanup(conn.close)
        resp = conn.request("POST", "/fd/read", fds=[fd], xfd="other")
        self.assertEqual(resp.status, 400)

    def test_fd_memfd_returns_a_sealed_memfd(self):
        payload = b"sealed payload \x00\xff" * 100
        resp = self.keep(self.conn.request("POST", "/fd/memfd", payload))
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.body, b"")
        self.assertEqual(list(resp.fds), ["output"])
        fd = resp.fds["output"]
        self.assertTrue(os.readlink("/proc/self/fd/%d" % fd).startswith("/memfd:"))
        self.assertEqual(os.fstat(fd).st_size, len(payload))
        self.assertEqual(os.pread(fd, len(payload) + 1, 0), payload)
        self.assertNotEqual(fcntl.fcntl(fd, fcntl.F_GET_SEALS), 0)

    def test_keep_alive_over_many_requests(self):
        for i in range(300):
            kind = i % 3
            if kind == 0:
                resp = self.conn.request("GET", "/health")
                self.assertEqual((resp.status, resp.body), (200, b"ok"))
            elif kind == 1:
                body = b"request %d" % i
                resp = self.conn.request("POST", "/echo", body)
                self.assertEqual((resp.status, resp.body), (200, body))
            else:
                r, w = os.pipe2(os.O_CLOEXEC)
                try:
                    resp = self.conn.request("POST", "/echo", fds=[w], xfd="w")
                finally:
                    os.close(w)
                try:
                    self.assertEqual(resp.status, 200)
                    os.write(resp.fds["w"], b"%d" % i)
                    self.assertEqual(os.read(r, 20), b"%d" % i)
                finally:
                    resp.close_fds()
                    os.close(r)
            self.assertFalse(resp.closes, "request %d closed the connection" % i)
        self.assertEqual(self.conn.buf, b"")

    def test_head_and_fds_of_two_requests_in_one_read(self):
        # One read returning fds with bytes of two requests: the fds cannot be
        # paired with a request, so the server answers 400 and closes.
        _, w = self.pipe()
        two = (build_request("POST", "/echo", b"1", xfd="a") +
               build_request("POST", "/echo", b"2"))
        self.conn.send(two, fds=[w])
        resp = self.conn.read_response()
        self.assertEqual(resp.status, 400)
        self.assertTrue(resp.closes)
        self.assertEqual(resp.fds, {})
        self.conn.expect_closed()

    def test_surplus_bytes_get_connection_close(self):
        two = build_request("GET", "/health") + build_request("GET", "/health")
        self.conn.send(two)
        resp = self.conn.read_response()
        self.assertEqual((resp.status, resp.body), (200, b"ok"))
        self.assertTrue(resp.closes)
        self.conn.expect_closed()


# Requests a hostile or broken client sends with fds.  Each gets 400 and the
# connection closes; the ones marked None get no answer (the client is gone).
def _mismatch_more_names(conn, fds):
    conn.send(build_request("POST", "/echo", xfd="a,b"), fds[:1])
    return 400


def _mismatch_more_fds(conn, fds):
    conn.send(build_request("POST", "/echo", xfd="a"), fds[:2])
    return 400


def _bad_name(conn, fds):
    conn.send(build_request("POST", "/echo", xfd="no/slash"), fds[:1])
    return 400


def _empty_name(conn, fds):
    conn.send(build_request("POST", "/echo", xfd="a,,b"), fds[:2])
    return 400


def _long_name(conn, fds):
    conn.send(build_request("POST", "/echo", xfd="n" * 65), fds[:1])
    return 400


def _repeated_name(conn, fds):
    conn.send(build_request("POST", "/echo", xfd="a, a"), fds[:2])
    return 400


def _fds_without_xfd(conn, fds):
    conn.send(build_request("POST", "/echo", b"body"), fds[:2])
    return 400


def _xfd_without_fds(conn, fds):
    conn.send(build_request("POST", "/echo", xfd="a"))
    return 400


def _too_many_fds(conn, fds):
    many = (fds * 9)[:17]   # over the default limit of 16: MSG_CTRUNC
    conn.send(build_request("POST", "/echo", xfd=",".join("f%d" % i for i in range(17))),
              many)
    return 400


def _two_requests_one_read(conn, fds):
    conn.send(build_request("POST", "/echo", xfd="a") + build_request("GET", "/health"),
              fds[:1])
    return 400


def _gone_mid_body(conn, fds):
    req = build_request("POST", "/echo", b"x" * 1000, xfd="a,b")
    conn.send(req[:-900], fds[:2])
    return None


def _gone_mid_head(conn, fds):
    conn.send(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nX-FD: a\r\n", fds[:1])
    return None


def _good_echo(conn, fds):
    conn.send(build_request("POST", "/echo", b"fine", xfd="a,b"), fds[:2])
    return 200


def _good_read(conn, fds):
    fd = memfd_with(b"data")
    try:
        conn.send(build_request("POST", "/fd/read", xfd="input"), [fd])
    finally:
        os.close(fd)
    return 200


HOSTILE = [_mismatch_more_names, _mismatch_more_fds, _bad_name, _empty_name, _long_name,
           _repeated_name, _fds_without_xfd, _xfd_without_fds, _too_many_fds,
           _two_requests_one_read, _gone_mid_body, _gone_mid_head, _good_echo, _good_read]


class FdLeakTests(unittest.TestCase):
    """The service's own fd count is the same before and after abuse."""

    @classmethod
    def setUpClass(cls):
        cls.service = Service()

    @classmethod
    def tearDownClass(cls):
        cls.service.stop()

    def test_no_fd_leaks_after_hostile_requests(self):
        before = settled_fd_count(self.service)
        mine_before = len(os.listdir("/proc/self/fd"))
        answered = {}
        for i in range(200):
            case = HOSTILE[i % len(HOSTILE)]
            conn = Conn(self.service.connect())
            r, w = os.pipe2(os.O_CLOEXEC)
            try:
                expected = case(conn, [r, w])
                if expected is not None:
                    resp = conn.read_response()
                    resp.close_fds()
                    self.assertEqual(resp.status, expected, case.__name__)
                    if expected == 400:
                        self.assertTrue(resp.closes, case.__name__)
                        conn.expect_closed()
                    answered[case.__name__] = resp.status
            finally:
                conn.close()
                os.close(r)
                os.close(w)
        self.assertEqual(len(answered), len(HOSTILE) - 2)
        # The server may notice the last disconnects a moment after we leave.
        wait_for(lambda: self.service.fd_count() == before, timeout=5)
        after = self.service.fd_count()
        self.assertEqual(after, before, "service fds: %d before, %d after" % (before, after))
        self.assertEqual(len(os.listdir("/proc/self/fd")), mine_before)
        self.assertIsNone(self.service.proc.poll(), "the service died")


if __name__ == "__main__":
    unittest.main(verbosity=2)
