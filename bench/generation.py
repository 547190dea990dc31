"""Answer generation through the whole system versus a bare vLLM AsyncLLM, in the same run.

System: HTTP submit → Redis → query worker (embed, search) → llm worker (shared engine) → SSE.
OpenAI route: the same questions as streamed `POST /v1/chat/completions` (the same jobs
underneath), at the highest concurrency, reported as `ratio_openai_c<top>`.
Bare: the very same prompt token ids straight into an AsyncLLM with the same engine settings.
In-process pipeline: that engine again, each question first embedded, searched in a copy of the
store the system filled and rendered into its prompt by the query worker's own functions, in one
process — the same work without the queues (`ttft_queue_overhead_ms_p50_c<lowest>`, system minus
pipeline, and `ttft_ratio_p50_c<highest>`, system ÷ pipeline). The two take turns, so that a
drift of the machine's speed during the run falls on both, each after a pause in which the
other's engine goes idle: at concurrency 1 question by question (system first for one, pipeline
first for the next; `paired_difference_ms_p50_c1` is the median of the questions' own
differences), above it `--rounds` rounds of all the questions each (system first in one round,
pipeline first in the next), each side's requests pooled. A level above 1 is not a steady figure
in one round: its time to first token depends on how the requests reach the engine (all at once,
the engine fills one step with all but the first; spread out, each joins the batch sooner), which
the query stage's pace decides, and that moves with the machine's speed. Each request's
time outside the engine (its time to first token less the engine's own, from submitting to the
engine to its first text) gives the same difference free of the engine's own variation
(`queue_overhead_outside_engine_ms_p50_c<lowest>`).
Prints tokens/s, their ratio, and time to first token (p50/p95) per concurrency; the last line
is one JSON object.

    .venv/bin/python bench/generation.py --data PATH   # N=32 jobs at concurrency 1, 8 and 32

PATH is a BEIR SciFact folder (corpus.jsonl, queries.jsonl); RAGQ_BENCH_DATA may give it instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from benchdata import CORPUS, QUERIES, add_data_argument, data_folder
from httpx_sse import aconnect_sse

from cli.supervisor import free_port, running
from common import prompt
from common.apikeys import DEFAULT_TENANT
from common.schemas import Citation
from common.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[1]
TOP_K = 5  # POST /v1/answers' default
# vLLM's engine busy-polls for its next step for 1 s after its last (shm_broadcast's
# SpinCondition): where the two sides take turns, each waits that out, so that neither runs
# beside the other's idle engine.
PAIR_PAUSE_S = 1.2


@dataclass
class Run:
    """One measured request: time to first token (at the client; and from submitting to the
    engine to its first text: at the llm worker for the system, in-process for the pipeline),
    completion tokens, and its whole time."""

    ttft_s: float
    tokens: int
    engine_ttft_s: float = 0.0
    total_s: float = 0.0


@dataclass
class Result:
    """All requests at one concurrency."""

    runs: list[Run]
    wall_s: float

    @property
    def tok_s(self) -> float:
        """Completion tokens per second of wall time."""
        return sum(r.tokens for r in self.runs) / self.wall_s

    def ttft_ms(self, q: float) -> float:
        """A quantile of time to first token, in milliseconds."""
        return self.quantile_ms([r.ttft_s for r in self.runs], q)

    def engine_ttft_ms(self, q: float) -> float:
        """A quantile of the engine's own time to first token, in milliseconds."""
        return self.quantile_ms([r.engine_ttft_s for r in self.runs], q)

    def outside_engine_ms(self, q: float) -> float:
        """A quantile of each request's time to first token outside the engine (retrieval, and
        in the system the queues), in milliseconds: free of the engine's own variation."""
        return self.quantile_ms([r.ttft_s - r.engine_ttft_s for r in self.runs], q)

    @staticmethod
    def quantile_ms(seconds: list[float], q: float) -> float:
        """A quantile of durations in seconds, in milliseconds."""
        values = sorted(seconds)
        return 1000 * statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


