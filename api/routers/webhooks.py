"""Webhooks: the tenant's signing secret, and each job's delivery log with redelivery."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from api.deps import TenantDep, WebhooksDep
from api.errors import ErrorBody
from api.schemas import WebhookSecret
from common.webhooks import DeliveryLog

router = APIRouter(tags=["webhooks"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}


@router.get("/v1/webhooks/secret", response_model=WebhookSecret)
async def get_secret(webhooks: WebhooksDep, tenant: TenantDep) -> WebhookSecret:
    """The secret that signs your webhooks (created on first use)."""
    return WebhookSecret(secret=await webhooks.secret(tenant))


@router.post("/v1/webhooks/secret:rotate", response_model=WebhookSecret)
async def rotate_secret(webhooks: WebhooksDep, tenant: TenantDep) -> WebhookSecret:
    """A new signing secret; deliveries carry both signatures during the grace period."""
    return WebhookSecret(secret=await webhooks.rotate(tenant))


@router.get("/v1/jobs/{job_id}/deliveries", response_model=DeliveryLog, responses=NOT_FOUND)
async def get_deliveries(job_id: str, webhooks: WebhooksDep, tenant: TenantDep) -> DeliveryLog:
    """The job's webhook delivery attempts: time, status code or error, duration, next attempt."""
    return await webhooks.deliveries(tenant, job_id)


@router.post(
    "/v1/jobs/{job_id}/deliveries/{attempt}:redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryLog,
    responses={**NOT_FOUND, 409: {"model": ErrorBody}},
)
async def redeliver(
    job_id: str, attempt: int, webhooks: WebhooksDep, tenant: TenantDep
) -> DeliveryLog:
    """Deliver the event of attempt `attempt` again, now."""
    return await webhooks.redeliver(tenant, job_id, attempt)
