"""fdhttpd and its workers: hand-off, load spreading, respawn, drain, rolling
restart, recycling, backpressure, peer checks and fd hygiene (CONTRACT
sections 4 and 5)."""

import os
import pwd
import re
import resource
import select
import shutil
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fdhttp_testlib import SOURCE_DIR  # noqa: E402
from fdhttpd_testlib import (LOG_LINE, Conn, Fdhttpd, cmdline, echo_path, fd_count,  # noqa: E402
                             run_fdhttpd, wait_for)


def requests_during(action, nthreads, request, body, per_thread=False):
    """Runs action() while nthreads threads send requests back to back with
    request() (per_thread: made by calling request() once in each thread)
    and count answers that are 200 with body, and failures."""
    stop = threading.Event()
    results = {"ok": 0, "failed": []}

    def client():
        send = request() if per_thread else request
        while not stop.is_set():
            try:
                r = send()
                if r.status == 200 and r.body == body:
                    results["ok"] += 1
                else:
                    results["failed"].append(r.status)
            except OSError as e:
                results["failed"].append(repr(e))

    threads = [threading.Thread(target=client) for _ in range(nthreads)]
    for t in threads:
        t.start()
    try:
        action()
    finally:
        stop.set()
        for t in threads:
            t.join()
    return results


