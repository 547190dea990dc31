"""Data shapes shared by the API and the workers: job records, results and events."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

MetadataValue = str | int | float | bool


class SearchMode(StrEnum):
    """Which vectors a search ranks by: both fused, the dense one, or the sparse one."""

    HYBRID = "hybrid"
    DENSE = "dense"
    SPARSE = "sparse"


class SearchFusion(StrEnum):
    """How a hybrid search merges its dense and sparse candidates."""

    RRF = "rrf"
    DBSF = "dbsf"


class SearchFilter(BaseModel):
    """Conditions a retrieved chunk meets: one of the ids, one of the titles, these metadata."""

    document_ids: list[str] | None = Field(default=None, max_length=1000)
    titles: list[str] | None = Field(default=None, max_length=1000)
    metadata: dict[str, MetadataValue] | None = Field(default=None, max_length=32)


class JobKind(StrEnum):
    """What a job does."""

    INGEST = "ingest"
    ANSWER = "answer"
    DELETE = "delete"
    REINDEX = "reindex"


class JobStatus(StrEnum):
    """Lifecycle of a job: queued → running → succeeded | failed | cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """Whether no further transition is allowed."""
        return self in FINISHED


FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})


class EventName(StrEnum):
    """Names of the entries of a job's event stream (and of its SSE events)."""

    STATUS = "status"
    PROGRESS = "progress"
    TOKEN = "token"
    PASSAGES = "passages"
    CITATIONS = "citations"
    DONE = "done"
    ERROR = "error"


class ErrorInfo(BaseModel):
    """A machine-readable error code and a human message."""

    code: str
    message: str


class Progress(BaseModel):
    """Units done of units total (chunks for ingestion, steps for answers)."""

    done: int = 0
    total: int = 0


class Citation(BaseModel):
    """A retrieved passage: one the answer's model was given, or a search hit."""

    document_id: str
    title: str
    text: str
    score: float
    source: str | None = None
    page: int | None = None
    cited: bool | None = Field(
        default=None,
        description="In an answer: whether the answer cites it; cited passages come first, "
        "numbered as the answer's [n] markers, then those only retrieved.",
    )


class Usage(BaseModel):
    """Token counts and timings of one generation."""

    prompt_tokens: int
    completion_tokens: int
    ttft_s: float | None
    total_s: float


class AnswerResult(BaseModel):
    """What an answer job produces."""

    answer: str
    citations: list[Citation]
    usage: Usage | None = None


class IngestResult(BaseModel):
    """What an ingest job produces."""

    document_id: str
    chunks: int
    content_sha256: str


class JobRecord(BaseModel):
    """The public view of a job."""

    job_id: str
    kind: JobKind
    status: JobStatus
    progress: Progress = Field(default_factory=Progress)
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    document_id: str | None = None
    webhook_url: str | None = Field(
        default=None, description="Where the final record is POSTed when the job finishes."
    )
    attempts: int = Field(
        default=0, description="Deliveries to a worker; more than one means a worker was lost."
    )
    worker: str | None = Field(default=None, description="The last worker that held the job.")
