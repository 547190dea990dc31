"""The answer prompt: numbered passages and the question, in the model's chat template."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common.schemas import Citation

SYSTEM = (
    "You answer the user's question using only the numbered passages provided. "
    "Cite every passage you use with its number in square brackets, like [1] or [2]. "
    "If the passages do not contain the answer, say that you do not know."
)
PASSAGE_TOKEN_CAP = 384


def messages(question: str, passages: Sequence[Citation]) -> list[dict[str, str]]:
    """Chat messages: the instruction, then the numbered passages and the question."""
    numbered = "\n\n".join(
        f"[{n}] {p.title}\n{p.text}" if p.title else f"[{n}] {p.text}"
        for n, p in enumerate(passages, start=1)
    )
    user = f"Passages:\n\n{numbered}\n\nQuestion: {question}" if passages else question
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


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
) -> tuple[list[int], list[Citation]]:
    """Prompt token ids that leave room for the answer, and the passages that fit in it."""
    budget = max_model_len - max_tokens
    texts = _capped(tokenizer, [p.text for p in passages], PASSAGE_TOKEN_CAP) if passages else []
    kept = [p.model_copy(update={"text": t}) for p, t in zip(passages, texts, strict=True)]
    while True:
        text = tokenizer.apply_chat_template(
            messages(question, kept), add_generation_prompt=True, tokenize=False
        )
        ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= budget or not kept:
            return ids[-budget:], kept
        kept.pop()
