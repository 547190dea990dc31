"""Idempotency keys: a POST repeated with the same `Idempotency-Key` gets its first answer back.

Each key is one Redis string, `ragq:idem:<tenant>:<key>`, holding JSON: the fingerprint of the
request (method, path and body), a state and, once done, the response. The first request takes
the key with `SET NX` in the `pending` state (with a short expiry, so a crashed API process
does not block the key for a day), creates its job(s), then swaps in the `done` state with the
response for `RAGQ_IDEMPOTENCY_TTL_S` (24 h). Both swaps are compare-and-set on the exact value
written, so a request whose claim lapsed never overwrites another's. A second request with the
same key and fingerprint waits for the first (up to `RAGQ_IDEMPOTENCY_WAIT_S`) and gets the
same response with 200; with another fingerprint it gets 409 `idempotency_conflict`. Only
successful responses are kept: when creating fails, the claim is released and the key is free.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import redis.asyncio as aioredis
from pydantic import BaseModel
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response

from api.errors import ApiError
from common.keys import idempotency_key

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Created(Generic[M]):
    """A job-creating call's answer, and whether it made anything new (if not: 200, not 202)."""

    body: M
    created: bool = True


PENDING_TTL_S = 60
POLL_S = 0.05
READ_BYTES = 1 << 20

# KEYS: the idempotency key. ARGV: the value it must hold, the new value ('' deletes), ttl.
SWAP_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
return 1
"""


def request_scope(request: Request) -> str:
    """What a key is bound to besides the body: the method and path."""
    return f"{request.method} {request.url.path}"


def json_fingerprint(scope: str, body: bytes) -> str:
    """Fingerprint of a JSON request: its canonical JSON (sorted keys, no spaces)."""
    try:
        canonical = json.dumps(
            json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    except ValueError:
        canonical = body
    return hashlib.sha256(scope.encode() + b"\n" + canonical).hexdigest()


async def form_fingerprint(scope: str, form: FormData) -> str:
    """Fingerprint of a multipart request: its fields, and each file's name and content hash."""
    parts: list[tuple[str, str]] = []
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            digest = hashlib.sha256()
            while chunk := await value.read(READ_BYTES):
                digest.update(chunk)
            await value.seek(0)
            parts.append((name, f"file:{value.filename or ''}:{digest.hexdigest()}"))
        else:
            parts.append((name, f"field:{value}"))
    parts.sort(key=lambda part: part[0])  # stable: repeated fields keep their order
    return hashlib.sha256(json.dumps([scope, parts]).encode()).hexdigest()


async def keyed_json_fingerprint(request: Request, key: str | None) -> str:
    """`json_fingerprint` of a request with an Idempotency-Key; "" for one without (only a
    request with a key is compared with another)."""
    return json_fingerprint(request_scope(request), await request.body()) if key else ""


async def keyed_form_fingerprint(request: Request, form: FormData, key: str | None) -> str:
    """`form_fingerprint` of a request with an Idempotency-Key; "" for one without (only a
    request with a key is compared with another)."""
    return await form_fingerprint(request_scope(request), form) if key else ""


class IdempotencyService:
    """Runs a job-creating call at most once per tenant and key (see the module's docstring)."""

    def __init__(self, client: aioredis.Redis, ttl_s: int, wait_s: float) -> None:
        self.redis = client
        self.ttl_s = ttl_s
        self.wait_s = wait_s
        self._swap = client.register_script(SWAP_SCRIPT)

    async def run(
        self,
        tenant: str,
        key: str | None,
        fingerprint: str,
        model: type[M],
        create: Callable[[], Awaitable[M | Created[M]]],
    ) -> tuple[M, bool]:
        """The response of `create`, run once per key, and whether it is old news: a replay, or
        `create` said it made nothing new."""
        if key is None:
            return _unpack(await create())
        name = idempotency_key(tenant, key)
        claim = json.dumps({"fp": fingerprint, "token": uuid.uuid4().hex, "state": "pending"})
        deadline = time.monotonic() + self.wait_s
        while not await self.redis.set(name, claim, nx=True, ex=PENDING_TTL_S):
            stored = await self.redis.get(name)
            if stored is None:  # released or expired meanwhile: try to take it again
                continue
            entry = json.loads(stored)
            if entry["fp"] != fingerprint:
                raise ApiError(
                    409,
                    "idempotency_conflict",
                    "this Idempotency-Key was used with a different request",
                )
            if entry["state"] == "done":
                return model.model_validate(entry["response"]), True
            if time.monotonic() >= deadline:
                raise ApiError(
                    409,
                    "idempotency_in_progress",
                    "a request with this Idempotency-Key is still being processed",
                    {"Retry-After": "1"},
                )
            await asyncio.sleep(POLL_S)
        try:
            response, existed = _unpack(await create())
        except BaseException:
            await self._swap(keys=[name], args=[claim, "", 0])
            raise
        done = json.dumps(
            {"fp": fingerprint, "state": "done", "response": response.model_dump(mode="json")}
        )
        await self._swap(keys=[name], args=[claim, done, self.ttl_s])
        return response, existed

    async def respond(
        self,
        http: Response,
        tenant: str,
        key: str | None,
        fingerprint: str,
        model: type[M],
        create: Callable[[], Awaitable[M | Created[M]]],
    ) -> M:
        """`run`'s response, with the HTTP status set to 200 when it is a replay or made nothing
        new."""
        response, old = await self.run(tenant, key, fingerprint, model, create)
        if old:
            http.status_code = 200
        return response


def _unpack(result: M | Created[M]) -> tuple[M, bool]:
    """The response, and whether it made nothing new."""
    if isinstance(result, Created):
        return result.body, not result.created
    return result, False
