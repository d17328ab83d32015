#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets into corpus/<target>/.

The seeds are checked in; this script says what each one is and makes them
again after a change of an input format (see each fuzz_*.c).  Run it from
anywhere: python3 tests/fuzz/corpus/make_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
PATH_MAX = 4096


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- xfd: u8 room for names, then the X-FD value -----------------------------

def xfd():
    seeds = {
        "one": (16, b"input"),
        "list": (16, b"input, output,\tlog"),
        "tight": (3, b"a,b,c"),
        "too-many": (2, b"a,b,c"),
        "no-room": (0, b"x"),
        "empty-element": (16, b"a,,b"),
        "repeated": (16, b"a, a"),
        "space-inside": (16, b" a b"),
        "name-64": (16, b"n" * 64),
        "name-65": (16, b"n" * 65),
        "bad-char": (16, b"a/b"),
        "trailing-comma": (16, b"a,"),
    }
    for name, (room, value) in seeds.items():
        write("xfd", name, bytes([room]) + value)


# --- ctl: records of u8 how, u16 length, bytes --------------------------------

READY, CONN_CLOSED, RETIRE, CONNS_CLOSED, OPEN = 1, 2, 3, 4, 8
NEW_CONN, DRAIN, FLUSH, OPEN_REPLY = 64, 65, 66, 72
CLOSED_MAX = 16
WORKER_READS, PASSCRED, LIMITS = 4, 8, 0x80


def hdr(type_, flags=0, version=1):
    return struct.pack("=HHI", version, type_, flags)


def record(how, body):
    return struct.pack("<BH", how, len(body)) + body


def batch(ids):
    return struct.pack("=II", len(ids), 0) + b"".join(
        struct.pack("=Q", i) for i in ids + [0] * (CLOSED_MAX - len(ids)))


def ctl():
    path = b"/etc/hostname".ljust(PATH_MAX, b"\0")
    conn = struct.pack("=QiIII", 7, 1234, 1000, 1000, 0)
    seeds = {
        "ready": record(0, hdr(READY)),
        "conn-closed": record(0, hdr(CONN_CLOSED) + struct.pack("=Q", 7)),
        "retire": record(0, hdr(RETIRE) + struct.pack("=Q", 1000)),
        "conns-closed": record(0, hdr(CONNS_CLOSED) + batch([7, 8, 9])),
        "conns-closed-flushed-none": record(0, hdr(CONNS_CLOSED, 1) + batch([])),
        "conns-closed-none": record(0, hdr(CONNS_CLOSED) + batch([])),
        "conns-closed-over": record(0, hdr(CONNS_CLOSED) + struct.pack("=II", CLOSED_MAX + 1, 0)
                                    + struct.pack("=Q", 1) * CLOSED_MAX),
        "open": record(0, hdr(OPEN) + struct.pack("=Ii", 1, 0) + path),
        "open-no-nul": record(0, hdr(OPEN) + struct.pack("=Ii", 1, 0) + b"/" * PATH_MAX),
        "new-conn": record(WORKER_READS | 1, hdr(NEW_CONN) + conn),
        "new-conn-pidfd": record(WORKER_READS | 2, hdr(NEW_CONN, 1) + conn),
        "new-conn-no-fd": record(WORKER_READS, hdr(NEW_CONN) + conn),
        "drain": record(WORKER_READS, hdr(DRAIN)),
        "flush": record(WORKER_READS, hdr(FLUSH)),
        "new-conn-lazy": record(WORKER_READS | 1, hdr(NEW_CONN, 2) + conn),
        "open-reply-fd": record(WORKER_READS | 1, hdr(OPEN_REPLY, 1) + struct.pack("=Ii", 1, 0)),
        "open-reply-error": record(WORKER_READS, hdr(OPEN_REPLY) + struct.pack("=Ii", 1, -13)),
        "open-reply-disagree": record(WORKER_READS | 1, hdr(OPEN_REPLY) + struct.pack("=Ii", 1, 0)),
        "wrong-side": record(0, hdr(DRAIN)),
        "wrong-version": record(0, hdr(READY, version=2)),
        "unknown-flags": record(0, hdr(READY, flags=2)),
        "three-fds": record(WORKER_READS | 3, hdr(NEW_CONN, 1) + conn),
        "credentials": record(PASSCRED, hdr(READY)),
        "short": record(0, b"\x01\x00\x01"),
        "empty-then-ready": record(0, b"") + record(0, hdr(READY)),
        "several": record(0, hdr(READY)) + record(0, hdr(CONN_CLOSED) + struct.pack("=Q", 1))
        + record(WORKER_READS | 1, hdr(NEW_CONN) + conn),
        "limits": record(LIMITS, b"max-head=8192,max-fds=4,request-timeout=1.5"),
        "limits-all": record(LIMITS, b"max-head=8192,max-headers=64,max-body=1048576,"
                             b"max-fds=16,max-conns=256,request-timeout=10.000,"
                             b"idle-timeout=60.000,write-timeout=10.000"),
        "limits-bad": record(LIMITS, b"max-head=8192,,max-fds=x"),
    }
    for name, data in seeds.items():
        write("ctl", name, data)


