"""Per-tenant quotas an operator sets (`ragq tenants set-quota`): tokens per UTC month, documents
and chunks stored. Absent means unlimited; the API holds requests against them
(`api/services/quotas.py`) and never stops a running job."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, fields

import redis

from common.keys import quota_key

# The quotas, as stored (hash fields) and as the CLI names them (with dashes).
NAMES = ("tokens_per_month", "documents", "chunks")


@dataclass(frozen=True)
class Quotas:
    """A tenant's limits; None is unlimited."""

    tokens_per_month: int | None = None
    documents: int | None = None
    chunks: int | None = None

    @classmethod
    def from_hash(cls, raw: Mapping[str, str]) -> Quotas:
        """Read the stored hash."""
        return cls(**{f.name: int(raw[f.name]) if raw.get(f.name) else None for f in fields(cls)})


def month_of(day: str) -> str:
    """The UTC month (YYYY-MM) of a day (YYYY-MM-DD)."""
    return day[:7]


def next_month_start(today: dt.date) -> dt.datetime:
    """When the month's token count starts again from zero: the next month's first UTC midnight."""
    first = today.replace(day=1) + dt.timedelta(days=32)
    return dt.datetime(first.year, first.month, 1, tzinfo=dt.UTC)


def read(client: redis.Redis, tenant: str) -> Quotas:
    """A tenant's quotas."""
    return Quotas.from_hash(client.hgetall(quota_key(tenant)))  # type: ignore[arg-type]


def update(client: redis.Redis, tenant: str, changes: Mapping[str, int | None]) -> Quotas:
    """Set (a number) or remove (None) some of a tenant's quotas; the quotas now."""
    unknown = set(changes) - set(NAMES)
    if unknown:
        raise ValueError(f"no quota {', '.join(sorted(unknown))}")
    for name, value in changes.items():
        if value is not None and value < 0:
            raise ValueError(f"{name} must be at least 0")
    with client.pipeline(transaction=True) as pipe:
        for name, value in changes.items():
            if value is None:
                pipe.hdel(quota_key(tenant), name)
            else:
                pipe.hset(quota_key(tenant), name, str(value))
        pipe.execute()
    return read(client, tenant)


def standing(client: redis.Redis, tenant: str, month: str) -> dict[str, int]:
    """What a tenant uses now against each quota: tokens this month, documents, chunks stored."""
    from common.documents import chunks_stored_args
    from common.keys import listing_key, usage_month_key

    with client.pipeline(transaction=False) as pipe:
        pipe.get(usage_month_key(tenant, month))
        pipe.zcard(listing_key(tenant))
        pipe.eval(*chunks_stored_args(tenant))
        tokens, documents, chunks = pipe.execute()
    return {
        "tokens_per_month": int(tokens or 0),
        "documents": int(documents),
        "chunks": int(chunks),
    }
