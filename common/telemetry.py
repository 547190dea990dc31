"""Prometheus metrics of the API and the workers: one place that names them all.

A label name means the same thing on every metric that has it (LABELS).
"""

from __future__ import annotations

import time
from typing import Any

from celery import signals
from prometheus_client import Counter, Gauge, Histogram

from common.contract import GENERATE_TASK, INGEST_TASK, QUEUES

# A header every task message carries: when it was sent (epoch seconds), for the queue age.
SENT_AT_HEADER = "ragq_sent_at"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)

LABELS = {
    "route": "the route template of an HTTP request (`unmatched` when none matched)",
    "method": "the HTTP method",
    "status": "an HTTP status code (HTTP metrics) or a job's final status (jobs finished)",
    "kind": "a job's kind: ingest, answer, delete, reindex",
    "queue": f"a Celery queue: {', '.join(QUEUES)}",
    "task": f"a Celery task's name, e.g. {INGEST_TASK}, {GENERATE_TASK}",
    "action": "what the reconciler did with a job: requeued or failed",
    "outcome": "how a webhook attempt ended: delivered, retrying, failed, gone",
    "tenant": "a tenant (only with RAGQ_METRICS_BY_TENANT=true)",
    "type": "which tokens: prompt or completion",
}

# API.
HTTP_REQUESTS = Counter(
    "ragq_http_requests_total", "HTTP requests answered.", ["route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "ragq_http_request_duration_seconds",
    "HTTP request latency.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
JOBS_CREATED = Counter("ragq_jobs_created_total", "Jobs created.", ["kind"])
# With several API processes (api.serve), open streams add up over the live ones, and a queue's
# gauges are what the last scrape read, whichever process answered it.
SSE_CONNECTIONS = Gauge(
    "ragq_sse_connections", "Open SSE connections.", multiprocess_mode="livesum"
)
QUEUE_DEPTH = Gauge(
    "ragq_queue_depth", "Messages waiting in a queue.", ["queue"], multiprocess_mode="mostrecent"
)
QUEUE_OLDEST_AGE = Gauge(
    "ragq_queue_oldest_age_seconds",
    "Age of the oldest waiting message of a queue.",
    ["queue"],
    multiprocess_mode="mostrecent",
)

# Workers.
JOBS_FINISHED = Counter("ragq_jobs_finished_total", "Jobs finished.", ["kind", "status"])
JOB_QUEUE_WAIT = Histogram(
    "ragq_job_queue_wait_seconds",
    "Time from creation to the first worker picking the job up.",
    ["kind"],
    buckets=JOB_BUCKETS,
)
JOB_RUN_TIME = Histogram(
    "ragq_job_run_seconds", "Time from start to finish of a job.", ["kind"], buckets=JOB_BUCKETS
)
LLM_TOKENS = Counter("ragq_llm_tokens_total", "Completion tokens generated.")
LLM_TTFT = Histogram(
    "ragq_llm_ttft_seconds", "Time to first token in the engine.", buckets=LATENCY_BUCKETS
)
INGEST_CHUNKS = Counter("ragq_ingest_chunks_total", "Chunks embedded and stored.")
TASK_FAILURES = Counter("ragq_task_failures_total", "Job tasks that raised.", ["task"])
TASK_RETRIES = Counter(
    "ragq_task_retries_total",
    "Job deliveries after the first (lost or drained worker, reconciler resend).",
    ["kind"],
)
RECONCILED = Counter(
    "ragq_reconciled_jobs_total",
    "Jobs the reconciler re-enqueued or failed (lost worker or lost message).",
    ["kind", "action"],
)
WEBHOOK_ATTEMPTS = Counter(
    "ragq_webhook_attempts_total", "Webhook delivery attempts by outcome.", ["outcome"]
)
TENANT_JOBS = Counter(
    "ragq_tenant_jobs_total", "Jobs finished, by tenant (opt-in).", ["tenant", "kind", "status"]
)
TENANT_TOKENS = Counter(
    "ragq_tenant_tokens_total", "Tokens of finished generations, by tenant (opt-in).",
    ["tenant", "type"],
)  # fmt: skip
WEBHOOK_DURATION = Histogram(
    "ragq_webhook_attempt_seconds", "Duration of one webhook POST.", buckets=LATENCY_BUCKETS
)

METRIC_NAMES = frozenset(
    {
        "ragq_http_requests_total",
        "ragq_http_request_duration_seconds",
        "ragq_jobs_created_total",
        "ragq_sse_connections",
        "ragq_queue_depth",
        "ragq_queue_oldest_age_seconds",
        "ragq_jobs_finished_total",
        "ragq_job_queue_wait_seconds",
        "ragq_job_run_seconds",
        "ragq_llm_tokens_total",
        "ragq_llm_ttft_seconds",
        "ragq_ingest_chunks_total",
        "ragq_task_failures_total",
        "ragq_task_retries_total",
        "ragq_reconciled_jobs_total",
        "ragq_webhook_attempts_total",
        "ragq_webhook_attempt_seconds",
        "ragq_tenant_jobs_total",
        "ragq_tenant_tokens_total",
    }
)


@signals.before_task_publish.connect
def stamp_sent_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Stamp each task message with its send time, whatever its task id (see api.metrics)."""
    if headers is not None:
        headers.setdefault(SENT_AT_HEADER, time.time())
