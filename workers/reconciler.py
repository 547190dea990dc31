"""The reconciler: jobs a dead worker held, or whose message was lost, are re-enqueued or failed.

Celery's own redelivery of an unacknowledged message waits for the broker's visibility timeout
(longer than the longest task, so half an hour), and a message lost between the broker and a
worker (popped, then the connection dropped) never comes back at all. A pass looks at:

- every job a worker process holds (`HELD_JOBS_KEY`): one held by a process whose heartbeat is
  gone or now names another process (restarted under the same hostname), or that a live worker
  no longer lists, is released and its first task sent again, or it fails as `poison_job` when
  its attempts are used up;
- at most `LIMIT` of the jobs no worker holds (`queued`, or `running` but released to its next
  stage), those of lowest score in `ACTIVE_JOBS_KEY` once that score is `RAGQ_RECONCILE_LOST_S`
  old: one whose message is not waiting in a broker queue has its first task sent again (at most
  `max_attempts` times, then it fails as `job_lost`) once it was sent `RAGQ_RECONCILE_STALE_S`
  ago, or sooner when no live worker holds its message either, on two passes some heartbeats
  apart (each heartbeat lists the jobs whose messages its worker has taken and not finished;
  a message a killed worker popped, or took and had not started, is in no list); the others are
  scored anew so that the next pass takes the next ones.

So a pass costs the held jobs plus `LIMIT`, whatever the backlog. Whether a message waits is
read from the oldest `WINDOW` messages of each broker list, not the whole list: kombu pushes on
the left and workers pop from the right, so a waiting message of a job that has waited longest
is among the oldest. A job not among them has lost its message when the list was read to its
end, or when a message sent more than `RAGQ_RECONCILE_STALE_S` after the job's is already among
the oldest (the queue has moved past where its message was); otherwise it is looked at again on
a later pass. Every transition of a job moves it between the two indexes in the script that
changes its record (`common.jobs.UPDATE_SCRIPT`); a job an older version claimed is found by a
one-time backfill (a `ZSCAN` of `ACTIVE_JOBS_KEY`, a page per pass), or when its score comes up.

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
import enum
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import redis
from celery import Celery

from common.clock import now_iso
from common.contract import FIRST_TASK, JOB_QUEUES, LLM_QUEUE, ROUTES
from common.documents import settle
from common.jobs import JobStore, Update
from common.keys import (
    ACTIVE_JOBS_KEY,
    HELD_JOBS_KEY,
    RECONCILER_BACKFILL_KEY,
    RECONCILER_LEASE_KEY,
    WORKER_KEY_PREFIX,
    job_key,
    worker_key,
)
from common.liveness import announced_instance, announced_jobs, announced_received
from common.schemas import JobKind, JobStatus
from common.settings import Settings
from common.telemetry import RECONCILED

log = logging.getLogger(__name__)

# kombu's Redis transport keeps a queue's messages of priority p > 0 in "<queue>\x06\x16<p>".
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
FIELDS = (
    "status",
    "kind",
    "tenant",
    "document_id",
    "worker",
    "worker_instance",
    "released",
    "attempts",
    "requeues",
    "created_at",
    "enqueued_at",
)
PAGE = 500
# KEYS: job records. ARGV: field names. Returns, as one JSON array, each record's values of
# those fields (false where unset): one command and one reply for a page, where a pipeline of
# HMGETs costs more to pack and parse than Redis takes to answer.
READ_SCRIPT = """
local rows = {}
for i, key in ipairs(KEYS) do rows[i] = redis.call('HMGET', key, unpack(ARGV)) end
if #rows == 0 then return '[]' end
return cjson.encode(rows)
"""
# Jobs no worker holds that one pass looks at, and messages it reads from the old end of each
# broker list.
LIMIT = 500
WINDOW = 500
# Of a list longer than the window, the newest messages read whose send time is looked up.
STAMPED = 8
# Entries of ACTIVE_JOBS_KEY the one-time backfill reads per pass.
BACKFILL_PAGE = 5000
# A reconciler's re-send ("<job>-r<ms>") and a hand-over to generation ("<job>-generate").
RESENT_TASK = re.compile(r"-r(\d+)$")
GENERATE_SUFFIX = "-generate"


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
    # Jobs no worker holds that this pass looked at (at most LIMIT).
    examined: int = 0


# A message's job id and task id, where it names them.
MessageIds = tuple[str | None, str | None]


class Verdict(enum.Enum):
    """Whether a job's message waits in a broker queue."""

    WAITING = "waiting"
    MISSING = "missing"
    UNKNOWN = "unknown"


