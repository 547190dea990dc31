"""Job records and event streams on a real Redis: conditional transitions, atomic events."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from common.jobs import JobStore, progress_update
from common.jobs_async import AsyncJobStore
from common.keys import ACTIVE_JOBS_KEY, HELD_JOBS_KEY, events_key, job_key, worker_key
from common.liveness import worker_value
from common.schemas import EventName, JobKind, JobStatus


@pytest.fixture
def store(redis_url: str) -> Iterator[JobStore]:
    yield JobStore(redis_url, ttl_s=600)


def create(redis_url: str, kind: JobKind = JobKind.ANSWER, tenant: str = "t1") -> str:
    """A queued job written by the API's store."""
    job_id = str(uuid.uuid4())

    async def run() -> None:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        await AsyncJobStore(client, 600).create(job_id, kind, tenant, blob=b"\x00raw")
        await client.aclose()

    asyncio.run(run())
    return job_id


def stream(store: JobStore, job_id: str) -> list[tuple[str, dict]]:
    return [(v["event"], json.loads(v["data"])) for _, v in store.redis.xrange(events_key(job_id))]


def test_lifecycle_writes_record_and_events(redis_url: str, store: JobStore) -> None:
    job_id = create(redis_url)
    assert store.blob(job_id) == b"\x00raw"
    assert store.start(job_id, "w1")
    assert store.progress(job_id, 1, 2)
    assert store.emit(job_id, EventName.TOKEN, {"text": "hi"})
    assert store.finish(job_id, JobStatus.SUCCEEDED, result={"answer": "hi"})

    record = store.get(job_id)
    assert record is not None
    assert record.status is JobStatus.SUCCEEDED
    assert record.attempts == 1
    assert record.progress.done == 1 and record.progress.total == 2
    assert record.result == {"answer": "hi"}
    names = [e for e, _ in stream(store, job_id)]
    assert names == ["status", "status", "progress", "token", "status", "done"]
    done = stream(store, job_id)[-1][1]
    assert done["status"] == "succeeded" and done["result"] == {"answer": "hi"}


def test_a_finished_job_is_never_reopened(redis_url: str, store: JobStore) -> None:
    job_id = create(redis_url)
    assert store.start(job_id, "w1")
    assert store.fail(job_id, "boom", "it broke")
    before = stream(store, job_id)

    assert not store.start(job_id, "w2")
    assert not store.finish(job_id, JobStatus.SUCCEEDED, result={"late": True})
    assert not store.progress(job_id, 5, 5)
    assert not store.emit(job_id, EventName.TOKEN, {"text": "late"})

    record = store.get(job_id)
    assert record is not None and record.status is JobStatus.FAILED
    assert record.error is not None and record.error.code == "boom"
    assert stream(store, job_id) == before


def test_redelivered_start_counts_attempts(redis_url: str, store: JobStore) -> None:
    job_id = create(redis_url)
    assert store.start(job_id, "w1")
    assert store.start(job_id, "w2")
    assert store.raw(job_id)["worker"] == "w2"
    record = store.get(job_id)
    assert record is not None and record.attempts == 2


def test_unknown_job_changes_nothing(store: JobStore) -> None:
    assert store.get("missing") is None
    assert not store.start("missing", "w1")
    assert not store.emit("missing", EventName.TOKEN, {"text": "x"})
    assert store.redis.exists(events_key("missing")) == 0


def test_async_store_scopes_reads_to_the_tenant(redis_url: str) -> None:
    job_id = create(redis_url, tenant="alpha")

    async def run() -> tuple[object, object]:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        store = AsyncJobStore(client, 600)
        mine, theirs = await store.get(job_id, "alpha"), await store.get(job_id, "beta")
        await client.aclose()
        return mine, theirs

    mine, theirs = asyncio.run(run())
    assert mine is not None and theirs is None


def test_a_job_delivered_too_often_fails_as_poison(redis_url: str) -> None:
    store = JobStore(redis_url, ttl_s=600, max_attempts=2)
    job_id = create(redis_url)
    assert store.start(job_id, "w1")
    assert store.start(job_id, "w2")
    assert not store.start(job_id, "w3")
    record = store.get(job_id)
    assert record is not None and record.status is JobStatus.FAILED
    assert record.error is not None and record.error.code == "poison_job"


def test_a_late_duplicate_does_not_take_a_job_from_a_live_holder(redis_url: str) -> None:
    holder = JobStore(redis_url, ttl_s=600, instance="first")
    late = JobStore(redis_url, ttl_s=600, instance="second")
    holder.redis.set(worker_key("cpu@a"), worker_value(["ingest"], 1, "first"), ex=60)
    job_id = create(redis_url)
    assert holder.start(job_id, "cpu@a")

    assert not late.start(job_id, "cpu@b")  # the message came back while cpu@a still works

    holder.redis.delete(worker_key("cpu@a"))  # cpu@a died
    assert late.start(job_id, "cpu@b")
    record = late.get(job_id)
    assert record is not None and record.attempts == 2 and record.worker == "cpu@b"


def test_a_handed_over_stage_is_not_a_new_attempt(redis_url: str, store: JobStore) -> None:
    job_id = create(redis_url)
    assert not store.start(job_id, "llm@a", handoff=True)  # generation needs a running job
    assert store.start(job_id, "cpu@a")
    assert store.release(job_id, "handoff")
    assert store.start(job_id, "llm@a", handoff=True)
    record = store.get(job_id)
    assert record is not None and record.attempts == 1 and record.worker == "llm@a"
    names = [e for e, _ in stream(store, job_id)]
    assert names == ["status", "status"]  # queued, running: the hand-over adds no event


