"""Job records (a Redis hash per job) and their event streams (a Redis Stream per job).

Every change goes through one Lua script that checks the job's current status first, so a
late or duplicated task can never reopen a finished job, and the record and its events are
written together or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from common.clock import now_iso, seconds_since
from common.keys import (
    ACTIVE_JOBS_KEY,
    HELD_JOBS_KEY,
    WORKER_KEY_PREFIX,
    blob_key,
    job_key,
    job_update_keys,
)
from common.liveness import process_instance
from common.schemas import (
    ACTIVE,
    FINISHED,
    ErrorInfo,
    EventName,
    JobKind,
    JobRecord,
    JobStatus,
    Progress,
)
from common.settings import get_settings
from common.telemetry import (
    JOB_QUEUE_WAIT,
    JOB_RUN_TIME,
    JOBS_FINISHED,
    TASK_RETRIES,
    TENANT_JOBS,
    TENANT_TOKENS,
)
from common.usage import COUNT_FUNCTION

T = TypeVar("T")

# Puts job `id` (its record at `job`) where the record says in the two indexes of unfinished
# jobs (common.keys): a held job (running, with a worker instance) in `held`, and at +inf in
# `active`; a job no worker holds at the time now in `active` (with `keep`, a finite score it
# already has there stays); a finished or missing job in neither. Returns what it found.
PLACE_FUNCTION = """
local function place(job, active, held, id, keep)
  local st, holder = unpack(redis.call('HMGET', job, 'status', 'worker_instance'))
  if st ~= 'queued' and st ~= 'running' then
    redis.call('ZREM', active, id)
    redis.call('ZREM', held, id)
    return 'gone'
  end
  local t = redis.call('TIME')
  local now = tostring(tonumber(t[1]) + tonumber(t[2]) / 1000000)
  if st == 'running' and holder and holder ~= '' then
    redis.call('ZADD', active, '+inf', id)
    redis.call('ZADD', held, now, id)
    return 'held'
  end
  redis.call('ZREM', held, id)
  local score = keep and redis.call('ZSCORE', active, id)
  if not score or score == 'inf' then
    redis.call('ZADD', active, now, id)
  end
  return 'unheld'
end
"""

# Applies one change to a job (K: common.keys.job_update_keys): if its status is one of
# `allowed` (comma separated, empty = any), sets `fields` (a flat name/value list), appends
# `events` (a flat name/data list) and renews the ttl. Returns -1 (no job), 0 (status not
# allowed) or 1.
APPLY_FUNCTION = (
    PLACE_FUNCTION
    + COUNT_FUNCTION
    + """
local function apply(K, allowed, ttl, fields, events)
  local cur = redis.call('HGET', K[1], 'status')
  if not cur then return -1 end
  if allowed ~= '' and not string.find(',' .. allowed .. ',', ',' .. cur .. ',', 1, true) then
    return 0
  end
  local moved = false
  if #fields > 0 then
    for j = 1, #fields, 2 do
      local name = fields[j]
      if name == 'status' or name == 'worker_instance' or name == 'enqueued_at' then
        moved = true
      end
    end
    redis.call('HSET', K[1], unpack(fields))
  end
  for j = 1, #events, 2 do
    redis.call('XADD', K[2], '*', 'event', events[j], 'data', events[j + 1])
  end
  redis.call('EXPIRE', K[1], ttl)
  redis.call('EXPIRE', K[2], ttl)
  local now = redis.call('HGET', K[1], 'status')
  local ended = (cur == 'queued' or cur == 'running')
    and (now == 'succeeded' or now == 'failed' or now == 'cancelled')
  -- A job with a webhook that just finished enters the webhook outbox in this same script, so
  -- the delivery is never lost between the transition and its dispatch.
  if K[3] and ended then
    local url = redis.call('HGET', K[1], 'webhook_url')
    if url and url ~= '' then
      local t = redis.call('TIME')
      local at = tostring(tonumber(t[1]) + tonumber(t[2]) / 1000000)
      redis.call('ZADD', K[3], 'NX', at, redis.call('HGET', K[1], 'job_id'))
    end
  end
  -- Its work is counted once, with the transition that happens once (common.usage).
  if ended then count_usage(K[1]) end
  -- A claim, a release, a re-send or an end moves the job between the indexes in this same
  -- script, so the reconciler finds it where its record says.
  if moved and K[5] then
    local id = redis.call('HGET', K[1], 'job_id')
    if id then place(K[1], K[4], K[5], id, false) end
  end
  return 1
