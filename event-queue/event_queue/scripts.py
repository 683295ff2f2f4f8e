"""The Lua scripts of the queue contract.

Every state change that touches more than one key is one of these scripts. Each opens by naming its
KEYS and ARGV; every key it touches is passed in KEYS, with three exceptions whose names depend on
what the script reads: LEASE takes the account lock of the event it leases, STATS reads the
records of the few events it reports, PAGE_RECORDS the records of the page it lists. Each is
given the key name's start in ARGV (the deployment's hash tag included) and only appends an
account or event id to it. Every key of one deployment shares
one hash tag, so each script runs on one Redis Cluster slot.

Each script first reads, validates and computes everything it will write, and only then writes:
an error (a bad argument, a malformed record) can only happen before the first write, so no script
ever leaves a half-done change. Results are stored as the JSON text the caller sent, spliced into
the finished record without being decoded and re-encoded (``cjson`` would turn ``[]`` into ``{}``).

A claim is named by a token the claimer chooses (LEASE stores it in the record); RENEW, LOCK,
COMPLETE, FAIL and RELEASE act only for the current claim, so a stalled claimer whose event was
reaped and claimed again can never act as its owner.

Each event carries its timeline: what happened to it after it was queued, as one JSON object per
line in its record's ``steps`` field, appended (never decoded) by the scripts that change its state:
an attempt when it ends (claimed when, by whom, how long, how it ended, the error), an operator's
retry. Nothing is written while an event merely waits, so a queued event holds no steps.

A finished event (completed, or deleted by an operator) keeps its record, as one JSON text in the
``finished`` hash, for the retention the caller passes (a count and an age); the
``finished_index`` sorted set lists it by finish time, per account, per command and (deleted) per
outcome. The index's members carry the fields they are filtered on, so trimming and filtering
never build a key name: every script touches only the keys its caller passed.

Times come from the Redis clock (``TIME``), so leases and retry due times agree across processes.
Only Redis 6.2 commands are used (LPOS, ZADD, ...), so the scripts run on 6.2 and 7.x.
"""

from __future__ import annotations

import functools
import re
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

-- Where the event is, seen from the claim `claim`:
--   'owned'   in the processing area under this claim (lease may have run out, not reaped)
--   'taken'   in the processing area under another claim (or not yet leased)
--   'reaped'  back in the queue or the retry area (the reaper gave up on this claim)
--   'missing' no record
local function ownership(processing, hash, id, claim)
  if redis.call('EXISTS', hash) == 0 then return 'missing' end
  if redis.call('LPOS', processing, id) then
    if claim ~= '' and redis.call('HGET', hash, 'claim') == claim then return 'owned' end
    return 'taken'
  end
  return 'reaped'
end

local function holds_lock(lock_key, token)
  return lock_key ~= nil and token ~= nil and token ~= '' and redis.call('GET', lock_key) == token
end

-- times_queued + 1, computed without HINCRBY: a malformed count (written by hand, or by an old
-- version) counts as 1 instead of failing the script.
local function next_times(hash)
  local times = tonumber(redis.call('HGET', hash, 'times_queued'))
  if not times or times < 1 or times ~= math.floor(times) or times > 1e15 then times = 1 end
  return times + 1
end

