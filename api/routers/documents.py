"""`/v1/documents`: submit (JSON text or multipart file), batch-submit, list, read and delete."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from api.deps import DocumentsDep, SettingsDep, TenantDep
from api.errors import ApiError, ErrorBody
from api.schemas import BatchAccepted, BatchStatus, DocumentIn, DocumentList, JobAccepted
from api.services.documents import Upload
from common.documents import DocumentInfo

router = APIRouter(tags=["documents"])

MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary"},
        "title": {"type": "string"},
        "metadata": {"type": "string", "description": "a JSON object"},
        "document_id": {"type": "string"},
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
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
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
MAX_BATCH_FILES = 1000


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


def _validated(**fields: Any) -> DocumentIn:
    try:
        return DocumentIn.model_validate(fields)
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", str(exc.errors()[0]["msg"])) from exc


async def _file_upload(file: UploadFile, limit: int, form: FormData | None = None) -> Upload:
    data = await file.read(limit + 1)
    fields = {k: form.get(k) for k in ("title", "document_id")} if form else {}
    meta = _validated(text="", metadata=_metadata(form.get("metadata") if form else None), **fields)
    return Upload(data, file.filename, meta.title, meta.metadata, meta.document_id)


def _require_multipart(request: Request) -> None:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data")


@router.post(
    "/v1/documents",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses={**ERRORS, 200: {"model": JobAccepted, "description": "the same content again"}},
    openapi_extra=OPENAPI_BODY,
)
async def submit_document(
    request: Request,
    response: Response,
    documents: DocumentsDep,
    tenant: TenantDep,
    settings: SettingsDep,
) -> JobAccepted:
    """Queue a document for ingestion (202); the same content again reports its job (200)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=8)
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise ApiError(422, "missing_file", "multipart uploads need a `file` part")
        upload = await _file_upload(file, settings.max_upload_bytes, form)
    elif content_type.startswith("application/json"):
        try:
            doc = DocumentIn.model_validate_json(await request.body())
        except ValidationError as exc:
            raise ApiError(422, "invalid_request", str(exc.errors()[0]["msg"])) from exc
        upload = Upload(doc.text.encode("utf-8"), None, doc.title, doc.metadata, doc.document_id)
    else:
        raise ApiError(
            415, "unsupported_media_type", "send application/json or multipart/form-data"
        )
    accepted, created = await documents.submit(tenant, upload)
    if not created:
        response.status_code = status.HTTP_200_OK
    return accepted


@router.post(
    "/v1/documents:batch",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchAccepted,
    responses=ERRORS,
    openapi_extra=OPENAPI_BATCH_BODY,
)
async def submit_batch(
    request: Request, documents: DocumentsDep, tenant: TenantDep, settings: SettingsDep
) -> BatchAccepted:
    """Queue many files at once: one job per document, and a batch id to follow them all."""
    _require_multipart(request)
    form = await request.form(max_files=MAX_BATCH_FILES, max_fields=8)
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
    uploads = [await _file_upload(f, settings.max_upload_bytes) for f in files]
    return await documents.submit_batch(tenant, uploads)


@router.get("/v1/batches/{batch_id}", response_model=BatchStatus, responses=NOT_FOUND)
async def get_batch(batch_id: str, documents: DocumentsDep, tenant: TenantDep) -> BatchStatus:
    """Counts by status and chunk progress of a batch's jobs."""
    return await documents.batch(tenant, batch_id)


@router.get("/v1/documents", response_model=DocumentList)
async def list_documents(
    documents: DocumentsDep,
    tenant: TenantDep,
    offset: int = Query(default=0, ge=0),
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
)
async def delete_document(
    document_id: str, documents: DocumentsDep, tenant: TenantDep
) -> JobAccepted:
    """Queue the removal of a document's chunks from the store (202 with the job)."""
    return await documents.delete(tenant, document_id)
