"""Citation markers of a streamed answer, renumbered in the order the answer first cites them.

The model sees passages numbered [1]…[k]. As its text streams out, each marker is rewritten so
the answer's first cited passage is [1], the next new one [2], and so on; markers that point to no
passage are dropped. The final citation list is then the cited passages in that order, followed by
the passages that were retrieved but not cited.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from common.schemas import Citation

# "[3]", "[1, 2]", "[1;4]", with optional spaces inside, and the spaces before it.
MARKER = re.compile(r"(\s*)\[\s*(\d{1,4}(?:\s*[,;]\s*\d{1,4})*)\s*\]")
# What may still become a marker once more text arrives: held back until it is decided.
_OPEN_TAIL = re.compile(r"\s*\[[\d\s,;]{0,24}$|\s+$")


class MarkerRewriter:
    """Rewrites the citation markers of text fed to it piece by piece."""

    def __init__(self, passages: int) -> None:
        """Markers may point to passages 1…`passages`."""
        self.passages = passages
        self.order: list[int] = []
        self._held = ""

    def feed(self, text: str) -> str:
        """The rewritten text that is final so far; a possible partial marker is held back."""
        text = self._held + text
        tail = _OPEN_TAIL.search(text)
        cut = tail.start() if tail else len(text)
        self._held = text[cut:]
        return self._rewrite(text[:cut])

    def finish(self) -> str:
        """The rest of the text, once the answer is complete."""
        text, self._held = self._held, ""
        return self._rewrite(text)

    def arrange(self, passages: Sequence[Citation]) -> list[Citation]:
        """Cited passages in citation order (marked cited), then the others, as retrieved."""
        cited = [passages[i].model_copy(update={"cited": True}) for i in self.order]
        rest = [
            p.model_copy(update={"cited": False})
            for i, p in enumerate(passages)
            if i not in self.order
        ]
        return cited + rest

    def _rewrite(self, text: str) -> str:
        return MARKER.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        numbers: list[int] = []
        for part in re.split(r"\s*[,;]\s*", match.group(2)):
            n = int(part)
            if not 1 <= n <= self.passages:
                continue
            if n - 1 not in self.order:
                self.order.append(n - 1)
            new = self.order.index(n - 1) + 1
            if new not in numbers:
                numbers.append(new)
        if not numbers:
            return ""
        return match.group(1) + "[" + ", ".join(map(str, numbers)) + "]"


def strip_markers(text: str) -> str:
    """The text without its citation markers."""
    return MARKER.sub("", text)


def rewrite(text: str, passages: Sequence[Citation]) -> tuple[str, list[Citation]]:
    """A whole answer's text with its markers rewritten, and its arranged citation list."""
    rewriter = MarkerRewriter(len(passages))
    answer = rewriter.feed(text) + rewriter.finish()
    return answer, rewriter.arrange(passages)
