"""Webhook URL vetting, signing, the outbox written by job transitions, the dispatcher's claims,
and single delivery attempts against a real local HTTP receiver (real Redis, no Celery)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import shutil
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from standardwebhooks import Webhook, WebhookVerificationError

from api.services.webhooks import WebhookService
from common.jobs import JobStore
from common.jobs_async import AsyncJobStore
from common.keys import WEBHOOKS_DUE_KEY, webhook_lock_key, webhook_log_key, webhook_state_key
from common.schemas import JobKind, JobStatus
from common.settings import Settings
from common.webhooks import (
    DeliveryState,
    Vetted,
    WebhookRefused,
    message_id,
    new_secret,
    pinned_request,
    retry_delay,
    signed_headers,
    vet,
)
from tests.receiver import RECEIVER_HOST, Receiver, receiving
from workers.webhooks import Dispatcher, attempt_once, signing_secrets

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]

REFUSED = [
    "http://127.0.0.1/hook",
    "http://10.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:169.254.169.254]/",
    "http://localhost:8080/hook",
    "http://[::1]/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://192.168.1.10/",
    "http://172.16.0.1/",
    "http://100.64.0.1/",
    "http://[fe80::1]/",
    "http://[fd00::1]/",
    "http://[2002:7f00:1::]/",  # 6to4 carrying 127.0.0.1
    "http://[64:ff9b::a00:1]/",  # NAT64 carrying 10.0.0.1
    "http://2130706433/",  # 127.0.0.1 written as one number
    "http://0x7f.1/",
]


@pytest.mark.parametrize("url", REFUSED)
def test_non_global_addresses_are_refused(url: str) -> None:
    with pytest.raises(WebhookRefused) as caught:
        vet(url)
    assert caught.value.code == "webhook_url_forbidden", caught.value.message


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http:///no-host",
        "gopher://8.8.8.8/",
        "http://8.8.8.8/" + "x" * 3000,
    ],
)
def test_malformed_or_non_http_urls_are_refused(url: str) -> None:
    with pytest.raises(WebhookRefused) as caught:
        vet(url)
    assert caught.value.code == "invalid_webhook_url"


def test_unresolvable_host_is_refused() -> None:
    with pytest.raises(WebhookRefused) as caught:
        vet("https://no-such-host.invalid/hook")
    assert caught.value.code == "webhook_url_unresolvable"


@pytest.mark.parametrize(
    "url", ["http://8.8.8.8/hook", "https://1.1.1.1:8443/x?y=1", "https://[2606:4700::1111]/"]
)
def test_public_addresses_pass(url: str) -> None:
    vetted = vet(url)
    assert vetted.address.is_global


def test_allow_list_admits_its_networks_only() -> None:
    assert str(vet("http://127.0.0.1:9/", LOOPBACK).address) == "127.0.0.1"
    assert str(vet("http://localhost:9/", LOOPBACK).address) in {"127.0.0.1", "::1"}
    assert vet("http://[::ffff:127.0.0.1]/", LOOPBACK).address.version == 6
    with pytest.raises(WebhookRefused):
        vet("http://10.0.0.1/", LOOPBACK)
    with pytest.raises(WebhookRefused):
        vet("http://127.0.0.1/", [ipaddress.ip_network("127.0.0.2/32")])


def test_pinned_request_keeps_host_and_sni() -> None:
    vetted = Vetted(
        vet("https://1.1.1.1/").url.copy_with(host="hooks.example.com", port=8443),
        ipaddress.ip_address("93.184.215.14"),
    )
    url, headers, extensions = pinned_request(vetted)
    assert url.host == "93.184.215.14" and url.port == 8443 and url.path == "/"
    assert headers == {"Host": "hooks.example.com:8443"}
    assert extensions == {"sni_hostname": "hooks.example.com"}
    v6 = pinned_request(Vetted(vet("http://8.8.8.8/a").url, ipaddress.ip_address("2606::1")))
    assert str(v6[0]) == "http://[2606::1]/a" and v6[2] == {}


def test_retry_delay_follows_schedule_with_bounded_jitter() -> None:
    schedule = [0, 5, 300, 1800]
    rng = random.Random(7)
    assert retry_delay(schedule, 0, 0.2, rng) == 0
    delays = [retry_delay(schedule, 2, 0.2, rng) for _ in range(200)]
    assert all(d is not None and 240 <= d <= 360 for d in delays)
    assert len({round(d or 0, 3) for d in delays}) > 100  # actually jittered
    assert retry_delay(schedule, 4, 0.2, rng) is None
    assert retry_delay(schedule, 1, 0.0, rng) == 5


def test_signature_verifies_with_standardwebhooks() -> None:
    old, new = new_secret(), new_secret()
    assert new.startswith("whsec_") and old != new
    body = json.dumps({"job_id": "j1", "status": "succeeded"})
    headers = signed_headers([new, old], message_id("j1"), datetime.now(UTC), body)
    assert headers["webhook-id"] == "msg_j1"
    assert Webhook(new).verify(body, headers) == json.loads(body)
    assert Webhook(old).verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body.replace("succeeded", "failed"), headers)


# Redis: a database of their own, so the service's dispatcher (database 0) never sees these.


@pytest.fixture
def db_url(redis_url: str) -> str:
    return redis_url.rsplit("/", 1)[0] + "/9"


@pytest.fixture
def client(db_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(db_url, decode_responses=True)
    yield c
    c.close()


def create(db_url: str, webhook_url: str | None, tenant: str = "t1") -> str:
    """A queued job written by the API's store."""
    job_id = str(uuid.uuid4())
    extra = {"webhook_url": webhook_url} if webhook_url else {}

    async def run() -> None:
        c = aioredis.Redis.from_url(db_url, decode_responses=True)
        await AsyncJobStore(c, 600).create(job_id, JobKind.ANSWER, tenant, extra=extra)
        await c.aclose()

    asyncio.run(run())
    return job_id


