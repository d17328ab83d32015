"""Hostile clients against fdhttpd and fdhttp-echo workers: slow senders,
clients that vanish with fds at every stage, clients that never read, a
flood of connections, fd passing without end on one connection, header
floods and request smuggling (CONTRACT sections 2, 3 and 5).

After each ordeal every process (supervisor and workers) must hold exactly
the fds it held before, and about the memory (hostile_testlib.Baseline),
and no worker may have died.

FDH_HOSTILE_FD_REQUESTS sets how many requests carry 16 fds on one
connection (default 100000, which ctest runs too: 7 to 10 s here; lower it
on a slow machine, not below 20000).
"""

import os
import resource
import select
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fdhttp_testlib import build_request  # noqa: E402
from fdhttpd_testlib import Fdhttpd, cmdline, echo_path, wait_for  # noqa: E402
from hostile_testlib import (Baseline, Canary, connect, fd_count, raise_nofile,  # noqa: E402
                             snapshot, worker_pids)

MiB = 1024 * 1024
FD_REQUESTS = int(os.environ.get("FDH_HOSTILE_FD_REQUESTS", "100000"))


def hung_up(sock, timeout):
    """Waits for the peer to close, without reading."""
    p = select.poll()
    p.register(sock, select.POLLRDHUP | select.POLLHUP)
    return bool(p.poll(max(timeout, 0) * 1000))


def health(conn):
    conn.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    r = conn.read_response()
    return r.status, r.body


