"""The Lua scripts of the queue contract.

Every state change that touches more than one key is one of these scripts. Each opens by naming its
KEYS and ARGV; every key it touches is passed in KEYS (none is built inside Lua), so a caller that does
not know an event's keys first reads them, then calls the script, which re-checks what it read.
Times come from the Redis clock (``TIME``), so leases and retry due times agree across processes.
Only Redis 6.2 commands are used (LPOS, ZADD, HINCRBY, ...), so the scripts run on 6.2 and 7.x.
"""

from __future__ import annotations

from typing import Final

# Shared helpers, prepended to every script body.
_PRELUDE: Final = r"""
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function now_ms()
  return math.floor(now_us() / 1000)
end

-- Who holds the event now, seen from `consumer`:
--   'owned'   in the processing area and claimed by `consumer` (lease may have run out, not reaped)
--   'taken'   in the processing area under another consumer
--   'reaped'  back in the queue or the retry area (the reaper gave up on `consumer`)
--   'missing' no record
local function ownership(processing, hash, id, consumer)
  if redis.call('EXISTS', hash) == 0 then return 'missing' end
  if redis.call('LPOS', processing, id) then
    if redis.call('HGET', hash, 'consumer') == consumer then return 'owned' end
    return 'taken'
  end
  return 'reaped'
end

local function release_lock(lock_key, token)
  if lock_key and token and token ~= '' and redis.call('GET', lock_key) == token then
    redis.call('DEL', lock_key)
  end
end

local function push_history(history, cap, hash, id, outcome, finished, extra)
  local f = redis.call('HMGET', hash, 'account_id', 'exec_command', 'times_queued',
                       'created_at', 'last_error')
  local entry = {event_id = id, account_id = f[1], exec_command = f[2],
                 times_queued = tonumber(f[3]), created_at = tonumber(f[4]),
                 last_error = f[5] or '', finished_at = finished, outcome = outcome}
  for k, v in pairs(extra) do entry[k] = v end
  redis.call('LPUSH', history, cjson.encode(entry))
  redis.call('LTRIM', history, 0, cap - 1)
end

-- Remove a finished event and every trace of it (record, dedup key, indexes, areas).
local function forget(k, id, dedup)
  if redis.call('HGET', k.dedup_index, dedup) == id then
    redis.call('HDEL', k.dedup_index, dedup)
    redis.call('SREM', k.active, dedup)
  end
  redis.call('ZREM', k.requeued, id)
  redis.call('ZREM', k.all, id)
  redis.call('ZREM', k.by_account, id)
  redis.call('ZREM', k.by_command, id)
  redis.call('ZREM', k.leases, id)
  redis.call('DEL', k.hash)
end
"""

ENQUEUE: Final = r"""
-- Enqueue a batch of events, each deduplicated by its account:command key and, optionally, by a
-- sender's idempotency key that outlives the event.
-- KEYS[1] rebalance_queue   KEYS[2] active_events   KEYS[3] dedup index   KEYS[4] events:all
-- then for event i (base = 4 + 4*(i-1)):
--   KEYS[base+1] event hash  KEYS[base+2] account index  KEYS[base+3] command index
--   KEYS[base+4] idempotency key (ignored when ARGV says there is none)
-- ARGV[1] idempotency ttl (ms)   ARGV[2] number of events n
-- then for event i (base = 2 + 6*(i-1)):
--   ARGV[base+1] event id  ARGV[base+2] dedup key  ARGV[base+3] account id
--   ARGV[base+4] exec command  ARGV[base+5] data JSON  ARGV[base+6] idempotency key or ''
-- Returns a flat array: for each event, status (1 queued, 0 duplicate) and the event id
-- (the new one, or the one already active / already seen for that idempotency key).
local queue, active, dedup_index, all = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local idem_ttl, n = tonumber(ARGV[1]), tonumber(ARGV[2])
-- Index scores are microseconds plus the position in the batch, so listings keep enqueue order.
local us = now_us()
local now = math.floor(us / 1000)
local out = {}
for i = 1, n do
  local kb, ab = 4 + 4 * (i - 1), 2 + 6 * (i - 1)
  local hash, by_account, by_command, idem_key = KEYS[kb + 1], KEYS[kb + 2], KEYS[kb + 3], KEYS[kb + 4]
  local id, dedup, account, command, data, idem =
    ARGV[ab + 1], ARGV[ab + 2], ARGV[ab + 3], ARGV[ab + 4], ARGV[ab + 5], ARGV[ab + 6]
  local seen = false
  if idem ~= '' then seen = redis.call('GET', idem_key) end
  local existing = seen or redis.call('HGET', dedup_index, dedup)
  if existing then
    if idem ~= '' and not seen then redis.call('SET', idem_key, existing, 'PX', idem_ttl) end
    out[#out + 1] = 0
    out[#out + 1] = existing
  else
    redis.call('HSET', hash, 'event_id', id, 'account_id', account, 'exec_command', command,
      'dedup_key', dedup, 'times_queued', 1, 'created_at', now, 'updated_at', now, 'data', data,
      'state', 'queued', 'last_error', '', 'next_attempt_at', '', 'result', '', 'consumer', '',
      'idempotency_key', idem)
    redis.call('RPUSH', queue, id)
    redis.call('SADD', active, dedup)
    redis.call('HSET', dedup_index, dedup, id)
    redis.call('ZADD', all, us + i, id)
    redis.call('ZADD', by_account, us + i, id)
    redis.call('ZADD', by_command, us + i, id)
    if idem ~= '' then redis.call('SET', idem_key, id, 'PX', idem_ttl) end
    out[#out + 1] = 1
    out[#out + 1] = id
  end
end
return out
"""