def message_ids(message: str | bytes) -> MessageIds:
    """The job id (first argument) and task id of a Celery message as kombu stores it in Redis."""
    try:
        envelope = json.loads(message)
        body = envelope["body"]
        task_id = envelope.get("headers", {}).get("id")
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None, None
    return (str(args[0]) if args else None), (str(task_id) if task_id else None)


def broker_lists(queues: Iterable[str] = JOB_QUEUES) -> list[str]:
    """The Redis lists that hold the waiting messages of these queues, all priorities."""
    return [queue + suffix for queue in queues for suffix in PRIORITY_SUFFIXES]


def waiting_job_ids(client: redis.Redis, queues: Iterable[str] = JOB_QUEUES) -> set[str]:
    """Ids of the jobs that have a message waiting in one of the broker queues (all of it read)."""
    found: set[str] = set()
    for name in broker_lists(queues):
        start = 0
        while page := client.lrange(name, start, start + PAGE - 1):
            found.update(j for j, _ in map(message_ids, page) if j)  # type: ignore[arg-type]
            start += PAGE
    return found


@dataclass(frozen=True)
class Tail:
    """The oldest messages waiting in one broker list."""

    jobs: frozenset[str]
    # The list was read to its end: a message not among these is not waiting in it.
    whole: bool
    # The latest send time among its newest messages read, where one was found.
    newest: float | None


def read_tails(client: redis.Redis, names: Sequence[str], window: int) -> dict[str, Tail]:
    """The oldest `window` messages of each of these lists, and when the newest were sent."""
    with client.pipeline(transaction=True) as pipe:
        for name in names:
            pipe.llen(name)
            pipe.lrange(name, -window, -1)
        replies = pipe.execute()
    read: dict[str, tuple[bool, list[MessageIds]]] = {}
    for n, name in enumerate(names):
        length, page = replies[2 * n], replies[2 * n + 1]
        read[name] = (length <= len(page), [message_ids(m) for m in page])
    # LRANGE lists a window from its newest message (nearest the head) to its oldest.
    newest = {
        name: [m for m in messages if m[0] and m[1] and m[1].startswith(m[0])][:STAMPED]
        for name, (whole, messages) in read.items()
        if not whole
    }
    sent = _send_times([m for found in newest.values() for m in found], client)
    tails = {}
    for name, (whole, messages) in read.items():
        times = [sent[m] for m in newest.get(name, []) if m in sent]
        jobs = frozenset(job for job, _ in messages if job)
        tails[name] = Tail(jobs, whole, max(times, default=None))
    return tails


def _send_times(messages: list[MessageIds], client: redis.Redis) -> dict[MessageIds, float]:
    """When each message was sent, where it can be told: a re-send's task id says, a job's first
    message went when the job was created, its generation when it was handed over. Each is a
    time before the message was pushed."""
    sent: dict[MessageIds, float] = {}
    lookups: list[tuple[MessageIds, str, str]] = []
    for job_id, task_id in messages:
        if not job_id or not task_id:
            continue
        if task_id.startswith(job_id) and (resent := RESENT_TASK.search(task_id)):
            sent[(job_id, task_id)] = int(resent.group(1)) / 1000
        elif task_id == job_id:
            lookups.append(((job_id, task_id), job_id, "created_at"))
        elif task_id == job_id + GENERATE_SUFFIX:
            lookups.append(((job_id, task_id), job_id, "enqueued_at"))
    if lookups:
        with client.pipeline(transaction=False) as pipe:
            for _, job_id, name in lookups:
                pipe.hget(job_key(job_id), name)
            values = pipe.execute()
        for (ids, _, _), value in zip(lookups, values, strict=True):
            if value:
                sent[ids] = datetime.fromisoformat(value).timestamp()
    return sent


def verdict(
    tails: dict[str, Tail], job_id: str, lists: Iterable[str], sent: float, margin: float
) -> Verdict:
    """Whether the job's message waits: found in a tail, missing from each list it could be in
    (read whole, or moved past it: a message sent `margin` after the job's is among the oldest),
    or not known yet."""
    if any(job_id in tail.jobs for tail in tails.values()):
        return Verdict.WAITING
    for name in lists:
        tail = tails[name]
        if not (tail.whole or (tail.newest is not None and tail.newest > sent + margin)):
            return Verdict.UNKNOWN
    return Verdict.MISSING


def expected_lists(raw: dict[str, str]) -> list[str]:
    """The broker lists the job's message can wait in: its first task's queue, and the llm
    queue once handed to generation (all job queues for a kind this version does not know)."""
    try:
        task = FIRST_TASK.get(JobKind(raw.get("kind", "")))
    except ValueError:
        task = None
    queues = {ROUTES[task]} if task else set(JOB_QUEUES)
    if raw.get("released") == "handoff":
        queues.add(LLM_QUEUE)
    return broker_lists(sorted(queues))


