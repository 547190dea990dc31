"""The API's Prometheus metrics: request counts and latencies by route, queue depth and age."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common.contract import QUEUES
from common.telemetry import (
    HTTP_LATENCY,
    HTTP_REQUESTS,
    QUEUE_DEPTH,
    QUEUE_OLDEST_AGE,
    SENT_AT_HEADER,
)


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", "unmatched")


async def refresh_queue_gauges(redis: aioredis.Redis) -> None:
    """Set each queue's depth and the age of its oldest message (from the send time it carries)."""
    now = time.time()
    for queue in QUEUES:
        depth = await redis.llen(queue)  # type: ignore[misc]
        QUEUE_DEPTH.labels(queue).set(depth)
        age = 0.0
        oldest = await redis.lindex(queue, -1) if depth else None  # type: ignore[misc]
        if oldest:
            sent_at = json.loads(oldest).get("headers", {}).get(SENT_AT_HEADER)
            if isinstance(sent_at, int | float):
                age = max(0.0, now - sent_at)
        QUEUE_OLDEST_AGE.labels(queue).set(age)


def install(app: FastAPI) -> None:
    """Count and time every request by route template, and serve `/metrics`."""

    @app.middleware("http")
    async def _observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = _route(request)
        HTTP_LATENCY.labels(route, request.method).observe(time.perf_counter() - start)
        HTTP_REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        return response

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        await refresh_queue_gauges(request.app.state.redis)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
