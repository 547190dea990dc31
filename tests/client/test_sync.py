"""`Client` against the live service: every method, on a tenant of the test's own."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from common.apikeys import create_key, open_redis
from ragq_client import (
    CitationsEvent,
    Client,
    DoneEvent,
    JobFailed,
    JobStatus,
    NotFound,
    PassagesEvent,
    TokenEvent,
    Unauthorized,
    WaitProgress,
    WaitTimeout,
)
from tests.conftest import Service

FACT = "The Quorvel bridge over the Alna river opened in 1923 and is 412 metres long."


@pytest.fixture
def client(service: Service, new_key: Callable[[], str]) -> Client:
    with Client(service.base_url, new_key()) as c:
        yield c  # type: ignore[misc]


def test_documents_from_text_bytes_and_folder(client: Client, tmp_path: Path) -> None:
    seen: list[WaitProgress] = []
    record = client.ingest_text(
        FACT, title="Quorvel bridge", document_id="quorvel", wait=True, on_progress=seen.append
    )
    assert record.status == JobStatus.SUCCEEDED and record.document_id == "quorvel"
    assert record.ingested().chunks >= 1
    assert seen and seen[-1].finished == 1 and seen[-1].total == 1

    accepted = client.ingest_bytes(b"# Ferry\n\nThe Tovik ferry leaves at 07:40.\n", "ferry.md")
    assert accepted.status == JobStatus.QUEUED
    assert client.wait(accepted.job_id, timeout=120).status == JobStatus.SUCCEEDED

    (tmp_path / "a.md").write_text("# Kiln\n\nThe Brenna kiln reached 1280 C.\n")
    (tmp_path / "b.txt").write_text("The Brenna pottery opened in 1961.\n")
    (tmp_path / "c.bin").write_bytes(b"\x00\x01")
    uploads: list[tuple[int, int]] = []
    done = client.ingest(
        tmp_path, wait=True, on_upload=lambda sent, total: uploads.append((sent, total))
    )
    assert uploads == [(2, 2)]
    assert sorted(u.path.name for u in done.uploads) == ["a.md", "b.txt"]
    assert [s.path.name for s in done.skipped] == ["c.bin"]
    assert all(done.record(u).status == JobStatus.SUCCEEDED for u in done.uploads)  # type: ignore[union-attr]
    batch = client.batch(done.batch_ids[0])
    assert batch.finished and batch.counts == {"succeeded": 2}

    listed = client.documents()
    assert listed.total == 4
    assert client.document("quorvel").chunks == record.ingested().chunks
    assert client.reindex("quorvel", wait=True).status == JobStatus.SUCCEEDED
    everything = client.reindex_all(wait=True)
    assert everything.total == 4 and everything.counts == {"succeeded": 4}
    assert client.delete_document("quorvel", wait=True).status == JobStatus.SUCCEEDED
    with pytest.raises(NotFound) as missing:
        client.document("quorvel")
    assert missing.value.code == "document_not_found" and missing.value.status == 404


def test_ask_search_and_jobs(client: Client) -> None:
    client.ingest_text(FACT, title="Quorvel bridge", wait=True)
    hits = client.search("Quorvel bridge length", top_k=3, mode="hybrid")
    assert hits.results and "Quorvel" in hits.results[0].text

    answer = client.ask("When did the Quorvel bridge open?", top_k=2, timeout=300)
    assert answer.answer and answer.citations[0].title == "Quorvel bridge"
    assert answer.usage is not None and answer.usage.completion_tokens > 0

    stream = client.ask("How long is the Quorvel bridge?", top_k=2, stream=True)
    events = list(stream)
    tokens = "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert isinstance(events[-1], DoneEvent) and stream.final is not None
    assert tokens == stream.final.answer().answer
    assert any(isinstance(e, PassagesEvent) for e in events)
    assert any(isinstance(e, CitationsEvent) for e in events)
    # The stream of a finished job replays from the start, or after any event.
    again = list(client.events(stream.job_id, last_event_id=events[1].id))
    assert [e.id for e in again] == [e.id for e in events[2:]]

    job = client.job(stream.job_id)
    assert job.status == JobStatus.SUCCEEDED and job.kind == "answer"
    page = client.jobs(kind="answer", limit=1)
    assert len(page.jobs) == 1 and page.next_cursor
    assert [r.job_id for r in client.wait_jobs([job.job_id], timeout=5)] == [job.job_id]

    queued = client.submit_answer("What is the Quorvel bridge made of?", top_k=1)
    cancelled = client.cancel(queued.job_id)
    assert cancelled.status == JobStatus.CANCELLED
    with pytest.raises(JobFailed) as late:
        client.ask("When did the Quorvel bridge open?", deadline_s=0.001, min_relevance=0)
    assert late.value.code == "deadline_exceeded" and late.value.record.status == "failed"


def test_wait_timeout_and_errors(client: Client, service: Service) -> None:
    # A passage to answer from, and no relevance floor: the job goes on to generation rather
    # than finishing at once as "not covered" before the first poll.
    client.ingest_text(FACT, title="Quorvel bridge", wait=True)
    queued = client.submit_answer("What does the Quorvel bridge cross?", top_k=1, min_relevance=0)
    with pytest.raises(WaitTimeout):
        client.wait(queued.job_id, timeout=0.01)
    client.cancel(queued.job_id)
    with pytest.raises(NotFound):
        client.job(str(uuid.uuid4()))
    with Client(service.base_url, "rq_not-a-key") as stranger, pytest.raises(Unauthorized) as no:
        stranger.documents()
    assert no.value.code == "invalid_api_key"
    assert client.health().status == "ready"


def test_webhook_secret_deliveries_and_rotation(client: Client) -> None:
    secret = client.webhook_secret()
    assert secret.startswith("whsec_") and client.webhook_secret() == secret
    record = client.ingest_text(f"Unique {uuid.uuid4()}", wait=True)
    log = client.deliveries(record.job_id)
    assert log.job_id == record.job_id and log.webhook_url is None and log.deliveries == []
    with pytest.raises(NotFound):
        client.redeliver(record.job_id, 1)
    rotated = client.rotate_webhook_secret()
    assert rotated != secret and client.webhook_secret() == rotated


def test_access_groups(service: Service) -> None:
    """A document ingested with groups is not found by a key outside them until its groups
    change (the `access` job)."""
    tenant = f"client-{uuid.uuid4().hex[:10]}"
    redis_client = open_redis(service.redis_url)
    eng_key, _ = create_key(redis_client, tenant, groups=["eng"])
    plain_key, _ = create_key(redis_client, tenant)
    with Client(service.base_url, eng_key) as eng, Client(service.base_url, plain_key) as plain:
        record = eng.ingest_text(FACT, access_groups=["eng"], wait=True)
        doc = record.document_id
        assert doc is not None and eng.document(doc).access_groups == ["eng"]
        data = b"The Quorvel ferry runs hourly."
        by_bytes = eng.ingest_bytes(data, "f.txt", access_groups=["eng"], wait=True)
        assert by_bytes.document_id is not None
        assert eng.document(by_bytes.document_id).access_groups == ["eng"]
        with pytest.raises(NotFound):
            plain.document(doc)
        changed = eng.set_access_groups(doc, [], wait=True)
        assert changed.kind == "access" and changed.status == JobStatus.SUCCEEDED
        assert plain.document(doc).access_groups == []
        hits = plain.search("Quorvel bridge length", mode="sparse")
        assert doc in {hit.document_id for hit in hits.results}
