"""The `ingest` queue: parse → chunk → embed → upsert, with progress on the job's stream."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from itertools import islice
from typing import Any

from common.chunking import Chunk, chunk_sections
from common.parsing import ParseError, parse
from common.schemas import IngestResult, JobStatus
from common.settings import get_settings
from common.vectorstore import ChunkPoint
from workers import engines
from workers.base import JobTask
from workers.celery_app import INGEST_TASK, app

log = logging.getLogger(__name__)

POINT_NAMESPACE = uuid.UUID("6f2b8c1e-51a4-4d3e-9a43-0c1f6f1d2a7b")


def point_id(tenant: str, document_id: str, index: int) -> str:
    """Deterministic id of a chunk's point, so a retried task overwrites instead of duplicating."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{tenant}/{document_id}/{index}"))


def _points(raw: dict[str, str], title: str, chunks: list[Chunk], vectors: Any) -> list[ChunkPoint]:
    metadata = json.loads(raw.get("metadata") or "{}")
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
        points.append(
            ChunkPoint(
                point_id(raw["tenant"], raw["document_id"], chunk.index), vector.tolist(), payload
            )
        )
    return points


@app.task(name=INGEST_TASK, bind=True, base=JobTask)
def ingest(self: JobTask, job_id: str) -> None:
    """Ingest one uploaded document into the vector store."""
    store = engines.job_store()
    if not store.start(job_id, worker=self.request.hostname or "?"):
        return
    raw = store.raw(job_id)
    data = store.blob(job_id)
    if data is None:
        store.fail(job_id, "upload_missing", "the uploaded content expired before it was processed")
        return
    try:
        parsed = parse(data, raw.get("filename") or None)
        model = engines.embedder()
        settings = get_settings()
        chunks = list(
            chunk_sections(
                parsed.sections,
                model.tokenizer,
                settings.chunk_tokens,
                settings.chunk_overlap_tokens,
            )
        )
    except ParseError as exc:
        store.fail(job_id, exc.code, str(exc))
        return
    title = raw.get("title") or parsed.title or raw.get("filename") or "untitled"
    vectors = engines.vector_store()
    vectors.delete_document(raw["tenant"], raw["document_id"])
    total = len(chunks)
    store.progress(job_id, 0, total)
    done = 0
    batches = iter(chunks)
    while batch := list(islice(batches, settings.embedding_batch_size)):
        if store.status(job_id) is not JobStatus.RUNNING:
            return
        embedded = model.encode(
            [c.text for c in batch], batch_size=len(batch), normalize_embeddings=True
        )
        vectors.upsert(_points(raw, title, batch, embedded))
        done += len(batch)
        store.progress(job_id, done, total)
    result = IngestResult(
        document_id=raw["document_id"],
        chunks=total,
        content_sha256=hashlib.sha256(data).hexdigest(),
    )
    if store.finish(job_id, JobStatus.SUCCEEDED, result=result.model_dump()):
        store.drop_blob(job_id)
    log.info("ingested document %s: %d chunks", raw["document_id"], total, extra={"job_id": job_id})
