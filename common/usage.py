"""Usage counters per tenant, per API key and per UTC day, counted as the work happens.

A job's work is counted by the script that moves it to its final status
(`common.jobs.UPDATE_SCRIPT`): that transition happens once per job however often its worker
died and its message came back, so a retried job is never counted twice. Searches and webhook
delivery attempts, which are not jobs of their own, are counted where they are recorded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from common.keys import USAGE_PREFIX, usage_key, usage_keys_key

# Counters are kept this long after their day's last change.
USAGE_TTL_S = 400 * 24 * 3600

# Every counter, in the order reports show them.
COUNTERS = (
    "answers",
    "prompt_tokens",
    "completion_tokens",
    "engine_ms",
    "ttft_ms",
    "ttft_count",
    "searches",
    "documents",
    "chunks_embedded",
    "bytes_ingested",
    "webhook_deliveries",
)

# Lua: `count_usage(job)` adds a finished job's work to its tenant's and its API key's counters
# of the current UTC day (Redis's clock). Answers: one per succeeded answer, and the tokens and
# engine time of its usage whatever its end (its tokens also into the month's count, which
# the token quota is held against); documents: a succeeded ingest, its chunks and bytes; a
# re-index: its chunks, embedded again.
COUNT_FUNCTION = f"""
local function utc_day(secs)
  local z = math.floor(secs / 86400) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02d', y, m, d)
end

local function decoded(text)
  if not text or text == '' then return nil end
  local ok, value = pcall(cjson.decode, text)
  if ok and type(value) == 'table' then return value end
  return nil
end

local function ms(seconds)
  if type(seconds) ~= 'number' then return nil end
  return math.floor(seconds * 1000 + 0.5)
end

local function count_usage(job)
  local kind, st, tenant, key_id, result, size = unpack(redis.call(
    'HMGET', job, 'kind', 'status', 'tenant', 'key_id', 'result', 'size_bytes'))
  if not tenant or tenant == '' then return end
  local add = {{}}
  local r = decoded(result)
  if kind == 'answer' then
    if st == 'succeeded' then add.answers = 1 end
    local u = r and r.usage
    if type(u) == 'table' then
      add.prompt_tokens = tonumber(u.prompt_tokens)
      add.completion_tokens = tonumber(u.completion_tokens)
      add.engine_ms = ms(u.total_s)
      add.ttft_ms = ms(u.ttft_s)
      if add.ttft_ms then add.ttft_count = 1 end
    end
  elseif kind == 'ingest' and st == 'succeeded' then
    add.documents = 1
    add.bytes_ingested = tonumber(size)
    add.chunks_embedded = r and tonumber(r.chunks)
  elseif kind == 'reindex' and st == 'succeeded' then
    add.chunks_embedded = r and tonumber(r.chunks)
  end
  if next(add) == nil then return end
  local t = redis.call('TIME')
  local day = utc_day(tonumber(t[1]))
  local tokens = (add.prompt_tokens or 0) + (add.completion_tokens or 0)
  if tokens > 0 then
    local month = '{USAGE_PREFIX}' .. tenant .. ':month:' .. string.sub(day, 1, 7)
    redis.call('INCRBY', month, tokens)
    redis.call('EXPIRE', month, {USAGE_TTL_S})
  end
  local base = '{USAGE_PREFIX}' .. tenant .. ':' .. day
  local targets = {{base}}
  if key_id and key_id ~= '' then
    targets[2] = base .. ':key:' .. key_id
    redis.call('SADD', base .. ':keys', key_id)
    redis.call('EXPIRE', base .. ':keys', {USAGE_TTL_S})
  end
  for _, target in ipairs(targets) do
    for name, n in pairs(add) do
      if n and n ~= 0 then redis.call('HINCRBY', target, name, n) end
    end
    redis.call('EXPIRE', target, {USAGE_TTL_S})
  end
end
"""


def today() -> str:
    """The current UTC day, as the counters name it."""
    return dt.datetime.now(dt.UTC).date().isoformat()


def count(pipe: Any, tenant: str, key_id: str, amounts: Mapping[str, int]) -> None:
    """Queue the increments of today's counters of a tenant and its key on a pipeline (sync or
    async; the caller executes it)."""
    day = today()
    targets = [usage_key(tenant, day)]
    if key_id:
        targets.append(usage_key(tenant, day, key_id))
        pipe.sadd(usage_keys_key(tenant, day), key_id)
        pipe.expire(usage_keys_key(tenant, day), USAGE_TTL_S)
    for target in targets:
        for name, n in amounts.items():
            pipe.hincrby(target, name, n)
        pipe.expire(target, USAGE_TTL_S)


def days(start: dt.date, end: dt.date) -> Iterator[str]:
    """Every day from `start` to `end`, both included, as the counters name them."""
    for n in range((end - start).days + 1):
        yield (start + dt.timedelta(days=n)).isoformat()


def counters(raw: Mapping[str, str]) -> dict[str, int]:
    """A usage hash as integers, every counter present."""
    return {name: int(raw.get(name, 0)) for name in COUNTERS}
