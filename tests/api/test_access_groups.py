"""Access groups on the live service: a document outside a key's groups is as if it did not
exist, on every endpoint, in search, answers and chat completions; changing groups needs no
re-embedding; bad groups are refused."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from api.openai_schemas import JOB_HEADER
from common.apikeys import create_key, key_hash, open_redis
from common.keys import apikey_key
from tests.conftest import Service, auth
from tests.helpers import events, wait_job

SECRET = "The Quillon payroll vault opens with the word MARGRAVE-7731 on Fridays."
ENG_FACT = "The Quillon build farm compiles the firmware every night at two."
OPEN_FACT = "The Quillon cafeteria serves lentil soup on Mondays."
# Many hidden documents nearer to the query than any visible one, and a few visible ones.
CROWD_QUERY = "Orvand lighthouse keepers log the tides"
HIDDEN_CROWD = 18
VISIBLE_CROWD = 6


@dataclass
class Keys:
    """Clients of one tenant's keys, and the ids of the documents the admin ingested."""

    tenant: str
    admin: httpx.Client
    hr: httpx.Client
    eng: httpx.Client
    plain: httpx.Client
    docs: dict[str, str]


def client(service: Service, tenant: str, **options: Any) -> httpx.Client:
    """An HTTP client with a new key of the tenant."""
    key, _ = create_key(open_redis(service.redis_url), tenant, **options)
    return httpx.Client(base_url=service.base_url, timeout=120, headers=auth(key))


def ingest(http: httpx.Client, text: str, groups: list[str] | None, title: str) -> str:
    """Ingest a JSON document with these groups and wait for it; its id."""
    body: dict[str, Any] = {"text": text, "title": title}
    if groups is not None:
        body["access_groups"] = groups
    response = http.post("/v1/documents", json=body)
    assert response.status_code == 202, response.text
    record = wait_job(http, response.json()["job_id"])
    assert record["status"] == "succeeded", record
    return str(response.json()["document_id"])


def batch(http: httpx.Client, texts: list[str], groups: str) -> list[str]:
    """Ingest files as one multipart batch with these groups; their document ids."""
    files = [("files", (f"{n}.txt", text.encode())) for n, text in enumerate(texts)]
    response = http.post("/v1/documents:batch", files=files, data={"access_groups": groups})
    assert response.status_code == 202, response.text
    for job in response.json()["jobs"]:
        assert wait_job(http, job["job_id"])["status"] == "succeeded"
    return [job["document_id"] for job in response.json()["jobs"]]


@pytest.fixture(scope="module")
def keys(service: Service) -> Iterator[Keys]:
    tenant = f"groups-{uuid.uuid4().hex[:8]}"
    clients = [
        client(service, tenant, admin=True),
        client(service, tenant, groups=["hr"]),
        client(service, tenant, groups=["eng", "ops"]),
        client(service, tenant),
    ]
    admin = clients[0]
    docs = {
        "hr": ingest(admin, SECRET, ["hr"], "Payroll"),
        "eng": ingest(admin, ENG_FACT, ["eng"], "Build farm"),
        "open": ingest(admin, OPEN_FACT, None, "Cafeteria"),
    }
    hidden = [f"{CROWD_QUERY}: entry {n} of the hidden register." for n in range(HIDDEN_CROWD)]
    visible = [
        f"Orvand harbour notes, page {n}: keepers and tides in the open log."
        for n in range(VISIBLE_CROWD)
    ]
    crowd = batch(admin, hidden, "hr") + batch(admin, visible, '["eng"]')
    docs.update({f"crowd{n}": doc for n, doc in enumerate(crowd)})
    yield Keys(tenant, clients[0], clients[1], clients[2], clients[3], docs=docs)
    for http in clients:
        http.close()


def code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


# Every endpoint that names a document id, as a key outside its groups calls it.
MATRIX: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/documents/{id}", None),
    ("DELETE", "/v1/documents/{id}", None),
    ("POST", "/v1/documents/{id}:reindex", None),
    ("PATCH", "/v1/documents/{id}", {"access_groups": []}),
]


