"""A fault-injecting HTTP proxy on loopback, in front of the moto S3 server.

Each request draws, from a seeded random stream, whether and how it fails, the ways S3 and the
networks in front of it really fail:

``error_500``     answered 500 InternalError; the request never reaches the server
``slowdown_503``  answered 503 SlowDown; the request never reaches the server
``reset_before``  the connection is reset before the request is forwarded
``reset_after``   the request is forwarded (a write lands), then the connection is reset: the response is lost
``cut_headers``   forwarded, then the response stops in the middle of the ``x-amz-version-id`` header;
                  what arrived still parses as a 200 with a truncated version id and an empty body
``cut_body``      forwarded, then the response body stops half way
``latency``       forwarded after a delay

The proxy speaks HTTP/1.1 with keep-alive, like S3, so clients reuse connections across faults.
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

FAULT_KINDS = ("error_500", "slowdown_503", "reset_before", "reset_after", "cut_headers", "cut_body", "latency")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class FaultProxy:
    """``with FaultProxy(upstream, rate=0.1, seed=1) as url:`` point an S3 client at ``url``."""

    def __init__(self, upstream: str, *, rate: float, seed: int, kinds: tuple[str, ...] = FAULT_KINDS) -> None:
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.rate = rate
        self.kinds = kinds
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.requests = 0
        self.server: ThreadingHTTPServer | None = None

    def draw(self) -> str | None:
        with self.lock:
            self.requests += 1
            if self.random.random() >= self.rate:
                return None
            kind = self.random.choice(self.kinds)
            self.injected[kind] += 1
            return kind

    def __enter__(self) -> str:
        proxy = self

        class Handler(_FaultHandler):
            owner = proxy

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """Clients hang up on the resets this proxy makes: that is the point, not an error to print."""


class _FaultHandler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _handle(self) -> None:
        body = self._request_body()
        fault = self.owner.draw()
        if fault in ("error_500", "slowdown_503"):
            status, code = (500, "InternalError") if fault == "error_500" else (503, "SlowDown")
            payload = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
            self.send_response_only(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if fault == "reset_before":
            self._reset()
            return
        if fault == "latency":
            time.sleep(self.owner.random.uniform(0.01, 0.05))
        status, reason, headers, payload = self._forward(body)
        if fault == "reset_after":
            self._reset()
            return
        if fault == "cut_headers":
            version = next((value for name, value in headers if name.lower() == "x-amz-version-id"), None)
            cut = f"HTTP/1.1 {status} {reason}\r\n".encode()
            if version and len(version) > 2:
                cut += f"x-amz-version-id: {version[: len(version) // 2]}".encode()
            self.wfile.write(cut)
            self._reset()
            return
        self.send_response_only(status, reason)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP and (name.lower() != "content-length" or self.command == "HEAD"):
                self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if fault == "cut_body" and len(payload) > 1:
            self.wfile.write(payload[: len(payload) // 2])
            self._reset()
            return
        self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    def _request_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self.owner.upstream, timeout=60)
        try:
            headers = {name: value for name, value in self.headers.items() if name.lower() not in _HOP_BY_HOP}
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            payload = b"" if self.command == "HEAD" else response.read()
            return response.status, response.reason, response.getheaders(), payload
        finally:
            connection.close()

    def _reset(self) -> None:
        """Close with RST, as a dropped connection looks to the client."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