def cancel(db_url: str, job_id: str) -> bool:
    async def run() -> bool:
        c = aioredis.Redis.from_url(db_url, decode_responses=True)
        done = await AsyncJobStore(c, 600).cancel(job_id)
        await c.aclose()
        return done

    return asyncio.run(run())


def test_terminal_transition_writes_the_outbox_once(db_url: str, client: redis.Redis) -> None:
    store = JobStore(db_url, ttl_s=600)
    with_hook = create(db_url, "http://8.8.8.8/hook")
    without = create(db_url, None)
    assert store.start(with_hook, "w1") and store.start(without, "w1")
    assert client.zscore(WEBHOOKS_DUE_KEY, with_hook) is None  # running is not terminal
    before = time.time()
    assert store.finish(with_hook, JobStatus.SUCCEEDED, result={"ok": True})
    assert store.finish(without, JobStatus.SUCCEEDED, result={"ok": True})
    score = client.zscore(WEBHOOKS_DUE_KEY, with_hook)
    assert score is not None and before - 1 <= score <= time.time() + 1
    assert client.zscore(WEBHOOKS_DUE_KEY, without) is None
    # Delivered and removed: a late duplicate transition must not queue it again.
    client.zrem(WEBHOOKS_DUE_KEY, with_hook)
    assert not store.finish(with_hook, JobStatus.FAILED)
    assert client.zscore(WEBHOOKS_DUE_KEY, with_hook) is None
    # Cancellation (the API's store) and failure enter the outbox too.
    cancelled = create(db_url, "http://8.8.8.8/hook")
    assert cancel(db_url, cancelled)
    failed = create(db_url, "http://8.8.8.8/hook")
    assert store.fail(failed, "boom", "it broke")
    assert client.zscore(WEBHOOKS_DUE_KEY, cancelled) is not None
    assert client.zscore(WEBHOOKS_DUE_KEY, failed) is not None
    client.zrem(WEBHOOKS_DUE_KEY, cancelled, failed)


