"""Session fixtures: a real Redis server, real Celery workers, the real API over HTTP."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cli.commands import redis_command
from cli.supervisor import free_port, redis_answers, running
from common.settings import Settings

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Service:
    """The running service the end-to-end tests talk to."""

    base_url: str
    redis_url: str
    settings: Settings
    env: dict[str, str]
    logs: Path
    metrics_ports: dict[str, int]
    api_key: str = ""

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header of the development key (tenant `default`)."""
        return auth(self.api_key)


def auth(api_key: str) -> dict[str, str]:
    """An Authorization header for an API key."""
    return {"Authorization": f"Bearer {api_key}"}


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of the tests' own, on a free port, with AOF on."""
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(redis_command(port, folder), stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 20
    while not redis_answers(url):
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def service(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """API, CPU worker and llm worker (vLLM on CPU) as real processes, shared by all tests."""
    data = tmp_path_factory.mktemp("data")
    port = free_port()
    overrides = {
        "RAGQ_REDIS_URL": redis_url,
        "RAGQ_DATA_DIR": str(data),
        "RAGQ_CACHE_DIR": str(REPO / ".cache"),
        "RAGQ_API_PORT": str(port),
        "RAGQ_LLM_ENFORCE_EAGER": "true",
        "RAGQ_LLM_MAX_TOKENS": "64",
        "RAGQ_LLM_MAX_NUM_SEQS": "8",
        "RAGQ_WORKER_HEARTBEAT_S": "1",
        "RAGQ_FLOWER_PORT": str(free_port()),
        # Tests poll hard; the rate limit has tests of its own (tests/api/test_limits.py).
        "RAGQ_RATE_LIMIT_REQUESTS": "0",
        # Small enough that tests/workers/test_pdf_bomb.py's 60 KB bomb passes it in seconds.
        "RAGQ_PDF_PARSE_MEMORY_MIB": "256",
        # Webhook receivers listen on 127.0.0.2 (tests/receiver.py); 127.0.0.1 stays refused.
        "RAGQ_WEBHOOK_ALLOW_NETWORKS": "127.0.0.2/32",
        "RAGQ_WEBHOOK_RETRY_SCHEDULE_S": "0,1,2,2",
        "RAGQ_WEBHOOK_POLL_S": "0.2",
        "RAGQ_WEBHOOK_TIMEOUT_S": "5",
        # Quota tests wait this long for a changed quota to hold (tests/api/test_quotas.py).
        "RAGQ_QUOTA_CACHE_S": "0.5",
        "HF_HUB_OFFLINE": "1",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in overrides.items():
            patch.setenv(name, value)
        settings = Settings()
        env = dict(os.environ)
        with running(settings, env) as supervisor:
            yield Service(
                settings.base_url,
                redis_url,
                settings,
                env,
                data / "logs",
                supervisor.metrics,
                supervisor.api_key,
            )


@pytest.fixture
def http(service: Service) -> Iterator[httpx.Client]:
    """An HTTP client on the running API."""
    with httpx.Client(base_url=service.base_url, timeout=30, headers=service.headers) as client:
        yield client
