"""Checking a webhook delivery: its Standard Webhooks signature, its timestamp, its body."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError
from standardwebhooks import Webhook
from standardwebhooks import WebhookVerificationError as SignatureError

from ragq_client.errors import WebhookVerificationError
from ragq_client.models import JobRecord


def verify_webhook(body: bytes | str, headers: Mapping[str, str], secret: str) -> JobRecord:
    """The job record a webhook delivered, once its signature (under the tenant's `whsec_`
    secret) and timestamp (within five minutes) check out; `WebhookVerificationError` if not."""
    lowered = {name.lower(): value for name, value in headers.items()}
    payload = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        Webhook(secret).verify(payload, lowered)
    except SignatureError as exc:
        raise WebhookVerificationError(str(exc) or "bad webhook signature") from exc
    try:
        return JobRecord.model_validate_json(payload)
    except ValidationError as exc:
        raise WebhookVerificationError(f"the webhook's body is not a job record: {exc}") from exc