def test_a_claim_returns_the_record_it_left(redis_url: str, store: JobStore) -> None:
    job_id = create(redis_url)
    assert store.claim(job_id, "llm@a", handoff=True) is None  # queued: not handed over
    raw = store.claim(job_id, "cpu@a")
    assert raw is not None
    assert raw == store.raw(job_id)  # what the task reads is what is stored, attempts included
    assert raw["status"] == "running" and raw["attempts"] == "1" and raw["worker"] == "cpu@a"


def test_a_hand_off_and_its_message_are_written_together_or_not_at_all(
    redis_url: str, store: JobStore
) -> None:
    job_id = create(redis_url)
    assert store.start(job_id, "cpu@a")
    given = progress_update(1, 2, before=((EventName.PASSAGES, [{"text": "p"}]),))
    assert store.release(
        job_id, "handoff", also=lambda pipe: pipe.lpush("q-test", job_id), along=given
    )
    assert store.redis.lrange("q-test", 0, -1) == [job_id]
    assert stream(store, job_id)[-2:] == [
        ("passages", [{"text": "p"}]),
        ("progress", {"done": 1, "total": 2}),
    ]
    raw = store.raw(job_id)
    assert (raw["done"], raw["total"], raw["released"]) == ("1", "2", "handoff")

    cancelled = create(redis_url)
    assert store.start(cancelled, "cpu@a")
    assert store.finish(cancelled, JobStatus.CANCELLED)
    assert not store.release(
        cancelled, "handoff", also=lambda pipe: pipe.lpush("q-test", "x"), along=given
    )
    assert store.redis.lrange("q-test", 0, -1) == [job_id]  # no message for a cancelled job
    assert "passages" not in [e for e, _ in stream(store, cancelled)]  # nor its passages
    store.redis.delete("q-test")


def test_a_job_whose_holder_restarted_under_its_hostname_is_claimed_again(
    redis_url: str,
) -> None:
    first = JobStore(redis_url, ttl_s=600, instance="first")
    again = JobStore(redis_url, ttl_s=600, instance="again")
    first.redis.set(worker_key("cpu@a"), worker_value(["ingest"], 1, "first"), ex=60)
    job_id = create(redis_url)
    assert first.start(job_id, "cpu@a")
    first.redis.set(worker_key("cpu@a"), worker_value(["ingest"], 2, "again"), ex=60)
    assert again.start(job_id, "cpu@a")  # the same hostname, another process: the first died
    assert again.raw(job_id)["worker_instance"] == "again"
    first.redis.delete(worker_key("cpu@a"))


def test_each_transition_moves_the_job_between_the_indexes(redis_url: str, store: JobStore) -> None:
    """Queued or released: in the active index at the time it was sent; held: at +inf there and
    in the held index; finished: in neither. The reconciler reads only these."""
    job_id = create(redis_url)
    created = store.redis.zscore(ACTIVE_JOBS_KEY, job_id)
    assert created is not None and created != float("inf")
    assert store.redis.zscore(HELD_JOBS_KEY, job_id) is None

    assert store.start(job_id, "cpu@a")
    assert store.redis.zscore(ACTIVE_JOBS_KEY, job_id) == float("inf")
    assert store.redis.zscore(HELD_JOBS_KEY, job_id) is not None
    assert store.progress(job_id, 1, 2)  # no transition: it stays held
    assert store.redis.zscore(HELD_JOBS_KEY, job_id) is not None

    assert store.release(job_id, "handoff")
    released = store.redis.zscore(ACTIVE_JOBS_KEY, job_id)
    assert released is not None and created <= released < float("inf")
    assert store.redis.zscore(HELD_JOBS_KEY, job_id) is None

    assert store.start(job_id, "llm@a", handoff=True)
    assert store.redis.zscore(ACTIVE_JOBS_KEY, job_id) == float("inf")
    assert store.finish(job_id, JobStatus.SUCCEEDED, result={})
    assert store.redis.zscore(ACTIVE_JOBS_KEY, job_id) is None
    assert store.redis.zscore(HELD_JOBS_KEY, job_id) is None


def test_a_cancel_takes_a_held_job_out_of_both_indexes(redis_url: str, store: JobStore) -> None:
    job_id = create(redis_url)
    assert store.start(job_id, "cpu@a")

    async def cancel() -> bool:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        cancelled = await AsyncJobStore(client, 600).cancel(job_id)
        await client.aclose()
        return cancelled

    assert asyncio.run(cancel())
    assert store.redis.zscore(ACTIVE_JOBS_KEY, job_id) is None
    assert store.redis.zscore(HELD_JOBS_KEY, job_id) is None


def test_place_puts_a_job_where_its_record_says(redis_url: str, store: JobStore) -> None:
    """What the reconciler does with a job an older version moved without the indexes."""
    job_id = create(redis_url)
    store.redis.hset(job_key(job_id), mapping={"status": "running", "worker_instance": "old"})
    assert store.place(job_id) == "held"
    assert store.redis.zscore(ACTIVE_JOBS_KEY, job_id) == float("inf")
    assert store.redis.zscore(HELD_JOBS_KEY, job_id) is not None

    store.redis.hset(job_key(job_id), "worker_instance", "")
    assert store.place(job_id) == "unheld"
    score = store.redis.zscore(ACTIVE_JOBS_KEY, job_id)
    assert score is not None and score != float("inf")
    assert store.redis.zscore(HELD_JOBS_KEY, job_id) is None
    assert store.place(job_id) == "unheld"
    assert store.redis.zscore(ACTIVE_JOBS_KEY, job_id) == score  # a finite score stays

    store.redis.delete(job_key(job_id))
    assert store.place(job_id) == "gone"
    assert store.redis.zscore(ACTIVE_JOBS_KEY, job_id) is None
