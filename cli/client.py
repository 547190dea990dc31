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
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

SUFFIXES = {".txt", ".text", ".md", ".markdown", ".html", ".htm", ".pdf"}
FINISHED = {"succeeded", "failed", "cancelled"}

console = Console(stderr=True)
COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


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


def _auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def ingest(
    base_url: str,
    paths: Iterable[Path],
    poll_s: float = 0.5,
    group: int = 50,
    api_key: str = "",
) -> int:
    """Upload files as batches, follow the batches with a progress bar; the number that failed."""
    files = collect(paths)
    if not files:
        console.print("nothing to ingest")
        return 0
    with (
        httpx.Client(base_url=base_url, timeout=120, headers=_auth(api_key)) as http,
        Progress(*COLUMNS, console=console) as bar,
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
        failed = _follow_batches(http, batches, bar, task, "ingesting", poll_s)
    for job in failed:
        error = job.get("error") or {"code": job["status"], "message": ""}
        console.print(f"[red]✗ {names[job['job_id']]}: {error['code']} {error['message']}")
    console.print(f"ingested {len(files) - len(failed)} of {len(files)} files")
    return len(failed)


def _follow_batches(
    http: httpx.Client, batches: list[str], bar: Progress, task: TaskID, verb: str, poll_s: float
) -> list[dict[str, Any]]:
    """Follow the batches until all finished, moving the bar; the jobs that failed.

    Jobs run in the order they were queued, so only the oldest unfinished batch is polled (its
    counts, not its records); the ones after it have barely started.
    """
    summaries: dict[str, dict[str, Any]] = {}
    for batch in batches:
        while True:
            summary = _check(http.get(f"/v1/batches/{batch}", params={"jobs": "false"}))
            summaries[batch] = summary
            done = sum(
                n for s in summaries.values() for k, n in s["counts"].items() if k in FINISHED
            )
            chunks = sum(s["progress"]["done"] for s in summaries.values())
            bar.update(task, completed=done, description=f"{verb} ({chunks} chunks)")
            if summary["finished"]:
                break
            time.sleep(poll_s)
    # Only the batches with a failure are read whole, once, for their failed jobs.
    return [
        job
        for batch, summary in summaries.items()
        if summary["counts"].get("succeeded", 0) != summary["total"]
        for job in _check(http.get(f"/v1/batches/{batch}"))["jobs"]
        if job["status"] != "succeeded"
    ]


def _follow_jobs(
    http: httpx.Client, job_ids: list[str], bar: Progress, task: TaskID, verb: str, poll_s: float
) -> list[dict[str, Any]]:
    """Poll the unfinished jobs until all finished, moving the bar; the jobs that failed."""
    records: dict[str, dict[str, Any]] = {}
    while True:
        for job_id in job_ids:
            if records.get(job_id, {}).get("status") not in FINISHED:
                records[job_id] = _check(http.get(f"/v1/jobs/{job_id}"))
        done = sum(r["status"] in FINISHED for r in records.values())
        chunks = sum(r["progress"]["done"] for r in records.values())
        bar.update(task, completed=done, description=f"{verb} ({chunks} chunks)")
        if done == len(job_ids):
            return [r for r in records.values() if r["status"] != "succeeded"]
        time.sleep(poll_s)


def reindex(
    base_url: str, document_ids: Iterable[str], poll_s: float = 0.5, api_key: str = ""
) -> int:
    """Re-index the given documents, or all of them when none is given; the number that failed."""
    with (
        httpx.Client(base_url=base_url, timeout=120, headers=_auth(api_key)) as http,
        Progress(*COLUMNS, console=console) as bar,
    ):
        ids = list(document_ids)
        if ids:
            job_ids = [_check(http.post(f"/v1/documents/{i}:reindex"))["job_id"] for i in ids]
            task = bar.add_task("re-indexing", total=len(job_ids))
            failed = _follow_jobs(http, job_ids, bar, task, "re-indexing", poll_s)
        else:
            batch = _check(http.post("/v1/documents:reindex"))
            job_ids = [job["job_id"] for job in batch["jobs"]]
            task = bar.add_task("re-indexing", total=len(job_ids))
            failed = _follow_batches(http, [batch["batch_id"]], bar, task, "re-indexing", poll_s)
    for job in failed:
        error = job.get("error") or {"code": job["status"], "message": ""}
        console.print(f"[red]✗ {job['document_id']}: {error['code']} {error['message']}")
    console.print(f"re-indexed {len(job_ids) - len(failed)} of {len(job_ids)} documents")
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


def ask(
    base_url: str,
    question: str,
    top_k: int,
    mode: str | None = None,
    api_key: str = "",
    as_json: bool = False,
) -> int:
    """Ask a question, print the answer as it streams, then its numbered sources.

    With `as_json`, print only the final job record, as one JSON document, when it is done.
    """
    out = sys.stdout
    timeout = httpx.Timeout(60, read=None)
    with httpx.Client(base_url=base_url, timeout=timeout, headers=_auth(api_key)) as http:
        body = {"question": question, "top_k": top_k, "mode": mode}
        job = _check(http.post("/v1/answers", json=body))
        for event, data in _events(http, job["job_id"]):
            if event == "token" and not as_json:
                out.write(data["text"])
                out.flush()
            elif event == "done":
                if as_json:
                    out.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
                    return 0 if data["status"] == "succeeded" else 1
                out.write("\n")
                return _print_final(data)
    return 1


def _print_final(record: dict[str, Any]) -> int:
    """The answer's ending and its sources on stdout, after the streamed text; errors on stderr."""
    if record["status"] != "succeeded":
        error = record.get("error") or {"code": record["status"], "message": ""}
        console.print(f"[red]{record['status']}: {error['code']} {error['message']}")
        return 1
    result = record["result"]
    if result.get("finish_reason") == "length":
        tokens = (result.get("usage") or {}).get("completion_tokens", "?")
        print(f"[answer cut at {tokens} tokens: RAGQ_LLM_MAX_TOKENS]")
    citations = result["citations"]
    cited = [c for c in citations if c.get("cited")]
    others = [c for c in citations if not c.get("cited")]
    if cited:
        print("\nSources:")
    for n, citation in enumerate(cited, start=1):
        print(f"  [{n}] {_origin(citation)}")
    if others:
        print("\nAlso retrieved:")
    for citation in others:
        print(f"  - {_origin(citation)}")
    return 0


def _origin(citation: dict[str, Any]) -> str:
    page = f", page {citation['page']}" if citation.get("page") else ""
    return f"{citation['title']}{page}  ({citation.get('source') or citation['document_id']})"
