"""The OpenAI-compatible routes, driven by the real `openai` SDK against the live service."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from api.openai_schemas import JOB_HEADER
from cli.supervisor import free_port
from common.apikeys import create_key, open_redis
from tests.conftest import Service, auth
from tests.helpers import api_process, events, ingest_text, wait_job

LIGHTHOUSE = (
    "The Quarnelle lighthouse stands on the island of Tavik. It was designed by the engineer "
    "Oskar Lindqvist and first lit in 1893. Its lamp is visible for 22 nautical miles."
)
BREAD = (
    "Sourdough bread needs a starter of flour and water that ferments for several days. "
    "Bakers feed the starter daily and keep it at room temperature."
)
# A follow-up names nothing: alone, "And who funded it?" finds the garden, which talks about
# funding; after a question about the telescope it must find the telescope.
TELESCOPE = (
    "The Zorblat telescope is a radio telescope on Mount Kestrel. It was built in 2011 by the "
    "Kestrel Institute, and its construction was paid for by the Marnow Foundation."
)
GARDEN = (
    "The community garden on Elm Street was funded by bake sales, and its fountain was funded "
    "by donations from the neighbours."
)
QUESTION = "Who designed the Quarnelle lighthouse?"


@dataclass(frozen=True)
class Tenant:
    """A tenant of this module's own, with its documents."""

    key: str
    http: httpx.Client
    docs: dict[str, str]  # name -> document id
    base_url: str

    def client(self, **options: Any) -> openai.OpenAI:
        """The OpenAI SDK on ragq with this tenant's key."""
        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=self.key, **options)

    def async_client(self) -> openai.AsyncOpenAI:
        """The async OpenAI SDK on ragq with this tenant's key."""
        return openai.AsyncOpenAI(base_url=f"{self.base_url}/v1", api_key=self.key)

    def only(self, *names: str) -> dict[str, Any]:
        """`extra_body` that retrieves from these documents only."""
        return {"ragq": {"filter": {"document_ids": [self.docs[n] for n in names]}}}


@pytest.fixture(scope="module")
def tenant(service: Service) -> Iterator[Tenant]:
    key, _ = create_key(open_redis(service.redis_url), f"oai-{uuid.uuid4().hex[:8]}")
    with httpx.Client(base_url=service.base_url, timeout=60, headers=auth(key)) as http:
        texts = {"lighthouse": LIGHTHOUSE, "bread": BREAD, "telescope": TELESCOPE, "garden": GARDEN}
        docs = {
            name: ingest_text(http, text, name.title())["document_id"]
            for name, text in texts.items()
        }
        yield Tenant(key, http, docs, service.base_url)


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def test_models_are_listed_and_an_unknown_one_is_404(tenant: Tenant) -> None:
    client = tenant.client()
    assert {m.id for m in client.models.list()} == {"ragq", "ragq-embedding"}
    assert client.models.retrieve("ragq").owned_by == "ragq"
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[user(QUESTION)])
    assert caught.value.code == "model_not_found"
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]


def check_annotations(
    content: str, message: Any, base_url: str, http: httpx.Client, citations: list[Any]
) -> None:
    """Each annotation spans a sentence a passage supports (the answer opens with a quote, so
    there is one at least) and links to its cited document."""
    notes = message.annotations or []
    supported = {(s["start"], s["end"]) for c in citations for s in c["spans"]}
    assert supported, citations
    assert {(n.url_citation.start_index, n.url_citation.end_index) for n in notes} == supported
    assert all(0 <= start < end <= len(content) for start, end in supported)
    for note in notes:
        assert note.type == "url_citation"
        assert note.url_citation.url.startswith(f"{base_url}/v1/documents/")
        document = http.get(note.url_citation.url)
        assert document.status_code == 200, document.text
        assert document.json()["title"] == note.url_citation.title