def test_dispatcher_claims_each_due_entry_once_per_lease(client: redis.Redis, db_url: str) -> None:
    client.delete(WEBHOOKS_DUE_KEY)
    sent: list[tuple[str, int]] = []
    settings = Settings(redis_url=db_url, webhook_timeout_s=5)
    dispatcher = Dispatcher(client, settings, lambda j, n: sent.append((j, n)))
    client.zadd(WEBHOOKS_DUE_KEY, {"due": time.time() - 1, "later": time.time() + 3600})
    client.hset(webhook_state_key("due"), mapping={"attempts": 2, "state": "pending"})
    assert dispatcher.tick() == ["due"]
    assert sent == [("due", 3)]
    assert dispatcher.tick() == []  # leased: not sent again while its task may be running
    score = client.zscore(WEBHOOKS_DUE_KEY, "due")
    assert score is not None and score > time.time() + 30
    # The task died with its worker (the attempt count never moved): once the lease is over,
    # the same attempt is sent again.
    client.zadd(WEBHOOKS_DUE_KEY, {"due": time.time() - 1})
    assert dispatcher.tick() == ["due"]
    assert sent == [("due", 3), ("due", 3)]
    client.delete(WEBHOOKS_DUE_KEY, webhook_state_key("due"))


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


def finished_job(db_url: str, url: str) -> str:
    store = JobStore(db_url, ttl_s=600)
    job_id = create(db_url, url, tenant="hooks")
    assert store.start(job_id, "w1")
    assert store.finish(job_id, JobStatus.SUCCEEDED, result={"answer": "42"})
    return job_id


def settings_for(db_url: str, **extra: object) -> Settings:
    values: dict[str, object] = {
        "redis_url": db_url,
        "webhook_allow_networks": [f"{RECEIVER_HOST}/32"],
        "webhook_retry_schedule_s": [0, 1, 2],
        "webhook_timeout_s": 5,
        **extra,
    }
    return Settings(**values)  # type: ignore[arg-type]


def test_attempt_posts_the_signed_final_record(
    client: redis.Redis, db_url: str, receiver: Receiver
) -> None:
    url = receiver.url()
    job_id = finished_job(db_url, url)
    assert attempt_once(client, settings_for(db_url), job_id, 1) is DeliveryState.DELIVERED
    (got,) = receiver.requests(url)
    secrets = signing_secrets(client, "hooks")
    record = Webhook(secrets[0]).verify(got.body, got.headers)
    assert record["job_id"] == job_id and record["status"] == "succeeded"
    assert record["result"] == {"answer": "42"} and record["webhook_url"] == url
    assert got.headers["webhook-id"] == f"msg_{job_id}"
    assert got.headers["Host"] == f"{RECEIVER_HOST}:{receiver.port}"
    assert client.zscore(WEBHOOKS_DUE_KEY, job_id) is None
    (entry,) = [json.loads(e) for e in client.lrange(webhook_log_key(job_id), 0, -1)]
    assert entry["attempt"] == 1 and entry["status_code"] == 200 and entry["error"] is None
    # A stale duplicate of attempt 1, or an attempt out of order, posts nothing.
    assert attempt_once(client, settings_for(db_url), job_id, 1) is None
    assert attempt_once(client, settings_for(db_url), job_id, 3) is None
    assert len(receiver.requests(url)) == 1


def test_failures_schedule_retries_until_exhausted(
    client: redis.Redis, db_url: str, receiver: Receiver
) -> None:
    url = receiver.url([500, 302, 503])
    job_id = finished_job(db_url, url)
    settings = settings_for(db_url)
    assert attempt_once(client, settings, job_id, 1) is DeliveryState.PENDING
    due = client.zscore(WEBHOOKS_DUE_KEY, job_id)
    assert due is not None and time.time() + 0.5 < due < time.time() + 1.5
    assert attempt_once(client, settings, job_id, 2) is DeliveryState.PENDING
    assert attempt_once(client, settings, job_id, 3) is DeliveryState.FAILED
    assert client.zscore(WEBHOOKS_DUE_KEY, job_id) is None
    entries = [json.loads(e) for e in client.lrange(webhook_log_key(job_id), 0, -1)]
    assert [e["status_code"] for e in entries] == [500, 302, 503]
    assert entries[0]["next_attempt_at"] and entries[2]["next_attempt_at"] is None
    # The redirect was not followed: only our path was ever requested.
    assert len(receiver.requests(url)) == 3
    assert not [r for r in receiver.received if r.path == "/elsewhere"]