async def bounded(n: int, concurrency: int, one: Callable[[int], Awaitable[Run]]) -> Result:
    """Run `one(i)` for i < n with at most `concurrency` in flight."""
    gate = asyncio.Semaphore(concurrency)

    async def guarded(i: int) -> Run:
        async with gate:
            return await timed(one, i)

    start = time.perf_counter()
    runs = await asyncio.gather(*(guarded(i) for i in range(n)))
    return Result(list(runs), time.perf_counter() - start)


async def paired(
    n: int, one: Callable[[int], Awaitable[Run]], other: Callable[[int], Awaitable[Run]]
) -> tuple[Result, Result]:
    """Run `one(i)` and `other(i)` for i < n one at a time, taking turns at going first, with
    PAIR_PAUSE_S before each; each side's wall time is the sum of its own requests'."""
    ones: list[Run] = []
    others: list[Run] = []
    for i in range(n):
        for side, runs in ((one, ones), (other, others))[:: 1 if i % 2 == 0 else -1]:
            await asyncio.sleep(PAIR_PAUSE_S)
            runs.append(await timed(side, i))
    return (
        Result(ones, sum(r.total_s for r in ones)),
        Result(others, sum(r.total_s for r in others)),
    )


async def rounds(
    n: int,
    concurrency: int,
    count: int,
    one: Callable[[int], Awaitable[Run]],
    other: Callable[[int], Awaitable[Run]],
) -> tuple[list[Result], list[Result]]:
    """Run all n of `one` at `concurrency`, then all n of `other`, `count` times, taking turns at
    going first, with PAIR_PAUSE_S before each; each side's result of each round."""
    ones: list[Result] = []
    others: list[Result] = []
    for k in range(count):
        for side, results in ((one, ones), (other, others))[:: 1 if k % 2 == 0 else -1]:
            await asyncio.sleep(PAIR_PAUSE_S)
            results.append(await bounded(n, concurrency, side))
    return ones, others


def pooled(results: list[Result]) -> Result:
    """Several results as one: every request, the sum of the wall times."""
    return Result([r for result in results for r in result.runs], sum(r.wall_s for r in results))


async def timed(one: Callable[[int], Awaitable[Run]], i: int) -> Run:
    """`one(i)`, with its whole time."""
    start = time.perf_counter()
    run = await one(i)
    run.total_s = time.perf_counter() - start
    return run


def load_corpus(data: Path, docs: int) -> tuple[list[dict[str, Any]], list[str]]:
    """The first `docs` SciFact abstracts and the claims used as questions."""
    with (data / CORPUS).open() as fh:
        corpus = [json.loads(line) for _, line in zip(range(docs), fh, strict=False)]
    with (data / QUERIES).open() as fh:
        questions = [json.loads(line)["text"] for line in fh]
    return corpus, questions


async def ingest(http: httpx.AsyncClient, corpus: list[dict[str, Any]]) -> None:
    """Ingest the abstracts through the API and wait for every job."""
    ids = []
    for doc in corpus:
        body = {"text": doc["text"], "title": doc["title"], "document_id": doc["_id"]}
        ids.append((await http.post("/v1/documents", json=body)).json()["job_id"])
    for job_id in ids:
        while (await http.get(f"/v1/jobs/{job_id}")).json()["status"] in ("queued", "running"):
            await asyncio.sleep(0.2)


async def system_answer(
    http: httpx.AsyncClient, question: str, given: dict[str, list[dict[str, Any]]]
) -> Run:
    """Submit one question, follow its SSE stream; TTFT as the client sees it."""
    start = time.perf_counter()
    job_id = (await http.post("/v1/answers", json={"question": question})).json()["job_id"]
    ttft: float | None = None
    async with aconnect_sse(http, "GET", f"/v1/jobs/{job_id}/events") as source:
        async for sse in source.aiter_sse():
            if sse.event == "token" and ttft is None:
                ttft = time.perf_counter() - start
            if sse.event == "passages":
                given[question] = json.loads(sse.data)
            if sse.event == "done":
                final = json.loads(sse.data)
                break
    assert final["status"] == "succeeded", final
    usage = final["result"]["usage"]
    return Run(ttft or 0.0, usage["completion_tokens"], usage["ttft_s"] or 0.0)


