"""A client for fdhttp services: HTTP/1.1 over a Unix-domain socket, with
file descriptors sent and received by name (the X-FD header and SCM_RIGHTS).

Standard library only, Python 3.9 or later.  Copy this file next to your code,
or put contrib/python on sys.path.

    import os, fdhttp

    with fdhttp.Connection("/run/fdhttp-echo.sock") as conn:
        print(conn.request("GET", "/health").body)          # b'ok'

        r, w = os.pipe()
        with conn.request("POST", "/echo", body=b"hi", fds={"w": w}) as resp:
            back = resp.take_fd("w")    # ours now; resp.close() closes the rest
        os.close(w)

Descriptors in a request are borrowed: they stay open, the caller closes
them.  Descriptors in a response belong to the response until taken with
take_fd(); close() (or leaving a with block) closes the others.  Received
descriptors are close-on-exec from the moment they exist.

Descriptors are closed in the calling thread, and the last close of some
waits as long as their other end likes: a TCP socket with SO_LINGER for its
unsent data, a file on FUSE or NFS for its server.  No timeout bounds that
wait, nor the closing of what came with a failed request.  Facing a
service you do not trust, take every descriptor and close it where a wait
does no harm.

One request at a time per connection, each answered before the next is
sent: the protocol has no pipelining, since descriptors could not be told
apart between two requests in flight.  A Connection is not thread-safe.
"""

import array
import os
import re
import select
import socket
import struct
import sys
import time

__all__ = [
    "Connection", "Response", "Headers", "Error", "ProtocolError", "FdMismatchError",
    "ResponseTooLarge", "ConnectionClosed", "Timeout", "MAX_FDS",
]

# The kernel's SCM_MAX_FD: no message carries more.
MAX_FDS = 253
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_BODY = 64 * 1024 * 1024
# Bounds what a broken or hostile server can make us buffer for a head.
MAX_HEAD = 64 * 1024
MAX_HEADERS = 256

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_FD_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_STATUS_LINE = re.compile(r"^HTTP/1\.([01]) ([0-9]{3})(?: (.*))?$")
# ASCII digits only: str.isdigit() takes '\u00b2' too, which int() refuses.
_DIGITS = re.compile(r"[0-9]+")
_BARE_LF = re.compile(rb"(?<!\r)\n")
# The client writes these itself: a caller's value would corrupt the framing.
_RESERVED = frozenset(("content-length", "transfer-encoding", "x-fd"))


class Error(Exception):
    """Base of every error this module raises besides ValueError for bad arguments."""


class ProtocolError(Error):
    """The server's response is malformed; the connection is closed."""


class FdMismatchError(ProtocolError):
    """The descriptors that arrived do not match the response's X-FD header.
    Every descriptor that did arrive has been closed."""


class ResponseTooLarge(ProtocolError):
    """The response body is larger than max_body."""


class ConnectionClosed(Error, ConnectionError):
    """The server closed the connection before a complete response."""


class Timeout(Error, TimeoutError):
    """The request did not complete within its timeout."""


class Headers:
    """Response headers: case-insensitive lookup, arrival order kept."""

    def __init__(self, items=()):
        self._items = list(items)

    def get(self, name, default=None):
        name = name.lower()
        for k, v in self._items:
            if k.lower() == name:
                return v
        return default

    def get_all(self, name):
        name = name.lower()
        return [v for k, v in self._items if k.lower() == name]

    def __getitem__(self, name):
        v = self.get(name)
        if v is None:
            raise KeyError(name)
        return v

    def __contains__(self, name):
        return self.get(name) is not None

    def items(self):
        return list(self._items)

    def __iter__(self):
        return iter(k for k, _ in self._items)

    def __len__(self):
        return len(self._items)

    def __repr__(self):
        return "Headers(%r)" % self._items


