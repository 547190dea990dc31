"""API keys and tenant isolation: tenant B's key on tenant A's ids answers 404 everywhere."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from common.apikeys import create_key, open_redis, revoke_key
from tests.conftest import Service, auth
from tests.helpers import ingest_text, wait_job

SECRET_FACT = "The Vantoria vault code word is ZEPHYR-6612 and only tenant A knows it."
B_FACT = "Tenant B keeps notes about the Vantoria harbour ferry timetable."


def client_for(service: Service, tenant: str) -> httpx.Client:
    """An HTTP client with a new key of the tenant."""
    key, _ = create_key(open_redis(service.redis_url), tenant)
    return httpx.Client(base_url=service.base_url, timeout=60, headers=auth(key))


@pytest.fixture(scope="module")
def tenant_a(service: Service) -> Iterator[httpx.Client]:
    with client_for(service, f"a-{uuid.uuid4().hex[:8]}") as client:
        yield client


@pytest.fixture(scope="module")
def tenant_b(service: Service) -> Iterator[httpx.Client]:
    with client_for(service, f"b-{uuid.uuid4().hex[:8]}") as client:
        yield client


@pytest.fixture(scope="module")
def a_ids(tenant_a: httpx.Client, tenant_b: httpx.Client) -> dict[str, str]:
    """Tenant A's document, ingest job, batch and answer job (with a webhook); B's own document."""
    record = ingest_text(tenant_a, SECRET_FACT, "Vault")
    ingest_text(tenant_b, B_FACT, "Ferry")
    batch = tenant_a.post(
        "/v1/documents:batch", files=[("files", ("a.txt", b"Tenant A batch file."))]
    )
    assert batch.status_code == 202, batch.text
    answer = tenant_a.post(
        "/v1/answers",
        json={"question": "What is the Vantoria vault code word?", "top_k": 2},
    )
    assert answer.status_code == 202, answer.text
    answer_id = answer.json()["job_id"]
    assert wait_job(tenant_a, answer_id)["status"] == "succeeded"
    return {
        "document_id": record["document_id"],
        "job_id": record["job_id"],
        "batch_id": batch.json()["batch_id"],
        "answer_id": answer_id,
    }


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


# (method, path template, expected error code) of every endpoint that names a tenant's id.
MATRIX = [
    ("GET", "/v1/jobs/{job_id}", "job_not_found"),
    ("GET", "/v1/jobs/{answer_id}", "job_not_found"),
    ("GET", "/v1/jobs/{answer_id}/events", "job_not_found"),
    ("DELETE", "/v1/jobs/{job_id}", "job_not_found"),
    ("GET", "/v1/jobs/{job_id}/deliveries", "job_not_found"),
    ("POST", "/v1/jobs/{job_id}/deliveries/1:redeliver", "job_not_found"),
    ("GET", "/v1/batches/{batch_id}", "batch_not_found"),
    ("GET", "/v1/documents/{document_id}", "document_not_found"),
    ("DELETE", "/v1/documents/{document_id}", "document_not_found"),
    ("POST", "/v1/documents/{document_id}:reindex", "document_not_found"),
]


@pytest.mark.parametrize(("method", "template", "code"), MATRIX)
def test_other_tenants_ids_are_404(
    tenant_a: httpx.Client,
    tenant_b: httpx.Client,
    a_ids: dict[str, str],
    method: str,
    template: str,
    code: str,
) -> None:
    path = template.format(**a_ids)
    response = tenant_b.request(method, path)
    assert response.status_code == 404, response.text
    assert error_code(response) == code
    # A still sees its own object.
    own = tenant_a.get(owner_path(template, a_ids))
    assert own.status_code == 200, own.text


def owner_path(template: str, ids: dict[str, str]) -> str:
    """Where the owner reads the object a matrix entry names."""
    if "{batch_id}" in template:
        return f"/v1/batches/{ids['batch_id']}"
    if "{document_id}" in template:
        return f"/v1/documents/{ids['document_id']}"
    job = ids["answer_id"] if "{answer_id}" in template else ids["job_id"]
    return f"/v1/jobs/{job}"


def test_a_is_untouched_after_b_tried_everything(
    tenant_a: httpx.Client, tenant_b: httpx.Client, a_ids: dict[str, str]
) -> None:
    for method, template, _ in MATRIX:
        tenant_b.request(method, template.format(**a_ids))
    document = tenant_a.get(f"/v1/documents/{a_ids['document_id']}").json()
    assert document["status"] == "ready"
    assert tenant_a.get(f"/v1/jobs/{a_ids['job_id']}").json()["status"] == "succeeded"


def test_listing_shows_only_own_documents(
    tenant_a: httpx.Client, tenant_b: httpx.Client, a_ids: dict[str, str]
) -> None:
    listed_a = {d["document_id"] for d in tenant_a.get("/v1/documents").json()["documents"]}
    listed_b = {d["document_id"] for d in tenant_b.get("/v1/documents").json()["documents"]}
    assert a_ids["document_id"] in listed_a
    assert a_ids["document_id"] not in listed_b
    assert listed_b and not listed_a & listed_b


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
def test_search_never_returns_another_tenants_chunks(
    tenant_a: httpx.Client, tenant_b: httpx.Client, a_ids: dict[str, str], mode: str
) -> None:
    body: dict[str, Any] = {"query": "Vantoria vault code word ZEPHYR-6612", "mode": mode}
    mine = tenant_a.post("/v1/search", json=body)
    assert mine.status_code == 200, mine.text
    assert a_ids["document_id"] in {r["document_id"] for r in mine.json()["results"]}
    theirs = tenant_b.post("/v1/search", json=body)
    assert theirs.status_code == 200, theirs.text
    results = theirs.json()["results"]
    assert results, "B has a document of its own; the search should find it"
    assert all("ZEPHYR" not in r["text"] for r in results)
    # Even a filter that names A's document finds none of A's chunks for B (B may have a
    # document of its own under the same id: ids are per tenant).
    only_a = {"document_ids": [a_ids["document_id"]]}
    named = tenant_b.post("/v1/search", json={**body, "filter": only_a})
    assert named.status_code == 200, named.text
    assert all("ZEPHYR" not in r["text"] for r in named.json()["results"])


def test_answers_cite_only_own_documents(tenant_b: httpx.Client, a_ids: dict[str, str]) -> None:
    response = tenant_b.post(
        "/v1/answers", json={"question": "What is the Vantoria vault code word?", "top_k": 3}
    )
    assert response.status_code == 202, response.text
    record = wait_job(tenant_b, response.json()["job_id"])
    assert record["status"] == "succeeded", record
    cited = {c["document_id"] for c in record["result"]["citations"]}
    assert a_ids["document_id"] not in cited
    assert all("ZEPHYR" not in c["text"] for c in record["result"]["citations"])


def test_same_document_id_is_a_different_document_per_tenant(
    tenant_a: httpx.Client, tenant_b: httpx.Client, a_ids: dict[str, str]
) -> None:
    body = {"text": "B's own text under A's id.", "document_id": a_ids["document_id"]}
    response = tenant_b.post("/v1/documents", json=body)
    assert response.status_code == 202, response.text
    assert wait_job(tenant_b, response.json()["job_id"])["status"] == "succeeded"
    a_document = tenant_a.get(f"/v1/documents/{a_ids['document_id']}").json()
    assert a_document["job_id"] == a_ids["job_id"]
    hits = tenant_a.post("/v1/search", json={"query": "ZEPHYR-6612", "mode": "sparse"}).json()
    assert any("ZEPHYR" in r["text"] for r in hits["results"])


def test_webhook_secrets_are_per_tenant(tenant_a: httpx.Client, tenant_b: httpx.Client) -> None:
    secret_a = tenant_a.get("/v1/webhooks/secret").json()["secret"]
    secret_b = tenant_b.get("/v1/webhooks/secret").json()["secret"]
    assert secret_a.startswith("whsec_") and secret_b.startswith("whsec_")
    assert secret_a != secret_b
    rotated = tenant_b.post("/v1/webhooks/secret:rotate").json()["secret"]
    assert rotated != secret_b
    assert tenant_a.get("/v1/webhooks/secret").json()["secret"] == secret_a


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "unauthorized"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "unauthorized"),
        ({"Authorization": "Bearer rq_not-a-key-that-exists-anywhere"}, "invalid_api_key"),
        ({"Authorization": "Bearer"}, "unauthorized"),
        ({"Authorization": "Bearer not-even-prefixed"}, "invalid_api_key"),
    ],
)
def test_requests_without_a_valid_key_are_401(
    service: Service, headers: dict[str, str], code: str
) -> None:
    with httpx.Client(base_url=service.base_url, timeout=30, headers=headers) as client:
        for method, path in [
            ("GET", "/v1/documents"),
            ("POST", "/v1/answers"),
            ("GET", f"/v1/jobs/{uuid.uuid4()}"),
            ("POST", "/v1/search"),
            ("GET", "/v1/webhooks/secret"),
        ]:
            response = client.request(method, path, json={"question": "x"})
            assert response.status_code == 401, (path, response.text)
            assert error_code(response) == code
            assert response.headers["WWW-Authenticate"] == "Bearer"


def test_health_readiness_and_metrics_stay_open(service: Service) -> None:
    with httpx.Client(base_url=service.base_url, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.get("/metrics").status_code == 200
        assert client.get("/openapi.json").status_code == 200


def test_a_revoked_key_stops_working_at_once(service: Service) -> None:
    client_redis = open_redis(service.redis_url)
    key, info = create_key(client_redis, "revoked-tenant")
    with httpx.Client(base_url=service.base_url, timeout=30, headers=auth(key)) as client:
        assert client.get("/v1/documents").status_code == 200
        assert revoke_key(client_redis, info.key_id) == info
        response = client.get("/v1/documents")
        assert response.status_code == 401
        assert error_code(response) == "invalid_api_key"


def test_openapi_documents_bearer_auth_and_401(http: httpx.Client) -> None:
    schema = http.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "bearer"}.items() <= next(iter(schemes.values())).items()
    answers = schema["paths"]["/v1/answers"]["post"]
    assert answers["security"]
    assert answers["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ErrorBody"
    )
    assert "security" not in schema["paths"]["/healthz"]["get"]
