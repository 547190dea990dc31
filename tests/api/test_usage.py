"""`GET /v1/usage` on the live service: a known mix of work is counted exactly as the jobs
themselves report it."""

from __future__ import annotations

import uuid

import httpx

from tests.api.test_tenants import client_for
from tests.conftest import Service
from tests.helpers import ingest_text, wait_job

FACTS = (
    "The Orlanth ferry leaves Brisk harbour at seven and returns at noon.",
    "Brisk harbour's lighthouse was painted red and white in 1911.",
)


def test_usage_counts_what_the_jobs_did(service: Service) -> None:
    with client_for(service, f"usage-{uuid.uuid4().hex[:8]}") as http:
        empty = http.get("/v1/usage").json()
        assert empty["rows"] == [] and empty["chunks_stored"] == 0
        assert set(empty["total"].values()) == {0}

        ingested = [ingest_text(http, text, f"fact {n}") for n, text in enumerate(FACTS)]
        answers = []
        for question in ("When does the Orlanth ferry leave?", "When was it painted?"):
            response = http.post("/v1/answers", json={"question": question, "min_relevance": 0})
            assert response.status_code == 202, response.text
            answers.append(wait_job(http, response.json()["job_id"]))
        assert all(a["status"] == "succeeded" for a in answers), answers
        assert http.post("/v1/search", json={"query": "ferry"}).status_code == 200

        report = http.get("/v1/usage", params={"group_by": "day"}).json()
        total = report["total"]
        used = [a["result"]["usage"] for a in answers]
        assert total["answers"] == 2
        assert total["prompt_tokens"] == sum(u["prompt_tokens"] for u in used)
        assert total["completion_tokens"] == sum(u["completion_tokens"] for u in used) > 0
        assert total["engine_ms"] == sum(round(u["total_s"] * 1000) for u in used)
        assert total["ttft_count"] == 2
        assert total["searches"] == 1
        assert total["documents"] == 2
        chunks = sum(r["result"]["chunks"] for r in ingested)
        assert total["chunks_embedded"] == chunks == report["chunks_stored"]
        assert total["bytes_ingested"] == sum(len(text.encode()) for text in FACTS)
        assert [row["day"] for row in report["rows"]] == [report["to"]]


def test_a_bad_range_is_refused(http: httpx.Client) -> None:
    for params in (
        {"from": "2026-12-05", "to": "2026-12-01"},
        {"from": "yesterday"},
        {"from": "2024-01-01", "to": "2026-01-01"},
    ):
        response = http.get("/v1/usage", params=params)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_range"
    assert http.get("/v1/usage", params={"group_by": "week"}).status_code == 422


def test_usage_by_key_counts_each_keys_own_work(service: Service) -> None:
    from common.apikeys import create_key, open_redis
    from tests.conftest import auth

    tenant, redis = f"usage-{uuid.uuid4().hex[:8]}", open_redis(service.redis_url)
    (first, one), (second, two) = create_key(redis, tenant), create_key(redis, tenant)
    with (
        httpx.Client(base_url=service.base_url, timeout=60, headers=auth(first)) as a,
        httpx.Client(base_url=service.base_url, timeout=60, headers=auth(second)) as b,
    ):
        document = ingest_text(a, FACTS[0], "ferry")
        for _ in range(2):
            assert b.post("/v1/search", json={"query": "ferry"}).status_code == 200
        rows = {
            r["key_id"]: r for r in b.get("/v1/usage", params={"group_by": "key"}).json()["rows"]
        }
    assert set(rows) == {one.key_id, two.key_id}
    assert rows[one.key_id]["documents"] == 1 and rows[one.key_id]["searches"] == 0
    assert rows[one.key_id]["chunks_embedded"] == document["result"]["chunks"]
    assert rows[two.key_id]["searches"] == 2 and rows[two.key_id]["documents"] == 0