class Response:
    """status (int), reason (str), version ("HTTP/1.1"), headers (Headers),
    body (bytes) and fds ({name: fd}, in X-FD order, owned by the response)."""

    def __init__(self, version, status, reason, headers, body, fds):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.fds = fds

    def take_fd(self, name):
        """Removes the descriptor name from the response and returns it: the
        caller owns it from now on.  KeyError if there is none."""
        return self.fds.pop(name)

    def close(self):
        """Closes every descriptor not taken.  Should a close fail (one the
        caller closed itself: EBADF), the others are closed all the same
        and the first error is raised after."""
        fds, self.fds = self.fds, {}
        first = None
        for fd in fds.values():
            try:
                os.close(fd)
            except OSError as e:
                first = first or e
        if first is not None:
            raise first

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "<Response %d %s, %d bytes, fds %s>" % (self.status, self.reason,
                                                       len(self.body), list(self.fds))


def _close_all(fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _parse_xfd(value):
    names = [n.strip(" \t") for n in value.split(",")]
    for n in names:
        if not _FD_NAME.match(n):
            raise FdMismatchError("response X-FD %r holds an invalid name %r" % (value, n))
    if len(set(names)) != len(names):
        raise FdMismatchError("response X-FD %r repeats a name" % value)
    return names


class _Deadline:
    def __init__(self, timeout):
        self.end = None if timeout is None else time.monotonic() + timeout

    def left(self):
        if self.end is None:
            return None
        left = self.end - time.monotonic()
        if left <= 0:
            raise Timeout("no complete response within the timeout")
        return left


class Connection:
    """A keep-alive connection to the service listening at path ("@name", or
    abstract=True, for an abstract socket).

    It connects at the first request and again, before sending, whenever
    the server has closed it (Connection: close, its idle timeout); a
    request that has been sent is never repeated.  timeout bounds each
    request as a whole (connecting included); None waits forever.
    """

    def __init__(self, path, timeout=DEFAULT_TIMEOUT, max_body=DEFAULT_MAX_BODY,
                 max_fds=MAX_FDS, abstract=False):
        if not 0 <= max_fds <= MAX_FDS:
            raise ValueError("max_fds is 0 to %d" % MAX_FDS)
        if abstract and not path.startswith("@"):
            path = "@" + path
        self.path = path
        self.timeout = timeout
        self.max_body = max_body
        self.max_fds = max_fds
        self._sock = None

    # --- the socket ---------------------------------------------------------

    def _address(self):
        return "\0" + self.path[1:] if self.path.startswith("@") else self.path

    def connect(self, timeout=None):
        """Connects now (requests connect by themselves when needed)."""
        self.close()
        left = _Deadline(self.timeout if timeout is None else timeout).left()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            # A non-blocking AF_UNIX connect never waits: with the listener's
            # backlog full (a busy fdhttpd stops accepting) it fails at once
            # with EAGAIN.  A blocking connect bounded by SO_SNDTIMEO is the
            # kernel's own wait for a free slot.
            s.settimeout(None)
            if left is not None:
                usec = max(1, int(left * 1e6))
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                             struct.pack("ll", usec // 1000000, usec % 1000000))
            s.connect(self._address())
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 0, 0))
        except BlockingIOError:
            s.close()
            raise Timeout("cannot connect to %s within the timeout (its backlog is full)"
                          % self.path) from None
        except BaseException:
            s.close()
            raise
        self._sock = s

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @property
    def connected(self):
        return self._sock is not None

    def fileno(self):
        return self._sock.fileno() if self._sock is not None else -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _server_closed(self):
        """True when the server has closed an idle connection.  Between
        requests nothing may arrive but the end of the stream (or a reset),
        so a readable socket is one to replace, checked before sending.  A
        server that closes as the request goes refuses its first byte, and
        request() sends it again on a new connection."""
        p = select.poll()
        p.register(self._sock, select.POLLIN)
        return bool(p.poll(0))

    # --- the request --------------------------------------------------------

    def _build(self, method, path, headers, body, fds):
        if not _TOKEN.match(method):
            raise ValueError("invalid method %r" % method)
        if not path.startswith("/") or any(c in path for c in " \r\n\t\0"):
            raise ValueError("the path starts with '/' and holds no whitespace: %r" % path)
        if isinstance(headers, dict):
            headers = list(headers.items())
        lines = ["%s %s HTTP/1.1" % (method, path)]
        if not any(k.lower() == "host" for k, _ in headers):
            lines.append("Host: localhost")
        for k, v in headers:
            v = str(v)
            if not _TOKEN.match(k):
                raise ValueError("invalid header name %r" % k)
            if any(c in v for c in "\r\n\0"):
                raise ValueError("header %s: CR, LF and NUL cannot be sent" % k)
            if k.lower() in _RESERVED:
                raise ValueError("header %s is written by the client itself" % k)
            lines.append("%s: %s" % (k, v))
        if body or method not in ("GET", "HEAD"):
            lines.append("Content-Length: %d" % len(body))
        names, numbers = [], []
        for name, fd in fds.items():
            if not _FD_NAME.match(name):
                raise ValueError("fd name %r: 1 to 64 characters from [A-Za-z0-9._-]" % name)
            fd = fd if isinstance(fd, int) else fd.fileno()
            if fd < 0:
                raise ValueError("fd %s: %d is not a descriptor" % (name, fd))
            names.append(name)
            numbers.append(fd)
        if len(numbers) > MAX_FDS:
            raise ValueError("at most %d fds go with one request" % MAX_FDS)
        if names:
            lines.append("X-FD: " + ",".join(names))
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head, numbers

    def request(self, method, path, headers=None, body=b"", fds=None, timeout=None):
        """Sends one request and returns its Response (whatever its status).

        headers: a dict or a list of (name, value); Host defaults to
        localhost.  body: bytes (a str is sent as UTF-8).  fds: {name: fd or
        object with fileno()}, sent with the request head and borrowed.
        timeout: for this request, instead of the connection's.

        Raises ValueError (nothing sent) for arguments that cannot be sent,
        Timeout, ConnectionClosed, ProtocolError and its subclasses, or
        OSError from the socket.  After any of these but ValueError the
        connection is closed and no received descriptor is left open.
        """
        if isinstance(body, str):
            body = body.encode("utf-8")
        body = bytes(body)
        head, numbers = self._build(method, path, headers or [], body, fds or {})
        deadline = _Deadline(self.timeout if timeout is None else timeout)

        if self._sock is not None and self._server_closed():
            self.close()
        reused = self._sock is not None
        if self._sock is None:
            self.connect(timeout=deadline.left())
        try:
            try:
                resp, keep = self._exchange(method, head, body, numbers, deadline, reused)
            except _NotSent:
                # The server was closing this connection as the request
                # went (a draining worker shuts its input first, or was
                # stopped before it read a byte): not a byte of it arrived,
                # so it goes again, once, anew.
                self.close()
                self.connect(timeout=deadline.left())
                try:
                    resp, keep = self._exchange(method, head, body, numbers, deadline, False)
                except _NotSent:
                    raise ConnectionClosed("the server closed the connection before it "
                                           "read the request, twice") from None
        except socket.timeout:
            self.close()
            raise Timeout("%s %s: no complete response within the timeout"
                          % (method, path)) from None
        except BaseException:
            self.close()
            raise
        if not keep:
            self.close()
        return resp

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=b"", **kw):
        return self.request("POST", path, body=body, **kw)

    # --- the exchange -------------------------------------------------------

    def _send(self, data, fds, deadline, reused):
        """Sends data, fds riding on the first sendmsg that moves a byte.
        Returns how many bytes did not go: 0 when everything went, more when
        the server stopped reading (it may have answered early, as with
        413).  Raises _NotSent when a reused connection took not a byte."""
        view = memoryview(data)
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        while view:
            self._sock.settimeout(deadline.left())
            try:
                n = self._sock.sendmsg([view], anc)
            except (BrokenPipeError, ConnectionResetError):
                if reused and len(view) == len(data):
                    raise _NotSent() from None
                return len(view)
            anc = []
            view = view[n:]
        return 0

    def _exchange(self, method, head, body, numbers, deadline, reused):
        data = head + body
        unsent = self._send(data, numbers, deadline, reused)
        sent_all = unsent == 0
        reader = _Reader(self._sock, self.max_fds, deadline)
        try:
            resp, keep = reader.response(method == "HEAD", self.max_body)
        except ConnectionClosed:
            reader.close_fds()
            if unsent == len(data) and not reader.buf:
                # Closed before it read a byte, and not a word said (a
                # refusal would have been read): the request never went.
                raise _NotSent() from None
            if not sent_all:
                raise ConnectionClosed("the server closed the connection while the "
                                       "request was sent") from None
            raise
        except BaseException:
            reader.close_fds()
            raise
        # A body left unsent would be read as the next request: start over.
        return resp, keep and sent_all


