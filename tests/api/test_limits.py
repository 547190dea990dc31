"""Limits: body and file size (413), batch size, question length, top_k, per-tenant rate and
queue backpressure (429 with Retry-After).

Two extra API processes run with small limits on a Redis database of their own (db 1 of the
test Redis) where no worker consumes the queues, so queue depth is under the test's control;
two replicas show that the rate limit is shared through Redis.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis

from cli.supervisor import free_port
from common.apikeys import create_key, open_redis
from tests.conftest import Service, auth
from tests.helpers import api_process

RATE = 20
DEPTH = 2
RETRY_AFTER = 7


@dataclass(frozen=True)
class Limited:
    """Two API replicas with small limits, and their Redis."""

    urls: tuple[str, str]
    redis: redis.Redis

    def client(self, replica: int = 0, tenant: str | None = None) -> httpx.Client:
        """A client of one replica with a new key of its own tenant."""
        key, _ = create_key(self.redis, tenant or f"t-{uuid.uuid4().hex[:10]}")
        return httpx.Client(base_url=self.urls[replica], timeout=30, headers=auth(key))


@pytest.fixture(scope="module")
def limited(service: Service) -> Iterator[Limited]:
    redis_url = service.redis_url.rsplit("/", 1)[0] + "/1"
    client = open_redis(redis_url)
    client.flushdb()
    env = {
        **service.env,
        "RAGQ_REDIS_URL": redis_url,
        "RAGQ_MAX_REQUEST_BYTES": "4096",
        "RAGQ_MAX_UPLOAD_BYTES": "1024",
        "RAGQ_MAX_BATCH_FILES": "3",
        "RAGQ_MAX_QUESTION_CHARS": "100",
        "RAGQ_MAX_TOP_K": "10",
        "RAGQ_MAX_SEARCH_K": "30",
        "RAGQ_RATE_LIMIT_REQUESTS": str(RATE),
        "RAGQ_RATE_LIMIT_WINDOW_S": "60",
        "RAGQ_MAX_QUEUE_DEPTH": str(DEPTH),
        "RAGQ_BACKPRESSURE_RETRY_AFTER_S": str(RETRY_AFTER),
    }
    with api_process(env, free_port()) as first, api_process(env, free_port()) as second:
        yield Limited((first, second), client)
    client.flushdb()
    client.close()


def code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def test_body_over_the_limit_is_413(limited: Limited) -> None:
    with limited.client() as http:
        response = http.post("/v1/documents", json={"text": "word " * 1000})
        assert response.status_code == 413, response.text
        assert code(response) == "request_too_large"


def test_streamed_body_over_the_limit_is_413(limited: Limited) -> None:
    """A chunked body has no Content-Length: it is counted as it is read."""

    def chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(100):
            yield b"x" * 100
        yield b'"}'

    with limited.client() as http:
        response = http.post(
            "/v1/documents", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert "content-length" not in response.request.headers
        assert response.status_code == 413, response.text
        assert code(response) == "request_too_large"


def test_file_over_the_limit_is_413(limited: Limited) -> None:
    with limited.client() as http:
        response = http.post("/v1/documents", files={"file": ("big.txt", b"y" * 2000)})
        assert response.status_code == 413, response.text
        assert code(response) == "file_too_large"
        files = [("files", ("small.txt", b"small")), ("files", ("big.txt", b"y" * 2000))]
        response = http.post("/v1/documents:batch", files=files)
        assert response.status_code == 413, response.text
        assert code(response) == "file_too_large"
        # Nothing was half-written.
        assert http.get("/v1/documents").json()["total"] == 0


def test_too_many_files_in_a_batch_is_413(limited: Limited) -> None:
    with limited.client() as http:
        files = [("files", (f"f{n}.txt", f"file {n}".encode())) for n in range(4)]
        response = http.post("/v1/documents:batch", files=files)
        assert response.status_code == 413, response.text
        assert code(response) == "too_many_files"
        many = [("files", (f"g{n}.txt", b"g")) for n in range(15)]
        response = http.post("/v1/documents:batch", files=many)
        assert response.status_code == 413, response.text
        assert code(response) == "too_many_files"
        assert http.get("/v1/documents").json()["total"] == 0
        accepted = http.post("/v1/documents:batch", files=files[:3])
        assert accepted.status_code == 202, accepted.text
        assert len(accepted.json()["jobs"]) == 3
    limited.redis.delete("ingest")


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/v1/answers", {"question": "q" * 101}, "question_too_long"),
        ("/v1/answers", {"question": "ok?", "top_k": 0}, "invalid_request"),
        ("/v1/answers", {"question": "ok?", "top_k": 11}, "invalid_top_k"),
        ("/v1/answers", {"question": "ok?", "top_k": "many"}, "invalid_request"),
        ("/v1/search", {"query": "q" * 101}, "query_too_long"),
        ("/v1/search", {"query": "ok", "top_k": 0}, "invalid_request"),
        ("/v1/search", {"query": "ok", "top_k": 31}, "invalid_top_k"),
    ],
)
def test_question_length_and_top_k_range_are_422(
    limited: Limited, path: str, body: dict[str, object], expected: str
) -> None:
    with limited.client() as http:
        response = http.post(path, json=body)
        assert response.status_code == 422, response.text
        assert code(response) == expected
    assert limited.redis.llen("query") == 0


def test_rate_limit_is_per_tenant_and_shared_by_replicas(limited: Limited) -> None:
    tenant = f"busy-{uuid.uuid4().hex[:8]}"
    with limited.client(0, tenant) as first, limited.client(1, tenant) as second:
        for n in range(RATE):
            response = (first if n % 2 else second).get("/v1/documents")
            assert response.status_code == 200, (n, response.text)
        for http in (first, second):
            response = http.get("/v1/documents")
            assert response.status_code == 429, response.text
            assert code(response) == "rate_limited"
            assert 1 <= int(response.headers["Retry-After"]) <= 60
    with limited.client(0) as other:
        assert other.get("/v1/documents").status_code == 200


def test_full_queue_answers_429_with_retry_after(limited: Limited) -> None:
    limited.redis.delete("query", "ingest")
    try:
        with limited.client() as http:
            for _ in range(DEPTH + 1):
                response = http.post("/v1/answers", json={"question": "Is the queue full?"})
                assert response.status_code == 202, response.text
            assert limited.redis.llen("query") == DEPTH + 1
            refused = (("/v1/answers", {"question": "And now?"}), ("/v1/search", {"query": "x"}))
            for path, body in refused:
                response = http.post(path, json=body)
                assert response.status_code == 429, response.text
                assert code(response) == "queue_full"
                assert response.headers["Retry-After"] == str(RETRY_AFTER)
            assert limited.redis.llen("query") == DEPTH + 1
            # Another queue is not blocked by this one.
            document = http.post("/v1/documents", json={"text": "ingest still flows"})
            assert document.status_code == 202, document.text
            # Once the queue drains, requests are accepted again.
            limited.redis.delete("query")
            response = http.post("/v1/answers", json={"question": "Room again?"})
            assert response.status_code == 202, response.text
    finally:
        limited.redis.delete("query", "ingest")