def test_a_completion_is_an_answer_job_with_usage_and_citations(tenant: Tenant) -> None:
    client = tenant.client()
    raw = client.chat.completions.with_raw_response.create(
        model="ragq", messages=[user(QUESTION)], extra_body=tenant.only("lighthouse", "bread")
    )
    completion = raw.parse()
    job_id = raw.headers[JOB_HEADER]
    assert completion.id == f"chatcmpl-{job_id}"
    assert completion.object == "chat.completion"
    choice = completion.choices[0]
    assert choice.finish_reason in ("stop", "length")
    assert choice.message.role == "assistant" and choice.message.content
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # The job underneath: an ordinary answer job, with the same answer.
    record = tenant.http.get(f"/v1/jobs/{job_id}").json()
    assert record["kind"] == "answer" and record["status"] == "succeeded"
    assert record["result"]["answer"] == choice.message.content
    assert usage.completion_tokens == record["result"]["usage"]["completion_tokens"]
    # The extension: the passages, as the job's result has them.
    citations = completion.model_extra["citations"]  # type: ignore[index]
    assert citations == record["result"]["citations"]
    assert {c["document_id"] for c in citations} <= {
        tenant.docs["lighthouse"],
        tenant.docs["bread"],
    }
    assert "Lindqvist" in citations[0]["text"]
    check_annotations(
        choice.message.content, choice.message, tenant.base_url, tenant.http, citations
    )


def test_a_streamed_completion_carries_citations_once_then_usage(tenant: Tenant) -> None:
    client = tenant.client()
    stream = client.chat.completions.create(
        model="ragq",
        messages=[user(QUESTION)],
        stream=True,
        stream_options={"include_usage": True},
        extra_body=tenant.only("lighthouse", "bread"),
    )
    chunks = list(stream)
    job_id = chunks[0].id.removeprefix("chatcmpl-")
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1
    final = finals[0]
    # Citations come once, in the last chunk with a choice, never with the text.
    with_citations = [c for c in chunks if (c.model_extra or {}).get("citations") is not None]
    assert with_citations == [final]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-2] is final
    record = wait_job(tenant.http, job_id)
    assert content == record["result"]["answer"]
    assert final.model_extra["citations"] == record["result"]["citations"]  # type: ignore[index]
    delta = final.choices[0].delta
    notes = [
        openai.types.chat.chat_completion_message.ChatCompletionMessage.model_validate(
            {
                "role": "assistant",
                "content": content,
                "annotations": (delta.model_extra or {}).get("annotations", []),
            }
        )
    ][0]
    check_annotations(content, notes, tenant.base_url, tenant.http, record["result"]["citations"])
    assert chunks[-1].usage.completion_tokens == record["result"]["usage"]["completion_tokens"]  # type: ignore[union-attr]


def test_the_async_client_streams_and_completes(tenant: Tenant) -> None:
    async def both() -> tuple[str, str]:
        client = tenant.async_client()
        completion = await client.chat.completions.create(
            model="ragq", messages=[user(QUESTION)], extra_body=tenant.only("lighthouse")
        )
        stream = await client.chat.completions.create(
            model="ragq",
            messages=[user(QUESTION)],
            stream=True,
            extra_body=tenant.only("lighthouse"),
        )
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        await client.close()
        return completion.choices[0].message.content or "", "".join(parts)

    whole, streamed = asyncio.run(both())
    assert whole.strip() and streamed.strip()
    # Greedy decoding (temperature 0) on the same prompt: the same answer both ways.
    assert whole == streamed


