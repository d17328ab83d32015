"""cmake --install into a temporary prefix, then a service built out of tree
against what was installed: once with pkg-config, once with
find_package(fdhttp) (shared and static), each run with --socket and asked
one question through the installed fdhttp client.  The complete C programs
of the documentation are built the way docs/getting-started.md says.

Run by ctest (FDH_BUILD_DIR, FDH_CMAKE, FDH_CC and FDH_SANITIZE come from
its environment), or by hand:
    FDH_BUILD_DIR=build python3 tests/integration/test_install.py
"""

import contextlib
import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("FDH_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.environ.get("FDH_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
CMAKE = os.environ.get("FDH_CMAKE") or shutil.which("cmake")
CC = os.environ.get("FDH_CC") or shutil.which("cc")
# A sanitizer build installs sanitized libraries: what links them must be too.
SANITIZE = os.environ.get("FDH_SANITIZE", "0") not in ("", "0", "OFF", "FALSE")
SAN_FLAGS = ["-fsanitize=address,undefined"] if SANITIZE else []

SERVICE_C = r"""
#include <string.h>
#include <fdhttp/service.h>

static int
hello(struct fdh_req *req, struct fdh_resp *resp, void *ud)
{
	(void)req;
	(void)ud;
	return fdh_resp_body(resp, "hello from out of tree", strlen("hello from out of tree"));
}

static const struct fdh_route routes[] = {
	{ "GET", "/hello", hello, NULL },
};

static const struct fdh_service service = {
	.name = "oot",
	.routes = routes,
	.nroutes = sizeof(routes) / sizeof(routes[0]),
};

int
main(int argc, char *argv[])
{
	return fdh_service_main(&service, argc, argv);
}
"""

CMAKELISTS = r"""
cmake_minimum_required(VERSION 3.18)
project(oot C)
find_package(fdhttp 0.1 REQUIRED)
add_executable(svc-shared svc.c)
target_link_libraries(svc-shared PRIVATE fdhttp::fdhttp)
add_executable(svc-static svc.c)
target_link_libraries(svc-static PRIVATE fdhttp::fdhttp_static)
"""


def run(argv, **kw):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, **kw)
    if p.returncode != 0:
        raise AssertionError("%s exited with %d:\n%s"
                             % (" ".join(argv), p.returncode, p.stdout.decode(errors="replace")))
    return p.stdout.decode(errors="replace")


def unroff(text):
    """An .EX block of a man page as the reader sees it."""
    for escape, plain in (("\\-", "-"), ("\\&", ""), ("\\(aq", "'"), ("\\e", "\\")):
        text = text.replace(escape, plain)
    return text


def doc_programs():
    """The complete C programs of README.md, docs/*.md and the man pages, as
    (where, source)."""
    found = []
    docs = os.path.join(SOURCE_DIR, "docs")
    pages = ["README.md"] + sorted(os.path.join("docs", n) for n in os.listdir(docs)
                                   if n.endswith(".md"))
    pages += sorted(os.path.join("docs", "man", n) for n in os.listdir(os.path.join(docs, "man")))
    for rel in pages:
        with open(os.path.join(SOURCE_DIR, rel)) as f:
            text = f.read()
        man = not rel.endswith(".md")
        for m in re.finditer(r"(?ms)^\.EX\n(.*?)^\.EE$" if man else r"(?ms)^```c\n(.*?)^```$",
                             text):
            src = unroff(m.group(1)) if man else m.group(1)
            if "#include <fdhttp/" in src and re.search(r"(?m)^main\(", src):
                found.append(("%s:%d" % (rel, text.count("\n", 0, m.start()) + 1), src))
    return found


