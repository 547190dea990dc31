"""The optional re-ranking stage: a cross-encoder scores each (query, passage) pair."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from common.schemas import Citation


class Reranker(Protocol):
    """Orders passages by relevance to a query, best first."""

    def rerank(self, query: str, passages: Sequence[Citation]) -> list[Citation]:
        """The passages re-scored and sorted, best first."""
        ...


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder loaded from a local folder."""

    def __init__(self, path: str) -> None:
        """Load the model at `path` (no hub access)."""
        from sentence_transformers import CrossEncoder

        self._model = CrossEncoder(path, local_files_only=True)

    def rerank(self, query: str, passages: Sequence[Citation]) -> list[Citation]:
        """The passages with the cross-encoder's scores, best first."""
        if not passages:
            return []
        scores = self._model.predict([(query, p.text) for p in passages], show_progress_bar=False)
        scored = [
            p.model_copy(update={"score": float(s)}) for p, s in zip(passages, scores, strict=True)
        ]
        return sorted(scored, key=lambda p: p.score, reverse=True)