@pytest.mark.parametrize(("method", "template", "body"), MATRIX)
@pytest.mark.parametrize("reader", ["eng", "plain"])
def test_a_hidden_document_is_404_everywhere(
    keys: Keys, method: str, template: str, body: dict[str, Any] | None, reader: str
) -> None:
    http: httpx.Client = getattr(keys, reader)
    response = http.request(method, template.format(id=keys.docs["hr"]), json=body)
    assert response.status_code == 404, response.text
    assert code(response) == "document_not_found"
    # The same answer as for an id that does not exist.
    missing = http.request(method, template.format(id=uuid.uuid4()), json=body)
    assert missing.status_code == 404 and code(missing) == "document_not_found"
    # The readers of its group, and the admin, still see it, ready and unchanged.
    for owner in (keys.hr, keys.admin):
        seen = owner.get(f"/v1/documents/{keys.docs['hr']}")
        assert seen.status_code == 200, seen.text
        assert seen.json()["status"] == "ready" and seen.json()["access_groups"] == ["hr"]


def test_submitting_under_a_hidden_id_is_404(keys: Keys) -> None:
    body = {"text": "Overwrite attempt.", "document_id": keys.docs["hr"]}
    response = keys.eng.post("/v1/documents", json=body)
    assert response.status_code == 404 and code(response) == "document_not_found"
    assert keys.hr.get(f"/v1/documents/{keys.docs['hr']}").json()["content_sha256"] != ""


def test_the_same_content_under_a_hidden_document_becomes_a_new_document(keys: Keys) -> None:
    response = keys.eng.post("/v1/documents", json={"text": SECRET})
    assert response.status_code == 202, response.text
    assert response.json()["document_id"] != keys.docs["hr"]
    assert wait_job(keys.eng, response.json()["job_id"])["status"] == "succeeded"
    original = keys.admin.get(f"/v1/documents/{keys.docs['hr']}").json()
    assert original["access_groups"] == ["hr"] and original["status"] == "ready"
    deleted = keys.eng.delete(f"/v1/documents/{response.json()['document_id']}")
    assert deleted.status_code == 202, deleted.text
    assert wait_job(keys.eng, deleted.json()["job_id"])["status"] == "succeeded"
    # The content still leads to the hidden document for its readers: the same upload by the
    # admin is a no-op that reports it.
    again = keys.admin.post("/v1/documents", json={"text": SECRET, "title": "Payroll"})
    assert again.status_code == 200, again.text
    assert again.json()["document_id"] == keys.docs["hr"]


def listed(http: httpx.Client) -> tuple[set[str], int]:
    page = http.get("/v1/documents", params={"limit": 1000}).json()
    return {d["document_id"] for d in page["documents"]}, int(page["total"])


def test_listings_show_only_readable_documents(keys: Keys) -> None:
    crowd = {k: v for k, v in keys.docs.items() if k.startswith("crowd")}
    hidden_crowd = {crowd[f"crowd{n}"] for n in range(HIDDEN_CROWD)}
    visible_crowd = set(crowd.values()) - hidden_crowd
    everything, total = listed(keys.admin)
    assert set(keys.docs.values()) <= everything and total == len(everything)
    eng, total = listed(keys.eng)
    assert {keys.docs["eng"], keys.docs["open"]} | visible_crowd <= eng
    assert total == len(eng)
    assert not eng & ({keys.docs["hr"]} | hidden_crowd)
    plain, total = listed(keys.plain)
    assert keys.docs["open"] in plain and total == len(plain)
    assert not plain & ({keys.docs["hr"], keys.docs["eng"]} | set(crowd.values()))
    hr, _ = listed(keys.hr)
    assert keys.docs["hr"] in hr and keys.docs["eng"] not in hr
    # Paging counts readable documents only.
    first = keys.eng.get("/v1/documents", params={"limit": 2, "offset": 1}).json()
    assert len(first["documents"]) == 2 and first["total"] == len(eng)


def search(http: httpx.Client, query: str, mode: str, **extra: Any) -> list[dict[str, Any]]:
    response = http.post("/v1/search", json={"query": query, "mode": mode, **extra})
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
def test_search_never_returns_hidden_chunks(keys: Keys, mode: str) -> None:
    query = "Quillon payroll vault word MARGRAVE-7731"
    assert any("MARGRAVE" in r["text"] for r in search(keys.hr, query, mode))
    for reader in (keys.eng, keys.plain):
        results = search(reader, query, mode, top_k=20)
        assert results, "the reader has documents of its own"
        assert all("MARGRAVE" not in r["text"] for r in results)
        assert keys.docs["hr"] not in {r["document_id"] for r in results}
        named = search(reader, query, mode, filter={"document_ids": [keys.docs["hr"]]})
        assert named == []


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
def test_top_k_stays_full_when_most_chunks_are_hidden(keys: Keys, mode: str) -> None:
    hidden = {keys.docs[f"crowd{n}"] for n in range(HIDDEN_CROWD)}
    best = search(keys.admin, CROWD_QUERY, mode, top_k=VISIBLE_CROWD)
    assert {r["document_id"] for r in best} <= hidden, "the hidden chunks rank first"
    results = search(keys.eng, CROWD_QUERY, mode, top_k=VISIBLE_CROWD)
    assert len(results) == VISIBLE_CROWD
    assert not {r["document_id"] for r in results} & hidden


