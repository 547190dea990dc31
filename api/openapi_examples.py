"""OpenAPI request bodies the document routes read themselves (JSON or multipart)."""

from __future__ import annotations

GROUPS_FIELD = "the documents' access groups: names separated by commas, or a JSON list"
MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary"},
        "title": {"type": "string"},
        "metadata": {"type": "string", "description": "a JSON object"},
        "document_id": {"type": "string"},
        "webhook_url": {"type": "string", "description": "receives the final job record"},
        "access_groups": {"type": "string", "description": GROUPS_FIELD},
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
                        "access_groups": {"type": "string", "description": GROUPS_FIELD},
                    },
                }
            }
        },
    }
}
