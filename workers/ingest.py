"""The `ingest` queue: parse → chunk → embed → upsert, and document deletion.

Tasks that change one document hold that document's lock, and a task whose job is no longer
the document's latest (the client re-submitted or deleted it meanwhile) stands down, so an
older version can never overwrite a newer one. A new version's chunks are written staged (not
searchable) and become the document's chunks only once the job has succeeded, so the previous
version serves until then, and any other ending removes them and settles the registry. Point
ids are uuid5(tenant, document, version, chunk number): a retried task overwrites its own points
instead of duplicating them.
"""

from __future__ import annotations

import json
import logging
import uuid
from itertools import islice
from typing import Any

from common.access import ACCESS_GROUPS, loads_groups
from common.chunking import Chunk, chunk_sections
from common.clock import now_iso
from common.contract import DELETE_TASK, INGEST_TASK
from common.documents import (
    SET_IF_LATEST_SCRIPT,
    SUPERSEDED,
    UNSETTLED,
    DocumentStatus,
    settle,
    version_snapshot,
)
from common.jobs import Guard
from common.keys import content_key, doc_key, job_key, listing_key
from common.parsing import ParseError, parse
from common.pdf_sandbox import PdfLimits
from common.schemas import IngestResult, JobStatus
from common.settings import get_settings
from common.telemetry import INGEST_CHUNKS
from common.vectorstore import STAGED, STATE, VERSION, ChunkPoint
from workers import draining, engines
from workers.base import JobTask
from workers.celery_app import app
from workers.document_tasks import DocumentJob, run_document_task

log = logging.getLogger(__name__)

# Removes a content index entry (KEYS[1], field ARGV[1]) if it still names document ARGV[2].
UNINDEX_SCRIPT = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""
POINT_NAMESPACE = uuid.UUID("6f2b8c1e-51a4-4d3e-9a43-0c1f6f1d2a7b")


def point_id(tenant: str, document_id: str, version: str, index: int) -> str:
    """Deterministic id of a chunk's point, so a retried task overwrites instead of duplicating."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{tenant}/{document_id}/{version}/{index}"))


def _still_wanted(job: DocumentJob) -> bool:
    """Whether the job still runs and is still its document's latest request (one round trip)."""
    with job.store.redis.pipeline(transaction=False) as pipe:
        pipe.hget(job_key(job.job_id), "status")
        pipe.hget(doc_key(job.tenant, job.document_id), "job_id")
        status, latest = pipe.execute()
    return status == JobStatus.RUNNING and latest == job.job_id


def _points(
    raw: dict[str, str],
    version: str,
    title: str,
    groups: list[str],
    chunks: list[Chunk],
    vectors: Any,
) -> list[ChunkPoint]:
    metadata = json.loads(raw.get("metadata") or "{}")
    encoder = engines.sparse_encoder()
    points = []
    for chunk, vector in zip(chunks, vectors, strict=True):
        payload: dict[str, Any] = {
            "tenant": raw["tenant"],
            "document_id": raw["document_id"],
            "title": title,
            "source": raw.get("filename") or None,
            "text": chunk.text,
            "chunk_index": chunk.index,
            "metadata": metadata,
            ACCESS_GROUPS: groups,
            VERSION: version,
            STATE: STAGED,
        }
        if chunk.page is not None:
            payload["page"] = chunk.page
        point = point_id(raw["tenant"], raw["document_id"], version, chunk.index)
        sparse = encoder.encode_document(chunk.text)
        points.append(ChunkPoint(point, vector.tolist(), payload, sparse))
    return points


def _groups(job: DocumentJob) -> list[str]:
    """The document's access groups as the registry holds them now."""
    return loads_groups(job.doc_field(ACCESS_GROUPS))


def _commit_guard(job_id: str, raw: dict[str, str], title: str, total: int) -> Guard:
    """The registry change that makes this job's version the document's live one.

    It applies with the job's success, and only while the job is the document's latest request.
    """
    key = doc_key(raw["tenant"], raw["document_id"])
    seen: dict[str, str] = {}

    def check(doc: dict[str, str]) -> bool:
        seen.update(doc)
        return doc.get("job_id") == job_id and doc.get("status") in UNSETTLED

    def write(pipe: Any) -> None:
        fields = {"status": DocumentStatus.READY.value, "title": title, "chunks": str(total)}
        fields.update(error="", updated_at=now_iso())
        pipe.hset(key, mapping={**fields, "live": version_snapshot({**seen, **fields})})

    return Guard(key, check, write)


