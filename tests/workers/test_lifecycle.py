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
    """Answers that reach the model (the tests' heartbeat is every second; one short answer may
    run for less, so several go together)."""
    client = redis.Redis.from_url(service.redis_url)
    question = "Describe everything the passages say, in detail."
    body = {"question": question, "min_relevance": 0}
    job_ids = {http.post("/v1/answers", json=body).json()["job_id"] for _ in range(12)}
    seen: set[str] = set()
    running = set(job_ids)
    while running and not seen:
        seen = job_ids & _listed(client)
        running = {j for j in running if http.get(f"/v1/jobs/{j}").json()["status"] not in FINISHED}
        time.sleep(0.05)
    assert seen, "no heartbeat listed any of the jobs while they ran"
    for job_id in job_ids:
        wait_job(http, job_id)
    deadline = time.monotonic() + 3 * service.settings.worker_heartbeat_s + 2
    while job_ids & _listed(client):
        assert time.monotonic() < deadline, "a job is still listed after it finished"
        time.sleep(0.1)
    client.close()
