"""The base class of job tasks: an unexpected error fails the job instead of leaving it running."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Task
from celery.worker import state

from common.telemetry import TASK_FAILURES
from workers import engines

log = logging.getLogger(__name__)

_in_hand: set[str] = set()
_in_hand_lock = threading.Lock()


def jobs_in_hand() -> list[str]:
    """Ids of the jobs whose task runs in this process now (the heartbeat announces them)."""
    with _in_hand_lock:
        return sorted(_in_hand)


def jobs_received() -> list[str]:
    """Ids of the jobs whose messages this worker process has taken and not finished: waiting
    for a pool slot or an ETA, or running (what Celery's worker state holds, by first argument;
    a message popped from its queue is in no list but this one)."""
    found = set()
    for request in list(state.requests.values()):
        args = request.args
        if args and isinstance(args[0], str):
            found.add(args[0])
    return sorted(found)


class JobTask(Task):  # type: ignore[misc]
    """A task whose first argument is a job id."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task, with its job listed as in hand while it runs."""
        job_id = str(args[0] if args else kwargs.get("job_id"))
        with _in_hand_lock:
            _in_hand.add(job_id)
        try:
            return super().__call__(*args, **kwargs)
        finally:
            with _in_hand_lock:
                _in_hand.discard(job_id)

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """Fail the job with `internal_error`; the traceback stays in the worker's log."""
        TASK_FAILURES.labels(self.name).inc()
        job_id = args[0] if args else kwargs.get("job_id")
        log.error("task %s failed for job %s: %r", self.name, job_id, exc)
        if job_id:
            engines.job_store().fail(job_id, "internal_error", f"{type(exc).__name__}: {exc}")
