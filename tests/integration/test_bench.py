"""The benchmark programs of bench/: ping_pong, load, floor and handoff.

Their figures are only worth comparing if every run measures a server that
answered correctly and stops loudly when it did not.  These tests run them
briefly against fdhttpd with fdhttp-echo, against deliberately wrong servers
(Python threads on a Unix socket) and against handoff, and check the exit
status, the "result key=value" lines scripts read, the messages a failed run
prints, and that handoff survives hostile clients without losing fds and
leaves no process behind.

The binaries are found in FDH_BUILD_DIR/bench (the build tree's bench/);
the tests skip when they are not built.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fdhttpd_testlib import BUILD_DIR, Fdhttpd, fd_count, wait_for  # noqa: E402
from hostile_testlib import settled_fds  # noqa: E402

# Small runs: each takes well under a second, under the sanitizers too.
ITERS = "300"
WARMUP = "10"
# Bound on any one benchmark run; a healthy one ends in about a second.
RUN_TIMEOUT = 60
# ping_pong's watchdog (WATCHDOG_S in bench/ping_pong.c).
WATCHDOG_S = 10

RESULT_LATENCY = re.compile(
    r"^result min=(?P<min>[\d.]+) p50=(?P<p50>[\d.]+) p90=(?P<p90>[\d.]+) "
    r"p99=(?P<p99>[\d.]+) p999=(?P<p999>[\d.]+) max=(?P<max>[\d.]+) rps=(?P<rps>\d+)$")
RESULT_LOAD = re.compile(
    r"^result rps=(?P<rps>\d+) p50=(?P<p50>[\d.]+) p99=(?P<p99>[\d.]+) "
    r"errors=(?P<errors>\d+) non2xx=(?P<non2xx>\d+) closed=(?P<closed>\d+) "
    r"client_cpu=(?P<cpu>\d+)$")

PING = b"POST /ping HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\nping"


def bench_path(name):
    path = os.path.join(BUILD_DIR, "bench", name)
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest("bench/%s not built at %s; set FDH_BUILD_DIR" % (name, path))
    return path


def run_bench(name, *args, timeout=RUN_TIMEOUT):
    """Runs a benchmark to its end; returns (status, stdout, stderr, seconds)."""
    t0 = time.monotonic()
    p = subprocess.run([bench_path(name), *args], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout)
    return (p.returncode, p.stdout.decode(errors="replace"),
            p.stderr.decode(errors="replace"), time.monotonic() - t0)


def result_line(tc, out, rx):
    """The fields of the last line of out, which must match rx."""
    lines = out.strip().splitlines()
    tc.assertTrue(lines, "no output")
    m = rx.match(lines[-1])
    tc.assertIsNotNone(m, "last line is not a result line:\n" + out)
    return {k: float(v) for k, v in m.groupdict().items()}


def assert_latency_result(tc, out):
    r = result_line(tc, out, RESULT_LATENCY)
    order = [r["min"], r["p50"], r["p90"], r["p99"], r["p999"], r["max"]]
    tc.assertEqual(order, sorted(order), "percentiles out of order:\n" + out)
    tc.assertGreater(r["min"], 0, out)
    tc.assertGreater(r["rps"], 0, out)
    return r


def read_request(conn, buf):
    """One request (head and Content-Length body) from conn; (request, rest)
    or (None, b"") at EOF."""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
    n = int(m.group(1)) if m else 0
    while len(rest) < n:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        rest += chunk
    return head + b"\r\n\r\n" + rest[:n], rest[n:]


def read_response(tc, s):
    """Reads one 200 "pong" answer from s, or fails tc."""
    buf = b""
    while b"\r\n\r\n" not in buf or not buf.endswith(b"pong"):
        chunk = s.recv(4096)
        tc.assertNotEqual(chunk, b"", "the server closed the connection; got %r" % buf)
        buf += chunk
        if len(buf) > 4096:
            break
    tc.assertTrue(buf.startswith(b"HTTP/1.1 200 "), buf)
    tc.assertTrue(buf.endswith(b"\r\n\r\npong"), buf)


def response(status, body, reason="OK"):
    return b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\n\r\n%s" % (status, reason.encode(),
                                                                 len(body), body)


class WrongServer:
    """A server on a Unix socket that answers the first good_first requests
    (counted over all connections) with 200 "pong" and then misbehaves on
    every request, or on one in `every`, answering the others "pong":

    "500": answers 500, keeping the connection;
    "not-pong": answers 200 with body "pang";
    "all-500": like "500", on every request (good_first and every ignored);
    "close": reads the request and closes the connection unanswered;
    "silent": listens and never accepts.
    """

    def __init__(self, tc, behaviour, good_first=0, every=1):
        self.behaviour = behaviour
        self.good_first = good_first
        self.every = every
        self.served = 0
        self.lock = threading.Lock()
        self.stopping = False
        self.threads = []
        self.conns = []
        self.tmpdir = tempfile.mkdtemp(prefix="fdh-bench-test-")
        tc.addCleanup(shutil.rmtree, self.tmpdir, True)
        self.path = os.path.join(self.tmpdir, "wrong.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(64)
        tc.addCleanup(self.stop)
        if behaviour != "silent":
            self.listener.settimeout(0.05)
            self.spawn(self.accept_loop)

    def spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        self.threads.append(t)
        t.start()

    def accept_loop(self):
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(10)
            with self.lock:
                self.conns.append(conn)
            self.spawn(self.serve, conn)

    def serve(self, conn):
        buf = b""
        try:
            while not self.stopping:
                req, buf = read_request(conn, buf)
                if req is None:
                    return
                with self.lock:
                    n = self.served
                    self.served += 1
                if self.behaviour == "all-500":
                    conn.sendall(response(500, b"broken", "Internal Server Error"))
                elif n < self.good_first or (n - self.good_first) % self.every:
                    conn.sendall(response(200, b"pong"))
                elif self.behaviour == "500":
                    conn.sendall(response(500, b"broken", "Internal Server Error"))
                elif self.behaviour == "not-pong":
                    conn.sendall(response(200, b"pang"))
                else:
                    return
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self):
        self.stopping = True
        self.listener.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self.threads:
            t.join(5)


def alive(pid):
    """Whether pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def children_of(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class Handoff:
    """bench/handoff on a socket in a new temporary directory, answering."""

    def __init__(self, tc, *opts):
        self.exe = bench_path("handoff")
        self.direct = "--direct" in opts
        self.tmpdir = tempfile.mkdtemp(prefix="fdh-bench-test-")
        tc.addCleanup(shutil.rmtree, self.tmpdir, True)
        self.path = os.path.join(self.tmpdir, "h.sock")
        self.log_path = os.path.join(self.tmpdir, "handoff.log")
        self.responder = None
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([self.exe, "--socket", self.path, *opts],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        tc.addCleanup(self.cleanup)
        wait_for(self.answers, timeout=10, what="handoff to answer POST /ping")
        if self.direct:
            self.responder = self.proc.pid
        else:
            kids = wait_for(lambda: children_of(self.proc.pid), what="handoff's responder")
            tc.assertEqual(len(kids), 1, kids)
            self.responder = kids[0]

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def answers(self):
        if self.proc.poll() is not None:
            raise AssertionError("handoff exited with %s:\n%s" % (self.proc.returncode, self.log()))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect(self.path)
            s.sendall(PING)
            got = b""
            while not got.endswith(b"pong"):
                chunk = s.recv(1024)
                if not chunk:
                    return False
                got += chunk
            return got.startswith(b"HTTP/1.1 200 ")
        except OSError:
            return False
        finally:
            s.close()

    def pids(self):
        return [self.proc.pid] if self.direct else [self.proc.pid, self.responder]

    def ours(self, pid):
        """pid is still our responder, not a process that reused its number."""
        try:
            return alive(pid) and os.path.realpath("/proc/%d/exe" % pid) == \
                os.path.realpath(self.exe)
        except OSError:
            return False

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.responder and self.responder != self.proc.pid and self.ours(self.responder):
            os.kill(self.responder, signal.SIGKILL)


class PingPongTest(unittest.TestCase):
    """ping_pong starting its own fdhttpd with fdhttp-echo."""

    def check_run(self, *opts):
        rc, out, err, _ = run_bench("ping_pong", "--iters", ITERS, "--warmup", WARMUP, *opts)
        self.assertEqual(rc, 0, "stdout:\n%s\nstderr:\n%s" % (out, err))
        first = out.splitlines()[0]
        self.assertRegex(first, r"^ping_pong: fdhttpd -w 1 \+ fdhttp-echo on ")
        self.assertIn("%s requests after %s warm-up" % (ITERS, WARMUP), first)
        assert_latency_result(self, out)
        # The server it started is stopped and its directory removed.
        m = re.search(r" on (\S+)/s\.sock;", first)
        self.assertIsNotNone(m, first)
        self.assertFalse(os.path.exists(m.group(1)), "%s left behind" % m.group(1))
        return first

    def test_keep_alive(self):
        """The default run: one keep-alive connection, figures for scripts."""
        self.assertIn("one keep-alive connection, no fd", self.check_run())

    def test_fd(self):
        """--fd attaches a memfd to every request and still gets "pong"."""
        self.assertIn("a memfd with each", self.check_run("--fd"))

    def test_new_conn(self):
        """--new-conn opens a connection for every request."""
        self.assertIn("a new connection per request", self.check_run("--new-conn"))


class PingPongWrongServerTest(unittest.TestCase):
    """Every answer is checked: a wrong one stops the run with status 1 and a
    message naming the request and what was wrong."""

    def fail_run(self, behaviour, *opts, good_first=3):
        srv = WrongServer(self, behaviour, good_first)
        rc, out, err, secs = run_bench("ping_pong", "--socket", srv.path, "--iters", ITERS,
                                       "--warmup", WARMUP, *opts)
        self.assertEqual(rc, 1, "stdout:\n%s\nstderr:\n%s" % (out, err))
        self.assertNotRegex(out, r"(?m)^result ", "a failed run printed a result")
        return err, secs

    def test_500_status(self):
        """A 500 answer names the request and quotes the status line."""
        err, _ = self.fail_run("500")
        self.assertRegex(err, r"(?m)^ping_pong: request 3 \(before the run\): status is not 200: "
                              r"\"HTTP/1\.1 500 Internal Server Error\"$")

    def test_500_status_new_conn_timed(self):
        """With --new-conn the failing request is counted across connections;
        one past the warm-up carries no phase."""
        err, _ = self.fail_run("500", "--new-conn", good_first=12)
        self.assertRegex(err, r"(?m)^ping_pong: request 12: status is not 200: "
                              r"\"HTTP/1\.1 500 ")

    def test_500_status_in_warm_up(self):
        """A failure during the warm-up says so."""
        err, _ = self.fail_run("500", "--new-conn", good_first=4)
        self.assertRegex(err, r"(?m)^ping_pong: request 4 \(warm-up\): status is not 200")

    def test_body_not_pong(self):
        """A 200 with another body is not a pong."""
        err, _ = self.fail_run("not-pong")
        self.assertRegex(err, r"(?m)^ping_pong: request 3 \(before the run\): "
                              r"body is not \"pong\": \"HTTP/1\.1 200 OK\"$")

    def test_closed_without_answer(self):
        """A server that hangs up instead of answering is named as such."""
        err, _ = self.fail_run("close")
        self.assertRegex(err, r"(?m)^ping_pong: request 3 \(before the run\): "
                              r"the server closed the connection instead of answering$")

    def test_closed_without_answer_new_conn(self):
        """The same on a connection of its own, during the warm-up."""
        err, _ = self.fail_run("close", "--new-conn", good_first=0)
        self.assertRegex(err, r"(?m)^ping_pong: request 0 \(warm-up\): "
                              r"the server closed the connection instead of answering$")

    def test_silent_server_stops_the_watchdog(self):
        """A server that never answers does not hang the run: the watchdog
        stops it after WATCHDOG_S seconds, naming the phase."""
        err, secs = self.fail_run("silent", good_first=0)
        self.assertRegex(err, r"(?m)^ping_pong: no answer for %d s \(first requests\); stopping$"
                         % WATCHDOG_S)
        self.assertGreaterEqual(secs, WATCHDOG_S - 1)
        self.assertLess(secs, WATCHDOG_S + 15)


class LoadTest(unittest.TestCase):
    """load: closed-loop throughput with every answer checked."""

    ARGS = ("--conns", "4", "--threads", "1", "--seconds", "1", "--warmup", "0.2")

    def test_against_fdhttpd(self):
        """Against fdhttpd with fdhttp-echo: requests/s > 0, no errors, no non-2xx."""
        d = Fdhttpd(workers=1)
        self.addCleanup(d.cleanup)
        rc, out, err, _ = run_bench("load", "--socket", d.sock_path, *self.ARGS)
        self.assertEqual(rc, 0, "stdout:\n%s\nstderr:\n%s" % (out, err))
        r = result_line(self, out, RESULT_LOAD)
        self.assertGreater(r["rps"], 0, out)
        self.assertEqual(r["errors"], 0, out)
        self.assertEqual(r["non2xx"], 0, out)
        self.assertLessEqual(r["p50"], r["p99"], out)
        m = re.search(r"(?m)^requests/s:\s+(\d+)\s+\((\d+) answered\)$", out)
        self.assertIsNotNone(m, out)
        self.assertGreater(int(m.group(2)), 0, out)
        self.assertIn("4 connections, 1 thread, keep-alive", out)
        self.assertIsNone(d.proc.poll(), "fdhttpd died under load:\n" + d.read_log())

    def test_against_500(self):
        """Answers other than 2xx are counted and make the run fail, even
        when the others were right."""
        srv = WrongServer(self, "500", every=2)
        rc, out, err, _ = run_bench("load", "--socket", srv.path, *self.ARGS)
        self.assertEqual(rc, 1, "stdout:\n%s\nstderr:\n%s" % (out, err))
        r = result_line(self, out, RESULT_LOAD)
        self.assertGreater(r["non2xx"], 0, out)
        self.assertGreater(r["rps"], 0, out)
        self.assertEqual(r["errors"], 0, out)
        self.assertRegex(out, r"(?m)^errors 0, non-2xx [1-9]\d*, ")

    def test_against_all_500(self):
        """A server that never answers 2xx: the counts are still reported
        (no latency was recorded, on any thread) and the run fails."""
        srv = WrongServer(self, "all-500")
        rc, out, err, _ = run_bench("load", "--socket", srv.path, *self.ARGS)
        self.assertEqual(rc, 1, "stdout:\n%s\nstderr:\n%s" % (out, err))
        r = result_line(self, out, RESULT_LOAD)
        self.assertGreater(r["non2xx"], 0, out)
        self.assertEqual(r["errors"], 0, out)
        self.assertNotIn("runtime error", err)


class FloorTest(unittest.TestCase):
    """floor: the socketpair round trip every other figure is held against."""

    def check(self, *opts):
        rc, out, err, _ = run_bench("floor", "--iters", "2000", "--warmup", WARMUP, *opts)
        self.assertEqual(rc, 0, "stdout:\n%s\nstderr:\n%s" % (out, err))
        self.assertIn("2000 round trips after %s warm-up" % WARMUP, out)
        assert_latency_result(self, out)
        return out

    def test_plain(self):
        """4 bytes each way: exit 0 and the same result line as ping_pong."""
        self.assertNotIn("memfd", self.check())

    def test_fd(self):
        """--fd sends a memfd with each ping, which the other side closes."""
        self.assertIn("a memfd with each ping", self.check("--fd"))


class HandoffCases:
    """handoff in one mode (OPTS): measured by ping_pong, hostile clients."""

    OPTS = ()

    def start(self):
        return Handoff(self, *self.OPTS)

    def ping_pong(self, h, *opts):
        rc, out, err, _ = run_bench("ping_pong", "--socket", h.path, "--iters", ITERS,
                                    "--warmup", WARMUP, *opts)
        self.assertEqual(rc, 0, "stdout:\n%s\nstderr:\n%s\nhandoff:\n%s" % (out, err, h.log()))
        assert_latency_result(self, out)

    def assert_all_kinds_of_ping_pong(self, h):
        self.ping_pong(h, "--new-conn")
        self.ping_pong(h)
        self.ping_pong(h, "--fd")

    def test_ping_pong(self):
        """ping_pong measures it with a new connection per request, on one
        keep-alive connection, and with an fd on each request."""
        self.assert_all_kinds_of_ping_pong(self.start())

    def connect(self, h):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(h.path)
        return s

    def assert_hangs_up(self, s, what):
        """The server closes s without answering."""
        try:
            got = s.recv(1024)
        except ConnectionResetError:
            got = b""
        except socket.timeout:
            self.fail("handoff kept the connection open after %s" % what)
        self.assertEqual(got, b"", "handoff answered %s" % what)

    def test_hostile_clients(self):
        """Unending heads, huge Content-Length, garbage with an fd, clients
        that vanish: handoff survives, hangs up on what it cannot serve,
        closes every fd it got and still answers ping_pong."""
        h = self.start()
        before = settled_fds(h.pids())

        with self.connect(h) as s:
            s.sendall(b"GET /" + b"a" * 4091)
            self.assert_hangs_up(s, "a 4096-byte head with no end")
        with self.connect(h) as s:
            s.sendall(b"POST /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\nping")
            self.assert_hangs_up(s, "Content-Length: 999999")
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        with self.connect(h) as s:
            socket.send_fds(s, [bytes(range(256)) * 3], [w])
            os.close(w)
            time.sleep(0.05)
        # Every copy of the pipe's write end is closed: handoff kept none.
        wait_for(lambda: self.eof(r), what="handoff to close the fd sent with garbage")
        # An empty Content-Length and a head that fills the buffer to the
        # last byte: nothing past the head may be read as its digits.
        with self.connect(h) as s:
            head = b"POST /ping HTTP/1.1\r\nContent-Length:\r\n\r\n"
            s.sendall(head + b"0" * (4096 - len(head)))
            self.assert_hangs_up(s, "an empty Content-Length")
        for _ in range(20):
            self.connect(h).close()
        with self.connect(h) as s:
            s.sendall(b"POST /ping HTTP/1.1\r\nHost: x\r\nCon")

        self.assertIsNone(h.proc.poll(), "handoff died:\n" + h.log())
        for pid in h.pids():
            self.assertTrue(alive(pid), "pid %d died:\n%s" % (pid, h.log()))
        self.assert_all_kinds_of_ping_pong(h)
        for pid, n in before.items():
            try:
                wait_for(lambda: fd_count(pid) == n, timeout=3)
            except AssertionError:
                self.fail("pid %d holds %d fds, %d before the hostile clients: %s"
                          % (pid, fd_count(pid), n, sorted(os.listdir("/proc/%d/fd" % pid))))

    def test_reset_does_not_close_other_connections(self):
        """A client that resets its connection (it closes with our answers
        unread) ends only its own.  The connection opened after an fd was
        received and closed gets that fd's number: it must keep being
        served."""
        h = self.start()
        req = PING
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        with self.connect(h) as a:
            a.sendall(req)
            read_response(self, a)
            socket.send_fds(a, [req], [w])
            os.close(w)
            read_response(self, a)
            with self.connect(h) as b:
                b.sendall(req)
                read_response(self, b)
                c = self.connect(h)
                c.sendall(req + req)
                time.sleep(0.2)
                c.close()
                time.sleep(0.1)
                b.sendall(req)
                read_response(self, b)
            a.sendall(req)
            read_response(self, a)
        self.assertIsNone(h.proc.poll(), "handoff died:\n" + h.log())

    @staticmethod
    def eof(fd):
        os.set_blocking(fd, False)
        try:
            return os.read(fd, 1) == b""
        except BlockingIOError:
            return False


class HandoffTest(HandoffCases, unittest.TestCase):
    """The default: an acceptor passes each connection and its pidfd to a
    responder."""

    def test_sigterm_to_the_acceptor_ends_the_responder(self):
        """Killing the acceptor leaves no responder behind."""
        h = self.start()
        self.assertNotEqual(h.responder, h.proc.pid)
        self.assertTrue(alive(h.responder))
        h.proc.send_signal(signal.SIGTERM)
        self.assertEqual(h.proc.wait(10), -signal.SIGTERM)
        wait_for(lambda: not alive(h.responder), what="the responder to exit")


class HandoffNoPidfdTest(HandoffTest):
    """The hand-off without the peer's pidfd."""

    OPTS = ("--no-pidfd",)


class HandoffDirectTest(HandoffCases, unittest.TestCase):
    """--direct: one process accepts and answers, as nginx does."""

    OPTS = ("--direct",)

    def test_sigterm(self):
        """One process, no child: SIGTERM ends it."""
        h = self.start()
        self.assertEqual(children_of(h.proc.pid), [])
        h.proc.send_signal(signal.SIGTERM)
        self.assertEqual(h.proc.wait(10), -signal.SIGTERM)


if __name__ == "__main__":
    unittest.main(verbosity=2)
