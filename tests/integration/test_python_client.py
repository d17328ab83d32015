"""contrib/python/fdhttp.py, the Python client: against fdhttp-echo for what
a service answers, and against scripted servers for what a broken one might
send (fds that do not match X-FD, malformed heads, silence, early closes).

Run by ctest, or by hand:
    FDH_ECHO=build/examples/fdhttp-echo python3 tests/integration/test_python_client.py
"""

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fdhttp_testlib import SOURCE_DIR, Service, echo_path  # noqa: E402

sys.path.insert(0, os.path.join(SOURCE_DIR, "contrib", "python"))
import fdhttp  # noqa: E402

MiB = 1024 * 1024


def open_fds():
    return sorted(int(n) for n in os.listdir("/proc/self/fd"))


def memfd_with(data):
    fd = os.memfd_create("test", os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class EchoTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.service = Service("--idle-timeout", "0.3")

    @classmethod
    def tearDownClass(cls):
        cls.service.stop()

    def setUp(self):
        fds_before = open_fds()
        # Registered first, so it runs last, after every other cleanup:
        # no path of the client may leave a descriptor behind.
        self.addCleanup(lambda: self.assertEqual(open_fds(), fds_before))
        self.conn = fdhttp.Connection(self.service.sock_path, timeout=10)
        self.addCleanup(self.conn.close)

    def pipe(self):
        r, w = os.pipe2(os.O_CLOEXEC)
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        return r, w

    def test_get_and_headers_ignore_case(self):
        resp = self.conn.request("GET", "/health")
        self.assertEqual((resp.status, resp.reason, resp.body), (200, "OK", b"ok"))
        self.assertEqual(resp.version, "HTTP/1.1")
        self.assertEqual(resp.headers["content-length"], "2")
        self.assertEqual(resp.headers["CONTENT-LENGTH"], "2")
        self.assertIn("Content-Length", resp.headers)
        self.assertIsNone(resp.headers.get("x-fd"))
        with self.assertRaises(KeyError):
            resp.headers["x-absent"]
        self.assertEqual(resp.fds, {})

    def test_keep_alive_reuses_the_connection(self):
        self.conn.get("/health")
        fd = self.conn.fileno()
        ino = os.fstat(fd).st_ino
        for _ in range(5):
            self.assertEqual(self.conn.post("/echo", b"again").body, b"again")
        self.assertEqual(os.fstat(self.conn.fileno()).st_ino, ino)

    def test_reconnects_after_the_server_closed(self):
        resp = self.conn.request("GET", "/health", headers={"Connection": "close"})
        self.assertEqual(resp.status, 200)
        self.assertFalse(self.conn.connected)
        self.assertEqual(self.conn.get("/health").body, b"ok")
        # The service's idle timeout (0.3 s) closes the connection: the next
        # request notices before sending and goes on a new one.
        time.sleep(0.6)
        self.assertEqual(self.conn.get("/health").body, b"ok")

    def test_errors_are_responses(self):
        resp = self.conn.get("/nope")
        self.assertEqual((resp.status, resp.body), (404, b"no route for this path\n"))
        resp = self.conn.request("POST", "/health")
        self.assertEqual(resp.status, 405)
        self.assertEqual(resp.headers["allow"], "GET, HEAD")

    def test_head(self):
        resp = self.conn.request("HEAD", "/health")
        self.assertEqual((resp.status, resp.body, resp.headers["content-length"]),
                         (200, b"", "2"))
        self.assertEqual(self.conn.get("/health").body, b"ok")

    def test_large_body(self):
        data = os.urandom(MiB)
        self.assertEqual(self.conn.post("/echo", data).body, data)

    def test_body_over_the_limit_gets_413(self):
        # The service answers before reading the body and closes.
        resp = self.conn.post("/echo", b"x" * (4 * MiB))
        self.assertEqual(resp.status, 413)
        self.assertFalse(self.conn.connected)
        self.assertEqual(self.conn.get("/health").status, 200)

    def test_fds_come_back_by_name(self):
        ra, wa = self.pipe()
        rb, wb = self.pipe()
        with self.conn.request("POST", "/echo", body=b"with fds", fds={"a": wa, "b": wb}) as resp:
            self.assertEqual(resp.body, b"with fds")
            self.assertEqual(list(resp.fds), ["a", "b"])
            for name in ("a", "b"):
                self.assertFalse(os.get_inheritable(resp.fds[name]), "not close-on-exec")
            os.write(resp.fds["a"], b"into a")
            os.write(resp.fds["b"], b"into b")
        self.assertEqual(os.read(ra, 100), b"into a")
        self.assertEqual(os.read(rb, 100), b"into b")

    def test_take_fd_outlives_the_response(self):
        r, w = self.pipe()
        resp = self.conn.request("POST", "/echo", fds={"w": w})
        back = resp.take_fd("w")
        resp.close()
        os.write(back, b"taken")
        os.close(back)
        self.assertEqual(os.read(r, 10), b"taken")
        with self.assertRaises(KeyError):
            resp.take_fd("w")

    def test_close_closes_the_rest_after_a_failed_close(self):
        ra, wa = os.pipe2(os.O_CLOEXEC)
        rb, wb = os.pipe2(os.O_CLOEXEC)
        self.addCleanup(os.close, ra)
        self.addCleanup(os.close, rb)
        resp = self.conn.request("POST", "/echo", fds={"a": wa, "b": wb})
        os.close(wa)
        os.close(wb)
        os.close(resp.fds["a"])         # behind the response's back
        with self.assertRaises(OSError):
            resp.close()
        self.assertEqual(resp.fds, {})
        # b's last write end went with the response: its reader sees the end.
        self.assertEqual(os.read(rb, 10), b"")

    def test_sixteen_fds_and_file_objects(self):
        pipes = [self.pipe() for _ in range(15)]
        fds = {"p%d" % i: w for i, (_, w) in enumerate(pipes)}
        with tempfile.TemporaryFile() as f:
            fds["file"] = f
            with self.conn.post("/echo", fds=fds) as resp:
                self.assertEqual(resp.status, 200)
                self.assertEqual(list(resp.fds), list(fds))

    def test_memfd_response(self):
        with self.conn.post("/fd/memfd", b"sealed") as resp:
            fd = resp.fds["output"]
            self.assertEqual(os.pread(fd, 100, 0), b"sealed")

    def test_fd_read(self):
        fd = memfd_with(b"from a memfd")
        self.addCleanup(os.close, fd)
        resp = self.conn.post("/fd/read", fds={"input": fd})
        self.assertEqual((resp.status, resp.body), (200, b"from a memfd"))

    def test_too_many_fds_is_the_servers_400(self):
        pipes = [self.pipe() for _ in range(17)]
        resp = self.conn.post("/echo", fds={"p%d" % i: w for i, (_, w) in enumerate(pipes)})
        self.assertEqual(resp.status, 400)
        self.assertFalse(self.conn.connected)

    def test_bad_arguments_send_nothing(self):
        _, w = self.pipe()
        for kw in ({"fds": {"bad/name": w}},
                   {"fds": {"": w}},
                   {"headers": {"Content-Length": "3"}},
                   {"headers": {"X-FD": "a"}},
                   {"headers": {"X-Test": "a\r\nInjected: 1"}},
                   {"headers": {"Bad Name": "x"}}):
            with self.assertRaises(ValueError, msg=kw):
                self.conn.request("POST", "/echo", **kw)
        with self.assertRaises(ValueError):
            self.conn.request("GET", "health")
        with self.assertRaises(ValueError):
            self.conn.request("G T", "/health")
        self.assertEqual(self.conn.get("/health").status, 200)

    def test_abstract_socket(self):
        name = "fdh-pyclient-%d" % os.getpid()
        proc = subprocess.Popen([echo_path(), "--socket", "@" + name],
                                stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            conn = fdhttp.Connection(name, abstract=True, timeout=5)
            while True:
                try:
                    conn.connect()
                    break
                except ConnectionRefusedError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            self.assertEqual(conn.get("/health").body, b"ok")
            conn.close()
            with fdhttp.Connection("@" + name) as conn:
                self.assertEqual(conn.get("/health").body, b"ok")
        finally:
            proc.terminate()
            proc.wait(5)

    def test_connect_errors(self):
        conn = fdhttp.Connection(os.path.join(self.service.tmpdir, "absent.sock"))
        with self.assertRaises(FileNotFoundError):
            conn.get("/health")


class CommandLineTests(unittest.TestCase):
    """python3 fdhttp.py SOCKET PATH [BODY], with fdhttp(1)'s exit statuses."""

    @classmethod
    def setUpClass(cls):
        cls.service = Service()

    @classmethod
    def tearDownClass(cls):
        cls.service.stop()

    def run_main(self, *args):
        return subprocess.run([sys.executable, fdhttp.__file__, *args], capture_output=True,
                              text=True, timeout=30)

    def test_statuses(self):
        p = self.run_main(self.service.sock_path, "/echo", "hi")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.startswith("200 OK\n"), p.stdout)
        self.assertIn("\nhi\n", p.stdout)
        p = self.run_main(self.service.sock_path, "/nope")
        self.assertEqual(p.returncode, 22, p.stderr)
        self.assertTrue(p.stdout.startswith("404 "), p.stdout)
        p = self.run_main(self.service.sock_path)
        self.assertEqual(p.returncode, 2)
        self.assertIn("usage: fdhttp.py SOCKET PATH [BODY]", p.stderr)
        p = self.run_main("--help")
        self.assertEqual(p.returncode, 0)
        self.assertIn("Exit status", p.stdout)


class ScriptedServer:
    """Accepts one connection, reads one request, and sends what a test
    scripted: a list of (bytes, [fds]) sendmsg calls, then closes (or not)."""

    def __init__(self, replies, close=True):
        self.tmpdir = tempfile.TemporaryDirectory(prefix="fdh-pyclient-")
        self.path = os.path.join(self.tmpdir.name, "s.sock")
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.path)
        self.srv.listen(1)
        self.replies = replies
        self.close_after = close
        self.conn = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self):
        self.srv.settimeout(10)
        try:
            self.conn, _ = self.srv.accept()
            buf = b""
            while b"\r\n\r\n" not in buf:
                data = self.conn.recv(65536)
                if not data:
                    return
                buf += data
            for data, fds in self.replies:
                if fds:
                    socket.send_fds(self.conn, [data], fds)
                else:
                    self.conn.sendall(data)
            if self.close_after:
                self.conn.close()
            else:
                self.done.wait(10)
        except OSError:
            pass

    def stop(self):
        self.done.set()
        self.thread.join()
        if self.conn:
            self.conn.close()
        self.srv.close()
        self.tmpdir.cleanup()


