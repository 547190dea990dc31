"""When a request is tried again, and after how long."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import httpx

from ragq_client.errors import ApiError

log = logging.getLogger("ragq_client")

# Errors raised before the request left: retrying can never run it twice.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
RETRIED_STATUSES = frozenset({429, 502, 503})
# 409 while a request with the same Idempotency-Key is still being processed.
RETRIED_CODES = frozenset({"idempotency_in_progress"})


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to try a request, and the exponential backoff (with jitter) between tries.

    A `Retry-After` of the server is waited out exactly, unless it is longer than
    `max_retry_after_s`: then the error is raised at once.
    """

    attempts: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 120.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed try number `attempt` (1-based), with jitter."""
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)

    def after_error(self, error: httpx.TransportError, attempt: int, resend: bool) -> float | None:
        """Seconds to wait before trying again after a connection error; None: give up.

        `resend`: the request is safe to send again even if the server may have received it
        (a read, or a POST with an Idempotency-Key).
        """
        if attempt >= self.attempts or not (resend or isinstance(error, NOT_SENT)):
            return None
        delay = self.backoff(attempt)
        log.info("retrying in %.2fs after %s: %s", delay, type(error).__name__, error)
        return delay

    def after_status(self, error: ApiError, attempt: int) -> float | None:
        """Seconds to wait before trying again after an error answer; None: raise it."""
        if attempt >= self.attempts:
            return None
        if error.status not in RETRIED_STATUSES and error.code not in RETRIED_CODES:
            return None
        if error.retry_after is None:
            delay = self.backoff(attempt)
        elif error.retry_after > self.max_retry_after_s:
            return None
        else:
            delay = error.retry_after
        log.info("retrying in %.2fs after %s", delay, error)
        return delay


NO_RETRY = RetryPolicy(attempts=1)
