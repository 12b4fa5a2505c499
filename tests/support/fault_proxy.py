"""An HTTP fault proxy on loopback: it stands between a client (the app's storage SDK clients) and one
upstream (an Azurite service) and, per request, forwards it, refuses it, loses its response, or delays it.

- refused: the connection is reset before anything reaches the upstream (the client sees a reset; nothing
  happened there);
- lost response: the request is forwarded and the upstream does the work, then the connection is dropped
  before the answer is written: the client cannot tell this from a refusal, and its retry meets what its
  first attempt did (a 409 on an insert, a 412 on a conditional update);
- delay: forwarded after a pause.

Which fault a request meets is decided by `policy(method, path) -> Fault | None`, so a test can fault
exactly one chosen request and a benchmark a seeded random share of them. The proxy speaks HTTP/1.1 with
keep-alive on both sides and forwards bodies by Content-Length (the Azure SDKs send no chunked bodies).
"""
from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit

REFUSE, LOSE_RESPONSE, DELAY = "refused", "lost_response", "delay"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass(frozen=True)
class Fault:
    kind: str               # REFUSE, LOSE_RESPONSE or DELAY
    seconds: float = 0.0    # DELAY only


Policy = Callable[[str, str], "Fault | None"]


def no_faults(method: str, path: str) -> Fault | None:
    return None


def random_faults(rate: float, *, seed: int, lose_share: float = 0.5, delay_share: float = 0.0,
                  delay_seconds: float = 0.2, methods: frozenset[str] = frozenset({"GET", "POST", "PUT", "PATCH",
                                                                                 "MERGE", "DELETE", "HEAD"})
                  ) -> Policy:
    """Fail `rate` of the requests: of those, `lose_share` lose their response, `delay_share` are delayed,
    the rest are refused. Seeded, so a run can be repeated."""
    chooser = random.Random(seed)
    lock = threading.Lock()

    def policy(method: str, path: str) -> Fault | None:
        if method not in methods:
            return None
        with lock:
            if chooser.random() >= rate:
                return None
            pick = chooser.random()
        if pick < lose_share:
            return Fault(LOSE_RESPONSE)
        if pick < lose_share + delay_share:
            return Fault(DELAY, delay_seconds)
        return Fault(REFUSE)

    return policy


class FaultProxy:
    """`FaultProxy(upstream_url)`; `url` is where clients go instead. `policy` may be swapped at any time;
    `faults` counts what was injected."""

    def __init__(self, upstream: str, policy: Policy = no_faults) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.policy = policy
        self.faults: Counter[str] = Counter()
        self.forwarded = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self) -> None:
                fault = proxy.policy(self.command, self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if fault is not None:
                    proxy._count(fault.kind)
                if fault is not None and fault.kind == REFUSE:
                    _reset(self.connection)
                    self.close_connection = True
                    return
                if fault is not None and fault.kind == DELAY:
                    time.sleep(fault.seconds)
                status, reason, headers, answer = proxy._forward(self.command, self.path, self.headers, body)
                if fault is not None and fault.kind == LOSE_RESPONSE:
                    _reset(self.connection)
                    self.close_connection = True
                    return
                self.send_response_only(status, reason)
                for name, value in headers:
                    # a HEAD answer's Content-Length is the resource's size (a blob's): pass it on
                    if name.lower() not in _HOP_BY_HOP and (name.lower() != "content-length"
                                                            or self.command == "HEAD"):
                        self.send_header(name, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer)

            do_GET = do_POST = do_PUT = do_PATCH = do_MERGE = do_DELETE = do_HEAD = do_OPTIONS = _relay

            def log_message(self, *args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                pass    # a client that gave up on a delayed request: nothing to report

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._local = threading.local()
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()

    def _count(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def _forward(self, method: str, path: str, headers, body: bytes | None):
        connection = getattr(self._local, "connection", None)
        for attempt in range(2):    # a kept-alive upstream connection may have been closed meanwhile
            if connection is None:
                connection = http.client.HTTPConnection(*self.upstream, timeout=60)
                self._local.connection = connection
            try:
                connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                for name, value in headers.items():
                    if name.lower() not in _HOP_BY_HOP:
                        connection.putheader(name, value)
                connection.endheaders(body)
                response = connection.getresponse()
                answer = response.read()
                with self._lock:
                    self.forwarded += 1
                return response.status, response.reason, response.getheaders(), answer
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                connection.close()
                connection = self._local.connection = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _reset(connection: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dropped connection looks to the client."""
    try:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


def proxied_connection_string(connection_string: str, **proxies: FaultProxy) -> str:
    """The connection string with `BlobEndpoint`/`TableEndpoint`/`QueueEndpoint` pointing at the proxies
    given as blob=, table=, queue= (the path, e.g. Azurite's account name, is kept)."""
    parts = dict(part.split("=", 1) for part in connection_string.split(";") if part)
    for service, proxy in proxies.items():
        name = f"{service.capitalize()}Endpoint"
        path = urlsplit(parts[name]).path
        parts[name] = proxy.url + path
    return ";".join(f"{k}={v}" for k, v in parts.items())
