"""Parsing sniffs the format from the content and turns each format into text sections."""

from __future__ import annotations

import codecs
import io
import zipfile
from collections.abc import Iterator

import pytest
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from common.parsing import ParseError, Section, parse, sniff

HTML = b"""<!DOCTYPE html>
<html><head><title>Harbour
  rules</title>
<style>p { color: red }</style>
<script>var secret = "do-not-index";</script></head>
<body>
<nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<h1>Rules</h1>
<p>Ships entering <a href="/port">Port
   Elvaren</a> must fly the <b>blue</b> pennant.</p>
<ul><li>Anchor north.</li><li>Pay the fee.</li></ul>
<noscript>enable javascript</noscript>
<div hidden>invisible text</div>
<footer>Copyright footer</footer>
</body></html>"""

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))


def pdf(pages: list[str], title: str | None = "Fleet manual") -> bytes:
    """A real PDF with one line of text on each page ("" leaves the page blank)."""
    out = io.BytesIO()
    document = canvas.Canvas(out, pagesize=A4)
    document.setTitle(title or "")
    for text in pages:
        if text:
            document.drawString(72, 720, text)
        document.showPage()
    document.save()
    return out.getvalue()


def encrypted(data: bytes, user_password: str) -> bytes:
    """`data` encrypted with AES, opened by `user_password`."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_like() -> bytes:
    """A zip archive, as .docx, .xlsx and .odt files are."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("word/document.xml", "<w:document>Hello</w:document>")
    return out.getvalue()


def texts(sections: Iterator[Section] | list[Section]) -> list[str]:
    return [section.text for section in sections]


def test_plain_text_is_one_section_as_is() -> None:
    data = "Tea is grown on terraces.\nIt is picked by hand — every day.\n"
    parsed = parse(data.encode(), "notes.txt")
    assert (parsed.format, parsed.title) == ("text", None)
    assert list(parsed.sections) == [Section(data, page=None)]


def test_markdown_by_filename_keeps_the_text_and_takes_the_first_h1_as_title() -> None:
    data = "Intro line.\n\n# Tea  guide\n\nGreen tea steeps for two minutes.\n\n# Other\n"
    parsed = parse(data.encode(), "guide.MD")
    assert (parsed.format, parsed.title) == ("markdown", "Tea guide")
    assert texts(parsed.sections) == [data]


@pytest.mark.parametrize(
    "data",
    ["# Heading\n\ntext", "Some text\n\n- a list item\n- another", "See [the docs](https://x.y)."],
)
def test_markdown_is_recognised_by_its_content(data: str) -> None:
    assert sniff(data.encode()) == "markdown"
    assert sniff(data.encode(), "notes.txt") == "markdown"


def test_markdown_title_skips_code_fences_and_inline_markup() -> None:
    data = "```sh\n# install it\n```\n\n# The *real* `title`\n\nBody.\n"
    assert parse(data.encode()).title == "The real title"


def test_markdown_without_h1_has_no_title() -> None:
    assert parse(b"## Only a subheading\n\ntext", "a.md").title is None


def test_html_keeps_visible_text_with_paragraph_breaks() -> None:
    parsed = parse(HTML, "rules.html")
    assert (parsed.format, parsed.title) == ("html", "Harbour rules")
    [section] = list(parsed.sections)
    assert section.page is None
    assert section.text == (
        "Rules\n\nShips entering Port Elvaren must fly the blue pennant.\n\n"
        "Anchor north.\nPay the fee."
    )
    for hidden in ("secret", "color", "Home", "About", "javascript", "invisible", "Copyright"):
        assert hidden not in section.text


def test_content_beats_the_filename_for_html() -> None:
    assert sniff(HTML, "rules.txt") == "html"
    assert sniff(HTML, "rules.md") == "html"
    assert parse(HTML, "rules.txt").format == "html"


def test_html_fragment_is_html_unless_named_markdown() -> None:
    fragment = b'<div align="center"><b>Logo</b></div>\n\n# Project\n\nText.'
    assert sniff(fragment) == "html"
    assert sniff(fragment, "README.md") == "markdown"


