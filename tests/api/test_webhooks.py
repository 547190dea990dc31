"""Webhooks end to end: real API, Redis and Celery workers POSTing to a real local receiver.

The service allows only 127.0.0.2/32 (tests/conftest.py), where the receiver listens; its
retry schedule is shortened to 0, 1, 2, 2 seconds (jitter ±20 %).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tests.helpers import wait_job
from tests.receiver import Receiver, receiving

JITTER = 0.2


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


def submit_document(http: httpx.Client, webhook_url: str) -> str:
    """Queue a small unique document with a webhook; its job id."""
    text = f"Webhook test document {uuid.uuid4()}: the tide tables of Tavik harbour."
    response = http.post("/v1/documents", json={"text": text, "webhook_url": webhook_url})
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def deliveries(http: httpx.Client, job_id: str) -> dict[str, Any]:
    response = http.get(f"/v1/jobs/{job_id}/deliveries")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def wait_state(http: httpx.Client, job_id: str, state: str, timeout: float = 30) -> dict[str, Any]:
    """Poll the delivery log until delivery reaches `state`."""
    deadline = time.monotonic() + timeout
    while True:
        log = deliveries(http, job_id)
        if log["state"] == state:
            return log
        assert time.monotonic() < deadline, log
        time.sleep(0.1)


REFUSED = [
    ("http://127.0.0.1:9/hook", "webhook_url_forbidden"),
    ("http://10.0.0.1/hook", "webhook_url_forbidden"),
    ("http://169.254.169.254/latest/meta-data/", "webhook_url_forbidden"),
    ("http://[::ffff:127.0.0.1]:9/hook", "webhook_url_forbidden"),
    ("http://localhost:9/hook", "webhook_url_forbidden"),
    ("ftp://127.0.0.2/hook", "invalid_webhook_url"),
]


@pytest.mark.parametrize(("url", "code"), REFUSED)
def test_refused_urls_get_422_at_submit_time(http: httpx.Client, url: str, code: str) -> None:
    before = http.get("/v1/documents").json()["total"]
    text = f"never stored {uuid.uuid4()}"
    answers = http.post("/v1/answers", json={"question": "Where?", "webhook_url": url})
    as_json = http.post("/v1/documents", json={"text": text, "webhook_url": url})
    as_form = http.post(
        "/v1/documents",
        files={"file": ("a.txt", text.encode())},
        data={"webhook_url": url},
    )
    files = [("files", ("b.txt", text.encode()))]
    batch = http.post("/v1/documents:batch", files=files, data={"webhook_url": url})
    for response in (answers, as_json, as_form, batch):
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == code
    assert http.get("/v1/documents").json()["total"] == before


def test_signed_final_record_is_delivered(http: httpx.Client, receiver: Receiver) -> None:
    url = receiver.url()
    job_id = submit_document(http, url)
    record = wait_job(http, job_id)
    assert record["status"] == "succeeded" and record["webhook_url"] == url
    (got,) = receiver.wait(url, 1)
    secret = http.get("/v1/webhooks/secret").json()["secret"]
    assert secret.startswith("whsec_")
    delivered = Webhook(secret).verify(got.body, got.headers)
    assert delivered == http.get(f"/v1/jobs/{job_id}").json()
    assert got.headers["webhook-id"] == f"msg_{job_id}"
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
    log = wait_state(http, job_id, "delivered")
    (attempt,) = log["deliveries"]
    assert attempt["attempt"] == 1 and attempt["status_code"] == 200
    assert attempt["error"] is None and attempt["next_attempt_at"] is None
    assert attempt["duration_s"] >= 0


def test_two_failures_then_success_follow_the_schedule(
    http: httpx.Client, receiver: Receiver
) -> None:
    url = receiver.url([500, 503])
    job_id = submit_document(http, url)
    wait_job(http, job_id)
    got = receiver.wait(url, 3)
    log = wait_state(http, job_id, "delivered")
    time.sleep(2.5)  # the schedule has a fourth slot: a success must not use it
    assert len(receiver.requests(url)) == 3
    gaps = [got[1].at - got[0].at, got[2].at - got[1].at]
    for gap, delay in zip(gaps, (1, 2), strict=True):
        assert delay * (1 - JITTER) - 0.05 <= gap <= delay * (1 + JITTER) + 2.0, gaps
    assert [d["status_code"] for d in log["deliveries"]] == [500, 503, 200]
    assert [d["attempt"] for d in log["deliveries"]] == [1, 2, 3]
    assert all(d["next_attempt_at"] for d in log["deliveries"][:2])
    assert {r.headers["webhook-id"] for r in got} == {f"msg_{job_id}"}
    secret = http.get("/v1/webhooks/secret").json()["secret"]
    for request in got:
        Webhook(secret).verify(request.body, request.headers)


def test_gone_stops_retries(http: httpx.Client, receiver: Receiver) -> None:
    url = receiver.url([410])
    job_id = submit_document(http, url)
    wait_job(http, job_id)
    receiver.wait(url, 1)
    log = wait_state(http, job_id, "gone")
    time.sleep(2.0)
    assert len(receiver.requests(url)) == 1
    assert [d["status_code"] for d in deliveries(http, job_id)["deliveries"]] == [410]
    assert log["next_attempt_at"] is None


def test_exhausted_retries_then_redeliver(http: httpx.Client, receiver: Receiver) -> None:
    url = receiver.url([500, 500, 500, 500])
    job_id = submit_document(http, url)
    wait_job(http, job_id)
    log = wait_state(http, job_id, "failed", timeout=60)
    assert [d["status_code"] for d in log["deliveries"]] == [500] * 4
    assert len(receiver.requests(url)) == 4

    missing = http.post(f"/v1/jobs/{job_id}/deliveries/9:redeliver")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "delivery_not_found"
    response = http.post(f"/v1/jobs/{job_id}/deliveries/2:redeliver")
    assert response.status_code == 202, response.text
    got = receiver.wait(url, 5)
    log = wait_state(http, job_id, "delivered")
    last = log["deliveries"][-1]
    assert last["attempt"] == 5 and last["manual"] and last["status_code"] == 200
    assert got[-1].headers["webhook-id"] == got[0].headers["webhook-id"]


def test_cancelled_answer_and_batch_jobs_deliver(http: httpx.Client, receiver: Receiver) -> None:
    url = receiver.url()
    answer = http.post("/v1/answers", json={"question": "Who?", "webhook_url": url})
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    http.delete(f"/v1/jobs/{job_id}")
    record = wait_job(http, job_id)
    batch_url = receiver.url()
    files = [("files", (f"{i}.txt", f"batch {uuid.uuid4()} {i}".encode())) for i in range(2)]
    batch = http.post("/v1/documents:batch", files=files, data={"webhook_url": batch_url})
    assert batch.status_code == 202, batch.text
    jobs = {j["job_id"] for j in batch.json()["jobs"]}
    (got,) = receiver.wait(url, 1)
    assert json.loads(got.body)["status"] == record["status"]
    arrived = {json.loads(r.body)["job_id"] for r in receiver.wait(batch_url, 2)}
    assert arrived == jobs


def test_rotation_signs_with_both_secrets(http: httpx.Client, receiver: Receiver) -> None:
    old = http.get("/v1/webhooks/secret").json()["secret"]
    new = http.post("/v1/webhooks/secret:rotate").json()["secret"]
    assert new != old and http.get("/v1/webhooks/secret").json()["secret"] == new
    url = receiver.url()
    job_id = submit_document(http, url)
    wait_job(http, job_id)
    (got,) = receiver.wait(url, 1)
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(got.body, got.headers)
    Webhook(old).verify(got.body, got.headers)


def test_deliveries_of_unknown_job_is_404(http: httpx.Client) -> None:
    response = http.get(f"/v1/jobs/{uuid.uuid4()}/deliveries")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "job_not_found"
