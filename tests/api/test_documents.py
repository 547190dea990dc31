"""Uploads as multipart files: formats sniffed in the worker, chunks searchable afterwards."""

from __future__ import annotations

import httpx

from tests.helpers import wait_job

HTML = b"""<!doctype html><html><head><title>Harbour rules</title>
<script>var secret = "do-not-index";</script></head>
<body><nav>Home | About</nav>
<p>Ships entering Port Elvaren must fly the blue pennant.</p></body></html>"""


def test_multipart_markdown_upload(http: httpx.Client) -> None:
    files = {"file": ("guide.md", b"# Tea guide\n\nGreen tea steeps for two minutes at 80 C.\n")}
    response = http.post("/v1/documents", files=files, data={"metadata": '{"team": "kitchen"}'})
    assert response.status_code == 202, response.text
    accepted = response.json()
    record = wait_job(http, accepted["job_id"])
    assert record["status"] == "succeeded", record
    assert record["document_id"] == accepted["document_id"]
    assert record["result"]["chunks"] == 1


def test_html_upload_named_txt_is_sniffed_as_html(http: httpx.Client) -> None:
    response = http.post("/v1/documents", files={"file": ("rules.txt", HTML)})
    record = wait_job(http, response.json()["job_id"])
    assert record["status"] == "succeeded", record


def test_corrupt_pdf_fails_its_job_with_a_code(http: httpx.Client) -> None:
    response = http.post("/v1/documents", files={"file": ("x.pdf", b"%PDF-1.4\n garbage \x00\x01")})
    assert response.status_code == 202
    record = wait_job(http, response.json()["job_id"])
    assert record["status"] == "failed"
    assert record["error"]["code"] == "corrupt_file"


def test_binary_upload_fails_as_unsupported(http: httpx.Client) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    record = wait_job(
        http, http.post("/v1/documents", files={"file": ("a.png", png)}).json()["job_id"]
    )
    assert record["status"] == "failed"
    assert record["error"]["code"] == "unsupported_format"


def _pdf(pages: list[str]) -> bytes:
    """A real multi-page PDF, one line of text per page."""
    from io import BytesIO

    from reportlab.pdfgen import canvas

    buffer = BytesIO()
    pdf = canvas.Canvas(buffer)
    for text in pages:
        pdf.drawString(72, 720, text)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def answer(http: httpx.Client, question: str, top_k: int = 10) -> dict:
    """A succeeded answer job's result."""
    # Markers only: the passages the model did not mark stay in retrieval order; not quoted,
    # so that every passage retrieved is given (a quoted answer has the best one only).
    body = {"question": question, "top_k": top_k, "citation_mode": "markers", "quote": False}
    response = http.post("/v1/answers", json=body)
    record = wait_job(http, response.json()["job_id"])
    assert record["status"] == "succeeded", record
    return record["result"]  # type: ignore[no-any-return]


def test_multi_page_pdf_keeps_page_numbers(http: httpx.Client) -> None:
    pages = [
        "Chapter one describes the Morvane glacier and its ice caves.",
        "The Morvane glacier retreated eleven metres in the year of the survey.",
        "Appendix: survey instruments and calibration notes.",
    ]
    response = http.post("/v1/documents", files={"file": ("survey.pdf", _pdf(pages))})
    record = wait_job(http, response.json()["job_id"])
    assert record["status"] == "succeeded", record
    assert record["result"]["chunks"] == 3
    cited = answer(http, "How far did the Morvane glacier retreat?", top_k=3)["citations"]
    mine = [c for c in cited if c["document_id"] == record["document_id"]]
    assert sorted(c["page"] for c in mine) == [1, 2, 3]
    assert mine[0]["page"] == 2 and "eleven metres" in mine[0]["text"]


def test_same_content_twice_is_one_document(http: httpx.Client) -> None:
    body = {"text": "The Pellucid owl nests only in cedar hollows.", "title": "Owls"}
    first = http.post("/v1/documents", json=body)
    assert first.status_code == 202
    wait_job(http, first.json()["job_id"])
    again = http.post("/v1/documents", json=body)
    assert again.status_code == 200
    assert again.json()["document_id"] == first.json()["document_id"]
    assert again.json()["job_id"] == first.json()["job_id"]
    texts = [c["text"] for c in answer(http, "Where does the Pellucid owl nest?")["citations"]]
    assert texts.count(body["text"]) == 1


