"""The `webhooks` queue: the outbox dispatcher and the task that makes one signed delivery attempt.

Retries are scheduled in a Redis sorted set (common.keys.WEBHOOKS_DUE_KEY), not with Celery
countdown/eta: with acks late on the Redis broker, a message held for an ETA beyond the
visibility timeout (1800 s) is handed to a second worker while the first still holds it, so
backoffs of hours would multiply deliveries, and an ETA'd message lives in one worker's memory.
The sorted set is the durable source of truth: the terminal transition adds the job to it in
the same Lua script, a dispatcher thread in every worker that consumes `webhooks` turns due
entries into short tasks, and each claim pushes the entry a lease into the future, so a task
lost with its worker is dispatched again when the lease ends.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import redis
from celery import signals

from common import usage
from common.clock import iso_at
from common.contract import DELIVER_WEBHOOK_TASK, WEBHOOKS_QUEUE
from common.jobs import record_from_hash
from common.keys import (
    WEBHOOKS_DUE_KEY,
    job_key,
    previous_secret_key,
    secret_key,
    webhook_lock_key,
    webhook_log_key,
    webhook_state_key,
)
from common.locks import release
from common.schemas import JobStatus
from common.settings import Settings, get_settings
from common.telemetry import WEBHOOK_ATTEMPTS, WEBHOOK_DURATION
from common.webhooks import (
    CLAIM_SCRIPT,
    MANUAL_ONCE,
    DeliveryAttempt,
    DeliveryState,
    WebhookRefused,
    message_id,
    new_secret,
    pinned_request,
    retry_delay,
    signed_headers,
    vet,
)
from workers import engines
from workers.celery_app import app
from workers.lifecycle import consumed_queues

log = logging.getLogger(__name__)

CLAIM_BATCH = 100
USER_AGENT = "ragq-webhooks/1"


def lease_s(settings: Settings) -> float:
    """How long a claimed delivery may take before it is dispatched again."""
    return settings.webhook_timeout_s + 60.0


def signing_secrets(client: redis.Redis, tenant: str) -> list[str]:
    """The tenant's current secret (created on first use) and, after a rotation, the previous."""
    client.set(secret_key(tenant), new_secret(), nx=True)
    found: list[str | None] = client.mget(secret_key(tenant), previous_secret_key(tenant))  # type: ignore[assignment]
    return [s for s in found if s]


def _post(client: redis.Redis, settings: Settings, raw: dict[str, str]) -> int:
    """One signed POST of the job's final record to its vetted address; the HTTP status."""
    vetted = vet(raw["webhook_url"], settings.webhook_allow_networks)
    url, host_headers, extensions = pinned_request(vetted)
    body = record_from_hash(raw).model_dump_json()
    headers = signed_headers(
        signing_secrets(client, raw["tenant"]),
        message_id(raw["job_id"]),
        datetime.now(UTC),
        body,
    )
    headers.update(host_headers)
    headers["user-agent"] = USER_AGENT
    with httpx.Client(
        timeout=settings.webhook_timeout_s, follow_redirects=False, trust_env=False
    ) as http:
        response = http.post(url, content=body.encode(), headers=headers, extensions=extensions)
    return response.status_code


def attempt_once(
    client: redis.Redis, settings: Settings, job_id: str, attempt: int
) -> DeliveryState | None:
    """Make attempt number `attempt` of the job's webhook unless it is stale; the new state.

    Holds the job's delivery lock, so duplicated dispatches of one attempt make one POST.
    """
    token = uuid.uuid4().hex
    if not client.set(webhook_lock_key(job_id), token, nx=True, ex=int(lease_s(settings))):
        return None
    try:
        return _attempt_locked(client, settings, job_id, attempt)
    finally:
        # An attempt that outlived its lease must not delete the lock a later attempt took.
        release(client, webhook_lock_key(job_id), token)


def _attempt_locked(
    client: redis.Redis, settings: Settings, job_id: str, attempt: int
) -> DeliveryState | None:
    raw: dict[str, str] = client.hgetall(job_key(job_id))  # type: ignore[assignment]
    state: dict[str, str] = client.hgetall(webhook_state_key(job_id))  # type: ignore[assignment]
    if not raw or not raw.get("webhook_url") or not JobStatus(raw["status"]).finished:
        client.zrem(WEBHOOKS_DUE_KEY, job_id)
        return None
    if attempt != int(state.get("attempts", 0)) + 1:
        return None
    if not state and _delay_first(client, settings, job_id):
        return DeliveryState.PENDING
    sent = _send(client, settings, raw)
    entry, next_due = _decide(settings, sent, attempt, state.get("manual", ""))
    _record(client, settings, raw, entry, next_due)
    return entry.outcome


def _delay_first(client: redis.Redis, settings: Settings, job_id: str) -> bool:
    """Schedule the first attempt if the schedule's first entry delays it; whether it did."""
    first = retry_delay(settings.webhook_retry_schedule_s, 0, settings.webhook_jitter) or 0.0
    if first <= 0:
        return False
    due = time.time() + first
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(
            webhook_state_key(job_id),
            mapping={"attempts": 0, "state": "pending", "next_at": iso_at(due)},
        )
        pipe.expire(webhook_state_key(job_id), settings.job_ttl_s)
        pipe.zadd(WEBHOOKS_DUE_KEY, {job_id: due})
        pipe.execute()
    return True


@dataclass(frozen=True)
class _Sent:
    """What one POST of the webhook gave: an HTTP status, or an error."""

    started: float
    duration: float
    status_code: int | None = None
    error: str = ""
    permanent: bool = False


