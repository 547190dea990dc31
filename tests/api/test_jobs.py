"""End to end over HTTP: documents in, answers out, through Redis, Celery, Qdrant and vLLM."""

from __future__ import annotations

import itertools
import time

import httpx
import pytest

from tests.helpers import events, ingest_text, wait_job

FACT = (
    "The Quarnelle lighthouse stands on the island of Tavik. It was designed by the engineer "
    "Oskar Lindqvist and first lit in 1893. Its lamp is visible for 22 nautical miles."
)
FILLER = (
    "Sourdough bread needs a starter of flour and water that ferments for several days. "
    "Bakers feed the starter daily and keep it at room temperature."
)


@pytest.fixture(scope="module")
def lighthouse(http_module: httpx.Client) -> dict[str, str]:
    """Two ingested documents; the ids of the one that holds the fact."""
    ingest_text(http_module, FILLER, "Bread")
    record = ingest_text(http_module, FACT, "Quarnelle lighthouse")
    return {"document_id": record["document_id"], "job_id": record["job_id"]}


@pytest.fixture(scope="module")
def http_module(service) -> httpx.Client:  # type: ignore[no-untyped-def]
    """A client shared by this module's tests."""
    with httpx.Client(base_url=service.base_url, timeout=30, headers=service.headers) as client:
        yield client


def ask(http: httpx.Client, question: str, **extra: object) -> str:
    """Submit an answer job; its id."""
    response = http.post("/v1/answers", json={"question": question, **extra})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    return str(body["job_id"])


def test_ingest_record_shows_chunks_and_progress(
    http_module: httpx.Client, lighthouse: dict[str, str]
) -> None:
    record = http_module.get(f"/v1/jobs/{lighthouse['job_id']}").json()
    assert record["kind"] == "ingest"
    assert record["result"]["chunks"] >= 1
    assert record["progress"]["done"] == record["progress"]["total"] == record["result"]["chunks"]
    assert record["created_at"] <= record["started_at"] <= record["finished_at"]
    assert record["attempts"] == 1
    assert record["worker"].startswith("cpu@")


def test_answer_cites_the_document_that_holds_the_fact(
    http_module: httpx.Client, lighthouse: dict[str, str]
) -> None:
    job_id = ask(http_module, "Who designed the Quarnelle lighthouse?")
    record = wait_job(http_module, job_id)
    assert record["status"] == "succeeded", record
    assert record["kind"] == "answer"
    assert record["attempts"] == 1  # generation took over from retrieval: not a new attempt
    assert record["worker"].startswith("llm@")
    result = record["result"]
    assert result["answer"].strip()
    assert result["citations"][0]["document_id"] == lighthouse["document_id"]
    assert "Lindqvist" in result["citations"][0]["text"]
    assert result["usage"]["completion_tokens"] > 0
    assert result["usage"]["prompt_tokens"] > 0


def test_sse_streams_tokens_and_replays_after_last_event_id(
    http_module: httpx.Client, lighthouse: dict[str, str]
) -> None:
    job_id = ask(http_module, "When was the Quarnelle lighthouse first lit?")
    first = events(http_module, job_id, limit=4)
    resume_from = first[-1][0]
    rest = events(http_module, job_id, last_event_id=resume_from)
    full = events(http_module, job_id)

    assert [e[0] for e in first + rest] == [e[0] for e in full]
    assert rest[0][0] > resume_from
    names = [e[1] for e in full]
    assert names[0] == "status" and names[-1] == "done"
    assert "token" in names and "citations" in names
    final = full[-1][2]
    streamed = "".join(e[2]["text"] for e in full if e[1] == "token")
    assert final["status"] == "succeeded"
    assert streamed == final["result"]["answer"]


def test_reconnect_after_done_returns_nothing_more(
    http_module: httpx.Client, lighthouse: dict[str, str]
) -> None:
    full = events(http_module, lighthouse["job_id"])
    assert full[-1][1] == "done"
    assert events(http_module, lighthouse["job_id"], last_event_id=full[-1][0]) == []


