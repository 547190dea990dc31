"""The reconciler: jobs a dead worker held, or whose message was lost, are re-enqueued or failed.

Celery's own redelivery of an unacknowledged message waits for the broker's visibility timeout
(longer than the longest task, so half an hour), and a message lost between the broker and a
worker (popped, then the connection dropped) never comes back at all. Each pass looks at every
unfinished job (`ACTIVE_JOBS_KEY`):

- `running`, held by a worker process whose heartbeat is gone or now names another process
  (restarted under the same hostname): the job is released and its first task sent again, or
  it fails as `poison_job` when its attempts are used up;
- `queued`, or `running` but released to its next stage, for longer than
  `RAGQ_RECONCILE_STALE_S`, with no message for it waiting in a broker queue: its first task
  is sent again (at most `max_attempts` times, then it fails as `job_lost`).

A re-sent task is safe against the original message coming back later: `JobStore.start`
claims a job only when it is queued or its holder is dead, and never reopens a finished one.

Where it runs: a daemon thread in every worker process, not Celery beat. Beat is one more
process that must run exactly once (two beats send everything twice, none means no
reconciling), i.e. a single point of failure to deploy and watch. Here every worker runs the
loop and a pass starts only after taking a lease (`SET NX PX` for one interval), so across the
cluster at most one pass runs per interval and any live worker can run it.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import redis
from celery import Celery

from common.clock import now_iso
from common.contract import FIRST_TASK, JOB_QUEUES
from common.documents import settle
from common.jobs import JobStore, Update
from common.keys import ACTIVE_JOBS_KEY, RECONCILER_LEASE_KEY, job_key, worker_key
from common.liveness import announced_instance, announced_jobs
from common.schemas import JobKind, JobStatus
from common.settings import Settings
from common.telemetry import RECONCILED

log = logging.getLogger(__name__)

# kombu's Redis transport keeps a queue's messages of priority p > 0 in "<queue>\x06\x16<p>".
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
FIELDS = (
    "status",
    "kind",
    "worker",
    "worker_instance",
    "released",
    "attempts",
    "requeues",
    "created_at",
    "enqueued_at",
)
PAGE = 500


@dataclass(frozen=True)
class Announced:
    """What a worker's liveness key says: its process instance and the jobs it runs."""

    instance: str | None
    jobs: frozenset[str] | None

    def holds(self, instance: str, job_id: str) -> bool:
        """Whether this worker process is `instance` and runs the job (a worker that lists no
        jobs, of an older version, is taken at its word). A task that gave up on its job (a
        Redis outage outlasted its retries) leaves it held by a live worker that no longer
        lists it."""
        return self.instance == instance and (self.jobs is None or job_id in self.jobs)


