"""fds whose last close() waits, sent to fdhttpd and to a worker (CONTRACT
sections 3 and 5: bad input never causes a hang).

The fd is a TCP socket with SO_LINGER {1, 30} and unsent data (its peer's
window is full): closing the last copy waits up to 30 s.  The sender's copy
is closed while the receiver is stopped (SIGSTOP), so that the receiver's
close is the last.  Within 2 s the receiver must still answer others and
stop on SIGTERM; its closer process holds the fd meanwhile, and once the
linger ends (the TCP peer resets) nothing is left open.

A close that never ends (a linger of an hour, a peer that never reads)
holds up the fds handed to the closer after it for a bounded time only: the
closer kills the process stuck in it, and another closes the rest.
"""

import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
import types
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fdhttp_testlib import settled_fd_count  # noqa: E402
from fdhttpd_testlib import (LEAK_CHECK, Conn, Fdhttpd, closers, cmdline,  # noqa: E402
                             fd_count, runners, wait_for)

LINGER_S = 30
# A linger no one can sit out: only the closer's kill ends the wait.
LINGER_FOREVER_S = 3600
# How long the closer lets a close go on before it kills the process in it
# (RUNNER_STUCK_MS, src/lib/closer.c).
RUNNER_STUCK_S = 1.0
PING_WITH_FD = b"POST /ping HTTP/1.1\r\nHost: x\r\nX-FD: a\r\nContent-Length: 4\r\n\r\nping"
PROMPT_S = 2.0
# The uid --allow-uid admits: not ours, so that we are refused.
OTHER_UID = 65534


def lingering_tcp(linger_s=LINGER_S):
    """(listener, accepted peer, client): closing the client's last copy
    waits linger_s, until the peer is closed (which resets it)."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    cli = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    cli.connect(srv.getsockname())
    peer, _ = srv.accept()          # never read: its window closes
    cli.setblocking(False)
    try:
        while True:
            cli.send(b"x" * 65536)
    except BlockingIOError:
        pass
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, linger_s))
    return srv, peer, cli


def send_stopped(pid, sock, data, fd):
    """Sends data with fd while pid is stopped, and closes our copy first:
    the copy pid receives is the last."""
    os.kill(pid, signal.SIGSTOP)
    try:
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))])
        os.close(fd)                # not the last: the message holds one
    finally:
        os.kill(pid, signal.SIGCONT)


def closed_within(sock, seconds):
    """Whether sock's other end is closed within seconds: EOF after the data
    still on its way, or a reset."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


def send_fd(sock, data, fd):
    sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))])


# A compromised worker, or one that ends connections at once: every
# connection it is handed, it closes on receipt and reports closed.
CLOSE_AT_ONCE = """#!%s
import os, socket, struct
HDR = "=HHI"
s = socket.socket(fileno=3)
s.send(struct.pack(HDR, 1, 1, 0))                           # READY
while True:
    msg, fds, _, _ = socket.recv_fds(s, 64, 4)
    if not msg:
        break
    for fd in fds:
        os.close(fd)
    _, type_, _ = struct.unpack_from(HDR, msg)
    if type_ == 64:                                         # NEW_CONN: CONN_CLOSED
        s.send(struct.pack(HDR + "Q", 1, 2, 0, struct.unpack_from("=Q", msg, 8)[0]))
    elif type_ == 65:                                       # DRAIN
        break
"""


def health_within(path, seconds):
    t0 = time.monotonic()
    with Conn(path, timeout=seconds) as c:
        r = c.request("GET", "/health")
    return r.status, time.monotonic() - t0


