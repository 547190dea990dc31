"""What `ragq up` starts besides the API: Flower, listing the running workers."""

from __future__ import annotations

import time

import httpx


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
