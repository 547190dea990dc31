"""`POST /v1/search`: the best chunks for a query, synchronously."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import JSON_BODY, QUERY_CAPACITY, CallerDep, SearchDep
from api.errors import ErrorBody
from api.schemas import SearchIn, SearchOut

router = APIRouter(prefix="/v1/search", tags=["search"])


@router.post(
    "",
    response_model=SearchOut,
    responses={code: {"model": ErrorBody} for code in (413, 415, 422, 503, 504)},
    dependencies=[QUERY_CAPACITY, JSON_BODY],
)
async def search(body: SearchIn, service: SearchDep, caller: CallerDep) -> SearchOut:
    """Rank the chunks the key reads for the query (hybrid, dense or sparse), with filters."""
    return await service.search(caller.tenant, caller.access, body)
