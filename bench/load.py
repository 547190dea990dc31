"""Open-loop load with faults: a mix at fixed rates for a fixed time, then every job checked.

    .venv/bin/python bench/load.py --data DIR [--minutes 10] [--chaos [--kill-every 60]]
                                   [--llm-workers 1] [--llm-standby] [--baseline FILE]
                                   [rates, shares: see --help]

DIR (or RAGQ_BENCH_DATA) is a BEIR folder such as SciFact. Each phase starts a fresh service as
`ragq up` does (its supervisor: Redis as its own child with AOF in a temporary data folder, the
cpu and llm workers and the API, each restarted when it dies), a local webhook receiver, and
ingests `--warmup-docs` abstracts and asks two questions before it measures memory. Then, for
`--minutes`, each kind of request arrives on its own seeded Poisson schedule whatever the
latency (see bench/loadmix.py); the defaults, which two shared cores sustain (README, *Load with
faults*): 0.5 text uploads/s of SciFact abstracts (10 % are new versions of an earlier one),
0.05 batch uploads/s of 5 files, 1 search/s, 0.3 answers/s (RAGQ_LLM_MAX_TOKENS=--max-tokens,
32; RAGQ_MIN_RELEVANCE=0 so every answer reaches the model; all streamed for the time to first
token, 10 % cancelled 0-5 s after they were accepted), and webhooks on 20 % of the jobs.
The client (`ragq_client.AsyncClient`) retries 429, 503 and connection errors with idempotency
keys; every refusal is counted by code. The per-tenant rate limit is off; backpressure is not.

`--chaos`: every `--kill-every` seconds a random worker process (the cpu worker, the llm worker
or one of their children, such as vLLM's engine process) gets SIGKILL, and Redis gets SIGKILL
once at half time; the supervisor restarts them (Redis on the same port, from its AOF), or with
`--llm-standby` (RAGQ_LLM_STANDBY) puts its loaded standby in a dead llm worker's place. With
`--chaos` the benchmark first runs the same schedule without faults on a fresh service, for
`answer_p99_s_chaos_ratio`, unless `--baseline FILE` names the output of such a run, or of an
earlier `--chaos` run with its fault-free phase (its last line; the rates must match).

At the end it stops sending, drains (waits up to `--drain-s` for every job to reach a final
status and every webhook to arrive), and checks: per kind the achieved rate, latency from
request to final status (p50/p95/p99, succeeded jobs), statuses, errors by code; answers' time
to first token (streamed ones, as the client saw it); `lost` (jobs not final after the drain);
`duplicate_chunks` (after the service stopped, the embedded store opened and counted per
document: points beyond a ready document's chunk count, and points of documents that are not
ready); `webhooks_missing` (jobs that asked for a webhook without a delivery, signature checked,
after dedup by webhook-id); Redis used memory and each process group's RSS after warm-up and at
the end, sampled every 30 s between. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from benchdata import CORPUS, QUERIES, add_data_argument, data_folder
from chaos import Chaos, Fault
from hooksink import HOST, Sink, receiving
from loadcheck import (
    Chunks,
    Sampler,
    Snapshot,
    Webhooks,
    check_webhooks,
    compare_chunks,
    describe_job,
    documents,
    drain,
    final,
    in_flight,
    latency_s,
    snapshot,
    stored_chunks,
)
from loadmix import KINDS, CountingRetry, Mix, Traffic, quantile, summary_of

from cli.supervisor import Supervisor, free_port, running
from common.settings import Settings
from ragq_client import AsyncClient, DocumentInfo, JobStatus

REPO = Path(__file__).resolve().parents[1]
TENANT = "default"
CLIENTS = ("document", "update", "batch", "search", "answer", "cancel", "stream", "admin")


@dataclass
class Phase:
    """What one phase measured."""

    chaos: bool
    seconds: float
    started: float
    load_avg: tuple[float, float]
    traffic: Traffic
    drain_s: float
    start: Snapshot
    end: Snapshot
    samples: list[Snapshot]
    webhooks: Webhooks
    docs: list[DocumentInfo]
    faults: list[Fault] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    chunks: Chunks | None = None


def load_data(folder: Path, seed: int) -> tuple[list[dict[str, str]], list[str]]:
    """The abstracts (seeded shuffle) and the claims."""
    with (folder / CORPUS).open(encoding="utf-8") as fh:
        abstracts = [json.loads(line) for line in fh if line.strip()]
    with (folder / QUERIES).open(encoding="utf-8") as fh:
        claims = [json.loads(line)["text"] for line in fh if line.strip()]
    random.Random(seed).shuffle(abstracts)
    return [{k: str(d[k]) for k in ("_id", "title", "text")} for d in abstracts], claims


def environment(data_dir: Path, max_tokens: int, llm_workers: int, standby: bool) -> dict[str, str]:
    """The service's settings for a phase: a fresh data folder and ports, and its own Redis."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAGQ_REDIS_URL", "RAGQ_QDRANT_URL")}
    env.update(
        {
            "RAGQ_DATA_DIR": str(data_dir),
            "RAGQ_CACHE_DIR": str(REPO / ".cache"),
            "RAGQ_API_PORT": str(free_port()),
            "RAGQ_FLOWER_PORT": "0",
            "RAGQ_RATE_LIMIT_REQUESTS": "0",
            "RAGQ_MIN_RELEVANCE": "0",
            "RAGQ_LLM_MAX_TOKENS": str(max_tokens),
            "RAGQ_LLM_WORKERS": str(llm_workers),
            "RAGQ_LLM_STANDBY": str(standby).lower(),
            "RAGQ_LLM_ENFORCE_EAGER": "true",
            "RAGQ_WEBHOOK_ALLOW_NETWORKS": f"{HOST}/32",
            "HF_HUB_OFFLINE": "1",
        }
    )
    return env


