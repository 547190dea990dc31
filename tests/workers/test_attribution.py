"""Attribution on the live service: spans at the final answer's exact offsets, unsupported
sentences listed, and the citation mode a request chooses."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from common import prompt
from common.attribution import attribute, sentences
from common.schemas import Citation, CitationMode
from common.settings import Settings
from tests.helpers import events, ingest_text

MIN_SUPPORT = Settings.model_fields["attribution_min_support"].default  # the tests' service
FACT = (
    "The Brannock observatory on Mount Selvik was built in 1912 by the astronomer Ilse "
    "Varkonen. Its main telescope has a mirror 74 centimetres across."
)
OTHER = (
    "Kelp forests grow in cold coastal waters. Sea otters eat the urchins that would "
    "otherwise graze the kelp down to bare rock."
)


@pytest.fixture(scope="module")
def documents(service) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Two ingested documents, by name: their document ids."""
    with httpx.Client(base_url=service.base_url, timeout=30, headers=service.headers) as http:
        fact = ingest_text(http, FACT, "Brannock observatory")["document_id"]
        other = ingest_text(http, OTHER, "Kelp forests")["document_id"]
    return {"fact": fact, "other": other}


def answer(http: httpx.Client, question: str, ids: list[str], **extra: Any) -> dict[str, Any]:
    """Ask over only these documents; the final record, checked against the streamed events."""
    body = {"question": question, "filter": {"document_ids": ids}, "min_relevance": 0, **extra}
    response = http.post("/v1/answers", json=body)
    assert response.status_code == 202, response.text
    seen = events(http, response.json()["job_id"])
    final = seen[-1][2]
    assert final["status"] == "succeeded", final
    result: dict[str, Any] = final["result"]
    streamed = "".join(data["text"] for _, name, data in seen if name == "token")
    assert streamed == result["answer"]
    (cited_event,) = [data for _, name, data in seen if name == "citations"]
    assert cited_event == result["citations"]
    # The worker's attribution is the unit-tested function's, on the passages the model had.
    (given,) = [data for _, name, data in seen if name == "passages"]
    passages = [Citation.model_validate(p) for p in given]
    marked = sorted((c for c in result["citations"] if c["marker"]), key=lambda c: c["marker"])
    keys = [(p["document_id"], p["text"]) for p in given]
    order = [keys.index((c["document_id"], c["text"])) for c in marked]
    mode = CitationMode(result["citation_mode"])
    start = prompt.prefill(passages)
    assert result["answer"].startswith(start)  # the prefill the model continued from
    expected = attribute(result["answer"], passages, order, mode, MIN_SUPPORT, len(start))
    assert [c.model_dump() for c in expected.citations] == result["citations"]
    assert [s.model_dump() for s in expected.unsupported] == result["unsupported"]
    return result


def check_spans(result: dict[str, Any]) -> None:
    """Every span is the answer's text at its offsets; every sentence is cited or unsupported."""
    text = result["answer"]
    spans = [s for c in result["citations"] for s in c["spans"]] + result["unsupported"]
    for span in spans:
        assert 0 <= span["start"] < span["end"] <= len(text), span
        assert text[span["start"] : span["end"]] == span["text"], span
        assert 0.0 <= span["support"] <= 1.0
    covered = {(s["start"], s["end"]) for s in spans}
    unsupported = {(s["start"], s["end"]) for s in result["unsupported"]}
    cited = {(s["start"], s["end"]) for c in result["citations"] for s in c["spans"]}
    assert covered == {(s.start, s.end) for s in sentences(text)}
    assert not unsupported & cited
    for citation in result["citations"]:
        assert citation["cited"] == bool(citation["spans"]), citation


@pytest.fixture(scope="module")
def built(service, documents: dict[str, str]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The default answer (quoted) to who built the observatory and when, over both documents."""
    with httpx.Client(base_url=service.base_url, timeout=30, headers=service.headers) as http:
        ids = [documents["fact"], documents["other"]]
        return answer(http, "Who built the Brannock observatory, and when?", ids)


def test_an_answer_repeating_a_fact_cites_its_passage_with_that_sentence(
    built: dict[str, Any], documents: dict[str, str]
) -> None:
    result = built
    check_spans(result)
    assert result["citation_mode"] == "both"
    # The tiny test model's text cannot be chosen (tests/common/test_attribution.py controls
    # it); what it says about the fact is checked where it says it.
    by_id = {c["document_id"]: c for c in result["citations"]}
    spans = {(s["start"], s["end"]) for s in by_id[documents["fact"]]["spans"]}
    for sentence in sentences(result["answer"]):
        if "Varkonen" in sentence.text and "kelp" not in sentence.text.lower():
            assert (sentence.start, sentence.end) in spans, result


def test_an_answer_the_passages_do_not_hold_is_unsupported(
    http: httpx.Client, documents: dict[str, str]
) -> None:
    # Only the kelp passage is given: whatever the model says about the observatory's builder
    # comes from elsewhere, or says that it does not know.
    result = answer(
        http, "Who built the Brannock observatory, and when?", [documents["other"]], quote=False
    )
    check_spans(result)
    text = result["answer"]
    about = [s for s in sentences(text) if "kelp" not in s.text.lower()]
    assert about, f"the answer only talks about kelp: {text!r}"
    unsupported = {(s["start"], s["end"]) for s in result["unsupported"]}
    assert {(s.start, s.end) for s in about} <= unsupported, result
    assert all(not c["cited"] for c in result["citations"])


def test_markers_mode_cites_only_marked_passages(
    http: httpx.Client, documents: dict[str, str]
) -> None:
    result = answer(
        http,
        "How wide is the mirror of the Brannock observatory's telescope?",
        [documents["fact"], documents["other"]],
        citation_mode="markers",
    )
    check_spans(result)
    assert result["citation_mode"] == "markers"
    for citation in result["citations"]:
        assert citation["cited"] == (citation["marker"] is not None), citation


@pytest.mark.parametrize("value", ["all", "", 1, ["both"]])
def test_citation_mode_is_one_of_three(http: httpx.Client, value: object) -> None:
    response = http.post("/v1/answers", json={"question": "x", "citation_mode": value})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"


def test_a_quoted_answer_opens_with_the_sentence_that_answers_and_cites_it(
    built: dict[str, Any], documents: dict[str, str]
) -> None:
    result = built
    check_spans(result)
    text = result["answer"]
    quote = re.match(r'"(.+?)" \[1\]', text)
    assert quote, f"the answer does not open with a quote: {text!r}"
    # The sentence with the question's words beyond the title ("built"), maybe run on.
    fact = sentences(FACT)
    assert quote[1] in (fact[0].text, FACT), text
    # Quoted by default, and written from the best passage only (RAGQ_ANSWER_QUOTE_PASSAGES).
    (first,) = result["citations"]
    assert first["marker"] == 1 and first["cited"] and first["document_id"] == documents["fact"]
    # Each sentence of the quote is a span of that passage, word for word.
    inside = [(s.start, s.end) for s in sentences(text) if s.end <= quote.end()]
    spans = [s for s in first["spans"] if s["end"] <= quote.end()]
    assert [(s["start"], s["end"]) for s in spans] == inside and inside[0][0] == 0
    assert all(s["support"] == 1.0 for s in spans)
