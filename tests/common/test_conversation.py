"""History-aware retrieval: earlier questions join the query at a lower weight."""

from __future__ import annotations

import numpy as np

from common import conversation
from common.conversation import Turn
from common.sparse import SparseVector


def test_earlier_questions_are_the_users_last_few() -> None:
    history = [Turn(role="user", content=f"q{n}") for n in range(5)]
    history.insert(2, Turn(role="assistant", content="an answer"))
    assert conversation.earlier_questions(history) == "q2\nq3\nq4"
    assert conversation.earlier_questions([]) == ""


def test_the_last_question_leads_the_dense_query() -> None:
    last, earlier = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    vector = np.array(conversation.dense_query(last, earlier))
    assert abs(np.linalg.norm(vector) - 1) < 1e-6
    assert vector[0] > vector[1] > 0
    assert conversation.dense_query(last, None) == [1.0, 0.0]


def test_earlier_terms_are_added_at_a_lower_weight() -> None:
    merged = conversation.sparse_query(
        SparseVector([1, 2], [1.0, 1.0]), SparseVector([2, 3], [1.0, 1.0])
    )
    weights = dict(zip(merged.indices, merged.values, strict=True))
    assert weights == {1: 1.0, 2: 1.0, 3: conversation.EARLIER_WEIGHT}


def test_turns_survive_a_job_field() -> None:
    turns = [Turn(role="user", content="a"), Turn(role="assistant", content="b")]
    assert conversation.loads(conversation.dumps(turns)) == turns
    assert conversation.loads(None) == []
