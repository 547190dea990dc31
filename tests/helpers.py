"""Small helpers the end-to-end tests share."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from httpx_sse import connect_sse

FINISHED = {"succeeded", "failed", "cancelled"}


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
