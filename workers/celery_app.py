"""The Celery application: four queues, at-least-once delivery, tasks routed by name."""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from common.settings import Settings, get_settings

INGEST_QUEUE = "ingest"
QUERY_QUEUE = "query"
LLM_QUEUE = "llm"
WEBHOOKS_QUEUE = "webhooks"
QUEUES = (INGEST_QUEUE, QUERY_QUEUE, LLM_QUEUE, WEBHOOKS_QUEUE)

INGEST_TASK = "ragq.ingest"
DELETE_TASK = "ragq.delete_document"
RETRIEVE_TASK = "ragq.retrieve"
GENERATE_TASK = "ragq.generate"

ROUTES = {
    INGEST_TASK: INGEST_QUEUE,
    DELETE_TASK: INGEST_QUEUE,
    RETRIEVE_TASK: QUERY_QUEUE,
    GENERATE_TASK: LLM_QUEUE,
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
        result_expires=settings.job_ttl_s,
        task_track_started=True,
        task_send_sent_event=True,
        worker_send_task_events=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


app = create_app(get_settings())
app.conf.include = ["workers.ingest", "workers.query", "workers.llm", "workers.lifecycle"]
