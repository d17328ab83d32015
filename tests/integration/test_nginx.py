"""contrib/nginx/fdhttp.conf: Debian's nginx, started in the foreground with
a temporary prefix, in front of fdhttp-echo.  Its unix listener and upstream
are moved into a temporary directory and its TCP listener is left out, so
no port is needed.  Bodies pass both ways (a 100 KiB POST /echo, a chunked
upload arriving de-chunked), the body limit holds, X-FD does not cross, and
descriptors the service sends do not pile up in nginx.

Run by ctest, or by hand:
    FDH_ECHO=build/examples/fdhttp-echo python3 tests/integration/test_nginx.py
"""

import http.client
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
sys.path.insert(0, HERE)
from fdhttp_testlib import SOURCE_DIR, Service  # noqa: E402

CONF = os.path.join(SOURCE_DIR, "contrib", "nginx", "fdhttp.conf")
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None)
TIMEOUT = 10

MAIN_CONF = """
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{
	worker_connections 64;
}}
http {{
	access_log {tmp}/access.log;
	client_body_temp_path {tmp}/client_body;
	proxy_temp_path {tmp}/proxy;
	fastcgi_temp_path {tmp}/fastcgi;
	uwsgi_temp_path {tmp}/uwsgi;
	scgi_temp_path {tmp}/scgi;
	include {tmp}/fdhttp.conf;
}}
"""


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=TIMEOUT):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class ConfTests(unittest.TestCase):
    def test_tcp_only_on_loopback(self):
        with open(CONF) as f:
            text = f.read()
        listens = re.findall(r"(?m)^\s*listen\s+([^;\s]+)", text)
        self.assertTrue(listens)
        for addr in listens:
            self.assertTrue(addr.startswith("127.0.0.1:") or addr.startswith("unix:"), addr)
        for directive in ("proxy_http_version 1.1;", "proxy_request_buffering on;",
                          'proxy_set_header Connection "";', "keepalive "):
            self.assertIn(directive, text)
        self.assertRegex(text, r"proxy_pass http://[a-z_]+;")
        self.assertRegex(text, r"server unix:/\S+;")


@unittest.skipIf(NGINX is None, "nginx is not installed (Debian package nginx; "
                                "contrib/install-deps.sh installs it)")
class NginxTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.service = Service()
        cls.tmp = tempfile.mkdtemp(prefix="fdh-nginx-")
        cls.front = os.path.join(cls.tmp, "front.sock")
        with open(CONF) as f:
            conf = f.read()
        # This test's sockets instead of /run's, and no TCP port.
        conf = re.sub(r"server unix:/\S+;", "server unix:%s;" % cls.service.sock_path, conf)
        conf = re.sub(r"listen unix:/\S+;", "listen unix:%s;" % cls.front, conf)
        conf = re.sub(r"(?m)^\s*listen 127\.0\.0\.1:\d+;\n", "", conf)
        with open(os.path.join(cls.tmp, "fdhttp.conf"), "w") as f:
            f.write(conf)
        with open(os.path.join(cls.tmp, "nginx.conf"), "w") as f:
            f.write(MAIN_CONF.format(tmp=cls.tmp))
        cls.log = open(os.path.join(cls.tmp, "stderr.log"), "w+b")
        # One process (master_process off): it never switches to nginx's
        # unprivileged user, who could not reach this test's sockets.
        cls.proc = subprocess.Popen(
            [NGINX, "-p", cls.tmp, "-e", os.path.join(cls.tmp, "error.log"),
             "-c", os.path.join(cls.tmp, "nginx.conf")],
            stdin=subprocess.DEVNULL, stdout=cls.log, stderr=cls.log)
        try:
            cls.wait_listening()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def wait_listening(cls):
        deadline = time.monotonic() + TIMEOUT
        while True:
            if cls.proc.poll() is not None:
                raise AssertionError("nginx exited with %d:\n%s"
                                     % (cls.proc.returncode, cls.logs()))
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(cls.front)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("nginx did not listen within %d s:\n%s"
                                         % (TIMEOUT, cls.logs()))
                time.sleep(0.02)

    @classmethod
    def logs(cls):
        out = []
        for name in ("stderr.log", "error.log"):
            try:
                with open(os.path.join(cls.tmp, name), "rb") as f:
                    out.append(f.read().decode(errors="replace")[-4000:])
            except OSError:
                pass
        return "\n".join(out)

    @classmethod
    def tearDownClass(cls):
        if cls.proc.poll() is None:
            cls.proc.terminate()
            try:
                cls.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                cls.proc.kill()
                cls.proc.wait()
        cls.log.close()
        cls.service.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.conn = UnixHTTPConnection(self.front)
        self.addCleanup(self.conn.close)

    def request(self, method, target, body=None, headers=None, **kw):
        self.conn.request(method, target, body=body, headers=headers or {}, **kw)
        resp = self.conn.getresponse()
        return resp.status, resp.read(), resp

    def test_health(self):
        status, body, _ = self.request("GET", "/health")
        self.assertEqual((status, body), (200, b"ok"), self.logs())

    def test_post_100_kib_passes_through(self):
        data = os.urandom(100 * 1024)
        status, body, _ = self.request("POST", "/echo", data)
        self.assertEqual(status, 200, self.logs())
        self.assertEqual(body, data)

    def test_keep_alive_both_sides(self):
        for i in range(20):
            status, body, _ = self.request("POST", "/echo", b"request %d" % i)
            self.assertEqual((status, body), (200, b"request %d" % i))

    def test_chunked_upload_arrives_with_a_length(self):
        # The service answers a chunked request 501; nginx buffers and frames it.
        chunks = [b"a" * 5000, b"b" * 7000, b"c"]
        status, body, _ = self.request("POST", "/echo", iter(chunks),
                                       headers={"Transfer-Encoding": "chunked"},
                                       encode_chunked=True)
        self.assertEqual((status, body), (200, b"".join(chunks)), self.logs())

    def test_errors_pass_through(self):
        status, body, _ = self.request("GET", "/nope")
        self.assertEqual((status, body), (404, b"no route for this path\n"))
        status, _, resp = self.request("POST", "/health", b"")
        self.assertEqual(status, 405)
        self.assertEqual(resp.getheader("Allow"), "GET, HEAD")

    def test_body_over_the_limit(self):
        status, _, _ = self.request("POST", "/echo", b"x" * (1024 * 1024 + 1))
        self.assertEqual(status, 413)

    def test_x_fd_does_not_cross(self):
        # Were it forwarded, the service would answer 400 (X-FD without fds).
        status, body, _ = self.request("POST", "/echo", b"named", headers={"X-FD": "a"})
        self.assertEqual((status, body), (200, b"named"))
        # The memfd the service attaches stays behind, and so does its name.
        status, body, resp = self.request("POST", "/fd/memfd", b"sealed")
        self.assertEqual((status, body), (200, b""))
        self.assertIsNone(resp.getheader("X-FD"))

    def test_received_fds_do_not_pile_up_in_nginx(self):
        def nfds():
            return len(os.listdir("/proc/%d/fd" % self.proc.pid))

        self.request("POST", "/fd/memfd", b"warm up")
        before = nfds()
        for _ in range(30):
            status, _, _ = self.request("POST", "/fd/memfd", b"x")
            self.assertEqual(status, 200)
        self.assertLessEqual(nfds(), before + 2)


if __name__ == "__main__":
    unittest.main()
