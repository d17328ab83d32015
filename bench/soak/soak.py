#!/usr/bin/env python3
"""soak: a long run of mixed requests, with and without fds, from many
keep-alive connections to fdhttpd and two fdhttp-echo workers, while a
worker is SIGKILLed every few seconds.  Not part of the test suite.

    bench/soak/soak.py [--build DIR] [--requests N] [--conns N]
                       [--kill-every S] [--workers N]

It starts fdhttpd itself (as root with --user nobody), and prints:

- requests served, and failed requests: those on the connections of a
  killed worker (expected: their worker is gone) and any others (there must
  be none);
- the fd count and resident memory of the supervisor and of each worker
  slot at the start (after a warm-up) and at the end (every connection
  closed, workers idle).  fd counts must be equal; no process may hold more
  than RSS_TOLERANCE_KB more memory than at the start.

Exit status 0 when both hold, 1 otherwise.  Standard library only.

Which worker a connection belongs to is read from the kernel: the socket
diagnostics (NETLINK_SOCK_DIAG) name the peer of the client's socket, and
/proc/PID/fd says which worker holds that peer.
"""

import argparse
import os
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
RSS_TOLERANCE_KB = 2048
MAX_FDS = 16

# --- the kernel's view of unix sockets ------------------------------------

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
UDIAG_SHOW_PEER = 4
UNIX_DIAG_PEER = 2


def peer_inode(diag, ino):
    """The inode of the peer of the unix socket with inode ino, or None."""
    req = struct.pack("=BBHIIIII", socket.AF_UNIX, 0, 0, 0xFFFFFFFF, ino, UDIAG_SHOW_PEER,
                      0xFFFFFFFF, 0xFFFFFFFF)
    diag.send(struct.pack("=IHHII", 16 + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0)
              + req)
    data = diag.recv(65536)
    off = 0
    while off + 16 <= len(data):
        length, typ = struct.unpack_from("=IH", data, off)
        if typ in (NLMSG_ERROR, NLMSG_DONE):
            return None
        a, end = off + 16 + 16, off + length
        while a + 4 <= end:
            alen, atype = struct.unpack_from("=HH", data, a)
            if atype == UNIX_DIAG_PEER:
                return struct.unpack_from("=I", data, a + 4)[0]
            a += (alen + 3) & ~3
        off += (length + 3) & ~3
    return None


def socket_inodes(pid):
    out = set()
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return out
    for n in names:
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, n))
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out


# --- processes --------------------------------------------------------------

