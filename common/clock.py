"""Timestamps as job records, documents and keys store them: ISO 8601 in UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    """The current UTC time as ISO 8601."""
    return datetime.now(UTC).isoformat()


def iso_at(epoch: float) -> str:
    """An epoch time (seconds) as ISO 8601 in UTC."""
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def seconds_since(iso: str) -> float:
    """Seconds elapsed since an ISO 8601 timestamp."""
    return max(0.0, (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds())
