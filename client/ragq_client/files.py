"""Which files `ingest` sends from the paths it is given, and why it skips the others."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

SUFFIXES = {".txt", ".text", ".md", ".markdown", ".html", ".htm", ".pdf"}
SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Skipped:
    """A file that is not sent, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Selection:
    """The files to send and the files skipped."""

    files: list[Path]
    skipped: list[Skipped]


def looks_like_text(path: Path) -> bool:
    """Whether the file's first bytes are UTF-8 text (no NUL byte)."""
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is still text.
        return exc.start >= len(head) - 3
    return True


def _size(n: int) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _matches(relative: str, patterns: Sequence[str]) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatch(relative, p) or fnmatch(name, p) for p in patterns)


def _why_not(path: Path, max_bytes: int, named: bool) -> str | None:
    size = path.stat().st_size
    if size == 0:
        return "empty"
    if size > max_bytes:
        return f"too large ({_size(size)}; the limit is {_size(max_bytes)})"
    if named or path.suffix.lower() in SUFFIXES or looks_like_text(path):
        return None
    return f"not a format ragq reads ({path.suffix or 'no extension'}, not text)"


def _sort(path: Path, reason: str | None, files: list[Path], skipped: list[Skipped]) -> None:
    if reason is None:
        files.append(path)
    else:
        skipped.append(Skipped(path, reason))


def select(
    paths: Iterable[Path],
    max_bytes: int,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Selection:
    """The given files, and the readable files under the given folders (hidden ones aside).

    A named file is always sent unless empty or too large (the server judges its format); a
    file in a folder must match `include` (if given), not match `exclude`, and be a known
    format or text. Globs match the path relative to the folder, or the file name.
    """
    files: list[Path] = []
    skipped: list[Skipped] = []
    for path in paths:
        if path.is_dir():
            for found in sorted(p for p in path.rglob("*") if p.is_file()):
                relative = found.relative_to(path).as_posix()
                if any(part.startswith(".") for part in found.relative_to(path).parts):
                    continue
                if (include and not _matches(relative, include)) or _matches(relative, exclude):
                    continue
                _sort(found, _why_not(found, max_bytes, named=False), files, skipped)
        elif path.is_file():
            _sort(path, _why_not(path, max_bytes, named=True), files, skipped)
        else:
            skipped.append(Skipped(path, "no such file or folder"))
    return Selection(files, skipped)
