"""`verify_webhook` on real deliveries of the live service, and on tampered or stale ones."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from ragq_client import Client, DeliveryState, JobStatus, WebhookVerificationError, verify_webhook
from tests.conftest import Service
from tests.receiver import Receiver, receiving


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


def test_a_delivered_webhook_verifies_to_the_job_record(
    service: Service, new_key: Callable[[], str], receiver: Receiver
) -> None:
    url = receiver.url()
    with Client(service.base_url, new_key()) as client:
        secret = client.webhook_secret()
        text = f"Webhook client test {uuid.uuid4()}: the Osk tide gauge."
        record = client.ingest_text(text, webhook_url=url, wait=True)
        [delivery] = receiver.wait(url, 1)
        verified = verify_webhook(delivery.body, delivery.headers, secret)
        assert verified.job_id == record.job_id and verified.status == JobStatus.SUCCEEDED
        assert verified.webhook_url == url

        deadline = time.monotonic() + 30
        while (log := client.deliveries(record.job_id)).state != DeliveryState.DELIVERED:
            assert time.monotonic() < deadline, log
            time.sleep(0.1)
        assert log.deliveries[0].outcome == DeliveryState.DELIVERED
        client.redeliver(record.job_id, 1)
        [_, again] = receiver.wait(url, 2)
        assert verify_webhook(again.body, again.headers, secret).job_id == record.job_id

    tampered = delivery.body.replace(b'"succeeded"', b'"failed"')
    assert tampered != delivery.body
    with pytest.raises(WebhookVerificationError):
        verify_webhook(tampered, delivery.headers, secret)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(delivery.body, delivery.headers, "whsec_" + "A" * 32)


def test_a_stale_or_unsigned_webhook_fails() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = '{"job_id": "j", "kind": "ingest", "status": "succeeded", "created_at": "now"}'
    old = datetime.now(UTC) - timedelta(minutes=10)
    headers = {
        "webhook-id": "msg_j",
        "webhook-timestamp": str(int(old.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg_j", old, body),
    }
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body, headers, secret)
    now = datetime.now(UTC)
    fresh = {
        **headers,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg_j", now, body),
    }
    assert verify_webhook(body, fresh, secret).job_id == "j"
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body, {"webhook-id": "msg_j"}, secret)
    signed_junk = {**fresh, "webhook-signature": Webhook(secret).sign("msg_j", now, "[]")}
    with pytest.raises(WebhookVerificationError):
        verify_webhook("[]", signed_junk, secret)
