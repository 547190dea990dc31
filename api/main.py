"""The FastAPI application: validates, records and enqueues jobs; never embeds or generates."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from api import console, errors, metrics
from api.body_limit import BodyLimit
from api.errors import ErrorBody
from api.routers import answers, documents, health, jobs, openai, search, usage, webhooks
from api.services.chat import ChatService
from api.services.documents import DocumentService
from api.services.embeddings import EmbeddingService
from api.services.idempotency import IdempotencyService
from api.services.jobs import JobService
from api.services.limits import Limits
from api.services.quotas import QuotaService
from api.services.search import SearchService
from api.services.usage import UsageService
from api.services.webhooks import WebhookService
from common.apikeys import open_redis, production_problem
from common.contract import create_app as create_celery
from common.jobs_async import AsyncJobStore
from common.redis_async import async_redis
from common.settings import Settings, get_settings

log = logging.getLogger(__name__)
ACCESS_LOGGER = "uvicorn.access"
# Every route that needs an API key may also answer these.
AUTHENTICATED_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no API key, or an unknown or revoked one"},
    429: {"model": ErrorBody, "description": "rate limit or queue backpressure; see Retry-After"},
    503: {"model": ErrorBody, "description": "the job store is unreachable; see Retry-After"},
}


def check_production_keys(settings: Settings) -> None:
    """Refuse to start in production mode with no API key or with the development key."""
    if settings.environment != "production":
        return
    client = open_redis(settings.redis_url)
    try:
        problem = production_problem(client)
    finally:
        client.close()
    if problem:
        log.critical(problem)
        raise RuntimeError(problem)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; long-lived clients are created in its lifespan."""
    settings = settings or get_settings()
    # uvicorn has configured its loggers by the time it calls this factory.
    access_level = logging.INFO if settings.api_access_log else logging.WARNING
    logging.getLogger(ACCESS_LOGGER).setLevel(access_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        check_production_keys(settings)
        client = async_redis(settings.redis_url, decode_responses=True, health_check_interval=10)
        celery = create_celery(settings)
        store = AsyncJobStore(client, settings.job_ttl_s)
        app.state.settings = settings
        app.state.redis = client
        app.state.store = store
        jobs = JobService(store, celery, settings, QuotaService(client, settings.quota_cache_s))
        app.state.jobs = jobs
        app.state.documents = DocumentService(client, jobs)
        app.state.idempotency = IdempotencyService(
            client, settings.idempotency_ttl_s, settings.idempotency_wait_s
        )
        app.state.search = SearchService(client, celery, settings)
        app.state.limits = Limits(client, settings)
        app.state.webhooks = WebhookService(client, store, settings)
        app.state.chat = ChatService(jobs, store, settings)
        app.state.embeddings = EmbeddingService(client, celery, settings)
        app.state.usage = UsageService(client)
        # What exists now lives as long as the process: out of the collector's way, so that a
        # full collection under load walks only what requests allocate (p99 of a submit).
        gc.freeze()
        try:
            yield
        finally:
            metrics.process_stopping()
            await client.aclose()
            celery.close()

    # /docs (Swagger UI) and /redoc load their scripts and styles from this server, out of the
    # fastapi-offline package, never from a CDN: they work on a network without internet.
    app = FastAPIOffline(
        static_url="/docs-assets",
        title="ragq",
        version="1",
        summary="Asynchronous retrieval-augmented question answering.",
        lifespan=lifespan,
    )
    errors.install(app)
    # Inside the metrics middleware, which counts its 413s.
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    metrics.install(app)
    authenticated = (
        documents.router, answers.router, search.router, jobs.router, webhooks.router, usage.router
    )  # fmt: skip
    for router in authenticated:
        app.include_router(router, responses=AUTHENTICATED_ERRORS)
    app.include_router(openai.router)  # its own error shape: see api.openai_schemas
    app.include_router(health.router)
    console.mount(app)
    return app
