"""A PDF decompression bomb fails its own job in the worker, and the worker goes on."""

from __future__ import annotations

import httpx

from common.apikeys import open_redis
from common.keys import job_key
from tests.conftest import Service
from tests.helpers import memory_bomb_pdf, text_pdf, wait_job


def test_bomb_fails_its_job_not_the_worker(http: httpx.Client, service: Service) -> None:
    bomb = http.post("/v1/documents", files={"file": ("bomb.pdf", memory_bomb_pdf())})
    assert bomb.status_code == 202, bomb.text
    record = wait_job(http, bomb.json()["job_id"], timeout=120)
    assert record["status"] == "failed", record
    assert record["error"]["code"] == "document_too_complex"
    assert record["attempts"] == 1
    document = http.get(f"/v1/documents/{bomb.json()['document_id']}").json()
    assert document["status"] == "failed"

    # The same worker process takes the next PDF at once.
    good = http.post("/v1/documents", files={"file": ("fine.pdf", text_pdf("Kestrel survey 2031"))})
    assert good.status_code == 202, good.text
    after = wait_job(http, good.json()["job_id"])
    assert after["status"] == "succeeded", after
    # ...in the same worker process: it was not killed and restarted.
    redis = open_redis(service.redis_url)
    instances = [redis.hget(job_key(r["job_id"]), "worker_instance") for r in (record, after)]
    assert instances[0] and instances[0] == instances[1], instances
    assert http.get("/readyz").status_code == 200
