"""`Client`: the ragq API from synchronous code."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, overload

import httpx
from httpx_sse import connect_sse
from pydantic import BaseModel

from ragq_client import _base as base
from ragq_client.errors import (
    ConnectionFailed,
    JobFailed,
    PayloadTooLarge,
    StreamLost,
    from_response,
)
from ragq_client.events import AnyEvent, DoneEvent, parse
from ragq_client.files import Skipped, select
from ragq_client.models import (
    Answer,
    BatchAccepted,
    BatchStatus,
    CitationMode,
    DeliveryLog,
    DocumentInfo,
    DocumentList,
    Health,
    JobAccepted,
    JobKind,
    JobList,
    JobRecord,
    JobStatus,
    SearchFilter,
    SearchFusion,
    SearchMode,
    SearchOut,
    UsageGroup,
    UsageOut,
    WebhookSecret,
)
from ragq_client.retry import RetryPolicy

M = TypeVar("M", bound=BaseModel)
PathLike = str | os.PathLike[str]


class Client:
    """A synchronous ragq client: `Client(base_url, api_key)`, or from RAGQ_BASE_URL and
    RAGQ_API_KEY. Job-creating POSTs carry an Idempotency-Key, so every request is retried
    on 429, 503 and connection errors (see `RetryPolicy`) without creating a job twice."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = base.DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url, api_key = base.resolve(base_url, api_key)
        self.retry = retry or RetryPolicy()
        options = base.client_options(self.base_url, api_key, timeout, headers)
        self._http = httpx.Client(transport=transport, **options)

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # Sending.

    def _send(self, call: base.Call) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                with ExitStack() as stack:
                    response = self._http.request(
                        call.method,
                        call.path,
                        params=call.params,
                        json=call.json,
                        data=call.data,
                        files=call.files(stack) if call.files else None,
                        headers=call.headers(),
                    )
            except httpx.TransportError as exc:
                delay = self.retry.after_error(exc, attempt, call.resend)
                if delay is None:
                    raise ConnectionFailed(
                        f"cannot reach the API at {self.base_url}: {exc}"
                    ) from exc
            else:
                if response.is_success:
                    return response
                error = from_response(response)
                delay = self.retry.after_status(error, attempt)
                if delay is None:
                    raise error
            time.sleep(delay)

    def _call(self, call: base.Call, model: type[M]) -> M:
        return base.parsed(self._send(call), model)

    # Documents.

    def ingest(
        self,
        paths: PathLike | Iterable[PathLike],
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        max_file_bytes: int = base.DEFAULT_MAX_FILE_BYTES,
        batch_size: int = 50,
        webhook_url: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
        poll_s: float = 0.5,
        on_upload: Callable[[int, int], None] | None = None,
        on_progress: base.ProgressCallback | None = None,
    ) -> base.Ingestion:
        """Send files and the readable files under folders (hidden ones aside) as batches.

        `on_upload(sent, total)` is called as each group of files is sent; with `wait=True`, the
        jobs are followed (`on_progress`) and their final records kept. A file the server finds
        too large is skipped, as are the ones `select` leaves out (see `Ingestion.skipped`).
        """
        given = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
        selection = select([Path(p) for p in given], max_file_bytes, include, exclude)
        done = base.Ingestion(skipped=list(selection.skipped))
        sent = 0
        for group in base.groups(selection.files, batch_size):
            done.uploads += self._upload(group, webhook_url, done.skipped)
            sent += len(group)
            if on_upload:
                on_upload(sent, len(selection.files))
        if wait and done.uploads:
            statuses = self.wait_batches(
                done.batch_ids, timeout=timeout, poll_s=poll_s, on_progress=on_progress
            )
            done.records = {job.job_id: job for status in statuses for job in status.jobs}
        return done

    def _upload(
        self, paths: list[Path], webhook_url: str | None, skipped: list[Skipped]
    ) -> list[base.Uploaded]:
        try:
            accepted = self.upload_batch(paths, webhook_url=webhook_url)
        except PayloadTooLarge as exc:
            if len(paths) > 1:
                return [u for p in paths for u in self._upload([p], webhook_url, skipped)]
            skipped.append(Skipped(paths[0], f"refused by the server: {exc.code}: {exc.message}"))
            return []
        return [
            base.Uploaded(path, job, accepted.batch_id)
            for path, job in zip(paths, accepted.jobs, strict=True)
        ]

    def upload_batch(
        self,
        paths: Sequence[PathLike],
        *,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> BatchAccepted:
        """Send these files as one batch (one job per file)."""
        call = base.submit_batch([Path(p) for p in paths], webhook_url, idempotency_key)
        return self._call(call, BatchAccepted)

    @overload
    def ingest_text(
        self,
        text: str,
        *,
        title: str | None = ...,
        metadata: Mapping[str, Any] | None = ...,
        document_id: str | None = ...,
        webhook_url: str | None = ...,
        access_groups: Sequence[str] | None = ...,
        idempotency_key: str | None = ...,
        wait: Literal[False] = ...,
        timeout: float | None = ...,
        on_progress: base.ProgressCallback | None = ...,
    ) -> JobAccepted: ...
    @overload
    def ingest_text(
        self,
        text: str,
        *,
        title: str | None = ...,
        metadata: Mapping[str, Any] | None = ...,
        document_id: str | None = ...,
        webhook_url: str | None = ...,
        access_groups: Sequence[str] | None = ...,
        idempotency_key: str | None = ...,
        wait: Literal[True],
        timeout: float | None = ...,
        on_progress: base.ProgressCallback | None = ...,
    ) -> JobRecord: ...
    def ingest_text(
        self,
        text: str,
        *,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        document_id: str | None = None,
        webhook_url: str | None = None,
        access_groups: Sequence[str] | None = None,
        idempotency_key: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
        on_progress: base.ProgressCallback | None = None,
    ) -> JobAccepted | JobRecord:
        """Ingest a text (plain, Markdown or HTML); with `wait=True`, its final job record."""
        call = base.submit_text(
            text, title, metadata, document_id, webhook_url, idempotency_key, access_groups
        )
        return self._maybe_wait(self._call(call, JobAccepted), wait, timeout, on_progress)

    @overload
    def ingest_bytes(
        self,
        data: bytes,
        filename: str,
        *,
        title: str | None = ...,
        metadata: Mapping[str, Any] | None = ...,
        document_id: str | None = ...,
        webhook_url: str | None = ...,
        access_groups: Sequence[str] | None = ...,
        idempotency_key: str | None = ...,
        wait: Literal[False] = ...,
        timeout: float | None = ...,
        on_progress: base.ProgressCallback | None = ...,
    ) -> JobAccepted: ...
    @overload
    def ingest_bytes(
        self,
        data: bytes,
        filename: str,
        *,
        title: str | None = ...,
        metadata: Mapping[str, Any] | None = ...,
        document_id: str | None = ...,
        webhook_url: str | None = ...,
        access_groups: Sequence[str] | None = ...,
        idempotency_key: str | None = ...,
        wait: Literal[True],
        timeout: float | None = ...,
        on_progress: base.ProgressCallback | None = ...,
    ) -> JobRecord: ...
    def ingest_bytes(
        self,
        data: bytes,
        filename: str,
        *,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        document_id: str | None = None,
        webhook_url: str | None = None,
        access_groups: Sequence[str] | None = None,
        idempotency_key: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
        on_progress: base.ProgressCallback | None = None,
    ) -> JobAccepted | JobRecord:
        """Ingest a file's bytes (its name tells the format); with `wait=True`, its final job
        record."""
        call = base.submit_bytes(
            data,
            filename,
            title,
            metadata,
            document_id,
            webhook_url,
            idempotency_key,
            access_groups,
        )
        return self._maybe_wait(self._call(call, JobAccepted), wait, timeout, on_progress)

    def documents(self, *, offset: int = 0, limit: int = 100) -> DocumentList:
        """A page of the tenant's documents, oldest first."""
        return self._call(base.get("/v1/documents", offset=offset, limit=limit), DocumentList)

    def document(self, document_id: str) -> DocumentInfo:
        """One document."""
        return self._call(base.get(f"/v1/documents/{base.segment(document_id)}"), DocumentInfo)

    @overload
    def delete_document(
        self, document_id: str, *, wait: Literal[False] = ..., timeout: float | None = ...
    ) -> JobAccepted: ...
    @overload
    def delete_document(
        self, document_id: str, *, wait: Literal[True], timeout: float | None = ...
    ) -> JobRecord: ...
    def delete_document(
        self, document_id: str, *, wait: bool = False, timeout: float | None = None
    ) -> JobAccepted | JobRecord:
        """Remove a document (a `delete` job); with `wait=True`, its final record."""
        job = self._call(base.delete_document(document_id), JobAccepted)
        return self._maybe_wait(job, wait, timeout, None)

    @overload
    def set_access_groups(
        self,
        document_id: str,
        groups: Sequence[str],
        *,
        wait: Literal[False] = ...,
        timeout: float | None = ...,
    ) -> JobAccepted: ...
    @overload
    def set_access_groups(
        self,
        document_id: str,
        groups: Sequence[str],
        *,
        wait: Literal[True],
        timeout: float | None = ...,
    ) -> JobRecord: ...
    def set_access_groups(
        self,
        document_id: str,
        groups: Sequence[str],
        *,
        wait: bool = False,
        timeout: float | None = None,
    ) -> JobAccepted | JobRecord:
        """Change a document's access groups (an `access` job; no re-embedding); with
        `wait=True`, its final record."""
        job = self._call(base.set_access_groups(document_id, groups), JobAccepted)
        return self._maybe_wait(job, wait, timeout, None)

    @overload
    def reindex(
        self,
        document_id: str,
        *,
        wait: Literal[False] = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> JobAccepted: ...
    @overload
    def reindex(
        self,
        document_id: str,
        *,
        wait: Literal[True],
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> JobRecord: ...
    def reindex(
        self,
        document_id: str,
        *,
        wait: bool = False,
        timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> JobAccepted | JobRecord:
        """Re-embed a ready document's stored chunks; with `wait=True`, the final record."""
        job = self._call(base.reindex(document_id, idempotency_key), JobAccepted)
        return self._maybe_wait(job, wait, timeout, None)

    @overload
    def reindex_all(
        self,
        *,
        wait: Literal[False] = ...,
        timeout: float | None = ...,
        on_progress: base.ProgressCallback | None = ...,
        idempotency_key: str | None = ...,
    ) -> BatchAccepted: ...
    @overload
    def reindex_all(
        self,
        *,
        wait: Literal[True],
        timeout: float | None = ...,
        on_progress: base.ProgressCallback | None = ...,
        idempotency_key: str | None = ...,
    ) -> BatchStatus: ...
    def reindex_all(
        self,
        *,
        wait: bool = False,
        timeout: float | None = None,
        on_progress: base.ProgressCallback | None = None,
        idempotency_key: str | None = None,
    ) -> BatchAccepted | BatchStatus:
        """Re-embed every ready document, as one batch; with `wait=True`, its final status."""
        batch = self._call(base.reindex_all(idempotency_key), BatchAccepted)
        if not wait:
            return batch
        ids = [batch.batch_id]
        return self.wait_batches(ids, timeout=timeout, on_progress=on_progress)[0]

    def batch(self, batch_id: str, *, jobs: bool = True) -> BatchStatus:
        """Where a batch's jobs stand (`jobs=False`: counts only)."""
        call = base.get(f"/v1/batches/{base.segment(batch_id)}", jobs=str(jobs).lower())
        return self._call(call, BatchStatus)

    def wait_batches(
        self,
        batch_ids: Sequence[str],
        *,
        timeout: float | None = None,
        poll_s: float = 0.5,
        on_progress: base.ProgressCallback | None = None,
    ) -> list[BatchStatus]:
        """Wait until every job of the batches finished; their final statuses, with records.

        Jobs run in the order they were queued, so only the oldest unfinished batch is polled.
        """
        deadline = base.deadline(timeout)
        summaries = {b: self.batch(b, jobs=False) for b in batch_ids}
        total = sum(s.total for s in summaries.values())
        for batch_id in batch_ids:
            while True:
                if on_progress:
                    on_progress(base.batch_progress(summaries.values(), total))
                if summaries[batch_id].finished:
                    break
                base.check(deadline, f"batch {batch_id}")
                time.sleep(poll_s)
                summaries[batch_id] = self.batch(batch_id, jobs=False)
        return [self.batch(b) for b in batch_ids]

    # Answers and search.

    def submit_answer(
        self,
        question: str,
        *,
        top_k: int | None = None,
        mode: SearchMode | str | None = None,
        filter: SearchFilter | Mapping[str, Any] | None = None,
        deadline_s: float | None = None,
        min_relevance: float | None = None,
        citation_mode: CitationMode | str | None = None,
        quote: bool | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> JobAccepted:
        """Queue a question; its job (follow it with `wait`, `events` or a webhook)."""
        call = base.submit_answer(
            question,
            top_k,
            mode,
            filter,
            deadline_s,
            min_relevance,
            webhook_url,
            idempotency_key,
            citation_mode,
            quote,
        )
        return self._call(call, JobAccepted)

    @overload
    def ask(
        self,
        question: str,
        *,
        top_k: int | None = ...,
        mode: SearchMode | str | None = ...,
        filter: SearchFilter | Mapping[str, Any] | None = ...,
        deadline_s: float | None = ...,
        min_relevance: float | None = ...,
        citation_mode: CitationMode | str | None = ...,
        quote: bool | None = ...,
        idempotency_key: str | None = ...,
        timeout: float | None = ...,
        stream: Literal[False] = ...,
    ) -> Answer: ...
    @overload
    def ask(
        self,
        question: str,
        *,
        top_k: int | None = ...,
        mode: SearchMode | str | None = ...,
        filter: SearchFilter | Mapping[str, Any] | None = ...,
        deadline_s: float | None = ...,
        min_relevance: float | None = ...,
        citation_mode: CitationMode | str | None = ...,
        quote: bool | None = ...,
        idempotency_key: str | None = ...,
        timeout: float | None = ...,
        stream: Literal[True],
    ) -> EventStream: ...
    def ask(
        self,
        question: str,
        *,
        top_k: int | None = None,
        mode: SearchMode | str | None = None,
        filter: SearchFilter | Mapping[str, Any] | None = None,
        deadline_s: float | None = None,
        min_relevance: float | None = None,
        citation_mode: CitationMode | str | None = None,
        quote: bool | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        stream: bool = False,
    ) -> Answer | EventStream:
        """Ask a question: the finished answer (`JobFailed` if the job did not succeed), or
        with `stream=True` its events as they come (tokens, passages, citations, done),
        resumed with Last-Event-ID if the connection drops."""
        job = self.submit_answer(
            question,
            top_k=top_k,
            mode=mode,
            filter=filter,
            deadline_s=deadline_s,
            min_relevance=min_relevance,
            citation_mode=citation_mode,
            quote=quote,
            idempotency_key=idempotency_key,
        )
        if stream:
            return self.events(job.job_id)
        record = self.wait(job.job_id, timeout=timeout)
        if record.status != JobStatus.SUCCEEDED:
            raise JobFailed(record)
        return record.answer()

    def search(
        self,
        query: str,
        *,
        top_k: int | None = None,
        mode: SearchMode | str | None = None,
        filter: SearchFilter | Mapping[str, Any] | None = None,
        fusion: SearchFusion | str | None = None,
    ) -> SearchOut:
        """The tenant's best chunks for the query, best first."""
        return self._call(base.search(query, top_k, mode, filter, fusion), SearchOut)

    # Jobs.

    def job(self, job_id: str) -> JobRecord:
        """A job's current record."""
        return self._call(base.get(f"/v1/jobs/{base.segment(job_id)}"), JobRecord)

    def jobs(
        self,
        *,
        kind: JobKind | str | None = None,
        status: JobStatus | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobList:
        """A page of the tenant's jobs, newest first (`next_cursor` for the next page)."""
        call = base.get("/v1/jobs", kind=kind, status=status, limit=limit, cursor=cursor)
        return self._call(call, JobList)

    def usage(
        self,
        *,
        start: str | None = None,
        end: str | None = None,
        group_by: UsageGroup | str = UsageGroup.DAY,
    ) -> UsageOut:
        """The tenant's usage from `start` to `end` (UTC days YYYY-MM-DD; default the last 30),
        by day or by API key, and the chunks it stores now."""
        call = base.get("/v1/usage", **{"from": start, "to": end, "group_by": str(group_by)})
        return self._call(call, UsageOut)

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll_s: float = 0.5,
        on_progress: base.ProgressCallback | None = None,
    ) -> JobRecord:
        """Wait until the job finished (`WaitTimeout` after `timeout` seconds); its record."""
        return self.wait_jobs([job_id], timeout=timeout, poll_s=poll_s, on_progress=on_progress)[0]

    def wait_jobs(
        self,
        job_ids: Sequence[str],
        *,
        timeout: float | None = None,
        poll_s: float = 0.5,
        on_progress: base.ProgressCallback | None = None,
    ) -> list[JobRecord]:
        """Wait until every job finished; their final records, in the order given."""
        deadline = base.deadline(timeout)
        records: dict[str, JobRecord] = {}
        while True:
            for job_id in job_ids:
                if job_id not in records or not records[job_id].status.finished:
                    records[job_id] = self.job(job_id)
            if on_progress:
                on_progress(base.job_progress(records.values(), len(job_ids)))
            if all(r.status.finished for r in records.values()):
                return [records[j] for j in job_ids]
            base.check(
                deadline, "job " + ", ".join(j for j, r in records.items() if not r.status.finished)
            )
            time.sleep(poll_s)

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued or running job; its cancelled record."""
        return self._call(base.Call("DELETE", f"/v1/jobs/{base.segment(job_id)}"), JobRecord)

    def events(self, job_id: str, *, last_event_id: str | None = None) -> EventStream:
        """A job's events from the start (or after `last_event_id`), up to its `done` event."""
        return EventStream(self, job_id, last_event_id)

    def _maybe_wait(
        self,
        job: JobAccepted,
        wait: bool,
        timeout: float | None,
        on_progress: base.ProgressCallback | None,
    ) -> JobAccepted | JobRecord:
        if not wait:
            return job
        return self.wait(job.job_id, timeout=timeout, on_progress=on_progress)

    # Webhooks.

    def deliveries(self, job_id: str) -> DeliveryLog:
        """A job's webhook delivery attempts."""
        return self._call(base.get(f"/v1/jobs/{base.segment(job_id)}/deliveries"), DeliveryLog)

    def redeliver(self, job_id: str, attempt: int) -> DeliveryLog:
        """Send the event of delivery `attempt` again, now."""
        path = f"/v1/jobs/{base.segment(job_id)}/deliveries/{int(attempt)}:redeliver"
        return self._call(base.once("POST", path), DeliveryLog)

    def webhook_secret(self) -> str:
        """The secret that signs the tenant's webhooks (for `verify_webhook`)."""
        return self._call(base.get("/v1/webhooks/secret"), WebhookSecret).secret

    def rotate_webhook_secret(self) -> str:
        """A new signing secret (the previous one keeps signing for a grace period)."""
        return self._call(base.once("POST", "/v1/webhooks/secret:rotate"), WebhookSecret).secret

    # Health.

    def health(self) -> Health:
        """Readiness: Redis reachable and a live worker on each queue (`status` "ready")."""
        try:
            response = self._http.get("/readyz")
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"cannot reach the API at {self.base_url}: {exc}") from exc
        if response.status_code not in (200, 503):
            raise from_response(response)
        return base.parsed(response, Health)


class EventStream(Iterator[AnyEvent]):
    """A job's events as they come, ending with `done`; a dropped connection is resumed with
    Last-Event-ID, so each event (each token) arrives exactly once. `final` holds the job's
    final record once `done` arrived."""

    def __init__(self, client: Client, job_id: str, last_event_id: str | None = None) -> None:
        self.job_id = job_id
        self.last_event_id = last_event_id
        self.final: JobRecord | None = None
        self.reconnects = 0
        self._client = client
        self._events = self._run()

    def __next__(self) -> AnyEvent:
        return next(self._events)

    def __iter__(self) -> Self:
        return self

    def close(self) -> None:
        """Stop reading (closes the connection)."""
        self._events.close()

    def until_done(self) -> JobRecord:
        """Read the rest of the stream; the job's final record."""
        for _ in self:
            pass
        assert self.final is not None
        return self.final

    def _run(self) -> Generator[AnyEvent, None, None]:
        client = self._client
        path = f"/v1/jobs/{base.segment(self.job_id)}/events"
        timeout = base.stream_timeout(client._http.timeout)
        failures = 0
        while True:
            headers = {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}
            try:
                with connect_sse(
                    client._http, "GET", path, headers=headers, timeout=timeout
                ) as source:
                    if not source.response.is_success:
                        source.response.read()
                        error = from_response(source.response)
                        if error.status not in base.STREAM_RETRIED:
                            raise error
                        problem: object = error
                    else:
                        for sse in source.iter_sse():
                            if not sse.data or base.seen(sse.id, self.last_event_id):
                                continue  # a keep-alive, or an event read before a reconnect
                            event = parse(sse.event, sse.data, sse.id or None)
                            self.last_event_id = sse.id or self.last_event_id
                            failures = 0
                            yield event
                            if isinstance(event, DoneEvent):
                                self.final = event.record
                                return
                        problem = "the stream ended before its done event"
            except httpx.TransportError as exc:
                problem = exc
            failures += 1
            if failures > base.STREAM_RECONNECTS:
                raise StreamLost(f"lost the event stream of job {self.job_id}: {problem}")
            self.reconnects += 1
            time.sleep(base.reconnect_delay(client.retry, failures, problem))
