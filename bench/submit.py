"""API job-submit throughput: answer and text-document submissions over HTTP against the bare floor.

    .venv/bin/python bench/submit.py [--count 4000] [--clients 32] [--bare-clients 32]

Starts its own redis-server and the API as `ragq up` starts it (`python -m api.serve`:
RAGQ_API_PROCESSES uvicorn processes, 2 by default; `RAGQ_API_PROCESSES=1` for one) and no
worker, so every submission only queues. `--clients` concurrent clients (one
aiohttp.ClientSession, a keep-alive connection each: a tenth of httpx's CPU per request, and
the clients share the API's cores) send `--count` submissions, alternating `POST /v1/answers`
and `POST /v1/documents` (JSON text, a distinct text each), and time each one. The bare floor
is the same work without HTTP: the API's own services (`JobService.submit_answer`,
`DocumentService.submit`) called from this process, `--bare-clients` at a time, on a second
Redis database; it writes the same records and publishes the same Celery messages. The rate
limit is set out of reach (it is still counted) and the queue depth limit too. Every job is
checked afterwards: a record and a message per job. Last line one JSON object:
{"submit_jobs_s", "submit_p50_ms", "submit_p99_ms", "bare_jobs_s", "ratio",
"api_cpu_ms_per_job", "client_cpu_ms_per_job", "redis_cpu_ms_per_job", "bare_cpu_ms_per_job",
"count", "transport_errors", "clients", "api_processes", "load_avg"}. CPU per job says what the
throughput would be with cores to spare: on a loaded machine the wall-clock figures measure the
share of the cores the processes got.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import psutil
import redis

from api.schemas import AnswerIn
from api.services.documents import DocumentService, Upload
from api.services.jobs import JobService
from cli.commands import api_command, redis_command
from cli.supervisor import free_port, redis_answers
from common.access import ADMIN
from common.apikeys import create_key, open_redis
from common.contract import INGEST_QUEUE, QUERY_QUEUE, create_app
from common.jobs_async import AsyncJobStore
from common.keys import ACTIVE_JOBS_KEY
from common.redis_async import async_redis
from common.settings import Settings

WARM_UP_ROUNDS = 4  # of `--clients` submissions
LIMITS = {"RAGQ_RATE_LIMIT_REQUESTS": "1000000000", "RAGQ_MAX_QUEUE_DEPTH": "1000000000"}


def question(n: int) -> str:
    """The n-th question."""
    return f"What does study {n} find about the effect of treatment {n % 97} on outcome?"


def document(n: int) -> str:
    """The n-th document's text (distinct, so each one is a new document)."""
    return f"Abstract {n}. Treatment {n % 97} changed outcome {n} in a trial of {n + 20} people."


async def closed_loop(
    count: int, clients: int, one: Callable[[int], Awaitable[None]]
) -> tuple[float, list[float]]:
    """`count` calls of `one` by `clients` concurrent loops: (seconds, each call's seconds)."""
    latencies: list[float] = []
    counter = iter(range(count))

    async def loop() -> None:
        for n in counter:
            start = time.perf_counter()
            await one(n)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(clients)))
    return time.perf_counter() - start, latencies


def warm_ups(clients: int) -> int:
    """How many submissions go before the timed ones."""
    return WARM_UP_ROUNDS * clients


async def warm_up(clients: int, one: Callable[[int], Awaitable[None]]) -> None:
    """Untimed submissions first (negative numbers), as many at a time as the timed ones: each
    API process opens its Redis connections and loads its scripts on its first requests."""
    await closed_loop(warm_ups(clients), clients, lambda n: one(-1 - n))


async def over_http(
    base_url: str, key: str, count: int, clients: int, failed: list[str]
) -> tuple[float, list[float]]:
    """Submissions through the API; those lost in transport are added to `failed`."""
    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        base_url, headers=headers, connector=connector, timeout=timeout
    ) as http:

        async def one(n: int) -> None:
            if n % 2:
                path, body = "/v1/documents", {"text": document(n)}
            else:
                path, body = "/v1/answers", {"question": question(n)}
            try:
                async with http.post(path, json=body) as response:
                    if response.status != 202:
                        raise RuntimeError(f"{response.status}: {await response.text()}")
                    await response.read()
            except aiohttp.ClientConnectionError as exc:
                # A keep-alive connection the server closed as it was reused: not retried (a
                # retry may or may not make a second job), counted.
                failed.append(f"{n}: {exc!r}")

        await warm_up(clients, one)
        return await closed_loop(count, clients, one)


async def bare(url: str, count: int, clients: int) -> tuple[float, list[float]]:
    """The same submissions through the API's services, in this process, without HTTP."""
    settings = Settings(redis_url=url)
    client = async_redis(url, decode_responses=True)  # the API's own client
    celery = create_app(settings)
    jobs = JobService(AsyncJobStore(client, settings.job_ttl_s), celery, settings)
    documents = DocumentService(client, jobs)

    async def one(n: int) -> None:
        if n % 2:
            await documents.submit("bench", ADMIN, Upload(document(n).encode()))
        else:
            await jobs.submit_answer("bench", ADMIN, AnswerIn(question=question(n)))

    try:
        await warm_up(clients, one)
        return await closed_loop(count, clients, one)
    finally:
        await client.aclose()
        celery.close()


