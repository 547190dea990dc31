"""The answer prompt: numbered passages and the question, in the model's chat template."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common.citations import strip_markers
from common.conversation import Turn
from common.schemas import Citation
from common.settings import get_settings

SYSTEM = (
    "You answer the user's question using only the numbered passages provided. "
    "Cite every passage you use with its number in square brackets, like [1] or [2]. "
    "If the passages do not contain the answer, say that you do not know."
)
PASSAGE_TOKEN_CAP = 384


def prefill(passages: Sequence[Citation]) -> str:
    """The text the answer starts with, before the model's own: `RAGQ_ANSWER_PREFILL` if it has
    passages."""
    return get_settings().answer_prefill if passages else ""


def messages(
    question: str,
    passages: Sequence[Citation],
    history: Sequence[Turn] = (),
    instructions: str = "",
) -> list[dict[str, str]]:
    """Chat messages: instruction, earlier turns, then the numbered passages, the question and
    how to answer it.

    An earlier answer's [n] markers are dropped: they numbered passages of its own turn.
    """
    numbered = "\n\n".join(
        f"[{n}] {p.title}\n{p.text}" if p.title else f"[{n}] {p.text}"
        for n, p in enumerate(passages, start=1)
    )
    # Last in the user's message, nearest the answer: a small model heeds it there (measured).
    instruction = get_settings().answer_instruction
    after = f"\n\n{instruction}" if instruction else ""
    user = f"Passages:\n\n{numbered}\n\nQuestion: {question}{after}" if passages else question
    system = f"{SYSTEM}\n\n{instructions}" if instructions else SYSTEM
    earlier = [
        {
            "role": t.role,
            "content": strip_markers(t.content) if t.role == "assistant" else t.content,
        }
        for t in history
    ]
    return [{"role": "system", "content": system}, *earlier, {"role": "user", "content": user}]


def _capped(tokenizer: Any, texts: list[str], limit: int) -> list[str]:
    # One batched call: the fast tokenizer encodes the passages in parallel.
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    return [
        text if len(offsets) <= limit else text[: offsets[limit - 1][1]]
        for text, offsets in zip(texts, encoded["offset_mapping"], strict=True)
    ]


def render(
    tokenizer: Any,
    question: str,
    passages: Sequence[Citation],
    max_model_len: int,
    max_tokens: int,
    history: Sequence[Turn] = (),
    instructions: str = "",
) -> tuple[list[int], list[Citation]]:
    """Prompt token ids that leave room for the answer, and the passages that fit in it.

    What does not fit goes in this order: the oldest earlier turns, then the last passages.
    """
    budget = max_model_len - max_tokens
    texts = _capped(tokenizer, [p.text for p in passages], PASSAGE_TOKEN_CAP) if passages else []
    kept = [p.model_copy(update={"text": t}) for p, t in zip(passages, texts, strict=True)]
    turns = list(history)
    while True:
        text = tokenizer.apply_chat_template(
            messages(question, kept, turns, instructions),
            add_generation_prompt=True,
            tokenize=False,
        ) + prefill(kept)
        ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= budget or not (kept or turns):
            return ids[-budget:], kept
        if turns:
            # A user turn goes with the answer that followed it.
            del turns[: 2 if len(turns) > 1 and turns[1].role == "assistant" else 1]
        else:
            kept.pop()
