"""The embedding batcher, on the real embedding model: concurrent calls share model calls, each
gets its own texts' vectors, and a batcher that does not wait sends a lone text at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from workers import engines
from workers.embedding import EmbeddingBatcher

QUESTIONS = [f"What does study {n} find about treatment {n % 7}?" for n in range(16)]


class Recording:
    """The real model, with the size of each call it gets."""

    def __init__(self) -> None:
        self.model = engines.embedder()
        self.calls: list[int] = []

    def encode(self, texts: list[str], **kwargs: Any) -> np.ndarray:
        """The real model's encode, recorded."""
        self.calls.append(len(texts))
        return self.model.encode(texts, **kwargs)  # type: ignore[no-any-return]


def test_concurrent_questions_share_model_calls_and_get_their_own_vectors() -> None:
    model = Recording()
    batcher = EmbeddingBatcher(model, batch_size=64, max_wait_s=0.0)
    gate = threading.Barrier(len(QUESTIONS))

    def one(text: str) -> np.ndarray:
        gate.wait()
        return batcher.encode([text])[0]

    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        vectors = list(pool.map(one, QUESTIONS))

    assert sum(model.calls) == len(QUESTIONS)
    assert len(model.calls) < len(QUESTIONS)
    alone = model.model.encode(QUESTIONS, normalize_embeddings=True, show_progress_bar=False)
    for got, expected in zip(vectors, alone, strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_batcher_that_does_not_wait_sends_a_lone_text_at_once() -> None:
    model = Recording()
    batcher = EmbeddingBatcher(model, batch_size=64, max_wait_s=0.0)
    waiting = EmbeddingBatcher(model, batch_size=64, max_wait_s=1.0)
    batcher.encode(["warm up"])

    start = time.perf_counter()
    batcher.encode([QUESTIONS[0]])
    at_once = time.perf_counter() - start
    start = time.perf_counter()
    waiting.encode([QUESTIONS[0]])
    waited = time.perf_counter() - start

    assert waited >= 1.0
    assert at_once < 0.5