LEASE: Final = r"""
-- Put a lease on an event a consumer has just moved into the processing area with BLMOVE.
-- KEYS[1] processing   KEYS[2] leases   KEYS[3] event hash
-- ARGV[1] event id   ARGV[2] consumer id   ARGV[3] lease (ms)
-- Returns {'ok', <hash fields...>}, {'lost'} when the reaper already took the event back, or
-- {'missing'} when the id had no record (the stray id is dropped).
local processing, leases, hash = KEYS[1], KEYS[2], KEYS[3]
local id, consumer, lease_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
if not redis.call('LPOS', processing, id) then return {'lost'} end
if redis.call('EXISTS', hash) == 0 then
  redis.call('LREM', processing, 1, id)
  redis.call('ZREM', leases, id)
  return {'missing'}
end
local now = now_ms()
redis.call('ZADD', leases, now + lease_ms, id)
redis.call('HSET', hash, 'state', 'processing', 'consumer', consumer, 'claimed_at', now,
  'updated_at', now, 'next_attempt_at', '')
local out = {'ok'}
for _, v in ipairs(redis.call('HGETALL', hash)) do out[#out + 1] = v end
return out
"""

RENEW: Final = r"""
-- Extend a consumer's lease (and, optionally, its account lock) while its command runs.
-- KEYS[1] processing   KEYS[2] leases   KEYS[3] event hash   KEYS[4] account lock (optional)
-- ARGV[1] event id   ARGV[2] consumer id   ARGV[3] lease (ms)   ARGV[4] lock token or ''
-- ARGV[5] lock ttl (ms)
-- Returns 1 when renewed, 0 when the consumer no longer owns the event.
local processing, leases, hash, lock_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, consumer, lease_ms, token = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
if ownership(processing, hash, id, consumer) ~= 'owned' then return 0 end
redis.call('ZADD', leases, now_ms() + lease_ms, id)
if lock_key and token ~= '' and redis.call('GET', lock_key) == token then
  redis.call('PEXPIRE', lock_key, tonumber(ARGV[5]))
end
return 1
"""

