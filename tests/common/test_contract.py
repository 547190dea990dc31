"""The contract between the API and the workers: importable anywhere, routes every task."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from common import contract
from common.schemas import JobKind
from common.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_the_api_imports_without_settings_or_the_worker_app() -> None:
    # Production settings without RAGQ_QDRANT_URL are invalid: reading them at import would fail.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGQ_")}
    env["RAGQ_ENVIRONMENT"] = "production"
    code = "import sys, api.deps, api.main; assert 'workers.celery_app' not in sys.modules"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_every_task_routes_to_a_known_queue() -> None:
    assert set(contract.ROUTES.values()) == set(contract.QUEUES)
    assert set(contract.JOB_QUEUES) <= set(contract.QUEUES)
    assert set(contract.CPU_WORKER_QUEUES) | {contract.LLM_QUEUE} == set(contract.QUEUES)


def test_every_job_kind_has_a_first_task_on_a_job_queue() -> None:
    assert set(contract.FIRST_TASK) == set(JobKind)
    for task in contract.FIRST_TASK.values():
        assert contract.ROUTES[task] in contract.JOB_QUEUES


def test_the_app_routes_tasks_by_name_and_acks_late() -> None:
    app = contract.create_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    try:
        assert app.amqp.router.route({}, contract.GENERATE_TASK)["queue"].name == "llm"
        assert app.amqp.router.route({}, contract.INGEST_TASK)["queue"].name == "ingest"
        assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
        assert {q.name for q in app.conf.task_queues} == set(contract.QUEUES)
    finally:
        app.close()