async def openai_answer(http: httpx.AsyncClient, question: str) -> Run:
    """Stream one question through the OpenAI-compatible route; TTFT as the client sees it."""
    start = time.perf_counter()
    body = {
        "model": "ragq",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": question}],
    }
    ttft: float | None = None
    usage: dict[str, int] | None = None
    async with aconnect_sse(http, "POST", "/v1/chat/completions", json=body) as source:
        async for sse in source.aiter_sse():
            if sse.data == "[DONE]":
                break
            chunk = json.loads(sse.data)
            if ttft is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                ttft = time.perf_counter() - start
            usage = chunk.get("usage") or usage
    assert usage is not None, "the stream ended without its usage chunk"
    return Run(ttft or 0.0, usage["completion_tokens"])


async def run_system(
    settings: Settings, env: dict[str, str], corpus: list[dict[str, Any]], questions: list[str],
    n: int, levels: list[int], count: int, engine: InProcess,
) -> tuple[dict[int, Result], dict[str, list[dict[str, Any]]]]:  # fmt: skip
    """Measure the whole system and `engine`'s in-process pipeline (on a copy of the system's
    store) by turns at each concurrency: at 1 question by question, above it `count` rounds of
    all n questions each; also the passages each question was given.

    The OpenAI route's result at the highest concurrency `c` is under the key `-c`.
    """
    given: dict[str, list[dict[str, Any]]] = {}
    results = {}
    with running(settings, env) as supervisor:
        timeout = httpx.Timeout(600)
        limits = httpx.Limits(max_connections=2 * max(levels) + 8)
        headers = {"Authorization": f"Bearer {supervisor.api_key}"}
        async with httpx.AsyncClient(
            base_url=settings.base_url, timeout=timeout, limits=limits, headers=headers
        ) as http:
            await ingest(http, corpus)
            await bounded(4, 4, lambda i: system_answer(http, questions[i], given))
            await engine.open(settings.vector_path)

            def answer(i: int) -> Awaitable[Run]:
                return system_answer(http, questions[i], given)

            # The pipeline's engine runs beside the service while the two take turns: each side
            # runs beside the other's idle engine alike.
            await engine.start()
            for c in levels:
                await engine.like_the_system(first=c == levels[0])
                if c == 1:
                    system_turn, pipeline_turn = await paired(n, answer, engine.piped)
                    system_turns, pipeline_turns = [system_turn], [pipeline_turn]
                else:
                    system_turns, pipeline_turns = await rounds(n, c, count, answer, engine.piped)
                results[c], engine.pipeline[c] = pooled(system_turns), pooled(pipeline_turns)
                r, p = results[c], engine.pipeline[c]
                print(
                    f"system c={c}: {r.tok_s:.1f} tok/s; TTFT p50 {r.ttft_ms(0.5):.0f} ms at the "
                    f"client, {r.engine_ttft_ms(0.5):.0f} ms of it in the engine "
                    f"({r.outside_engine_ms(0.5):.1f} ms outside it); pipeline TTFT p50 "
                    f"{p.ttft_ms(0.5):.0f} ms ({p.outside_engine_ms(0.5):.1f} ms outside the "
                    "engine); p50 by turn, system / pipeline (ms): "
                    + ", ".join(
                        f"{s.ttft_ms(0.5):.0f} / {q.ttft_ms(0.5):.0f}"
                        for s, q in zip(system_turns, pipeline_turns, strict=True)
                    ),
                    flush=True,
                )
            # The service's other route runs as it would alone.
            engine.stop()
            top = max(levels)
            results[-top] = await bounded(n, top, lambda i: openai_answer(http, questions[i]))
            r = results[-top]
            print(f"openai c={top}: {r.tok_s:.1f} tok/s; TTFT p50 {r.ttft_ms(0.5):.0f} ms")
    return results, given


