"""Fault tests with real processes: SIGKILLed workers, a restarted Redis, Redis down.

These tests kill and restart processes, so they run their own service (own Redis, data
folder and ports) instead of the session's, with a fast heartbeat and reconciler.
"""

from __future__ import annotations

import io
import itertools
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from cli.client import RESTARTED, write_answer
from cli.supervisor import STANDBY, Supervisor, free_port, redis_answers, running
from common.keys import RECONCILER_LEASE_KEY
from common.settings import Settings
from ragq_client import Client, TokenEvent
from tests.helpers import wait_job

REPO = Path(__file__).resolve().parents[2]

LIGHTHOUSE = (
    "The Quarnelle lighthouse stands on the island of Tavik. It was designed by the engineer "
    "Oskar Lindqvist and first lit in 1893. Its lamp is visible for 22 nautical miles. The "
    "keepers lived in a stone house beside the tower, kept a log of every ship that passed, "
    "and climbed 212 steps each evening to wind the clockwork of the rotating lens."
)


@dataclass
class Faulty:
    """The fault tests' own running service."""

    supervisor: Supervisor
    http: httpx.Client

    def pid(self, name: str) -> int:
        """The process id of a child now."""
        return self.supervisor.children[name].pid


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faulty]:
    """API, workers and a Redis of their own, with a reconciler that runs every second."""
    data = tmp_path_factory.mktemp("faults")
    overrides = {
        "RAGQ_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nobody answers: own Redis
        "RAGQ_DATA_DIR": str(data),
        "RAGQ_CACHE_DIR": str(REPO / ".cache"),
        "RAGQ_API_PORT": str(free_port()),
        "RAGQ_FLOWER_PORT": "0",
        "RAGQ_LLM_ENFORCE_EAGER": "true",
        "RAGQ_LLM_MAX_TOKENS": "200",
        "RAGQ_LLM_MAX_NUM_SEQS": "4",
        "RAGQ_LLM_CPU_KVCACHE_GIB": "1",
        "RAGQ_CPU_WORKER_CONCURRENCY": "4",
        "RAGQ_WORKER_HEARTBEAT_S": "0.5",
        "RAGQ_RECONCILE_INTERVAL_S": "1",
        "RAGQ_RECONCILE_STALE_S": "5",
        # Small chunks and batches: a document of a few pages is dozens of embedding steps.
        "RAGQ_CHUNK_TOKENS": "48",
        "RAGQ_CHUNK_OVERLAP_TOKENS": "8",
        "RAGQ_EMBEDDING_BATCH_SIZE": "2",
        "RAGQ_SHUTDOWN_GRACE_S": "3",
        "RAGQ_RATE_LIMIT_REQUESTS": "0",  # the tests poll hard
        "HF_HUB_OFFLINE": "1",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in overrides.items():
            patch.setenv(name, value)
        settings = Settings()
        env = dict(os.environ)
    with (
        running(settings, env) as supervisor,
        httpx.Client(
            base_url=settings.base_url,
            timeout=30,
            headers={"Authorization": f"Bearer {supervisor.api_key}"},
        ) as http,
    ):
        yield Faulty(supervisor, http)


def wait_for(check: object, timeout: float, what: str, every: float = 0.05) -> None:
    """Poll until `check()` is true."""
    deadline = time.monotonic() + timeout
    while not (callable(check) and check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def test_sigkilled_ingest_worker_leaves_exactly_the_chunk_count(faulty: Faulty) -> None:
    http = faulty.http
    paragraphs = [f"Section {n}. {LIGHTHOUSE}" for n in range(40)]
    response = http.post("/v1/documents", json={"text": "\n\n".join(paragraphs), "title": "Log"})
    assert response.status_code == 202, response.text
    job_id, document_id = response.json()["job_id"], response.json()["document_id"]

    def midway() -> bool:
        progress = http.get(f"/v1/jobs/{job_id}").json()["progress"]
        return 0 < progress["done"] < progress["total"]

    wait_for(midway, 120, "the ingestion to be under way")
    before = faulty.pid("cpu-worker")
    os.kill(before, signal.SIGKILL)

    record = wait_job(http, job_id, timeout=240)
    assert record["status"] == "succeeded", record
    assert record["attempts"] == 2
    assert record["worker"].startswith("cpu@")
    assert faulty.pid("cpu-worker") != before
    chunks = record["result"]["chunks"]
    assert chunks == record["progress"]["total"] > 10
    assert http.get(f"/v1/documents/{document_id}").json()["chunks"] == chunks

    # The delete job counts the document's points in the store before removing them.
    deleted = http.delete(f"/v1/documents/{document_id}")
    assert deleted.status_code == 202, deleted.text
    removal = wait_job(http, deleted.json()["job_id"])
    assert removal["status"] == "succeeded", removal
    assert removal["result"]["deleted_chunks"] == chunks


def start_ingesting(http: httpx.Client, paragraphs: int) -> str:
    """Submit a document of that many paragraphs; its job id once it has embedded a chunk."""
    text = "\n\n".join(f"Part {n}. {LIGHTHOUSE}" for n in range(paragraphs))
    job_id = str(http.post("/v1/documents", json={"text": text, "title": "Parts"}).json()["job_id"])

    def started() -> bool:
        return int(http.get(f"/v1/jobs/{job_id}").json()["progress"]["done"]) > 0

    wait_for(started, 120, "the ingestion to start")
    return job_id


def test_sigterm_drains_the_running_ingestion_first(faulty: Faulty) -> None:
    """A stopping worker finishes its task (no second attempt) before it exits."""
    http = faulty.http
    job_id = start_ingesting(http, 12)
    before = faulty.pid("cpu-worker")
    os.kill(before, signal.SIGTERM)
    record = wait_job(http, job_id, timeout=120)
    assert record["status"] == "succeeded", record
    assert record["attempts"] == 1
    assert record["progress"]["done"] == record["progress"]["total"]
    wait_for(lambda: faulty.pid("cpu-worker") != before, 60, "the worker to be restarted")


def test_sigterm_hands_back_a_task_longer_than_the_grace(faulty: Faulty) -> None:
    """The drain is bounded: after the grace period the task goes back and runs again."""
    http = faulty.http
    job_id = start_ingesting(http, 300)
    worker = faulty.supervisor.children["cpu-worker"]
    stopped = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    worker.wait(60)
    grace = faulty.supervisor.settings.shutdown_grace_s
    assert time.monotonic() - stopped < grace + 8
    record = wait_job(http, job_id, timeout=240)
    assert record["status"] == "succeeded", record
    assert record["attempts"] == 2
    assert record["result"]["chunks"] == record["progress"]["total"]


def answer_being_generated(http: httpx.Client, worker: str = "llm@") -> str:
    """Ingest a document, ask a long answer about it; its job id once the llm worker whose
    hostname starts with `worker` has it."""
    ingested = http.post("/v1/documents", json={"text": LIGHTHOUSE, "title": "Quarnelle"})
    assert wait_job(http, ingested.json()["job_id"])["status"] == "succeeded"
    question = "Describe in detail everything the passages say about the Quarnelle lighthouse."
    response = http.post("/v1/answers", json={"question": question})
    assert response.status_code == 202, response.text
    job_id = str(response.json()["job_id"])

    def generating() -> bool:
        record = http.get(f"/v1/jobs/{job_id}").json()
        assert record["status"] in ("queued", "running"), record
        return str(record.get("worker") or "").startswith(worker)

    wait_for(generating, 240, "the llm worker to take the answer")
    return job_id


def test_sigkilled_llm_worker_mid_answer_still_answers(faulty: Faulty) -> None:
    """With no reconciler pass (its lease held here), the restarted worker hands the answer
    over as it starts, not after its dead predecessor's heartbeat lapsed."""
    http = faulty.http
    counted = http.get("/v1/usage").json()["total"]
    job_id = answer_being_generated(http)
    before = faulty.pid("llm-worker")
    client = redis.Redis.from_url(faulty.supervisor.redis_url)
    client.set(RECONCILER_LEASE_KEY, "test", px=600_000)
    try:
        os.kill(before, signal.SIGKILL)
        record = wait_job(http, job_id, timeout=280)
    finally:
        client.delete(RECONCILER_LEASE_KEY)
        client.close()
    assert record["status"] == "succeeded", record
    assert record["result"]["answer"].strip()
    assert record["attempts"] == 2
    assert record["worker"].startswith("llm@")
    assert faulty.pid("llm-worker") != before
    # Its usage is counted once, as the retried attempt reports it: not twice, not the lost one.
    now, usage = http.get("/v1/usage").json()["total"], record["result"]["usage"]
    assert now["answers"] - counted["answers"] == 1
    assert now["prompt_tokens"] - counted["prompt_tokens"] == usage["prompt_tokens"]
    assert now["completion_tokens"] - counted["completion_tokens"] == usage["completion_tokens"]


def test_killed_engine_process_mid_answer_restarts_the_llm_worker_and_still_answers(
    faulty: Faulty,
) -> None:
    """An llm worker whose vLLM engine process died exits to be restarted, instead of failing
    every answer it takes; the answer it held runs again on the new one."""
    http = faulty.http
    job_id = answer_being_generated(http)
    before = faulty.pid("llm-worker")
    restarts = faulty.supervisor.restarts.get("llm-worker", 0)
    engines = [
        p
        for p in psutil.Process(before).children(recursive=True)
        if "EngineCore" in " ".join(p.cmdline())
    ]
    assert len(engines) == 1, engines
    engines[0].kill()

    record = wait_job(http, job_id, timeout=280)
    assert record["status"] == "succeeded", record
    assert record["result"]["answer"].strip()
    assert record["attempts"] == 2
    assert faulty.pid("llm-worker") != before
    assert faulty.supervisor.restarts["llm-worker"] == restarts + 1
    log = (faulty.supervisor.logs / "llm-worker.log").read_text(errors="replace")
    assert "engine process died" in log


def test_twenty_queued_jobs_survive_a_redis_restart(faulty: Faulty) -> None:
    http, supervisor = faulty.http, faulty.supervisor
    worker = faulty.pid("cpu-worker")
    os.kill(worker, signal.SIGSTOP)  # nothing consumes: the jobs stay queued
    try:
        ids = []
        for n in range(20):
            body = {"text": f"Tide table {n}: high water at {n % 12 + 1} o'clock.", "title": "t"}
            response = http.post("/v1/documents", json=body)
            assert response.status_code == 202, response.text
            ids.append(response.json()["job_id"])
        assert {http.get(f"/v1/jobs/{j}").json()["status"] for j in ids} == {"queued"}

        supervisor.stop_child("redis")
        supervisor.resume("redis")
        wait_for(lambda: redis_answers(supervisor.redis_url), 30, "redis", every=0.2)
    finally:
        os.kill(worker, signal.SIGCONT)

    records = [wait_job(http, job_id, timeout=240) for job_id in ids]
    assert [r["status"] for r in records] == ["succeeded"] * 20, records


def test_redis_down_answers_503_then_recovers_without_an_api_restart(faulty: Faulty) -> None:
    http, supervisor = faulty.http, faulty.supervisor
    api = faulty.pid("api")
    ingested = http.post("/v1/documents", json={"text": "Ferry times: dawn and dusk."})
    job_id = ingested.json()["job_id"]
    assert wait_job(http, job_id)["status"] == "succeeded"

    supervisor.stop_child("redis")
    try:
        for response in (
            http.get(f"/v1/jobs/{job_id}"),
            http.post("/v1/answers", json={"question": "When does the ferry leave?"}),
            http.post("/v1/documents", json={"text": "Written while Redis is down."}),
        ):
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "service_unavailable"
            assert int(response.headers["Retry-After"]) > 0
    finally:
        supervisor.resume("redis")

    wait_for(lambda: http.get(f"/v1/jobs/{job_id}").status_code == 200, 30, "the API", every=0.5)
    answer = http.post("/v1/answers", json={"question": "When does the ferry leave?"})
    assert answer.status_code == 202, answer.text
    assert wait_job(http, answer.json()["job_id"], timeout=240)["status"] == "succeeded"
    assert faulty.pid("api") == api
    assert "api" not in supervisor.restarts


def ready(http: httpx.Client) -> bool:
    """Whether /readyz answers 200."""
    try:
        return http.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


def restart_redis(supervisor: Supervisor, down_s: float = 1.0) -> None:
    """Stop Redis, keep it down a moment, start it again on the same port."""
    supervisor.stop_child("redis")
    time.sleep(down_s)
    supervisor.resume("redis")
    wait_for(lambda: redis_answers(supervisor.redis_url), 30, "redis", every=0.1)


def test_workers_ride_out_a_redis_restart_busy_or_idle(faulty: Faulty) -> None:
    """Same worker processes afterwards, ready again within seconds, the answer in flight done."""
    http, supervisor = faulty.http, faulty.supervisor
    workers = {name: faulty.pid(name) for name in ("cpu-worker", "llm-worker")}
    restarts = dict(supervisor.restarts)  # earlier tests of this module killed workers
    ingested = http.post("/v1/documents", json={"text": LIGHTHOUSE, "title": "Quarnelle"})
    assert wait_job(http, ingested.json()["job_id"])["status"] == "succeeded"
    question = "Describe in detail everything the passages say about the Quarnelle lighthouse."
    job_id = http.post("/v1/answers", json={"question": question}).json()["job_id"]

    def generating() -> bool:
        return str(http.get(f"/v1/jobs/{job_id}").json().get("worker") or "").startswith("llm@")

    wait_for(generating, 240, "the llm worker to take the answer")
    restart_redis(supervisor)
    back = time.monotonic()
    wait_for(lambda: ready(http), 15, "/readyz after the restart", every=0.2)
    record = wait_job(http, job_id, timeout=60)
    assert record["status"] == "succeeded", record
    assert record["result"]["answer"].strip()

    restart_redis(supervisor)  # idle this time
    wait_for(lambda: ready(http), 15, "/readyz after the idle restart", every=0.2)
    asked = time.monotonic()
    answer = http.post("/v1/answers", json={"question": "When was the lighthouse first lit?"})
    assert answer.status_code == 202, answer.text
    assert wait_job(http, answer.json()["job_id"], timeout=60)["status"] == "succeeded"
    assert time.monotonic() - asked < 45
    assert {name: faulty.pid(name) for name in workers} == workers
    assert supervisor.restarts == restarts
    assert time.monotonic() - back < 120


def test_a_standby_takes_a_killed_llm_workers_place_and_its_answer_at_once(
    faulty: Faulty,
) -> None:
    """RAGQ_LLM_STANDBY: the loaded standby becomes the llm worker (no restart), re-enqueues the
    dead one's answer without a reconciler pass, and a new standby starts under the dead one's
    hostname. Last in the module: the llm worker's hostname is another one afterwards."""
    http, supervisor = faulty.http, faulty.supervisor
    supervisor.start_standby()
    try:
        wait_for(supervisor.standing_by, 240, "the standby to load", every=0.5)
        spare, hosts = faulty.pid(STANDBY), dict(supervisor.hosts)
        assert hosts[STANDBY] != hosts["llm-worker"]
        job_id = answer_being_generated(http, f"{hosts['llm-worker']}@")
        restarts = supervisor.restarts.get("llm-worker", 0)
        client = redis.Redis.from_url(supervisor.redis_url)
        client.set(RECONCILER_LEASE_KEY, "test", px=600_000)
        out = io.StringIO()
        try:
            with Client(supervisor.settings.base_url, supervisor.api_key) as ragq:
                events = iter(ragq.events(job_id))
                before = []
                for event in events:
                    before.append(event)
                    if isinstance(event, TokenEvent):
                        break  # the answer is streaming
                os.kill(faulty.pid("llm-worker"), signal.SIGKILL)
                write_answer(itertools.chain(before, events), out)
            record = wait_job(http, job_id, timeout=120)
        finally:
            client.delete(RECONCILER_LEASE_KEY)
            client.close()
        assert record["status"] == "succeeded", record
        assert record["attempts"] == 2
        assert record["worker"].startswith(f"{hosts[STANDBY]}@")
        # As `ragq ask` shows it: the lost attempt's text, a notice, then the whole answer anew.
        lost, _, again = out.getvalue().partition(f"\n[{RESTARTED}]\n")
        assert lost and again == record["result"]["answer"]
        assert faulty.pid("llm-worker") == spare
        assert supervisor.restarts["llm-worker"] == restarts + 1
        assert supervisor.hosts == {"llm-worker": hosts[STANDBY], STANDBY: hosts["llm-worker"]}
        assert faulty.pid(STANDBY) != spare
        logs = supervisor.logs
        assert "taking the place of" in (logs / "llm-worker.log").read_text(errors="replace")
        assert (logs / "llm-worker.prev.log").exists()
        answer = http.post("/v1/answers", json={"question": "When was the lighthouse first lit?"})
        assert wait_job(http, answer.json()["job_id"], timeout=120)["status"] == "succeeded"
    finally:
        supervisor.stop_child(STANDBY)
