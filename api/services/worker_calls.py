"""Request and reply with a query worker: a task message, and its answer on a Redis list."""

from __future__ import annotations

import json
import uuid
from typing import Any

import redis.asyncio as aioredis
from celery import Celery
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError
from common.keys import reply_key


async def call_query_worker(
    celery: Celery,
    redis: aioredis.Redis,
    task: str,
    payload: Any,
    timeout: float,
    timeout_code: str,
) -> dict[str, Any]:
    """Send `task(payload, reply_key)` and wait for the worker's reply; 504 `timeout_code` if
    none came within `timeout` seconds."""
    reply_to = reply_key(str(uuid.uuid4()))
    # `expires` drops the message if no worker took it in time: nobody waits for it then.
    await run_in_threadpool(celery.send_task, task, args=[payload, reply_to], expires=timeout)
    popped = await redis.blpop([reply_to], timeout=timeout)  # type: ignore[misc]
    if popped is None:
        raise ApiError(504, timeout_code, f"no query worker answered within {timeout:g} s")
    reply: dict[str, Any] = json.loads(popped[1])
    return reply
