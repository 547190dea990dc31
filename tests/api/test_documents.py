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
