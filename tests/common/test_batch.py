"""Batched writes: redis-py's command methods recorded, then one script call (MULTI/EXEC for a
batch that calls a script), against a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
from redis.exceptions import ResponseError

from common.batch import MAX_WORDS, Batch, BatchRunner
from common.redis_async import async_redis

PREFIX = "ragq-test:batch:"


def run(redis_url: str, act: Callable[[BatchRunner], Awaitable[Any]]) -> Any:
    """`act` with a runner on a fresh asyncio client of the test Redis."""

    async def go() -> Any:
        client = async_redis(redis_url, decode_responses=True)
        try:
            return await act(BatchRunner(client))
        finally:
            await client.aclose()

    return asyncio.run(go())


@pytest.fixture
def sync(redis_url: str) -> redis.Redis:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    for key in client.scan_iter(f"{PREFIX}*"):
        client.delete(key)
    return client


def test_the_commands_land_as_the_pipeline_would_write_them(
    redis_url: str, sync: redis.Redis
) -> None:
    batch = Batch()
    batch.hset(f"{PREFIX}h", mapping={"a": "1", "b": "é ✓"})
    batch.xadd(f"{PREFIX}s", {"event": "status", "data": '{"status":"queued"}'})
    batch.expire(f"{PREFIX}h", 100)
    batch.zadd(f"{PREFIX}z", {"x": 1733557000.25})
    batch.zadd(f"{PREFIX}z", {"x": 5.0}, nx=True)  # nx: the first score stays
    batch.zremrangebyscore(f"{PREFIX}z", "-inf", "(10")  # nothing below 10
    batch.set(f"{PREFIX}blob", b"\x00\xff" * 1000, ex=100)
    batch.lpush(f"{PREFIX}q", "m1", "m2")
    run(redis_url, lambda runner: runner(batch))

    assert sync.hgetall(f"{PREFIX}h") == {"a": "1", "b": "é ✓"}
    assert 0 < sync.ttl(f"{PREFIX}h") <= 100
    (entry,) = sync.xrange(f"{PREFIX}s")
    assert entry[1] == {"event": "status", "data": '{"status":"queued"}'}
    assert sync.zscore(f"{PREFIX}z", "x") == 1733557000.25
    raw = redis.Redis.from_url(redis_url)
    assert raw.get(f"{PREFIX}blob") == b"\x00\xff" * 1000
    assert sync.lrange(f"{PREFIX}q", 0, -1) == ["m2", "m1"]


def test_a_batch_that_calls_a_script_goes_as_a_transaction(
    redis_url: str, sync: redis.Redis
) -> None:
    batch = Batch()
    batch.set(f"{PREFIX}a", "1")
    batch.eval("return redis.call('SET', KEYS[1], ARGV[1])", 1, f"{PREFIX}b", "2")
    assert batch.calls_script()
    run(redis_url, lambda runner: runner(batch))
    assert sync.mget(f"{PREFIX}a", f"{PREFIX}b") == ["1", "2"]


def test_a_failing_command_raises_and_writes_nothing_after_it(
    redis_url: str, sync: redis.Redis
) -> None:
    sync.set(f"{PREFIX}string", "x")
    batch = Batch()
    batch.set(f"{PREFIX}before", "1")
    batch.lpush(f"{PREFIX}string", "m")  # WRONGTYPE
    batch.set(f"{PREFIX}after", "1")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        run(redis_url, lambda runner: runner(batch))
    assert sync.get(f"{PREFIX}before") == "1"
    assert sync.get(f"{PREFIX}after") is None


def test_the_script_is_loaded_again_after_a_script_flush(redis_url: str, sync: redis.Redis) -> None:
    async def twice(runner: BatchRunner) -> None:
        await runner(Batch().set(f"{PREFIX}one", "1"))
        await runner.redis.script_flush()
        await runner(Batch().set(f"{PREFIX}two", "2"))

    run(redis_url, twice)
    assert sync.mget(f"{PREFIX}one", f"{PREFIX}two") == ["1", "2"]


def test_an_empty_batch_sends_nothing_and_a_huge_command_is_refused() -> None:
    async def empty() -> None:
        # No connection is opened: the port is closed.
        client = async_redis("redis://127.0.0.1:1/0")
        await BatchRunner(client)(Batch())
        await client.aclose()

    asyncio.run(empty())
    with pytest.raises(ValueError, match="at most"):
        Batch().rpush(f"{PREFIX}l", *range(MAX_WORDS))