COMPLETE: Final = r"""
-- Finish an event successfully: store its outcome in the history, drop its dedup key and record,
-- and release the account lock if the caller still holds it.
-- KEYS[1] rebalance_queue  KEYS[2] processing  KEYS[3] leases  KEYS[4] retry_wait
-- KEYS[5] active_events  KEYS[6] dedup index  KEYS[7] requeued  KEYS[8] events:all  KEYS[9] history
-- KEYS[10] event hash  KEYS[11] account index  KEYS[12] command index  KEYS[13] account lock
-- ARGV[1] event id  ARGV[2] consumer id  ARGV[3] result JSON  ARGV[4] history cap
-- ARGV[5] lock token or ''
-- Returns 'completed'; 'completed_late' when the reaper had already put the event back (the work
-- did happen, so it is not run again); 'lost' when another consumer holds it; 'missing'.
local k = {queue = KEYS[1], processing = KEYS[2], leases = KEYS[3], retry = KEYS[4],
  active = KEYS[5], dedup_index = KEYS[6], requeued = KEYS[7], all = KEYS[8], history = KEYS[9],
  hash = KEYS[10], by_account = KEYS[11], by_command = KEYS[12]}
local id, consumer, result, cap, token = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local who = ownership(k.processing, k.hash, id, consumer)
release_lock(KEYS[13], token)
if who == 'missing' or who == 'taken' then return who == 'taken' and 'lost' or 'missing' end
if who == 'owned' then
  redis.call('LREM', k.processing, 1, id)
else
  redis.call('LREM', k.queue, 1, id)
  redis.call('ZREM', k.retry, id)
end
push_history(k.history, cap, k.hash, id, 'completed', now_ms(), {result = cjson.decode(result)})
forget(k, id, redis.call('HGET', k.hash, 'dedup_key'))
if who == 'owned' then return 'completed' end
return 'completed_late'
"""

FAIL: Final = r"""
-- Record a failed attempt: times_queued + 1, the error, and a wait of requeue_delay in the retry
-- area. The dedup key stays. The account lock is released if the caller still holds it.
-- KEYS[1] processing  KEYS[2] leases  KEYS[3] retry_wait  KEYS[4] requeued  KEYS[5] event hash
-- KEYS[6] account lock
-- ARGV[1] event id  ARGV[2] consumer id  ARGV[3] error text  ARGV[4] requeue delay (ms)
-- ARGV[5] lock token or ''
-- Returns {times_queued, due ms} or {-1, 0} when the consumer no longer owns the event.
local processing, leases, retry, requeued, hash = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, consumer, err, delay, token = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
release_lock(KEYS[6], token)
if ownership(processing, hash, id, consumer) ~= 'owned' then return {-1, 0} end
local now = now_ms()
local due = now + delay
local times = redis.call('HINCRBY', hash, 'times_queued', 1)
redis.call('LREM', processing, 1, id)
redis.call('ZREM', leases, id)
redis.call('ZADD', retry, due, id)
redis.call('ZADD', requeued, times, id)
redis.call('HSET', hash, 'state', 'retry_wait', 'last_error', err, 'next_attempt_at', due,
  'consumer', '', 'updated_at', now)
return {times, due}
"""

RELEASE: Final = r"""
-- Hand an unfinished event back on shutdown: to the head of the queue, times_queued unchanged.
-- KEYS[1] rebalance_queue  KEYS[2] processing  KEYS[3] leases  KEYS[4] event hash
-- KEYS[5] account lock
-- ARGV[1] event id  ARGV[2] consumer id  ARGV[3] lock token or ''
-- Returns 1 when released, 0 when the consumer no longer owned it.
local queue, processing, leases, hash = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, consumer, token = ARGV[1], ARGV[2], ARGV[3]
release_lock(KEYS[5], token)
if ownership(processing, hash, id, consumer) ~= 'owned' then return 0 end
redis.call('LREM', processing, 1, id)
redis.call('ZREM', leases, id)
redis.call('LPUSH', queue, id)
redis.call('HSET', hash, 'state', 'queued', 'consumer', '', 'updated_at', now_ms())
return 1
"""

DUE_RETRIES: Final = r"""
-- List retry-waiting events whose time has come (read only).
-- KEYS[1] retry_wait   ARGV[1] limit
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[1]))
"""

PROMOTE: Final = r"""
-- Move due retry-waiting events to the tail of the queue. Safe to run from several processes: each
-- id is re-checked, so an event is promoted once.
-- KEYS[1] rebalance_queue  KEYS[2] retry_wait  then KEYS[2+i] the hash of event i
-- ARGV[i] event id i
-- Returns the number of events promoted.
local queue, retry = KEYS[1], KEYS[2]
local now, moved = now_ms(), 0
for i, id in ipairs(ARGV) do
  local due = redis.call('ZSCORE', retry, id)
  if due and tonumber(due) <= now then
    redis.call('ZREM', retry, id)
    if redis.call('EXISTS', KEYS[2 + i]) == 1 then
      redis.call('RPUSH', queue, id)
      redis.call('HSET', KEYS[2 + i], 'state', 'queued', 'next_attempt_at', '', 'updated_at', now)
      moved = moved + 1
    end
  end
end
return moved
"""

