"""Embeddings in OpenAI's shape: a round trip through a query worker, like a direct search."""

from __future__ import annotations

import base64
import struct

import redis.asyncio as aioredis
from celery import Celery

from api.errors import ApiError
from api.openai_schemas import (
    EMBEDDING_MODEL,
    MAX_EMBEDDING_INPUTS,
    Embedding,
    EmbeddingList,
    EmbeddingsIn,
    EmbeddingUsage,
)
from api.services.worker_calls import call_query_worker
from common.contract import EMBED_TASK
from common.settings import Settings

MAX_INPUT_CHARS = 32000


class EmbeddingService:
    """Sends texts to the query queue and waits for their vectors."""

    def __init__(self, redis: aioredis.Redis, celery: Celery, settings: Settings) -> None:
        self.redis = redis
        self.celery = celery
        self.settings = settings

    async def embed(self, body: EmbeddingsIn) -> EmbeddingList:
        """The inputs' vectors by the indexing model; 504 if no worker answered."""
        if body.model != EMBEDDING_MODEL:
            raise ApiError(
                404,
                "model_not_found",
                f"the embedding model is {EMBEDDING_MODEL!r}, not {body.model!r}",
            )
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts:
            raise ApiError(400, "empty_input", "input holds no text")
        if len(texts) > MAX_EMBEDDING_INPUTS:
            raise ApiError(400, "too_many_inputs", f"at most {MAX_EMBEDDING_INPUTS} inputs")
        for n, text in enumerate(texts):
            if not text.strip():
                raise ApiError(400, "empty_input", f"input[{n}] is empty")
            if len(text) > MAX_INPUT_CHARS:
                raise ApiError(
                    400, "input_too_long", f"input[{n}] is longer than {MAX_INPUT_CHARS} characters"
                )
        reply = await call_query_worker(
            self.celery,
            self.redis,
            EMBED_TASK,
            texts,
            self.settings.search_timeout_s,
            "embedding_timeout",
        )
        if "error" in reply:
            raise ApiError(502, reply["error"]["code"], reply["error"]["message"])
        vectors: list[list[float]] = reply["vectors"]
        if body.dimensions is not None and body.dimensions != len(vectors[0]):
            raise ApiError(
                400,
                "unsupported_dimensions",
                f"the model's vectors have {len(vectors[0])} dimensions; it cannot shorten them",
            )
        data = [
            Embedding(index=n, embedding=_encoded(v) if body.encoding_format == "base64" else v)
            for n, v in enumerate(vectors)
        ]
        usage = EmbeddingUsage(prompt_tokens=reply["tokens"], total_tokens=reply["tokens"])
        return EmbeddingList(data=data, model=body.model, usage=usage)


def _encoded(vector: list[float]) -> str:
    """A vector as base64 of little-endian float32, as OpenAI's `encoding_format=base64`."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
