"""What the sync and async clients share: configuration, the requests of each method, and the
bookkeeping of waits and uploads. Only sending and sleeping differ between the two."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from ragq_client._version import __version__
from ragq_client.errors import ApiError, WaitTimeout
from ragq_client.events import position
from ragq_client.files import Skipped
from ragq_client.models import (
    AnswerIn,
    BatchStatus,
    CitationMode,
    DocumentIn,
    DocumentPatch,
    JobAccepted,
    JobRecord,
    SearchFilter,
    SearchFusion,
    SearchIn,
    SearchMode,
)
from ragq_client.retry import RetryPolicy

M = TypeVar("M", bound=BaseModel)
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 60.0
# A stream's read timeout: the server pings every 15 s, so a silence this long is a dead
# connection, which is then resumed.
STREAM_READ_TIMEOUT_S = 45.0
# Consecutive failed reconnections after which a stream gives up.
STREAM_RECONNECTS = 8
DEFAULT_MAX_FILE_BYTES = 20 * 2**20
Files = Callable[[ExitStack], list[tuple[str, Any]]]


@dataclass(frozen=True)
class Call:
    """One API request, as every try of it sends it."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    data: Mapping[str, str] | None = None
    # Opens the multipart files anew for each try; the stack closes them after it.
    files: Files | None = None
    # Sent on every try of a job-creating POST, so that the server creates the job only once.
    idempotency_key: str | None = None
    # Whether to send it again after a connection error, when the server may have received it.
    resend: bool = True

    def headers(self) -> dict[str, str]:
        """This request's own headers."""
        return {"Idempotency-Key": self.idempotency_key} if self.idempotency_key else {}


@dataclass(frozen=True)
class WaitProgress:
    """How far the jobs being waited for are: finished of total, and chunks done."""

    finished: int
    total: int
    chunks: int


@dataclass(frozen=True)
class Uploaded:
    """A file sent by `ingest`, the job it got, and its batch."""

    path: Path
    job: JobAccepted
    batch_id: str


@dataclass
class Ingestion:
    """What `ingest` did: each file sent and its job, the files skipped and why, and (after
    `wait=True`) each job's final record by job id."""

    uploads: list[Uploaded] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    records: dict[str, JobRecord] = field(default_factory=dict)

    @property
    def batch_ids(self) -> list[str]:
        """The batches, in the order they were sent."""
        return list(dict.fromkeys(u.batch_id for u in self.uploads))

    def record(self, upload: Uploaded) -> JobRecord | None:
        """The final record of an upload's job, once waited for."""
        return self.records.get(upload.job.job_id)


ProgressCallback = Callable[[WaitProgress], None]


def new_key() -> str:
    """A fresh Idempotency-Key."""
    return f"ragq-client-{uuid.uuid4()}"


def resolve(base_url: str | None, api_key: str | None) -> tuple[str, str]:
    """The base URL and key: the arguments, else RAGQ_BASE_URL and RAGQ_API_KEY."""
    url = base_url or os.environ.get("RAGQ_BASE_URL") or DEFAULT_BASE_URL
    key = api_key if api_key is not None else os.environ.get("RAGQ_API_KEY", "")
    return url.rstrip("/"), key


def client_options(
    base_url: str, api_key: str, timeout: float | httpx.Timeout, headers: Mapping[str, str] | None
) -> dict[str, Any]:
    """Keyword arguments of the httpx client both clients wrap."""
    sent = {"User-Agent": f"ragq-client/{__version__}", **(headers or {})}
    if api_key:
        sent["Authorization"] = f"Bearer {api_key}"
    return {"base_url": base_url, "timeout": timeout, "headers": sent}


def stream_timeout(timeout: httpx.Timeout) -> httpx.Timeout:
    """The client's timeout with the read timeout of an event stream."""
    return httpx.Timeout(
        connect=timeout.connect, read=STREAM_READ_TIMEOUT_S, write=timeout.write, pool=timeout.pool
    )


def parsed(response: httpx.Response, model: type[M]) -> M:
    """The response's JSON body as the model."""
    return model.model_validate_json(response.content)


def groups(files: Sequence[Path], size: int) -> Iterator[list[Path]]:
    """The files in groups of at most `size`."""
    for start in range(0, len(files), size):
        yield list(files[start : start + size])


def job_progress(records: Iterable[JobRecord], total: int) -> WaitProgress:
    """Progress of jobs from their latest records."""
    seen = list(records)
    finished = sum(r.status.finished for r in seen)
    return WaitProgress(finished, total, sum(r.progress.done for r in seen))


def batch_progress(summaries: Iterable[BatchStatus], total: int) -> WaitProgress:
    """Progress of batches from their latest summaries."""
    seen = list(summaries)
    finished = sum(n for s in seen for k, n in s.counts.items() if k in FINISHED)
    return WaitProgress(finished, total, sum(s.progress.done for s in seen))


FINISHED = frozenset({"succeeded", "failed", "cancelled"})


# The requests of the API's methods.


def submit_text(
    text: str,
    title: str | None,
    metadata: Mapping[str, Any] | None,
    document_id: str | None,
    webhook_url: str | None,
    key: str | None,
    access_groups: Sequence[str] | None = None,
) -> Call:
    """`POST /v1/documents` with a JSON body."""
    body = DocumentIn(
        text=text,
        title=title,
        metadata=dict(metadata) if metadata is not None else None,
        document_id=document_id,
        webhook_url=webhook_url,
        access_groups=list(access_groups) if access_groups is not None else None,
    )
    return Call(
        "POST",
        "/v1/documents",
        json=body.model_dump(exclude_none=True),
        idempotency_key=key or new_key(),
    )


