"""An unexpected error answers 500 in the error shape and is logged once, with its traceback."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from api.main import create_app
from cli.supervisor import free_port
from common.settings import Settings


class Broken(RuntimeError):
    """What the test route raises."""


@pytest.fixture
def api(redis_url: str) -> Iterator[str]:
    """The real app, served by uvicorn in this process, with one more route that raises."""
    app: FastAPI = create_app(Settings(redis_url=redis_url))

    @app.get("/broken")
    async def broken() -> None:
        raise Broken("boom")

    port = free_port()
    # No log config of uvicorn's own: its records reach the root logger, where caplog sees them.
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_a_500_is_logged_once_with_its_traceback(
    api: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    response = httpx.get(f"{api}/broken", timeout=10)
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": "an unexpected error occurred"}
    }
    time.sleep(0.2)  # the server logs after the answer went out
    logged = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], Broken)]
    assert len(logged) == 1, [(r.name, r.getMessage()) for r in logged]
    metrics = httpx.get(f"{api}/metrics", timeout=10).text
    assert 'route="/broken",status="500"' in metrics
