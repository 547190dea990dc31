"""`ragq up`: Redis (if none answers), the workers and the API as child processes of one command.

Written here rather than with a Procfile runner because the set of children depends on the
environment (a Redis child only when none answers, its port chosen at start) and readiness is
judged through our own /readyz.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from common.settings import Settings


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_answers(url: str) -> bool:
    """Whether a Redis server answers at the URL."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def redis_command(port: int, folder: Path) -> list[str]:
    """A redis-server that keeps its data (AOF, fsync every second) in the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        "redis-server",
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(folder.resolve()),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
    ]  # fmt: skip


def worker_command(name: str, queues: list[str], concurrency: int) -> list[str]:
    """A Celery worker on a thread pool (vLLM cannot start its engine under prefork children)."""
    return [
        sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
        "--pool", "threads",
        "--concurrency", str(concurrency),
        "--queues", ",".join(queues),
        "--hostname", f"{name}@%h",
        "--loglevel", "INFO",
    ]  # fmt: skip


def flower_command(settings: Settings) -> list[str]:
    """Flower on the broker, behind basic auth."""
    return [
        sys.executable, "-m", "celery", "-A", "workers.celery_app", "flower",
        f"--port={settings.flower_port}",
        f"--address={settings.api_host}",
        f"--basic-auth={settings.flower_basic_auth}",
    ]  # fmt: skip


def api_command(settings: Settings) -> list[str]:
    """The API under uvicorn."""
    return [
        sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
        "--host", settings.api_host,
        "--port", str(settings.api_port),
    ]  # fmt: skip


@dataclass
class Supervisor:
    """Starts the children, waits until the API is ready, and stops them all together."""

    settings: Settings
    logs: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    metrics: dict[str, int] = field(default_factory=dict)
    redis_url: str = ""

    def start(self, name: str, command: list[str], **env: str) -> None:
        """Start one child with its output in logs/NAME.log."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{name}.log").open("ab")
        self.children[name] = subprocess.Popen(
            command,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_all(self) -> str:
        """Start Redis if needed, the CPU worker, the llm worker and the API; the Redis URL."""
        s = self.settings
        url = s.redis_url
        if not redis_answers(url):
            port = free_port()
            self.start("redis", redis_command(port, s.data_dir / "redis"))
            url = f"redis://127.0.0.1:{port}/0"
            self.env["RAGQ_REDIS_URL"] = url
            self._wait(lambda: redis_answers(url), 30, "redis")
        # The embedded vector store belongs to one process: one CPU worker serves both queues.
        cpu = worker_command("cpu", ["ingest", "query"], s.cpu_worker_concurrency)
        llm = worker_command("llm", ["llm"], s.llm_worker_concurrency)
        self.metrics = {"cpu-worker": free_port(), "llm-worker": free_port()}
        self.start("cpu-worker", cpu, RAGQ_METRICS_PORT=str(self.metrics["cpu-worker"]))
        self.start("llm-worker", llm, RAGQ_METRICS_PORT=str(self.metrics["llm-worker"]))
        self.start("api", api_command(s))
        if s.flower_port:
            self.start("flower", flower_command(s))
        return url

    def _wait(self, ready: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            if callable(ready) and ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"{what} was not ready within {timeout:.0f} s; see {self.logs}")

    def wait_ready(self, timeout: float) -> None:
        """Block until /readyz says every queue has a worker."""

        def ready() -> bool:
            try:
                return httpx.get(f"{self.settings.base_url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        self._wait(ready, timeout, "the service")

    def check(self) -> None:
        """Raise if a child has exited."""
        for name, child in self.children.items():
            if child.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with code {child.returncode}; see {self.logs / name}.log"
                )

    def stop(self) -> None:
        """Stop the API first, then the workers (they finish their tasks), then Redis.

        Each child leads its own process group; the group is killed at the end so that
        grandchildren (vLLM's engine process) never outlive their worker.
        """
        order = ["api", "flower", "cpu-worker", "llm-worker", "redis"]
        for name in order:
            child = self.children.get(name)
            if child is None:
                continue
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(self.settings.shutdown_grace_s)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def _tail(path: Path, lines: int = 60) -> str:
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(text[-lines:])


@contextmanager
def running(settings: Settings, env: dict[str, str], timeout: float = 600) -> Iterator[Supervisor]:
    """The whole service, started with these settings and environment, until the block ends.

    If it does not come up, the tail of every child's log is printed.
    """
    logs = settings.data_dir / "logs"
    supervisor = Supervisor(settings, logs, env)
    try:
        supervisor.redis_url = supervisor.start_all()
        supervisor.wait_ready(timeout)
    except RuntimeError:
        supervisor.stop()
        for log in sorted(logs.glob("*.log")):
            print(f"----- {log.name}\n{_tail(log)}", file=sys.stderr)
        raise
    try:
        yield supervisor
    finally:
        supervisor.stop()
