"""Are an answer's cited passages the relevant ones? Attribution versus the model's markers.

    .venv/bin/python bench/attribution.py --data DIR [--limit 20] [--distractors 40]
                                             [--max-tokens 96] [--save FILE] [--show]
    .venv/bin/python bench/attribution.py --answers FILE [--show]

The defaults finish in about 20 minutes on two busy CPU cores (service start, ingestion, then
about 14 minutes of answering); answers are cut at 96 tokens to fit.

DIR (or RAGQ_BENCH_DATA) is a BEIR folder such as SciFact. The relevant abstracts of the first
`--limit` judged claims (seeded shuffle) and `--distractors` other abstracts are ingested into a
fresh service (`ragq up`'s supervisor, the default model in eager mode, RAGQ_MIN_RELEVANCE=0 so
that every claim is answered); then each claim is asked through the API with `citation_mode: both`.

For the citations the system returned (`cited`), and for the model's markers alone (the
passages the text marks, each sentence supported by the passages its markers name) it reports:
`answers_with_citation` (share of answers citing at least one passage), `citation_precision`
(share of cited documents, counted once per answer, that the qrels judge relevant) and
`unsupported_sentence_rate` (share of sentences no passage supports); and
`precision_at_1_retrieval`, the share of claims whose top retrieved document is relevant, from
the same run: the floor citation precision should not fall below. A table of the same figures
for other `min_support` thresholds follows, computed here with `common.attribution` on the very
answers and passages of the run. The last line is one JSON object.

`--save FILE` writes the run's answers (claim, relevant documents, passages given, final result)
as JSON; `--answers FILE` scores such a file again with the current `common.attribution`, with
no service and no data folder, to compare ways of attributing on the very same answers.
`--show` prints every answer with the passage each sentence is attributed to.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from benchdata import CORPUS, QRELS, QUERIES, add_data_argument, data_folder
from grounding import judged_claims
from httpx_sse import aconnect_sse

from cli.supervisor import free_port, running
from common import prompt
from common.attribution import Attribution, attribute
from common.schemas import Citation, CitationMode, Span
from common.settings import Settings

REPO = Path(__file__).resolve().parents[1]
THRESHOLDS = [0.3, 0.4, 0.5, 0.6, 0.7]


@dataclass
class Answer:
    """One claim's answer: its text, the passages given (retrieval order) and the final result."""

    claim: str
    relevant: set[str]
    passages: list[Citation]
    result: dict[str, Any]

    def order(self) -> list[int]:
        """The passages the text marks, by index in `passages`, in marker order."""
        by_doc = {(p.document_id, p.text): i for i, p in enumerate(self.passages)}
        marked = sorted(
            (c for c in self.result["citations"] if c.get("marker")), key=lambda c: c["marker"]
        )
        return [by_doc[(c["document_id"], c["text"])] for c in marked]

    def skip(self) -> int:
        """The length of the prompt's prefill the answer starts with (0 if it does not)."""
        start = prompt.prefill(self.passages)
        return len(start) if self.result["answer"].startswith(start) else 0


@dataclass
class Scores:
    """The figures of one way of citing over every answer."""

    answers_with_citation: float
    citation_precision: float
    unsupported_sentence_rate: float


def score(answers: list[Answer], attributions: list[Attribution]) -> Scores:
    """Answers citing anything, relevant share of cited documents, unsupported sentences."""
    with_citation = cited_docs = relevant_docs = sentences = unsupported = 0
    for answer, attribution in zip(answers, attributions, strict=True):
        docs = {c.document_id for c in attribution.citations if c.cited}
        with_citation += bool(docs)
        cited_docs += len(docs)
        relevant_docs += len(docs & answer.relevant)
        spans = {(s.start, s.end) for c in attribution.citations for s in c.spans}
        unsupported += len(attribution.unsupported)
        sentences += len(spans) + len(attribution.unsupported)
    return Scores(
        round(with_citation / len(answers), 3),
        round(relevant_docs / cited_docs, 3) if cited_docs else 0.0,
        round(unsupported / sentences, 3) if sentences else 0.0,
    )


def from_result(result: dict[str, Any]) -> Attribution:
    """The system's own attribution, as the final record carries it."""
    return Attribution(
        [Citation.model_validate(c) for c in result["citations"]],
        [Span.model_validate(s) for s in result.get("unsupported") or []],
    )


