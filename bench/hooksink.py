"""A webhook receiver for benchmarks: checks each delivery's signature and keeps one per id.

It answers 200 to every POST on a loopback address (127.0.0.2, which the benchmark's service
allows through RAGQ_WEBHOOK_ALLOW_NETWORKS: 127.0.0.1 stays refused), verifies the Standard
Webhooks signature and timestamp with the tenant's secret as the delivery arrives (the timestamp
check would fail later), and files the delivered job record under its `webhook-id`. Repeated
deliveries of one id (at-least-once delivery) are counted, not kept twice.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ragq_client import verify_webhook
from ragq_client.errors import WebhookVerificationError

HOST = "127.0.0.2"


@dataclass
class Delivery:
    """The first delivery of one webhook id: when it came and the job it carried."""

    at: float
    job_id: str
    status: str


@dataclass
class Sink:
    """What arrived: the first delivery per webhook id, repeats per id, and refused bodies."""

    host: str
    port: int = 0
    secret: str = ""
    first: dict[str, Delivery] = field(default_factory=dict)
    repeats: Counter[str] = field(default_factory=Counter)
    invalid: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        """Where jobs send their webhooks."""
        return f"http://{self.host}:{self.port}/hook"

    def receive(self, body: bytes, headers: dict[str, str]) -> None:
        """File one delivery (a bad signature or body goes to `invalid`)."""
        msg_id = {k.lower(): v for k, v in headers.items()}.get("webhook-id", "")
        try:
            record = verify_webhook(body, headers, self.secret)
        except WebhookVerificationError as exc:
            with self.lock:
                self.invalid.append(f"{msg_id or '?'}: {exc}")
            return
        with self.lock:
            if msg_id in self.first:
                self.repeats[msg_id] += 1
            else:
                self.first[msg_id] = Delivery(time.time(), record.job_id, record.status.value)

    def delivered(self, job_id: str) -> Delivery | None:
        """The job's delivery, if one arrived (its webhook id is `msg_<job id>`)."""
        with self.lock:
            return self.first.get(f"msg_{job_id}")


@contextmanager
def receiving(host: str = HOST) -> Iterator[Sink]:
    """A running sink until the block ends."""
    sink = Sink(host)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            sink.receive(body, dict(self.headers.items()))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            return

    server = ThreadingHTTPServer((host, 0), Handler)
    sink.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
