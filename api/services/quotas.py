"""Holding requests against their tenant's quotas (`common/quotas.py`): 429 `quota_exceeded`
naming the quota, its limit and when it resets. Only new work is refused; a running job is
never stopped by its own tenant's quota."""

from __future__ import annotations

import datetime as dt
import time

import redis.asyncio as aioredis

from api.errors import ApiError
from api.services.usage import chunks_stored
from common import usage
from common.keys import listing_key, quota_key, usage_month_key
from common.quotas import Quotas, month_of, next_month_start

ON_DELETE = "when documents are deleted"


def exceeded(name: str, limit: int, used: int, resets: str, retry_s: int | None = None) -> ApiError:
    """The 429 for a quota that is used up."""
    headers = {"Retry-After": str(max(1, retry_s))} if retry_s is not None else None
    message = f"quota {name} exceeded: {used} of {limit} used; it resets {resets}"
    return ApiError(429, "quota_exceeded", message, headers)


class QuotaService:
    """Reads a tenant's quotas and what it used, and refuses work beyond them."""

    def __init__(self, redis: aioredis.Redis, cache_s: float) -> None:
        self.redis = redis
        self.cache_s = cache_s
        self._cached: dict[str, tuple[float, Quotas]] = {}

    async def quotas(self, tenant: str) -> Quotas:
        """The tenant's quotas (none set: all unlimited), read at most every `cache_s`."""
        now = time.monotonic()
        cached = self._cached.get(tenant)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = Quotas.from_hash(await self.redis.hgetall(quota_key(tenant)))  # type: ignore[misc]
        if len(self._cached) > 10_000:
            self._cached.clear()
        self._cached[tenant] = (now + self.cache_s, found)
        return found

    async def check_answer(self, tenant: str) -> None:
        """429 once the tenant's tokens this UTC month reached its monthly token quota."""
        limit = (await self.quotas(tenant)).tokens_per_month
        if limit is None:
            return
        day = usage.today()
        used = int(await self.redis.get(usage_month_key(tenant, month_of(day))) or 0)
        if used >= limit:
            reset = next_month_start(dt.date.fromisoformat(day))
            wait = int((reset - dt.datetime.now(dt.UTC)).total_seconds())
            raise exceeded("tokens_per_month", limit, used, f"at {reset:%Y-%m-%dT%H:%M:%SZ}", wait)

    async def check_documents(self, tenant: str, new: int) -> None:
        """429 if `new` more documents would pass the document quota, or if the tenant's stored
        chunks already reached its chunk quota (a document's chunks are known only once it is
        parsed, so the last one accepted may pass that quota)."""
        quotas = await self.quotas(tenant)
        if quotas.documents is not None and new:
            stored = int(await self.redis.zcard(listing_key(tenant)))
            if stored + new > quotas.documents:
                raise exceeded("documents", quotas.documents, stored, ON_DELETE)
        if quotas.chunks is not None:
            chunks = await chunks_stored(self.redis, tenant)
            if chunks >= quotas.chunks:
                raise exceeded("chunks", quotas.chunks, chunks, ON_DELETE)