async def ask(http: httpx.AsyncClient, claim: str, relevant: set[str], top_k: int) -> Answer | None:
    """Ask one claim with `citation_mode: both`; None if the job did not succeed."""
    body = {"question": claim, "top_k": top_k, "citation_mode": "both"}
    job_id = (await http.post("/v1/answers", json=body)).json()["job_id"]
    passages: list[Citation] = []
    final: dict[str, Any] = {}
    async with aconnect_sse(http, "GET", f"/v1/jobs/{job_id}/events") as source:
        async for sse in source.aiter_sse():
            if sse.event == "passages":
                passages = [Citation.model_validate(c) for c in json.loads(sse.data)]
            if sse.event == "done":
                final = json.loads(sse.data)
                break
    if final.get("status") != "succeeded":
        print(f"  not answered: {final.get('error')}", flush=True)
        return None
    return Answer(claim, relevant, passages, final["result"])


async def run(
    settings: Settings, env: dict[str, str], documents: list[dict[str, str]],
    claims: list[tuple[str, set[str]]], top_k: int, concurrency: int,
) -> list[Answer]:  # fmt: skip
    """Start the service, ingest the abstracts, ask every claim."""
    with running(settings, env) as supervisor:
        headers = {"Authorization": f"Bearer {supervisor.api_key}"}
        async with httpx.AsyncClient(
            base_url=settings.base_url, timeout=httpx.Timeout(900), headers=headers
        ) as http:
            started = time.perf_counter()
            jobs = []
            for doc in documents:
                body = {"text": doc["text"], "title": doc["title"], "document_id": doc["_id"]}
                jobs.append((await http.post("/v1/documents", json=body)).json()["job_id"])
            for job_id in jobs:
                while (await http.get(f"/v1/jobs/{job_id}")).json()["status"] in (
                    "queued",
                    "running",
                ):
                    await asyncio.sleep(0.5)
            print(f"ingested {len(documents)} abstracts in {time.perf_counter() - started:.0f} s")
            gate = asyncio.Semaphore(concurrency)
            done = 0

            async def one(claim: str, relevant: set[str]) -> Answer | None:
                nonlocal done
                async with gate:
                    answer = await ask(http, claim, relevant, top_k)
                done += 1
                print(f"  {done}/{len(claims)} answered", flush=True)
                return answer

            started = time.perf_counter()
            answers = await asyncio.gather(*(one(c, r) for c, r in claims))
            print(f"answered {len(claims)} claims in {time.perf_counter() - started:.0f} s")
    return [a for a in answers if a is not None]