def test_sampling_and_retrieval_options_reach_the_job(tenant: Tenant) -> None:
    client = tenant.client()
    completion = client.chat.completions.create(
        model="ragq",
        messages=[{"role": "system", "content": "Be brief."}, user(QUESTION)],
        max_tokens=5,
        temperature=0.0,
        seed=7,
        extra_body={"ragq": {"top_k": 1, **tenant.only("lighthouse")["ragq"]}},
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 5
    citations = completion.model_extra["citations"]  # type: ignore[index]
    assert [c["document_id"] for c in citations] == [tenant.docs["lighthouse"]]


def test_a_follow_up_retrieves_for_the_conversation(tenant: Tenant) -> None:
    follow_up = "And who funded it?"
    # Alone, the last turn finds the wrong document.
    alone = tenant.http.post("/v1/search", json={"query": follow_up, "top_k": 1}).json()
    assert alone["results"][0]["document_id"] == tenant.docs["garden"]
    conversation = [
        user("What is the Zorblat telescope?"),
        {"role": "assistant", "content": "It is a radio telescope on Mount Kestrel [1]."},
        user(follow_up),
    ]
    raw = tenant.client().chat.completions.with_raw_response.create(
        model="ragq", messages=conversation, max_tokens=8
    )
    job_id = raw.headers[JOB_HEADER]
    passages = next(e[2] for e in events(tenant.http, job_id) if e[1] == "passages")
    assert passages[0]["document_id"] == tenant.docs["telescope"]
    assert "Marnow" in passages[0]["text"]


def test_a_change_of_subject_is_followed(tenant: Tenant) -> None:
    conversation = [
        user("What is the Zorblat telescope?"),
        {"role": "assistant", "content": "A radio telescope."},
        user("How do bakers keep a sourdough starter?"),
    ]
    raw = tenant.client().chat.completions.with_raw_response.create(
        model="ragq", messages=conversation, max_tokens=4
    )
    job_id = raw.headers[JOB_HEADER]
    passages = next(e[2] for e in events(tenant.http, job_id) if e[1] == "passages")
    assert passages[0]["document_id"] == tenant.docs["bread"]


def llm_tokens(service: Service) -> float:
    """The llm worker's count of generated tokens."""
    text = httpx.get(f"http://127.0.0.1:{service.metrics_ports['llm-worker']}/metrics").text
    found = re.search(r"^ragq_llm_tokens_total ([0-9.e+]+)$", text, re.M)
    assert found, text
    return float(found.group(1))


def test_leaving_a_stream_cancels_the_job_and_its_generation(
    tenant: Tenant, service: Service
) -> None:
    body = {
        "model": "ragq",
        "stream": True,
        "max_tokens": 64,
        "messages": [user("Write a long essay about the Quarnelle lighthouse and the sea.")],
        "ragq": {"min_relevance": 0, **tenant.only("lighthouse")["ragq"]},
    }
    with tenant.http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        job_id = response.headers[JOB_HEADER]
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line.removeprefix("data: "))
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                break  # the first text: the engine is generating
        else:
            raise AssertionError("the answer ended before the client could leave")
    record = wait_job(tenant.http, job_id, timeout=30)
    assert record["status"] == "cancelled", record
    assert record["error"]["code"] == "client_disconnected"
    # The generation stopped: no token is produced any more.
    time.sleep(1.0)
    before = llm_tokens(service)
    time.sleep(1.5)
    assert llm_tokens(service) == before
    assert record["result"] is None


def test_leaving_a_waiting_request_cancels_the_job(tenant: Tenant) -> None:
    body = {
        "model": "ragq",
        "max_tokens": 64,
        "messages": [user("Write a long essay about the Quarnelle lighthouse and the sea.")],
        "ragq": {"min_relevance": 0, **tenant.only("lighthouse")["ragq"]},
    }
    before = {
        j["job_id"] for j in tenant.http.get("/v1/jobs", params={"kind": "answer"}).json()["jobs"]
    }
    with pytest.raises(httpx.ReadTimeout):
        # The client gives up (and closes its connection) long before the answer is ready.
        tenant.http.post("/v1/chat/completions", json=body, timeout=httpx.Timeout(60, read=1.0))
    jobs = tenant.http.get("/v1/jobs", params={"kind": "answer"}).json()["jobs"]
    (job,) = [j for j in jobs if j["job_id"] not in before]
    record = wait_job(tenant.http, job["job_id"], timeout=30)
    assert record["status"] == "cancelled", record
    assert record["error"]["code"] == "client_disconnected"


BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("no messages", {"messages": []}, "invalid_request"),
    ("malformed message", {"messages": [{"content": "hi"}]}, "invalid_request"),
    ("unknown role", {"messages": [{"role": "wizard", "content": "hi"}]}, "invalid_request"),
    (
        "tool role",
        {"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]},
        "invalid_request",
    ),
    (
        "last not user",
        {"messages": [user("hi"), {"role": "assistant", "content": "yo"}]},
        "last_message_not_user",
    ),
    ("empty question", {"messages": [user("   ")]}, "empty_question"),
    (
        "image part",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}],
                }
            ]
        },
        "unsupported_content",
    ),
    (
        "oversized history",
        {"messages": [user("a" * 1900)] * 20 + [user("hi")]},
        "conversation_too_long",
    ),
    (
        "tools",
        {"messages": [user("hi")], "tools": [{"type": "function", "function": {"name": "f"}}]},
        "invalid_request",
    ),
    ("n > 1", {"messages": [user("hi")], "n": 2}, "invalid_request"),
    ("logprobs", {"messages": [user("hi")], "logprobs": True}, "invalid_request"),
    ("audio", {"messages": [user("hi")], "modalities": ["text", "audio"]}, "invalid_request"),
    ("unknown field", {"messages": [user("hi")], "frobnicate": 1}, "invalid_request"),
    ("empty stop string", {"messages": [user("hi")], "stop": [""]}, "invalid_request"),
    ("bad ragq option", {"messages": [user("hi")], "ragq": {"top_k": 0}}, "invalid_request"),
]


@pytest.mark.parametrize(("why", "body", "code"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_input_is_a_400_in_openai_shape(
    tenant: Tenant, why: str, body: dict[str, Any], code: str
) -> None:
    response = tenant.http.post("/v1/chat/completions", json={"model": "ragq", **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["code"] == code
    assert error["message"]


def test_the_sdk_raises_its_own_classes(tenant: Tenant) -> None:
    client = tenant.client(max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="ragq", messages=[user("hi")], n=2)
    assert "n > 1" in caught.value.message
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="ragq", messages=[user("hi"), {"role": "assistant", "content": "x"}]
        )
    wrong = openai.OpenAI(base_url=f"{tenant.base_url}/v1", api_key="rq_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as denied:
        wrong.models.list()
    assert denied.value.code == "invalid_api_key"
    response = httpx.post(f"{tenant.base_url}/v1/chat/completions", json={"model": "ragq"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_a_rate_limited_client_gets_rate_limit_error(service: Service) -> None:
    redis_url = service.redis_url.rsplit("/", 1)[0] + "/3"
    redis = open_redis(redis_url)
    redis.flushdb()
    env = {**service.env, "RAGQ_REDIS_URL": redis_url, "RAGQ_RATE_LIMIT_REQUESTS": "1"}
    key, _ = create_key(redis, "limited")
    try:
        with api_process(env, free_port()) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
            client.models.list()
            with pytest.raises(openai.RateLimitError) as caught:
                client.models.list()
            assert caught.value.code == "rate_limited"
            assert int(caught.value.response.headers["Retry-After"]) >= 1
    finally:
        redis.flushdb()
        redis.close()


def test_embeddings_in_both_encodings(tenant: Tenant) -> None:
    client = tenant.client()
    texts = ["The Quarnelle lighthouse", "sourdough starter"]
    floats = client.embeddings.create(model="ragq-embedding", input=texts, encoding_format="float")
    packed = client.embeddings.create(model="ragq-embedding", input=texts)  # the SDK asks base64
    assert [d.index for d in floats.data] == [0, 1]
    for a, b in zip(floats.data, packed.data, strict=True):
        assert len(a.embedding) == 384
        assert sum(x * x for x in a.embedding) == pytest.approx(1.0, abs=1e-3)
        assert b.embedding == pytest.approx(a.embedding, abs=1e-6)
    assert floats.usage.prompt_tokens > 0
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="ragq-embedding", input=[[1, 2, 3]])
    assert "token ids" in caught.value.message


def test_json_errors_keep_our_shape_elsewhere(tenant: Tenant) -> None:
    response = tenant.http.post("/v1/answers", json={})
    assert response.status_code == 422
    assert set(response.json()["error"]) == {"code", "message"}
    streamed = tenant.http.post(
        "/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 400
    assert json.loads(streamed.text)["error"]["type"] == "invalid_request_error"
