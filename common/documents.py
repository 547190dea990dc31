"""The document registry in Redis: one hash per document, a listing per tenant, a content index.

The vector store holds the chunks; the registry holds what a client asks about a document
(title, status, chunk count, content hash, the job that last changed it, its access groups:
a field of the document, not of a version) and lets the API
recognise a re-submitted document by its SHA-256 without touching the store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from common.access import ACCESS_GROUPS, loads_groups
from common.clock import now_iso
from common.keys import content_key, doc_key, listing_key
from common.schemas import ErrorInfo

SUPERSEDED = ErrorInfo(code="superseded", message="a newer request for this document replaced it")


class DocumentStatus(StrEnum):
    """Where a document stands."""

    QUEUED = "queued"
    INGESTING = "ingesting"
    READY = "ready"
    FAILED = "failed"
    DELETING = "deleting"


# Statuses in which a re-submission of the same content is a no-op.
LIVE = frozenset({DocumentStatus.QUEUED, DocumentStatus.INGESTING, DocumentStatus.READY})

# Statuses of a document whose latest request has not ended yet.
UNSETTLED = frozenset({DocumentStatus.QUEUED, DocumentStatus.INGESTING})

# The fields that describe a version of a document. The hash's `live` field holds them (JSON) for
# the version whose chunks search serves, so a request that ends without completing restores it.
VERSION_FIELDS = (
    "job_id",
    "content_sha256",
    "title",
    "filename",
    "chunks",
    "metadata",
    "req_title",
    "size_bytes",
)

# KEYS: a tenant's document listing. ARGV: the prefix of its document keys. Returns the chunks of
# its ready documents, summed where the registry keeps them: one round trip for the API and the
# CLI alike. The document keys are built from the listing, so they cannot be declared in KEYS:
# ragq runs on one Redis, never a cluster.
CHUNKS_STORED_SCRIPT = """
local total = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local status, chunks = unpack(redis.call('HMGET', ARGV[1] .. id, 'status', 'chunks'))
  if status == 'ready' then total = total + (tonumber(chunks) or 0) end
end
return total
"""


def chunks_stored_args(tenant: str) -> tuple[str, int, str, str]:
    """The `eval` arguments of CHUNKS_STORED_SCRIPT for a tenant."""
    return CHUNKS_STORED_SCRIPT, 1, listing_key(tenant), doc_key(tenant, "")


# Settles a document whose latest request (ARGV[1]) ended without completing: the live version
# comes back (with ARGV[3], the error code, if the request failed); with none, a failed request
# leaves a `failed` document (its content still maps to it, so sending the same bytes again
# reuses the id) and a cancelled one leaves nothing. Acts once, and only if the request is
# still the document's latest and unsettled. Returns 1 restored, 2 failed, 3 removed, 0 nothing.
# KEYS: document hash, tenant listing, content index. ARGV: job id, failed|cancelled, code, now.
SETTLE_SCRIPT = """
local doc = KEYS[1]
if redis.call('HGET', doc, 'job_id') ~= ARGV[1] then return 0 end
local status = redis.call('HGET', doc, 'status')
if status ~= 'queued' and status ~= 'ingesting' then return 0 end
local id = redis.call('HGET', doc, 'document_id')
local sha = redis.call('HGET', doc, 'content_sha256')
if sha and redis.call('HGET', KEYS[3], sha) == id then redis.call('HDEL', KEYS[3], sha) end
local live = redis.call('HGET', doc, 'live')
if live and live ~= '' then
  local v = cjson.decode(live)
  redis.call('HSET', doc, 'status', 'ready', 'job_id', v.job_id,
    'content_sha256', v.content_sha256, 'title', v.title, 'filename', v.filename,
    'chunks', v.chunks, 'metadata', v.metadata, 'req_title', v.req_title,
    'size_bytes', v.size_bytes or '', 'error', ARGV[3], 'updated_at', ARGV[4])
  redis.call('HSET', KEYS[3], v.content_sha256, id)
  return 1
end
if ARGV[2] == 'failed' then
  redis.call('HSET', doc, 'status', 'failed', 'error', ARGV[3], 'updated_at', ARGV[4])
  redis.call('HSETNX', KEYS[3], sha, id)
  return 2
end
redis.call('DEL', doc)
redis.call('ZREM', KEYS[2], id)
return 3
"""


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
    size_bytes: int | None = Field(default=None, description="The uploaded content's size.")
    access_groups: list[str] = Field(
        default_factory=list,
        description="Who reads the document besides tenant admin keys: keys of one of these "
        "groups (none: every key of the tenant).",
    )


# Sets fields (ARGV[2:]) of a document hash (KEYS[1]) only while ARGV[1] is its latest request.
# Returns 1 if set, 0 if not.
SET_IF_LATEST_SCRIPT = """
if redis.call('HGET', KEYS[1], 'job_id') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""


def settle(client: Any, tenant: str, document_id: str, job_id: str, error_code: str | None) -> Any:
    """Settle a request that failed with `error_code` or was cancelled (None); async-awaitable."""
    script = client.register_script(SETTLE_SCRIPT)
    keys = [doc_key(tenant, document_id), listing_key(tenant), content_key(tenant)]
    outcome = "cancelled" if error_code is None else "failed"
    return script(keys=keys, args=[job_id, outcome, error_code or "", now_iso()])


def version_snapshot(raw: Mapping[str, str]) -> str:
    """The `live` field value for the version a document hash describes."""
    return json.dumps({name: raw.get(name, "") for name in VERSION_FIELDS}, sort_keys=True)


def canonical_metadata(metadata: Mapping[str, object] | None) -> str:
    """Metadata as the registry stores it, so equal metadata compares equal."""
    return json.dumps(dict(metadata or {}), sort_keys=True, separators=(",", ":"))


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
        size_bytes=int(raw["size_bytes"]) if raw.get("size_bytes") else None,
        access_groups=loads_groups(raw.get(ACCESS_GROUPS)),
    )
