"""What `ragq ingest`, `ragq reindex`, `ragq ask` and `ragq usage` show, over the Python client
(ragq_client)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TextIO

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
from rich.table import Table

from cli import render
from ragq_client import (
    AnyEvent,
    Client,
    Ingestion,
    JobRecord,
    JobStatus,
    StatusEvent,
    TokenEvent,
    UsageGroup,
    WaitProgress,
)

console = Console(stderr=True)
COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def _follow(bar: Progress, task: TaskID, verb: str) -> Callable[[WaitProgress], None]:
    """A progress callback that moves the bar."""

    def moved(progress: WaitProgress) -> None:
        bar.update(
            task,
            completed=progress.finished,
            total=progress.total,
            description=f"{verb} ({progress.chunks} chunks)",
        )

    return moved


def ingest(
    http: Client,
    paths: Iterable[Path],
    group: int = 50,
    *,
    max_bytes: int = 20 * 2**20,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> int:
    """Upload files as batches, follow them with a progress bar, then report every file's
    outcome (ingested, unchanged, skipped and why, failed and why); the number that failed."""
    with Progress(*COLUMNS, console=console) as bar:
        task = bar.add_task("uploading", total=None, visible=False)

        def uploaded(sent: int, total: int) -> None:
            bar.update(task, completed=sent, total=total, visible=True)

        done = http.ingest(
            list(paths),
            include=include,
            exclude=exclude,
            max_file_bytes=max_bytes,
            batch_size=group,
            wait=True,
            on_upload=uploaded,
            on_progress=_follow(bar, task, "ingesting"),
        )
    return _report(done)


def _report(done: Ingestion) -> int:
    """Print one line per file, then the totals; the number of files that failed."""
    lines: list[tuple[str, str]] = []
    counts = {"ingested": 0, "unchanged": 0, "skipped": 0, "failed": 0}
    for upload in done.uploads:
        record = done.record(upload)
        status = record.status if record else upload.job.status
        if upload.job.status != JobStatus.QUEUED and status == JobStatus.SUCCEEDED:
            counts["unchanged"] += 1
            lines.append((str(upload.path), "= unchanged"))
        elif record is not None and status == JobStatus.SUCCEEDED:
            counts["ingested"] += 1
            chunks = (record.result or {}).get("chunks", "?")
            lines.append((str(upload.path), f"[green]✓ ingested[/green] ({chunks} chunks)"))
        else:
            counts["failed"] += 1
            lines.append((str(upload.path), f"[red]✗ failed[/red]: {_error(record, status)}"))
    for skip in done.skipped:
        missing = skip.reason == "no such file or folder"
        counts["failed" if missing else "skipped"] += 1
        mark = "[red]✗ failed[/red]" if missing else "[yellow]- skipped[/yellow]"
        lines.append((str(skip.path), f"{mark}: {skip.reason}"))
    for name, outcome in sorted(lines):
        console.print(f"{escape(name)}  {outcome}", soft_wrap=True)
    total = sum(counts.values())
    console.print(", ".join(f"{what} {n}" for what, n in counts.items()) + f" ({total} files)")
    return counts["failed"]


def _error(record: JobRecord | None, status: str) -> str:
    """`code message` of a job that did not succeed."""
    if record is not None and record.error is not None:
        return f"{record.error.code} {record.error.message}"
    return f"{status} "


def reindex(http: Client, document_ids: Iterable[str], poll_s: float = 0.5) -> int:
    """Re-index the given documents, or all of them when none is given; the number that failed."""
    ids = list(document_ids)
    with Progress(*COLUMNS, console=console) as bar:
        task = bar.add_task("re-indexing", total=len(ids) or None)
        moved = _follow(bar, task, "re-indexing")
        if ids:
            job_ids = [http.reindex(i).job_id for i in ids]
            records = http.wait_jobs(job_ids, poll_s=poll_s, on_progress=moved)
        else:
            records = http.reindex_all(wait=True, on_progress=moved).jobs
    failed = [r for r in records if r.status != JobStatus.SUCCEEDED]
    for job in failed:
        console.print(f"[red]✗ {job.document_id}: {_error(job, job.status)}")
    console.print(f"re-indexed {len(records) - len(failed)} of {len(records)} documents")
    return len(failed)


RESTARTED = "the worker writing this answer was lost; it is being written again"


def ask(
    http: Client,
    question: str,
    top_k: int,
    mode: str | None = None,
    as_json: bool = False,
    quote: bool | None = None,
) -> int:
    """Ask a question, print the answer as it streams, then its numbered sources.

    With `as_json`, print only the final job record, as one JSON document, when it is done.
    """
    out = sys.stdout
    stream = http.ask(question, top_k=top_k, mode=mode, quote=quote, stream=True)
    if as_json:
        for _ in stream:
            pass
    else:
        write_answer(stream, out)
    record = stream.final
    if record is None:
        return 1
    if as_json:
        out.write(json.dumps(record.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n")
        return 0 if record.status == JobStatus.SUCCEEDED else 1
    out.write("\n")
    return _print_final(record)


def write_answer(events: Iterable[AnyEvent], out: TextIO) -> None:
    """Write an answer's text as it streams; where it starts again (its worker was lost and
    another writes it anew), say so on a line of its own before the new text."""
    written = False
    for event in events:
        if isinstance(event, TokenEvent):
            out.write(event.text)
            out.flush()
            written = True
        elif isinstance(event, StatusEvent) and written and not event.status.finished:
            out.write(f"\n[{RESTARTED}]\n")
            written = False


def _print_final(record: JobRecord) -> int:
    """The answer's ending and its sources on stdout, after the streamed text; errors on stderr."""
    if record.status != JobStatus.SUCCEEDED:
        console.print(f"[red]{record.status.value}: {_error(record, record.status)}")
        return 1
    result = record.answer()
    if result.finish_reason == "length":
        tokens = result.usage.completion_tokens if result.usage else "?"
        print(f"[answer cut at {tokens} tokens: RAGQ_LLM_MAX_TOKENS]")
    for line in render.sources(result.model_dump(mode="json")):
        print(line)
    return 0