def test_filename_is_a_hint_for_ambiguous_text() -> None:
    assert sniff(b"just words", "page.html") == "html"
    assert sniff(b"just words", "notes.md") == "markdown"
    assert sniff(b"just words", "report.pdf") == "text"


def test_pdf_is_read_page_by_page_with_page_numbers() -> None:
    data = pdf(["Page one is about anchors.", "Page two is about sails.", "Page three: knots."])
    parsed = parse(data, "manual.pdf")
    assert (parsed.format, parsed.title) == ("pdf", "Fleet manual")
    assert not isinstance(parsed.sections, list)
    assert list(parsed.sections) == [
        Section("Page one is about anchors.", page=1),
        Section("Page two is about sails.", page=2),
        Section("Page three: knots.", page=3),
    ]


def test_pdf_named_markdown_is_still_a_pdf() -> None:
    data = pdf(["Hello from a PDF."], title=None)
    assert sniff(data, "notes.md") == "pdf"
    parsed = parse(data, "notes.md")
    assert (parsed.format, parsed.title) == ("pdf", None)
    assert texts(parsed.sections) == ["Hello from a PDF."]


def test_pdf_blank_pages_are_skipped_but_numbering_is_kept() -> None:
    parsed = parse(pdf(["", "Second page.", "", "Fourth page."]))
    assert [(s.page, s.text) for s in parsed.sections] == [(2, "Second page."), (4, "Fourth page.")]


def test_pdf_encrypted_with_the_empty_password_opens() -> None:
    parsed = parse(encrypted(pdf(["Open to all."]), user_password=""))
    assert texts(parsed.sections) == ["Open to all."]


def test_pdf_needing_a_password_is_unsupported() -> None:
    with pytest.raises(ParseError) as caught:
        parse(encrypted(pdf(["Secret."]), user_password="secret"))
    assert caught.value.code == "unsupported_format"


@pytest.mark.parametrize(
    "data", [b"%PDF-1.4\n garbage \x00\x01", b"%PDF-1.7\n" + b"x" * 2000 + b"\n%%EOF\n"]
)
def test_corrupt_pdf_is_corrupt_file(data: bytes) -> None:
    assert sniff(data) == "pdf"
    with pytest.raises(ParseError) as caught:
        parse(data, "x.pdf")
    assert caught.value.code == "corrupt_file"
    assert str(caught.value)


def test_truncated_pdf_is_corrupt_file() -> None:
    data = pdf(["Page one.", "Page two."])
    with pytest.raises(ParseError) as caught:
        parse(data[: len(data) // 2])
    assert caught.value.code == "corrupt_file"


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (PNG, "image.png"),
        (PNG, "image.txt"),
        (b"text with a \x00 NUL byte", "a.txt"),
        (docx_like(), "letter.docx"),
        ("café".encode("latin-1"), "latin1.txt"),
        (bytes(range(1, 32)) * 10, None),
    ],
)
def test_binary_content_is_unsupported(data: bytes, filename: str | None) -> None:
    for call in (sniff, parse):
        with pytest.raises(ParseError) as caught:
            call(data, filename)
        assert caught.value.code == "unsupported_format"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b" \n\t\r\n ",
        "\ufeff  \n".encode(),
        b"<html><head><title>Only a title</title></head><body> <script>x()</script></body></html>",
        pdf(["", ""]),
    ],
)
def test_documents_without_text_are_empty(data: bytes) -> None:
    with pytest.raises(ParseError) as caught:
        parse(data, "empty.txt")
    assert caught.value.code == "empty_document"


@pytest.mark.parametrize(
    "data",
    [
        "\ufeffHello wörld".encode(),
        "Hello wörld".encode("utf-16"),
        codecs.BOM_UTF16_BE + "Hello wörld".encode("utf-16-be"),
    ],
)
def test_byte_order_marks_choose_the_encoding(data: bytes) -> None:
    assert texts(parse(data).sections) == ["Hello wörld"]


def test_html_in_utf16_is_sniffed() -> None:
    assert parse(HTML.decode().encode("utf-16")).title == "Harbour rules"
