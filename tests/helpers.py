"""Small helpers the end-to-end tests share."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse
from prometheus_client.parser import text_string_to_metric_families

FINISHED = {"succeeded", "failed", "cancelled"}


def ragq(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the installed `ragq` command with this environment; its exit status and output."""
    command = [str(Path(sys.executable).with_name("ragq")), *args]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def wait_job(http: httpx.Client, job_id: str, timeout: float = 180) -> dict[str, Any]:
    """Poll a job until it finishes; its final record."""
    deadline = time.monotonic() + timeout
    while True:
        record: dict[str, Any] = http.get(f"/v1/jobs/{job_id}").json()
        if record["status"] in FINISHED:
            return record
        assert time.monotonic() < deadline, f"job {job_id} still {record['status']}"
        time.sleep(0.2)


def events(
    http: httpx.Client,
    job_id: str,
    last_event_id: str | None = None,
    limit: int | None = None,
    until: str = "done",
) -> list[tuple[str, str, Any]]:
    """(id, event, data) of a job's SSE stream, up to the first `until` event or `limit` events."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    seen: list[tuple[str, str, Any]] = []
    with connect_sse(http, "GET", f"/v1/jobs/{job_id}/events", headers=headers) as source:
        for sse in source.iter_sse():
            if not sse.data:
                # A keep-alive ping: httpx-sse hands it over as an event once an id was seen.
                continue
            seen.append((sse.id, sse.event, json.loads(sse.data)))
            if sse.event in (until, "done") or (limit is not None and len(seen) >= limit):
                break
    return seen


def ingest_text(http: httpx.Client, text: str, title: str) -> dict[str, Any]:
    """Ingest a JSON document and wait for it; the final job record."""
    response = http.post("/v1/documents", json={"text": text, "title": title})
    assert response.status_code == 202, response.text
    record = wait_job(http, response.json()["job_id"])
    assert record["status"] == "succeeded", record
    return record


@contextmanager
def api_process(
    env: dict[str, str], port: int, timeout: float = 60, log_path: Path | None = None
) -> Iterator[str]:
    """An extra API (`python -m api.serve`, as `ragq up` starts it) with this environment, its
    output in `log_path` if given; its base URL once /healthz answers."""
    command = [sys.executable, "-m", "api.serve", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    with log_path.open("w+b") if log_path else tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise AssertionError(f"the API exited: {log.read().decode(errors='replace')}")
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            proc.wait(20)


def pdf_with_content(content: bytes) -> bytes:
    """A one-page PDF whose page content stream (Flate-compressed) is `content`."""
    stream = zlib.compress(content, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def text_pdf(text: str) -> bytes:
    """A one-page PDF showing one line of text."""
    return pdf_with_content(b"BT /F1 12 Tf 72 720 Td (%s) Tj ET" % text.encode("latin-1"))


def memory_bomb_pdf(expanded_bytes: int = 60_000_000) -> bytes:
    """A PDF of about 60 KB whose one text operator expands to `expanded_bytes` when parsed."""
    return pdf_with_content(b"BT /F1 12 Tf 72 720 Td (" + b"y" * expanded_bytes + b") Tj ET")


def time_bomb_pdf(operators: int = 400_000) -> bytes:
    """A PDF of a few dozen KB with so many text operators that parsing takes many seconds."""
    return pdf_with_content(b"BT /F1 12 Tf 72 720 Td (x) Tj ET\n" * operators)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(all_samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    """Sum of the samples of a metric whose labels include the given ones."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in all_samples.items() if n == name and wanted <= ls)