def collect(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[list[Answer], str]:
    """Answer the claims through a fresh service; the answers and a line describing the run."""
    folder = data_folder(parser, args.data, [CORPUS, QUERIES, QRELS])
    found = judged_claims(folder, args.seed)
    corpus, queries, qrels, judged = found.corpus, found.queries, found.qrels, found.judged
    chosen = judged[: args.limit]
    kept = set().union(*(qrels[q] for q in chosen)) & set(corpus)
    others = sorted(set(corpus) - kept)
    distractors = random.Random(args.seed).sample(others, min(args.distractors, len(others)))
    documents = [corpus[d] for d in sorted(kept) + distractors]
    claims = [(queries[q]["text"], qrels[q]) for q in chosen]

    overrides = {
        "RAGQ_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "RAGQ_DATA_DIR": tempfile.mkdtemp(prefix="ragq-bench-"),
        "RAGQ_CACHE_DIR": str(REPO / ".cache"),
        "RAGQ_API_PORT": str(free_port()),
        "RAGQ_FLOWER_PORT": "0",  # no Flower: its fixed port may be another service's
        "RAGQ_MIN_RELEVANCE": "0",
        "RAGQ_RATE_LIMIT_REQUESTS": "0",
        "RAGQ_LLM_MAX_NUM_SEQS": str(args.concurrency),
        "RAGQ_LLM_MAX_TOKENS": str(args.max_tokens),
        "RAGQ_ANSWER_DEADLINE_S": "3600",
        # No compilation at start (minutes on a busy CPU); the answers are the same.
        "RAGQ_LLM_ENFORCE_EAGER": "true",
        "HF_HUB_OFFLINE": "1",
    }
    os.environ.update(overrides)
    answers = asyncio.run(
        run(Settings(), dict(os.environ), documents, claims, args.top_k, args.concurrency)
    )
    if args.save:
        saved = [
            {
                "claim": a.claim,
                "relevant": sorted(a.relevant),
                "passages": [p.model_dump() for p in a.passages],
                "result": a.result,
            }
            for a in answers
        ]
        args.save.write_text(json.dumps(saved, indent=1), encoding="utf-8")
    described = (
        f"{len(answers)} of {len(claims)} SciFact claims answered, {len(documents)} abstracts, "
        f"top_k {args.top_k}, max_tokens {args.max_tokens}"
    )
    return answers, described


def load(path: Path) -> list[Answer]:
    """Answers saved by `--save`."""
    return [
        Answer(
            a["claim"],
            set(a["relevant"]),
            [Citation.model_validate(p) for p in a["passages"]],
            a["result"],
        )
        for a in json.loads(path.read_text(encoding="utf-8"))
    ]


def show(answers: list[Answer], attributions: list[Attribution]) -> None:
    """Each answer, then each sentence with the passage it is attributed to (* relevant)."""
    for answer, attribution in zip(answers, attributions, strict=True):
        print(f"\nCLAIM {answer.claim}\nANSWER {answer.result['answer']!r}")
        for c in attribution.citations:
            for span in c.spans:
                mark = "*" if c.document_id in answer.relevant else " "
                print(f"  {mark} {c.document_id:>9} {span.support:.2f} {span.text[:90]!r}")
        for span in attribution.unsupported:
            print(f"  - {'unsupported':>9} {span.support:.2f} {span.text[:90]!r}")


def main() -> None:
    """Measure and print the figures, then one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_argument(parser)
    parser.add_argument("--limit", type=int, default=20, help="judged claims to ask")
    parser.add_argument("--distractors", type=int, default=40)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=96, help="RAGQ_LLM_MAX_TOKENS")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--save", type=Path, help="write the answers to this JSON file")
    parser.add_argument("--answers", type=Path, help="score answers saved by --save instead")
    parser.add_argument("--show", action="store_true", help="print every attributed answer")
    args = parser.parse_args()
    settings = Settings()
    if args.answers:
        answers = load(args.answers)
        described = f"{len(answers)} saved answers from {args.answers}, attributed again"
        attributions = [
            attribute(
                a.result["answer"],
                a.passages,
                a.order(),
                CitationMode.BOTH,
                settings.attribution_min_support,
                a.skip(),
            )
            for a in answers
        ]
    else:
        answers, described = collect(args, parser)
        attributions = [from_result(a.result) for a in answers]
    system = score(answers, attributions)
    if args.show:
        show(answers, attributions)

    floor = sum(a.passages[0].document_id in a.relevant for a in answers if a.passages)
    precision_at_1 = round(floor / len(answers), 3)
    timings: list[float] = []

    def local(mode: CitationMode, min_support: float) -> Scores:
        found = []
        for a in answers:
            start = time.perf_counter()
            found.append(
                attribute(a.result["answer"], a.passages, a.order(), mode, min_support, a.skip())
            )
            timings.append(time.perf_counter() - start)
        return score(answers, found)

    markers = local(CitationMode.MARKERS, settings.attribution_min_support)
    print(
        f"\n{described}, min_support {settings.attribution_min_support}; "
        f"precision@1 of retrieval {precision_at_1:.3f}"
    )
    print("| citations | answers with citation | citation precision | unsupported sentences |")
    print("|---|---|---|---|")
    for name, s in (("markers only", markers), ("both (default)", system)):
        print(
            f"| {name} | {s.answers_with_citation:.3f} | {s.citation_precision:.3f} "
            f"| {s.unsupported_sentence_rate:.3f} |"
        )
    print("\nmin_support | answers with citation | citation precision | unsupported sentences")
    for t in THRESHOLDS:
        s = local(CitationMode.BOTH, t)
        print(
            f"{t:11.2f} | {s.answers_with_citation:21.3f} | {s.citation_precision:18.3f} "
            f"| {s.unsupported_sentence_rate:.3f}"
        )
    print(f"attribution: {1000 * statistics.mean(timings):.2f} ms per answer (mean)")
    summary = {
        "claims": len(answers),
        "answers_with_citation": system.answers_with_citation,
        "citation_precision": system.citation_precision,
        "precision_at_1_retrieval": precision_at_1,
        "unsupported_sentence_rate": system.unsupported_sentence_rate,
        "markers_answers_with_citation": markers.answers_with_citation,
        "markers_citation_precision": markers.citation_precision,
        "markers_unsupported_sentence_rate": markers.unsupported_sentence_rate,
    }
    print(json.dumps(summary))  # "claims": the answered ones


if __name__ == "__main__":
    main()
