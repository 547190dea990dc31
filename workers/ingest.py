"""The `ingest` queue: parse → chunk → embed → upsert, and document deletion.

Tasks that change one document hold that document's lock, and a task whose job is no longer
the document's latest (the client re-submitted or deleted it meanwhile) stands down, so an
older version can never overwrite a newer one. Point ids are uuid5(tenant, document, chunk
number): a retried task overwrites its own points instead of duplicating them.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any

from common.chunking import Chunk, chunk_sections
from common.documents import DocumentStatus, content_key, doc_key, listing_key, lock_key
from common.jobs import JobStore, now_iso
from common.locks import worker_lock
from common.parsing import ParseError, parse
from common.pdf_sandbox import PdfLimits
from common.schemas import ErrorInfo, IngestResult, JobStatus
from common.settings import get_settings
from common.telemetry import INGEST_CHUNKS
from common.vectorstore import ChunkPoint
from workers import draining, engines
from workers.base import JobTask
from workers.celery_app import DELETE_TASK, INGEST_TASK, app

log = logging.getLogger(__name__)

POINT_NAMESPACE = uuid.UUID("6f2b8c1e-51a4-4d3e-9a43-0c1f6f1d2a7b")
SUPERSEDED = ErrorInfo(code="superseded", message="a newer request for this document replaced it")


def point_id(tenant: str, document_id: str, index: int) -> str:
    """Deterministic id of a chunk's point, so a retried task overwrites instead of duplicating."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{tenant}/{document_id}/{index}"))


@contextmanager
def document_lock(store: JobStore, tenant: str, document_id: str, worker: str) -> Iterator[None]:
    """Serialise the tasks that change one document (a dead worker's lock is broken)."""
    timeout = get_settings().visibility_timeout_s
    with worker_lock(store.redis, lock_key(tenant, document_id), worker, timeout, timeout):
        yield


def doc_field(store: JobStore, tenant: str, document_id: str, name: str) -> str | None:
    """One field of a document's registry entry."""
    return store.redis.hget(doc_key(tenant, document_id), name)  # type: ignore[return-value]


def is_latest(store: JobStore, tenant: str, document_id: str, job_id: str) -> bool:
    """Whether the job is still the one the document's registry entry points to."""
    return doc_field(store, tenant, document_id, "job_id") == job_id


def _points(raw: dict[str, str], title: str, chunks: list[Chunk], vectors: Any) -> list[ChunkPoint]:
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
        }
        if chunk.page is not None:
            payload["page"] = chunk.page
        point = point_id(raw["tenant"], raw["document_id"], chunk.index)
        sparse = encoder.encode_document(chunk.text)
        points.append(ChunkPoint(point, vector.tolist(), payload, sparse))
    return points


def _register(store: JobStore, raw: dict[str, str], **fields: str) -> None:
    key = doc_key(raw["tenant"], raw["document_id"])
    store.redis.hset(key, mapping={**fields, "updated_at": now_iso()})


def _embed_and_store(store: JobStore, job_id: str, raw: dict[str, str], data: bytes) -> bool:
    """Ingest one document; False if it stopped because the job was cancelled."""
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
    vectors.delete_document(raw["tenant"], raw["document_id"])
    total = len(chunks)
    store.progress(job_id, 0, total)
    done = 0
    batches = iter(chunks)
    while batch := list(islice(batches, settings.embedding_batch_size)):
        draining.check()
        if store.status(job_id) is not JobStatus.RUNNING:
            return False
        embedded = engines.batcher().encode([c.text for c in batch])
        vectors.upsert(_points(raw, title, batch, embedded))
        done += len(batch)
        INGEST_CHUNKS.inc(len(batch))
        store.progress(job_id, done, total)
    _register(store, raw, status=DocumentStatus.READY.value, chunks=str(total), title=title)
    return True


@app.task(name=INGEST_TASK, bind=True, base=JobTask)
def ingest(self: JobTask, job_id: str) -> None:
    """Ingest one uploaded document into the vector store."""
    store = engines.job_store()
    raw = store.raw(job_id)
    if not raw:
        return
    with document_lock(store, raw["tenant"], raw["document_id"], self.request.hostname or "?"):
        if not is_latest(store, raw["tenant"], raw["document_id"], job_id):
            store.finish(job_id, JobStatus.CANCELLED, error=SUPERSEDED)
            return
        if not store.start(job_id, worker=self.request.hostname or "?"):
            return
        data = store.blob(job_id)
        if data is None:
            store.fail(job_id, "upload_missing", "the upload expired before it was processed")
            return
        _register(store, raw, status=DocumentStatus.INGESTING.value)
        try:
            completed = _embed_and_store(store, job_id, raw, data)
        except ParseError as exc:
            _register(store, raw, status=DocumentStatus.FAILED.value, error=exc.code)
            store.redis.hdel(content_key(raw["tenant"]), raw["content_sha256"])
            store.fail(job_id, exc.code, str(exc))
            return
    if not completed:
        return
    total = int(doc_field(store, raw["tenant"], raw["document_id"], "chunks") or 0)
    result = IngestResult(
        document_id=raw["document_id"], chunks=total, content_sha256=raw["content_sha256"]
    )
    if store.finish(job_id, JobStatus.SUCCEEDED, result=result.model_dump()):
        store.drop_blob(job_id)
    log.info("ingested document %s: %d chunks", raw["document_id"], total)


@app.task(name=DELETE_TASK, bind=True, base=JobTask)
def delete_document(self: JobTask, job_id: str) -> None:
    """Remove a document's points from the store and its entry from the registry."""
    store = engines.job_store()
    raw = store.raw(job_id)
    if not raw:
        return
    tenant, document_id = raw["tenant"], raw["document_id"]
    with document_lock(store, tenant, document_id, self.request.hostname or "?"):
        if not is_latest(store, tenant, document_id, job_id):
            store.finish(job_id, JobStatus.CANCELLED, error=SUPERSEDED)
            return
        if not store.start(job_id, worker=self.request.hostname or "?"):
            return
        vectors = engines.vector_store()
        removed = vectors.count(tenant, document_id)
        vectors.delete_document(tenant, document_id)
        sha = doc_field(store, tenant, document_id, "content_sha256")
        with store.redis.pipeline(transaction=True) as pipe:
            pipe.delete(doc_key(tenant, document_id))
            pipe.zrem(listing_key(tenant), document_id)
            if sha:
                pipe.hdel(content_key(tenant), sha)
            pipe.execute()
    store.finish(
        job_id, JobStatus.SUCCEEDED, result={"document_id": document_id, "deleted_chunks": removed}
    )
