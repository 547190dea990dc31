"""The `ragq` command against the running service: ingest a folder, ask, read the sources."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import ragq

REPO = Path(__file__).resolve().parents[2]

DOCS = {
    "volcano.md": "# Mount Ekra\n\nMount Ekra is a shield volcano on Halvøy island. "
    "Its last eruption was in 1911 and its summit is 2,310 metres high.\n",
    "orchard.md": "# Orchard notes\n\nThe Bellwood orchard grows pears and plums. "
    "Harvest starts in late August.\n",
    "chess.md": "# Club rules\n\nThe chess club meets on Thursdays. Blitz uses three minutes.\n",
}


def test_ingest_folder_then_ask_prints_streamed_answer_and_sources(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for name, text in DOCS.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / ".hidden.md").write_text("skip me", encoding="utf-8")

    ingested = ragq(service.env, "ingest", str(tmp_path))
    assert ingested.returncode == 0, ingested.stderr
    assert "ingested 3, unchanged 0, skipped 0, failed 0 (3 files)" in ingested.stderr

    asked = ragq(service.env, "ask", "When did Mount Ekra last erupt?", "--top-k", "2")
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.strip(), "no answer text was printed"
    # Cited passages are listed as numbered sources, the others as also retrieved.
    # On stdout after the answer, so that `ragq ask … > answer.txt` keeps them together.
    heading = "Sources:" if "Sources:" in asked.stdout else "Also retrieved:"
    answer, _, sources = asked.stdout.partition(f"\n{heading}")
    assert answer.strip(), asked.stdout
    first = sources.strip().splitlines()[0]
    assert first.startswith(("[1] Mount Ekra", "- Mount Ekra")), asked.stdout
    assert first.endswith("(volcano.md)")


def test_ask_json_prints_the_final_record_and_a_cut_answer_says_so(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "volcano.md").write_text(DOCS["volcano.md"], encoding="utf-8")
    assert ragq(service.env, "ingest", str(tmp_path)).returncode == 0
    max_tokens = service.settings.llm_max_tokens
    # Whether the small model runs past the limit depends on the prompt, which depends on what
    # other tests ingested: the first of these questions whose answer is cut is used.
    questions = (
        "List fifty facts about Mount Ekra, one per numbered line.",
        "Write a long, detailed essay about Mount Ekra and Halvøy island.",
        "Describe Mount Ekra in at least three hundred words.",
    )
    for question in questions:
        asked = ragq(service.env, "ask", "--json", question, "--top-k", "2")
        assert asked.returncode == 0, asked.stderr
        record = json.loads(asked.stdout)
        assert record["kind"] == "answer" and record["status"] == "succeeded"
        result = record["result"]
        at_limit = result["usage"]["completion_tokens"] == max_tokens
        assert (result["finish_reason"] == "length") == at_limit, result
        if at_limit:
            break
    else:
        raise AssertionError(f"no answer reached {max_tokens} tokens")
    # The same question again (temperature 0), as text: the cut is marked after the answer.
    plain = ragq(service.env, "ask", question, "--top-k", "2")
    assert plain.returncode == 0, plain.stderr
    marker = f"[answer cut at {max_tokens} tokens: RAGQ_LLM_MAX_TOKENS]"
    assert marker in plain.stdout
    assert plain.stdout.index(marker) < plain.stdout.index("volcano.md")


def test_reindex_all_and_one(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "reindex.md").write_text("# Kiln log\n\nThe kiln reached 1280 C.\n")
    assert ragq(service.env, "ingest", str(tmp_path)).returncode == 0
    everything = ragq(service.env, "reindex", "--all")
    assert everything.returncode == 0, everything.stderr
    assert "re-indexed" in everything.stderr and "documents" in everything.stderr
    missing = ragq(service.env, "reindex", "no-such-document")
    assert missing.returncode != 0
    assert "document_not_found" in missing.stderr


def test_ingest_reports_failed_files(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 broken")
    result = ragq(service.env, "ingest", str(tmp_path / "broken.pdf"))
    assert result.returncode == 1
    assert "corrupt_file" in result.stderr


def test_ask_with_no_service_is_a_clear_error(service) -> None:  # type: ignore[no-untyped-def]
    env = {**service.env, "RAGQ_API_PORT": "9"}
    result = ragq(env, "ask", "anything", timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr


def test_ingest_reports_every_file_of_a_folder(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "NOTES").write_text("The Drennick ferry sails at noon.\n")  # text, no extension
    (folder / "plan.md").write_text("# Plan\n\nThe Drennick pier opens in May.\n")
    (folder / "archive.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4)
    (folder / "huge.txt").write_text("Drennick " * 400)  # over the limit set below
    (folder / "skip.log").write_text("excluded by glob\n")
    env = {**service.env, "RAGQ_MAX_UPLOAD_BYTES": "2000"}

    first = ragq(env, "ingest", str(folder), "--exclude", "*.log")
    assert first.returncode == 0, first.stderr
    lines = first.stderr
    assert "NOTES  ✓ ingested (1 chunks)" in lines, lines
    assert "archive.gz  - skipped: not a format ragq reads (.gz, not text)" in lines, lines
    assert "huge.txt  - skipped: too large" in lines, lines
    assert "skip.log" not in lines
    assert "ingested 2, unchanged 0, skipped 2, failed 0 (4 files)" in lines, lines

    again = ragq(env, "ingest", str(folder), "--include", "*.md")
    assert "plan.md  = unchanged" in again.stderr, again.stderr
    assert "ingested 0, unchanged 1, skipped 0, failed 0 (1 files)" in again.stderr

    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 broken")
    failed = ragq(env, "ingest", str(folder / "broken.pdf"), str(tmp_path / "missing"))
    assert failed.returncode == 1
    assert "broken.pdf  ✗ failed: corrupt_file" in failed.stderr, failed.stderr
    assert "missing  ✗ failed: no such file or folder" in failed.stderr


def test_the_quick_start_samples_answer_with_a_citation(service) -> None:  # type: ignore[no-untyped-def]
    ingested = ragq(service.env, "ingest", str(REPO / "samples"))
    assert ingested.returncode == 0, ingested.stderr
    assert "ingested 4" in ingested.stderr or "unchanged 4" in ingested.stderr, ingested.stderr
    asked = ragq(service.env, "ask", "When was the Harrow Point lighthouse built?")
    assert asked.returncode == 0, asked.stderr
    assert "1874" in asked.stdout, asked.stdout
    assert "lighthouse.md" in asked.stdout + asked.stderr


def test_usage_prints_a_table_by_day_and_by_key(service) -> None:  # type: ignore[no-untyped-def]
    ragq(service.env, "ask", "When did Mount Ekra last erupt?")
    by_day = ragq(service.env, "usage")
    assert by_day.returncode == 0, by_day.stderr
    assert "completion tok" in by_day.stdout and "total" in by_day.stdout, by_day.stdout
    assert "chunks stored now:" in by_day.stdout
    by_key = ragq(service.env, "usage", "--by", "key", "--from", "2026-01-01", "--to", "2026-01-02")
    assert by_key.returncode == 0, by_key.stderr
    assert "API key" in by_key.stdout
    wrong = ragq(service.env, "usage", "--from", "tomorrow")
    assert wrong.returncode == 1 and "YYYY-MM-DD" in wrong.stderr, wrong.stderr
