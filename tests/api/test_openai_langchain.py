"""LangChain's `ChatOpenAI` and `OpenAIEmbeddings` (langchain-openai) answering through ragq."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

from common.apikeys import create_key, open_redis
from tests.conftest import Service, auth
from tests.helpers import ingest_text

FACT = (
    "The Quarnelle lighthouse stands on the island of Tavik. It was designed by the engineer "
    "Oskar Lindqvist and first lit in 1893. Its lamp is visible for 22 nautical miles."
)


@pytest.fixture(scope="module")
def key(service: Service) -> Iterator[str]:
    """A key of a tenant of this module's own, which holds one document."""
    key, _ = create_key(open_redis(service.redis_url), f"lc-{uuid.uuid4().hex[:8]}")
    with httpx.Client(base_url=service.base_url, timeout=60, headers=auth(key)) as http:
        ingest_text(http, FACT, "Quarnelle lighthouse")
    yield key


def test_chat_openai_answers_and_streams(service: Service, key: str) -> None:
    llm = ChatOpenAI(
        model="ragq",
        base_url=f"{service.base_url}/v1",
        api_key=key,  # type: ignore[arg-type]
        max_retries=0,
        extra_body={"ragq": {"top_k": 3}},
    )
    reply = llm.invoke("Who designed the Quarnelle lighthouse?")
    assert isinstance(reply.content, str) and reply.content.strip()
    assert reply.response_metadata["finish_reason"] in ("stop", "length")
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] > 0
    chunks = list(llm.stream("Who designed the Quarnelle lighthouse?"))
    streamed = "".join(str(c.content) for c in chunks)
    # Not compared with the first reply: on one machine vLLM on the CPU decoded the same prompt
    # to other text the second time, greedy as it is. What streamed is the answer ragq recorded
    # for the tenant's newest answer job (this module's tenant asks nothing else meanwhile).
    with httpx.Client(base_url=service.base_url, timeout=30, headers=auth(key)) as http:
        (newest,) = http.get("/v1/jobs", params={"kind": "answer", "limit": 1}).json()["jobs"]
    assert streamed.strip() and streamed == newest["result"]["answer"], newest


def test_openai_embeddings_embed_documents_and_queries(service: Service, key: str) -> None:
    embeddings = OpenAIEmbeddings(
        model="ragq-embedding",
        base_url=f"{service.base_url}/v1",
        api_key=key,  # type: ignore[arg-type]
        max_retries=0,
        # LangChain would otherwise send tiktoken ids; ragq embeds text with its own model.
        check_embedding_ctx_length=False,
    )
    documents = embeddings.embed_documents([FACT, "Sourdough needs a starter."])
    query = np.array(embeddings.embed_query("Who designed the lighthouse?"))
    assert [len(v) for v in documents] == [384, 384]
    # The lighthouse question is nearer the lighthouse text than the bread one.
    assert query @ np.array(documents[0]) > query @ np.array(documents[1])
