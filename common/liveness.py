"""Worker liveness keys in Redis: each worker refreshes its own; readiness reads them."""

from __future__ import annotations

import json
from collections.abc import Iterable

WORKER_KEY_PREFIX = "ragq:worker:"


def worker_key(hostname: str) -> str:
    """Redis key announcing a live worker and its queues."""
    return f"{WORKER_KEY_PREFIX}{hostname}"


def worker_value(queues: Iterable[str], pid: int) -> str:
    """What a worker's liveness key holds."""
    return json.dumps({"queues": sorted(queues), "pid": pid})


def served_queues(values: Iterable[str | bytes | None]) -> set[str]:
    """Queues that at least one of the announced workers consumes."""
    return {q for v in values if v for q in json.loads(v).get("queues", [])}
