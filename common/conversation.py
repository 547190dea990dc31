"""Conversations: the earlier turns of a chat, for retrieval and for the prompt.

A follow-up ("and who funded it?") names nothing its answer can be found by; the turns before it
do. Retrieval therefore searches with the last question and, at a lower weight, the user's
earlier questions: their dense vectors are summed (the last one weighted 1, the earlier ones
`EARLIER_WEIGHT` together), and their BM25 terms are merged (the earlier turns' terms at
`EARLIER_WEIGHT`). The last question still leads, so a change of subject is followed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from common.sparse import SparseVector

if TYPE_CHECKING:  # numpy is a worker dependency; the API only reads and writes turns
    import numpy as np

EARLIER_WEIGHT = 0.6
EARLIER_TURNS = 3  # the user's last questions before this one that retrieval looks at


class Turn(BaseModel):
    """One earlier message of the conversation."""

    role: Literal["user", "assistant"]
    content: str


def dumps(turns: Sequence[Turn]) -> str:
    """Turns as a job field."""
    return json.dumps([t.model_dump() for t in turns])


def loads(value: str | None) -> list[Turn]:
    """Turns from a job field (none when absent)."""
    return [Turn.model_validate(t) for t in json.loads(value)] if value else []


def earlier_questions(history: Sequence[Turn]) -> str:
    """The user's last few questions before this one, oldest first, as one text."""
    asked = [t.content for t in history if t.role == "user"][-EARLIER_TURNS:]
    return "\n".join(asked)


def dense_query(question: np.ndarray, earlier: np.ndarray | None) -> list[float]:
    """The question's vector with the earlier questions' one added at a lower weight, normalised."""
    import numpy as np

    vector = question if earlier is None else question + EARLIER_WEIGHT * earlier
    norm = float(np.linalg.norm(vector)) or 1.0
    return list((vector / norm).tolist())


def sparse_query(question: SparseVector, earlier: SparseVector | None) -> SparseVector:
    """The question's terms, and the earlier questions' other terms at a lower weight."""
    weights = dict(zip(question.indices, question.values, strict=True))
    if earlier is not None:
        for index, value in zip(earlier.indices, earlier.values, strict=True):
            weights.setdefault(index, EARLIER_WEIGHT * value)
    return SparseVector(list(weights), list(weights.values()))
