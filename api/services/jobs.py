"""Creating, reading and cancelling jobs: validation, then the record and the first Celery message
in one Redis batch."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

from celery import Celery
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError
from api.schemas import AnswerIn, JobAccepted, JobList
from api.services import inputs
from api.services.quotas import QuotaService
from common.access import Access
from common.batch import Batch
from common.contract import RETRIEVE_TASK
from common.documents import settle
from common.jobs_async import AsyncJobStore, BadCursor
from common.messages import TaskMessages
from common.schemas import JobKind, JobRecord, JobStatus, SearchMode
from common.settings import Settings
from common.telemetry import JOBS_CREATED
from common.webhooks import WebhookRefused, vet


class JobService:
    """The API's only way to make or change jobs."""

    def __init__(
        self,
        store: AsyncJobStore,
        celery: Celery,
        settings: Settings,
        quotas: QuotaService | None = None,
    ) -> None:
        self.store = store
        self.celery = celery
        self.settings = settings
        self.quotas = quotas
        self.messages = TaskMessages(celery)

    async def enqueue(
        self,
        task: str,
        kind: JobKind,
        tenant: str,
        fields: dict[str, str],
        *,
        blob: bytes | None = None,
        also: Callable[[Batch], object] | None = None,
        job_id: str | None = None,
        webhook_url: str | None = None,
        args: Sequence[str] = (),
    ) -> str:
        """Record a queued job and send its first task (its arguments the job id, then `args`):
        with `also`'s writes, in one batch (one round trip), so none of it is stored unless all
        of it is."""
        job_id = job_id or str(uuid.uuid4())
        if webhook_url:
            fields = {**fields, "webhook_url": webhook_url}
        queue, message = self.messages.build(task, job_id, [job_id, *args])

        def write(batch: Batch) -> None:
            if also is not None:
                also(batch)
            batch.lpush(queue, message)

        await self.store.create(job_id, kind, tenant, extra=fields, blob=blob, also=write)
        JOBS_CREATED.labels(kind.value).inc()
        return job_id

    async def submit_answer(
        self, tenant: str, access: Access, body: AnswerIn, extra: dict[str, str] | None = None
    ) -> JobAccepted:
        """Queue an answer job (`extra`: more fields of its record, such as a conversation);
        it retrieves only from the chunks `access` reads."""
        question = inputs.text(body.question, "question", self.settings.max_question_chars)
        top_k, deadline_s = body.top_k, body.deadline_s
        inputs.top_k(top_k, self.settings.max_top_k)
        deadline = min(
            deadline_s or self.settings.answer_deadline_s, self.settings.answer_deadline_s
        )
        fields = {
            "question": question,
            "top_k": str(top_k),
            "total": "2",
            "deadline_s": str(deadline),
            "mode": (body.mode or self.settings.search_mode).value,
            "citation_mode": (body.citation_mode or self.settings.citation_mode).value,
            "quote": str(self.settings.answer_quote if body.quote is None else body.quote),
            "min_relevance": str(
                self.settings.min_relevance if body.min_relevance is None else body.min_relevance
            ),
        }
        if body.filter is not None:
            fields["filter"] = body.filter.model_dump_json(exclude_none=True)
        fields.update(extra or {})
        fields.update(access.fields())
        webhook_url = await self.vet_webhook(body.webhook_url)
        if self.quotas is not None:
            await self.quotas.check_answer(tenant)
        # A question without a conversation is its own query: its message carries it, so the
        # query worker embeds it while it claims the job (see `workers.query.retrieve`).
        alone = "history" not in fields and fields["mode"] != SearchMode.SPARSE
        job_id = await self.enqueue(
            RETRIEVE_TASK,
            JobKind.ANSWER,
            tenant,
            fields,
            webhook_url=webhook_url,
            args=(question,) if alone else (),
        )
        return JobAccepted(job_id=job_id, status=JobStatus.QUEUED)

    async def vet_webhook(self, url: str | None) -> str | None:
        """The webhook URL if it may be called (resolved and vetted against SSRF), else 422."""
        if url is None or not url.strip():
            return None
        try:
            await run_in_threadpool(vet, url, self.settings.webhook_allow_networks)
        except WebhookRefused as exc:
            raise ApiError(422, exc.code, exc.message) from exc
        return url.strip()

    async def get(self, tenant: str, job_id: str) -> JobRecord:
        """The tenant's job, or 404."""
        record = await self.store.get(job_id, tenant)
        if record is None:
            raise ApiError(404, "job_not_found", f"no job {job_id}")
        return record

    async def list(
        self,
        tenant: str,
        limit: int,
        cursor: str | None = None,
        kind: JobKind | None = None,
        status: JobStatus | None = None,
    ) -> JobList:
        """A page of the tenant's jobs, newest first; 422 for a cursor we did not issue."""
        try:
            jobs, next_cursor = await self.store.list_jobs(
                tenant, limit=limit, cursor=cursor, kind=kind, status=status
            )
        except BadCursor as exc:
            raise ApiError(422, "invalid_cursor", "cursor is not one this API returned") from exc
        return JobList(jobs=jobs, next_cursor=next_cursor)

    async def cancel(self, tenant: str, job_id: str) -> JobRecord:
        """Cancel a queued or running job; 409 if it already finished, or is a deletion or an
        access-group change (the registry already holds the change its job applies).

        A cancelled ingest settles its document at once: the previous version is served again
        (or the document goes, if it had none); a running task notices at its next step and
        removes what it had staged.
        """
        record = await self.get(tenant, job_id)
        if record.kind is JobKind.DELETE and not record.status.finished:
            raise ApiError(409, "job_not_cancellable", "a document's deletion cannot be cancelled")
        if record.kind is JobKind.ACCESS and not record.status.finished:
            raise ApiError(
                409, "job_not_cancellable", "a change of access groups cannot be cancelled"
            )
        cancelled = await self.store.cancel(job_id)
        record = await self.get(tenant, job_id)
        if not cancelled:
            raise ApiError(409, "job_finished", f"job {job_id} already {record.status.value}")
        if record.kind is JobKind.INGEST and record.document_id:
            await settle(self.store.redis, tenant, record.document_id, job_id, None)
        return record
