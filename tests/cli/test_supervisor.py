"""What `ragq up` starts besides the API: Flower, listing the running workers; restarts; the
Redis it binds to one vector store."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from cli.supervisor import (
    STANDBY,
    Supervisor,
    claim_store,
    free_port,
    readiness,
    relevant_lines,
)
from common.settings import Settings
from workers.llm_engine import bound_cpus, fork_env

REPO = Path(__file__).resolve().parents[2]


def test_flower_lists_the_workers(service) -> None:  # type: ignore[no-untyped-def]
    settings = service.settings
    user, password = settings.flower_basic_auth.split(":", 1)
    url = f"http://{settings.api_host}:{settings.flower_port}/api/workers?refresh=1"
    assert httpx.get(url, timeout=10).status_code == 401
    deadline = time.monotonic() + 60
    names: list[str] = []
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, auth=(user, password), timeout=10)
            names = list(response.json()) if response.status_code == 200 else []
        except httpx.TransportError:
            names = []
        if any(n.startswith("cpu@") for n in names) and any(n.startswith("llm@") for n in names):
            break
        time.sleep(1)
    assert any(n.startswith("cpu@") for n in names), names
    assert any(n.startswith("llm@") for n in names), names


def test_a_dead_child_is_restarted_at_once_then_after_a_growing_backoff(tmp_path: Path) -> None:
    supervisor = Supervisor(Settings(data_dir=tmp_path, shutdown_grace_s=1), tmp_path / "logs")
    supervisor.start("sleeper", ["sleep", "60"])
    first = supervisor.children["sleeper"]
    try:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        assert supervisor.keep_alive() == ["sleeper"]  # its first death: at once
        again = supervisor.children["sleeper"]
        assert again.pid != first.pid and again.poll() is None

        os.kill(again.pid, signal.SIGKILL)  # a second death within a minute: 1 s of backoff
        again.wait()
        died = time.monotonic()
        assert supervisor.keep_alive() == []
        while not supervisor.keep_alive():
            assert time.monotonic() - died < 10, "the child was not restarted"
            time.sleep(0.1)
        assert time.monotonic() - died >= 1.0
        second = supervisor.children["sleeper"]
        assert second.pid != again.pid and second.poll() is None

        supervisor.stop_child("sleeper")  # held: stays down until resumed
        time.sleep(1.2)
        assert supervisor.keep_alive() == []
        supervisor.resume("sleeper")
        assert supervisor.children["sleeper"].poll() is None
    finally:
        supervisor.stop()
    assert supervisor.children["sleeper"].poll() is not None


def test_the_state_line_names_each_queues_step_until_it_is_ready() -> None:
    steps = {"ingest": "loading the embedding model", "query": "loading the embedding model"}
    steps["llm"] = "starting vLLM"
    assert readiness(None, steps) == (
        "API starting · ingest+query loading the embedding model · llm starting vLLM"
    )
    assert readiness(None, {}) == "API starting"
    body = {"redis": "ok", "workers": {"ingest": True, "query": True, "llm": False}}
    assert readiness(body, steps) == "API up · Redis ok · ingest+query ready · llm starting vLLM"
    assert readiness(body, {}).endswith("llm starting")
    body["workers"] = {"ingest": True, "query": True, "llm": True}
    assert readiness(body, {}) == "API up · Redis ok · ingest+query+llm ready"


def test_a_dead_childs_traceback_is_shown_rather_than_the_noise_after_it(tmp_path: Path) -> None:
    log = tmp_path / "llm-worker.log"
    noise = [f"WARNING loading weight {n}" for n in range(50)]
    trace = ["Traceback (most recent call last):", '  File "x.py", line 1', "OSError: no model"]
    log.write_text("\n".join([*noise, *trace, "INFO shutting down"]) + "\n")
    assert relevant_lines(log) == "\n".join([*trace, "INFO shutting down"])
    log.write_text("\n".join(noise) + "\n")
    assert relevant_lines(log, lines=3) == "\n".join(noise[-3:])
    assert relevant_lines(tmp_path / "missing.log") == ""


def test_a_redis_serves_one_embedded_vector_store(redis_url: str, tmp_path: Path) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/9"  # a database of its own
    claim_store(url, tmp_path / "a" / "vectors")
    claim_store(url, tmp_path / "a" / "vectors")  # the same store again: fine
    with pytest.raises(RuntimeError) as refused:
        claim_store(url, tmp_path / "b" / "vectors")
    assert f"holds the documents of the vector store {tmp_path / 'a' / 'vectors'}" in str(
        refused.value
    )
    claim_store(url, tmp_path / "moved" / "vectors", own=True)  # its own, in a moved folder
    with pytest.raises(RuntimeError):
        claim_store(url, tmp_path / "a" / "vectors")
    redis.Redis.from_url(url).flushdb()


class Recording(Supervisor):
    """A supervisor that records what it would start instead of starting it."""

    def start(self, name: str, command: list[str], **env: str) -> None:
        self.commands[name] = (command, env)


def recorded(redis_url: str, tmp_path: Path, llm_workers: int, standby: bool) -> Recording:
    """What `ragq up` would start with this many llm workers (and the standby)."""
    url = redis_url.rsplit("/", 1)[0] + "/9"
    settings = Settings(
        redis_url=url,
        data_dir=tmp_path,
        llm_workers=llm_workers,
        flower_port=0,
        api_port=free_port(),
    )
    supervisor = Recording(settings, tmp_path / "logs")
    try:
        supervisor.start_all()
        if standby:
            supervisor.start_standby()
    finally:
        supervisor.stop()
        redis.Redis.from_url(url).flushdb()
    return supervisor


def test_ragq_up_starts_RAGQ_LLM_WORKERS_llm_workers_each_under_its_own_hostname(
    redis_url: str, tmp_path: Path
) -> None:
    supervisor = recorded(redis_url, tmp_path, 3, standby=False)
    llm = sorted(name for name in supervisor.commands if name.startswith("llm-worker"))
    assert llm == ["llm-worker", "llm-worker-2", "llm-worker-3"]
    hosts = [
        supervisor.commands[n][0][supervisor.commands[n][0].index("--hostname") + 1] for n in llm
    ]
    assert hosts == ["llm@%h", "llm2@%h", "llm3@%h"]
    ports = {supervisor.commands[n][1]["RAGQ_METRICS_PORT"] for n in llm}
    assert len(ports) == 3 and set(supervisor.metrics) == {"cpu-worker", *llm}


def test_the_standby_is_an_llm_worker_under_a_hostname_of_its_own_told_to_wait(
    redis_url: str, tmp_path: Path
) -> None:
    supervisor = recorded(redis_url, tmp_path, 2, standby=True)
    command, env = supervisor.commands[STANDBY]
    assert command[command.index("--hostname") + 1] == "llm3@%h"
    assert command[command.index("--queues") + 1] == "llm"
    assert env["RAGQ_STANDBY"] == "true" and "RAGQ_METRICS_PORT" not in env
    assert "RAGQ_STANDBY" not in supervisor.commands["llm-worker"][1]
    assert supervisor.hosts == {"llm-worker": "llm", "llm-worker-2": "llm2", STANDBY: "llm3"}


# A stand-in for an llm worker process with the standby's contract (workers.standby): it says it
# stands by once "loaded", then writes the hand-over it reads; `ready=False` never loads.
STAND_IN = """
import sys, time
from workers.standby import STANDING_BY
if {ready}:
    print(STANDING_BY, file=sys.stderr, flush=True)
    print("took:", sys.stdin.readline().strip(), flush=True)
