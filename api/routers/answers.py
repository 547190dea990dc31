"""`POST /v1/answers`: queue a question."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from api.deps import (
    JSON_BODY,
    QUERY_CAPACITY,
    CallerDep,
    IdempotencyDep,
    IdempotencyKeyDep,
    JobsDep,
)
from api.errors import ErrorBody
from api.schemas import AnswerIn, JobAccepted
from api.services.idempotency import keyed_json_fingerprint

router = APIRouter(prefix="/v1/answers", tags=["answers"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses={
        200: {"model": JobAccepted, "description": "the same Idempotency-Key and body again"},
        **{code: {"model": ErrorBody} for code in (409, 413, 415, 422, 503)},
    },
    dependencies=[QUERY_CAPACITY, JSON_BODY],
)
async def submit_answer(
    request: Request,
    response: Response,
    body: AnswerIn,
    jobs: JobsDep,
    caller: CallerDep,
    idempotency: IdempotencyDep,
    idempotency_key: IdempotencyKeyDep = None,
) -> JobAccepted:
    """Queue an answer job; answers 202 with its job id (200 for a repeated Idempotency-Key)."""
    fingerprint = await keyed_json_fingerprint(request, idempotency_key)
    return await idempotency.respond(
        response,
        caller.scope(),
        idempotency_key,
        fingerprint,
        JobAccepted,
        lambda: jobs.submit_answer(caller.tenant, caller.access, body),
    )
