"""Worker process hooks on the live service: what a worker's heartbeat announces."""

from __future__ import annotations

import time

import httpx
import redis

from common.keys import WORKER_KEY_PREFIX
from common.liveness import announced_jobs
from tests.conftest import Service
from tests.helpers import FINISHED, wait_job


def _listed(client: redis.Redis) -> set[str]:
    """Every job id some worker's heartbeat says it runs now."""
    listed: set[str] = set()
    for key in client.scan_iter(f"{WORKER_KEY_PREFIX}*"):
        listed |= announced_jobs(client.get(key)) or set()  # type: ignore[arg-type]
    return listed


def test_the_heartbeat_lists_the_jobs_a_worker_runs(service: Service, http: httpx.Client) -> None:
    client = redis.Redis.from_url(service.redis_url)
    response = http.post("/v1/answers", json={"question": "What do lighthouses warn ships of?"})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    seen = False
    while not seen and http.get(f"/v1/jobs/{job_id}").json()["status"] not in FINISHED:
        seen = job_id in _listed(client)
        time.sleep(0.05)
    assert seen, "no heartbeat listed the job while it ran"
    wait_job(http, job_id)
    deadline = time.monotonic() + 3 * service.settings.worker_heartbeat_s + 2
    while job_id in _listed(client):
        assert time.monotonic() < deadline, "the job is still listed after it finished"
        time.sleep(0.1)
    client.close()
