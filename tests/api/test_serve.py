"""The API as `python -m api.serve` starts it: several processes on one port with their metrics
summed and a clean stop, or one process alone."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import psutil

from api.serve import MULTIPROCESS_DIR
from cli.supervisor import free_port
from tests.helpers import api_process, samples, value

HEALTHZ = {"route": "/healthz", "method": "GET", "status": "200"}


def launcher(port: int) -> psutil.Process:
    """This test's `api.serve` child that serves `port`."""
    (found,) = (p for p in psutil.Process().children() if f"--port {port}" in " ".join(p.cmdline()))
    return found


def connections_by_process(serve: psutil.Process, port: int) -> dict[int, int]:
    """How many client connections each of the launcher's processes holds on the port."""
    return {
        child.pid: sum(
            1
            for c in child.net_connections("tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
        )
        for child in serve.children()
    }


def healthz_count(url: str) -> float:
    """GET /healthz 200s as /metrics counts them (a new connection: any process may answer)."""
    with httpx.Client(base_url=url, timeout=10) as http:
        return value(samples(http.get("/metrics").text), "ragq_http_requests_total", **HEALTHZ)


def test_metrics_add_up_over_the_processes(redis_url: str) -> None:
    env = {**os.environ, "RAGQ_REDIS_URL": redis_url, "RAGQ_API_PROCESSES": "2"}
    port = free_port()
    with api_process(env, port) as url:
        serve = launcher(port)
        before = healthz_count(url)
        clients: list[httpx.Client] = []
        try:
            # Connections held open until both processes have taken some.
            while sum(n > 0 for n in connections_by_process(serve, port).values()) < 2:
                assert len(clients) < 200, connections_by_process(serve, port)
                clients.append(httpx.Client(base_url=url, timeout=10))
                assert clients[-1].get("/healthz").status_code == 200
        finally:
            for client in clients:
                client.close()
        for _ in range(4):
            assert healthz_count(url) == before + len(clients)
        scraped = samples(httpx.get(f"{url}/metrics", timeout=10).text)
        # One sample per queue, not one per process.
        assert ("ragq_queue_depth", frozenset({("queue", "query")})) in scraped


def test_ctrl_c_stops_every_process_and_removes_the_metrics_folder(
    redis_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "RAGQ_REDIS_URL": redis_url, "RAGQ_API_PROCESSES": "2"}
    port = free_port()
    with api_process(env, port):
        serve = launcher(port)
        workers = serve.children()
        folder = Path(next(p.environ()[MULTIPROCESS_DIR] for p in workers if p.is_running()))
        assert folder.is_dir()
        serve.send_signal(signal.SIGINT)
        assert serve.wait(30) == 0
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, alive
        deadline = time.monotonic() + 5
        while folder.exists():
            assert time.monotonic() < deadline, list(folder.iterdir())
            time.sleep(0.1)


def test_one_process_serves_alone(redis_url: str) -> None:
    env = {**os.environ, "RAGQ_REDIS_URL": redis_url, "RAGQ_API_PROCESSES": "1"}
    port = free_port()
    with api_process(env, port) as url:
        serve = launcher(port)
        assert serve.children() == []
        assert MULTIPROCESS_DIR not in serve.environ()
        before = healthz_count(url)
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        assert healthz_count(url) == before + 1
