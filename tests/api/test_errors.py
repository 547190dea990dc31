"""Bad input gets a clear 4xx with an error code, and no job is created."""

from __future__ import annotations

import httpx
import pytest
import redis


def job_count(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    return sum(1 for key in client.scan_iter("ragq:job:*") if key.count(b":") == 2)


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "code"),
    [
        ("/v1/answers", {"json": {}}, 422, "invalid_request"),
        ("/v1/answers", {"json": {"question": "   "}}, 422, "empty_question"),
        ("/v1/answers", {"json": {"question": "x" * 5000}}, 422, "question_too_long"),
        ("/v1/answers", {"json": {"question": "why?", "top_k": 0}}, 422, "invalid_request"),
        ("/v1/answers", {"json": {"question": "why?", "top_k": 999}}, 422, "invalid_top_k"),
        (
            "/v1/answers",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            422,
            "invalid_request",
        ),
        ("/v1/documents", {"json": {"text": ""}}, 422, "empty_document"),
        ("/v1/documents", {"json": {"text": " \n\t "}}, 422, "empty_document"),
        ("/v1/documents", {"json": {"title": "no text"}}, 422, "invalid_request"),
        ("/v1/documents", {"json": {"text": "x", "document_id": "a b/c"}}, 422, "invalid_request"),
        (
            "/v1/documents",
            {"content": b"plain", "headers": {"content-type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
        ("/v1/documents", {"files": {"file": ("empty.md", b"")}}, 422, "empty_document"),
        (
            "/v1/documents",
            {"files": {"file": ("a.md", b"# A")}, "data": {"metadata": "[1]"}},
            422,
            "invalid_metadata",
        ),
        ("/v1/documents", {"files": {"title": (None, "no file")}}, 422, "missing_file"),
    ],
)
def test_bad_input_is_refused_with_a_code_and_nothing_written(
    http: httpx.Client,
    service,
    path: str,
    kwargs: dict,
    status: int,
    code: str,  # type: ignore[no-untyped-def]
) -> None:
    before = job_count(service.redis_url)
    response = http.post(path, **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert job_count(service.redis_url) == before


def test_unknown_route_uses_the_error_shape(http: httpx.Client) -> None:
    response = http.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
