"""The workers' sandbox (CONTRACT section 6): what a worker starts with
before execve, the seccomp allowlist after its init hook, the supervisor's
check of /proc/PID/status, and the refusal to run workers as root."""

import json
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fdhttpd_testlib import (BUILD_DIR, Fdhttpd, echo_path, run_fdhttpd,  # noqa: E402
                             wait_for)
from hostile_testlib import connect  # noqa: E402

ROOT = os.geteuid() == 0


def probe_path():
    """tests/integration/sandbox_probe.c, built for these tests only."""
    path = os.environ.get("FDH_SANDBOX_PROBE") or os.path.join(BUILD_DIR, "tests",
                                                                "fdh-sandbox-probe")
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest("fdh-sandbox-probe not built at %s" % path)
    return path


def body(resp):
    return json.loads(resp.body)


def ready_count(d):
    return len(re.findall(r"\) ready\n", d.read_log()))


def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def worker_ids():
    """The uid and gid sandboxed workers get: nobody's as root, ours otherwise."""
    if ROOT:
        nobody = pwd.getpwnam("nobody")
        return nobody.pw_uid, nobody.pw_gid
    return os.getuid(), os.getgid()


class SandboxTest(unittest.TestCase):
    def start(self, *opts, **kwargs):
        d = Fdhttpd(*opts, **kwargs)
        self.addCleanup(d.cleanup)
        return d

    def tmpdir(self, mode=0o755):
        d = tempfile.mkdtemp(prefix="fdhttpd-sbx-")
        self.addCleanup(shutil.rmtree, d, True)
        os.chmod(d, mode)
        return d

    def script(self, text):
        """An executable the workers' user can run."""
        path = os.path.join(self.tmpdir(), "service")
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        return path

    def test_echo_reports_its_sandbox(self):
        """GET /sandbox of fdhttp-echo, under --user nobody as root."""
        d = self.start(workers=1)
        uid, gid = worker_ids()
        self.assertEqual(body(d.request("GET", "/sandbox")),
                         {"seccomp": 2, "no_new_privs": 1, "uid": uid, "gid": gid,
                          "open_errno": "EPERM"})
        st = proc_status(d.wait_workers(1)[0])
        self.assertEqual((st["Seccomp"], st["NoNewPrivs"]), ("2", "1"))
        self.assertEqual(int(st["Uid"].split()[0]), uid)

    def test_open_gets_eperm_and_the_worker_lives(self):
        d = self.start(workers=1, service=probe_path())
        with d.conn() as c:
            pid = body(c.request("GET", "/pid"))["pid"]
            self.assertEqual(body(c.request("GET", "/open")), {"errno": "EPERM"})
            self.assertEqual(body(c.request("GET", "/pid"))["pid"], pid)

    def test_forbidden_calls_kill_only_that_worker(self):
        d = self.start(workers=2, service=probe_path())
        other = d.conn()
        self.addCleanup(other.close)
        mine = body(other.request("GET", "/pid"))["pid"]
        for call in ("fork", "execve", "socket"):
            with self.subTest(call=call):
                ready = ready_count(d)
                # The least-loaded worker: not the one holding `other`.
                with d.conn() as c:
                    victim = body(c.request("GET", "/pid"))["pid"]
                    self.assertNotEqual(victim, mine)
                    with self.assertRaises(OSError):
                        c.request("POST", "/" + call)
                d.wait_log(r"worker \d \(pid %d\) killed by signal 31 \(SIGSYS\): a system "
                           r"call its sandbox forbids \(the kernel log's 'type=1326 \.\.\. "
                           r"syscall=N' names it" % victim)
                self.assertEqual(body(other.request("GET", "/pid"))["pid"], mine)
                # Replaced, and the replacement is ready before the next round.
                wait_for(lambda: ready_count(d) == ready + 1, what="a replacement ready")
                self.assertNotIn(victim, d.wait_workers(2))

    def test_out_of_band_data_kills(self):
        """MSG_OOB on a Unix stream socket the worker holds (a client's fd, or
        its own connection): a corner of the kernel no worker needs, and one
        with a history of use-after-free bugs, so a taken-over handler must
        not reach it, sending or receiving."""
        d = self.start(workers=1, service=probe_path())
        for op in ("send", "recv"):
            with self.subTest(op=op):
                ready = ready_count(d)
                mine, theirs = socket.socketpair()
                self.addCleanup(mine.close)
                mine.send(b"?", socket.MSG_OOB)     # for recv to find
                c = connect(d.sock_path)
                self.addCleanup(c.close)
                victim = body(c.request("GET", "/pid"))["pid"]
                with self.assertRaises((OSError, EOFError)):
                    c.request("POST", "/oob?op=" + op, fds=[theirs.fileno()], xfd="sock")
                theirs.close()
                d.wait_log(r"worker 1 \(pid %d\) killed by signal 31 \(SIGSYS\): a system "
                           r"call its sandbox forbids" % victim)
                wait_for(lambda: ready_count(d) == ready + 1, what="a replacement ready")

    def test_a_worker_asks_for_no_replacement_without_max_requests(self):
        """RETIRE says a worker served --max-requests: without that option,
        it is a lie (a worker could have itself replaced as often as it
        liked, and log a count of its choosing), and the worker is killed."""
        d = self.start(workers=1, service=probe_path())
        c = connect(d.sock_path)
        self.addCleanup(c.close)
        victim = body(c.request("GET", "/pid"))["pid"]
        self.assertEqual(body(c.request("POST", "/rogue/retire")), {"errno": "0"})
        d.wait_log(r"error supervisor: worker 1 \(pid %d\): bad control message: RETIRE "
                   r"without --max-requests; killing it" % victim)
        self.assertNotIn("answered 1000000 requests", d.read_log())
        self.assertNotEqual(body(d.request("GET", "/pid"))["pid"], victim)

    def test_service_syscalls_extend_the_allowlist(self):
        d = self.start(workers=1, service=probe_path())
        self.assertEqual(body(d.request("GET", "/uname")), {"sysname": "Linux"})

    def test_unknown_syscall_name_stops_fdhttpd(self):
        rc, err = run_fdhttpd("--socket", os.path.join(self.tmpdir(), "s.sock"), "--workers", "1",
                              "--", probe_path(), "--bad-syscall")
        self.assertEqual(rc, 1, err)
        self.assertRegex(err, r"error worker 1: probe: the service's syscalls name "
                              r"'no_such_call', which is not a system call here")
        self.assertRegex(err, r"exited with status 126")
        self.assertRegex(err, r"could not be sandboxed; stopping")

    def test_unknown_syscall_name_stops_the_service_alone(self):
        """The same slip, caught while the service is developed alone, not in production."""
        sock = os.path.join(self.tmpdir(), "s.sock")
        try:
            proc = subprocess.run([probe_path(), "--socket", sock, "--bad-syscall"],
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=10)
        except subprocess.TimeoutExpired:
            self.fail("the service ran with a syscalls list naming no system call")
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertRegex(proc.stderr, r"probe: the service's syscalls name 'no_such_call', "
                                      r"which is not a system call here")
        self.assertFalse(os.path.exists(sock))

    def test_a_route_table_that_cannot_be_served_stops_fdhttpd(self):
        """Regression: a route path without its leading '/' made every worker
        exit 1 ("invalid route table or limits"), and fdhttpd respawned them
        for ever.  The route is named, before the service's init runs, and
        fdhttpd stops; alone, the service does not start."""
        sock = os.path.join(self.tmpdir(), "s.sock")
        rc, err = run_fdhttpd("--socket", sock, "--workers", "2",
                              "--", probe_path(), "--bad-route")
        self.assertEqual(rc, 2, err)
        self.assertRegex(err, r"error worker \d: probe: route 1 \(GET health\): its path "
                              r"does not start with '/'; not starting")
        self.assertRegex(err, r"refused its arguments; stopping")
        proc = subprocess.run([probe_path(), "--socket", sock, "--bad-route"],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=10)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        self.assertIn("probe: route 1 (GET health): its path does not start with '/'; "
                      "not starting", proc.stderr)
        self.assertFalse(os.path.exists(sock))

    def test_a_worker_without_the_sandbox_is_killed(self):
        """READY from a process with no filter: killed, never handed a connection."""
        d = self.start("--grace", "0.2", workers=1, wait_ready=False,
                       service=self.script(UNSANDBOXED))
        d.wait_log(r"error supervisor: worker 1 \(pid \d+\) is not sandboxed "
                   r"\(Seccomp: 0, NoNewPrivs: 1\); killing it")
        d.wait_log(r"does not sandbox itself .*; stopping")
        self.assertEqual(d.proc.wait(5), 1)
        self.assertNotRegex(d.read_log(), r"\) ready\n")

    @unittest.skipUnless(ROOT, "needs root")
    def test_root_without_user_is_refused(self):
        rc, err = run_fdhttpd("--socket", os.path.join(self.tmpdir(), "s.sock"), "--",
                              echo_path(), user=False)
        self.assertEqual(rc, 2, err)
        self.assertIn("--user", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)

    def test_what_a_worker_starts_with(self):
        """A stand-in SERVICE reports its state right after execve."""
        out = self.tmpdir(0o777)
        report = os.path.join(out, "report")
        env = {"FDH_SECRET": "x", "LC_ALL": "C", "LD_PRELOAD": ""}
        d = self.start("--grace", "0.2", "--max-conns", "10", "--max-fds", "4", workers=1,
                       wait_ready=False, service=self.script(PROBE), service_args=[report],
                       env=env)
        wait_for(lambda: os.path.exists(report), what="the probe report")
        with open(report) as f:
            seen = dict(line.rstrip("\n").split("=", 1) for line in f)
        uid, gid = worker_ids()
        self.assertEqual((int(seen["uid"]), int(seen["gid"])), (uid, gid))
        self.assertEqual(seen["NoNewPrivs"], "1")
        # 10 connections x (2 + 4 fds) + 253 + 64.
        self.assertEqual(seen["nofile"], "377 377")
        self.assertEqual(seen["core"], "0 0")
        self.assertEqual(seen["fds"], "0,1,2,3")
        self.assertEqual(seen["stdin"], "/dev/null")
        names = set(seen["env"].split(","))
        self.assertIn("FDHTTP_CONTROL_FD", names)
        self.assertIn("LC_ALL", names)
        self.assertNotIn("FDH_SECRET", names)
        self.assertNotIn("LD_PRELOAD", names)
        self.assertNotIn("NOTIFY_SOCKET", names)
        self.assertTrue(all(n.startswith(("FDHTTP_", "LC_")) or n in KEPT for n in names),
                        names)
        self.assertEqual(d.stop(), 0)

    def test_descriptor_limit_that_cannot_be_given(self):
        """More than fs.nr_open per worker: refused at start, naming the options."""
        rc, err = run_fdhttpd("--socket", os.path.join(self.tmpdir(), "s.sock"), "--workers", "1",
                              "--max-conns", "1048576", "--max-fds", "253", "--", echo_path())
        self.assertEqual(rc, 1, err)
        self.assertRegex(err, r"--max-conns 1048576 and --max-fds 253 need 267387197 "
                              r"descriptors per worker .* RLIMIT_NOFILE")

    @unittest.skipUnless(ROOT and shutil.which("setpriv"), "needs root and setpriv")
    def test_a_failed_privilege_drop_stops_before_execve(self):
        """Without CAP_SETGID the child cannot drop its groups: it says which
        step failed, exits 126 before execve, and fdhttpd stops."""
        rc, err = run_fdhttpd("--socket", os.path.join(self.tmpdir(), "s.sock"), "--workers", "1",
                              "--", echo_path(),
                              prefix=[shutil.which("setpriv"), "--bounding-set=-setgid", "--"])
        self.assertEqual(rc, 1, err)
        self.assertRegex(err, r"error worker 1: sandbox: --user nobody: Operation not "
                              r"permitted; the worker is not started")
        self.assertRegex(err, r"worker 1 \(pid \d+\) exited with status 126")
        self.assertRegex(err, r"could not be sandboxed; stopping")


