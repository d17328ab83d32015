"""contrib/systemd: the units parse (systemd-analyze verify, when present),
say what they must (Type=notify, the hardening), and the service's own
ExecStart line, pointed at this build, runs under systemd-socket-activate:
the first connection starts fdhttpd, READY=1 reaches $NOTIFY_SOCKET, that
first request is answered, SIGHUP reloads without a failed request, and
SIGTERM ends with STOPPING=1 and status 0.

Run by ctest, or by hand:
    FDH_BUILD_DIR=build python3 tests/integration/test_systemd.py
"""

import configparser
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fdhttpd_testlib import SOURCE_DIR, echo_path, fdhttpd_path  # noqa: E402

UNIT_DIR = os.path.join(SOURCE_DIR, "contrib", "systemd")
ACTIVATE = shutil.which("systemd-socket-activate")
ANALYZE = shutil.which("systemd-analyze")
TIMEOUT = 10


def read_unit(name):
    p = configparser.ConfigParser(strict=False, interpolation=None,
                                  comment_prefixes=("#", ";"), empty_lines_in_values=False)
    p.optionxform = str     # systemd keys are case-sensitive
    with open(os.path.join(UNIT_DIR, name)) as f:
        p.read_file(f)
    return p


def local_exec_start(service):
    """The unit's ExecStart, run from this build: fdhttpd and fdhttp-echo of the
    build tree, and --user as fits who runs the test (fdhttpd starts workers
    as root only with --user; without root it cannot change users)."""
    argv = shlex.split(service["Service"]["ExecStart"])
    out = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if os.path.basename(a) == "fdhttpd":
            out.append(fdhttpd_path())
        elif os.path.basename(a) == "fdhttp-echo":
            out.append(echo_path())
        elif a in ("-u", "--user"):
            if os.geteuid() == 0:
                out += [a, "nobody"]
            i += 1
        else:
            out.append(a)
        i += 1
    return out


class UnitTests(unittest.TestCase):
    def test_socket_unit(self):
        sock = read_unit("fdhttp-echo.socket")["Socket"]
        self.assertTrue(sock["ListenStream"].startswith("/"))
        self.assertEqual(sock.get("SocketMode"), "0660")
        self.assertNotEqual(sock.get("Accept", "no"), "yes")

    def test_service_unit(self):
        unit = read_unit("fdhttp-echo.service")
        svc = unit["Service"]
        self.assertEqual(svc["Type"], "notify")
        self.assertIn("fdhttp-echo.socket", unit["Unit"]["Requires"])
        self.assertIn("-HUP", svc["ExecReload"])
        for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                           ("PrivateTmp", "yes"), ("ProtectHome", "yes"),
                           ("RestrictAddressFamilies", "AF_UNIX"), ("KillMode", "mixed")):
            self.assertEqual(svc.get(key), value, key)
        # What fdhttpd needs to start workers as another user and signal them.
        caps = svc["CapabilityBoundingSet"].split()
        for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_KILL"):
            self.assertIn(cap, caps)
        # Workers load their own seccomp filter: systemd's must let them.
        self.assertIn("seccomp", svc["SystemCallFilter"].split())
        argv = shlex.split(svc["ExecStart"])
        self.assertIn("--user", argv)
        self.assertNotIn("--socket", argv)      # the socket is systemd's

    @unittest.skipIf(ANALYZE is None, "systemd-analyze is not installed")
    def test_units_verify(self):
        tmp = tempfile.mkdtemp(prefix="fdh-units-")
        try:
            # verify wants the executables to exist: point them at this build.
            with open(os.path.join(UNIT_DIR, "fdhttp-echo.service")) as f:
                text = f.read()
            text = text.replace("/usr/local/sbin/fdhttpd", fdhttpd_path())
            text = text.replace("/usr/local/bin/fdhttp-echo", echo_path())
            with open(os.path.join(tmp, "fdhttp-echo.service"), "w") as f:
                f.write(text)
            shutil.copy(os.path.join(UNIT_DIR, "fdhttp-echo.socket"), tmp)
            p = subprocess.run([ANALYZE, "verify", "--man=no",
                                os.path.join(tmp, "fdhttp-echo.socket"),
                                os.path.join(tmp, "fdhttp-echo.service")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
            out = p.stdout.decode(errors="replace")
            # Only what it says about our files: the host may lack a running systemd.
            ours = [line for line in out.splitlines() if "fdhttp-echo." in line]
            self.assertEqual(ours, [], out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def recv_state(notify, timeout):
    notify.settimeout(timeout)
    return notify.recv(4096).decode()


def http_get(sock, target="/health"):
    sock.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % target).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise AssertionError("connection closed before a response: %r" % buf)
        buf += data
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split(b" ")[1]), body


@unittest.skipIf(ACTIVATE is None,
                 "systemd-socket-activate is not installed (Debian package systemd)")
class ActivationTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="fdh-activate-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.sock_path = os.path.join(self.tmp, "echo.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(self.notify.close)
        notify_path = os.path.join(self.tmp, "notify")
        self.notify.bind(notify_path)
        argv = local_exec_start(read_unit("fdhttp-echo.service"))
        self.log = open(os.path.join(self.tmp, "log"), "w+b")
        self.addCleanup(self.log.close)
        # It passes on only TERM, PATH, USER, HOME and what -E names.
        self.proc = subprocess.Popen(
            [ACTIVATE, "-l", self.sock_path, "-E", "NOTIFY_SOCKET=" + notify_path, *argv],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        self.addCleanup(self.kill)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def connect(self):
        deadline = time.monotonic() + TIMEOUT
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(TIMEOUT)
            try:
                s.connect(self.sock_path)
                return s
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("no socket at %s:\n%s" % (self.sock_path, self.output()))
                time.sleep(0.02)

    def test_activation_ready_request_reload_stop(self):
        # The first connection is what starts fdhttpd; it waits in the backlog.
        first = self.connect()
        self.addCleanup(first.close)
        try:
            state = recv_state(self.notify, TIMEOUT)
        except socket.timeout:
            self.fail("no READY=1 within %d s:\n%s" % (TIMEOUT, self.output()))
        self.assertIn("READY=1", state.split("\n"), self.output())
        # systemd-socket-activate execs the service in place: same pid.
        with open("/proc/%d/cmdline" % self.proc.pid, "rb") as f:
            self.assertIn(b"fdhttpd", f.read())

        self.assertEqual(http_get(first), (200, b"ok"))

        # ExecReload: a rolling restart; requests keep being answered.
        os.kill(self.proc.pid, signal.SIGHUP)
        for _ in range(10):
            with self.connect() as s:
                self.assertEqual(http_get(s), (200, b"ok"))
            time.sleep(0.02)
        first.close()

        os.kill(self.proc.pid, signal.SIGTERM)
        self.assertIn("STOPPING=1", recv_state(self.notify, TIMEOUT).split("\n"))
        self.assertEqual(self.proc.wait(TIMEOUT + 10), 0, self.output())
        # The activated socket belongs to whoever made it: fdhttpd leaves it.
        self.assertTrue(os.path.exists(self.sock_path))


if __name__ == "__main__":
    unittest.main()
