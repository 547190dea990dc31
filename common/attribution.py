"""Which retrieved passages support which sentences of an answer, whatever markers it holds.

The answer is split into sentences, each with its character offsets in the answer's text. A
sentence's support by a passage is the share of the sentence's terms (BM25's terms: stemmed,
stop words dropped) that the passage holds, each term weighted by its inverse document frequency
among the passages given, so that a shared rare word counts for more than a word every passage
holds, and a word no passage holds (a likely invention) counts the most against support. A
sentence is attributed to its best passage when that support reaches `min_support`; the model's
own `[n]` markers are kept where the passage they name supports the sentence as well.

Citations keep the order `MarkerRewriter` gave the streamed text: passages the text marks come
first, at their marker's number, then the other supporting passages, then those only retrieved.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from common.citations import MARKER
from common.schemas import Citation, CitationMode, Span
from common.sparse import tokenize

# A sentence ends at . ! or ? (with closing quotes or brackets, and markers that follow it), or
# at a closing double quote with its marker (a quote's end, "…" [1]), before whitespace or the
# end; or at a line break, except in prose, where lines are wrapped: there only at a blank line.
_MARKER = r"(?:\s*\[[\d\s,;]+\])"
_STOP = rf"(?:[.!?]+[\"'”’)]*{_MARKER}*|[\"”]{_MARKER}+)(?=\s|$)"
_END = re.compile(_STOP + r"|\n")
_PROSE_END = re.compile(_STOP + r"|\n[^\S\n]*\n\s*")
_LAST_WORD = re.compile(r"(\S+?)[.!?]*$")
_LETTER = re.compile(r"[^\W\d_]")
ABBREVIATIONS = frozenset(
    {"e.g", "i.e", "al", "vs", "etc", "fig", "figs", "approx", "ca", "cf", "dr", "mr", "mrs",
     "ms", "no", "nos", "st", "resp", "incl", "eq", "ref", "refs", "vol", "p", "pp"}
)  # fmt: skip


@dataclass(frozen=True)
class Sentence:
    """A sentence of the answer: `text == answer[start:end]`, no outer whitespace."""

    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Attribution:
    """The arranged citations (with their spans and support) and the unsupported sentences."""

    citations: list[Citation]
    unsupported: list[Span]


def sentences(answer: str, prose: bool = False) -> list[Sentence]:
    """The answer's sentences in order, with offsets; text without a letter joins the next.

    With `prose`, a single line break is wrapping, not the end of a sentence.
    """
    found: list[Sentence] = []
    start = 0
    for match in (_PROSE_END if prose else _END).finditer(answer):
        line = match.group().isspace()
        if not line and _abbreviation(answer[start : match.start() + 1]):
            continue
        if _LETTER.search(answer[start : match.end()]) is None and not line:
            continue  # "1." of a numbered list, or a lone marker
        _add(found, answer, start, match.end())
        start = match.end()
    _add(found, answer, start, len(answer))
    return found


def _abbreviation(text: str) -> bool:
    last = _LAST_WORD.search(text.rstrip())
    if last is None:
        return False
    word = last.group(1).lower().lstrip("([\"'")
    return word in ABBREVIATIONS


def _add(found: list[Sentence], answer: str, start: int, end: int) -> None:
    piece = answer[start:end]
    stripped = piece.strip()
    if not stripped or _LETTER.search(stripped) is None:
        return
    lead = len(piece) - len(piece.lstrip())
    begin = start + lead
    found.append(Sentence(begin, begin + len(stripped), stripped))


def marked(sentence: str) -> list[int]:
    """The marker numbers a sentence holds, in order, each once."""
    numbers: list[int] = []
    for match in MARKER.finditer(sentence):
        for part in re.split(r"\s*[,;]\s*", match.group(2)):
            if int(part) not in numbers:
                numbers.append(int(part))
    return numbers


def terms(text: str) -> set[str]:
    """The distinct BM25 terms of a text, markers left out."""
    return set(tokenize(MARKER.sub(" ", text)))


def supports(claims: Sequence[set[str]], passages: Sequence[set[str]]) -> list[list[float]]:
    """For each claim (a set of terms), each passage's IDF-weighted share of its terms."""
    df = Counter(t for p in passages for t in p)
    k = len(passages)

    def idf(term: str) -> float:
        return math.log(1 + (k - df[term] + 0.5) / (df[term] + 0.5))

    table = []
    for claim in claims:
        weights = {t: idf(t) for t in claim}
        total = sum(weights.values())
        table.append(
            [
                sum(w for t, w in weights.items() if t in p) / total if total else 0.0
                for p in passages
            ]
        )
    return table


def attribute(
    answer: str,
    passages: Sequence[Citation],
    order: Sequence[int],
    mode: CitationMode = CitationMode.BOTH,
    min_support: float = 0.5,
    skip: int = 0,
) -> Attribution:
    """Attribute the answer's sentences to the passages the model was given.

    `order` lists the passages the streamed text marks, by their index in `passages`: marker
    `[n]` of the text names `passages[order[n - 1]]` (`MarkerRewriter.order`). With `markers`,
    a sentence is supported by the passages its markers name; with `attribution`, by its best
    passage if that reaches `min_support`; with `both`, by that passage and by those its markers
    name that reach `min_support` too. The answer's first `skip` characters are the service's
    own words (the prompt's prefill), not the model's claim: their terms are not weighed.
    """
    found = sentences(answer)
    table = supports(
        [terms(answer[max(s.start, skip) : s.end]) for s in found],
        [terms(f"{p.title}\n{p.text}") for p in passages],
    )
    spans: dict[int, list[Span]] = {}
    unsupported: list[Span] = []
    for sentence, row in zip(found, table, strict=True):
        named = [order[n - 1] for n in marked(sentence.text) if 1 <= n <= len(order)]
        best = max(row, default=0.0)
        chosen: list[int] = []
        if mode is not CitationMode.MARKERS and best >= min_support:
            chosen = [i for i, s in enumerate(row) if s == best]
        if mode is CitationMode.MARKERS:
            chosen = named
        elif mode is CitationMode.BOTH:
            chosen += [i for i in named if row[i] >= min_support and i not in chosen]
        for i in chosen:
            spans.setdefault(i, []).append(_span(sentence, row[i]))
        if not chosen:
            unsupported.append(_span(sentence, best))
    return Attribution(_arrange(passages, order, spans, table), unsupported)


def _span(sentence: Sentence, support: float) -> Span:
    return Span(
        start=sentence.start, end=sentence.end, text=sentence.text, support=round(support, 4)
    )


def _arrange(
    passages: Sequence[Citation],
    order: Sequence[int],
    spans: dict[int, list[Span]],
    table: list[list[float]],
) -> list[Citation]:
    """Marked passages at their marker's number, then the other cited ones, then the rest."""
    first = {i: min(s.start for s in spans[i]) for i in spans}
    others = sorted((i for i in spans if i not in order), key=lambda i: first[i])
    rest = [i for i in range(len(passages)) if i not in order and i not in spans]
    arranged = []
    for i in [*order, *others, *rest]:
        own = sorted(spans.get(i, []), key=lambda s: s.start)
        best = max((row[i] for row in table), default=None)
        arranged.append(
            passages[i].model_copy(
                update={
                    "cited": bool(own),
                    "marker": order.index(i) + 1 if i in order else None,
                    "spans": own,
                    "support": None if best is None else round(best, 4),
                }
            )
        )
    return arranged