def test_changed_content_replaces_old_chunks_and_delete_removes_them(http: httpx.Client) -> None:
    doc = "replace-me-1"
    old = {"text": "Zanthor beacons glow violet at dusk. " * 60, "document_id": doc}
    new = {"text": "Zanthor beacons were replaced by lanterns.", "document_id": doc}
    first = wait_job(http, http.post("/v1/documents", json=old).json()["job_id"])
    assert first["result"]["chunks"] > 1
    second = wait_job(http, http.post("/v1/documents", json=new).json()["job_id"])
    assert second["status"] == "succeeded" and second["result"]["chunks"] == 1
    info = http.get(f"/v1/documents/{doc}").json()
    assert info["status"] == "ready" and info["chunks"] == 1
    cited = [c for c in answer(http, "What colour do Zanthor beacons glow?")["citations"]]
    assert [c["text"] for c in cited if c["document_id"] == doc] == [new["text"]]

    deletion = http.delete(f"/v1/documents/{doc}")
    assert deletion.status_code == 202
    done = wait_job(http, deletion.json()["job_id"])
    assert done["status"] == "succeeded" and done["result"]["deleted_chunks"] == 1
    assert http.get(f"/v1/documents/{doc}").status_code == 404
    cited = answer(http, "What replaced the Zanthor beacons?")["citations"]
    assert all(c["document_id"] != doc for c in cited)
    assert http.delete(f"/v1/documents/{doc}").status_code == 404


def test_progress_events_reach_the_total(http: httpx.Client) -> None:
    from tests.helpers import events

    text = "Basalt columns form when lava cools slowly and contracts. " * 200
    job_id = http.post("/v1/documents", json={"text": text}).json()["job_id"]
    seen = events(http, job_id)
    progress = [e[2] for e in seen if e[1] == "progress"]
    total = seen[-1][2]["result"]["chunks"]
    assert total > 1
    assert progress[-1] == {"done": total, "total": total}
    assert [p["done"] for p in progress] == sorted(p["done"] for p in progress)


def test_batch_upload_and_document_listing(http: httpx.Client) -> None:
    files = [
        ("files", (f"note{i}.md", f"# Note {i}\n\nBatch note number {i} about kestrels.".encode()))
        for i in range(3)
    ]
    response = http.post("/v1/documents:batch", files=files)
    assert response.status_code == 202, response.text
    batch = response.json()
    assert len(batch["jobs"]) == 3
    for job in batch["jobs"]:
        wait_job(http, job["job_id"])
    state = http.get(f"/v1/batches/{batch['batch_id']}").json()
    assert state["finished"] and state["counts"] == {"succeeded": 3}
    assert state["progress"]["done"] == state["progress"]["total"] == 3
    assert [j["job_id"] for j in state["jobs"]] == [j["job_id"] for j in batch["jobs"]]
    summary = http.get(f"/v1/batches/{batch['batch_id']}", params={"jobs": "false"}).json()
    assert summary == {**state, "jobs": []}
    listing = http.get("/v1/documents", params={"limit": 1000}).json()
    by_id = {d["document_id"]: d for d in listing["documents"]}
    for job in batch["jobs"]:
        assert by_id[job["document_id"]]["status"] == "ready"
        assert by_id[job["document_id"]]["chunks"] == 1
    assert http.get("/v1/batches/unknown").status_code == 404


def test_size_is_the_live_versions_and_a_failed_update_restores_it(http: httpx.Client) -> None:
    first = b"The Saltmere ferry leaves at nine. " * 10
    response = http.post(
        "/v1/documents", files={"file": ("ferry.txt", first)}, data={"document_id": "sizes"}
    )
    assert wait_job(http, response.json()["job_id"])["status"] == "succeeded"
    assert http.get("/v1/documents/sizes").json()["size_bytes"] == len(first)
    update = http.post(
        "/v1/documents",
        files={"file": ("ferry.bin", b"\x00\x01" * 700)},
        data={"document_id": "sizes"},
    )
    assert wait_job(http, update.json()["job_id"])["status"] == "failed"
    restored = http.get("/v1/documents/sizes").json()
    assert restored["status"] == "ready" and restored["error"] == "unsupported_format"
    assert restored["size_bytes"] == len(first)
