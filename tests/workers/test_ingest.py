"""How a document's tasks end: every ending leaves the document consistent.

The previous version serves until a new one is complete; a cancelled, superseded or failed
version leaves no chunk behind; a document with no version left is gone, and sending the same
bytes again ingests them again.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from tests.helpers import wait_job


def long_text(marker: str, sentences: int = 2500) -> str:
    """A text of many chunks (a few seconds of embedding) whose every chunk names `marker`."""
    return " ".join(
        f"Sentence {i} of the {marker} record tells of harbour {i % 97} and tide {i % 13}."
        for i in range(sentences)
    )


def served(http: httpx.Client, document_id: str, word: str) -> list[dict[str, Any]]:
    """The document's chunks that a sparse search for `word` returns."""
    body = {"query": word, "mode": "sparse", "top_k": 100}
    body["filter"] = {"document_ids": [document_id]}
    response = http.post("/v1/search", json=body)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def wait_progress(http: httpx.Client, job_id: str, timeout: float = 120) -> None:
    """Wait until the job has embedded at least one batch."""
    deadline = time.monotonic() + timeout
    while http.get(f"/v1/jobs/{job_id}").json()["progress"]["done"] == 0:
        assert time.monotonic() < deadline, "the ingest made no progress"
        time.sleep(0.05)


def test_cancel_during_first_ingest_leaves_nothing_and_same_bytes_ingest_again(
    http: httpx.Client,
) -> None:
    doc = f"cancel-first-{uuid.uuid4().hex[:8]}"
    body = {"text": long_text("quillonite"), "document_id": doc}
    job = http.post("/v1/documents", json=body).json()["job_id"]
    wait_progress(http, job)
    cancelled = http.delete(f"/v1/jobs/{job}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert http.get(f"/v1/documents/{doc}").status_code == 404
    assert served(http, doc, "quillonite") == []

    again = http.post("/v1/documents", json=body)
    assert again.status_code == 202 and again.json()["job_id"] != job
    record = wait_job(http, again.json()["job_id"])
    assert record["status"] == "succeeded"
    info = http.get(f"/v1/documents/{doc}").json()
    assert info["status"] == "ready" and info["chunks"] == record["result"]["chunks"]
    assert len(served(http, doc, "quillonite")) == min(100, info["chunks"])


def test_cancel_during_update_keeps_the_previous_version(http: httpx.Client) -> None:
    doc = f"cancel-update-{uuid.uuid4().hex[:8]}"
    old = {"text": "The Ostrava ferry leaves at nine from pier seven.", "document_id": doc}
    first = wait_job(http, http.post("/v1/documents", json=old).json()["job_id"])
    before = http.get(f"/v1/documents/{doc}").json()

    update = http.post("/v1/documents", json={"text": long_text("ostrava"), "document_id": doc})
    job = update.json()["job_id"]
    wait_progress(http, job)
    # While the new version is written, search still serves the old one only.
    assert [r["text"] for r in served(http, doc, "ostrava")] == [old["text"]]
    assert http.delete(f"/v1/jobs/{job}").status_code == 200

    after = http.get(f"/v1/documents/{doc}").json()
    assert after["status"] == "ready"
    for name in ("content_sha256", "chunks", "title", "job_id"):
        assert after[name] == before[name], name
    assert after["job_id"] == first["job_id"]
    assert wait_job(http, job)["status"] == "cancelled"
    time.sleep(3)  # the worker notices at its next batch and removes what it staged
    assert [r["text"] for r in served(http, doc, "ostrava")] == [old["text"]]
    # The old bytes are still this document's: sending them again changes nothing.
    assert http.post("/v1/documents", json=old).status_code == 200


def test_cancel_before_the_task_starts(http: httpx.Client) -> None:
    doc = f"cancel-queued-{uuid.uuid4().hex[:8]}"
    body = {"text": "Glimmerfen moss grows on the north face.", "document_id": doc}
    job = http.post("/v1/documents", json=body).json()["job_id"]
    http.delete(f"/v1/jobs/{job}")
    assert wait_job(http, job)["status"] in ("cancelled", "succeeded")
    again = http.post("/v1/documents", json=body)
    if again.status_code == 202:  # the cancel won: nothing of it is left
        assert wait_job(http, again.json()["job_id"])["status"] == "succeeded"
    assert http.get(f"/v1/documents/{doc}").json()["status"] == "ready"
    assert len(served(http, doc, "glimmerfen")) == 1


def test_delete_during_ingest_stops_it_and_answers_with_one_delete_job(
    http: httpx.Client,
) -> None:
    doc = f"delete-during-{uuid.uuid4().hex[:8]}"
    job = http.post("/v1/documents", json={"text": long_text("brimvale"), "document_id": doc})
    ingest = job.json()["job_id"]
    wait_progress(http, ingest)
    deletion = http.delete(f"/v1/documents/{doc}")
    assert deletion.status_code == 202
    # A second DELETE while the first is under way answers with the same job.
    second = http.delete(f"/v1/documents/{doc}")
    assert second.status_code == 202 and second.json()["job_id"] == deletion.json()["job_id"]
    # Nor can the document take a new version until it is gone.
    refused = http.post("/v1/documents", json={"text": "Brimvale", "document_id": doc})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "document_deleting"
    # A deletion cannot be cancelled halfway.
    assert http.delete(f"/v1/jobs/{deletion.json()['job_id']}").status_code == 409

    record = wait_job(http, ingest, timeout=30)
    assert record["status"] == "cancelled" and record["error"]["code"] == "superseded"
    assert wait_job(http, deletion.json()["job_id"], timeout=30)["status"] == "succeeded"
    assert http.get(f"/v1/documents/{doc}").status_code == 404
    assert http.delete(f"/v1/documents/{doc}").status_code == 404
    assert served(http, doc, "brimvale") == []


def test_same_bytes_with_a_new_title_or_metadata_update_the_document(http: httpx.Client) -> None:
    doc = f"retitle-{uuid.uuid4().hex[:8]}"
    body: dict[str, Any] = {"text": "Vexmoor lighthouse", "document_id": doc, "title": "One"}
    wait_job(http, http.post("/v1/documents", json=body).json()["job_id"])
    assert http.post("/v1/documents", json=body).status_code == 200
    for change in ({"title": "Two"}, {"metadata": {"shelf": 3}}):
        body.update(change)
        response = http.post("/v1/documents", json=body)
        assert response.status_code == 202, change
        assert wait_job(http, response.json()["job_id"])["status"] == "succeeded"
    (hit,) = served(http, doc, "vexmoor")
    assert hit["title"] == "Two"
    assert http.get(f"/v1/documents/{doc}").json()["title"] == "Two"


def test_a_failing_file_sent_again_stays_one_failed_document(http: httpx.Client) -> None:
    files = {"file": ("blob.bin", b"\x00\x01\x02 not a document \xff" * 50)}
    first = http.post("/v1/documents", files=files).json()
    assert wait_job(http, first["job_id"])["status"] == "failed"
    second = http.post("/v1/documents", files=files).json()
    assert second["document_id"] == first["document_id"]
    assert wait_job(http, second["job_id"])["status"] == "failed"
    info = http.get(f"/v1/documents/{first['document_id']}").json()
    assert info["status"] == "failed" and info["error"] == "unsupported_format"
