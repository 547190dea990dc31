"""The reconciler on a real Redis: orphaned and lost jobs are re-enqueued or failed, once.

These tests use a Redis database of their own (no worker consumes it), so the messages the
reconciler sends stay in the broker queues where the tests read them back.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aioredis
from celery import Celery

from common.contract import GENERATE_TASK, INGEST_TASK, create_app
from common.jobs import JobStore
from common.jobs_async import AsyncJobStore
from common.keys import (
    ACTIVE_JOBS_KEY,
    HELD_JOBS_KEY,
    RECONCILER_BACKFILL_KEY,
    doc_key,
    job_key,
    worker_key,
)
from common.liveness import worker_value
from common.schemas import JobKind, JobStatus
from common.settings import Settings
from workers.reconciler import Reconciler, waiting_job_ids

# Long enough that a job is not yet stale when the pass right after its creation runs, even on
# a busy machine.
STALE_S = 1.0
LOST_S = 0.4


def _clean(client: redis.Redis) -> None:
    # Not FLUSHDB: kombu's queue bindings (`_kombu.binding.*`) are declared once per process;
    # without them a published message is silently dropped.
    for key in client.scan_iter("ragq:*"):
        client.delete(key)
    client.delete("ingest", "query", "llm")


@pytest.fixture
def url(redis_url: str) -> Iterator[str]:
    """A Redis database no worker listens on, emptied before and after each test."""
    db_url = redis_url.rsplit("/", 1)[0] + "/7"
    client = redis.Redis.from_url(db_url)
    _clean(client)
    yield db_url
    _clean(client)


@pytest.fixture
def settings(url: str) -> Settings:
    return Settings(
        redis_url=url, reconcile_stale_s=STALE_S, worker_heartbeat_s=0.05, max_attempts=3
    )


@pytest.fixture
def celery(settings: Settings) -> Iterator[Celery]:
    app = create_app(settings)
    yield app
    app.close()


def create(url: str, kind: JobKind = JobKind.INGEST, extra: dict[str, str] | None = None) -> str:
    """A queued job, written the way the API writes it (no message sent)."""
    job_id = str(uuid.uuid4())

    async def run() -> None:
        client = aioredis.Redis.from_url(url, decode_responses=True)
        await AsyncJobStore(client, 600).create(job_id, kind, "t1", extra=extra)
        await client.aclose()

    asyncio.run(run())
    return job_id


def announce(store: JobStore, hostname: str, instance: str, jobs: tuple[str, ...] = ()) -> None:
    """Write a worker heartbeat naming a process instance and the jobs it runs."""
    store.redis.set(worker_key(hostname), worker_value(["ingest"], 1, instance, jobs), ex=60)


def make(
    settings: Settings, celery: Celery, instance: str = "", **sizes: int
) -> tuple[JobStore, Reconciler]:
    store = JobStore(settings.redis_url, 600, settings.max_attempts, instance=instance)
    return store, Reconciler(store, celery, settings, **sizes)


def sent(celery: Celery, job_id: str) -> str:
    """Send a job's first message, as the API does after writing it."""
    celery.send_task(INGEST_TASK, args=[job_id], task_id=job_id)
    return job_id


def test_a_queued_job_without_a_message_is_sent_again(
    url: str, settings: Settings, celery: Celery
) -> None:
    store, reconciler = make(settings, celery)
    lost = create(url)
    waiting = create(url)
    celery.send_task(INGEST_TASK, args=[waiting], task_id=waiting)
    assert reconciler.run_once().requeued == []  # both are younger than the stale threshold

    time.sleep(STALE_S + 0.1)
    outcome = reconciler.run_once()

    assert outcome.requeued == [lost]
    assert waiting_job_ids(store.redis) == {lost, waiting}
    assert store.raw(lost)["requeues"] == "1"
    assert store.status(lost) is JobStatus.QUEUED
    # Its message is there now: the next pass leaves it alone.
    time.sleep(STALE_S + 0.1)
    assert reconciler.run_once().requeued == []


def test_a_job_whose_message_keeps_getting_lost_fails(
    url: str, settings: Settings, celery: Celery
) -> None:
    store, reconciler = make(settings, celery)
    job_id = create(url)
    for _ in range(settings.max_attempts):
        time.sleep(STALE_S + 0.1)
        assert reconciler.run_once().requeued == [job_id]
        store.redis.delete("ingest")  # the broker loses it again
    time.sleep(STALE_S + 0.1)
    assert reconciler.run_once().failed == [job_id]
    record = store.get(job_id)
    assert record is not None and record.status is JobStatus.FAILED
    assert record.error is not None and record.error.code == "job_lost"


