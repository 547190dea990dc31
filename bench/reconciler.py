"""One reconciler pass under a backlog of queued jobs (default 100,000), on a throwaway Redis.

    .venv/bin/python bench/reconciler.py [--backlog 100000] [--running 32] [--lost 10] [--passes 20]

Starts its own redis-server on a free port and writes, as the API does, `--backlog` queued
ingest jobs (record and active index) with their Celery messages in the ingest queue, all sent
long enough ago to be stale (older than RAGQ_RECONCILE_STALE_S, the worst case: every one of
them is due a check); `--lost` older jobs whose message is gone; and `--running` jobs a worker
holds whose heartbeat lists them. Runs the one-time backfill to its end, then times `--passes`
passes (wall and this process's CPU; the JSON's `pass_ms` is the median wall time). For scale it
also times what a pass read before this index: every unfinished record and every waiting
message. The last line is one JSON object: {"backlog", "pass_ms", "pass_ms_max",
"pass_cpu_ms", "examined", "requeued", "backfill_passes", "backfill_ms", "read_all_ms"}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import redis

from cli.commands import redis_command
from cli.supervisor import free_port, redis_answers
from common.contract import INGEST_TASK, create_app
from common.jobs import JobStore, new_record_fields
from common.keys import ACTIVE_JOBS_KEY, RECONCILER_BACKFILL_KEY, job_key, worker_key
from common.liveness import worker_value
from common.schemas import JobKind
from common.settings import Settings
from workers.reconciler import FIELDS, Reconciler, waiting_job_ids

BATCH = 2000


def iso(t: float) -> str:
    """An ISO timestamp as the job records hold them."""
    return datetime.fromtimestamp(t, UTC).isoformat()


def write_jobs(client: redis.Redis, ids: list[str], first_sent: float, ttl_s: int) -> None:
    """Queued ingest jobs as the API writes them, sent a millisecond apart from `first_sent`."""
    for start in range(0, len(ids), BATCH):
        with client.pipeline(transaction=False) as pipe:
            for n, job_id in enumerate(ids[start : start + BATCH], start):
                t = first_sent + n / 1000
                fields = new_record_fields(job_id, JobKind.INGEST, "bench")
                fields["created_at"] = iso(t)
                pipe.hset(job_key(job_id), mapping=fields)
                pipe.expire(job_key(job_id), ttl_s)
                pipe.zadd(ACTIVE_JOBS_KEY, {job_id: t})
            pipe.execute()


def read_all_ms(client: redis.Redis) -> float:
    """What a pass read before: every unfinished record, then every waiting message."""
    start = time.perf_counter()
    ids: list[str] = client.zrange(ACTIVE_JOBS_KEY, 0, -1)  # type: ignore[assignment]
    for offset in range(0, len(ids), 500):
        with client.pipeline(transaction=False) as pipe:
            for job_id in ids[offset : offset + 500]:
                pipe.hmget(job_key(job_id), list(FIELDS))
            pipe.execute()
    waiting_job_ids(client)
    return 1000 * (time.perf_counter() - start)


def main() -> None:
    """Fill a Redis, finish the backfill, time passes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--running", type=int, default=32)
    parser.add_argument("--lost", type=int, default=10)
    parser.add_argument("--passes", type=int, default=20)
    args = parser.parse_args()

    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="ragq-bench-reconciler-"))
    server = subprocess.Popen(redis_command(port, folder), stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 20
        while not redis_answers(url):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
        run(url, args)
    finally:
        server.terminate()
        server.wait(10)


def run(url: str, args: argparse.Namespace) -> None:
    """The benchmark proper, on the Redis at `url`."""
    settings = Settings(redis_url=url)
    celery = create_app(settings)
    store = JobStore(url, settings.job_ttl_s, settings.max_attempts, instance="bench")
    client = store.redis
    now = time.time()

    start = time.perf_counter()
    lost = [str(uuid.uuid4()) for _ in range(args.lost)]
    # Sent long before the backlog: the queue has moved past where their messages were.
    write_jobs(client, lost, now - 3 * settings.reconcile_stale_s, settings.job_ttl_s)
    backlog = [str(uuid.uuid4()) for _ in range(args.backlog)]
    first = now - settings.reconcile_stale_s - 60 - args.backlog / 1000
    write_jobs(client, backlog, first, settings.job_ttl_s)
    with celery.producer_or_acquire() as producer:
        for job_id in backlog:
            celery.send_task(INGEST_TASK, args=[job_id], task_id=job_id, producer=producer)
    running = [str(uuid.uuid4()) for _ in range(args.running)]
    write_jobs(client, running, now, settings.job_ttl_s)
    for job_id in running:
        assert store.start(job_id, "cpu@bench")
    heartbeat = worker_value(["ingest"], os.getpid(), "bench", running)
    client.set(worker_key("cpu@bench"), heartbeat, ex=3600)
    fill_s = time.perf_counter() - start
    print(f"wrote {args.backlog} queued jobs and their messages in {fill_s:.1f} s")
    print(f"queue length {client.llen('ingest')}, {args.lost} lost, {args.running} running")

    reconciler = Reconciler(store, celery, settings)
    requeued: list[str] = []
    backfill_passes, start = 0, time.perf_counter()
    while client.get(RECONCILER_BACKFILL_KEY) != "done":
        requeued += reconciler.run_once().requeued
        backfill_passes += 1
    backfill_ms = 1000 * (time.perf_counter() - start)
    print(f"backfill: {backfill_passes} passes, {backfill_ms:.0f} ms in all")

    walls, cpus, examined = [], [], []
    for _ in range(args.passes):
        wall, cpu = time.perf_counter(), time.process_time()
        outcome = reconciler.run_once()
        walls.append(1000 * (time.perf_counter() - wall))
        cpus.append(1000 * (time.process_time() - cpu))
        examined.append(outcome.examined)
        requeued += outcome.requeued
    assert sorted(requeued) == sorted(lost), "a pass re-sent a job whose message waits"
    assert client.llen("ingest") == args.backlog + args.lost

    before = read_all_ms(client)
    result = {
        "backlog": args.backlog,
        "pass_ms": round(statistics.median(walls), 2),
        "pass_ms_max": round(max(walls), 2),
        "pass_cpu_ms": round(statistics.median(cpus), 2),
        "examined": max(examined),
        "requeued": len(requeued),
        "backfill_passes": backfill_passes,
        "backfill_ms": round(backfill_ms, 1),
        "read_all_ms": round(before, 1),
    }
    print(f"one pass over {args.backlog} stale queued jobs and {args.running} held ones:")
    print(f"  wall p50 {result['pass_ms']} ms, max {result['pass_ms_max']} ms;", end=" ")
    print(f"CPU p50 {result['pass_cpu_ms']} ms; {result['examined']} jobs looked at per pass")
    print(f"reading every record and message as a pass did before: {before:.0f} ms")
    celery.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
