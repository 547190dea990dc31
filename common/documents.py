"""The document registry in Redis: one hash per document, a listing per tenant, a content index.

The vector store holds the chunks; the registry holds what a client asks about a document
(title, status, chunk count, content hash, the job that last changed it) and lets the API
recognise a re-submitted document by its SHA-256 without touching the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from pydantic import BaseModel

PREFIX = "ragq"


class DocumentStatus(StrEnum):
    """Where a document stands."""

    QUEUED = "queued"
    INGESTING = "ingesting"
    READY = "ready"
    FAILED = "failed"
    DELETING = "deleting"


# Statuses in which a re-submission of the same content is a no-op.
LIVE = frozenset({DocumentStatus.QUEUED, DocumentStatus.INGESTING, DocumentStatus.READY})


class DocumentInfo(BaseModel):
    """A document as `GET /v1/documents` shows it."""

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


def doc_key(tenant: str, document_id: str) -> str:
    """Redis key of a document's hash."""
    return f"{PREFIX}:doc:{tenant}:{document_id}"


def listing_key(tenant: str) -> str:
    """Redis key of the tenant's documents, a sorted set scored by creation time."""
    return f"{PREFIX}:docs:{tenant}"


def content_key(tenant: str) -> str:
    """Redis key of the tenant's content index: SHA-256 → document id."""
    return f"{PREFIX}:docsha:{tenant}"


def lock_key(tenant: str, document_id: str) -> str:
    """Redis key of the lock that serialises the tasks changing one document."""
    return f"{PREFIX}:lock:doc:{tenant}:{document_id}"


def info_from_hash(raw: Mapping[str, str]) -> DocumentInfo:
    """The public view of a document hash."""
    return DocumentInfo(
        document_id=raw["document_id"],
        title=raw.get("title", ""),
        filename=raw.get("filename") or None,
        status=DocumentStatus(raw["status"]),
        chunks=int(raw.get("chunks", 0)),
        content_sha256=raw["content_sha256"],
        job_id=raw["job_id"],
        created_at=raw["created_at"],
        updated_at=raw["updated_at"],
        error=raw.get("error") or None,
    )