def holding(store: JobStore, hostname: str, received: tuple[str, ...] | None) -> None:
    """Write a heartbeat of a worker that holds the messages of `received` (None: a worker of
    an older version, which does not say)."""
    value = worker_value(["ingest"], 1, hostname, (), received)
    store.redis.set(worker_key(hostname), value, ex=60)


def quick(settings: Settings) -> Settings:
    """Settings where a missing message is stale only after a minute, and lost after LOST_S
    when no worker holds it."""
    return settings.model_copy(update={"reconcile_stale_s": 60.0, "reconcile_lost_s": LOST_S})


def test_a_message_in_no_queue_and_no_workers_hands_is_sent_again_long_before_it_is_stale(
    url: str, settings: Settings, celery: Celery
) -> None:
    """A message a killed worker popped, or took and had not started, is in no queue and in
    no live worker's heartbeat: sent again on the second pass that finds it so, not after
    RAGQ_RECONCILE_STALE_S."""
    store, reconciler = make(quick(settings), celery)
    taken, lost = create(url), create(url)
    waiting = sent(celery, create(url))
    holding(store, "cpu@a", (taken,))  # a live worker took its message, not started yet
    holding(store, "cpu@b", ())
    assert reconciler.run_once().examined == 0  # younger than LOST_S

    time.sleep(LOST_S + 0.1)
    first = reconciler.run_once()
    # Once is not enough: a worker lists a message it took at its next heartbeat.
    assert first.examined == 3 and first.requeued == []
    time.sleep(2 * settings.worker_heartbeat_s + 0.05)
    assert reconciler.run_once().requeued == [lost]
    assert waiting_job_ids(store.redis) == {lost, waiting}
    assert store.raw(lost)["requeues"] == "1"
    time.sleep(LOST_S + 0.1)
    assert reconciler.run_once().requeued == []  # its new message waits; `taken` is held


def test_a_missing_message_waits_until_stale_where_a_worker_does_not_say_what_it_holds(
    url: str, settings: Settings, celery: Celery
) -> None:
    """With a worker of an older version alive, no list is complete: RAGQ_RECONCILE_STALE_S."""
    quick_settings = quick(settings).model_copy(update={"reconcile_stale_s": 1.5})
    store, reconciler = make(quick_settings, celery)
    lost = create(url)
    holding(store, "cpu@new", ())
    holding(store, "cpu@old", None)
    for _ in range(3):
        time.sleep(LOST_S)
        assert reconciler.run_once().requeued == []
    time.sleep(1.6 - 3 * LOST_S)
    assert reconciler.run_once().requeued == [lost]


def test_a_job_held_by_a_restarted_worker_is_released_and_sent_again(
    url: str, settings: Settings, celery: Celery
) -> None:
    dead, reconciler = make(settings, celery, instance="old")
    job_id = create(url)
    assert dead.start(job_id, "cpu@h")
    announce(dead, "cpu@h", "old", (job_id,))
    assert reconciler.run_once().requeued == []  # its holder is alive and runs it
    time.sleep(3 * settings.worker_heartbeat_s + 0.05)
    assert reconciler.run_once().requeued == []

    announce(dead, "cpu@h", "new")  # the worker restarted under the same hostname
    assert reconciler.run_once().requeued == []  # not at once: it may be a new worker's own
    time.sleep(3 * settings.worker_heartbeat_s + 0.05)
    assert reconciler.run_once().requeued == [job_id]
    assert waiting_job_ids(dead.redis) == {job_id}
    record = dead.get(job_id)
    assert record is not None and record.status is JobStatus.RUNNING
    assert record.attempts == 1 and record.worker == "cpu@h"

    fresh = JobStore(url, 600, settings.max_attempts, instance="new")
    assert fresh.start(job_id, "cpu@h")
    record = fresh.get(job_id)
    assert record is not None and record.attempts == 2
    assert reconciler.run_once().requeued == []


def test_a_restarting_worker_hands_over_its_previous_process_jobs_at_once(
    url: str, settings: Settings, celery: Celery
) -> None:
    """Before its predecessor's heartbeat lapses: only that hostname's jobs of other instances."""
    dead = JobStore(url, 600, settings.max_attempts, instance="old")
    mine, elsewhere, finished = create(url), create(url), create(url)
    assert dead.start(mine, "cpu@h") and dead.start(finished, "cpu@h")
    assert dead.finish(finished, JobStatus.SUCCEEDED, result={})
    other = JobStore(url, 600, settings.max_attempts, instance="o")
    assert other.start(elsewhere, "cpu@other")
    announce(dead, "cpu@h", "old", (mine,))  # its last heartbeat still shows it alive
    _, reconciler = make(settings, celery, instance="new")

    outcome = reconciler.release_predecessor("cpu@h")

    assert outcome.requeued == [mine] and outcome.failed == []
    assert waiting_job_ids(dead.redis) == {mine}
    record = dead.raw(mine)
    assert record["status"] == JobStatus.RUNNING and record["worker_instance"] == ""
    assert dead.raw(elsewhere)["worker_instance"] == "o"
    # Its own jobs, and a second start, hand over nothing more.
    assert reconciler.release_predecessor("cpu@h").requeued == []
    fresh = JobStore(url, 600, settings.max_attempts, instance="new")
    assert fresh.start(mine, "cpu@h")
    assert reconciler.release_predecessor("cpu@h").requeued == []


