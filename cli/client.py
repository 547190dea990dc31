"""The HTTP client behind `ragq ingest` and `ragq ask`."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from cli import render
from cli.files import Skipped, select

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


def _groups(files: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(files), size):
        yield files[start : start + size]


def _auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _upload(
    http: httpx.Client, paths: list[Path], skipped: list[Skipped]
) -> list[tuple[dict[str, Any], Path]]:
    """Upload files as one batch; (accepted job, path) for each. A batch the server finds too
    large goes again file by file, and a file it refuses as too large is skipped."""
    handles = [p.open("rb") for p in paths]
    try:
        parts = [("files", (p.name, fh)) for p, fh in zip(paths, handles, strict=True)]
        response = http.post("/v1/documents:batch", files=parts)
    finally:
        for fh in handles:
            fh.close()
    if response.status_code == 413 and len(paths) > 1:
        return [job for path in paths for job in _upload(http, [path], skipped)]
    if response.status_code == 413:
        skipped.append(Skipped(paths[0], f"refused by the server: {response.json()['error']}"))
        return []
    accepted = _check(response)
    return [
        (job | {"batch_id": accepted["batch_id"]}, p)
        for job, p in zip(accepted["jobs"], paths, strict=True)
    ]


def ingest(
    base_url: str,
    paths: Iterable[Path],
    poll_s: float = 0.5,
    group: int = 50,
    api_key: str = "",
    *,
    max_bytes: int = 20 * 2**20,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> int:
    """Upload files as batches, follow them with a progress bar, then report every file's
    outcome (ingested, unchanged, skipped and why, failed and why); the number that failed."""
    selection = select(paths, max_bytes, include, exclude)
    skipped = list(selection.skipped)
    uploads: list[tuple[dict[str, Any], Path]] = []
    records: dict[str, dict[str, Any]] = {}
    if selection.files:
        with (
            httpx.Client(base_url=base_url, timeout=120, headers=_auth(api_key)) as http,
            Progress(*COLUMNS, console=console) as bar,
        ):
            task = bar.add_task("uploading", total=len(selection.files))
            for paths_group in _groups(selection.files, group):
                uploads += _upload(http, paths_group, skipped)
                bar.advance(task, len(paths_group))
            batches = list(dict.fromkeys(job["batch_id"] for job, _ in uploads))
            bar.update(task, description="ingesting", completed=0, total=len(uploads))
            _follow_batches(http, batches, bar, task, "ingesting", poll_s)
            for batch in batches:
                for job in _check(http.get(f"/v1/batches/{batch}"))["jobs"]:
                    records[job["job_id"]] = job
    return _report(uploads, records, skipped)


def _report(
    uploads: list[tuple[dict[str, Any], Path]],
    records: dict[str, dict[str, Any]],
    skipped: list[Skipped],
) -> int:
    """Print one line per file, then the totals; the number of files that failed."""
    lines: list[tuple[str, str]] = []
    counts = {"ingested": 0, "unchanged": 0, "skipped": 0, "failed": 0}
    for accepted, path in uploads:
        record = records.get(accepted["job_id"], accepted)
        if accepted["status"] != "queued" and record["status"] == "succeeded":
            counts["unchanged"] += 1
            lines.append((str(path), "= unchanged"))
        elif record["status"] == "succeeded":
            counts["ingested"] += 1
            chunks = (record.get("result") or {}).get("chunks", "?")
            lines.append((str(path), f"[green]✓ ingested[/green] ({chunks} chunks)"))
        else:
            counts["failed"] += 1
            error = record.get("error") or {"code": record["status"], "message": ""}
            lines.append((str(path), f"[red]✗ failed[/red]: {error['code']} {error['message']}"))
    for skip in skipped:
        missing = skip.reason == "no such file or folder"
        counts["failed" if missing else "skipped"] += 1
        mark = "[red]✗ failed[/red]" if missing else "[yellow]- skipped[/yellow]"
        lines.append((str(skip.path), f"{mark}: {skip.reason}"))
    for name, outcome in sorted(lines):
        console.print(f"{escape(name)}  {outcome}", soft_wrap=True)
    total = sum(counts.values())
    console.print(", ".join(f"{what} {n}" for what, n in counts.items()) + f" ({total} files)")
    return counts["failed"]


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
                    if not sse.data:
                        # A keep-alive ping, which httpx-sse hands over once an id was seen.
                        continue
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
    for line in render.sources(result):
        print(line)
    return 0
