"""Uploaded bytes to text sections; the format is sniffed from the content, the filename is a hint.

Formats: PDF (`%PDF-` magic), HTML (markup at the start), Markdown and plain text (UTF-8, or
UTF-16 with a byte order mark). Anything else, binary content included, is `unsupported_format`.
An encrypted PDF that the empty password does not open is `unsupported_format` too: the file is
sound, the service just has no password to read it with.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain, pairwise
from pathlib import PurePath
from typing import Literal

from bs4 import BeautifulSoup, NavigableString
from markdown_it import MarkdownIt
from markdown_it.token import Token
from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError

Format = Literal["text", "markdown", "html", "pdf"]
ErrorCode = Literal["unsupported_format", "corrupt_file", "empty_document", "document_too_complex"]

_MESSAGES: dict[ErrorCode, str] = {
    "unsupported_format": "the file is not text, Markdown, HTML or PDF",
    "corrupt_file": "the file is damaged and cannot be read",
    "empty_document": "the document has no text",
    "document_too_complex": "parsing the document needs more time or memory than allowed",
}

_SNIFF_CHARS = 64 * 1024
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# C0 controls other than tab, newlines, vertical tab, form feed and escape.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
_MAX_CONTROL_RATIO = 0.01

_MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown", ".mkd"}
_HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
_HTML_PROLOGUE = r"\A\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*"
# These open a whole page: HTML whatever the filename says.
_HTML_PAGE = re.compile(_HTML_PROLOGUE + r"<(?:!doctype\s+html|html|head|body)\b", re.I | re.S)
# These open a fragment: HTML unless the filename says Markdown, which may start with markup.
_HTML_FRAGMENT = re.compile(
    _HTML_PROLOGUE
    + r"<(?:title|meta|link|style|script|div|p|h[1-6]|main|article|section|header|table"
    r"|ul|ol|span|a|img|br|form)\b",
    re.I | re.S,
)
_MARKDOWN_BLOCKS = {"heading_open", "bullet_list_open", "ordered_list_open", "fence"}
_MARKDOWN_INLINES = {"link_open", "image"}

_HTML_DROP = [
    "script", "style", "noscript", "template", "head", "nav", "footer",
    "svg", "iframe", "object", "embed", "canvas",
]  # fmt: skip
_HTML_LINE = {"li", "tr", "dt", "dd", "option"}
_HTML_PARAGRAPH = {
    "address", "article", "aside", "blockquote", "caption", "details", "dialog", "div", "dl",
    "fieldset", "figcaption", "figure", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
    "hr", "main", "ol", "p", "pre", "section", "summary", "table", "ul",
}  # fmt: skip
_HTML_CELL = {"td", "th"}
_KEEP_WHITESPACE = ["pre", "textarea"]


class ParseError(Exception):
    """A document that cannot be turned into text; `code` says why in a machine-readable way."""

    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        super().__init__(message or _MESSAGES[code])
        self.code: ErrorCode = code


@dataclass(frozen=True)
class Section:
    """A run of document text: the whole document, or one PDF page."""

    text: str
    page: int | None = None


@dataclass(frozen=True)
class ParsedDocument:
    """A parsed document; a PDF's sections are read page by page as they are iterated."""

    format: Format
    title: str | None
    sections: Iterator[Section] | list[Section]


def sniff(data: bytes, filename: str | None = None) -> Format:
    """The format of `data`, from its content first and its filename's suffix second."""
    if _is_pdf(data):
        return "pdf"
    return _text_format(_decode(data), filename)


def parse(
    data: bytes,
    filename: str | None = None,
    pdf_parser: Callable[[bytes], ParsedDocument] | None = None,
) -> ParsedDocument:
    """Parse uploaded bytes into text sections, or raise ParseError.

    `pdf_parser` replaces the in-process PDF parser (the workers parse PDFs in a bounded child
    process, `common.pdf_sandbox`).
    """
    if _is_pdf(data):
        return (pdf_parser or _parse_pdf)(data)
    text = _decode(data)
    fmt = _text_format(text, filename)
    if fmt == "html":
        return _parse_html(text)
    if not text.strip():
        raise ParseError("empty_document")
    title = _markdown_title(text) if fmt == "markdown" else None
    return ParsedDocument(fmt, title, [Section(text)])