def pipeline_prompt(question: str) -> list[int]:
    """The in-process pipeline's work before the engine, with the query worker's own functions:
    embed the question, hybrid search of the tenant's chunks, render the prompt."""
    from workers import engines
    from workers.query import search

    settings = get_settings()
    passages = search(DEFAULT_TENANT, question, TOP_K, settings.search_mode)
    ids, _ = prompt.render(
        engines.llm_tokenizer(), question, passages, settings.llm_max_model_len,
        settings.llm_max_tokens,
    )  # fmt: skip
    return ids


class InProcess:
    """One AsyncLLM with the system's engine settings, in this process, measured two ways: bare,
    on given prompt ids, and as an in-process pipeline that first retrieves and renders each
    question's prompt (in a copy of the store the system filled)."""

    def __init__(self, settings: Settings, questions: list[str]) -> None:
        self.settings = settings
        self.questions = questions
        self.prompts: list[list[int]] = []
        self.pipeline: dict[int, Result] = {}
        self.engine: Any = None
        self._ids = iter(range(1 << 30))

    async def open(self, store: Path) -> None:
        """Load the pipeline's models and a copy of `store`."""
        # The system's store stays open in its worker: the pipeline reads a copy of it.
        copy = Path(tempfile.mkdtemp(prefix="ragq-bench-store-"))
        shutil.copytree(store, copy / store.name)
        os.environ["RAGQ_DATA_DIR"] = str(copy)
        get_settings.cache_clear()
        await asyncio.to_thread(pipeline_prompt, self.questions[0])

    async def start(self) -> None:
        """Start the engine."""
        from vllm import SamplingParams
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.sampling_params import RequestOutputKind
        from vllm.v1.engine.async_llm import AsyncLLM

        from common.models import llm_model_path
        from workers.llm_engine import enforce_eager, model_dtype

        settings = self.settings
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(settings.llm_cpu_kvcache_gib))
        self.engine = AsyncLLM.from_engine_args(
            AsyncEngineArgs(
                model=llm_model_path(settings),
                dtype=model_dtype(settings),  # type: ignore[arg-type]
                max_model_len=settings.llm_max_model_len,
                max_num_seqs=settings.llm_max_num_seqs,
                enforce_eager=enforce_eager(settings),
            )
        )
        self.params = SamplingParams(
            max_tokens=settings.llm_max_tokens,
            temperature=settings.llm_temperature,
            repetition_penalty=settings.llm_repetition_penalty,
            frequency_penalty=settings.llm_frequency_penalty,
            output_kind=RequestOutputKind.DELTA,
        )

    def stop(self) -> None:
        """Stop the engine."""
        if self.engine is not None:
            self.engine.shutdown()
            self.engine = None

    async def one(self, i: int, pipeline: bool = False) -> Run:
        """Question `i` into the engine: its given prompt, or retrieved and rendered first."""
        from vllm.inputs import TokensPrompt

        start = time.perf_counter()
        ttft: float | None = None
        engine_ttft = 0.0
        tokens = 0
        ids = (
            await asyncio.to_thread(pipeline_prompt, self.questions[i])
            if pipeline
            else self.prompts[i]
        )
        submitted = time.perf_counter()
        stream = self.engine.generate(
            TokensPrompt(prompt_token_ids=ids), self.params, f"bare-{next(self._ids)}"
        )
        async for out in stream:
            if out.outputs[0].text and ttft is None:
                now = time.perf_counter()
                ttft, engine_ttft = now - start, now - submitted
            tokens += len(out.outputs[0].token_ids)
        return Run(ttft or 0.0, tokens, engine_ttft)

    def piped(self, i: int) -> Awaitable[Run]:
        """Question `i` through the in-process pipeline."""
        return self.one(i, pipeline=True)

    async def like_the_system(self, first: bool) -> None:
        """Give the engine's prefix cache the state the system's had at this level: cold but
        for the four warm-up questions at the first level, holding every prompt at later ones."""
        if first:
            await self.engine.reset_prefix_cache()
            await bounded(4, 4, self.piped)

    async def measure(
        self, prompts: list[list[int]], n: int, levels: list[int]
    ) -> tuple[dict[int, Result], bool]:
        """The bare engine on `prompts` at each level; also whether the KV cache holds every
        prompt with its answer (see `fits`)."""
        self.prompts = prompts
        await self.start()
        cache = self.engine.vllm_config.cache_config
        capacity = (cache.num_gpu_blocks or 0) * cache.block_size
        fitting = fits(prompts, self.settings.llm_max_tokens, capacity)
        results = {}
        for i, c in enumerate(levels):
            await self.like_the_system(i == 0)
            results[c] = await bounded(n, c, self.one)
            r = results[c]
            print(
                f"bare   c={c}: {r.tok_s:.1f} tok/s; TTFT p50 {r.ttft_ms(0.5):.0f} ms", flush=True
            )
        return results, fitting

    def close(self) -> None:
        """Stop the engine, close the store copy."""
        from workers import engines

        self.stop()
        engines.close_all()


