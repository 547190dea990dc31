"""The Streamer's rules: first text at once, then one flush per interval; cancel and deadline;
and how the generate task starts: the engine first, then the claim.

The Streamer (the unit under test) reads a generation's deltas and writes a real job on the
tests' Redis; its generation is scripted, a stand-in for what vLLM's engine hands out. The
generate task's tests send its messages to the shared service's real llm worker and engine.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from common.citations import MarkerRewriter
from common.contract import GENERATE_TASK, GENERATION_FIELDS
from common.contract import create_app as create_celery
from common.jobs import JobStore
from common.jobs_async import AsyncJobStore
from common.keys import events_key
from common.schemas import JobKind, JobStatus
from common.settings import Settings
from tests.helpers import samples, value, wait_job
from workers import engines
from workers.llm import Outcome, Streamer
from workers.llm_engine import Delta


class ScriptedGeneration:
    """Hands out prepared deltas, one per `next`; None (after a short wait) once they run out."""

    def __init__(self, *texts: str, prompt_tokens: int = 7) -> None:
        last = len(texts) - 1
        self.deltas = [
            Delta(text, 1, i == last, "stop" if i == last else None, prompt_tokens)
            for i, text in enumerate(texts)
        ]
        self.aborted = False

    def next(self, timeout: float) -> Delta | None:
        if self.deltas:
            return self.deltas.pop(0)
        time.sleep(min(timeout, 0.05))
        return None

    def abort(self) -> None:
        self.aborted = True


@pytest.fixture
def store(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[JobStore]:
    """The job store the Streamer writes to, on the tests' Redis."""
    job_store = JobStore(redis_url, ttl_s=600)
    monkeypatch.setattr(engines, "job_store", lambda: job_store)
    yield job_store


def running_job(store: JobStore, redis_url: str, extra: dict[str, str] | None = None) -> str:
    """A job, created as the API creates it (with `extra` fields), claimed by a worker."""
    job_id = str(uuid.uuid4())

    async def create() -> None:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        await AsyncJobStore(client, 600).create(job_id, JobKind.ANSWER, "t1", extra=extra)
        await client.aclose()

    asyncio.run(create())
    assert store.start(job_id, worker="llm@test")
    return job_id


def tokens(store: JobStore, job_id: str) -> list[str]:
    entries = store.redis.xrange(events_key(job_id))
    return [json.loads(v["data"])["text"] for _, v in entries if v["event"] == "token"]


def streamer(job_id: str, generation: ScriptedGeneration, interval: float) -> Streamer:
    deadline = time.time() + 30
    return Streamer(job_id, generation, deadline, MarkerRewriter(2), interval)  # type: ignore[arg-type]


def test_the_first_text_goes_at_once_and_the_rest_waits_for_the_interval(
    store: JobStore, redis_url: str
) -> None:
    job_id = running_job(store, redis_url)
    generation = ScriptedGeneration("Hel", "lo", ",", " world")
    streaming = streamer(job_id, generation, interval=60)
    assert streaming.run() is Outcome.SUCCEEDED
    assert tokens(store, job_id) == ["Hel", "lo, world"]
    assert streaming.parts == ["Hel", "lo, world"]
    usage = streaming.usage()
    assert (usage.completion_tokens, usage.prompt_tokens) == (4, 7)
    assert usage.ttft_s is not None and not generation.aborted


def test_with_no_interval_every_delta_is_its_own_event(store: JobStore, redis_url: str) -> None:
    job_id = running_job(store, redis_url)
    assert (
        streamer(job_id, ScriptedGeneration("a", "b", "c"), interval=0).run() is Outcome.SUCCEEDED
    )
    assert tokens(store, job_id) == ["a", "b", "c"]


def test_markers_are_rewritten_across_flushes(store: JobStore, redis_url: str) -> None:
    job_id = running_job(store, redis_url)
    streaming = streamer(job_id, ScriptedGeneration("See [", "2] and [1]."), interval=0)
    assert streaming.run() is Outcome.SUCCEEDED
    assert "".join(tokens(store, job_id)) == "See [1] and [2]."


def test_the_prefill_goes_out_with_the_first_text(store: JobStore, redis_url: str) -> None:
    job_id = running_job(store, redis_url)
    generation = ScriptedGeneration("2] says", " so.")
    streaming = Streamer(job_id, generation, time.time() + 30, MarkerRewriter(2), 0, "Passage [")  # type: ignore[arg-type]
    assert streaming.run() is Outcome.SUCCEEDED
    # The prefill and the model's text are one answer: the marker they form is rewritten.
    assert "".join(tokens(store, job_id)) == "".join(streaming.parts) == "Passage [1] says so."
    assert streaming.usage().completion_tokens == 2


