"""Quotas on the live service: work beyond a tenant's quota is refused with 429
`quota_exceeded`, naming the quota, its limit and its reset; running work is not cut off."""

from __future__ import annotations

import re
import time
import uuid

from common import quotas
from common.apikeys import open_redis
from common.keys import usage_month_key
from tests.api.test_tenants import client_for
from tests.conftest import Service
from tests.helpers import ingest_text, wait_job


def new_tenant() -> str:
    return f"quota-{uuid.uuid4().hex[:8]}"


def change(service: Service, tenant: str, quotas_now: dict[str, int | None]) -> None:
    """Change quotas, then wait until the API reads them again (RAGQ_QUOTA_CACHE_S)."""
    quotas.update(open_redis(service.redis_url), tenant, quotas_now)
    time.sleep(service.settings.quota_cache_s + 0.1)


def test_the_document_and_chunk_quotas(service: Service) -> None:
    tenant = new_tenant()
    change(service, tenant, {"documents": 2})
    with client_for(service, tenant) as http:
        first = ingest_text(http, "The Merrow tide mill grinds oats.", "mill")
        ingest_text(http, "The Merrow weir was rebuilt in 1890.", "weir")
        third = http.post("/v1/documents", json={"text": "A third.", "title": "third"})
        assert third.status_code == 429, third.text
        error = third.json()["error"]
        assert error["code"] == "quota_exceeded"
        assert "quota documents exceeded: 2 of 2 used" in error["message"]
        assert "when documents are deleted" in error["message"]
        # A new version of a stored document is no new document.
        document_id = first["result"]["document_id"]
        body = {"text": "The Merrow tide mill grinds oats and barley.", "document_id": document_id}
        update = http.post("/v1/documents", json=body)
        assert update.status_code == 202, update.text
        assert wait_job(http, update.json()["job_id"])["status"] == "succeeded"
        # A batch is refused whole: no job of it is queued.
        files = [("files", (f"{n}.txt", b"batch text", "text/plain")) for n in range(2)]
        change(service, tenant, {"documents": 3})
        batch = http.post("/v1/documents:batch", files=files)
        assert batch.status_code == 429, batch.text
        assert http.get("/v1/documents").json()["total"] == 2

        change(service, tenant, {"documents": None, "chunks": 1})
        over = http.post("/v1/documents", json={"text": "One more.", "title": "more"})
        assert over.status_code == 429 and "quota chunks exceeded" in over.text, over.text
        change(service, tenant, {"chunks": None})
        assert (
            http.post("/v1/documents", json={"text": "Now fine.", "title": "ok"}).status_code == 202
        )


def test_the_monthly_token_quota_lets_a_running_answer_finish(service: Service) -> None:
    tenant = new_tenant()
    redis = open_redis(service.redis_url)
    # Last month's tokens are not held against this month's quota.
    redis.set(usage_month_key(tenant, "2000-01"), 10**9)
    change(service, tenant, {"tokens_per_month": 1})
    with client_for(service, tenant) as http:
        ingest_text(http, "The Calder ferry crosses at dawn and at dusk.", "ferry")
        asked = http.post("/v1/answers", json={"question": "When does the ferry cross?"})
        assert asked.status_code == 202, asked.text
        record = wait_job(http, asked.json()["job_id"])
        assert record["status"] == "succeeded", record  # not cut off at its quota
        used = record["result"]["usage"]
        assert used["prompt_tokens"] + used["completion_tokens"] > 1

        refused = http.post("/v1/answers", json={"question": "And the fare?"})
        assert refused.status_code == 429, refused.text
        message = refused.json()["error"]["message"]
        assert refused.json()["error"]["code"] == "quota_exceeded"
        assert re.search(r"quota tokens_per_month exceeded: \d+ of 1 used", message), message
        assert re.search(r"resets at \d{4}-\d{2}-01T00:00:00Z", message), message
        assert int(refused.headers["Retry-After"]) > 0
        chat = {"model": "ragq", "messages": [{"role": "user", "content": "And the fare?"}]}
        assert http.post("/v1/chat/completions", json=chat).status_code == 429

        change(service, tenant, {"tokens_per_month": None})
        assert http.post("/v1/answers", json={"question": "Fare?"}).status_code == 202
