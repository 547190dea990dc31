"""The `query` queue: embed the question, search the tenant's chunks, hand off to the llm queue."""

from __future__ import annotations

from common.schemas import Citation
from workers import engines
from workers.base import JobTask
from workers.celery_app import GENERATE_TASK, RETRIEVE_TASK, app


def search(tenant: str, question: str, top_k: int) -> list[Citation]:
    """The tenant's chunks nearest to the question, best first."""
    vector = engines.embedder().encode([question], normalize_embeddings=True)[0]
    hits = engines.vector_store().search(tenant, vector.tolist(), top_k)
    return [
        Citation(
            document_id=hit.payload["document_id"],
            title=hit.payload.get("title", ""),
            text=hit.payload["text"],
            score=hit.score,
            source=hit.payload.get("source"),
        )
        for hit in hits
    ]


@app.task(name=RETRIEVE_TASK, bind=True, base=JobTask)
def retrieve(self: JobTask, job_id: str) -> None:
    """Retrieve the passages of an answer job and enqueue its generation."""
    store = engines.job_store()
    if not store.start(job_id, worker=self.request.hostname or "?"):
        return
    raw = store.raw(job_id)
    passages = search(raw["tenant"], raw["question"], int(raw["top_k"]))
    store.progress(job_id, 1, 2)
    app.send_task(
        GENERATE_TASK,
        args=[job_id, [p.model_dump() for p in passages]],
        task_id=f"{job_id}-generate",
    )