def _is_pdf(data: bytes) -> bool:
    return data[:1024].lstrip().startswith(b"%PDF-")


def _decode(data: bytes) -> str:
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ParseError("unsupported_format", "the file is binary or not UTF-8 text") from exc
    head = text[:_SNIFF_CHARS]
    if "\x00" in text or len(_CONTROL.findall(head)) > _MAX_CONTROL_RATIO * len(head):
        raise ParseError("unsupported_format", "the file is binary, not text")
    return text


def _text_format(text: str, filename: str | None) -> Format:
    suffix = PurePath(filename).suffix.lower() if filename else ""
    head = text[:_SNIFF_CHARS]
    if _HTML_PAGE.match(head):
        return "html"
    if suffix in _MARKDOWN_SUFFIXES:
        return "markdown"
    if suffix in _HTML_SUFFIXES or _HTML_FRAGMENT.match(head):
        return "html"
    if _looks_like_markdown(_markdown_tokens(head)):
        return "markdown"
    return "text"


def _markdown_tokens(text: str) -> list[Token]:
    return MarkdownIt("commonmark").parse(text[:_SNIFF_CHARS])


def _looks_like_markdown(tokens: list[Token]) -> bool:
    return any(
        token.type in _MARKDOWN_BLOCKS
        or any(child.type in _MARKDOWN_INLINES for child in token.children or ())
        for token in tokens
    )


def _markdown_title(text: str) -> str | None:
    tokens = _markdown_tokens(text)
    for opening, inline in pairwise(tokens):
        if opening.type == "heading_open" and opening.tag == "h1":
            words = "".join(
                child.content
                for child in inline.children or ()
                if child.type in ("text", "code_inline")
            )
            return _clean_title(words)
    return None


def _parse_html(text: str) -> ParsedDocument:
    soup = BeautifulSoup(text, "html.parser")
    title = _clean_title(soup.title.get_text()) if soup.title else None
    for tag in soup.find_all(_HTML_DROP):
        tag.decompose()
    for tag in soup.find_all(hidden=True):
        tag.decompose()
    # Source whitespace is layout noise: collapse it before adding breaks of our own.
    for string in soup.find_all(string=True):
        if type(string) is NavigableString and not string.find_parent(_KEEP_WHITESPACE):
            string.replace_with(re.sub(r"\s+", " ", string))
    for tag in soup.find_all(True):
        if tag.name in _HTML_PARAGRAPH:
            tag.insert_before("\n\n")
            tag.insert_after("\n\n")
        elif tag.name == "br":
            tag.insert_after("\n")
        elif tag.name in _HTML_LINE:
            tag.insert_before("\n")
        elif tag.name in _HTML_CELL:
            tag.insert_after(" ")
    body = re.sub(r"[^\S\n]*\n\s*", _line_break, soup.get_text()).strip()
    if not body:
        raise ParseError("empty_document")
    return ParsedDocument("html", title, [Section(body)])


def _line_break(match: re.Match[str]) -> str:
    return "\n\n" if match.group().count("\n") > 1 else "\n"


def _parse_pdf(data: bytes) -> ParsedDocument:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise ParseError("unsupported_format", "the PDF is protected by a password")
        title = _clean_title(reader.metadata.title) if reader.metadata else None
        pages = len(reader.pages)
    except ParseError:
        raise
    except DependencyError as exc:
        raise ParseError("unsupported_format", f"the PDF cannot be decrypted: {exc}") from exc
    # pypdf raises many kinds of exceptions on damaged input, not only its own.
    except Exception as exc:
        raise ParseError("corrupt_file", f"the PDF cannot be read: {exc}") from exc
    sections = _pdf_pages(reader, pages)
    first = next(sections, None)
    if first is None:
        raise ParseError("empty_document", "the PDF has no extractable text (scanned images?)")
    return ParsedDocument("pdf", title, chain([first], sections))


def _pdf_pages(reader: PdfReader, pages: int) -> Iterator[Section]:
    for number in range(1, pages + 1):
        try:
            text = reader.pages[number - 1].extract_text()
        except Exception as exc:
            raise ParseError("corrupt_file", f"page {number} of the PDF cannot be read") from exc
        if text.strip():
            yield Section(text.strip(), page=number)


def _clean_title(title: str | None) -> str | None:
    words = " ".join((title or "").split())
    return words or None
