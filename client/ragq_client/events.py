"""A job's Server-Sent Events as typed objects, and the order of their ids."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel

from ragq_client.models import Citation, JobRecord, JobStatus


class Event(BaseModel):
    """An event of a job's stream; `id` resumes the stream after it (Last-Event-ID)."""

    id: str | None = None


class StatusEvent(Event):
    """The job's status changed."""

    event: Literal["status"] = "status"
    status: JobStatus


class ProgressEvent(Event):
    """Units done of units total (chunks of an ingestion)."""

    event: Literal["progress"] = "progress"
    done: int
    total: int


class TokenEvent(Event):
    """The next piece of the answer's text."""

    event: Literal["token"] = "token"
    text: str


class PassagesEvent(Event):
    """The passages the model was given."""

    event: Literal["passages"] = "passages"
    passages: list[Citation]


class CitationsEvent(Event):
    """The answer's final citations: cited ones first, in the order of the [n] markers."""

    event: Literal["citations"] = "citations"
    citations: list[Citation]


class ErrorEvent(Event):
    """The job failed with this error."""

    event: Literal["error"] = "error"
    code: str
    message: str


class DoneEvent(Event):
    """The job finished: its final record. Always the last event."""

    event: Literal["done"] = "done"
    record: JobRecord


class OtherEvent(Event):
    """An event this client does not know (from a newer server)."""

    event: str
    data: Any = None


AnyEvent = (
    StatusEvent
    | ProgressEvent
    | TokenEvent
    | PassagesEvent
    | CitationsEvent
    | ErrorEvent
    | DoneEvent
    | OtherEvent
)


def parse(event: str, data: str, event_id: str | None) -> AnyEvent:
    """The typed event of an SSE message."""
    value = json.loads(data)
    if event == "status":
        return StatusEvent(id=event_id, status=value["status"])
    if event == "progress":
        return ProgressEvent(id=event_id, done=value["done"], total=value["total"])
    if event == "token":
        return TokenEvent(id=event_id, text=value["text"])
    if event == "passages":
        return PassagesEvent(id=event_id, passages=value)
    if event == "citations":
        return CitationsEvent(id=event_id, citations=value)
    if event == "error":
        return ErrorEvent(id=event_id, code=value["code"], message=value["message"])
    if event == "done":
        return DoneEvent(id=event_id, record=JobRecord.model_validate(value))
    return OtherEvent(id=event_id, event=event, data=value)


def position(event_id: str | None) -> tuple[int, ...]:
    """An event id (a Redis stream id, `ms-seq`) as something ordered; () if none."""
    if not event_id:
        return ()
    try:
        return tuple(int(part) for part in event_id.split("-"))
    except ValueError:
        return ()
