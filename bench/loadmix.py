"""The open-loop traffic of the load benchmark: each kind of request on its own seeded Poisson
schedule, sent when it is due whatever the earlier ones are doing.

Kinds: `document` (one SciFact abstract as text; a share are new versions of an earlier one,
`update`), `batch` (several abstracts as files in one multipart upload, a job each), `answer`
(a SciFact claim; a share streamed for their time to first token, a share cancelled a moment
after they were accepted), `search` (a claim, answered in the request). Document, batch and
answer requests ask for a webhook on a share of their jobs.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ragq_client import AsyncClient, DoneEvent, JobRecord, RagqError, RetryPolicy, TokenEvent
from ragq_client.errors import ApiError
from ragq_client.retry import RETRIED_CODES, RETRIED_STATUSES

JOB_KINDS = ("document", "update", "batch", "answer")
KINDS = (*JOB_KINDS, "search")


@dataclass(frozen=True)
class Mix:
    """Arrival rates (per second) and the shares of requests that do something more."""

    documents: float = 0.5
    batches: float = 0.05
    batch_files: int = 5
    searches: float = 1.0
    answers: float = 0.3
    update_share: float = 0.1
    cancel_share: float = 0.1
    webhook_share: float = 0.2
    stream_share: float = 1.0
    top_k: int = 3


@dataclass
class Job:
    """A job the traffic created: its kind, when its request left (epoch seconds), and what
    the benchmark learnt about it."""

    job_id: str
    kind: str
    sent: float
    webhook: bool
    document_id: str | None = None
    cancel: bool = False
    streamed: bool = False
    ttft_s: float | None = None
    record: JobRecord | None = None


@dataclass(frozen=True)
class CountingRetry(RetryPolicy):
    """The client's retry policy, counting by code every refusal (an answer the client retries:
    429, 502, 503, a request with the same key in progress) and every connection error."""

    refusals: Counter[str] = field(default_factory=Counter, compare=False, hash=False)

    def after_status(self, error: ApiError, attempt: int) -> float | None:
        """Count a refusal, then decide as the client does."""
        if error.status in RETRIED_STATUSES or error.code in RETRIED_CODES:
            self.refusals[f"{error.status} {error.code}"] += 1
        return super().after_status(error, attempt)

    def after_error(self, error: httpx.TransportError, attempt: int, resend: bool) -> float | None:
        """Count the connection error, then decide as the client does."""
        self.refusals[f"transport {type(error).__name__}"] += 1
        return super().after_error(error, attempt, resend)


def arrivals(rate: float, seconds: float, rng: random.Random) -> list[float]:
    """Poisson arrival times (seconds from the start) at `rate` per second, below `seconds`."""
    times: list[float] = []
    if rate <= 0:
        return times
    t = rng.expovariate(rate)
    while t < seconds:
        times.append(t)
        t += rng.expovariate(rate)
    return times


def quantile(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank) of the values; None if there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


@dataclass
class Traffic:
    """Sends the mix for `seconds` and remembers every job and every outcome."""

    clients: dict[str, AsyncClient]
    policies: dict[str, CountingRetry]
    mix: Mix
    abstracts: list[dict[str, str]]
    claims: list[str]
    files: Path
    webhook_url: str
    seed: int
    jobs: list[Job] = field(default_factory=list)
    errors: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    sent: Counter[str] = field(default_factory=Counter)
    search_s: list[float] = field(default_factory=list)
    cancels: Counter[str] = field(default_factory=Counter)
    stream_errors: Counter[str] = field(default_factory=Counter)
    late_s: float = 0.0
    _next_abstract: int = 0
    _documents: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self, seconds: float) -> None:
        """Send every kind on its schedule for `seconds`; returns when the last one was sent
        (requests still in flight keep going: `settle` waits for them)."""
        m = self.mix
        plans: list[tuple[str, float, Callable[[random.Random], Coroutine[Any, Any, None]]]] = [
            ("document", m.documents, self._document),
            ("batch", m.batches, self._batch),
            ("search", m.searches, self._search),
            ("answer", m.answers, self._answer),
        ]
        start = time.monotonic()
        await asyncio.gather(
            *(self._fire(kind, rate, seconds, start, op) for kind, rate, op in plans)
        )

    async def settle(self, timeout: float) -> None:
        """Wait (up to `timeout`) for requests still in flight, streams and cancels included."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout)
        for task in self._tasks:
            task.cancel()

    async def _fire(
        self,
        kind: str,
        rate: float,
        seconds: float,
        start: float,
        op: Callable[[random.Random], Coroutine[Any, Any, None]],
    ) -> None:
        rng = random.Random(f"{self.seed}-{kind}")
        for at in arrivals(rate, seconds, rng):
            delay = start + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                self.late_s = max(self.late_s, -delay)
            # Each request draws its choices now, so a seed gives the same mix every run.
            choices = random.Random(rng.random())
            task = asyncio.create_task(op(choices))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _abstract(self) -> dict[str, str]:
        """The next abstract never sent (the corpus again, as new texts, once it runs out)."""
        n = self._next_abstract
        self._next_abstract += 1
        doc = self.abstracts[n % len(self.abstracts)]
        lap = n // len(self.abstracts)
        if lap == 0:
            return doc
        return {**doc, "_id": f"{doc['_id']}-{lap}", "text": f"{doc['text']} (copy {lap})"}

    def _hook(self, rng: random.Random) -> str | None:
        return self.webhook_url if rng.random() < self.mix.webhook_share else None

    def _failed(self, kind: str, exc: RagqError) -> None:
        code = f"{exc.status} {exc.code}" if isinstance(exc, ApiError) else type(exc).__name__
        self.errors[kind][code] += 1

    async def _document(self, rng: random.Random) -> None:
        hook = self._hook(rng)
        if self._documents and rng.random() < self.mix.update_share:
            kind = "update"
            document_id, doc = rng.choice(self._documents)
            text = f"{doc['text']}\n\nRevised {rng.randrange(10**9)}."
        else:
            kind = "document"
            doc = self._abstract()
            document_id, text = f"scifact-{doc['_id']}", doc["text"]
            self._documents.append((document_id, doc))
        self.sent[kind] += 1
        sent = time.time()
        try:
            job = await self.clients[kind].ingest_text(
                text, title=doc["title"], document_id=document_id, webhook_url=hook
            )
        except RagqError as exc:
            self._failed(kind, exc)
            return
        self.jobs.append(Job(job.job_id, kind, sent, hook is not None, job.document_id))

    async def _batch(self, rng: random.Random) -> None:
        hook = self._hook(rng)
        paths = []
        for _ in range(self.mix.batch_files):
            doc = self._abstract()
            path = self.files / f"{doc['_id']}.txt"
            path.write_text(f"{doc['title']}\n\n{doc['text']}", encoding="utf-8")
            paths.append(path)
        self.sent["batch"] += 1
        sent = time.time()
        try:
            batch = await self.clients["batch"].upload_batch(paths, webhook_url=hook)
        except RagqError as exc:
            self._failed("batch", exc)
            return
        for job in batch.jobs:
            self.jobs.append(Job(job.job_id, "batch", sent, hook is not None, job.document_id))

    async def _search(self, rng: random.Random) -> None:
        claim = rng.choice(self.claims)
        self.sent["search"] += 1
        sent = time.perf_counter()
        try:
            await self.clients["search"].search(claim, top_k=10)
        except RagqError as exc:
            self._failed("search", exc)
            return
        self.search_s.append(time.perf_counter() - sent)

    async def _answer(self, rng: random.Random) -> None:
        m = self.mix
        hook = self._hook(rng)
        claim = rng.choice(self.claims)
        cancel = rng.random() < m.cancel_share
        cancel_after = rng.uniform(0.0, 5.0)
        streamed = rng.random() < m.stream_share
        client = self.clients["answer"]
        self.sent["answer"] += 1
        sent = time.time()
        try:
            accepted = await client.submit_answer(claim, top_k=m.top_k, webhook_url=hook)
        except RagqError as exc:
            self._failed("answer", exc)
            return
        job = Job(accepted.job_id, "answer", sent, hook is not None, cancel=cancel)
        job.streamed = streamed
        self.jobs.append(job)
        steps: list[Awaitable[None]] = []
        if cancel:
            steps.append(self._cancel(job, cancel_after))
        if streamed:
            steps.append(self._stream(job))
        await asyncio.gather(*steps)

    async def _cancel(self, job: Job, after_s: float) -> None:
        await asyncio.sleep(after_s)
        try:
            record = await self.clients["cancel"].cancel(job.job_id)
        except RagqError as exc:
            code = f"{exc.status} {exc.code}" if isinstance(exc, ApiError) else type(exc).__name__
            self.cancels[code] += 1
            return
        self.cancels[record.status.value] += 1

    async def _stream(self, job: Job) -> None:
        stream = self.clients["stream"].events(job.job_id)
        try:
            async for event in stream:
                if isinstance(event, TokenEvent) and job.ttft_s is None:
                    job.ttft_s = time.time() - job.sent
                if isinstance(event, DoneEvent):
                    job.record = event.record
        except RagqError as exc:
            self.stream_errors[type(exc).__name__] += 1


def summary_of(values: list[float]) -> dict[str, Any]:
    """p50, p95 and p99 of durations in seconds, rounded."""
    return {
        f"p{int(q * 100)}": None if (v := quantile(values, q)) is None else round(v, 3)
        for q in (0.5, 0.95, 0.99)
    }
