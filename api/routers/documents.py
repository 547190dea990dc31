"""`/v1/documents`: submit (JSON text or multipart file), batch-submit, list, read and delete."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.deps import (
    INGEST_CAPACITY,
    DocumentsDep,
    IdempotencyDep,
    IdempotencyKeyDep,
    SettingsDep,
    TenantDep,
    is_json,
)
from api.errors import ApiError, ErrorBody, invalid_request
from api.schemas import BatchAccepted, BatchStatus, DocumentIn, DocumentList, JobAccepted
from api.services.documents import Upload
from api.services.idempotency import form_fingerprint, json_fingerprint, request_scope
from common.documents import DocumentInfo

router = APIRouter(tags=["documents"])

# Redis ranges are 64-bit; no tenant has a billion documents.
MAX_OFFSET = 1_000_000_000
MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary"},
        "title": {"type": "string"},
        "metadata": {"type": "string", "description": "a JSON object"},
        "document_id": {"type": "string"},
        "webhook_url": {"type": "string", "description": "receives the final job record"},
    },
}
OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/DocumentIn"}},
            "multipart/form-data": {"schema": MULTIPART_SCHEMA},
        },
    }
}
OPENAPI_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "webhook_url": {
                            "type": "string",
                            "description": "receives each job's final record",
                        },
                    },
                }
            }
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (413, 415, 422, 503)
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "the Idempotency-Key was used with another body"}
}


def _metadata(raw: object) -> dict[str, Any] | None:
    if raw in (None, ""):
        return None
    try:
        value = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise ApiError(422, "invalid_metadata", f"metadata is not JSON: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise ApiError(422, "invalid_metadata", "metadata must be a JSON object")
    return value


def _validated(fields: dict[str, Any]) -> DocumentIn:
    try:
        return DocumentIn.model_validate(fields)
    except ValidationError as exc:
        raise invalid_request(exc) from exc


async def _json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object (parsed as FastAPI parses the bodies of the other routes)."""
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(422, "invalid_request", f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_request", "the body must be a JSON object")
    return body


async def _file_upload(file: UploadFile, limit: int, form: FormData | None = None) -> Upload:
    data = await file.read(limit + 1)
    names = ("title", "document_id", "webhook_url")
    fields: dict[str, Any] = {k: form.get(k) for k in names} if form else {}
    fields["metadata"] = _metadata(form.get("metadata") if form else None)
    meta = _validated({"text": "", **fields})
    return Upload(
        data, file.filename, meta.title, meta.metadata, meta.document_id, meta.webhook_url
    )


async def _batch_form(request: Request, max_files: int) -> FormData:
    """The batch's form; 413 `too_many_files` past RAGQ_MAX_BATCH_FILES."""
    too_many = ApiError(413, "too_many_files", f"a batch holds at most {max_files} files")
    try:
        form = await request.form(max_files=max_files, max_fields=8)
    except StarletteHTTPException as exc:
        # Starlette stops parsing at the limit with a 400 that names it.
        if "Too many files" in str(exc.detail):
            raise too_many from exc
        raise
    if len(form.getlist("files")) > max_files:
        raise too_many
    return form


def _require_multipart(request: Request) -> None:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data")


@router.post(
    "/v1/documents",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses={
        **ERRORS,
        **CONFLICT,
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
    tenant: TenantDep,
    settings: SettingsDep,
    idempotency: IdempotencyDep,
    idempotency_key: IdempotencyKeyDep = None,
) -> JobAccepted:
    """Queue a document for ingestion (202); the same content again reports its job (200)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=8)
        scope = request_scope(request)
        fingerprint = await form_fingerprint(scope, form) if idempotency_key else ""
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise ApiError(422, "missing_file", "multipart uploads need a `file` part")
        upload = await _file_upload(file, settings.max_upload_bytes, form)
    elif is_json(request):
        doc = _validated(await _json_object(request))
        fingerprint = json_fingerprint(request_scope(request), await request.body())
        upload = Upload(
            doc.text.encode("utf-8"),
            None,
            doc.title,
            doc.metadata,
            doc.document_id,
            doc.webhook_url,
        )
    else:
        raise ApiError(
            415, "unsupported_media_type", "send application/json or multipart/form-data"
        )
    created = True

    async def create() -> JobAccepted:
        nonlocal created
        accepted, created = await documents.submit(tenant, upload)
        return accepted

    accepted, replayed = await idempotency.run(
        tenant, idempotency_key, fingerprint, JobAccepted, create
    )
    if replayed or not created:
        response.status_code = status.HTTP_200_OK
    return accepted


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
    tenant: TenantDep,
    settings: SettingsDep,
    idempotency: IdempotencyDep,
    idempotency_key: IdempotencyKeyDep = None,
) -> BatchAccepted:
    """Queue many files at once: one job per document, and a batch id to follow them all."""
    _require_multipart(request)
    form = await _batch_form(request, settings.max_batch_files)
    fingerprint = await form_fingerprint(request_scope(request), form) if idempotency_key else ""
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
    webhook = _validated({"text": "", "webhook_url": form.get("webhook_url")}).webhook_url
    uploads = [
        replace(await _file_upload(f, settings.max_upload_bytes), webhook_url=webhook)
        for f in files
    ]
    return await idempotency.respond(
        response,
        tenant,
        idempotency_key,
        fingerprint,
        BatchAccepted,
        lambda: documents.submit_batch(tenant, uploads),
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
    tenant: TenantDep,
    offset: int = Query(default=0, ge=0, le=MAX_OFFSET),
    limit: int = Query(default=100, ge=1, le=1000),
) -> DocumentList:
    """The tenant's documents with their status and chunk counts, oldest first."""
    page, total = await documents.list(tenant, offset, limit)
    return DocumentList(documents=page, total=total, offset=offset, limit=limit)


@router.get("/v1/documents/{document_id}", response_model=DocumentInfo, responses=NOT_FOUND)
async def get_document(
    document_id: str, documents: DocumentsDep, tenant: TenantDep
) -> DocumentInfo:
    """One document's status, chunk count and content hash."""
    return await documents.get(tenant, document_id)


@router.delete(
    "/v1/documents/{document_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses=NOT_FOUND,
    dependencies=[INGEST_CAPACITY],
)
async def delete_document(
    document_id: str, documents: DocumentsDep, tenant: TenantDep
) -> JobAccepted:
    """Queue the removal of a document's chunks from the store (202 with the job)."""
    return await documents.delete(tenant, document_id)


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
    tenant: TenantDep,
    idempotency: IdempotencyDep,
    idempotency_key: IdempotencyKeyDep = None,
) -> BatchAccepted:
    """Re-embed every ready document's stored chunks: one job per document, as one batch."""
    fingerprint = json_fingerprint(request_scope(request), b"")
    return await idempotency.respond(
        response,
        tenant,
        idempotency_key,
        fingerprint,
        BatchAccepted,
        lambda: documents.reindex_all(tenant),
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
    tenant: TenantDep,
    idempotency: IdempotencyDep,
    idempotency_key: IdempotencyKeyDep = None,
) -> JobAccepted:
    """Re-embed one ready document's stored chunks (after a model or index change)."""
    fingerprint = json_fingerprint(request_scope(request), b"")
    return await idempotency.respond(
        response,
        tenant,
        idempotency_key,
        fingerprint,
        JobAccepted,
        lambda: documents.reindex(tenant, document_id),
    )