def clients(
    settings: Settings, key: str
) -> tuple[dict[str, AsyncClient], dict[str, CountingRetry]]:
    """One client per kind of request, each counting its own refusals."""
    policies = {name: CountingRetry() for name in CLIENTS}
    made = {
        name: AsyncClient(
            settings.base_url,
            key,
            timeout=60,
            retry=policy,
            transport=httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=1000)),
        )
        for name, policy in policies.items()
    }
    return made, policies


async def warm_up(admin: AsyncClient, abstracts: list[dict[str, str]], claims: list[str]) -> None:
    """Ingest the warm-up abstracts and answer two claims, so every model has run once."""
    started = time.monotonic()
    jobs = [
        (await admin.ingest_text(d["text"], title=d["title"], document_id=f"scifact-{d['_id']}"))
        for d in abstracts
    ]
    await admin.wait_jobs([j.job_id for j in jobs], timeout=900, poll_s=1)
    for claim in claims[:2]:
        await admin.ask(claim, top_k=3, timeout=600)
    print(f"warm-up: {len(abstracts)} abstracts, 2 answers in {time.monotonic() - started:.0f} s")


async def drive(
    args: argparse.Namespace,
    chaos: bool,
    supervisor: Supervisor,
    sink: Sink,
    files: Path,
    abstracts: list[dict[str, str]],
    claims: list[str],
    mix: Mix,
) -> Phase:
    """Warm up, send the traffic (with faults), drain, and gather what the checks need."""
    settings = supervisor.settings
    made, policies = clients(settings, supervisor.api_key)
    admin = made["admin"]
    try:
        sink.secret = await admin.webhook_secret()
        warm = abstracts[: args.warmup_docs]
        await warm_up(admin, warm, claims)
        while settings.llm_standby and not supervisor.standing_by():
            await asyncio.sleep(1)  # its engine's start would weigh on the first minute
        seconds = args.minutes * 60
        started, started_epoch = time.monotonic(), time.time()
        load_before = os.getloadavg()[0]
        start = snapshot(supervisor.children, supervisor.redis_url, 0.0)
        sampler = Sampler(supervisor.children, supervisor.redis_url, 30.0, started)
        sampler.start()
        killer = None
        if chaos:
            killer = Chaos(
                supervisor.children,
                supervisor.redis_url,
                args.kill_every,
                seconds / 2,
                args.seed,
                started,
            )
            killer.start()
        traffic = Traffic(
            made, policies, mix, abstracts[args.warmup_docs :], claims, files, sink.url, args.seed
        )
        print(f"sending for {seconds:.0f} s{' with faults' if chaos else ''}", flush=True)
        await traffic.run(seconds)
        if killer is not None:
            killer.join()
        print(f"sent; {len(traffic.jobs)} jobs; draining (at most {args.drain_s:.0f} s)")
        sent = time.monotonic()
        # Streams end with their jobs: their first tokens count even when they come late.
        await traffic.settle(args.drain_s)
        left = max(0.0, args.drain_s - (time.monotonic() - sent))
        await drain(admin, traffic.jobs, sink, left)
        drained = time.monotonic() - sent
        sampler.join()
        end = snapshot(supervisor.children, supervisor.redis_url, time.monotonic() - started)
        docs = await documents(admin)
        return Phase(
            chaos,
            seconds,
            started_epoch,
            (load_before, os.getloadavg()[0]),
            traffic,
            drained,
            start,
            end,
            sampler.samples,
            check_webhooks(traffic.jobs, sink),
            docs,
            killer.faults if killer else [],
            dict(supervisor.restarts),
        )
    finally:
        for client in made.values():
            await client.close()


