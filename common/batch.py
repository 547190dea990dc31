"""Writes that land together, built with redis-py's own command methods and sent as one script call.

A MULTI/EXEC pipeline answers every command (`QUEUED`) and then EXEC, each reply parsed in Python:
for a new job's dozen writes that is twice the client CPU of one EVALSHA carrying the same
commands, and job submission is the API's hot path. A script runs to its end before Redis serves
another client, as EXEC does; like EXEC, a command that fails leaves the ones before it written
(and here stops the rest). Redis refuses a script call from inside a script, so a batch that holds
one goes as MULTI/EXEC.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import CoreCommands

# ARGV: each command as its word count, then its words.
RUN_SCRIPT = """
local i = 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 0
"""
SCRIPT_CALLS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})
# Lua's `unpack` stops at its C stack (8,000 values in Redis's Lua 5.1).
MAX_WORDS = 7_000


class Batch(CoreCommands):
    """Commands recorded, not sent: `batch.hset(...)`, `batch.lpush(...)`, as on a pipeline."""

    # A client's, for its connections' events; no command method reads it.
    _event_dispatcher = None  # type: ignore[assignment]

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []

    def execute_command(self, *args: Any, **options: Any) -> Batch:
        """Record one command (redis-py's command methods end here)."""
        if len(args) > MAX_WORDS:
            raise ValueError(f"a batched command takes at most {MAX_WORDS} words")
        self.commands.append(args)
        return self

    def calls_script(self) -> bool:
        """Whether a command runs a script (the batch then cannot be a script itself)."""
        return any(str(args[0]).upper() in SCRIPT_CALLS for args in self.commands)

    def words(self) -> list[Any]:
        """The commands as the run script's ARGV."""
        flat: list[Any] = []
        for args in self.commands:
            flat.append(len(args))
            flat.extend(args)
        return flat


class BatchRunner:
    """Sends batches to one Redis."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._run = redis.register_script(RUN_SCRIPT)

    async def __call__(self, batch: Batch) -> None:
        """Write the batch's commands together: one script call (MULTI/EXEC if it calls one)."""
        if not batch.commands:
            return
        if not batch.calls_script():
            await self._run(keys=[], args=batch.words())
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            for args in batch.commands:
                pipe.execute_command(*args)
            await pipe.execute()
