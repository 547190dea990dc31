"""What the client rides out: a stream cut mid-answer, a POST whose response was lost, 429s.

A TCP proxy (tests/client/proxy.py) between the client and the live API breaks connections;
429s come from an extra API process with a small rate limit and queue depth, on a Redis
database of its own where no worker consumes, as in tests/api/test_limits.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from cli.supervisor import free_port
from common.apikeys import create_key, open_redis
from ragq_client import (
    NO_RETRY,
    AsyncClient,
    Client,
    JobKind,
    QueueFull,
    RateLimited,
    RetryPolicy,
    TokenEvent,
)
from tests.client.proxy import proxy_to
from tests.conftest import Service
from tests.helpers import api_process

FACTS = (
    "The Velder observatory stands on Mount Harn at 2,140 metres. It opened in 1931, its "
    "main telescope has a 1.2 metre mirror, and its staff of nine run night surveys of comets."
)
LONG = "Describe the Velder observatory in detail: where, when, its telescope and its staff."
RATE = 6
WINDOW_S = 3


def test_a_stream_cut_mid_answer_resumes_with_every_token_once(
    service: Service, new_key: Callable[[], str]
) -> None:
    with proxy_to(service.base_url) as proxy, Client(proxy.url, new_key()) as client:
        client.ingest_text(FACTS, title="Velder", wait=True)
        stream = client.ask(LONG, top_k=2, stream=True)
        tokens: list[TokenEvent] = []
        for event in stream:
            if isinstance(event, TokenEvent):
                tokens.append(event)
                if len(tokens) == 1:
                    proxy.cut()  # the SSE connection dies right after the first token
        assert stream.reconnects >= 1 and stream.final is not None
        assert len(tokens) > 1, "the answer ended before the cut"
        assert "".join(t.text for t in tokens) == stream.final.answer().answer
        assert len({t.id for t in tokens}) == len(tokens)


def test_an_async_stream_cut_mid_answer_resumes_with_every_token_once(
    service: Service, new_key: Callable[[], str]
) -> None:
    async def scenario() -> None:
        with proxy_to(service.base_url) as proxy:
            async with AsyncClient(proxy.url, new_key()) as client:
                await client.ingest_text(FACTS, title="Velder", wait=True)
                stream = await client.ask(LONG, top_k=2, stream=True)
                tokens: list[TokenEvent] = []
                async for event in stream:
                    if isinstance(event, TokenEvent):
                        tokens.append(event)
                        if len(tokens) == 1:
                            proxy.cut()
                assert stream.reconnects >= 1 and stream.final is not None
                assert len(tokens) > 1, "the answer ended before the cut"
                assert "".join(t.text for t in tokens) == stream.final.answer().answer

    asyncio.run(scenario())


def test_a_post_whose_response_was_lost_is_retried_and_creates_one_job(
    service: Service, new_key: Callable[[], str]
) -> None:
    with proxy_to(service.base_url) as proxy, Client(proxy.url, new_key()) as client:
        proxy.drop_next_response = True  # the server gets the POST; its answer never arrives
        job = client.submit_answer("Where is the Velder observatory?", top_k=1)
        assert proxy.connections == 2, "the POST was not sent again"
        listed = client.jobs(kind=JobKind.ANSWER).jobs
        assert [j.job_id for j in listed] == [job.job_id]

    async def scenario() -> None:
        with proxy_to(service.base_url) as proxy:
            async with AsyncClient(proxy.url, new_key()) as client:
                proxy.drop_next_response = True
                job = await client.submit_answer("Where is Mount Harn?", top_k=1)
                assert proxy.connections == 2
                listed = (await client.jobs(kind=JobKind.ANSWER)).jobs
                assert [j.job_id for j in listed] == [job.job_id]

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def limited(service: Service) -> Iterator[tuple[str, redis.Redis]]:
    """An API process with RATE requests per WINDOW_S seconds and room for 2 queued messages
    (a queue is full once it holds more than RAGQ_MAX_QUEUE_DEPTH)."""
    redis_url = service.redis_url.rsplit("/", 1)[0] + "/2"
    store = open_redis(redis_url)
    store.flushdb()
    env = {
        **service.env,
        "RAGQ_REDIS_URL": redis_url,
        "RAGQ_RATE_LIMIT_REQUESTS": str(RATE),
        "RAGQ_RATE_LIMIT_WINDOW_S": str(WINDOW_S),
        "RAGQ_MAX_QUEUE_DEPTH": "1",
        "RAGQ_BACKPRESSURE_RETRY_AFTER_S": "1",
    }
    with api_process(env, free_port()) as url:
        yield url, store
    store.flushdb()
    store.close()


def _key(store: redis.Redis) -> str:
    return create_key(store, f"limited-{uuid.uuid4().hex[:8]}")[0]


def test_429_with_retry_after_is_waited_out(
    limited: tuple[str, redis.Redis], caplog: pytest.LogCaptureFixture
) -> None:
    url, store = limited
    with Client(url, _key(store)) as client, caplog.at_level(logging.INFO, "ragq_client"):
        started = time.monotonic()
        for _ in range(RATE + 2):
            client.documents()
        took = time.monotonic() - started
    waits = [r.args[0] for r in caplog.records if "rate_limited" in r.getMessage()]
    assert waits, "no 429 was met"
    assert all(1 <= w <= WINDOW_S for w in waits)  # type: ignore[operator]
    assert took >= sum(waits)  # type: ignore[arg-type]

    with Client(url, _key(store), retry=NO_RETRY) as client:
        for _ in range(RATE):
            client.documents()
        with pytest.raises(RateLimited) as limited_error:
            client.documents()
    assert limited_error.value.code == "rate_limited" and limited_error.value.status == 429
    assert limited_error.value.retry_after is not None and limited_error.value.retry_after >= 1


def test_a_full_queue_is_retried_then_raised_and_never_doubles_a_job(
    limited: tuple[str, redis.Redis],
) -> None:
    url, store = limited
    store.delete("query")
    policy = RetryPolicy(attempts=2, backoff_s=0.1)
    with Client(url, _key(store), retry=policy) as client:
        queued = [client.submit_answer(f"Where is the Velder observatory? ({n})") for n in (1, 2)]
        started = time.monotonic()
        with pytest.raises(QueueFull) as full:
            client.submit_answer("When did it open?")
        assert time.monotonic() - started >= 1  # its Retry-After, waited once
        assert full.value.code == "queue_full" and full.value.retry_after == 1
        assert {j.job_id for j in client.jobs().jobs} == {j.job_id for j in queued}
