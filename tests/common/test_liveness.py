"""Worker liveness values: what a worker announces, and what readiness and claims read back."""

from __future__ import annotations

import redis

from common.keys import worker_key
from common.liveness import (
    announce_step,
    announced_instance,
    clear_step,
    holder_alive,
    process_instance,
    served_queues,
    starting_steps,
    worker_value,
)


def test_served_queues_unites_every_live_worker_and_skips_gone_ones() -> None:
    values = [worker_value(["query", "ingest"], 1, "a"), None, worker_value(["llm"], 2, "b")]
    assert served_queues(values) == {"ingest", "query", "llm"}
    assert served_queues([]) == set()


def test_the_announced_instance_is_read_back() -> None:
    assert announced_instance(worker_value(["llm"], 1, "abc")) == "abc"
    assert announced_instance(worker_value(["llm"], 1, "abc").encode()) == "abc"
    assert announced_instance(None) is None


def test_process_instance_is_stable_within_a_process() -> None:
    assert process_instance() == process_instance() != ""


def test_a_holder_is_alive_only_while_it_announces_the_same_instance(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.set(worker_key("cpu@live"), worker_value(["ingest"], 1, "first"), ex=60)
    assert holder_alive(client, "cpu@live", "first")
    assert not holder_alive(client, "cpu@live", "restarted")
    assert not holder_alive(client, "cpu@gone", "first")
    assert not holder_alive(client, "", "first")
    client.delete(worker_key("cpu@live"))
    client.close()


def test_a_starting_workers_step_is_read_by_queue_until_it_is_cleared(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    announce_step(client, "cpu@boot", ["ingest", "query"], "loading the embedding model")
    announce_step(client, "llm@boot", ["llm"], "starting vLLM")
    assert starting_steps(client) == {
        "ingest": "loading the embedding model",
        "query": "loading the embedding model",
        "llm": "starting vLLM",
    }
    clear_step(client, "cpu@boot")
    clear_step(client, "llm@boot")
    assert starting_steps(client) == {}
    client.close()