-- The dedup keys a record may own: the stored one, and the one its account and command make
-- (a record written without dedup_key must not leak the key it was indexed under).
local function dedup_keys(hash, extra)
  local f = redis.call('HMGET', hash, 'dedup_key', 'account_id', 'exec_command')
  local out = {}
  if f[1] and f[1] ~= '' then out[#out + 1] = f[1] end
  if f[2] and f[3] then out[#out + 1] = f[2] .. ':' .. f[3] end
  if extra and extra ~= '' then out[#out + 1] = extra end
  return out
end

-- Remove a finished event and every trace of it (record, dedup key, indexes, areas).
local function forget(k, id, dedup)
  for _, key in ipairs(dedup) do
    if redis.call('HGET', k.dedup_index, key) == id then
      redis.call('HDEL', k.dedup_index, key)
      redis.call('SREM', k.active, key)
    end
  end
  redis.call('LREM', k.queue, 0, id)
  redis.call('LREM', k.processing, 0, id)
  redis.call('ZREM', k.retry, id)
  redis.call('ZREM', k.requeued, id)
  redis.call('ZREM', k.all, id)
  redis.call('ZREM', k.by_account, id)
  redis.call('ZREM', k.by_command, id)
  redis.call('ZREM', k.leases, id)
  redis.call('DEL', k.hash)
end

-- True when `text` is JSON holding only finite numbers (cjson itself accepts NaN, Infinity and
-- 1e400, which no JSON reader downstream does).
local function finite(value, depth)
  if depth > 64 then return false end
  local kind = type(value)
  if kind == 'number' then return value == value and value ~= math.huge and value ~= -math.huge end
  if kind == 'table' then
    for key, v in pairs(value) do
      if not finite(v, depth + 1) then return false end
    end
  end
  return true
end

local function json_ok(text)
  local ok, value = pcall(cjson.decode, text)
  return ok and finite(value, 0)
end

-- A record as a flat field/value list: every field, or only those of `wanted` it has (a list
-- of names; empty: every field). Empty for a missing record.
local function read_record(key, wanted)
  if #wanted == 0 then return redis.call('HGETALL', key) end
  local values = redis.call('HMGET', key, unpack(wanted))
  local flat = {}
  for i, name in ipairs(wanted) do
    if values[i] then
      flat[#flat + 1] = name
      flat[#flat + 1] = values[i]
    end
  end
  return flat
end

local function int_arg(value, name)
  local n = tonumber(value)
  if not n or n ~= math.floor(n) then error('bad argument ' .. name .. ': ' .. tostring(value)) end
  return n
end

-- The processors whose last heartbeat is at most `window` ms old at `now`: a list of
-- {consumer id, last heartbeat (ms), its description as JSON}.
local function alive(processors, info, now, window)
  local out = {}
  local seen = redis.call('ZRANGEBYSCORE', processors, now - window, '+inf', 'WITHSCORES')
  for i = 1, #seen, 2 do
    out[#out + 1] = {seen[i], seen[i + 1], redis.call('HGET', info, seen[i]) or '{}'}
  end
  return out
end

-- Timeline steps: one JSON object per line in the record's `steps` field, appended as text. The
-- oldest lines go once the field passes STEPS_MAX_BYTES (counted in `steps_dropped`), so an event
-- failing for days keeps a bounded record.
local STEPS_MAX_BYTES = 8192

local function add_step(hash, step)
  local f = redis.call('HMGET', hash, 'steps', 'steps_dropped')
  local text = step
  if f[1] and f[1] ~= '' then text = f[1] .. '\n' .. step end
  local dropped = 0
  while #text > STEPS_MAX_BYTES do
    local cut = string.find(text, '\n', 1, true)
    if not cut then break end
    text = string.sub(text, cut + 1)
    dropped = dropped + 1
  end
  if dropped > 0 then
    redis.call('HSET', hash, 'steps', text, 'steps_dropped', (tonumber(f[2]) or 0) + dropped)
  else
    redis.call('HSET', hash, 'steps', text)
  end
end

-- The step of the attempt that ends now (read before the claim's fields are cleared).
local function attempt_step(hash, now, ending, extra)
  local f = redis.call('HMGET', hash, 'consumer', 'claimed_at', 'attempts')
  local started = tonumber(f[2])
  local step = {step = 'attempt', at = started or now, by = f[1] or '', n = tonumber(f[3])}
  step['end'] = ending
  if started then step.ms = math.max(0, now - started) end
  for key, v in pairs(extra) do step[key] = v end
  return cjson.encode(step)
end

-- Finished events: records in the `finished` hash, listed in the lexicographic `finished_index`
-- (all scores 0). Each member is <index>:<suffix>, the suffix being
--   <finished_at ms, 13 digits> TAB <account> TAB <command> TAB <outcome> TAB <event id>
-- and the indexes 't:' (all), 'a:<account>:', 'c:<command>:' and 'o:deleted:'. Account and
-- command are reduced to [A-Za-z0-9_.-], so no prefix can run into another.
local function index_name(text)
  if type(text) ~= 'string' then text = '' end
  return (string.gsub(text, '[^%w_.-]', '_'))
end

local function finished_suffix(ms, account, command, outcome, id)
  return string.format('%013.0f', ms) .. '\t' .. index_name(account) .. '\t' ..
    index_name(command) .. '\t' .. outcome .. '\t' .. id
end

-- ms, account, command, outcome, id of a suffix (nil when it is not one).
local function parse_suffix(suffix)
  return string.match(suffix, '^(%d+)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$')
end

local function index_members(suffix)
  local _, account, command, outcome = parse_suffix(suffix)
  local members = {'t:' .. suffix, 'a:' .. account .. ':' .. suffix,
                   'c:' .. command .. ':' .. suffix}
  if outcome == 'deleted' then members[#members + 1] = 'o:deleted:' .. suffix end
  return members
end

local function retention(max_events, max_age_ms)
  return {events = int_arg(max_events, 'max events'), age = int_arg(max_age_ms, 'max age')}
end

-- Remove finished records past the retention, oldest first, at most `budget` of them.
local function trim_finished(finished, findex, keep, now, budget)
  local removed = 0
  local count = redis.call('HLEN', finished)
  while removed < budget do
    local oldest = redis.call('ZRANGEBYLEX', findex, '[t:', '(t;', 'LIMIT', 0, 1)[1]
    if not oldest then break end
    local suffix = string.sub(oldest, 3)
    local ms, _, _, _, id = parse_suffix(suffix)
    if not ms then
      redis.call('ZREM', findex, oldest)
    else
      if count <= keep.events and tonumber(ms) >= now - keep.age then break end
      for _, m in ipairs(index_members(suffix)) do redis.call('ZREM', findex, m) end
      count = count - redis.call('HDEL', finished, id)
    end
    removed = removed + 1
  end
  return removed
end

-- Remove the index members of a finished record about to be replaced (never happens with
-- unique ids; a record written twice by hand must not be listed twice).
local function unindex_finished(finished, findex, id)
  local old = redis.call('HGET', finished, id)
  if not old then return end
  local ok, r = pcall(cjson.decode, old)
  if ok and type(r) == 'table' and tonumber(r.finished_at) then
    local outcome = 'completed'
    if r.outcome == 'deleted' then outcome = 'deleted' end
    local suffix = finished_suffix(tonumber(r.finished_at), r.account_id, r.exec_command,
                                   outcome, id)
    for _, m in ipairs(index_members(suffix)) do redis.call('ZREM', findex, m) end
  end
end

-- The finished record of a live event as JSON text (reads only): its fields, its parameters
-- and steps spliced in as stored, the last step `last_step` added, and the result (raw JSON or
-- nil). Returns the text and the index suffix.
local function finished_record(hash, id, outcome, now, by, last_step, result)
  local f = redis.call('HMGET', hash, 'account_id', 'exec_command', 'dedup_key', 'times_queued',
    'created_at', 'last_error', 'idempotency_key', 'added_by', 'attempts', 'steps_dropped',
    'data', 'steps')
  local meta = {event_id = id, account_id = f[1] or '', exec_command = f[2] or '',
    dedup_key = f[3] or '', times_queued = tonumber(f[4]), created_at = tonumber(f[5]),
    last_error = f[6] or '', idempotency_key = f[7] or '', added_by = f[8] or '',
    attempts = tonumber(f[9]), steps_dropped = tonumber(f[10]), finished_at = now,
    outcome = outcome, by = by}
  local data = f[11]
  if not data or data == '' or not json_ok(data) then data = 'null' end
  local steps = f[12] or ''
  if last_step then
    if steps ~= '' then steps = steps .. '\n' .. last_step else steps = last_step end
  end
  steps = '[' .. string.gsub(steps, '\n', ',') .. ']'
  if not json_ok(steps) then steps = '[]' end
  local text = cjson.encode(meta)
  text = string.sub(text, 1, -2) .. ',"data":' .. data .. ',"steps":' .. steps
  if result then text = text .. ',"result":' .. result end
  return text .. '}', finished_suffix(now, f[1], f[2], outcome, id)
end

-- Keep a finished record and list it; then trim what is past the retention.
local function keep_finished(finished, findex, id, text, suffix, keep, now)
  unindex_finished(finished, findex, id)
  redis.call('HSET', finished, id, text)
  for _, m in ipairs(index_members(suffix)) do redis.call('ZADD', findex, 0, m) end
  trim_finished(finished, findex, keep, now, 10)
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
-- then for event i (base = 2 + 7*(i-1)):
--   ARGV[base+1] event id  ARGV[base+2] dedup key  ARGV[base+3] account id
--   ARGV[base+4] exec command  ARGV[base+5] data JSON  ARGV[base+6] idempotency key or ''
--   ARGV[base+7] who added it by hand (an operator's address) or '' (stored only when given)
-- Returns a flat array: for each event, status and the event id. Status 1: queued (the new id);
-- 0: duplicate of the active event named; 2: this idempotency key was seen before, and the id
-- is the event it made then (a resent request, not a different one).
local queue, active, dedup_index, all = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local idem_ttl, n = int_arg(ARGV[1], 'ttl'), int_arg(ARGV[2], 'n')
if #KEYS ~= 4 + 4 * n or #ARGV ~= 2 + 7 * n then error('enqueue: KEYS/ARGV do not match n') end
for i = 1, n do
  local data = ARGV[2 + 7 * (i - 1) + 5]
  if not json_ok(data) then error('enqueue: data of event ' .. i .. ' is not finite JSON') end
end
-- Index scores are microseconds plus the position in the batch, so listings keep enqueue order.
local us = now_us()
local now = math.floor(us / 1000)
local out = {}
for i = 1, n do
  local kb, ab = 4 + 4 * (i - 1), 2 + 7 * (i - 1)
  local hash, by_account, by_command, idem_key = KEYS[kb + 1], KEYS[kb + 2], KEYS[kb + 3], KEYS[kb + 4]
  local id, dedup, account, command, data, idem =
    ARGV[ab + 1], ARGV[ab + 2], ARGV[ab + 3], ARGV[ab + 4], ARGV[ab + 5], ARGV[ab + 6]
  local seen = false
  if idem ~= '' then seen = redis.call('GET', idem_key) end
  local existing = seen or redis.call('HGET', dedup_index, dedup)
  if seen then
    out[#out + 1] = 2
    out[#out + 1] = seen
  elseif existing then
    if idem ~= '' then redis.call('SET', idem_key, existing, 'PX', idem_ttl) end
    out[#out + 1] = 0
    out[#out + 1] = existing
  else
    -- Only fields with a value are written: an absent field reads as empty everywhere (every
    -- script and the decoder), and each empty one would cost the record memory.
    local record = {'event_id', id, 'account_id', account, 'exec_command', command,
      'dedup_key', dedup, 'times_queued', 1, 'created_at', now, 'updated_at', now, 'data', data,
      'state', 'queued'}
    if idem ~= '' then
      record[#record + 1] = 'idempotency_key'
      record[#record + 1] = idem
    end
    if ARGV[ab + 7] ~= '' then
      record[#record + 1] = 'added_by'
      record[#record + 1] = ARGV[ab + 7]
    end
    redis.call('HSET', hash, unpack(record))
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
-- Put a lease on an event a consumer has just moved into the processing area with BLMOVE, under
-- a new claim token, and take its account lock in the same call when it is free (so a claim
-- costs two round trips: BLMOVE and this). Only an unclaimed event can be leased: a stalled
-- claimer whose event was reaped and claimed by someone else meanwhile gets 'lost', never a
-- second 'ok'.
-- KEYS[1] processing   KEYS[2] leases   KEYS[3] event hash
-- ARGV[1] event id   ARGV[2] consumer id   ARGV[3] lease (ms)   ARGV[4] claim token
-- ARGV[5] lock token or '' (no lock wanted)   ARGV[6] lock ttl (ms)
-- ARGV[7] the account lock's key name without the account id
-- The account is read from the event, so the lock's name is only known here: it is the given
-- name plus the account, under the same hash tag as KEYS (same Cluster slot).
-- Returns {'ok', <'1' when the lock was taken, else '0'>, <hash fields...>}, {'lost'} when the
-- event is not (or no longer) this move's to lease, or {'missing'} when the id had no record
-- (the stray id is dropped).
local processing, leases, hash = KEYS[1], KEYS[2], KEYS[3]
local id, consumer, lease_ms, claim = ARGV[1], ARGV[2], int_arg(ARGV[3], 'lease'), ARGV[4]
local token, lock_prefix = ARGV[5] or '', ARGV[7] or ''
local lock_ms = 0
if token ~= '' then lock_ms = int_arg(ARGV[6], 'lock ttl') end
if claim == '' then error('lease: empty claim token') end
if not redis.call('LPOS', processing, id) then return {'lost'} end
if redis.call('EXISTS', hash) == 0 then
  redis.call('LREM', processing, 0, id)
  redis.call('ZREM', leases, id)
  return {'missing'}
end
local current = redis.call('HGET', hash, 'claim')
if current and current ~= '' then return {'lost'} end
local lock_key = nil
local account = redis.call('HGET', hash, 'account_id')
if token ~= '' and lock_prefix ~= '' and account and account ~= '' then
  lock_key = lock_prefix .. account
  if redis.call('GET', lock_key) then lock_key = nil end
end
local locked = '0'
if lock_key then
  redis.call('SET', lock_key, token, 'PX', lock_ms)
  locked = '1'
end
local now = now_ms()
-- a malformed count (written by hand) restarts at 1 instead of failing half-way
local attempts = math.floor(tonumber(redis.call('HGET', hash, 'attempts')) or 0) + 1
redis.call('ZADD', leases, now + lease_ms, id)
local lock_token = ''
if locked == '1' then lock_token = token end
redis.call('HSET', hash, 'state', 'processing', 'consumer', consumer, 'claim', claim,
  'lock_token', lock_token, 'claimed_at', now, 'updated_at', now, 'next_attempt_at', '',
  'attempts', attempts)
local out = {'ok', locked}
for _, v in ipairs(redis.call('HGETALL', hash)) do out[#out + 1] = v end
return out
"""

RENEW: Final = r"""
-- Extend a claim's lease and, while its command runs, its account lock. A lock that is gone
-- (expired during an outage, lost in a failover) is taken again; a lock someone else took is a
-- conflict the caller must act on (stop its command): the lease is still extended.
-- KEYS[1] processing   KEYS[2] leases   KEYS[3] event hash   KEYS[4] account lock
-- ARGV[1] event id   ARGV[2] claim token   ARGV[3] lease (ms)   ARGV[4] lock token or ''
-- ARGV[5] lock ttl (ms)
-- Returns 'ok' (lock kept, or no lock asked for), 'retaken', 'conflict', or 'lost' when the
-- claim no longer owns the event.
local processing, leases, hash, lock_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, claim, lease_ms, token = ARGV[1], ARGV[2], int_arg(ARGV[3], 'lease'), ARGV[4]
local lock_ms = int_arg(ARGV[5], 'lock ttl')
if ownership(processing, hash, id, claim) ~= 'owned' then return 'lost' end
local lock = 'ok'
if token ~= '' then
  local holder = redis.call('GET', lock_key)
  if not holder then lock = 'retaken' elseif holder ~= token then lock = 'conflict' end
end
redis.call('ZADD', leases, now_ms() + lease_ms, id)
if token ~= '' and lock ~= 'conflict' then
  redis.call('SET', lock_key, token, 'PX', lock_ms)
  redis.call('HSET', hash, 'lock_token', token)
end
return lock
"""

LOCK: Final = r"""
-- Take the account lock for a claim, only while that claim still owns its event (so an event
-- completed or re-claimed elsewhere is never run again by a waiter that did not notice yet).
-- KEYS[1] processing   KEYS[2] event hash   KEYS[3] account lock
-- ARGV[1] event id   ARGV[2] claim token   ARGV[3] lock token   ARGV[4] lock ttl (ms)
-- Returns 'ok' (taken or already held), 'busy' (held by someone else), 'lost' or 'missing'.
local processing, hash, lock_key = KEYS[1], KEYS[2], KEYS[3]
local id, claim, token, ttl = ARGV[1], ARGV[2], ARGV[3], int_arg(ARGV[4], 'ttl')
if token == '' then error('lock: empty token') end
local who = ownership(processing, hash, id, claim)
if who == 'missing' then return 'missing' end
if who ~= 'owned' then return 'lost' end
local holder = redis.call('GET', lock_key)
if holder and holder ~= token then return 'busy' end
redis.call('SET', lock_key, token, 'PX', ttl)
redis.call('HSET', hash, 'lock_token', token)
return 'ok'
"""

COMPLETE: Final = r"""
-- Finish an event successfully: keep its finished record (with the result and the attempt that
-- ends now) for the retention, drop its dedup key and live record, and release the account
-- lock if the caller holds it (never a lock it does not hold).
-- KEYS[1] rebalance_queue  KEYS[2] processing  KEYS[3] leases  KEYS[4] retry_wait
-- KEYS[5] active_events  KEYS[6] dedup index  KEYS[7] requeued  KEYS[8] events:all
-- KEYS[9] finished  KEYS[10] finished_index  KEYS[11] event hash  KEYS[12] account index
-- KEYS[13] command index  KEYS[14] account lock
-- ARGV[1] event id  ARGV[2] claim token  ARGV[3] result JSON  ARGV[4] lock token or ''
-- ARGV[5] consumer id  ARGV[6] finished records kept at most  ARGV[7] kept at most (ms)
-- Returns 'completed'; 'completed_late' when the claim had lost the event but nobody else runs
-- it (reaped, or re-claimed and waiting for the account lock): the work was done, so it is not
-- run again; 'lost' when another claim holds the account lock for it (its command may be running:
-- nothing is changed); 'missing' (the lock is still released); 'bad_result' (nothing changed).
local k = {queue = KEYS[1], processing = KEYS[2], leases = KEYS[3], retry = KEYS[4],
  active = KEYS[5], dedup_index = KEYS[6], requeued = KEYS[7], all = KEYS[8],
  finished = KEYS[9], findex = KEYS[10], hash = KEYS[11], by_account = KEYS[12],
  by_command = KEYS[13]}
local lock_key = KEYS[14]
local id, claim, result, token, consumer = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local keep = retention(ARGV[6], ARGV[7])
if not json_ok(result) then return 'bad_result' end
local mine = holds_lock(lock_key, token)
local who = ownership(k.processing, k.hash, id, claim)
if who == 'taken' then
  local theirs = redis.call('HGET', k.hash, 'lock_token')
  if theirs and theirs ~= '' and redis.call('GET', lock_key) == theirs then return 'lost' end
end
if who ~= 'missing' then
  local now = now_ms()
  local step
  if who == 'owned' then
    step = attempt_step(k.hash, now, 'completed', {})
  else
    step = cjson.encode({step = 'attempt', at = now, by = consumer, ['end'] = 'completed',
                         late = true})
  end
  local text, suffix = finished_record(k.hash, id, 'completed', now, consumer, step, result)
  local dedup = dedup_keys(k.hash)
  keep_finished(k.finished, k.findex, id, text, suffix, keep, now)
  forget(k, id, dedup)
end
if mine then redis.call('DEL', lock_key) end
if who == 'missing' then return 'missing' end
if who == 'owned' then return 'completed' end
return 'completed_late'
"""

FAIL: Final = r"""
-- Record a failed attempt: times_queued + 1, the error, the attempt in the timeline, and a wait
-- of requeue_delay in the retry area. The dedup key stays. The account lock is released if the
-- caller holds it.
-- KEYS[1] processing  KEYS[2] leases  KEYS[3] retry_wait  KEYS[4] requeued  KEYS[5] event hash
-- KEYS[6] account lock
-- ARGV[1] event id  ARGV[2] claim token  ARGV[3] error text  ARGV[4] requeue delay (ms)
-- ARGV[5] lock token or ''  ARGV[6] the error as the timeline keeps it (shorter)
-- Returns {times_queued, due ms} or {-1, 0} when the claim no longer owns the event.
local processing, leases, retry, requeued, hash = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local lock_key = KEYS[6]
local id, claim, err, delay, token = ARGV[1], ARGV[2], ARGV[3], int_arg(ARGV[4], 'delay'), ARGV[5]
local mine = holds_lock(lock_key, token)
if ownership(processing, hash, id, claim) ~= 'owned' then
  if mine then redis.call('DEL', lock_key) end
  return {-1, 0}
end
local now = now_ms()
local due = now + delay
local times = next_times(hash)
local step = attempt_step(hash, now, 'failed', {error = ARGV[6], due = due})
redis.call('LREM', processing, 0, id)
redis.call('ZREM', leases, id)
redis.call('ZADD', retry, due, id)
redis.call('ZADD', requeued, times, id)
redis.call('HSET', hash, 'times_queued', times, 'state', 'retry_wait', 'last_error', err,
  'next_attempt_at', due, 'consumer', '', 'claim', '', 'lock_token', '', 'updated_at', now)
add_step(hash, step)
if mine then redis.call('DEL', lock_key) end
return {times, due}
"""

RELEASE: Final = r"""
-- Hand an unfinished event back on shutdown: to the head of the queue, times_queued unchanged;
-- the attempt is kept in the timeline as handed back.
-- KEYS[1] rebalance_queue  KEYS[2] processing  KEYS[3] leases  KEYS[4] event hash
-- KEYS[5] account lock
-- ARGV[1] event id  ARGV[2] claim token  ARGV[3] lock token or ''
-- Returns 1 when released, 0 when the claim no longer owned it.
local queue, processing, leases, hash, lock_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, claim, token = ARGV[1], ARGV[2], ARGV[3]
local mine = holds_lock(lock_key, token)
local owned = ownership(processing, hash, id, claim) == 'owned'
if mine then redis.call('DEL', lock_key) end
if not owned then return 0 end
local now = now_ms()
local step = attempt_step(hash, now, 'handed_back', {})
redis.call('LREM', processing, 0, id)
redis.call('ZREM', leases, id)
redis.call('LPUSH', queue, id)
redis.call('HSET', hash, 'state', 'queued', 'consumer', '', 'claim', '', 'lock_token', '',
  'updated_at', now)
add_step(hash, step)
return 1
"""

DUE_RETRIES: Final = r"""
-- List retry-waiting events whose time has come (read only).
-- KEYS[1] retry_wait   ARGV[1] limit
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, int_arg(ARGV[1], 'limit'))
"""

PROMOTE: Final = r"""
-- Move due retry-waiting events to the tail of the queue. Safe to run from several processes: each
-- id is re-checked, so an event is promoted once.
-- KEYS[1] rebalance_queue  KEYS[2] retry_wait  then KEYS[2+i] the hash of event i
-- ARGV[i] event id i
-- Returns the number of events promoted.
local queue, retry = KEYS[1], KEYS[2]
if #KEYS ~= 2 + #ARGV then error('promote: one hash per id') end
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
-- An operator sends a retry-waiting event to the head of the queue now (times_queued unchanged);
-- the timeline says who.
-- KEYS[1] rebalance_queue  KEYS[2] retry_wait  KEYS[3] event hash  KEYS[4] done marker
-- KEYS[5] finished
-- ARGV[1] event id  ARGV[2] done-marker ttl (ms)  ARGV[3] who asked (the operator's address)
-- The done marker makes a resent call (after a lost connection) answer 'ok' again.
-- Returns 'ok', 'missing', or the event's current state when it is not waiting for a retry
-- ('completed' or 'deleted' for a finished event).
local queue, retry, hash, done, id = KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1]
local marker_ms = int_arg(ARGV[2], 'marker ttl')
if redis.call('GET', done) == 'retried' then return 'ok' end
if redis.call('EXISTS', hash) == 0 then
  local record = redis.call('HGET', KEYS[5], id)
  if record then return string.match(record, '"outcome":"(%a+)"') or 'finished' end
  return 'missing'
end
if not redis.call('ZSCORE', retry, id) then return redis.call('HGET', hash, 'state') or 'unknown' end
local now = now_ms()
redis.call('ZREM', retry, id)
redis.call('LPUSH', queue, id)
redis.call('HSET', hash, 'state', 'queued', 'next_attempt_at', '', 'updated_at', now)
add_step(hash, cjson.encode({step = 'retried', at = now, by = ARGV[3]}))
redis.call('SET', done, 'retried', 'PX', marker_ms)
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
local grace, limit = int_arg(ARGV[1], 'grace'), int_arg(ARGV[2], 'limit')
local now = now_ms()
for _, id in ipairs(redis.call('LRANGE', processing, 0, -1)) do
  if not redis.call('ZSCORE', leases, id) then
    redis.call('ZADD', leases, now + grace, id)
  end
end
return redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, limit)
"""

REAP: Final = r"""
-- Put events whose processor was lost back at the tail of the queue with times_queued + 1; the
-- attempt is kept in the timeline as lease_expired.
-- Safe to run from several processes: each lease is re-checked.
-- KEYS[1] rebalance_queue  KEYS[2] processing  KEYS[3] leases  KEYS[4] requeued
-- then KEYS[4+i] the hash of event i
-- ARGV[i] event id i
-- Returns the ids put back.
local queue, processing, leases, requeued = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if #KEYS ~= 4 + #ARGV then error('reap: one hash per id') end
local now, out = now_ms(), {}
for i, id in ipairs(ARGV) do
  local hash = KEYS[4 + i]
  local expiry = redis.call('ZSCORE', leases, id)
  if expiry and tonumber(expiry) <= now then
    local placed = redis.call('LPOS', processing, id)
    local exists = redis.call('EXISTS', hash) == 1
    local times, consumer, err, step = 0, 'unknown', '', ''
    if placed and exists then
      times = next_times(hash)
      consumer = redis.call('HGET', hash, 'consumer') or ''
      if consumer == '' then consumer = 'unknown' end
      err = 'processor ' .. consumer .. ' was lost: its lease expired before the event finished'
      step = attempt_step(hash, now, 'lease_expired', {error = err})
    end
    redis.call('ZREM', leases, id)
    if placed then redis.call('LREM', processing, 0, id) end
    if placed and exists then
      redis.call('RPUSH', queue, id)
      redis.call('ZADD', requeued, times, id)
      redis.call('HSET', hash, 'times_queued', times, 'state', 'queued', 'consumer', '',
        'claim', '', 'lock_token', '', 'updated_at', now, 'last_error', err)
      add_step(hash, step)
      out[#out + 1] = id
    end
  end
end
return out
"""

DELETE: Final = r"""
-- An operator deletes an event that is not being processed, with its dedup key; its finished
-- record (outcome 'deleted', by the operator's address) is kept for the retention.
-- KEYS[1] rebalance_queue  KEYS[2] processing  KEYS[3] leases  KEYS[4] retry_wait
-- KEYS[5] active_events  KEYS[6] dedup index  KEYS[7] requeued  KEYS[8] events:all
-- KEYS[9] finished  KEYS[10] finished_index  KEYS[11] event hash  KEYS[12] account index
-- KEYS[13] command index  KEYS[14] done marker
-- ARGV[1] event id  ARGV[2] account id and ARGV[3] command the caller read ('' when absent;
-- re-checked)  ARGV[4] the dedup key the caller computed  ARGV[5] done-marker ttl (ms)
-- ARGV[6] who asked (the operator's address)  ARGV[7] finished records kept at most
-- ARGV[8] kept at most (ms)
-- The done marker makes a resent call (after a lost connection) answer 'deleted' again instead
-- of 'missing': it is written with the deletion and read first.
-- Returns 'deleted', 'missing', 'processing', 'changed' (the record is not the one read), or
-- 'finished:<outcome>' when the event already finished (completed, or deleted before).
local k = {queue = KEYS[1], processing = KEYS[2], leases = KEYS[3], retry = KEYS[4],
  active = KEYS[5], dedup_index = KEYS[6], requeued = KEYS[7], all = KEYS[8],
  finished = KEYS[9], findex = KEYS[10], hash = KEYS[11], by_account = KEYS[12],
  by_command = KEYS[13]}
local done = KEYS[14]
local id, marker_ms = ARGV[1], int_arg(ARGV[5], 'marker ttl')
local keep = retention(ARGV[7], ARGV[8])
if redis.call('EXISTS', k.hash) == 0 then
  if redis.call('GET', done) == 'deleted' then return 'deleted' end
  local record = redis.call('HGET', k.finished, id)
  if record then return 'finished:' .. (string.match(record, '"outcome":"(%a+)"') or '?') end
  return 'missing'
end
local f = redis.call('HMGET', k.hash, 'account_id', 'exec_command')
if (f[1] or '') ~= ARGV[2] or (f[2] or '') ~= ARGV[3] then return 'changed' end
if redis.call('LPOS', k.processing, id) then return 'processing' end
local now = now_ms()
local text, suffix = finished_record(k.hash, id, 'deleted', now, ARGV[6], nil, nil)
local dedup = dedup_keys(k.hash, ARGV[4])
keep_finished(k.finished, k.findex, id, text, suffix, keep, now)
forget(k, id, dedup)
redis.call('SET', done, 'deleted', 'PX', marker_ms)
return 'deleted'
"""

STATS: Final = r"""
-- Queue statistics without scanning, in one call: counts are O(1); the oldest waiting event is
-- found among the first (processing + 1) events by age; the requeued sample is the top of a
-- sorted set; the records of those few events and the live processors come along, so a health
-- check costs one round trip. Memory used and maxmemory come from INFO (a full Redis refuses
-- every write under noeviction). The consistency counts are O(1) too: every live event sits in
-- exactly one area and owns one dedup key, so events:all = queue + processing + retry_wait =
-- active_events = dedup index.
-- KEYS[1] rebalance_queue  KEYS[2] processing  KEYS[3] retry_wait  KEYS[4] active_events
-- KEYS[5] requeued  KEYS[6] events:all  KEYS[7] dedup index  KEYS[8] finished
-- KEYS[9] processors  KEYS[10] processor info
-- ARGV[1] sample size  ARGV[2] an event hash's key name without the id (the records read are
-- named from it, under the same hash tag as KEYS)  ARGV[3] alive window (ms), '' for no
-- processors
-- Returns an array (a reply Redis builds directly, cheaper than JSON text):
--   1 memory used  2 maxmemory  3 queue length  4 processing  5 retry waiting
--   6 active dedup keys  7 requeued  8 live events  9 dedup index size  10 finished records
--   11 the oldest waiting event's id ('' if none)  12 the requeued sample's ids
--   13 the records read, flat: id, account_id, exec_command, times_queued, created_at, state,
--      last_error ('' where absent), then the next id ...
--   14 the live processors: {consumer id, last heartbeat (ms), description JSON} each
--   15 the Redis clock (ms)
local processing_count = redis.call('LLEN', KEYS[2])
local oldest = ''
for _, id in ipairs(redis.call('ZRANGE', KEYS[6], 0, processing_count)) do
  if not redis.call('LPOS', KEYS[2], id) then
    oldest = id
    break
  end
end
local sample = redis.call('ZREVRANGE', KEYS[5], 0, int_arg(ARGV[1], 'sample') - 1)
local records = {}
local event_prefix = ARGV[2] or ''
if event_prefix ~= '' then
  local wanted = {oldest}
  for _, id in ipairs(sample) do wanted[#wanted + 1] = id end
  local read = {}
  for _, id in ipairs(wanted) do
    local key = event_prefix .. id
    if id ~= '' and not read[id] and redis.call('EXISTS', key) == 1 then
      read[id] = true
      local f = redis.call('HMGET', key, 'account_id', 'exec_command', 'times_queued',
                           'created_at', 'state', 'last_error')
      records[#records + 1] = id
      for i = 1, 6 do records[#records + 1] = f[i] or '' end
    end
  end
end
local now = now_ms()
local processors = {}
if (ARGV[3] or '') ~= '' then
  processors = alive(KEYS[9], KEYS[10], now, int_arg(ARGV[3], 'window'))
end
-- Two numbers of INFO's text, found by plain search (no pattern scan over the whole text).
local memory = redis.call('INFO', 'memory')
local function info_number(name)
  local _, last = string.find(memory, '\n' .. name .. ':', 1, true)
  if not last then return 0 end
  return tonumber(string.match(memory, '^%d+', last + 1)) or 0
end
return {info_number('used_memory'), info_number('maxmemory'),
  redis.call('LLEN', KEYS[1]), processing_count, redis.call('ZCARD', KEYS[3]),
  redis.call('SCARD', KEYS[4]), redis.call('ZCARD', KEYS[5]), redis.call('ZCARD', KEYS[6]),
  redis.call('HLEN', KEYS[7]), redis.call('HLEN', KEYS[8]), oldest, sample, records, processors,
  now}
"""

PAGE: Final = r"""
-- One page of an area or index and its size, read at one instant (read only).
-- KEYS[1] the list or sorted set   ARGV[1] start   ARGV[2] stop
-- Returns {size, id1, id2, ...}.
local kind = redis.call('TYPE', KEYS[1])['ok']
local start, stop = int_arg(ARGV[1], 'start'), int_arg(ARGV[2], 'stop')
local out
if kind == 'list' then
  out = {redis.call('LLEN', KEYS[1])}
  for _, id in ipairs(redis.call('LRANGE', KEYS[1], start, stop)) do out[#out + 1] = id end
else
  out = {redis.call('ZCARD', KEYS[1])}
  for _, id in ipairs(redis.call('ZRANGE', KEYS[1], start, stop)) do out[#out + 1] = id end
end
return out
"""

PAGE_RECORDS: Final = r"""
-- One page of an area or index, its size and the records of the page, read at one instant
-- (read only): a listing in one round trip.
-- KEYS[1] the list or sorted set   ARGV[1] start   ARGV[2] stop
-- ARGV[3] an event hash's key name without the id (the records are named from it, under the
-- same hash tag as KEYS[1])  ARGV[4...] the fields to read (none: all of them)
-- Returns {size, id1, fields1, id2, fields2, ...}; fields: the record's flat field/value list,
-- of the fields it has (empty for an id without a record).
local kind = redis.call('TYPE', KEYS[1])['ok']
local start, stop = int_arg(ARGV[1], 'start'), int_arg(ARGV[2], 'stop')
local prefix = ARGV[3]
local wanted = {unpack(ARGV, 4)}
if not prefix or prefix == '' then error('page_records: no event key name') end
local ids, out
if kind == 'list' then
  out = {redis.call('LLEN', KEYS[1])}
  ids = redis.call('LRANGE', KEYS[1], start, stop)
else
  out = {redis.call('ZCARD', KEYS[1])}
  ids = redis.call('ZRANGE', KEYS[1], start, stop)
end
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = read_record(prefix .. id, wanted)
end
return out
"""

FETCH: Final = r"""
-- Read several event records at one instant (read only); a cluster runs it on one node.
-- KEYS[i] the hash of event i   ARGV the fields to read (none: all of them)
-- Returns one flat field/value list per key, of the fields it has (empty for a missing record).
local out = {}
for i, key in ipairs(KEYS) do out[i] = read_record(key, ARGV) end
return out
"""

LOOKUP: Final = r"""
-- One event by id, live or finished (read only).
-- KEYS[1] event hash  KEYS[2] finished   ARGV[1] event id
-- Returns {'live', field1, value1, ...}, {'finished', record JSON} or {'missing'}.
local fields = redis.call('HGETALL', KEYS[1])
if #fields > 0 then
  local out = {'live'}
  for _, v in ipairs(fields) do out[#out + 1] = v end
  return out
end
local record = redis.call('HGET', KEYS[2], ARGV[1])
if record then return {'finished', record} end
return {'missing'}
"""

HISTORY: Final = r"""
-- One page of finished events (read only), newest first ('older': the walk goes back in time)
-- or oldest first ('newer'), filtered by account, command, outcome and finish time.
-- The index walked is the one with the fewest members in the time range among those the
-- filters name (the account's, the command's, the deleted events'; else all of them); the other
-- filters are checked on each member, with no record read. At most `budget` members are read:
-- when the budget ends first, the page may be short and `more` says to go on from the cursor.
-- KEYS[1] finished_index  KEYS[2] finished
-- ARGV[1] 'older' or 'newer'  ARGV[2] cursor: a member's suffix, excluded ('' = from the end)
-- ARGV[3] since ms (included) or ''  ARGV[4] until ms (excluded) or ''  ARGV[5] account or ''
-- ARGV[6] command or ''  ARGV[7] outcome or ''  ARGV[8] limit  ARGV[9] budget
-- Returns {more, cursor, suffix1, record1, suffix2, record2, ...}; a record is '' if missing.
local findex, finished = KEYS[1], KEYS[2]
local direction, cursor = ARGV[1], ARGV[2]
local account, command, outcome = index_name(ARGV[5]), index_name(ARGV[6]), index_name(ARGV[7])
local limit, budget = int_arg(ARGV[8], 'limit'), int_arg(ARGV[9], 'budget')
if direction ~= 'older' and direction ~= 'newer' then error('history: bad direction') end
if limit < 1 or budget < limit + 1 then error('history: bad limit or budget') end
local older = direction == 'older'
local since, till = '', 'A'
if ARGV[3] ~= '' then since = string.format('%013.0f', int_arg(ARGV[3], 'since')) end
if ARGV[4] ~= '' then till = string.format('%013.0f', int_arg(ARGV[4], 'until')) end

local function bounds(prefix)
  local lo, hi = '[' .. prefix .. since, '(' .. prefix .. till
  if cursor ~= '' then
    if older and cursor < till then hi = '(' .. prefix .. cursor end
    if not older and cursor >= since then lo = '(' .. prefix .. cursor end
  end
  return lo, hi
end

local candidates = {}
if ARGV[5] ~= '' then candidates[#candidates + 1] = 'a:' .. account .. ':' end
if ARGV[6] ~= '' then candidates[#candidates + 1] = 'c:' .. command .. ':' end
if outcome == 'deleted' then candidates[#candidates + 1] = 'o:deleted:' end
if #candidates == 0 then candidates[1] = 't:' end
local prefix, lo, hi, size
for _, p in ipairs(candidates) do
  local l, h = bounds(p)
  local n = redis.call('ZLEXCOUNT', findex, l, h)
  if not size or n < size then prefix, lo, hi, size = p, l, h, n end
end

-- One anchored pattern checks every filter on a member's suffix (no capture, no record read).
local function field(value, given)
  if not given then return '[^\t]*' end
  return (string.gsub(value, '[%.%-]', '%%%0'))
end
local shape = '^%d+\t' .. field(account, ARGV[5] ~= '') .. '\t' ..
  field(command, ARGV[6] ~= '') .. '\t' .. field(outcome, outcome ~= '') .. '\t'
local function wanted(suffix)
  return string.find(suffix, shape) ~= nil
end

local out = {0, ''}
local found, scanned, chunk = 0, 0, limit + 1
while true do
  local batch
  if older then
    batch = redis.call('ZREVRANGEBYLEX', findex, hi, lo, 'LIMIT', 0, chunk)
  else
    batch = redis.call('ZRANGEBYLEX', findex, lo, hi, 'LIMIT', 0, chunk)
  end
  for _, member in ipairs(batch) do
    local suffix = string.sub(member, #prefix + 1)
    if wanted(suffix) then
      if found == limit then
        out[1], out[2] = 1, out[#out - 1]
        return out
      end
      local _, _, _, _, id = parse_suffix(suffix)
      out[#out + 1] = suffix
      out[#out + 1] = redis.call('HGET', finished, id) or ''
      found = found + 1
    end
    scanned = scanned + 1
    if scanned >= budget then
      out[1], out[2] = 1, suffix
      return out
    end
  end
  if #batch < chunk then return out end
  if older then hi = '(' .. batch[#batch] else lo = '(' .. batch[#batch] end
  chunk = math.min(chunk * 2, 512)
end
"""

TRIM_FINISHED: Final = r"""
-- Remove finished records past the retention (too many, or too old), oldest first. The scripts
-- that finish events trim a few each time; this catches up (e.g. after the retention was
-- lowered, or when no event finished for longer than the age kept).
-- KEYS[1] finished  KEYS[2] finished_index
-- ARGV[1] kept at most (count)  ARGV[2] kept at most (ms)  ARGV[3] removed at most
-- Returns how many were removed.
local keep = retention(ARGV[1], ARGV[2])
return trim_finished(KEYS[1], KEYS[2], keep, now_ms(), int_arg(ARGV[3], 'budget'))
"""

MIGRATE_HISTORY: Final = r"""
-- Turn entries of the history list of earlier versions (JSON summaries, newest first) into
-- finished records, oldest first, one batch at a time. The entry's text is kept as it is (it
-- holds the fields of a finished record, without parameters and steps); an entry that is not a
-- JSON object with an event id, or whose id is already kept, is dropped.
-- KEYS[1] history list  KEYS[2] finished  KEYS[3] finished_index
-- ARGV[1] batch size  ARGV[2] kept at most (count)  ARGV[3] kept at most (ms)
-- Returns {moved, dropped, entries left}.
local batch = int_arg(ARGV[1], 'batch')
local keep = retention(ARGV[2], ARGV[3])
if batch < 1 then error('migrate history: bad batch') end
local entries = redis.call('LRANGE', KEYS[1], -batch, -1)
local now = now_ms()
local function text_of(v) if type(v) == 'string' then return v end return '' end
local order, moving, dropped = {}, {}, 0
for i = #entries, 1, -1 do
  local ok, e = pcall(cjson.decode, entries[i])
  local id = ok and type(e) == 'table' and e.event_id
  if type(id) == 'string' and id ~= '' and redis.call('HEXISTS', KEYS[2], id) == 0
      and not moving[id] then
    local outcome = 'completed'
    if e.outcome == 'deleted' then outcome = 'deleted' end
    moving[id] = {entries[i], finished_suffix(tonumber(e.finished_at) or now,
      text_of(e.account_id), text_of(e.exec_command), outcome, id)}
    order[#order + 1] = id
  else
    dropped = dropped + 1
  end
end
for _, id in ipairs(order) do
  redis.call('HSET', KEYS[2], id, moving[id][1])
  for _, m in ipairs(index_members(moving[id][2])) do redis.call('ZADD', KEYS[3], 0, m) end
end
if #entries > 0 then redis.call('LTRIM', KEYS[1], 0, -#entries - 1) end
trim_finished(KEYS[2], KEYS[3], keep, now, 1000)
return {#order, dropped, redis.call('LLEN', KEYS[1])}
"""

UPTIME: Final = r"""
-- How long this Redis server has been up, in seconds (read only).
-- KEYS[1] any key of the deployment (it routes the call to the right node of a cluster)
local info = redis.call('INFO', 'server')
return tonumber(string.match(info, 'uptime_in_seconds:(%d+)')) or 0
"""

HEARTBEAT: Final = r"""
-- A processor says it is alive; processors silent for long are forgotten.
-- KEYS[1] processors  KEYS[2] processor info
-- ARGV[1] consumer id  ARGV[2] info JSON  ARGV[3] forget after (ms)
-- Returns the Redis time (ms).
local forget_ms = int_arg(ARGV[3], 'forget after')
local now = now_ms()
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - forget_ms)) do
  redis.call('ZREM', KEYS[1], gone)
  redis.call('HDEL', KEYS[2], gone)
end
return now
"""

FORGET_PROCESSOR: Final = r"""
-- Remove a processor's heartbeat (clean shutdown).
-- KEYS[1] processors  KEYS[2] processor info   ARGV[1] consumer id
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""

ALIVE: Final = r"""
-- Processors whose last heartbeat is recent enough (read only).
-- KEYS[1] processors  KEYS[2] processor info
-- ARGV[1] alive window (ms)
-- Returns {now, {consumer1, last1, info1}, {consumer2, ...}, ...}.
local now = now_ms()
local out = {now}
for _, processor in ipairs(alive(KEYS[1], KEYS[2], now, int_arg(ARGV[1], 'window'))) do
  out[#out + 1] = processor
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
local ttl = int_arg(ARGV[2], 'ttl')
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ttl) end
return 0
"""

AUDIT: Final = r"""
-- Keep an operator action in the capped audit list (newest first), once even if resent.
-- KEYS[1] audit list   KEYS[2] done marker   ARGV[1] entry JSON   ARGV[2] cap
-- ARGV[3] done-marker ttl (ms)
local cap, marker_ms = int_arg(ARGV[2], 'cap'), int_arg(ARGV[3], 'marker ttl')
if not redis.call('SET', KEYS[2], 'audited', 'NX', 'PX', marker_ms) then return 0 end
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, cap - 1)
return 1
"""

REPAIR: Final = r"""
-- An operator repairs one event id found anywhere (record, area, index or dedup index), after
-- the consistency check found a discrepancy. A record is put in exactly one area (back in the
-- queue when it was in none), its indexes and dedup key restored; an id without a record is
-- removed from every area and index, and the dedup keys naming it are released.
-- KEYS[1] rebalance_queue  KEYS[2] processing  KEYS[3] leases  KEYS[4] retry_wait
-- KEYS[5] active_events  KEYS[6] dedup index  KEYS[7] requeued  KEYS[8] events:all
-- KEYS[9] event hash  KEYS[10] account index  KEYS[11] command index (of the record read)
-- ARGV[1] event id   ARGV[2..] the dedup keys whose index entry names this id
-- Returns the list of fixes made (empty when the id was consistent).
local k = {queue = KEYS[1], processing = KEYS[2], leases = KEYS[3], retry = KEYS[4],
  active = KEYS[5], dedup_index = KEYS[6], requeued = KEYS[7], all = KEYS[8], hash = KEYS[9],
  by_account = KEYS[10], by_command = KEYS[11]}
local id = ARGV[1]
local q = #redis.call('LPOS', k.queue, id, 'COUNT', 0)
local p = #redis.call('LPOS', k.processing, id, 'COUNT', 0)
local r = redis.call('ZSCORE', k.retry, id) and 1 or 0
local fixes = {}
local named = {}
for i = 2, #ARGV do
  if redis.call('HGET', k.dedup_index, ARGV[i]) == id then named[#named + 1] = ARGV[i] end
end

if redis.call('EXISTS', k.hash) == 0 then
  local stray = q + p + r > 0 or redis.call('ZSCORE', k.all, id) or
    redis.call('ZSCORE', k.leases, id) or redis.call('ZSCORE', k.requeued, id)
  if stray then
    redis.call('LREM', k.queue, 0, id)
    redis.call('LREM', k.processing, 0, id)
    for _, z in ipairs({k.retry, k.all, k.leases, k.requeued}) do redis.call('ZREM', z, id) end
    fixes[#fixes + 1] = 'removed the id of a missing record from the areas and indexes'
  end
  for _, key in ipairs(named) do
    redis.call('HDEL', k.dedup_index, key)
    redis.call('SREM', k.active, key)
    fixes[#fixes + 1] = 'released dedup key ' .. key .. ' of a missing record'
  end
  return fixes
end

-- Read and decide everything first.
local f = redis.call('HMGET', k.hash, 'state', 'claim', 'times_queued', 'created_at',
                     'account_id', 'exec_command', 'dedup_key')
local claimed = f[2] and f[2] ~= ''
local keep
if p > 0 and (claimed or q + r == 0) then keep = 'processing'
elseif r > 0 then keep = 'retry_wait'
elseif q > 0 then keep = 'queued'
else keep = 'none' end
local want_state = f[1]
if keep == 'none' or keep == 'queued' then want_state = 'queued'
elseif keep == 'retry_wait' then want_state = 'retry_wait'
elseif claimed then want_state = 'processing' end
local created = tonumber(f[4])
local score = (created and created * 1000) or now_us()
local times = tonumber(f[3])
local requeued_score = tonumber(redis.call('ZSCORE', k.requeued, id))
local own = dedup_keys(k.hash)
local primary = own[1]
local owner = primary and redis.call('HGET', k.dedup_index, primary)
local stale = {}
for _, key in ipairs(named) do
  local mine = false
  for _, o in ipairs(own) do if o == key then mine = true end end
  if not mine and key ~= primary then stale[#stale + 1] = key end
end

-- Then write.
if keep == 'none' then
  redis.call('RPUSH', k.queue, id)
  redis.call('HSET', k.hash, 'consumer', '', 'claim', '', 'lock_token', '')
  fixes[#fixes + 1] = 'put back in the queue: it was in no area'
end
if keep ~= 'queued' and q > 0 then redis.call('LREM', k.queue, 0, id) end
if keep == 'queued' and q > 1 then redis.call('LREM', k.queue, 1 - q, id) end
if keep ~= 'processing' and p > 0 then redis.call('LREM', k.processing, 0, id) end
if keep == 'processing' and p > 1 then redis.call('LREM', k.processing, 1 - p, id) end
if keep ~= 'retry_wait' and r > 0 then redis.call('ZREM', k.retry, id) end
if keep ~= 'processing' then redis.call('ZREM', k.leases, id) end
if keep ~= 'none' and q + p + r > 1 then
  fixes[#fixes + 1] = 'kept in ' .. keep .. ' only: it was placed ' .. (q + p + r) .. ' times'
end
if want_state ~= f[1] then
  redis.call('HSET', k.hash, 'state', want_state)
  fixes[#fixes + 1] = 'state set to ' .. want_state .. ' (was ' .. tostring(f[1]) .. ')'
end
if not redis.call('ZSCORE', k.all, id) then
  redis.call('ZADD', k.all, score, id)
  fixes[#fixes + 1] = 'added to the index of all events'
end
if f[5] and f[6] then
  if not redis.call('ZSCORE', k.by_account, id) then redis.call('ZADD', k.by_account, score, id) end
  if not redis.call('ZSCORE', k.by_command, id) then redis.call('ZADD', k.by_command, score, id) end
end
if times and times > 1 and requeued_score ~= times then
  redis.call('ZADD', k.requeued, times, id)
  fixes[#fixes + 1] = 'requeued index set to ' .. times
elseif not (times and times > 1) and requeued_score then
  redis.call('ZREM', k.requeued, id)
  fixes[#fixes + 1] = 'removed from the requeued index'
end
if primary and not owner then
  redis.call('HSET', k.dedup_index, primary, id)
  redis.call('SADD', k.active, primary)
  if not f[7] or f[7] == '' then redis.call('HSET', k.hash, 'dedup_key', primary) end
  fixes[#fixes + 1] = 'dedup key ' .. primary .. ' restored'
elseif primary and owner == id and redis.call('SISMEMBER', k.active, primary) == 0 then
  redis.call('SADD', k.active, primary)
  fixes[#fixes + 1] = 'dedup key ' .. primary .. ' restored in active_events'
elseif primary and owner ~= id then
  fixes[#fixes + 1] = 'not fixed: dedup key ' .. primary .. ' belongs to event ' .. owner ..
    ' too; delete one of the two'
end
for _, key in ipairs(stale) do
  redis.call('HDEL', k.dedup_index, key)
  redis.call('SREM', k.active, key)
  fixes[#fixes + 1] = 'released dedup key ' .. key .. ' that named it wrongly'
end
return fixes
"""

REPAIR_ACTIVE: Final = r"""
-- An operator makes active_events and the dedup index name the same keys: a key in the set but
-- not in the index owns no event and is removed; a key in the index is added to the set.
-- KEYS[1] active_events  KEYS[2] dedup index
-- Returns the list of fixes made.
local fixes = {}
local drop, add = {}, {}
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('HEXISTS', KEYS[2], key) == 0 then drop[#drop + 1] = key end
end
for _, key in ipairs(redis.call('HKEYS', KEYS[2])) do
  if redis.call('SISMEMBER', KEYS[1], key) == 0 then add[#add + 1] = key end
end
for _, key in ipairs(drop) do
  redis.call('SREM', KEYS[1], key)
  fixes[#fixes + 1] = 'dedup key ' .. key .. ' owned no event: released'
end
for _, key in ipairs(add) do
  redis.call('SADD', KEYS[1], key)
  fixes[#fixes + 1] = 'dedup key ' .. key .. ' added to active_events'
end
return fixes
"""

ALL: Final = {
    "enqueue": ENQUEUE,
    "lease": LEASE,
    "renew": RENEW,
    "lock": LOCK,
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
    "page": PAGE,
    "fetch": FETCH,
    "page_records": PAGE_RECORDS,
    "lookup": LOOKUP,
    "history": HISTORY,
    "trim_finished": TRIM_FINISHED,
    "migrate_history": MIGRATE_HISTORY,
    "uptime": UPTIME,
    "heartbeat": HEARTBEAT,
    "forget_processor": FORGET_PROCESSOR,
    "alive": ALIVE,
    "unlock": UNLOCK,
    "extend_lock": EXTEND_LOCK,
    "audit": AUDIT,
    "repair": REPAIR,
    "repair_active": REPAIR_ACTIVE,
}


def source(name: str) -> str:
    """The full source of a script: the shared helpers it uses (directly or through another
    helper), in their order, followed by its body.

    Redis runs a script's whole text on every call, so defining helpers a script never calls
    costs each call about 10 us: only the needed ones are included.
    """
    body = ALL[name]
    chunks = _helpers()
    needed: set[str] = set()
    text = body
    while True:
        found = {n for n in chunks if n not in needed and re.search(rf"\b{n}\b", text)}
        if not found:
            break
        needed |= found
        text = "\n".join(chunks[n] for n in found)
    return "".join(chunk for n, chunk in chunks.items() if n in needed) + body


@functools.cache
def _helpers() -> dict[str, str]:
    """The prelude cut into its top-level definitions (each with the comment above it), by name."""
    chunks: dict[str, str] = {}
    name, lines = "", list[str]()
    for line in _PRELUDE.splitlines(keepends=True):
        start = re.match(r"local (?:function )?(\w+)", line)
        if not start:
            lines.append(line)
            continue
        above = 0  # the comment lines just above belong to the definition they describe
        while above < len(lines) and lines[len(lines) - 1 - above].startswith("--"):
            above += 1
        if name:
            chunks[name] = "".join(lines[:len(lines) - above])
        name, lines = start.group(1), [*lines[len(lines) - above:], line]
    chunks[name] = "".join(lines)
    return chunks