def test_a_job_its_live_worker_no_longer_runs_is_sent_again(
    url: str, settings: Settings, celery: Celery
) -> None:
    """A task that gave up during a long Redis outage left its job `running` under a worker
    that lives on: the worker's heartbeat stops listing the job, and the job runs again."""
    store, reconciler = make(settings, celery, instance="live")
    job_id = create(url)
    assert store.start(job_id, "cpu@h")
    announce(store, "cpu@h", "live", (job_id,))
    assert reconciler.run_once().requeued == []
    announce(store, "cpu@h", "live")  # the task ended without recording its job's end
    assert reconciler.run_once().requeued == []  # not at once: a heartbeat may lag a claim
    time.sleep(3 * settings.worker_heartbeat_s + 0.05)
    assert reconciler.run_once().requeued == [job_id]
    assert waiting_job_ids(store.redis) == {job_id}
    record = store.get(job_id)
    assert record is not None and record.status is JobStatus.RUNNING and record.worker == "cpu@h"


def test_a_holder_without_heartbeat_is_given_a_grace_period(
    url: str, settings: Settings, celery: Celery
) -> None:
    store, reconciler = make(settings, celery, instance="gone")
    job_id = create(url)
    assert store.start(job_id, "llm@h")  # nobody announces llm@h
    assert reconciler.run_once().requeued == []
    time.sleep(3 * settings.worker_heartbeat_s + 0.05)
    assert reconciler.run_once().requeued == [job_id]


def test_a_job_that_lost_its_worker_too_often_fails_as_poison(
    url: str, settings: Settings, celery: Celery
) -> None:
    job_id = create(url)
    for n in range(settings.max_attempts):
        store, reconciler = make(settings, celery, instance=f"i{n}")
        announce(store, "cpu@h", f"i{n}")
        assert store.start(job_id, "cpu@h")
    announce(store, "cpu@h", "after")
    assert reconciler.run_once().failed == []
    time.sleep(3 * settings.worker_heartbeat_s + 0.05)
    assert reconciler.run_once().failed == [job_id]
    record = store.get(job_id)
    assert record is not None and record.status is JobStatus.FAILED
    assert record.error is not None and record.error.code == "poison_job"
    assert waiting_job_ids(store.redis) == set()


def test_finished_and_expired_jobs_leave_the_index(
    url: str, settings: Settings, celery: Celery
) -> None:
    store, reconciler = make(settings, celery)
    done, expired = create(url), create(url)
    assert store.start(done, "cpu@h")
    assert store.finish(done, JobStatus.SUCCEEDED, result={})
    assert store.redis.zscore(ACTIVE_JOBS_KEY, done) is None
    store.redis.zadd(ACTIVE_JOBS_KEY, {done: 1})  # as if the removal had been missed
    store.redis.delete(f"ragq:job:{expired}")
    time.sleep(STALE_S + 0.1)  # an index entry is read once its score is stale
    assert reconciler.run_once().forgotten == 2
    assert store.redis.zcard(ACTIVE_JOBS_KEY) == 0


def test_one_pass_per_interval_across_processes(settings: Settings, celery: Celery) -> None:
    _, first = make(settings, celery, instance="a")
    _, second = make(settings, celery, instance="b")
    assert first.acquire()
    assert not second.acquire()


def test_an_answer_handed_to_generation_is_restarted_only_if_its_message_is_gone(
    url: str, settings: Settings, celery: Celery
) -> None:
    store, reconciler = make(settings, celery)
    job_id = create(url, JobKind.ANSWER)
    assert store.start(job_id, "cpu@h")
    assert store.release(job_id, "handoff")
    celery.send_task(GENERATE_TASK, args=[job_id, [1, 2], []], task_id=f"{job_id}-generate")
    time.sleep(STALE_S + 0.1)
    assert reconciler.run_once().requeued == []  # its generation waits in the llm queue

    store.redis.delete("llm")  # the message is lost
    assert reconciler.run_once().requeued == [job_id]
    assert store.redis.llen("query") == 1  # retrieval again, which hands over anew