def check(client: redis.Redis, submitted: int, failed: int = 0) -> None:
    """Every submission left a queued record and a waiting message (the warm-ups' too); one
    that failed in transport left both or neither."""
    records = int(client.zcard(ACTIVE_JOBS_KEY))
    waiting = int(client.llen(QUERY_QUEUE)) + int(client.llen(INGEST_QUEUE))  # type: ignore[arg-type]
    assert waiting == records, f"{waiting} messages for {records} jobs"
    assert submitted - failed <= records <= submitted, f"{records} jobs, {submitted} submissions"


def quantile_ms(seconds: list[float], q: float) -> float:
    """The q-quantile of the latencies, in ms."""
    ordered = sorted(seconds)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) a process and its live children have used so far."""
    process = psutil.Process(pid)
    return sum(
        float(t.user + t.system) for t in (p.cpu_times() for p in [process, *process.children()])
    )


def start_api(env: dict[str, str], settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """The API as `ragq up` starts it; returns once /healthz answers."""
    with log.open("wb") as out:
        proc = subprocess.Popen(api_command(settings), env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            sys.exit(f"the API exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{settings.base_url}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            sys.exit(f"the API did not start:\n{log.read_text()}")
        time.sleep(0.2)


def main() -> None:
    """Start Redis and the API, run both sides, print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--bare-clients", type=int, default=32)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="ragq-bench-submit-"))
    port = free_port()
    server = subprocess.Popen(redis_command(port, folder / "redis"), stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    api: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 20
        while not redis_answers(url):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
        env = {
            **os.environ,
            **LIMITS,
            "RAGQ_REDIS_URL": url,
            "RAGQ_DATA_DIR": str(folder / "data"),
            "RAGQ_API_PORT": str(free_port()),
        }
        settings = Settings(redis_url=url, api_port=int(env["RAGQ_API_PORT"]))
        api = start_api(env, settings, folder / "api.log")
        sync = open_redis(url)
        key, _ = create_key(sync, "bench")
        load_before = os.getloadavg()[0]
        api_cpu, own_cpu = cpu_seconds(api.pid), time.process_time()
        redis_cpu = cpu_seconds(server.pid)
        failed: list[str] = []
        http_s, latencies = asyncio.run(
            over_http(settings.base_url, key, args.count, args.clients, failed)
        )
        api_cpu, own_cpu = cpu_seconds(api.pid) - api_cpu, time.process_time() - own_cpu
        redis_cpu = cpu_seconds(server.pid) - redis_cpu
        check(sync, args.count + warm_ups(args.clients), len(failed))
        bare_url = url.rsplit("/", 1)[0] + "/1"
        bare_cpu = time.process_time()
        bare_s, bare_latencies = asyncio.run(bare(bare_url, args.count, args.bare_clients))
        bare_cpu = time.process_time() - bare_cpu
        check(open_redis(bare_url), args.count + warm_ups(args.bare_clients))
        load_after = os.getloadavg()[0]
    finally:
        if api is not None:
            api.terminate()
            api.wait(20)
        server.terminate()
        server.wait(10)

    submit_jobs_s = args.count / http_s
    bare_jobs_s = args.count / bare_s
    result = {
        "submit_jobs_s": round(submit_jobs_s, 1),
        "submit_p50_ms": round(quantile_ms(latencies, 0.50), 2),
        "submit_p99_ms": round(quantile_ms(latencies, 0.99), 2),
        "bare_jobs_s": round(bare_jobs_s, 1),
        "ratio": round(submit_jobs_s / bare_jobs_s, 3),
        "api_cpu_ms_per_job": round(1000 * api_cpu / args.count, 3),
        "redis_cpu_ms_per_job": round(1000 * redis_cpu / args.count, 3),
        "client_cpu_ms_per_job": round(1000 * own_cpu / args.count, 3),
        "bare_cpu_ms_per_job": round(1000 * bare_cpu / args.count, 3),
        "count": args.count,
        "transport_errors": len(failed),
        "clients": args.clients,
        "api_processes": settings.api_processes,
        "load_avg": round((load_before + load_after) / 2, 2),
    }
    print(
        f"{args.count} submissions (answers and text documents alternating), "
        f"{settings.api_processes} API process(es)"
    )
    print("| path | clients | jobs/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for name, clients, seconds, lat in (
        ("HTTP → API → Redis", args.clients, http_s, latencies),
        ("bare (services in-process)", args.bare_clients, bare_s, bare_latencies),
    ):
        row = [name, clients, round(args.count / seconds, 1)]
        row += [round(quantile_ms(lat, 0.5), 2), round(quantile_ms(lat, 0.99), 2)]
        print("| " + " | ".join(str(v) for v in row) + " |")
    for line in failed[:5]:
        print(f"lost in transport: {line}")
    print(f"ratio {result['ratio']}; load average {load_before:.2f} → {load_after:.2f}")
    print(
        f"CPU per job: API {result['api_cpu_ms_per_job']} ms, HTTP clients "
        f"{result['client_cpu_ms_per_job']} ms, Redis {result['redis_cpu_ms_per_job']} ms; "
        f"bare {result['bare_cpu_ms_per_job']} ms "
        f"(one free core would carry at most {1000 / max(1e-9, result['api_cpu_ms_per_job']):.0f} "
        "jobs/s through one API process)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
