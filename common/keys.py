"""Every Redis key ragq writes, in one place: the prefixes and the functions that build keys.

Celery's own keys (the queue lists, results) are named by Celery and the queue names of
`common.contract`.
"""

from __future__ import annotations

PREFIX = "ragq"

# Jobs not yet finished. A job no worker holds (queued, or released to its next stage) is
# scored by when its message was sent (epoch seconds), or by when the reconciler last checked it;
# a held one by +inf: the reconciler looks for lost messages among the lowest scores only.
ACTIVE_JOBS_KEY = f"{PREFIX}:jobs:active"
# Jobs a worker process holds (running), scored by when it claimed them: the reconciler checks
# their holders' heartbeats.
HELD_JOBS_KEY = f"{PREFIX}:jobs:held"
# Webhook outbox: job ids whose completion webhook is due, scored by when (epoch seconds).
WEBHOOKS_DUE_KEY = f"{PREFIX}:webhooks:due"
# Held by the worker whose reconciler runs this interval's pass.
RECONCILER_LEASE_KEY = f"{PREFIX}:reconciler:lease"
# How far the reconciler has indexed the held jobs an older version left in ACTIVE_JOBS_KEY only
# (a ZSCAN cursor; "done" once it went through them all).
RECONCILER_BACKFILL_KEY = f"{PREFIX}:reconciler:backfill"
# The embedded vector store (its folder) whose documents this Redis lists.
VECTOR_STORE_KEY = f"{PREFIX}:vector-store"
# Every stored API key hash (for listing, counting and revoking by id).
APIKEY_INDEX_KEY = f"{PREFIX}:apikeys"
APIKEY_PREFIX = f"{PREFIX}:apikey:"
WORKER_KEY_PREFIX = f"{PREFIX}:worker:"
# What a starting worker is doing (loading a model, starting vLLM), until it announces itself.
BOOT_KEY_PREFIX = f"{PREFIX}:boot:"
BATCH_PREFIX = f"{PREFIX}:batch:"
REPLY_PREFIX = f"{PREFIX}:reply:"
RATE_PREFIX = f"{PREFIX}:rate:"
IDEMPOTENCY_PREFIX = f"{PREFIX}:idem:"
# Usage counters: a hash per tenant and UTC day, one per API key and day, and the set of the
# day's keys (common/usage.py). The job update script builds these names itself.
USAGE_PREFIX = f"{PREFIX}:usage:"
# A tenant's quotas (common/quotas.py), set by an operator.
QUOTA_PREFIX = f"{PREFIX}:quota:"


def job_key(job_id: str) -> str:
    """Redis key of a job's record."""
    return f"{PREFIX}:job:{job_id}"


def events_key(job_id: str) -> str:
    """Redis key of a job's event stream."""
    return f"{PREFIX}:job:{job_id}:events"


def blob_key(job_id: str) -> str:
    """Redis key of the uploaded bytes an ingest job reads."""
    return f"{PREFIX}:job:{job_id}:blob"


def job_update_keys(job_id: str) -> list[str]:
    """The KEYS of `common.jobs.UPDATE_SCRIPT`: the job's record, its events, the outbox and
    the two indexes of unfinished jobs."""
    return [job_key(job_id), events_key(job_id), WEBHOOKS_DUE_KEY, ACTIVE_JOBS_KEY, HELD_JOBS_KEY]


def doc_key(tenant: str, document_id: str) -> str:
    """Redis key of a document's hash."""
    return f"{PREFIX}:doc:{tenant}:{document_id}"


def listing_key(tenant: str) -> str:
    """Redis key of the tenant's documents, a sorted set scored by creation time."""
    return f"{PREFIX}:docs:{tenant}"


def content_key(tenant: str) -> str:
    """Redis key of the tenant's content index: SHA-256 → document id."""
    return f"{PREFIX}:docsha:{tenant}"


def document_lock_key(tenant: str, document_id: str) -> str:
    """Redis key of the lock that serialises the tasks changing one document."""
    return f"{PREFIX}:lock:doc:{tenant}:{document_id}"


def batch_key(batch_id: str) -> str:
    """Redis key of a batch: its tenant and the ids of its jobs."""
    return f"{BATCH_PREFIX}{batch_id}"


def secret_key(tenant: str) -> str:
    """Redis key of a tenant's webhook signing secret."""
    return f"{PREFIX}:webhooks:secret:{tenant}"


def previous_secret_key(tenant: str) -> str:
    """Redis key of a tenant's previous secret, still signing for a grace period."""
    return f"{PREFIX}:webhooks:secret:{tenant}:previous"


def webhook_state_key(job_id: str) -> str:
    """Redis key of a job's webhook delivery state."""
    return f"{PREFIX}:job:{job_id}:webhook"


def webhook_log_key(job_id: str) -> str:
    """Redis key of a job's webhook delivery log."""
    return f"{PREFIX}:job:{job_id}:deliveries"


def webhook_lock_key(job_id: str) -> str:
    """Redis key held while a webhook attempt for the job is in flight."""
    return f"{PREFIX}:job:{job_id}:webhook:lock"


def apikey_key(digest: str) -> str:
    """Redis key of the hash that describes the API key with this SHA-256."""
    return f"{APIKEY_PREFIX}{digest}"


def worker_key(hostname: str) -> str:
    """Redis key announcing a live worker and its queues."""
    return f"{WORKER_KEY_PREFIX}{hostname}"


def boot_key(hostname: str) -> str:
    """Redis key of a starting worker's current step."""
    return f"{BOOT_KEY_PREFIX}{hostname}"


def reply_key(request_id: str) -> str:
    """Redis list a query worker pushes one search's reply onto."""
    return f"{REPLY_PREFIX}{request_id}"


def rate_key(tenant: str) -> str:
    """Redis counter of a tenant's requests in the current rate window."""
    return f"{RATE_PREFIX}{tenant}"


def idempotency_key(tenant: str, key: str) -> str:
    """Redis key of a tenant's idempotency key."""
    return f"{IDEMPOTENCY_PREFIX}{tenant}:{key}"


def usage_key(tenant: str, day: str, key_id: str = "") -> str:
    """A tenant's usage counters of one UTC day (YYYY-MM-DD), or of one of its API keys."""
    return f"{USAGE_PREFIX}{tenant}:{day}" + (f":key:{key_id}" if key_id else "")


def usage_keys_key(tenant: str, day: str) -> str:
    """The ids of the API keys that did work for a tenant on a day."""
    return f"{USAGE_PREFIX}{tenant}:{day}:keys"


def usage_month_key(tenant: str, month: str) -> str:
    """A tenant's token count of one UTC month (YYYY-MM), what its token quota is held against."""
    return f"{USAGE_PREFIX}{tenant}:month:{month}"


def quota_key(tenant: str) -> str:
    """A tenant's quotas."""
    return f"{QUOTA_PREFIX}{tenant}"


def groups_pending_key(tenant: str) -> str:
    """The tenant's documents whose new access groups their chunks do not carry yet."""
    return f"{PREFIX}:groups-pending:{tenant}"
