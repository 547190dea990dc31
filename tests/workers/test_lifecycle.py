"""Worker process hooks on the live service: what a worker's heartbeat announces."""

from __future__ import annotations

import time

import httpx
import redis

from common.keys import WORKER_KEY_PREFIX
from common.liveness import announced_jobs, announced_received
from tests.conftest import Service
from tests.helpers import FINISHED, wait_job


def _listed(client: redis.Redis) -> tuple[set[str], set[str]]:
    """Every job id some worker's heartbeat says it runs now, and every one it says it holds
    the message of (each worker of this version says)."""
    running: set[str] = set()
    received: set[str] = set()
    for key in client.scan_iter(f"{WORKER_KEY_PREFIX}*"):
        value = client.get(key)
        running |= announced_jobs(value) or set()  # type: ignore[arg-type]
        held = announced_received(value)  # type: ignore[arg-type]
        assert held is not None, f"{key!r} does not list the messages it holds"
        received |= held
    return running, received


def test_the_heartbeat_lists_the_jobs_a_worker_runs(service: Service, http: httpx.Client) -> None:
    """And those whose messages it holds (a running one among them). Answers that reach the
    model (the tests' heartbeat is every second; one short answer may run for less, so several
    go together)."""
    client = redis.Redis.from_url(service.redis_url)
    question = "Describe everything the passages say, in detail."
    body = {"question": question, "min_relevance": 0}
    job_ids = {http.post("/v1/answers", json=body).json()["job_id"] for _ in range(12)}
    seen: set[str] = set()
    running = set(job_ids)
    while running and not seen:
        in_hand, received = _listed(client)
        seen = job_ids & in_hand
        assert seen <= received, "a job runs whose message its worker does not list"
        running = {j for j in running if http.get(f"/v1/jobs/{j}").json()["status"] not in FINISHED}
        time.sleep(0.05)
    assert seen, "no heartbeat listed any of the jobs while they ran"
    for job_id in job_ids:
        wait_job(http, job_id)
    deadline = time.monotonic() + 3 * service.settings.worker_heartbeat_s + 2
    while job_ids & set().union(*_listed(client)):
        assert time.monotonic() < deadline, "a job is still listed after it finished"
        time.sleep(0.1)
    client.close()
