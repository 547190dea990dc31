"""All ragq configuration: one pydantic-settings class read from `RAGQ_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["development", "production"]


class Settings(BaseSettings):
    """Every knob of the service; defaults give the embedded single-machine setup."""

    model_config = SettingsConfigDict(env_prefix="RAGQ_", env_file=None, extra="ignore")

    environment: Environment = "development"
    data_dir: Path = Path(".data")
    cache_dir: Path = Path(".cache")

    # Redis: broker, job records and event streams.
    redis_url: str = "redis://127.0.0.1:6379/0"
    job_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    visibility_timeout_s: int = Field(default=1800, ge=60)
    max_attempts: int = Field(default=3, ge=1)

    # API.
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_url: str = ""
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    max_question_chars: int = Field(default=2000, ge=1)
    max_top_k: int = Field(default=20, ge=1)

    # Vector store: empty URL means the embedded store under data_dir.
    qdrant_url: str = ""
    qdrant_api_key: str = ""
    collection: str = "ragq_chunks"

    # Embeddings and chunking.
    embedding_model: str = ""
    embedding_batch_size: int = Field(default=64, ge=1)
    chunk_tokens: int = Field(default=200, ge=16)
    chunk_overlap_tokens: int = Field(default=40, ge=0)

    # Generation.
    llm_model: str = ""
    llm_dtype: str = "auto"
    llm_max_model_len: int = Field(default=2048, ge=256)
    llm_max_tokens: int = Field(default=256, ge=1)
    llm_temperature: float = Field(default=0.0, ge=0.0)
    llm_repetition_penalty: float = Field(default=1.1, gt=0.0)
    llm_max_num_seqs: int = Field(default=32, ge=1)
    llm_gpu_memory_utilization: float = Field(default=0.85, gt=0.0, le=1.0)
    llm_tensor_parallel_size: int = Field(default=1, ge=1)
    llm_enforce_eager: bool = False
    llm_cpu_kvcache_gib: int = Field(default=2, ge=1)
    answer_deadline_s: float = Field(default=300.0, gt=0.0)

    # Operations.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    flower_port: int = Field(default=5555, ge=0, le=65535)
    flower_basic_auth: str = "ragq:ragq"
    shutdown_grace_s: float = Field(default=30.0, gt=0.0)

    # Workers.
    cpu_worker_concurrency: int = Field(default=8, ge=1)
    worker_heartbeat_s: float = Field(default=5.0, gt=0.0)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError("RAGQ_CHUNK_OVERLAP_TOKENS must be smaller than RAGQ_CHUNK_TOKENS")
        if self.environment == "production" and not self.qdrant_url:
            raise ValueError(
                "production mode needs RAGQ_QDRANT_URL: the embedded store serves one process only"
            )
        if self.environment == "production" and self.flower_basic_auth == "ragq:ragq":
            raise ValueError("production mode needs RAGQ_FLOWER_BASIC_AUTH (not the default)")
        return self

    @property
    def base_url(self) -> str:
        """URL clients use to reach the API."""
        return self.api_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def vector_path(self) -> Path:
        """Folder of the embedded vector store."""
        return self.data_dir / "vectors"

    @property
    def llm_worker_concurrency(self) -> int:
        """Answer tasks one llm worker runs at once: enough to fill the engine's batch."""
        return self.llm_max_num_seqs


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
