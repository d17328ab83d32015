"""The fdhttp command-line client against fdhttp-echo: bodies, headers, fds
sent (NAME=PATH, NAME=&N, NAME=-) and received (described, saved, handed
to a command), and curl --fail exit statuses.

Run by ctest (FDH_CLI names the executable), or by hand:
    FDH_CLI=build/src/cli/fdhttp FDH_ECHO=build/examples/fdhttp-echo \
        python3 tests/integration/test_cli.py
"""

import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fdhttp_testlib import SOURCE_DIR, Service, echo_path, wait_for  # noqa: E402
from test_broker import FILL, low_limit, unprivileged  # noqa: E402
from test_closer import LINGER_S, lingering_tcp  # noqa: E402

TIMEOUT = 20


def cli_path():
    path = os.environ.get("FDH_CLI")
    if not path:
        build = os.environ.get("FDH_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
        path = os.path.join(build, "src", "cli", "fdhttp")
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest("fdhttp not built at %s; set FDH_CLI" % path)
    return path


def read_head(conn):
    """The request head and whatever came after it."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            break
        buf += data
    return buf


class OneConnection:
    """A socket whose first connection goes to serve(conn) in a thread: for
    answers fdhttp-echo never gives.  A client that hangs up early is no
    error of the server's."""

    def __init__(self, path, serve):
        self.path = path
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(1)
        self.serve = serve
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self):
        self.srv.settimeout(TIMEOUT)
        try:
            conn, _ = self.srv.accept()
        except OSError:
            return
        with conn:
            try:
                self.serve(conn)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.thread.join(TIMEOUT)
        self.srv.close()
        os.unlink(self.path)


class CliTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cli = cli_path()
        cls.service = Service()
        cls.tmp = tempfile.TemporaryDirectory(prefix="fdh-cli-")

    @classmethod
    def tearDownClass(cls):
        cls.service.stop()
        cls.tmp.cleanup()

    def run_cli(self, *args, stdin=b"", pass_fds=(), sock=True):
        argv = [self.cli]
        if sock:
            argv += ["-s", self.service.sock_path]
        argv += list(args)
        p = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           pass_fds=pass_fds, timeout=TIMEOUT)
        return p.returncode, p.stdout, p.stderr.decode(errors="replace")

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    # --- requests and answers ----------------------------------------------

    def test_get(self):
        rc, out, err = self.run_cli("/health")
        self.assertEqual((rc, out), (0, b"ok"), err)

    def test_include_prints_status_and_headers(self):
        rc, out, _ = self.run_cli("-i", "-d", "hello", "/echo")
        self.assertEqual(rc, 0)
        head, _, body = out.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.assertEqual(lines[0], "HTTP/1.1 200 OK")
        self.assertIn("Content-Length: 5", lines)
        self.assertEqual(body, b"hello")

    def test_data_means_post(self):
        # /echo has only a POST route: a GET would be 405.
        rc, out, err = self.run_cli("-d", "payload", "/echo")
        self.assertEqual((rc, out), (0, b"payload"), err)

    def test_data_file_and_stdin(self):
        data = os.urandom(200 * 1024)
        with open(self.path("body.bin"), "wb") as f:
            f.write(data[:1000])
        rc, out, _ = self.run_cli("--data-file", self.path("body.bin"), "/echo")
        self.assertEqual((rc, out), (0, data[:1000]))
        rc, out, _ = self.run_cli("--data-file", "-", "/echo", stdin=data)
        self.assertEqual(rc, 0)
        self.assertEqual(out, data)

    def test_method_and_header(self):
        rc, out, err = self.run_cli("-X", "PUT", "-H", "X-Test:  value ", "/echo")
        self.assertEqual(rc, 22)
        self.assertIn(b"method not allowed", out)
        rc, out, err = self.run_cli("-v", "-H", "X-Test:  value ", "/health")
        self.assertEqual(rc, 0)
        self.assertIn("> GET /health HTTP/1.1\n", err)
        self.assertIn("> X-Test: value\n", err)
        self.assertIn("< HTTP/1.1 200 OK\n", err)

    def test_http_errors_exit_22(self):
        rc, out, err = self.run_cli("/nope")
        self.assertEqual(rc, 22)
        self.assertEqual(out, b"no route for this path\n")
        self.assertIn("404", err)
        # No fd named input: the service answers 400.
        rc, _, _ = self.run_cli("-X", "POST", "/fd/read")
        self.assertEqual(rc, 22)

    # --- fds sent ------------------------------------------------------------

    def test_fd_from_path(self):
        with open(self.path("in.txt"), "wb") as f:
            f.write(b"file contents")
        rc, out, err = self.run_cli("-X", "POST", "--fd", "input=" + self.path("in.txt"),
                                    "/fd/read")
        self.assertEqual((rc, out), (0, b"file contents"), err)

    def test_fd_from_stdin(self):
        rc, out, err = self.run_cli("-X", "POST", "--fd", "input=-", "/fd/read",
                                    stdin=b"through stdin")
        self.assertEqual((rc, out), (0, b"through stdin"), err)

    def test_fd_by_number(self):
        r, w = os.pipe()
        try:
            os.write(w, b"through a pipe")
            os.close(w)
            w = -1
            rc, out, err = self.run_cli("-X", "POST", "--fd", "input=&%d" % r, "/fd/read",
                                        pass_fds=(r,))
        finally:
            os.close(r)
            if w != -1:
                os.close(w)
        self.assertEqual((rc, out), (0, b"through a pipe"), err)

    def test_fd_errors(self):
        rc, _, err = self.run_cli("--fd", "input=" + self.path("absent"), "/fd/read")
        self.assertEqual(rc, 26, err)
        for bad in ("bad/name=-", "=-", "noequals", "x=&99999", "x=&abc"):
            rc, _, err = self.run_cli("--fd", bad, "/echo")
            self.assertEqual(rc, 2, (bad, err))
        rc, _, err = self.run_cli("--fd", "a=-", "--fd", "a=-", "/echo")
        self.assertEqual(rc, 2, err)

    # --- fds received --------------------------------------------------------

    def test_memfd_described_and_saved(self):
        out_file = self.path("saved.bin")
        rc, out, err = self.run_cli("-d", "sealed contents", "--save-fd", "output=" + out_file,
                                    "/fd/memfd")
        self.assertEqual((rc, out), (0, b""), err)
        self.assertRegex(err, r'fd output: memfd "fdhttp-echo", 15 bytes, sealed \(')
        with open(out_file, "rb") as f:
            self.assertEqual(f.read(), b"sealed contents")

    def test_memfd_called_sealed_only_when_its_contents_cannot_change(self):
        future_write = getattr(fcntl, "F_SEAL_FUTURE_WRITE", 0x10)
        cases = [
            # (name, flags, seals, how fdhttp describes it)
            ("plain", 0, 0, "contents can change (seals: seal)"),
            ("none", os.MFD_ALLOW_SEALING, 0, "contents can change"),
            ("write", os.MFD_ALLOW_SEALING, fcntl.F_SEAL_WRITE,
             "contents can change (seals: write)"),
            ("future", os.MFD_ALLOW_SEALING, future_write | fcntl.F_SEAL_SHRINK
             | fcntl.F_SEAL_GROW, "contents can change (seals: shrink grow future-write)"),
            ("fixed", os.MFD_ALLOW_SEALING, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK
             | fcntl.F_SEAL_GROW, "sealed (shrink grow write)"),
        ]
        fds = []
        try:
            for name, flags, seals, _ in cases:
                fd = os.memfd_create(name, flags)
                fds.append(fd)
                os.write(fd, b"x")
                if seals:
                    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
            args = []
            for (name, _, _, _), fd in zip(cases, fds):
                args += ["--fd", "%s=&%d" % (name, fd)]
            rc, _, err = self.run_cli("-d", "", *args, "/echo", pass_fds=fds)
        finally:
            for fd in fds:
                os.close(fd)
        self.assertEqual(rc, 0, err)
        for name, _, _, words in cases:
            self.assertIn('fd %s: memfd "%s", 1 bytes, %s\n' % (name, name, words), err)

    def test_save_fd_to_stdout(self):
        rc, out, err = self.run_cli("-d", "to stdout", "--save-fd", "output=-", "/fd/memfd")
        self.assertEqual((rc, out), (0, b"to stdout"), err)

    def test_save_fd_missing_name(self):
        rc, _, err = self.run_cli("-d", "x", "--save-fd", "nope=" + self.path("n"),
                                  "/fd/memfd")
        self.assertEqual(rc, 1)
        self.assertIn("no fd of that name", err)

    def test_exec_gets_fd_as_stdin(self):
        rc, out, err = self.run_cli("-d", "shout", "--exec", "output", "/fd/memfd",
                                    "--", "tr", "a-z", "A-Z")
        self.assertEqual((rc, out), (0, b"SHOUT"), err)
        # The command's exit status is ours.
        rc, out, err = self.run_cli("-d", "x", "--exec", "output", "/fd/memfd",
                                    "--", "sh", "-c", "cat; exit 3")
        self.assertEqual((rc, out), (3, b"x"), err)

    def test_exec_inherits_no_other_fd(self):
        # The connection, the request's fds and the response's are all close-on-exec:
        # ls sees its stdio and the directory it lists, nothing else.
        with open(self.path("leak.txt"), "wb") as f:
            f.write(b"x")
        rc, out, err = self.run_cli("-d", "body\n", "--fd", "a=" + self.path("leak.txt"),
                                    "--exec", "a", "/echo", "--", "ls", "/proc/self/fd")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.split()[0], b"body")
        self.assertEqual(sorted(out.split()[1:]), [b"0", b"1", b"2", b"3"])

    def test_pipe_and_socket_described(self):
        r, w = os.pipe()
        a, b = socket.socketpair()
        try:
            rc, out, err = self.run_cli("-d", "x", "--fd", "w=&%d" % w,
                                        "--fd", "s=&%d" % a.fileno(), "/echo",
                                        pass_fds=(w, a.fileno()))
        finally:
            for fd in (r, w):
                os.close(fd)
            a.close()
            b.close()
        self.assertEqual(rc, 0, err)
        self.assertIn("fd w: pipe (write end), 0 bytes buffered", err)
        self.assertIn("fd s: unix stream socket", err)

    def test_what_an_fd_may_do_is_described(self):
        fifo = self.path("fifo")
        os.mkfifo(fifo)
        plain = self.path("plain")
        with open(plain, "w") as f:
            f.write("abc")
        fds = {"fifo": os.open(fifo, os.O_RDWR | os.O_CLOEXEC),
               "path": os.open(plain, os.O_PATH | os.O_CLOEXEC),
               "log": os.open(plain, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)}
        try:
            args = []
            for name, fd in fds.items():
                args += ["--fd", "%s=&%d" % (name, fd)]
            rc, _, err = self.run_cli("-d", "x", *args, "/echo", pass_fds=tuple(fds.values()))
        finally:
            for fd in fds.values():
                os.close(fd)
        self.assertEqual(rc, 0, err)
        self.assertIn("fd fifo: pipe (read and write ends), 0 bytes buffered", err)
        self.assertIn("fd path: regular file \"%s\", 3 bytes, a path only (O_PATH: no read "
                      "or write)" % plain, err)
        self.assertIn("fd log: regular file \"%s\", 3 bytes, write-only, appending" % plain, err)

    def test_save_fd_of_pipe_reads_to_eof(self):
        r, w = os.pipe()
        os.write(w, b"pipe data")
        os.close(w)
        try:
            rc, out, err = self.run_cli("-d", "", "--fd", "r=&%d" % r,
                                        "--save-fd", "r=-", "/echo", pass_fds=(r,))
        finally:
            os.close(r)
        self.assertEqual((rc, out), (0, b"pipe data"), err)

    def test_save_fd_of_pipe_times_out(self):
        r, w = os.pipe()
        try:
            start = time.monotonic()
            rc, _, err = self.run_cli("--timeout", "0.5", "-d", "", "--fd", "r=&%d" % r,
                                      "--save-fd", "r=" + self.path("never"), "/echo",
                                      pass_fds=(r,))
            self.assertLess(time.monotonic() - start, 5)
        finally:
            os.close(r)
            os.close(w)
        self.assertEqual(rc, 28, err)

    def test_save_fd_killed_mid_copy_gives_back_the_blocking_flag(self):
        """O_NONBLOCK, set for the copy, is a flag of the open file the
        caller shares: a signal that ends fdhttp puts it back first."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(sig=sig.name):
                r, w = os.pipe()
                self.addCleanup(os.close, w)
                self.addCleanup(os.close, r)
                p = subprocess.Popen([self.cli, "-s", self.service.sock_path, "-d", "",
                                      "--fd", "r=&%d" % r, "--save-fd",
                                      "r=" + self.path("never"), "/echo"],
                                     pass_fds=(r,), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    # The copy has begun once the flag is set (the server sent r back).
                    self.assertTrue(wait_for(lambda: not os.get_blocking(r)), "never set")
                finally:
                    p.send_signal(sig)
                    self.assertEqual(p.wait(TIMEOUT), -sig)
                self.assertTrue(os.get_blocking(r))

    def test_save_fd_of_endless_device_times_out(self):
        # /dev/zero never runs dry and never blocks: only the clock stops it.
        start = time.monotonic()
        rc, _, err = self.run_cli("--timeout", "0.5", "-d", "", "--fd", "z=/dev/zero",
                                  "--save-fd", "z=/dev/null", "/echo")
        self.assertLess(time.monotonic() - start, 5)
        self.assertEqual(rc, 28, err)
        self.assertIn("--save-fd z: no end of data within the timeout", err)

    # --- exit statuses -------------------------------------------------------

    def test_cannot_connect_exit_7(self):
        rc, _, err = self.run_cli("-s", self.path("absent.sock"), "/health", sock=False)
        self.assertEqual(rc, 7, err)
        # A socket file nobody listens on: refused.
        stale = self.path("stale.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(stale)
        s.close()
        rc, _, err = self.run_cli("-s", stale, "/health", sock=False)
        self.assertEqual(rc, 7, err)

    def test_timeout_exit_28(self):
        # A server that accepts and never answers.
        path = self.path("silent.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(4)
        held = []
        stop = threading.Event()

        def accept():
            srv.settimeout(0.1)
            while not stop.is_set():
                try:
                    held.append(srv.accept()[0])
                except OSError:
                    pass

        t = threading.Thread(target=accept)
        t.start()
        try:
            start = time.monotonic()
            rc, _, err = self.run_cli("-s", path, "--timeout", "0.3", "/health", sock=False)
            elapsed = time.monotonic() - start
        finally:
            stop.set()
            t.join()
            for c in held:
                c.close()
            srv.close()
        self.assertEqual(rc, 28, err)
        self.assertLess(elapsed, 5)

    def test_oversized_head_exit_8(self):
        # Not a body over the limit (63): a head no server should send.
        def serve(conn):
            read_head(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\n" + b"X-A: a\r\n" * 5000
                         + b"Content-Length: 0\r\n\r\n")
            conn.recv(1)

        with OneConnection(self.path("fields.sock"), serve) as srv:
            rc, _, err = self.run_cli("-s", srv.path, "--timeout", "10", "/x", sock=False)
        self.assertEqual(rc, 8, err)
        self.assertIn("the response head is over 1 MiB or 4096 header fields", err)

    def test_expect_100_continue_without_a_100(self):
        # A server that knows nothing of the expectation: it waits for the body.
        def serve(conn):
            head, _, body = read_head(conn).partition(b"\r\n\r\n")
            self.assertIn(b"\r\nExpect: 100-continue\r\n", head)
            while len(body) < 5:
                data = conn.recv(65536)
                if not data:
                    return
                body += data
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
            conn.recv(1)

        start = time.monotonic()
        with OneConnection(self.path("expect.sock"), serve) as srv:
            rc, out, err = self.run_cli("-s", srv.path, "--timeout", "10",
                                        "-H", "Expect: 100-continue", "-d", "hello", "/x",
                                        sock=False)
        self.assertEqual((rc, out), (0, b"hello"), err)
        self.assertLess(time.monotonic() - start, 5)

    def test_lingering_fd_of_a_response_keeps_to_the_timeout(self):
        # The last close() of this socket waits for its unsent data, up to
        # LINGER_S; fdhttp leaves it to its exit, which does not linger.
        lsrv, peer, tcp = lingering_tcp(LINGER_S)

        def serve(conn):
            read_head(conn)
            conn.sendmsg([b"HTTP/1.1 200 OK\r\nX-FD: t\r\nContent-Length: 1\r\n\r\n"],
                         [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", tcp.fileno()))])
            # fdhttp's copy must be the last: the response ends only after
            # ours is closed, or fdhttp could be done and gone before it.
            tcp.close()
            conn.sendall(b"x")
            conn.recv(1)

        start = time.monotonic()
        try:
            with OneConnection(self.path("linger.sock"), serve) as srv:
                rc, _, err = self.run_cli("-s", srv.path, "--timeout", "2", "/x", sock=False)
            elapsed = time.monotonic() - start
        finally:
            peer.close()            # resets the connection: a wait would end here
            lsrv.close()
        self.assertEqual(rc, 0, err)
        self.assertIn("fd t: inet stream socket", err)
        self.assertLess(elapsed, 5)

    def test_timeout_bounds_the_whole_run(self):
        # The answer comes after 2 s of a 3 s --timeout, with a pipe that
        # never ends: --save-fd gets the 1 s left, not 3 s of its own.
        r, w = os.pipe()

        def serve(conn):
            read_head(conn)
            time.sleep(2)
            conn.sendmsg([b"HTTP/1.1 200 OK\r\nX-FD: p\r\nContent-Length: 0\r\n\r\n"],
                         [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", r))])
            conn.recv(1)

        start = time.monotonic()
        try:
            with OneConnection(self.path("slow.sock"), serve) as srv:
                rc, _, err = self.run_cli("-s", srv.path, "--timeout", "3", "--save-fd",
                                          "p=" + self.path("never"), "/x", sock=False)
            elapsed = time.monotonic() - start
        finally:
            os.close(r)
            os.close(w)
        self.assertEqual(rc, 28, err)
        self.assertIn("--save-fd p: no end of data within the timeout", err)
        self.assertLess(elapsed, 4)

    def test_fds_the_kernel_will_not_pass_exit_55(self):
        # Past its RLIMIT_NOFILE of fds in flight, a user's sendmsg() of
        # more fails (ETOOMANYREFS): nothing was sent, so no "closed the
        # connection" (56), and the reason said in words.
        prefix, python = unprivileged(self)
        tmp = tempfile.mkdtemp(prefix="fdh-cli-refs-", dir=self.tmp.name)
        os.chmod(self.tmp.name, 0o755)
        os.chmod(tmp, 0o777)
        got = []

        def serve(conn):
            conn.settimeout(TIMEOUT)
            got.append(conn.recv(65536))

        with OneConnection(os.path.join(tmp, "s.sock"), serve) as srv:
            os.chmod(srv.path, 0o777)
            filler = subprocess.Popen([*prefix, python, "-c", FILL, "100"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            try:
                self.assertEqual(filler.stdout.readline(), b"filled\n")
                p = subprocess.run([*prefix, self.cli, "-s", srv.path, "--timeout", "10",
                                    "--fd", "x=/dev/null", "/x"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   preexec_fn=low_limit, timeout=TIMEOUT)
            finally:
                filler.stdin.close()
                filler.stdout.close()
                filler.wait()
        err = p.stderr.decode(errors="replace")
        self.assertEqual(p.returncode, 55, err)
        self.assertIn("the kernel will not pass the fds", err)
        self.assertEqual(got, [b""])

    def test_closed_stdout_exit_23(self):
        # The connection must not take the number of a closed stdout: the
        # body would go to the server as bytes of a next request.
        got = []

        def serve(conn):
            read_head(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            conn.settimeout(TIMEOUT)
            got.append(conn.recv(65536))

        with OneConnection(self.path("stdout.sock"), serve) as srv:
            p = subprocess.run([self.cli, "-s", srv.path, "--timeout", "10", "/x"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               preexec_fn=lambda: os.close(1), timeout=TIMEOUT)
        self.assertEqual(p.returncode, 23, p.stderr)
        self.assertIn(b"cannot write the body to stdout", p.stderr)
        self.assertEqual(got, [b""])

    def test_usage_errors_exit_2(self):
        cases = [
            (),                                     # no PATH
            ("health",),                            # PATH without '/'
            ("/a", "/b"),                           # two PATHs
            ("-H", "no colon", "/health"),
            ("-H", "Content-Length: 1", "/health"),
            ("-H", "X-FD: a", "/health"),
            ("-d", "a", "--data-file", "-", "/echo"),
            ("--exec", "output", "/fd/memfd"),      # no command
            ("/fd/memfd", "--", "cat"),             # a command without --exec
            ("--timeout", "soon", "/health"),
            ("--bogus", "/health"),
            ("--data-file", "-", "--fd", "a=-", "/echo"),
        ]
        for args in cases:
            rc, _, err = self.run_cli(*args)
            self.assertEqual(rc, 2, (args, err))
            self.assertIn("fdhttp --help", err)
        rc, _, err = self.run_cli("/health", sock=False)
        self.assertEqual(rc, 2, err)
        # A bad header is named, its control bytes shown rather than obeyed.
        for header, says in (
                ("X-A: a\r\nX-B: b", "fdhttp: -H X-A: a\\x0d\\x0aX-B: b: a header value "
                                     "cannot hold a line break"),
                ("X A: a", "fdhttp: -H X A: a: a header name is letters, digits"),
                ("X-A: \x1b[31m", "fdhttp: -H X-A: \\x1b[31m: a header value")):
            rc, _, err = self.run_cli("-H", header, "/health")
            self.assertEqual(rc, 2, err)
            self.assertTrue(err.startswith(says), err)
            self.assertEqual(err.count("\n"), 2, err)

    def test_help_and_version(self):
        rc, out, _ = self.run_cli("--help", sock=False)
        self.assertEqual(rc, 0)
        self.assertIn(b"Usage: fdhttp", out)
        rc, out, _ = self.run_cli("--version", sock=False)
        self.assertEqual(rc, 0)
        self.assertTrue(out.startswith(b"fdhttp "))


class AbstractSocketTests(unittest.TestCase):
    def test_abstract(self):
        cli = cli_path()
        name = "fdh-cli-test-%d" % os.getpid()
        proc = subprocess.Popen([echo_path(), "--socket", "@" + name],
                                stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            while True:
                p = subprocess.run([cli, "--abstract", "-s", name, "/health"],
                                   capture_output=True, timeout=TIMEOUT)
                if p.returncode != 7 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            self.assertEqual((p.returncode, p.stdout), (0, b"ok"), p.stderr)
            # The '@' spelling works as well.
            p = subprocess.run([cli, "-s", "@" + name, "/health"], capture_output=True,
                               timeout=TIMEOUT)
            self.assertEqual((p.returncode, p.stdout), (0, b"ok"), p.stderr)
        finally:
            proc.terminate()
            proc.wait(5)
            proc.stderr.close()


if __name__ == "__main__":
    unittest.main()
