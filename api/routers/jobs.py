"""`/v1/jobs`: list the tenant's jobs; poll, stream (SSE) and cancel one."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import JobsDep, StoreDep, TenantDep
from api.errors import ErrorBody
from api.schemas import JobList
from common.schemas import JobKind, JobRecord, JobStatus
from common.telemetry import SSE_CONNECTIONS

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
STREAM_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")


@router.get("", response_model=JobList, responses={422: {"model": ErrorBody}})
async def list_jobs(
    jobs: JobsDep,
    tenant: TenantDep,
    kind: JobKind | None = None,
    status: JobStatus | None = None,
    cursor: str | None = Query(default=None, max_length=512, description="next_cursor of a page."),
    limit: int = Query(default=50, ge=1, le=200),
) -> JobList:
    """The tenant's jobs, newest first (kept RAGQ_JOB_TTL_S after creation)."""
    return await jobs.list(tenant, limit, cursor, kind, status)


@router.get("/{job_id}", response_model=JobRecord, responses=NOT_FOUND)
async def get_job(job_id: str, jobs: JobsDep, tenant: TenantDep) -> JobRecord:
    """The job's current record."""
    return await jobs.get(tenant, job_id)


@router.delete(
    "/{job_id}", response_model=JobRecord, responses={**NOT_FOUND, 409: {"model": ErrorBody}}
)
async def cancel_job(job_id: str, jobs: JobsDep, tenant: TenantDep) -> JobRecord:
    """Cancel a queued or running job (a running answer's generation is aborted)."""
    return await jobs.cancel(tenant, job_id)


@router.get(
    "/{job_id}/events",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "the job's events"},
        **NOT_FOUND,
    },
)
async def job_events(
    job_id: str,
    jobs: JobsDep,
    store: StoreDep,
    tenant: TenantDep,
    last_event_id: str | None = Header(default=None),
) -> EventSourceResponse:
    """Server-Sent Events of the job; reconnect with Last-Event-ID to get what you missed."""
    await jobs.get(tenant, job_id)
    after = last_event_id if last_event_id and _is_stream_id(last_event_id) else "0-0"

    async def stream():  # type: ignore[no-untyped-def]
        SSE_CONNECTIONS.inc()
        try:
            async for event in store.events(job_id, after):
                yield ServerSentEvent(data=event.data, event=event.event, id=event.id)
        finally:
            SSE_CONNECTIONS.dec()

    return EventSourceResponse(stream(), ping=15)


def _is_stream_id(value: str) -> bool:
    """Whether the value is a Redis stream id, two unsigned 64-bit numbers (`ms-seq`)."""
    match = STREAM_ID.fullmatch(value)
    return match is not None and all(int(n) < 2**64 for n in match.groups())
