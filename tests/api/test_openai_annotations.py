"""Citations become OpenAI `url_citation` annotations: marker spans, or attributed spans."""

from __future__ import annotations

from api.services.chat import citation_spans, url_citations

CITATIONS = [
    {"document_id": "doc a", "title": "A"},
    {"document_id": "b", "title": ""},
]


def test_each_marker_number_is_an_annotation_over_the_marker() -> None:
    content = "Tavik [1]. Lit in 1893 [1, 2]. Nothing [7]."
    spans = citation_spans(content, CITATIONS)
    assert [(n, content[s:e]) for n, s, e in spans] == [(0, "[1]"), (0, "[1, 2]"), (1, "[1, 2]")]
    notes = url_citations(content, CITATIONS, "http://h")
    assert notes[0].url_citation.url == "http://h/v1/documents/doc%20a"
    assert notes[0].url_citation.title == "A"
    assert notes[2].url_citation.title == "b"  # no title: the document id


def test_attributed_spans_win_over_markers() -> None:
    cited = [{**CITATIONS[0], "spans": [{"start": 0, "end": 5}]}, CITATIONS[1]]
    assert citation_spans("Tavik [1] and [2].", cited) == [(0, 0, 5)]