class WorkersTest(unittest.TestCase):
    def start(self, *opts, **kwargs):
        d = Fdhttpd(*opts, **kwargs)
        self.addCleanup(d.cleanup)
        return d

    def test_titles_and_log_format(self):
        d = self.start("--log-level", "debug")
        self.assertTrue(cmdline(d.pid).startswith("fdhttpd: supervisor " + d.sock_path),
                        cmdline(d.pid))
        titles = sorted(cmdline(p) for p in d.wait_workers(2))
        self.assertRegex(titles[0], r"^fdhttpd: worker 1 echo \[0 conns\]")
        self.assertRegex(titles[1], r"^fdhttpd: worker 2 echo \[0 conns\]")
        self.assertEqual(d.request().body, b"ok")
        self.assertEqual(d.stop(), 0)
        lines = d.read_log().splitlines()
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, LOG_LINE)
        self.assertTrue(any(" worker 1: " in line for line in lines), "no worker log line")

    def test_title_counts_connections(self):
        """ps shows each worker's open connections, one and many alike."""
        d = self.start(workers=1)
        (p,) = d.wait_workers(1)
        conns = []
        try:
            for n in (1, 2, 10, 11):
                while len(conns) < n:
                    conns.append(d.conn())
                    self.assertEqual(conns[-1].request().status, 200)
                want = "fdhttpd: worker 1 echo [%d conn%s]" % (n, "" if n == 1 else "s")
                wait_for(lambda: cmdline(p).rstrip().startswith(want),
                         what="worker title %r, not %r" % (want, cmdline(p)))
        finally:
            for c in conns:
                c.close()
        wait_for(lambda: cmdline(p).rstrip() == "fdhttpd: worker 1 echo [0 conns]",
                 what="worker title back to 0 conns, not %r" % cmdline(p))

    def test_connections_spread_over_workers(self):
        d = self.start(workers=2)
        pids = d.wait_workers(2)
        conns = [d.conn() for _ in range(8)]
        try:
            for c in conns:
                self.assertEqual(c.request().status, 200)
            # Least-loaded hand-off: 4 and 4, as each worker's title says.
            for p in pids:
                wait_for(lambda: "[4 conns]" in cmdline(p), what="worker %d with 4 conns" % p)
            whoami = [c.request("GET", "/whoami").body for c in conns]
            for body in whoami:
                self.assertIn(b'"pid":%d' % os.getpid(), body)
                self.assertIn(b'"uid":%d' % os.getuid(), body)
        finally:
            for c in conns:
                c.close()
        for p in pids:
            wait_for(lambda: "[0 conns]" in cmdline(p), what="worker %d idle" % p)

    def test_killed_worker_is_replaced_and_only_its_connections_notice(self):
        d = self.start(workers=2)
        pids = d.wait_workers(2)
        conns = [d.conn() for _ in range(4)]
        try:
            for c in conns:
                self.assertEqual(c.request().status, 200)
            for p in pids:
                wait_for(lambda: "[2 conns]" in cmdline(p), what="2 conns each")
            os.kill(pids[0], signal.SIGKILL)
            d.wait_log(r"worker \d \(pid %d\) killed by signal 9 \(SIGKILL\)" % pids[0])
            ok = failed = 0
            for c in conns:
                try:
                    ok += c.request().status == 200
                except OSError:
                    failed += 1
            self.assertEqual((ok, failed), (2, 2))
            new = d.wait_workers(2, exclude=[pids[0]])
            self.assertIn(pids[1], new)
            for _ in range(6):
                self.assertEqual(d.request().status, 200)
        finally:
            for c in conns:
                c.close()

    def test_crash_respawns(self):
        d = self.start(workers=2, service_args=["--enable-crash"])
        pids = d.wait_workers(2)
        other = d.conn()
        self.addCleanup(other.close)
        self.assertEqual(other.request().status, 200)
        crasher = d.conn()
        self.addCleanup(crasher.close)
        with self.assertRaises(OSError):
            crasher.request("POST", "/crash")
        d.wait_log(r"killed by signal 6 \(SIGABRT\)")
        self.assertEqual(other.request().status, 200)    # the other worker's client
        new = d.wait_workers(2)
        self.assertEqual(len(set(new) - set(pids)), 1)
        for _ in range(4):
            self.assertEqual(d.request().status, 200)

    def test_sigterm_finishes_requests_then_exits_0(self):
        d = self.start("--log-level", "debug", workers=2)
        idle = d.conn()
        self.addCleanup(idle.close)
        self.assertEqual(idle.request().status, 200)
        busy = d.conn()
        self.addCleanup(busy.close)
        # A request in flight: head and part of the body.
        busy.sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhe")
        time.sleep(0.1)
        t0 = time.monotonic()
        d.send_signal(signal.SIGTERM)
        d.wait_state("STOPPING=1")
        wait_for(lambda: not os.path.exists(d.sock_path), what="socket removed")
        # Once the workers have the DRAIN, the rest of the request comes.
        wait_for(lambda: len(re.findall(r"worker \d: draining\n", d.read_log())) == 2,
                 what="both workers draining")
        # A reload asked for now is refused, and the log says so.
        d.send_signal(signal.SIGHUP)
        d.wait_log(r"info supervisor: SIGHUP: stopping; no workers are replaced\n")
        busy.sock.sendall(b"llo")
        r = busy.read_response()
        self.assertEqual((r.status, r.body), (200, b"hello"))
        self.assertEqual(r.header("connection"), "close")
        self.assertEqual(d.proc.wait(5), 0)
        self.assertLess(time.monotonic() - t0, 3)
        self.assertEqual(idle.sock.recv(1), b"")   # the idle one was closed
        self.assertFalse(os.path.exists(d.sock_path + ".lock"))

    def test_sigterm_kills_workers_after_grace(self):
        d = self.start("--grace", "0.5", workers=1)
        stuck = d.conn()
        self.addCleanup(stuck.close)
        stuck.sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhe")
        time.sleep(0.1)
        t0 = time.monotonic()
        d.send_signal(signal.SIGINT)
        self.assertEqual(d.proc.wait(5), 0)
        self.assertLess(time.monotonic() - t0, 2.5)
        self.assertRegex(d.read_log(), r"after DRAIN \(--grace\): killing it")
        self.assertFalse(os.path.exists(d.sock_path))

    def test_sigusr_is_logged_and_changes_nothing(self):
        # By their default action they would end fdhttpd on the spot, with
        # no line said, its socket file and pidfile left behind.
        d = self.start(workers=1)
        pids = d.wait_workers(1)
        for sig in (signal.SIGUSR1, signal.SIGUSR2):
            d.send_signal(sig)
            d.wait_log(r"info supervisor: SIG%s: not used by fdhttpd; ignored"
                       % sig.name[3:])
        self.assertIsNone(d.proc.poll())
        self.assertEqual(d.request().body, b"ok")
        self.assertEqual(d.workers(), pids)
        self.assertEqual(d.stop(), 0)

    def test_log_lines_wait_for_room_in_a_nonblocking_stderr(self):
        """stderr is one open file fdhttpd shares with its workers, and a
        worker may set O_NONBLOCK on it.  A line written while it is full
        waits for the reader, as on a blocking stderr, not dropped."""
        r, w = os.pipe2(os.O_CLOEXEC)
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        d = self.start(workers=1, stderr=w)
        d.wait_workers(1)
        os.set_blocking(w, False)       # as a worker can, on the same open file
        os.set_blocking(r, False)
        filler = 0
        try:
            while True:
                filler += os.write(w, b"x" * 4096)
        except BlockingIOError:
            pass
        d.send_signal(signal.SIGUSR1)
        # fdhttpd meets the full pipe before the reader wakes up.
        time.sleep(0.2)
        got = b""
        deadline = time.monotonic() + 5
        while b"SIGUSR1" not in got and time.monotonic() < deadline:
            select.select([r], [], [], 0.1)
            try:
                got += os.read(r, 1 << 16)
            except BlockingIOError:
                pass
        self.assertGreaterEqual(len(got), filler)
        self.assertRegex(got[filler:].decode(errors="replace"),
                         r"info supervisor: SIGUSR1: not used by fdhttpd; ignored")
        # The lines of its stop go on to the reader too.
        done = threading.Event()

        def drain():
            while not done.is_set():
                select.select([r], [], [], 0.1)
                try:
                    os.read(r, 1 << 16)
                except BlockingIOError:
                    pass
        t = threading.Thread(target=drain)
        t.start()
        try:
            self.assertEqual(d.stop(), 0)
        finally:
            done.set()
            t.join()

    def test_workers_exit_when_the_supervisor_dies(self):
        d = self.start(workers=2)
        pids = d.wait_workers(2)
        c = d.conn()
        self.addCleanup(c.close)
        self.assertEqual(c.request().status, 200)
        d.send_signal(signal.SIGKILL)
        d.proc.wait(5)
        # Each drains: the idle keep-alive connection is closed, then it exits.
        self.assertEqual(c.sock.recv(1), b"")
        for p in pids:
            wait_for(lambda: not os.path.exists("/proc/%d/cmdline" % p)
                     or cmdline(p) == "", what="worker %d gone" % p)

    def test_sighup_replaces_every_worker_without_failing_a_request(self):
        d = self.start(workers=2)
        before = set(d.wait_workers(2))

        def rounds():
            time.sleep(0.2)
            for round_ in range(2):
                d.send_signal(signal.SIGHUP)
                wait_for(lambda: len(re.findall(r"draining: replaced", d.read_log()))
                         == 2 * (round_ + 1), what="round %d replaced" % round_)
                time.sleep(0.2)

        results = requests_during(rounds, 3, d.request, b"ok")
        self.assertEqual(results["failed"], [])
        self.assertGreater(results["ok"], 50)
        after = set(d.wait_workers(2, exclude=before))
        self.assertFalse(before & after)

    def test_busy_keep_alive_clients_lose_no_request_to_a_drain(self):
        """Regression: a drain (SIGHUP, --max-requests) closed idle keep-alive
        connections at once, a request their client had just sent unread in
        them: the client read the end instead of an answer.  Now a request
        already queued is answered (Connection: close), and one sent after
        the drain shut the connection's input fails to send, which the
        Python client (contrib/python) sends again on a new connection."""
        sys.path.insert(0, os.path.join(SOURCE_DIR, "contrib", "python"))
        import fdhttp  # noqa: E402

        for opts, hups in ((("--max-requests", "100"), 0), ((), 3)):
            with self.subTest(opts=opts, hups=hups):
                d = self.start(*opts, workers=2)
                d.wait_workers(2)

                def signals():
                    for _ in range(hups):
                        time.sleep(0.5)
                        d.send_signal(signal.SIGHUP)
                    time.sleep(0.5 if hups else 2)

                def keep_alive_client():
                    c = fdhttp.Connection(d.sock_path, timeout=10)
                    return lambda: c.request("POST", "/echo", body=b"hello")

                results = requests_during(signals, 8, keep_alive_client, b"hello",
                                          per_thread=True)
                self.assertEqual(results["failed"], [])
                self.assertGreater(results["ok"], 200)

    def test_a_connection_unused_past_the_grace_loses_no_request(self):
        """A connection opened before a SIGHUP and first used after the old
        worker was killed at the end of --grace: the Python client finds it
        ended before it sends (or, in the moment of the kill, has its first
        byte refused), and sends the request on a new connection, to the
        successor."""
        sys.path.insert(0, os.path.join(SOURCE_DIR, "contrib", "python"))
        import fdhttp  # noqa: E402

        d = self.start("--grace", "0.3", workers=1)
        (old,) = d.wait_workers(1)
        c = fdhttp.Connection(d.sock_path, timeout=10)
        self.addCleanup(c.close)
        c.connect()
        wait_for(lambda: "[1 conn]" in cmdline(old), what="the connection handed over")
        d.send_signal(signal.SIGHUP)
        d.wait_log(r"worker 1 \(pid %d\) .*killing it" % old)
        wait_for(lambda: not os.path.exists("/proc/%d" % old) or
                 "zombie" in open("/proc/%d/status" % old).read().lower(),
                 what="the old worker gone")
        r = c.request("POST", "/echo", body=b"late")
        self.assertEqual((r.status, r.body), (200, b"late"))

    def test_a_drain_during_a_handler_leaves_its_client_one_more_request(self):
        """A response made while the worker was being told to drain says
        keep-alive, for the worker reads the news only after it: its client
        may send another request, answered with Connection: close, rather
        than find the connection closed under it (SIGHUP: no request
        fails)."""
        for sig in (signal.SIGHUP, signal.SIGTERM):
            with self.subTest(sig=sig.name):
                d = self.start(workers=1)
                (w,) = d.wait_workers(1)

                def wchan():
                    with open("/proc/%d/wchan" % w) as f:
                        return f.read()
                if "epoll" not in wait_for(wchan, what="the worker's wchan"):
                    self.skipTest("/proc/PID/wchan does not name the wait here")
                c = Conn(d.sock_path)
                self.addCleanup(c.close)
                r, wr = os.pipe2(os.O_CLOEXEC)
                socket.send_fds(c.sock, [b"POST /fd/read HTTP/1.1\r\nHost: x\r\nX-FD: input\r\n"
                                         b"Content-Length: 0\r\n\r\n"], [r])
                os.close(r)
                # The handler polls the pipe until its end: the worker waits there.
                wait_for(lambda: wchan().startswith("poll_"), what="the handler's poll()")
                d.send_signal(sig)
                d.wait_log(r"worker 1 \(pid %d\) draining: " % w)
                time.sleep(0.1)         # DRAIN is in the worker's socket, unread
                os.write(wr, b"x")
                os.close(wr)
                first = c.read_response()
                self.assertEqual((first.status, first.body), (200, b"x"))
                # One that reaches the worker with the DRAIN, in one batch of
                # events, is answered first, keep-alive too; the next says close.
                for _ in range(3):
                    more = c.request()
                    self.assertEqual((more.status, more.body), (200, b"ok"))
                    if more.header("connection") == "close":
                        break
                else:
                    self.fail("no response said Connection: close")
                self.assertEqual(c.sock.recv(1), b"")
                c.close()
                if sig == signal.SIGTERM:
                    self.assertEqual(d.proc.wait(5), 0)

    def test_sighup_says_when_every_worker_is_replaced(self):
        # systemctl reload returns at once: the log is how an operator learns
        # that a new build serves everywhere, or that it is still being tried.
        d = self.start(workers=2)
        d.send_signal(signal.SIGHUP)
        d.wait_log(r"info supervisor: SIGHUP: all 2 workers replaced\n")
        log = d.read_log()
        self.assertEqual(len(re.findall(r"draining: replaced", log)), 2, log)
        self.assertLess(log.rindex("draining: replaced"), log.index("all 2 workers replaced"))
        d.send_signal(signal.SIGHUP)
        wait_for(lambda: d.read_log().count("all 2 workers replaced") == 2,
                 what="the second restart's end")
        one = self.start(workers=1)
        one.send_signal(signal.SIGHUP)
        one.wait_log(r"info supervisor: SIGHUP: replacing the worker\n")
        one.wait_log(r"info supervisor: SIGHUP: the worker replaced\n")

    def test_max_requests_recycles(self):
        d = self.start("--max-requests", "5", workers=1)
        first = d.wait_workers(1)[0]
        for i in range(22):
            r = d.request()
            self.assertEqual(r.status, 200, "request %d" % i)
        d.wait_log(r"answered \d+ requests \(--max-requests\): replacing it")
        wait_for(lambda: len(re.findall(r"\) ready\n", d.read_log())) >= 2,
                 what="a fresh worker ready")
        self.assertNotIn(first, d.wait_workers(1, exclude=[first]))

    def test_max_requests_bounds_the_connections_a_worker_is_handed(self):
        """The supervisor never sees a request: a worker that does not say
        it served --max-requests (a compromised one would not) is replaced
        once it has been handed twice as many connections.  Here the
        connections send nothing, so an honest worker reaches that too: it
        drains, serving each its first request, and the successor takes
        what comes next."""
        d = self.start("--max-requests", "3", "--grace", "30", workers=1)
        (old,) = d.wait_workers(1)
        quiet = [d.conn() for _ in range(6)]
        for c in quiet:
            self.addCleanup(c.close)
        d.wait_log(r"warn supervisor: worker 1 \(pid %d\) was handed 6 connections and has "
                   r"not said it answered --max-requests: replacing it" % old)
        d.wait_log(r"worker 1 \(pid %d\) draining: served --max-requests" % old)
        for c in quiet:
            r = c.request()
            self.assertEqual((r.status, r.header("connection")), (200, "close"))
        d.wait_log(r"worker 1 \(pid %d\) exited with status 0" % old)
        self.assertEqual(d.request().status, 200)

    def test_max_requests_keeps_no_connection_alive_past_n(self):
        """Regression: a worker past --max-requests went on serving its
        keep-alive connections, as fast as they asked, until its successor
        was ready.  The Nth request is the last its connection is kept alive
        for; the worker's idle connections close then, one yet to send its
        first request is served that one, and the successor serves the rest."""
        d = self.start("--max-requests", "5", workers=1)
        (first,) = d.wait_workers(1)
        idle, fresh, busy = d.conn(), d.conn(), d.conn()
        for c in (idle, fresh, busy):
            self.addCleanup(c.close)
        self.assertIsNone(idle.request().header("connection"))         # 1
        wait_for(lambda: "[3 conns]" in cmdline(first), what="three connections handed over")
        for _ in range(3):                                              # 2, 3, 4
            self.assertIsNone(busy.request().header("connection"))
        r = busy.request()                                              # 5
        self.assertEqual((r.status, r.header("connection")), (200, "close"))
        for c in (busy, idle):
            self.assertEqual(c.sock.recv(1), b"")
        r = fresh.request()
        self.assertEqual((r.status, r.header("connection")), (200, "close"))
        self.assertEqual(fresh.sock.recv(1), b"")
        d.wait_log(r"worker 1 \(pid %d\) answered 5 requests \(--max-requests\): replacing it"
                   % first)
        d.wait_log(r"worker 1 \(pid %d\) draining: served --max-requests" % first)
        d.wait_workers(1, exclude=[first])
        with d.conn() as c:
            for _ in range(3):
                self.assertIsNone(c.request().header("connection"))

    def test_backpressure_one_worker_four_conns(self):
        d = self.start("--max-conns", "4", workers=1)
        worker = d.wait_workers(1)[0]
        most = [0]
        done = threading.Event()

        def watch():
            while not done.is_set():
                m = re.search(r"\[(\d+) conns?\]", cmdline(worker))
                if m:
                    most[0] = max(most[0], int(m.group(1)))
                time.sleep(0.002)

        results = []

        def client():
            try:
                with Conn(d.sock_path, timeout=10) as c:
                    time.sleep(0.05)     # hold the connection a moment
                    r = c.request(headers=[("Connection", "close")])
                    results.append(r.status)
            except OSError as e:
                results.append(repr(e))

        w = threading.Thread(target=watch)
        w.start()
        threads = [threading.Thread(target=client) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        w.join()
        self.assertEqual(results, [200] * 20)
        self.assertEqual(most[0], 4)

    def test_fds_in_flight_over_the_limit_kill_no_worker(self):
        """A non-root supervisor's fds in flight (sent, not yet read) count
        against its RLIMIT_NOFILE: with both workers busy, queued connections
        make sendmsg fail with ETOOMANYREFS.  That is the supervisor's
        condition, not a broken worker: connections wait, accepting pauses,
        and no worker is killed (CONTRACT section 5)."""
        if os.geteuid() != 0 or shutil.which("setpriv") is None:
            self.skipTest("needs root and setpriv to run fdhttpd as nobody")
        nobody = pwd.getpwnam("nobody")
        tmp = tempfile.mkdtemp(prefix="fdhttpd-test-")
        os.chmod(tmp, 0o777)

        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))

        d = self.start("--no-sandbox", "--max-conns", "40", workers=2, tmpdir=tmp,
                       prefix=["setpriv", "--reuid=%d" % nobody.pw_uid,
                               "--regid=%d" % nobody.pw_gid, "--clear-groups"],
                       preexec_fn=low_limit)
        workers = d.wait_workers(2)
        busy = []
        for _ in range(2):          # one each: equal loads take turns
            rd, wr = os.pipe()
            c = Conn(d.sock_path, timeout=10)
            self.addCleanup(c.close)
            socket.send_fds(c.sock, [b"POST /fd/read HTTP/1.1\r\nHost: x\r\nX-FD: input\r\n"
                                     b"Content-Length: 0\r\n\r\n"], [rd])
            os.close(rd)
            busy.append((c, wr))
        time.sleep(0.3)             # both handlers wait on their pipes
        burst = []
        for _ in range(70):         # two fds in flight each, the connection and its pidfd
            c = Conn(d.sock_path, timeout=10)
            self.addCleanup(c.close)
            c.send_request(headers=[("Connection", "close")])
            burst.append(c)
        d.wait_log(r"Too many references")
        time.sleep(0.3)
        for c, wr in busy:
            os.close(wr)            # the handlers return
        for c, _ in busy:
            self.assertEqual(c.read_response().status, 200)
        for c in burst:
            self.assertEqual(c.read_response().status, 200)
        self.assertEqual(d.workers(), workers)
        log = d.read_log()
        self.assertNotIn("killing it", log)
        self.assertNotIn("control socket:", log)
        self.assertEqual(len(re.findall(r" warn supervisor: .*Too many references", log)), 1, log)

    def test_many_workers_under_a_low_soft_limit(self):
        """fdhttpd raises its soft RLIMIT_NOFILE to the hard one: 48 workers
        start under a soft limit of 48.  Regression: the supervisor ran out
        of descriptors, a child could not open /dev/null and exited 127, and
        that read as a SERVICE that could not be run."""
        def soft_48():
            resource.setrlimit(resource.RLIMIT_NOFILE, (48, 8192))

        d = self.start(workers=48, preexec_fn=soft_48)
        self.assertEqual(len(d.wait_workers(48)), 48)
        with open("/proc/%d/limits" % d.pid) as f:
            self.assertRegex(f.read(), r"Max open files +8192 +8192")
        self.assertEqual(d.request().status, 200)
        # The leak-check pass adds --no-sandbox, which warns of itself.
        log = re.sub(r".* warn supervisor: --no-sandbox: .*\n", "", d.read_log())
        self.assertNotRegex(log, r"warn|error")

    def test_a_limit_without_room_for_one_message_is_warned_of(self):
        """A worker's control message may carry 253 fds; fdhttpd under a
        limit that leaves less room than that beyond its own descriptors
        says so at start, with the limit that would do.  Under that limit
        it warns no more."""
        for nofile, warned in ((200, True), (341, False)):
            # --no-sandbox: a sandboxed worker's own limit is more than 341.
            d = self.start("--no-sandbox", workers=1,
                           preexec_fn=lambda n=nofile: resource.setrlimit(
                               resource.RLIMIT_NOFILE, (n, n)))
            d.wait_workers(1)
            self.assertEqual(d.request().status, 200)
            log = d.read_log()
            self.assertEqual("raise the limit to 341 or more" in log, warned, log)
            self.assertEqual(d.stop(), 0)

    def test_workers_beyond_the_hard_limit_are_refused_at_start(self):
        """Regression: fdhttpd started the workers it could, the next child
        found no descriptor for /dev/null and exited 127, and fdhttpd
        stopped saying the service could not be started."""
        path = os.path.join(tempfile.mkdtemp(prefix="fdhttpd-test-"), "s.sock")
        self.addCleanup(shutil.rmtree, os.path.dirname(path), True)
        status, err = run_fdhttpd("--socket", path, "--workers", "48", "--no-sandbox", "--",
                                  echo_path(), prefix=["prlimit", "--nofile=48:48"], timeout=10)
        self.assertEqual(status, 1, err)
        self.assertIn("--workers 48 needs about 182 descriptors", err)
        self.assertIn("RLIMIT_NOFILE of 48; lower --workers", err)
        self.assertNotIn("started", err)
        self.assertFalse(os.path.exists(path))

    def test_allow_uid_refused_with_403(self):
        d = self.start("--allow-uid", "12345", workers=1)
        r = d.request()
        self.assertEqual(r.status, 403)
        self.assertEqual(r.header("connection"), "close")
        # As the workers' own error answers say it.
        self.assertEqual(r.header("content-type"), "text/plain; charset=utf-8")
        self.assertEqual(r.body.count(b"\n"), 1)
        self.assertIn(b"uid %d" % os.getuid(), r.body)
        d.wait_log(r"refused pid %d uid %d" % (os.getpid(), os.getuid()))

    def test_refusals_are_logged_once_then_counted(self):
        # A local user connecting in a loop must not write a line per
        # attempt: journald's rate limit would then drop the lines that matter.
        cases = [(("--allow-uid", "12345"), 403, "info", "not in --allow-uid/--allow-gid"),
                 (("--max-conns-per-uid", "1"), 503, "warn", "over --max-conns-per-uid")]
        for opts, status, level, why in cases:
            with self.subTest(opts=opts):
                d = self.start(*opts, workers=1)
                # The connection that fills the uid's quota, or the first refused.
                with d.conn() as first:
                    self.assertEqual(first.request().status, 200 if status == 503 else status)
                    for _ in range(20):
                        self.assertEqual(d.request().status, status)
                    # Stopping writes the count of what was held back.
                    self.assertEqual(d.stop(), 0)
                log = d.read_log()
                self.assertEqual(len(re.findall(r"%s supervisor: refused pid \d+ uid" % level,
                                                log)), 1, log)
                self.assertIn("%s supervisor: refused %d more connections in the last 10 s: %s"
                              % (level, 19 if status == 503 else 20, why), log)
                d.cleanup()

    def test_allow_lists_admit(self):
        d = self.start("--allow-uid", "12345", "--allow-uid", str(os.getuid()), workers=1)
        self.assertEqual(d.request().status, 200)
        d.cleanup()
        d = self.start("--allow-uid", "12345", "--allow-gid", str(os.getgid()), workers=1)
        self.assertEqual(d.request().status, 200)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to change user")
    def test_user_runs_workers_as_that_user(self):
        nobody = pwd.getpwnam("nobody")
        d = self.start("--user", "nobody", workers=1)
        body = d.request("GET", "/sandbox").body.decode()
        self.assertIn('"uid":%d' % nobody.pw_uid, body)
        self.assertIn('"gid":%d' % nobody.pw_gid, body)
        self.assertEqual(os.stat("/proc/%d" % d.pid).st_uid, 0)    # the supervisor stays

    def test_max_conns_per_uid(self):
        d = self.start("--max-conns-per-uid", "2", workers=2)
        a, b = d.conn(), d.conn()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        self.assertEqual(a.request().status, 200)
        self.assertEqual(b.request().status, 200)
        r = d.request()
        self.assertEqual(r.status, 503)
        self.assertEqual(r.header("connection"), "close")
        a.close()
        # Once the worker has seen the close, there is room again.
        wait_for(lambda: d.request().status == 200, what="room after a close")
        self.assertEqual(b.request().status, 200)

    def _wait_conns(self, worker, n):
        wait_for(lambda: re.search(r"\[%d conns?\]" % n, cmdline(worker)),
                 what="the worker's title saying %d conns" % n)

    def test_close_held_back_does_not_count_against_the_uid(self):
        # Workers report ended connections in batches; at the cap the
        # supervisor must ask for them rather than refuse.
        d = self.start("--max-conns-per-uid", "3", workers=1)
        worker = d.wait_workers(1)[0]
        for _ in range(5):
            a, b, c = d.conn(), d.conn(), d.conn()
            for x in (a, b, c):
                self.assertEqual(x.request().status, 200)
            a.close()
            self._wait_conns(worker, 2)
            self.assertEqual(d.request().status, 200)     # the first try
            b.close()
            c.close()
            self._wait_conns(worker, 0)

    def test_successor_never_ready_is_killed_and_retried(self):
        # A rolling restart to a build whose init hangs: each successor is
        # killed at --start-timeout and tried again, the old worker serves
        # throughout, and once the build comes up the restart completes.
        tmp = tempfile.mkdtemp(prefix="fdhttpd-start-")
        self.addCleanup(shutil.rmtree, tmp, True)
        os.chmod(tmp, 0o755)            # workers run as nobody and look for the file
        hang = os.path.join(tmp, "hang")
        script = 'if [ -e "$0" ]; then exec sleep 3600; fi; exec "$1"'
        d = self.start("--start-timeout", "0.3", workers=1, service="/bin/sh",
                       service_args=("-c", script, hang, echo_path()))
        old = d.wait_workers(1)[0]
        open(hang, "w").close()
        d.send_signal(signal.SIGHUP)
        d.wait_log(r"worker 1 \(pid \d+\) not ready 300 ms after it started "
                   r"\(--start-timeout\): killing it")
        d.wait_log(r"worker 1 \(pid \d+\) killed by signal 9")
        self.assertEqual(d.request().status, 200)
        self.assertIn(old, d.workers())
        os.unlink(hang)
        wait_for(lambda: old not in d.workers(), what="the old worker replaced")
        self.assertEqual(d.request().status, 200)
        self.assertEqual(d.stop(), 0)

    def test_a_build_that_does_not_come_up_is_tried_in_one_slot(self):
        """Regression: while the first slot's successor waited out its
        backoff after dying, the next slot started a successor of the same
        broken build, and so on: replacements went one at a time only
        while they came up.  Now the other slots wait; the old workers
        serve, and the restart completes once the build comes up."""
        tmp = tempfile.mkdtemp(prefix="fdhttpd-broken-")
        self.addCleanup(shutil.rmtree, tmp, True)
        os.chmod(tmp, 0o755)            # workers run as nobody and look for the file
        broken = os.path.join(tmp, "broken")
        script = 'if [ -e "$0" ]; then exit 1; fi; exec "$1"'
        d = self.start(workers=2, service="/bin/sh",
                       service_args=("-c", script, broken, echo_path()))
        old = d.wait_workers(2)
        open(broken, "w").close()
        d.send_signal(signal.SIGHUP)
        d.wait_log(r"worker 1: starting again in 200 ms")
        after = d.read_log().split("SIGHUP: replacing all 2 workers")[1]
        self.assertEqual(set(re.findall(r"worker (\d) \(pid \d+\) started", after)), {"1"},
                         after)
        self.assertEqual(d.request().status, 200)
        os.unlink(broken)
        d.wait_log(r"SIGHUP: all 2 workers replaced")
        # The old ones drain and exit once their successors serve.
        wait_for(lambda: not set(d.workers()) & set(old), what="the old workers gone")

    def test_unanswered_flush_stalls_accepting_once(self):
        # At the cap the supervisor asks workers for the closes they hold
        # back and stops accepting until they answer, 100 ms at most.  A
        # worker that cannot answer (stopped here; a long handler alike)
        # must not cost that wait again on every attempt: a user at its
        # cap would otherwise slow every other client's accept to ten a
        # second.
        d = self.start("--max-conns-per-uid", "2", workers=2)
        pids = d.wait_workers(2)
        a, b = d.conn(), d.conn()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        self.assertEqual(a.request().status, 200)
        self.assertEqual(b.request().status, 200)
        os.kill(pids[0], signal.SIGSTOP)
        self.addCleanup(os.kill, pids[0], signal.SIGCONT)
        t0 = time.monotonic()
        for i in range(20):
            self.assertEqual(d.request().status, 503, "attempt %d" % i)
        # Twenty waits would be 2 s; one, and twenty refusals, far less.
        self.assertLess(time.monotonic() - t0, 1.0)

    def test_close_held_back_frees_a_full_worker(self):
        # The same for --max-conns: a full worker whose connection ended
        # takes the next one without a batch of closes to fill first.
        d = self.start("--max-conns", "1", workers=1)
        worker = d.wait_workers(1)[0]
        for i in range(5):
            a = d.conn()
            self.assertEqual(a.request().status, 200, "request %d" % i)
            a.close()
            self._wait_conns(worker, 0)

    def test_fd_counts_unchanged_after_10000_connections(self):
        d = self.start(workers=2)
        pids = d.wait_workers(2)
        for _ in range(20):
            d.request()

        def counts():
            return [fd_count(d.pid)] + [fd_count(p) for p in pids]

        time.sleep(0.1)
        before = counts()
        for i in range(10000):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(d.sock_path)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            s.close()
            self.assertTrue(data.startswith(b"HTTP/1.1 200 "), (i, data))
        self.assertEqual(d.workers(), pids)
        wait_for(lambda: counts() == before, what="fd counts back to %s (now %s)"
                 % (before, counts()))

    def test_workers_get_only_the_control_socket(self):
        """A stand-in SERVICE reports what a worker is started with (the
        sandboxed variant is in test_sandbox.py)."""
        tmp = self.tmpdir()
        report = os.path.join(tmp, "report")
        d = self.start("--no-sandbox", "--grace", "0.2", workers=1, wait_ready=False,
                       service=self.script(PROBE), env={"FDH_PROBE_REPORT": report})
        wait_for(lambda: os.path.exists(report), what="the probe's report")
        with open(report) as f:
            seen = dict(line.rstrip("\n").split("=", 1) for line in f)
        self.assertEqual(seen["FDHTTP_CONTROL_FD"], "3")
        self.assertEqual(seen["FDHTTP_WORKER_ID"], "1")
        self.assertIn("max-head=8192", seen["FDHTTP_LIMITS"])
        self.assertIn("max-conns=256", seen["FDHTTP_LIMITS"])
        self.assertEqual(seen["fds"], "0,1,2,3")
        self.assertEqual(seen["stdin"], "/dev/null")
        self.assertEqual(seen["fd3"], "seqpacket")
        self.assertEqual(seen["NOTIFY_SOCKET"], "")
        self.assertEqual(d.stop(), 0)

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="fdhttpd-test-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def script(self, text):
        path = os.path.join(self.tmpdir(), "service")
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, stat.S_IRWXU)
        return path

    def test_bad_control_messages_kill_only_that_worker(self):
        for kind, why in (("short", "shorter than a header"),
                          ("size", "wrong size for its type"),
                          ("version", "unknown version"),
                          ("type", "unexpected type"),
                          ("fd", "wrong fd count for its type"),
                          ("id", "CONN_CLOSED for a connection it does not hold")):
            with self.subTest(kind=kind):
                # Not a libfdhttp worker: it could never pass the sandbox check.
                d = Fdhttpd("--no-sandbox", "--grace", "0.2", workers=1, wait_ready=False,
                            service=self.script(LIAR), service_args=[kind])
                try:
                    d.wait_log(r"bad control message: %s; killing it" % re.escape(why))
                    d.wait_log(r"killed by signal 9 \(SIGKILL\)")
                    self.assertIsNone(d.proc.poll())
                    self.assertEqual(d.stop(), 0)
                finally:
                    d.cleanup()


