"""Shared by the hostile-client and fault tests: what every process of an
fdhttpd holds (fds and resident memory) before and after an ordeal, pipes
that show whether every copy of an fd was closed, and raw connections that
carry fds (fdhttp_testlib.Conn) to fdhttpd's socket.

Standard library only.
"""

import os
import resource
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fdhttp_testlib import Conn  # noqa: E402
from fdhttpd_testlib import cmdline, wait_for  # noqa: E402

IO_TIMEOUT = 5.0
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

# How much more resident memory a process may hold after an ordeal than
# before it, once a warm-up has touched what the workload needs.  What is
# left is the allocator keeping freed pages for reuse.  Under
# AddressSanitizer freed memory sits in its quarantine (up to 256 MiB) on
# purpose, so only a gross leak would show there.
RSS_TOLERANCE_KB = 2048
RSS_TOLERANCE_SANITIZED_KB = 65536


def raise_nofile(want):
    """Raises our RLIMIT_NOFILE to at least want (the hard limit too, when
    we may); returns the soft limit we end up with."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kb(pid):
    with open("/proc/%d/statm" % pid) as f:
        return int(f.read().split()[1]) * PAGE_KB


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def sanitized(pid):
    """Whether pid runs with AddressSanitizer's runtime."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            return "libasan" in f.read()
    except OSError:
        return False


def settled_fds(pids, samples=5, timeout=3.0):
    """The fd counts of pids once they stayed the same for a few samples."""
    last = {p: fd_count(p) for p in pids}
    same = 0
    deadline = time.monotonic() + timeout
    while same < samples and time.monotonic() < deadline:
        time.sleep(0.03)
        now = {p: fd_count(p) for p in pids}
        same = same + 1 if now == last else 0
        last = now
    return last


def worker_pids(d):
    return sorted(p for p in d.workers() if cmdline(p).startswith("fdhttpd: worker"))


def snapshot(d):
    """What a stalled test reports: each process's state and fds, and the
    end of fdhttpd's log."""
    lines = []
    for p in [d.pid] + sorted(d.workers()):
        try:
            with open("/proc/%d/stat" % p) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open("/proc/%d/wchan" % p) as f:
                wchan = f.read()
            lines.append("  %d %s (%s) fds %d: %s" % (p, state, wchan or "-", fd_count(p),
                                                   cmdline(p)))
        except OSError as e:
            lines.append("  %d: %s" % (p, e))
    log = d.read_log().splitlines()
    return "\n".join(lines + ["fdhttpd's log, last 20 of %d lines:" % len(log)] + log[-20:])


def connect(path, timeout=IO_TIMEOUT):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return Conn(s)


class Baseline:
    """The fds and RSS of the supervisor and each worker at one moment."""

    def __init__(self, d, label="", idle=True):
        self.d = d
        self.label = label
        self.workers = worker_pids(d)
        self.pids = [d.pid] + self.workers
        # Taken once nothing moves, and (idle) the workers hold no connection.
        if idle:
            wait_for(lambda: all("[0 conns]" in cmdline(p) for p in self.workers),
                     what="idle workers")
        self.fds = settled_fds(self.pids)
        self.rss = {p: rss_kb(p) for p in self.pids}
        self.tolerance = (RSS_TOLERANCE_SANITIZED_KB if sanitized(d.pid)
                          else RSS_TOLERANCE_KB)

    def role(self, pid):
        return "supervisor" if pid == self.d.pid else "worker %d" % pid

    def check(self, tc, timeout=5.0, same_workers=True):
        """Asserts every process is back where it was: the same workers,
        exactly the same fd counts, RSS within the tolerance."""
        if same_workers:
            tc.assertEqual(worker_pids(self.d), self.workers,
                           "%s: a worker died or was replaced" % self.label)
        pids = self.pids if same_workers else [self.d.pid]

        def settled():
            return all(fd_count(p) == self.fds[p] for p in pids)

        deadline = time.monotonic() + timeout
        while not settled() and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = []
        for p in pids:
            fds, rss = fd_count(p), rss_kb(p)
            lines.append("  %-14s fds %3d -> %3d   rss %6d kB -> %6d kB (%+d)"
                         % (self.role(p), self.fds[p], fds, self.rss[p], rss,
                            rss - self.rss[p]))
            tc.assertEqual(fds, self.fds[p], "%s: %s holds %d fds, %d before"
                           % (self.label, self.role(p), fds, self.fds[p]))
            tc.assertLessEqual(rss - self.rss[p], self.tolerance,
                               "%s: %s grew from %d kB to %d kB (tolerance %d kB)"
                               % (self.label, self.role(p), self.rss[p], rss,
                                  self.tolerance))
        sys.stderr.write("%s (RSS tolerance %d kB)\n%s\n"
                         % (self.label, self.tolerance, "\n".join(lines)))


class Canary:
    """A pipe whose write end goes with requests: once we close our copy,
    the read end sees EOF only when no process holds one any more."""

    def __init__(self):
        self.rd, self.wr = os.pipe2(os.O_CLOEXEC)

    def release(self):
        if self.wr != -1:
            os.close(self.wr)
            self.wr = -1

    def closed_everywhere(self, timeout=IO_TIMEOUT):
        self.release()
        r, _, _ = select.select([self.rd], [], [], timeout)
        return bool(r) and os.read(self.rd, 1) == b""

    def close(self):
        self.release()
        if self.rd != -1:
            os.close(self.rd)
            self.rd = -1


def outcome(conn, timeout=IO_TIMEOUT):
    """The status of the next response on conn, or "closed" when the server
    closed instead; a client that waits longer than timeout fails the test
    (it would be a hang).  Received fds are closed."""
    conn.sock.settimeout(timeout)
    try:
        r = conn.read_response()
    except (EOFError, ConnectionResetError, BrokenPipeError):
        return "closed"
    r.close_fds()
    return r.status
