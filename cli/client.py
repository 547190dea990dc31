"""The HTTP client behind `ragq ingest` and `ragq ask`."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

SUFFIXES = {".txt", ".text", ".md", ".markdown", ".html", ".htm", ".pdf"}
FINISHED = {"succeeded", "failed", "cancelled"}

console = Console(stderr=True)


class ClientError(Exception):
    """The API answered with an error."""


def _check(response: httpx.Response) -> dict[str, Any]:
    if response.is_success:
        return response.json()  # type: ignore[no-any-return]
    try:
        error = response.json()["error"]
        raise ClientError(f"{response.status_code} {error['code']}: {error['message']}")
    except (ValueError, KeyError, TypeError):
        raise ClientError(f"{response.status_code}: {response.text[:200]}") from None


def collect(paths: Iterable[Path]) -> list[Path]:
    """Files to ingest: the given files, and the supported files under the given folders."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            files.append(path)
        else:
            raise ClientError(f"{path}: no such file or folder")
    return files


def _groups(files: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(files), size):
        yield files[start : start + size]


def ingest(base_url: str, paths: Iterable[Path], poll_s: float = 0.5, group: int = 50) -> int:
    """Upload files as batches, follow the batches with a progress bar; the number that failed."""
    files = collect(paths)
    if not files:
        console.print("nothing to ingest")
        return 0
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with (
        httpx.Client(base_url=base_url, timeout=120) as http,
        Progress(*columns, console=console) as bar,
    ):
        task = bar.add_task("uploading", total=len(files))
        batches: list[str] = []
        names: dict[str, Path] = {}
        for paths_group in _groups(files, group):
            handles = [p.open("rb") for p in paths_group]
            try:
                parts = [
                    ("files", (p.name, fh)) for p, fh in zip(paths_group, handles, strict=True)
                ]
                accepted = _check(http.post("/v1/documents:batch", files=parts))
            finally:
                for fh in handles:
                    fh.close()
            batches.append(accepted["batch_id"])
            for job, path in zip(accepted["jobs"], paths_group, strict=True):
                names[job["job_id"]] = path
            bar.advance(task, len(paths_group))
        bar.update(task, description="ingesting", completed=0)
        while True:
            states = [_check(http.get(f"/v1/batches/{b}")) for b in batches]
            done = sum(n for s in states for k, n in s["counts"].items() if k in FINISHED)
            chunks = sum(s["progress"]["done"] for s in states)
            bar.update(task, completed=done, description=f"ingesting ({chunks} chunks)")
            if all(s["finished"] for s in states):
                break
            time.sleep(poll_s)
    failed = [job for s in states for job in s["jobs"] if job["status"] != "succeeded"]
    for job in failed:
        error = job.get("error") or {"code": job["status"], "message": ""}
        console.print(f"[red]✗ {names[job['job_id']]}: {error['code']} {error['message']}")
    console.print(f"ingested {len(files) - len(failed)} of {len(files)} files")
    return len(failed)


def _events(http: httpx.Client, job_id: str) -> Iterator[tuple[str, Any]]:
    """The job's events, resuming with Last-Event-ID if the connection drops."""
    last_id: str | None = None
    for _attempt in range(5):
        headers = {"Last-Event-ID": last_id} if last_id else {}
        try:
            with connect_sse(http, "GET", f"/v1/jobs/{job_id}/events", headers=headers) as source:
                for sse in source.iter_sse():
                    last_id = sse.id or last_id
                    yield sse.event, json.loads(sse.data)
                    if sse.event == "done":
                        return
        except httpx.TransportError:
            time.sleep(1)
    raise ClientError("lost the event stream")


def ask(base_url: str, question: str, top_k: int) -> int:
    """Ask a question, print the answer as it streams, then its numbered sources."""
    out = sys.stdout
    with httpx.Client(base_url=base_url, timeout=httpx.Timeout(60, read=None)) as http:
        job = _check(http.post("/v1/answers", json={"question": question, "top_k": top_k}))
        for event, data in _events(http, job["job_id"]):
            if event == "token":
                out.write(data["text"])
                out.flush()
            elif event == "done":
                out.write("\n")
                return _print_final(data)
    return 1


def _print_final(record: dict[str, Any]) -> int:
    if record["status"] != "succeeded":
        error = record.get("error") or {"code": record["status"], "message": ""}
        console.print(f"[red]{record['status']}: {error['code']} {error['message']}")
        return 1
    citations = record["result"]["citations"]
    if citations:
        console.print("\nSources:")
    for n, citation in enumerate(citations, start=1):
        origin = citation.get("source") or citation["document_id"]
        console.print(f"  [{n}] {citation['title']}  ({origin})", markup=False)
    return 0