# An interpreter the workers' user can run: sys.executable may live in a
# home directory only its owner can enter.
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable

KEPT = {"PATH", "LANG", "TZ", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"}

# Says READY without any sandbox, then waits.
UNSANDBOXED = """#!%s
import socket, struct, time
s = socket.socket(fileno=3)
s.send(struct.pack("=HHI", 1, 1, 0))
time.sleep(60)
""" % PYTHON

# Writes what a worker is started with to argv[1], then waits.
PROBE = """#!%s
import os, sys, time
seen = {"uid": os.getuid(), "gid": os.getgid(), "env": ",".join(sorted(os.environ))}
with open("/proc/self/status") as f:
    for line in f:
        if line.startswith("NoNewPrivs:"):
            seen["NoNewPrivs"] = line.split()[1]
with open("/proc/self/limits") as f:
    for line in f:
        if line.startswith("Max open files"):
            seen["nofile"] = " ".join(line.split()[3:5])
        if line.startswith("Max core file size"):
            seen["core"] = " ".join(line.split()[4:6])
fds = []
for fd in sorted(int(x) for x in os.listdir("/proc/self/fd")):
    try:
        os.fstat(fd)        # the listing's own fd is closed by now
        fds.append(str(fd))
    except OSError:
        pass
seen["fds"] = ",".join(fds)
seen["stdin"] = os.readlink("/proc/self/fd/0")
report = sys.argv[1]
with open(report + ".tmp", "w") as f:
    for k, v in seen.items():
        f.write("%%s=%%s\\n" %% (k, v))
os.rename(report + ".tmp", report)
time.sleep(60)
""" % PYTHON


if __name__ == "__main__":
    unittest.main(verbosity=2)
