"""The fd broker (CONTRACT section 7) and fdhttp-files (section 8): opens
beneath --allow-open directories only, read-only unless ":rw", ".." and
symlinks that lead out refused, every decision logged, answers that reach
the right request while connections and DRAIN keep arriving."""

import fcntl
import json
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fdhttpd_testlib import (BUILD_DIR, Fdhttpd, fd_count, mount_tmpfs, run_fdhttpd,  # noqa: E402
                             wait_for)
from hostile_testlib import settled_fds  # noqa: E402
import fdhttp_testlib  # noqa: E402


def built(var, rel, name):
    path = os.environ.get(var) or os.path.join(BUILD_DIR, rel)
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest("%s not built at %s" % (name, path))
    return path


def files_path():
    return built("FDH_FILES", "examples/fdhttp-files", "fdhttp-files")


def probe_path():
    return built("FDH_SANDBOX_PROBE", "tests/fdh-sandbox-probe", "fdh-sandbox-probe")


class FdConn(fdhttp_testlib.Conn):
    """A connection whose responses bring their fds."""

    def __init__(self, path, timeout=10):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(path)
        super().__init__(s)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def get(self, target):
        return self.request("GET", target)


def read_fd(fd):
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 65536)


class Tree:
    """A directory tree with files inside and outside the allowed part:

        T/data/              --allow-open T/data:ro
            hello.txt        "hello"
            sub/inner.txt    "inner"
            link-in          -> hello.txt
            sub-link         -> sub              (a symlinked directory inside)
            link-out         -> /etc/hostname    (absolute: out)
            link-up          -> ../secret.txt    (relative, climbing out)
            out-link         -> ../outside       (a symlinked directory outside)
            rw/              --allow-open T/data/rw:rw
                old.txt      "old"
        T/secret.txt         "secret"
        T/outside/x          "x"
    """

    def __init__(self):
        self.top = tempfile.mkdtemp(prefix="fdh-broker-")
        os.chmod(self.top, 0o755)
        self.data = os.path.join(self.top, "data")
        self.rw = os.path.join(self.data, "rw")
        os.makedirs(os.path.join(self.data, "sub"))
        os.makedirs(self.rw)
        os.makedirs(os.path.join(self.top, "outside"))
        for rel, text in (("data/hello.txt", "hello"), ("data/sub/inner.txt", "inner"),
                          ("data/rw/old.txt", "old"), ("secret.txt", "secret"),
                          ("outside/x", "x")):
            with open(os.path.join(self.top, rel), "w") as f:
                f.write(text)
        for name, target in (("link-in", "hello.txt"), ("sub-link", "sub"),
                             ("link-out", "/etc/hostname"), ("link-up", "../secret.txt"),
                             ("out-link", "../outside")):
            os.symlink(target, os.path.join(self.data, name))

    def allow(self):
        return ["--allow-open", self.data + ":ro", "--allow-open", self.rw + ":rw"]

    def remove(self):
        shutil.rmtree(self.top, ignore_errors=True)


