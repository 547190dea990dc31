"""Embedding batches across threads: many ingest (or query) threads, one model call per batch."""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class _Request:
    texts: list[str]
    future: Future[np.ndarray] = field(default_factory=Future)


class EmbeddingBatcher:
    """Coalesces concurrent `encode` calls into batches of up to `batch_size` texts: a batch
    waits up to `max_wait_s` after its first request for more (0: it takes only those already
    waiting)."""

    def __init__(self, model: Any, batch_size: int, max_wait_s: float = 0.01) -> None:
        self.model = model
        self.batch_size = batch_size
        self.max_wait_s = max_wait_s
        self._requests: queue.Queue[_Request] = queue.Queue()
        threading.Thread(target=self._run, name="embedding-batcher", daemon=True).start()

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalized embeddings of the texts, computed together with other threads' texts."""
        return self.submit(texts).result()

    def submit(self, texts: list[str]) -> Future[np.ndarray]:
        """`encode`'s embeddings, to come: the caller goes on meanwhile."""
        request = _Request(texts)
        self._requests.put(request)
        return request.future

    def _take(self) -> list[_Request]:
        batch = [self._requests.get()]
        size = len(batch[0].texts)
        deadline = time.monotonic() + self.max_wait_s
        while size < self.batch_size:
            try:
                request = self._requests.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            batch.append(request)
            size += len(request.texts)
        return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            texts = [text for request in batch for text in request.texts]
            try:
                vectors = self.model.encode(
                    texts,
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                    convert_to_numpy=True,
                )
            except Exception as exc:  # handed to every waiting thread
                for request in batch:
                    request.future.set_exception(exc)
                continue
            start = 0
            for request in batch:
                request.future.set_result(vectors[start : start + len(request.texts)])
                start += len(request.texts)