def _embed_and_store(job: DocumentJob, data: bytes) -> None:
    """Parse, chunk and embed one document as a staged version; succeed if it is still wanted."""
    store, job_id, raw = job.store, job.job_id, job.raw
    settings = get_settings()
    limits = PdfLimits(settings.pdf_parse_timeout_s, settings.pdf_parse_memory_mib)
    parsed = parse(data, raw.get("filename") or None, pdf_parser=limits)
    model = engines.embedder()
    chunks = list(
        chunk_sections(
            parsed.sections, model.tokenizer, settings.chunk_tokens, settings.chunk_overlap_tokens
        )
    )
    title = raw.get("title") or parsed.title or raw.get("filename") or "untitled"
    vectors = engines.vector_store()
    groups = _groups(job)
    total = len(chunks)
    store.progress(job_id, 0, total)
    done = 0
    batches = iter(chunks)
    while batch := list(islice(batches, settings.embedding_batch_size)):
        draining.check()
        if not _still_wanted(job):
            store.finish(job_id, JobStatus.CANCELLED, error=SUPERSEDED)
            return
        embedded = engines.batcher().encode([c.text for c in batch])
        vectors.upsert(_points(raw, job_id, title, groups, batch, embedded))
        done += len(batch)
        INGEST_CHUNKS.inc(len(batch))
        store.progress(job_id, done, total)
    result = IngestResult(
        document_id=raw["document_id"], chunks=total, content_sha256=raw["content_sha256"]
    )
    guard = _commit_guard(job_id, raw, title, total)
    if store.finish(job_id, JobStatus.SUCCEEDED, result=result.model_dump(), guard=guard):
        log.info("ingested document %s: %d chunks", raw["document_id"], total)
    else:
        # Cancelled, or a newer request came after the last check: this version is not wanted.
        store.finish(job_id, JobStatus.CANCELLED, error=SUPERSEDED)


def _ingest(job: DocumentJob) -> None:
    """Embed the upload as a staged version of the document; a bad upload fails the job."""
    data = job.store.blob(job.job_id)
    if data is None:
        job.store.fail(job.job_id, "upload_missing", "the upload expired before it was processed")
        return
    mark = job.store.redis.register_script(SET_IF_LATEST_SCRIPT)
    mark(keys=[doc_key(job.tenant, job.document_id)], args=[job.job_id, "status", "ingesting"])
    try:
        _embed_and_store(job, data)
    except ParseError as exc:
        job.store.fail(job.job_id, exc.code, str(exc))


def _close(job: DocumentJob) -> None:
    """Leave the document consistent with how the ingest ended.

    A success makes its staged chunks the searchable ones, if its version is still the live one
    (also when a crash came between the two steps and the task runs again); any other ending
    removes them and settles the registry. A job still running (draining, or held by another
    worker) is left as it is.
    """
    record = job.store.get(job.job_id)
    if record is None or not record.status.finished:
        return
    vectors = engines.vector_store()
    if record.status is JobStatus.SUCCEEDED:
        if json.loads(job.doc_field("live") or "{}").get("job_id") == job.job_id:
            # The groups may have changed while the version was written (a change waits for
            # this lock to reach the chunks): the staged chunks get the current ones first.
            vectors.set_groups(job.tenant, job.document_id, _groups(job), version=job.job_id)
            vectors.commit_version(job.tenant, job.document_id, job.job_id)
        job.store.drop_blob(job.job_id)
        return
    vectors.discard_version(job.tenant, job.document_id, job.job_id)
    failed = record.status is JobStatus.FAILED
    code = (record.error.code if record.error else "internal_error") if failed else None
    settle(job.store.redis, job.tenant, job.document_id, job.job_id, code)


@app.task(name=INGEST_TASK, bind=True, base=JobTask)
def ingest(self: JobTask, job_id: str) -> None:
    """Ingest one uploaded document into the vector store."""
    run_document_task(self, job_id, _ingest, close=_close)


def _delete(job: DocumentJob) -> None:
    """Remove every chunk of the document, then its registry entry; the job succeeds."""
    vectors = engines.vector_store()
    removed = vectors.count(job.tenant, job.document_id)
    vectors.delete_document(job.tenant, job.document_id)
    sha = job.doc_field("content_sha256")
    with job.store.redis.pipeline(transaction=True) as pipe:
        pipe.delete(doc_key(job.tenant, job.document_id))
        pipe.zrem(listing_key(job.tenant), job.document_id)
        if sha:
            # Only this document's entry: the same content may index a document this one's key
            # did not read (see `api.services.documents`).
            pipe.eval(UNINDEX_SCRIPT, 1, content_key(job.tenant), sha, job.document_id)
        pipe.execute()
    result = {"document_id": job.document_id, "deleted_chunks": removed}
    job.store.finish(job.job_id, JobStatus.SUCCEEDED, result=result)


@app.task(name=DELETE_TASK, bind=True, base=JobTask)
def delete_document(self: JobTask, job_id: str) -> None:
    """Remove a document's points from the store and its entry from the registry."""
    run_document_task(self, job_id, _delete)
