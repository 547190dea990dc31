"""The `llm` queue: write the answer with the process's shared vLLM engine, streaming tokens."""

from __future__ import annotations

import functools
import json
import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from common import prompt
from common.attribution import attribute
from common.citations import MarkerRewriter
from common.contract import GENERATE_TASK
from common.schemas import AnswerResult, Citation, CitationMode, EventName, JobStatus, Usage
from common.settings import get_settings
from common.telemetry import LLM_TOKENS, LLM_TTFT
from workers import draining, engines
from workers.base import JobTask
from workers.celery_app import app
from workers.llm_engine import Delta, Generation


class Outcome(StrEnum):
    """How a streamed generation ended."""

    SUCCEEDED = "succeeded"
    CANCELLED = "cancelled"
    DEADLINE_EXCEEDED = "deadline_exceeded"


# The longest a task goes without reading or writing its job record: how soon it notices that
# the job was cancelled, or that the worker is stopping, while no text is flowing.
STATUS_CHECK_S = 0.5


@dataclass
class Streamer:
    """Moves one generation's deltas to the job's event stream.

    The first text goes out at once; after it, text is flushed at most every `interval`
    seconds, so that many answers streaming together cost Redis, the API and the client one
    event per interval each rather than one per token. `prefill`, the start of the answer that
    the prompt wrote for the model, goes out with the model's first text.
    """

    job_id: str
    generation: Generation
    deadline: float
    rewriter: MarkerRewriter
    interval: float
    prefill: str = ""
    started: float = field(default_factory=time.monotonic)
    parts: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    ttft_s: float | None = None
    completion_tokens: int = 0
    prompt_tokens: int = 0
    finish_reason: str | None = None

    def run(self) -> Outcome:
        """Stream until the answer is complete, the job is no longer running, or the deadline."""
        store = engines.job_store()
        last_flush = -math.inf  # nothing streamed yet: the first text is not held back
        last_contact = self.started
        while True:
            if draining.stopping():
                self.generation.abort()
                draining.check()
            remaining = self.deadline - time.time()
            if remaining <= 0:
                self.generation.abort()
                return Outcome.DEADLINE_EXCEEDED
            now = time.monotonic()
            wake = last_contact + STATUS_CHECK_S
            if self.pending:
                wake = min(wake, last_flush + self.interval)
            delta = self.generation.next(timeout=max(0.0, min(wake - now, remaining)))
            if delta is not None:
                self._take(delta)
            now = time.monotonic()
            finished = delta is not None and delta.finished
            if finished or (self.pending and now - last_flush >= self.interval):
                text = self.rewriter.feed("".join(self.pending))
                if finished:
                    text += self.rewriter.finish()
                self.pending.clear()
                if text:
                    last_flush = last_contact = now
                    if not store.emit(self.job_id, EventName.TOKEN, {"text": text}):
                        self.generation.abort()
                        return Outcome.CANCELLED
                    self.parts.append(text)
            elif now - last_contact >= STATUS_CHECK_S:
                last_contact = now
                if store.status(self.job_id) is not JobStatus.RUNNING:
                    self.generation.abort()
                    return Outcome.CANCELLED
            if finished:
                return Outcome.SUCCEEDED

    def _take(self, delta: Delta) -> None:
        if self.prefill and (delta.text or delta.finished):
            self.pending.append(self.prefill)
            self.prefill = ""
        if delta.text:
            if self.ttft_s is None:
                self.ttft_s = time.monotonic() - self.started
                LLM_TTFT.observe(self.ttft_s)
            self.pending.append(delta.text)
        self.completion_tokens += delta.tokens
        LLM_TOKENS.inc(delta.tokens)
        self.prompt_tokens = delta.prompt_tokens
        if delta.finish_reason:
            self.finish_reason = delta.finish_reason

    def usage(self) -> Usage:
        """Token counts and timings of the generation."""
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            ttft_s=self.ttft_s,
            total_s=time.monotonic() - self.started,
        )


@app.task(name=GENERATE_TASK, bind=True, base=JobTask)
def generate(
    self: JobTask,
    job_id: str,
    prompt_ids: list[int],
    citations: list[dict[str, Any]],
    fields: dict[str, str] | None = None,
) -> None:
    """Generate a running answer job's answer from its rendered prompt, streaming the tokens.

    `fields` (the record's GENERATION_FIELDS) start the engine on the prompt before the job is
    claimed, so the claim's round trip overlaps the prompt's prefill; a message without them (sent
    by an older query worker) claims first. A claim that fails aborts the generation.
    """
    store = engines.job_store()
    claim = functools.partial(
        store.claim, job_id, worker=self.request.hostname or "?", handoff=True
    )
    raw = None if fields else claim()
    job = fields or raw
    if job is None:
        return
    settings = get_settings()
    deadline_s = float(job.get("deadline_s") or settings.answer_deadline_s)
    deadline = datetime.fromisoformat(job["created_at"]).timestamp() + deadline_s
    if time.time() >= deadline:
        if raw is not None or claim() is not None:
            store.fail(job_id, "deadline_exceeded", "the answer was not ready before its deadline")
        return
    # A chat completion's own sampling options (max_tokens, temperature, top_p, stop, seed).
    sampling: dict[str, Any] = json.loads(job.get("sampling") or "{}")
    max_tokens = min(
        sampling.pop("max_tokens", None) or settings.llm_max_tokens, settings.llm_max_tokens
    )
    temperature = sampling.pop("temperature", None)
    passages = [Citation.model_validate(c) for c in citations]
    # A quoted answer's passages are those it may quote (the query worker kept only those).
    grammar = (
        prompt.quote_grammar(job["question"], passages, max_tokens) if prompt.quoting(job) else None
    )
    started = time.monotonic()
    # Unique per submission: a late duplicate of this message must not abort this generation.
    generation = engines.llm().submit(
        f"{job_id}-{uuid.uuid4().hex[:12]}",
        prompt_ids,
        max_tokens,
        settings.llm_temperature if temperature is None else temperature,
        sampling,
        grammar,
    )
    if raw is None:
        try:
            raw = claim()
        except BaseException:
            generation.abort()
            raise
        if raw is None:
            generation.abort()
            return
    # The answer's start that the prompt wrote for the model (the same rule as the prompt's).
    start = prompt.prefill(passages)
    streamer = Streamer(
        job_id,
        generation,
        deadline,
        MarkerRewriter(len(passages)),
        settings.llm_stream_interval_s,
        start,
        started,
    )
    outcome = streamer.run()
    if outcome is Outcome.DEADLINE_EXCEEDED:
        store.fail(job_id, outcome.value, f"the answer took longer than {deadline_s:g} s")
    elif outcome is Outcome.SUCCEEDED:
        answer = "".join(streamer.parts)
        mode = CitationMode(raw.get("citation_mode") or settings.citation_mode)
        attribution = attribute(
            answer,
            passages,
            streamer.rewriter.order,
            mode,
            settings.attribution_min_support,
            len(start),
        )
        result = AnswerResult(
            answer=answer,
            citations=attribution.citations,
            unsupported=attribution.unsupported,
            citation_mode=mode,
            usage=streamer.usage(),
            finish_reason=streamer.finish_reason,
        )
        store.emit(job_id, EventName.CITATIONS, [c.model_dump() for c in result.citations])
        store.progress(job_id, 2, 2)
        store.finish(job_id, JobStatus.SUCCEEDED, result=result.model_dump())
