"""Prometheus metrics from the API and the workers reflect a job that just ran."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from prometheus_client import REGISTRY

from api.body_limit import BodyLimit
from api.metrics import Observe, refresh_queue_gauges
from common.contract import (
    DELIVER_WEBHOOK_TASK,
    INGEST_QUEUE,
    INGEST_TASK,
    QUERY_QUEUE,
    QUEUES,
    SEARCH_TASK,
    WEBHOOKS_QUEUE,
)
from common.contract import create_app as create_celery
from common.settings import Settings
from tests.helpers import ingest_text, samples, value


def test_api_and_worker_metrics_move_with_a_job(service, http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    cpu_url = f"http://127.0.0.1:{service.metrics_ports['cpu-worker']}/metrics"
    api_before = samples(http.get("/metrics").text)
    cpu_before = samples(httpx.get(cpu_url).text)

    ingest_text(http, "Metrics should count this document about puffins. " * 30, "Puffins")

    api_after = samples(http.get("/metrics").text)
    cpu_after = samples(httpx.get(cpu_url).text)
    created = "ragq_jobs_created_total"
    assert value(api_after, created, kind="ingest") == value(api_before, created, kind="ingest") + 1
    route = {"route": "/v1/documents", "method": "POST", "status": "202"}
    assert value(api_after, "ragq_http_requests_total", **route) > value(
        api_before, "ragq_http_requests_total", **route
    )
    depth_labels = {ls for (n, ls) in api_after if n == "ragq_queue_depth"}
    assert depth_labels == {frozenset({("queue", q)}) for q in QUEUES}
    finished = "ragq_jobs_finished_total"
    ok = {"kind": "ingest", "status": "succeeded"}
    assert value(cpu_after, finished, **ok) == value(cpu_before, finished, **ok) + 1
    assert value(cpu_after, "ragq_ingest_chunks_total") > value(
        cpu_before, "ragq_ingest_chunks_total"
    )
    runs = "ragq_job_run_seconds_count"
    assert value(cpu_after, runs, kind="ingest") == value(cpu_before, runs, kind="ingest") + 1


@pytest.mark.parametrize(
    ("task", "queue", "options"),
    [
        (SEARCH_TASK, QUERY_QUEUE, {"args": [{}, "reply"], "expires": 60}),
        (DELIVER_WEBHOOK_TASK, WEBHOOKS_QUEUE, {"args": ["job", 1]}),
        (INGEST_TASK, INGEST_QUEUE, {"args": ["job"], "task_id": "job-r1700000000000"}),
    ],
)
def test_queue_age_counts_messages_of_any_task_id(
    redis_url: str, task: str, queue: str, options: dict[str, Any]
) -> None:
    """Searches, webhook deliveries and reconciler resends are no job's `<id>` task."""
    # A database no worker consumes, so the message stays where it was sent.
    url = redis_url.rsplit("/", 1)[0] + "/8"
    client = redis.Redis.from_url(url)
    client.flushdb()
    celery = create_celery(Settings(redis_url=url))
    try:
        celery.send_task(task, **options)
        time.sleep(1.2)
        asyncio.run(refresh(url))
    finally:
        celery.close()
        client.flushdb()
        client.close()
    assert REGISTRY.get_sample_value("ragq_queue_depth", {"queue": queue}) == 1
    age = REGISTRY.get_sample_value("ragq_queue_oldest_age_seconds", {"queue": queue})
    assert age is not None and 1.2 <= age < 30


async def refresh(url: str) -> None:
    """Update the queue gauges of this process from the Redis at `url`."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        await refresh_queue_gauges(client)
    finally:
        await client.aclose()


def test_llm_worker_counts_tokens(service, http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers import wait_job

    llm_url = f"http://127.0.0.1:{service.metrics_ports['llm-worker']}/metrics"
    before = samples(httpx.get(llm_url).text)
    # The grounding guard is off: whatever the collection holds, this answer is generated.
    body = {"question": "What do puffins eat?", "min_relevance": 0}
    job = http.post("/v1/answers", json=body).json()
    record = wait_job(http, job["job_id"])
    after = samples(httpx.get(llm_url).text)
    tokens = record["result"]["usage"]["completion_tokens"]
    assert value(after, "ragq_llm_tokens_total") == value(before, "ragq_llm_tokens_total") + tokens
    assert (
        value(after, "ragq_llm_ttft_seconds_count")
        == value(before, "ragq_llm_ttft_seconds_count") + 1
    )


def observed_app() -> FastAPI:
    """An app behind `Observe` with a slow stream, a failure, and the body limit inside."""
    app = FastAPI()

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            yield b"first"
            await asyncio.sleep(0.6)
            yield b"last"

        return StreamingResponse(parts())

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    app.add_middleware(BodyLimit, max_bytes=10)
    app.add_middleware(Observe)
    return app


def count(route: str, method: str, status: str) -> float:
    """`ragq_http_requests_total` of this process for one route, method and status."""
    labels = {"route": route, "method": method, "status": status}
    return REGISTRY.get_sample_value("ragq_http_requests_total", labels) or 0.0


async def exchange() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
    """A stream, a failure and a body over the limit, through `observed_app`."""
    transport = httpx.ASGITransport(app=observed_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        streamed = await client.get("/stream")
        failed = await client.get("/boom")
        refused = await client.post("/anything", content=b"x" * 11)
    return streamed, failed, refused


def test_requests_are_counted_by_status_and_timed_to_their_first_byte() -> None:
    """A stream's latency ends when its response starts; an error raised by the app counts
    as the 500 it becomes, and the body limit's 413, answered before routing, as unmatched."""
    latency = "ragq_http_request_duration_seconds"
    timed = {"route": "/stream", "method": "GET"}
    before = (
        REGISTRY.get_sample_value(f"{latency}_sum", timed) or 0.0,
        count("/stream", "GET", "200"),
        count("/boom", "GET", "500"),
        count("unmatched", "POST", "413"),
    )
    streamed, failed, refused = asyncio.run(exchange())
    assert (streamed.content, failed.status_code, refused.status_code) == (b"firstlast", 500, 413)
    waited = (REGISTRY.get_sample_value(f"{latency}_sum", timed) or 0.0) - before[0]
    assert 0 <= waited < 0.3, f"timed to the end of the stream: {waited:.3f} s"
    assert count("/stream", "GET", "200") == before[1] + 1
    assert count("/boom", "GET", "500") == before[2] + 1
    assert count("unmatched", "POST", "413") == before[3] + 1
