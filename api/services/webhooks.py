"""Webhook secrets per tenant and the delivery log of a job, with manual redelivery."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from api.errors import ApiError
from common.jobs_async import AsyncJobStore
from common.keys import (
    WEBHOOKS_DUE_KEY,
    previous_secret_key,
    secret_key,
    webhook_lock_key,
    webhook_log_key,
    webhook_state_key,
)
from common.schemas import JobStatus
from common.settings import Settings
from common.webhooks import (
    MANUAL_IN_SCHEDULE,
    MANUAL_ONCE,
    ROTATE_SCRIPT,
    DeliveryLog,
    DeliveryState,
    delivery_log,
    new_secret,
)


class WebhookService:
    """The API's side of webhooks: signing secrets, delivery logs, redelivery."""

    def __init__(self, redis: aioredis.Redis, store: AsyncJobStore, settings: Settings) -> None:
        self.redis = redis
        self.store = store
        self.settings = settings
        self._rotate = redis.register_script(ROTATE_SCRIPT)

    async def secret(self, tenant: str) -> str:
        """The tenant's signing secret, created on first use."""
        await self.redis.set(secret_key(tenant), new_secret(), nx=True)
        return str(await self.redis.get(secret_key(tenant)))

    async def rotate(self, tenant: str) -> str:
        """A new signing secret; the previous one keeps signing for RAGQ_WEBHOOK_SECRET_GRACE_S."""
        keys = [secret_key(tenant), previous_secret_key(tenant)]
        args: list[str | int] = [new_secret(), self.settings.webhook_secret_grace_s]
        return str(await self._rotate(keys=keys, args=args))

    async def _job(self, tenant: str, job_id: str) -> dict[str, str]:
        raw = await self.store.raw(job_id)
        if not raw or raw.get("tenant") != tenant:
            raise ApiError(404, "job_not_found", f"no job {job_id}")
        return raw

    async def deliveries(self, tenant: str, job_id: str) -> DeliveryLog:
        """Every delivery attempt of the job's webhook and where delivery stands."""
        raw = await self._job(tenant, job_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(webhook_state_key(job_id))
            pipe.lrange(webhook_log_key(job_id), 0, -1)
            state, entries = await pipe.execute()
        return delivery_log(job_id, raw.get("webhook_url") or None, state, entries)

    async def redeliver(self, tenant: str, job_id: str, attempt: int) -> DeliveryLog:
        """Send the event of attempt `attempt` again now (one attempt once retries are over)."""
        raw = await self._job(tenant, job_id)
        count = await self.redis.llen(webhook_log_key(job_id))  # type: ignore[misc]
        if not raw.get("webhook_url") or not JobStatus(raw["status"]).finished:
            raise ApiError(404, "delivery_not_found", f"job {job_id} has no webhook delivery")
        if not 1 <= attempt <= count:
            raise ApiError(404, "delivery_not_found", f"job {job_id} has no delivery {attempt}")
        if await self.redis.exists(webhook_lock_key(job_id)):
            raise ApiError(409, "delivery_in_progress", "a delivery attempt is in flight; retry")
        now = time.time()
        state = await self.redis.hget(webhook_state_key(job_id), "state")  # type: ignore[misc]
        async with self.redis.pipeline(transaction=True) as pipe:
            if state == DeliveryState.PENDING.value:
                # Retries are pending: this attempt is logged as manual and the schedule goes on.
                pipe.hset(webhook_state_key(job_id), "manual", MANUAL_IN_SCHEDULE)
            else:
                # Retries were over: one manual attempt, not a new schedule.
                pipe.hset(
                    webhook_state_key(job_id),
                    mapping={
                        "state": DeliveryState.PENDING.value,
                        "manual": MANUAL_ONCE,
                        "next_at": "",
                    },
                )
            pipe.zadd(WEBHOOKS_DUE_KEY, {job_id: now})
            await pipe.execute()
        return await self.deliveries(tenant, job_id)
