"""A programmable HTTP server on 127.0.0.1 for harvester tests and the benchmark: each path gets a
function that decides the response, so tests can serve 500s, 429 with Retry-After, slow or
truncated bodies, redirect loops, ETags and 304s - the misbehaviour of real servers, over real
sockets.
"""
from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds before the status line
    drip: Optional[float] = None  # seconds between 1-byte writes of the body
    truncate_to: Optional[int] = None  # send Content-Length of the full body, then only this many bytes
    omit_length: bool = False  # no Content-Length: the body ends when the connection closes


@dataclass
class SeenRequest:
    path: str
    headers: dict
    at: float  # time.monotonic()
    status: Optional[int] = None


Route = Callable[[SeenRequest], Reply]


def json_response(doc, status: int = 200) -> Reply:
    """One JSON response (no ETag)."""
    return Reply(status, json.dumps(doc).encode("utf-8"), {"Content-Type": "application/json"})


def json_reply(doc, status: int = 200, headers: Optional[dict] = None, conditional: bool = True) -> Route:
    """A route serving ``doc`` as JSON with an ETag, answering If-None-Match with 304."""
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode("utf-8")
    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'

    def route(request: SeenRequest) -> Reply:
        if conditional and request.headers.get("if-none-match") == etag:
            return Reply(304, b"", {"ETag": etag})
        merged = {"Content-Type": "application/json", "ETag": etag} if conditional else {
            "Content-Type": "application/json"}
        merged.update(headers or {})
        return Reply(status, body, merged)

    return route


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request, client_address) -> None:
        pass  # clients that hang up on purpose (timeouts, size limits) are part of the tests


class ScriptedServer:
    """Threaded server on ``host`` (any loopback address); ``routes[path]`` (path with query string) gives each response, else
    ``fallback`` (when set), else 404. ``latency`` is added to every response. ``requests``
    records them all. ``port`` 0 picks a free one; another reopens a port used before (a host
    that comes back)."""

    def __init__(self, latency: float = 0.0, host: str = "127.0.0.1", port: int = 0):
        self.routes: dict[str, Route] = {}
        self.fallback: Optional[Route] = None
        self.latency = latency
        self.requests: list[SeenRequest] = []
        self._lock = threading.Lock()
        self._httpd = _QuietServer((host, port), _Handler)
        self._httpd.owner = self  # type: ignore[attr-defined]
        self.base_url = f"http://{host}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="scripted-http")
        self._thread.start()

    def url(self, path: str) -> str:
        return self.base_url + path

    def add(self, path: str, route: Route) -> str:
        self.routes[path] = route
        return self.url(path)

    def add_json(self, path: str, doc, **kwargs) -> str:
        return self.add(path, json_reply(doc, **kwargs))

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    def count(self, path: str) -> int:
        return self.paths().count(path)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _reply(self, request: SeenRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
        route = self.routes.get(request.path) or self.routes.get(urlsplit(request.path).path) or self.fallback
        reply = route(request) if route else Reply(404, b"not found", {"Content-Type": "text/plain"})
        request.status = reply.status
        return reply


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    # Headers and body go out in two writes; with Nagle's algorithm the second one waits for
    # the client's delayed ACK (40 ms), which real servers avoid and a benchmark must not measure.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # name fixed by http.server
        owner: ScriptedServer = self.server.owner  # type: ignore[attr-defined]
        request = SeenRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, time.monotonic())
        reply = owner._reply(request)
        time.sleep(owner.latency + reply.delay)
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.omit_length:
                self.send_header("Connection", "close")
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(len(reply.body)))
            if reply.truncate_to is not None:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            body = reply.body if reply.truncate_to is None else reply.body[:reply.truncate_to]
            if reply.drip is not None:
                for index in range(len(body)):
                    self.wfile.write(body[index:index + 1])
                    self.wfile.flush()
                    time.sleep(reply.drip)
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True  # the client gave up, as it should

    def log_message(self, format, *args) -> None:  # quiet tests
        pass
