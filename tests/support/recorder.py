"""A real HTTP endpoint on loopback that records what is POSTed to it (events, notifications)."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: object


class Recorder:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._changed = threading.Condition()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"null")
                with recorder._changed:
                    recorder.received.append(Received(self.path, dict(self.headers), body))
                    recorder._changed.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def wait_for(self, predicate, timeout: float = 120.0) -> list[Received]:
        """Block until some received requests satisfy `predicate`; return them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                matching = [r for r in self.received if predicate(r)]
                if matching:
                    return matching
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"nothing matching arrived in {timeout:.0f}s; got {self.received!r}")
                self._changed.wait(remaining)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