# Reports what a worker is started with to $FDH_PROBE_REPORT, then waits.
PROBE = """#!%s
import os, socket, time
fd3 = socket.socket(fileno=3)
kind = "seqpacket" if fd3.type == socket.SOCK_SEQPACKET else str(fd3.type)
fd3.detach()
seen = {k: os.environ.get(k, "") for k in
        ("FDHTTP_CONTROL_FD", "FDHTTP_WORKER_ID", "FDHTTP_LIMITS", "NOTIFY_SOCKET")}
fds = []
for fd in sorted(int(x) for x in os.listdir("/proc/self/fd")):
    try:
        os.fstat(fd)        # the listing's own fd is closed by now
        fds.append(str(fd))
    except OSError:
        pass
seen["fds"] = ",".join(fds)
seen["stdin"] = os.readlink("/proc/self/fd/0")
seen["fd3"] = kind
report = os.environ["FDH_PROBE_REPORT"]
with open(report + ".tmp", "w") as f:
    for k, v in seen.items():
        f.write("%%s=%%s\\n" %% (k, v))
os.rename(report + ".tmp", report)
time.sleep(60)
""" % sys.executable

# Sends READY, then one malformed message of the kind named in argv[1].
LIAR = """#!%s
import os, socket, struct, sys, time
s = socket.socket(fileno=3)
s.send(struct.pack("=HHI", 1, 1, 0))              # READY
kind = sys.argv[1]
if kind == "short":
    s.send(b"\\x01\\x00")
elif kind == "size":
    s.send(struct.pack("=HHIQQ", 1, 2, 0, 1, 0))  # CONN_CLOSED, 8 bytes too long
elif kind == "version":
    s.send(struct.pack("=HHIQ", 9, 2, 0, 1))
elif kind == "type":
    s.send(struct.pack("=HHIQ", 1, 64, 0, 1))     # NEW_CONN is the supervisor's
elif kind == "fd":
    s.sendmsg([struct.pack("=HHIQ", 1, 2, 0, 1)],
              [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", 0))])
elif kind == "id":
    s.send(struct.pack("=HHIQ", 1, 2, 0, 12345))
time.sleep(60)
""" % sys.executable


if __name__ == "__main__":
    unittest.main(verbosity=2)
