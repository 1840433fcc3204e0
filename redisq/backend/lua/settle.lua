#!lua flags=allow-oom
-- settle: record how a job's attempt ended and move its message accordingly, in one step.
--
-- KEYS[1]  processing list   redisq:{q}:processing:<consumer>
-- KEYS[2]  job record        redisq:{q}:job:<id>
-- KEYS[3]  stats hash        redisq:{q}:stats
-- KEYS[4]  delayed zset      redisq:{q}:delayed   (where a retry waits)
-- KEYS[5]  dead list         redisq:{q}:dead      (where a dead job's entry goes)
-- KEYS[6]  epochs hash       redisq:{q}:epochs
-- KEYS[7]  unique key        redisq:{q}:unique:<key>   (a job without one: a placeholder,
--                             redisq:{q}:unique: , never read: see ARGV[n-5])
-- KEYS[8]  status index      redisq:{q}:idx:<outcome>     (job index block, below)
-- KEYS[9]  retrying index    redisq:{q}:idx:retrying
-- KEYS[10] series string     redisq:{q}:series:<minute>   (u32 counters: see jobindex.py)
-- KEYS[11] pending list      redisq:{q}:pending
-- ARGV[1]  outcome: succeeded | failed | retrying | dead | cancelled
-- ARGV[2]  the message as reserved (removed from the processing list)
-- ARGV[3]  retrying: the next attempt's message; dead: the dead-letter entry; else ''
-- ARGV[4]  retrying: delay in ms before the next attempt
-- ARGV[5]  record TTL in ms (0 = keep)
-- ARGV[6]  job id (the unique key is released only if it still names this job)
-- ARGV[7]  most entries the dead list keeps (0 = unbounded)
-- ARGV[8]  event channel ('' = publish nothing)
-- ARGV[9]  event payload
-- ARGV[10] duration histogram field of the stats hash ('' = do not count), e.g. 'dur:0.05'
-- ARGV[11] the attempt's duration in seconds
-- ARGV[12] consumer id
-- ARGV[13] the consumer's epoch token when the message was reserved ('' = not checked)
-- ARGV[14] worker id
-- ARGV[15] the attempt's number
-- ARGV[16..n-6] record field, value pairs
-- ARGV[n-5] '1' when the job holds a unique key (KEYS[7] is real), else '0'
-- ARGV[n-4] settle time (unix ms)                          (job index block, below)
-- ARGV[n-3] most ids a status index keeps (0 = keep no index and no series); once over it,
--           an index is trimmed a hundredth below it, so most settles trim nothing
-- ARGV[n-2] the second within the minute (0..59) of the settle time
-- ARGV[n-1] the latency bucket (0..12) of a sampled first attempt's enqueue -> start, or ''
-- ARGV[n]   series TTL in seconds on the worker's first settle of the queue in a second (it
--           also samples the depth then), else ''
-- returns  1 if the message was still held by this consumer, 0 if not (a settle repeated
--          after a lost reply: the record is written again, the message is not moved);
--          -1 when the token is not the consumer's epoch any more: the message was recovered
--          after the consumer's lease expired and given to another worker, whose outcome
--          stands; nothing is written or moved;
--          -2 when another worker already finished the job, or failed this attempt and
--          scheduled the next (a duplicate delivery): its record is kept, and this copy of
--          the message is only removed
local outcome = ARGV[1]
if ARGV[13] ~= '' and redis.call('HGET', KEYS[6], ARGV[12]) ~= ARGV[13] then return -1 end
-- A finished record written by another worker is never overwritten; nor is its retry of this
-- attempt (or an earlier one), except by a success (the job is done: the waiting retry is
-- skipped when it comes up, as a finished job's duplicate).
local rec = redis.call('HMGET', KEYS[2], 'status', 'worker', 'attempts')
local st = rec[1]
if rec[2] and rec[2] ~= ARGV[14] and (st == 'succeeded' or st == 'failed' or st == 'dead'
    or st == 'cancelled' or (st == 'retrying' and outcome ~= 'succeeded'
      and tonumber(ARGV[15]) <= (tonumber(rec[3]) or 0))) then
  redis.call('LREM', KEYS[1], -1, ARGV[2])
  return -2
end
local held = redis.call('LREM', KEYS[1], -1, ARGV[2])
if held == 1 then
  if outcome == 'retrying' then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('ZADD', KEYS[4], now + tonumber(ARGV[4]), ARGV[3])
  elseif outcome == 'dead' then
    redis.call('LPUSH', KEYS[5], ARGV[3])
    local cap = tonumber(ARGV[7])
    if cap > 0 then redis.call('LTRIM', KEYS[5], 0, cap - 1) end
  end
  redis.call('HINCRBY', KEYS[3], outcome, 1)
  if ARGV[10] ~= '' then
    redis.call('HINCRBY', KEYS[3], ARGV[10], 1)
    redis.call('HINCRBYFLOAT', KEYS[3], 'dur:sum', ARGV[11])
  end
end
local n = #ARGV
if n - 6 >= 16 then redis.call('HSET', KEYS[2], unpack(ARGV, 16, n - 6)) end
local ttl = tonumber(ARGV[5])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
if ARGV[n - 5] == '1' and outcome ~= 'retrying' and redis.call('GET', KEYS[7]) == ARGV[6] then
  redis.call('DEL', KEYS[7])
end
-- Job index block (issue 16): the job joins its outcome's index (leaving the retrying one
-- once a later attempt settles), trimmed in this same step so no index outgrows its cap; the
-- attempt counts in the minute's per-second counters (one BITFIELD: u32 #s processed,
-- #60+s failed, #120 depth, #121+b latency histogram; see jobindex.py).
local cap = tonumber(ARGV[n - 3])
if cap > 0 then
  redis.call('ZADD', KEYS[8], ARGV[n - 4], ARGV[6])
  if redis.call('ZCARD', KEYS[8]) > cap then
    redis.call('ZREMRANGEBYRANK', KEYS[8], 0, -(cap - math.floor(cap / 100)) - 1)
  end
  if outcome ~= 'retrying' and tonumber(ARGV[15]) > 1 then redis.call('ZREM', KEYS[9], ARGV[6]) end
  if held == 1 then
    local sec = tonumber(ARGV[n - 2])
    if outcome == 'succeeded' or outcome == 'cancelled' then
      redis.call('BITFIELD', KEYS[10], 'INCRBY', 'u32', '#' .. sec, 1)
    else
      redis.call('BITFIELD', KEYS[10], 'INCRBY', 'u32', '#' .. sec, 1, 'INCRBY', 'u32', '#' .. (60 + sec), 1)
    end
    if ARGV[n - 1] ~= '' then
      redis.call('BITFIELD', KEYS[10], 'INCRBY', 'u32', '#' .. (121 + tonumber(ARGV[n - 1])), 1)
    end
    if ARGV[n] ~= '' then
      redis.call('BITFIELD', KEYS[10], 'SET', 'u32', '#120', redis.call('LLEN', KEYS[11]))
      redis.call('EXPIRE', KEYS[10], ARGV[n])
    end
  end
end
if ARGV[8] ~= '' then redis.call('PUBLISH', ARGV[8], ARGV[9]) end
return held
