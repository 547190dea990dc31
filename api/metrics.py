"""The API's Prometheus metrics: request counts and latencies by route, queue depth and age."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

import redis.asyncio as aioredis
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common.jobs import job_key
from common.telemetry import HTTP_LATENCY, HTTP_REQUESTS, QUEUE_DEPTH, QUEUE_OLDEST_AGE
from workers.celery_app import QUEUES


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", "unmatched")


async def refresh_queue_gauges(redis: aioredis.Redis) -> None:
    """Set each queue's depth and the age of its oldest message (from its job's created_at)."""
    now = time.time()
    for queue in QUEUES:
        depth = await redis.llen(queue)  # type: ignore[misc]
        QUEUE_DEPTH.labels(queue).set(depth)
        age = 0.0
        oldest = await redis.lindex(queue, -1) if depth else None  # type: ignore[misc]
        if oldest:
            task_id = json.loads(oldest).get("headers", {}).get("id", "")
            created = await redis.hget(job_key(task_id.removesuffix("-generate")), "created_at")  # type: ignore[misc]
            if created:
                age = max(0.0, now - datetime.fromisoformat(created).timestamp())
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
