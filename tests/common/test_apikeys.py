"""API keys in a real Redis: only hashes are stored; the development key; revocation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from common.apikeys import (
    create_key,
    ensure_dev_key,
    key_hash,
    key_is_stored,
    list_keys,
    open_redis,
    production_problem,
    revoke_key,
    store_key,
)
from common.keys import APIKEY_INDEX_KEY, apikey_key


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """Database 3 of the test Redis, empty."""
    client = open_redis(redis_url.rsplit("/", 1)[0] + "/3")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_only_the_hash_is_stored(client: redis.Redis) -> None:
    key, info = create_key(client, "acme")
    assert key.startswith("rq_") and len(key) > 40
    assert info.tenant == "acme" and info.key_id.startswith("key_") and not info.dev
    stored = [
        client.hgetall(name) if client.type(name) == "hash" else client.smembers(name)
        for name in client.scan_iter()
    ]
    assert key not in repr(stored)
    assert client.hget(apikey_key(key_hash(key)), "tenant") == "acme"
    assert client.smembers(APIKEY_INDEX_KEY) == {key_hash(key)}


def test_revoke_by_key_or_id(client: redis.Redis) -> None:
    first, info = create_key(client, "acme")
    second, _ = create_key(client, "acme")
    assert revoke_key(client, info.key_id) == info
    assert not key_is_stored(client, first) and key_is_stored(client, second)
    assert revoke_key(client, second) is not None
    assert list_keys(client) == []
    assert revoke_key(client, "key_000000000000") is None


@pytest.mark.parametrize("tenant", ["", "a b", "x" * 65, "ten:ant", "é"])
def test_bad_tenant_names_are_refused(client: redis.Redis, tenant: str) -> None:
    with pytest.raises(ValueError):
        create_key(client, tenant)


def test_dev_key_is_created_once_and_reused(client: redis.Redis, tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "api-key"
    key, created = ensure_dev_key(client, key_file)
    assert created and key_file.read_text().strip() == key
    assert key_file.stat().st_mode & 0o077 == 0
    assert ensure_dev_key(client, key_file) == (key, False)
    # A revoked development key is replaced by a new one.
    revoke_key(client, key)
    again, created = ensure_dev_key(client, key_file)
    assert created and again != key and key_is_stored(client, again)
    assert [info.dev for info in list_keys(client)] == [True]


def test_preset_dev_key_is_used(client: redis.Redis, tmp_path: Path) -> None:
    preset = "rq_preset-development-key-0123456789"
    key, created = ensure_dev_key(client, tmp_path / "api-key", preset)
    assert (key, created) == (preset, True)
    assert (tmp_path / "api-key").read_text().strip() == preset
    assert list_keys(client)[0].tenant == "default"


def test_production_problem(client: redis.Redis, tmp_path: Path) -> None:
    assert "needs an API key" in (production_problem(client) or "")
    dev, _ = ensure_dev_key(client, tmp_path / "api-key")
    assert "development key" in (production_problem(client) or "")
    store_key(client, "acme", "rq_a-real-production-key-0123456789")
    assert "development key" in (production_problem(client) or "")
    revoke_key(client, dev)
    assert production_problem(client) is None


def test_groups_and_admin_are_stored_and_listed(client: redis.Redis) -> None:
    _, reader = create_key(client, "acme", groups=["hr", "eng", "hr"])
    _, admin = create_key(client, "acme", admin=True)
    _, dev = create_key(client, "acme", dev=True)
    listed = {info.key_id: info for info in list_keys(client)}
    assert listed[reader.key_id].groups == ("eng", "hr") and not listed[reader.key_id].admin
    assert listed[reader.key_id].access.sees(["hr"]) and not listed[reader.key_id].access.admin
    assert listed[admin.key_id].admin and listed[admin.key_id].access.sees(["anything"])
    assert listed[dev.key_id].admin


def test_a_key_stored_before_groups_is_an_admin(client: redis.Redis) -> None:
    key, _ = create_key(client, "acme", groups=["hr"])
    client.hdel(apikey_key(key_hash(key)), "admin", "groups")
    (info,) = list_keys(client)
    assert info.admin and info.access.sees(["finance"])


@pytest.mark.parametrize("groups", [["a b"], [""], ["x" * 65], [f"g{n}" for n in range(33)]])
def test_bad_group_names_are_refused(client: redis.Redis, groups: list[str]) -> None:
    with pytest.raises(ValueError):
        create_key(client, "acme", groups=groups)
    assert list_keys(client) == []
