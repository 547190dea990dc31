"""The workers' Celery application, built from the shared contract, with their task modules."""

from __future__ import annotations

from common.contract import create_app
from common.settings import get_settings

app = create_app(get_settings())
app.conf.include = [
    "workers.ingest",
    "workers.reindex",
    "workers.access",
    "workers.query",
    "workers.llm",
    "workers.lifecycle",
    "workers.webhooks",
]
