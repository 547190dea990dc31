"""bench/generation.py's parts: the two sides taking turns question by question."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

# The scripts import each other as sibling modules (`python bench/generation.py` puts bench/ first).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import generation


def test_the_sides_take_turns_and_keep_each_question_in_its_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(generation, "PAIR_PAUSE_S", 0.0)
    order: list[tuple[str, int]] = []

    def side(name: str, ttft_s: float) -> Callable[[int], Awaitable[generation.Run]]:
        async def one(i: int) -> generation.Run:
            order.append((name, i))
            await asyncio.sleep(0.01)
            return generation.Run(ttft_s + i, tokens=i)

        return one

    system, pipeline = asyncio.run(generation.paired(3, side("system", 1.0), side("pipeline", 0.5)))

    # Whoever went first for one question goes second for the next.
    assert order == [
        ("system", 0), ("pipeline", 0), ("pipeline", 1), ("system", 1), ("system", 2),
        ("pipeline", 2),
    ]  # fmt: skip
    assert [r.tokens for r in system.runs] == [r.tokens for r in pipeline.runs] == [0, 1, 2]
    assert [r.ttft_s for r in system.runs] == [1.0, 2.0, 3.0]
    # Each side's wall time is its own requests' time, not the other's.
    assert all(r.total_s >= 0.01 for r in system.runs + pipeline.runs)
    assert system.wall_s == pytest.approx(sum(r.total_s for r in system.runs))


def test_rounds_take_turns_at_going_first_and_pool_each_side(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(generation, "PAIR_PAUSE_S", 0.0)
    order: list[str] = []

    def side(name: str) -> Callable[[int], Awaitable[generation.Run]]:
        async def one(i: int) -> generation.Run:
            if i == 0:
                order.append(name)
            await asyncio.sleep(0.01)
            return generation.Run(float(i), tokens=i)

        return one

    system_turns, pipeline_turns = asyncio.run(
        generation.rounds(4, 2, 3, side("system"), side("pipeline"))
    )
    system = generation.pooled(system_turns)

    assert order == ["system", "pipeline", "pipeline", "system", "system", "pipeline"]
    assert [r.tokens for r in system.runs] == [0, 1, 2, 3] * 3
    assert [[r.tokens for r in t.runs] for t in pipeline_turns] == [[0, 1, 2, 3]] * 3
    # Two at a time: each round takes about two requests' time, and a side's wall time is its own.
    assert 0.06 <= system.wall_s < 0.2