def passages(http: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    """The passages that reached the job's prompt (its `passages` event)."""
    found = [data for _, name, data in events(http, job_id) if name == "passages"]
    return [p for event in found for p in event]


@pytest.mark.parametrize("named", [False, True])
def test_answers_never_see_hidden_chunks(keys: Keys, named: bool) -> None:
    body: dict[str, Any] = {
        "question": "Which word opens the Quillon payroll vault?",
        "top_k": 5,
        "min_relevance": 0,
    }
    if named:
        body["filter"] = {"document_ids": [keys.docs["hr"]]}
    response = keys.eng.post("/v1/answers", json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    record = wait_job(keys.eng, job_id)
    assert record["status"] == "succeeded", record
    shown = record["result"]["citations"] + passages(keys.eng, job_id)
    assert all("MARGRAVE" not in c["text"] for c in shown)
    assert keys.docs["hr"] not in {c["document_id"] for c in shown}
    if named:
        assert shown == []
    assert "MARGRAVE" not in record["result"]["answer"]


def test_chat_completions_never_see_hidden_chunks(keys: Keys) -> None:
    body = {
        "model": "ragq",
        "messages": [{"role": "user", "content": "Which word opens the Quillon payroll vault?"}],
        "ragq": {"top_k": 5, "min_relevance": 0},
    }
    response = keys.eng.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    completion = response.json()
    assert all("MARGRAVE" not in c["text"] for c in completion["citations"])
    assert "MARGRAVE" not in completion["choices"][0]["message"]["content"]
    job_id = response.headers[JOB_HEADER]
    assert all("MARGRAVE" not in p["text"] for p in passages(keys.eng, job_id))
    # The hr key's completion does reach the document.
    mine = keys.hr.post("/v1/chat/completions", json=body)
    assert mine.status_code == 200, mine.text
    assert any("MARGRAVE" in c["text"] for c in mine.json()["citations"])


def test_changing_groups_takes_effect_without_re_embedding(keys: Keys) -> None:
    doc = ingest(keys.admin, "The Quillon kiln reaches 1240 degrees at full load.", ["hr"], "Kiln")
    before = keys.admin.get(f"/v1/documents/{doc}").json()
    query = "Quillon kiln temperature degrees"
    assert doc not in {r["document_id"] for r in search(keys.eng, query, "dense")}
    scores = {
        r["text"]: r["score"] for r in search(keys.hr, query, "dense") if r["document_id"] == doc
    }
    assert scores

    response = keys.admin.patch(f"/v1/documents/{doc}", json={"access_groups": ["eng"]})
    assert response.status_code == 202, response.text
    # The registry shows the new groups at once; the job applies them to the chunks.
    assert keys.admin.get(f"/v1/documents/{doc}").json()["access_groups"] == ["eng"]
    record = wait_job(keys.admin, response.json()["job_id"])
    assert record["status"] == "succeeded" and record["kind"] == "access", record
    assert record["result"] == {"document_id": doc, "access_groups": ["eng"]}

    after = keys.admin.get(f"/v1/documents/{doc}").json()
    # No ingest or re-index ran: the document's last content job, chunks and hash are the same.
    for field in ("job_id", "chunks", "content_sha256", "status"):
        assert after[field] == before[field]
    moved = {
        r["text"]: r["score"] for r in search(keys.eng, query, "dense") if r["document_id"] == doc
    }
    # The same chunks with the same vectors: the same cosine similarities.
    assert moved.keys() == scores.keys()
    assert all(moved[text] == pytest.approx(scores[text], abs=1e-6) for text in scores)
    assert doc not in {r["document_id"] for r in search(keys.hr, query, "dense")}
    assert keys.hr.get(f"/v1/documents/{doc}").status_code == 404
    assert keys.eng.get(f"/v1/documents/{doc}").status_code == 200


def test_a_key_changes_only_its_own_groups(keys: Keys) -> None:
    doc = ingest(keys.eng, "The Quillon wind tunnel runs on Tuesdays.", ["eng"], "Tunnel")
    forbidden = keys.eng.patch(f"/v1/documents/{doc}", json={"access_groups": ["hr"]})
    assert forbidden.status_code == 403 and code(forbidden) == "access_group_forbidden"
    both = ingest(keys.admin, "The Quillon archive is shared by hr and eng.", ["eng", "hr"], "Arc")
    stripped = keys.eng.patch(f"/v1/documents/{both}", json={"access_groups": ["eng"]})
    assert stripped.status_code == 403 and code(stripped) == "access_group_forbidden"
    narrowed = keys.eng.patch(f"/v1/documents/{doc}", json={"access_groups": ["ops"]})
    assert narrowed.status_code == 202, narrowed.text
    assert wait_job(keys.eng, narrowed.json()["job_id"])["status"] == "succeeded"
    assert keys.eng.get(f"/v1/documents/{doc}").json()["access_groups"] == ["ops"]


@pytest.mark.parametrize(
    ("groups", "status", "error"),
    [
        (["hr"], 403, "access_group_forbidden"),
        (["eng", "finance"], 403, "access_group_forbidden"),
        (["has space"], 422, "invalid_access_groups"),
        ([""], 422, "invalid_access_groups"),
        (["x" * 65], 422, "invalid_access_groups"),
        ([f"g{n}" for n in range(33)], 422, "invalid_access_groups"),
    ],
)
def test_bad_or_foreign_groups_are_refused(
    keys: Keys, groups: list[str], status: int, error: str
) -> None:
    text = f"Refused document {uuid.uuid4()}."
    _, total = listed(keys.admin)
    responses = [
        keys.eng.post("/v1/documents", json={"text": text, "access_groups": groups}),
        keys.eng.patch(f"/v1/documents/{keys.docs['eng']}", json={"access_groups": groups}),
    ]
    if all(groups):
        form = {"access_groups": ",".join(groups)}
        files = {"file": ("r.txt", text.encode())}
        responses.append(keys.eng.post("/v1/documents", files=files, data=form))
        responses.append(
            keys.eng.post("/v1/documents:batch", files=[("files", ("r.txt", b"r"))], data=form)
        )
    for response in responses:
        assert response.status_code == status, response.text
        assert code(response) == error
    assert listed(keys.admin)[1] == total
    assert keys.admin.get(f"/v1/documents/{keys.docs['eng']}").json()["access_groups"] == ["eng"]


def test_malformed_groups_are_422(keys: Keys) -> None:
    for body in ({"access_groups": "hr"}, {"access_groups": [1]}, {}):
        response = keys.admin.patch(f"/v1/documents/{keys.docs['eng']}", json=body)
        assert response.status_code == 422, response.text
    response = keys.admin.post(
        "/v1/documents", files={"file": ("m.txt", b"Malformed.")}, data={"access_groups": "[1"}
    )
    assert response.status_code == 422 and code(response) == "invalid_access_groups"


def test_a_re_submission_with_other_groups_is_409(keys: Keys) -> None:
    doc = keys.docs["open"]
    body = {"text": OPEN_FACT, "title": "Cafeteria", "document_id": doc, "access_groups": ["hr"]}
    response = keys.admin.post("/v1/documents", json=body)
    assert response.status_code == 409 and code(response) == "access_groups_differ"
    # Without groups the document keeps its own: the same content is a no-op.
    del body["access_groups"]
    again = keys.admin.post("/v1/documents", json=body)
    assert again.status_code == 200, again.text


def test_keys_from_before_groups_and_the_dev_key_read_everything(
    keys: Keys, service: Service
) -> None:
    client_redis = open_redis(service.redis_url)
    key, _ = create_key(client_redis, keys.tenant, groups=["eng"])
    client_redis.hdel(apikey_key(key_hash(key)), "admin", "groups")
    with httpx.Client(base_url=service.base_url, timeout=60, headers=auth(key)) as old:
        assert old.get(f"/v1/documents/{keys.docs['hr']}").status_code == 200
    with httpx.Client(base_url=service.base_url, timeout=60, headers=service.headers) as dev:
        doc = ingest(dev, f"Dev key document {uuid.uuid4()}.", ["anything"], "Dev")
        assert dev.get(f"/v1/documents/{doc}").status_code == 200


def test_idempotency_keys_are_not_shared_across_access(keys: Keys) -> None:
    body = {"question": "Which word opens the Quillon payroll vault?", "top_k": 2}
    headers = {"Idempotency-Key": f"groups-{uuid.uuid4()}"}
    first = keys.admin.post("/v1/answers", json=body, headers=headers)
    assert first.status_code == 202, first.text
    other = keys.eng.post("/v1/answers", json=body, headers=headers)
    assert other.status_code == 202, other.text
    assert other.json()["job_id"] != first.json()["job_id"]
    for http, response in ((keys.admin, first), (keys.eng, other)):
        wait_job(http, response.json()["job_id"])


def test_job_records_stay_tenant_scoped(keys: Keys) -> None:
    """The documented rule: a job is the tenant's, so another key of it reads the record (its
    search ran with the groups of the key that created it)."""
    response = keys.hr.post(
        "/v1/answers", json={"question": "Which word opens the payroll vault?", "top_k": 2}
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert wait_job(keys.eng, job_id)["status"] == "succeeded"


def test_an_access_job_cannot_be_cancelled(keys: Keys) -> None:
    doc = keys.docs["eng"]
    response = keys.admin.patch(f"/v1/documents/{doc}", json={"access_groups": ["eng"]})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    cancel = keys.admin.delete(f"/v1/jobs/{job_id}")
    # Refused while it runs, and finished soon after (job_finished): never cancelled.
    assert cancel.status_code == 409, cancel.text
    assert code(cancel) in ("job_not_cancellable", "job_finished")
    assert wait_job(keys.admin, job_id)["status"] == "succeeded"


def test_a_change_during_an_ingest_reaches_the_new_version(keys: Keys) -> None:
    """Groups changed while a new version is being embedded: once both jobs ended, the new
    version's chunks have the new groups (the access job waits for the ingest's lock, and the
    ingest takes the registry's groups when it commits)."""
    doc = ingest(keys.admin, "The Quillon ledger, first edition.", ["hr"], "Ledger")
    paragraphs = [
        f"Ledger entry {n}: the Zorblax turbine spun {n * 7} times and the clerk noted it down "
        "with care, as every clerk of the Quillon works has done for many long years."
        for n in range(400)
    ]
    body = {"text": "\n\n".join(paragraphs), "title": "Ledger", "document_id": doc}
    update = keys.admin.post("/v1/documents", json=body)
    assert update.status_code == 202, update.text
    ingest_id = update.json()["job_id"]
    while keys.admin.get(f"/v1/jobs/{ingest_id}").json()["status"] == "queued":
        time.sleep(0.05)
    change = keys.admin.patch(f"/v1/documents/{doc}", json={"access_groups": ["eng"]})
    assert change.status_code == 202, change.text
    # The change came while the new version was being written (what this test is about).
    assert keys.admin.get(f"/v1/jobs/{ingest_id}").json()["status"] == "running"
    ingested = wait_job(keys.admin, ingest_id)
    changed = wait_job(keys.admin, change.json()["job_id"])
    assert ingested["status"] == changed["status"] == "succeeded"
    # The access job waited for the document's lock.
    assert changed["started_at"] >= ingested["finished_at"]

    found = search(keys.eng, "Zorblax turbine ledger", "sparse", top_k=50)
    assert doc in {r["document_id"] for r in found}
    assert all("first edition" not in r["text"] for r in found)
    assert doc not in {r["document_id"] for r in search(keys.hr, "Zorblax turbine", "sparse")}


def test_narrowing_groups_hides_a_document_before_its_chunks_change(
    keys: Keys, service: Service
) -> None:
    from common.keys import document_lock_key, groups_pending_key

    doc = ingest(keys.admin, "The Quillon foundry pours bronze at dusk.", None, "Foundry")
    query = "Quillon foundry bronze"
    assert doc in {r["document_id"] for r in search(keys.eng, query, "hybrid")}
    redis = open_redis(service.redis_url)
    # The access job waits for the document's lock, as it does behind a running ingest.
    lock = document_lock_key(keys.tenant, doc)
    assert redis.set(lock, "held by the test", px=60_000, nx=True)
    try:
        response = keys.admin.patch(f"/v1/documents/{doc}", json={"access_groups": ["hr"]})
        assert response.status_code == 202, response.text
        time.sleep(1)
        assert keys.admin.get(f"/v1/jobs/{response.json()['job_id']}").json()["status"] != (
            "succeeded"
        )
        # The chunks still carry no group, yet a key outside "hr" no longer finds them.
        for mode in ("hybrid", "dense", "sparse"):
            assert doc not in {r["document_id"] for r in search(keys.eng, query, mode)}
        assert doc in {r["document_id"] for r in search(keys.hr, query, "hybrid")}
        assert doc in {r["document_id"] for r in search(keys.admin, query, "hybrid")}
    finally:
        redis.delete(lock)
    assert wait_job(keys.admin, response.json()["job_id"])["status"] == "succeeded"
    assert doc not in {r["document_id"] for r in search(keys.eng, query, "hybrid")}
    assert not redis.sismember(groups_pending_key(keys.tenant), doc)
