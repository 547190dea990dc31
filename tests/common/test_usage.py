"""Usage counters on a real Redis: counted once, with a job's final transition; the UTC day
computed inside the job update script."""

from __future__ import annotations

import datetime as dt
import uuid

import redis

from common.jobs import JobStore
from common.keys import job_key, usage_key, usage_keys_key
from common.schemas import ErrorInfo, JobKind, JobStatus
from common.usage import COUNT_FUNCTION, counters, today
from tests.common.test_jobs import create


def test_the_scripts_utc_day_is_the_calendars(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    script = client.register_script(COUNT_FUNCTION + "return utc_day(tonumber(ARGV[1]))")
    moments = [0, 86399, 86400, 951782400, 951868800, 4107456000, 1_788_000_000]
    moments += [int(dt.datetime(y, m, d, 12).timestamp()) for y in (2024, 2026, 2100)
                for m in (1, 2, 3, 12) for d in (1, 28)]  # fmt: skip
    for seconds in moments:
        expected = dt.datetime.fromtimestamp(seconds, dt.UTC).date().isoformat()
        assert script(args=[seconds]) == expected, seconds


def usage_of(store: JobStore, tenant: str, key_id: str = "") -> dict[str, int]:
    return counters(store.redis.hgetall(usage_key(tenant, today(), key_id)))  # type: ignore[arg-type]


def test_an_answer_is_counted_once_with_its_end(redis_url: str) -> None:
    store = JobStore(redis_url, ttl_s=600)
    tenant = f"u-{uuid.uuid4().hex[:8]}"
    job_id = create(redis_url, JobKind.ANSWER, tenant)
    store.redis.hset(job_key(job_id), "key_id", "key_abc")
    assert store.start(job_id, "llm@test")
    usage = {"prompt_tokens": 120, "completion_tokens": 30, "ttft_s": 0.25, "total_s": 1.5}
    result = {"answer": "x", "citations": [], "usage": usage}
    assert store.finish(job_id, JobStatus.SUCCEEDED, result=result)
    # A late or redelivered task finishing it again changes nothing, and counts nothing.
    assert not store.finish(job_id, JobStatus.SUCCEEDED, result=result)
    assert not store.fail(job_id, "late", "a duplicate")
    expected = {"answers": 1, "prompt_tokens": 120, "completion_tokens": 30, "engine_ms": 1500,
                "ttft_ms": 250, "ttft_count": 1}  # fmt: skip
    counts = usage_of(store, tenant)
    assert {k: v for k, v in counts.items() if v} == expected
    assert usage_of(store, tenant, "key_abc") == counts
    assert store.redis.smembers(usage_keys_key(tenant, today())) == {"key_abc"}


def test_ingests_count_documents_chunks_and_bytes_and_failures_count_nothing(
    redis_url: str,
) -> None:
    store = JobStore(redis_url, ttl_s=600)
    tenant = f"u-{uuid.uuid4().hex[:8]}"
    done = create(redis_url, JobKind.INGEST, tenant)
    store.redis.hset(job_key(done), "size_bytes", "5000")
    assert store.start(done, "cpu@test")
    assert store.finish(done, JobStatus.SUCCEEDED, result={"document_id": "d", "chunks": 7})
    failed = create(redis_url, JobKind.INGEST, tenant)
    store.redis.hset(job_key(failed), "size_bytes", "900")
    assert store.start(failed, "cpu@test")
    assert store.finish(failed, JobStatus.FAILED, error=ErrorInfo(code="bad", message="bad"))
    cancelled = create(redis_url, JobKind.ANSWER, tenant)  # cancelled while queued: no usage
    assert store.finish(cancelled, JobStatus.CANCELLED)
    counts = usage_of(store, tenant)
    assert {k: v for k, v in counts.items() if v} == {
        "documents": 1, "chunks_embedded": 7, "bytes_ingested": 5000
    }  # fmt: skip
    assert usage_of(store, tenant, "any") == counters({})  # no key id in these records


def test_tenant_metrics_only_where_the_operator_asks(redis_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from prometheus_client import REGISTRY

    from common.settings import get_settings

    store = JobStore(redis_url, ttl_s=600)
    result = {"answer": "x", "citations": [], "usage": {"prompt_tokens": 9,
              "completion_tokens": 4, "ttft_s": 0.1, "total_s": 0.2}}  # fmt: skip

    def answered(tenant: str) -> None:
        job_id = create(redis_url, JobKind.ANSWER, tenant)
        assert store.start(job_id, "llm@test")
        assert store.finish(job_id, JobStatus.SUCCEEDED, result=result)

    def tokens(tenant: str) -> float | None:
        labels = {"tenant": tenant, "type": "completion"}
        return REGISTRY.get_sample_value("ragq_tenant_tokens_total", labels)

    quiet, counted = f"q-{uuid.uuid4().hex[:8]}", f"c-{uuid.uuid4().hex[:8]}"
    answered(quiet)
    assert tokens(quiet) is None
    monkeypatch.setenv("RAGQ_METRICS_BY_TENANT", "true")
    get_settings.cache_clear()
    try:
        answered(counted)
        assert tokens(counted) == 4
    finally:
        monkeypatch.delenv("RAGQ_METRICS_BY_TENANT")
        get_settings.cache_clear()
