"""The base class of job tasks: an unexpected error fails the job instead of leaving it running."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from common.telemetry import TASK_FAILURES
from workers import engines

log = logging.getLogger(__name__)


class JobTask(Task):  # type: ignore[misc]
    """A task whose first argument is a job id."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """Fail the job with `internal_error`; the traceback stays in the worker's log."""
        TASK_FAILURES.labels(self.name).inc()
        job_id = args[0] if args else kwargs.get("job_id")
        log.error("task %s failed for job %s: %r", self.name, job_id, exc)
        if job_id:
            engines.job_store().fail(job_id, "internal_error", f"{type(exc).__name__}: {exc}")
