"""The job messages the API writes in the job's transaction are the ones `send_task` writes."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import redis

from api.services.messages import TaskMessages
from common.contract import INGEST_TASK, RETRIEVE_TASK, ROUTES, create_app
from common.settings import Settings
from common.telemetry import SENT_AT_HEADER


def comparable(raw: str) -> dict[str, Any]:
    """A stored message with what differs per send (delivery tag, send time) taken out."""
    message = json.loads(raw)
    assert isinstance(message["headers"].pop(SENT_AT_HEADER), float)
    assert message["properties"].pop("delivery_tag")
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message  # type: ignore[no-any-return]


@pytest.mark.parametrize("task", [RETRIEVE_TASK, INGEST_TASK])
def test_built_message_is_what_send_task_writes(redis_url: str, task: str) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/2"
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    celery = create_app(Settings(redis_url=url))
    try:
        celery.send_task(task, args=["job-1"], task_id="job-1")
        queue = ROUTES[task]
        sent = client.rpop(queue)
        assert isinstance(sent, str)
        built_queue, built = TaskMessages(celery).build(task, "job-1", ["job-1"])
        assert built_queue == queue
        assert comparable(built) == comparable(sent)
        assert comparable(built)["headers"]["id"] == "job-1"
    finally:
        celery.close()
        client.flushdb()
        client.close()
