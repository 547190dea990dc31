"""Liveness and readiness."""

from __future__ import annotations

import httpx


def test_healthz(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok", "checks": {}}


def test_readyz_lists_a_worker_for_each_queue(http: httpx.Client) -> None:
    response = http.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["workers"] == {"ingest": True, "query": True, "llm": True}
