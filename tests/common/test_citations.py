"""Citation markers are renumbered in citation order, invalid ones dropped, even mid-stream."""

from __future__ import annotations

import pytest

from common.citations import MarkerRewriter, rewrite
from common.schemas import Citation


def passages(n: int) -> list[Citation]:
    return [Citation(document_id=f"d{i}", title=f"T{i}", text=f"p{i}", score=1.0) for i in range(n)]


def test_markers_are_renumbered_in_the_order_they_are_first_cited() -> None:
    answer, cited = rewrite("Fog [3] and rain [1]. Fog again [3].", passages(3))
    assert answer == "Fog [1] and rain [2]. Fog again [1]."
    assert [c.document_id for c in cited] == ["d2", "d0", "d1"]
    assert [c.cited for c in cited] == [True, True, False]


def test_markers_to_no_passage_are_dropped_with_their_space() -> None:
    answer, cited = rewrite("Yes [7]. No [0], maybe [2].", passages(2))
    assert answer == "Yes. No, maybe [1]."
    assert [c.document_id for c in cited] == ["d1", "d0"]


def test_lists_of_markers_keep_their_valid_numbers() -> None:
    answer, _ = rewrite("Both [2, 9, 1] and [2;2].", passages(2))
    assert answer == "Both [1, 2] and [1]."


def test_no_marker_keeps_the_retrieval_order() -> None:
    answer, cited = rewrite("I do not know.", passages(2))
    assert answer == "I do not know."
    assert [(c.document_id, c.cited) for c in cited] == [("d0", False), ("d1", False)]


@pytest.mark.parametrize("cut", range(1, 30))
def test_a_marker_split_across_pieces_is_rewritten_whole(cut: int) -> None:
    text = "The dam [12] held; see [2] and [3, 5]."
    rewriter = MarkerRewriter(3)
    streamed = rewriter.feed(text[:cut]) + rewriter.feed(text[cut:]) + rewriter.finish()
    assert streamed == "The dam held; see [1] and [2]."


def test_brackets_that_are_not_markers_pass_through() -> None:
    answer, _ = rewrite("An array [a, b] and [ ] stay.", passages(1))
    assert answer == "An array [a, b] and [ ] stay."
