"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from common.documents import DocumentInfo
from common.schemas import (
    MAX_ID_CHARS,
    Citation,
    CitationMode,
    JobRecord,
    JobStatus,
    JsonObject,
    Name,
    Progress,
    RequestModel,
    SearchFilter,
    SearchFusion,
    SearchMode,
    Text,
    clean_text,
)
from common.webhooks import MAX_URL_CHARS

WEBHOOK_URL_HELP = (
    "An http(s) URL that receives the final job record as a signed POST (Standard Webhooks) "
    "when the job finishes; it must resolve to public addresses."
)
DocumentId = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS, pattern=r"^[A-Za-z0-9._:-]+$")
]
WebhookUrl = Annotated[
    str,
    StringConstraints(max_length=MAX_URL_CHARS),
    AfterValidator(clean_text),
    Field(description=WEBHOOK_URL_HELP),
]


class DocumentIn(RequestModel):
    """A document given as JSON text."""

    text: Text = Field(description="The document's text (plain, Markdown or HTML).")
    title: Name | None = None
    metadata: JsonObject | None = None
    document_id: DocumentId | None = Field(
        default=None, description="Your id for the document; re-using it replaces the document."
    )
    webhook_url: WebhookUrl | None = None
    access_groups: list[str] | None = Field(
        default=None,
        description="The document's access groups (each 1-64 characters of letters, digits, "
        "'_', '.' or '-'; at most 32): only tenant admin keys and keys of one of the groups read "
        "it (none: every key of the tenant). A key that is no admin assigns only its own groups.",
    )


class DocumentPatch(RequestModel):
    """A change of a document's access groups (its chunks are not embedded again)."""

    access_groups: list[str] = Field(
        description="The document's new access groups (an empty list: ungrouped). A key that is "
        "no admin may only change a document whose groups are all its own, to groups of its own."
    )


class AnswerIn(RequestModel):
    """A question to answer from the tenant's documents."""

    question: Text = Field(description="At most RAGQ_MAX_QUESTION_CHARS characters.")
    top_k: int = Field(default=5, ge=1, description="At most RAGQ_MAX_TOP_K.")
    mode: SearchMode | None = Field(
        default=None,
        strict=False,
        description="How passages are retrieved (default: RAGQ_SEARCH_MODE).",
    )
    filter: SearchFilter | None = Field(
        default=None, description="Retrieve only from chunks that meet these conditions."
    )
    deadline_s: float | None = Field(
        default=None,
        gt=0,
        description="Fail the job with `deadline_exceeded` if no answer after this many seconds "
        "(capped by the server's RAGQ_ANSWER_DEADLINE_S).",
    )
    webhook_url: WebhookUrl | None = None
    min_relevance: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Answer only if the best passage's cosine similarity to the question is at "
        "least this (default: RAGQ_MIN_RELEVANCE; 0: always generate).",
    )
    citation_mode: CitationMode | None = Field(
        default=None,
        strict=False,
        description="How citations are found: `markers` (the model's [n] markers), "
        "`attribution` (each sentence to the passages that support it) or `both` "
        "(default: RAGQ_CITATION_MODE).",
    )
    quote: bool | None = Field(
        default=None,
        description="Open the answer with the passage sentence that best answers the question, "
        "quoted word for word with its [n] marker, and write the answer from the passages it may "
        "quote (RAGQ_ANSWER_QUOTE_PASSAGES) only (default: RAGQ_ANSWER_QUOTE, true).",
    )


class SearchIn(RequestModel):
    """A direct search of the tenant's chunks."""

    query: Text = Field(description="At most RAGQ_MAX_QUESTION_CHARS characters.")
    top_k: int = Field(default=10, ge=1, description="At most RAGQ_MAX_SEARCH_K.")
    mode: SearchMode | None = Field(
        default=None,
        strict=False,
        description="How chunks are ranked (default: RAGQ_SEARCH_MODE).",
    )
    filter: SearchFilter | None = None
    fusion: SearchFusion | None = Field(
        default=None,
        strict=False,
        description="How hybrid merges its two sides (default: RAGQ_SEARCH_FUSION).",
    )


class SearchOut(BaseModel):
    """The best chunks, best first."""

    mode: SearchMode
    results: list[Citation]


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


class JobList(BaseModel):
    """A page of the tenant's jobs, newest first."""

    jobs: list[JobRecord]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null when there is none."
    )


class Health(BaseModel):
    """Liveness or readiness, with what was checked."""

    status: str
    checks: dict[str, Any] = Field(default_factory=dict)


class WebhookSecret(BaseModel):
    """The tenant's webhook signing secret (Standard Webhooks, `whsec_` + base64)."""

    secret: str


class UsageGroup(StrEnum):
    """How usage rows are grouped."""

    DAY = "day"
    KEY = "key"


class UsageCounters(BaseModel):
    """Work done and counted as it happened (see README, *Usage*)."""

    answers: int = Field(description="Answers that succeeded (chat completions included).")
    prompt_tokens: int = Field(description="Prompt tokens of every generation that finished.")
    completion_tokens: int = Field(description="Tokens generated.")
    engine_ms: int = Field(description="Engine time of the generations, in milliseconds.")
    ttft_ms: int = Field(description="Sum of the generations' times to first token (ms).")
    ttft_count: int = Field(description="How many generations `ttft_ms` sums.")
    searches: int = Field(description="Searches (`POST /v1/search`).")
    documents: int = Field(description="Document versions ingested.")
    chunks_embedded: int = Field(description="Chunks embedded, by ingestion and re-indexing.")
    bytes_ingested: int = Field(description="Bytes of the documents ingested.")
    webhook_deliveries: int = Field(description="Webhook delivery attempts made.")


class UsageRow(UsageCounters):
    """The counters of one day (`group_by=day`) or one API key over the range (`group_by=key`)."""

    day: str | None = None
    key_id: str | None = None


class UsageOut(BaseModel):
    """A tenant's usage over a range of UTC days."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from", description="First UTC day (YYYY-MM-DD), included.")
    to: str = Field(description="Last UTC day, included.")
    group_by: UsageGroup
    rows: list[UsageRow] = Field(description="Days or keys with any usage, in order.")
    total: UsageCounters
    chunks_stored: int = Field(description="Chunks of the tenant's ready documents, now.")
