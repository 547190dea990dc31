"""The worker's broker consumer, which rides out a broker restart with tasks in flight.

Two places in kombu end the worker after a restart, both with `'NoneType' object has no
attribute 'hostname'` from a detached transport: closing the lost connection, and acking the
message of a task that ran through the restart. Both are caught here.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.message import Message

log = logging.getLogger(__name__)


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer, whose clean-up of a lost broker connection cannot end the worker.

    With a message unacknowledged (a task running, acks late), Celery first `collect()`s the
    lost connection, which detaches its transport, then closes it, and kombu's Redis channel
    tries to restore the unacknowledged message through that detached transport:
    `AttributeError: 'NoneType' object has no attribute 'hostname'`, which `ignore_errors`
    does not ignore, so the worker exited (celery/kombu#582). The message needs no restoring:
    its task keeps running, and Redis keeps it among the unacknowledged ones until it is
    acknowledged or, if that acknowledgement is lost with the old connection, redelivered
    after the visibility timeout to a task that finds its job finished.
    """

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        """Drop the lost connection (a detached transport is no reason to stop) and go on."""
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError as error:
            log.warning("closing the lost broker connection failed: %r; reconnecting", error)
            self.connection = None


def _detached(message: Message) -> bool:
    """Whether the message came over a broker connection that has since been dropped."""
    transport = getattr(message.channel, "connection", None)
    return transport is not None and getattr(transport, "client", None) is None


def _settle_unless_detached(settle: Callable[..., Any], verb: str) -> Callable[..., Any]:
    """`Message.ack_log_error` or `reject_log_error`, skipped for a detached message.

    A task that ran through a broker restart ends with its message's channel detached; acking
    it then raises the same AttributeError inside kombu and ends the worker. Its message stays
    unacknowledged in Redis and comes back after the visibility timeout, to a task that finds
    its job finished.
    """

    @functools.wraps(settle)
    def wrapper(message: Message, logger: Any, errors: Any, *args: Any, **kwargs: Any) -> Any:
        if _detached(message):
            log.warning(
                "cannot %s message %s: its broker connection is gone", verb, message.delivery_tag
            )
            return None
        return settle(message, logger, errors, *args, **kwargs)

    return wrapper


# Patched on kombu's class: Celery acks through the message object it was handed, not through
# anything this worker configures.
Message.ack_log_error = _settle_unless_detached(Message.ack_log_error, "acknowledge")  # type: ignore[method-assign]
Message.reject_log_error = _settle_unless_detached(Message.reject_log_error, "reject")  # type: ignore[method-assign]
