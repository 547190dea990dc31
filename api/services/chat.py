"""Chat completions: a conversation becomes an answer job, and the job's events an OpenAI answer."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import quote

import anyio
from starlette.types import Receive

from api.errors import ApiError
from api.openai_schemas import (
    CHAT_MODEL,
    EMBEDDING_MODEL,
    Annotation,
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionIn,
    ChatMessage,
    Choice,
    ChunkChoice,
    CompletionUsage,
    Delta,
    ModelCard,
    ModelList,
    RagqOptions,
    UrlCitation,
    openai_error,
)
from api.schemas import AnswerIn
from api.services.jobs import JobService
from common import conversation
from common.access import Access
from common.conversation import Turn
from common.jobs_async import AsyncJobStore
from common.schemas import AnswerResult, ErrorInfo, EventName, JobRecord, JobStatus
from common.settings import Settings

# A marker as the llm worker leaves it in the answer: "[2]" or "[1, 3]".
MARKER = re.compile(r"\[(\d+(?:, \d+)*)\]")
# How long past its deadline a waiting request gives the job before answering 504.
WAIT_GRACE_S = 30.0
STARTED = int(time.time())
LEFT = ErrorInfo(code="client_disconnected", message="the client disconnected before the answer")
# What a failed job answers on a non-streamed request.
FAILURE_STATUS = {"deadline_exceeded": 504, "client_disconnected": 499}


def citation_spans(content: str, citations: Sequence[dict[str, Any]]) -> list[tuple[int, int, int]]:
    """(citation index, start, end) of each place the answer cites a passage.

    A citation's supported answer spans, when the attribution step gave it `spans` (dicts with
    `start` and `end`), else the positions of the `[n]` markers that name it.
    """
    if any(c.get("spans") for c in citations):
        return sorted(
            (n, int(span["start"]), int(span["end"]))
            for n, c in enumerate(citations)
            for span in c.get("spans") or []
        )
    found = []
    for match in MARKER.finditer(content):
        for part in match.group(1).split(","):
            n = int(part) - 1
            if 0 <= n < len(citations):
                found.append((n, match.start(), match.end()))
    return found


def url_citations(
    content: str, citations: Sequence[dict[str, Any]], base_url: str
) -> list[Annotation]:
    """OpenAI `url_citation` annotations; each URL is the cited document in ragq's API."""
    return [
        Annotation(
            url_citation=UrlCitation(
                start_index=start,
                end_index=end,
                title=citations[n].get("title") or citations[n]["document_id"],
                url=f"{base_url}/v1/documents/{quote(citations[n]['document_id'], safe='')}",
            )
        )
        for n, start, end in citation_spans(content, citations)
    ]


def _usage(result: AnswerResult) -> CompletionUsage:
    prompt = result.usage.prompt_tokens if result.usage else 0
    completion = result.usage.completion_tokens if result.usage else 0
    return CompletionUsage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def _finish_reason(result: AnswerResult) -> str:
    return "length" if result.finish_reason == "length" else "stop"


def _text(message: ChatMessage, at: int) -> str:
    """A message's text; 400 for a part that is not text."""
    if message.content is None:
        if message.role == "assistant":
            return ""
        raise ApiError(400, "invalid_message", f"messages[{at}]: content is required")
    if isinstance(message.content, str):
        return message.content
    texts = []
    for n, part in enumerate(message.content):
        if part.type != "text" or part.text is None:
            raise ApiError(
                400,
                "unsupported_content",
                f"messages[{at}].content[{n}]: only text parts are supported, not {part.type!r}",
            )
        texts.append(part.text)
    return "\n".join(texts)


