"""A bounded drain when a worker stops: running tasks hand their jobs back after the grace period.

Celery's soft shutdown (SIGQUIT, or SIGTERM with REMAP_SIGTERM=SIGQUIT) lets running tasks finish
for `worker_soft_shutdown_timeout`; then its cold shutdown cancels the ones still running through
the pool's `terminate_job`. Threads cannot be killed, and Celery's thread pool raises instead, so
the worker would wait for every task however long it takes. This pool asks them to stop instead:
long tasks call `check()` between steps, which rejects their message back onto its queue, and the
job is taken over, as a new attempt, by the next worker that receives it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.concurrency.thread import TaskPool
from celery.exceptions import Reject

log = logging.getLogger(__name__)

_abandon = threading.Event()


def check() -> None:
    """Hand the running task's message back to its queue if the worker has stopped waiting."""
    if _abandon.is_set():
        raise Reject("the worker is stopping", requeue=True)


def stopping() -> bool:
    """Whether the worker has stopped waiting for its running tasks."""
    return _abandon.is_set()


class DrainingThreadPool(TaskPool):
    """Celery's thread pool, whose running tasks stop at their next `check()` when cancelled."""

    def terminate_job(self, pid: Any, signal: Any = None) -> None:
        """Ask every running task to hand its job back (threads cannot be killed one by one)."""
        if not _abandon.is_set():
            log.warning("grace period over: running tasks hand their jobs back")
        _abandon.set()

    def on_stop(self) -> None:
        """Wait for the threads, then release the process's engines: a cold shutdown never
        sends `worker_shutdown`, and vLLM's engine process would keep the exit waiting."""
        super().on_stop()
        from workers import lifecycle

        lifecycle.retire()
