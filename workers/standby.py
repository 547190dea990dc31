"""A standby llm worker's wait: engines loaded, it consumes only once `ragq up` hands it the place
of a worker that died.

The hand-over is one JSON line on the standby's standard input, written by its supervisor: the
dead worker's Celery hostname (whose jobs the standby re-enqueues before it consumes) and the
metrics port it served. A pipe rather than a signal: it carries both, and its end (the
supervisor gone) wakes the standby too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TextIO

from celery.utils.nodenames import host_format

# What a standby prints once it is ready to take a place.
STANDING_BY = "standing by to take the place of a worker that dies"


@dataclass(frozen=True)
class Takeover:
    """The place a standby takes: whose jobs it takes back, and where it serves its metrics."""

    predecessor: str
    metrics_port: int

    def line(self) -> str:
        """The hand-over as the supervisor writes it."""
        return json.dumps({"predecessor": self.predecessor, "metrics_port": self.metrics_port})


def wait_for_takeover(stream: TextIO) -> Takeover:
    """Block until the supervisor writes the hand-over; SystemExit if the pipe closes first."""
    line = stream.readline()
    if not line.strip():
        raise SystemExit("the standby's supervisor closed its pipe before any worker died")
    data = json.loads(line)
    return Takeover(host_format(str(data["predecessor"])), int(data.get("metrics_port") or 0))
