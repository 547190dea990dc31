"""Re-indexing recomputes a document's vectors in place: same chunks, still found by every mode."""

from __future__ import annotations

import httpx

from tests.helpers import ingest_text, wait_job

TEXT = "Ceramics log. Glaze batch VX-2291 was fired at cone six.\n\n" + "Kiln notes. " * 300


def test_reindex_keeps_the_chunks_and_their_search(http: httpx.Client) -> None:
    record = ingest_text(http, TEXT, "glaze log")
    document_id, chunks = record["document_id"], record["result"]["chunks"]
    assert chunks > 1

    accepted = http.post(f"/v1/documents/{document_id}:reindex")
    assert accepted.status_code == 202, accepted.text
    job = wait_job(http, accepted.json()["job_id"])
    assert job["status"] == "succeeded", job
    assert job["kind"] == "reindex"
    assert job["result"] == {"document_id": document_id, "chunks": chunks}
    assert job["progress"] == {"done": chunks, "total": chunks}

    assert http.get(f"/v1/documents/{document_id}").json()["chunks"] == chunks
    for mode in ("sparse", "hybrid"):
        found = http.post("/v1/search", json={"query": "VX-2291", "mode": mode, "top_k": 1})
        assert found.json()["results"][0]["document_id"] == document_id


def test_reindex_all_is_one_batch(http: httpx.Client) -> None:
    ingest_text(http, "Pottery wheel maintenance: oil the bearing monthly.", "wheel")
    accepted = http.post("/v1/documents:reindex")
    assert accepted.status_code == 202, accepted.text
    batch = accepted.json()
    assert batch["jobs"]
    for job in batch["jobs"]:
        assert wait_job(http, job["job_id"])["status"] == "succeeded"
    assert http.get(f"/v1/batches/{batch['batch_id']}").json()["finished"]


def test_reindex_of_an_unknown_document_is_404(http: httpx.Client) -> None:
    response = http.post("/v1/documents/no-such-doc:reindex")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "document_not_found"
