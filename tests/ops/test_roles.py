"""Dependencies by role: the API, Flower and the CLI run on the core dependencies alone."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.ops.support import DOCKER, REPO

# What only the workers need; the core install must not need any of it.
WORKER_ONLY = (
    "torch",
    "sentence_transformers",
    "vllm",
    "qdrant_edge",
    "qdrant_client",
    "transformers",
    "numpy",
)

BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is a worker dependency")
sys.meta_path.insert(0, Block())
import api.main, api.deps, cli.main, cli.supervisor, workers.celery_app
api.main.create_app()
print("ok")
"""


def test_core_dependencies_hold_no_worker_package() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    for name in ("torch", "sentence-transformers", "vllm", "qdrant", "transformers", "pypdf"):
        assert name not in core, name
    extras = project["optional-dependencies"]
    assert "ragq[worker]" in extras["cpu"] and "ragq[worker]" in extras["gpu"]


def test_api_flower_and_cli_import_without_worker_packages() -> None:
    code = BLOCKER.format(blocked=set(WORKER_ONLY))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_api_image_installs_the_core_only() -> None:
    runs = [line for line in (DOCKER / "api.Dockerfile").read_text().splitlines() if "pip" in line]
    assert runs and not any("torch" in line or "[" in line for line in runs), runs
