"""bench/benchdata.py: a benchmark takes its data folder from --data or RAGQ_BENCH_DATA only."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


def _benchdata() -> ModuleType:
    # The scripts import it as a sibling module (`python bench/x.py` puts bench/ on sys.path).
    spec = importlib.util.spec_from_file_location("benchdata", BENCH / "benchdata.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


benchdata = _benchdata()
NEEDS = (benchdata.CORPUS, benchdata.QUERIES, benchdata.QRELS)


def _parse(argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="bench")
    benchdata.add_data_argument(parser)
    return parser, parser.parse_args(argv)


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    parser, args = _parse(argv)
    with pytest.raises(SystemExit) as exit_info:
        benchdata.data_folder(parser, args.data, NEEDS)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_no_default(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --data and RAGQ_BENCH_DATA the run stops and says how to give the data."""
    monkeypatch.delenv(benchdata.ENV, raising=False)
    err = _error(capsys, [])
    assert "--data PATH" in err and benchdata.ENV in err and "README" in err


def test_absent_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder that does not exist is named."""
    err = _error(capsys, ["--data", str(tmp_path / "scifact")])
    assert f"{tmp_path / 'scifact'} does not exist" in err


def test_missing_files_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each file the benchmark needs and the folder lacks is named."""
    (tmp_path / "corpus.jsonl").write_text("{}\n")
    err = _error(capsys, ["--data", str(tmp_path)])
    assert "lacks queries.jsonl, qrels/train.tsv" in err


def test_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RAGQ_BENCH_DATA gives the folder when --data does not; --data wins over it."""
    (tmp_path / "qrels").mkdir()
    for name in NEEDS:
        (tmp_path / name).write_text("")
    monkeypatch.setenv(benchdata.ENV, str(tmp_path))
    parser, args = _parse([])
    assert benchdata.data_folder(parser, args.data, NEEDS) == tmp_path
    parser, args = _parse(["--data", str(tmp_path / "other")])
    assert args.data == tmp_path / "other"


def test_a_benchmark_without_data_stops_at_once() -> None:
    """bench/retrieval.py (the lightest script to import) exits 2 naming what is missing."""
    env = {k: v for k, v in os.environ.items() if k != benchdata.ENV}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, str(BENCH / "retrieval.py"), "--data", "/nonexistent/scifact"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "/nonexistent/scifact does not exist" in result.stderr
