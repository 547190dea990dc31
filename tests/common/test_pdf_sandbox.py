"""PDFs are parsed in a child process under a time limit and a memory bound."""

from __future__ import annotations

import time

import pytest

from common.parsing import ParseError, parse
from common.pdf_sandbox import PdfLimits
from tests.helpers import memory_bomb_pdf, pdf_with_content, text_pdf, time_bomb_pdf


def test_a_normal_pdf_parses_as_in_process() -> None:
    data = text_pdf("Bounded parsing keeps the worker alive")
    bounded = parse(data, "a.pdf", pdf_parser=PdfLimits(30, 512))
    direct = parse(data, "a.pdf")
    assert bounded.format == "pdf"
    assert list(bounded.sections) == list(direct.sections)
    assert next(iter(bounded.sections)).text == "Bounded parsing keeps the worker alive"


def test_memory_bomb_fails_with_document_too_complex() -> None:
    data = memory_bomb_pdf()
    assert len(data) < 100_000
    start = time.monotonic()
    with pytest.raises(ParseError) as caught:
        PdfLimits(60, 256)(data)
    assert caught.value.code == "document_too_complex"
    assert "256 MiB" in str(caught.value)
    assert time.monotonic() - start < 30


def test_time_bomb_fails_at_the_time_limit() -> None:
    start = time.monotonic()
    with pytest.raises(ParseError) as caught:
        PdfLimits(2, 512)(time_bomb_pdf())
    assert caught.value.code == "document_too_complex"
    assert time.monotonic() - start < 10


def test_decompression_over_pypdfs_limit_is_too_complex() -> None:
    with pytest.raises(ParseError) as caught:
        PdfLimits(60, 1024)(pdf_with_content(b"\0" * 100_000_000))
    assert caught.value.code == "document_too_complex"


def test_damaged_pdf_is_still_corrupt_file() -> None:
    with pytest.raises(ParseError) as caught:
        PdfLimits(30, 512)(b"%PDF-1.4 broken")
    assert caught.value.code == "corrupt_file"