def test_an_empty_generation_still_answers_the_prefill(store: JobStore, redis_url: str) -> None:
    job_id = running_job(store, redis_url)
    streaming = Streamer(
        job_id, ScriptedGeneration(""), time.time() + 30, MarkerRewriter(1), 0, "It"
    )  # type: ignore[arg-type]
    assert streaming.run() is Outcome.SUCCEEDED
    assert tokens(store, job_id) == streaming.parts == ["It"]
    assert streaming.usage().ttft_s is None


def test_a_cancelled_job_stops_the_generation(store: JobStore, redis_url: str) -> None:
    job_id = running_job(store, redis_url)
    assert store.finish(job_id, JobStatus.CANCELLED)
    generation = ScriptedGeneration("never", "sent")
    assert streamer(job_id, generation, interval=0).run() is Outcome.CANCELLED
    assert generation.aborted and tokens(store, job_id) == []


def test_a_cancel_is_noticed_while_no_text_flows(store: JobStore, redis_url: str) -> None:
    job_id = running_job(store, redis_url)
    generation = ScriptedGeneration()  # the engine is silent
    streaming = streamer(job_id, generation, interval=0)
    assert store.finish(job_id, JobStatus.CANCELLED)
    started = time.monotonic()
    assert streaming.run() is Outcome.CANCELLED
    assert generation.aborted and time.monotonic() - started < 2


def test_the_deadline_aborts_the_generation(store: JobStore, redis_url: str) -> None:
    job_id = running_job(store, redis_url)
    generation = ScriptedGeneration("late")
    streaming = Streamer(job_id, generation, time.time() - 1, MarkerRewriter(1), 0)  # type: ignore[arg-type]
    assert streaming.run() is Outcome.DEADLINE_EXCEEDED
    assert generation.aborted and tokens(store, job_id) == []


def send_generate(redis_url: str, args: list[Any]) -> None:
    """A generate message with these arguments, sent as the query worker sends it."""
    celery = create_celery(Settings(redis_url=redis_url))
    try:
        celery.send_task(GENERATE_TASK, args=args, task_id=f"{args[0]}-generate")
    finally:
        celery.close()


def generated_tokens(service: Any) -> float:
    """vLLM's count of the tokens the llm worker's engine generated."""
    url = f"http://127.0.0.1:{service.metrics_ports['llm-worker']}/metrics"
    return value(samples(httpx.get(url).text), "vllm:generation_tokens_total")


def test_a_generation_started_before_a_failed_claim_is_aborted(
    service: Any, store: JobStore, redis_url: str, http: httpx.Client
) -> None:
    """The message's fields start the engine on the prompt while the job is claimed; when the
    claim fails (the job was cancelled meanwhile), the generation is aborted and nothing is
    written. The real llm worker and engine: an answer sent after it is the only one whose
    tokens the engine generates (but the stray prompt's first, if its prefill ran)."""
    job_id = running_job(store, redis_url, {"question": "What do puffins eat?"})
    assert store.finish(job_id, JobStatus.CANCELLED)
    fields = {name: store.raw(job_id).get(name, "") for name in GENERATION_FIELDS}
    before = generated_tokens(service)
    send_generate(redis_url, [job_id, list(range(1000, 1400)), [], fields])
    answer = http.post("/v1/answers", json={"question": "What do puffins eat?", "min_relevance": 0})
    record = wait_job(http, answer.json()["job_id"])
    answered = record["result"]["usage"]["completion_tokens"]
    deadline = time.monotonic() + 10  # vLLM counts a step's tokens just after handing them out
    while generated_tokens(service) < before + answered and time.monotonic() < deadline:
        time.sleep(0.1)
    assert 0 < answered <= generated_tokens(service) - before <= answered + 1
    assert store.status(job_id) is JobStatus.CANCELLED
    assert tokens(store, job_id) == []


def test_a_message_without_the_fields_claims_first_and_answers(
    service: Any, store: JobStore, redis_url: str
) -> None:
    """A generate message sent by an older query worker (no fields) still answers its job."""
    job_id = running_job(store, redis_url, {"question": "What do puffins eat?"})
    assert store.release(job_id, "handoff")
    prompt = engines.llm_tokenizer().encode("Puffins eat")
    send_generate(redis_url, [job_id, prompt, []])
    deadline = time.monotonic() + 120
    while store.status(job_id) is JobStatus.RUNNING and time.monotonic() < deadline:
        time.sleep(0.2)
    record = store.get(job_id)
    assert record is not None and record.status is JobStatus.SUCCEEDED, record
    assert record.result is not None and record.result["usage"]["completion_tokens"] > 0