class ChatService:
    """Runs chat completions as answer jobs."""

    def __init__(self, jobs: JobService, store: AsyncJobStore, settings: Settings) -> None:
        self.jobs = jobs
        self.store = store
        self.settings = settings

    @staticmethod
    def models() -> ModelList:
        """The models clients may name."""
        names = (CHAT_MODEL, EMBEDDING_MODEL)
        return ModelList(data=[ModelCard(id=name, created=STARTED) for name in names])

    @classmethod
    def model(cls, name: str) -> ModelCard:
        """One model, or the OpenAI-style 404 `model_not_found`."""
        for card in cls.models().data:
            if card.id == name:
                return card
        raise ApiError(404, "model_not_found", f"the model {name!r} does not exist")

    def conversation(self, messages: Sequence[ChatMessage]) -> tuple[str, list[Turn], str]:
        """The last question, the earlier user and assistant turns, the client's instructions."""
        texts = [_text(m, n) for n, m in enumerate(messages)]
        total = sum(len(t) for t in texts)
        if total > self.settings.max_conversation_chars:
            raise ApiError(
                400,
                "conversation_too_long",
                f"the messages hold {total} characters; at most "
                f"{self.settings.max_conversation_chars} (RAGQ_MAX_CONVERSATION_CHARS)",
            )
        if messages[-1].role != "user":
            raise ApiError(
                400, "last_message_not_user", "the last message must be the user's question"
            )
        question = texts[-1].strip()
        if not question:
            raise ApiError(400, "empty_question", "the last user message is empty")
        if len(question) > self.settings.max_question_chars:
            raise ApiError(
                400,
                "question_too_long",
                f"the last user message is limited to {self.settings.max_question_chars} "
                "characters",
            )
        instructions = [
            t for m, t in zip(messages, texts, strict=True) if m.role in ("system", "developer")
        ]
        history = [
            Turn(role=m.role, content=t)  # type: ignore[arg-type]
            for m, t in zip(messages[:-1], texts[:-1], strict=True)
            if m.role in ("user", "assistant") and t.strip()
        ]
        return question, history, "\n\n".join(t for t in instructions if t.strip())

    async def start(self, tenant: str, access: Access, body: ChatCompletionIn) -> tuple[str, float]:
        """Queue the answer job of a completion (retrieving from what `access` reads); its id
        and its deadline in seconds."""
        self.model(body.model)
        if body.model != CHAT_MODEL:
            raise ApiError(400, "invalid_model", f"{body.model!r} is not a chat model")
        question, history, instructions = self.conversation(body.messages)
        options = body.ragq or RagqOptions()
        answer = AnswerIn.model_construct(
            question=question,
            top_k=options.top_k,
            mode=options.mode,
            filter=options.filter,
            deadline_s=options.deadline_s,
            webhook_url=options.webhook_url,
            min_relevance=options.min_relevance,
        )
        sampling: dict[str, Any] = {
            "max_tokens": body.max_completion_tokens or body.max_tokens,
            "temperature": body.temperature,
            "top_p": body.top_p,
            "stop": [body.stop] if isinstance(body.stop, str) else body.stop,
            "seed": body.seed,
        }
        extra = {
            "history": conversation.dumps(history),
            "instructions": instructions,
            "sampling": json.dumps({k: v for k, v in sampling.items() if v is not None}),
        }
        if body.user:
            extra["user"] = body.user
        accepted = await self.jobs.submit_answer(tenant, access, answer, extra)
        deadline = min(
            options.deadline_s or self.settings.answer_deadline_s,
            self.settings.answer_deadline_s,
        )
        return accepted.job_id, deadline

    async def complete(
        self,
        tenant: str,
        job_id: str,
        deadline_s: float,
        model: str,
        base_url: str,
        receive: Receive,
    ) -> ChatCompletion:
        """Wait for the job (up to its deadline) and answer its result as a `chat.completion`.

        A client that goes away while it waits cancels the job, as one that leaves a stream does.
        """
        try:
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    # The body was read: what the server sends next is the client's disconnect.
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    await self.store.cancel(job_id, LEFT)
                    group.cancel_scope.cancel()

                group.start_soon(watch)
                with anyio.move_on_after(deadline_s + WAIT_GRACE_S) as waiting:
                    async for _ in self.store.events(job_id):
                        pass
                group.cancel_scope.cancel()
        except BaseExceptionGroup as failed:
            # One error (Redis unreachable) goes to its own handler, not wrapped in the group.
            if len(failed.exceptions) == 1:
                raise failed.exceptions[0] from None
            raise
        if waiting.cancelled_caught:
            await self.store.cancel(job_id, ErrorInfo(code="deadline_exceeded", message="timeout"))
            raise ApiError(504, "deadline_exceeded", "the answer was not ready in time")
        record = await self.jobs.get(tenant, job_id)
        result = self._result(record)
        return ChatCompletion(
            id=f"chatcmpl-{job_id}",
            created=int(time.time()),
            model=model,
            choices=[
                Choice(
                    message=AssistantMessage(
                        content=result.answer,
                        annotations=url_citations(
                            result.answer, (record.result or {})["citations"], base_url
                        ),
                    ),
                    finish_reason=_finish_reason(result),  # type: ignore[arg-type]
                )
            ],
            usage=_usage(result),
            citations=result.citations,
        )

    @staticmethod
    def _result(record: JobRecord) -> AnswerResult:
        """The answer of a succeeded job; the job's error, as an ApiError, otherwise."""
        if record.status is JobStatus.SUCCEEDED and record.result is not None:
            return AnswerResult.model_validate(record.result)
        error = record.error or ErrorInfo(code=f"job_{record.status.value}", message="no answer")
        if record.status is JobStatus.CANCELLED:
            raise ApiError(409, "job_cancelled", f"the answer job was cancelled: {error.message}")
        raise ApiError(FAILURE_STATUS.get(error.code, 502), error.code, error.message)

    async def stream(
        self,
        tenant: str,
        job_id: str,
        model: str,
        include_usage: bool,
        base_url: str,
    ) -> AsyncIterator[str]:
        """`chat.completion.chunk` events of the job as it runs, then `[DONE]`.

        The text streams as the llm worker writes it; annotations, the citations extension and
        the finish reason come once, in the last chunk, then the usage chunk if asked for. If
        the client goes away first, the job is cancelled (and its generation aborted).
        """
        created = int(time.time())

        def chunk(delta: Delta, **fields: Any) -> str:
            choices = [ChunkChoice(delta=delta, finish_reason=fields.pop("finish_reason", None))]
            body = ChatCompletionChunk(
                id=f"chatcmpl-{job_id}",
                created=created,
                model=model,
                choices=fields.pop("choices", choices),
                **fields,
            )
            data = body.model_dump(mode="json", exclude_none=True)
            if body.citations is not None:
                # Absent fields are left out of a chunk, but a citation keeps its nulls.
                data["citations"] = [c.model_dump(mode="json") for c in body.citations]
            return json.dumps(data, separators=(",", ":"))

        # The token chunks differ only in their text: the chunk is built once, not per token.
        token_chunk = json.loads(chunk(Delta(content="")))
        token_delta = token_chunk["choices"][0]["delta"]
        done = False
        try:
            yield chunk(Delta(role="assistant", content=""))
            async for event in self.store.events(job_id):
                if event.event == EventName.TOKEN.value:
                    token_delta["content"] = json.loads(event.data)["text"]
                    yield json.dumps(token_chunk, separators=(",", ":"))
            done = True
            record = await self.jobs.get(tenant, job_id)
            try:
                result = self._result(record)
            except ApiError as exc:
                yield openai_error(exc.status, exc.code, exc.message).model_dump_json()
            else:
                cited = (record.result or {})["citations"]
                yield chunk(
                    Delta(annotations=url_citations(result.answer, cited, base_url)),
                    finish_reason=_finish_reason(result),
                    citations=result.citations,
                )
                if include_usage:
                    yield chunk(Delta(), choices=[], usage=_usage(result))
            yield "[DONE]"
        finally:
            if not done:
                # The client went away (the stream is being cancelled): shielded, the
                # cancellation still reaches Redis, and the llm worker aborts the generation.
                with anyio.CancelScope(shield=True):
                    await self.store.cancel(job_id, LEFT)
