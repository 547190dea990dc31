"""What the API's plain ASGI middlewares share: HTTP requests only, and the response's start."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HttpMiddleware:
    """A plain ASGI middleware that acts on HTTP requests (`http`); the rest pass through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hand an HTTP request to `http`, anything else to the app."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one HTTP request."""
        raise NotImplementedError


class Sent:
    """A `send` that remembers the status the response started with (None until it did), and
    calls `on_start` with it then."""

    def __init__(self, send: Send, on_start: Callable[[int], None] | None = None) -> None:
        self.send = send
        self.on_start = on_start
        self.status: int | None = None

    async def __call__(self, message: Message) -> None:
        """Pass the message on, noting the response's start."""
        if message["type"] == "http.response.start" and self.status is None:
            self.status = int(message["status"])
            if self.on_start is not None:
                self.on_start(self.status)
        await self.send(message)
