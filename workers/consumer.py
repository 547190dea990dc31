"""The worker's broker consumer, which rides out a broker restart with tasks in flight."""

from __future__ import annotations

import logging

from celery.worker.consumer import Consumer as CeleryConsumer

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
