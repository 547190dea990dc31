"""Load limits kept in Redis, so they hold across API replicas: request rate and queue depth."""

from __future__ import annotations

import redis.asyncio as aioredis

from api.errors import ApiError
from common.keys import rate_key
from common.settings import Settings

# A fixed window per tenant that starts with its first request: count it, and say how long the
# window has left (a key that lost its expiry gets one again).
RATE_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


class Limits:
    """Per-tenant request rate (429 `rate_limited`) and queue backpressure (429 `queue_full`)."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self._rate = redis.register_script(RATE_SCRIPT)

    async def check_rate(self, tenant: str) -> None:
        """Count one request of the tenant; 429 with Retry-After past the limit."""
        limit, window = self.settings.rate_limit_requests, self.settings.rate_limit_window_s
        if not limit:
            return
        count, ttl = await self._rate(keys=[rate_key(tenant)], args=[window])
        if int(count) > limit:
            raise ApiError(
                429,
                "rate_limited",
                f"at most {limit} requests per {window} s; retry after {int(ttl)} s",
                {"Retry-After": str(max(1, int(ttl)))},
            )

    async def check_queue(self, queue: str) -> None:
        """429 with Retry-After when the queue holds more messages than RAGQ_MAX_QUEUE_DEPTH."""
        depth = int(await self.redis.llen(queue))  # type: ignore[misc]
        if depth > self.settings.max_queue_depth:
            retry = self.settings.backpressure_retry_after_s
            raise ApiError(
                429,
                "queue_full",
                f"the {queue} queue is full ({depth} waiting); retry after {retry} s",
                {"Retry-After": str(retry)},
            )
