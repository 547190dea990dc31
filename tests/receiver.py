"""A real HTTP server on a loopback address that records webhook deliveries."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Not 127.0.0.1: the test service allows only 127.0.0.2/32, so 127.0.0.1 and `localhost`
# stay refused and the receiver is reachable through the operator allow-list.
RECEIVER_HOST = "127.0.0.2"


@dataclass
class Received:
    """One request the receiver got."""

    at: float
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each path with its planned statuses in order (then 200), and records requests."""

    host: str
    port: int = 0
    plans: dict[str, list[int]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, statuses: list[int] | None = None) -> str:
        """A fresh path on this receiver, answered with these statuses first."""
        path = f"/hook/{uuid.uuid4().hex}"
        with self.lock:
            self.plans[path] = list(statuses or [])
        return f"http://{self.host}:{self.port}{path}"

    def requests(self, url: str) -> list[Received]:
        """What arrived at the URL's path."""
        path = "/" + url.split("/", 3)[3]
        with self.lock:
            return [r for r in self.received if r.path == path]

    def wait(self, url: str, count: int, timeout: float = 60) -> list[Received]:
        """Block until `count` requests reached the URL; them."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.requests(url)
            if len(got) >= count:
                return got
            assert time.monotonic() < deadline, f"{len(got)} of {count} deliveries arrived"
            time.sleep(0.05)

    def answer(self, path: str) -> int:
        """The status for the next request to the path."""
        with self.lock:
            plan = self.plans.get(path, [])
            return plan.pop(0) if plan else 200


@contextmanager
def receiving(host: str = RECEIVER_HOST) -> Iterator[Receiver]:
    """A running receiver until the block ends."""
    receiver = Receiver(host)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with receiver.lock:
                receiver.received.append(
                    Received(time.time(), self.path, dict(self.headers.items()), body)
                )
            status = receiver.answer(self.path)
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", f"http://{host}:{receiver.port}/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            return

    server = ThreadingHTTPServer((host, 0), Handler)
    receiver.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
