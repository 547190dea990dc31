"""`POST /v1/search` and retrieval options of answers, end to end through a real query worker."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import Service
from tests.helpers import ingest_text, wait_job

PUMP = "Maintenance log: the gasket of pump model QZ-88317 is replaced every spring."
DECOY = "Maintenance log: pump gaskets in the boiler room are replaced when they leak."
CAR = "Automobiles need their engine oil changed every ten thousand kilometres."


@pytest.fixture(scope="module")
def corpus(service: Service) -> dict[str, str]:
    """Documents for the retrieval tests; their ids by name."""
    made = {}
    with httpx.Client(base_url=service.base_url, timeout=30, headers=service.headers) as http:
        for name, text in (("pump", PUMP), ("decoy", DECOY), ("car", CAR)):
            made[name] = ingest_text(http, text, f"{name} notes")["document_id"]
    return made


def search(http: httpx.Client, query: str, **options: Any) -> list[dict[str, Any]]:
    """The document ids of the search's results, best first."""
    response = http.post("/v1/search", json={"query": query, **options})
    assert response.status_code == 200, response.text
    return response.json()["results"]  # type: ignore[no-any-return]


def ids(results: list[dict[str, Any]]) -> list[str]:
    return [r["document_id"] for r in results]


@pytest.mark.parametrize("mode", ["hybrid", "sparse"])
def test_a_rare_exact_term_is_found(http: httpx.Client, corpus: dict[str, str], mode: str) -> None:
    assert ids(search(http, "QZ-88317", mode=mode, top_k=3))[0] == corpus["pump"]


@pytest.mark.parametrize("mode", ["hybrid", "dense"])
def test_a_paraphrase_without_shared_words_is_found(
    http: httpx.Client, corpus: dict[str, str], mode: str
) -> None:
    query = "how often should a car get fresh lubricant"
    assert corpus["car"] in ids(search(http, query, mode=mode, top_k=3))


def test_sparse_alone_misses_the_paraphrase(http: httpx.Client, corpus: dict[str, str]) -> None:
    query = "how often should a car get fresh lubricant"
    assert corpus["car"] not in ids(search(http, query, mode="sparse", top_k=10))


def test_the_default_mode_is_hybrid(http: httpx.Client, corpus: dict[str, str]) -> None:
    response = http.post("/v1/search", json={"query": "QZ-88317"})
    assert response.json()["mode"] == "hybrid"


def test_filters_exclude_other_documents(http: httpx.Client, corpus: dict[str, str]) -> None:
    only = {"document_ids": [corpus["decoy"], corpus["car"]]}
    found = ids(search(http, "QZ-88317 pump gasket", filter=only, top_k=10))
    assert found and set(found) <= {corpus["decoy"], corpus["car"]}
    titled = ids(search(http, "QZ-88317 pump gasket", filter={"titles": ["car notes"]}))
    assert set(titled) == {corpus["car"]}


def test_metadata_filters(http: httpx.Client) -> None:
    suite = str(uuid.uuid4())
    made = {}
    for n in (1, 2):
        body = {"text": f"Ferry timetable {n}: boats leave hourly.", "metadata": {"suite": suite}}
        body["metadata"]["n"] = n
        made[n] = http.post("/v1/documents", json=body).json()
    for accepted in made.values():
        assert wait_job(http, accepted["job_id"])["status"] == "succeeded"
    found = ids(search(http, "ferry timetable", filter={"metadata": {"suite": suite, "n": 2}}))
    assert found == [made[2]["document_id"]]


def test_answers_retrieve_only_from_filtered_documents(
    http: httpx.Client, corpus: dict[str, str]
) -> None:
    body = {
        "question": "When is the QZ-88317 gasket replaced?",
        "filter": {"titles": ["car notes"]},
    }
    record = wait_job(http, http.post("/v1/answers", json=body).json()["job_id"])
    assert record["status"] == "succeeded", record
    assert {c["document_id"] for c in record["result"]["citations"]} == {corpus["car"]}


def test_answer_markers_match_its_citations(http: httpx.Client, corpus: dict[str, str]) -> None:
    body = {"question": "When is the gasket of pump QZ-88317 replaced?", "top_k": 3}
    record = wait_job(http, http.post("/v1/answers", json=body).json()["job_id"])
    assert record["status"] == "succeeded", record
    result = record["result"]
    citations = result["citations"]
    groups = re.findall(r"\[([\d, ]+)\]", result["answer"])
    markers = {int(n) for group in groups for n in group.split(",")}
    # Marked passages come first, [n] at position n; then the other cited ones, then the rest.
    assert markers == set(range(1, len(markers) + 1))
    assert [c["marker"] for c in citations[: len(markers)]] == sorted(markers)
    rest = citations[len(markers) :]
    assert all(c["marker"] is None for c in rest)
    assert [c["cited"] for c in rest] == sorted((c["cited"] for c in rest), reverse=True)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"query": "  "}, "empty_query"),
        ({"query": "x", "top_k": 100_000}, "invalid_top_k"),
        ({"query": "x", "mode": "fuzzy"}, "invalid_request"),
        ({"query": "x", "filter": {"metadata": {"a": [1]}}}, "invalid_request"),
    ],
)
def test_bad_searches_get_a_422_with_a_code(
    http: httpx.Client, body: dict[str, Any], code: str
) -> None:
    response = http.post("/v1/search", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code
