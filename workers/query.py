"""The `query` queue: retrieve passages for an answer job or for a direct search."""

from __future__ import annotations

import json
from concurrent.futures import Future
from typing import Any

import numpy as np

from common import conversation, prompt, usage
from common.access import ACCESS_GROUPS, Access, loads_groups
from common.contract import (
    EMBED_TASK,
    GENERATE_TASK,
    GENERATION_FIELDS,
    RETRIEVE_TASK,
    SEARCH_TASK,
)
from common.jobs import progress_update
from common.keys import doc_key, groups_pending_key
from common.messages import TaskMessages
from common.schemas import (
    AnswerResult,
    Citation,
    EventName,
    JobStatus,
    SearchFilter,
    SearchFusion,
    SearchMode,
)
from common.settings import get_settings
from common.sparse import SparseVector
from common.vectorstore import SearchHit
from workers import engines
from workers.base import JobTask
from workers.celery_app import app

REPLY_TTL_S = 60
MESSAGES = TaskMessages(app)
NOT_COVERED = "The documents do not cover this question."


def _citation(hit: SearchHit) -> Citation:
    return Citation(
        document_id=hit.payload["document_id"],
        title=hit.payload.get("title", ""),
        text=hit.payload["text"],
        score=hit.score,
        source=hit.payload.get("source"),
        page=hit.payload.get("page"),
    )


def search(
    tenant: str,
    query: str,
    limit: int,
    mode: SearchMode = SearchMode.HYBRID,
    flt: SearchFilter | None = None,
    fusion: SearchFusion | None = None,
    dense: list[float] | None = None,
    sparse: SparseVector | None = None,
    groups: list[str] | None = None,
) -> list[Citation]:
    """The tenant's chunks that best match the query (its vectors if known), best first; with
    `groups`, only ungrouped chunks and those of one of the groups."""
    settings = get_settings()
    if mode is not SearchMode.SPARSE and dense is None:
        dense = embed(query)
    if mode is SearchMode.DENSE:
        sparse = None
    elif sparse is None:
        sparse = engines.sparse_encoder().encode_query(query)
    reranker = engines.reranker()
    candidates = max(limit, settings.rerank_candidates) if reranker else limit
    hits = engines.vector_store().search(
        tenant,
        dense,
        candidates,
        sparse=sparse,
        mode=mode,
        filter=flt,
        fusion=fusion or settings.search_fusion,
        groups=groups,
        hidden=hidden_documents(tenant, groups),
    )
    passages = [_citation(hit) for hit in hits]
    return reranker.rerank(query, passages)[:limit] if reranker else passages


def hidden_documents(tenant: str, groups: list[str] | None) -> list[str]:
    """Documents whose access groups changed, whose chunks do not carry the change yet, and whose
    new groups the registry holds keep from a key of `groups` (None: an admin, who reads all)."""
    if groups is None:
        return []
    redis = engines.job_store().redis
    pending = sorted(redis.smembers(groups_pending_key(tenant)))  # type: ignore[arg-type]
    if not pending:
        return []
    with redis.pipeline(transaction=False) as pipe:
        for document_id in pending:
            pipe.hget(doc_key(tenant, document_id), ACCESS_GROUPS)
        found = pipe.execute()
    reader = Access(False, tuple(groups))
    return [d for d, raw in zip(pending, found, strict=True) if not reader.sees(loads_groups(raw))]


def embed(query: str, pending: Future[np.ndarray] | None = None) -> list[float]:
    """The query's dense vector (normalised, so a dot product is its cosine similarity); from
    `pending`, its embedding already asked for, if given."""
    vectors = pending.result() if pending is not None else engines.query_batcher().encode([query])
    return list(vectors[0].tolist())


def conversation_query(
    question: str,
    history: list[conversation.Turn],
    dense: bool,
    pending: Future[np.ndarray] | None = None,
) -> tuple[str, list[float] | None, SparseVector | None]:
    """The text, dense vector and BM25 terms that retrieve for the conversation's last question.

    Without earlier questions these are the question's own (its vector from `pending`, the
    question's embedding already asked for, if given; the sparse terms are then left to
    `search`).
    """
    earlier = conversation.earlier_questions(history)
    if not earlier:
        return question, embed(question, pending) if dense else None, None
    vector = None
    if dense:
        both = engines.query_batcher().encode([question, earlier])
        vector = conversation.dense_query(both[0], both[1])
    encoder = engines.sparse_encoder()
    terms = conversation.sparse_query(encoder.encode_query(question), encoder.encode_query(earlier))
    return f"{earlier}\n{question}", vector, terms


def best_similarity(
    tenant: str, dense: list[float], flt: SearchFilter | None, groups: list[str] | None
) -> float | None:
    """The dense cosine similarity of the tenant's closest chunk to the query (None: no chunk),
    among the chunks of `groups` and the ungrouped ones if given.

    Fused hybrid scores are not comparable across queries; this one is, so it can be held
    against a fixed threshold.
    """
    hidden = hidden_documents(tenant, groups)
    hits = engines.vector_store().search(
        tenant, dense, 1, mode=SearchMode.DENSE, filter=flt, groups=groups, hidden=hidden
    )
    return hits[0].score if hits else None


