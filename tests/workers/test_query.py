"""How the query worker turns a stored chunk into a citation, and the passages it gives an
answer."""

from __future__ import annotations

import httpx
import pytest

from common.vectorstore import SearchHit
from tests.helpers import events, ingest_text
from workers.query import _citation

PUFFIN_FACTS = [
    ("Puffin chicks", "Atlantic puffin parents feed their chicks sand eels and small herring."),
    ("Puffin burrows", "Puffins nest in burrows they dig in the soil of grassy cliff tops."),
    ("Lighthouse keepers", "Keepers trimmed the lamp's wick every four hours through the night."),
]


def test_a_hit_becomes_a_citation_with_its_source_and_page() -> None:
    payload = {
        "document_id": "d1",
        "title": "Manual",
        "text": "Press the red button.",
        "source": "manual.pdf",
        "page": 3,
        "tenant": "t1",
        "version": "v1",
    }
    citation = _citation(SearchHit("p1", 0.75, payload))
    assert citation.model_dump() == {
        "document_id": "d1",
        "title": "Manual",
        "text": "Press the red button.",
        "score": 0.75,
        "source": "manual.pdf",
        "page": 3,
        "cited": None,
        "marker": None,
        "spans": [],
        "support": None,
    }


def test_a_hit_without_title_source_or_page_gets_the_defaults() -> None:
    citation = _citation(SearchHit("p1", 0.5, {"document_id": "d1", "text": "plain"}))
    assert (citation.title, citation.source, citation.page) == ("", None, None)


def test_an_answers_passages_are_those_a_search_for_its_question_finds(http: httpx.Client) -> None:
    """The API sends a question without a conversation in its message, and the query worker
    embeds it while it claims the job: the passages, scores included, are a search's."""
    for title, text in PUFFIN_FACTS:
        ingest_text(http, text, title)
    question = "What do Atlantic puffins feed their chicks?"
    found = http.post("/v1/search", json={"query": question, "top_k": 3}).json()["results"]
    body = {"question": question, "top_k": 3, "min_relevance": 0, "quote": False}
    job_id = http.post("/v1/answers", json=body).json()["job_id"]
    given = next(data for _, event, data in events(http, job_id) if event == "passages")
    assert [(p["document_id"], p["text"]) for p in given] == [
        (p["document_id"], p["text"]) for p in found
    ]
    assert [p["score"] for p in given] == pytest.approx([p["score"] for p in found], abs=1e-5)
