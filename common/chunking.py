"""Token-aware chunking: windows of at most `size` tokens that share about `overlap` tokens.

Chunks are spans of the original section text, found through the fast tokenizer's offset
mapping, and end at a sentence or word boundary when one is near the end of the window.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from common.parsing import Section

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Span = tuple[int, int]

# Text is tokenized in blocks of about this many characters, so memory does not grow with it.
_BLOCK_CHARS = 32 * 1024
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’»)\]]*\Z")

_copies: dict[int, tuple[PreTrainedTokenizerBase, PreTrainedTokenizerBase]] = {}
_copies_lock = threading.Lock()


@dataclass(frozen=True)
class Chunk:
    """A span of a section's text: `text == section.text[start:end]`."""

    index: int
    text: str
    start: int
    end: int
    page: int | None


def chunk_sections(
    sections: Iterable[Section], tokenizer: PreTrainedTokenizerBase, size: int, overlap: int
) -> Iterator[Chunk]:
    """Cut sections into chunks of at most `size` tokens, neighbours sharing about `overlap`."""
    if size < 1:
        raise ValueError("chunk size must be at least one token")
    if not 0 <= overlap < size:
        raise ValueError("chunk overlap must be at least 0 and smaller than the chunk size")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("chunking needs a fast tokenizer: it maps tokens back to characters")
    return _chunks(sections, _own_copy(tokenizer), size, overlap)


def _chunks(
    sections: Iterable[Section], tokenizer: PreTrainedTokenizerBase, size: int, overlap: int
) -> Iterator[Chunk]:
    index = 0
    for section in sections:
        for start, end in _windows(section.text, tokenizer, size, overlap):
            yield Chunk(index, section.text[start:end], start, end, section.page)
            index += 1


def _own_copy(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    # A call without truncation switches the Rust tokenizer's truncation off, and the embedding
    # model's calls switch it back on: sharing one tokenizer between threads fails with
    # "Already borrowed". This module calls a copy of its own, set up once.
    with _copies_lock:
        original, own = _copies.get(id(tokenizer), (None, None))
        if original is not tokenizer or own is None:
            own = copy.deepcopy(tokenizer)
            own.backend_tokenizer.no_truncation()
            own.backend_tokenizer.no_padding()
            _copies[id(tokenizer)] = (tokenizer, own)
        return own


def _windows(
    text: str, tokenizer: PreTrainedTokenizerBase, size: int, overlap: int
) -> Iterator[Span]:
    window: list[Span] = []
    for span in _token_spans(text, tokenizer):
        window.append(span)
        if len(window) > size:
            keep = _cut(text, window, size, overlap)
            yield window[0][0], window[keep - 1][1]
            del window[: _next_start(text, window, keep, overlap)]
    if window:
        yield window[0][0], window[-1][1]


def _token_spans(text: str, tokenizer: PreTrainedTokenizerBase) -> Iterator[Span]:
    offset = 0
    while offset < len(text):
        end = _block_end(text, offset)
        encoding = tokenizer(
            text[offset:end],
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )
        for start, stop in encoding["offset_mapping"]:
            if stop > start:
                yield offset + start, offset + stop
        offset = end


def _block_end(text: str, offset: int) -> int:
    """End of the block starting at `offset`: just before a whitespace, so no word is split."""
    end = offset + _BLOCK_CHARS
    if end >= len(text):
        return len(text)
    space = max(text.rfind(" ", offset, end), text.rfind("\n", offset, end))
    return space if space > offset else end


def _cut(text: str, window: list[Span], size: int, overlap: int) -> int:
    """How many tokens of the window the chunk keeps: up to a sentence end or word end if near."""
    lowest = max(overlap + 1, size - max(1, size // 4))
    candidates = range(size, lowest - 1, -1)
    for keep in candidates:
        end = window[keep - 1][1]
        if window[keep][0] > end and _SENTENCE_END.search(text, max(0, end - 4), end):
            return keep
    return next((keep for keep in candidates if _is_word_break(text, window, keep)), size)


def _next_start(text: str, window: list[Span], keep: int, overlap: int) -> int:
    """Where the next chunk starts: `overlap` tokens back, moved forward to a word's start."""
    start = keep - overlap
    return next((i for i in range(start, keep) if _is_word_break(text, window, i)), start)


def _is_word_break(text: str, window: list[Span], i: int) -> bool:
    """Whether the tokens before and from window[i] are separate words."""
    left, right = window[i - 1][1], window[i][0]
    return right > left or not (text[left - 1].isalnum() and text[right].isalnum())