def run_phase(
    args: argparse.Namespace,
    chaos: bool,
    abstracts: list[dict[str, str]],
    claims: list[str],
    mix: Mix,
) -> Phase:
    """One phase on a fresh service; the store is counted after the service stopped."""
    data_dir = Path(tempfile.mkdtemp(prefix="ragq-bench-load-"))
    files = data_dir / "uploads"
    files.mkdir()
    env = environment(data_dir, args.max_tokens, args.llm_workers, args.llm_standby)
    for name in ("RAGQ_REDIS_URL", "RAGQ_QDRANT_URL"):
        os.environ.pop(name, None)
    os.environ.update(env)
    settings = Settings()
    print(f"\n== phase {'with' if chaos else 'without'} faults; data folder {data_dir}", flush=True)
    with receiving() as sink, running(settings, env) as supervisor:
        phase = asyncio.run(drive(args, chaos, supervisor, sink, files, abstracts, claims, mix))
    stored, total = stored_chunks(settings.vector_path, TENANT, [d.document_id for d in phase.docs])
    phase.chunks = compare_chunks(phase.docs, stored, total)
    return phase


def kind_rows(phase: Phase) -> list[dict[str, Any]]:
    """Per kind: requests sent, jobs, achieved rate, statuses, latency, errors."""
    t = phase.traffic
    rows = []
    for kind in KINDS:
        jobs = [j for j in t.jobs if j.kind == kind]
        if kind == "search":
            done = len(t.search_s)
            latencies = t.search_s
            statuses: Counter[str] = Counter({"answered": done})
        else:
            done = len(jobs)
            statuses = Counter(j.record.status.value if final(j) else "lost" for j in jobs)
            latencies = [
                s
                for j in jobs
                if j.record is not None and j.record.status == JobStatus.SUCCEEDED
                if (s := latency_s(j)) is not None
            ]
        errors = Counter(t.errors.get(kind, Counter()))
        for j in jobs:
            if j.record is not None and j.record.error is not None:
                errors[f"job {j.record.error.code}"] += 1
        refusals = t.policies[kind].refusals if kind in t.policies else Counter()
        rows.append(
            {
                "kind": kind,
                "sent": t.sent[kind],
                "done": done,
                "per_s": round(done / phase.seconds, 3),
                **summary_of(latencies),
                "statuses": dict(statuses),
                "errors": dict(errors),
                "refusals": dict(refusals),
            }
        )
    return rows


