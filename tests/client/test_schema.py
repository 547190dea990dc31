"""The client's models match the server's: the OpenAPI schema for what it declares, the server's
own models for job results it keeps as free-form JSON. A field added, removed, renamed, made
required or given another type on either side fails here."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import pytest
from pydantic import BaseModel

import api.schemas
import common.schemas
from api.main import create_app
from ragq_client import models

COMPONENTS: dict[str, Any] = create_app().openapi()["components"]["schemas"]
# Server models whose JSON the API declares as a free-form object (a job's `result`), or reads
# by hand (the JSON body of `POST /v1/documents`).
SERVER_MODELS: dict[str, type[BaseModel]] = {
    "AnswerResult": common.schemas.AnswerResult,
    "Usage": common.schemas.Usage,
    "IngestResult": common.schemas.IngestResult,
    "DocumentIn": api.schemas.DocumentIn,
}
CLIENT_ONLY = {"Record", "Request", "Answer"}


def client_classes() -> list[type]:
    """Every model and enum of ragq_client.models."""
    found = [
        value
        for value in vars(models).values()
        if isinstance(value, type)
        and value.__module__ == models.__name__
        and issubclass(value, BaseModel | StrEnum)
        and value.__name__ not in CLIENT_ONLY
    ]
    return sorted(found, key=lambda c: c.__name__)


def shape(schema: dict[str, Any]) -> Any:
    """A schema's type, without descriptions, defaults and bounds, comparable across sides."""
    if "$ref" in schema:
        return ("ref", schema["$ref"].rsplit("/", 1)[-1])
    if "anyOf" in schema:
        return ("any of", frozenset(shape(s) for s in schema["anyOf"]))
    if len(schema.get("allOf", ())) == 1:
        return shape(schema["allOf"][0])
    if "enum" in schema:
        return ("enum", frozenset(schema["enum"]))
    kind = schema.get("type")
    if kind == "array":
        return ("array", shape(schema.get("items", {})))
    if kind == "object":
        values = schema.get("additionalProperties")
        return ("object", shape(values) if isinstance(values, dict) and values else "any")
    return kind or "any"


def fields(schema: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """A model schema's properties (as shapes) and required names."""
    properties = {name: shape(s) for name, s in schema.get("properties", {}).items()}
    return properties, set(schema.get("required", ()))


def server_schema(name: str) -> dict[str, Any]:
    if name in COMPONENTS:
        return COMPONENTS[name]  # type: ignore[no-any-return]
    if name in SERVER_MODELS:
        return SERVER_MODELS[name].model_json_schema()
    raise AssertionError(f"the server has no model {name}")


@pytest.mark.parametrize("cls", client_classes(), ids=lambda c: c.__name__)
def test_client_model_matches_the_server(cls: type) -> None:
    server = server_schema(cls.__name__)
    if issubclass(cls, StrEnum):
        assert {m.value for m in cls} == set(server["enum"])
        return
    assert issubclass(cls, BaseModel)
    ours, theirs = fields(cls.model_json_schema()), fields(server)
    assert sorted(ours[0]) == sorted(theirs[0]), "fields differ"
    assert ours[1] == theirs[1], "required fields differ"
    for name, kind in theirs[0].items():
        assert ours[0][name] == kind, name


# The operations the client calls (ragq_client/_base.py builds their requests).
ROUTES = [
    ("post", "/v1/documents"),
    ("post", "/v1/documents:batch"),
    ("get", "/v1/batches/{batch_id}"),
    ("get", "/v1/documents"),
    ("get", "/v1/documents/{document_id}"),
    ("delete", "/v1/documents/{document_id}"),
    ("post", "/v1/documents:reindex"),
    ("post", "/v1/documents/{document_id}:reindex"),
    ("post", "/v1/answers"),
    ("post", "/v1/search"),
    ("get", "/v1/jobs"),
    ("get", "/v1/jobs/{job_id}"),
    ("delete", "/v1/jobs/{job_id}"),
    ("get", "/v1/jobs/{job_id}/events"),
    ("get", "/v1/jobs/{job_id}/deliveries"),
    ("post", "/v1/jobs/{job_id}/deliveries/{attempt}:redeliver"),
    ("get", "/v1/webhooks/secret"),
    ("get", "/v1/usage"),
    ("post", "/v1/webhooks/secret:rotate"),
    ("get", "/readyz"),
]
# Error answers are exceptions on the client side (ragq_client.errors), not models.
ERRORS = {"ErrorBody", "HTTPValidationError", "ValidationError"}


def references(value: Any, found: set[str]) -> set[str]:
    """The component names a schema fragment refers to, and those they refer to in turn."""
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and (name := ref.rsplit("/", 1)[-1]) not in found:
            found.add(name)
            # DocumentIn is referenced by the hand-written body of POST /v1/documents but not
            # declared among the components; SERVER_MODELS holds it.
            references(COMPONENTS.get(name, {}), found)
        for item in value.values():
            references(item, found)
    elif isinstance(value, list):
        for item in value:
            references(item, found)
    return found


def test_every_model_of_the_routes_the_client_calls_has_a_client_twin() -> None:
    """Each route the client calls exists, and each model its requests and answers use is one
    of the client's (routes the client does not call may use models it does not have)."""
    paths = create_app().openapi()["paths"]
    used: set[str] = set()
    for method, path in ROUTES:
        assert method in paths.get(path, {}), f"{method.upper()} {path} is gone"
        references(paths[path][method], used)
    ours = {c.__name__ for c in client_classes()}
    assert used - ERRORS <= ours, (used - ERRORS) - ours
