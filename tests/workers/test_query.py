"""How the query worker turns a stored chunk into a citation."""

from __future__ import annotations

from common.vectorstore import SearchHit
from workers.query import _citation


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
