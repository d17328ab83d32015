"""Shared by the fdhttpd tests: start the supervisor with fdhttp-echo workers,
wait for its readiness notification, speak plain HTTP/1.1 to it, look at its
workers through /proc.

Standard library only.
"""

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("FDH_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.environ.get("FDH_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
TIMEOUT = 5.0
# FDH_TEST_LEAKS=1: the leak-check pass of the sanitizer build.  A sandboxed
# worker cannot be scanned by LeakSanitizer (its filter forbids the tracer the
# scan needs), so workers run with --no-sandbox, and a test whose workers
# reported a leak fails.  Tests of the sandbox itself skip (needs_sandbox).
LEAK_CHECK = os.environ.get("FDH_TEST_LEAKS") == "1"

LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z fdhttpd\[\d+\] (debug|info|warn|error) "
    r"(supervisor|worker \d+): .+$")


def _binary(var, rel):
    path = os.environ.get(var) or os.path.join(BUILD_DIR, rel)
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest("%s not built at %s; set %s" % (rel, path, var))
    return path


def fdhttpd_path():
    return _binary("FDH_FDHTTPD", "src/fdhttpd/fdhttpd")


def echo_path():
    return _binary("FDH_ECHO", "examples/fdhttp-echo")


def sandbox_user(opts=()):
    """["--user", "nobody"] when running as root and opts choose neither a user
    nor --no-sandbox: fdhttpd refuses to run workers as root otherwise."""
    if os.geteuid() != 0:
        return []
    for o in opts:
        if o in ("-u", "--user", "--no-sandbox") or o.startswith("--user="):
            return []
    return ["--user", "nobody"]


def needs_sandbox(test):
    """Skips test in the leak-check pass, whose workers run unsandboxed."""
    if LEAK_CHECK:
        test.skipTest("workers run without the sandbox in the leak-check pass")


def mount_tmpfs(test, path, size="64k"):
    """Mounts a tmpfs of size on path (an empty directory) until test ends;
    skips test where mounting is not allowed."""
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size, "tmpfs",
                        path], capture_output=True)
    if r.returncode != 0:
        test.skipTest("cannot mount a tmpfs (%s)" % r.stderr.decode().strip())
    test.addCleanup(subprocess.run, ["umount", "-l", path])


def wait_for(pred, timeout=TIMEOUT, interval=0.01, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(interval)


def fail_poll(pid, read_log):
    """Makes the supervisor's poll() fail, a fatal error: RLIMIT_NOFILE under
    its number of pollfds (EINVAL), then SIGUSR1 for a turn of its loop.  The
    limit is given back once the error is logged, for the exit to have
    descriptors (LeakSanitizer's scan opens files): a worker kept busy past
    that moment keeps the supervisor there."""
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (1, hard))
    os.kill(pid, signal.SIGUSR1)
    wait_for(lambda: "error supervisor: poll: Invalid argument" in read_log(),
             what="poll() failing")
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))


def children(pid):
    """Pids whose parent is pid, from /proc."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        # The command may hold spaces and parentheses: fields follow the last ')'.
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(name))
    return sorted(out)


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


# The name of the closer process fdhttpd and each worker make (src/lib/closer.c).
CLOSER_COMM = "fdh-closer"


def closers(pid):
    """pid's closer processes: one, once it has started."""
    return [p for p in children(pid) if comm(p) == CLOSER_COMM]


def runners(closer):
    """The runners of a closer process, which close what it is handed: one,
    and for a moment more while one it killed dies (src/lib/closer.c)."""
    return [p for p in children(closer) if comm(p) == CLOSER_COMM]


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())


class Conn:
    """One client connection speaking HTTP/1.1 without pipelining."""

    def __init__(self, path, timeout=TIMEOUT):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_request(self, method="GET", target="/health", body=b"", headers=()):
        head = "%s %s HTTP/1.1\r\nHost: fdhttpd\r\n" % (method, target)
        for name, value in headers:
            head += "%s: %s\r\n" % (name, value)
        if body or method == "POST":
            head += "Content-Length: %d\r\n" % len(body)
        self.sock.sendall(head.encode() + b"\r\n" + body)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        self.buf += chunk

    def read_response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return Response(status, headers, body)

    def request(self, *args, **kwargs):
        self.send_request(*args, **kwargs)
        return self.read_response()


