"""`POST /v1/documents`: a document as JSON text or as a multipart file upload."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, status
from pydantic import ValidationError

from api.deps import JobsDep, SettingsDep, TenantDep
from api.errors import ApiError, ErrorBody
from api.schemas import DocumentIn, JobAccepted

router = APIRouter(prefix="/v1/documents", tags=["documents"])

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
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (413, 415, 422, 503)
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


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses=ERRORS,
    openapi_extra=OPENAPI_BODY,
)
async def submit_document(
    request: Request, jobs: JobsDep, tenant: TenantDep, settings: SettingsDep
) -> JobAccepted:
    """Queue a document for ingestion; answers 202 with its job id and document id."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=8)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ApiError(422, "missing_file", "multipart uploads need a `file` part")
        data = await upload.read(settings.max_upload_bytes + 1)
        fields = {k: form.get(k) for k in ("title", "document_id")}
        try:
            meta = DocumentIn.model_validate(
                {"text": "", "metadata": _metadata(form.get("metadata")), **fields}
            )
        except ValidationError as exc:
            raise ApiError(422, "invalid_request", str(exc.errors()[0]["msg"])) from exc
        return await jobs.submit_document(
            tenant,
            data,
            filename=upload.filename,
            title=meta.title,
            metadata=meta.metadata,
            document_id=meta.document_id,
        )
    if content_type.startswith("application/json"):
        try:
            doc = DocumentIn.model_validate_json(await request.body())
        except ValidationError as exc:
            raise ApiError(422, "invalid_request", str(exc.errors()[0]["msg"])) from exc
        return await jobs.submit_document(
            tenant,
            doc.text.encode("utf-8"),
            title=doc.title,
            metadata=doc.metadata,
            document_id=doc.document_id,
        )
    raise ApiError(415, "unsupported_media_type", "send application/json or multipart/form-data")
