"""Redis key names: stored data is found by them, so they must not drift."""

from __future__ import annotations

from common import keys


def test_key_layout_is_stable() -> None:
    # Changing any of these orphans what a running deployment already stored.
    assert keys.job_key("j") == "ragq:job:j"
    assert keys.events_key("j") == "ragq:job:j:events"
    assert keys.blob_key("j") == "ragq:job:j:blob"
    assert keys.doc_key("t", "d") == "ragq:doc:t:d"
    assert keys.listing_key("t") == "ragq:docs:t"
    assert keys.content_key("t") == "ragq:docsha:t"
    assert keys.document_lock_key("t", "d") == "ragq:lock:doc:t:d"
    assert keys.batch_key("b") == "ragq:batch:b"
    assert keys.secret_key("t") == "ragq:webhooks:secret:t"
    assert keys.previous_secret_key("t") == "ragq:webhooks:secret:t:previous"
    assert keys.webhook_state_key("j") == "ragq:job:j:webhook"
    assert keys.webhook_log_key("j") == "ragq:job:j:deliveries"
    assert keys.webhook_lock_key("j") == "ragq:job:j:webhook:lock"
    assert keys.apikey_key("abc") == "ragq:apikey:abc"
    assert keys.worker_key("cpu@h") == "ragq:worker:cpu@h"
    assert keys.reply_key("r") == "ragq:reply:r"
    assert keys.rate_key("t") == "ragq:rate:t"
    assert keys.idempotency_key("t", "k") == "ragq:idem:t:k"
    assert keys.ACTIVE_JOBS_KEY == "ragq:jobs:active"
    assert keys.HELD_JOBS_KEY == "ragq:jobs:held"
    assert keys.RECONCILER_BACKFILL_KEY == "ragq:reconciler:backfill"
    assert keys.WEBHOOKS_DUE_KEY == "ragq:webhooks:due"
    assert keys.RECONCILER_LEASE_KEY == "ragq:reconciler:lease"
    assert keys.APIKEY_INDEX_KEY == "ragq:apikeys"


def test_the_update_script_keys_are_the_record_its_events_the_outbox_and_the_indexes() -> None:
    assert keys.job_update_keys("j") == [
        keys.job_key("j"),
        keys.events_key("j"),
        keys.WEBHOOKS_DUE_KEY,
        keys.ACTIVE_JOBS_KEY,
        keys.HELD_JOBS_KEY,
    ]


def test_keys_of_different_things_never_collide() -> None:
    built = [
        keys.job_key("x"),
        keys.events_key("x"),
        keys.blob_key("x"),
        keys.webhook_state_key("x"),
        keys.webhook_log_key("x"),
        keys.webhook_lock_key("x"),
        keys.doc_key("x", "x"),
        keys.listing_key("x"),
        keys.content_key("x"),
        keys.document_lock_key("x", "x"),
        keys.batch_key("x"),
        keys.secret_key("x"),
        keys.previous_secret_key("x"),
        keys.apikey_key("x"),
        keys.worker_key("x"),
        keys.reply_key("x"),
        keys.rate_key("x"),
        keys.idempotency_key("x", "x"),
    ]
    assert len(set(built)) == len(built)