end
"""
)

# KEYS: job hash, event stream, webhook outbox, active and held jobs (common.keys.job_update_keys).
# ARGV: allowed statuses (comma separated, empty = any), ttl seconds, number of fields n,
#       n field/value pairs, then event name/data pairs.
UPDATE_SCRIPT = (
    APPLY_FUNCTION
    + """
local n = tonumber(ARGV[3])
local fields, events = {}, {}
for j = 1, 2 * n do fields[j] = ARGV[3 + j] end
for j = 4 + 2 * n, #ARGV do events[#events + 1] = ARGV[j] end
return apply(KEYS, ARGV[1], ARGV[2], fields, events)
"""
)

# KEYS: as UPDATE_SCRIPT's. ARGV: '1' for the hand-off of a running job to its next stage (else
# ''), the most attempts, the worker's hostname, its process instance, the prefix of workers'
# liveness keys, then what a new attempt's move to running writes, as UPDATE_SCRIPT's ARGV from
# its ttl on (ttl seconds, number of fields n, n field/value pairs, event name/data pairs).
# Claims the job for the worker as `JobStore.claim` says, in one round trip. Returns
# {'claimed', the record before (flat), the fields set (flat)}, {'poison', attempts} for a job
# delivered too often, or {'refused'}.
CLAIM_JOB_SCRIPT = (
    APPLY_FUNCTION
    + """
-- Whether the worker process that took a job still announces itself (common.liveness).
local function holder_alive(hostname, instance)
  if hostname == '' or instance == '' then return false end
  local value = redis.call('GET', ARGV[5] .. hostname)
  if not value then return false end
  local ok, found = pcall(cjson.decode, value)
  return ok and type(found) == 'table' and found.instance == instance
end

local raw = redis.call('HGETALL', KEYS[1])
local rec = {}
for i = 1, #raw, 2 do rec[raw[i]] = raw[i + 1] end
local handoff = ARGV[1] == '1'
local claimable = false
if rec.status == 'queued' then
  claimable = not handoff
elseif rec.status == 'running' then
  claimable = not holder_alive(rec.worker or '', rec.worker_instance or '')
