"""Exceptions: one per kind of failure, each API error carrying the server's code and message."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from ragq_client.models import JobRecord


class RagqError(Exception):
    """Anything the client raises."""


class ConnectionFailed(RagqError):
    """The API could not be reached, or the connection broke, after every retry."""


class StreamLost(ConnectionFailed):
    """A job's event stream broke and could not be resumed."""


class WaitTimeout(RagqError, TimeoutError):
    """A job did not finish in the time given to wait for it."""


class JobFailed(RagqError):
    """A job ended failed or cancelled where a result was expected."""

    def __init__(self, record: JobRecord) -> None:
        error = record.error
        detail = f"{error.code}: {error.message}" if error else record.status.value
        super().__init__(f"job {record.job_id} {record.status.value}: {detail}")
        self.record = record
        self.code = error.code if error else record.status.value


class WebhookVerificationError(RagqError):
    """A webhook's signature is wrong or missing, its timestamp stale, or its body no job."""


class ApiError(RagqError):
    """The API answered with an error: its HTTP status, code and message."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.retry_after = retry_after(self.headers.get("retry-after"))


class InvalidRequest(ApiError):
    """422 (or 400): the request was refused as malformed; the message names the field."""


class Unauthorized(ApiError):
    """401: no API key, or an unknown or revoked one."""


class NotFound(ApiError):
    """404: no such job, document, batch or delivery for this tenant."""


class Conflict(ApiError):
    """409: the request conflicts with the resource's state."""


class IdempotencyConflict(Conflict):
    """409 `idempotency_conflict`: the Idempotency-Key was used with another request."""


class PayloadTooLarge(ApiError):
    """413: the body, a file or a batch is over a server limit."""


class UnsupportedMediaType(ApiError):
    """415: the body's content type is not one the route reads."""


class RateLimited(ApiError):
    """429: too many requests; wait `retry_after` seconds."""


class QueueFull(RateLimited):
    """429 `queue_full`: the queue this request feeds is full (backpressure)."""


class ServerError(ApiError):
    """5xx: the server failed."""


class ServiceUnavailable(ServerError):
    """503: the job store is unreachable; wait `retry_after` seconds."""


class SearchTimeout(ServerError):
    """504 `search_timeout`: no query worker answered in time."""


BY_CODE: dict[str, type[ApiError]] = {
    "idempotency_conflict": IdempotencyConflict,
    "queue_full": QueueFull,
    "rate_limited": RateLimited,
    "search_timeout": SearchTimeout,
}
BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: InvalidRequest,
    429: RateLimited,
    503: ServiceUnavailable,
}


def retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks to wait (delta-seconds or an HTTP date); None if none."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def from_response(response: httpx.Response) -> ApiError:
    """The typed exception for an error answer of the API."""
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text[:200] or response.reason_phrase
    status = response.status_code
    kind = BY_CODE.get(code) or BY_STATUS.get(status)
    if kind is None:
        kind = ServerError if status >= 500 else ApiError
    return kind(status, code, message, response.headers)