async def measure(
    settings: Settings, env: dict[str, str], corpus: list[dict[str, Any]], questions: list[str],
    n: int, levels: list[int], count: int,
) -> tuple[dict[int, Result], dict[int, Result], dict[int, Result], bool]:  # fmt: skip
    """The system's, the bare engine's and the pipeline's results at each level; whether the
    prompts fit the KV cache."""
    engine = InProcess(settings, questions)
    try:
        system, given = await run_system(settings, env, corpus, questions, n, levels, count, engine)
        tokenizer = await asyncio.to_thread(tokenizer_of, settings)
        prompts = []
        for q in questions:
            # The passages in the order the model was given them (the `passages` event), so the
            # bare engine gets the very same prompt.
            passages = [Citation.model_validate(c) for c in given[q]]
            ids, _ = prompt.render(
                tokenizer, q, passages, settings.llm_max_model_len, settings.llm_max_tokens
            )
            prompts.append(ids)
        bare, fitting = await engine.measure(prompts, n, levels)
    finally:
        engine.close()
    return system, bare, engine.pipeline, fitting


def tokenizer_of(settings: Settings) -> Any:
    """The language model's tokenizer."""
    from transformers import AutoTokenizer

    from common.models import llm_model_path

    return AutoTokenizer.from_pretrained(llm_model_path(settings))


def fits(prompts: list[list[int]], max_tokens: int, capacity: int) -> bool:
    """Whether the engine's KV cache (`capacity` tokens) holds every prompt and its answer.

    If not, a level after the first finds some prompts evicted, which ones depending on the
    order and timing of the requests before it (least recently used first): its time to first
    token then compares different cache states, not the two sides, and is said to be so.
    """
    needed = sum(len(ids) + max_tokens for ids in prompts)
    if needed > capacity:
        print(
            f"warning: the {len(prompts)} prompts and answers need {needed} tokens of KV cache, "
            f"the engine has {capacity}: the levels after the first compare prefix-cache states "
            "(lower --n, or raise RAGQ_LLM_CPU_KVCACHE_GIB)",
            flush=True,
        )
    return needed <= capacity


