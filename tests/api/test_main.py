"""The API process as uvicorn runs it: its access log line is a setting, off by default."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from cli.commands import api_command
from cli.supervisor import free_port
from common.settings import Settings
from tests.conftest import Service

ACCESS_LINE = '"GET /healthz HTTP/1.1" 200'


def test_the_service_writes_no_access_line_by_default(service: Service) -> None:
    assert httpx.get(f"{service.base_url}/healthz", timeout=10).status_code == 200
    assert "Application startup complete" in (service.logs / "api.log").read_text()
    assert ACCESS_LINE not in (service.logs / "api.log").read_text()


def test_the_access_log_setting_writes_a_line_per_request(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGQ_REDIS_URL", redis_url)
    monkeypatch.setenv("RAGQ_API_PORT", str(free_port()))
    monkeypatch.setenv("RAGQ_API_ACCESS_LOG", "true")
    settings = Settings()
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(api_command(settings), env=dict(os.environ), stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"{settings.base_url}/healthz", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        assert response.status_code == 200
        deadline = time.monotonic() + 10
        while ACCESS_LINE not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(20)
