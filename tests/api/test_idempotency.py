"""`Idempotency-Key` over HTTP: the same key and body get the first job back, never a new one."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import httpx
import pytest


@pytest.fixture
def answers(http: httpx.Client) -> Iterator[list[str]]:
    """Answer jobs a test created; cancelled afterwards to spare the shared llm worker."""
    created: list[str] = []
    yield created
    for job_id in created:
        http.delete(f"/v1/jobs/{job_id}")


def ask(http: httpx.Client, key: str | None, body: dict[str, object]) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return http.post("/v1/answers", json=body, headers=headers)


def test_same_key_and_body_return_the_same_job(http: httpx.Client, answers: list[str]) -> None:
    key = str(uuid.uuid4())
    first = ask(http, key, {"question": "What is the tide table of Tavik?", "top_k": 2})
    assert first.status_code == 202, first.text
    answers.append(first.json()["job_id"])

    # The same body with its keys in another order is the same request.
    again = http.post(
        "/v1/answers",
        content=b'{"top_k": 2,  "question": "What is the tide table of Tavik?"}',
        headers={"Idempotency-Key": key, "Content-Type": "application/json"},
    )
    assert again.status_code == 200, again.text
    assert again.json() == first.json()

    other = ask(http, key, {"question": "Something else entirely?", "top_k": 2})
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"

    elsewhere = http.post("/v1/documents", json={"text": "x"}, headers={"Idempotency-Key": key})
    assert elsewhere.status_code == 409
    assert elsewhere.json()["error"]["code"] == "idempotency_conflict"


def test_without_a_key_each_request_is_a_new_job(http: httpx.Client, answers: list[str]) -> None:
    body = {"question": "How tall is the Quarnelle lighthouse?"}
    ids = [ask(http, None, body).json()["job_id"] for _ in range(2)]
    answers.extend(ids)
    assert ids[0] != ids[1]


def test_concurrent_requests_with_one_key_create_one_job(
    http: httpx.Client, answers: list[str]
) -> None:
    key = str(uuid.uuid4())
    body = {"question": "Who keeps the lamp of the Quarnelle lighthouse?"}
    barrier = threading.Barrier(8)
    results: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(base_url=str(http.base_url), timeout=30, headers=http.headers) as client:
            barrier.wait()
            results.append(ask(client, key, body))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ids = {r.json()["job_id"] for r in results}
    answers.extend(ids)
    assert len(ids) == 1, [r.text for r in results]
    assert sorted(r.status_code for r in results) == [200] * 7 + [202]


def test_a_failed_request_does_not_use_up_its_key(http: httpx.Client, answers: list[str]) -> None:
    key = str(uuid.uuid4())
    assert ask(http, key, {"question": "   "}).status_code == 422
    ok = ask(http, key, {"question": "Is the key free again?"})
    assert ok.status_code == 202, ok.text
    answers.append(ok.json()["job_id"])


def test_multipart_uploads_are_keyed_by_content_and_fields(http: httpx.Client) -> None:
    key = str(uuid.uuid4())
    text = f"Harbour log {uuid.uuid4()}: the ferry leaves at dawn.".encode()

    def upload(data: bytes, title: str = "log") -> httpx.Response:
        files = {"file": ("log.txt", data, "text/plain")}
        return http.post(
            "/v1/documents", files=files, data={"title": title}, headers={"Idempotency-Key": key}
        )

    first = upload(text)
    assert first.status_code == 202, first.text
    again = upload(text)
    assert again.status_code == 200 and again.json() == first.json()
    assert upload(text, title="another title").status_code == 409
    assert upload(text + b" And returns at dusk.").status_code == 409


def test_a_repeated_batch_returns_the_same_batch(http: httpx.Client) -> None:
    key = str(uuid.uuid4())
    files = [
        ("files", (f"{n}.txt", f"Batch note {n} {uuid.uuid4()}".encode(), "text/plain"))
        for n in range(2)
    ]
    first = http.post("/v1/documents:batch", files=files, headers={"Idempotency-Key": key})
    assert first.status_code == 202, first.text
    again = http.post("/v1/documents:batch", files=files, headers={"Idempotency-Key": key})
    assert again.status_code == 200
    assert again.json() == first.json()


def test_the_header_is_documented_and_validated(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    for path in ("/v1/answers", "/v1/documents", "/v1/documents:batch"):
        params = spec["paths"][path]["post"]["parameters"]
        assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in params), path
        assert "409" in spec["paths"][path]["post"]["responses"]
    bad = ask(http, "x" * 300, {"question": "Too long a key?"})
    assert bad.status_code == 422