def _sent_at(raw: dict[str, str]) -> float:
    """When the job's latest message was sent (0 when its record does not say)."""
    since = raw.get("enqueued_at") or raw.get("created_at")
    return datetime.fromisoformat(since).timestamp() if since else 0.0


class Reconciler:
    """One pass at a time over the unfinished jobs (see the module's docstring)."""

    def __init__(
        self,
        store: JobStore,
        celery: Celery,
        settings: Settings,
        *,
        limit: int = LIMIT,
        window: int = WINDOW,
    ) -> None:
        self.store = store
        self.redis = store.redis
        self.celery = celery
        self.settings = settings
        self.limit = limit
        self.window = window
        # When each running job was first seen without a heartbeat from its holder.
        self._suspects: dict[str, float] = {}
        # When each unheld job was first seen with its message in no queue and no worker's hands.
        self._unseen: dict[str, float] = {}
        self._read = self.redis.register_script(READ_SCRIPT)

    def acquire(self) -> bool:
        """Take the lease of this interval's pass; False when another process holds it."""
        lease_ms = int(self.settings.reconcile_interval_s * 1000)
        return bool(self.redis.set(RECONCILER_LEASE_KEY, self.store.instance, nx=True, px=lease_ms))

    def _records(self, ids: list[str]) -> Iterator[tuple[str, dict[str, str]]]:
        """The FIELDS of each job's record that are set, a page per call of one script."""
        for start in range(0, len(ids), PAGE):
            page = ids[start : start + PAGE]
            keys = [job_key(job_id) for job_id in page]
            rows = json.loads(self._read(keys=keys, args=FIELDS))
            for job_id, row in zip(page, rows, strict=True):
                yield job_id, {k: v for k, v in zip(FIELDS, row, strict=True) if v}

    def _announced(self, records: list[tuple[str, dict[str, str]]]) -> dict[str, Announced]:
        hosts = sorted({r["worker"] for _, r in records if r.get("worker_instance")})
        values = self.redis.mget([worker_key(h) for h in hosts]) if hosts else []
        return {
            h: Announced(announced_instance(v), announced_jobs(v))  # type: ignore[arg-type]
            for h, v in zip(hosts, values, strict=True)  # type: ignore[arg-type]
        }

    def run_once(self) -> Outcome:
        """One pass: the backfill's next page, the stale jobs no worker holds, the held jobs."""
        outcome = Outcome()
        now = time.time()
        self._backfill(outcome)
        self._check_unheld(now, outcome)
        self._check_held(now, outcome)
        return outcome

    def _place(self, job_id: str, outcome: Outcome) -> None:
        """Put a job an index misplaced where its record says (forgotten if it ended or expired)."""
        if self.store.place(job_id) == "gone":
            outcome.forgotten += 1

    def _backfill(self, outcome: Outcome) -> None:
        """Index the next page of the held jobs that an older version left in the active index
        only (until a ZSCAN went through it once)."""
        state: str | None = self.redis.get(RECONCILER_BACKFILL_KEY)  # type: ignore[assignment]
        if state == "done":
            return
        scanned: tuple[int, list[tuple[str, float]]] = self.redis.zscan(  # type: ignore[assignment]
            ACTIVE_JOBS_KEY, int(state or 0), count=BACKFILL_PAGE
        )
        cursor, entries = scanned
        ids = [job_id for job_id, score in entries if score != float("inf")]
        for job_id, raw in self._records(ids):
            status = raw.get("status")
            if status is None or JobStatus(status).finished or raw.get("worker_instance"):
                self._place(job_id, outcome)
        self.redis.set(RECONCILER_BACKFILL_KEY, str(cursor) if cursor else "done")

    def _in_hands(self) -> frozenset[str] | None:
        """The jobs whose messages a live worker has taken and not finished (None when a live
        worker does not say, as one of an older version)."""
        keys = list(self.redis.scan_iter(f"{WORKER_KEY_PREFIX}*", count=1000))
        found: set[str] = set()
        for value in self.redis.mget(keys) if keys else []:  # type: ignore[union-attr]
            if value is None:
                continue  # gone since the scan
            received = announced_received(value)  # type: ignore[arg-type]
            if received is None:
                return None
            found |= received
        return frozenset(found)

    def _check_unheld(self, now: float, outcome: Outcome) -> None:
        """Re-send the jobs of lowest score whose message is gone; score the rest anew."""
        stale_s = self.settings.reconcile_stale_s
        lost_s = min(self.settings.reconcile_lost_s, stale_s)
        cutoff = now - lost_s
        ids: list[str] = self.redis.zrangebyscore(  # type: ignore[assignment]
            ACTIVE_JOBS_KEY, "-inf", cutoff, start=0, num=self.limit
        )
        outcome.examined = len(ids)
        tails: dict[str, Tail] | None = None
        young: list[tuple[str, dict[str, str]]] = []
        later: dict[str, float] = {}
        for job_id, raw in self._records(ids):
            status, held = raw.get("status"), bool(raw.get("worker_instance"))
            if status == JobStatus.RUNNING and not held and not raw.get("released"):
                later[job_id] = now  # claimed by a worker of an older version, naming none
                continue
            if not (status == JobStatus.QUEUED or (status == JobStatus.RUNNING and not held)):
                self._place(job_id, outcome)  # ended, expired, or held
                continue
            sent = _sent_at(raw)
            if now - sent < lost_s:
                later[job_id] = sent  # sent again since it was scored
                continue
            if tails is None:
                tails = read_tails(self.redis, broker_lists(), self.window)
            if verdict(tails, job_id, expected_lists(raw), sent, stale_s) is not Verdict.MISSING:
                later[job_id] = cutoff  # after the jobs due and not yet looked at
                continue
            if now - sent >= stale_s:
                self._resend(job_id, raw, outcome)
            else:
                young.append((job_id, raw))
        for job_id in self._check_unseen(young, now, outcome):
            later[job_id] = cutoff
        if later:
            # Never lowers a score, nor adds back a job that was claimed or ended meanwhile.
            self.redis.zadd(ACTIVE_JOBS_KEY, later, xx=True, gt=True)  # type: ignore[arg-type]

    def _check_unseen(
        self, jobs: list[tuple[str, dict[str, str]]], now: float, outcome: Outcome
    ) -> list[str]:
        """Re-send the jobs, not yet stale, whose messages no queue holds and no live worker has
        held since an earlier pass some heartbeats ago; the others, to be looked at again."""
        hands = self._in_hands() if jobs else None
        unseen: dict[str, float] = {}
        again = []
        for job_id, raw in jobs:
            if hands is None or job_id in hands:
                again.append(job_id)
                continue
            # A worker lists a message it took at its next heartbeat.
            first = unseen[job_id] = self._unseen.get(job_id, now)
            if now - first >= 2 * self.settings.worker_heartbeat_s:
                del unseen[job_id]
                self._resend(job_id, raw, outcome)
            else:
                again.append(job_id)
        self._unseen = unseen
        return again

    def _check_held(self, now: float, outcome: Outcome) -> None:
        """Release the held jobs whose holder is gone, restarted, or no longer runs them."""
        ids: list[str] = self.redis.zrange(HELD_JOBS_KEY, 0, -1)  # type: ignore[assignment]
        records = list(self._records(ids))
        announced = self._announced(records)
        for job_id, raw in records:
            if raw.get("status") == JobStatus.RUNNING and raw.get("worker_instance"):
                found = announced.get(raw.get("worker", ""), Announced(None, None))
                self._check_holder(job_id, raw, found, now, outcome)
            else:
                self._place(job_id, outcome)
        held = set(ids)
        self._suspects = {j: t for j, t in self._suspects.items() if j in held}

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
        self._hand_over(job_id, raw, holder, outcome)

    def _hand_over(self, job_id: str, raw: dict[str, str], holder: str, outcome: Outcome) -> None:
        """Re-enqueue a job whose holder is gone, or fail it as poison after too many losses."""
        attempts = int(raw.get("attempts", 0))
        if attempts >= self.settings.max_attempts:
            message = f"the job's worker was lost {attempts} times"
            self._fail(job_id, raw, "poison_job", message, outcome)
            return
        if not self.store.release(job_id, "requeue", holder=holder):
            return
        log.warning("job %s: worker %s is gone; re-enqueued", job_id, raw.get("worker"))
        self._send(job_id, raw, outcome)

    def release_predecessor(self, hostname: str) -> Outcome:
        """Hand over at once the jobs held under `hostname` by another process than this one.

        Called as a worker starts, before it consumes: a hostname names one worker process at a
        time (Celery requires unique node names), so another instance under it is a process of
        this worker that died, and the restarted one need not wait for its heartbeat to lapse.
        """
        outcome = Outcome()
        ids: list[str] = self.redis.zrange(HELD_JOBS_KEY, 0, -1)  # type: ignore[assignment]
        for job_id, raw in self._records(ids):
            holder = raw.get("worker_instance", "")
            if (
                raw.get("status") == JobStatus.RUNNING
                and raw.get("worker") == hostname
                and holder
                and holder != self.store.instance
            ):
                self._hand_over(job_id, raw, holder, outcome)
        return outcome

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