RETRY_NOW: Final = r"""
-- An operator sends a retry-waiting event to the head of the queue now (times_queued unchanged).
-- KEYS[1] rebalance_queue  KEYS[2] retry_wait  KEYS[3] event hash
-- ARGV[1] event id
-- Returns 'ok', 'missing', or the event's current state when it is not waiting for a retry.
local queue, retry, hash, id = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
if redis.call('EXISTS', hash) == 0 then return 'missing' end
if not redis.call('ZSCORE', retry, id) then return redis.call('HGET', hash, 'state') or 'unknown' end
redis.call('ZREM', retry, id)
redis.call('LPUSH', queue, id)
redis.call('HSET', hash, 'state', 'queued', 'next_attempt_at', '', 'updated_at', now_ms())
return 'ok'
"""

FIND_EXPIRED: Final = r"""
-- Find events whose lease has run out. An event in the processing area with no lease at all (its
-- consumer died between BLMOVE and LEASE, or a dead connection's BLMOVE still moved it) is given a
-- grace lease now, so it is reaped when that runs out unless a live consumer leases it first.
-- KEYS[1] processing  KEYS[2] leases
-- ARGV[1] grace (ms)  ARGV[2] limit
-- Returns the ids whose lease has expired.
local processing, leases = KEYS[1], KEYS[2]
local now = now_ms()
for _, id in ipairs(redis.call('LRANGE', processing, 0, -1)) do
  if not redis.call('ZSCORE', leases, id) then
    redis.call('ZADD', leases, now + tonumber(ARGV[1]), id)
  end
end
return redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
"""

REAP: Final = r"""
-- Put events whose processor was lost back at the tail of the queue with times_queued + 1.
-- Safe to run from several processes: each lease is re-checked.
-- KEYS[1] rebalance_queue  KEYS[2] processing  KEYS[3] leases  KEYS[4] requeued
-- then KEYS[4+i] the hash of event i
-- ARGV[i] event id i
-- Returns the ids put back.
local queue, processing, leases, requeued = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, out = now_ms(), {}
for i, id in ipairs(ARGV) do
  local hash = KEYS[4 + i]
  local expiry = redis.call('ZSCORE', leases, id)
  if expiry and tonumber(expiry) <= now then
    redis.call('ZREM', leases, id)
    if redis.call('LREM', processing, 1, id) == 1 and redis.call('EXISTS', hash) == 1 then
      local consumer = redis.call('HGET', hash, 'consumer')
      if not consumer or consumer == '' then consumer = 'unknown' end
      local times = redis.call('HINCRBY', hash, 'times_queued', 1)
      redis.call('RPUSH', queue, id)
      redis.call('ZADD', requeued, times, id)
      redis.call('HSET', hash, 'state', 'queued', 'consumer', '', 'updated_at', now,
        'last_error', 'processor ' .. consumer .. ' was lost: its lease expired before the event finished')
      out[#out + 1] = id
    end
  end
end
return out
"""

DELETE: Final = r"""
-- An operator deletes an event that is not being processed, with its dedup key.
-- KEYS[1] rebalance_queue  KEYS[2] processing  KEYS[3] leases  KEYS[4] retry_wait
-- KEYS[5] active_events  KEYS[6] dedup index  KEYS[7] requeued  KEYS[8] events:all  KEYS[9] history
-- KEYS[10] event hash  KEYS[11] account index  KEYS[12] command index
-- ARGV[1] event id  ARGV[2] account id and ARGV[3] command the caller read (re-checked)
-- ARGV[4] history cap
-- Returns 'deleted', 'missing', 'processing', or 'changed' (the record is not the one read).
local k = {queue = KEYS[1], processing = KEYS[2], leases = KEYS[3], retry = KEYS[4],
  active = KEYS[5], dedup_index = KEYS[6], requeued = KEYS[7], all = KEYS[8], history = KEYS[9],
  hash = KEYS[10], by_account = KEYS[11], by_command = KEYS[12]}
local id = ARGV[1]
if redis.call('EXISTS', k.hash) == 0 then return 'missing' end
local f = redis.call('HMGET', k.hash, 'account_id', 'exec_command', 'dedup_key')
if f[1] ~= ARGV[2] or f[2] ~= ARGV[3] then return 'changed' end
if redis.call('LPOS', k.processing, id) then return 'processing' end
redis.call('LREM', k.queue, 0, id)
redis.call('ZREM', k.retry, id)
push_history(k.history, tonumber(ARGV[4]), k.hash, id, 'deleted', now_ms(), {})
forget(k, id, f[3] or '')
return 'deleted'
"""