def _send(client: redis.Redis, settings: Settings, raw: dict[str, str]) -> _Sent:
    """POST the job's final record once."""
    started = time.time()
    status_code: int | None = None
    error = ""
    permanent = False
    try:
        status_code = _post(client, settings, raw)
    except WebhookRefused as exc:
        error = f"{exc.code}: {exc.message}"
        permanent = exc.code != "webhook_url_unresolvable"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    duration = time.time() - started
    WEBHOOK_DURATION.observe(duration)
    return _Sent(started, duration, status_code, error, permanent)


def _decide(
    settings: Settings, sent: _Sent, attempt: int, manual: str
) -> tuple[DeliveryAttempt, float | None]:
    """The attempt's log entry (delivered, gone, failed or pending) and when the next is due."""
    status_code, error = sent.status_code, sent.error
    next_due: float | None = None
    if status_code is not None and 200 <= status_code < 300:
        outcome = DeliveryState.DELIVERED
    elif status_code == 410:
        outcome = DeliveryState.GONE
    elif sent.permanent or manual == MANUAL_ONCE:
        outcome = DeliveryState.FAILED
    else:
        delay = retry_delay(settings.webhook_retry_schedule_s, attempt, settings.webhook_jitter)
        outcome = DeliveryState.FAILED if delay is None else DeliveryState.PENDING
        next_due = None if delay is None else time.time() + delay
    if status_code is not None and not error and outcome is not DeliveryState.DELIVERED:
        error = f"HTTP {status_code}"
    entry = DeliveryAttempt(
        attempt=attempt,
        at=iso_at(sent.started),
        status_code=status_code,
        error=error or None,
        duration_s=round(sent.duration, 4),
        outcome=outcome,
        next_attempt_at=iso_at(next_due) if next_due is not None else None,
        manual=bool(manual),
    )
    return entry, next_due


def _record(
    client: redis.Redis,
    settings: Settings,
    raw: dict[str, str],
    entry: DeliveryAttempt,
    next_due: float | None,
) -> None:
    """Log the attempt, move the delivery's state, schedule the next attempt or none, and count
    the attempt in the tenant's usage."""
    job_id, outcome = raw["job_id"], entry.outcome
    WEBHOOK_ATTEMPTS.labels("retrying" if outcome is DeliveryState.PENDING else outcome.value).inc()
    with client.pipeline(transaction=True) as pipe:
        pipe.rpush(webhook_log_key(job_id), entry.model_dump_json())
        pipe.hset(
            webhook_state_key(job_id),
            mapping={
                "attempts": entry.attempt,
                "state": outcome.value,
                "next_at": entry.next_attempt_at or "",
                "manual": "",
            },
        )
        pipe.expire(webhook_log_key(job_id), settings.job_ttl_s)
        pipe.expire(webhook_state_key(job_id), settings.job_ttl_s)
        if next_due is not None:
            pipe.zadd(WEBHOOKS_DUE_KEY, {job_id: next_due})
        else:
            pipe.zrem(WEBHOOKS_DUE_KEY, job_id)
        usage.count(pipe, raw["tenant"], raw.get("key_id", ""), {"webhook_deliveries": 1})
        pipe.execute()
    log.info(
        "webhook job=%s attempt=%d status=%s error=%s outcome=%s",
        job_id,
        entry.attempt,
        entry.status_code,
        entry.error or "-",
        outcome.value,
    )


@app.task(name=DELIVER_WEBHOOK_TASK, ignore_result=True)
def deliver_webhook(job_id: str, attempt: int) -> str | None:
    """Make one delivery attempt of a finished job's webhook (a stale dispatch does nothing)."""
    outcome = attempt_once(engines.job_store().redis, get_settings(), job_id, attempt)
    return outcome.value if outcome else None


class Dispatcher:
    """Turns due entries of the webhook outbox into delivery tasks, every poll interval."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        send: Callable[[str, int], object],
    ) -> None:
        self.client = client
        self.settings = settings
        self.send = send
        self._claim = client.register_script(CLAIM_SCRIPT)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> list[str]:
        """Claim what is due and send one task per job; the job ids sent."""
        args = [time.time(), lease_s(self.settings), CLAIM_BATCH]
        job_ids = [str(j) for j in self._claim(keys=[WEBHOOKS_DUE_KEY], args=args)]
        for job_id in job_ids:
            made = int(self.client.hget(webhook_state_key(job_id), "attempts") or 0)  # type: ignore[arg-type]
            self.send(job_id, made + 1)
        return job_ids

    def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception as exc:  # keep dispatching through Redis or broker outages
                log.warning("webhook dispatcher: %r", exc)
            if self._stop.wait(self.settings.webhook_poll_s):
                return

    def start(self) -> None:
        """Run in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="ragq-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current tick."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def send_delivery(job_id: str, attempt: int) -> None:
    """Enqueue a delivery attempt on the `webhooks` queue."""
    app.send_task(DELIVER_WEBHOOK_TASK, args=[job_id, attempt])


_dispatcher: Dispatcher | None = None


@signals.worker_ready.connect
def start_dispatcher(sender: Any, **_: Any) -> None:
    """A worker that consumes `webhooks` also runs the outbox dispatcher."""
    global _dispatcher
    if WEBHOOKS_QUEUE not in consumed_queues(sender.controller):
        return
    _dispatcher = Dispatcher(engines.job_store().redis, get_settings(), send_delivery)
    _dispatcher.start()
    log.info("webhook dispatcher started")


@signals.worker_shutdown.connect
def stop_dispatcher(**_: Any) -> None:
    """Stop the dispatcher with the worker."""
    if _dispatcher is not None:
        _dispatcher.stop()
