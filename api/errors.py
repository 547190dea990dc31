"""One JSON error shape, `{"error": {"code", "message"}}`, for every 4xx and 5xx answer.

The OpenAI-compatible routes (`api.openai_schemas.OPENAI_PATHS`) answer in OpenAI's shape instead,
`{"error": {"message", "type", "param", "code"}}`, so the SDKs raise their own exception classes;
there a malformed body is a 400, as OpenAI answers it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import kombu.exceptions
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from api.asgi import HttpMiddleware, Sent
from api.openai_schemas import is_openai_path, openai_error
from common.schemas import ErrorInfo

log = logging.getLogger(__name__)

REDIS_RETRY_AFTER_S = 5


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: ErrorInfo


class ApiError(Exception):
    """An error with an HTTP status and a machine-readable code."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    *,
    path: str = "",
    param: str | None = None,
) -> JSONResponse:
    """A JSON error answer, in OpenAI's shape on the OpenAI-compatible routes (`path`)."""
    if is_openai_path(path):
        content = openai_error(status, code, message, param).model_dump()
    else:
        content = ErrorBody(error=ErrorInfo(code=code, message=message)).model_dump()
    return JSONResponse(content, status_code=status, headers=headers)


def _param(errors: Sequence[Any]) -> str | None:
    """The dotted path of the first invalid field, for OpenAI's `param`."""
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "[key]")]
        if loc:
            return ".".join(loc)
    return None


def _shown(part: object) -> str:
    # A location may hold a client's dict key: keep it short and encodable as UTF-8.
    text = str(part)
    text = text if len(text) <= 40 else text[:40] + "…"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def validation_message(errors: Sequence[Any]) -> str:
    """Each validation error as `field: message` (the field as a dotted path), joined by `; `."""
    parts = []
    for err in errors:
        loc = [p for p in err.get("loc", ()) if p not in ("body", "[key]")]
        where = ".".join(_shown(p) for p in loc)
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return "; ".join(dict.fromkeys(parts)) or "invalid request"


def invalid_request(exc: ValidationError) -> ApiError:
    """The 422 `invalid_request` for a body a model refused, naming each field."""
    return ApiError(422, "invalid_request", validation_message(exc.errors()))


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into the JSON error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        path = request.url.path
        return error_response(exc.status, exc.code, exc.message, exc.headers, path=path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        path = request.url.path
        status = 400 if is_openai_path(path) else 422
        message = validation_message(exc.errors())
        param = _param(exc.errors())
        return error_response(status, "invalid_request", message, path=path, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        path = request.url.path
        if exc.status_code == 400:
            # A body Starlette or FastAPI could not parse (bad JSON, broken multipart, too many
            # parts) is a malformed request like any other.
            status = 400 if is_openai_path(path) else 422
            return error_response(status, "invalid_request", str(exc.detail), path=path)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers, path=path)

    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    @app.exception_handler(kombu.exceptions.OperationalError)  # the broker, through Celery
    async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("redis unavailable: %s", exc)
        return error_response(
            503,
            "service_unavailable",
            "the job store is unreachable; retry shortly",
            {"Retry-After": str(REDIS_RETRY_AFTER_S)},
            path=request.url.path,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Only errors of the middlewares outside Unexpected get here; Starlette raises them
        # again after this answer, and the server logs them with their traceback.
        path = request.url.path
        return error_response(500, "internal_error", "an unexpected error occurred", path=path)

    # Added first, so innermost: the metrics middleware counts its 500s too.
    app.add_middleware(Unexpected)


class Unexpected(HttpMiddleware):
    """ASGI middleware: an unhandled error becomes a 500 in the error shape, logged once.

    Left to Starlette, the error would be logged by our handler and again by the server, to
    which Starlette raises it after answering.
    """

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; answer 500 for what it raises, if it has not started an answer."""
        sent = Sent(send)
        try:
            await self.app(scope, receive, sent)
        except Exception as exc:
            if sent.status is not None:
                raise  # too late for an answer: the server logs it and closes the connection
            log.exception("unhandled error: %r", exc)
            response = error_response(
                500, "internal_error", "an unexpected error occurred", path=scope.get("path", "")
            )
            await response(scope, receive, send)
