"""The worker lock on a real Redis: exclusive while its holder lives, broken once it is gone."""

from __future__ import annotations

import uuid

import pytest
import redis
from redis.exceptions import LockError

from common.keys import worker_key
from common.liveness import process_instance, worker_value
from common.locks import worker_lock


def test_a_live_holder_keeps_the_lock_and_a_dead_one_loses_it(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    name = f"ragq:test-lock:{uuid.uuid4()}"
    client.set(worker_key("cpu@a"), worker_value(["ingest"], 1, "other-process"), ex=60)
    client.set(name, "cpu@a|other-process|token", ex=600)

    with pytest.raises(LockError), worker_lock(client, name, "cpu@b", 60, wait_s=0.3):
        pass

    client.delete(worker_key("cpu@a"))  # the holder died (its heartbeat lapsed)
    with worker_lock(client, name, "cpu@b", 60, wait_s=0.3):
        assert client.get(name).startswith(f"cpu@b|{process_instance()}|")  # type: ignore[union-attr]
    assert client.get(name) is None
