"""bench/load.py's parts: the arrival schedule, the webhook sink, the chunk count, the chaos."""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
from standardwebhooks import Webhook

from cli.commands import redis_command
from cli.supervisor import free_port, redis_answers
from common.vectorstore import ChunkPoint, EdgeStore
from common.vectorstore.port import DOCUMENT_ID, TENANT, VERSION
from ragq_client import DocumentInfo, JobRecord
from ragq_client.errors import ApiError

# The scripts import each other as sibling modules (`python bench/load.py` puts bench/ first).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import chaos
import hooksink
import loadcheck
import loadmix

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_arrivals_are_seeded_poisson_at_the_rate() -> None:
    times = loadmix.arrivals(2.0, 1000.0, random.Random("7-answer"))
    assert times == loadmix.arrivals(2.0, 1000.0, random.Random("7-answer"))
    assert 1900 <= len(times) <= 2100
    assert times == sorted(times) and times[0] > 0 and times[-1] < 1000
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Exponential gaps at rate 2: their median is ln 2 / 2.
    median = sorted(gaps)[len(gaps) // 2]
    assert 0.3 < median < 0.4  # ln 2 / 2 = 0.347
    assert loadmix.arrivals(0.0, 1000.0, random.Random(1)) == []


def test_quantile_is_the_nearest_rank() -> None:
    values = [float(n) for n in range(100, 0, -1)]
    assert loadmix.quantile(values, 0.5) == 50.0
    assert loadmix.quantile(values, 0.99) == 99.0
    assert loadmix.quantile(values, 1.0) == 100.0
    assert loadmix.quantile([3.0], 0.99) == 3.0
    assert loadmix.quantile([], 0.5) is None


def test_counting_retry_counts_retried_refusals_and_decides_as_the_client() -> None:
    policy = loadmix.CountingRetry(attempts=3)
    full = ApiError(429, "queue_full", "full", {"retry-after": "5"})
    assert policy.after_status(full, 1) == 5.0
    assert policy.after_status(ApiError(404, "job_not_found", "no"), 1) is None
    assert policy.after_status(full, 3) is None
    assert policy.refusals == Counter({"429 queue_full": 2})  # a 404 is no refusal


def _signed(msg_id: str, record: dict[str, object], secret: str = SECRET) -> tuple[bytes, dict]:
    body = JobRecord.model_validate(record).model_dump_json()
    now = datetime.now(UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
        "content-type": "application/json",
    }
    return body.encode(), headers


def _record(job_id: str, status: str) -> dict[str, object]:
    return {
        "job_id": job_id,
        "kind": "answer",
        "status": status,
        "created_at": "2026-12-04T00:00:00+00:00",
        "finished_at": "2026-12-04T00:00:01+00:00",
    }


def test_sink_keeps_one_delivery_per_webhook_id_and_refuses_bad_signatures() -> None:
    with hooksink.receiving() as sink:
        sink.secret = SECRET
        body, headers = _signed("msg_a", _record("a", "succeeded"))
        for _ in range(3):
            assert httpx.post(sink.url, content=body, headers=headers).status_code == 200
        forged, forged_headers = _signed("msg_b", _record("b", "failed"), "whsec_" + "A" * 32)
        httpx.post(sink.url, content=forged, headers=forged_headers)
        assert sink.delivered("a") is not None and sink.delivered("a").status == "succeeded"
        assert sink.repeats == Counter({"msg_a": 2})
        assert sink.delivered("b") is None
        assert len(sink.invalid) == 1 and sink.invalid[0].startswith("msg_b")


def test_check_webhooks_finds_missing_and_wrong_deliveries() -> None:
    sink = hooksink.Sink(hooksink.HOST, secret=SECRET)
    for job_id, status in (("ok", "succeeded"), ("late", "running")):
        sink.receive(*_signed(f"msg_{job_id}", _record(job_id, status)))

    def job(job_id: str, webhook: bool = True) -> loadmix.Job:
        record = JobRecord.model_validate(_record(job_id, "succeeded"))
        return loadmix.Job(job_id, "answer", 0.0, webhook, record=record)

    found = loadcheck.check_webhooks([job("ok"), job("late"), job("none"), job("x", False)], sink)
    assert (found.asked, found.delivered) == (3, 2)
    assert found.missing == ["none"]
    assert len(found.wrong) == 1 and found.wrong[0].startswith("late")


def _doc(document_id: str, status: str, chunks: int) -> DocumentInfo:
    return DocumentInfo(
        document_id=document_id,
        title="t",
        filename=None,
        status=status,
        chunks=chunks,
        content_sha256="0",
        job_id="j",
        created_at="2026-12-04T00:00:00+00:00",
        updated_at="2026-12-04T00:00:00+00:00",
    )


def test_compare_chunks_counts_points_beyond_the_documents() -> None:
    docs = [_doc("exact", "ready", 3), _doc("extra", "ready", 2), _doc("failed", "failed", 0)]
    docs.append(_doc("short", "ready", 4))
    stored = {"exact": 3, "extra": 5, "failed": 2, "short": 1}
    # 3 + 5 + 2 + 1 listed, and 4 points of a document the registry does not list.
    found = loadcheck.compare_chunks(docs, stored, total=15)
    assert found.excess == {"extra": (2, 5), "failed": (0, 2)}
    assert (found.orphan_points, found.missing_chunks) == (4, 3)
    assert found.duplicate_chunks == 3 + 2 + 4
    assert loadcheck.compare_chunks(docs[:1], {"exact": 3}, 3).duplicate_chunks == 0


def test_stored_chunks_counts_points_per_document_in_a_closed_store(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "vectors")
    store.ensure(8)
    points = [
        ChunkPoint(
            str(uuid.uuid4()),
            [1.0] + [0.0] * 7,
            {TENANT: tenant, DOCUMENT_ID: doc, VERSION: "v1"},
        )
        for tenant, doc, n in (("default", "a", 2), ("default", "b", 3), ("other", "a", 4))
        for _ in range(n)
    ]
    store.upsert(points)
    store.close()
    counts, total = loadcheck.stored_chunks(tmp_path / "vectors", "default", ["a", "b", "c"])
    assert counts == {"a": 2, "b": 3, "c": 0}
    assert total == 5


def _sleeper_with_child() -> subprocess.Popen[bytes]:
    code = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 10
    while not psutil.Process(proc.pid).children():
        assert time.monotonic() < deadline, "the child did not start"
        time.sleep(0.05)
    return proc


def _dead(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_chaos_kills_a_worker_or_one_of_its_children() -> None:
    worker = _sleeper_with_child()
    try:
        children = {"llm-worker": worker, "api": worker}
        found = chaos.targets(children)
        assert [name for name, _ in found] == ["llm-worker", "llm-worker child"]
        fault = chaos.kill_one(children, random.Random(7), 1.0)
        assert fault is not None and fault.target in ("llm-worker", "llm-worker child")
        time.sleep(0.2)
        gone = [p.pid for _, p in found if _dead(p)]
        assert gone == [fault.pid]
    finally:
        for _, process in chaos.targets({"llm-worker": worker}):
            process.kill()
        worker.wait(10)


def test_chaos_kills_redis_and_times_its_return(tmp_path: Path) -> None:
    port = free_port()
    command = redis_command(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    restarted: list[subprocess.Popen[bytes]] = []
    try:
        while not redis_answers(url):
            time.sleep(0.05)

        def restart() -> None:  # what the supervisor does, a second later
            server.wait()
            time.sleep(1)
            restarted.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))

        thread = threading.Thread(target=restart)
        thread.start()
        fault = chaos.kill_redis(server, url, 30.0)
        thread.join()
        assert fault.target == "redis" and fault.pid == server.pid
        assert fault.down_s is not None and 1.0 <= fault.down_s < 30
        snap = loadcheck.snapshot({"redis": restarted[0]}, url, 5.0)
        assert snap.redis_mb is not None and snap.redis_mb > 0
        assert snap.rss_mb["redis"] > 0
    finally:
        for proc in [server, *restarted]:
            proc.kill()
            proc.wait(10)


def test_in_flight_counts_jobs_sent_and_not_yet_final_at_a_moment() -> None:
    def job(kind: str, sent: float, finished: str | None) -> loadmix.Job:
        record = _record("j", "succeeded" if finished else "running")
        record["finished_at"] = finished
        return loadmix.Job("j", kind, sent, False, record=JobRecord.model_validate(record))

    at = datetime(2026, 12, 4, 0, 0, 10, tzinfo=UTC).timestamp()
    jobs = [
        job("answer", at - 5, "2026-12-04T00:00:20+00:00"),  # running at `at`
        job("answer", at - 5, "2026-12-04T00:00:09+00:00"),  # done before
        job("answer", at + 1, None),  # not sent yet
        job("document", at - 1, None),  # never finished
    ]
    assert loadcheck.in_flight(jobs, at) == {"answer": 1, "document": 1}
