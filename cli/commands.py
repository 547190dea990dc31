"""The command lines of the processes `ragq up` starts."""

from __future__ import annotations

import sys
from pathlib import Path

from common.settings import Settings


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
    """A Celery worker; its thread pool comes from the app's `worker_pool` setting."""
    return [
        sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
        "--concurrency", str(concurrency),
        "--queues", ",".join(queues),
        "--hostname", f"{name}@%h",
        "--loglevel", "INFO",
        # Both only cost a start-up: no task is revoked through Celery, and no worker asks another.
        "--without-mingle", "--without-gossip",
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
    """The API under uvicorn, in RAGQ_API_PROCESSES processes."""
    return [
        sys.executable, "-m", "api.serve",
        "--host", settings.api_host,
        "--port", str(settings.api_port),
    ]  # fmt: skip