# --- client: u8 mode [u8 limits], then chunks of u8 how, u8/u16 length, bytes -

GET, HEAD, POST, POST_EXPECT = 0, 1, 2, 3
REQ_FD, SERVER_CLOSES, SMALL_LIMITS = 4, 0x20, 0x40


def requests(n):
    return (n - 1) << 3


def chunk(data, nfds=0):
    if len(data) < 256:
        return bytes([nfds]) + bytes([len(data)]) + data
    return bytes([0x80 | nfds]) + struct.pack("<H", len(data)) + data


def client():
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    seeds = {
        "get": bytes([GET]) + chunk(ok),
        "fds": bytes([POST | REQ_FD])
        + chunk(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-FD: a, b\r\n\r\n", 2),
        "fds-later-chunk": bytes([POST]) + chunk(b"HTTP/1.1 200 OK\r\nX-FD: out\r\n")
        + chunk(b"Content-Length: 1\r\n\r\nx", 1),
        "fd-mismatch": bytes([GET]) + chunk(b"HTTP/1.1 200 OK\r\nX-FD: a\r\n\r\n", 2),
        "fds-without-x-fd": bytes([GET]) + chunk(ok, 1),
        "interim": bytes([GET]) + chunk(b"HTTP/1.1 102 Processing\r\n\r\n" + ok),
        "continue": bytes([POST_EXPECT])
        + chunk(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
        "early-answer": bytes([POST_EXPECT])
        + chunk(b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
        "head": bytes([HEAD]) + chunk(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"),
        "until-eof": bytes([GET]) + chunk(b"HTTP/1.0 200 OK\r\n\r\nuntil the end"),
        "keep-alive": bytes([GET | requests(3)]) + chunk(ok) + chunk(ok, 1) + chunk(ok),
        "surplus": bytes([GET]) + chunk(ok + b"HTTP/1.1 200 OK\r\n"),
        "chunked": bytes([GET]) + chunk(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                       b"5\r\nhello\r\n0\r\n\r\n"),
        "switching": bytes([GET]) + chunk(b"HTTP/1.1 101 Switching Protocols\r\n"
                                         b"Upgrade: x\r\nConnection: upgrade\r\n\r\n"),
        "over-limits": bytes([GET | SMALL_LIMITS, 5])
        + chunk(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"),
        "fds-over-limit": bytes([GET | SMALL_LIMITS, 0xff])
        + chunk(b"HTTP/1.1 200 OK\r\nX-FD: a,b,c,d\r\nContent-Length: 0\r\n\r\n", 4),
        "server-closes": bytes([POST | SERVER_CLOSES]) + chunk(ok),
        "big-body": bytes([GET]) + chunk(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        + chunk(b"b" * 1000),
        "truncated": bytes([GET]) + chunk(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"),
        "garbage": bytes([GET]) + chunk(b"HTTP/1.1 2x0 OK\r\n\r\n"),
    }
    for name, data in seeds.items():
        write("client", name, data)


# --- engine: u8 limits, u8 options, then operations -------------------------

(FDS_0, FDS_1, FDS_4, FDS_16, REQ_TIMEOUT_0, WRITE_TIMEOUT_0, IDLE_TIMEOUT_0,
 SMALL_HEAD, SMALL_BODY, FEW_HEADERS) = 0, 1, 2, 3, 4, 8, 0x10, 0x20, 0x40, 0x80
SMALL_SNDBUF, PAUSED, TIGHT_NOFILE = 1, 2, 4
TURN, READ, TOGGLE_READ, SHUT_WR, RECONNECT, DRAIN = 2, 3, 4, 5, 6, 7


def send(data, nfds=0):
    if len(data) < 256:
        return bytes([(nfds << 3) | 0, len(data)]) + data
    return bytes([(nfds << 3) | 1]) + struct.pack("<H", len(data)) + data


def op(what):
    return bytes([what])


def engine():
    def req(head, body=b""):
        return head + b"\r\n\r\n" + body

    echo = req(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-FD: a, b", b"hello")
    get = req(b"GET /p/x?y=1 HTTP/1.1\r\nHost: x\r\nX-Fuzz: yes")
    big = req(b"GET /big HTTP/1.1\r\nHost: x")
    run = op(TURN) + op(READ)
    seeds = {
        "get": bytes([FDS_16, 0]) + send(get) + run,
        "echo-fds": bytes([FDS_16, 0]) + send(echo, 2) + run,
        "take": bytes([FDS_4, 0])
        + send(req(b"POST /take HTTP/1.1\r\nContent-Length: 0\r\nX-FD: keep,other"), 2) + run,
        "fail": bytes([FDS_16, 0]) + send(req(b"GET /fail HTTP/1.1")) + run,
        "big-partial": bytes([FDS_16, SMALL_SNDBUF | PAUSED]) + send(big) + op(TURN)
        + op(TOGGLE_READ) + run + run + run,
        "big-write-timeout": bytes([FDS_16 | WRITE_TIMEOUT_0, SMALL_SNDBUF | PAUSED])
        + send(big) + op(TURN) + op(TURN) + op(TOGGLE_READ) + run,
        "head-big": bytes([FDS_16, 0]) + send(req(b"HEAD /big HTTP/1.1")) + run,
        "keep-alive": bytes([FDS_16, 0]) + send(get) + run + send(echo, 2) + run,
        "pipelined": bytes([FDS_16, 0]) + send(get + get) + run,
        "pipelined-fds": bytes([FDS_16, 0]) + send(echo + get, 2) + run,
        "fds-with-body": bytes([FDS_16, 0]) + send(echo[:-5]) + op(TURN) + send(echo[-5:], 2) + run,
        "head-split": bytes([FDS_16, 0]) + send(echo[:10], 1) + op(TURN) + send(echo[10:], 1) + run,
        "too-many-fds": bytes([FDS_1, 0]) + send(echo, 3) + run,
        "fds-no-x-fd": bytes([FDS_16, 0]) + send(get, 1) + run,
        "x-fd-no-fds": bytes([FDS_16, 0]) + send(echo) + run,
        "not-found": bytes([FDS_16, 0]) + send(req(b"GET /nothing HTTP/1.1")) + run,
        "wrong-method": bytes([FDS_16, 0]) + send(req(b"DELETE /echo HTTP/1.1")) + run,
        "expect": bytes([FDS_16, 0])
        + send(req(b"POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5")) + run
        + send(b"hello") + run,
        "expect-too-big": bytes([FDS_16 | SMALL_BODY, 0])
        + send(req(b"POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 500")) + run,
        "chunked": bytes([FDS_16, 0])
        + send(req(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked", b"5\r\nhello\r\n0\r\n\r\n"))
        + run,
        "smuggle": bytes([FDS_16, 0])
        + send(req(b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1", b"x")) + run,
        "bare-lf": bytes([FDS_16, 0]) + send(b"GET /p/ HTTP/1.1\nHost: x\n\n") + run,
        "head-limit": bytes([FDS_16 | SMALL_HEAD, 0])
        + send(req(b"GET /p/ HTTP/1.1\r\nX-Long: " + b"a" * 300)) + run,
        "header-limit": bytes([FDS_16 | FEW_HEADERS, 0])
        + send(req(b"GET /p/ HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5")) + run,
        "request-timeout": bytes([FDS_16 | REQ_TIMEOUT_0, 0]) + send(echo[:20], 1) + run + run,
        "idle-timeout": bytes([FDS_16 | IDLE_TIMEOUT_0, 0]) + run + send(get) + run,
        "drain-mid-request": bytes([FDS_16, 0]) + send(echo[:30], 2) + op(TURN) + op(DRAIN)
        + send(echo[30:]) + run,
        "drain-idle": bytes([FDS_16, 0]) + send(get) + run + op(DRAIN) + run + op(RECONNECT) + run,
        "reconnect": bytes([FDS_16, 0]) + send(echo[:30], 2) + op(RECONNECT) + send(echo, 2) + run,
        "shut-wr": bytes([FDS_16, 0]) + send(echo[:30], 2) + op(SHUT_WR) + run,
        "http10": bytes([FDS_16, 0]) + send(req(b"GET /p/a HTTP/1.0\r\nConnection: keep-alive"))
        + run + send(req(b"GET /p/b HTTP/1.0")) + run,
        "starved": bytes([FDS_16, TIGHT_NOFILE]) + send(echo, 2) + run + send(echo, 4) + run
        + op(RECONNECT) + send(get) + run,
        "starved-hang-up": bytes([FDS_16, TIGHT_NOFILE | PAUSED]) + send(big) + op(TURN)
        + send(echo, 8) + op(TURN) + op(RECONNECT) + run,
        "absolute-form": bytes([FDS_16, 0]) + send(req(b"GET http://x/p/abs?q HTTP/1.1")) + run,
        "query": bytes([FDS_16, 0])
        + send(req(b"GET /p/q?a=1&q=h%C3%A9llo+x&q=2&b%zz=%00 HTTP/1.1\r\nHost: x")) + run,
        "empty-lines": bytes([FDS_16, 0]) + send(b"\r\n\r\n" + get) + run + send(b"\r\n")
        + op(TURN) + send(b"\r", 1) + op(TURN) + send(b"\n" + echo, 1) + run,
        "expect-no-room": bytes([FDS_16, SMALL_SNDBUF | PAUSED])
        + (send(get) + op(TURN)) * 12
        + send(req(b"POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5"))
        + op(TURN) + op(TOGGLE_READ) + run + send(b"hello") + run,
        "crlf-after-body": bytes([FDS_16, 0]) + send(echo + b"\r\n", 2) + run + send(get) + run,
    }
    for name, data in seeds.items():
        write("engine", name, data)


if __name__ == "__main__":
    xfd()
    ctl()
    client()
    engine()