def test_a_pass_looks_at_no_more_than_its_limit_and_takes_the_next_ones_after(
    url: str, settings: Settings, celery: Celery
) -> None:
    store, reconciler = make(settings, celery, limit=3)
    waiting = [sent(celery, create(url)) for _ in range(7)]
    lost = create(url)  # the newest, so the last one looked at
    time.sleep(STALE_S + 0.1)

    outcomes = [reconciler.run_once() for _ in range(3)]

    # Those looked at go after those not yet looked at: the lost job's turn is the third pass.
    assert [o.examined for o in outcomes] == [3, 3, 3]
    assert [o.requeued for o in outcomes] == [[], [], [lost]]
    assert waiting_job_ids(store.redis) == {*waiting, lost}


def test_a_message_lost_behind_a_long_queue_is_found_once_the_queue_moves_past_it(
    url: str, settings: Settings, celery: Celery
) -> None:
    """The pass reads only the oldest messages of a queue: a job whose message is not among
    them is re-sent only once the queue has moved past the point where its message was."""
    store, reconciler = make(settings, celery, window=3)
    older = [sent(celery, create(url)) for _ in range(4)]
    lost = create(url)
    time.sleep(STALE_S + 0.1)  # the messages behind it were sent more than STALE_S later
    newer = [sent(celery, create(url)) for _ in range(4)]
    time.sleep(STALE_S + 0.1)

    outcome = reconciler.run_once()
    assert outcome.examined == 9 and outcome.requeued == []  # the oldest read are older

    for job_id in older:  # workers take the oldest messages and run their jobs
        assert store.redis.rpop("ingest") is not None
        assert store.start(job_id, "cpu@h")
        assert store.finish(job_id, JobStatus.SUCCEEDED, result={})
    assert reconciler.run_once().requeued == [lost]
    assert waiting_job_ids(store.redis) == {*newer, lost}
    assert reconciler.run_once().requeued == []


def test_jobs_an_older_version_claimed_are_found_by_the_backfill(
    url: str, settings: Settings, celery: Celery
) -> None:
    """An upgrade: the active index holds a job an older version claimed without indexing it
    as held; the first pass finds it long before its score would come up."""
    patient = settings.model_copy(update={"reconcile_stale_s": 600.0})
    store, reconciler = make(patient, celery)
    job_id = create(url)
    fields = {"status": "running", "worker": "cpu@old", "worker_instance": "gone", "attempts": "1"}
    store.redis.hset(job_key(job_id), mapping=fields)  # as the older version's claim wrote it

    assert reconciler.run_once().requeued == []  # indexed now; its holder's grace begins
    assert store.redis.get(RECONCILER_BACKFILL_KEY) == "done"
    assert store.redis.zscore(HELD_JOBS_KEY, job_id) is not None
    time.sleep(3 * settings.worker_heartbeat_s + 0.05)
    assert reconciler.run_once().requeued == [job_id]
    assert waiting_job_ids(store.redis) == {job_id}


def test_a_claim_the_index_missed_is_moved_to_the_held_jobs_when_its_score_comes_up(
    url: str, settings: Settings, celery: Celery
) -> None:
    """After the backfill, a job claimed by an older version (a rolling upgrade) is found as
    its stale score comes up, and its holder is checked from then on."""
    store, reconciler = make(settings, celery)
    reconciler.run_once()
    assert store.redis.get(RECONCILER_BACKFILL_KEY) == "done"
    job_id = create(url)
    fields = {"status": "running", "worker": "cpu@old", "worker_instance": "gone", "attempts": "1"}
    store.redis.hset(job_key(job_id), mapping=fields)
    time.sleep(STALE_S + 0.1)

    assert reconciler.run_once().requeued == []
    assert store.redis.zscore(ACTIVE_JOBS_KEY, job_id) == float("inf")
    time.sleep(3 * settings.worker_heartbeat_s + 0.05)
    assert reconciler.run_once().requeued == [job_id]


def test_the_document_of_an_ingest_that_fails_as_lost_is_settled(
    url: str, settings: Settings, celery: Celery
) -> None:
    """A new document whose ingest keeps losing its message ends `failed` with `job_lost`,
    not `queued` for ever."""
    store, reconciler = make(settings, celery)
    job_id = create(url, extra={"document_id": "d1"})
    document = {"document_id": "d1", "job_id": job_id, "status": "queued", "content_sha256": "c"}
    store.redis.hset(doc_key("t1", "d1"), mapping=document)  # as the API registers it
    for _ in range(settings.max_attempts):
        time.sleep(STALE_S + 0.1)
        assert reconciler.run_once().requeued == [job_id]
        store.redis.delete("ingest")
    time.sleep(STALE_S + 0.1)
    assert reconciler.run_once().failed == [job_id]
    assert store.redis.hget(doc_key("t1", "d1"), "status") == "failed"
    assert store.redis.hget(doc_key("t1", "d1"), "error") == "job_lost"
