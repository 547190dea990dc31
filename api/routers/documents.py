"""`/v1/documents`: submit (JSON text or multipart file), batch-submit, list, read and delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response, status

from api.deps import (
    INGEST_CAPACITY,
    JSON_BODY,
    CallerDep,
    DocumentsDep,
    IdempotencyDep,
    IdempotencyKeyDep,
    SettingsDep,
    TenantDep,
)
from api.errors import ErrorBody
from api.openapi_examples import OPENAPI_BATCH_BODY, OPENAPI_BODY
from api.schemas import BatchAccepted, BatchStatus, DocumentList, DocumentPatch, JobAccepted
from api.services.idempotency import json_fingerprint, request_scope
from api.uploads import batch_uploads, document_upload
from common.documents import DocumentInfo

router = APIRouter(tags=["documents"])

# Redis ranges are 64-bit; no tenant has a billion documents.
MAX_OFFSET = 1_000_000_000
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (403, 413, 415, 422, 503)
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "the Idempotency-Key was used with another body"}
}


@router.post(
    "/v1/documents",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses={
        **ERRORS,
        **CONFLICT,
        **NOT_FOUND,
        200: {
            "model": JobAccepted,
            "description": "the same content, or the same Idempotency-Key and body, again",
        },
    },
    openapi_extra=OPENAPI_BODY,
    dependencies=[INGEST_CAPACITY],
)
async def submit_document(
    request: Request,
    response: Response,
    documents: DocumentsDep,
    caller: CallerDep,
    settings: SettingsDep,
    idempotency: IdempotencyDep,
    idempotency_key: IdempotencyKeyDep = None,
) -> JobAccepted:
    """Queue a document for ingestion (202); the same content again reports its job (200)."""
    upload, fingerprint = await document_upload(request, settings, idempotency_key)
    return await idempotency.respond(
        response,
        caller.scope(),
        idempotency_key,
        fingerprint,
        JobAccepted,
        lambda: documents.submit(caller.tenant, caller.access, upload),
    )


@router.post(
    "/v1/documents:batch",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchAccepted,
    responses={
        **ERRORS,
        **CONFLICT,
        200: {"model": BatchAccepted, "description": "the same Idempotency-Key and body again"},
    },
    openapi_extra=OPENAPI_BATCH_BODY,
    dependencies=[INGEST_CAPACITY],
)
async def submit_batch(
    request: Request,
    response: Response,
    documents: DocumentsDep,
    caller: CallerDep,
    settings: SettingsDep,
    idempotency: IdempotencyDep,
    idempotency_key: IdempotencyKeyDep = None,
) -> BatchAccepted:
    """Queue many files at once: one job per document, and a batch id to follow them all."""
    uploads, fingerprint = await batch_uploads(request, settings, idempotency_key)
    return await idempotency.respond(
        response,
        caller.scope(),
        idempotency_key,
        fingerprint,
        BatchAccepted,
        lambda: documents.submit_batch(caller.tenant, caller.access, uploads),
    )


@router.get("/v1/batches/{batch_id}", response_model=BatchStatus, responses=NOT_FOUND)
async def get_batch(
    batch_id: str,
    documents: DocumentsDep,
    tenant: TenantDep,
    jobs: bool = Query(default=True, description="Include every job's record (false: counts)."),
) -> BatchStatus:
    """Counts by status and chunk progress of a batch's jobs, and their records."""
    return await documents.batch(tenant, batch_id, with_jobs=jobs)


@router.get("/v1/documents", response_model=DocumentList)
async def list_documents(
    documents: DocumentsDep,
    caller: CallerDep,
    offset: int = Query(default=0, ge=0, le=MAX_OFFSET),
    limit: int = Query(default=100, ge=1, le=1000),
) -> DocumentList:
    """The documents the key reads, with their status and chunk counts, oldest first."""
    page, total = await documents.list(caller.tenant, caller.access, offset, limit)
    return DocumentList(documents=page, total=total, offset=offset, limit=limit)


@router.get("/v1/documents/{document_id}", response_model=DocumentInfo, responses=NOT_FOUND)
async def get_document(
    document_id: str, documents: DocumentsDep, caller: CallerDep
) -> DocumentInfo:
    """One document's status, chunk count, content hash and access groups."""
    return await documents.get(caller.tenant, caller.access, document_id)


@router.patch(
    "/v1/documents/{document_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses={code: {"model": ErrorBody} for code in (403, 404, 409, 413, 415, 422)},
    dependencies=[INGEST_CAPACITY, JSON_BODY],
)
async def patch_document(
    document_id: str,
    body: DocumentPatch,
    documents: DocumentsDep,
    caller: CallerDep,
) -> JobAccepted:
    """Change a document's access groups (202 with the job that applies them to its chunks,
    without embedding them again); the registry shows them at once."""
    return await documents.set_groups(caller.tenant, caller.access, document_id, body.access_groups)


@router.delete(
    "/v1/documents/{document_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses=NOT_FOUND,
    dependencies=[INGEST_CAPACITY],
)
async def delete_document(
    document_id: str, documents: DocumentsDep, caller: CallerDep
) -> JobAccepted:
    """Queue the removal of a document's chunks from the store (202 with the job)."""
    return await documents.delete(caller.tenant, caller.access, document_id)


@router.post(
    "/v1/documents:reindex",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchAccepted,
    responses={
        503: {"model": ErrorBody},
        **CONFLICT,
        200: {"model": BatchAccepted, "description": "the same Idempotency-Key again"},
    },
    dependencies=[INGEST_CAPACITY],
)
async def reindex_all(
    request: Request,
    response: Response,
    documents: DocumentsDep,
    caller: CallerDep,
    idempotency: IdempotencyDep,
    idempotency_key: IdempotencyKeyDep = None,
) -> BatchAccepted:
    """Re-embed every ready document's stored chunks: one job per document, as one batch."""
    fingerprint = json_fingerprint(request_scope(request), b"")
    return await idempotency.respond(
        response,
        caller.scope(),
        idempotency_key,
        fingerprint,
        BatchAccepted,
        lambda: documents.reindex_all(caller.tenant, caller.access),
    )


@router.post(
    "/v1/documents/{document_id}:reindex",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses={**NOT_FOUND, 409: {"model": ErrorBody}},
    dependencies=[INGEST_CAPACITY],
)
async def reindex_document(
    document_id: str,
    request: Request,
    response: Response,
    documents: DocumentsDep,
    caller: CallerDep,
    idempotency: IdempotencyDep,
    idempotency_key: IdempotencyKeyDep = None,
) -> JobAccepted:
    """Re-embed one ready document's stored chunks (after a model or index change)."""
    fingerprint = json_fingerprint(request_scope(request), b"")
    return await idempotency.respond(
        response,
        caller.scope(),
        idempotency_key,
        fingerprint,
        JobAccepted,
        lambda: documents.reindex(caller.tenant, caller.access, document_id),
    )
