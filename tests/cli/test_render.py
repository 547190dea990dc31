"""`ragq ask`'s sources: each with the sentences it supports, then the unsupported ones."""

from __future__ import annotations

from cli.render import sources


def citation(doc: str, cited: bool, spans: list[str], marker: int | None = None) -> dict:  # type: ignore[type-arg]
    return {
        "document_id": doc,
        "title": doc.title(),
        "source": f"{doc}.md",
        "cited": cited,
        "marker": marker,
        "spans": [{"start": 0, "end": len(t), "text": t, "support": 0.8} for t in spans],
    }


def test_sources_show_their_sentences_and_unsupported_ones_are_marked() -> None:
    result = {
        "answer": "…",
        "citations": [
            citation("tower", True, ["It is 330 metres tall [1]."], marker=1),
            citation("bridge", True, ["The bridge is red."]),
            citation("wine", False, []),
        ],
        "unsupported": [{"start": 0, "end": 9, "text": "Invented.", "support": 0.1}],
    }
    assert sources(result) == [
        "",
        "Sources:",
        "  [1] Tower  (tower.md)",
        "      “It is 330 metres tall [1].” (0.80)",
        "  [2] Bridge  (bridge.md)",
        "      “The bridge is red.” (0.80)",
        "",
        "Also retrieved:",
        "  - Wine  (wine.md)",
        "",
        "Not supported by any source:",
        "  ! “Invented.”",
    ]


def test_a_marked_passage_that_supports_nothing_keeps_the_others_numbers() -> None:
    result = {
        "citations": [citation("wine", False, [], marker=1), citation("tower", True, ["Tall."])],
    }
    lines = sources(result)
    assert "  [2] Tower  (tower.md)" in lines
    assert "  - Wine  (wine.md)" in lines


def test_nothing_to_show_prints_nothing() -> None:
    assert sources({"citations": [], "unsupported": []}) == []


def test_a_quoted_span_is_shown_in_one_pair_of_quotes_with_its_marker() -> None:
    quoted = citation("tower", True, ['"It is 330 metres tall." [1]'], marker=1)
    assert "      “It is 330 metres tall.” [1] (0.80)" in sources({"citations": [quoted]})