class HostileTest(unittest.TestCase):
    def start(self, *opts, **kwargs):
        d = Fdhttpd(*opts, **kwargs)
        self.addCleanup(d.cleanup)
        d.wait_workers(kwargs.get("workers", 2))
        return d

    def canary(self):
        c = Canary()
        self.addCleanup(c.close)
        return c

    def assert_stops_cleanly(self, d):
        self.assertEqual(d.stop(), 0)
        log = d.read_log()
        for bad in ("killed by signal", "bad control message", "AddressSanitizer",
                    "runtime error"):
            self.assertNotIn(bad, log)

    def warm_up(self, d, n=8):
        """Small and large requests on every worker, so that what the
        allocator keeps for them is in the baseline."""
        for _ in range(n):
            c = connect(d.sock_path)
            self.assertEqual(health(c), (200, b"ok"))
            for size in (MiB - 4096, 70000):
                c.send(build_request("POST", "/echo", b"x" * size))
                self.assertEqual(c.read_response().status, 200)
            c.close()

    # --- slow clients ----------------------------------------------------

    def test_slowloris_gets_408_and_close(self):
        """A few bytes a second, in the head or in the body: 408 and close at
        the request timeout, while others are served without delay."""
        d = self.start("--request-timeout", "2", workers=2)
        self.warm_up(d)
        base = Baseline(d, "slowloris")
        sel = selectors.DefaultSelector()
        slow = []
        heads = [b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 40,
                 b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n" + b"b" * 200]
        for i in range(8):
            c = connect(d.sock_path)
            c.sock.setblocking(False)
            slow.append({"conn": c, "data": heads[i % 2], "sent": 0, "t0": None,
                         "got": b"", "eof_at": None})
            sel.register(c.sock, selectors.EVENT_READ, slow[-1])
        t_start = time.monotonic()
        next_send = t_start
        worst = 0.0
        while time.monotonic() - t_start < 4.0 and any(s["eof_at"] is None for s in slow):
            now = time.monotonic()
            if now >= next_send:
                next_send = now + 0.25
                for s in slow:
                    if s["eof_at"] is not None or s["got"]:
                        continue
                    try:
                        s["conn"].sock.send(s["data"][s["sent"]:s["sent"] + 2])
                        s["t0"] = s["t0"] or now
                        s["sent"] += 2
                    except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                        pass
                # Meanwhile a well-behaved client is served at once.
                t = time.monotonic()
                c = connect(d.sock_path)
                self.assertEqual(health(c), (200, b"ok"))
                c.close()
                worst = max(worst, time.monotonic() - t)
            for key, _ in sel.select(0.05):
                s = key.data
                try:
                    chunk = key.fileobj.recv(4096)
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    s["got"] += chunk
                else:
                    s["eof_at"] = time.monotonic()
                    sel.unregister(key.fileobj)
        for s in slow:
            s["conn"].close()
            self.assertIsNotNone(s["eof_at"], "a slow client was never closed")
            self.assertTrue(s["got"].startswith(b"HTTP/1.1 408 "), s["got"])
            self.assertIn(b"\r\nConnection: close\r\n", s["got"])
            took = s["eof_at"] - s["t0"]
            self.assertGreaterEqual(took, 1.9)
            self.assertLess(took, 3.0)
            self.assertLess(s["sent"], len(s["data"]))     # it never finished
        # Waiting behind them would take the request timeout, 2 s.
        self.assertLess(worst, 1.0, "a normal request waited behind slow clients")
        sys.stderr.write("slowest normal request meanwhile: %.1f ms\n" % (worst * 1000))
        base.check(self)
        self.assert_stops_cleanly(d)

    # --- clients that vanish ---------------------------------------------

    def vanish(self, d, kind, canary, big):
        """One client that sends fds and vanishes at the stage kind names."""
        c = connect(d.sock_path)
        w = canary.wr
        try:
            if kind == "mid-head":
                c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nX-FD: a,b\r\nContent-Le", [w, w])
            elif kind == "mid-body":
                c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                       b"X-FD: a\r\n\r\nsome", [w])
            elif kind == "fds-with-body":
                c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nX-FD: a\r\n\r\n")
                c.send(b"abc", [w])
            elif kind == "before-response":
                c.send(build_request("POST", "/echo", b"hi", xfd="a,b"), [w, w])
            elif kind == "mid-response":
                c.send(build_request("POST", "/echo", big, xfd="a"), [w])
                got = 0
                while got < 65536:
                    chunk = c.sock.recv(65536)      # fds that come are closed by the kernel
                    self.assertTrue(chunk, "closed before the response")
                    got += len(chunk)
            elif kind == "unread-large":
                c.send(build_request("POST", "/echo", big, xfd="a,b"), [w, w])
            elif kind == "own-socket-mid-head":
                # Its own end of the connection: while the worker holds it,
                # the connection cannot end by itself (the request timeout does).
                c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nX-FD: a,b\r\nContent-Le",
                       [w, c.sock.fileno()])
            elif kind == "own-socket-echoed":
                c.send(build_request("POST", "/echo", b"hi", xfd="a,b"), [w, c.sock.fileno()])
        except (BrokenPipeError, ConnectionResetError):
            pass
        c.close()

    def test_clients_vanish_with_fds_at_every_stage(self):
        d = self.start("--request-timeout", "2", workers=2)
        self.warm_up(d)
        base = Baseline(d, "vanishing clients")
        canary = self.canary()
        big = b"v" * (MiB - 4096)
        kinds = ("mid-head", "mid-body", "fds-with-body", "before-response", "mid-response",
                 "unread-large", "own-socket-mid-head", "own-socket-echoed")
        for _ in range(12):
            for kind in kinds:
                self.vanish(d, kind, canary, big)
        # Both workers still serve.
        for _ in range(4):
            c = connect(d.sock_path)
            self.assertEqual(health(c), (200, b"ok"))
            c.close()
        self.assertTrue(canary.closed_everywhere(),
                        "a copy of an fd sent by a vanished client is still open")
        base.check(self)
        self.assert_stops_cleanly(d)

    def test_refused_clients_with_fds(self):
        """Clients the supervisor refuses itself (503 over
        --max-conns-per-uid) send fds and vanish, or read the answer: their
        fds are closed by the supervisor, which holds none afterwards."""
        d = self.start("--max-conns-per-uid", "1", workers=1)
        base = Baseline(d, "refused clients with fds")
        canary = self.canary()
        holder = connect(d.sock_path)
        self.addCleanup(holder.close)
        self.assertEqual(health(holder), (200, b"ok"))
        for i in range(40):
            c = connect(d.sock_path)
            try:
                c.send(build_request("POST", "/echo", b"x" * (i * 1000), xfd="a,b"),
                       [canary.wr, canary.wr])
            except (BrokenPipeError, ConnectionResetError):
                pass
            if i % 2:
                r = c.read_response()
                self.assertEqual(r.status, 503)
                self.assertTrue(r.closes)
            c.close()
        holder.close()
        self.assertTrue(canary.closed_everywhere(),
                        "an fd sent by a refused client is still open")
        base.check(self)
        self.assert_stops_cleanly(d)

    def test_client_that_never_reads_is_cut_off_and_worker_stays_responsive(self):
        d = self.start("--write-timeout", "2", workers=1)
        self.warm_up(d)
        base = Baseline(d, "never-reading clients")
        canary = self.canary()
        stuck = []
        for _ in range(4):
            c = connect(d.sock_path)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.send(build_request("POST", "/echo", b"n" * (MiB - 4096), xfd="a"), [canary.wr])
            stuck.append(c)
        t0 = time.monotonic()
        worst = 0.0
        while time.monotonic() - t0 < 1.5:
            t = time.monotonic()
            c = connect(d.sock_path)
            self.assertEqual(health(c), (200, b"ok"))
            c.close()
            worst = max(worst, time.monotonic() - t)
        # Stalled behind them, it would wait for the write timeout, 2 s.
        self.assertLess(worst, 1.0, "the worker stalled behind clients that do not read")
        # The write makes no progress: the worker closes each after 2 s.
        # Reading before that would be progress; wait for the hang-up.
        for c in stuck:
            self.assertTrue(hung_up(c.sock, t0 + 5 - time.monotonic()),
                            "a client that never reads is still connected after 5 s")
        took = time.monotonic() - t0
        for c in stuck:
            c.sock.settimeout(4)
            got = b""
            while True:
                chunk = c.sock.recv(65536)
                if not chunk:
                    break
                got += chunk
            self.assertTrue(got.startswith(b"HTTP/1.1 200 "))
            self.assertLess(len(got), MiB - 4096)
            c.close()
        sys.stderr.write("never-reading clients closed %.2f s after their requests; slowest "
                         "other request %.1f ms\n" % (took, worst * 1000))
        self.assertGreater(took, 1.9)
        self.assertTrue(canary.closed_everywhere(),
                        "the fd of a response that could not be sent is still open")
        base.check(self)
        self.assert_stops_cleanly(d)

    # --- floods ----------------------------------------------------------

    def test_10000_connections_at_once(self):
        """10,000 clients connect at once to 2 workers of 64 connections:
        each is answered, or its connect is refused by the full backlog
        (EAGAIN) and it tries again; none waits forever."""
        n = 10000
        if raise_nofile(n + 1024) < n + 1024:
            self.skipTest("RLIMIT_NOFILE cannot be raised to %d" % (n + 1024))
        d = self.start("--max-conns", "64", workers=2)
        self.warm_up(d)
        base = Baseline(d, "10,000 connections")
        workers = worker_pids(d)
        req = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        sel = selectors.DefaultSelector()
        todo = list(range(n))
        open_ = {}
        answers = {}
        refused = 0
        most = [0]
        done = threading.Event()

        def watch():
            while not done.is_set():
                for p in workers:
                    title = cmdline(p)
                    if "[" in title:
                        most[0] = max(most[0], int(title.split("[")[1].split()[0]))
                time.sleep(0.001)

        watcher = threading.Thread(target=watch)
        watcher.start()
        self.addCleanup(watcher.join)
        self.addCleanup(done.set)
        deadline = time.monotonic() + 30
        while todo or open_:
            if time.monotonic() >= deadline:
                self.fail("%d clients still waiting, %d not connected, %d answered\n%s"
                          % (len(open_), len(todo), len(answers), snapshot(d)))
            while todo:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.setblocking(False)
                try:
                    s.connect(d.sock_path)
                except BlockingIOError:
                    s.close()
                    refused += 1
                    break               # the backlog is full: read, then try again
                s.sendall(req)
                i = todo.pop()
                open_[s] = [i, b""]
                sel.register(s, selectors.EVENT_READ)
            for key, _ in sel.select(0.2):
                s = key.fileobj
                chunk = s.recv(4096)
                if chunk:
                    open_[s][1] += chunk
                    continue
                i, data = open_.pop(s)
                answers[i] = data
                sel.unregister(s)
                s.close()
        done.set()
        bad = [a[:40] for a in answers.values() if not a.startswith(b"HTTP/1.1 200 ")]
        self.assertEqual(bad, [])
        self.assertEqual(len(answers), n)
        self.assertLessEqual(most[0], 64)
        sys.stderr.write("10,000 connections: %d connects refused by the full backlog and "
                         "retried; at most %d connections in one worker\n" % (refused, most[0]))
        base.check(self)
        self.assert_stops_cleanly(d)

    def test_16_fds_on_every_request_of_one_connection(self):
        """FD_REQUESTS requests on one keep-alive connection, each with 16
        fds, each answered with the same 16 fds."""
        d = self.start(workers=1)
        self.warm_up(d)
        memfd = os.memfd_create("fdh-hostile", os.MFD_CLOEXEC)
        self.addCleanup(os.close, memfd)
        ino = os.fstat(memfd).st_ino
        fds = [os.dup(memfd) for _ in range(16)]
        for fd in fds:
            self.addCleanup(os.close, fd)
        names = ["f%d" % i for i in range(16)]
        req = build_request("POST", "/echo", b"16", xfd=",".join(names))
        c = connect(d.sock_path)
        self.addCleanup(c.close)
        # Warm the path, then measure.
        for _ in range(100):
            c.send(req, fds)
            c.read_response().close_fds()
        base = Baseline(d, "%d requests with 16 fds" % FD_REQUESTS, idle=False)
        t0 = time.monotonic()
        for i in range(FD_REQUESTS):
            c.send(req, fds)
            r = c.read_response()
            if r.status != 200 or r.body != b"16" or list(r.fds) != names:
                r.close_fds()
                self.fail("request %d: %d %r %r" % (i, r.status, r.body, list(r.fds)))
            if i % 997 == 0:
                self.assertTrue(all(os.fstat(fd).st_ino == ino for fd in r.fds.values()))
            r.close_fds()
        took = time.monotonic() - t0
        sys.stderr.write("%d requests with 16 fds each in %.1f s (%.0f/s)\n"
                         % (FD_REQUESTS, took, FD_REQUESTS / took))
        self.assertEqual(health(c), (200, b"ok"))
        base.check(self)
        c.close()
        self.assert_stops_cleanly(d)

    # --- header floods and smuggling -------------------------------------

    def test_1000_tiny_headers(self):
        head = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"a:1\r\n" * 999 + b"\r\n"
        self.assertLess(len(head), 8192)        # the field count decides, not the size
        d = self.start(workers=1)
        self.warm_up(d)
        base = Baseline(d, "1000 header fields")
        for _ in range(50):
            c = connect(d.sock_path)
            c.send(head)
            r = c.read_response()
            self.assertEqual(r.status, 431)
            self.assertTrue(r.closes)
            self.assertIn(b"header fields", r.body)
            c.expect_closed()
            c.close()
        base.check(self)
        d.stop()

        d = self.start("--max-headers", "2000", workers=1)
        self.warm_up(d)
        base = Baseline(d, "1000 header fields with --max-headers 2000")
        c = connect(d.sock_path)
        for _ in range(50):
            c.send(head)
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"ok"))
            self.assertFalse(r.closes)
        c.close()
        base.check(self)
        self.assert_stops_cleanly(d)

    # (what, bytes, status): the catalogue of test_protocol.c, compactly,
    # and the variants it does not have.  Each ends with a second request
    # that must never be answered.
    SMUGGLING = [
        ("two equal Content-Length", b"POST /echo HTTP/1.1\r\nHost: x\r\n"
         b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
        ("two different Content-Length", b"POST /echo HTTP/1.1\r\nHost: x\r\n"
         b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        ("Content-Length list", b"POST /echo HTTP/1.1\r\nHost: x\r\n"
         b"Content-Length: 3, 3\r\n\r\nabc", 400),
        ("Content-Length with a sign", b"POST /echo HTTP/1.1\r\nHost: x\r\n"
         b"Content-Length: +3\r\n\r\nabc", 400),
        ("Content-Length before the colon's space",
         b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc", 400),
        ("CL then TE", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("TE then CL", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
         b"Content-Length: 5\r\n\r\n0\r\n\r\n", 400),
        ("TE then CL, a request in the chunk", b"POST /echo HTTP/1.1\r\nHost: x\r\n"
         b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5c\r\nGPOST /echo HTTP/1.1\r\n"
         b"\r\n0\r\n\r\n", 400),
        ("Transfer-Encoding : chunked", b"POST /echo HTTP/1.1\r\nHost: x\r\n"
         b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
        ("Transfer-Encoding: xchunked", b"POST /echo HTTP/1.1\r\nHost: x\r\n"
         b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501),
        ("Transfer-Encoding: chunked alone", b"POST /echo HTTP/1.1\r\nHost: x\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
        ("Transfer-Encoding with a tab", b"POST /echo HTTP/1.1\r\nHost: x\r\n"
         b"Transfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n", 501),
        ("two Transfer-Encoding", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
         b"\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n", 501),  # alone: section 2
        ("xchunked with CL", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n"
         b"Content-Length: 3\r\n\r\nabc", 400),
        ("bare LF line endings", b"GET /health HTTP/1.1\nHost: x\n\n", 400),
        ("bare LF as the blank line", b"GET /health HTTP/1.1\r\nHost: x\r\n\n", 400),
        ("bare CR in a header", b"GET /health HTTP/1.1\r\nHost: x\rX-A: 1\r\n\r\n", 400),
        ("bare CR in the request line", b"GET /health\rHTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("bare CR as the blank line", b"GET /health HTTP/1.1\r\nHost: x\r\n\r\r", 400),
        ("obs-fold", b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n", 400),
        ("NUL in a value", b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: 1\x002\r\n\r\n", 400),
        ("NUL in the target", b"GET /hea\x00lth HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("NUL in the method", b"G\x00ET /health HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("unknown method", b"SMUGGLE /health HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("overlong method", b"G" * 8000 + b" /health HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("method longer than the head limit", b"G" * 10000 + b" /health HTTP/1.1\r\n\r\n", 431),
        ("asterisk-form", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("authority-form", b"CONNECT x:80 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("absolute-form served as its path",
         b"GET http://x/health HTTP/1.1\r\nHost: y\r\nConnection: close\r\n\r\n", 200),
    ]

    def test_answers_left_unread_with_fds_bring_503_not_silence(self):
        """Descriptors in flight are charged to the user who sent them, and
        past that process's RLIMIT_NOFILE the kernel refuses every
        sendmsg() with fds (ETOOMANYREFS) until receivers read.  A client
        that leaves answers with fds unread brings a service there; other
        clients' answers with fds then get a 503 that says so, and a
        warning is logged, where the connection used to close without an
        answer.  Once the hoarder reads, fds go again."""
        if os.geteuid() != 0 or shutil.which("setpriv") is None:
            self.skipTest("needs root and setpriv to serve as nobody")
        tmp = tempfile.mkdtemp(prefix="fdh-inflight-")
        self.addCleanup(shutil.rmtree, tmp, True)
        os.chmod(tmp, 0o777)
        sock = os.path.join(tmp, "s.sock")
        log = open(os.path.join(tmp, "log"), "w+")
        self.addCleanup(log.close)

        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

        p = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                              echo_path(), "--socket", sock, "--max-conns", "4",
                              "--max-fds", "4"], preexec_fn=low_limit,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        self.addCleanup(p.wait, 10)
        self.addCleanup(p.terminate)
        wait_for(lambda: os.path.exists(sock), what="fdhttp-echo listening")
        rd, wr = os.pipe2(os.O_CLOEXEC)
        self.addCleanup(os.close, rd)
        self.addCleanup(os.close, wr)
        hoard = connect(sock)
        self.addCleanup(hoard.close)
        req = (b"POST /echo HTTP/1.1\r\nHost: x\r\nX-FD: a,b,c,d\r\n"
               b"Content-Length: 0\r\n\r\n")
        # Four fds sent back for each, none read, until the service's own
        # answer to the hoarder is refused (a 503, and the connection closes).
        for _ in range(40):
            try:
                socket.send_fds(hoard.sock, [req], [rd, rd, wr, wr])
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.01)
        before = fd_count(p.pid)
        for _ in range(20):
            other = connect(sock)
            self.addCleanup(other.close)
            r = other.request("POST", "/fd/memfd", body=b"x")
            self.assertEqual((r.status, r.header("connection")), (503, "close"), r.body)
            self.assertIn(b"descriptors could not be sent", r.body)
            self.assertEqual(r.fds, {})
        wait_for(lambda: "ETOOMANYREFS" in open(log.name).read(), what="the warning")
        # The connections it ended are not left in its table: its closer is
        # refused fds in flight too, and would hold them, until it stopped
        # reading from every client.
        wait_for(lambda: fd_count(p.pid) <= before, timeout=3,
                 what="the service's descriptors back to %d (%d)" % (before, fd_count(p.pid)))
        hoard.close()
        answers = []

        def memfd_answered():
            # The budget is nobody's, and other tests' workers run as nobody too.
            c = connect(sock)
            self.addCleanup(c.close)
            answers.append(c.request("POST", "/fd/memfd", body=b"x"))
            return answers[-1].status == 200
        wait_for(memfd_answered, timeout=5, interval=0.1, what="an answer with its memfd again")
        self.assertEqual(os.read(answers[-1].fds["output"], 8), b"x")
        answers[-1].close_fds()

    def test_smuggling_through_fdhttpd(self):
        d = self.start(workers=2)
        self.warm_up(d)
        base = Baseline(d, "smuggling attempts")
        follow = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        for _ in range(3):
            for what, data, status in self.SMUGGLING:
                with self.subTest(what=what):
                    c = connect(d.sock_path)
                    try:
                        c.send(data + follow)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    try:
                        r = c.read_response()
                    except (EOFError, ConnectionResetError) as e:
                        self.fail("%s: no response (%r)" % (what, e))
                    self.assertEqual(r.status, status, what)
                    self.assertTrue(r.closes, what)
                    c.expect_closed()       # the follower is never answered
                    c.close()
        base.check(self)
        self.assert_stops_cleanly(d)


if __name__ == "__main__":
    unittest.main(verbosity=2)
