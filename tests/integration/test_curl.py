"""fdhttp-echo driven with curl --unix-socket: what a person debugging a
service types.

Run by ctest (FDH_ECHO names the executable), or by hand:
    FDH_ECHO=build/examples/fdhttp-echo python3 tests/integration/test_curl.py
"""

import os
import shutil
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fdhttp_testlib import Conn, Service  # noqa: E402

CURL = shutil.which("curl")


def parse_heads(out):
    """Splits curl -i output into [(status, {lower-case name: value})] and the body."""
    heads = []
    while out.startswith(b"HTTP/"):
        head, _, out = out.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        heads.append((int(lines[0].split(" ")[1]), headers))
    return heads, out


@unittest.skipIf(CURL is None, "curl is not installed")
class CurlTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.service = Service()

    @classmethod
    def tearDownClass(cls):
        cls.service.stop()

    def curl(self, *args, path="/health"):
        argv = [CURL, "-sS", "--max-time", "5", "--unix-socket", self.service.sock_path,
                *args, "http://localhost" + path]
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=10, check=False)
        self.assertEqual(p.returncode, 0, "%s failed: %s" % (argv, p.stderr.decode()))
        return p

    def test_health(self):
        self.assertEqual(self.curl().stdout, b"ok")

    def test_echo_small_body(self):
        self.assertEqual(self.curl("-d", "hello", path="/echo").stdout, b"hello")

    def test_echo_2k_body_does_not_wait_on_expect(self):
        # A client that sends "Expect: 100-continue" holds the body back until
        # the interim "100 Continue"; curl waits up to a second for it before
        # sending the body anyway.  curl adds the header by itself only to
        # larger bodies (the threshold depends on its version), so it is
        # asked for here.
        body = "0123456789abcdef" * 128
        self.assertEqual(len(body), 2048)
        for extra in (["-H", "Expect: 100-continue"], []):
            with self.subTest(extra=extra):
                start = time.monotonic()
                p = self.curl("-v", *extra, "-d", body, path="/echo")
                elapsed = time.monotonic() - start
                self.assertEqual(p.stdout, body.encode())
                self.assertLess(elapsed, 0.8, "curl took %.2f s: stalled on Expect?" % elapsed)
                trace = p.stderr.decode(errors="replace")
                if "Expect: 100-continue" in trace:
                    self.assertIn("HTTP/1.1 100 Continue", trace)

    def test_body_over_the_limit_with_expect_gets_413_at_once(self):
        big = os.path.join(self.service.tmpdir, "big")
        with open(big, "wb") as f:
            f.write(b"b" * (1024 * 1024 + 1))
        start = time.monotonic()
        p = self.curl("-i", "-H", "Expect: 100-continue", "--data-binary", "@" + big,
                      path="/echo")
        elapsed = time.monotonic() - start
        heads, body = parse_heads(p.stdout)
        status, headers = heads[-1]
        self.assertEqual(status, 413)
        self.assertEqual(headers.get("connection", "").lower(), "close")
        self.assertTrue(body.strip())
        self.assertLess(elapsed, 0.8, "curl took %.2f s: the 413 came late" % elapsed)

    def test_body_over_the_limit_without_expect_gets_413(self):
        # Without Expect, curl sends the whole body before it reads: the
        # server must read (and drop) the rest of a body it refused, or
        # curl fails with "Send failure: Broken pipe" and never shows the 413.
        big = os.path.join(self.service.tmpdir, "big2")
        with open(big, "wb") as f:
            f.write(b"b" * (2 * 1024 * 1024))
        # curl often sees the early answer while sending and stops, which
        # hides the fault; enough tries make a broken pipe all but certain.
        for _ in range(20):
            p = self.curl("-i", "-H", "Expect:", "--data-binary", "@" + big, path="/echo")
            heads, body = parse_heads(p.stdout)
            self.assertEqual(heads[-1][0], 413)
            self.assertIn(b"larger than", body)

    def test_head(self):
        p = self.curl("-I")
        heads, body = parse_heads(p.stdout)
        self.assertEqual(len(heads), 1)
        status, headers = heads[0]
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("content-length"), "2")
        self.assertEqual(body, b"")

    def test_head_sends_no_body(self):
        # curl -I does not read a body, so check the bytes on the wire: the
        # next response on the connection must start right after the head.
        conn = Conn(self.service.connect())
        self.addCleanup(conn.close)
        resp = conn.request("HEAD", "/health")
        self.assertEqual((resp.status, resp.header("content-length")), (200, "2"))
        self.assertFalse(resp.closes)
        resp = conn.request("GET", "/health")
        self.assertEqual((resp.status, resp.body), (200, b"ok"))

    def test_http_1_0_closes(self):
        p = self.curl("-0", "-i")
        heads, body = parse_heads(p.stdout)
        status, headers = heads[-1]
        self.assertEqual(status, 200)
        self.assertEqual(body, b"ok")
        self.assertEqual(headers.get("connection", "").lower(), "close")

    def test_http_1_0_keep_alive(self):
        conn = Conn(self.service.connect())
        self.addCleanup(conn.close)
        for _ in range(3):
            resp = conn.request("GET", "/health", version="HTTP/1.0",
                                headers=[("Connection", "keep-alive")])
            self.assertEqual((resp.status, resp.body, resp.closes), (200, b"ok", False))
        resp = conn.request("GET", "/health", version="HTTP/1.0")
        self.assertEqual((resp.status, resp.body, resp.closes), (200, b"ok", True))
        conn.expect_closed()

    def test_unknown_path_is_404(self):
        p = self.curl("-i", path="/no/such/path")
        heads, body = parse_heads(p.stdout)
        status, headers = heads[-1]
        self.assertEqual(status, 404)
        self.assertTrue(headers.get("content-type", "").startswith("text/plain"))
        self.assertEqual(int(headers["content-length"]), len(body))

    def test_wrong_method_is_405_with_allow(self):
        for method, path, allowed in (("POST", "/health", "GET"),
                                      ("DELETE", "/health", "GET"),
                                      ("GET", "/echo", "POST")):
            with self.subTest(method=method, path=path):
                args = ["-i", "-X", method]
                if method == "POST":
                    args += ["-d", "x"]
                heads, _ = parse_heads(self.curl(*args, path=path).stdout)
                status, headers = heads[-1]
                self.assertEqual(status, 405)
                self.assertIn("allow", headers)
                methods = [m.strip() for m in headers["allow"].split(",")]
                self.assertIn(allowed, methods)

    def test_keep_alive_across_urls(self):
        argv = [CURL, "-sS", "--max-time", "5", "--unix-socket", self.service.sock_path,
                "http://localhost/health", "http://localhost/health",
                "--next", "-sS", "--max-time", "5", "--unix-socket", self.service.sock_path,
                "-d", "again", "http://localhost/echo"]
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=10, check=False)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertEqual(p.stdout, b"okokagain")


if __name__ == "__main__":
    unittest.main(verbosity=2)
