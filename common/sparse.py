"""BM25 sparse vectors for a Qdrant sparse vector configured with the IDF modifier.

Qdrant multiplies each matching term by its IDF at query time, so a document vector carries only
the BM25 term-frequency part, saturated by `k1` and normalized by length with `b`, and a query
vector carries 1.0 per unique term. Terms map to indices through CRC-32, which is the same in
every process.
"""

from __future__ import annotations

import re
import threading
import unicodedata
import zlib
from collections import Counter
from dataclasses import dataclass

import Stemmer

# Lucene's default English stop set (EnglishAnalyzer, Elasticsearch's "_english_"): IDF already
# discounts common words, so only the grammatical ones that carry no meaning are dropped.
# fmt: off
STOP_WORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
})
# fmt: on

# Runs of letters and digits, joined by single inner punctuation: "xk-4471", "1.5", "e.g".
_TOKEN = re.compile(r"[^\W_]+(?:[-_./:+'’][^\W_]+)*")
_JOINER = re.compile(r"[-_./:+'’]")
_POSSESSIVE = re.compile(r"['’]s\b")
_DIGIT = re.compile(r"\d")

# A Stemmer object must not be shared between threads.
_local = threading.local()


@dataclass(frozen=True)
class SparseVector:
    """A sparse vector: parallel lists of unique uint32 indices and their weights."""

    indices: list[int]
    values: list[float]


def tokenize(text: str) -> list[str]:
    """Terms of `text`: case-folded, stop words dropped, words stemmed, identifiers kept whole."""
    text = _POSSESSIVE.sub("", unicodedata.normalize("NFKC", text).casefold())
    stem = _stemmer().stemWord
    terms: list[str] = []
    for token in _TOKEN.findall(text):
        parts = _JOINER.split(token)
        if len(parts) > 1 and _DIGIT.search(token):
            # Part numbers and names such as "xk-4471" or "il-6" are also kept whole, so that an
            # exact match outscores documents that only share the parts.
            terms.append(token)
        terms.extend(stem(w) for w in parts if w not in STOP_WORDS)
    return terms


def _stemmer() -> Stemmer.Stemmer:
    stemmer: Stemmer.Stemmer | None = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


def term_index(term: str) -> int:
    """The uint32 index of a term, identical across processes and platforms."""
    return zlib.crc32(term.encode("utf-8"))


class SparseEncoder:
    """Encodes documents and queries as BM25 sparse vectors for Qdrant's IDF modifier."""

    def __init__(self, k1: float = 1.2, b: float = 0.75, avg_doc_len: float = 256.0) -> None:
        """BM25 with term-frequency saturation `k1`, length normalization `b` over `avg_doc_len`."""
        if k1 < 0 or not 0 <= b <= 1 or avg_doc_len <= 0:
            raise ValueError("BM25 needs k1 >= 0, 0 <= b <= 1 and avg_doc_len > 0")
        self.k1, self.b, self.avg_doc_len = k1, b, avg_doc_len

    def encode_document(self, text: str) -> SparseVector:
        """Term-frequency weights `tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))`."""
        terms = tokenize(text)
        norm = self.k1 * (1 - self.b + self.b * len(terms) / self.avg_doc_len)
        weights: dict[int, float] = {}
        for term, tf in Counter(terms).items():
            index = term_index(term)
            # Two terms whose hashes collide add up, as one term would.
            weights[index] = weights.get(index, 0.0) + tf * (self.k1 + 1) / (tf + norm)
        return SparseVector(list(weights), list(weights.values()))

    def encode_query(self, text: str) -> SparseVector:
        """Weight 1.0 for each unique term: Qdrant supplies the IDF."""
        indices = list(dict.fromkeys(term_index(t) for t in tokenize(text)))
        return SparseVector(indices, [1.0] * len(indices))
