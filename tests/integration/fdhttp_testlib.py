"""Shared by the Python integration tests: run fdhttp-echo, speak raw HTTP/1.1
to it with fds attached (socket.send_fds / socket.recv_fds), count its fds.

Standard library only.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("FDH_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))

# Room for every fd a response may carry (the kernel's SCM_MAX_FD).
MAX_FDS = 253
TIMEOUT = 5.0


def echo_path():
    """fdhttp-echo from ctest's environment, else from ./build of the tree."""
    path = os.environ.get("FDH_ECHO")
    if path:
        if not os.access(path, os.X_OK):
            raise RuntimeError("FDH_ECHO=%s is not an executable" % path)
        return path
    build = os.environ.get("FDH_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
    path = os.path.join(build, "examples", "fdhttp-echo")
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest("fdhttp-echo not built at %s; set FDH_ECHO" % path)
    return path


class Service:
    """fdhttp-echo running alone on TMPDIR/s.sock."""

    def __init__(self, *args):
        self.tmpdir = tempfile.mkdtemp(prefix="fdh-py-")
        self.sock_path = os.path.join(self.tmpdir, "s.sock")
        self.log_path = os.path.join(self.tmpdir, "stderr.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [echo_path(), "--socket", self.sock_path, *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            self._wait_connectable()
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self):
        return self.proc.pid

    def _wait_connectable(self):
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("fdhttp-echo exited with %d before listening:\n%s"
                                   % (self.proc.returncode, self.log()))
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(self.sock_path)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("fdhttp-echo did not listen on %s within 10 s:\n%s"
                                       % (self.sock_path, self.log()))
                time.sleep(0.02)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        s.connect(self.sock_path)
        return s

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


class Response:
    def __init__(self, version, status, reason, headers, body, fds):
        self.version = version      # "HTTP/1.1"
        self.status = status
        self.reason = reason
        self.headers = headers      # [(lower-case name, value)] in arrival order
        self.body = body
        self.fds = fds              # {name: fd}, owned by the caller

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    @property
    def closes(self):
        return any(t.strip().lower() == "close"
                   for v in self.header_all("connection") for t in v.split(","))

    def close_fds(self):
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}


class Conn:
    """One connection; bytes that arrive past a response are kept for the next."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.fds = []   # fds received and not yet given to a response

    def close(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        self.sock.close()

    def send(self, data, fds=()):
        """Sends data with fds attached to the first sendmsg."""
        if fds:
            n = socket.send_fds(self.sock, [data], list(fds))
            data = data[n:]
        if data:
            self.sock.sendall(data)

    def _recv(self):
        data, fds, flags, _ = socket.recv_fds(self.sock, 65536, MAX_FDS,
                                              socket.MSG_CMSG_CLOEXEC)
        self.fds.extend(fds)
        if flags & socket.MSG_CTRUNC:
            raise AssertionError("control data truncated (MSG_CTRUNC)")
        return data

    def read_response(self, head_request=False):
        while b"\r\n\r\n" not in self.buf:
            data = self._recv()
            if not data:
                raise EOFError("connection closed before a response head (%r)" % self.buf)
            self.buf += data
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        resp = Response(version, int(status), reason, headers, b"", {})
        if 100 <= resp.status < 200:
            return resp
        length = int(resp.header("content-length") or 0)
        if head_request:
            length = 0
        while len(self.buf) < length:
            data = self._recv()
            if not data:
                raise EOFError("connection closed in a response body")
            self.buf += data
        resp.body, self.buf = self.buf[:length], self.buf[length:]
        xfd = resp.header("x-fd")
        names = [n.strip() for n in xfd.split(",")] if xfd else []
        fds, self.fds = self.fds, []
        if len(fds) != len(names):
            for fd in fds:
                os.close(fd)
            raise AssertionError("response X-FD %r names %d fds, %d arrived"
                                 % (xfd, len(names), len(fds)))
        resp.fds = dict(zip(names, fds))
        return resp

    def request(self, method, target, body=b"", fds=(), xfd=None, headers=(),
                version="HTTP/1.1"):
        """Sends one request (fds named by xfd, default a, b, c...) and reads its response."""
        self.send(build_request(method, target, body, fds, xfd, headers, version), fds)
        return self.read_response(head_request=(method == "HEAD"))

    def expect_closed(self):
        """Asserts that the server closed: EOF (or a reset), with nothing more to read."""
        try:
            data = self.buf or self._recv()
        except ConnectionResetError:
            return
        if data:
            raise AssertionError("bytes after the last response: %r" % data[:200])


def build_request(method, target, body=b"", fds=(), xfd=None, headers=(),
                  version="HTTP/1.1"):
    lines = ["%s %s %s" % (method, target, version), "Host: localhost"]
    if xfd is None and fds:
        xfd = ",".join("fd%d" % i for i in range(len(fds)))
    if xfd is not None:
        lines.append("X-FD: " + xfd)
    if body or method in ("POST", "PUT"):
        lines.append("Content-Length: %d" % len(body))
    lines.extend("%s: %s" % h for h in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def wait_for(predicate, timeout=5.0, step=0.02):
    """Polls predicate() until it is true or timeout passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def settled_fd_count(service, timeout=3.0):
    """The service's fd count once it has stayed the same for a few samples."""
    deadline = time.monotonic() + timeout
    last, same = service.fd_count(), 0
    while same < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
        now = service.fd_count()
        same = same + 1 if now == last else 0
        last = now
    return last
