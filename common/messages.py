"""A job's Celery message, built to be written together with its job's record.

`celery.send_task` is synchronous (a thread per call in the API) and costs Redis round trips of
its own: the exchange's bindings, the result backend's subscribe and unsubscribe, the LPUSH and
the task-sent event (1.8 ms in a worker, against a quarter of that for the transaction alone).
Built here instead, the message is LPUSHed in the writes that make the job's record (the API's
new job with its first task: one script call, `common/batch.py`; the query worker's hand-off with
the generation task: a MULTI/EXEC). The two are stored together or not at all: never a message
without its record, nor a record without its message. The message is the one `send_task` writes
(tests compare the two): the headers and body of Celery's own `as_task_v2`, stamped by the
`before_task_publish` receivers, in the envelope of kombu's Redis transport (the body JSON,
base64-encoded). No task-sent event is published for it: Flower shows the task once a worker
receives it.
"""

from __future__ import annotations

import base64
import functools
import os
import uuid
from typing import Any

from celery import Celery, signals
from celery.utils.nodenames import anon_nodename
from celery.utils.saferepr import saferepr
from kombu.utils.json import JSONEncoder

from common.contract import ROUTES

# kombu's Producer defaults: persistent delivery, priority 0 (the queue's own list, no suffix).
PERSISTENT = 2
# No task of ours takes keyword arguments.
KWARGSREPR = saferepr({})
# kombu's `dumps` is this encoder's `encode`, with an encoder made per call.
dumps = JSONEncoder().encode


@functools.cache
def origin() -> str:
    """This process's anonymous node name (`as_task_v2` would look it up for every message)."""
    return anon_nodename()


# A forked worker stamps its own node name.
os.register_at_fork(after_in_child=origin.cache_clear)


class TaskMessages:
    """Task messages as kombu's Redis transport stores them in a queue's list."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery
        # The configuration's repr limits, which `as_task_v2` would look up for every message.
        self._repr_size = celery.amqp.argsrepr_maxsize
        self._repr_levels = celery.conf.task_repr_maxlevels

    def build(self, task: str, task_id: str, args: list[Any]) -> tuple[str, str]:
        """(the queue, the message to LPUSH onto it) of a task, as `send_task` would send it."""
        queue = ROUTES[task]
        message = self.celery.amqp.as_task_v2(
            task_id,
            task,
            args=args,
            reply_to=self.celery.thread_oid,
            ignore_result=None,
            origin=origin(),
            argsrepr=saferepr(args, self._repr_size, maxlevels=self._repr_levels),
            kwargsrepr=KWARGSREPR,
        )
        headers: dict[str, Any] = message.headers
        properties: dict[str, Any] = message.properties
        signals.before_task_publish.send(
            sender=task,
            body=message.body,
            exchange=queue,
            routing_key=queue,
            headers=headers,
            properties=properties,
            declare=[],
            retry_policy=None,
        )
        envelope = {
            "body": base64.b64encode(dumps(message.body).encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                **properties,
                "delivery_mode": PERSISTENT,
                "delivery_info": {"exchange": queue, "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        return queue, dumps(envelope)