def main() -> None:
    """Run both sides and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n",
        type=int,
        default=32,
        help="answer jobs per concurrency level (their prompts must fit the engine's KV cache)",
    )
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated levels")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="turns of each side at every level above 1 (all n questions each)",
    )
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--docs", type=int, default=300, help="SciFact abstracts to ingest")
    parser.add_argument(
        "--graph",
        choices=("auto", "eager", "compiled"),
        default="auto",
        help="vLLM's mode on both sides (auto: eager on CPU, compiled on a GPU)",
    )
    add_data_argument(parser)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    folder = data_folder(parser, args.data, (CORPUS, QUERIES))
    corpus, questions = load_corpus(folder, args.docs)
    questions = [questions[i % len(questions)] for i in range(args.n)]
    data = Path(tempfile.mkdtemp(prefix="ragq-bench-"))
    overrides = {
        "RAGQ_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "RAGQ_DATA_DIR": str(data),
        "RAGQ_CACHE_DIR": str(REPO / ".cache"),
        "RAGQ_API_PORT": str(free_port()),
        "RAGQ_LLM_MAX_TOKENS": str(args.max_tokens),
        "RAGQ_LLM_MAX_NUM_SEQS": str(max(levels)),
        "RAGQ_RATE_LIMIT_REQUESTS": "0",
        # Every question reaches the engine, as in the bare run: none is answered "not found".
        "RAGQ_MIN_RELEVANCE": "0",
        # Free answers, as the bare engine and the pipeline write them (no quote grammar, every
        # passage in the prompt): the figures are the queues' cost, not a quote's.
        "RAGQ_ANSWER_QUOTE": "false",
        "HF_HUB_OFFLINE": "1",
    }
    if args.graph != "auto":
        overrides["RAGQ_LLM_ENFORCE_EAGER"] = str(args.graph == "eager").lower()
    os.environ.update(overrides)
    settings = Settings()
    system, bare, pipeline, fitting = asyncio.run(
        measure(settings, dict(os.environ), corpus, questions, args.n, levels, args.rounds)
    )

    print(f"\n{args.n} answer jobs per level, {args.max_tokens} max tokens, {args.docs} docs")
    print("| concurrency | system tok/s | bare tok/s | ratio | TTFT p50 system / pipeline / bare "
          "(ms) | TTFT p95 system / pipeline / bare (ms) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for c in levels:
        s, p, b = system[c], pipeline[c], bare[c]
        print(
            f"| {c} | {s.tok_s:.1f} | {b.tok_s:.1f} | {s.tok_s / b.tok_s:.2f} "
            f"| {s.ttft_ms(0.5):.0f} / {p.ttft_ms(0.5):.0f} / {b.ttft_ms(0.5):.0f} "
            f"| {s.ttft_ms(0.95):.0f} / {p.ttft_ms(0.95):.0f} / {b.ttft_ms(0.95):.0f} |"
        )
    summary: dict[str, float] = {
        f"ratio_c{c}": round(system[c].tok_s / bare[c].tok_s, 3) for c in levels
    }
    for n, c in enumerate(levels):
        key = "ttft_overhead_ms_p50" if n == 0 else f"ttft_overhead_ms_p50_c{c}"
        summary[key] = round(system[c].ttft_ms(0.5) - bare[c].ttft_ms(0.5), 1)
    top, low = max(levels), min(levels)
    # What the queues cost: the system against the same work done in one process.
    summary[f"ttft_queue_overhead_ms_p50_c{low}"] = round(
        system[low].ttft_ms(0.5) - pipeline[low].ttft_ms(0.5), 1
    )
    if low == 1:
        # The two sides took turns question by question at 1: each question's own difference,
        # free of what makes one question's first token slower than another's.
        pairs = zip(system[1].runs, pipeline[1].runs, strict=True)
        summary["paired_difference_ms_p50_c1"] = round(
            1000 * statistics.median(s.ttft_s - p.ttft_s for s, p in pairs), 1
        )
    summary[f"ttft_ratio_p50_c{top}"] = round(
        system[top].ttft_ms(0.5) / pipeline[top].ttft_ms(0.5), 3
    )
    # The same difference with each request's own engine time taken out: the engine's time for
    # the same prompt varies (tens of ms on a CPU engine whose first token takes seconds), and
    # the queues do not run inside it.
    system_outside, pipeline_outside = (
        system[low].outside_engine_ms(0.5),
        pipeline[low].outside_engine_ms(0.5),
    )
    summary[f"system_outside_engine_ms_p50_c{low}"] = round(system_outside, 1)
    summary[f"pipeline_outside_engine_ms_p50_c{low}"] = round(pipeline_outside, 1)
    summary[f"queue_overhead_outside_engine_ms_p50_c{low}"] = round(
        system_outside - pipeline_outside, 1
    )
    summary["prompts_fit_kv_cache"] = fitting
    summary[f"pipeline_tok_s_c{top}"] = round(pipeline[top].tok_s, 1)
    summary[f"ratio_openai_c{top}"] = round(system[-top].tok_s / bare[top].tok_s, 3)
    summary[f"openai_tok_s_c{top}"] = round(system[-top].tok_s, 1)
    summary[f"system_tok_s_c{top}"] = round(system[top].tok_s, 1)
    summary[f"bare_tok_s_c{top}"] = round(bare[top].tok_s, 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