def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_kb(pid):
    with open("/proc/%d/statm" % pid) as f:
        return int(f.read().split()[1]) * PAGE_KB


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def workers_of(sup):
    """{slot: pid} of the live workers whose title says so."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) != sup or fields[0] == "Z":
            continue
        m = re.match(r"fdhttpd: worker (\d+) ", cmdline(int(name)))
        if m:
            out[int(m.group(1))] = int(name)
    return out


def snapshot(sup):
    procs = {"supervisor": sup}
    for slot, pid in sorted(workers_of(sup).items()):
        procs["worker %d" % slot] = pid
    return {role: (pid, fd_count(pid), rss_kb(pid)) for role, pid in procs.items()}


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit("soak: timed out waiting for %s" % what)
        time.sleep(0.02)


# --- the client -------------------------------------------------------------

class Conn:
    """One keep-alive connection, one request in flight at a time."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.setblocking(False)
        self.ino = os.fstat(self.sock.fileno()).st_ino
        self.peer = None            # the server end's inode, once known
        self.buf = b""
        self.fds = []
        self.out = b""
        self.out_fds = []
        self.expect = None
        self.served = 0

    def close(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        self.sock.close()


class Soak:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="fdh-soak-")
        self.path = os.path.join(self.tmp, "s.sock")
        self.memfd = os.memfd_create("fdh-soak", os.MFD_CLOEXEC)
        os.write(self.memfd, b"soak")
        self.memfd_ino = os.fstat(self.memfd).st_ino
        self.fd16 = [os.dup(self.memfd) for _ in range(MAX_FDS)]
        self.diag = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
        self.sel = selectors.DefaultSelector()
        self.conns = []
        self.sent = 0
        self.served = 0
        self.failed_killed = 0      # on a killed worker's connection
        self.failed_other = []      # anything else: must stay empty
        self.kills = []             # (time, victim pid, survivors' socket inodes)

    # The mix: (method, target, body, fds, expected body or None, fds back).
    def request_for(self, n):
        k = n % 6
        if k == 0:
            return b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", [], b"ok", 0
        if k == 1:
            return (b"POST /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nping", [],
                    b"pong", 0)
        if k == 2:
            body = b"e" * 64
            return (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 64\r\nX-FD: a,b\r\n\r\n"
                    + body, self.fd16[:2], body, 2)
        if k == 3:
            body = b"b" * 8192
            return (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8192\r\n\r\n" + body, [],
                    body, 0)
        if k == 4:
            return (b"POST /fd/memfd HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nsoak", [],
                    b"", 1)
        names = ",".join("f%d" % i for i in range(MAX_FDS)).encode()
        return (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-FD: " + names
                + b"\r\n\r\n16", self.fd16, b"16", MAX_FDS)

    def start_server(self):
        fdhttpd = os.path.join(self.args.build, "src", "fdhttpd", "fdhttpd")
        echo = os.path.join(self.args.build, "examples", "fdhttp-echo")
        argv = [fdhttpd, "--socket", self.path, "--workers", str(self.args.workers),
                "--max-conns", "256"]
        if os.geteuid() == 0:
            argv += ["--user", "nobody"]
        self.log_path = os.path.join(self.tmp, "fdhttpd.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv + ["--", echo], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        wait_until(lambda: os.path.exists(self.path) and
                   len(workers_of(self.proc.pid)) == self.args.workers, 10, "fdhttpd")

    def connect(self):
        c = Conn(self.path)
        self.conns.append(c)
        self.sel.register(c.sock, selectors.EVENT_READ, c)
        self.issue(c)

    def issue(self, c):
        data, fds, body, nfds = self.request_for(self.sent)
        self.sent += 1
        c.expect = (body, nfds)
        try:
            if fds:
                n = socket.send_fds(c.sock, [data], fds)
                data = data[n:]
            if data:
                c.sock.sendall(data)    # small: the socket takes it whole
        except OSError:
            self.fail(c)

    def drop(self, c):
        self.sel.unregister(c.sock)
        self.conns.remove(c)
        c.close()

    def fail(self, c):
        """c's request failed: whose fault was it?"""
        now = time.monotonic()
        if c.peer is None:
            c.peer = peer_inode(self.diag, c.ino)
        expected = False
        for t, victim, survivors in reversed(self.kills):
            if now - t < 5:
                # Held by the survivors at the kill: it should have lived.
                expected = c.peer not in survivors
            break
        if expected:
            self.failed_killed += 1
        else:
            self.failed_other.append("request on a connection no kill explains "
                                     "(served %d before)" % c.served)
        self.drop(c)

    def on_readable(self, c):
        try:
            data, fds, flags, _ = socket.recv_fds(c.sock, 262144, 253, socket.MSG_CMSG_CLOEXEC)
        except BlockingIOError:
            return
        except OSError:
            self.fail(c)
            return
        c.fds.extend(fds)
        if not data:
            self.fail(c)
            return
        c.buf += data
        while True:
            end = c.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = c.buf[:end].decode("latin-1")
            m = re.search(r"\r\ncontent-length: *(\d+)", head, re.I)
            length = int(m.group(1)) if m else 0
            if len(c.buf) < end + 4 + length:
                return
            body = c.buf[end + 4:end + 4 + length]
            c.buf = c.buf[end + 4 + length:]
            self.check(c, head, body)
            if c.sock.fileno() == -1:
                return
            if c.peer is None:
                c.peer = peer_inode(self.diag, c.ino)
            if self.sent < self.args.requests:
                self.issue(c)
            else:
                self.drop(c)
                return

    def check(self, c, head, body):
        want_body, want_fds = c.expect
        fds, c.fds = c.fds, []
        ok = head.startswith("HTTP/1.1 200 ") and len(fds) == want_fds and \
            (want_body == b"" or body == want_body)
        if ok and fds and self.served % 1009 == 0:
            ok = want_fds == 1 or all(os.fstat(fd).st_ino == self.memfd_ino for fd in fds)
        for fd in fds:
            os.close(fd)
        if not ok:
            self.failed_other.append("bad response: %r, %d fds" % (head[:60], len(fds)))
        self.served += 1
        c.served += 1

    def kill_one(self):
        workers = workers_of(self.proc.pid)
        if len(workers) < self.args.workers:
            return False            # a respawn is under way
        slots = sorted(workers)
        victim = workers[slots[len(self.kills) % len(slots)]]
        survivors = set()
        for slot in slots:
            if workers[slot] != victim:
                survivors |= socket_inodes(workers[slot])
        os.kill(victim, signal.SIGKILL)
        self.kills.append((time.monotonic(), victim, survivors))
        return True

    def settle(self):
        """Waits for idle workers and steady fd counts; returns the snapshot."""
        def idle():
            w = workers_of(self.proc.pid)
            return len(w) == self.args.workers and \
                all("[0 conns]" in cmdline(p) for p in w.values())
        wait_until(idle, 15, "idle workers")
        last, same = snapshot(self.proc.pid), 0
        while same < 10:
            time.sleep(0.05)
            now = snapshot(self.proc.pid)
            same = same + 1 if {k: v[:2] for k, v in now.items()} == \
                {k: v[:2] for k, v in last.items()} else 0
            last = now
        return last

    def run(self):
        a = self.args
        self.start_server()
        # Warm-up: every kind of request on every worker.
        for _ in range(a.conns):
            self.connect()
        warm = a.requests
        a.requests = 6 * 50 * a.conns
        while self.conns:
            for key, _ in self.sel.select(1):
                self.on_readable(key.data)
        a.requests = warm
        self.sent = self.served = 0
        self.failed_other = []
        start = self.settle()

        t0 = time.monotonic()
        next_kill = t0 + a.kill_every
        last_report = t0
        for _ in range(a.conns):
            self.connect()
        while self.sent < a.requests or self.conns:
            now = time.monotonic()
            if now >= next_kill and self.sent < a.requests:
                if self.kill_one():
                    next_kill = now + a.kill_every
            if now - last_report >= 10:
                last_report = now
                sys.stderr.write("soak: %7.0f s  %9d served  %6.0f/s  %d kills  %d failed on "
                                 "killed workers' connections\n"
                                 % (now - t0, self.served, self.served / (now - t0),
                                    len(self.kills), self.failed_killed))
            for key, _ in self.sel.select(0.5):
                self.on_readable(key.data)
            while len(self.conns) < a.conns and self.sent < a.requests:
                try:
                    self.connect()
                except OSError:
                    break           # the backlog is full: later
        took = time.monotonic() - t0
        end = self.settle()
        self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(30)
        self.report(start, end, took, status)
        ok = not self.failed_other and status == 0 and self.within(start, end)
        return 0 if ok else 1

    def within(self, start, end):
        if set(start) != set(end):
            return False
        return all(end[r][1] == start[r][1] and end[r][2] - start[r][2] <= RSS_TOLERANCE_KB
                   for r in start)

    def report(self, start, end, took, status):
        a = self.args
        print("soak: %d requests over %d connections to %d workers in %.0f s (%.0f/s)"
              % (self.served, a.conns, a.workers, took, self.served / took))
        print("  mix: GET /health, POST /ping, POST /echo 8 KiB, POST /echo with 2 fds, "
              "POST /echo with 16 fds (fds back), POST /fd/memfd (an fd back), in turn")
        print("  workers killed (SIGKILL, every %g s): %d" % (a.kill_every, len(self.kills)))
        print("  requests served: %d" % self.served)
        print("  failed on the connections of killed workers: %d" % self.failed_killed)
        print("  failed otherwise: %d" % len(self.failed_other))
        for f in self.failed_other[:10]:
            print("    " + f)
        print("  fdhttpd exit status after SIGTERM: %d" % status)
        print("  %-12s %14s %14s %22s" % ("process", "pid", "fds", "RSS kB"))
        for role in start:
            s, e = start[role], end.get(role, (0, 0, 0))
            print("  %-12s %6d -> %-6d %5d -> %-6d %8d -> %-8d (%+d)"
                  % (role, s[0], e[0], s[1], e[1], s[2], e[2], e[2] - s[2]))
        print("  tolerance: fd counts equal; RSS at most %d kB more than at the start"
              % RSS_TOLERANCE_KB)
        print("  verdict: %s" % ("pass" if not self.failed_other and status == 0 and
                                 self.within(start, end) else "FAIL"))

    def cleanup(self):
        if getattr(self, "proc", None) and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for c in list(self.conns):
            c.close()
        for fd in self.fd16 + [self.memfd]:
            os.close(fd)
        self.diag.close()
        if getattr(self, "log", None):
            self.log.close()
        subprocess.run(["rm", "-rf", self.tmp])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default=os.path.join(ROOT, "build"),
                   help="build tree with src/fdhttpd/fdhttpd and examples/fdhttp-echo")
    p.add_argument("--requests", type=int, default=1000000)
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--kill-every", type=float, default=10.0, metavar="S")
    args = p.parse_args()
    s = Soak(args)
    try:
        return s.run()
    finally:
        s.cleanup()


if __name__ == "__main__":
    sys.exit(main())
