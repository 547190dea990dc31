"""Long-lived objects of a worker process, each created once on first use (thread-safe)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, TypeVar

from common.jobs import JobStore
from common.models import embedding_model_path
from common.settings import get_settings
from common.vectorstore import VectorStore, open_store

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from workers.llm_engine import LLMEngine

T = TypeVar("T")


def process_singleton(factory: Callable[[], T]) -> Callable[[], T]:
    """Wrap a factory so the object is built once per process, even under a thread pool."""
    lock = threading.Lock()
    holder: list[T] = []

    @wraps(factory)
    def get() -> T:
        if not holder:
            with lock:
                if not holder:
                    holder.append(factory())
        return holder[0]

    return get


@process_singleton
def job_store() -> JobStore:
    """The job store on the configured Redis."""
    settings = get_settings()
    return JobStore(settings.redis_url, settings.job_ttl_s)


@process_singleton
def embedder() -> SentenceTransformer:
    """The sentence-transformers model, on the GPU when there is one."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(embedding_model_path(get_settings()))


@process_singleton
def vector_store() -> VectorStore:
    """The vector store, its collection sized for the embedding model."""
    store = open_store(get_settings())
    dim = embedder().get_sentence_embedding_dimension()
    assert dim is not None
    store.ensure(dim)
    return store


@process_singleton
def llm() -> LLMEngine:
    """The vLLM engine shared by every answer task of this process."""
    from workers.llm_engine import LLMEngine

    return LLMEngine(get_settings())
