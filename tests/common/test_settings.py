"""Settings fail fast on unsafe or inconsistent values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from common.settings import Settings


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGQ_API_PORT", "9123")
    monkeypatch.setenv("RAGQ_LLM_MAX_NUM_SEQS", "16")
    settings = Settings()
    assert settings.api_port == 9123
    assert settings.llm_worker_concurrency == 16
    assert settings.base_url == "http://127.0.0.1:9123"


def test_overlap_must_be_smaller_than_chunk() -> None:
    with pytest.raises(ValidationError, match="OVERLAP"):
        Settings(chunk_tokens=50, chunk_overlap_tokens=50)


def test_production_refuses_unsafe_defaults() -> None:
    with pytest.raises(ValidationError, match="RAGQ_QDRANT_URL"):
        Settings(environment="production", flower_basic_auth="ops:s3cret")
    with pytest.raises(ValidationError, match="RAGQ_FLOWER_BASIC_AUTH"):
        Settings(environment="production", qdrant_url="http://qdrant:6333")
    safe = Settings(
        environment="production", qdrant_url="http://qdrant:6333", flower_basic_auth="ops:s3cret"
    )
    assert safe.qdrant_url


@pytest.mark.parametrize("max_tokens", [2048, 4096])
def test_answer_length_must_leave_room_for_the_prompt(max_tokens: int) -> None:
    with pytest.raises(ValidationError, match=r"RAGQ_LLM_MAX_TOKENS .* RAGQ_LLM_MAX_MODEL_LEN"):
        Settings(llm_max_model_len=2048, llm_max_tokens=max_tokens)
    assert Settings(llm_max_model_len=2048, llm_max_tokens=2047).llm_max_tokens == 2047
