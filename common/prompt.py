"""The answer prompt: numbered passages and the question, in the model's chat template."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from common.attribution import Sentence, sentences, terms
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
QUOTE_INSTRUCTION = (
    "Begin your answer with the one sentence of the passages that best answers the question, "
    'copied exactly, in double quotes, followed by its passage number, like "..." [2]. '
    "Then answer the question in your own words."
)
# A quoted sentence may take at most this many characters per token of the answer's budget
# (about three quarters of it, at four characters a token), so that an answer is more than a quote.
QUOTE_CHARS_PER_TOKEN = 3
# Sentences of a passage a quote may start at (see quote_grammar).
QUOTE_STARTS = 2
_WRAPPED = re.compile(r"\s+")


def quoting(record: Mapping[str, str]) -> bool:
    """Whether an answer job's answer opens with a quote: its `quote` field, else the setting."""
    value = record.get("quote")
    return get_settings().answer_quote if not value else value == "True"


def quote_grammar(question: str, passages: Sequence[Citation], max_tokens: int) -> str | None:
    """An EBNF grammar (vLLM's structured outputs) for an answer that opens with a quote from one
    of the passages (those it may quote: `retrieve` gave it no others), then any text; None when
    no sentence fits the answer's budget.

    The quote is word for word, in double quotes with its [n] marker. It starts at one of the
    passage's `QUOTE_STARTS` sentences that share the most of the question's terms beyond the
    passage's title (retrieval already matched the topic; the rest is what is asked), or at any
    sentence if none shares one, and it may run on over the sentences that follow.
    """
    limit = QUOTE_CHARS_PER_TOKEN * max_tokens
    asked = terms(question)
    choices: list[str] = []
    for n, passage in enumerate(passages, start=1):
        found = sentences(passage.text, prose=True)
        fitting = [i for i, s in enumerate(found) if len(s.text) <= limit]
        wanted = asked - terms(passage.title)
        shared = {i: len(terms(found[i].text) & wanted) for i in fitting}
        starts = sorted(fitting, key=lambda i: -shared[i])
        if starts and shared[starts[0]]:
            starts = sorted(i for i in starts[:QUOTE_STARTS] if shared[i])
        choices += [_quote(passage.text, found, i, limit, n) for i in starts]
    if not choices:
        return None
    quotes = " | ".join(dict.fromkeys(choices))
    return f'root ::= "\\"" quote rest\nquote ::= {quotes}\nrest ::= [^\\x00]*\n'


def _quote(text: str, found: Sequence[Sentence], first: int, limit: int, n: int) -> str:
    # The sentence, then each next one of its paragraph while the quote stays within `limit`,
    # each optional after the one before: "s1" (" s2" (" s3")?)?. Lines wrapped inside the
    # passage are joined with a space.
    pieces = [_WRAPPED.sub(" ", found[first].text)]
    length = len(pieces[0])
    for prev, nxt in zip(found[first:], found[first + 1 :], strict=False):
        piece = " " + _WRAPPED.sub(" ", nxt.text)
        length += len(piece)
        if length > limit or text.count("\n", prev.end, nxt.start) > 1:
            break  # too long, or the next paragraph
        pieces.append(piece)
    nested = ""
    for piece in reversed(pieces[1:]):
        nested = f' ("{_ebnf(piece)}"{nested})?'
    close = _ebnf(f'" [{n}]')
    return f'"{_ebnf(pieces[0])}"{nested} "{close}"'


def _ebnf(text: str) -> str:
    # An EBNF string literal: backslash, quote and control characters escaped (vLLM's own
    # escaper is local to its choice_as_grammar, which builds only a whole grammar of choices).
    escapes = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return "".join(
        escapes.get(ch) or (f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch)
        for ch in text
    )


def prefill(passages: Sequence[Citation]) -> str:
    """The text the answer starts with, before the model's own: `RAGQ_ANSWER_PREFILL` if it has
    passages."""
    return get_settings().answer_prefill if passages else ""


def messages(
    question: str,
    passages: Sequence[Citation],
    history: Sequence[Turn] = (),
    instructions: str = "",
    quote: bool = False,
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
    said = [get_settings().answer_instruction, QUOTE_INSTRUCTION if quote else ""]
    after = "".join(f"\n\n{text}" for text in said if text)
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
    quote: bool = False,
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
            messages(question, kept, turns, instructions, quote),
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