STATS: Final = r"""
-- Queue statistics without scanning: counts are O(1); the oldest waiting event is found among the
-- first (processing + 1) events by age; the requeued sample is the top of a sorted set; memory
-- used and maxmemory come from INFO (a full Redis refuses every write under noeviction).
-- KEYS[1] rebalance_queue  KEYS[2] processing  KEYS[3] retry_wait  KEYS[4] active_events
-- KEYS[5] requeued  KEYS[6] events:all
-- ARGV[1] sample size
-- Returns a JSON object.
local processing_count = redis.call('LLEN', KEYS[2])
local oldest = ''
for _, id in ipairs(redis.call('ZRANGE', KEYS[6], 0, processing_count)) do
  if not redis.call('LPOS', KEYS[2], id) then
    oldest = id
    break
  end
end
local sample = redis.call('ZREVRANGE', KEYS[5], 0, tonumber(ARGV[1]) - 1)
if #sample == 0 then sample = {''} end
local memory = redis.call('INFO', 'memory')
return cjson.encode({
  memory_used = tonumber(string.match(memory, 'used_memory:(%d+)')) or 0,
  memory_limit = tonumber(string.match(memory, 'maxmemory:(%d+)')) or 0,
  queue_length = redis.call('LLEN', KEYS[1]), processing = processing_count,
  retry_waiting = redis.call('ZCARD', KEYS[3]), active_events = redis.call('SCARD', KEYS[4]),
  requeued = redis.call('ZCARD', KEYS[5]), total = redis.call('ZCARD', KEYS[6]),
  oldest_waiting = oldest, requeued_sample = sample,
  now_ms = now_ms()})
"""

HEARTBEAT: Final = r"""
-- A processor says it is alive; processors silent for long are forgotten.
-- KEYS[1] processors  KEYS[2] processor info
-- ARGV[1] consumer id  ARGV[2] info JSON  ARGV[3] forget after (ms)
-- Returns the Redis time (ms).
local now = now_ms()
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))) do
  redis.call('ZREM', KEYS[1], gone)
  redis.call('HDEL', KEYS[2], gone)
end
return now
"""

ALIVE: Final = r"""
-- Processors whose last heartbeat is recent enough (read only).
-- KEYS[1] processors  KEYS[2] processor info
-- ARGV[1] alive window (ms)
-- Returns {now, consumer1, last1, info1, consumer2, ...}.
local now = now_ms()
local out = {now}
local seen = redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf', 'WITHSCORES')
for i = 1, #seen, 2 do
  out[#out + 1] = seen[i]
  out[#out + 1] = seen[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], seen[i]) or '{}'
end
return out
"""

UNLOCK: Final = r"""
-- Release an account lock only if the caller's token still holds it.
-- KEYS[1] account lock   ARGV[1] token
-- Returns 1 when released, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

EXTEND_LOCK: Final = r"""
-- Extend an account lock only if the caller's token still holds it.
-- KEYS[1] account lock   ARGV[1] token   ARGV[2] ttl (ms)
-- Returns 1 when extended, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

ALL: Final = {
    "enqueue": ENQUEUE,
    "lease": LEASE,
    "renew": RENEW,
    "complete": COMPLETE,
    "fail": FAIL,
    "release": RELEASE,
    "due_retries": DUE_RETRIES,
    "promote": PROMOTE,
    "retry_now": RETRY_NOW,
    "find_expired": FIND_EXPIRED,
    "reap": REAP,
    "delete": DELETE,
    "stats": STATS,
    "heartbeat": HEARTBEAT,
    "alive": ALIVE,
    "unlock": UNLOCK,
    "extend_lock": EXTEND_LOCK,
}


def source(name: str) -> str:
    """The full source of a script: the shared helpers followed by its body."""
    return _PRELUDE + ALL[name]
