"""The client installs on its own (`pip install ./client`), without a server dependency, and
talks to a running service from a virtual environment that holds nothing else."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import REPO, Service

IGNORED = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
SERVER_ONLY = ("fastapi", "celery", "redis", "qdrant_client", "torch", "vllm", "uvicorn")
SCRIPT = """
import importlib.util, sys
from ragq_client import Client
missing = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]
assert missing == sys.argv[1:], f"server packages installed: {set(sys.argv[1:]) - set(missing)}"
with Client() as client:  # RAGQ_BASE_URL and RAGQ_API_KEY
    record = client.ingest_text("The Pell canal lock lifts boats 4 metres.", wait=True)
    print(record.status.value, client.documents().total, client.health().status)
"""


def size_mib(folder: Path) -> float:
    """Bytes of the files under the folder, in MiB."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def test_a_fresh_venv_with_only_the_client_talks_to_the_service(
    service: Service, new_key: Callable[[], str], tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # From a copy: building writes build/ and *.egg-info next to the sources.
    source = shutil.copytree(REPO / "client", tmp_path / "client", ignore=IGNORED)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    env |= {"RAGQ_BASE_URL": service.base_url, "RAGQ_API_KEY": new_key()}
    run = subprocess.run(
        [str(venv / "bin" / "python"), "-c", SCRIPT, *SERVER_ONLY],
        cwd=tmp_path,  # not the repository: only what the venv holds is importable
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["succeeded", "1", "ready"]
    [site] = list(venv.glob("lib/python*/site-packages"))
    tooling = sum(size_mib(p) for p in site.glob("pip*"))
    print(f"\nclient-only venv: {size_mib(site) - tooling:.1f} MiB of packages besides pip")
