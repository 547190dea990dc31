"""An answer's sources as text: each with the sentences it supports, then unsupported ones."""

from __future__ import annotations

import re
import textwrap
from typing import Any

QUOTE_CHARS = 160
# A quoted answer's opening span: "…" [n], already in quotes of its own.
_QUOTED = re.compile(r'^"(.+)"(\s*\[[\d\s,;]+\])?$', re.DOTALL)


def sources(result: dict[str, Any]) -> list[str]:
    """Lines that list the cited passages (numbered as the answer's markers) with the sentences
    each supports, the passages only retrieved, and the sentences no passage supports."""
    citations = result.get("citations") or []
    lines: list[str] = []
    cited = [(n, c) for n, c in enumerate(citations, start=1) if c.get("cited")]
    if cited:
        lines += ["", "Sources:"]
    for n, citation in cited:
        lines.append(f"  [{n}] {origin(citation)}")
        lines += [
            f"      {_quoted(span['text'])} ({span['support']:.2f})"
            for span in citation.get("spans") or []
        ]
    others = [c for c in citations if not c.get("cited")]
    if others:
        lines += ["", "Also retrieved:"]
    lines += [f"  - {origin(c)}" for c in others]
    unsupported = result.get("unsupported") or []
    if unsupported:
        lines += ["", "Not supported by any source:"]
    lines += [f"  ! “{_quote(span['text'])}”" for span in unsupported]
    return lines


def origin(citation: dict[str, Any]) -> str:
    """The passage's title, page and source (or document id)."""
    page = f", page {citation['page']}" if citation.get("page") else ""
    return f"{citation['title']}{page}  ({citation.get('source') or citation['document_id']})"


def _quoted(text: str) -> str:
    quote = _QUOTED.match(text)
    return f"“{_quote(quote[1])}”{quote[2] or ''}" if quote else f"“{_quote(text)}”"


def _quote(text: str) -> str:
    return textwrap.shorten(" ".join(text.split()), QUOTE_CHARS, placeholder=" …")
