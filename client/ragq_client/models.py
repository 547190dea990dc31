"""Typed requests and records of the ragq HTTP API (tests/client/test_schema.py checks them
against the server's OpenAPI schema, so the two cannot drift)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Record(BaseModel):
    """A response body: fields a newer server adds are kept, not refused."""

    model_config = ConfigDict(extra="allow")


class Request(BaseModel):
    """A request body: unknown fields are a mistake of the caller."""

    model_config = ConfigDict(extra="forbid")


class JobKind(StrEnum):
    """What a job does."""

    INGEST = "ingest"
    ANSWER = "answer"
    DELETE = "delete"
    REINDEX = "reindex"
    ACCESS = "access"


class JobStatus(StrEnum):
    """Lifecycle of a job: queued → running → succeeded | failed | cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """Whether the job can no longer change."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class SearchMode(StrEnum):
    """Which vectors rank the chunks: both fused, the dense one, or the sparse one."""

    HYBRID = "hybrid"
    DENSE = "dense"
    SPARSE = "sparse"


class SearchFusion(StrEnum):
    """How a hybrid search merges its dense and sparse candidates."""

    RRF = "rrf"
    DBSF = "dbsf"


class CitationMode(StrEnum):
    """How an answer's citations are found: the model's `[n]` markers, attribution, or both."""

    MARKERS = "markers"
    ATTRIBUTION = "attribution"
    BOTH = "both"


class DocumentStatus(StrEnum):
    """Where a document stands."""

    QUEUED = "queued"
    INGESTING = "ingesting"
    READY = "ready"
    FAILED = "failed"
    DELETING = "deleting"


class DeliveryState(StrEnum):
    """Where a job's webhook stands."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    GONE = "gone"


class SearchFilter(Request):
    """Conditions a retrieved chunk meets: one of the ids, one of the titles, these metadata."""

    document_ids: list[str] | None = None
    titles: list[str] | None = None
    metadata: dict[str, str | int | float | bool] | None = None


class DocumentIn(Request):
    """A document given as text."""

    text: str
    title: str | None = None
    metadata: dict[str, Any] | None = None
    document_id: str | None = None
    webhook_url: str | None = None
    access_groups: list[str] | None = None


class DocumentPatch(Request):
    """A change of a document's access groups."""

    access_groups: list[str]


class AnswerIn(Request):
    """A question to answer from the tenant's documents."""

    question: str
    top_k: int = 5
    mode: SearchMode | None = None
    filter: SearchFilter | None = None
    deadline_s: float | None = None
    webhook_url: str | None = None
    min_relevance: float | None = None
    citation_mode: CitationMode | None = None
    quote: bool | None = None


class SearchIn(Request):
    """A direct search of the tenant's chunks."""

    query: str
    top_k: int = 10
    mode: SearchMode | None = None
    filter: SearchFilter | None = None
    fusion: SearchFusion | None = None


class ErrorInfo(Record):
    """A machine-readable error code and a human message."""

    code: str
    message: str


class Progress(Record):
    """Units done of units total (chunks for ingestion, steps for answers)."""

    done: int = 0
    total: int = 0


class Span(Record):
    """A sentence of the answer: `text == answer[start:end]`, offsets in Unicode code points."""

    start: int
    end: int
    text: str
    support: float


class Citation(Record):
    """A retrieved passage: one the answer's model was given, or a search hit."""

    document_id: str
    title: str
    text: str
    score: float
    source: str | None = None
    page: int | None = None
    cited: bool | None = None
    marker: int | None = None
    spans: list[Span] = Field(default_factory=list)
    support: float | None = None


class Usage(Record):
    """Token counts and timings of one generation."""

    prompt_tokens: int
    completion_tokens: int
    ttft_s: float | None
    total_s: float


class AnswerResult(Record):
    """What an answer job produces."""

    answer: str
    citations: list[Citation]
    usage: Usage | None = None
    finish_reason: str | None = None
    grounded: bool = True
    reason: str | None = None
    unsupported: list[Span] = Field(default_factory=list)
    citation_mode: CitationMode | None = None
    relevance: float | None = None


class Answer(AnswerResult):
    """A finished answer, with the job that produced it."""

    job_id: str


class IngestResult(Record):
    """What an ingest job produces."""

    document_id: str
    chunks: int
    content_sha256: str


class JobRecord(Record):
    """A job: its status, progress, result or error, and timings."""

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
    webhook_url: str | None = None
    attempts: int = 0
    worker: str | None = None

    def answer(self) -> Answer:
        """The result of a succeeded answer job."""
        return Answer.model_validate({**(self.result or {}), "job_id": self.job_id})

    def ingested(self) -> IngestResult:
        """The result of a succeeded ingest job."""
        return IngestResult.model_validate(self.result or {})


class JobAccepted(Record):
    """A job was recorded and queued (or, answered 200, an earlier identical request's job)."""

    job_id: str
    status: JobStatus
    document_id: str | None = None


class BatchAccepted(Record):
    """The jobs of a batch, one per document, and the batch id that follows them all."""

    batch_id: str
    jobs: list[JobAccepted]


class BatchStatus(Record):
    """Where the jobs of a batch stand."""

    batch_id: str
    total: int
    counts: dict[str, int]
    progress: Progress
    finished: bool
    jobs: list[JobRecord]


class DocumentInfo(Record):
    """A document: status, chunk count, content hash and the job that last changed it."""

    document_id: str
    title: str
    filename: str | None
    status: DocumentStatus
    chunks: int
    content_sha256: str
    job_id: str
    created_at: str
    updated_at: str
    error: str | None = None
    size_bytes: int | None = None
    access_groups: list[str] = []


class DocumentList(Record):
    """A page of documents."""

    documents: list[DocumentInfo]
    total: int
    offset: int
    limit: int


class JobList(Record):
    """A page of the tenant's jobs, newest first."""

    jobs: list[JobRecord]
    next_cursor: str | None


class SearchOut(Record):
    """The best chunks, best first."""

    mode: SearchMode
    results: list[Citation]


class DeliveryAttempt(Record):
    """One POST to the webhook URL."""

    attempt: int
    at: str
    status_code: int | None = None
    error: str | None = None
    duration_s: float
    outcome: DeliveryState
    next_attempt_at: str | None = None
    manual: bool = False


class DeliveryLog(Record):
    """A job's webhook: its URL, where delivery stands, and every attempt so far."""

    job_id: str
    webhook_url: str | None
    state: DeliveryState | None
    next_attempt_at: str | None = None
    deliveries: list[DeliveryAttempt]


class WebhookSecret(Record):
    """The tenant's webhook signing secret (`whsec_` + base64)."""

    secret: str


class UsageGroup(StrEnum):
    """How usage rows are grouped."""

    DAY = "day"
    KEY = "key"


class UsageCounters(Record):
    """Work done, counted as it happened."""

    answers: int
    prompt_tokens: int
    completion_tokens: int
    engine_ms: int
    ttft_ms: int
    ttft_count: int
    searches: int
    documents: int
    chunks_embedded: int
    bytes_ingested: int
    webhook_deliveries: int


class UsageRow(UsageCounters):
    """The counters of one day, or of one API key over the range."""

    day: str | None = None
    key_id: str | None = None


class UsageOut(Record):
    """A tenant's usage over a range of UTC days (`from_` is the JSON field `from`)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    from_: str = Field(alias="from")
    to: str
    group_by: UsageGroup
    rows: list[UsageRow]
    total: UsageCounters
    chunks_stored: int


class Health(Record):
    """Liveness or readiness, with what was checked."""

    status: str
    checks: dict[str, Any] = Field(default_factory=dict)
