"""FastAPI dependencies, as Annotated aliases; the objects live on app.state (see api.main).

Every dependency is `async def`, even where it awaits nothing: FastAPI runs a plain `def`
dependency in a worker thread, a hand-off per dependency per request. FastAPI calls a dependency
once per request but walks its own dependencies again wherever it is named, so a route that needs
the tenant and what the key reads takes the caller (`CallerDep`) rather than two dependencies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from api.services.chat import ChatService
from api.services.documents import DocumentService
from api.services.embeddings import EmbeddingService
from api.services.idempotency import IdempotencyService
from api.services.jobs import JobService
from api.services.limits import Caller, Limits
from api.services.search import SearchService
from api.services.usage import UsageService
from api.services.webhooks import WebhookService
from common.contract import INGEST_QUEUE, QUERY_QUEUE
from common.jobs_async import AsyncJobStore
from common.settings import Settings

BEARER = HTTPBearer(
    auto_error=False,
    description="An API key, `Authorization: Bearer rq_…` (`ragq keys create --tenant T`); "
    "it selects the tenant whose jobs, documents and searches the request sees.",
)
UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}
# request.state attributes: the queue a route feeds, and whether the caller was admitted.
QUEUE_STATE = "ragq_queue"
ADMITTED_STATE = "ragq_admitted"


async def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def _redis(request: Request) -> aioredis.Redis:
    return request.app.state.redis  # type: ignore[no-any-return]


async def _store(request: Request) -> AsyncJobStore:
    return request.app.state.store  # type: ignore[no-any-return]


async def _jobs(request: Request) -> JobService:
    return request.app.state.jobs  # type: ignore[no-any-return]


async def _documents(request: Request) -> DocumentService:
    return request.app.state.documents  # type: ignore[no-any-return]


async def _search(request: Request) -> SearchService:
    return request.app.state.search  # type: ignore[no-any-return]


async def _webhooks(request: Request) -> WebhookService:
    return request.app.state.webhooks  # type: ignore[no-any-return]


async def _chat(request: Request) -> ChatService:
    return request.app.state.chat  # type: ignore[no-any-return]


async def _embeddings(request: Request) -> EmbeddingService:
    return request.app.state.embeddings  # type: ignore[no-any-return]


async def _usage(request: Request) -> UsageService:
    return request.app.state.usage  # type: ignore[no-any-return]


async def _idempotency(request: Request) -> IdempotencyService:
    return request.app.state.idempotency  # type: ignore[no-any-return]


async def _caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> Caller:
    """Who the request's API key speaks for: its tenant and what it may read (401 without a
    valid key); counts the tenant's request rate and checks the depth of the queue the route
    feeds (see `_capacity`), in one round trip."""
    if credentials is None:
        raise ApiError(
            401, "unauthorized", "send an API key: Authorization: Bearer rq_…", UNAUTHORIZED
        )
    limits: Limits = request.app.state.limits
    queue: str | None = getattr(request.state, QUEUE_STATE, None)
    caller = await limits.admit(credentials.credentials, queue)
    if caller is None:
        raise ApiError(401, "invalid_api_key", "the API key is unknown or revoked", UNAUTHORIZED)
    setattr(request.state, ADMITTED_STATE, True)
    return caller


async def _tenant(caller: CallerDep) -> str:
    """The tenant of the request's API key (for routes that read nothing by access group)."""
    return caller.tenant


def is_json(request: Request) -> bool:
    """Whether the request's body is declared as JSON (`application/json`, any parameters)."""
    media_type = request.headers.get("content-type", "").partition(";")[0]
    return media_type.strip().lower() == "application/json"


async def _json_body(request: Request, caller: CallerDep) -> None:
    """415 unless the body is declared as JSON (FastAPI would read any body as JSON); after the
    API key and the limits, as before."""
    if not is_json(request):
        raise ApiError(415, "unsupported_media_type", "send application/json")


def _capacity(queue: str) -> Callable[..., Awaitable[None]]:
    """A route dependency that answers 429 while `queue` is too deep.

    Route dependencies are solved before the endpoint's, so this one only names the queue, and
    the caller dependency measures it with the key lookup; were the caller already admitted,
    it measures the queue itself.
    """

    async def check(request: Request) -> None:
        if getattr(request.state, ADMITTED_STATE, False):
            limits: Limits = request.app.state.limits
            await limits.check_queue(queue)
        else:
            setattr(request.state, QUEUE_STATE, queue)

    return check


SettingsDep = Annotated[Settings, Depends(_settings)]
RedisDep = Annotated[aioredis.Redis, Depends(_redis)]
StoreDep = Annotated[AsyncJobStore, Depends(_store)]
JobsDep = Annotated[JobService, Depends(_jobs)]
DocumentsDep = Annotated[DocumentService, Depends(_documents)]
SearchDep = Annotated[SearchService, Depends(_search)]
WebhooksDep = Annotated[WebhookService, Depends(_webhooks)]
CallerDep = Annotated[Caller, Depends(_caller)]
TenantDep = Annotated[str, Depends(_tenant)]
ChatDep = Annotated[ChatService, Depends(_chat)]
EmbeddingsDep = Annotated[EmbeddingService, Depends(_embeddings)]
IdempotencyDep = Annotated[IdempotencyService, Depends(_idempotency)]
UsageDep = Annotated[UsageService, Depends(_usage)]
# Route-level dependencies of job-creating routes: backpressure on the queue they feed.
INGEST_CAPACITY = Depends(_capacity(INGEST_QUEUE))
QUERY_CAPACITY = Depends(_capacity(QUERY_QUEUE))
# Route-level dependency of the routes whose body is JSON only.
JSON_BODY = Depends(_json_body)
IdempotencyKeyDep = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Any unique string (a UUID): the same key with the same body within 24 h "
        "returns the first request's job(s) with 200 instead of creating new ones; the same key "
        "with a different body answers 409 `idempotency_conflict`.",
    ),
]