def test_gone_and_refused_addresses_stop_retries(
    client: redis.Redis, db_url: str, receiver: Receiver
) -> None:
    url = receiver.url([410])
    job_id = finished_job(db_url, url)
    assert attempt_once(client, settings_for(db_url), job_id, 1) is DeliveryState.GONE
    assert client.zscore(WEBHOOKS_DUE_KEY, job_id) is None
    # A refused address at delivery time (the allow-list changed) fails without retries.
    job_id = finished_job(db_url, receiver.url())
    narrowed = settings_for(db_url, webhook_allow_networks=["10.0.0.0/8"])
    assert attempt_once(client, narrowed, job_id, 1) is DeliveryState.FAILED
    (entry,) = [json.loads(e) for e in client.lrange(webhook_log_key(job_id), 0, -1)]
    assert entry["error"].startswith("webhook_url_forbidden") and entry["status_code"] is None


def redeliver(db_url: str, settings: Settings, job_id: str, attempt: int) -> None:
    """`POST /v1/jobs/{id}/deliveries/{n}:redeliver` as the API's service does it."""

    async def run() -> None:
        c = aioredis.Redis.from_url(db_url, decode_responses=True)
        service = WebhookService(c, AsyncJobStore(c, 600), settings)
        await service.redeliver("hooks", job_id, attempt)
        await c.aclose()

    asyncio.run(run())


def test_manual_redeliver_while_retries_are_pending_is_logged_manual(
    client: redis.Redis, db_url: str, receiver: Receiver
) -> None:
    url = receiver.url([500, 500])
    job_id = finished_job(db_url, url)
    settings = settings_for(db_url)
    assert attempt_once(client, settings, job_id, 1) is DeliveryState.PENDING
    redeliver(db_url, settings, job_id, 1)
    due = client.zscore(WEBHOOKS_DUE_KEY, job_id)
    assert due is not None and due <= time.time()
    # The manual attempt fails too: it is logged as manual, and the schedule goes on.
    assert attempt_once(client, settings, job_id, 2) is DeliveryState.PENDING
    assert attempt_once(client, settings, job_id, 3) is DeliveryState.DELIVERED
    entries = [json.loads(e) for e in client.lrange(webhook_log_key(job_id), 0, -1)]
    assert [(e["status_code"], e["manual"]) for e in entries] == [
        (500, False),
        (500, True),
        (200, False),
    ]


def test_an_attempt_past_its_lease_keeps_the_lock_a_later_attempt_took(
    client: redis.Redis, db_url: str
) -> None:
    retaken: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            # Meanwhile this attempt's lease ended and another dispatch took the lock.
            client.set(retaken["key"], "a later attempt")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            return

    server = ThreadingHTTPServer((RECEIVER_HOST, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        job_id = finished_job(db_url, f"http://{RECEIVER_HOST}:{server.server_address[1]}/h")
        retaken["key"] = webhook_lock_key(job_id)
        assert attempt_once(client, settings_for(db_url), job_id, 1) is DeliveryState.DELIVERED
        assert client.get(webhook_lock_key(job_id)) == "a later attempt"
    finally:
        server.shutdown()
        server.server_close()
        client.delete(retaken.get("key", "-"))


def test_pinned_post_reaches_the_address_under_the_host_name() -> None:
    with receiving("127.0.0.1") as local:
        named = local.url().replace("127.0.0.1", "localhost")
        url, headers, extensions = pinned_request(vet(named, LOOPBACK))
        assert url.host == "127.0.0.1"
        with httpx.Client(trust_env=False) as http:
            http.post(url, content=b"{}", headers=headers, extensions=extensions)
        (got,) = local.requests(named)
        assert got.headers["Host"] == f"localhost:{local.port}"


def test_pinned_https_keeps_sni_and_certificate_check(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    seen: list[str | None] = []
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.sni_callback = lambda _sock, name, _ctx: seen.append(name)  # type: ignore[assignment,misc,func-returns-value]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(204 if self.headers["Host"].startswith("localhost:") else 400)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        url, headers, extensions = pinned_request(vet(f"https://localhost:{port}/h", LOOPBACK))
        assert url.host == "127.0.0.1"
        client_ctx = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(verify=client_ctx, trust_env=False) as http:
            response = http.post(url, content=b"{}", headers=headers, extensions=extensions)
            assert response.status_code == 204
            assert seen[-1] == "localhost"
            # Without the SNI name the certificate is checked against the bare IP and fails.
            with pytest.raises(httpx.ConnectError):
                http.post(url, content=b"{}", headers=headers)
    finally:
        server.shutdown()
        server.server_close()
