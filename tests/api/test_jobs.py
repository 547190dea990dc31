"""End to end over HTTP: documents in, answers out, through Redis, Celery, Qdrant and vLLM."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from common.apikeys import create_key, open_redis
from common.jobs import job_key
from common.jobs_async import tenant_jobs_key
from tests.conftest import Service, auth
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
    filler = ingest_text(http_module, FILLER, "Bread")
    record = ingest_text(http_module, FACT, "Quarnelle lighthouse")
    return {
        "document_id": record["document_id"],
        "job_id": record["job_id"],
        "filler_id": filler["document_id"],
    }


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


def test_answer_says_how_it_ended(http_module: httpx.Client, lighthouse: dict[str, str]) -> None:
    # Only this module's documents: what other tests ingested would change the prompt.
    only = {"filter": {"document_ids": [lighthouse["document_id"], lighthouse["filler_id"]]}}
    short = wait_job(
        http_module, ask(http_module, "Who designed the Quarnelle lighthouse?", **only)
    )
    # More than RAGQ_LLM_MAX_TOKENS: asked for a list of facts, the model stops once it has
    # restated the passages' few; asked for an essay in sections, it goes on.
    question = (
        "Write a long essay about the Quarnelle lighthouse, in ten numbered sections of "
        "several sentences each."
    )
    cut = wait_job(http_module, ask(http_module, question, **only))
    for record in (short, cut):
        assert record["status"] == "succeeded", record
        result = record["result"]
        assert result["finish_reason"] in {"stop", "length"}, result
        at_limit = result["usage"]["completion_tokens"] >= 64  # RAGQ_LLM_MAX_TOKENS in tests
        assert (result["finish_reason"] == "length") == at_limit, result
    assert cut["result"]["finish_reason"] == "length"


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


@pytest.fixture(scope="module")
def own_tenant(service: Service) -> Iterator[tuple[str, httpx.Client]]:
    """A tenant of its own (so its job list holds only this module's jobs) and its client."""
    tenant = f"list-{uuid.uuid4().hex[:8]}"
    key, _ = create_key(open_redis(service.redis_url), tenant)
    with httpx.Client(base_url=service.base_url, timeout=30, headers=auth(key)) as client:
        yield tenant, client


@pytest.fixture(scope="module")
def tenant_jobs(own_tenant: tuple[str, httpx.Client]) -> list[dict[str, Any]]:
    """Three ingests, a delete and a cancelled answer of the tenant, oldest first."""
    _, client = own_tenant
    made = [
        ingest_text(client, f"Note {n} about the Orvik canal locks.", f"Note {n}") for n in range(3)
    ]
    deleted = client.delete(f"/v1/documents/{made[0]['document_id']}")
    assert deleted.status_code == 202, deleted.text
    made.append(wait_job(client, deleted.json()["job_id"]))
    answer = ask(client, "How many locks does the Orvik canal have?")
    assert client.delete(f"/v1/jobs/{answer}").status_code in (200, 409)
    made.append(wait_job(client, answer))
    return made


def list_all(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every page of GET /v1/jobs with these parameters, concatenated."""
    jobs: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get("/v1/jobs", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["jobs"]) <= params.get("limit", 50)
        jobs += page["jobs"]
        cursor = page["next_cursor"]
        if cursor is None:
            return jobs


def test_job_list_is_newest_first_and_pages_by_cursor(
    own_tenant: tuple[str, httpx.Client], tenant_jobs: list[dict[str, Any]]
) -> None:
    _, client = own_tenant
    newest_first = [job["job_id"] for job in reversed(tenant_jobs)]
    first = client.get("/v1/jobs").json()
    assert [job["job_id"] for job in first["jobs"]] == newest_first
    assert first["next_cursor"] is None
    assert first["jobs"][0] == client.get(f"/v1/jobs/{newest_first[0]}").json()
    paged = list_all(client, limit=2)
    assert [job["job_id"] for job in paged] == newest_first


def test_job_list_filters_by_kind_and_status(
    own_tenant: tuple[str, httpx.Client], tenant_jobs: list[dict[str, Any]]
) -> None:
    _, client = own_tenant
    ingests = [job["job_id"] for job in reversed(tenant_jobs) if job["kind"] == "ingest"]
    assert [job["job_id"] for job in list_all(client, kind="ingest", limit=1)] == ingests
    deletes = list_all(client, kind="delete")
    assert [job["job_id"] for job in deletes] == [tenant_jobs[3]["job_id"]]
    answer = tenant_jobs[4]
    both = list_all(client, kind="answer", status=answer["status"])
    assert [job["job_id"] for job in both] == [answer["job_id"]]
    assert list_all(client, kind="answer", status="queued") == []
    succeeded = list_all(client, status="succeeded")
    assert {job["job_id"] for job in succeeded} == {
        job["job_id"] for job in tenant_jobs if job["status"] == "succeeded"
    }


def test_job_list_is_tenant_scoped(
    http_module: httpx.Client,
    own_tenant: tuple[str, httpx.Client],
    tenant_jobs: list[dict[str, Any]],
) -> None:
    _, client = own_tenant
    ours = {job["job_id"] for job in tenant_jobs}
    other = ingest_text(http_module, "The default tenant's note on tide tables.", "Tides")
    theirs = {job["job_id"] for job in list_all(http_module, limit=200)}
    assert other["job_id"] in theirs
    assert not theirs & ours
    assert {job["job_id"] for job in list_all(client)} == ours


def test_job_list_skips_expired_records_and_expires_with_the_job_ttl(
    service: Service, own_tenant: tuple[str, httpx.Client], tenant_jobs: list[dict[str, Any]]
) -> None:
    tenant, client = own_tenant
    redis = open_redis(service.redis_url)
    index = tenant_jobs_key(tenant)
    assert 0 < redis.ttl(index) <= service.settings.job_ttl_s
    gone = tenant_jobs[1]["job_id"]
    redis.pexpire(job_key(gone), 1)
    time.sleep(0.05)
    listed = [job["job_id"] for job in list_all(client, limit=1)]
    assert listed == [job["job_id"] for job in reversed(tenant_jobs) if job["job_id"] != gone]
    assert redis.zscore(index, gone) is None


@pytest.mark.parametrize(
    "params",
    [{"cursor": "not-a-cursor"}, {"limit": 0}, {"limit": 201}, {"kind": "x"}, {"status": "x"}],
)
def test_job_list_refuses_bad_parameters(http_module: httpx.Client, params: dict[str, Any]) -> None:
    response = http_module.get("/v1/jobs", params=params)
    assert response.status_code == 422, response.text
    assert set(response.json()["error"]) >= {"code", "message"}


def test_question_the_documents_do_not_cover_is_not_generated(
    http_module: httpx.Client, lighthouse: dict[str, str]
) -> None:
    question = "What is the boiling point of liquid nitrogen in kelvin?"
    refused = wait_job(http_module, ask(http_module, question))
    assert refused["status"] == "succeeded", refused
    result = refused["result"]
    assert result["answer"] == "The documents do not cover this question."
    assert result["grounded"] is False and result["reason"] == "no_relevant_passages"
    assert result["finish_reason"] == "not_grounded" and result["usage"] is None
    assert result["relevance"] < 0.3  # RAGQ_MIN_RELEVANCE's default
    assert all(not c["cited"] for c in result["citations"])
    # min_relevance 0 turns the guard off: the model answers from whatever was found.
    forced = wait_job(http_module, ask(http_module, question, min_relevance=0))
    assert forced["status"] == "succeeded", forced
    assert forced["result"]["grounded"] is True
    assert forced["result"]["finish_reason"] in {"stop", "length"}
    assert forced["result"]["usage"]["completion_tokens"] > 0
    # A covered question still generates under the default threshold.
    covered = wait_job(http_module, ask(http_module, "Who designed the Quarnelle lighthouse?"))
    assert covered["result"]["grounded"] is True
    assert covered["result"]["relevance"] is None and covered["result"]["usage"] is not None


@pytest.mark.parametrize("value", [-0.1, 1.5, "0.3", True])
def test_min_relevance_is_a_number_from_0_to_1(http_module: httpx.Client, value: object) -> None:
    response = http_module.post("/v1/answers", json={"question": "x", "min_relevance": value})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"
