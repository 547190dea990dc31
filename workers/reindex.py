"""Re-index a document: its stored chunks embedded and term-weighted again, under the same ids.

This brings chunks written by an older version (before sparse vectors, or with another embedding
model of the same size) up to date without the original upload, which is not kept.
"""

from __future__ import annotations

from itertools import islice

from common.contract import REINDEX_TASK
from common.documents import DocumentStatus
from common.schemas import JobStatus
from common.settings import get_settings
from common.telemetry import INGEST_CHUNKS
from common.vectorstore import ChunkPoint
from workers import draining, engines
from workers.base import JobTask
from workers.celery_app import app
from workers.document_tasks import DocumentJob, run_document_task


def _ready(job: DocumentJob) -> bool:
    """Only a ready document is re-indexed: one being deleted or replaced is left alone."""
    return job.doc_field("status") == DocumentStatus.READY


def _reindex(job: DocumentJob) -> None:
    """Recompute the vectors of the document's searchable chunks in batches; the job succeeds."""
    store, job_id = job.store, job.job_id
    vectors = engines.vector_store()
    stored = sorted(
        vectors.chunks(job.tenant, job.document_id), key=lambda h: h.payload["chunk_index"]
    )
    encoder = engines.sparse_encoder()
    total, done = len(stored), 0
    store.progress(job_id, 0, total)
    hits = iter(stored)
    while batch := list(islice(hits, get_settings().embedding_batch_size)):
        draining.check()
        if store.status(job_id) is not JobStatus.RUNNING:
            return
        dense = engines.batcher().encode([h.payload["text"] for h in batch])
        vectors.upsert(
            [
                ChunkPoint(h.id, v.tolist(), h.payload, encoder.encode_document(h.payload["text"]))
                for h, v in zip(batch, dense, strict=True)
            ]
        )
        done += len(batch)
        INGEST_CHUNKS.inc(len(batch))
        store.progress(job_id, done, total)
    result = {"document_id": job.document_id, "chunks": total}
    store.finish(job_id, JobStatus.SUCCEEDED, result=result)


@app.task(name=REINDEX_TASK, bind=True, base=JobTask)
def reindex_document(self: JobTask, job_id: str) -> None:
    """Recompute the dense and sparse vectors of every chunk of one document."""
    run_document_task(self, job_id, _reindex, wanted=_ready)
