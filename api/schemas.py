"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from common.documents import DocumentInfo
from common.schemas import JobRecord, JobStatus, Progress

DocumentId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
]


class DocumentIn(BaseModel):
    """A document given as JSON text."""

    text: str = Field(description="The document's text (plain, Markdown or HTML).")
    title: str | None = Field(default=None, max_length=512)
    metadata: dict[str, Any] | None = None
    document_id: DocumentId | None = Field(
        default=None, description="Your id for the document; re-using it replaces the document."
    )


class AnswerIn(BaseModel):
    """A question to answer from the tenant's documents."""

    question: str
    top_k: int = Field(default=5, ge=1)
    deadline_s: float | None = Field(
        default=None,
        gt=0,
        description="Fail the job with `deadline_exceeded` if no answer after this many seconds "
        "(capped by the server's RAGQ_ANSWER_DEADLINE_S).",
    )


class JobAccepted(BaseModel):
    """A job was recorded and queued."""

    job_id: str
    status: JobStatus
    document_id: str | None = None


class BatchAccepted(BaseModel):
    """The jobs of a batch upload, one per document, and the batch id that follows them all."""

    batch_id: str
    jobs: list[JobAccepted]


class BatchStatus(BaseModel):
    """Where the jobs of a batch stand."""

    batch_id: str
    total: int
    counts: dict[str, int]
    progress: Progress
    finished: bool
    jobs: list[JobRecord]


class DocumentList(BaseModel):
    """A page of documents."""

    documents: list[DocumentInfo]
    total: int
    offset: int
    limit: int


class Health(BaseModel):
    """Liveness or readiness, with what was checked."""

    status: str
    checks: dict[str, Any] = Field(default_factory=dict)