def needed(path):
    out = run(["readelf", "-d", path])
    return [line.split("[")[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


@unittest.skipUnless(CMAKE and CC, "cmake or a C compiler is missing")
class InstallTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.isfile(os.path.join(BUILD_DIR, "cmake_install.cmake")):
            raise unittest.SkipTest("no configured build at %s; set FDH_BUILD_DIR" % BUILD_DIR)
        cls.tmp = tempfile.mkdtemp(prefix="fdh-install-")
        cls.prefix = os.path.join(cls.tmp, "prefix")
        run([CMAKE, "--install", BUILD_DIR, "--prefix", cls.prefix])
        libs = glob.glob(os.path.join(cls.prefix, "lib*", "**", "libfdhttp.so"), recursive=True)
        if len(libs) != 1:
            raise AssertionError("libfdhttp.so installed %d times: %s" % (len(libs), libs))
        cls.libdir = os.path.dirname(libs[0])
        with open(os.path.join(cls.tmp, "svc.c"), "w") as f:
            f.write(SERVICE_C)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def p(self, *parts):
        return os.path.join(self.prefix, *parts)

    def test_files(self):
        for rel in ("include/fdhttp/fdhttp.h", "include/fdhttp/common.h",
                    "include/fdhttp/service.h", "include/fdhttp/client.h",
                    "bin/fdhttp", "bin/fdhttp-echo", "sbin/fdhttpd",
                    "share/man/man1/fdhttp.1", "share/man/man8/fdhttpd.8",
                    "share/man/man3/libfdhttp.3"):
            self.assertTrue(os.path.isfile(self.p(rel)), rel)
        for rel in ("libfdhttp.a", "libfdhttp.so.0", "pkgconfig/fdhttp.pc",
                    "cmake/fdhttp/fdhttpConfig.cmake", "cmake/fdhttp/fdhttpConfigVersion.cmake",
                    "cmake/fdhttp/fdhttpTargets.cmake"):
            self.assertTrue(os.path.exists(os.path.join(self.libdir, rel)), rel)
        out = run([self.p("sbin/fdhttpd"), "--version"])
        self.assertIn("0.1.0", out)
        out = run([self.p("bin/fdhttp"), "--version"])
        self.assertIn("0.1.0", out)

    def test_programs_and_library_are_hardened(self):
        # Full RELRO: the GOT read-only after start-up, every symbol bound then.
        for rel in ("sbin/fdhttpd", "bin/fdhttp", "bin/fdhttp-echo"):
            path = self.p(rel)
            dyn = run(["readelf", "-d", path])
            self.assertRegex(dyn, r"\(FLAGS_1\).*\bNOW\b", rel)
            self.assertIn("GNU_RELRO", run(["readelf", "-lW", path]), rel)
        lib = os.path.join(self.libdir, "libfdhttp.so")
        self.assertRegex(run(["readelf", "-d", lib]), r"\(FLAGS(_1)?\).*\bNOW\b")
        # Stack canaries: the supervisor, the programs and the library that
        # takes every client's bytes.
        if not SANITIZE:
            for path in (self.p("sbin/fdhttpd"), self.p("bin/fdhttp"),
                         self.p("bin/fdhttp-echo"), lib):
                self.assertIn("__stack_chk_fail", run(["nm", "-D", path]), path)

    def test_pkg_config_file(self):
        with open(os.path.join(self.libdir, "pkgconfig", "fdhttp.pc")) as f:
            pc = f.read()
        # Written at install time: the prefix given to cmake --install.
        self.assertIn("prefix=%s\n" % self.prefix, pc)
        self.assertRegex(pc, r"Requires\.private:.*\blibbsd\b")

    def test_shared_library_exports_only_the_api(self):
        lib = os.path.join(self.libdir, "libfdhttp.so")
        out = run(["readelf", "-d", lib])
        self.assertIn("Library soname: [libfdhttp.so.0]", out)
        syms = [line.split()[-1] for line in run(["nm", "-D", "--defined-only", lib]).splitlines()
                if line.strip()]
        self.assertIn("fdh_service_main", syms)
        self.assertIn("fdh_client_request", syms)
        self.assertEqual([s for s in syms if not s.startswith("fdh_")], [])

    def test_static_library_bundles_llhttp(self):
        out = run(["nm", "--defined-only", os.path.join(self.libdir, "libfdhttp.a")])
        self.assertRegex(out, r"(?m) T llhttp_execute$")
        self.assertRegex(out, r"(?m) T fdh_service_main$")

    @contextlib.contextmanager
    def serving(self, exe):
        """Runs the service exe alone on a socket, whose path it yields."""
        sock = os.path.join(self.tmp, os.path.basename(exe) + ".sock")
        proc = subprocess.Popen([exe, "--socket", sock], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 10
            while True:
                if proc.poll() is not None:
                    raise AssertionError("%s exited with %d:\n%s" % (
                        exe, proc.returncode, proc.stdout.read().decode(errors="replace")))
                try:
                    with socket.socket(socket.AF_UNIX) as s:
                        s.connect(sock)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise AssertionError("%s did not listen within 10 s" % exe)
                    time.sleep(0.02)
            yield sock
        finally:
            proc.terminate()
            proc.wait(10)
            proc.stdout.close()

    def serve_and_ask(self, exe):
        with self.serving(exe) as sock:
            out = run([self.p("bin/fdhttp"), "-s", sock, "--timeout", "10", "/hello"])
        self.assertEqual(out, "hello from out of tree")

    def build_doc_programs(self):
        """Each complete C program of the documentation, built with the
        command of docs/getting-started.md (and -Werror): (where, source, exe)."""
        pkgconfig = shutil.which("pkg-config")
        if not pkgconfig:
            self.skipTest("pkg-config is not installed")
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(self.libdir, "pkgconfig"))
        flags = run([pkgconfig, "--cflags", "--libs", "fdhttp"], env=env).split()
        built = []
        for i, (where, src) in enumerate(doc_programs()):
            path = os.path.join(self.tmp, "doc%d.c" % i)
            with open(path, "w") as f:
                f.write(src)
            exe = os.path.join(self.tmp, "doc%d" % i)
            p = subprocess.run([CC, "-std=c11", "-Wall", "-Werror", *SAN_FLAGS, "-o", exe, path,
                                *flags, "-Wl,-rpath," + self.libdir],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
            self.assertEqual(p.returncode, 0, "%s does not build:\n%s"
                             % (where, p.stdout.decode(errors="replace")))
            built.append((where, src, exe))
        return built

    def test_doc_programs_build(self):
        built = self.build_doc_programs()
        # README.md, getting-started.md, fd-passing.md (a client and a
        # service) and libfdhttp(3): had the search missed them, nothing
        # would have been checked.
        self.assertGreaterEqual(len(built), 5, [w for w, _, _ in built])

    def test_doc_snapshot_services_answer_from_the_start(self):
        # A memfd left at the end of what was written gives --exec's command
        # an empty stdin.  The fd-passing.md service copies its fd "input",
        # the others the request body: each gets both.
        text = "a moment in time"
        with open(os.path.join(self.tmp, "input.txt"), "w") as f:
            f.write(text)
        tried = []
        for where, src, exe in self.build_doc_programs():
            name = re.search(r'fdh_resp_fd\(resp, "([^"]+)"', src)
            if '"/snapshot"' not in src or not name:
                continue
            tried.append(where)
            with self.serving(exe) as sock:
                p = subprocess.run([self.p("bin/fdhttp"), "-s", sock, "--timeout", "10",
                                    "-d", text,
                                    "--fd", "input=" + os.path.join(self.tmp, "input.txt"),
                                    "--exec", name.group(1), "/snapshot", "--", "cat"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            self.assertEqual((p.returncode, p.stdout.decode()), (0, text),
                             "%s: %s" % (where, p.stderr.decode(errors="replace")))
        self.assertGreaterEqual(len(tried), 4, tried)

    def test_build_with_pkg_config(self):
        pkgconfig = shutil.which("pkg-config")
        if not pkgconfig:
            self.skipTest("pkg-config is not installed")
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(self.libdir, "pkgconfig"))
        flags = run([pkgconfig, "--cflags", "--libs", "fdhttp"], env=env).split()
        self.assertIn("-lfdhttp", flags)
        exe = os.path.join(self.tmp, "svc-pkgconfig")
        run([CC, "-std=c11", "-Wall", "-Werror", *SAN_FLAGS, "-o", exe,
             os.path.join(self.tmp, "svc.c"), *flags, "-Wl,-rpath," + self.libdir])
        self.assertIn("libfdhttp.so.0", needed(exe))
        self.serve_and_ask(exe)

    def test_build_with_find_package(self):
        src = os.path.join(self.tmp, "cmake-src")
        build = os.path.join(self.tmp, "cmake-build")
        os.makedirs(src)
        shutil.copy(os.path.join(self.tmp, "svc.c"), src)
        with open(os.path.join(src, "CMakeLists.txt"), "w") as f:
            f.write(CMAKELISTS)
        run([CMAKE, "-S", src, "-B", build, "-DCMAKE_PREFIX_PATH=" + self.prefix,
             "-DCMAKE_C_COMPILER=" + CC, "-DCMAKE_BUILD_TYPE=Release",
             "-DCMAKE_C_FLAGS=" + " ".join(SAN_FLAGS),
             "-DCMAKE_EXE_LINKER_FLAGS=" + " ".join(SAN_FLAGS)])
        run([CMAKE, "--build", build, "-j2"])
        shared = os.path.join(build, "svc-shared")
        static = os.path.join(build, "svc-static")
        self.assertIn("libfdhttp.so.0", needed(shared))
        self.assertNotIn("libfdhttp.so.0", needed(static))
        self.serve_and_ask(shared)
        self.serve_and_ask(static)


if __name__ == "__main__":
    unittest.main()
