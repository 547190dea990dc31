"""Timestamps: ISO 8601 in UTC, and the seconds since one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from common.clock import iso_at, now_iso, seconds_since


def test_now_is_utc_iso_8601() -> None:
    parsed = datetime.fromisoformat(now_iso())
    assert parsed.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 5


def test_an_epoch_time_as_iso() -> None:
    assert iso_at(0) == "1970-01-01T00:00:00+00:00"


def test_seconds_since_counts_up_and_never_goes_negative() -> None:
    earlier = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
    assert 29 < seconds_since(earlier) < 40
    later = (datetime.now(UTC) + timedelta(seconds=30)).isoformat()
    assert seconds_since(later) == 0.0
