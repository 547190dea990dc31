"""The answer prompt fits the model's context and numbers its passages."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from common import prompt
from common.models import llm_model_path
from common.schemas import Citation
from common.settings import Settings
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
    assert text.rstrip().endswith("assistant")


def test_prompt_leaves_room_for_the_answer(tokenizer) -> None:  # type: ignore[no-untyped-def]
    many = [passage(n, 1000) for n in range(10)]
    ids, kept = prompt.render(tokenizer, "Q?", many, 1024, 256)
    assert len(ids) <= 1024 - 256
    assert 0 < len(kept) < 10
    assert [p.document_id for p in kept] == [f"d{n}" for n in range(len(kept))]
    assert all(len(tokenizer(p.text)["input_ids"]) <= prompt.PASSAGE_TOKEN_CAP + 2 for p in kept)
