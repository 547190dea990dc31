"""The job messages written in a job's transaction (by the API, by the query worker's hand-off) are
the ones `send_task` writes."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest
import redis
from celery.utils.nodenames import anon_nodename

from common.contract import GENERATE_TASK, INGEST_TASK, RETRIEVE_TASK, ROUTES, create_app
from common.messages import TaskMessages, origin
from common.settings import Settings
from common.telemetry import SENT_AT_HEADER


def comparable(raw: str) -> dict[str, Any]:
    """A stored message with what differs per send (delivery tag, send time) taken out."""
    message = json.loads(raw)
    assert isinstance(message["headers"].pop(SENT_AT_HEADER), float)
    assert message["properties"].pop("delivery_tag")
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("task", "task_id", "args"),
    [
        (RETRIEVE_TASK, "job-1", ["job-1"]),
        (INGEST_TASK, "job-1", ["job-1"]),
        (GENERATE_TASK, "job-1-generate", ["job-1", [1, 2, 3], [{"text": "passage"}]]),
    ],
)
def test_built_message_is_what_send_task_writes(
    redis_url: str, task: str, task_id: str, args: list[Any]
) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/2"
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    celery = create_app(Settings(redis_url=url))
    try:
        celery.send_task(task, args=args, task_id=task_id)
        queue = ROUTES[task]
        sent = client.rpop(queue)
        assert isinstance(sent, str)
        built_queue, built = TaskMessages(celery).build(task, task_id, args)
        assert built_queue == queue
        assert comparable(built) == comparable(sent)
        assert comparable(built)["headers"]["id"] == task_id
    finally:
        celery.close()
        client.flushdb()
        client.close()


def test_a_forked_worker_stamps_its_own_origin() -> None:
    parent = origin()
    assert parent == anon_nodename()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: Celery's prefork workers are forked after the module is imported
        os.write(write, origin().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 200).decode()
    os.close(read)
    assert child == f"gen{pid}@{parent.split('@', 1)[1]}" != parent
