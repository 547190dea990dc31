"""The OpenAI-compatible routes: `/v1/models`, `/v1/chat/completions`, `/v1/embeddings`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import JSON_BODY, QUERY_CAPACITY, CallerDep, ChatDep, EmbeddingsDep, TenantDep
from api.openai_schemas import (
    JOB_HEADER,
    ChatCompletion,
    ChatCompletionIn,
    EmbeddingList,
    EmbeddingsIn,
    ModelCard,
    ModelList,
    OpenAIErrorBody,
)

router = APIRouter(prefix="/v1", tags=["openai"])
# Every OpenAI-compatible route may answer these, in OpenAI's error shape.
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": OpenAIErrorBody} for code in (400, 401, 404, 429, 503)
}
JOB_ID = {
    JOB_HEADER: {
        "description": "The id of the answer job (`GET /v1/jobs/{id}`).",
        "schema": {"type": "string"},
    }
}


@router.get("/models", response_model=ModelList, responses=ERRORS)
async def list_models(chat: ChatDep, tenant: TenantDep) -> ModelList:
    """The models a client may name: `ragq` (chat completions), `ragq-embedding` (embeddings)."""
    return chat.models()


@router.get("/models/{model}", response_model=ModelCard, responses=ERRORS)
async def get_model(model: str, chat: ChatDep, tenant: TenantDep) -> ModelCard:
    """One model; 404 `model_not_found` for another name."""
    return chat.model(model)


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "A `chat.completion`, or with `stream` its `chat.completion.chunk` "
            "events and `[DONE]`.",
            "headers": JOB_ID,
        },
        **ERRORS,
        **{code: {"model": OpenAIErrorBody} for code in (409, 413, 415, 422, 502, 504)},
    },
    dependencies=[QUERY_CAPACITY, JSON_BODY],
)
async def chat_completions(
    request: Request,
    response: Response,
    body: ChatCompletionIn,
    chat: ChatDep,
    caller: CallerDep,
) -> ChatCompletion | EventSourceResponse:
    """Answer the conversation's last question from the tenant's documents, as an answer job.

    The answer's `[n]` markers come with `url_citation` annotations, and the passages under the
    `citations` extension; retrieval options go in the `ragq` extension object.
    """
    job_id, deadline_s = await chat.start(caller.tenant, caller.access, body)
    base_url = str(request.base_url).rstrip("/")
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = chat.stream(caller.tenant, job_id, body.model, include_usage, base_url)

        async def sse():  # type: ignore[no-untyped-def]
            async for data in events:
                yield ServerSentEvent(data=data)

        return EventSourceResponse(sse(), headers={JOB_HEADER: job_id}, ping=15, sep="\n")
    response.headers[JOB_HEADER] = job_id
    return await chat.complete(
        caller.tenant, job_id, deadline_s, body.model, base_url, request.receive
    )


@router.post(
    "/embeddings",
    response_model=EmbeddingList,
    responses={**ERRORS, **{code: {"model": OpenAIErrorBody} for code in (413, 415, 502, 504)}},
    dependencies=[QUERY_CAPACITY, JSON_BODY],
)
async def embeddings(
    body: EmbeddingsIn, service: EmbeddingsDep, tenant: TenantDep
) -> EmbeddingList:
    """Vectors of the texts by the embedding model ragq indexes documents with."""
    return await service.embed(body)
