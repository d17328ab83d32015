"""Faults: a worker at its RLIMIT_NOFILE, malloc failing in the request
path, workers killed or stopped in the middle of hand-offs, a pidfile on a
full disk, the socket's directory removed while serving.  Whatever happens,
nothing crashes, nothing hangs, no fd leaks, and every request accepted is
answered or its connection closed.
"""

import array
import os
import re
import resource
import selectors
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
from fdhttp_testlib import build_request, echo_path  # noqa: E402
from fdhttpd_testlib import (Fdhttpd, cmdline, fail_poll, mount_tmpfs, needs_sandbox,  # noqa: E402
                             run_fdhttpd, wait_for)
from hostile_testlib import (Baseline, Canary, connect, fd_count, outcome,  # noqa: E402
                             settled_fds, worker_pids)
from test_closer import PROMPT_S, lingering_tcp  # noqa: E402


def health(conn):
    conn.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    r = conn.read_response()
    return r.status, r.body


def head_with_fds(n):
    """A POST /echo with n fds named and half its body: its fds are held
    until the rest ("cd") comes."""
    names = ",".join("f%d" % i for i in range(n))
    return ("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nX-FD: %s\r\n\r\nab"
            % names).encode()


def limits_of(pid):
    """RLIMIT_NOFILE (soft, hard) of pid, from /proc."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no Max open files in /proc/%d/limits" % pid)


class FaultTest(unittest.TestCase):
    def start(self, *opts, **kwargs):
        d = Fdhttpd(*opts, **kwargs)
        self.addCleanup(d.cleanup)
        d.wait_workers(kwargs.get("workers", 2))
        return d

    def canary(self):
        c = Canary()
        self.addCleanup(c.close)
        return c

    def assert_clean_log(self, log):
        for bad in ("bad control message", "AddressSanitizer", "runtime error",
                    "LeakSanitizer"):
            self.assertNotIn(bad, log)

    # --- RLIMIT_NOFILE -----------------------------------------------------

    def test_worker_rlimit_fits_the_worst_case(self):
        """--max-conns 4 --max-fds 16: RLIMIT_NOFILE 4 x 18 + 317 = 389, and
        four connections each in the middle of a request with 16 fds, four
        more waiting behind them, are all served with every fd."""
        needs_sandbox(self)  # the sandbox sets that limit
        d = self.start("--max-conns", "4", "--max-fds", "16", workers=1)
        w = worker_pids(d)[0]
        self.assertEqual(limits_of(w), (389, 389))
        base = Baseline(d, "a worker full of requests with 16 fds")
        canary = self.canary()
        head = head_with_fds(16)
        conns = [connect(d.sock_path) for _ in range(8)]
        for c in conns:
            c.send(head, [canary.wr] * 16)
        wait_for(lambda: "[4 conns]" in cmdline(w), what="4 connections in the worker")
        for c in conns:
            c.send(b"cd")
        for c in conns:
            r = c.read_response()
            self.assertEqual((r.status, r.body, len(r.fds)), (200, b"abcd", 16))
            r.close_fds()
            c.close()
        self.assertTrue(canary.closed_everywhere())
        base.check(self)

    def test_fds_past_max_fds_near_the_limit_do_not_stall_the_worker(self):
        """A worker as full as its limits let it be (three connections each
        in the middle of a request with 16 fds) is sent 253 fds in one
        message, the last a TCP socket whose last close lingers for 30 s:
        the table has room for them all, the surplus goes to the closer, and
        the worker goes on serving at once.

        Regression: a read kept room for max-fds + 2 descriptors alone; the
        kernel released what the table could not take inside the worker's
        recvmsg(), and the socket's last close held the worker, and every
        connection on it, for the linger time."""
        needs_sandbox(self)  # the sandbox sets the limit
        d = self.start("--max-conns", "4", "--max-fds", "16", workers=1)
        w = worker_pids(d)[0]
        base = Baseline(d, "253 fds to a full worker")
        canary = self.canary()
        srv, peer, cli = lingering_tcp()
        self.addCleanup(srv.close)
        self.addCleanup(peer.close)
        head = head_with_fds(16)
        held = [connect(d.sock_path) for _ in range(3)]
        for c in held:
            c.send(head, [canary.wr] * 16)
        wait_for(lambda: "[3 conns]" in cmdline(w), what="3 connections in the worker")
        flood = connect(d.sock_path, timeout=PROMPT_S)
        wait_for(lambda: "[4 conns]" in cmdline(w), what="4 connections in the worker")
        # Our copy of the socket goes while the worker cannot read: its copy is the last.
        tcp = cli.detach()
        os.kill(w, signal.SIGSTOP)
        try:
            flood.sock.sendmsg([b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"],
                               [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                 array.array("i", [canary.wr] * 252 + [tcp]))])
            os.close(tcp)
        finally:
            os.kill(w, signal.SIGCONT)
        self.assertEqual(outcome(flood, PROMPT_S), 400)
        for c in held:
            c.sock.settimeout(PROMPT_S)
            c.send(b"cd")
            r = c.read_response()
            self.assertEqual((r.status, r.body, len(r.fds)), (200, b"abcd", 16))
            r.close_fds()
            c.close()
        flood.close()
        peer.close()                # the linger ends: the closer's close returns
        self.assertTrue(canary.closed_everywhere())
        base.check(self, timeout=10)

    def test_worker_at_rlimit_nofile_stops_reading_and_recovers(self):
        """A worker out of descriptors (here: started with RLIMIT_NOFILE 48,
        --no-sandbox keeps the supervisor's limit) stops reading, its
        connections and its control socket alike; once descriptors free up
        it serves every request with all its fds.

        Regression: the worker read NEW_CONN messages at its limit, the
        kernel dropped the connection's fds (MSG_CTRUNC), and the worker
        took that for a broken supervisor and exited with all its clients."""
        old = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, old[1]))
        try:
            d = self.start("--no-sandbox", "--max-conns", "64", "--max-fds", "4",
                           "--idle-timeout", "30", workers=1)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, old)
        w = worker_pids(d)[0]
        self.assertEqual(limits_of(w)[0], 48)
        base = Baseline(d, "a worker at RLIMIT_NOFILE")
        canary = self.canary()
        # Idle connections, a connection and (Linux 6.5+) a pidfd each: 60
        # of them are more than 48 descriptors hold.
        idle = [connect(d.sock_path) for _ in range(60)]
        wait_for(lambda: fd_count(w) > 40, what="the worker near its limit")
        reqs = []
        for _ in range(5):
            c = connect(d.sock_path)
            c.send(build_request("POST", "/echo", b"fds", xfd="a,b,c,d"), [canary.wr] * 4)
            reqs.append(c)
        # Short of descriptors, nothing is read: no answer, no truncation.
        sel = selectors.DefaultSelector()
        for c in reqs:
            sel.register(c.sock, selectors.EVENT_READ)
        self.assertEqual(sel.select(0.5), [])
        sel.close()
        self.assertLessEqual(fd_count(w), 48)
        for c in idle:
            c.close()
        for c in reqs:
            r = c.read_response()
            self.assertEqual((r.status, r.body, sorted(r.fds)), (200, b"fds", list("abcd")))
            r.close_fds()
            c.close()
        self.assertTrue(canary.closed_everywhere())
        base.check(self)
        self.assertEqual(d.stop(), 0)
        self.assert_clean_log(d.read_log())

    # --- malloc failures ---------------------------------------------------

    def failing_echo(self, env):
        """fdhttp-echo alone with the failmalloc shim; returns (proc, sock, log)."""
        so = os.environ.get("FDH_FAILMALLOC_SO")
        if not so:
            self.skipTest("FDH_FAILMALLOC_SO is not set (ctest sets it)")
        tmp = tempfile.mkdtemp(prefix="fdh-faults-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "s.sock")
        log = os.path.join(tmp, "stderr")
        asan = os.environ.get("ASAN_OPTIONS", "")
        full = dict(os.environ, LD_PRELOAD=so, FDH_FAILMALLOC="1",
                    ASAN_OPTIONS=(asan + ":" if asan else "") + "verify_asan_link_order=0",
                    **env)
        with open(log, "wb") as f:
            proc = subprocess.Popen([echo_path(), "--socket", path], stdin=subprocess.DEVNULL,
                                    stdout=f, stderr=f, env=full)
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
        wait_for(lambda: os.path.exists(path) or proc.poll() is not None, timeout=10,
                 what="fdhttp-echo listening")
        self.assertIsNone(proc.poll(), "fdhttp-echo did not start")
        return proc, path, log

    def stop_echo(self, proc, log):
        """SIGTERM; returns (calls, failed) as the shim counted them."""
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(10)
        with open(log, "rb") as f:
            text = f.read().decode(errors="replace")
        self.assertEqual(rc, 0, text)
        self.assert_clean_log(text)
        m = re.search(r"failmalloc: (\d+) calls, (\d+) failed", text)
        self.assertIsNotNone(m, text)
        return int(m.group(1)), int(m.group(2))

    def exchange(self, path, canary, seen):
        """Requests down every path that allocates: a keep-alive request,
        a request and its fds over two reads, a response too large for the
        socket, an fd made by the handler, a refusal.  Each must get its
        answer, a 500 or 503, or a close."""
        ok = {"health": (200,), "split": (200,), "large": (200,), "memfd": (200,),
              "bad": (400,)}
        body = b"L" * (600 * 1024)
        script = [
            ("health", [(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", [])]),
            ("split", [(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
                        b"X-FD: a,b\r\n\r\nsp", [canary.wr, canary.wr]), (b"lit!", [])]),
            (None, []),
            ("large", [(build_request("POST", "/echo", body), [])]),
            (None, []),
            ("memfd", [(build_request("POST", "/fd/memfd", b"abc"), [])]),
            ("bad", [(b"GET /health HTTP/1.1\nHost: x\n\n", [])]),
        ]
        c = connect(path)
        for what, parts in script:
            if what is None:                # a fresh connection from here
                c.close()
                c = connect(path)
                continue
            try:
                for i, (data, fds) in enumerate(parts):
                    if i:
                        time.sleep(0.02)    # a second read for the server
                    c.send(data, fds)
            except (BrokenPipeError, ConnectionResetError):
                pass                        # refused before the end: its answer may be there
            c.sock.settimeout(5)
            try:
                r = c.read_response()
                got = r.status
                if what == "large" and got == 200:
                    self.assertEqual(r.body, body)
                r.close_fds()
            except (EOFError, ConnectionResetError):
                got = "closed"
            seen.append((what, got))
            if got == "closed" or r.closes:
                c.close()
                c = connect(path)
        c.close()
        for what, got in seen:
            self.assertIn(got, ok[what] + (500, 503, "closed"), what)

    def serves_again(self, path):
        for _ in range(5):
            c = connect(path)
            try:
                if health(c) == (200, b"ok"):
                    return True
            except (EOFError, ConnectionResetError, BrokenPipeError):
                pass
            finally:
                c.close()
        return False

    def test_malloc_failure_at_each_point_of_the_request_path(self):
        """The k-th allocation after start-up fails, for every k the
        exchange makes: never a crash, a leak or a hang."""
        results = {}
        k = 0
        while True:
            canary = self.canary()
            proc, path, log = self.failing_echo({"FDH_FAILMALLOC_AFTER": str(k),
                                                 "FDH_FAILMALLOC_COUNT": "1"})
            idle = settled_fds([proc.pid])[proc.pid]
            seen = []
            self.exchange(path, canary, seen)
            self.assertTrue(self.serves_again(path), "allocation %d: not serving after" % k)
            self.assertTrue(canary.closed_everywhere(),
                            "allocation %d: a request's fd is still open" % k)
            self.assertEqual(settled_fds([proc.pid])[proc.pid], idle, "allocation %d" % k)
            calls, failed = self.stop_echo(proc, log)
            results[k] = [s for s in seen if s[1] not in (200, 400)]
            if failed == 0 or k >= 200:
                break
            k += 1
        sys.stderr.write("%d allocations in the request path failed one at a time; "
                         "what clients saw:\n" % k)
        for i in sorted(results):
            sys.stderr.write("  %3d: %s\n" % (i, results[i] or "(none: it came after the "
                             "exchange, or on a path that copes)"))
        self.assertGreater(k, 3)

    def test_malloc_failure_storm(self):
        """One allocation in ten fails while 8 clients make mixed requests."""
        canary = self.canary()
        proc, path, log = self.failing_echo({"FDH_FAILMALLOC_P": "0.1",
                                             "FDH_FAILMALLOC_SEED": "6"})
        idle = settled_fds([proc.pid])[proc.pid]
        seen = []
        threads = [threading.Thread(target=self.storm_client, args=(path, canary, seen, i))
                   for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertTrue(canary.closed_everywhere())
        self.assertEqual(settled_fds([proc.pid])[proc.pid], idle)
        calls, failed = self.stop_echo(proc, log)
        counts = {}
        for s in seen:
            counts[s] = counts.get(s, 0) + 1
        sys.stderr.write("storm: %d allocations, %d failed; outcomes %s\n"
                         % (calls, failed, counts))
        self.assertGreater(failed, 10)
        self.assertEqual(set(counts) - {200, 500, 503, "closed"}, set())
        self.assertGreater(counts.get(200, 0), len(seen) // 2)

    def storm_client(self, path, canary, seen, seed):
        c = None
        for i in range(150):
            if c is None:
                c = connect(path)
            kind = (i + seed) % 4
            try:
                if kind == 0:
                    c.send(build_request("POST", "/echo", b"s" * 300, xfd="a"), [canary.wr])
                elif kind == 1:
                    c.send(build_request("POST", "/echo", b"m" * 200000))
                elif kind == 2:
                    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
                    c.send(b"cd")
                else:
                    c.send(build_request("POST", "/fd/memfd", b"abc"))
                got = outcome(c)
            except (BrokenPipeError, ConnectionResetError):
                got = "closed"
            seen.append(got)
            if got == "closed" or got != 200:
                c.close()
                c = None
        if c is not None:
            c.close()

    # --- workers killed and stopped ------------------------------------------

    def test_worker_killed_during_hand_offs(self):
        """Workers SIGKILLed while new connections pour in: every client is
        answered or sees its connection closed, none waits forever, and the
        supervisor holds no fd and counts no connection of the dead."""
        d = self.start("--max-conns-per-uid", "100", workers=2)
        sup_fds = settled_fds([d.pid])[d.pid]
        stop = threading.Event()
        results = []

        def client():
            while not stop.is_set():
                try:
                    c = connect(d.sock_path, timeout=5)
                except OSError as e:
                    results.append("connect: %s" % e)
                    continue
                try:
                    c.send(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    results.append(outcome(c))
                except (BrokenPipeError, ConnectionResetError):
                    results.append("closed")
                except socket.timeout:
                    results.append("hang")
                c.close()

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        killed = []
        try:
            for i in range(6):
                time.sleep(0.25)
                pids = d.wait_workers(2, exclude=killed, timeout=10)
                victim = pids[i % 2]
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)
            time.sleep(0.25)
        finally:
            stop.set()
            for t in threads:
                t.join()
        counts = {}
        for r in results:
            counts[r] = counts.get(r, 0) + 1
        sys.stderr.write("6 workers killed under load: %s\n" % counts)
        self.assertEqual(set(counts) - {200, "closed"}, set())
        self.assertGreater(counts.get(200, 0), 100)
        new = d.wait_workers(2, exclude=killed, timeout=10)
        wait_for(lambda: all("[0 conns]" in cmdline(p) for p in new), what="idle workers")
        self.assertEqual(settled_fds([d.pid])[d.pid], sup_fds)
        # Connections of the dead are not counted against the uid any more:
        # 100 at once are all admitted.
        conns = [connect(d.sock_path) for _ in range(100)]
        for c in conns:
            self.assertEqual(health(c), (200, b"ok"))
            c.close()
        self.assertEqual(d.stop(), 0)
        self.assert_clean_log(d.read_log())

    def test_stopped_worker_does_not_stop_the_supervisor(self):
        """A SIGSTOPped worker reads nothing, its control socket included:
        the supervisor gives it no more than --max-conns and serves through
        the other; after SIGCONT it answers what it was given."""
        d = self.start("--max-conns", "8", workers=2)
        base = Baseline(d, "a stopped worker")
        stopped, other = worker_pids(d)
        os.kill(stopped, signal.SIGSTOP)
        self.addCleanup(lambda: d.proc.poll() is None and os.kill(stopped, signal.SIGCONT))
        sel = selectors.DefaultSelector()
        conns = []
        for _ in range(40):
            c = connect(d.sock_path)
            c.send(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            conns.append(c)
            sel.register(c.sock, selectors.EVENT_READ, c)
        answered = []
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and len(answered) < 40:
            for key, _ in sel.select(0.1):
                sel.unregister(key.fileobj)
                answered.append(key.data)
        stuck = [c for c in conns if c not in answered]
        for c in answered:
            self.assertEqual(outcome(c), 200)
            c.close()
        sys.stderr.write("stopped worker: %d of 40 connections wait for it\n" % len(stuck))
        self.assertLessEqual(len(stuck), 8)
        # Meanwhile everyone else is served at once.
        for _ in range(20):
            t = time.monotonic()
            c = connect(d.sock_path)
            self.assertEqual(health(c), (200, b"ok"))
            c.close()
            self.assertLess(time.monotonic() - t, 1.0)
        wait_for(lambda: "[0 conns]" in cmdline(other), what="the other worker idle")
        os.kill(stopped, signal.SIGCONT)
        for c in stuck:
            self.assertEqual(outcome(c), 200)
            c.close()
        base.check(self)
        self.assertEqual(d.stop(), 0)
        self.assert_clean_log(d.read_log())

    def test_stopped_worker_is_killed_at_the_end_of_grace(self):
        """SIGTERM with a SIGSTOPped worker holding a client mid-request:
        the supervisor kills it after --grace and exits 0; the client sees
        its connection closed instead of waiting forever."""
        d = self.start("--grace", "1", workers=2)
        a, b = connect(d.sock_path), connect(d.sock_path)
        self.assertEqual(health(a), (200, b"ok"))
        self.assertEqual(health(b), (200, b"ok"))
        victim = worker_pids(d)[0]
        os.kill(victim, signal.SIGSTOP)
        for c in (a, b):
            c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhe")
        t0 = time.monotonic()
        d.send_signal(signal.SIGTERM)
        self.assertEqual(d.proc.wait(5), 0)
        self.assertLess(time.monotonic() - t0, 3)
        self.assertRegex(d.read_log(), r"after DRAIN \(--grace\): killing it")
        for c in (a, b):
            c.sock.settimeout(2)
            try:
                c.send(b"llo")
                got = outcome(c, timeout=2)
            except (BrokenPipeError, ConnectionResetError):
                got = "closed"
            self.assertIn(got, (200, "closed"))
            c.close()

    # --- a fatal error while serving ---------------------------------------

    def test_fatal_error_while_serving_stops_as_sigterm_would(self):
        """Regression: a fatal error at run time exited at once, leaving the
        socket file, its lock and the pidfile behind, and the workers to
        finish unwatched.  Here poll() fails (EINVAL: RLIMIT_NOFILE lowered
        under the number of pollfds): fdhttpd exits 1, but first drains the
        workers, kills the one still mid-request at the end of --grace and
        removes what it created."""
        tmp = tempfile.mkdtemp(prefix="fdh-fatal-")
        self.addCleanup(shutil.rmtree, tmp, True)
        pidfile = os.path.join(tmp, "fdhttpd.pid")
        d = self.start("--grace", "1", "--pidfile", pidfile, workers=2, tmpdir=tmp)
        busy = connect(d.sock_path)
        self.addCleanup(busy.close)
        busy.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhe")
        worker = wait_for(lambda: [p for p in worker_pids(d)
                                   if re.search(r"\[1 conns?\]", cmdline(p))],
                          what="a worker holding the request")[0]
        idle = [p for p in worker_pids(d) if p != worker][0]
        fail_poll(d.pid, d.read_log)
        t0 = time.monotonic()
        self.assertEqual(d.proc.wait(10), 1)
        self.assertGreater(time.monotonic() - t0, 0.5)      # --grace was waited for
        log = d.read_log()
        self.assertRegex(log, r"worker \d \(pid %d\) exited with status 0" % idle)
        self.assertRegex(log, r"worker \d \(pid %d\) still running 1000 ms after DRAIN "
                              r"\(--grace\): killing it" % worker)
        self.assertRegex(log, r"worker \d \(pid %d\) killed by signal 9" % worker)
        self.assertEqual(outcome(busy, timeout=2), "closed")
        for pid in (worker, idle):
            self.assertFalse(os.path.exists("/proc/%d" % pid), "worker %d left running" % pid)
        self.assertEqual(sorted(os.listdir(tmp)), ["fdhttpd.log", "notify"])
        self.assert_clean_log(log)

    # --- the filesystem ---------------------------------------------------

    def test_pidfile_on_a_full_disk_refuses_to_start(self):
        """Regression: the pidfile's write failed with ENOSPC, was logged
        as a warning, and fdhttpd ran on without a pidfile."""
        tmp = tempfile.mkdtemp(prefix="fdh-full-")
        self.addCleanup(shutil.rmtree, tmp, True)
        mnt = os.path.join(tmp, "full")
        sockdir = os.path.join(tmp, "sock")
        os.mkdir(mnt)
        os.mkdir(sockdir)
        mount_tmpfs(self, mnt, "4k")
        fd = os.open(os.path.join(mnt, "fill"), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC)
        try:
            while os.write(fd, b"\0" * 1024) > 0:
                pass
        except OSError:
            pass                                    # full
        os.close(fd)
        pidfile = os.path.join(mnt, "fdhttpd.pid")
        sock = os.path.join(sockdir, "s.sock")
        rc, err = run_fdhttpd("--socket", sock, "--workers", "1", "--pidfile", pidfile,
                              "--", echo_path())
        self.assertEqual(rc, 1, err)
        self.assertIn("%s: No space left on device; refusing to start" % pidfile, err)
        self.assertNotIn("worker", err)             # none was started
        self.assertEqual(os.listdir(sockdir), [])   # no socket, no lock
        self.assertFalse(os.path.exists(pidfile))

    def test_socket_directory_removed_while_serving(self):
        tmp = tempfile.mkdtemp(prefix="fdh-rmdir-")
        self.addCleanup(shutil.rmtree, tmp, True)
        sockdir = os.path.join(tmp, "run")
        os.mkdir(sockdir)
        d = self.start(workers=2, socket_path=os.path.join(sockdir, "s.sock"))
        conns = [connect(d.sock_path) for _ in range(4)]
        for c in conns:
            self.assertEqual(health(c), (200, b"ok"))
        base = Baseline(d, "socket directory removed", idle=False)
        shutil.rmtree(sockdir)
        for _ in range(10):
            for c in conns:
                self.assertEqual(health(c), (200, b"ok"))
        base.check(self)
        t0 = time.monotonic()
        self.assertEqual(d.stop(), 0)
        self.assertLess(time.monotonic() - t0, 3)
        for c in conns:
            self.assertEqual(outcome(c), "closed")      # idle: closed by the drain
            c.close()
        log = d.read_log()
        self.assert_clean_log(log)
        self.assertNotRegex(log, r" error supervisor: ")
        self.assertRegex(log, r"info supervisor: stopped")


if __name__ == "__main__":
    unittest.main(verbosity=2)
