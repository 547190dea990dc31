"""Attribution: sentences with exact offsets, each cited by the passages that support it."""

from __future__ import annotations

from common.attribution import attribute, marked, sentences
from common.citations import rewrite
from common.schemas import Citation, CitationMode

PASSAGES = [
    Citation(
        document_id="tower",
        title="Eiffel Tower",
        text="The Eiffel Tower in Paris is 330 metres tall and was completed in 1889.",
        score=0.9,
    ),
    Citation(
        document_id="bridge",
        title="Golden Gate Bridge",
        text="The Golden Gate Bridge spans the strait at San Francisco; its main span is 1280 m.",
        score=0.8,
    ),
    Citation(
        document_id="wine",
        title="Burgundy",
        text="Burgundy wines are made mostly from pinot noir and chardonnay grapes.",
        score=0.2,
    ),
]


def test_sentences_have_exact_offsets() -> None:
    answer = "  First one [1]. Second, e.g. this one?\n- Third item\n\n1. Fourth [2, 3]. [4]"
    found = sentences(answer)
    assert [s.text for s in found] == [
        "First one [1].",
        "Second, e.g. this one?",
        "- Third item",
        "1. Fourth [2, 3]. [4]",
    ]
    assert all(answer[s.start : s.end] == s.text for s in found)


def test_a_marker_after_the_full_stop_belongs_to_its_sentence() -> None:
    found = sentences("It is tall. [1] It is old.")
    assert [s.text for s in found] == ["It is tall. [1]", "It is old."]


def test_a_quote_with_its_marker_is_a_sentence_of_its_own() -> None:
    found = sentences('"It is 330 metres tall" [1] So it is tall. He said "no" and left.')
    assert [s.text for s in found] == [
        '"It is 330 metres tall" [1]',
        "So it is tall.",
        'He said "no" and left.',
    ]


def test_in_prose_a_wrapped_line_goes_on_and_a_blank_line_ends_a_sentence() -> None:
    text = "It was built in 1874\nby Agnes Fairlie. Its light\nis green\n\nVisitors climb"
    found = sentences(text, prose=True)
    assert [s.text for s in found] == [
        "It was built in 1874\nby Agnes Fairlie.",
        "Its light\nis green",
        "Visitors climb",
    ]
    assert all(text[s.start : s.end] == s.text for s in found)
    assert len(sentences(text)) == 5  # an answer's line breaks end sentences


def test_text_without_letters_is_no_sentence() -> None:
    assert sentences("") == []
    assert sentences(" [1]. 42. ") == []


def test_marked_numbers_each_once() -> None:
    assert marked("A [2] and [1, 2; 3].") == [2, 1, 3]


def test_a_fact_from_one_passage_cites_that_passage_with_its_span() -> None:
    answer = "The Eiffel Tower is 330 metres tall. Burgundy is made from pinot noir grapes."
    result = attribute(answer, PASSAGES, [], CitationMode.ATTRIBUTION)
    cited = {c.document_id: c for c in result.citations if c.cited}
    assert list(cited) == ["tower", "wine"]
    (span,) = cited["tower"].spans
    assert answer[span.start : span.end] == span.text == "The Eiffel Tower is 330 metres tall."
    assert span.support >= 0.5
    assert cited["wine"].spans[0].start == answer.index("Burgundy")
    assert result.unsupported == []
    assert [c.document_id for c in result.citations] == ["tower", "wine", "bridge"]
    assert result.citations[2].cited is False and result.citations[2].spans == []


def test_a_sentence_no_passage_holds_is_unsupported() -> None:
    answer = "The Eiffel Tower is 330 metres tall. Photosynthesis needs chlorophyll and sunlight."
    result = attribute(answer, PASSAGES, [])
    (span,) = result.unsupported
    assert span.text == "Photosynthesis needs chlorophyll and sunlight."
    assert answer[span.start : span.end] == span.text
    assert span.support < 0.5


def test_a_contradicting_answer_on_the_passages_topic_is_unsupported() -> None:
    answer = "The Eiffel Tower stands in Berlin and was demolished during 1950 by engineers."
    result = attribute(answer, PASSAGES, [])
    assert [s.text for s in result.unsupported] == [answer]
    assert not any(c.cited for c in result.citations)


def test_markers_keep_their_numbers_and_are_kept_where_they_agree() -> None:
    text, _ = rewrite(
        "The Golden Gate Bridge main span is 1280 m [2]. The tower is 330 metres tall [3].",
        PASSAGES,
    )
    # The text now says [1] for the bridge and [2] for the wine passage.
    order = [1, 2]
    result = attribute(text, PASSAGES, order, CitationMode.BOTH)
    by_id = {c.document_id: c for c in result.citations}
    assert [c.document_id for c in result.citations] == ["bridge", "wine", "tower"]
    assert by_id["bridge"].marker == 1 and by_id["bridge"].cited
    # The model's [2] (wine) does not support the tower sentence: kept in place, not cited.
    assert by_id["wine"].marker == 2 and not by_id["wine"].cited
    assert by_id["tower"].marker is None and by_id["tower"].cited
    assert by_id["tower"].spans[0].text == "The tower is 330 metres tall [2]."


def test_markers_mode_cites_only_what_the_markers_name() -> None:
    text = "The Golden Gate Bridge main span is 1280 m [1]. The tower is 330 metres tall."
    result = attribute(text, PASSAGES, [1], CitationMode.MARKERS)
    cited = [c for c in result.citations if c.cited]
    assert [c.document_id for c in cited] == ["bridge"]
    assert cited[0].spans[0].end == text.index(" The tower")
    assert [s.text for s in result.unsupported] == ["The tower is 330 metres tall."]


def test_attribution_mode_ignores_a_marker_that_does_not_agree() -> None:
    text = "The Eiffel Tower is 330 metres tall [1]."
    result = attribute(text, PASSAGES, [2], CitationMode.ATTRIBUTION)
    assert [c.document_id for c in result.citations if c.cited] == ["tower"]
    assert result.citations[0].document_id == "wine" and result.citations[0].marker == 1


def test_every_sentence_is_supported_or_unsupported() -> None:
    answer = "Paris has the Eiffel Tower. It is 330 metres tall. Nobody knows why. Yes."
    result = attribute(answer, PASSAGES, [])
    covered = {(s.start, s.end) for c in result.citations for s in c.spans}
    covered |= {(s.start, s.end) for s in result.unsupported}
    assert covered == {(s.start, s.end) for s in sentences(answer)}


def test_no_passages_leaves_every_sentence_unsupported() -> None:
    result = attribute("Something. Else.", [], [])
    assert result.citations == []
    assert [s.text for s in result.unsupported] == ["Something.", "Else."]


def test_the_prefill_the_service_wrote_is_not_weighed() -> None:
    start = "According to the passages, "
    answer = start + "the Eiffel Tower is 330 metres tall."
    plain = attribute(answer, PASSAGES, [], CitationMode.ATTRIBUTION)
    skipped = attribute(answer, PASSAGES, [], CitationMode.ATTRIBUTION, skip=len(start))
    (span,) = skipped.citations[0].spans
    # The span is still the whole sentence; only the model's own words are weighed.
    assert (span.start, span.text) == (0, answer)
    assert span.support == 1.0 > plain.citations[0].spans[0].support
