"""The environment that lets the llm worker fork vLLM's CPU engine processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.llm_engine import OPENMP_VARIABLES, fork_env


def test_binds_all_cpus_but_one_and_preloads_torchs_libgomp() -> None:
    env = fork_env({}, cpus=[3, 0, 1, 2])
    assert env["RAGQ_LLM_FORK_ENGINE"] == "true"
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0,1,2"
    assert env["OMP_NUM_THREADS"] == "3"
    assert env["GOMP_CPU_AFFINITY"] == "0 1 2"
    assert env["OMP_PLACES"] == "{0,1,2}"
    libgomp = Path(env["LD_PRELOAD"])
    assert libgomp.name.startswith("libgomp") and libgomp.exists()
    assert libgomp.parent.parent.name == "torch"


def test_one_cpu_is_used_alone() -> None:
    env = fork_env({}, cpus=[5])
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "5" and env["OMP_NUM_THREADS"] == "1"


@pytest.mark.parametrize("name", OPENMP_VARIABLES)
def test_an_openmp_setup_of_the_environment_is_left_alone(name: str) -> None:
    # The engine is then spawned, as vLLM does, with the set-up the environment chose.
    assert fork_env({name: "1"}, cpus=[0, 1]) == {}
