"""The asyncio Redis client of the API: commands packed by hiredis, as redis-py's sync client does.

redis-py's asyncio connections pack every command in Python (a tenth of the API's CPU per job
submitted, in `bench/submit.py`'s profile); its sync connections use hiredis's C packer when
hiredis is installed. The client made here uses that packer too, on whichever connection class the
URL calls for (TCP, TLS or a Unix socket), so the bytes on the wire are the same.
"""

from __future__ import annotations

from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import DataError
from redis.typing import EncodableT


class HiredisPacking:
    """Mixed into a connection class: `pack_command` by `hiredis.pack_command`."""

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        """The command in the Redis protocol, in one buffer."""
        # A command name with a space ("CONFIG GET") is sent as separate words, as redis-py does.
        head = args[0]
        if isinstance(head, str):
            args = (*head.encode().split(), *args[1:])
        elif isinstance(head, bytes) and b" " in head:
            args = (*head.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]  # type: ignore[arg-type]
        except TypeError as exc:
            raise DataError(str(exc)) from exc


_PACKING: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def hiredis_packing(base: type[AbstractConnection]) -> type[AbstractConnection]:
    """`base` with its commands packed by hiredis (one class per base)."""
    if base not in _PACKING:
        _PACKING[base] = type(f"Hiredis{base.__name__}", (HiredisPacking, base), {})
    return _PACKING[base]


def async_redis(url: str, **options: Any) -> aioredis.Redis:
    """An asyncio client of the Redis at `url` (redis-py's `from_url` options) packing with
    hiredis."""
    client = aioredis.Redis.from_url(url, **options)
    pool = client.connection_pool
    pool.connection_class = hiredis_packing(pool.connection_class)
    return client
