""".pre-commit-config.yaml: valid; its hooks are the lint of `make lint`, on the project venv."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.ops.support import REPO

CONFIG = REPO / ".pre-commit-config.yaml"


def _pre_commit() -> str:
    bundled = Path(sys.executable).with_name("pre-commit")
    found = str(bundled) if bundled.is_file() else shutil.which("pre-commit")
    assert found, "pre-commit is missing: install the dev dependencies"
    return found


def test_pre_commit_validates_the_config() -> None:
    """`pre-commit validate-config` accepts the file."""
    result = subprocess.run(
        [_pre_commit(), "validate-config", str(CONFIG)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hooks_are_local_and_need_no_network() -> None:
    """ruff check, ruff format and mypy, each a local hook running the project's .venv tools."""
    config = yaml.safe_load(CONFIG.read_text())
    (repo,) = config["repos"]
    assert repo["repo"] == "local"
    hooks = {hook["id"]: hook for hook in repo["hooks"]}
    assert set(hooks) == {"ruff-check", "ruff-format", "mypy"}
    for hook in hooks.values():
        assert hook["language"] == "system", hook["id"]
        assert hook["entry"].startswith(".venv/bin/"), hook["id"]
    assert hooks["ruff-check"]["entry"].split()[:2] == [".venv/bin/ruff", "check"]
    assert hooks["ruff-format"]["entry"].split()[:2] == [".venv/bin/ruff", "format"]
    # mypy checks the whole project, as `make lint` does, not only the staged files.
    assert hooks["mypy"]["entry"].split() == [".venv/bin/mypy", "."]
    assert hooks["mypy"]["pass_filenames"] is False
