"""What the load benchmark checks once the traffic stops: every job final, every webhook
delivered, no chunk beyond what the documents hold, and the memory of Redis and each process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import redis
from hooksink import Sink
from loadmix import Job

from common.contract import QUEUES
from common.vectorstore import EdgeStore
from ragq_client import AsyncClient, DocumentInfo, RagqError

DEFAULT_DIM = 384  # all-MiniLM-L6-v2, when the store's own config does not say


def final(job: Job) -> bool:
    """Whether the job's last known record is in a final status."""
    return job.record is not None and job.record.status.finished


async def drain(
    client: AsyncClient, jobs: list[Job], sink: Sink, timeout: float, every_s: float = 2.0
) -> float:
    """Poll the jobs not yet final, then wait for their webhooks, until all are in or `timeout`
    passed; the seconds it took."""
    started = time.monotonic()
    gate = asyncio.Semaphore(16)

    async def refresh(job: Job) -> None:
        async with gate:
            try:
                job.record = await client.job(job.job_id)
            except RagqError as exc:
                print(f"  drain: job {job.job_id}: {exc}", flush=True)

    last_report = 0.0
    while True:
        pending = [j for j in jobs if not final(j)]
        await asyncio.gather(*(refresh(j) for j in pending))
        pending = [j for j in jobs if not final(j)]
        hooks = [j for j in jobs if j.webhook and final(j) and sink.delivered(j.job_id) is None]
        waited = time.monotonic() - started
        if not pending and not hooks:
            return waited
        if waited >= timeout:
            return waited
        if waited - last_report >= 15:
            last_report = waited
            print(
                f"  drain {waited:4.0f} s: {len(pending)} jobs not final, "
                f"{len(hooks)} webhooks not in",
                flush=True,
            )
        await asyncio.sleep(every_s)


def latency_s(job: Job) -> float | None:
    """Seconds from the job's request to its final status (the record's `finished_at`)."""
    if job.record is None or not job.record.finished_at:
        return None
    finished = _epoch(job.record.finished_at)
    return max(0.0, finished - job.sent)


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


@dataclass
class Webhooks:
    """Webhook outcome over the jobs that asked for one."""

    asked: int
    delivered: int
    missing: list[str]
    wrong: list[str]
    repeats: int
    invalid: list[str]


def check_webhooks(jobs: Iterable[Job], sink: Sink) -> Webhooks:
    """Each job that asked for a webhook must have exactly one delivery (after dedup by
    `webhook-id`) carrying that job in its final status."""
    asked = delivered = 0
    missing: list[str] = []
    wrong: list[str] = []
    for job in jobs:
        if not job.webhook:
            continue
        asked += 1
        got = sink.delivered(job.job_id)
        if got is None:
            missing.append(job.job_id)
            continue
        delivered += 1
        expected = job.record.status.value if job.record is not None else "?"
        if got.job_id != job.job_id or got.status != expected:
            wrong.append(f"{job.job_id}: delivered {got.job_id} {got.status}, job is {expected}")
    return Webhooks(
        asked, delivered, missing, wrong, sum(sink.repeats.values()), list(sink.invalid)
    )


async def documents(client: AsyncClient) -> list[DocumentInfo]:
    """Every document of the tenant."""
    found: list[DocumentInfo] = []
    while True:
        page = await client.documents(offset=len(found), limit=1000)
        found += page.documents
        if not page.documents or len(found) >= page.total:
            return found


def stored_chunks(
    vectors: Path, tenant: str, document_ids: Iterable[str]
) -> tuple[dict[str, int], int]:
    """Points per document, and all of the tenant's, in the embedded store's folder (open it
    only once the service has stopped: the store belongs to one process)."""
    config = vectors / "edge_config.json"
    dim = DEFAULT_DIM
    if config.exists():
        dim = int(json.loads(config.read_text())["vectors"]["dense"]["size"])
    store = EdgeStore(vectors)
    store.ensure(dim)
    try:
        counts = {d: store.count(tenant, d) for d in document_ids}
        return counts, store.count(tenant)
    finally:
        store.close()


