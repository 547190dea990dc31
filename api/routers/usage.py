"""`GET /v1/usage`: the tenant's usage, counted as the work happened."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import TenantDep, UsageDep
from api.errors import ErrorBody
from api.schemas import UsageGroup, UsageOut

router = APIRouter(tags=["usage"])


@router.get("/v1/usage", response_model=UsageOut, responses={422: {"model": ErrorBody}})
async def get_usage(
    service: UsageDep,
    tenant: TenantDep,
    start: Annotated[
        str | None,
        Query(
            alias="from", description="First UTC day, YYYY-MM-DD (default: 29 days before `to`)."
        ),
    ] = None,
    end: Annotated[
        str | None, Query(alias="to", description="Last UTC day (default: today).")
    ] = None,
    group_by: UsageGroup = UsageGroup.DAY,
) -> UsageOut:
    """Answers, tokens, engine time, searches, documents, chunks, bytes and webhook deliveries
    by UTC day, or by API key over the range; and the chunks stored now."""
    return await service.report(tenant, start, end, group_by)
