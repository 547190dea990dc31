"""Production mode refuses to start with no API key or with the development key."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from pydantic import ValidationError

from cli.supervisor import free_port
from common.apikeys import create_key, ensure_dev_key, open_redis, revoke_key
from common.settings import Settings
from tests.helpers import api_process

PRODUCTION = {
    "RAGQ_ENVIRONMENT": "production",
    "RAGQ_QDRANT_URL": "http://127.0.0.1:6333",
    "RAGQ_FLOWER_BASIC_AUTH": "ops:a-long-secret",
}


@pytest.fixture
def prod_env(redis_url: str) -> Iterator[tuple[dict[str, str], redis.Redis]]:
    """A production environment on database 2 of the test Redis, with no keys."""
    url = redis_url.rsplit("/", 1)[0] + "/2"
    client = open_redis(url)
    client.flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGQ_")}
    yield {**env, **PRODUCTION, "RAGQ_REDIS_URL": url}, client
    client.flushdb()
    client.close()


def start_api(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the API until it exits (it should not start)."""
    command = [sys.executable, "-m", "api.serve", "--port", str(free_port())]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_production_refuses_to_start_without_keys(
    prod_env: tuple[dict[str, str], redis.Redis],
) -> None:
    env, _ = prod_env
    result = start_api(env)
    assert result.returncode != 0
    assert "production mode needs an API key" in result.stderr


def test_production_refuses_the_development_key(
    prod_env: tuple[dict[str, str], redis.Redis], tmp_path: Path
) -> None:
    env, client = prod_env
    dev, _ = ensure_dev_key(client, tmp_path / "api-key")
    create_key(client, "acme")
    result = start_api(env)
    assert result.returncode != 0
    assert "refuses the development key" in result.stderr
    revoke_key(client, dev)
    with api_process(env, free_port()) as url:
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert (
            httpx.get(f"{url}/v1/documents", headers={"Authorization": f"Bearer {dev}"}).status_code
            == 401
        )


def test_production_settings_refuse_a_preset_dev_key() -> None:
    with pytest.raises(ValidationError, match="RAGQ_DEV_API_KEY"):
        Settings(
            environment="production",
            qdrant_url="http://127.0.0.1:6333",
            flower_basic_auth="ops:secret",
            dev_api_key="rq_development-key-0123456789",
        )