class BrokerTest(unittest.TestCase):
    def setUp(self):
        self.tree = Tree()
        self.addCleanup(self.tree.remove)

    def start(self, service, *args, workers=1, opts=()):
        d = Fdhttpd(*self.tree.allow(), *opts, workers=workers, service=service,
                    service_args=list(args))
        self.addCleanup(d.cleanup)
        return d

    def files(self):
        return self.start(files_path(), "--root", self.tree.data)

    def files_alone(self):
        """fdhttp-files run alone on the tree's data: its socket's path."""
        sock = os.path.join(self.tree.top, "alone.sock")
        p = subprocess.Popen([files_path(), "--socket", sock, "--root", self.tree.data],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.addCleanup(p.wait, 5)
        self.addCleanup(p.terminate)
        wait_for(lambda: os.path.exists(sock), what="fdhttp-files listening")
        return sock

    def test_files_hands_out_a_read_only_fd(self):
        d = self.files()
        with FdConn(d.sock_path) as c:
            r = c.get("/open?path=hello.txt")
            self.assertEqual(r.status, 200, r.body)
            fd = r.fds["file"]
            try:
                self.assertEqual(read_fd(fd), b"hello")
                fl = fcntl.fcntl(fd, fcntl.F_GETFL)
                self.assertEqual(fl & os.O_ACCMODE, os.O_RDONLY)
                self.assertFalse(fl & os.O_NONBLOCK)
            finally:
                r.close_fds()
        d.wait_log(r"info supervisor: broker: worker 1 \(pid \d+\): open O_RDONLY: opened "
                   r"beneath %s \(ro\): \"%s/hello.txt\"$" % (re.escape(self.tree.data),
                                                           re.escape(self.tree.data)))

    def test_files_inside_through_symlinks(self):
        d = self.files()
        with FdConn(d.sock_path) as c:
            for rel, want in (("sub/inner.txt", b"inner"), ("link-in", b"hello"),
                              ("sub-link/inner.txt", b"inner"), ("sub%2Finner.txt", b"inner")):
                with self.subTest(rel=rel):
                    r = c.get("/open?path=" + rel)
                    self.assertEqual(r.status, 200, r.body)
                    self.assertEqual(read_fd(r.fds["file"]), want)
                    r.close_fds()

    def test_paths_in_the_log_read_one_way_only(self):
        """Regression: only control bytes were escaped in the broker's audit
        lines, so a file named 'a\\x0ab' logged as one named a<LF>b did, a
        quote in a name ended the quoted path early, and bytes of invalid
        UTF-8 reached the log as they were."""
        t = self.tree
        names = ((b"nl\nx", r"nl\x0ax"), (b"bs\\x0ax", r"bs\x5cx0ax"),
                 (b'q"x', r"q\x22x"), (b"hi\xffx", r"hi\xffx"))
        for raw, _ in names:
            with open(os.path.join(os.fsencode(t.data), raw), "wb") as f:
                f.write(b"x")
        d = self.files()
        with FdConn(d.sock_path) as c:
            for raw, _ in names:
                r = c.get("/open?path=" + urllib.parse.quote_from_bytes(raw))
                self.assertEqual(r.status, 200, r.body)
                r.close_fds()
        for _, logged in names:
            d.wait_log(r"open O_RDONLY: opened beneath .*: \"%s/%s\"\n"
                       % (re.escape(t.data), re.escape(logged)))

    def test_files_alone_listens_before_its_init(self):
        """A service run alone takes its socket before its init hook runs:
        a socket already served is said at once, before init prepares (or
        refuses its arguments) for nothing; and when init refuses, the
        socket it took is removed."""
        sock = self.files_alone()
        p = subprocess.run([files_path(), "--socket", sock], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("cannot listen on %s: a server is already listening there" % sock,
                      p.stderr)
        self.assertNotIn("--root", p.stderr)
        other = os.path.join(self.tree.top, "other.sock")
        p = subprocess.run([files_path(), "--socket", other], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("--root DIR is required", p.stderr)
        self.assertFalse(os.path.exists(other))

    def test_files_root_through_a_symlink(self):
        """Regression: --root spelled through a symlink to the --allow-open
        directory put every path outside it by its spelling, and every
        request got 403.  fdhttp-files now resolves --root at start."""
        link = os.path.join(self.tree.top, "data-link")
        os.symlink("data", link)
        d = self.start(files_path(), "--root", link + "/")
        with FdConn(d.sock_path) as c:
            r = c.get("/open?path=sub/inner.txt")
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(read_fd(r.fds["file"]), b"inner")
            r.close_fds()
            self.assertEqual(c.get("/open?path=../secret.txt").status, 403)
        d.wait_log(r"opened beneath %s \(ro\): \"%s/sub/inner.txt\"\n"
                   % (re.escape(self.tree.data), re.escape(self.tree.data)))

    def test_files_refuses_a_root_that_is_no_directory(self):
        """A --root that does not exist, or is a file, stops fdhttpd at
        start (status 2, the service's arguments are wrong) instead of
        answering 404 to every request."""
        t = self.tree
        for root, why in ((os.path.join(t.top, "nope"), "No such file or directory"),
                          (os.path.join(t.data, "hello.txt"), "not a directory")):
            with self.subTest(root=root):
                status, err = run_fdhttpd("--socket", os.path.join(t.top, "s.sock"),
                                          *t.allow(), "--workers", "1", "--",
                                          files_path(), "--root", root)
                self.assertEqual(status, 2, err)
                self.assertIn("--root %s: %s" % (root, why), err)

    def test_files_refuses_what_leads_out(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.bind(os.path.join(self.tree.data, "sock"))  # open(2) says ENXIO: not a 500
        d = self.files()
        with FdConn(d.sock_path) as c:
            for rel, status in (("../secret.txt", 403), ("/etc/hostname", 403),
                                ("%2Fetc%2Fhostname", 403), ("link-out", 403),
                                ("link-up", 403), ("out-link/x", 403),
                                ("sub/../../secret.txt", 403),
                                # ".." that stays inside is refused too: only canonical
                                # paths say by their prefix where they lead
                                ("sub/../hello.txt", 403), ("./hello.txt", 403),
                                ("missing.txt", 404), ("sock", 403),
                                ("sub/missing", 404), ("x" * 4100, 414),
                                # a NUL would cut the path short of what was asked
                                ("hello.txt%00.png", 400), ("hello%2", 400)):
                with self.subTest(rel=rel[:40]):
                    r = c.get("/open?path=" + rel)
                    self.assertEqual(r.status, status, r.body)
                    self.assertEqual(r.fds, {})
        log = d.read_log()
        self.assertRegex(log, r"open O_RDONLY: refused: not a canonical path .*: "
                              r"\"%s/\.\./secret\.txt\"" % re.escape(self.tree.data))
        self.assertRegex(log, r"open O_RDONLY: refused: leads out of %s or into a mount "
                              r"beneath it: \"%s/link-out\""
                         % (re.escape(self.tree.data), re.escape(self.tree.data)))
        self.assertRegex(log, r"open O_RDONLY: No such file or directory: \"%s/missing.txt\""
                         % re.escape(self.tree.data))

    def test_files_alone_applies_the_same_rule(self):
        """Run alone there is no broker: fdhttp-files opens beneath --root itself."""
        with FdConn(self.files_alone()) as c:
            r = c.get("/open?path=sub-link/inner.txt")
            self.assertEqual((r.status, read_fd(r.fds["file"])), (200, b"inner"))
            r.close_fds()
            for rel, status in (("../secret.txt", 403), ("link-out", 403), ("nope", 404),
                                ("sub/../hello.txt", 403), ("./hello.txt", 403),
                                ("sub//inner.txt", 403), ("sub/", 403)):
                self.assertEqual(c.get("/open?path=" + rel).status, status, rel)

    def probe(self, workers=1):
        return self.start(probe_path(), workers=workers)

    def ask(self, c, path, flags="ro"):
        r = c.get("/broker?flags=%s&path=%s" % (flags, path))
        self.assertEqual(r.status, 200, r.body)
        return json.loads(r.body)["errno"], r

    def test_policy(self):
        t = self.tree
        d = self.probe()
        cases = [
            (t.data + "/hello.txt", "ro", "0"),
            (t.data + "/hello.txt", "wo", "EACCES"),         # :ro
            (t.data + "/hello.txt", "rw", "EACCES"),
            (t.data + "/hello.txt", "append", "EACCES"),
            (t.data + "/hello.txt", "trunc", "EACCES"),      # O_RDONLY|O_TRUNC truncates
            (t.data + "/new.txt", "creat", "EACCES"),
            (t.data + "/new.txt", "creat-ro", "EACCES"),
            (t.data + "/sub", "dir", "0"),
            (t.rw + "/old.txt", "wtrunc", "0"),              # :rw, the longer prefix
            (t.rw + "/old.txt", "trunc", "EINVAL"),          # O_TRUNC needs write access
            (t.rw + "/made.txt", "creat", "0"),
            (t.rw + "/../made.txt", "creat", "EACCES"),      # out of rw, into ro
            (t.rw + "/../hello.txt", "ro", "EACCES"),        # out of rw: refused, too
            (t.top + "/secret.txt", "ro", "EACCES"),         # outside every directory
            (t.top + "/datax/hello.txt", "ro", "EACCES"),    # not a component prefix
            ("/etc/hostname", "ro", "EACCES"),
            (t.data + "/missing", "ro", "ENOENT"),
            (t.data + "/link-out", "ro", "EACCES"),
            (t.data + "/out-link/x", "ro", "EACCES"),
            (t.data + "/sub-link/inner.txt", "ro", "0"),
            ("relative/path", "ro", "EINVAL"),
        ]
        with FdConn(d.sock_path) as c:
            for path, flags, want in cases:
                with self.subTest(path=path, flags=flags):
                    err, r = self.ask(c, path, flags)
                    self.assertEqual(err, want)
                    self.assertEqual(len(r.fds), 1 if want == "0" else 0)
                    if flags in ("wo", "wtrunc", "creat") and want == "0":
                        os.write(r.fds["file"], b"written")
                    r.close_fds()
            r = c.get("/broker/long")
            self.assertEqual(json.loads(r.body)["errno"], "ENAMETOOLONG")
        self.assertFalse(os.path.exists(t.data + "/new.txt"))
        self.assertFalse(os.path.exists(t.data + "/made.txt"))
        with open(t.rw + "/made.txt") as f:
            self.assertEqual(f.read(), "written")
        with open(t.rw + "/old.txt") as f:     # "old" gone: truncated by the worker
            self.assertEqual(f.read(), "written")
        with open(t.data + "/hello.txt") as f:
            self.assertEqual(f.read(), "hello")
        log = d.read_log()
        # Every decision at info (the relative path never left the worker).
        self.assertEqual(len(re.findall(r" info supervisor: broker: worker 1 ", log)),
                         len(cases) - 1, log)
        self.assertRegex(log, r"open O_WRONLY: refused: %s is read-only: \"%s/hello.txt\""
                         % (re.escape(t.data), re.escape(t.data)))
        self.assertRegex(log, r"open O_WRONLY\|O_CREAT: opened beneath %s \(rw\): \"%s/made.txt\""
                         % (re.escape(t.rw), re.escape(t.rw)))
        self.assertRegex(log, r"open O_RDONLY: refused: outside every --allow-open directory: "
                              r"\"/etc/hostname\"")
        self.assertRegex(log, r"open O_RDONLY\|O_TRUNC: refused: O_TRUNC without O_WRONLY or "
                              r"O_RDWR: \"%s/old.txt\"" % re.escape(t.rw))

    def test_mounts_beneath_an_allowed_directory_are_not_crossed(self):
        """A mount inside an allowed directory (a bind mount of anywhere, a
        FUSE mount a user made in a writable one) is a place the policy did
        not name: the broker does not enter it, nor fdhttp-files run alone,
        unless it is allowed in its own right."""
        t = self.tree
        mnt = os.path.join(t.rw, "mnt")
        os.mkdir(mnt)
        mount_tmpfs(self, mnt)
        with open(os.path.join(mnt, "f"), "w") as f:
            f.write("mounted")
        d = self.probe()
        with FdConn(d.sock_path) as c:
            for path, flags, want in ((mnt + "/f", "ro", "EACCES"),
                                      (mnt + "/new", "creat", "EACCES"),
                                      (t.rw + "/old.txt", "ro", "0")):
                with self.subTest(path=path, flags=flags):
                    err, r = self.ask(c, path, flags)
                    self.assertEqual(err, want)
                    r.close_fds()
        self.assertFalse(os.path.exists(mnt + "/new"))
        d.wait_log(r"open O_RDONLY: refused: leads out of %s or into a mount beneath it: "
                   r"\"%s/f\"" % (re.escape(t.rw), re.escape(mnt)))

        with FdConn(self.files_alone()) as c:
            self.assertEqual(c.get("/open?path=rw/mnt/f").status, 403)

        # Named in an --allow-open of its own, it is allowed.
        d2 = self.start(probe_path(), opts=("--allow-open", mnt + ":ro"))
        with FdConn(d2.sock_path) as c:
            err, r = self.ask(c, mnt + "/f")
            self.assertEqual(err, "0")
            self.assertEqual(read_fd(r.fds["file"]), b"mounted")
            r.close_fds()

    def test_read_only_directory_inside_a_writable_one(self):
        """--allow-open W:rw --allow-open W/private:ro: no other spelling of a
        path in private/ (".", "//", a symlink inside W, the read-only
        directory named through a symlink) makes it writable."""
        w = os.path.join(self.tree.top, "w")
        private = os.path.join(w, "private")
        os.makedirs(private)
        os.makedirs(os.path.join(w, "sub"))
        for rel, text in (("private/f", "secret"), ("ok.txt", "ok")):
            with open(os.path.join(w, rel), "w") as f:
                f.write(text)
        os.symlink("private", os.path.join(w, "alias"))
        os.symlink("../private", os.path.join(w, "sub", "up"))
        cases = [
            (private + "/f", "wo", "EACCES"),
            (w + "/./private/f", "wo", "EACCES"),
            (w + "//private/f", "wo", "EACCES"),
            (w + "/alias/f", "wo", "EACCES"),
            (w + "/alias/f", "wtrunc", "EACCES"),
            (w + "/sub/up/f", "append", "EACCES"),
            (w + "/private", "tmpfile", "EACCES"),
            (w + "/alias", "tmpfile", "EACCES"),
            (w + "/ok.txt/", "wo", "EACCES"),
            (w + "/alias/f", "ro", "0"),                # reading private/ is allowed
            (w + "/sub", "tmpfile", "0"),
            (w + "/ok.txt", "wo", "0"),
            (w + "/new.txt", "creat", "0"),
        ]
        for ro_name in (private, w + "/alias"):     # the second: named through a symlink
            d = Fdhttpd("--allow-open", w + ":rw", "--allow-open", ro_name + ":ro",
                        workers=1, service=probe_path())
            self.addCleanup(d.cleanup)
            with FdConn(d.sock_path) as c:
                for path, flags, want in cases:
                    with self.subTest(ro=ro_name, path=path, flags=flags):
                        err, r = self.ask(c, path, flags)
                        self.assertEqual(err, want)
                        r.close_fds()
            log = d.read_log()
            self.assertRegex(log, r"open O_WRONLY: refused: not a canonical path .*: "
                                  r"\"%s/\./private/f\"" % re.escape(w))
            self.assertRegex(log, r"open O_WRONLY\|O_APPEND: refused: a symlink on the way "
                                  r".*: \"%s/sub/up/f\"" % re.escape(w))
            if ro_name != private:      # named by its own path, it decides by prefix
                self.assertRegex(log, r"open O_WRONLY: refused: leads into %s, which is "
                                      r"read-only: \"%s/private/f\""
                                 % (re.escape(ro_name), re.escape(w)))
            d.cleanup()
        with open(private + "/f") as f:
            self.assertEqual(f.read(), "secret")
        self.assertEqual(os.listdir(private), ["f"])

    def test_allow_open_refuses_what_cannot_be_a_policy(self):
        """A path spelled wrong is a bad command line (2); one the file system
        does not back as a directory could not be set up (1)."""
        t = self.tree
        for args, msg, want in (
                (["--allow-open", t.data + "/./sub"], "not a canonical path", 2),
                (["--allow-open", t.data + "/sub", "--allow-open", t.data + "/sub/:ro"],
                 "given twice", 2),
                (["--allow-open", t.data + "/nothing:ro"], "No such file or directory", 1),
                (["--allow-open", t.data + "/sub:RW"],
                 "No such file or directory (its mode, if any, is :ro or :rw)", 1),
                # sub-link -> sub: one directory, both writable and read-only
                (["--allow-open", t.data + "/sub:rw", "--allow-open", t.data + "/sub-link:ro"],
                 "the same directory as", 1)):
            with self.subTest(args=args):
                status, err = run_fdhttpd("--socket", os.path.join(t.top, "s.sock"), *args,
                                          "--", probe_path())
                self.assertEqual(status, want, err)
                self.assertIn(msg, err)
                self.assertFalse(os.path.exists(os.path.join(t.top, "s.sock")))

    def test_long_paths_keep_the_outcome_in_the_log(self):
        """A path near PATH_MAX is cut in the middle, with a marker, and logged
        after the flags and the outcome: a granted and a refused open differ."""
        t = self.tree
        deep = t.data
        for i in range(14):
            deep = os.path.join(deep, "%02d" % i + "d" * 250)
        os.makedirs(deep)
        path = deep + "/f"
        with open(path, "w") as f:
            f.write("deep")
        self.assertGreater(len(path), 3500)
        d = self.probe()
        with FdConn(d.sock_path) as c:
            err, r = self.ask(c, path, "ro")
            self.assertEqual((err, read_fd(r.fds["file"])), ("0", b"deep"))
            r.close_fds()
            self.assertEqual(self.ask(c, path, "wo")[0], "EACCES")
        lines = [ln for ln in d.read_log().splitlines() if " broker: worker 1 " in ln]
        self.assertEqual(len(lines), 2, lines)
        cut = r": \"%s\.\.\.\[\d+ bytes cut\]\.\.\.%s\"$" % (
            re.escape(path[:96]), re.escape(path[-64:]))
        self.assertRegex(lines[0], r"open O_RDONLY: opened beneath %s \(ro\)%s"
                         % (re.escape(t.data), cut))
        self.assertRegex(lines[1], r"open O_WRONLY: refused: %s is read-only%s"
                         % (re.escape(t.data), cut))
        self.assertEqual(int(re.search(r"\[(\d+) bytes cut\]", lines[0]).group(1)),
                         len(path) - 160)
        for ln in lines:
            self.assertLess(len(ln), 600)

    def test_many_requests_from_two_workers(self):
        t = self.tree
        d = self.probe(workers=2)
        targets = [(t.data + "/hello.txt", 5), (t.data + "/sub/inner.txt", 5),
                   (t.rw + "/old.txt", 3)]
        results, pids = [], set()

        def client(k):
            try:
                with FdConn(d.sock_path) as c:
                    pids.add(json.loads(c.get("/pid").body)["pid"])
                    for i in range(15):
                        path, size = targets[(k + i) % len(targets)]
                        r = c.get("/broker/many?n=4&path=" + path)
                        results.append(json.loads(r.body) == {"ok": 4, "bytes": 4 * size})
            except Exception as e:      # noqa: BLE001 - reported below
                results.append(repr(e))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        self.assertEqual(results, [True] * 90)
        self.assertEqual(len(pids), 2)          # both workers asked
        self.assertEqual(len(re.findall(r"broker: worker", d.read_log())), 360)

    def test_connections_and_drain_arriving_during_a_broker_wait(self):
        """The handler sleeps before asking: a connection and DRAIN queue up in
        the control socket ahead of the broker's answer, and are handled after."""
        d = self.probe()
        slow = FdConn(d.sock_path)
        self.addCleanup(slow.close)
        slow.send(fdhttp_testlib.build_request(
            "GET", "/broker/slow?ms=600&path=%s/hello.txt" % self.tree.data))
        time.sleep(0.15)
        late = FdConn(d.sock_path)
        self.addCleanup(late.close)
        late.send(fdhttp_testlib.build_request("GET", "/pid"))
        more = FdConn(d.sock_path)
        self.addCleanup(more.close)
        time.sleep(0.15)        # both handed over while the handler sleeps
        d.send_signal(signal.SIGTERM)
        r = slow.read_response()
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(read_fd(r.fds["file"]), b"hello")
        r.close_fds()
        # The request in flight when DRAIN came is told its connection ends.
        self.assertTrue(r.closes, r.headers)
        slow.expect_closed()                # the DRAIN, handled once the handler returned
        r = late.read_response()            # its first request is served first
        self.assertEqual(r.status, 200, r.body)
        # Handed over before the DRAIN, no request yet: not idle, its first is served.
        r = more.get("/pid")
        self.assertEqual(r.status, 200, r.body)
        self.assertTrue(r.closes)
        t0 = time.monotonic()
        self.assertEqual(d.proc.wait(5), 0)
        self.assertLess(time.monotonic() - t0, 2)

    def test_drain_while_init_waits_on_the_broker(self):
        """SIGTERM while the service's init hook waits for the broker: the
        DRAIN is read before the worker has a dispatcher to drain.  It is
        kept, the open answered, and the worker starts and exits cleanly."""
        d = Fdhttpd(*self.tree.allow(), workers=1, service=probe_path(),
                    service_args=["--init-open", self.tree.data + "/hello.txt"],
                    wait_ready=False)
        self.addCleanup(d.cleanup)
        d.wait_log(r"worker 1 \(pid \d+\) started")
        d.send_signal(signal.SIGTERM)      # the init hook sleeps 500 ms before asking
        self.assertEqual(d.proc.wait(10), 0)
        log = d.read_log()
        self.assertIn("init: broker open: 0", log)
        self.assertRegex(log, r"worker 1 \(pid \d+\) exited with status 0")
        self.assertNotIn("killed by signal", log)
        self.assertNotIn("(--grace)", log)

    def test_queued_connections_are_served_after_the_wait(self):
        d = self.probe()
        slow = FdConn(d.sock_path)
        self.addCleanup(slow.close)
        slow.send(fdhttp_testlib.build_request(
            "GET", "/broker/slow?ms=400&path=%s/hello.txt" % self.tree.data))
        time.sleep(0.1)
        conns = [FdConn(d.sock_path) for _ in range(3)]
        for c in conns:
            self.addCleanup(c.close)
            c.send(fdhttp_testlib.build_request("GET", "/pid"))
        r = slow.read_response()
        self.assertEqual((r.status, read_fd(r.fds["file"])), (200, b"hello"))
        r.close_fds()
        for c in conns:
            self.assertEqual(c.read_response().status, 200)
            self.assertEqual(c.get("/open").status, 200)    # kept alive, served again


# The service of AnswersLeftUnreadTest: worker 1 turns hostile, every other
# worker is the probe.  Worker 1 says READY, and once $CTL/flood exists asks
# the broker for argv[2] as fast as the socket takes it, reading nothing; it
# says how many it sent in $CTL/flooded, and once $CTL/measure exists, how
# many bytes are queued for it in $CTL/measured.  Once $CTL/read exists it
# reads everything, until every request is answered, asks once more as
# fdh_broker_open() would, and says what it got in $CTL/served.
HOSTILE = """#!%s
import fcntl, json, os, socket, struct, sys, termios, time
probe, path, ctl = sys.argv[1:4]
if os.environ["FDHTTP_WORKER_ID"] != "1":
    os.execv(probe, [probe])
HDR = "=HHI"
s = socket.socket(fileno=3)
s.send(struct.pack(HDR, 1, 1, 0))                           # READY

def report(name, **kw):
    with open(os.path.join(ctl, name + ".tmp"), "w") as f:
        json.dump(kw, f)
    os.rename(os.path.join(ctl, name + ".tmp"), os.path.join(ctl, name))

def wait(name):
    while not os.path.exists(os.path.join(ctl, name)):
        time.sleep(0.01)

def ask(oid):
    s.send(struct.pack(HDR + "Ii", 1, 8, 0, oid, os.O_RDONLY) + path.encode().ljust(4096, b"\\0"))

# One message: an answer's fd kept in fds, a connection closed at once.
def receive(answers, fds):
    msg, got, _, _ = socket.recv_fds(s, 64, 4)
    if not msg:
        sys.exit(0)                                         # fdhttpd is gone
    _, type_, flags = struct.unpack_from(HDR, msg)
    if type_ == 72:                                         # OPEN_REPLY
        oid, err = struct.unpack_from("=Ii", msg, 8)
        answers[oid] = err
        fds.extend(got)
    else:
        for fd in got:
            os.close(fd)
        if type_ == 64:                                     # NEW_CONN: CONN_CLOSED
            s.send(struct.pack(HDR + "Q", 1, 2, 0, struct.unpack_from("=Q", msg, 8)[0]))
        elif type_ == 65:                                   # DRAIN
            sys.exit(0)

wait("flood")
s.setblocking(False)
sent, last = 0, time.monotonic()
while sent < 200 and time.monotonic() - last < 1.0:
    try:
        ask(sent + 1)
        sent += 1
        last = time.monotonic()
    except BlockingIOError:
        time.sleep(0.01)
report("flooded", sent=sent)
wait("measure")
queued = fcntl.ioctl(s, termios.FIONREAD, struct.pack("i", 0))
report("measured", queued_bytes=struct.unpack("i", queued)[0])
wait("read")
s.setblocking(True)
s.settimeout(20)
answers, fds = {}, []
while len(answers) < sent:
    receive(answers, fds)
for fd in fds:
    os.close(fd)
ask(sent + 1)
final = []
while sent + 1 not in answers:
    receive(answers, final)
data = os.read(final[0], 64).decode() if final else ""
report("served", answers=len(answers) - 1, fds=len(fds),
       errors=sorted(set(e for e in answers.values() if e)), final=data)
for fd in final:
    os.close(fd)
s.settimeout(None)
while True:
    receive(answers, fds)
"""


def unprivileged(test):
    """(prefix, python): what runs fdhttpd and our scripts as a uid of their
    own where we are root.  Not root: no CAP_SYS_RESOURCE lifts the limit on
    fds in flight.  A uid of its own: another test's fds in flight would
    count too."""
    if os.geteuid() != 0:
        return [], sys.executable
    uid = 61000 + os.getpid() % 4000
    # Ours may lie where only root looks (~/.pyenv).
    python = shutil.which("python3", path="/usr/bin:/bin")
    if shutil.which("setpriv") is None or python is None:
        test.skipTest("needs setpriv and /usr/bin/python3 to run fdhttpd without root")
    return ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups"], python


def low_limit():
    """fdhttpd's RLIMIT_NOFILE, and so the fds it may have in flight: 96."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))


class AnswersLeftUnreadTest(unittest.TestCase):
    """A compromised worker asks the broker as fast as it can and reads no
    answer.  Each answer holds an fd in flight, which a non-root supervisor's
    RLIMIT_NOFILE counts (ETOOMANYREFS past it) whichever worker it goes to:
    unbounded, they would stall every other worker's connections.  fdhttpd
    leaves its requests unread at BROKER_MAX_UNREAD (4) answers unread."""

    CAP = 4
    REPLY_BYTES = 16                # an OPEN_REPLY's record

    def test_a_worker_that_reads_no_answers_gets_no_more(self):
        tree = Tree()
        self.addCleanup(tree.remove)
        tmp = tempfile.mkdtemp(prefix="fdh-unread-")
        self.addCleanup(shutil.rmtree, tmp, True)
        os.chmod(tmp, 0o777)
        ctl = os.path.join(tmp, "ctl")
        os.mkdir(ctl)
        os.chmod(ctl, 0o777)
        prefix, python = unprivileged(self)
        service = os.path.join(tmp, "service")
        with open(service, "w") as f:
            f.write(HOSTILE % python)
        os.chmod(service, 0o755)
        hello = tree.data + "/hello.txt"
        d = Fdhttpd("--no-sandbox", *tree.allow(), workers=2, service=service,
                    service_args=[probe_path(), hello, ctl], tmpdir=tmp,
                    prefix=prefix, preexec_fn=low_limit)
        self.addCleanup(d.cleanup)
        hostile = int(d.wait_log(r"worker 1 \(pid (\d+)\) ready").group(1))
        before = settled_fds([d.pid])

        def file_(name):
            return os.path.join(ctl, name)

        def result(name, timeout=10):
            wait_for(lambda: os.path.exists(file_(name)), timeout, what=name)
            with open(file_(name)) as f:
                return json.load(f)

        open(file_("flood"), "w").close()
        flooded = result("flooded")
        capped = r"warn supervisor: worker 1 \(pid %d\): 4 broker answers unread; " \
                 r"leaving its requests unread until it reads them" % hostile

        def decided():
            return len(re.findall(r" info supervisor: broker: worker 1 ", d.read_log()))

        wait_for(lambda: re.search(capped, d.read_log()) or decided() > self.CAP,
                 what="worker 1 held at the cap")
        time.sleep(0.3)                 # time for more answers, were any to come
        log = d.read_log()
        # Answered up to the cap, the rest left unread in the socket ...
        self.assertGreater(flooded["sent"], self.CAP, log)
        self.assertEqual(decided(), self.CAP, log[-3000:])
        self.assertEqual(len(re.findall(capped, log)), 1, log[-3000:])
        open(file_("measure"), "w").close()
        self.assertEqual(result("measured")["queued_bytes"], self.CAP * self.REPLY_BYTES)

        # ... while the other worker takes connections and its own broker answers.
        for _ in range(10):
            with FdConn(d.sock_path, timeout=5) as c:
                r = c.get("/broker?flags=ro&path=" + hello)
                self.assertEqual((r.status, read_fd(r.fds["file"])), (200, b"hello"), r.body)
                r.close_fds()
        self.assertNotIn("Too many references", d.read_log())

        # Read at last, the hostile worker's requests are all answered, fds and all.
        open(file_("read"), "w").close()
        served = result("served", timeout=20)
        self.assertEqual(served, {"answers": flooded["sent"], "fds": flooded["sent"],
                                  "errors": [], "final": "hello"})
        d.wait_log(r"info supervisor: worker 1 \(pid %d\): read its broker answers; taking "
                   r"its requests again" % hostile)
        log = d.read_log()
        self.assertNotIn("killing it", log)
        self.assertNotIn("dropped", log)
        self.assertIn(hostile, d.workers())
        # Every fd the broker opened went, none stays in fdhttpd.
        wait_for(lambda: fd_count(d.pid) == before[d.pid],
                 what="fdhttpd's fds back to %d (now %d)" % (before[d.pid], fd_count(d.pid)))
        self.assertEqual(d.stop(), 0)


# Puts N fds in flight (sent on a socket nobody reads) as our uid until its
# standard input closes; says "filled" once they are.
FILL = """
import os, socket, sys
a, b = socket.socketpair()
r, w = os.pipe()
socket.send_fds(a, [b"x"], [r] * int(sys.argv[1]))
print("filled", flush=True)
sys.stdin.read()
"""


class ShortAnswersTest(unittest.TestCase):
    """While fdhttpd's fds in flight are over its RLIMIT_NOFILE, a broker
    answer cannot carry its fd (ETOOMANYREFS): the worker gets the error
    instead, and that worker's streak of such answers is logged once."""

    def test_each_workers_streak_is_logged_once(self):
        """Regression: one flag for every worker, so that a second worker's
        streak went unlogged, and one worker's answer going through made the
        next short answer of another log again."""
        tree = Tree()
        self.addCleanup(tree.remove)
        tmp = tempfile.mkdtemp(prefix="fdh-short-")
        self.addCleanup(shutil.rmtree, tmp, True)
        os.chmod(tmp, 0o777)
        prefix, python = unprivileged(self)
        d = Fdhttpd("--no-sandbox", *tree.allow(), workers=2, service=probe_path(),
                    tmpdir=tmp, prefix=prefix, preexec_fn=low_limit)
        self.addCleanup(d.cleanup)
        hello = tree.data + "/hello.txt"
        # One connection held by each worker.
        conns = [FdConn(d.sock_path, timeout=5) for _ in range(2)]
        for c in conns:
            self.addCleanup(c.close)
        pids = [json.loads(c.get("/pid").body)["pid"] for c in conns]
        self.assertNotEqual(pids[0], pids[1])

        def unfill(p):
            p.stdin.close()
            p.stdout.close()
            p.wait()

        def fill():
            p = subprocess.Popen([*prefix, python, "-c", FILL, "100"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE)
            self.addCleanup(unfill, p)
            self.assertEqual(p.stdout.readline(), b"filled\n")
            return p

        def ask(i):
            r = conns[i].get("/broker?flags=ro&path=" + hello)
            got = json.loads(r.body)["errno"]
            if got == "0":
                self.assertEqual(read_fd(r.fds["file"]), b"hello")
            r.close_fds()
            return got

        def logged(i):
            return len(re.findall(r"warn supervisor: worker \d \(pid %d\): broker answer: "
                                  r".*; answering the error instead until an fd goes "
                                  r"through again" % pids[i], d.read_log()))

        filler = fill()
        self.assertEqual([ask(0), ask(1), ask(0)], ["ETOOMANYREFS"] * 3)
        self.assertEqual([logged(0), logged(1)], [1, 1], d.read_log())
        unfill(filler)
        self.assertEqual(ask(0), "0")                   # the first one's streak ends
        filler = fill()
        self.assertEqual([ask(1), ask(0)], ["ETOOMANYREFS"] * 2)
        # The second one's streak went on; the first one's is a new one.
        self.assertEqual([logged(0), logged(1)], [2, 1], d.read_log())
        unfill(filler)
        self.assertEqual([ask(0), ask(1)], ["0", "0"])
        self.assertEqual(d.stop(), 0)


class WorkerSideTest(unittest.TestCase):
    """The probe as a worker of a fake supervisor that answers late."""

    HDR = "=HHI"

    def test_timeout_then_a_late_answer_is_dropped(self):
        sup, wrk = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.addCleanup(sup.close)
        wfd = wrk.detach()
        env = {"FDHTTP_CONTROL_FD": "3", "FDHTTP_WORKER_ID": "1", "FDHTTP_SANDBOX": "0",
               "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                env[k] = os.environ[k]
        p = subprocess.Popen([probe_path()], env=env, stdin=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, close_fds=False,
                             preexec_fn=lambda: os.dup2(wfd, 3))
        os.close(wfd)
        self.addCleanup(p.wait, 5)
        self.addCleanup(p.kill)
        sup.settimeout(10)
        self.assertEqual(struct.unpack(self.HDR, sup.recv(64)), (1, 1, 0))     # READY
        cli, srv = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(cli.close)
        conn = struct.pack(self.HDR, 1, 64, 0) + struct.pack("=QiIII", 1, os.getpid(), 0, 0, 0)
        socket.send_fds(sup, [conn], [srv.fileno()])                          # NEW_CONN
        srv.close()
        c = fdhttp_testlib.Conn(cli)
        cli.settimeout(10)

        def asked():
            msg = sup.recv(8192)
            version, type_, _ = struct.unpack_from(self.HDR, msg)
            self.assertEqual((version, type_, len(msg)), (1, 8, 8 + 8 + 4096))  # OPEN
            oid, flags = struct.unpack_from("=Ii", msg, 8)
            path = msg[16:].split(b"\0", 1)[0]
            return oid, flags, path

        def reply(oid, fd):
            socket.send_fds(sup, [struct.pack(self.HDR + "Ii", 1, 72, 1, oid, 0)], [fd])

        c.send(fdhttp_testlib.build_request("GET", "/broker?path=/srv/x"))
        oid, flags, path = asked()
        self.assertEqual((flags, path), (os.O_RDONLY, b"/srv/x"))
        t0 = time.monotonic()
        r = c.read_response()
        self.assertEqual(json.loads(r.body), {"errno": "ETIMEDOUT"})
        self.assertGreater(time.monotonic() - t0, 4)
        before = len(os.listdir("/proc/%d/fd" % p.pid))
        # The answer comes too late: the worker closes its fd, gives it to nobody.
        rd, wr = os.pipe()
        os.write(wr, b"late")
        os.close(wr)
        reply(oid, rd)
        os.close(rd)
        c.send(fdhttp_testlib.build_request("GET", "/broker?path=/srv/y"))
        oid2, _, path = asked()
        self.assertEqual((oid2, path), (oid + 1, b"/srv/y"))
        rd, wr = os.pipe()
        os.write(wr, b"right")
        os.close(wr)
        reply(oid2, rd)
        os.close(rd)
        r = c.read_response()
        self.assertEqual(json.loads(r.body), {"errno": "0"})
        self.assertEqual(os.read(r.fds["file"], 16), b"right")
        r.close_fds()
        # The response's fd is closed once sent, a moment after we read it.
        wait_for(lambda: len(os.listdir("/proc/%d/fd" % p.pid)) == before,
                 what="the worker's fds back to %d" % before)
        c.close()
        # CONN_CLOSED for id 1, then the supervisor goes: the worker exits 0.
        self.assertEqual(struct.unpack(self.HDR + "Q", sup.recv(64)), (1, 2, 0, 1))
        sup.shutdown(socket.SHUT_RDWR)
        self.assertEqual(p.wait(5), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