def submit_bytes(
    data: bytes,
    filename: str,
    title: str | None,
    metadata: Mapping[str, Any] | None,
    document_id: str | None,
    webhook_url: str | None,
    key: str | None,
    access_groups: Sequence[str] | None = None,
) -> Call:
    """`POST /v1/documents` with one multipart file."""
    fields = {"title": title, "document_id": document_id, "webhook_url": webhook_url}
    form = {k: v for k, v in fields.items() if v is not None}
    if metadata is not None:
        form["metadata"] = json.dumps(dict(metadata))
    if access_groups is not None:
        form["access_groups"] = json.dumps(list(access_groups))
    return Call(
        "POST",
        "/v1/documents",
        data=form,
        files=lambda _: [("file", (filename, data))],
        idempotency_key=key or new_key(),
    )


def submit_batch(paths: Sequence[Path], webhook_url: str | None, key: str | None) -> Call:
    """`POST /v1/documents:batch` of these files."""

    def opened(stack: ExitStack) -> list[tuple[str, Any]]:
        return [("files", (p.name, stack.enter_context(p.open("rb")))) for p in paths]

    return Call(
        "POST",
        "/v1/documents:batch",
        data={"webhook_url": webhook_url} if webhook_url else None,
        files=opened,
        idempotency_key=key or new_key(),
    )


def submit_answer(
    question: str,
    top_k: int | None,
    mode: SearchMode | str | None,
    filter: SearchFilter | Mapping[str, Any] | None,
    deadline_s: float | None,
    min_relevance: float | None,
    webhook_url: str | None,
    key: str | None,
    citation_mode: CitationMode | str | None = None,
    quote: bool | None = None,
) -> Call:
    """`POST /v1/answers`."""
    fields: dict[str, Any] = {
        "question": question,
        "top_k": top_k,
        "mode": mode,
        "filter": filter,
        "deadline_s": deadline_s,
        "min_relevance": min_relevance,
        "webhook_url": webhook_url,
        "citation_mode": citation_mode,
        "quote": quote,
    }
    body = AnswerIn.model_validate({k: v for k, v in fields.items() if v is not None})
    return Call(
        "POST",
        "/v1/answers",
        json=body.model_dump(mode="json", exclude_none=True, exclude_unset=True),
        idempotency_key=key or new_key(),
    )


def search(
    query: str,
    top_k: int | None,
    mode: SearchMode | str | None,
    filter: SearchFilter | Mapping[str, Any] | None,
    fusion: SearchFusion | str | None,
) -> Call:
    """`POST /v1/search` (it creates nothing, so it is safe to send again)."""
    fields = {"query": query, "top_k": top_k, "mode": mode, "filter": filter, "fusion": fusion}
    body = SearchIn.model_validate({k: v for k, v in fields.items() if v is not None})
    body_json = body.model_dump(mode="json", exclude_none=True, exclude_unset=True)
    return Call("POST", "/v1/search", json=body_json)


def reindex(document_id: str, key: str | None) -> Call:
    """`POST /v1/documents/{id}:reindex`."""
    return Call(
        "POST", f"/v1/documents/{segment(document_id)}:reindex", idempotency_key=key or new_key()
    )


def reindex_all(key: str | None) -> Call:
    """`POST /v1/documents:reindex`."""
    return Call("POST", "/v1/documents:reindex", idempotency_key=key or new_key())


def set_access_groups(document_id: str, groups: Sequence[str]) -> Call:
    """`PATCH /v1/documents/{id}`: the document's new access groups."""
    body = DocumentPatch(access_groups=list(groups))
    return Call("PATCH", f"/v1/documents/{segment(document_id)}", json=body.model_dump())


def delete_document(document_id: str) -> Call:
    """`DELETE /v1/documents/{id}`: a delete while one runs answers the same job."""
    return Call("DELETE", f"/v1/documents/{segment(document_id)}")


def get(path: str, **params: Any) -> Call:
    """A GET, without the parameters that are None."""
    return Call("GET", path, params={k: v for k, v in params.items() if v is not None})


def once(method: str, path: str) -> Call:
    """A request that must not run twice: sent again only if it never left."""
    return Call(method, path, resend=False)


def segment(value: str) -> str:
    """An id as one path segment, escaped."""
    return quote(value, safe="")


# Waiting and streaming.

STREAM_RETRIED = frozenset({429, 502, 503})


def deadline(timeout: float | None) -> float | None:
    """The monotonic time a wait of `timeout` seconds ends; None: never."""
    return None if timeout is None else time.monotonic() + timeout


def check(deadline: float | None, what: str) -> None:
    """Raise `WaitTimeout` once the deadline passed."""
    if deadline is not None and time.monotonic() >= deadline:
        raise WaitTimeout(f"{what} did not finish in time")


def seen(event_id: str, last_event_id: str | None) -> bool:
    """Whether an event came before or at the last one read (a repeat after a reconnect)."""
    return bool(event_id and last_event_id) and position(event_id) <= position(last_event_id)


def reconnect_delay(policy: RetryPolicy, failures: int, problem: object) -> float:
    """Seconds to wait before reconnecting a stream: a Retry-After, or the backoff."""
    if isinstance(problem, ApiError) and problem.retry_after is not None:
        return min(problem.retry_after, policy.max_retry_after_s)
    return policy.backoff(failures)