def request(path, method="GET", target="/health", body=b"", headers=()):
    """One request on a fresh connection, closed afterwards."""
    with Conn(path) as c:
        return c.request(method, target, body, list(headers) + [("Connection", "close")])


class Fdhttpd:
    """fdhttpd with fdhttp-echo workers on TMPDIR/s.sock, started and ready.

    Readiness is the READY=1 the supervisor sends to $NOTIFY_SOCKET once every
    worker is up, so starting also tests the notification.
    """

    def __init__(self, *opts, service_args=(), socket_path=None, service=None,
                 wait_ready=True, workers=2, tmpdir=None, env=None, prefix=(),
                 preexec_fn=None, stderr=None):
        """prefix is a command that runs fdhttpd (setpriv ...; then it is
        given no --user and tmpdir must be writable by whom it runs as);
        preexec_fn runs in the child before that.  stderr: an fd for its
        stdout and stderr in place of the log file (read_log() then has
        nothing)."""
        self.tmpdir = tmpdir or tempfile.mkdtemp(prefix="fdhttpd-test-")
        self.sock_path = socket_path or os.path.join(self.tmpdir, "s.sock")
        self.log_path = os.path.join(self.tmpdir, "fdhttpd.log")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify_path = os.path.join(self.tmpdir, "notify")
        self.notify.bind(self.notify_path)
        if prefix:
            os.chmod(self.notify_path, 0o777)
        env = dict(os.environ, **(env or {}), NOTIFY_SOCKET=self.notify_path)
        if LEAK_CHECK and "--no-sandbox" not in opts:
            opts = ("--no-sandbox", *opts)
        argv = [*prefix, fdhttpd_path(), "--socket", self.sock_path, "--workers", str(workers),
                *([] if prefix else sandbox_user(opts)), *opts, "--", service or echo_path(),
                *service_args]
        self.log = open(self.log_path, "ab")
        out = self.log if stderr is None else stderr
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=out, env=env, preexec_fn=preexec_fn)
        if wait_ready:
            try:
                self.wait_state("READY=1", timeout=10)
            except BaseException:
                self.stop()
                raise

    @property
    def pid(self):
        return self.proc.pid

    def wait_state(self, state, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise AssertionError("fdhttpd did not send %s (exit %s); log:\n%s"
                                     % (state, self.proc.poll(), self.read_log()))
            self.notify.settimeout(min(left, 0.1))
            try:
                msg = self.notify.recv(4096).decode()
            except socket.timeout:
                continue
            if state in msg.split("\n"):
                return

    def workers(self):
        """fdhttpd's children but its closer."""
        return [p for p in children(self.pid) if comm(p) != CLOSER_COMM]

    def wait_workers(self, n, exclude=(), timeout=TIMEOUT):
        """Waits for n workers whose titles say they are workers, none in exclude."""
        def ok():
            w = [p for p in self.workers()
                 if p not in exclude and cmdline(p).startswith("fdhttpd: worker")]
            return w if len(w) == n else None
        return wait_for(ok, timeout, what="%d workers" % n)

    def request(self, *args, **kwargs):
        return request(self.sock_path, *args, **kwargs)

    def conn(self):
        return Conn(self.sock_path)

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_log(self, pattern, timeout=TIMEOUT):
        rx = re.compile(pattern)
        return wait_for(lambda: rx.search(self.read_log()), timeout, what=repr(pattern))

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Stops fdhttpd; returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def cleanup(self):
        """Stops fdhttpd and removes its files; again is a no-op."""
        rc = self.stop()
        if self.log.closed:
            return rc
        self.log.close()
        self.notify.close()
        log = self.read_log()
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        # fdhttpd and unsandboxed workers are scanned at exit (sanitizer build).
        if "LeakSanitizer" in log:
            raise AssertionError("a process leaked memory; log:\n" + log[max(log.find("=="), 0):])
        return rc


def run_fdhttpd(*args, timeout=TIMEOUT, env=None, user=True, prefix=()):
    """Runs fdhttpd expecting it to exit by itself; returns (status, stderr).
    user=False leaves out the --user that sandbox_user() adds as root;
    prefix is a command that runs fdhttpd (setpriv ...)."""
    extra = sandbox_user(args) if user else []
    p = subprocess.run([*prefix, fdhttpd_path(), *extra, *args], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout, env=env)
    return p.returncode, p.stderr.decode(errors="replace")