end
if not claimable then return {'refused'} end
local continuing = handoff and rec.released == 'handoff'
local attempts = tonumber(rec.attempts or '0') + (continuing and 0 or 1)
if attempts > tonumber(ARGV[2]) then return {'poison', tostring(attempts)} end
local fields = {
  'attempts', tostring(attempts), 'worker', ARGV[3], 'worker_instance', ARGV[4], 'released', ''
}
local events = {}
if not continuing then
  local n = tonumber(ARGV[7])
  for j = 1, 2 * n do fields[#fields + 1] = ARGV[7 + j] end
  for j = 8 + 2 * n, #ARGV do events[#events + 1] = ARGV[j] end
end
apply(KEYS, '', ARGV[6], fields, events)
return {'claimed', raw, fields}
"""
)

# KEYS: job hash, active and held jobs. ARGV: the job id. Puts the job where its record says
# (an older version's writes, or a race with the reconciler's own writes, left it elsewhere).
PLACE_SCRIPT = PLACE_FUNCTION + "return place(KEYS[1], KEYS[2], KEYS[3], ARGV[1], true)\n"


def dumps(value: Any) -> str:
    """Compact JSON."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Guard:
    """Another hash that must agree with a change: `check` reads it, `write` changes it too.

    The change and `write` then happen in one transaction, and neither if the hash changed
    between the check and the write.
    """

    key: str
    check: Callable[[dict[str, str]], bool]
    write: Callable[[redis.client.Pipeline], object]


@dataclass(frozen=True)
class Update:
    """One conditional change: fields to set and events to append if the status allows it."""

    allowed: frozenset[JobStatus]
    fields: Mapping[str, str] = field(default_factory=dict)
    events: tuple[tuple[EventName, Any], ...] = ()

    def script_args(self, ttl_s: int) -> list[str]:
        """The UPDATE_SCRIPT arguments for this change."""
        args = [",".join(sorted(self.allowed)), str(ttl_s), str(len(self.fields))]
        for name, value in self.fields.items():
            args += [name, value]
        for event, data in self.events:
            args += [event.value, dumps(data)]
        return args


def new_record_fields(
    job_id: str, kind: JobKind, tenant: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Hash fields of a freshly queued job."""
    fields = {
        "job_id": job_id,
        "kind": kind.value,
        "tenant": tenant,
        "status": JobStatus.QUEUED.value,
        "done": "0",
        "total": "0",
        "created_at": now_iso(),
        "attempts": "0",
    }
    fields.update(extra or {})
    return fields


def record_from_hash(raw: Mapping[str, str]) -> JobRecord:
    """The public record from a job hash."""
    return JobRecord(
        job_id=raw["job_id"],
        kind=JobKind(raw["kind"]),
        status=JobStatus(raw["status"]),
        progress=Progress(done=int(raw.get("done", 0)), total=int(raw.get("total", 0))),
        result=json.loads(raw["result"]) if raw.get("result") else None,
        error=ErrorInfo.model_validate_json(raw["error"]) if raw.get("error") else None,
        created_at=raw["created_at"],
        started_at=raw.get("started_at") or None,
        finished_at=raw.get("finished_at") or None,
        document_id=raw.get("document_id") or None,
        webhook_url=raw.get("webhook_url") or None,
        attempts=int(raw.get("attempts", 0)),
        worker=raw.get("worker") or None,
    )


def status_update(
    current: Mapping[str, str],
    to: JobStatus,
    allowed: Iterable[JobStatus],
    *,
    result: Any = None,
    error: ErrorInfo | None = None,
    extra: Mapping[str, str] | None = None,
) -> Update:
    """The change that moves a job to `to`; a finished job also gets its `done` event."""
    fields: dict[str, str] = {"status": to.value, **(extra or {})}
    if to is JobStatus.RUNNING:
        fields["started_at"] = now_iso()
    if to in FINISHED:
        fields["finished_at"] = now_iso()
    if result is not None:
        fields["result"] = dumps(result)
    if error is not None:
        fields["error"] = error.model_dump_json()
    events: list[tuple[EventName, Any]] = [(EventName.STATUS, {"status": to.value})]
    if error is not None:
        events.append((EventName.ERROR, error.model_dump()))
    if to in FINISHED:
        final = record_from_hash({**current, **fields})
        events.append((EventName.DONE, final.model_dump(mode="json")))
    return Update(frozenset(allowed), fields, tuple(events))


def progress_update(
    done: int, total: int, before: tuple[tuple[EventName, Any], ...] = ()
) -> Update:
    """The change that records a running job's progress and streams it, after the events
    `before` (all of them or none)."""
    return Update(
        frozenset({JobStatus.RUNNING}),
        {"done": str(done), "total": str(total)},
        (*before, (EventName.PROGRESS, {"done": done, "total": total})),
    )


def after_finish(
    zrem: Callable[[str, str], T],
    job_id: str,
    raw: Mapping[str, str],
    to: JobStatus,
    result: Any = None,
) -> T:
    """The bookkeeping of a job that just finished (`raw`: its record before): it leaves the
    active set through `zrem` (whose result is returned: await it on an async client), and is
    counted with its run time, and by tenant where the operator asked for it."""
    JOBS_FINISHED.labels(raw["kind"], to.value).inc()
    if raw.get("started_at"):
        JOB_RUN_TIME.labels(raw["kind"]).observe(seconds_since(raw["started_at"]))
    if get_settings().metrics_by_tenant:
        tenant = raw.get("tenant", "")
        TENANT_JOBS.labels(tenant, raw["kind"], to.value).inc()
        usage = result.get("usage") if isinstance(result, dict) else None
        if isinstance(usage, dict):
            TENANT_TOKENS.labels(tenant, "prompt").inc(usage.get("prompt_tokens") or 0)
            TENANT_TOKENS.labels(tenant, "completion").inc(usage.get("completion_tokens") or 0)
    return zrem(ACTIVE_JOBS_KEY, job_id)


def riding_out() -> dict[str, Any]:
    """Client options under which a call waits through a Redis restart (up to about 30 s).

    Without them a call fails after a few seconds, and a task that fails so cannot record its
    own failure either: its job would stay `running` under a live worker, which nothing reclaims.
    """
    return {
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=20),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }


class JobStore:
    """Synchronous access to job records and events, as the workers use it."""

    def __init__(self, url: str, ttl_s: int, max_attempts: int = 3, instance: str = "") -> None:
        self.redis = redis.Redis.from_url(url, decode_responses=True, **riding_out())
        self._binary = redis.Redis.from_url(url, **riding_out())
        self.ttl_s = ttl_s
        self.max_attempts = max_attempts
        self.instance = instance or process_instance()
        self._update = self.redis.register_script(UPDATE_SCRIPT)
        self._place = self.redis.register_script(PLACE_SCRIPT)
        self._claim = self.redis.register_script(CLAIM_JOB_SCRIPT)

    def raw(self, job_id: str) -> dict[str, str]:
        """The job's hash (empty if the job does not exist)."""
        return self.redis.hgetall(job_key(job_id))  # type: ignore[return-value]

    def get(self, job_id: str) -> JobRecord | None:
        """The job's public record, or None."""
        raw = self.raw(job_id)
        return record_from_hash(raw) if raw else None

    def status(self, job_id: str) -> JobStatus | None:
        """The job's current status, or None."""
        value = self.redis.hget(job_key(job_id), "status")
        return JobStatus(value) if value else None  # type: ignore[arg-type]

    def apply(self, job_id: str, update: Update) -> bool:
        """Apply a conditional change; False when the job's status did not allow it."""
        keys = job_update_keys(job_id)
        return int(self._update(keys=keys, args=update.script_args(self.ttl_s))) == 1

    def place(self, job_id: str) -> str:
        """Put the job where its record says in the indexes of unfinished jobs (a finite score
        it has in the active index stays): `held`, `unheld`, or `gone` (finished or missing)."""
        keys = [job_key(job_id), ACTIVE_JOBS_KEY, HELD_JOBS_KEY]
        return str(self._place(keys=keys, args=[job_id]))

    def _apply_watched(
        self,
        job_id: str,
        decide: Callable[[dict[str, str]], Update | None],
        guard: Guard | None = None,
        also: Callable[[redis.client.Pipeline], object] | None = None,
    ) -> tuple[dict[str, str], Update | None]:
        """Apply the change `decide` makes of the record, deciding again if it changed meanwhile;
        `also`'s writes go in the same transaction.

        Returns the record read and the change applied (None when `decide` or the guard
        declined: after a concurrent writer, `decide` sees what that writer did).
        """
        keys = [job_key(job_id), *([guard.key] if guard else [])]
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(*keys)
                    raw: dict[str, str] = pipe.hgetall(keys[0])  # type: ignore[assignment]
                    update = decide(raw) if raw else None
                    if update is None:
                        return raw, None
                    if guard is not None and not guard.check(pipe.hgetall(guard.key)):  # type: ignore[arg-type]
                        return raw, None
                    pipe.multi()
                    if guard is not None:
                        guard.write(pipe)
                    if also is not None:
                        also(pipe)
                    args = update.script_args(self.ttl_s)
                    self._update(keys=job_update_keys(job_id), args=args, client=pipe)
                    (*_, applied) = pipe.execute()
                    return raw, update if int(applied) == 1 else None
                except redis.WatchError:
                    continue

    def start(self, job_id: str, worker: str, *, handoff: bool = False) -> bool:
        """Claim a job for this worker process (see `claim`); False if it should not run here."""
        return self.claim(job_id, worker, handoff=handoff) is not None

    def claim(self, job_id: str, worker: str, *, handoff: bool = False) -> dict[str, str] | None:
        """Claim a job for this worker process, in one round trip: its record as the claim left
        it (so the task needs no second read), or None if it should not run here.

        A queued job, or a running one whose holder is gone (a re-delivery), is claimed and its
        attempt counter goes up. A running job that a live worker holds is left alone, so a
        message that comes back late (the broker's visibility timeout, the reconciler) never
        runs the job twice. `handoff` is the next stage of a running job (generation after
        retrieval): taking a job its previous stage handed over is not a new attempt. A job
        delivered more than `max_attempts` times (its worker died each time) fails as
        `poison_job` instead of taking down yet another worker.
        """
        # What a new attempt writes is a queued job's move to running (`status_update`'s).
        start = status_update({}, JobStatus.RUNNING, ACTIVE)
        args = [
            "1" if handoff else "",
            str(self.max_attempts),
            worker,
            self.instance,
            WORKER_KEY_PREFIX,
            *start.script_args(self.ttl_s)[1:],
        ]
        outcome, *found = self._claim(keys=job_update_keys(job_id), args=args)
        if outcome == "poison":
            self.fail(job_id, "poison_job", f"the job's worker was lost {int(found[0]) - 1} times")
            return None
        if outcome != "claimed":
            return None
        raw, fields = (dict(zip(flat[::2], flat[1::2], strict=True)) for flat in found)
        if raw["status"] == JobStatus.QUEUED and fields["attempts"] == "1":
            JOB_QUEUE_WAIT.labels(raw["kind"]).observe(seconds_since(raw["created_at"]))
        elif raw.get("released") != "handoff":
            TASK_RETRIES.labels(raw["kind"]).inc()
        return {**raw, **fields}

    def release(
        self,
        job_id: str,
        reason: str,
        holder: str | None = None,
        also: Callable[[redis.client.Pipeline], object] | None = None,
        along: Update | None = None,
    ) -> bool:
        """Leave a running job held by no worker: handed to its next stage, or re-enqueued.

        With `holder`, only if that worker instance still holds it (the reconciler's check);
        `also` adds writes (the next stage's message) to the release's transaction, `along` its
        fields and events (the stage's progress) to the release's own update.
        """

        def decide(raw: dict[str, str]) -> Update | None:
            if raw.get("status") != JobStatus.RUNNING:
                return None
            if holder is not None and raw.get("worker_instance", "") != holder:
                return None
            fields = {
                **(along.fields if along else {}),
                "worker_instance": "",
                "released": reason,
                "enqueued_at": now_iso(),
            }
            return Update(frozenset({JobStatus.RUNNING}), fields, along.events if along else ())

        return self._apply_watched(job_id, decide, also=also)[1] is not None

    def finish(
        self,
        job_id: str,
        to: JobStatus,
        *,
        result: Any = None,
        error: ErrorInfo | None = None,
        guard: Guard | None = None,
    ) -> bool:
        """Finish an active job as succeeded, failed or cancelled (with `guard`, if it agrees)."""

        def decide(raw: dict[str, str]) -> Update | None:
            if raw.get("status") not in ACTIVE:
                return None
            return status_update(raw, to, ACTIVE, result=result, error=error)

        raw, update = self._apply_watched(job_id, decide, guard)
        if update is None:
            return False
        after_finish(self.redis.zrem, job_id, raw, to, result)
        return True

    def fail(self, job_id: str, code: str, message: str) -> bool:
        """Finish an active job as failed with an error code."""
        return self.finish(job_id, JobStatus.FAILED, error=ErrorInfo(code=code, message=message))

    def progress(self, job_id: str, done: int, total: int) -> bool:
        """Record progress of a running job and stream it."""
        return self.apply(job_id, progress_update(done, total))

    def emit(self, job_id: str, event: EventName, data: Any) -> bool:
        """Append an event to a running job's stream."""
        return self.apply(job_id, Update(frozenset({JobStatus.RUNNING}), {}, ((event, data),)))

    def blob(self, job_id: str) -> bytes | None:
        """The uploaded bytes of an ingest job (kept until the job finishes)."""
        return self._binary.get(blob_key(job_id))  # type: ignore[return-value]

    def drop_blob(self, job_id: str) -> None:
        """Delete an ingest job's uploaded bytes."""
        self.redis.delete(blob_key(job_id))
