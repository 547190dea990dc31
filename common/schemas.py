"""Data shapes shared by the API and the workers: job records, results and events."""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

# Characters no string of a request may hold: NUL, and UTF-16 surrogates, which JSON's \u
# escapes can carry alone but UTF-8 (Redis, the tokenizer, JSON answers) cannot encode.
FORBIDDEN_CHARS = re.compile("[\x00\ud800-\udfff]")
MAX_NAME_CHARS = 512
MAX_ID_CHARS = 128


def clean_text(value: str) -> str:
    """The string, unless it holds a NUL character or a lone UTF-16 surrogate."""
    found = FORBIDDEN_CHARS.search(value)
    if found is not None:
        what = "a NUL character" if found.group() == "\x00" else "a lone UTF-16 surrogate"
        raise PydanticCustomError(
            "forbidden_character",
            "must not contain {what} ({code} at offset {at})",
            {"what": what, "code": f"U+{ord(found.group()):04X}", "at": found.start()},
        )
    return value


def _name(value: str) -> str:
    if len(value) > MAX_NAME_CHARS:
        raise PydanticCustomError(
            "string_too_long",
            "String should have at most {max_length} characters",
            {"max_length": MAX_NAME_CHARS},
        )
    return clean_text(value)


def _scalar(value: object) -> str | int | float | bool:
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("finite_number", "Input should be a finite number")
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _name(value)
    raise PydanticCustomError("scalar_type", "Input should be a string, a number or a boolean")


def _json(value: object, path: str) -> Any:
    if value is None:
        return None
    if path.count(".") + path.count("[") > 16:
        raise PydanticCustomError("too_deep", "nested deeper than 16 levels")
    if isinstance(value, list):
        return [_json(item, f"{path}[{n}]") for n, item in enumerate(value)]
    if isinstance(value, dict):
        return {_at(path, _name, key): _json(item, f"{path}.{key}") for key, item in value.items()}
    return _at(path, _scalar, value)


def _at(path: str, check: Any, value: Any) -> Any:
    """`check(value)`, with the path of a nested value in front of its error message."""
    try:
        return check(value)
    except PydanticCustomError as exc:
        if not path:
            raise
        detail = f"{path.lstrip('.')}: {exc.message()}"
        raise PydanticCustomError(exc.type, "{detail}", {"detail": detail}) from exc


def _object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PydanticCustomError("dict_type", "Input should be a valid dictionary")
    return _json(value, "")  # type: ignore[no-any-return]


# Every string field of a request is one of these. Text is bounded where it is used (by a
# setting), Id and Name are short; metadata strings and keys are Names.
Text = Annotated[str, AfterValidator(clean_text)]
Id = Annotated[str, StringConstraints(max_length=MAX_ID_CHARS), AfterValidator(clean_text)]
Name = Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS), AfterValidator(clean_text)]
MetadataValue = Annotated[
    str | int | float | bool,
    PlainValidator(_scalar, json_schema_input_type=Name | int | float | bool),
]
JsonObject = Annotated[
    dict[str, Any], PlainValidator(_object, json_schema_input_type=dict[Name, Any])
]


class RequestModel(BaseModel):
    """A request body: no unknown fields, no type coercion ("5" is no integer), and no NaN or
    infinity (JSON has neither, but Python's parser reads them)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class SearchMode(StrEnum):
    """Which vectors a search ranks by: both fused, the dense one, or the sparse one."""

    HYBRID = "hybrid"
    DENSE = "dense"
    SPARSE = "sparse"


class SearchFusion(StrEnum):
    """How a hybrid search merges its dense and sparse candidates."""

    RRF = "rrf"
    DBSF = "dbsf"


class SearchFilter(RequestModel):
    """Conditions a retrieved chunk meets: one of the ids, one of the titles, these metadata."""

    document_ids: list[Id] | None = Field(default=None, max_length=1000)
    titles: list[Name] | None = Field(default=None, max_length=1000)
    metadata: dict[Name, MetadataValue] | None = Field(default=None, max_length=32)


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


class CitationMode(StrEnum):
    """How an answer's citations are found: the model's `[n]` markers, attribution, or both."""

    MARKERS = "markers"
    ATTRIBUTION = "attribution"
    BOTH = "both"


class Span(BaseModel):
    """A sentence of the answer: `text == answer[start:end]`, offsets in Unicode code points."""

    start: int
    end: int
    text: str
    support: float = Field(
        description="How much of the sentence's terms the passage holds (0 to 1, IDF-weighted); "
        "for an unsupported sentence, the best any passage reached."
    )


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
    marker: int | None = Field(
        default=None,
        description="In an answer: the number of the `[n]` markers the answer's text holds for "
        "this passage (its position in the list), or null if the text does not mark it.",
    )
    spans: list[Span] = Field(
        default_factory=list,
        description="In an answer: the sentences of the answer this passage supports.",
    )
    support: float | None = Field(
        default=None,
        description="In an answer: the best support this passage gives any of its sentences.",
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
    finish_reason: str | None = Field(
        default=None,
        description="How generation ended: `stop` (the model ended its answer) or `length` (cut "
        "at RAGQ_LLM_MAX_TOKENS tokens), as vLLM reports it; `not_grounded` when nothing was "
        "generated because no passage was relevant enough.",
    )
    grounded: bool = Field(
        default=True, description="False when the documents do not cover the question."
    )
    reason: str | None = Field(
        default=None, description="Why not grounded: `no_relevant_passages`."
    )
    unsupported: list[Span] = Field(
        default_factory=list,
        description="The answer's sentences that no passage supports (by `citation_mode`).",
    )
    citation_mode: CitationMode | None = Field(
        default=None, description="How the citations were found."
    )
    relevance: float | None = Field(
        default=None,
        description="The best passage's dense cosine similarity to the question, when it was "
        "too low (not grounded).",
    )


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
