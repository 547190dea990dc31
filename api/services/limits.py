"""Load limits kept in Redis, so they hold across API replicas: request rate and queue depth.

A request's API key, its tenant's rate and, for a route that feeds a queue, that queue's depth
are read in one script call: one Redis round trip before any work.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from api.errors import ApiError
from common.access import Access
from common.apikeys import KEY_PREFIX, key_hash
from common.keys import RATE_PREFIX, apikey_key
from common.settings import Settings

# The rate is a fixed window per tenant that starts with its first request (a key that lost its
# expiry gets one again). KEYS: the API key's hash, the queue to measure (optional). ARGV: the
# rate key prefix, the window in seconds, whether the rate is limited ('1'/'0'). Returns
# {tenant, count, ttl, depth, admin, groups, id} (tenant nil: unknown key; depth -1: no queue;
# admin and groups as `common.apikeys` stores them, nil for a key stored before them; the key's
# id, which its usage is counted under). The rate
# key is built from the tenant found here, so it cannot be declared in KEYS: ragq runs on one Redis,
# never a cluster.
ADMIT_SCRIPT = """
local tenant, admin, groups, id = unpack(
  redis.call('HMGET', KEYS[1], 'tenant', 'admin', 'groups', 'id'))
if not tenant then return {false, 0, 0, -1, false, false, false} end
local count, ttl = 0, 0
if ARGV[3] == '1' then
  local rate = ARGV[1] .. tenant
  count = redis.call('INCR', rate)
  ttl = redis.call('TTL', rate)
  if ttl < 0 then
    redis.call('EXPIRE', rate, ARGV[2])
    ttl = tonumber(ARGV[2])
  end
end
local depth = -1
if KEYS[2] then depth = redis.call('LLEN', KEYS[2]) end
return {tenant, count, ttl, depth, admin, groups, id}
"""


@dataclass(frozen=True)
class Caller:
    """Who an admitted request comes from: its key's tenant and what the key may read."""

    tenant: str
    access: Access

    def scope(self) -> str:
        """What the caller's idempotency keys are stored under (see `Access.scope`)."""
        return self.access.scope(self.tenant)


class Limits:
    """Per-tenant request rate (429 `rate_limited`) and queue backpressure (429 `queue_full`)."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self._admit = redis.register_script(ADMIT_SCRIPT)

    async def admit(self, key: str, queue: str | None = None) -> Caller | None:
        """The tenant and access of a presented API key (None if unknown or revoked), after
        counting its request (429 `rate_limited` past the limit) and, if given, checking the
        queue's depth (429 `queue_full`): all in one round trip."""
        if not key.startswith(KEY_PREFIX):
            return None
        limit, window = self.settings.rate_limit_requests, self.settings.rate_limit_window_s
        keys = [apikey_key(key_hash(key))] + ([queue] if queue else [])
        tenant, count, ttl, depth, admin, groups, key_id = await self._admit(
            keys=keys, args=[RATE_PREFIX, window, "1" if limit else "0"]
        )
        if tenant is None:
            return None
        if limit and int(count) > limit:
            raise self._rate_limited(limit, window, int(ttl))
        if queue and int(depth) > self.settings.max_queue_depth:
            raise self._queue_full(queue, int(depth))
        key_id = str(key_id or "")
        if admin in (None, "1"):
            return Caller(str(tenant), Access(True, key_id=key_id))
        named = tuple(g for g in str(groups or "").split(",") if g)
        return Caller(str(tenant), Access(False, named, key_id))

    async def check_queue(self, queue: str) -> None:
        """429 with Retry-After when the queue holds more messages than RAGQ_MAX_QUEUE_DEPTH."""
        depth = int(await self.redis.llen(queue))  # type: ignore[misc]
        if depth > self.settings.max_queue_depth:
            raise self._queue_full(queue, depth)

    @staticmethod
    def _rate_limited(limit: int, window: int, ttl: int) -> ApiError:
        return ApiError(
            429,
            "rate_limited",
            f"at most {limit} requests per {window} s; retry after {ttl} s",
            {"Retry-After": str(max(1, ttl))},
        )

    def _queue_full(self, queue: str, depth: int) -> ApiError:
        retry = self.settings.backpressure_retry_after_s
        return ApiError(
            429,
            "queue_full",
            f"the {queue} queue is full ({depth} waiting); retry after {retry} s",
            {"Retry-After": str(retry)},
        )
