"""The llm engine's set-up: the environment that lets the worker fork vLLM's CPU engine
processes, and the dtype it loads the model in."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.settings import Settings
from workers.llm_engine import OPENMP_VARIABLES, bound_cpus, cpu_flags, engine_dtype, fork_env


def test_binds_all_cpus_but_one_and_preloads_torchs_libgomp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = fork_env({}, cpus=[3, 0, 1, 2])
    assert env["RAGQ_LLM_FORK_ENGINE"] == "true"
    # The worker's own threads and the engine's scheduler get every CPU back once it started.
    monkeypatch.setenv("RAGQ_LLM_WORKER_CPUS", env["RAGQ_LLM_WORKER_CPUS"])
    assert Settings().llm_worker_cpus == [0, 1, 2, 3]
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0,1,2"
    assert env["OMP_NUM_THREADS"] == "3"
    assert env["GOMP_CPU_AFFINITY"] == "0 1 2"
    assert env["OMP_PLACES"] == "{0,1,2}"
    libgomp = Path(env["LD_PRELOAD"])
    assert libgomp.name.startswith("libgomp") and libgomp.exists()
    assert libgomp.parent.parent.name == "torch"


def test_a_standby_beside_serving_engines_takes_the_cpus_they_leave_first() -> None:
    """On two cores the standby's engine loads on the other one; on more, it keeps the size of
    an engine and takes the free CPU first."""
    assert fork_env({}, cpus=[0, 1], avoid=[0])["VLLM_CPU_OMP_THREADS_BIND"] == "1"
    assert fork_env({}, cpus=[0, 1], avoid=[1])["VLLM_CPU_OMP_THREADS_BIND"] == "0"
    assert bound_cpus(fork_env({}, cpus=[0, 1, 2, 3], avoid=[0, 1, 2])) == {0, 1, 3}
    assert bound_cpus(fork_env({}, cpus=[0, 1, 2, 3], avoid=[9])) == {0, 1, 2}
    assert bound_cpus({}) == set()


def test_one_cpu_is_used_alone() -> None:
    env = fork_env({}, cpus=[5])
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "5" and env["OMP_NUM_THREADS"] == "1"


@pytest.mark.parametrize("name", OPENMP_VARIABLES)
def test_an_openmp_setup_of_the_environment_is_left_alone(name: str) -> None:
    # The engine is then spawned, as vLLM does, with the set-up the environment chose.
    assert fork_env({name: "1"}, cpus=[0, 1]) == {}


AVX2 = frozenset({"sse4_2", "avx2", "fma"})


def test_auto_is_float32_on_an_x86_cpu_without_amx() -> None:
    assert engine_dtype("auto", True, AVX2) == "float32"
    assert engine_dtype("auto", True, AVX2 | {"avx512f", "avx512_bf16"}) == "float32"


def test_auto_stays_with_vllm_where_bfloat16_is_native_or_not_an_x86_cpu() -> None:
    assert engine_dtype("auto", True, AVX2 | {"avx512f", "amx_bf16", "amx_tile"}) == "auto"
    assert engine_dtype("auto", False, AVX2) == "auto"  # a GPU
    assert engine_dtype("auto", True, frozenset({"fp", "asimd", "bf16"})) == "auto"  # Arm
    assert engine_dtype("auto", True, frozenset()) == "auto"  # flags unknown


def test_a_dtype_that_is_set_is_kept() -> None:
    assert engine_dtype("bfloat16", True, AVX2) == "bfloat16"


def test_this_machines_cpu_flags_are_read() -> None:
    flags = cpu_flags()
    if Path("/proc/cpuinfo").exists() and Path("/proc/cpuinfo").read_text().count("flags"):
        assert flags and all(" " not in f for f in flags)
