"""Submitting, listing and deleting documents; a re-submitted document is recognised by content."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from api.errors import ApiError
from api.schemas import BatchAccepted, BatchStatus, JobAccepted
from api.services.idempotency import Created
from api.services.jobs import JobService
from common.access import (
    ACCESS_GROUPS,
    KEY_ID,
    Access,
    check_groups,
    dumps_groups,
    loads_groups,
)
from common.batch import Batch
from common.clock import now_iso
from common.contract import DELETE_TASK, GROUPS_TASK, INGEST_TASK, REINDEX_TASK
from common.documents import (
    LIVE,
    SUPERSEDED,
    UNSETTLED,
    DocumentInfo,
    DocumentStatus,
    canonical_metadata,
    info_from_hash,
    version_snapshot,
)
from common.keys import batch_key, content_key, doc_key, groups_pending_key, listing_key
from common.schemas import JobKind, JobStatus, Progress

# KEYS: the tenant's content index. ARGV: the prefix of its document keys, the document id ('':
# the one that holds this content, if any), the content's SHA-256. Returns {id, its hash as
# field/value pairs}: a submit's two reads in one round trip. The document key is built from the
# id found here, so it cannot be declared in KEYS: ragq runs on one Redis, never a cluster.
CURRENT_SCRIPT = """
local id = ARGV[2]
if id == '' then id = redis.call('HGET', KEYS[1], ARGV[3]) or '' end
if id == '' then return {'', {}} end
return {id, redis.call('HGETALL', ARGV[1] .. id)}
"""


# A page of the documents a key that is no admin reads, oldest first, and how many there are.
# KEYS: the tenant's listing. ARGV: the prefix of its document keys, offset, limit, then the
# key's groups. Returns {total, ids}. It reads every document's groups (O(documents)): admins,
# the usual readers of whole listings, page by ZRANGE instead.
VISIBLE_PAGE_SCRIPT = """
local mine = {}
for i = 4, #ARGV do mine[ARGV[i]] = true end
local offset, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local total, page = 0, {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local raw = redis.call('HGET', ARGV[1] .. id, 'access_groups')
  local seen = not raw or raw == '' or raw == '[]'
  if not seen then
    for _, group in ipairs(cjson.decode(raw)) do
      if mine[group] then seen = true break end
    end
  end
  if seen then
    if total >= offset and #page < limit then page[#page + 1] = id end
    total = total + 1
  end
end
return {total, page}
"""

# Sets a document's groups (KEYS[1]; ARGV: groups JSON, now, document id) unless it is gone or
# being deleted meanwhile, so a change never leaves a half-written registry entry; and marks it
# pending (KEYS[2]) until its chunks carry the groups, which searches hold against the registry.
SET_GROUPS_SCRIPT = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'deleting' then return 0 end
redis.call('HSET', KEYS[1], 'access_groups', ARGV[1], 'updated_at', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
"""


def _not_found(document_id: str) -> ApiError:
    return ApiError(404, "document_not_found", f"no document {document_id}")


def _checked_groups(groups: Sequence[str], access: Access) -> list[str]:
    """The groups sorted, if valid (else 422) and the key may assign them (else 403)."""
    try:
        checked = check_groups(groups)
    except ValueError as exc:
        raise ApiError(422, "invalid_access_groups", str(exc)) from exc
    if not access.may_assign(checked):
        raise ApiError(
            403,
            "access_group_forbidden",
            f"this API key may assign only its own groups: {', '.join(access.groups) or 'none'}",
        )
    return checked


def _groups_of(raw: dict[str, str]) -> list[str]:
    return loads_groups(raw.get(ACCESS_GROUPS))


@dataclass(frozen=True)
class Upload:
    """One document as the client sent it."""

    data: bytes
    filename: str | None = None
    title: str | None = None
    metadata: dict[str, Any] | None = None
    document_id: str | None = None
    webhook_url: str | None = None
    access_groups: list[str] | None = None


class DocumentService:
    """The API's side of documents: the registry in Redis and the ingest/delete jobs."""

    def __init__(self, redis: aioredis.Redis, jobs: JobService) -> None:
        self.redis = redis
        self.jobs = jobs
        self.settings = jobs.settings
        self._current = redis.register_script(CURRENT_SCRIPT)
        self._visible_page = redis.register_script(VISIBLE_PAGE_SCRIPT)

    async def _existing(self, tenant: str, document_id: str) -> dict[str, str]:
        return await self.redis.hgetall(doc_key(tenant, document_id))  # type: ignore[misc,no-any-return]

    async def _visible(self, tenant: str, access: Access, document_id: str) -> dict[str, str]:
        """The document's hash if the key reads it; else 404, as for one that does not exist."""
        raw = await self._existing(tenant, document_id)
        if not raw or not access.sees(_groups_of(raw)):
            raise _not_found(document_id)
        return raw

    async def submit(
        self, tenant: str, access: Access, upload: Upload, *, vetted: bool = False
    ) -> Created[JobAccepted]:
        """Queue the ingestion of a document: the accepted job, and whether it is a new one.

        The same content again (same SHA-256, under the same or no document id, with the same
        title and metadata) is a no-op that reports the job that ingested it; anything changed
        under an existing document id makes a new version of that document, which replaces the
        previous one once it is complete (a pending one it replaces is cancelled). A document
        being deleted takes no new version (409). The webhook URL and the tenant's quotas are
        checked unless `vetted` says its batch checked them.

        Access groups: a new document gets the upload's (none: ungrouped); an existing one keeps
        its own, and an upload naming other ones is refused (409: a change goes through
        `set_groups`). A document the key does not read is never touched: named by id it
        answers 404; found by its content, the upload becomes a document of its own.
        """
        self._check(upload)
        groups = None
        if upload.access_groups is not None:
            groups = _checked_groups(upload.access_groups, access)
        webhook_url = upload.webhook_url
        if not vetted:
            webhook_url = await self.jobs.vet_webhook(webhook_url)
        sha = hashlib.sha256(upload.data).hexdigest()
        found, pairs = await self._current(
            keys=[content_key(tenant)], args=[doc_key(tenant, ""), upload.document_id or "", sha]
        )
        current: dict[str, str] = dict(zip(pairs[::2], pairs[1::2], strict=True))
        # Whether the content index maps this content to a document the key does not read.
        hidden = bool(current) and not access.sees(_groups_of(current))
        if hidden and upload.document_id:
            raise _not_found(upload.document_id)
        if hidden:
            found, current = "", {}
        document_id = upload.document_id or found or str(uuid.uuid4())
        if current and groups is not None and groups != _groups_of(current):
            raise ApiError(
                409,
                "access_groups_differ",
                f"document {document_id} has other access groups; change them with "
                f"PATCH /v1/documents/{document_id}",
            )
        doc_groups = groups or []
        if current.get("status") == DocumentStatus.DELETING:
            raise ApiError(
                409, "document_deleting", f"document {document_id} is being deleted; try later"
            )
        title, metadata = upload.title or "", canonical_metadata(upload.metadata)
        if (
            current.get("content_sha256") == sha
            and current.get("status") in LIVE
            and current.get("req_title", title) == title
            and current.get("metadata", metadata) == metadata
        ):
            record = await self.jobs.get(tenant, current["job_id"])
            accepted = JobAccepted(
                job_id=record.job_id, status=record.status, document_id=document_id
            )
            return Created(accepted, created=False)
        if self.jobs.quotas is not None and not vetted:
            await self.jobs.quotas.check_documents(tenant, 0 if current else 1)

        job_id = str(uuid.uuid4())
        now = now_iso()
        doc_fields = {
            "document_id": document_id,
            "title": upload.title or upload.filename or "",
            "filename": upload.filename or "",
            "status": DocumentStatus.QUEUED.value,
            "chunks": current.get("chunks", "0"),
            "content_sha256": sha,
            "size_bytes": str(len(upload.data)),
            "job_id": job_id,
            "created_at": current.get("created_at", now),
            "updated_at": now,
            "error": "",
            "req_title": title,
            "metadata": metadata,
        }
        if not current:
            # An existing document keeps the field: a change made meanwhile is not undone.
            doc_fields[ACCESS_GROUPS] = dumps_groups(doc_groups)
        old_sha = current.get("content_sha256")

        def register(batch: Batch) -> None:
            if current.get("status") == DocumentStatus.READY and "live" not in current:
                # Registered before versions were kept: its chunks are the live version.
                batch.hsetnx(doc_key(tenant, document_id), "live", version_snapshot(current))
            batch.hset(doc_key(tenant, document_id), mapping=doc_fields)
            batch.zadd(listing_key(tenant), {document_id: time.time()}, nx=True)
            if old_sha and old_sha != sha:
                batch.hdel(content_key(tenant), old_sha)
            if not hidden:
                # The index keeps pointing at the hidden document: it answers for that one.
                batch.hset(content_key(tenant), sha, document_id)

        fields = {
            "document_id": document_id,
            "filename": upload.filename or "",
            "title": upload.title or "",
            "metadata": metadata,
            "content_sha256": sha,
            "size_bytes": str(len(upload.data)),  # counted as bytes ingested when it succeeds
            KEY_ID: access.key_id,
        }
        await self.jobs.enqueue(
            INGEST_TASK,
            JobKind.INGEST,
            tenant,
            fields,
            blob=upload.data,
            also=register,
            job_id=job_id,
            webhook_url=webhook_url,
        )
        await self._supersede(tenant, current)
        return Created(JobAccepted(job_id=job_id, status=JobStatus.QUEUED, document_id=document_id))

    async def _supersede(self, tenant: str, previous: dict[str, str]) -> None:
        """Cancel the request a new one replaced, if it had not ended (its worker stops early)."""
        if previous.get("status") in UNSETTLED:
            await self.jobs.store.cancel(previous["job_id"], error=SUPERSEDED)

    def _check(self, upload: Upload) -> None:
        """422 for an empty document, 413 for one over RAGQ_MAX_UPLOAD_BYTES."""
        if not upload.data.strip():
            raise ApiError(422, "empty_document", "the document has no content")
        if len(upload.data) > self.settings.max_upload_bytes:
            raise ApiError(
                413,
                "file_too_large",
                f"documents are limited to {self.settings.max_upload_bytes} bytes",
            )

    async def submit_batch(
        self, tenant: str, access: Access, uploads: list[Upload]
    ) -> BatchAccepted:
        """Queue one job per document and a batch id to follow them all (or none of them)."""
        if not uploads:
            raise ApiError(422, "empty_batch", "the batch has no files")
        for upload in uploads:
            self._check(upload)
            if upload.access_groups is not None:
                _checked_groups(upload.access_groups, access)
        for url in {upload.webhook_url for upload in uploads}:
            await self.jobs.vet_webhook(url)
        if self.jobs.quotas is not None:
            # Each counted as a new document: the batch is queued whole or not at all.
            await self.jobs.quotas.check_documents(tenant, len(uploads))
        accepted = [
            (await self.submit(tenant, access, upload, vetted=True)).body for upload in uploads
        ]
        return await self._record_batch(tenant, accepted)

    async def _record_batch(self, tenant: str, accepted: list[JobAccepted]) -> BatchAccepted:
        batch_id = str(uuid.uuid4())
        key = batch_key(batch_id)
        ttl = self.settings.job_ttl_s
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"tenant": tenant, "created_at": now_iso()})
            if accepted:
                pipe.rpush(f"{key}:jobs", *[a.job_id for a in accepted])
            pipe.expire(key, ttl)
            pipe.expire(f"{key}:jobs", ttl)
            await pipe.execute()
        return BatchAccepted(batch_id=batch_id, jobs=accepted)

    async def batch(self, tenant: str, batch_id: str, with_jobs: bool = True) -> BatchStatus:
        """Counts by status and chunk progress over the batch's jobs (and their records)."""
        key = batch_key(batch_id)
        if await self.redis.hget(key, "tenant") != tenant:  # type: ignore[misc]
            raise ApiError(404, "batch_not_found", f"no batch {batch_id}")
        job_ids: list[str] = await self.redis.lrange(f"{key}:jobs", 0, -1)  # type: ignore[misc]
        records = await self.jobs.store.get_many(job_ids, tenant)
        counts: dict[str, int] = {}
        for record in records:
            counts[record.status.value] = counts.get(record.status.value, 0) + 1
        progress = Progress(
            done=sum(r.progress.done for r in records),
            total=sum(r.progress.total for r in records),
        )
        finished = all(r.status.finished for r in records)
        return BatchStatus(
            batch_id=batch_id,
            total=len(records),
            counts=counts,
            progress=progress,
            finished=finished,
            jobs=records if with_jobs else [],
        )

    async def get(self, tenant: str, access: Access, document_id: str) -> DocumentInfo:
        """The tenant's document if the key reads it, or 404."""
        return info_from_hash(await self._visible(tenant, access, document_id))

    async def list(
        self, tenant: str, access: Access, offset: int, limit: int
    ) -> tuple[list[DocumentInfo], int]:
        """A page of the tenant's documents the key reads, oldest first, and how many."""
        total: int | None = None
        if access.admin:
            ids: list[str] = await self.redis.zrange(
                listing_key(tenant), offset, offset + limit - 1
            )
        else:
            total, ids = await self._visible_page(
                keys=[listing_key(tenant)],
                args=[doc_key(tenant, ""), offset, limit, *access.groups],
            )
        async with self.redis.pipeline(transaction=False) as pipe:
            for document_id in ids:
                pipe.hgetall(doc_key(tenant, document_id))
            if total is None:
                pipe.zcard(listing_key(tenant))
            raws = await pipe.execute()
        if total is None:
            *raws, total = raws
        # A document's groups may have changed between the two reads.
        visible = [raw for raw in raws if raw and access.sees(_groups_of(raw))]
        return [info_from_hash(raw) for raw in visible], int(total)

    async def set_groups(
        self, tenant: str, access: Access, document_id: str, groups: Sequence[str]
    ) -> JobAccepted:
        """Change a document's access groups: the registry now, its chunks' payload by a job
        (no re-embedding; searches follow once the job has succeeded).

        A key that is no admin may only change a document whose groups are all its own, to
        groups of its own (403); a document being deleted answers 409.
        """
        checked = _checked_groups(groups, access)
        current = await self._visible(tenant, access, document_id)
        if current.get("status") == DocumentStatus.DELETING:
            raise ApiError(409, "document_deleting", f"document {document_id} is being deleted")
        if not access.may_assign(_groups_of(current)):
            raise ApiError(
                403,
                "access_group_forbidden",
                f"document {document_id} has groups this API key does not have",
            )
        key = doc_key(tenant, document_id)

        def write(batch: Batch) -> None:
            pending = groups_pending_key(tenant)
            batch.eval(
                SET_GROUPS_SCRIPT, 2, key, pending, dumps_groups(checked), now_iso(), document_id
            )

        job_id = await self.jobs.enqueue(
            GROUPS_TASK,
            JobKind.ACCESS,
            tenant,
            {"document_id": document_id, KEY_ID: access.key_id},
            also=write,
        )
        return JobAccepted(job_id=job_id, status=JobStatus.QUEUED, document_id=document_id)

    async def delete(self, tenant: str, access: Access, document_id: str) -> JobAccepted:
        """Queue the removal of a document's chunks and registry entry.

        A document already being deleted answers with the delete job under way (a new one if
        that job failed); a pending version of the document is cancelled.
        """
        current = await self._visible(tenant, access, document_id)
        if current.get("status") == DocumentStatus.DELETING:
            record = await self.jobs.store.get(current["job_id"], tenant)
            if record is not None and not record.status.finished:
                return JobAccepted(
                    job_id=record.job_id, status=record.status, document_id=document_id
                )
        job_id = str(uuid.uuid4())

        def mark(batch: Batch) -> None:
            batch.hset(
                doc_key(tenant, document_id),
                mapping={
                    "status": DocumentStatus.DELETING.value,
                    "job_id": job_id,
                    "updated_at": now_iso(),
                },
            )

        await self.jobs.enqueue(
            DELETE_TASK,
            JobKind.DELETE,
            tenant,
            {"document_id": document_id, KEY_ID: access.key_id},
            also=mark,
            job_id=job_id,
        )
        await self._supersede(tenant, current)
        return JobAccepted(job_id=job_id, status=JobStatus.QUEUED, document_id=document_id)

    async def reindex(self, tenant: str, access: Access, document_id: str) -> JobAccepted:
        """Queue the re-embedding of a ready document's stored chunks."""
        current = await self._visible(tenant, access, document_id)
        if current.get("status") == DocumentStatus.DELETING:
            raise _not_found(document_id)
        if current.get("status") != DocumentStatus.READY:
            raise ApiError(
                409, "document_not_ready", f"document {document_id} is {current.get('status')}"
            )
        job_id = await self.jobs.enqueue(
            REINDEX_TASK,
            JobKind.REINDEX,
            tenant,
            {"document_id": document_id, KEY_ID: access.key_id},
        )
        return JobAccepted(job_id=job_id, status=JobStatus.QUEUED, document_id=document_id)

    async def reindex_all(self, tenant: str, access: Access) -> BatchAccepted:
        """Queue a re-index job for each ready document the key reads, as one batch."""
        accepted = []
        offset, page = 0, 1000
        while True:
            documents, total = await self.list(tenant, access, offset, page)
            for info in documents:
                if info.status is DocumentStatus.READY:
                    accepted.append(await self.reindex(tenant, access, info.document_id))
            offset += page
            if offset >= total:
                return await self._record_batch(tenant, accepted)
