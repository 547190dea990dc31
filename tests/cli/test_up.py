"""`ragq up` as a user runs it: its children die with it, a second one says what runs, and an
idle service stops within seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from cli.processes import LOCK_NAME
from cli.supervisor import free_port
from tests.helpers import ragq
from workers.llm_engine import fork_env

REPO = Path(__file__).resolve().parents[2]


def up_env(data: Path) -> dict[str, str]:
    """The environment of a small service of its own: own Redis, data folder and ports."""
    return {
        **{k: v for k, v in os.environ.items() if k != "RAGQ_REDIS_URL"},  # its own Redis
        "RAGQ_DATA_DIR": str(data),
        "RAGQ_RUNTIME_FILE": str(data.parent / "runtime.json"),
        "RAGQ_CACHE_DIR": str(REPO / ".cache"),
        "RAGQ_API_PORT": str(free_port()),
        "RAGQ_FLOWER_PORT": str(free_port()),
        "RAGQ_LLM_ENFORCE_EAGER": "true",
        "RAGQ_LLM_MAX_NUM_SEQS": "2",
        "RAGQ_LLM_CPU_KVCACHE_GIB": "1",
        "RAGQ_CPU_WORKER_CONCURRENCY": "2",
        "RAGQ_WORKER_HEARTBEAT_S": "1",
        "HF_HUB_OFFLINE": "1",
    }


@contextmanager
def ragq_up(
    env: dict[str, str], log: Path, timeout: float = 600
) -> Iterator[subprocess.Popen[bytes]]:
    """`ragq up` in a process of its own, once /readyz answers 200; killed at the end."""
    command = [str(Path(sys.executable).with_name("ragq")), "up"]
    url = f"http://127.0.0.1:{env['RAGQ_API_PORT']}/readyz"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, f"ragq up exited: {log.read_text()[-3000:]}"
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"ragq up was not ready: {log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)


def alive(processes: list[psutil.Process]) -> list[str]:
    """The processes still running (a zombie waiting for its reaper counts as gone)."""
    left = []
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{process.pid} {' '.join(process.cmdline())[:100]}")
        except psutil.NoSuchProcess:
            pass
    return left


def wait_gone(processes: list[psutil.Process], timeout: float) -> float:
    """Seconds until every process is gone; fails after `timeout`."""
    started = time.monotonic()
    while left := alive(processes):
        assert time.monotonic() - started < timeout, f"still running: {left}"
        time.sleep(0.1)
    return time.monotonic() - started


def thread_cpus(process: psutil.Process) -> set[frozenset[int]]:
    """The distinct CPU sets the threads of `process` may run on."""
    return {frozenset(os.sched_getaffinity(thread.id)) for thread in process.threads()}


def assert_only_the_model_is_bound(family: list[psutil.Process]) -> None:
    """Where vLLM for CPU binds its engine (two CPUs or more), only the model's threads are
    bound: the llm worker's own threads and the engine's scheduler may use every CPU, as where
    vLLM spawns its processes, instead of sharing the model's."""
    cpus = frozenset(os.sched_getaffinity(0))
    if not fork_env({}) or len(cpus) < 2:
        return

    def named(part: str) -> psutil.Process:
        (process,) = [p for p in family if part in " ".join(p.cmdline())]
        return process

    assert thread_cpus(named("--queues llm")) == {cpus}
    assert thread_cpus(named("VLLM::EngineCore")) == {cpus}
    (model,) = thread_cpus(named("VLLM::Worker"))
    assert model < cpus


