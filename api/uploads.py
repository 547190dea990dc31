"""Reading a document upload from a request: a JSON body, one multipart file, or a batch."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.deps import is_json
from api.errors import ApiError, invalid_request
from api.schemas import DocumentIn
from api.services.documents import Upload
from api.services.idempotency import keyed_form_fingerprint, keyed_json_fingerprint
from common.settings import Settings


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


def _groups(raw: object) -> list[str] | None:
    """A form's `access_groups`: a JSON list of names, or names separated by commas."""
    if raw in (None, ""):
        return None
    text = str(raw).strip()
    if not text.startswith("["):
        return [name.strip() for name in text.split(",")]
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(
            422, "invalid_access_groups", f"access_groups is not JSON: {exc.msg}"
        ) from exc
    if not isinstance(value, list):
        raise ApiError(422, "invalid_access_groups", "access_groups must be a list of names")
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
    fields["access_groups"] = _groups(form.get("access_groups") if form else None)
    meta = _validated({"text": "", **fields})
    return Upload(
        data,
        file.filename,
        meta.title,
        meta.metadata,
        meta.document_id,
        meta.webhook_url,
        meta.access_groups,
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


async def document_upload(
    request: Request, settings: Settings, idempotency_key: str | None
) -> tuple[Upload, str]:
    """The document of `POST /v1/documents` (JSON or multipart) and its request fingerprint."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=8)
        fingerprint = await keyed_form_fingerprint(request, form, idempotency_key)
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise ApiError(422, "missing_file", "multipart uploads need a `file` part")
        return await _file_upload(file, settings.max_upload_bytes, form), fingerprint
    if is_json(request):
        doc = _validated(await _json_object(request))
        fingerprint = await keyed_json_fingerprint(request, idempotency_key)
        upload = Upload(
            doc.text.encode("utf-8"),
            None,
            doc.title,
            doc.metadata,
            doc.document_id,
            doc.webhook_url,
            doc.access_groups,
        )
        return upload, fingerprint
    raise ApiError(415, "unsupported_media_type", "send application/json or multipart/form-data")


async def batch_uploads(
    request: Request, settings: Settings, idempotency_key: str | None
) -> tuple[list[Upload], str]:
    """The files of `POST /v1/documents:batch` and its request fingerprint."""
    _require_multipart(request)
    form = await _batch_form(request, settings.max_batch_files)
    fingerprint = await keyed_form_fingerprint(request, form, idempotency_key)
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
    shared = _validated(
        {
            "text": "",
            "webhook_url": form.get("webhook_url"),
            "access_groups": _groups(form.get("access_groups")),
        }
    )
    uploads = [
        replace(
            await _file_upload(f, settings.max_upload_bytes),
            webhook_url=shared.webhook_url,
            access_groups=shared.access_groups,
        )
        for f in files
    ]
    return uploads, fingerprint
