"""Change a document's access groups in the vector store: a payload field, no re-embedding.

The API writes the new groups to the registry and queues this task; under the document's lock
(so it never interleaves with an ingest, re-index or delete of the document) the task gives
every chunk of the document, staged ones included, the groups the registry holds now. Until it
has, the document is pending: searches of keys the registry's groups no longer admit leave it out
(`workers/query.py`), so narrowing a document's groups hides it at once. An ingest
gives its version the registry's groups again when it commits, under the same lock, so a change
made while it ran reaches the new version too.
"""

from __future__ import annotations

from common.access import ACCESS_GROUPS, loads_groups
from common.contract import GROUPS_TASK
from common.keys import doc_key, groups_pending_key
from common.schemas import JobStatus
from workers import engines
from workers.base import JobTask
from workers.celery_app import app
from workers.document_tasks import DocumentJob, run_document_task


def _registered(job: DocumentJob) -> bool:
    """Whether the document is still registered (one deleted meanwhile has no chunks left)."""
    return job.doc_field("document_id") is not None


# KEYS: the document's registry hash, the tenant's pending set. ARGV: the groups applied (as
# stored), the document id. The document stops being pending only if no newer change came.
SETTLED_SCRIPT = """
if redis.call('HGET', KEYS[1], 'access_groups') == ARGV[1] then
  redis.call('SREM', KEYS[2], ARGV[2])
end
"""


def _set_groups(job: DocumentJob) -> None:
    """Give the document's chunks the groups the registry holds; the job succeeds."""
    stored = job.doc_field(ACCESS_GROUPS)
    groups = loads_groups(stored)
    engines.vector_store().set_groups(job.tenant, job.document_id, groups)
    keys = [doc_key(job.tenant, job.document_id), groups_pending_key(job.tenant)]
    job.store.redis.eval(SETTLED_SCRIPT, 2, *keys, stored or "", job.document_id)
    result = {"document_id": job.document_id, ACCESS_GROUPS: groups}
    job.store.finish(job.job_id, JobStatus.SUCCEEDED, result=result)


@app.task(name=GROUPS_TASK, bind=True, base=JobTask)
def set_access_groups(self: JobTask, job_id: str) -> None:
    """Apply a document's access groups to its chunks in the vector store."""
    run_document_task(self, job_id, _set_groups, wanted=_registered)
