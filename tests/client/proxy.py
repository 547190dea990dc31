"""A TCP proxy in front of the API that a test can break: cut the open connections, or drop the
response of the next connection (the server handles the request; the client never hears)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Proxy:
    """Forwards 127.0.0.1:`port` to the upstream address, one thread per direction."""

    upstream: tuple[str, int]
    server: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))
    connections: int = 0
    drop_next_response: bool = False
    _open: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        """The proxy's base URL."""
        return f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def cut(self) -> None:
        """Close every open connection, both sides, at once."""
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def serve(self) -> None:
        """Accept connections until the server socket closes."""
        while True:
            try:
                downstream, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self.connections += 1
                drop, self.drop_next_response = self.drop_next_response, False
                self._open += [downstream, upstream]
            threading.Thread(
                target=self._pump, args=(downstream, upstream, False), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, downstream, drop), daemon=True
            ).start()

    def _pump(self, source: socket.socket, target: socket.socket, drop: bool) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                if drop:
                    break  # the response arrived: close without passing it on
                target.sendall(data)
        for sock in (source, target):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@contextmanager
def proxy_to(base_url: str) -> Iterator[Proxy]:
    """A running proxy to the API at `base_url`."""
    parts = urlsplit(base_url)
    proxy = Proxy((parts.hostname or "127.0.0.1", parts.port or 80))
    thread = threading.Thread(target=proxy.serve, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.server.close()
        proxy.cut()
