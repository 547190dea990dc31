"""Long-lived objects of a worker process, each created once on first use (thread-safe)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from functools import update_wrapper
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from common.jobs import JobStore
from common.models import embedding_model_path, llm_model_path
from common.settings import get_settings
from common.sparse import SparseEncoder
from common.vectorstore import VectorStore, open_store
from workers.embedding import EmbeddingBatcher
from workers.rerank import CrossEncoderReranker, Reranker

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedTokenizerBase

    from workers.llm_engine import LLMEngine

T = TypeVar("T")


class process_singleton(Generic[T]):
    """Wrap a factory so the object is built once per process, even under a thread pool."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._value: T | None = None
        self._built = False
        update_wrapper(self, factory)

    def __call__(self) -> T:
        """The object, built on first use."""
        if not self._built:
            with self._lock:
                if not self._built:
                    self._value = self._factory()
                    self._built = True
        return cast(T, self._value)

    def existing(self) -> T | None:
        """The object if it was built, without building it."""
        return self._value


@process_singleton
def job_store() -> JobStore:
    """The job store on the configured Redis."""
    settings = get_settings()
    return JobStore(settings.redis_url, settings.job_ttl_s, settings.max_attempts)


@process_singleton
def embedder() -> SentenceTransformer:
    """The sentence-transformers model, on the GPU when there is one."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(embedding_model_path(get_settings()))


@process_singleton
def batcher() -> EmbeddingBatcher:
    """The embedding batcher the ingest threads of this process share."""
    return EmbeddingBatcher(embedder(), get_settings().embedding_batch_size)


@process_singleton
def query_batcher() -> EmbeddingBatcher:
    """The embedding batcher of this process's questions: one goes at once, and those that come
    while the model runs go together in its next call (concurrent questions no longer run one
    forward pass each, side by side on the same cores)."""
    return EmbeddingBatcher(embedder(), get_settings().embedding_batch_size, max_wait_s=0.0)


@process_singleton
def sparse_encoder() -> SparseEncoder:
    """The BM25 encoder of chunk and query terms."""
    return SparseEncoder()


@process_singleton
def reranker() -> Reranker | None:
    """The re-ranking stage if RAGQ_RERANK_MODEL names one, else None."""
    path = get_settings().rerank_model
    return CrossEncoderReranker(path) if path else None


@process_singleton
def vector_store() -> VectorStore:
    """The vector store, its collection sized for the embedding model."""
    store = open_store(get_settings())
    dim = embedder().get_embedding_dimension()
    assert dim is not None
    store.ensure(dim)
    return store


@process_singleton
def llm_tokenizer() -> PreTrainedTokenizerBase:
    """The tokenizer (and chat template) of the language model the llm workers serve."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(llm_model_path(get_settings()))


@process_singleton
def llm() -> LLMEngine:
    """The vLLM engine shared by every answer task of this process."""
    from workers.llm_engine import LLMEngine

    return LLMEngine(get_settings())


def close_all() -> None:
    """Release what this process built: stop the vLLM engine, flush and close the store."""
    engine = llm.existing()
    if engine is not None:
        engine.shutdown()
    store = vector_store.existing()
    if store is not None:
        store.close()