def test_children_die_with_a_killed_supervisor_and_a_second_start_says_what_runs(
    tmp_path: Path,
) -> None:
    env = up_env(tmp_path / "data")
    with ragq_up(env, tmp_path / "up.log") as up:
        family = psutil.Process(up.pid).children(recursive=True)
        commands = [" ".join(p.cmdline()) for p in family]
        assert len(family) >= 6, commands  # Redis, 2 workers, API, Flower, vLLM's engine
        assert (tmp_path / "data" / LOCK_NAME).read_text().strip() == str(up.pid)
        assert_only_the_model_is_bound(family)

        started = time.monotonic()
        second = ragq(env, "up", timeout=60)
        assert second.returncode == 1, second.stderr
        assert f"ragq up (pid {up.pid}) is already running" in second.stderr, second.stderr
        assert time.monotonic() - started < 30

        elsewhere = {**env, "RAGQ_DATA_DIR": str(tmp_path / "other")}
        third = ragq(elsewhere, "up", timeout=60)
        assert third.returncode == 1, third.stderr
        port = env["RAGQ_API_PORT"]
        assert f"port {port} for the API (RAGQ_API_PORT)" in third.stderr, third.stderr
        assert "api.serve" in third.stderr, third.stderr  # names the process that holds it

        os.kill(up.pid, signal.SIGKILL)
        up.wait()
        wait_gone(family, 15)


def test_an_idle_service_stops_within_seconds(tmp_path: Path) -> None:
    env = up_env(tmp_path / "data")
    with ragq_up(env, tmp_path / "up.log") as up:
        supervisor = psutil.Process(up.pid)
        family = supervisor.children(recursive=True)
        time.sleep(2)
        started = time.monotonic()
        up.send_signal(signal.SIGINT)  # Ctrl-C
        wait_gone([supervisor, *family], 60)  # names whatever is still running
        took = time.monotonic() - started
        up.wait(10)
        # Before: 32-43 s (workers hung in exit until killed). Now ~11 s on 2 shared cores, 5 s
        # of it vLLM waiting for its engine process before killing it.
        assert took < 15, f"stopping an idle service took {took:.1f} s"
    assert up.returncode == 0


def test_commands_in_another_folder_find_the_service_and_down_stops_it(tmp_path: Path) -> None:
    env = up_env(tmp_path / "data")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "note.txt").write_text("The Quorvath bridge opens at dawn.")
    # Only the runtime file: no address, data folder or key in the environment.
    bare = {k: v for k, v in os.environ.items() if not k.startswith("RAGQ_")}
    bare.update(RAGQ_RUNTIME_FILE=env["RAGQ_RUNTIME_FILE"], HF_HUB_OFFLINE="1")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [str(Path(sys.executable).with_name("ragq")), *args]
        return subprocess.run(
            command, env=bare, cwd=elsewhere, capture_output=True, text=True, timeout=300
        )

    with ragq_up(env, tmp_path / "up.log") as up:
        # While it starts, ragq up shows each part's state as it changes.
        deadline = time.monotonic() + 15
        while "ragq is up" not in (shown := (tmp_path / "up.log").read_text()):
            assert time.monotonic() < deadline, shown
            time.sleep(0.2)
        assert "ingest+query loading the embedding model" in shown, shown
        assert "llm starting vLLM" in shown and "ingest+query+llm ready" in shown, shown
        console = f"http://127.0.0.1:{env['RAGQ_API_PORT']}/console/"
        assert f"console   {console}" in shown, shown
        assert httpx.get(console).status_code == 200
        status = cli("status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"pid {up.pid}" in status.stdout and "ready     yes" in status.stdout
        # Its own Redis, in its data folder, even where another answers on the default port.
        assert "Redis     redis://127.0.0.1:6379/" not in status.stdout, status.stdout
        assert (tmp_path / "data" / "redis" / "appendonlydir").is_dir()
        assert "development" in cli("keys", "list").stdout
        ingested = cli("ingest", "note.txt")
        assert ingested.returncode == 0, ingested.stderr

        down = cli("down")
        assert down.returncode == 0, down.stderr
        assert up.poll() is not None
    assert not Path(env["RAGQ_RUNTIME_FILE"]).exists()
    gone = cli("status")
    assert gone.returncode == 1 and "no running `ragq up`" in gone.stderr
    keys = cli("keys", "list")  # its Redis went with it: no other Redis is used instead
    assert keys.returncode == 1 and "no running `ragq up`" in keys.stderr, keys.stderr
    no_key = cli("ask", "anything?")
    assert no_key.returncode == 1
    assert "no API key: looked in RAGQ_API_KEY" in no_key.stderr, no_key.stderr
