"""The answer prompt fits the model's context and numbers its passages."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from transformers import AutoTokenizer

from common import prompt
from common.conversation import Turn
from common.models import llm_model_path
from common.schemas import Citation
from common.settings import Settings, get_settings
from tests.conftest import REPO


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return AutoTokenizer.from_pretrained(llm_model_path(Settings(cache_dir=REPO / ".cache")))


def passage(n: int, words: int) -> Citation:
    return Citation(document_id=f"d{n}", title=f"T{n}", text="word " * words, score=1.0)


def test_passages_are_numbered_in_order(tokenizer) -> None:  # type: ignore[no-untyped-def]
    ids, kept = prompt.render(tokenizer, "Q?", [passage(1, 5), passage(2, 5)], 2048, 256)
    text = tokenizer.decode(ids)
    assert text.index("[1] T1") < text.index("[2] T2") < text.index("Question: Q?")
    assert [p.document_id for p in kept] == ["d1", "d2"]
    assert text.rstrip().endswith("assistant") and prompt.prefill(kept) == ""


@pytest.fixture
def steered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings with an instruction after the question and a prefill."""
    monkeypatch.setenv("RAGQ_ANSWER_INSTRUCTION", "Quote the passage you use.")
    monkeypatch.setenv("RAGQ_ANSWER_PREFILL", "According to the passages, ")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def test_instruction_follows_the_question_and_the_answer_starts_with_the_prefill(
    tokenizer,
    steered: None,  # type: ignore[no-untyped-def]
) -> None:
    passages = [Citation(document_id="d1", title="T1", text="one", score=1.0)]
    ids, kept = prompt.render(tokenizer, "Q?", passages, 2048, 256)
    text = tokenizer.decode(ids)
    assert text.index("Question: Q?") < text.index("Quote the passage you use.")
    # The model continues from the prefill.
    assert text.endswith("<|im_start|>assistant\nAccording to the passages, ")
    assert prompt.prefill(kept) == "According to the passages, "


def test_without_passages_the_answer_has_no_prefill(tokenizer) -> None:  # type: ignore[no-untyped-def]
    ids, kept = prompt.render(tokenizer, "Q?", [], 2048, 256)
    assert kept == [] and prompt.prefill(kept) == ""
    assert tokenizer.decode(ids).endswith("<|im_start|>assistant\n")


def test_prompt_leaves_room_for_the_answer(tokenizer) -> None:  # type: ignore[no-untyped-def]
    many = [passage(n, 1000) for n in range(10)]
    ids, kept = prompt.render(tokenizer, "Q?", many, 1024, 256)
    assert len(ids) <= 1024 - 256
    assert 0 < len(kept) < 10
    assert [p.document_id for p in kept] == [f"d{n}" for n in range(len(kept))]
    assert all(len(tokenizer(p.text)["input_ids"]) <= prompt.PASSAGE_TOKEN_CAP + 2 for p in kept)


def test_earlier_turns_come_before_the_question_without_their_markers(tokenizer) -> None:  # type: ignore[no-untyped-def]
    history = [
        Turn(role="user", content="What is the Zorblat telescope?"),
        Turn(role="assistant", content="A radio telescope on Mount Kestrel [1]."),
    ]
    ids, _ = prompt.render(
        tokenizer, "Who funded it?", [passage(1, 5)], 2048, 256, history, "Answer in French."
    )
    text = tokenizer.decode(ids)
    assert "Answer in French." in text
    assert text.index("Zorblat telescope?") < text.index("Mount Kestrel.") < text.index("[1] T1")
    assert "Kestrel [1]" not in text
    assert text.index("[1] T1") < text.index("Question: Who funded it?")


def test_oldest_turns_go_first_when_the_conversation_does_not_fit(tokenizer) -> None:  # type: ignore[no-untyped-def]
    history = []
    for n in range(8):
        history.append(Turn(role="user", content=f"question {n} " + "word " * 150))
        history.append(Turn(role="assistant", content=f"answer {n} " + "word " * 150))
    ids, kept = prompt.render(tokenizer, "Q?", [passage(1, 50)], 1024, 256, history)
    text = tokenizer.decode(ids)
    assert len(ids) <= 1024 - 256
    assert [p.document_id for p in kept] == ["d1"]  # passages stay while turns can go
    assert "question 0 " not in text and "answer 7 " in text
    assert "Question: Q?" in text


def _admits(tokenizer: Any, grammar: str | None) -> Callable[[str], bool]:
    import xgrammar

    assert grammar is not None
    info = xgrammar.TokenizerInfo.from_huggingface(tokenizer)
    compiled = xgrammar.GrammarCompiler(info).compile_grammar(grammar)
    return lambda text: xgrammar.GrammarMatcher(compiled).accept_string(text)


def test_the_quote_grammar_admits_a_passage_sentence_word_for_word_then_any_text(
    tokenizer,  # type: ignore[no-untyped-def]
) -> None:
    passages = [
        Citation(document_id="a", title="", text='It said "stop". Back\\slash here.', score=1.0),
        Citation(
            document_id="b", title="", text="A second passage. " + "long " * 200 + "end.", score=1.0
        ),
    ]
    admits = _admits(tokenizer, prompt.quote_grammar("?", passages, max_tokens=64))

    assert admits('"It said "stop"." [1] Any text\nat all.')
    assert admits('"Back\\slash here." [1]')
    assert admits('"It said "stop". Back\\slash here." [1]')  # and the next sentence
    assert admits('"A second passage." [2] So.')
    assert not admits('"It said stop." [1]')  # not word for word
    assert not admits('"A second passage." [1]')  # not its passage's number
    assert not admits("Free text first")
    assert not admits('"A second passage. long')  # longer than 3 characters a token of 64
    assert prompt.quote_grammar("?", passages[1:], max_tokens=4) is None  # none fits
    first = prompt.quote_grammar("?", passages[:1], max_tokens=64)
    assert first is not None and "second" not in first


LIGHTHOUSE = Citation(
    document_id="lighthouse",
    title="Harrow Point Lighthouse",
    text=(
        "The Harrow Point lighthouse stands on the cape. It was built in 1874\n"
        "by Agnes Fairlie. Its light is green.\n\nVisitors climb its 132 steps."
    ),
    score=1.0,
)


def test_a_quote_starts_where_the_passage_says_what_the_question_asks_beyond_its_title(
    tokenizer,  # type: ignore[no-untyped-def]
) -> None:
    grammar = prompt.quote_grammar(
        "When was the Harrow Point lighthouse built?", [LIGHTHOUSE], max_tokens=64
    )
    admits = _admits(tokenizer, grammar)
    assert admits('"It was built in 1874 by Agnes Fairlie." [1]')  # the wrapped line joined
    assert admits('"It was built in 1874 by Agnes Fairlie. Its light is green." [1]')
    assert not admits('"It was built in 1874\nby Agnes Fairlie." [1]')
    # Only the title's words: where the lighthouse is, not when it was built.
    assert not admits('"The Harrow Point lighthouse stands on the cape." [1]')
    assert not admits('"Its light is green." [1]')
    # Not into the next paragraph.
    assert not admits('"It was built in 1874 by Agnes Fairlie. Its light is green. Visitors')


def test_a_question_no_sentence_answers_may_quote_any_sentence(
    tokenizer,  # type: ignore[no-untyped-def]
) -> None:
    admits = _admits(tokenizer, prompt.quote_grammar("Where is it?", [LIGHTHOUSE], max_tokens=64))
    assert admits('"The Harrow Point lighthouse stands on the cape." [1]')
    assert admits('"Visitors climb its 132 steps." [1]')
