"""Direct searches: a round trip through a query worker, bounded by a short timeout."""

from __future__ import annotations

import redis.asyncio as aioredis
from celery import Celery

from api.errors import ApiError
from api.schemas import SearchIn, SearchOut
from api.services import inputs
from api.services.worker_calls import call_query_worker
from common.access import Access
from common.contract import SEARCH_TASK
from common.schemas import Citation, SearchMode
from common.settings import Settings

ERROR_STATUS = {"invalid_search": 422}


class SearchService:
    """Sends a search to the query queue and waits for the worker's reply."""

    def __init__(self, redis: aioredis.Redis, celery: Celery, settings: Settings) -> None:
        self.redis = redis
        self.celery = celery
        self.settings = settings

    async def search(self, tenant: str, access: Access, body: SearchIn) -> SearchOut:
        """The best chunks the key reads for the query; 504 if no worker answered in time."""
        query = inputs.text(body.query, "query", self.settings.max_question_chars)
        inputs.top_k(body.top_k, self.settings.max_search_k)
        mode = body.mode or self.settings.search_mode
        request = {
            "tenant": tenant,
            "query": query,
            "limit": body.top_k,
            "mode": mode.value,
            "filter": body.filter.model_dump(exclude_none=True) if body.filter else None,
            "fusion": body.fusion.value if body.fusion else None,
            "groups": access.search_groups,
            "key_id": access.key_id,
        }
        reply = await call_query_worker(
            self.celery,
            self.redis,
            SEARCH_TASK,
            request,
            self.settings.search_timeout_s,
            "search_timeout",
        )
        if "error" in reply:
            code = reply["error"]["code"]
            raise ApiError(ERROR_STATUS.get(code, 500), code, reply["error"]["message"])
        results = [Citation.model_validate(r) for r in reply["results"]]
        return SearchOut(mode=SearchMode(mode), results=results)
