"""Which files `ragq ingest` sends from a folder, and the reasons it gives for the others."""

from __future__ import annotations

from pathlib import Path

from ragq_client.files import looks_like_text, select


def test_select_sorts_files_into_sent_and_skipped(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\n")
    (tmp_path / "README").write_text("plain text without an extension\n")
    (tmp_path / "data.bin").write_bytes(b"\x00\x01\x02")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "big.txt").write_text("x" * 2048)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("hidden\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("b\n")

    chosen = select([tmp_path, tmp_path / "nope"], max_bytes=1024)
    assert [p.name for p in chosen.files] == ["README", "a.md", "b.txt"]
    reasons = {s.path.name: s.reason for s in chosen.skipped}
    assert reasons["data.bin"].startswith("not a format ragq reads (.bin")
    assert reasons["empty.txt"] == "empty"
    assert reasons["big.txt"].startswith("too large")
    assert reasons["nope"] == "no such file or folder"
    assert "config" not in reasons

    only = select([tmp_path], 1024, include=["sub/*"], exclude=["*.md"])
    assert [p.name for p in only.files] == ["b.txt"] and only.skipped == []
    # A file named on the command line goes to the server, which judges its format.
    assert select([tmp_path / "data.bin"], 1024).files == [tmp_path / "data.bin"]


def test_text_is_recognised_by_content(tmp_path: Path) -> None:
    text = tmp_path / "t"
    text.write_bytes(("é" * 5000).encode())  # the sample ends inside a character
    assert looks_like_text(text)
    latin = tmp_path / "l"
    latin.write_bytes(b"caf\xe9 au lait")
    assert not looks_like_text(latin)