class BrokenServerTests(unittest.TestCase):
    def setUp(self):
        self.fds_before = open_fds()
        self.pipes = []

    def tearDown(self):
        for fd in self.pipes:
            os.close(fd)
        self.assertEqual(open_fds(), self.fds_before)

    def fds(self, n):
        out = []
        for _ in range(n):
            r, w = os.pipe2(os.O_CLOEXEC)
            self.pipes += [r, w]
            out.append(w)
        return out

    def exchange(self, replies, close=True, **kw):
        srv = ScriptedServer(replies, close)
        try:
            with fdhttp.Connection(srv.path, **kw) as conn:
                return conn.get("/x")
        finally:
            srv.stop()

    def test_253_fds(self):
        fds = self.fds(253)
        names = ",".join("f%d" % i for i in range(253))
        head = ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-FD: %s\r\n\r\n" % names).encode()
        with self.exchange([(head, fds)]) as resp:
            self.assertEqual(len(resp.fds), 253)
            self.assertEqual(list(resp.fds)[252], "f252")
            self.assertEqual(os.fstat(resp.fds["f7"]).st_ino, os.fstat(fds[7]).st_ino)

    def test_fds_split_over_two_sendmsgs(self):
        fds = self.fds(2)
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-FD: a, b\r\n\r\n"
        with self.exchange([(head, fds[:1]), (b"body", fds[1:])]) as resp:
            self.assertEqual((resp.body, list(resp.fds)), (b"body", ["a", "b"]))

    def test_fd_count_mismatch(self):
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-FD: a,b\r\n\r\n"
        with self.assertRaises(fdhttp.FdMismatchError):
            self.exchange([(head, self.fds(1))])

    def test_fds_without_xfd(self):
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        with self.assertRaises(fdhttp.FdMismatchError):
            self.exchange([(head, self.fds(3))])

    def test_xfd_without_fds_and_bad_names(self):
        for xfd in (b"a", b"a,a", b"a b", b""):
            head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-FD: " + xfd + b"\r\n\r\n"
            with self.assertRaises(fdhttp.FdMismatchError, msg=xfd):
                self.exchange([(head, self.fds(2) if xfd != b"a" else [])])

    def test_more_fds_than_max_fds(self):
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-FD: a,b,c,d\r\n\r\n"
        with self.assertRaises(fdhttp.FdMismatchError):
            self.exchange([(head, self.fds(4))], max_fds=2)

    def test_malformed_responses(self):
        cases = [
            b"HTTP/2 200 OK\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            # Latin-1 superscripts: str.isdigit() calls them digits, int() does not.
            b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nxx",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\xb9\r\n\r\nx",
            b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxy",      # a byte past it
        ]
        for reply in cases:
            with self.assertRaises(fdhttp.ProtocolError, msg=reply):
                self.exchange([(reply, self.fds(1))])

    def test_refused_at_once_as_the_c_client_does(self):
        cases = [
            # bare LF: the CRLF CRLF that would end the head never comes
            b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
            b"HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 2\r\n\r\nok",
            # two Content-Lengths, even of one value: a smuggler's tool
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
        ]
        for reply in cases:
            start = time.monotonic()
            with self.assertRaises(fdhttp.ProtocolError, msg=reply):
                self.exchange([(reply, [])], close=False, timeout=5)
            self.assertLess(time.monotonic() - start, 2, reply)

    def test_body_over_max_body(self):
        reply = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
        with self.assertRaises(fdhttp.ResponseTooLarge):
            self.exchange([(reply, [])], max_body=99)

    def test_closed_without_answer(self):
        with self.assertRaises(fdhttp.ConnectionClosed):
            self.exchange([])
        with self.assertRaises(fdhttp.ConnectionClosed):
            self.exchange([(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", self.fds(1))])

    def test_connection_closed_before_its_first_request_is_replaced(self):
        """A connection opened ahead (connect()) and closed by the server
        before it read a byte, as when its worker was killed at the end of
        --grace after a SIGHUP: the client finds it ended before sending,
        and sends the request on a new connection."""
        with tempfile.TemporaryDirectory(prefix="fdh-pyclient-") as tmp:
            path = os.path.join(tmp, "s.sock")
            srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            srv.bind(path)
            srv.listen(2)
            srv.settimeout(10)
            shut = threading.Event()
            seen = []

            def serve():
                first, _ = srv.accept()
                first.shutdown(socket.SHUT_RDWR)    # not a byte read
                shut.set()
                second, _ = srv.accept()
                with first, second:
                    buf = b""
                    while b"\r\n\r\n" not in buf:
                        buf += second.recv(65536)
                    seen.append(buf.split(b"\r\n", 1)[0])
                    second.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            t = threading.Thread(target=serve)
            t.start()
            try:
                with fdhttp.Connection(path, timeout=5) as conn:
                    conn.connect()
                    self.assertTrue(shut.wait(10))
                    resp = conn.get("/again")
                    self.assertEqual((resp.status, resp.body), (200, b"ok"))
            finally:
                t.join(10)
                srv.close()     # before tearDown counts the fds
            self.assertEqual(seen, [b"GET /again HTTP/1.1"])

    def test_timeout(self):
        start = time.monotonic()
        with self.assertRaises(fdhttp.Timeout):
            self.exchange([(b"HTTP/1.1 200 OK\r\n", self.fds(1))], close=False, timeout=0.3)
        self.assertLess(time.monotonic() - start, 5)

    def test_connect_waits_for_a_full_backlog_within_the_timeout(self):
        tmp = tempfile.mkdtemp(prefix="fdh-pyclient-")
        path = os.path.join(tmp, "s.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            srv.bind(path)
            srv.listen(0)           # room for one pending connection, never accepted
            filler.connect(path)
            start = time.monotonic()
            with self.assertRaises(fdhttp.Timeout):
                fdhttp.Connection(path, timeout=0.3).get("/x")
            elapsed = time.monotonic() - start
            self.assertGreater(elapsed, 0.2)
            self.assertLess(elapsed, 5)
        finally:
            filler.close()
            srv.close()
            os.unlink(path)
            os.rmdir(tmp)

    def test_body_to_eof_and_100_continue(self):
        reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nuntil the end"
        resp = self.exchange([(reply, [])])
        self.assertEqual((resp.version, resp.status, resp.body), ("HTTP/1.0", 200, b"until the end"))


if __name__ == "__main__":
    unittest.main()