def test_last_event_id_beyond_the_end_resumes_from_the_end(
    http_module: httpx.Client, lighthouse: dict[str, str]
) -> None:
    beyond = "99999999999999-0"
    job_id = ask(http_module, "How far is the Quarnelle lamp visible?")
    # A running job: what comes after the end, then its `done`.
    running = events(http_module, job_id, last_event_id=beyond)
    assert running and running[-1][1] == "done", running
    full = events(http_module, job_id)
    assert running == full[-len(running) :]
    # A finished job: its `done` again, and nothing else.
    assert events(http_module, job_id, last_event_id=beyond) == full[-1:]
    # Ids Redis cannot hold are ignored like malformed ones: the whole stream.
    assert events(http_module, job_id, last_event_id="1" * 30 + "-0") == full


def test_two_answers_overlap_in_the_engine(
    http_module: httpx.Client, lighthouse: dict[str, str]
) -> None:
    a = ask(http_module, "Describe the Quarnelle lighthouse in detail.")
    b = ask(http_module, "What is the lamp range of the Quarnelle lighthouse?")
    for job_id in (a, b):
        assert wait_job(http_module, job_id)["status"] == "succeeded"

    def token_span(job_id: str) -> tuple[str, str]:
        ids = [e[0] for e in events(http_module, job_id) if e[1] == "token"]
        assert len(ids) >= 2
        return ids[0], ids[-1]

    def ms(stream_id: str) -> int:
        return int(stream_id.split("-")[0])

    (a_first, a_last), (b_first, b_last) = token_span(a), token_span(b)
    # Both streams had tokens before either finished: the engine batched them together.
    assert ms(a_first) < ms(b_last) and ms(b_first) < ms(a_last)


def test_token_events_after_the_first_are_batched_by_interval(
    http_module: httpx.Client, lighthouse: dict[str, str]
) -> None:
    job_id = ask(http_module, "Describe the Quarnelle lighthouse and its lamp in detail.")
    assert wait_job(http_module, job_id)["status"] == "succeeded"
    stamps = [int(e[0].split("-")[0]) for e in events(http_module, job_id) if e[1] == "token"]
    assert len(stamps) >= 3
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # The first text goes out at once; then one event per RAGQ_LLM_STREAM_INTERVAL_S (0.25 s)
    # at most, save the last, which goes out as soon as the answer is complete.
    assert min(gaps[:-1]) >= 240, gaps


def test_cancel_running_answer_stops_its_tokens(
    http_module: httpx.Client, lighthouse: dict[str, str]
) -> None:
    job_id = ask(http_module, "Write a long essay about lighthouses and the sea.")
    seen = events(http_module, job_id, until="token")
    assert seen[-1][1] == "token", "the answer finished before it could be cancelled"
    response = http_module.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    time.sleep(1.0)
    full = events(http_module, job_id)
    names = [e[1] for e in full]
    cancelled_at = next(
        i for i, e in enumerate(full) if e[1] == "status" and e[2]["status"] == "cancelled"
    )
    assert "token" not in names[cancelled_at:]
    assert full[-1][2]["status"] == "cancelled"
    assert http_module.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    again = http_module.delete(f"/v1/jobs/{job_id}")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "job_finished"


def test_deadline_exceeded_fails_the_job_with_its_code(
    http_module: httpx.Client, lighthouse: dict[str, str]
) -> None:
    job_id = ask(http_module, "Tell me everything about the Quarnelle lighthouse.", deadline_s=0.3)
    record = wait_job(http_module, job_id)
    assert record["status"] == "failed"
    assert record["error"]["code"] == "deadline_exceeded"


def test_cancel_queued_then_unknown_job(http_module: httpx.Client) -> None:
    missing = http_module.get("/v1/jobs/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "job_not_found"
    assert http_module.delete("/v1/jobs/nope").status_code == 404
    assert http_module.get("/v1/jobs/nope/events").status_code == 404
