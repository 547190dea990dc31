"""Prometheus metrics from the API and the workers reflect a job that just ran."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import ingest_text


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(all_samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    """Sum of the samples of a metric whose labels include the given ones."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in all_samples.items() if n == name and wanted <= ls)


def test_api_and_worker_metrics_move_with_a_job(service, http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    cpu_url = f"http://127.0.0.1:{service.metrics_ports['cpu-worker']}/metrics"
    api_before = samples(http.get("/metrics").text)
    cpu_before = samples(httpx.get(cpu_url).text)

    ingest_text(http, "Metrics should count this document about puffins. " * 30, "Puffins")

    api_after = samples(http.get("/metrics").text)
    cpu_after = samples(httpx.get(cpu_url).text)
    created = "ragq_jobs_created_total"
    assert value(api_after, created, kind="ingest") == value(api_before, created, kind="ingest") + 1
    route = {"route": "/v1/documents", "method": "POST", "status": "202"}
    assert value(api_after, "ragq_http_requests_total", **route) > value(
        api_before, "ragq_http_requests_total", **route
    )
    assert value(api_after, "ragq_queue_depth", queue="ingest") >= 0
    finished = "ragq_jobs_finished_total"
    ok = {"kind": "ingest", "status": "succeeded"}
    assert value(cpu_after, finished, **ok) == value(cpu_before, finished, **ok) + 1
    assert value(cpu_after, "ragq_ingest_chunks_total") > value(
        cpu_before, "ragq_ingest_chunks_total"
    )
    runs = "ragq_job_run_seconds_count"
    assert value(cpu_after, runs, kind="ingest") == value(cpu_before, runs, kind="ingest") + 1


def test_llm_worker_counts_tokens(service, http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers import wait_job

    llm_url = f"http://127.0.0.1:{service.metrics_ports['llm-worker']}/metrics"
    before = samples(httpx.get(llm_url).text)
    job = http.post("/v1/answers", json={"question": "What do puffins eat?"}).json()
    record = wait_job(http, job["job_id"])
    after = samples(httpx.get(llm_url).text)
    tokens = record["result"]["usage"]["completion_tokens"]
    assert value(after, "ragq_llm_tokens_total") == value(before, "ragq_llm_tokens_total") + tokens
    assert (
        value(after, "ragq_llm_ttft_seconds_count")
        == value(before, "ragq_llm_ttft_seconds_count") + 1
    )
