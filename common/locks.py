"""A Redis lock that names the worker process holding it, so a dead holder's lock is broken.

A plain lock (SET NX EX) taken by a worker that is then SIGKILLed stays held until it expires;
its job, re-enqueued after the crash, would wait all that time. This lock's value names the
holder's hostname and process instance (see common.liveness): a waiter that finds the holder
gone deletes the lock (only if it still holds that value) and takes it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockError

from common.liveness import holder_alive, process_instance

# KEYS: the lock. ARGV: the value it must still hold.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def release(client: redis.Redis, name: str, value: str) -> bool:
    """Delete the lock `name` only if it still holds `value`; whether it did."""
    return bool(client.register_script(RELEASE_SCRIPT)(keys=[name], args=[value]))


def lock_holder(value: str) -> tuple[str, str] | None:
    """(hostname, instance) a lock value names; None for values of other lock kinds."""
    parts = value.split("|")
    return (parts[0], parts[1]) if len(parts) == 3 else None


@contextmanager
def worker_lock(
    client: redis.Redis, name: str, worker: str, timeout_s: float, wait_s: float
) -> Iterator[None]:
    """Hold the lock `name` for this worker process; LockError after waiting `wait_s`."""
    token = f"{worker}|{process_instance()}|{uuid.uuid4().hex}"
    deadline = time.monotonic() + wait_s
    while not client.set(name, token, nx=True, px=int(timeout_s * 1000)):
        raw = client.get(name)
        value = raw.decode() if isinstance(raw, bytes) else str(raw or "")
        holder = lock_holder(value)
        if holder and not holder_alive(client, *holder):
            release(client, name, value)
            continue
        if time.monotonic() >= deadline:
            raise LockError(f"{name} is held by {value!r}")
        time.sleep(0.1)
    try:
        yield
    finally:
        release(client, name, token)