class CloserTest(unittest.TestCase):
    def start(self, *opts, workers=1):
        d = Fdhttpd(*opts, workers=workers)
        self.addCleanup(d.cleanup)
        d.wait_workers(workers)
        return d

    def linger(self, linger_s=LINGER_S):
        srv, peer, cli = lingering_tcp(linger_s)
        self.addCleanup(srv.close)
        self.addCleanup(peer.close)
        return srv, peer, cli

    def assert_serves_then_stops(self, d, peer):
        """Another connection is answered promptly; then, the linger ended,
        a prompt stop."""
        status, took = health_within(d.sock_path, PROMPT_S)
        self.assertEqual(status, 200)
        self.assertLess(took, PROMPT_S)
        peer.close()
        self.assert_stops_promptly(d)

    def assert_confined_holding_sockets(self, pid, n):
        with open("/proc/%d/status" % pid) as f:
            status = f.read()
        self.assertIn("Seccomp:\t%d\n" % (0 if LEAK_CHECK else 2), status)
        if not LEAK_CHECK:
            self.assertIn("NoNewPrivs:\t1\n", status)
        fds = os.listdir("/proc/%d/fd" % pid)
        self.assertEqual(len(fds), n)
        for fd in fds:
            self.assertTrue(os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"))

    def kept_pairs(self, n):
        """n socket pairs: (ours, theirs); EOF on ours says theirs was closed."""
        pairs = [socket.socketpair() for _ in range(n)]
        for mine, theirs in pairs:
            self.addCleanup(mine.close)
            self.addCleanup(theirs.close)
        return pairs

    def assert_closed_promptly(self, pairs, peer):
        """Within the closer's bound, the fds handed to it after the stuck
        one are closed, then the stuck socket itself leaves every process
        (its peer, read at last, sees the data to the end and EOF)."""
        for mine, _ in pairs:
            self.assertTrue(closed_within(mine, RUNNER_STUCK_S + 3))
        self.assertTrue(closed_within(peer, 5))

    def assert_stops_promptly(self, d):
        t0 = time.monotonic()
        rc = d.stop(timeout=10)
        self.assertEqual(rc, 0)
        self.assertLess(time.monotonic() - t0, PROMPT_S)

    def refuse_with(self, d, fd):
        """A client fdhttpd refuses sends fd with a request, its own copy
        closed while fdhttpd is stopped, so that fdhttpd's is the last."""
        refused = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(refused.close)
        refused.settimeout(PROMPT_S)
        refused.connect(d.sock_path)
        self.assertIn(b" 403 ", refused.recv(4096))   # answered at accept
        send_stopped(d.pid, refused, b"GET /health HTTP/1.1\r\nX-FD: a\r\n\r\n", fd)
        time.sleep(0.3)             # read, and its fd handed to the closer

    def test_refused_client_cannot_freeze_the_supervisor(self):
        root = os.geteuid() == 0
        d = self.start("--allow-uid", str(OTHER_UID), *(["--mode", "0666"] if root else []))
        base = fd_count(d.pid)
        _, peer, cli = self.linger()
        self.refuse_with(d, cli.detach())

        # Others are still answered: a refused client, and one allowed.
        with Conn(d.sock_path, timeout=PROMPT_S) as c:
            c.send_request("GET", "/health")
            self.assertEqual(c.read_response().status, 403)
        if root:
            os.chmod(d.tmpdir, 0o755)   # the allowed uid reaches the socket
            pid = os.fork()
            if pid == 0:
                try:
                    os.setgroups([])
                    os.setresgid(OTHER_UID, OTHER_UID, OTHER_UID)
                    os.setresuid(OTHER_UID, OTHER_UID, OTHER_UID)
                    status, took = health_within(d.sock_path, PROMPT_S)
                    os._exit(0 if status == 200 and took < PROMPT_S else 1)
                except BaseException:
                    os._exit(2)
            self.assertEqual(os.waitpid(pid, 0)[1], 0)

        # The linger ends when the peer resets: nothing is left open.
        peer.close()
        wait_for(lambda: fd_count(d.pid) == base, timeout=5,
                 what="fdhttpd's fds back to %d" % base)
        self.assert_stops_promptly(d)

    def test_refused_client_and_sigterm(self):
        """SIGTERM while the closer is still in the lingering close."""
        d = self.start("--allow-uid", str(OTHER_UID))
        _, _, cli = self.linger()
        self.refuse_with(d, cli.detach())
        self.assert_stops_promptly(d)

    def test_request_fd_cannot_freeze_a_worker(self):
        d = self.start()
        (worker,) = d.workers()
        # One thread: the closer is a child, confined by a filter of its
        # own where the worker is sandboxed (the leak pass runs workers
        # with --no-sandbox, and their closers as they run), and holding
        # nothing of the worker's but its socket.
        self.assertEqual(len(os.listdir("/proc/%d/task" % worker)), 1)
        (closer,) = closers(worker)
        self.assertEqual(cmdline(closer), "fdhttpd: closer of worker 1")
        (sup_closer,) = closers(d.pid)
        self.assertEqual(cmdline(sup_closer), "fdhttpd: closer of the supervisor")
        # Its runner, which does the closes, likewise, and holds nothing but
        # its own socket; the closer holds that one's other end besides.
        (runner,) = runners(closer)
        self.assertEqual(cmdline(runner), "fdhttpd: closer of worker 1 (runner)")
        self.assert_confined_holding_sockets(closer, 2)
        self.assert_confined_holding_sockets(runner, 1)
        with Conn(d.sock_path) as warm:
            self.assertEqual(warm.request("GET", "/health").status, 200)
        # Once the warm-up connection's socket and pidfd are closed.
        base = settled_fd_count(types.SimpleNamespace(fd_count=lambda: fd_count(worker)))
        _, peer, cli = self.linger()
        a = Conn(d.sock_path)
        self.addCleanup(a.close)
        # /ping does not take its fd: the engine closes it after the handler.
        send_stopped(worker, a.sock,
                     b"POST /ping HTTP/1.1\r\nHost: x\r\nX-FD: a\r\nContent-Length: 4\r\n\r\nping",
                     cli.detach())
        r = a.read_response()
        self.assertEqual((r.status, r.body), (200, b"pong"))

        # Another connection to the same worker, and the first one again.
        status, took = health_within(d.sock_path, PROMPT_S)
        self.assertEqual(status, 200)
        self.assertLess(took, PROMPT_S)
        a.send_request("GET", "/health")
        self.assertEqual(a.read_response().status, 200)
        a.close()

        peer.close()
        wait_for(lambda: fd_count(worker) == base, timeout=5,
                 what="the worker's fds back to %d" % base)
        self.assert_stops_promptly(d)

    def test_endless_close_in_a_worker(self):
        """A request fd whose close never ends: the worker's closer kills
        the process stuck in it, another takes its place, and the fds the
        worker handed over after it are closed within the bound."""
        d = self.start()
        (worker,) = d.workers()
        (closer,) = closers(worker)
        (runner,) = runners(closer)
        with Conn(d.sock_path) as warm:
            self.assertEqual(warm.request("GET", "/health").status, 200)
        base = settled_fd_count(types.SimpleNamespace(fd_count=lambda: fd_count(worker)))
        _, peer, cli = self.linger(LINGER_FOREVER_S)
        a = Conn(d.sock_path)
        self.addCleanup(a.close)
        send_stopped(worker, a.sock, PING_WITH_FD, cli.detach())
        self.assertEqual(a.read_response().status, 200)
        # Sockets go to the closer, behind the stuck one.
        pairs = self.kept_pairs(8)
        for _, theirs in pairs:
            send_fd(a.sock, PING_WITH_FD, theirs.fileno())
            theirs.close()
            self.assertEqual(a.read_response().status, 200)
        self.assert_closed_promptly(pairs, peer)

        status, took = health_within(d.sock_path, PROMPT_S)
        self.assertEqual(status, 200)
        self.assertLess(took, PROMPT_S)
        a.close()
        (new_runner,) = wait_for(lambda: [p for p in runners(closer) if p != runner] or None,
                                 timeout=5, what="a runner in place of the stuck one")
        wait_for(lambda: runners(closer) == [new_runner], timeout=5,
                 what="the stuck runner reaped")
        self.assertEqual(cmdline(new_runner), "fdhttpd: closer of worker 1 (runner)")
        self.assert_confined_holding_sockets(closer, 2)
        self.assert_confined_holding_sockets(new_runner, 1)
        wait_for(lambda: fd_count(worker) == base, timeout=5,
                 what="the worker's fds back to %d" % base)
        self.assert_stops_promptly(d)

    def test_endless_close_in_the_supervisor(self):
        """The same, through refused connections to fdhttpd."""
        d = self.start("--allow-uid", str(OTHER_UID))
        base = fd_count(d.pid)
        _, peer, cli = self.linger(LINGER_FOREVER_S)

        def refused():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.addCleanup(s.close)
            s.settimeout(PROMPT_S)
            s.connect(d.sock_path)
            self.assertIn(b" 403 ", s.recv(4096))
            return s

        request = b"GET /health HTTP/1.1\r\nX-FD: a\r\n\r\n"
        send_stopped(d.pid, refused(), request, cli.detach())
        time.sleep(0.3)             # read, and its fd handed to the closer
        pairs = self.kept_pairs(4)
        for _, theirs in pairs:
            s = refused()
            send_fd(s, request, theirs.fileno())
            theirs.close()
            s.close()
        self.assert_closed_promptly(pairs, peer)
        wait_for(lambda: fd_count(d.pid) == base, timeout=5,
                 what="fdhttpd's fds back to %d" % base)
        self.assert_stops_promptly(d)

    def test_worker_closing_first_cannot_freeze_the_supervisor(self):
        """A client queues a lingering socket on its connection, and the
        worker closes the connection as it gets it.  Had fdhttpd closed its
        own copy after the worker's, that close would have been the last,
        released the socket in fdhttpd's loop and lingered there; one CPU
        for all makes the worker's close come first often.  Each connection
        must still end within a bound: fdhttpd is free to hand the next.
        The closer, which now makes those last closes, is held by each
        linger until it kills the process in it (RUNNER_STUCK_S), so that
        is the bound, and a margin."""
        tmp = tempfile.mkdtemp(prefix="fdh-close-at-once-")
        self.addCleanup(shutil.rmtree, tmp, True)
        os.chmod(tmp, 0o755)
        service = os.path.join(tmp, "service")
        with open(service, "w") as f:
            f.write(CLOSE_AT_ONCE % shutil.which("python3", path="/usr/bin:/bin"))
        os.chmod(service, 0o755)
        d = Fdhttpd("--no-sandbox", workers=1, service=service, tmpdir=tmp)
        self.addCleanup(d.cleanup)
        worker = int(d.wait_log(r"worker 1 \(pid (\d+)\) ready").group(1))
        me = os.sched_getaffinity(0)
        self.addCleanup(os.sched_setaffinity, 0, me)
        cpu = {min(me)}
        for pid in (0, d.pid, worker):
            os.sched_setaffinity(pid, cpu)
        peers = []
        for i in range(12):
            lsrv, peer, tcp = lingering_tcp(LINGER_S)
            peers.append(peer)
            self.addCleanup(lsrv.close)
            self.addCleanup(peer.close)
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.addCleanup(c.close)
            c.connect(d.sock_path)
            send_fd(c, b"x", tcp.fileno())
            tcp.close()             # the connection's queue holds the last copy
            self.assertTrue(closed_within(c, RUNNER_STUCK_S + PROMPT_S),
                            "connection %d not ended" % i)
            c.close()
        for peer in peers:
            peer.close()            # the lingers end: nothing waits at the stop
        self.assert_stops_promptly(d)

    def test_killed_supervisor_closer_is_replaced(self):
        """fdhttpd's closer dies before it only when killed: fdhttpd says so
        and starts another, so that what clients send is never closed on its
        loop.  Regression: the closer was reaped silently and every later
        close ran inline, where a lingering socket would stop fdhttpd."""
        d = self.start("--allow-uid", str(OTHER_UID))
        old = closers(d.pid)
        self.assertEqual(len(old), 1)
        os.kill(old[0], signal.SIGKILL)
        d.wait_log(r"warn supervisor: closer of the supervisor \(pid %d\) killed by signal 9 "
                   r"\(SIGKILL\); starting another" % old[0])
        new = wait_for(lambda: [p for p in closers(d.pid) if p != old[0]] or None,
                       what="a new closer")
        self.assertEqual(cmdline(new[0]).strip(), "fdhttpd: closer of the supervisor")
        # It does the closer's work: a lingering socket a refused client
        # sends does not hold fdhttpd.
        _, peer, cli = self.linger()
        self.refuse_with(d, cli.detach())
        with Conn(d.sock_path, timeout=PROMPT_S) as c:
            c.send_request("GET", "/health")
            self.assertEqual(c.read_response().status, 403)
        peer.close()
        self.assert_stops_promptly(d)

    def test_unread_fd_in_a_closed_connection(self):
        """A connection closed with an fd still unread in its socket (a
        request refused with 400 and the rest left unread) makes the
        worker's close of the socket the lingering one."""
        d = self.start()
        (worker,) = d.workers()
        _, peer, cli = self.linger()
        a = Conn(d.sock_path)
        self.addCleanup(a.close)
        # A bad request (400, close), and in the same stop an fd behind it.
        os.kill(worker, signal.SIGSTOP)
        try:
            a.sock.send(b"BAD\r\n\r\n")
            a.sock.sendmsg([b"GET /health HTTP/1.1\r\nX-FD: a\r\n\r\n"],
                           [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                             struct.pack("i", cli.fileno()))])
            os.close(cli.detach())
        finally:
            os.kill(worker, signal.SIGCONT)
        self.assertEqual(a.read_response().status, 400)
        self.assert_serves_then_stops(d, peer)

    def test_fds_past_max_fds(self):
        """More fds than --max-fds in one sendmsg: the kernel would release
        those past the receiver's room on the reading thread; they are
        received and handed to the closer instead."""
        d = self.start("--max-fds", "1")
        (worker,) = d.workers()
        _, peer, cli = self.linger()
        r, w = os.pipe()
        self.addCleanup(os.close, w)
        a = Conn(d.sock_path)
        self.addCleanup(a.close)
        os.kill(worker, signal.SIGSTOP)
        try:
            a.sock.sendmsg([b"GET /health HTTP/1.1\r\nX-FD: a\r\n\r\n"],
                           [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                             struct.pack("ii", r, cli.fileno()))])
            os.close(r)
            os.close(cli.detach())
        finally:
            os.kill(worker, signal.SIGCONT)
        self.assertEqual(a.read_response().status, 400)
        self.assert_serves_then_stops(d, peer)


if __name__ == "__main__":
    unittest.main(verbosity=2)
