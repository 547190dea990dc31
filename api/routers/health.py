"""`/healthz` (the process is up) and `/readyz` (Redis answers, every queue has a worker)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import RedisDep
from api.schemas import Health
from common.contract import JOB_QUEUES
from common.keys import WORKER_KEY_PREFIX
from common.liveness import served_queues

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the API process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(redis: RedisDep) -> JSONResponse:
    """Readiness: Redis answers and each job queue has at least one live worker."""
    try:
        await redis.ping()  # type: ignore[misc]
        keys = [key async for key in redis.scan_iter(f"{WORKER_KEY_PREFIX}*")]
        values = await redis.mget(keys) if keys else []
    except Exception as exc:  # readiness reports the failure instead of raising it
        body = Health(status="unavailable", checks={"redis": str(exc)})
        return JSONResponse(body.model_dump(), status_code=503)
    served = served_queues(values)
    workers = {q: q in served for q in JOB_QUEUES}
    ready = all(workers.values())
    body = Health(
        status="ready" if ready else "unavailable", checks={"redis": "ok", "workers": workers}
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