@dataclass
class Chunks:
    """The store against the registry: points beyond a ready document's chunk count, points of
    documents that are not ready or not listed, and chunks a ready document lacks."""

    duplicate_chunks: int
    orphan_points: int
    missing_chunks: int
    excess: dict[str, tuple[int, int]] = field(default_factory=dict)


def compare_chunks(docs: Iterable[DocumentInfo], stored: Mapping[str, int], total: int) -> Chunks:
    """Compare each document's chunk count (ready ones) with its points in the store."""
    excess: dict[str, tuple[int, int]] = {}
    duplicate = missing = listed = 0
    for doc in docs:
        points = stored.get(doc.document_id, 0)
        listed += points
        should = doc.chunks if doc.status.value == "ready" else 0
        if points > should:
            duplicate += points - should
            excess[doc.document_id] = (should, points)
        missing += max(0, should - points)
    orphans = max(0, total - listed)
    return Chunks(duplicate + orphans, orphans, missing, excess)


@dataclass
class Snapshot:
    """Redis's used memory, each supervised process group's RSS (MB) and the messages waiting
    in each queue at one moment (seconds into the phase)."""

    at_s: float
    redis_mb: float | None
    rss_mb: dict[str, float]
    waiting: dict[str, int] = field(default_factory=dict)


def snapshot(
    children: Mapping[str, subprocess.Popen[bytes]], redis_url: str, at_s: float
) -> Snapshot:
    """Measure now: Redis INFO used_memory, and RSS of each child with its descendants."""
    rss: dict[str, float] = {}
    for name, child in list(children.items()):
        total = 0
        try:
            main = psutil.Process(child.pid)
            for proc in [main, *main.children(recursive=True)]:
                total += proc.memory_info().rss
        except psutil.Error:
            continue
        rss[name] = round(total / 2**20, 1)
    used: float | None = None
    waiting: dict[str, int] = {}
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        used = round(int(client.info("memory")["used_memory"]) / 2**20, 2)
        waiting = {q: int(client.llen(q)) for q in QUEUES}  # type: ignore[arg-type]
    except redis.RedisError:
        pass
    finally:
        client.close()
    return Snapshot(round(at_s, 1), used, rss, waiting)


def in_flight(jobs: Iterable[Job], at: float) -> dict[str, int]:
    """Jobs of each kind sent but not final at epoch second `at` (from their final records)."""
    counts: dict[str, int] = {}
    for job in jobs:
        if job.sent > at:
            continue
        end = latency_s(job)
        if end is None or job.sent + end > at:
            counts[job.kind] = counts.get(job.kind, 0) + 1
    return counts


class Sampler:
    """A thread taking a `snapshot` every `every_s` seconds from `started` until stopped."""

    def __init__(
        self,
        children: Mapping[str, subprocess.Popen[bytes]],
        redis_url: str,
        every_s: float,
        started: float,
    ) -> None:
        self.children, self.redis_url, self.every_s = children, redis_url, every_s
        self.started = started
        self.samples: list[Snapshot] = []
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def join(self) -> None:
        """Stop sampling."""
        self.stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self.stop.wait(self.every_s):
            at = time.monotonic() - self.started
            self.samples.append(snapshot(self.children, self.redis_url, at))


def describe_job(job: Job) -> dict[str, Any]:
    """What a report says of a job that went wrong."""
    record = job.record
    return {
        "job_id": job.job_id,
        "kind": job.kind,
        "document_id": job.document_id,
        "sent": job.sent,
        "status": record.status.value if record else None,
        "error": record.error.code if record and record.error else None,
        "attempts": record.attempts if record else None,
        "worker": record.worker if record else None,
        "created_at": record.created_at if record else None,
        "started_at": record.started_at if record else None,
        "finished_at": record.finished_at if record else None,
    }
