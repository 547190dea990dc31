"""The API process as uvicorn runs it: its access log line is a setting, off by default."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from cli.supervisor import free_port
from tests.conftest import Service
from tests.helpers import api_process

ACCESS_LINE = '"GET /healthz HTTP/1.1" 200'


def test_the_service_writes_no_access_line_by_default(service: Service) -> None:
    assert httpx.get(f"{service.base_url}/healthz", timeout=10).status_code == 200
    assert "Application startup complete" in (service.logs / "api.log").read_text()
    assert ACCESS_LINE not in (service.logs / "api.log").read_text()


def test_the_access_log_setting_writes_a_line_per_request(redis_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "RAGQ_REDIS_URL": redis_url, "RAGQ_API_ACCESS_LOG": "true"}
    log = tmp_path / "api.log"
    with api_process(env, free_port(), log_path=log) as url:
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        deadline = time.monotonic() + 10
        while ACCESS_LINE not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
