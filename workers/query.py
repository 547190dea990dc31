"""The `query` queue: embed the question, search, build the prompt, hand it to the llm queue."""

from __future__ import annotations

from common import prompt
from common.schemas import Citation, EventName
from common.settings import get_settings
from workers import engines
from workers.base import JobTask
from workers.celery_app import GENERATE_TASK, RETRIEVE_TASK, app


def search(tenant: str, question: str, top_k: int) -> list[Citation]:
    """The tenant's chunks nearest to the question, best first."""
    vector = engines.embedder().encode(
        [question], normalize_embeddings=True, show_progress_bar=False
    )[0]
    hits = engines.vector_store().search(tenant, vector.tolist(), top_k)
    return [
        Citation(
            document_id=hit.payload["document_id"],
            title=hit.payload.get("title", ""),
            text=hit.payload["text"],
            score=hit.score,
            source=hit.payload.get("source"),
            page=hit.payload.get("page"),
        )
        for hit in hits
    ]


@app.task(name=RETRIEVE_TASK, bind=True, base=JobTask)
def retrieve(self: JobTask, job_id: str) -> None:
    """Retrieve an answer job's passages, render its prompt and enqueue its generation."""
    store = engines.job_store()
    if not store.start(job_id, worker=self.request.hostname or "?"):
        return
    settings = get_settings()
    raw = store.raw(job_id)
    passages = search(raw["tenant"], raw["question"], int(raw["top_k"]))
    # The prompt is rendered here, not in the llm worker, to keep that process's GIL for vLLM.
    ids, used = prompt.render(
        engines.llm_tokenizer(),
        raw["question"],
        passages,
        settings.llm_max_model_len,
        settings.llm_max_tokens,
    )
    citations = [c.model_dump() for c in used]
    store.emit(job_id, EventName.CITATIONS, citations)
    store.progress(job_id, 1, 2)
    app.send_task(GENERATE_TASK, args=[job_id, ids, citations], task_id=f"{job_id}-generate")