@dataclass
class Outcome:
    """What one pass did."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    forgotten: int = 0


def message_job_id(message: str | bytes) -> str | None:
    """The job id (first argument) of a Celery message as kombu stores it in Redis."""
    try:
        envelope = json.loads(message)
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return str(args[0]) if args else None


def waiting_job_ids(client: redis.Redis, queues: Iterable[str] = JOB_QUEUES) -> set[str]:
    """Ids of the jobs that have a message waiting in one of the broker queues."""
    found: set[str] = set()
    for queue in queues:
        for name in (queue + suffix for suffix in PRIORITY_SUFFIXES):
            start = 0
            while page := client.lrange(name, start, start + PAGE - 1):
                found.update(j for j in map(message_job_id, page) if j)  # type: ignore[arg-type]
                start += PAGE
    return found


def _age_s(iso: str | None, now: float) -> float:
    return now - datetime.fromisoformat(iso).timestamp() if iso else 0.0


class Reconciler:
    """One pass at a time over the unfinished jobs (see the module's docstring)."""

    def __init__(self, store: JobStore, celery: Celery, settings: Settings) -> None:
        self.store = store
        self.redis = store.redis
        self.celery = celery
        self.settings = settings
        # When each running job was first seen without a heartbeat from its holder.
        self._suspects: dict[str, float] = {}

    def acquire(self) -> bool:
        """Take the lease of this interval's pass; False when another process holds it."""
        lease_ms = int(self.settings.reconcile_interval_s * 1000)
        return bool(self.redis.set(RECONCILER_LEASE_KEY, self.store.instance, nx=True, px=lease_ms))

    def _records(self, ids: list[str]) -> Iterator[tuple[str, dict[str, str]]]:
        for start in range(0, len(ids), PAGE):
            page = ids[start : start + PAGE]
            with self.redis.pipeline(transaction=False) as pipe:
                for job_id in page:
                    pipe.hmget(job_key(job_id), list(FIELDS))
                rows = pipe.execute()
            for job_id, row in zip(page, rows, strict=True):
                yield job_id, {k: v for k, v in zip(FIELDS, row, strict=True) if v is not None}

    def _announced(self, records: list[tuple[str, dict[str, str]]]) -> dict[str, Announced]:
        hosts = sorted({r["worker"] for _, r in records if r.get("worker_instance")})
        values = self.redis.mget([worker_key(h) for h in hosts]) if hosts else []
        return {
            h: Announced(announced_instance(v), announced_jobs(v))  # type: ignore[arg-type]
            for h, v in zip(hosts, values, strict=True)  # type: ignore[arg-type]
        }

    def run_once(self) -> Outcome:
        """Check every unfinished job once; what was re-enqueued, failed or forgotten."""
        outcome = Outcome()
        now = time.time()
        ids: list[str] = self.redis.zrange(ACTIVE_JOBS_KEY, 0, -1)  # type: ignore[assignment]
        records = list(self._records(ids))
        announced = self._announced(records)
        waiting: set[str] | None = None
        for job_id, raw in records:
            status = raw.get("status")
            if status is None or JobStatus(status).finished:
                self.redis.zrem(ACTIVE_JOBS_KEY, job_id)
                outcome.forgotten += 1
                continue
            holder = raw.get("worker_instance", "")
            if status == JobStatus.RUNNING and holder:
                found = announced.get(raw.get("worker", ""), Announced(None, None))
                self._check_holder(job_id, raw, found, now, outcome)
                continue
            if status == JobStatus.RUNNING and not raw.get("released"):
                continue  # claimed by a worker of an older version, which names no instance
            since = raw.get("enqueued_at") or raw.get("created_at")
            if _age_s(since, now) < self.settings.reconcile_stale_s:
                continue
            if waiting is None:
                waiting = waiting_job_ids(self.redis)
            if job_id not in waiting:
                self._resend(job_id, raw, outcome)
        known = {job_id for job_id, _ in records}
        self._suspects = {j: t for j, t in self._suspects.items() if j in known}
        return outcome

    def _check_holder(
        self,
        job_id: str,
        raw: dict[str, str],
        announced: Announced,
        now: float,
        outcome: Outcome,
    ) -> None:
        holder = raw["worker_instance"]
        if announced.holds(holder, job_id):
            self._suspects.pop(job_id, None)
            return
        # Acted on only when it lasts a few heartbeats: a key lapses while Redis restarts, a
        # just-started worker may take a task a moment before its first heartbeat, and a job
        # just claimed is listed at the next one.
        first = self._suspects.setdefault(job_id, now)
        if now - first < 3 * self.settings.worker_heartbeat_s:
            return
        self._suspects.pop(job_id, None)
        attempts = int(raw.get("attempts", 0))
        if attempts >= self.settings.max_attempts:
            message = f"the job's worker was lost {attempts} times"
            self._fail(job_id, raw, "poison_job", message, outcome)
            return
        if not self.store.release(job_id, "requeue", holder=holder):
            return
        log.warning("job %s: worker %s is gone; re-enqueued", job_id, raw.get("worker"))
        self._send(job_id, raw, outcome)

    def _fail(
        self, job_id: str, raw: dict[str, str], code: str, message: str, outcome: Outcome
    ) -> None:
        """Fail a job no worker will finish; an ingest's document goes back to a settled state."""
        if not self.store.fail(job_id, code, message):
            return
        RECONCILED.labels(raw.get("kind", "?"), "failed").inc()
        outcome.failed.append(job_id)
        if raw.get("kind") == JobKind.INGEST and raw.get("document_id"):
            settle(self.redis, raw["tenant"], raw["document_id"], job_id, code)

    def _resend(self, job_id: str, raw: dict[str, str], outcome: Outcome) -> None:
        requeues = int(raw.get("requeues", 0)) + 1
        allowed = frozenset({JobStatus(raw["status"])})
        if requeues > self.settings.max_attempts:
            message = f"the job's message was lost {requeues - 1} times"
            self._fail(job_id, raw, "job_lost", message, outcome)
            return
        update = Update(allowed, {"requeues": str(requeues), "enqueued_at": now_iso()})
        if not self.store.apply(job_id, update):
            return
        log.warning("job %s: %s with no message behind it; re-enqueued", job_id, raw["status"])
        self._send(job_id, raw, outcome)

    def _send(self, job_id: str, raw: dict[str, str], outcome: Outcome) -> None:
        kind = JobKind(raw["kind"])
        task = FIRST_TASK.get(kind)
        if task is None:
            log.error("job %s: no task restarts a %s job", job_id, kind.value)
            return
        task_id = f"{job_id}-r{int(time.time() * 1000)}"
        self.celery.send_task(task, args=[job_id], task_id=task_id)
        RECONCILED.labels(kind.value, "requeued").inc()
        outcome.requeued.append(job_id)

    def run_forever(self, stop: threading.Event) -> None:
        """Run a pass every interval (when this process gets the lease) until `stop` is set."""
        while not stop.wait(self.settings.reconcile_interval_s):
            try:
                if self.acquire():
                    outcome = self.run_once()
                    if outcome.requeued or outcome.failed:
                        log.info("reconciler: %s", outcome)
            except Exception as exc:  # the loop outlives Redis restarts and bad records
                log.warning("reconciler pass failed: %r", exc)


def start_thread(
    store: JobStore, celery: Celery, settings: Settings, stop: threading.Event
) -> threading.Thread:
    """Start the reconciler loop in a daemon thread of this worker process."""
    thread = threading.Thread(
        target=Reconciler(store, celery, settings).run_forever,
        args=(stop,),
        name="ragq-reconciler",
        daemon=True,
    )
    thread.start()
    return thread
