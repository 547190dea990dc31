"""Asynchronous access to job records and event streams, as the API uses it."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis

from common.batch import Batch, BatchRunner
from common.jobs import (
    UPDATE_SCRIPT,
    Update,
    after_finish,
    dumps,
    new_record_fields,
    record_from_hash,
    status_update,
)
from common.keys import ACTIVE_JOBS_KEY, blob_key, events_key, job_key, job_update_keys
from common.schemas import ACTIVE, ErrorInfo, EventName, JobKind, JobRecord, JobStatus


def tenant_jobs_key(tenant: str) -> str:  # key
    """Redis key of a tenant's jobs (a sorted set of job ids scored by creation time)."""
    return f"ragq:tenant:{tenant}:jobs"


class BadCursor(ValueError):
    """A `GET /v1/jobs` cursor that this store did not issue."""


def encode_cursor(score: float, job_id: str) -> str:
    """An opaque cursor: the position after the job with this creation score."""
    raw = json.dumps([score, job_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The (score, job id) a cursor holds; BadCursor if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        score, job_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BadCursor(cursor) from exc
    if not isinstance(score, int | float) or isinstance(score, bool):
        raise BadCursor(cursor)
    if not isinstance(job_id, str):
        raise BadCursor(cursor)
    return float(score), job_id


@dataclass(frozen=True)
class StreamEvent:
    """One entry of a job's event stream."""

    id: str
    event: str
    data: str


class AsyncJobStore:
    """Creates, reads and cancels jobs and follows their event streams."""

    def __init__(self, client: aioredis.Redis, ttl_s: int) -> None:
        self.redis = client
        self.ttl_s = ttl_s
        self._update = client.register_script(UPDATE_SCRIPT)
        self._batches = BatchRunner(client)

    async def create(
        self,
        job_id: str,
        kind: JobKind,
        tenant: str,
        *,
        extra: Mapping[str, str] | None = None,
        blob: bytes | None = None,
        also: Callable[[Batch], object] | None = None,
    ) -> None:
        """Write a queued job, its upload and whatever `also` adds, together (one batch)."""
        fields = new_record_fields(job_id, kind, tenant, extra)
        batch = Batch()
        batch.hset(job_key(job_id), mapping=fields)
        batch.xadd(
            events_key(job_id),
            {"event": EventName.STATUS.value, "data": dumps({"status": "queued"})},
        )
        batch.expire(job_key(job_id), self.ttl_s)
        batch.expire(events_key(job_id), self.ttl_s)
        now = time.time()
        batch.zadd(ACTIVE_JOBS_KEY, {job_id: now})
        # The tenant's job list: an entry lives as long as a record that was never updated
        # (RAGQ_JOB_TTL_S after creation); older entries are trimmed here, and the whole set
        # expires with its newest job.
        index = tenant_jobs_key(tenant)
        batch.zadd(index, {job_id: now})
        batch.zremrangebyscore(index, "-inf", f"({now - self.ttl_s}")
        batch.expire(index, self.ttl_s)
        if blob is not None:
            batch.set(blob_key(job_id), blob, ex=self.ttl_s)
        if also is not None:
            also(batch)
        await self._batches(batch)

    async def raw(self, job_id: str) -> dict[str, str]:
        """The job's hash (empty if it does not exist)."""
        return await self.redis.hgetall(job_key(job_id))  # type: ignore[misc,no-any-return]

    async def get(self, job_id: str, tenant: str) -> JobRecord | None:
        """The job's record if it exists and belongs to the tenant."""
        raw = await self.raw(job_id)
        if not raw or raw.get("tenant") != tenant:
            return None
        return record_from_hash(raw)

    async def get_many(self, job_ids: list[str], tenant: str) -> list[JobRecord]:
        """The records of those jobs that exist and belong to the tenant, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(job_key(job_id))
            raws: list[dict[str, str]] = await pipe.execute()
        return [record_from_hash(raw) for raw in raws if raw and raw.get("tenant") == tenant]

    async def list_jobs(
        self,
        tenant: str,
        *,
        limit: int,
        cursor: str | None = None,
        kind: JobKind | None = None,
        status: JobStatus | None = None,
        max_scan: int = 1000,
    ) -> tuple[list[JobRecord], str | None]:
        """The tenant's jobs newest first, after `cursor`, and the cursor of the next page.

        Ids whose record expired are dropped from the list. At most `max_scan` ids are read per
        call, so a page under a narrow filter may be short while a next cursor remains.
        """
        index = tenant_jobs_key(tenant)
        position = decode_cursor(cursor) if cursor is not None else None
        found: list[JobRecord] = []
        scanned = 0
        batch = min(max(limit + 1, 100), max_scan)
        while scanned < max_scan:
            top = position[0] if position is not None else "+inf"
            entries: list[tuple[str, float]] = await self.redis.zrevrangebyscore(
                index, top, "-inf", start=0, num=batch, withscores=True
            )
            exhausted = len(entries) < batch
            if position is not None:
                # Ids of equal score sort descending: those from the cursor's id up were seen.
                at, seen = position
                entries = [(m, sc) for m, sc in entries if not (sc == at and m >= seen)]
            entries = entries[: max_scan - scanned]
            scanned += len(entries)
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id, _ in entries:
                    pipe.hgetall(job_key(job_id))
                raws: list[dict[str, str]] = await pipe.execute()
            gone = []
            full = False
            for (job_id, score), raw in zip(entries, raws, strict=True):
                if not raw or raw.get("tenant") != tenant:
                    gone.append(job_id)
                elif (kind is None or raw.get("kind") == kind.value) and (
                    status is None or raw.get("status") == status.value
                ):
                    if len(found) == limit:
                        full = True
                        break
                    found.append(record_from_hash(raw))
                position = (score, job_id)
            if gone:
                await self.redis.zrem(index, *gone)
            if full:
                return found, encode_cursor(*position) if position is not None else None
            if exhausted or not entries:
                return found, None
        return found, encode_cursor(*position) if position is not None else None

    async def apply(self, job_id: str, update: Update) -> bool:
        """Apply a conditional change; False when the job's status did not allow it."""
        keys = job_update_keys(job_id)
        return int(await self._update(keys=keys, args=update.script_args(self.ttl_s))) == 1

    async def cancel(self, job_id: str, error: ErrorInfo | None = None) -> bool:
        """Cancel a queued or running job; False if it had already finished."""
        raw = await self.raw(job_id)
        if not raw:
            return False
        update = status_update(raw, JobStatus.CANCELLED, ACTIVE, error=error)
        if not await self.apply(job_id, update):
            return False
        await after_finish(self.redis.zrem, job_id, raw, JobStatus.CANCELLED)
        return True

    async def events(
        self, job_id: str, after: str = "0-0", block_ms: int = 15000
    ) -> AsyncIterator[StreamEvent]:
        """Events after the given stream id, waiting for new ones, until the `done` event.

        An id beyond the stream's end (one this stream never sent) resumes from the end: the
        events still to come follow, and a finished job's `done` event is sent again.
        """
        stream = events_key(job_id)
        last = await self._resume_point(stream, after)
        check = True  # the job may have finished (or gone) before this read: look first
        while True:
            reply = None
            if check:
                # The status is read before the stream: a finished job's `done` event is then
                # certain to be in what the non-blocking read returns.
                status = await self.redis.hget(job_key(job_id), "status")  # type: ignore[misc]
                reply = await self.redis.xread({stream: last}, count=100)
                if not reply and (status is None or JobStatus(status).finished):
                    return
            if not reply:
                reply = await self.redis.xread({stream: last}, count=100, block=block_ms)
            # While events flow, one blocking read per batch; after a quiet wait, look again.
            check = not reply
            for _stream, entries in reply or []:
                for entry_id, values in entries:
                    last = entry_id
                    yield StreamEvent(entry_id, values["event"], values["data"])
                    if values["event"] == EventName.DONE.value:
                        return

    async def _resume_point(self, stream: str, after: str) -> str:
        newest = await self.redis.xrevrange(stream, count=2)
        if not newest or _stream_id(after) <= _stream_id(newest[0][0]):
            return after
        if newest[0][1].get("event") == EventName.DONE.value:
            return newest[1][0] if len(newest) > 1 else "0-0"
        return str(newest[0][0])


def _stream_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)
