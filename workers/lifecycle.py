"""Worker process hooks: load engines before consuming, and announce liveness in Redis."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import redis
from celery import signals
from prometheus_client import start_http_server

from common.contract import INGEST_QUEUE, LLM_QUEUE, QUERY_QUEUE
from common.keys import worker_key
from common.liveness import announce_step, clear_step, process_instance, worker_value
from common.settings import get_settings
from workers import engines, reconciler
from workers.base import jobs_in_hand, jobs_received
from workers.standby import STANDING_BY, wait_for_takeover

log = logging.getLogger(__name__)

_stop = threading.Event()
_retired = threading.Lock()
_heartbeats: list[threading.Thread] = []


def consumed_queues(worker: Any) -> list[str]:
    """Names of the queues a Celery worker consumes."""
    return sorted(worker.app.amqp.queues.consume_from or worker.app.amqp.queues)


@signals.worker_init.connect
def load_engines(sender: Any, **_: Any) -> None:
    """Re-enqueue the jobs this worker's previous process held, then load the models its queues
    need before it takes its first task, telling `ragq up` (through Redis) which step it is on.

    A standby (RAGQ_STANDBY) loads first, then waits for the place of a worker that died and
    takes back that worker's jobs instead (workers.standby)."""
    queues = set(consumed_queues(sender))
    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url)

    def step(text: str) -> None:
        if settings.standby:
            return  # the worker it stands by for is the one `ragq up` shows
        try:
            announce_step(client, sender.hostname, queues, text)
        except redis.RedisError as exc:
            log.warning("could not record the start-up step: %s", exc)

    if not settings.standby:
        _release(sender.app, sender.hostname)
    if queues & {INGEST_QUEUE, QUERY_QUEUE}:
        step("loading the embedding model")
        engines.embedder()
        step("opening the vector store")
        engines.vector_store()
    if LLM_QUEUE in queues:
        step("starting vLLM")
        from workers.llm_engine import enforce_eager

        if not enforce_eager(settings):
            step("starting vLLM, compiling its graph (minutes the first time)")
        engines.llm()
    port = settings.metrics_port
    if settings.standby:
        # Printed: Celery's logging is not set up before the worker starts.
        print(f"{STANDING_BY} (engines loaded)", file=sys.stderr, flush=True)
        takeover = wait_for_takeover(sys.stdin)
        print(f"taking the place of {takeover.predecessor}", file=sys.stderr, flush=True)
        _release(sender.app, takeover.predecessor)
        port = takeover.metrics_port
    step("starting the task consumer")
    client.close()
    log.info("engines ready for queues %s", sorted(queues))
    if port:
        start_http_server(port)
        log.info("metrics on :%d/metrics", port)


def _release(app: Any, hostname: str) -> None:
    """Re-enqueue at once the jobs a dead process held under `hostname`."""
    try:
        handover = reconciler.Reconciler(engines.job_store(), app, get_settings())
        outcome = handover.release_predecessor(hostname)
        if outcome.requeued or outcome.failed:
            log.info("jobs of %s's previous process: %s", hostname, outcome)
    except redis.RedisError as exc:
        log.warning("could not hand over the previous process's jobs: %s", exc)


def _heartbeat(client: redis.Redis, key: str, value: Callable[[], str], every: float) -> None:
    while not _stop.is_set():
        try:
            client.set(key, value(), ex=max(int(every * 3), 2))
        except redis.RedisError as exc:
            log.warning("heartbeat failed: %s", exc)
        _stop.wait(every)
    client.delete(key)


@signals.worker_ready.connect
def announce(sender: Any, **_: Any) -> None:
    """Start this worker's heartbeat (its queues, pid, instance, the jobs it runs and those
    whose messages it holds) and its reconciler loop."""
    settings = get_settings()
    hostname = sender.hostname
    queues = consumed_queues(sender.controller)

    def value() -> str:
        return worker_value(
            queues, os.getpid(), process_instance(), jobs_in_hand(), jobs_received()
        )

    client = redis.Redis.from_url(settings.redis_url)
    heartbeat = threading.Thread(
        target=_heartbeat,
        args=(client, worker_key(hostname), value, settings.worker_heartbeat_s),
        name="ragq-heartbeat",
        daemon=True,
    )
    heartbeat.start()
    _heartbeats.append(heartbeat)
    try:
        clear_step(client, hostname)
    except redis.RedisError as exc:
        log.warning("could not clear the start-up step: %s", exc)
    reconciler.start_thread(engines.job_store(), sender.app, settings, _stop)


@signals.worker_shutdown.connect
def retire(**_: Any) -> None:
    """Once, after the worker stopped: withdraw the heartbeat, then close the engines (vLLM's
    engine process must not outlive us) and the store."""
    if not _retired.acquire(blocking=False):
        return
    log.info("worker stopped: closing the engines")
    _stop.set()
    for heartbeat in _heartbeats:
        heartbeat.join(timeout=2)  # it deletes the liveness key, so /readyz sees us gone now
    engines.close_all()
    log.info("engines closed")
