"""Usage reports: the counters `common.usage` keeps, over a range of days, by day or by key."""

from __future__ import annotations

import datetime as dt

import redis.asyncio as aioredis

from api.errors import ApiError
from api.schemas import UsageCounters, UsageGroup, UsageOut, UsageRow
from common import usage
from common.documents import chunks_stored_args
from common.keys import usage_key, usage_keys_key

MAX_DAYS = 366
DEFAULT_DAYS = 30


def day_range(start: str | None, end: str | None) -> tuple[dt.date, dt.date]:
    """The range asked for (default: the last 30 days to today); 422 `invalid_range` if it is
    not two ISO days in order, at most 366 days apart."""
    try:
        last = dt.date.fromisoformat(end) if end else dt.date.fromisoformat(usage.today())
        first = dt.date.fromisoformat(start) if start else last - dt.timedelta(DEFAULT_DAYS - 1)
    except ValueError as exc:
        raise ApiError(422, "invalid_range", "from and to are days: YYYY-MM-DD") from exc
    if first > last:
        raise ApiError(422, "invalid_range", "from is after to")
    if (last - first).days >= MAX_DAYS:
        raise ApiError(422, "invalid_range", f"at most {MAX_DAYS} days at once")
    return first, last


def _summed(rows: list[dict[str, int]]) -> dict[str, int]:
    return {name: sum(row[name] for row in rows) for name in usage.COUNTERS}


class UsageService:
    """Reads a tenant's usage counters."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def report(
        self, tenant: str, start: str | None, end: str | None, group_by: UsageGroup
    ) -> UsageOut:
        """The tenant's usage from `start` to `end` (UTC days, both included)."""
        first, last = day_range(start, end)
        days = list(usage.days(first, last))
        async with self.redis.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hgetall(usage_key(tenant, day))
            if group_by is UsageGroup.KEY:
                for day in days:
                    pipe.smembers(usage_keys_key(tenant, day))
            found = await pipe.execute()
        by_day = [usage.counters(raw) for raw in found[: len(days)]]
        rows: list[UsageRow] = []
        if group_by is UsageGroup.DAY:
            rows = [
                UsageRow.model_validate({"day": day, **counts})
                for day, counts in zip(days, by_day, strict=True)
                if any(counts.values())
            ]
        else:
            rows = await self._by_key(tenant, days, found[len(days) :])
        return UsageOut.model_validate(
            {
                "from": first.isoformat(),
                "to": last.isoformat(),
                "group_by": group_by,
                "rows": rows,
                "total": UsageCounters.model_validate(_summed(by_day)),
                "chunks_stored": await chunks_stored(self.redis, tenant),
            }
        )

    async def _by_key(self, tenant: str, days: list[str], keys: list[set[str]]) -> list[UsageRow]:
        wanted = [(day, key_id) for day, ids in zip(days, keys, strict=True) for key_id in ids]
        async with self.redis.pipeline(transaction=False) as pipe:
            for day, key_id in wanted:
                pipe.hgetall(usage_key(tenant, day, key_id))
            found = await pipe.execute()
        per_key: dict[str, list[dict[str, int]]] = {}
        for (_, key_id), raw in zip(wanted, found, strict=True):
            per_key.setdefault(key_id, []).append(usage.counters(raw))
        return [
            UsageRow.model_validate({"key_id": k, **_summed(per_key[k])}) for k in sorted(per_key)
        ]


async def chunks_stored(redis: aioredis.Redis, tenant: str) -> int:
    """How many chunks the tenant's ready documents have now (from the registry)."""
    return int(await redis.eval(*chunks_stored_args(tenant)))  # type: ignore[misc]