class _NotSent(Exception):
    """The server closed the connection before it took a byte of the request."""


class _Reader:
    """Reads one response and every descriptor that comes with it."""

    def __init__(self, sock, max_fds, deadline):
        self.sock = sock
        self.max_fds = max_fds
        self.deadline = deadline
        self.buf = b""
        self.fds = []
        self.eof = False
        # One fd of room more than allowed, so that an excess shows as a count
        # rather than being dropped by the kernel; CMSG_SPACE rounds up anyway.
        self.ancbuf = socket.CMSG_SPACE(min(max_fds + 1, MAX_FDS) * array.array("i").itemsize)

    def close_fds(self):
        fds, self.fds = self.fds, []
        _close_all(fds)

    def _recv(self):
        self.sock.settimeout(self.deadline.left())
        try:
            data, anc, flags, _ = self.sock.recvmsg(65536, self.ancbuf, socket.MSG_CMSG_CLOEXEC)
        except ConnectionResetError:
            data, anc, flags = b"", [], 0
        for level, kind, cdata in anc:
            got = array.array("i")
            got.frombytes(cdata[:len(cdata) - len(cdata) % got.itemsize])
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                self.fds.extend(got)
            else:
                _close_all(got)
        if flags & socket.MSG_CTRUNC:
            raise FdMismatchError("more fds than %d, or no room for them in this process "
                                  "(control data truncated)" % self.max_fds)
        if len(self.fds) > self.max_fds:
            raise FdMismatchError("more fds than %d" % self.max_fds)
        if not data:
            self.eof = True
        self.buf += data
        return bool(data)

    def _head(self):
        checked = 0
        while True:
            end = self.buf.find(b"\r\n\r\n")
            # A lenient parser ends lines at a bare LF, so a head with one
            # may end elsewhere for someone else: refused, as the C client
            # does, and at once, not after waiting for a CRLF CRLF.
            if _BARE_LF.search(self.buf, checked, len(self.buf) if end < 0 else end + 4):
                raise ProtocolError("bare LF in the response head")
            if end >= 0:
                break
            checked = len(self.buf)
            if len(self.buf) > MAX_HEAD:
                raise ProtocolError("response head larger than %d bytes" % MAX_HEAD)
            if not self._recv():
                if self.buf:
                    raise ConnectionClosed("the server closed the connection in a "
                                           "response head")
                raise ConnectionClosed("the server closed the connection without "
                                       "answering")
        head, self.buf = self.buf[:end], self.buf[end + 4:]
        lines = head.decode("latin-1").split("\r\n")
        m = _STATUS_LINE.match(lines[0])
        if not m:
            raise ProtocolError("malformed status line %r" % lines[0][:200])
        if len(lines) - 1 > MAX_HEADERS:
            raise ProtocolError("more than %d response headers" % MAX_HEADERS)
        items = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not _TOKEN.match(name):
                raise ProtocolError("malformed header line %r" % line[:200])
            if "\r" in value or "\n" in value:
                raise ProtocolError("bare CR or LF in header %s" % name)
            items.append((name, value.strip(" \t")))
        return int(m.group(1)), int(m.group(2)), m.group(3) or "", Headers(items)

    def response(self, is_head, max_body):
        while True:
            minor, status, reason, headers = self._head()
            if not 100 <= status < 200:
                break
            if status == 101:
                raise ProtocolError("the server switched protocols")
            # 100 Continue and the like: the final answer follows.

        lengths = [v.strip() for v in headers.get_all("content-length")]
        if "transfer-encoding" in headers:
            raise ProtocolError("Transfer-Encoding in a response (fdhttp frames by "
                                "Content-Length)")
        # Even equal values: two parsers may not agree on which one counts.
        if len(lengths) > 1:
            raise ProtocolError("%d Content-Length headers" % len(lengths))
        length = None
        if lengths:
            value = lengths.pop()
            if not _DIGITS.fullmatch(value):
                raise ProtocolError("malformed Content-Length %r" % value)
            length = int(value)
        if is_head or status in (204, 304):
            length = 0
        if length is not None and length > max_body:
            raise ResponseTooLarge("response body of %d bytes, more than %d"
                                   % (length, max_body))

        if length is None:
            # No length: the body runs to the end of the stream.
            while self._recv():
                if len(self.buf) > max_body:
                    raise ResponseTooLarge("response body larger than %d bytes" % max_body)
        else:
            while len(self.buf) < length:
                if not self._recv():
                    raise ConnectionClosed("the server closed the connection in a "
                                           "response body")
        body, self.buf = (self.buf, b"") if length is None else \
            (self.buf[:length], self.buf[length:])
        # No pipelining: a byte past the response answers nothing we asked.
        if self.buf:
            raise ProtocolError("%d bytes after the response" % len(self.buf))

        names = []
        xfd = headers.get_all("x-fd")
        if len(xfd) > 1:
            raise FdMismatchError("more than one X-FD header")
        if xfd:
            names = _parse_xfd(xfd[0])
        if len(names) != len(self.fds):
            raise FdMismatchError("X-FD names %d fds, %d arrived" % (len(names), len(self.fds)))
        fds, self.fds = dict(zip(names, self.fds)), []

        tokens = [t.strip().lower() for v in headers.get_all("connection") for t in v.split(",")]
        keep = "close" not in tokens and (minor == 1 or "keep-alive" in tokens) \
            and length is not None and not self.eof
        return Response("HTTP/1.%d" % minor, status, reason, headers, body, fds), keep


_USAGE = """usage: fdhttp.py SOCKET PATH [BODY]

Sends one request (GET, or POST with BODY) to the fdhttp service on SOCKET
and prints the status line, the headers, the body and the number of each
fd of the response.  Exit status: 0 for a 2xx or 3xx answer, 22 for 4xx
and 5xx (as fdhttp(1)), 2 for a bad command line."""


def _main(argv):
    """python3 fdhttp.py SOCKET PATH [BODY]: one request, for a quick look."""
    if len(argv) == 2 and argv[1] in ("-h", "--help"):
        print(_USAGE)
        return 0
    if len(argv) not in (3, 4):
        print(_USAGE.split("\n", 1)[0], file=sys.stderr)
        return 2
    with Connection(argv[1]) as conn:
        body = argv[3].encode() if len(argv) == 4 else b""
        with conn.request("POST" if body else "GET", argv[2], body=body) as resp:
            print(resp.status, resp.reason)
            for k, v in resp.headers.items():
                print("%s: %s" % (k, v))
            print()
            print(resp.body.decode(errors="replace"))
            for name, fd in resp.fds.items():
                print("fd %s: %d" % (name, fd))
    return 0 if resp.status < 400 else 22


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
