"""Where a benchmark finds its data set: `--data PATH` or RAGQ_BENCH_DATA, never a default.

The benchmarks read a BEIR-format folder (SciFact in the README's figures): `corpus.jsonl`,
`queries.jsonl` and `qrels/train.tsv`. The data is not part of the repository (its licence,
CC BY-NC 2.0, does not allow shipping it), so a run without it stops at once and says what is
missing instead of failing half-way with a traceback.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from pathlib import Path

ENV = "RAGQ_BENCH_DATA"
CORPUS = "corpus.jsonl"
QUERIES = "queries.jsonl"
QRELS = "qrels/train.tsv"
WHERE = "see README.md, section Benchmarks, for where to get BEIR SciFact and how to lay it out"


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    """Add `--data PATH`, whose default is the environment variable RAGQ_BENCH_DATA."""
    parser.add_argument(
        "--data",
        type=Path,
        default=os.environ.get(ENV) or None,
        metavar="PATH",
        help=f"BEIR data folder ({CORPUS}, {QUERIES}, {QRELS}); default: ${ENV}",
    )


def data_folder(parser: argparse.ArgumentParser, value: Path | None, needs: Iterable[str]) -> Path:
    """The data folder, after checking that it holds every file in `needs` (relative paths).

    Anything missing ends the program through `parser.error` (exit status 2) with a message
    that names it.
    """
    if value is None:
        parser.error(f"no data set: pass --data PATH or set {ENV}; {WHERE}")
    folder = Path(value).expanduser()
    if not folder.is_dir():
        parser.error(f"data folder {folder} does not exist (from --data or {ENV}); {WHERE}")
    missing = [name for name in needs if not (folder / name).is_file()]
    if missing:
        parser.error(f"data folder {folder} lacks {', '.join(missing)}; {WHERE}")
    return folder
