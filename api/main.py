"""The FastAPI application: validates, records and enqueues jobs; never embeds or generates."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI

from api import errors, metrics
from api.routers import answers, documents, health, jobs
from api.services.documents import DocumentService
from api.services.jobs import JobService
from common.jobs_async import AsyncJobStore
from common.settings import Settings, get_settings
from workers.celery_app import create_app as create_celery

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; long-lived clients are created in its lifespan."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = aioredis.Redis.from_url(
            settings.redis_url, decode_responses=True, health_check_interval=10
        )
        celery = create_celery(settings)
        store = AsyncJobStore(client, settings.job_ttl_s)
        app.state.settings = settings
        app.state.redis = client
        app.state.store = store
        jobs = JobService(store, celery, settings)
        app.state.jobs = jobs
        app.state.documents = DocumentService(client, jobs)
        try:
            yield
        finally:
            await client.aclose()
            celery.close()

    app = FastAPI(
        title="ragq",
        version="1",
        summary="Asynchronous retrieval-augmented question answering.",
        lifespan=lifespan,
    )
    errors.install(app)
    metrics.install(app)
    for router in (documents.router, answers.router, jobs.router, health.router):
        app.include_router(router)
    return app