def _not_covered(job_id: str, passages: list[Citation], relevance: float | None) -> None:
    """Finish an answer job with the "not covered" answer, without generating."""
    store = engines.job_store()
    result = AnswerResult(
        answer=NOT_COVERED,
        citations=[c.model_copy(update={"cited": False}) for c in passages],
        finish_reason="not_grounded",
        grounded=False,
        reason="no_relevant_passages",
        relevance=relevance,
    )
    store.emit(job_id, EventName.PASSAGES, [c.model_dump() for c in passages])
    store.emit(job_id, EventName.TOKEN, {"text": NOT_COVERED})
    store.emit(job_id, EventName.CITATIONS, [c.model_dump() for c in result.citations])
    store.progress(job_id, 2, 2)
    store.finish(job_id, JobStatus.SUCCEEDED, result=result.model_dump())


@app.task(name=RETRIEVE_TASK, bind=True, base=JobTask)
def retrieve(self: JobTask, job_id: str, question: str | None = None) -> None:
    """Retrieve an answer job's passages, render its prompt and enqueue its generation.

    `question`, which the API sends for a question without a conversation (the reconciler's
    re-sends do not), is embedded while the job is claimed.
    """
    store = engines.job_store()
    early = engines.query_batcher().submit([question]) if question else None
    raw = store.claim(job_id, worker=self.request.hostname or "?")
    if raw is None:
        return
    settings = get_settings()
    flt = SearchFilter.model_validate_json(raw["filter"]) if raw.get("filter") else None
    mode = SearchMode(raw.get("mode") or settings.search_mode)
    min_relevance = float(raw.get("min_relevance") or 0.0)
    needs_dense = mode is not SearchMode.SPARSE or min_relevance > 0
    history = conversation.loads(raw.get("history"))
    query, dense, sparse = conversation_query(raw["question"], history, needs_dense, early)
    # The groups of the key that asked, applied inside the search.
    groups = Access.from_fields(raw).search_groups
    passages = search(
        raw["tenant"],
        query,
        int(raw["top_k"]),
        mode,
        flt,
        dense=dense,
        sparse=sparse,
        groups=groups,
    )
    if dense is not None and min_relevance > 0:
        relevance = best_similarity(raw["tenant"], dense, flt, groups)
        if relevance is None or relevance < min_relevance:
            _not_covered(job_id, passages, relevance)
            return
    quote = prompt.quoting(raw)
    if quote:
        # A quoted answer is written from the passages it may quote, and cites only those.
        passages = passages[: settings.answer_quote_passages]
    # The prompt is rendered here, not in the llm worker, to keep that process's GIL for vLLM.
    ids, used = prompt.render(
        engines.llm_tokenizer(),
        raw["question"],
        passages,
        settings.llm_max_model_len,
        settings.llm_max_tokens,
        history,
        raw.get("instructions", ""),
        quote,
    )
    citations = [c.model_dump() for c in used]
    passages_given = progress_update(1, 2, before=((EventName.PASSAGES, citations),))
    # Released with its passages, its progress and the generation's message in one transaction:
    # the llm worker can claim the job as its holder as soon as the message is there, and none
    # of it is stored without the rest (nor at all if the job was cancelled meanwhile).
    fields = {name: raw[name] for name in GENERATION_FIELDS if name in raw}
    queue, message = MESSAGES.build(
        GENERATE_TASK, f"{job_id}-generate", [job_id, ids, citations, fields]
    )
    store.release(
        job_id, "handoff", also=lambda pipe: pipe.lpush(queue, message), along=passages_given
    )


@app.task(name=SEARCH_TASK, ignore_result=True)
def search_task(request: dict[str, Any], reply_key: str) -> None:
    """Run a direct search and push its hits, or its error, to the caller's reply list."""
    try:
        flt = SearchFilter.model_validate(request["filter"]) if request.get("filter") else None
        fusion = SearchFusion(request["fusion"]) if request.get("fusion") else None
        hits = search(
            request["tenant"],
            request["query"],
            request["limit"],
            SearchMode(request["mode"]),
            flt,
            fusion,
            groups=request.get("groups"),
        )
        reply: dict[str, Any] = {"results": [hit.model_dump() for hit in hits]}
    except ValueError as exc:
        _reply(reply_key, {"error": {"code": "invalid_search", "message": str(exc)}})
        return
    except Exception:
        _reply(reply_key, {"error": {"code": "internal_error", "message": "the search failed"}})
        raise
    # Counted with its reply, a search whose caller stopped waiting included: it was done.
    _reply(reply_key, reply, request["tenant"], request.get("key_id", ""))


@app.task(name=EMBED_TASK, ignore_result=True)
def embed_task(texts: list[str], reply_key: str) -> None:
    """Embed texts with the indexing model; push their vectors and token count, or an error."""
    try:
        model = engines.embedder()
        vectors = model.encode(texts, normalize_embeddings=True, show_progress_bar=False)
        tokens = sum(len(ids) for ids in model.tokenizer(texts)["input_ids"])
        reply = {"vectors": vectors.tolist(), "tokens": tokens}
    except Exception:
        _reply(reply_key, {"error": {"code": "internal_error", "message": "the embedding failed"}})
        raise
    _reply(reply_key, reply)


def _reply(key: str, reply: dict[str, Any], tenant: str = "", key_id: str = "") -> None:
    """Push a reply; with a tenant, count one search for it (and its API key)."""
    with engines.job_store().redis.pipeline() as pipe:
        pipe.rpush(key, json.dumps(reply))
        pipe.expire(key, REPLY_TTL_S)
        if tenant:
            usage.count(pipe, tenant, key_id, {"searches": 1})
        pipe.execute()
