"""Request bodies: what the shared request shapes refuse."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.schemas import AnswerIn, DocumentIn


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_in_numbers_and_metadata(number: str) -> None:
    with pytest.raises(ValidationError, match="finite number"):
        AnswerIn.model_validate_json(f'{{"question": "q", "min_relevance": {number}}}')
    with pytest.raises(ValidationError, match="finite number"):
        DocumentIn.model_validate_json(f'{{"text": "t", "metadata": {{"score": {number}}}}}')


def test_finite_numbers_pass() -> None:
    answer = AnswerIn.model_validate_json('{"question": "q", "min_relevance": 0.25}')
    assert answer.min_relevance == 0.25
    document = DocumentIn.model_validate_json('{"text": "t", "metadata": {"score": 1.5}}')
    assert document.metadata == {"score": 1.5}