def minutes_p50(phase: Phase) -> list[float | None]:
    """Succeeded answers' p50 latency by the minute they were sent: a rising line is a queue."""
    by_minute: dict[int, list[float]] = {}
    for job in phase.traffic.jobs:
        if job.kind != "answer" or job.record is None:
            continue
        if job.record.status != JobStatus.SUCCEEDED or (s := latency_s(job)) is None:
            continue
        by_minute.setdefault(int((job.sent - phase.started) // 60), []).append(s)
    return [
        None if (v := quantile(by_minute.get(m, []), 0.5)) is None else round(v, 1)
        for m in range(max(by_minute, default=-1) + 1)
    ]


def slowest_answers(phase: Phase, count: int = 5) -> list[str]:
    """The slowest succeeded answers: when each was sent, how long it took, its attempts, and
    the faults between its request and its end (what a p99 is made of)."""
    timed = [
        (s, j)
        for j in phase.traffic.jobs
        if j.kind == "answer" and j.record is not None
        if j.record.status == JobStatus.SUCCEEDED and (s := latency_s(j)) is not None
    ]
    lines = []
    for seconds, job in sorted(timed, key=lambda t: t[0], reverse=True)[:count]:
        sent = job.sent - phase.started
        end = sent + seconds
        during = [f"{f.target} at {f.at_s:.0f} s" for f in phase.faults if sent <= f.at_s <= end]
        ttft = "-" if job.ttft_s is None else f"{job.ttft_s:.2f} s"
        attempts = job.record.attempts if job.record else None
        lines.append(
            f"sent at {sent:.0f} s: {seconds:.2f} s, first token {ttft}, attempts {attempts}, "
            f"faults meanwhile: {', '.join(during) or 'none'}"
        )
    return lines


def figures(phase: Phase) -> dict[str, Any]:
    """The phase's figures for the JSON line."""
    t = phase.traffic
    answers = [j for j in t.jobs if j.kind == "answer"]
    answered = [
        s
        for j in answers
        if j.record is not None and j.record.status == JobStatus.SUCCEEDED
        if (s := latency_s(j)) is not None
    ]
    ttft = [j.ttft_s for j in answers if j.ttft_s is not None]
    lost = [j for j in t.jobs if not final(j)]
    chunks = phase.chunks
    assert chunks is not None
    redis_start, redis_end = phase.start.redis_mb, phase.end.redis_mb
    growth = None if redis_start is None or redis_end is None else redis_end - redis_start
    refusals: Counter[str] = Counter()
    for policy in t.policies.values():
        refusals.update(policy.refusals)

    def rounded(v: float | None) -> float | None:
        return None if v is None else round(v, 3)

    return {
        "lost": len(lost),
        "duplicate_chunks": chunks.duplicate_chunks,
        "orphan_points": chunks.orphan_points,
        "missing_chunks": chunks.missing_chunks,
        "webhooks_missing": len(phase.webhooks.missing),
        "webhooks_wrong": len(phase.webhooks.wrong),
        "webhooks_asked": phase.webhooks.asked,
        "webhook_repeats": phase.webhooks.repeats,
        "answer_p50_s": rounded(quantile(answered, 0.5)),
        "answer_p99_s": rounded(quantile(answered, 0.99)),
        "ttft_p50_s": rounded(quantile(ttft, 0.5)),
        "ttft_p99_s": rounded(quantile(ttft, 0.99)),
        "jobs": len(t.jobs),
        "redis_mb_start": redis_start,
        "redis_mb_end": redis_end,
        "redis_mb_growth": rounded(growth),
        "redis_kb_per_job": rounded(1024 * growth / len(t.jobs)) if growth and t.jobs else None,
        "rss_mb_start": phase.start.rss_mb,
        "rss_mb_end": phase.end.rss_mb,
        "refusals": dict(refusals),
        "kills": len(phase.faults),
        "restarts": phase.restarts,
        "answer_p50_s_by_minute": minutes_p50(phase),
        "drain_s": round(phase.drain_s, 1),
        "load_avg": [round(v, 2) for v in phase.load_avg],
        "schedule_late_s": round(t.late_s, 3),
    }


def report(phase: Phase) -> dict[str, Any]:
    """Print the phase's tables and problems; its figures."""
    title = "with faults" if phase.chaos else "without faults"
    before, after = phase.load_avg
    print(
        f"\n== {title}: {phase.seconds / 60:g} min, drained in {phase.drain_s:.0f} s; "
        f"load average {before:.1f} at the start, {after:.1f} at the end"
    )
    print("| kind | sent | jobs / done | per s | p50 s | p95 s | p99 s | statuses | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in kind_rows(phase):
        print(
            f"| {r['kind']} | {r['sent']} | {r['done']} | {r['per_s']} | {r['p50']} | "
            f"{r['p95']} | {r['p99']} | {r['statuses']} | {r['errors'] or ''} |"
        )
    t = phase.traffic
    figs = figures(phase)
    print(
        "answers' time to first token (streamed, as the client saw it): "
        f"p50 {figs['ttft_p50_s']} s, p99 {figs['ttft_p99_s']} s; cancels: {dict(t.cancels)}; "
        "stream errors: "
        f"{dict(t.stream_errors) or 'none'}; refusals: {figs['refusals'] or 'none'}"
    )
    print(f"latest request sent {t.late_s:.2f} s after its scheduled time")
    w = phase.webhooks
    print(
        f"webhooks: {w.delivered} of {w.asked} delivered, {len(w.missing)} missing, "
        f"{len(w.wrong)} wrong, {w.repeats} repeated deliveries, {len(w.invalid)} bad signatures"
    )
    chunks = phase.chunks
    assert chunks is not None
    print(
        f"store: {chunks.duplicate_chunks} chunks beyond the documents "
        f"({chunks.orphan_points} of documents not ready or not listed), "
        f"{chunks.missing_chunks} missing; {len(phase.docs)} documents"
    )
    print(f"memory after warm-up: Redis {phase.start.redis_mb} MB, RSS {phase.start.rss_mb}")
    print("every 30 s: Redis MB, RSS MB, messages waiting per queue, jobs not final per kind")
    for s in phase.samples:
        busy = in_flight(t.jobs, phase.started + s.at_s)
        print(f"  {s.at_s:6.0f} s: Redis {s.redis_mb}, RSS {s.rss_mb}, {s.waiting}, {busy}")
    print(f"memory at the end:    Redis {phase.end.redis_mb} MB, RSS {phase.end.rss_mb}")
    per_minute = minutes_p50(phase)
    print(f"answers' p50 s by the minute they were sent: {per_minute}")
    print("slowest answers:")
    for line in slowest_answers(phase):
        print(f"  {line}")
    if phase.faults:
        print(f"faults: {len(phase.faults)}; restarts by the supervisor: {phase.restarts}")
    for job in [j for j in t.jobs if not final(j)][:20]:
        print(f"LOST {json.dumps(describe_job(job))}")
    by_id = {j.job_id: j for j in t.jobs}
    for job_id in w.missing[:20]:
        print(f"WEBHOOK MISSING {json.dumps(describe_job(by_id[job_id]))}")
    for line in w.wrong[:20] + w.invalid[:20]:
        print(f"WEBHOOK WRONG {line}")
    for document_id, (should, points) in list(chunks.excess.items())[:20]:
        print(f"DUPLICATE CHUNKS {document_id}: {points} points for {should} chunks")
    return figs


def read_baseline(path: Path, rates: dict[str, Any], parser: argparse.ArgumentParser) -> float:
    """The answer p99 without faults of an earlier run at the same rates (its last JSON line):
    a run without faults, or the fault-free phase of a run with them."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    try:
        earlier = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        parser.error(f"--baseline {path}: its last line is not the JSON line of a run")
    if earlier.get("rates") != rates:
        parser.error(f"--baseline {path}: rates {earlier.get('rates')} differ from {rates}")
    if earlier.get("chaos"):
        earlier = earlier.get("baseline") or {}
    p99 = earlier.get("answer_p99_s")
    if not p99:
        parser.error(f"--baseline {path}: no answer_p99_s")
    return float(p99)


def main() -> None:
    """Run the phases, print their tables, then one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_argument(parser)
    d = Mix()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--documents", type=float, default=d.documents, help="text uploads/s")
    parser.add_argument("--batches", type=float, default=d.batches, help="batch uploads/s")
    parser.add_argument("--batch-files", type=int, default=d.batch_files)
    parser.add_argument("--searches", type=float, default=d.searches, help="searches/s")
    parser.add_argument("--answers", type=float, default=d.answers, help="answers/s")
    parser.add_argument("--update-share", type=float, default=d.update_share)
    parser.add_argument("--cancel-share", type=float, default=d.cancel_share)
    parser.add_argument("--webhook-share", type=float, default=d.webhook_share)
    parser.add_argument("--stream-share", type=float, default=d.stream_share)
    parser.add_argument("--max-tokens", type=int, default=32, help="RAGQ_LLM_MAX_TOKENS")
    parser.add_argument("--llm-workers", type=int, default=1, help="RAGQ_LLM_WORKERS")
    parser.add_argument("--llm-standby", action="store_true", help="RAGQ_LLM_STANDBY")
    parser.add_argument("--warmup-docs", type=int, default=100)
    parser.add_argument("--chaos", action="store_true", help="kill workers and Redis")
    parser.add_argument("--kill-every", type=float, default=60.0, help="seconds between kills")
    parser.add_argument("--baseline", type=Path, help="output of a run without --chaos")
    parser.add_argument("--drain-s", type=float, default=400.0, help="longest wait at the end")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    folder = data_folder(parser, args.data, [CORPUS, QUERIES])
    mix = Mix(
        args.documents,
        args.batches,
        args.batch_files,
        args.searches,
        args.answers,
        args.update_share,
        args.cancel_share,
        args.webhook_share,
        args.stream_share,
    )
    rates = {
        **asdict(mix),
        "max_tokens": args.max_tokens,
        "llm_workers": args.llm_workers,
        "llm_standby": args.llm_standby,
        "seed": args.seed,
    }
    baseline = read_baseline(args.baseline, rates, parser) if args.baseline else None
    abstracts, claims = load_data(folder, args.seed)

    phases = [False, True] if args.chaos and baseline is None else [args.chaos]
    done = [run_phase(args, chaos, abstracts, claims, mix) for chaos in phases]
    results = [report(p) for p in done]
    main_figures = results[-1]
    if args.chaos and baseline is None:
        baseline = results[0]["answer_p99_s"]
    p99 = main_figures["answer_p99_s"]
    ratio = round(p99 / baseline, 3) if args.chaos and p99 and baseline else None
    summary = {
        "minutes": args.minutes,
        "chaos": args.chaos,
        **main_figures,
        "answer_p99_s_baseline": baseline if args.chaos else None,
        "answer_p99_s_chaos_ratio": ratio,
        "rates": rates,
    }
    if args.chaos and len(results) == 2:
        kept = ("lost", "duplicate_chunks", "webhooks_missing", "answer_p99_s")
        summary["baseline"] = {k: results[0][k] for k in kept}
    sys.stdout.flush()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
