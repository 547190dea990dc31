"""What the API and the workers agree on: queue names, task names, routing, the Celery app.

Importing this module reads no settings and imports nothing from `workers/`, so the API (and
the CLI) can name queues and send tasks without building the worker's app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery import Celery
from kombu import Exchange, Queue

from common.schemas import JobKind

if TYPE_CHECKING:
    from common.settings import Settings

INGEST_QUEUE = "ingest"
QUERY_QUEUE = "query"
LLM_QUEUE = "llm"
WEBHOOKS_QUEUE = "webhooks"
QUEUES = (INGEST_QUEUE, QUERY_QUEUE, LLM_QUEUE, WEBHOOKS_QUEUE)
# The queues that carry job tasks: each needs a live worker (/readyz), and the reconciler looks
# in them for a job's waiting message.
JOB_QUEUES = (INGEST_QUEUE, QUERY_QUEUE, LLM_QUEUE)
# What a cpu worker consumes where one process holds the embedded store (`ragq up`).
CPU_WORKER_QUEUES = (INGEST_QUEUE, QUERY_QUEUE, WEBHOOKS_QUEUE)

INGEST_TASK = "ragq.ingest"
DELETE_TASK = "ragq.delete_document"
REINDEX_TASK = "ragq.reindex_document"
GROUPS_TASK = "ragq.set_access_groups"
RETRIEVE_TASK = "ragq.retrieve"
GENERATE_TASK = "ragq.generate"
SEARCH_TASK = "ragq.search"
EMBED_TASK = "ragq.embed"
DELIVER_WEBHOOK_TASK = "ragq.deliver_webhook"

# The answer job's record fields that a generation starts from, carried in its message, so that
# the llm worker starts the engine on the prompt while it claims the job (all set when the job is
# submitted and never changed).
GENERATION_FIELDS = ("created_at", "deadline_s", "sampling", "quote", "question")

ROUTES = {
    INGEST_TASK: INGEST_QUEUE,
    DELETE_TASK: INGEST_QUEUE,
    REINDEX_TASK: INGEST_QUEUE,
    GROUPS_TASK: INGEST_QUEUE,
    RETRIEVE_TASK: QUERY_QUEUE,
    SEARCH_TASK: QUERY_QUEUE,
    EMBED_TASK: QUERY_QUEUE,
    GENERATE_TASK: LLM_QUEUE,
    DELIVER_WEBHOOK_TASK: WEBHOOKS_QUEUE,
}
# The task that starts (or, for the reconciler, restarts) a job of each kind.
FIRST_TASK = {
    JobKind.INGEST: INGEST_TASK,
    JobKind.DELETE: DELETE_TASK,
    JobKind.ANSWER: RETRIEVE_TASK,
    JobKind.REINDEX: REINDEX_TASK,
    JobKind.ACCESS: GROUPS_TASK,
}


def create_app(settings: Settings) -> Celery:
    """A Celery app configured from the settings (the API uses it only to send tasks)."""
    app = Celery("ragq", broker=settings.redis_url, backend=settings.redis_url)
    app.conf.update(
        task_queues=[Queue(name, Exchange(name), routing_key=name) for name in QUEUES],
        task_default_queue=QUERY_QUEUE,
        task_routes={
            name: {"queue": queue, "exchange": queue, "routing_key": queue}
            for name, queue in ROUTES.items()
        },
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        # Stopping (SIGQUIT, or SIGTERM with REMAP_SIGTERM=SIGQUIT as our deployments set) first
        # lets running tasks finish for the grace period, then puts the unfinished ones back on
        # their queues instead of leaving them to the visibility timeout.
        worker_soft_shutdown_timeout=settings.shutdown_grace_s,
        # Threads, since vLLM cannot start its engine under prefork children; this pool makes the
        # drain above bounded (see workers.draining).
        worker_pool="workers.draining:DrainingThreadPool",
        result_expires=settings.job_ttl_s,
        # A job's record says it started; Celery's own STARTED result (a write and a publish
        # before every task, 0.6 ms on a job's path to its first token) would repeat it.
        task_track_started=False,
        task_send_sent_event=True,
        worker_send_task_events=True,
        broker_connection_retry_on_startup=True,
        # A lost broker connection (Redis restarting) does not cancel running tasks: they go
        # on writing their jobs through their own Redis clients, and the consumer reconnects
        # (workers.consumer makes that survive a task in flight).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_consumer="workers.consumer:Consumer",
        worker_hijack_root_logger=False,
    )
    return app
