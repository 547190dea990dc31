"""Worker liveness keys in Redis: each worker refreshes its own; readiness reads them.

A key also names the worker process's instance id, so a worker restarted under the same
hostname is told apart from the one that died (the jobs that one held are orphans).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable

import redis

from common.keys import BOOT_KEY_PREFIX, boot_key, worker_key

# A starting worker's step expires if it dies before it announces itself.
BOOT_STEP_TTL_S = 900

_instance: tuple[int, str] | None = None


def process_instance() -> str:
    """A random id of this process, new in every process (and after a fork)."""
    global _instance
    if _instance is None or _instance[0] != os.getpid():
        _instance = (os.getpid(), uuid.uuid4().hex)
    return _instance[1]


def worker_value(
    queues: Iterable[str],
    pid: int,
    instance: str = "",
    jobs: Iterable[str] = (),
    received: Iterable[str] | None = None,
) -> str:
    """What a worker's liveness key holds: its queues, process, the jobs it runs now, and the
    jobs whose messages it has taken and not finished (`received`: None leaves it out, as a
    worker of an older version does)."""
    value: dict[str, object] = {
        "queues": sorted(queues), "pid": pid, "instance": instance, "jobs": sorted(jobs)
    }  # fmt: skip
    if received is not None:
        value["received"] = sorted(received)
    return json.dumps(value)


def served_queues(values: Iterable[str | bytes | None]) -> set[str]:
    """Queues that at least one of the announced workers consumes."""
    return {q for v in values if v for q in json.loads(v).get("queues", [])}


def announced_instance(value: str | bytes | None) -> str | None:
    """The instance id a liveness key's value names (None when the key is gone)."""
    if not value:
        return None
    return str(json.loads(value).get("instance", ""))


def announced_jobs(value: str | bytes | None) -> frozenset[str] | None:
    """The jobs a liveness key's value says are in hand (None: the key is gone, or its worker
    does not say)."""
    if not value:
        return None
    jobs = json.loads(value).get("jobs")
    return None if jobs is None else frozenset(jobs)


def announced_received(value: str | bytes | None) -> frozenset[str] | None:
    """The jobs a liveness key's value says its worker has taken messages of and not finished
    (None: the key is gone, or its worker does not say)."""
    if not value:
        return None
    received = json.loads(value).get("received")
    return None if received is None else frozenset(received)


def holder_alive(client: redis.Redis, hostname: str, instance: str) -> bool:
    """Whether the worker process that took a job still announces itself."""
    if not hostname:
        return False
    announced = announced_instance(client.get(worker_key(hostname)))  # type: ignore[arg-type]
    return announced is not None and (not instance or announced == instance)


def announce_step(client: redis.Redis, hostname: str, queues: Iterable[str], step: str) -> None:
    """Record what a starting worker is doing; `ragq up` shows it until the worker is ready."""
    value = json.dumps({"queues": sorted(queues), "step": step})
    client.set(boot_key(hostname), value, ex=BOOT_STEP_TTL_S)


def clear_step(client: redis.Redis, hostname: str) -> None:
    """Forget a worker's start-up step (it is ready, or stopping)."""
    client.delete(boot_key(hostname))


def starting_steps(client: redis.Redis) -> dict[str, str]:
    """For each queue that a starting worker will serve, what that worker is doing."""
    keys = list(client.scan_iter(f"{BOOT_KEY_PREFIX}*"))
    steps: dict[str, str] = {}
    for value in client.mget(keys) if keys else []:  # type: ignore[union-attr]
        if value:
            found = json.loads(value)
            steps.update(dict.fromkeys(found.get("queues", []), str(found.get("step", ""))))
    return steps
