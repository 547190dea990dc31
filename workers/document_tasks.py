"""The opening and closing steps that every task changing one document shares.

Opening: read the job, take the document's lock, check that the task is still wanted (by
default: its request is still the document's latest; a task no longer wanted ends as
`cancelled`, `superseded`), then claim the job. Closing, still under the lock and however the
work ended: the task's own step that leaves the document consistent with how the job ended. An
unexpected error fails the job before that step; a drain (Reject) leaves it running for the
next delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from celery.exceptions import Reject

from common.documents import SUPERSEDED
from common.jobs import JobStore
from common.keys import doc_key, document_lock_key
from common.locks import worker_lock
from common.schemas import JobStatus
from common.settings import get_settings
from workers import engines
from workers.base import JobTask


@contextmanager
def document_lock(store: JobStore, tenant: str, document_id: str, worker: str) -> Iterator[None]:
    """Serialise the tasks that change one document (a dead worker's lock is broken)."""
    timeout = get_settings().visibility_timeout_s
    with worker_lock(store.redis, document_lock_key(tenant, document_id), worker, timeout, timeout):
        yield


@dataclass(frozen=True)
class DocumentJob:
    """A job that changes one document, as its task sees it."""

    store: JobStore
    job_id: str
    raw: dict[str, str]
    worker: str

    @property
    def tenant(self) -> str:
        """The job's tenant."""
        return self.raw["tenant"]

    @property
    def document_id(self) -> str:
        """The document the job changes."""
        return self.raw["document_id"]

    def doc_field(self, name: str) -> str | None:
        """One field of the document's registry entry."""
        key = doc_key(self.tenant, self.document_id)
        return self.store.redis.hget(key, name)  # type: ignore[return-value]


def is_latest(job: DocumentJob) -> bool:
    """Whether the job is still the request the document's registry entry points to."""
    return job.doc_field("job_id") == job.job_id


def run_document_task(
    task: JobTask,
    job_id: str,
    work: Callable[[DocumentJob], None],
    *,
    wanted: Callable[[DocumentJob], bool] = is_latest,
    close: Callable[[DocumentJob], None] | None = None,
) -> None:
    """Open the job (lock, check, claim), do `work` if it was claimed, then `close`."""
    store = engines.job_store()
    raw = store.raw(job_id)
    if not raw:
        return
    job = DocumentJob(store, job_id, raw, task.request.hostname or "?")
    with document_lock(store, job.tenant, job.document_id, job.worker):
        try:
            if not wanted(job):
                store.finish(job_id, JobStatus.CANCELLED, error=SUPERSEDED)
            elif store.start(job_id, worker=job.worker):
                work(job)
        except Reject:
            raise
        except Exception as exc:
            store.fail(job_id, "internal_error", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if close is not None:
                close(job)
