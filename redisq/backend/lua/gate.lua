#!lua flags=allow-oom
-- gate: the start step of a job whose task has a rate_limit and/or a concurrency_limit.
-- Run after the job was reserved and before it runs: either the job may start now (its
-- concurrency slot is taken and its start counted, in this step), or its message leaves this
-- consumer's processing list for the delayed set, in this same step, until a slot frees: a
-- throttled job holds no worker thread and is never spun on.
--
-- Rate: GCRA (generic cell rate algorithm) with no burst, i.e. starts at least T = period/N
-- apart. One key (the theoretical arrival time, TAT, and the last start), O(1) work per
-- start, unlike a sliding window log (a zset entry per start in the window). A refused job is
-- given the next free slot (TAT) and the TAT moves on by T: each throttled job gets its own
-- future start time, so N waiting jobs come back one by one instead of all at once at the
-- next free slot.
-- Concurrency: a lease-based semaphore: holders in a zset scored by lease expiry (Redis
-- clock); expired holders (a SIGKILLed worker) are dropped here, so a slot frees within its
-- lease. A refused job waits until the earliest holder's lease ends, and is woken sooner by
-- limit_release.lua (one waiter per release).
--
-- KEYS[1]  processing list   redisq:{q}:processing:<consumer>
-- KEYS[2]  delayed zset      redisq:{q}:delayed
-- KEYS[3]  job record        redisq:{q}:job:<id>
-- KEYS[4]  stats hash        redisq:{q}:stats
-- KEYS[5]  epochs hash       redisq:{q}:epochs
-- KEYS[6]  rate state        redisq:{q}:rate:<task>   ("<tat>|<starts' tat>|<ARGV[5]>", ms)
-- KEYS[7]  rate slots hash   redisq:{q}:rate:<task>:slots
-- KEYS[8]  holders zset      redisq:{q}:running:<task>
-- KEYS[9]  waiting zset      redisq:{q}:waiting:<task>
-- ARGV[1]  the message as reserved
-- ARGV[2]  job id
-- ARGV[3]  consumer id
-- ARGV[4]  the consumer's epoch token when the message was reserved ('' = not checked)
-- ARGV[5]  rate: milliseconds between starts (0 = no rate limit)
-- ARGV[6]  concurrency limit (0 = none)
-- ARGV[7]  holder lease in ms (the worker renews it at its heartbeat)
-- ARGV[8]  now, unix seconds as text (for the record)
-- returns  0: may start; -1: the epoch ended (nothing done; the job must not run here);
--          -2: the message was not held any more (nothing done); n > 0: throttled, back in
--          the delayed set for n ms
if ARGV[4] ~= '' and redis.call('HGET', KEYS[5], ARGV[3]) ~= ARGV[4] then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[2]
local wait = 0
local waiter = false
local limit = tonumber(ARGV[6])
if limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', now)
  if not redis.call('ZSCORE', KEYS[8], id) and redis.call('ZCARD', KEYS[8]) >= limit then
    local first = redis.call('ZRANGE', KEYS[8], 0, 0, 'WITHSCORES')
    wait = math.max(tonumber(first[2]) - now, 1)
    waiter = true
  end
end
local interval = tonumber(ARGV[5])
if wait == 0 and interval > 0 then
  -- State "<tat>|<starts' tat>|<interval>": the TAT is kept with the interval it was computed
  -- for, so a task redeployed with another rate starts afresh (an old 1/h limit must not hold
  -- a new 100/s one for an hour), and the slots reserved under the old rate are dropped
  -- (their jobs are gated again when due).
  local stored = redis.call('GET', KEYS[6])
  local tat, last = now, now
  if stored then
    local t, l, every = string.match(stored, '^([^|]+)|([^|]+)|(.+)$')
    if every == ARGV[5] then
      tat, last = math.max(tonumber(t), now), tonumber(l)
    else
      redis.call('DEL', KEYS[7])
    end
  end
  -- The reserved slots alone would let jobs that come late (after a stalled worker) catch up
  -- in a burst. Starts themselves also pass a GCRA, with a small tolerance: at most
  -- TOLERANCE / interval starts ahead of an even spacing, so any window W holds at most
  -- W / interval + TOLERANCE / interval + 1 starts, while the jitter of promotions (a few ms)
  -- is absorbed rather than accumulated as lag.
  local tolerance = math.max(interval, 50)
  local spaced = last - tolerance  -- (last: the starts' own arrival time)
  local slot = tonumber(redis.call('HGET', KEYS[7], id))
  if slot ~= nil and slot <= now and now < spaced then
    slot = nil  -- came too late to use its slot (starts ran ahead): a new one, at the end
  end
  if slot == nil then
    local at = math.max(tat, spaced)
    tat = at + interval
    if at > now then  -- the next free start is later: reserve it for this job
      redis.call('HSET', KEYS[7], id, tostring(at))
      redis.call('PEXPIRE', KEYS[7], math.ceil(at - now) + 3600000)
      wait = math.max(math.ceil(at - now), 1)
    end
  elseif slot > now then
    wait = math.ceil(slot - now)  -- back before its reserved slot (e.g. requeued): later
  end
  if wait == 0 then
    last = math.max(last, now) + interval
    redis.call('HDEL', KEYS[7], id)
  end
  redis.call('SET', KEYS[6], tostring(tat) .. '|' .. tostring(last) .. '|' .. ARGV[5], 'PX',
    math.ceil(math.max(tat - now, 0) + interval) + 60000)
end
if wait > 0 then
  if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 0 then return -2 end
  redis.call('ZADD', KEYS[2], now + wait, ARGV[1])
  if waiter then redis.call('ZADD', KEYS[9], now + wait, ARGV[1]) end
  redis.call('HSET', KEYS[3], 'status', 'throttled', 'throttled_at', ARGV[8])
  redis.call('HINCRBY', KEYS[4], 'throttled', 1)
  return wait
end
if limit > 0 then redis.call('ZADD', KEYS[8], now + tonumber(ARGV[7]), id) end
return 0
