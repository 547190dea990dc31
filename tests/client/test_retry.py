"""The retry policy and the error types, without a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx

from ragq_client import (
    IdempotencyConflict,
    NotFound,
    QueueFull,
    RateLimited,
    RetryPolicy,
    ServerError,
    ServiceUnavailable,
)
from ragq_client.errors import from_response, retry_after


def error(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"code": code, "message": "m"}}
    return httpx.Response(status, json=body, headers=headers)


def test_errors_are_typed_by_code_then_status() -> None:
    assert type(from_response(error(429, "queue_full", {"Retry-After": "5"}))) is QueueFull
    assert type(from_response(error(429, "rate_limited"))) is RateLimited
    assert type(from_response(error(409, "idempotency_conflict"))) is IdempotencyConflict
    assert type(from_response(error(404, "job_not_found"))) is NotFound
    assert type(from_response(error(503, "service_unavailable"))) is ServiceUnavailable
    assert type(from_response(httpx.Response(502, text="bad gateway"))) is ServerError
    full = from_response(error(429, "queue_full", {"Retry-After": "5"}))
    assert full.retry_after == 5 and str(full) == "429 queue_full: m"


def test_retry_after_as_seconds_or_date() -> None:
    assert retry_after("7") == 7
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 28 <= (retry_after(later) or 0) <= 30
    assert retry_after("soon") is None and retry_after(None) is None


def test_policy_waits_out_retry_after_and_backs_off() -> None:
    policy = RetryPolicy(attempts=3, backoff_s=1, max_backoff_s=3, max_retry_after_s=60)
    assert (
        policy.after_status(from_response(error(429, "rate_limited", {"Retry-After": "4"})), 1) == 4
    )
    assert (
        policy.after_status(from_response(error(429, "rate_limited", {"Retry-After": "99"})), 1)
        is None
    )
    assert policy.after_status(from_response(error(404, "job_not_found")), 1) is None
    assert policy.after_status(from_response(error(503, "x")), 3) is None  # out of attempts
    assert 0.5 <= (policy.after_status(from_response(error(503, "x")), 1) or 0) <= 1
    assert policy.backoff(10) <= 3
    lost = httpx.ReadError("reset")
    assert policy.after_error(lost, 1, resend=False) is None
    assert policy.after_error(lost, 1, resend=True) is not None
    assert policy.after_error(httpx.ConnectError("refused"), 1, resend=False) is not None