time.sleep(60)
"""


class StandIns(Supervisor):
    """A supervisor whose llm workers and standby are stand-ins, not Celery workers with vLLM."""

    ready: bool = True

    def _start_llm(self, name: str, host: str) -> None:
        self.hosts[name] = host
        _, env = self._llm_command(name, host)  # what the llm worker would get
        script = STAND_IN.format(ready=self.ready or name != STANDBY)
        self.start(name, [sys.executable, "-c", script], **env, PYTHONPATH=str(REPO))

    def cpus(self, name: str) -> set[int]:
        """The CPUs the engine of `name` is bound to."""
        return bound_cpus(self.commands[name][1])


def wait_until(check: object, what: str, timeout: float = 20) -> None:
    """Poll `check()` until it holds."""
    deadline = time.monotonic() + timeout
    while not (callable(check) and check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_loaded_standby_takes_a_dead_llm_workers_place_hostname_port_and_log(
    tmp_path: Path,
) -> None:
    # Where engines are bound to CPUs (vLLM for CPU, two CPUs or more), the CPUs they leave.
    cpus = os.sched_getaffinity(0)
    allowed = cpus if fork_env({}) and len(cpus) > 1 else set()
    logs = tmp_path / "logs"
    supervisor = StandIns(Settings(data_dir=tmp_path, shutdown_grace_s=1), logs)
    supervisor.metrics["llm-worker"] = 9123
    try:
        supervisor._start_llm("llm-worker", "llm")
        supervisor.start_standby()
        wait_until(supervisor.standing_by, "the standby to stand by")
        spare = supervisor.children[STANDBY]
        spare_cpus = supervisor.cpus(STANDBY)
        # The standby loads on the CPU the serving engine leaves free (on two cores, the other).
        assert allowed - supervisor.cpus("llm-worker") <= spare_cpus
        assert not allowed or spare_cpus != supervisor.cpus("llm-worker")
        os.kill(supervisor.children["llm-worker"].pid, signal.SIGKILL)
        wait_until(lambda: supervisor.keep_alive() == ["llm-worker"], "the takeover")
        assert supervisor.children["llm-worker"] is spare and spare.poll() is None
        assert supervisor.hosts == {"llm-worker": "llm2", STANDBY: "llm"}
        # The place keeps the standby's CPUs (and restarts on them); the new standby takes
        # those the promoted engine leaves free.
        assert supervisor.cpus("llm-worker") == spare_cpus
        assert allowed - spare_cpus <= supervisor.cpus(STANDBY)
        assert supervisor.restarts == {"llm-worker": 1}
        assert supervisor.children[STANDBY].pid != spare.pid
        took = '{"predecessor": "llm@%h", "metrics_port": 9123}'
        wait_until(lambda: took in (logs / "llm-worker.log").read_text(), "the hand-over line")
        assert (logs / "llm-worker.prev.log").exists()
        assert supervisor.commands["llm-worker"][1]["RAGQ_METRICS_PORT"] == "9123"
    finally:
        supervisor.stop()


def test_a_standby_still_loading_is_not_taken_the_dead_worker_restarts(tmp_path: Path) -> None:
    supervisor = StandIns(Settings(data_dir=tmp_path, shutdown_grace_s=1), tmp_path / "logs")
    supervisor.ready = False
    try:
        supervisor._start_llm("llm-worker", "llm")
        supervisor.start_standby()
        first, spare = supervisor.children["llm-worker"], supervisor.children[STANDBY]
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        assert supervisor.keep_alive() == ["llm-worker"]  # restarted, not taken over
        assert supervisor.children["llm-worker"] is not first
        assert supervisor.children[STANDBY] is spare
        assert supervisor.hosts == {"llm-worker": "llm", STANDBY: "llm2"}
    finally:
        supervisor.stop()
