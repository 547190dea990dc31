"""`AsyncClient` against the live service: every method, on a tenant of the test's own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from ragq_client import (
    AsyncClient,
    DoneEvent,
    JobFailed,
    JobStatus,
    NotFound,
    TokenEvent,
    Unauthorized,
    WaitProgress,
    WaitTimeout,
)
from tests.conftest import Service

FACT = "The Merrow lighthouse on Skelda island was lit in 1889; its lamp is 31 metres high."


def test_documents(service: Service, new_key: Callable[[], str], tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Mill\n\nThe Orrin mill grinds rye.\n")
    (tmp_path / "b.md").write_text("# Mill hours\n\nThe Orrin mill opens at dawn.\n")

    async def scenario() -> None:
        async with AsyncClient(service.base_url, new_key()) as client:
            seen: list[WaitProgress] = []
            record = await client.ingest_text(
                FACT, title="Merrow", document_id="merrow", wait=True, on_progress=seen.append
            )
            assert record.status == JobStatus.SUCCEEDED and seen[-1].finished == 1
            accepted = await client.ingest_bytes(b"The Skelda ferry runs twice a day.", "f.txt")
            assert (await client.wait(accepted.job_id)).status == JobStatus.SUCCEEDED
            done = await client.ingest(tmp_path, wait=True)
            assert len(done.uploads) == 2 and not done.skipped
            assert all(r.status == JobStatus.SUCCEEDED for r in done.records.values())
            batch = await client.upload_batch([tmp_path / "a.md"])
            [status] = await client.wait_batches([batch.batch_id])
            assert status.finished and (await client.batch(batch.batch_id)).total == 1
            assert (await client.documents(limit=2)).total == 4
            assert (await client.document("merrow")).title == "Merrow"
            assert (await client.reindex("merrow", wait=True)).status == JobStatus.SUCCEEDED
            assert (await client.reindex_all(wait=True)).counts == {"succeeded": 4}
            deleted = await client.delete_document("merrow", wait=True)
            assert deleted.status == JobStatus.SUCCEEDED
            with pytest.raises(NotFound):
                await client.document("merrow")

    asyncio.run(scenario())


def test_answers_jobs_webhooks(service: Service, new_key: Callable[[], str]) -> None:
    async def scenario() -> None:
        async with AsyncClient(service.base_url, new_key()) as client:
            await client.ingest_text(FACT, title="Merrow", wait=True)
            hits = await client.search("Merrow lighthouse lamp height", top_k=2)
            assert "Merrow" in hits.results[0].text
            answer = await client.ask("When was the Merrow lighthouse lit?", top_k=2)
            assert answer.answer and answer.job_id

            stream = await client.ask("How high is the Merrow lamp?", top_k=2, stream=True)
            events = [event async for event in stream]
            assert isinstance(events[-1], DoneEvent) and stream.final is not None
            text = "".join(e.text for e in events if isinstance(e, TokenEvent))
            assert text == stream.final.answer().answer
            replay = [e.id async for e in client.events(stream.job_id)]
            assert replay == [e.id for e in events]

            assert (await client.job(stream.job_id)).status == JobStatus.SUCCEEDED
            assert len((await client.jobs(kind="answer")).jobs) == 2
            [again] = await client.wait_jobs([stream.job_id])
            assert again.job_id == stream.job_id

            queued = await client.submit_answer("What colour is the Merrow lighthouse?")
            with pytest.raises(WaitTimeout):
                await client.wait(queued.job_id, timeout=0.01)
            assert (await client.cancel(queued.job_id)).status == JobStatus.CANCELLED
            with pytest.raises(JobFailed):
                await client.ask("When was Merrow lit?", deadline_s=0.001, min_relevance=0)

            secret = await client.webhook_secret()
            log = await client.deliveries(queued.job_id)
            assert log.deliveries == [] and log.webhook_url is None
            with pytest.raises(NotFound):
                await client.redeliver(queued.job_id, 1)
            assert await client.rotate_webhook_secret() != secret
            assert (await client.health()).status == "ready"
        async with AsyncClient(service.base_url, f"rq_{uuid.uuid4().hex}") as stranger:
            with pytest.raises(Unauthorized):
                await stranger.jobs()

    asyncio.run(scenario())
