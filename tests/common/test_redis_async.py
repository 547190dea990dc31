"""The API's asyncio Redis client: hiredis packs what redis-py would, on any connection."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError
from redis.typing import EncodableT

from common.redis_async import HiredisPacking, async_redis, hiredis_packing

COMMANDS: list[tuple[EncodableT, ...]] = [
    ("SET", "key", "välue ✓"),
    ("ZADD", "jobs", 1733557000.123456, "id"),
    ("ZREMRANGEBYSCORE", "jobs", "-inf", "(1733.5"),
    ("EVALSHA", "abc", 2, "k1", "k2", b"\x00\xff", -3, 1e20),
    ("CONFIG GET", "maxmemory"),
    (b"CLIENT SETNAME", b"api"),
    ("SET", "blob", b"x" * 100_000),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_hiredis_packs_the_bytes_redis_py_packs(command: tuple[EncodableT, ...]) -> None:
    plain, packing = Connection(), hiredis_packing(Connection)()
    assert b"".join(packing.pack_command(*command)) == b"".join(plain.pack_command(*command))


def test_an_unpackable_argument_is_a_data_error() -> None:
    with pytest.raises(DataError):
        hiredis_packing(Connection)().pack_command("SET", "key", None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("redis://localhost:6379/0", Connection),
        ("rediss://localhost:6380/0", SSLConnection),
        ("unix:///tmp/redis.sock", UnixDomainSocketConnection),
    ],
)
def test_the_url_still_chooses_the_connection(url: str, base: type) -> None:
    client = async_redis(url)
    chosen = client.connection_pool.connection_class
    assert issubclass(chosen, base) and issubclass(chosen, HiredisPacking)


def test_the_client_runs_commands_transactions_and_scripts(redis_url: str) -> None:
    async def run() -> None:
        client = async_redis(redis_url, decode_responses=True)
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hset("ragq-test:h", mapping={"a": "1", "b": "é"})
                pipe.zadd("ragq-test:z", {"x": 1.5})
                pipe.lpush("ragq-test:l", "m")
                assert await pipe.execute() == [2, 1, 1]
            script = client.register_script("return redis.call('HGET', KEYS[1], ARGV[1])")
            assert await script(keys=["ragq-test:h"], args=["b"]) == "é"
            assert await client.zscore("ragq-test:z", "x") == 1.5
        finally:
            await client.delete("ragq-test:h", "ragq-test:z", "ragq-test:l")
            await client.aclose()

    asyncio.run(run())
