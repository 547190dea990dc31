"""All ragq configuration: one pydantic-settings class read from `RAGQ_*` environment variables."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, IPvAnyNetwork, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from common.schemas import CitationMode, SearchFusion, SearchMode

Environment = Literal["development", "production"]


class Settings(BaseSettings):
    """Every knob of the service; defaults give the embedded single-machine setup."""

    model_config = SettingsConfigDict(env_prefix="RAGQ_", env_file=None, extra="ignore")

    environment: Environment = "development"
    data_dir: Path = Path(".data")
    # Where `ragq up` says where it runs, for every `ragq` command in any folder (empty:
    # $XDG_STATE_HOME/ragq/runtime.json, else ~/.local/state/ragq/runtime.json).
    runtime_file: Path | None = None
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
    # uvicorn's line per request (off: the API's metrics count and time every request by route
    # and status, and the line costs a tenth of a job submit's CPU).
    api_access_log: bool = False
    # API processes on the one port (uvicorn workers): one process serves about one core's worth
    # of submits; their /metrics add up across them (Prometheus multiprocess mode).
    api_processes: int = Field(default=2, ge=1)
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    max_question_chars: int = Field(default=2000, ge=1)
    # A chat completion's whole conversation (every message's text), OpenAI-compatible route.
    max_conversation_chars: int = Field(default=32000, ge=1)
    max_top_k: int = Field(default=20, ge=1)
    max_request_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    max_batch_files: int = Field(default=100, ge=1)
    # Per-tenant request rate: at most rate_limit_requests per rate_limit_window_s (0: off).
    rate_limit_requests: int = Field(default=600, ge=0)
    rate_limit_window_s: int = Field(default=60, ge=1)
    # Backpressure: job-creating requests answer 429 while their queue holds more messages.
    max_queue_depth: int = Field(default=10000, ge=0)
    backpressure_retry_after_s: int = Field(default=5, ge=1)

    # API keys: the development key `ragq up` stores (tenant "default") when set; the key
    # `ragq` commands send (default: the key file `ragq up` writes under data_dir).
    dev_api_key: str = ""
    api_key: str = ""

    # Vector store: empty URL means the embedded store under data_dir.
    qdrant_url: str = ""
    qdrant_api_key: str = ""
    collection: str = "ragq_chunks"

    # Embeddings and chunking.
    embedding_model: str = ""
    embedding_batch_size: int = Field(default=64, ge=1)
    chunk_tokens: int = Field(default=200, ge=16)
    chunk_overlap_tokens: int = Field(default=40, ge=0)
    # A PDF is parsed in a child process under these bounds (a decompression bomb fails its job).
    pdf_parse_timeout_s: float = Field(default=60.0, gt=0.0)
    pdf_parse_memory_mib: int = Field(default=1024, ge=128)

    # Retrieval.
    search_mode: SearchMode = SearchMode.HYBRID
    search_fusion: SearchFusion = SearchFusion.DBSF
    max_search_k: int = Field(default=100, ge=1)
    search_timeout_s: float = Field(default=10.0, gt=0.0)
    # Answers: below this dense cosine similarity of the best passage, the documents are taken
    # not to cover the question and nothing is generated (0: off); see bench/grounding.py.
    min_relevance: float = Field(default=0.3, ge=0.0, le=1.0)
    # A sentence-transformers CrossEncoder folder; empty means no re-ranking stage.
    rerank_model: str = ""
    rerank_candidates: int = Field(default=50, ge=1)

    # Generation.
    llm_model: str = ""
    llm_dtype: str = "auto"
    llm_max_model_len: int = Field(default=2048, ge=256)
    llm_max_tokens: int = Field(default=256, ge=1)
    llm_temperature: float = Field(default=0.0, ge=0.0)
    # The repetition penalty also weighs against every prompt token, the passages' words
    # included; the frequency penalty counts only the answer's own tokens (see the README's
    # *Citation attribution* for what each did to the default model).
    llm_repetition_penalty: float = Field(default=1.1, gt=0.0)
    llm_frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    # Said after the question, and the start of an answer drawn from passages (which the model
    # continues from): both make a small model restate the passages, and list them rather than
    # answer, so neither is on by default (measured; README *Citation attribution*).
    answer_instruction: str = ""
    answer_prefill: str = ""
    # Answers open with a quote of the best `answer_quote_passages` passages, word for word with
    # its [n] marker, under a grammar, and are written from those passages only (`quote` per
    # request; README *Citations*).
    answer_quote: bool = True
    answer_quote_passages: int = Field(default=1, ge=1)
    llm_max_num_seqs: int = Field(default=32, ge=1)
    # llm workers `ragq up` starts, each with its own engine: with two, answers go on while one
    # restarts (README *Load with faults*).
    llm_workers: int = Field(default=1, ge=1)
    # `ragq up` also keeps one llm worker loaded and idle, which takes a dead llm worker's place
    # at once (a second engine's memory; README *Load with faults*).
    llm_standby: bool = False
    # Set by `ragq up` on that standby's process: once loaded, it waits for the takeover line on
    # its standard input before it consumes (workers.standby).
    standby: bool = False
    llm_gpu_memory_utilization: float = Field(default=0.85, gt=0.0, le=1.0)
    llm_tensor_parallel_size: int = Field(default=1, ge=1)
    # None: eager on CPU (compiling the graph there takes minutes), compiled on a GPU.
    llm_enforce_eager: bool | None = None
    # Fork vLLM's CPU engine processes instead of spawning them (each spawn imports vLLM and
    # torch again). Only where the process started with its OpenMP set-up in place, which
    # `ragq up` gives its llm worker (workers.llm_engine.fork_env).
    llm_fork_engine: bool = False
    # The CPUs an llm worker's own threads and its forked engine's scheduler may use; libgomp,
    # preloaded for the fork, binds the process to the engine's CPUs as it loads (`ragq up`
    # gives the CPUs it was started with; empty: left as they are).
    llm_worker_cpus: Annotated[list[int], NoDecode] = Field(default=[])
    llm_cpu_kvcache_gib: int = Field(default=2, ge=1)
    answer_deadline_s: float = Field(default=300.0, gt=0.0)
    # Citations: the model's [n] markers, attribution of each sentence to the passages that
    # support it, or both; a sentence needs this support (0 to 1) from a passage to cite it.
    citation_mode: CitationMode = CitationMode.BOTH
    attribution_min_support: float = Field(default=0.5, ge=0.0, le=1.0)
    # After an answer's first text, token events go out at most this often.
    llm_stream_interval_s: float = Field(default=0.25, ge=0.0)

    # Webhooks: delay before each attempt (the first counts from the job's end, each other from
    # the previous attempt), +/- a jitter fraction; private networks an operator allows.
    webhook_retry_schedule_s: Annotated[list[float], NoDecode] = Field(
        default=[0, 5, 300, 1800, 7200, 18000, 36000, 36000], min_length=1
    )
    webhook_jitter: float = Field(default=0.2, ge=0.0, lt=1.0)
    webhook_timeout_s: float = Field(default=10.0, gt=0.0)
    webhook_poll_s: float = Field(default=1.0, gt=0.0)
    webhook_secret_grace_s: int = Field(default=24 * 3600, ge=0)
    webhook_allow_networks: Annotated[list[IPvAnyNetwork], NoDecode] = Field(default=[])

    # Operations.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # How long an API process keeps a tenant's quotas before reading them again: a changed
    # quota holds within this time, and a submission seldom pays a round trip for them.
    quota_cache_s: float = Field(default=5.0, ge=0.0)
    # Per-tenant usage metrics (a `tenant` label): one series per tenant, so only where the
    # operator knows how many tenants there are.
    metrics_by_tenant: bool = False
    flower_port: int = Field(default=5555, ge=0, le=65535)
    flower_basic_auth: str = "ragq:ragq"
    # Links of the web console (empty: Flower beside the API on RAGQ_FLOWER_PORT; no Grafana).
    flower_url: str = ""
    grafana_url: str = ""
    shutdown_grace_s: float = Field(default=30.0, gt=0.0)

    # Workers.
    cpu_worker_concurrency: int = Field(default=8, ge=1)
    worker_heartbeat_s: float = Field(default=5.0, gt=0.0)

    # Delivery: the reconciler re-enqueues jobs a dead worker held, or whose message was lost.
    reconcile_interval_s: float = Field(default=15.0, gt=0.0)
    reconcile_stale_s: float = Field(default=300.0, gt=0.0)
    # Sooner, where every live worker's heartbeat lists the jobs whose messages it holds: a job
    # whose message is in no queue and in no worker's hands on two passes is sent again.
    reconcile_lost_s: float = Field(default=10.0, gt=0.0)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    idempotency_wait_s: float = Field(default=10.0, ge=0.0)

    @field_validator(
        "webhook_retry_schedule_s", "webhook_allow_networks", "llm_worker_cpus", mode="before"
    )
    @classmethod
    def _comma_list(cls, value: object) -> object:
        """Accept a comma-separated environment value (or a JSON list)."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError("RAGQ_CHUNK_OVERLAP_TOKENS must be smaller than RAGQ_CHUNK_TOKENS")
        if self.llm_max_tokens >= self.llm_max_model_len:
            raise ValueError(
                f"RAGQ_LLM_MAX_TOKENS ({self.llm_max_tokens}) must be smaller than "
                f"RAGQ_LLM_MAX_MODEL_LEN ({self.llm_max_model_len}): the prompt gets the "
                "context the answer leaves"
            )
        if self.environment == "production" and not self.qdrant_url:
            raise ValueError(
                "production mode needs RAGQ_QDRANT_URL: the embedded store serves one process only"
            )
        if self.environment == "production" and self.dev_api_key:
            raise ValueError("production mode refuses RAGQ_DEV_API_KEY: create real keys instead")
        if self.environment == "production" and self.flower_basic_auth == "ragq:ragq":
            raise ValueError("production mode needs RAGQ_FLOWER_BASIC_AUTH (not the default)")
        return self

    @property
    def base_url(self) -> str:
        """URL clients use to reach the API."""
        return self.api_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def key_file(self) -> Path:
        """Where `ragq up` writes the development key for `ragq` commands."""
        return self.data_dir / "api-key"

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
