"""Refuse request bodies over RAGQ_MAX_REQUEST_BYTES (413) before they are read into memory."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.asgi import HttpMiddleware
from api.errors import ApiError, error_response


class BodyTooLarge(ApiError):
    """The request body is larger than the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, "request_too_large", f"request bodies are limited to {limit} bytes")


class BodyLimit(HttpMiddleware):
    """ASGI middleware: a declared Content-Length over the limit is answered 413 at once; a
    streamed body is counted as it is read and fails with 413 when it passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then count the bytes as the app reads them."""
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            error = BodyTooLarge(self.max_bytes)
            response = error_response(
                error.status, error.code, error.message, path=scope.get("path", "")
            )
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted, send)
