"""fdhttpd's listening socket and command line: the socket file's life (stale,
live, non-socket, lock, mode, owner, removal), abstract names, socket
activation, the readiness protocol, the pidfile and refusals to start
(CONTRACT section 5)."""

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fdhttpd_testlib import (LOG_LINE, Conn, Fdhttpd, children, cmdline,  # noqa: E402
                             echo_path, fail_poll, fdhttpd_path, request, run_fdhttpd,
                             sandbox_user, wait_for)


class SocketTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="fdhttpd-sock-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, "s.sock")

    def start(self, *opts, **kwargs):
        kwargs.setdefault("workers", 1)
        kwargs.setdefault("socket_path", self.path)
        d = Fdhttpd(*opts, **kwargs)
        self.addCleanup(d.cleanup)
        return d

    def refused(self, *opts):
        """Runs fdhttpd on self.path expecting a refusal; returns its stderr."""
        rc, err = run_fdhttpd("--socket", self.path, "--workers", "1", *opts,
                              "--", echo_path())
        self.assertNotEqual(rc, 0, err)
        return err

    def test_default_mode_and_removal(self):
        d = self.start()
        st = os.lstat(self.path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        self.assertEqual(d.request().body, b"ok")
        self.assertEqual(d.stop(), 0)
        self.assertFalse(os.path.exists(self.path))
        self.assertEqual(os.listdir(self.dir), [])     # no lock, no temporary name

    def test_mode_and_owner(self):
        opts = ["--mode", "0600"]
        if os.geteuid() == 0:
            opts += ["--owner", "12345:12346"]
        self.start(*opts)
        st = os.lstat(self.path)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        if os.geteuid() == 0:
            self.assertEqual((st.st_uid, st.st_gid), (12345, 12346))
        # No temporary name is left behind in the directory.
        self.assertEqual(sorted(n for n in os.listdir(self.dir) if "sock" in n),
                         ["s.sock", "s.sock.lock"])

    def test_stale_socket_is_replaced(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.path)
        s.close()           # bound, never listening: connect is refused
        d = self.start()
        self.assertEqual(d.request().status, 200)
        self.assertRegex(d.read_log(), r"replacing a stale socket")

    def test_live_socket_is_refused(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.bind(self.path)
        s.listen(1)
        ino = os.lstat(self.path).st_ino
        err = self.refused()
        self.assertIn(self.path, err)
        self.assertIn("already listening", err)
        self.assertEqual(os.lstat(self.path).st_ino, ino)

    def test_non_socket_is_refused_and_left_alone(self):
        with open(self.path, "w") as f:
            f.write("precious")
        err = self.refused()
        self.assertIn(self.path, err)
        self.assertIn("not a socket", err)
        with open(self.path) as f:
            self.assertEqual(f.read(), "precious")

    def test_second_instance_is_refused_by_the_lock(self):
        d = self.start()
        err = self.refused()
        self.assertIn(self.path, err)
        self.assertIn(".lock", err)
        self.assertEqual(d.request().status, 200)   # the first one is unharmed

    def test_two_instances_racing_one_wins(self):
        procs = [subprocess.Popen([fdhttpd_path(), "--socket", self.path, "--workers", "1",
                                   *sandbox_user(), "--", echo_path()], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for _ in range(4)]
        try:
            wait_for(lambda: sum(p.poll() is not None for p in procs) == 3, timeout=10,
                     what="three refusals")
            self.assertEqual(sorted(p.returncode is None for p in procs),
                             [False, False, False, True])
            self.assertEqual(request(self.path).status, 200)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    self.assertEqual(p.wait(10), 0)
                p.stderr.close()
        self.assertFalse(os.path.exists(self.path))

    def test_abstract_socket(self):
        name = "@fdhttpd-test-%d" % os.getpid()
        d = self.start(socket_path=name)
        with Conn("\0" + name[1:]) as c:
            self.assertEqual(c.request().body, b"ok")
        self.assertNotIn("s.sock", os.listdir(self.dir))
        err = self.refused_at(name)
        self.assertIn(name, err)
        self.assertEqual(d.stop(), 0)

    def refused_at(self, path):
        rc, err = run_fdhttpd("--socket", path, "--", echo_path())
        self.assertNotEqual(rc, 0, err)
        return err

    def test_path_too_long(self):
        err = self.refused_at(os.path.join(self.dir, "x" * 120))
        self.assertIn("too long", err)

    def test_abstract_socket_has_no_mode_or_owner(self):
        # Anyone in the network namespace can connect to an abstract socket:
        # a --mode taken for a restriction would be a false one.
        name = "@fdhttpd-test-%d" % os.getpid()
        for opts, opt in ((["--mode", "0600"], "--mode"), (["--owner", "root:root"], "--owner")):
            with self.subTest(opts=opts):
                rc, err = run_fdhttpd("--socket", name, *opts, "--", echo_path())
                self.assertEqual(rc, 2, err)
                self.assertIn(opt, err)
                self.assertIn("abstract", err)
                self.assertIn("--allow-uid", err)

    def activate(self, *opts):
        """fdhttpd under systemd-socket-activate on self.path, started by a first
        request; returns the activator's process and fdhttpd's log."""
        activate = shutil.which("systemd-socket-activate")
        if not activate:
            self.skipTest("systemd-socket-activate not installed")
        log_path = os.path.join(self.dir, "log")
        log = open(log_path, "wb")
        self.addCleanup(log.close)
        p = subprocess.Popen([activate, "-l", self.path, fdhttpd_path(), "--workers", "1",
                              *sandbox_user(), *opts, "--", echo_path()],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            # The activator starts fdhttpd on the first connection.  Its socket
            # file exists a moment before it listens: refused until then.
            def first():
                try:
                    return request(self.path, target="/whoami")
                except (FileNotFoundError, ConnectionRefusedError):
                    return None
            self.assertEqual(wait_for(first, what="the activator listening").status, 200)
            with open(log_path) as f:
                return p, f.read()
        except BaseException:
            p.kill()
            p.wait()
            raise

    def test_socket_activation(self):
        p, log = self.activate()
        try:
            self.assertRegex(log, r"on %s \(socket-activated\)" % self.path)
            # The activator execs fdhttpd in its own process.
            wait_for(lambda: cmdline(p.pid).startswith("fdhttpd: supervisor " + self.path),
                     what="fdhttpd in the activator's process")
        finally:
            p.send_signal(signal.SIGTERM)
            rc = p.wait(10)
        self.assertEqual(rc, 0)
        # The socket belongs to whoever created it: fdhttpd leaves it.
        self.assertTrue(os.path.exists(self.path))

    def test_socket_activation_fatal_error_leaves_the_socket(self):
        """A fatal error while serving removes what fdhttpd created; a socket
        passed in is not of them."""
        p, _ = self.activate("--grace", "1")
        try:
            wait_for(lambda: cmdline(p.pid).startswith("fdhttpd: supervisor"),
                     what="fdhttpd in the activator's process")
            # Mid-request, a worker keeps the supervisor until --grace ends.
            busy = Conn(self.path)
            self.addCleanup(busy.close)
            busy.sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhe")
            wait_for(lambda: [w for w in children(p.pid) if "[1 conn" in cmdline(w)],
                     what="a worker holding the request")

            def log():
                with open(os.path.join(self.dir, "log")) as f:
                    return f.read()
            fail_poll(p.pid, log)
            self.assertEqual(p.wait(10), 1)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertTrue(stat.S_ISSOCK(os.lstat(self.path).st_mode))

    def test_socket_activation_says_which_options_it_does_not_use(self):
        other = os.path.join(self.dir, "other.sock")
        p, log = self.activate("--socket", other, "--mode", "0600")
        try:
            self.assertRegex(log, r"warn supervisor: --socket %s: not used; "
                             r"socket-activated on %s" % (other, self.path))
            self.assertRegex(log, r"warn supervisor: --mode, --owner: not used; %s "
                             % self.path)
            self.assertFalse(os.path.exists(other))
        finally:
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(10), 0)

    def test_readiness_and_stopping_notifications(self):
        d = self.start()           # waits for READY=1
        d.send_signal(signal.SIGTERM)
        d.wait_state("STOPPING=1")
        self.assertEqual(d.proc.wait(5), 0)

    def test_pidfile(self):
        pidfile = os.path.join(self.dir, "fdhttpd.pid")
        d = self.start("--pidfile", pidfile)
        with open(pidfile) as f:
            self.assertEqual(int(f.read()), d.pid)
        rc, err = run_fdhttpd("--socket", self.path + "2", "--pidfile", pidfile,
                              "--", echo_path())
        self.assertNotEqual(rc, 0)
        self.assertIn("already running as pid %d" % d.pid, err)
        self.assertFalse(os.path.exists(self.path + "2"))
        self.assertEqual(d.stop(), 0)
        self.assertFalse(os.path.exists(pidfile))

    def test_pidfile_that_is_a_link_is_refused_and_its_target_untouched(self):
        """Regression: --pidfile followed a symbolic link, overwrote its
        target with the pid and removed the link at exit."""
        victim = os.path.join(self.dir, "victim")
        with open(victim, "w") as f:
            f.write("precious\n")
        link = os.path.join(self.dir, "fdhttpd.pid")
        os.symlink(victim, link)
        rc, err = run_fdhttpd("--socket", self.path, "--pidfile", link, "--", echo_path())
        self.assertEqual(rc, 1, err)
        self.assertIn("--pidfile %s: a symbolic link, which is not followed; "
                      "refusing to start" % link, err)
        with open(victim) as f:
            self.assertEqual(f.read(), "precious\n")
        self.assertTrue(os.path.islink(link))
        self.assertFalse(os.path.exists(self.path))
        os.mkfifo(os.path.join(self.dir, "fifo.pid"))
        rc, err = run_fdhttpd("--socket", self.path, "--pidfile",
                              os.path.join(self.dir, "fifo.pid"), "--", echo_path())
        self.assertEqual(rc, 1, err)
        self.assertIn("not a regular file; refusing to start", err)

    def test_bad_options_exit_2_naming_the_option(self):
        echo = echo_path()
        cases = [
            (["--workers", "0"], "--workers"),
            (["--workers", "many"], "--workers"),
            (["--max-conns", "x"], "--max-conns"),
            (["--mode", "999"], "--mode"),
            (["--max-body", "-1"], "--max-body"),
            (["--request-timeout", "soon"], "--request-timeout"),
            (["--grace", "-1"], "--grace"),
            (["--start-timeout", "soon"], "--start-timeout"),
            (["--log-level", "loud"], "--log-level"),
            (["--allow-uid", "root"], "--allow-uid"),
            (["--user", "no-such-user-here"], "--user"),
            (["--user", "root"], "--user"),
            (["--user", "0:65534"], "--user"),
            (["--owner", "no-such-user-here:x"], "--owner"),
            (["--allow-open", "relative/dir"], "--allow-open"),
            (["--frobnicate"], "--frobnicate"),
            (["--socket"], "--socket"),
            (["--no-sandbox=yes"], "--no-sandbox"),
        ]
        for opts, name in cases:
            with self.subTest(opts=opts):
                args = ["--socket", self.path, *opts]
                if opts != ["--socket"]:
                    args += ["--", echo]
                rc, err = run_fdhttpd(*args)
                self.assertEqual(rc, 2, err)
                self.assertIn(name, err)
                self.assertEqual(len(err.strip().splitlines()), 1, err)
                self.assertFalse(os.path.exists(self.path))
        # A limit out of range says what the range is, in fdhttpd and in a
        # service run alone alike.
        for opt, value, says in (("--max-fds", "300", "a count, 0 to 253"),
                                 ("--max-head", "63", "bytes, 64 to 1048576"),
                                 ("--idle-timeout", "0", "seconds, 0.001 to 4294967")):
            with self.subTest(opt=opt):
                rc, err = run_fdhttpd("--socket", self.path, opt, value, "--", echo)
                self.assertEqual(rc, 2, err)
                self.assertIn("%s: '%s' is not a valid value: %s" % (opt, value, says), err)
                p = subprocess.run([echo, "--socket", self.path, opt, value],
                                   stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                   timeout=10)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn("invalid value for %s: %s (%s)" % (opt, value, says), p.stderr)
                self.assertFalse(os.path.exists(self.path))
        rc, err = run_fdhttpd("--socket", self.path)
        self.assertEqual(rc, 2)
        self.assertIn("SERVICE", err)
        rc, err = run_fdhttpd("--socket", self.path, "--", "/nonexistent/service")
        self.assertEqual(rc, 2)
        self.assertIn("/nonexistent/service", err)
        rc, err = run_fdhttpd("--", echo)
        self.assertEqual(rc, 2)
        self.assertIn("--socket", err)

    def test_service_refusing_its_arguments_stops_fdhttpd(self):
        rc, err = run_fdhttpd("--socket", self.path, "--workers", "2", "--",
                              echo_path(), "--no-such-echo-option")
        self.assertEqual(rc, 2, err)
        self.assertIn("--no-such-echo-option", err)
        self.assertIn("refused its arguments", err)
        # Every worker refuses alike; the decision to stop is one line.
        self.assertEqual(err.count("refused its arguments; stopping"), 1, err)
        self.assertEqual(os.listdir(self.dir), [])
        # The service says why through fdh_service_log(): a line of the log like any.
        self.assertRegex(err, r"(?m)^\S+Z fdhttpd\[\d+\] error worker [12]: echo: unknown "
                              r"option --no-such-echo-option \(see --help\)$")
        for line in err.splitlines():
            self.assertRegex(line, LOG_LINE)
        # Alone, the same words after the program's name.
        p = subprocess.run([echo_path(), "--socket", self.path, "--no-such-echo-option"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 2)
        self.assertEqual(p.stderr,
                         "fdhttp-echo: unknown option --no-such-echo-option (see --help)\n")

    def test_service_that_cannot_be_run_stops_fdhttpd_with_127(self):
        # Executable, so accepted at start, but execve() fails in every worker.
        service = os.path.join(self.dir, "service")
        with open(service, "w") as f:
            f.write("#!/nonexistent/interpreter\n")
        os.chmod(service, 0o755)
        rc, err = run_fdhttpd("--socket", self.path, "--workers", "2", "--", service)
        self.assertEqual(rc, 127, err)
        self.assertIn("cannot run %s" % service, err)
        self.assertEqual(err.count("could not be started; stopping"), 1, err)
        self.assertEqual(os.listdir(self.dir), ["service"])

    def test_framework_option_after_the_double_dash_is_refused(self):
        # Under fdhttpd the limits and the socket are fdhttpd's: one given to
        # the service would otherwise look applied while it is not.
        for opt in (["--max-body", "10"], ["--max-body=10"], ["--idle-timeout", "1"],
                    ["-s", "/tmp/elsewhere.sock"]):
            rc, err = run_fdhttpd("--socket", self.path, "--", echo_path(), *opt)
            self.assertEqual(rc, 2, err)
            # In the log's own line format, from the worker, like its other lines.
            self.assertRegex(err, r"(?m)^\S+Z fdhttpd\[\d+\] error worker 1: fdhttp-echo: "
                             r"%s is fdhttpd's option when the service runs under it: "
                             r"give it before the --$" % re.escape(opt[0]))
            self.assertIn("refused its arguments", err)
            self.assertEqual(os.listdir(self.dir), [])

    def test_help_and_version(self):
        p = subprocess.run([fdhttpd_path(), "--help"], capture_output=True)
        self.assertEqual(p.returncode, 0)
        for opt in ("--socket", "--workers", "--max-conns", "--user", "--mode", "--owner",
                    "--allow-uid", "--allow-gid", "--max-conns-per-uid", "--max-requests",
                    "--allow-open", "--max-head", "--max-body", "--max-fds",
                    "--request-timeout", "--idle-timeout", "--write-timeout", "--pidfile",
                    "--grace", "--start-timeout", "--log-level", "--no-sandbox"):
            self.assertIn(opt.encode(), p.stdout)
        p = subprocess.run([fdhttpd_path(), "--version"], capture_output=True)
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout.decode(), r"^fdhttpd \d+\.\d+\.\d+\n$")
        # A service run alone answers -V as fdhttpd and fdhttp do.
        for opt in ("-V", "--version"):
            p = subprocess.run([echo_path(), opt], capture_output=True)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertRegex(p.stdout.decode(), r"^fdhttp-echo \(fdhttp \d+\.\d+\.\d+\)\n$")

    def test_limits_reach_the_workers(self):
        d = self.start("--max-body", "10", "--max-head", "300")
        r = d.request("POST", "/echo", body=b"x" * 11)
        self.assertEqual(r.status, 413)
        r = d.request("POST", "/echo", body=b"x" * 10)
        self.assertEqual((r.status, r.body), (200, b"x" * 10))
        r = d.request(headers=[("X-Pad", "y" * 400)])
        self.assertEqual(r.status, 431)

    def test_no_sandbox_warns(self):
        d = self.start("--no-sandbox")
        d.wait_log(r"warn supervisor: --no-sandbox")


if __name__ == "__main__":
    unittest.main(verbosity=2)
