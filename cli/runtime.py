"""Where a running `ragq up` is, for every `ragq` command in any folder.

`ragq up` writes a small JSON file once it is ready (its pid, the API, Redis and Flower
addresses, the key file, the data and log folders) and removes it when it stops. A command
takes an address from it unless the environment sets that address explicitly.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from common.settings import Settings


@dataclass(frozen=True)
class Runtime:
    """What a running `ragq up` announces."""

    pid: int
    api_url: str
    redis_url: str
    flower_url: str
    key_file: str
    data_dir: str
    logs: str


def runtime_path(settings: Settings) -> Path:
    """The runtime file: RAGQ_RUNTIME_FILE, else under $XDG_STATE_HOME or ~/.local/state."""
    if settings.runtime_file is not None:
        return settings.runtime_file
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "ragq" / "runtime.json"


def alive(pid: int) -> bool:
    """Whether the process runs (one that exited but was not yet reaped does not)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def write(path: Path, runtime: Runtime) -> None:
    """Announce a running `ragq up` (atomically: readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(asdict(runtime), indent=2) + "\n")
    partial.replace(path)


def read(path: Path) -> Runtime | None:
    """The `ragq up` the file announces, if that process still runs."""
    try:
        runtime = Runtime(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return runtime if alive(runtime.pid) else None


def remove(path: Path, pid: int) -> None:
    """Withdraw the announcement, if it is still this process's."""
    current = read(path)
    if current is not None and current.pid == pid:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Target:
    """Where a command sends its requests, and where each address came from."""

    api_url: str
    redis_url: str
    key: str
    tried: tuple[str, ...]
    runtime: Runtime | None


def resolve(settings: Settings) -> Target:
    """The API, Redis and key to use: explicit settings first, then the running `ragq up`."""
    runtime = read(runtime_path(settings))
    explicit = settings.model_fields_set
    api_url = settings.base_url
    redis_url = settings.redis_url
    if runtime is not None:
        if not explicit & {"api_url", "api_host", "api_port"}:
            api_url = runtime.api_url
        if "redis_url" not in explicit:
            redis_url = runtime.redis_url
    key, tried = settings.api_key, ["RAGQ_API_KEY"]
    files = [settings.key_file.resolve()]
    if runtime is not None and "data_dir" not in explicit:
        files.append(Path(runtime.key_file))
    for file in dict.fromkeys(files):
        if key:
            break
        tried.append(str(file))
        try:
            key = file.read_text().strip()
        except OSError:
            continue
    return Target(api_url, redis_url, key, tuple(tried), runtime)