# The columns of `ragq usage`: heading, counter.
USAGE_COLUMNS = (
    ("answers", "answers"),
    ("prompt tok", "prompt_tokens"),
    ("completion tok", "completion_tokens"),
    ("engine s", "engine_ms"),
    ("searches", "searches"),
    ("documents", "documents"),
    ("chunks", "chunks_embedded"),
    ("ingested", "bytes_ingested"),
    ("webhooks", "webhook_deliveries"),
)


def _cell(name: str, value: int) -> str:
    if name == "engine_ms":
        return f"{value / 1000:.1f}"
    if name == "bytes_ingested":
        size = float(value)
        for unit in ("B", "KB", "MB", "GB"):
            if size < 1000 or unit == "GB":
                return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
            size /= 1000
    return str(value)


def usage(http: Client, start: str | None, end: str | None, group_by: str) -> int:
    """Print the tenant's usage as a table (stdout), a row per day or per API key."""
    report = http.usage(start=start, end=end, group_by=group_by)
    by_key = report.group_by is UsageGroup.KEY
    table = Table(title=f"usage {report.from_} to {report.to} (UTC)")
    table.add_column("API key" if by_key else "day")
    for heading, _ in USAGE_COLUMNS:
        table.add_column(heading, justify="right")
    for row in [*report.rows, report.total]:
        label = getattr(row, "key_id" if by_key else "day", None) or "total"
        counts = row.model_dump()
        table.add_row(label, *(_cell(name, counts[name]) for _, name in USAGE_COLUMNS))
    # Wide enough for every column when the output is a pipe (rich assumes 80 there).
    Console(width=max(Console().width, 120)).print(table)
    print(f"chunks stored now: {report.chunks_stored}")
    return 0
