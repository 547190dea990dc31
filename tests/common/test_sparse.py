"""The BM25 encoder: its tokenizer, its stable term indices and its weights."""

from __future__ import annotations

import subprocess
import sys

import pytest

from common.sparse import SparseEncoder, term_index, tokenize


def test_case_punctuation_stop_words_and_stems() -> None:
    assert tokenize("The Lighthouses, and their KEEPERS!") == ["lighthous", "keeper"]


def test_part_numbers_are_kept_whole_and_in_parts() -> None:
    terms = tokenize("Valve XK-4471 failed")
    assert "xk-4471" in terms and "xk" in terms and "4471" in terms


def test_possessives_and_unicode_forms_are_folded() -> None:
    assert tokenize("Lindqvist’s ﬁndings") == tokenize("lindqvist findings")


def test_term_indices_are_the_same_in_another_process() -> None:
    code = "from common.sparse import term_index; print(term_index('glacier'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(other.stdout) == term_index("glacier")


def test_document_weights_saturate_and_normalize_by_length() -> None:
    encoder = SparseEncoder(k1=1.2, b=0.75, avg_doc_len=4)
    once = encoder.encode_document("glacier moraine ice fjord")
    thrice = encoder.encode_document("glacier glacier glacier fjord")
    weight = dict(zip(once.indices, once.values, strict=True))[term_index("glacier")]
    weight3 = dict(zip(thrice.indices, thrice.values, strict=True))[term_index("glacier")]
    assert weight == pytest.approx(1.0)
    assert weight < weight3 < 3 * weight
    long = encoder.encode_document("glacier " + "moraine " * 20)
    assert dict(zip(long.indices, long.values, strict=True))[term_index("glacier")] < weight


def test_query_weights_are_one_per_unique_term() -> None:
    query = SparseEncoder().encode_query("glacier of glaciers, the glacier")
    assert query.indices == [term_index("glacier")]
    assert query.values == [1.0]


def test_a_query_of_stop_words_has_no_terms() -> None:
    assert SparseEncoder().encode_query("the of and").indices == []
