"""Moving a queue kept under the key names of earlier versions (no hash tag, no prefix) to the
tagged names, so that upgrading never strands an event under names nobody reads any more.

Earlier versions ran on one server (their scripts touched keys of many slots), so this runs on a
server or a Sentinel primary; on a cluster there is nothing to move. All moves are one script:
events still queued or claimed by a processor that was stopped for the upgrade go (back) to the
head of the queue, waiting retries keep their due times, dedup keys, indexes, history, audit and
idempotency keys are merged into the new names; account locks and heartbeats are not carried over
(they belong to processes that are gone). Running it again finds nothing to move.
"""

from __future__ import annotations

from typing import Final

from redis.asyncio.cluster import RedisCluster

from event_queue.connections import AnyRedis, scan_keys
from event_queue.keys import Keys

# The names of the versions before the hash tag.
LEGACY_FIXED: Final = {
    "queue": "rebalance_queue", "processing": "processing", "retry_wait": "retry_wait",
    "active_events": "active_events", "dedup_index": "active_event_ids",
    "requeued": "requeued_events", "events_all": "events:all", "history": "history",
    "audit": "audit",
}
LEGACY_PATTERNS: Final = ("event:*", "events:account:*", "events:command:*", "idempotency:*")
LEGACY_DROPPED: Final = ("leases", "processors", "processor_info")

MIGRATE: Final = r"""
-- KEYS[1..9]   legacy queue, processing, retry_wait, active_events, dedup index, requeued,
--              events:all, history, audit
-- KEYS[10..18] the same, tagged
-- KEYS[19..21] legacy leases, processors, processor_info (dropped)
-- then pairs (legacy, tagged) of per-event, per-index and idempotency keys; ARGV[1] their count,
-- ARGV[2..] for each pair its kind: 'rename' or 'zset'
-- Returns the number of keys moved.
local moved = 0
local n = tonumber(ARGV[1])
if not n or #KEYS ~= 21 + 2 * n or #ARGV ~= 1 + n then error('migrate: bad arguments') end
local function from_to(i) return KEYS[i], KEYS[9 + i] end
-- queue and processing: legacy ids at the head, in their order, the interrupted (claimed) first
for _, i in ipairs({1, 2}) do
  local old = from_to(i)
  local ids = redis.call('LRANGE', old, 0, -1)
  local target = KEYS[10]
  for j = #ids, 1, -1 do redis.call('LPUSH', target, ids[j]) end
  if #ids > 0 then moved = moved + 1 end
  redis.call('DEL', old)
end
-- sorted sets (retry_wait, requeued, events:all): merged
for _, i in ipairs({3, 6, 7}) do
  local old, new = from_to(i)
  if redis.call('EXISTS', old) == 1 then
    redis.call('ZUNIONSTORE', new, 2, new, old, 'AGGREGATE', 'MAX')
    redis.call('DEL', old)
    moved = moved + 1
  end
end
-- the set of dedup keys and the dedup index
local old, new = from_to(4)
if redis.call('EXISTS', old) == 1 then
  redis.call('SUNIONSTORE', new, new, old)
  redis.call('DEL', old)
  moved = moved + 1
end
old, new = from_to(5)
local index = redis.call('HGETALL', old)
for j = 1, #index, 2 do redis.call('HSETNX', new, index[j], index[j + 1]) end
if #index > 0 then moved = moved + 1 end
redis.call('DEL', old)
-- history and audit: the older entries after the newer ones
for _, i in ipairs({8, 9}) do
  old, new = from_to(i)
  local entries = redis.call('LRANGE', old, 0, -1)
  for _, e in ipairs(entries) do redis.call('RPUSH', new, e) end
  if #entries > 0 then moved = moved + 1 end
  redis.call('DEL', old)
end
-- the queued (and interrupted) events are 'queued' again, with no claim
for j = 1, n do
  local from, to, kind = KEYS[20 + 2 * j], KEYS[21 + 2 * j], ARGV[1 + j]
  if kind == 'zset' then
    redis.call('ZUNIONSTORE', to, 2, to, from, 'AGGREGATE', 'MAX')
    redis.call('DEL', from)
    moved = moved + 1
  elseif redis.call('RENAMENX', from, to) == 1 then
    moved = moved + 1
    if string.find(to, ':event:', 1, true) and redis.call('HGET', to, 'state') == 'processing' then
      redis.call('HSET', to, 'state', 'queued', 'consumer', '', 'claim', '', 'lock_token', '')
    end
  end
end
redis.call('DEL', KEYS[19], KEYS[20], KEYS[21])
return moved
"""


async def migrate_legacy_keys(redis: AnyRedis, keys: Keys) -> int:
    """Move a queue kept under the earlier key names to ``keys``; returns how many keys moved
    (0 when there was nothing to move, or on a cluster)."""
    if isinstance(redis, RedisCluster):
        return 0
    fixed_old = [LEGACY_FIXED[name] for name in LEGACY_FIXED]
    found = [key for pattern in LEGACY_PATTERNS
             async for key in scan_keys(redis, pattern, near=keys.queue)]
    if not found and not await redis.exists(*fixed_old, *LEGACY_DROPPED):
        return 0
    fixed_new = [getattr(keys, name) for name in LEGACY_FIXED]
    pairs: list[str] = []
    kinds: list[str] = []
    for key in found:
        pairs += [key, keys.tag + key]
        kinds.append("zset" if key.startswith(("events:account:", "events:command:")) else
                     "rename")
    moved = await redis.eval(  # type: ignore[misc]
        MIGRATE, len(fixed_old) * 2 + len(LEGACY_DROPPED) + len(pairs),
        *fixed_old, *fixed_new, *LEGACY_DROPPED, *pairs, str(len(kinds)), *kinds)
    return int(moved)
