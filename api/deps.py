"""FastAPI dependencies, as Annotated aliases; the objects live on app.state (see api.main)."""

from __future__ import annotations

from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Request

from api.services.documents import DocumentService
from api.services.jobs import JobService
from common.jobs_async import AsyncJobStore
from common.settings import Settings

DEFAULT_TENANT = "default"


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _redis(request: Request) -> aioredis.Redis:
    return request.app.state.redis  # type: ignore[no-any-return]


def _store(request: Request) -> AsyncJobStore:
    return request.app.state.store  # type: ignore[no-any-return]


def _jobs(request: Request) -> JobService:
    return request.app.state.jobs  # type: ignore[no-any-return]


def _documents(request: Request) -> DocumentService:
    return request.app.state.documents  # type: ignore[no-any-return]


def _tenant() -> str:
    return DEFAULT_TENANT


SettingsDep = Annotated[Settings, Depends(_settings)]
RedisDep = Annotated[aioredis.Redis, Depends(_redis)]
StoreDep = Annotated[AsyncJobStore, Depends(_store)]
JobsDep = Annotated[JobService, Depends(_jobs)]
DocumentsDep = Annotated[DocumentService, Depends(_documents)]
TenantDep = Annotated[str, Depends(_tenant)]
