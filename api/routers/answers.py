"""`POST /v1/answers`: queue a question."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import JobsDep, TenantDep
from api.errors import ErrorBody
from api.schemas import AnswerIn, JobAccepted

router = APIRouter(prefix="/v1/answers", tags=["answers"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses={422: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
async def submit_answer(body: AnswerIn, jobs: JobsDep, tenant: TenantDep) -> JobAccepted:
    """Queue an answer job; answers 202 with its job id."""
    return await jobs.submit_answer(tenant, body.question, body.top_k, body.deadline_s)
